"""What the engine signs, and the signer it signs through.

The engine never signs a bare digest: it asks its ``ConsensusSigner`` with a
typed ``SignRequest`` (phase, height, view, the block hash the slot commits
to, the exact digest, and the small inputs the digest is computed from: a
proposal's ``sha256(block)``, a NEW-VIEW's view-change hashes, a VIEW-CHANGE's
prepared summary).  ``derive_digest`` recomputes the digest from those fields
with the ``consensus.messages`` functions, so a signer that holds the key
signs only what it re-derived: a request can never be a bare digest wearing a
slot's label (a COMMIT called a PROPOSAL, a transaction called a VIEW-CHANGE).
Consensus digests are in the vote and proposal domains
(``state.crypto.domain_digest``), transactions in the tx domain, so no
consensus request can produce a transaction signature.  A signer may refuse (slashing protection says the
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

from consensus.messages import (
    VoteKind,
    new_view_digest_of,
    proposal_digest_of,
    view_change_digest_of,
    view_change_hashes,
    vote_digest,
)
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
    digest: bytes  # the exact bytes signed: must equal derive_digest(chain_id, self)
    block_sha: bytes | None = None  # PROPOSAL: sha256 of the proposed block's bytes
    view_changes: tuple[bytes, ...] | None = None  # NEW-VIEW: sha256 of each view change it carries
    prepared: tuple[int, bytes] | None = None  # VIEW-CHANGE: (view, block hash) of its certificate, or None

    @classmethod
    def vote(cls, chain_id: str, kind: VoteKind, height: int, view: int, block_hash: bytes) -> "SignRequest":
        phase = Phase.PREPARE if kind == VoteKind.PREPARE else Phase.COMMIT
        return cls(height, view, phase, block_hash, vote_digest(chain_id, kind, height, view, block_hash))

    @classmethod
    def proposal(cls, chain_id: str, height: int, view: int, block_hash: bytes, block: bytes) -> "SignRequest":
        block_sha = bytes(sha256(block))
        return cls(height, view, Phase.PROPOSAL, block_hash,
                   proposal_digest_of(chain_id, height, view, block_hash, block_sha), block_sha=block_sha)

    @classmethod
    def new_view(cls, chain_id: str, height: int, view: int, block_hash: bytes,
                 view_changes: tuple[Any, ...]) -> "SignRequest":
        hashes = view_change_hashes(view_changes)
        return cls(height, view, Phase.PROPOSAL, block_hash,
                   new_view_digest_of(chain_id, height, view, block_hash, hashes), view_changes=hashes)

    @classmethod
    def view_change(cls, chain_id: str, height: int, new_view: int, prepared: Any) -> "SignRequest":
        summary = None if prepared is None else (prepared.view, bytes(prepared.block_hash))
        return cls(height, new_view, Phase.VIEW_CHANGE, view_change_summary_hash(prepared),
                   view_change_digest_of(chain_id, height, new_view, summary), prepared=summary)

    def describe(self) -> str:
        return f"{self.phase.name} at (height {self.height}, view {self.view}) for 0x{self.block_hash.hex()[:16]}"


class DigestMismatch(ValueError):
    """A sign request's digest is not the one its own fields derive (or its fields do not fit its phase)."""


def derive_digest(chain_id: str, request: SignRequest) -> bytes:
    """The digest ``request`` describes, recomputed from its fields; raise DigestMismatch if they do not fit."""
    phase = request.phase
    present = {name for name in ("block_sha", "view_changes", "prepared") if getattr(request, name) is not None}
    allowed = {Phase.PREPARE: set(), Phase.COMMIT: set(), Phase.VIEW_CHANGE: {"prepared"},
               Phase.PROPOSAL: {"view_changes"} if request.view_changes is not None else {"block_sha"}}.get(phase)
    if allowed is None:
        raise DigestMismatch(f"phase {phase.name} is not signable")
    if present - allowed:
        raise DigestMismatch(f"a {phase.name} request carries {', '.join(sorted(present - allowed))}")
    if phase in (Phase.PREPARE, Phase.COMMIT):
        kind = VoteKind.PREPARE if phase == Phase.PREPARE else VoteKind.COMMIT
        return vote_digest(chain_id, kind, request.height, request.view, request.block_hash)
    if phase == Phase.VIEW_CHANGE:
        summary = request.prepared
        if view_change_summary_hash(None if summary is None else _Summary(*summary)) != request.block_hash:
            raise DigestMismatch("a VIEW_CHANGE request's block hash is not the hash of its prepared summary")
        return view_change_digest_of(chain_id, request.height, request.view, summary)
    if request.view_changes is not None:  # a NEW-VIEW
        return new_view_digest_of(chain_id, request.height, request.view, request.block_hash, request.view_changes)
    if request.block_sha is None:
        raise DigestMismatch("a PROPOSAL request carries neither block_sha nor view_changes")
    return proposal_digest_of(chain_id, request.height, request.view, request.block_hash, request.block_sha)


def check_digest(chain_id: str, request: SignRequest) -> bytes:
    """``request.digest`` if its fields derive it; else raise DigestMismatch."""
    derived = derive_digest(chain_id, request)
    if derived != request.digest:
        raise DigestMismatch(f"the digest of {request.describe()} is not the one its fields derive")
    return derived


@dataclass(frozen=True, slots=True)
class _Summary:
    view: int
    block_hash: bytes


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
