"""Consensus messages, their canonical wire form and their signatures.

Every message is a fixed-order array ``[type, version, ...fields]`` encoded
with ``state.codec``; nested messages (the votes in a certificate, the view
changes in a NEW-VIEW) use the same array form.  Decoding checks types,
lengths, ranges and canonical ordering, and raises ``InvalidMessage``;
whether signatures are right and signers are validators is checked against a
validator set by ``verify`` methods (certificates) and the engine.

What is signed is ``domain_digest(domain, encode([chain_id, type, ...]))``,
so a signature is bound to one chain and one purpose:

* PROPOSAL (proposal domain): ``[chain_id, 1, height, view, block_hash,
  sha256(block)]``; the block digest keeps a relaying peer from swapping the
  block bytes under a valid signature.
* VOTE (vote domain): ``[chain_id, 2, kind, height, view, block_hash]``; the
  signatures in a commit certificate are COMMIT votes.
* VIEW-CHANGE (vote domain): ``[chain_id, 3, height, new_view, prepared]``
  with ``prepared`` null or ``[view, block_hash]`` of the carried certificate.
* NEW-VIEW (proposal domain): ``[chain_id, 4, height, view, block_hash,
  [sha256(view_change) ...]]``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Union

import state.codec as codec
from state.crypto import (
    ADDRESS_LEN,
    DOMAIN_PROPOSAL,
    DOMAIN_VOTE,
    HASH_LEN,
    SIGNATURE_LEN,
    PrivateKey,
    domain_digest,
    sha256,
    verify,
)
from state.errors import DecodeError, EncodeError

from consensus.errors import InvalidCertificate, InvalidMessage
from state.validators import MAX_VALIDATORS, ValidatorSet

MESSAGE_VERSION = 1
MAX_HEIGHT = 2**63 - 1
MAX_VIEW = 2**32 - 1
MAX_BLOCK_BYTES = codec.DEFAULT_MAX_BYTES
# One block plus signatures: a VIEW-CHANGE carries its certificate's block, a
# NEW-VIEW its proposal's (the certificates inside it go without bytes).
MAX_MESSAGE_BYTES = MAX_BLOCK_BYTES + 1024 * 1024


class MessageType(IntEnum):
    PROPOSAL = 1
    VOTE = 2
    VIEW_CHANGE = 3
    NEW_VIEW = 4
    PREPARED_CERTIFICATE = 5
    COMMIT_CERTIFICATE = 6
    EVIDENCE = 7


class VoteKind(IntEnum):
    PREPARE = 1
    COMMIT = 2


# -- what gets signed ----------------------------------------------------------


def proposal_digest(chain_id: str, height: int, view: int, block_hash: bytes, block: bytes) -> bytes:
    return proposal_digest_of(chain_id, height, view, block_hash, bytes(sha256(block)))


def proposal_digest_of(chain_id: str, height: int, view: int, block_hash: bytes, block_sha: bytes) -> bytes:
    """``proposal_digest`` from ``sha256(block)`` (what a remote signer is sent instead of the block)."""
    payload = [chain_id, MessageType.PROPOSAL.value, height, view, block_hash, block_sha]
    return bytes(domain_digest(DOMAIN_PROPOSAL, codec.encode(payload)))


def vote_digest(chain_id: str, kind: VoteKind, height: int, view: int, block_hash: bytes) -> bytes:
    payload = [chain_id, MessageType.VOTE.value, int(kind), height, view, block_hash]
    return bytes(domain_digest(DOMAIN_VOTE, codec.encode(payload)))


def view_change_digest(chain_id: str, height: int, new_view: int, prepared: "PreparedCertificate | None") -> bytes:
    summary = None if prepared is None else (prepared.view, prepared.block_hash)
    return view_change_digest_of(chain_id, height, new_view, summary)


def view_change_digest_of(chain_id: str, height: int, new_view: int, summary: tuple[int, bytes] | None) -> bytes:
    """``view_change_digest`` from the prepared summary ``(view, block_hash)`` or None."""
    payload = [chain_id, MessageType.VIEW_CHANGE.value, height, new_view,
               None if summary is None else [summary[0], summary[1]]]
    return bytes(domain_digest(DOMAIN_VOTE, codec.encode(payload)))


def view_change_hashes(view_changes: tuple["ViewChange", ...]) -> tuple[bytes, ...]:
    """What a NEW-VIEW signature covers of its view changes: the hash of each one's encoding."""
    return tuple(bytes(sha256(vc.encode())) for vc in view_changes)


