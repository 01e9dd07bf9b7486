"""The node's libp2p identity, derived from its 32-byte Ed25519 seed.

The seed is the same one a PyNaCl ``SigningKey`` takes, so the node key and
the libp2p key are one key, and the peer id can be computed offline (the
testnet launcher writes bootstrap multiaddrs before any node starts).
"""

from __future__ import annotations

import multihash
from libp2p.crypto.ed25519 import Ed25519PublicKey, create_new_key_pair
from libp2p.crypto.keys import KeyPair
from libp2p.peer.id import ID

from p2p.errors import InvalidConfig, InvalidPeerId


def key_pair_from_seed(seed: bytes) -> KeyPair:
    if not isinstance(seed, bytes) or len(seed) != 32:
        raise InvalidConfig("identity_seed", seed, "must be 32 bytes")
    # An empty seed would make libp2p generate a random key; length is checked
    # above, so this is always the deterministic path.
    return create_new_key_pair(seed)


def peer_id_from_seed(seed: bytes) -> str:
    """Base58 peer id of the host that ``P2PConfig(identity_seed=seed)`` runs."""
    return ID.from_pubkey(key_pair_from_seed(seed).public_key).to_base58()


def peer_id_from_public_key(public_key: bytes) -> str:
    """Base58 peer id of the node whose 32-byte Ed25519 public key this is
    (a validator's consensus key is its node key, so its peer id follows)."""
    if not isinstance(public_key, bytes) or len(public_key) != 32:
        raise InvalidConfig("public_key", public_key, "must be 32 bytes")
    return ID.from_pubkey(Ed25519PublicKey.from_bytes(public_key)).to_base58()


def parse_peer_id(peer_id: str) -> ID:
    """Decode a base58 peer id, rejecting strings that are not a multihash."""
    if not isinstance(peer_id, str) or not peer_id:
        raise InvalidPeerId(str(peer_id), "must be a non-empty string")
    try:
        pid = ID.from_base58(peer_id)
        multihash.decode(pid.to_bytes())
    except Exception as exc:  # base58/multihash errors have no common base
        raise InvalidPeerId(peer_id, str(exc)) from exc
    if pid.to_base58() != peer_id:
        raise InvalidPeerId(peer_id, "not in canonical base58 form")
    return pid
