"""The node's validator signers: every consensus signature goes through one.

The engine asks a ``consensus.signing.ConsensusSigner`` with a typed
``SignRequest`` (phase, height, view, block hash, digest and the digest's
inputs); the signer re-derives the digest from the inputs
(``consensus.signing.derive_digest``), checks slashing protection *before*
it signs and answers a signature or None.  None
means "no vote": the engine sends nothing for that slot and keeps following
the chain on the others' votes, so a refused or failed sign never crashes the
driver.

* ``LocalSigner``: the node key in the home and the sign-state record
  (``node.signguard``) beside it; the record is fsynced before the signature
  exists.
* ``node.remote_signer.RemoteSigner``: the key and its record live in a
  separate ``qenexd signer start`` process reached over an authenticated,
  encrypted connection.  It never falls back to a local key.  Its record
  knows nothing of a restore of this home, so the node puts it behind
  ``RestoreFloorSigner``: the home's restore floor (``SignGuard.floor``)
  holds for it too.

Every node that has a key runs with a signer, member of the set or not, so
that a node whose key the application adds to the set (``validator create``
then the epoch boundary) proposes and votes from that height without a
restart.  The engine asks only at heights whose set holds the key; the
outermost layer, ``MemberSigner``, refuses anything else before slashing
protection or the key are reached, so a node outside the set signs nothing
even if that ever stopped holding.

Signing stays deterministic (Ed25519): a WAL replay re-derives the same
requests, which the record allows as identical re-signs.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable

from consensus.signing import ConsensusSigner, DigestMismatch, SignRequest, check_digest
from node.signguard import SignGuard, SignGuardError, SignRefused
from state.crypto import Address, PrivateKey, address_to_text

if TYPE_CHECKING:
    from node.audit import AuditLog
    from state.validators import ValidatorSet

log = logging.getLogger("qenex.signer")


def audit_refusal(audit: "AuditLog | None", actor: str, request: SignRequest, exc: Exception,
                  action: str = "sign_refused") -> None:
    """One audit entry for a sign request the record refused (node.audit); never raises."""
    if audit is None:
        return
    params: dict[str, Any] = {"height": request.height, "view": request.view, "phase": request.phase.name.lower(),
                              "block_hash": "0x" + request.block_hash.hex()}
    try:
        audit.append(actor, action, params, {"result": "refused", "reason": str(exc)[:200]})
    except Exception as failure:  # the refusal stands whatever the log does
        log.error("could not audit a sign refusal: %s", failure)


class LocalSigner:
    """The key file in the home, behind the home's sign-state record."""

    def __init__(self, key: PrivateKey, guard: SignGuard, audit: "AuditLog | None" = None) -> None:
        if guard.validator != key.address:
            raise SignGuardError("the sign-state record belongs to another key")
        self._key = key
        self.guard = guard
        self.audit = audit
        self.refusals = 0
        self.failures = 0

    @property
    def address(self) -> Address:
        return self._key.address

    @property
    def public_key(self) -> bytes:
        return self._key.public_key

    def sign_request(self, request: SignRequest) -> bytes | None:
        try:
            digest = check_digest(self.guard.chain_id, request)  # signs only what the fields derive
        except DigestMismatch as exc:
            self.refusals += 1
            log.error("refused to sign a malformed request: %s", exc)
            audit_refusal(self.audit, "consensus", request, exc)
            return None
        try:
            self.guard.approve(request)  # durable before the signature exists
        except SignRefused as exc:
            self.refusals += 1
            log.error("slashing protection refused to sign: %s", exc)
            audit_refusal(self.audit, "consensus", request, exc)
            return None
        except SignGuardError as exc:
            self.failures += 1
            log.critical("cannot record what we sign, so not signing: %s", exc)
            audit_refusal(self.audit, "consensus", request, exc, "sign_record_failed")
            return None
        return self._key.sign(digest)


class _GatedSigner:
    """Another signer behind one more check: ``_problem`` names why a request may not reach it
    (logged, audited and counted, nothing signed), or None to pass it on."""

    def __init__(self, inner: ConsensusSigner, audit: "AuditLog | None" = None) -> None:
        self.inner = inner
        self.audit = audit
        self.refusals = 0

    @property
    def address(self) -> Address:
        return self.inner.address

    @property
    def public_key(self) -> bytes:
        return self.inner.public_key

    def _problem(self, request: SignRequest) -> str | None:
        raise NotImplementedError

    def sign_request(self, request: SignRequest) -> bytes | None:
        problem = self._problem(request)
        if problem is not None:
            self.refusals += 1
            log.error("%s", problem)
            audit_refusal(self.audit, "consensus", request, SignRefused(problem))
            return None
        return self.inner.sign_request(request)

    def close(self) -> None:
        close = getattr(self.inner, "close", None)
        if close is not None:
            close()


class RestoreFloorSigner(_GatedSigner):
    """Another signer behind this home's restore floor: nothing at or below it is even asked for.

    ``LocalSigner`` gets the floor from its guard; a remote signer keeps its own
    record, which a restore of this home never saw."""

    def __init__(self, inner: ConsensusSigner, guard: SignGuard, audit: "AuditLog | None" = None) -> None:
        super().__init__(inner, audit)
        self.guard = guard

    def _problem(self, request: SignRequest) -> str | None:
        problem = self.guard.below_floor(request)
        return None if problem is None else f"slashing protection refused to sign: {problem}"


class MemberSigner(_GatedSigner):
    """Another signer, asked only for heights whose validator set (the application's) holds its key.

    A node runs with a signer whether or not its key is in the set, so that
    it can join at an epoch boundary without a restart; this is the check
    that a node outside the set never signs, whatever asks it.  A refusal
    here writes nothing: the sign-state record and the key are never reached.
    ``validator_set(height)`` is ``Application.validator_set`` (None for a
    height it does not know yet, which is refused too)."""

    def __init__(self, inner: ConsensusSigner, validator_set: "Callable[[int], ValidatorSet | None]",
                 audit: "AuditLog | None" = None) -> None:
        super().__init__(inner, audit)
        self.validator_set = validator_set

    def _problem(self, request: SignRequest) -> str | None:
        vset = self.validator_set(request.height)
        if vset is not None and self.inner.address in vset:
            return None
        return (f"not signing {request.describe()}: {address_to_text(self.inner.address)} is not in the "
                f"validator set of height {request.height}"
                + (" (a height the application does not know yet)" if vset is None else ""))


def node_signer(remote: ConsensusSigner | None, key: PrivateKey, guard: SignGuard,
                audit: "AuditLog | None" = None,
                validator_set: "Callable[[int], ValidatorSet | None] | None" = None) -> ConsensusSigner:
    """The signer a node votes with: its local key behind ``guard``, or ``remote`` behind the
    guard's restore floor (the one composition the runtime uses); with ``validator_set``, behind
    ``MemberSigner`` as well (the runtime always passes the application's)."""
    inner: ConsensusSigner = RestoreFloorSigner(remote, guard, audit) if remote is not None else LocalSigner(
        key, guard, audit=audit)
    return inner if validator_set is None else MemberSigner(inner, validator_set, audit)


__all__ = ["ConsensusSigner", "LocalSigner", "MemberSigner", "RestoreFloorSigner", "SignRequest", "node_signer"]