def new_view_digest(
    chain_id: str, height: int, view: int, block_hash: bytes, view_changes: tuple["ViewChange", ...]
) -> bytes:
    return new_view_digest_of(chain_id, height, view, block_hash, view_change_hashes(view_changes))


def new_view_digest_of(chain_id: str, height: int, view: int, block_hash: bytes,
                       hashes: tuple[bytes, ...]) -> bytes:
    """``new_view_digest`` from the view changes' hashes (``view_change_hashes``)."""
    payload = [chain_id, MessageType.NEW_VIEW.value, height, view, block_hash, list(hashes)]
    return bytes(domain_digest(DOMAIN_PROPOSAL, codec.encode(payload)))


# -- messages --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Proposal:
    """PRE-PREPARE: the primary of (height, view) proposes a block."""

    height: int
    view: int
    block: bytes
    block_hash: bytes
    proposer: bytes
    signature: bytes

    @classmethod
    def create(cls, key: PrivateKey, chain_id: str, height: int, view: int, block: bytes,
               block_hash: bytes) -> "Proposal":
        sig = key.sign(proposal_digest(chain_id, height, view, block_hash, block))
        return cls(height, view, block, block_hash, bytes(key.address), sig)

    @property
    def signer(self) -> bytes:
        return self.proposer

    def digest(self, chain_id: str) -> bytes:
        return proposal_digest(chain_id, self.height, self.view, self.block_hash, self.block)

    def to_wire(self) -> list[Any]:
        return [MessageType.PROPOSAL.value, MESSAGE_VERSION, self.height, self.view, self.block,
                self.block_hash, self.proposer, self.signature]

    def encode(self) -> bytes:
        return _encode(self)


@dataclass(frozen=True, slots=True)
class Vote:
    """PREPARE or COMMIT for a block hash at (height, view)."""

    kind: VoteKind
    height: int
    view: int
    block_hash: bytes
    validator: bytes
    signature: bytes

    @classmethod
    def create(cls, key: PrivateKey, chain_id: str, kind: VoteKind, height: int, view: int,
               block_hash: bytes) -> "Vote":
        sig = key.sign(vote_digest(chain_id, kind, height, view, block_hash))
        return cls(VoteKind(kind), height, view, block_hash, bytes(key.address), sig)

    @property
    def signer(self) -> bytes:
        return self.validator

    def digest(self, chain_id: str) -> bytes:
        return vote_digest(chain_id, self.kind, self.height, self.view, self.block_hash)

    def to_wire(self) -> list[Any]:
        return [MessageType.VOTE.value, MESSAGE_VERSION, int(self.kind), self.height, self.view,
                self.block_hash, self.validator, self.signature]

    def encode(self) -> bytes:
        return _encode(self)


@dataclass(frozen=True, slots=True)
class PreparedCertificate:
    """PREPAREs from more than 2/3 of power for one block at (height, view).

    ``block`` may be empty: the prepares certify the hash only, so a NEW-VIEW
    strips the bytes from the certificates it carries (its proposal holds the
    one block that matters) to stay one block in size.
    """

    height: int
    view: int
    block: bytes
    block_hash: bytes
    prepares: tuple[Vote, ...]

    def without_block(self) -> "PreparedCertificate":
        return PreparedCertificate(self.height, self.view, b"", self.block_hash, self.prepares)

    def to_wire(self) -> list[Any]:
        return [MessageType.PREPARED_CERTIFICATE.value, MESSAGE_VERSION, self.height, self.view, self.block,
                self.block_hash, [v.to_wire() for v in self.prepares]]

    def encode(self) -> bytes:
        return _encode(self)

    def verify(self, chain_id: str, validator_set: ValidatorSet) -> None:
        """Raise InvalidCertificate unless >2/3 of power PREPAREd this block."""
        signers = []
        for vote in self.prepares:
            if (vote.kind, vote.height, vote.view, vote.block_hash) != (
                    VoteKind.PREPARE, self.height, self.view, self.block_hash):
                raise InvalidCertificate(
                    f"prepared certificate for ({self.height}, {self.view}) holds a vote for "
                    f"({vote.kind.name}, {vote.height}, {vote.view}, {vote.block_hash.hex()[:16]})")
            signers.append((vote.validator, vote.signature))
        _verify_quorum("prepared certificate", chain_id, validator_set, signers,
                       vote_digest(chain_id, VoteKind.PREPARE, self.height, self.view, self.block_hash))


