"""Checking messages against a validator set: signers, signatures, quorums, NEW-VIEW rules.

Each check raises InvalidMessage (or its subclass InvalidCertificate) with the
reason; the engine turns that into PenalizePeer.
"""

from __future__ import annotations

from consensus.errors import ConsensusError, InvalidMessage
from typing import Callable

from consensus.messages import (
    CommitCertificate,
    Evidence,
    NewView,
    PreparedCertificate,
    Proposal,
    ViewChange,
    Vote,
    decode_message,
)
from state.abc import CommitVerifier, Infraction
from state.crypto import verify
from state.errors import InvalidCommit, InvalidEvidence
from state.validators import Validator, ValidatorSet


def check_signed(chain_id: str, vset: ValidatorSet, message: Proposal | Vote | ViewChange) -> Validator:
    """The signer is a validator and the signature is theirs; returns the validator."""
    member = vset.get(message.signer)
    if member is None:
        raise InvalidMessage(f"{type(message).__name__} signed by {message.signer.hex()}, not a validator")
    if not verify(member.pubkey, message.digest(chain_id), message.signature):
        raise InvalidMessage(f"{type(message).__name__} from {message.signer.hex()} has a bad signature")
    return member


def check_proposal(chain_id: str, vset: ValidatorSet, proposal: Proposal) -> None:
    """Signed by the primary of its view."""
    primary = vset.proposer_for(proposal.view).address
    if proposal.proposer != primary:
        raise InvalidMessage(
            f"proposal for ({proposal.height}, {proposal.view}) by {proposal.proposer.hex()}, "
            f"but the primary is {primary.hex()}")
    check_signed(chain_id, vset, proposal)


def check_view_change(chain_id: str, vset: ValidatorSet, vc: ViewChange) -> None:
    check_signed(chain_id, vset, vc)
    cert = vc.prepared
    if cert is not None:
        if cert.height != vc.height or cert.view >= vc.new_view:
            raise InvalidMessage(
                f"view change to ({vc.height}, {vc.new_view}) carries a certificate for ({cert.height}, {cert.view})")
        cert.verify(chain_id, vset)


def highest_certificate(view_changes: tuple[ViewChange, ...] | list[ViewChange]) -> PreparedCertificate | None:
    """The prepared certificate of the highest view (ties: lowest block hash)."""
    best: PreparedCertificate | None = None
    for vc in view_changes:
        cert = vc.prepared
        if cert is not None and (best is None or (cert.view, best.block_hash) > (best.view, cert.block_hash)):
            best = cert
    return best


def check_new_view(chain_id: str, vset: ValidatorSet, nv: NewView) -> PreparedCertificate | None:
    """A valid NEW-VIEW; returns the highest prepared certificate it carries.

    Rules: the primary of ``view`` signed it and its proposal; the view changes
    are valid, distinct, for this (height, view) and hold more than 2/3 of the
    power; if any carries a prepared certificate, the proposal re-proposes the
    block of the highest one.
    """
    if nv.view < 1:
        raise InvalidMessage("new view for view 0")
    proposal = nv.proposal
    if (proposal.height, proposal.view) != (nv.height, nv.view):
        raise InvalidMessage(f"new view ({nv.height}, {nv.view}) carries a proposal for ({proposal.height}, {proposal.view})")
    # The cheap, unforgeable check first: a stranger's NEW-VIEW costs one
    # signature check, never the proposer walk to its view.
    if not _verify_as(vset, nv.signer, nv.digest(chain_id), nv.signature):
        raise InvalidMessage(f"new view ({nv.height}, {nv.view}) from {nv.signer.hex()} is not signed by a validator")
    check_proposal(chain_id, vset, proposal)
    seen: set[bytes] = set()
    for vc in nv.view_changes:
        if (vc.height, vc.new_view) != (nv.height, nv.view):
            raise InvalidMessage(f"new view ({nv.height}, {nv.view}) holds a view change to ({vc.height}, {vc.new_view})")
        if vc.validator in seen:
            raise InvalidMessage(f"new view counts {vc.validator.hex()} twice")
        seen.add(vc.validator)
        check_view_change(chain_id, vset, vc)
    power = vset.power_of(seen)
    if not vset.has_quorum(power):
        raise InvalidMessage(f"new view holds view changes of power {power}, needs {vset.quorum_power}")
    best = highest_certificate(nv.view_changes)
    if best is not None and proposal.block_hash != best.block_hash:
        raise InvalidMessage(
            f"new view proposes {proposal.block_hash.hex()[:16]} but the highest prepared block "
            f"(view {best.view}) is {best.block_hash.hex()[:16]}")
    return best


def _verify_as(vset: ValidatorSet, address: bytes, digest: bytes, signature: bytes) -> bool:
    member = vset.get(address)
    return member is not None and verify(member.pubkey, digest, signature)


def signed_by_member(chain_id: str, vset: ValidatorSet, message: Proposal | Vote | ViewChange | NewView) -> bool:
    """Only the outer signature and membership: no proposer walk, no certificates."""
    return _verify_as(vset, message.signer, message.digest(chain_id), message.signature)


class CertificateVerifier(CommitVerifier):
    """The application's commit verifier (``state.abc.CommitVerifier``): a
    block's ``last_commit``, and a synced block's own certificate, must be a
    ``CommitCertificate`` of exactly that (height, block) with more than 2/3 of
    the set's power in valid COMMIT signatures.  Decoding is bounded by the
    message limits before anything is built; each signer is checked once."""

    def verify_commit(
        self, chain_id: str, validators: ValidatorSet, height: int, block_hash: bytes, commit: bytes
    ) -> None:
        try:
            cert = CommitCertificate.decode(commit)
        except ConsensusError as exc:
            raise InvalidCommit(f"not a commit certificate: {exc}") from exc
        if cert.height != height or cert.block_hash != block_hash:
            raise InvalidCommit(
                f"the certificate is for ({cert.height}, 0x{cert.block_hash.hex()[:16]}), "
                f"not ({height}, 0x{bytes(block_hash).hex()[:16]})")
        try:
            cert.verify(chain_id, validators)
        except ConsensusError as exc:
            raise InvalidCommit(f"the certificate does not verify: {exc}") from exc

    def verify_evidence(
        self, chain_id: str, evidence: bytes, validators_at: Callable[[int], ValidatorSet | None]
    ) -> Infraction:
        """An ``Evidence`` message in its canonical encoding (decoded under the
        EVIDENCE limits, re-encoded to the same bytes), whose two votes verify
        against the set of their height."""
        try:
            message = decode_message(evidence)
        except ConsensusError as exc:
            raise InvalidEvidence(f"not an evidence message: {exc}") from exc
        if not isinstance(message, Evidence):
            raise InvalidEvidence(f"expected evidence, got {type(message).__name__}")
        if message.encode() != evidence:
            # One encoding per proof: the same equivocation cannot enter twice as different bytes.
            raise InvalidEvidence("evidence is not in its canonical encoding (votes ordered by block hash)")
        vset = validators_at(message.height)
        if vset is None:
            raise InvalidEvidence(f"no validator set is known for height {message.height}")
        try:
            message.verify(chain_id, vset)
        except ConsensusError as exc:
            raise InvalidEvidence(str(exc)) from exc
        return Infraction(message.height, bytes(message.validator))

    def commit_signers(self, commit: bytes) -> tuple[bytes, ...]:
        try:
            cert = CommitCertificate.decode(commit)
        except ConsensusError:
            return ()
        return tuple(address for address, _ in cert.signatures)
