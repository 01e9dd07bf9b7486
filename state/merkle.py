"""RFC 6962 / RFC 9162 binary Merkle tree with inclusion proofs.

leaf hash = SHA-256(0x00 || leaf), node hash = SHA-256(0x01 || left || right);
a tree of n > 1 leaves splits at k, the largest power of two below n, so a
lone right-edge node is promoted unchanged.  The empty tree's root is
SHA-256(b"").  ``tx_root`` is this root over the transactions' hashes; a
light client verifies a transaction with ``verify_merkle_proof``.
"""

from __future__ import annotations

import hashlib
from typing import Sequence

_LEAF = b"\x00"
_NODE = b"\x01"


def _leaf_hash(leaf: bytes) -> bytes:
    return hashlib.sha256(_LEAF + leaf).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _split(n: int) -> int:
    """Largest power of two strictly below ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def _root(hashes: Sequence[bytes]) -> bytes:
    if len(hashes) == 1:
        return hashes[0]
    k = _split(len(hashes))
    return _node_hash(_root(hashes[:k]), _root(hashes[k:]))


def merkle_root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return hashlib.sha256(b"").digest()
    return _root([_leaf_hash(leaf) for leaf in leaves])


def _path(index: int, hashes: Sequence[bytes]) -> list[bytes]:
    if len(hashes) == 1:
        return []
    k = _split(len(hashes))
    if index < k:
        return _path(index, hashes[:k]) + [_root(hashes[k:])]
    return _path(index - k, hashes[k:]) + [_root(hashes[:k])]


def merkle_proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    """Audit path of leaf ``index``, from the leaf's sibling up to the root's child."""
    if not 0 <= index < len(leaves):
        raise IndexError(f"leaf index {index} is outside a tree of {len(leaves)} leaves")
    return _path(index, [_leaf_hash(leaf) for leaf in leaves])


def verify_merkle_proof(root: bytes, leaf: bytes, index: int, tree_size: int, proof: Sequence[bytes]) -> bool:
    """RFC 9162 section 2.1.3.2: does ``proof`` place ``leaf`` at ``index`` in the tree with ``root``?"""
    if not 0 <= index < tree_size:
        return False
    fn, sn = index, tree_size - 1
    r = _leaf_hash(leaf)
    for p in proof:
        if sn == 0 or len(p) != 32:
            return False
        if fn & 1 or fn == sn:
            r = _node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root
