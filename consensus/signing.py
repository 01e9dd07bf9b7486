"""What the engine signs, and the signer it signs through.

The engine never signs a bare digest: it asks its ``ConsensusSigner`` with a
typed ``SignRequest`` (phase, height, view, the block hash the slot commits
to, and the exact digest).  A signer may refuse (slashing protection says the
request would equivocate, or a remote signer cannot be reached): it returns
None and the engine sends nothing for that slot, as if it had not voted.  It
keeps following the chain on the others' votes.

``KeySigner`` wraps a bare ``PrivateKey`` (tests, simulations): it signs
everything.  The node's signers (``node.signer``) check a persisted
slashing-protection record *before* signing.  Signatures are deterministic
(Ed25519), so a re-sign of one request yields the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Protocol, runtime_checkable

from state.codec import encode
from state.crypto import Address, PrivateKey, sha256


class Phase(IntEnum):
    """Phases in one view, in the order an honest engine signs them."""

    NONE = -1
    VIEW_CHANGE = 0
    PROPOSAL = 1  # and NEW-VIEW
    PREPARE = 2
    COMMIT = 3


@dataclass(frozen=True, slots=True)
class SignRequest:
    height: int
    view: int
    phase: Phase
    block_hash: bytes  # what the slot commits to (for a VIEW-CHANGE: a hash of its prepared summary)
    digest: bytes  # the exact bytes signed

    def describe(self) -> str:
        return f"{self.phase.name} at (height {self.height}, view {self.view}) for 0x{self.block_hash.hex()[:16]}"


def view_change_summary_hash(prepared: Any) -> bytes:
    """The "block hash" of a VIEW-CHANGE slot: a hash of its prepared summary (view, block hash) or of None."""
    summary = None if prepared is None else [prepared.view, prepared.block_hash]
    return bytes(sha256(encode(summary)))


@runtime_checkable
class ConsensusSigner(Protocol):
    @property
    def address(self) -> Address: ...

    @property
    def public_key(self) -> bytes: ...

    def sign_request(self, request: SignRequest) -> bytes | None:
        """The signature of ``request.digest``, or None: refused or unavailable (nothing is sent)."""
        ...


@dataclass(frozen=True, slots=True)
class KeySigner:
    """A bare key as a signer: signs every request (no slashing protection)."""

    _key: PrivateKey

    @property
    def address(self) -> Address:
        return self._key.address

    @property
    def public_key(self) -> bytes:
        return self._key.public_key

    def sign_request(self, request: SignRequest) -> bytes | None:
        return self._key.sign(request.digest)


def as_signer(signer: PrivateKey | ConsensusSigner | None) -> ConsensusSigner | None:
    if signer is None or hasattr(signer, "sign_request"):
        return signer  # type: ignore[return-value]
    return KeySigner(signer)  # type: ignore[arg-type]