@dataclass(frozen=True, slots=True)
class ViewChange:
    """VIEW-CHANGE: the validator leaves for ``new_view`` carrying its highest prepared certificate."""

    height: int
    new_view: int
    prepared: PreparedCertificate | None
    validator: bytes
    signature: bytes

    @classmethod
    def create(cls, key: PrivateKey, chain_id: str, height: int, new_view: int,
               prepared: PreparedCertificate | None) -> "ViewChange":
        sig = key.sign(view_change_digest(chain_id, height, new_view, prepared))
        return cls(height, new_view, prepared, bytes(key.address), sig)

    @property
    def signer(self) -> bytes:
        return self.validator

    def digest(self, chain_id: str) -> bytes:
        return view_change_digest(chain_id, self.height, self.new_view, self.prepared)

    def without_block(self) -> "ViewChange":
        """The same signed view change, its certificate's block bytes left out."""
        if self.prepared is None or not self.prepared.block:
            return self
        return ViewChange(self.height, self.new_view, self.prepared.without_block(), self.validator, self.signature)

    def to_wire(self) -> list[Any]:
        prepared = None if self.prepared is None else self.prepared.to_wire()
        return [MessageType.VIEW_CHANGE.value, MESSAGE_VERSION, self.height, self.new_view, prepared,
                self.validator, self.signature]

    def encode(self) -> bytes:
        return _encode(self)


@dataclass(frozen=True, slots=True)
class NewView:
    """NEW-VIEW: the primary of ``view`` proves a quorum moved there and proposes."""

    height: int
    view: int
    view_changes: tuple[ViewChange, ...]
    proposal: Proposal
    signature: bytes

    @classmethod
    def create(cls, key: PrivateKey, chain_id: str, view_changes: tuple[ViewChange, ...],
               proposal: Proposal) -> "NewView":
        sig = key.sign(new_view_digest(chain_id, proposal.height, proposal.view, proposal.block_hash, view_changes))
        return cls(proposal.height, proposal.view, view_changes, proposal, sig)

    @property
    def signer(self) -> bytes:
        return self.proposal.proposer

    def digest(self, chain_id: str) -> bytes:
        return new_view_digest(chain_id, self.height, self.view, self.proposal.block_hash, self.view_changes)

    def to_wire(self) -> list[Any]:
        return [MessageType.NEW_VIEW.value, MESSAGE_VERSION, self.height, self.view,
                [vc.to_wire() for vc in self.view_changes], self.proposal.to_wire(), self.signature]

    def encode(self) -> bytes:
        return _encode(self)


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """COMMIT signatures from more than 2/3 of power: the proof a block is final.

    ``signatures`` are ``(validator_address, signature)`` pairs in address
    order; each signature is that validator's COMMIT vote signature.
    """

    height: int
    view: int
    block_hash: bytes
    signatures: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def from_votes(cls, height: int, view: int, block_hash: bytes, votes: "list[Vote] | tuple[Vote, ...]") -> "CommitCertificate":
        pairs = sorted({(v.validator, v.signature) for v in votes})
        return cls(height, view, block_hash, tuple(pairs))

    def to_wire(self) -> list[Any]:
        return [MessageType.COMMIT_CERTIFICATE.value, MESSAGE_VERSION, self.height, self.view,
                self.block_hash, [[a, s] for a, s in self.signatures]]

    def encode(self) -> bytes:
        return _encode(self)

    @classmethod
    def decode(cls, data: bytes) -> "CommitCertificate":
        message = decode_message(data)
        if not isinstance(message, CommitCertificate):
            raise InvalidMessage(f"expected a commit certificate, got {type(message).__name__}")
        return message

    def verify(self, chain_id: str, validator_set: ValidatorSet) -> None:
        """Raise InvalidCertificate unless >2/3 of power signed COMMIT for this block."""
        _verify_quorum("commit certificate", chain_id, validator_set, list(self.signatures),
                       vote_digest(chain_id, VoteKind.COMMIT, self.height, self.view, self.block_hash))


