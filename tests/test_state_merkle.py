"""RFC 6962 Merkle tree: roots match an independent construction, every proof verifies, tampering fails."""

from __future__ import annotations

import hashlib

import pytest

from state.merkle import merkle_proof, merkle_root, verify_merkle_proof


def H(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def leaves(n: int) -> list[bytes]:
    return [H(b"leaf %d" % i) for i in range(n)]


def bottom_up_root(items: list[bytes]) -> bytes:
    """Independent construction: pair neighbours level by level, promoting a lone last node."""
    if not items:
        return H(b"")
    level = [H(b"\x00" + x) for x in items]
    while len(level) > 1:
        nxt = [H(b"\x01" + level[i] + level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    return level[0]


def test_empty_and_single_trees():
    assert merkle_root([]) == H(b"")
    assert merkle_root([b"a"]) == H(b"\x00a")
    assert merkle_root([b"a", b"b"]) == H(b"\x01" + H(b"\x00a") + H(b"\x00b"))
    # three leaves: split at 2, the third leaf's hash is promoted
    assert merkle_root([b"a", b"b", b"c"]) == H(b"\x01" + H(b"\x01" + H(b"\x00a") + H(b"\x00b")) + H(b"\x00c"))


@pytest.mark.parametrize("n", range(1, 34))
def test_every_proof_of_every_tree_size_verifies(n):
    items = leaves(n)
    root = merkle_root(items)
    assert root == bottom_up_root(items)
    for i in range(n):
        proof = merkle_proof(items, i)
        assert verify_merkle_proof(root, items[i], i, n, proof)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 33])
def test_tampering_fails(n):
    items = leaves(n)
    root = merkle_root(items)
    for i in range(n):
        proof = merkle_proof(items, i)
        assert not verify_merkle_proof(root, H(b"other"), i, n, proof)
        assert not verify_merkle_proof(bytes(32), items[i], i, n, proof)
        if n > 1:
            assert not verify_merkle_proof(root, items[i], (i + 1) % n, n, proof)
            assert not verify_merkle_proof(root, items[i], i, n, proof[:-1])
            for j in range(len(proof)):
                bad = list(proof)
                bad[j] = bytes([bad[j][0] ^ 1]) + bad[j][1:]
                assert not verify_merkle_proof(root, items[i], i, n, bad)
        assert not verify_merkle_proof(root, items[i], i, n, proof + [bytes(32)])
        assert not verify_merkle_proof(root, items[i], n, n, proof)
        assert not verify_merkle_proof(root, items[i], -1, n, proof)


def test_proof_index_out_of_range():
    with pytest.raises(IndexError):
        merkle_proof(leaves(3), 3)
    with pytest.raises(IndexError):
        merkle_proof([], 0)
