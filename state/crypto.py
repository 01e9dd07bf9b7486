"""Ed25519 keys, addresses and domain-separated digests.

An address is the first 20 bytes of SHA-256 of the public key.  Its text form
is bech32 with the human-readable part ``qnx`` (``qnx1...``): checksummed, so a
mistyped address is refused rather than burned.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import NewType

import bech32
import nacl.exceptions
import nacl.signing

from state.errors import InvalidKey

Address = NewType("Address", bytes)
Hash = NewType("Hash", bytes)

ADDRESS_HRP = "qnx"
ADDRESS_LEN = 20
PUBKEY_LEN = 32
SIGNATURE_LEN = 64
SEED_LEN = 32
HASH_LEN = 32

# Domains keep a signature for one purpose from being valid for another.
DOMAIN_TX = b"QENEX/tx/v1"
DOMAIN_VOTE = b"QENEX/vote/v1"
DOMAIN_PROPOSAL = b"QENEX/proposal/v1"


def sha256(data: bytes) -> Hash:
    return Hash(hashlib.sha256(data).digest())


def domain_digest(domain: bytes, payload: bytes) -> Hash:
    """SHA-256 over a length-prefixed domain tag and the payload."""
    return sha256(len(domain).to_bytes(1, "big") + domain + payload)


def address_of(pubkey: bytes) -> Address:
    if len(pubkey) != PUBKEY_LEN:
        raise InvalidKey(f"public key must be {PUBKEY_LEN} bytes, got {len(pubkey)}")
    return Address(sha256(pubkey)[:ADDRESS_LEN])


def address_to_text(address: bytes) -> str:
    if len(address) != ADDRESS_LEN:
        raise InvalidKey(f"address must be {ADDRESS_LEN} bytes, got {len(address)}")
    data = bech32.convertbits(address, 8, 5)
    return bech32.bech32_encode(ADDRESS_HRP, data)


def address_from_text(text: str) -> Address:
    hrp, data = bech32.bech32_decode(text.strip())
    if hrp is None or data is None:
        raise InvalidKey(f"{text!r} is not a valid bech32 address (bad checksum or characters)")
    if hrp != ADDRESS_HRP:
        raise InvalidKey(f"address {text!r} has prefix {hrp!r}, expected {ADDRESS_HRP!r}")
    raw = bech32.convertbits(data, 5, 8, False)
    if raw is None or len(raw) != ADDRESS_LEN:
        raise InvalidKey(f"address {text!r} does not hold {ADDRESS_LEN} bytes")
    return Address(bytes(raw))


def verify(pubkey: bytes, message: bytes, signature: bytes) -> bool:
    """True when ``signature`` is ``pubkey``'s Ed25519 signature of ``message``."""
    if len(pubkey) != PUBKEY_LEN or len(signature) != SIGNATURE_LEN:
        return False
    try:
        nacl.signing.VerifyKey(pubkey).verify(message, signature)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, nacl.exceptions.TypeError):
        return False
    return True


@dataclass(frozen=True)
class PrivateKey:
    """An Ed25519 signing key.  Signatures are deterministic (RFC 8032)."""

    seed: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.seed) != SEED_LEN:
            raise InvalidKey(f"seed must be {SEED_LEN} bytes, got {len(self.seed)}")
        object.__setattr__(self, "_signing", nacl.signing.SigningKey(self.seed))

    @classmethod
    def generate(cls) -> "PrivateKey":
        return cls(bytes(nacl.signing.SigningKey.generate()))

    @property
    def public_key(self) -> bytes:
        return bytes(self._signing.verify_key)  # type: ignore[attr-defined]

    @property
    def address(self) -> Address:
        return address_of(self.public_key)

    def sign(self, message: bytes) -> bytes:
        return self._signing.sign(message).signature  # type: ignore[attr-defined]