@dataclass(frozen=True, slots=True)
class Evidence:
    """Two different signed votes by one validator for one (kind, height, view).

    Canonical order: ``vote_a.block_hash < vote_b.block_hash``.
    """

    vote_a: Vote
    vote_b: Vote

    @classmethod
    def of(cls, first: Vote, second: Vote) -> "Evidence":
        a, b = sorted((first, second), key=lambda v: v.block_hash)
        return cls(a, b)

    @property
    def validator(self) -> bytes:
        return self.vote_a.validator

    @property
    def height(self) -> int:
        return self.vote_a.height

    def to_wire(self) -> list[Any]:
        return [MessageType.EVIDENCE.value, MESSAGE_VERSION, self.vote_a.to_wire(), self.vote_b.to_wire()]

    def encode(self) -> bytes:
        return _encode(self)

    def verify(self, chain_id: str, validator_set: ValidatorSet) -> None:
        """Raise InvalidMessage unless this proves equivocation by a member of the set."""
        _check_evidence_shape(self.vote_a, self.vote_b)
        member = validator_set.get(self.vote_a.validator)
        if member is None:
            raise InvalidMessage(f"evidence against {self.vote_a.validator.hex()}, not a validator")
        for vote in (self.vote_a, self.vote_b):
            if not verify(member.pubkey, vote.digest(chain_id), vote.signature):
                raise InvalidMessage(f"evidence vote for {vote.block_hash.hex()[:16]} has a bad signature")


Message = Union[Proposal, Vote, PreparedCertificate, ViewChange, NewView, CommitCertificate, Evidence]


def _verify_quorum(what: str, chain_id: str, validator_set: ValidatorSet,
                   signers: list[tuple[bytes, bytes]], digest: bytes) -> None:
    seen: set[bytes] = set()
    power = 0
    for address, signature in signers:
        if address in seen:
            raise InvalidCertificate(f"{what} counts validator {address.hex()} twice")
        seen.add(address)
        member = validator_set.get(address)
        if member is None:
            raise InvalidCertificate(f"{what} is signed by {address.hex()}, not a validator")
        if not verify(member.pubkey, digest, signature):
            raise InvalidCertificate(f"{what} has a bad signature from {address.hex()}")
        power += member.power
    if not validator_set.has_quorum(power):
        raise InvalidCertificate(
            f"{what} carries power {power}, needs {validator_set.quorum_power} of {validator_set.total_power}")


def _encode(message: Message) -> bytes:
    try:
        return codec.encode(message.to_wire())
    except EncodeError as exc:
        raise InvalidMessage(f"{type(message).__name__} is not encodable: {exc}") from exc


# -- decoding ---------------------------------------------------------------------


# Decode limits per message type: (max bytes, max depth), and objects at most
# 64 + bytes // 8 (every vote carries 118 bytes of hash, address and
# signature in 9 objects; a certificate's pairs 89 bytes in 3).  A VOTE is
# 140 bytes; only messages that carry a block may be large.
_VOTE_BYTES = 192
MAX_COMMIT_CERTIFICATE_BYTES = 128 + MAX_VALIDATORS * 96  # block sync sizes its responses by it
_LIMITS: dict[int, tuple[int, int]] = {
    MessageType.VOTE: (_VOTE_BYTES, 1),
    MessageType.EVIDENCE: (2 * _VOTE_BYTES + 16, 2),
    MessageType.COMMIT_CERTIFICATE: (MAX_COMMIT_CERTIFICATE_BYTES, 3),
    MessageType.PROPOSAL: (MAX_BLOCK_BYTES + 256, 1),
    MessageType.PREPARED_CERTIFICATE: (MAX_MESSAGE_BYTES, 3),
    MessageType.VIEW_CHANGE: (MAX_MESSAGE_BYTES, 4),
    MessageType.NEW_VIEW: (MAX_MESSAGE_BYTES, 6),
}


def message_limits(data: bytes) -> tuple[int, int, int]:
    """(max bytes, max objects, max depth) for ``data``, by the type in its
    first two bytes (``[type, version, ...]`` is a fixarray then a fixint);
    anything else gets a vote's limits, so garbage is refused cheaply."""
    kind = data[1] if len(data) >= 2 and 0x92 <= data[0] <= 0x9F else 0
    max_bytes, max_depth = _LIMITS.get(kind, (_VOTE_BYTES, 1))
    return max_bytes, 64 + min(len(data), max_bytes) // 8, max_depth


def decode_message(data: bytes) -> Message:
    """Decode one canonical message; raise InvalidMessage on anything else
    (chained from a DecodeLimitExceeded when the bytes are over its type's
    limits, before anything is built)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidMessage(f"expected bytes, got {type(data).__name__}")
    max_bytes, max_objects, max_depth = message_limits(data)
    try:
        obj = codec.decode(data, max_bytes=max_bytes, max_objects=max_objects, max_depth=max_depth)
    except DecodeError as exc:
        raise InvalidMessage(f"undecodable message: {exc}") from exc
    return _from_wire(obj, None)


def _from_wire(obj: Any, expected: MessageType | None) -> Any:
    if not isinstance(obj, list) or len(obj) < 2:
        raise InvalidMessage("message is not an array [type, version, ...]")
    kind, version = obj[0], obj[1]
    if not _is_int(kind) or kind not in MessageType._value2member_map_:
        raise InvalidMessage(f"unknown message type {kind!r}")
    kind = MessageType(kind)
    if expected is not None and kind != expected:
        raise InvalidMessage(f"expected a {expected.name} here, got {kind.name}")
    if not _is_int(version) or version != MESSAGE_VERSION:
        raise InvalidMessage(f"{kind.name} has unsupported version {version!r}")
    fields = obj[2:]
    decoder, arity = _DECODERS[kind]
    if len(fields) != arity:
        raise InvalidMessage(f"{kind.name} has {len(fields)} fields, expected {arity}")
    return decoder(fields)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int(value: Any, name: str, high: int, low: int = 0) -> int:
    if not _is_int(value) or not low <= value <= high:
        raise InvalidMessage(f"{name} {value!r} is not an integer in [{low}, {high}]")
    return value


def _fixed(value: Any, name: str, length: int) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise InvalidMessage(f"{name} is not {length} bytes")
    return value


def _list(value: Any, name: str, high: int, low: int = 0) -> list[Any]:
    if not isinstance(value, list) or not low <= len(value) <= high:
        raise InvalidMessage(f"{name} is not a list of {low} to {high} items")
    return value


def _block(value: Any, *, optional: bool = False) -> bytes:
    low = 0 if optional else 1
    if not isinstance(value, bytes) or not low <= len(value) <= MAX_BLOCK_BYTES:
        raise InvalidMessage(f"block is not {low} to {MAX_BLOCK_BYTES} bytes")
    return value


def _decode_proposal(f: list[Any]) -> Proposal:
    return Proposal(
        height=_int(f[0], "height", MAX_HEIGHT),
        view=_int(f[1], "view", MAX_VIEW),
        block=_block(f[2]),
        block_hash=_fixed(f[3], "block hash", HASH_LEN),
        proposer=_fixed(f[4], "proposer", ADDRESS_LEN),
        signature=_fixed(f[5], "signature", SIGNATURE_LEN),
    )


def _decode_vote(f: list[Any]) -> Vote:
    kind = f[0]
    if not _is_int(kind) or kind not in VoteKind._value2member_map_:
        raise InvalidMessage(f"unknown vote kind {kind!r}")
    return Vote(
        kind=VoteKind(kind),
        height=_int(f[1], "height", MAX_HEIGHT),
        view=_int(f[2], "view", MAX_VIEW),
        block_hash=_fixed(f[3], "block hash", HASH_LEN),
        validator=_fixed(f[4], "validator", ADDRESS_LEN),
        signature=_fixed(f[5], "signature", SIGNATURE_LEN),
    )


def _ascending(addresses: list[bytes], what: str) -> None:
    for a, b in zip(addresses, addresses[1:]):
        if a >= b:
            raise InvalidMessage(f"{what} are not in strictly ascending address order")


def _decode_prepared(f: list[Any]) -> PreparedCertificate:
    cert = PreparedCertificate(
        height=_int(f[0], "height", MAX_HEIGHT),
        view=_int(f[1], "view", MAX_VIEW),
        block=_block(f[2], optional=True),
        block_hash=_fixed(f[3], "block hash", HASH_LEN),
        prepares=tuple(_from_wire(v, MessageType.VOTE) for v in _list(f[4], "prepares", MAX_VALIDATORS, 1)),
    )
    for vote in cert.prepares:
        if (vote.kind, vote.height, vote.view, vote.block_hash) != (
                VoteKind.PREPARE, cert.height, cert.view, cert.block_hash):
            raise InvalidMessage("prepared certificate holds a vote for something else")
    _ascending([v.validator for v in cert.prepares], "prepares")
    return cert


def _decode_view_change(f: list[Any]) -> ViewChange:
    height = _int(f[0], "height", MAX_HEIGHT)
    new_view = _int(f[1], "new view", MAX_VIEW, 1)
    prepared = None if f[2] is None else _from_wire(f[2], MessageType.PREPARED_CERTIFICATE)
    if prepared is not None and (prepared.height != height or prepared.view >= new_view):
        raise InvalidMessage(
            f"view change to ({height}, {new_view}) carries a certificate for ({prepared.height}, {prepared.view})")
    return ViewChange(height, new_view, prepared, _fixed(f[3], "validator", ADDRESS_LEN),
                      _fixed(f[4], "signature", SIGNATURE_LEN))


def _decode_new_view(f: list[Any]) -> NewView:
    height = _int(f[0], "height", MAX_HEIGHT)
    view = _int(f[1], "view", MAX_VIEW, 1)
    changes = tuple(_from_wire(vc, MessageType.VIEW_CHANGE) for vc in _list(f[2], "view changes", MAX_VALIDATORS, 1))
    for vc in changes:
        if (vc.height, vc.new_view) != (height, view):
            raise InvalidMessage(f"new view ({height}, {view}) holds a view change to ({vc.height}, {vc.new_view})")
    _ascending([vc.validator for vc in changes], "view changes")
    proposal = _from_wire(f[3], MessageType.PROPOSAL)
    if (proposal.height, proposal.view) != (height, view):
        raise InvalidMessage(f"new view ({height}, {view}) carries a proposal for ({proposal.height}, {proposal.view})")
    return NewView(height, view, changes, proposal, _fixed(f[4], "signature", SIGNATURE_LEN))


def _decode_commit_certificate(f: list[Any]) -> CommitCertificate:
    pairs = []
    for pair in _list(f[3], "signatures", MAX_VALIDATORS, 1):
        if not isinstance(pair, list) or len(pair) != 2:
            raise InvalidMessage("certificate signature is not [address, signature]")
        pairs.append((_fixed(pair[0], "validator", ADDRESS_LEN), _fixed(pair[1], "signature", SIGNATURE_LEN)))
    _ascending([a for a, _ in pairs], "certificate signatures")
    return CommitCertificate(_int(f[0], "height", MAX_HEIGHT), _int(f[1], "view", MAX_VIEW),
                             _fixed(f[2], "block hash", HASH_LEN), tuple(pairs))


def _check_evidence_shape(a: Vote, b: Vote) -> None:
    if (a.kind, a.height, a.view, a.validator) != (b.kind, b.height, b.view, b.validator):
        raise InvalidMessage("evidence votes are not by one validator for one (kind, height, view)")
    if not a.block_hash < b.block_hash:
        raise InvalidMessage("evidence votes are not for two different hashes in ascending order")


def _decode_evidence(f: list[Any]) -> Evidence:
    a = _from_wire(f[0], MessageType.VOTE)
    b = _from_wire(f[1], MessageType.VOTE)
    _check_evidence_shape(a, b)
    return Evidence(a, b)


_DECODERS: dict[MessageType, tuple[Any, int]] = {
    MessageType.PROPOSAL: (_decode_proposal, 6),
    MessageType.VOTE: (_decode_vote, 6),
    MessageType.PREPARED_CERTIFICATE: (_decode_prepared, 5),
    MessageType.VIEW_CHANGE: (_decode_view_change, 5),
    MessageType.NEW_VIEW: (_decode_new_view, 5),
    MessageType.COMMIT_CERTIFICATE: (_decode_commit_certificate, 4),
    MessageType.EVIDENCE: (_decode_evidence, 2),
}
