"""The sign guard: a validator never signs two different things for one slot.

A small record kept in the node home, outside the state store (so restoring
an older state directory does not roll it back), holds the highest
``(height, view, phase)`` this validator signed, the block hash it signed
there, and the digests of everything it signed at that height.  The driver
asks ``SignGuard.allow`` before any message signed with our key leaves the
process; the record is fsynced before the answer is yes.

Phases in one view, in the order an honest engine signs them:
VIEW-CHANGE (into the view) < PROPOSAL (and NEW-VIEW) < PREPARE < COMMIT.
A request is allowed when

* its exact digest was signed before at this height (a re-send: Ed25519
  signatures are deterministic, so the bytes are the same), or
* it is above the highest slot signed, and, in the same view, for the same
  block hash (PBFT proposes, prepares and commits one block per view), or
* it is the highest slot again with the same block hash (a NEW-VIEW and the
  proposal inside it; a VIEW-CHANGE re-signed with the same certificate).

Anything else would equivocate (same slot, another block) or go backwards
(a lower slot never signed: the state or the WAL was rolled back) and is
refused.

After ``qenexd snapshot restore`` moved the consensus WAL aside, the engine no
longer knows what it prepared (its lock) at the heights it had reached, and
the rules above would let it prepare another block there in a higher view.
So a home restored that way has a *floor* (``data/restored.json``'s
``sign_floor``, set on the guard by ``node.homecheck``): nothing at or below
that height is signed at all, and the validator follows those heights by
sync.  The check runs before signing: ``node.signer.LocalSigner`` approves
each request here before its key signs, and the remote signer process
(``node.remote_signer``) keeps its own record on its side of the wire.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consensus.messages import NewView, Proposal, ViewChange, Vote
from consensus.signing import Phase, SignRequest
from node.errors import NodeError
from state.crypto import address_to_text
from state.keyfile import write_private_file

log = logging.getLogger("qenex.signguard")

RECORD_VERSION = 1
# Digests kept per height for exact re-sends.  Our PREPARE/COMMIT votes (at
# most 2 per view) are kept apart so that view changes and proposals, the
# many, never evict them: a re-send of the decided view's COMMIT must pass
# however many views the height took.  Both lists are bounded; an evicted
# digest is refused, never signed anew.
MAX_DIGESTS = 256  # VIEW-CHANGE, PROPOSAL, NEW-VIEW
MAX_VOTE_DIGESTS = 2 * 4096  # PREPARE and COMMIT of the last 4,096 views of the height


class SignGuardError(NodeError):
    """The sign-state record is unreadable, belongs to another key or chain, or cannot be written."""


class SignRefused(NodeError):
    """Signing this request could equivocate or go backwards."""


def requests_for(message: Any, chain_id: str, me: bytes) -> list[SignRequest]:
    """The signatures of ours that ``message`` carries (none for a relayed message)."""
    if isinstance(message, Vote):
        if message.validator != me:
            return []
        return [SignRequest.vote(chain_id, message.kind, message.height, message.view, message.block_hash)]
    if isinstance(message, Proposal):
        if message.proposer != me:
            return []
        return [SignRequest.proposal(chain_id, message.height, message.view, message.block_hash, message.block)]
    if isinstance(message, NewView):
        if message.proposal.proposer != me:
            return []
        return requests_for(message.proposal, chain_id, me) + [
            SignRequest.new_view(chain_id, message.height, message.view, message.proposal.block_hash,
                                 message.view_changes)
        ]
    if isinstance(message, ViewChange):
        if message.validator != me:
            return []
        return [SignRequest.view_change(chain_id, message.height, message.new_view, message.prepared)]
    return []


@dataclass(frozen=True, slots=True)
class SignState:
    height: int = 0
    view: int = 0
    phase: Phase = Phase.NONE
    block_hash: bytes = b""
    signed: tuple[bytes, ...] = ()  # VIEW-CHANGE/proposal digests signed at ``height``, oldest first
    votes: tuple[bytes, ...] = ()  # our PREPARE/COMMIT digests at ``height``, oldest first

    @property
    def slot(self) -> tuple[int, int, int]:
        return (self.height, self.view, int(self.phase))


def check(state: SignState, request: SignRequest) -> str | None:
    """Why ``request`` may not be signed after ``state``, or None (pure)."""
    if request.height == state.height and (request.digest in state.votes or request.digest in state.signed):
        return None
    slot = (request.height, request.view, int(request.phase))
    same_view = (request.height, request.view) == (state.height, state.view)
    if slot > state.slot:
        if (same_view and state.phase >= Phase.PROPOSAL and request.phase >= Phase.PROPOSAL
                and request.block_hash != state.block_hash):
            return (f"would sign {request.describe()} after signing {state.phase.name} for "
                    f"0x{state.block_hash.hex()[:16]} in the same view")
        return None
    if slot == state.slot:
        if request.block_hash == state.block_hash:
            return None
        return f"would sign {request.describe()} after signing it for 0x{state.block_hash.hex()[:16]} (equivocation)"
    return (f"would go backwards: {request.describe()} is below the highest slot signed, "
            f"{state.phase.name} at (height {state.height}, view {state.view})")


def advance(state: SignState, request: SignRequest) -> SignState:
    """The state after signing an allowed ``request`` (pure)."""
    same_height = request.height == state.height
    signed = state.signed if same_height else ()
    votes = state.votes if same_height else ()
    if request.digest not in signed and request.digest not in votes:
        if request.phase in (Phase.PREPARE, Phase.COMMIT):
            votes = (votes + (request.digest,))[-MAX_VOTE_DIGESTS:]
        else:
            signed = (signed + (request.digest,))[-MAX_DIGESTS:]
    slot = (request.height, request.view, int(request.phase))
    if slot > state.slot:
        return SignState(request.height, request.view, request.phase, request.block_hash, signed, votes)
    return SignState(state.height, state.view, state.phase, state.block_hash, signed, votes)


class SignGuard:
    """The persisted sign state of one validator key on one chain."""

    def __init__(self, path: Path, chain_id: str, validator: bytes, state: SignState) -> None:
        self.path = path
        self.chain_id = chain_id
        self.validator = validator
        self._state = state
        self.refusals = 0
        # Heights at or below this are never signed: the home was restored and
        # the locks held there were lost with the WAL (node.homecheck sets it).
        self.floor = 0

    @property
    def state(self) -> SignState:
        return self._state

    # -- the record ----------------------------------------------------------

    @classmethod
    def create(cls, path: Path, chain_id: str, validator: bytes) -> "SignGuard":
        """A fresh record (nothing signed yet), written now; for ``init``."""
        guard = cls(path, chain_id, validator, SignState())
        guard._persist()
        return guard

    @classmethod
    def load(cls, path: Path, chain_id: str, validator: bytes) -> "SignGuard":
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SignGuardError(f"sign-state record {path} does not exist") from None
        except (OSError, UnicodeDecodeError, ValueError) as exc:
            raise SignGuardError(f"sign-state record {path} is unreadable: {exc}") from None
        try:
            state = _parse(doc)
        except (KeyError, TypeError, ValueError) as exc:
            raise SignGuardError(f"sign-state record {path} is malformed: {exc}") from None
        if doc["chain_id"] != chain_id:
            raise SignGuardError(f"sign-state record {path} is for chain {doc['chain_id']!r}, not {chain_id!r}")
        if doc["validator"] != address_to_text(validator):
            raise SignGuardError(
                f"sign-state record {path} is for validator {doc['validator']}, not {address_to_text(validator)}"
            )
        return cls(path, chain_id, validator, state)

    def _persist(self, state: SignState | None = None) -> None:
        state = state or self._state
        doc = {
            "version": RECORD_VERSION,
            "chain_id": self.chain_id,
            "validator": address_to_text(self.validator),
            **_state_doc(state),
        }
        try:
            write_private_file(self.path, (json.dumps(doc, indent=1) + "\n").encode())
        except OSError as exc:
            raise SignGuardError(f"cannot write sign-state record {self.path}: {exc}") from exc

    # -- the check -----------------------------------------------------------

    def below_floor(self, request: SignRequest) -> str | None:
        """Why ``request`` is at a height this restored validator may no longer sign at, or None."""
        if request.height > self.floor:
            return None
        return (f"would sign {request.describe()} at or below height {self.floor}, where this validator signed "
                "before its store was restored and lost its consensus WAL (data/restored.json): it follows "
                "those heights by sync")

    def approve(self, request: SignRequest) -> None:
        """Record ``request`` durably, or raise SignRefused; the record is unchanged on refusal."""
        problem = self.below_floor(request) or check(self._state, request)
        if problem is not None:
            raise SignRefused(problem)
        new = advance(self._state, request)
        if new != self._state:
            self._persist(new)  # durable before the signature leaves the process
            self._state = new

    def allow(self, message: Any) -> bool:
        """May ``message`` be sent?  Ours are checked and recorded; a refusal is logged, never raised."""
        try:
            for request in requests_for(message, self.chain_id, self.validator):
                self.approve(request)
        except SignRefused as exc:
            self.refusals += 1
            log.error("sign guard refused to sign: %s", exc)
            return False
        return True


def _parse(doc: Any) -> SignState:
    if not isinstance(doc, dict) or doc.get("version") != RECORD_VERSION:
        raise ValueError(f"unsupported version {doc.get('version') if isinstance(doc, dict) else doc!r}")
    for name in ("height", "view"):
        if isinstance(doc[name], bool) or not isinstance(doc[name], int) or doc[name] < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {doc[name]!r}")
    if not isinstance(doc["chain_id"], str) or not isinstance(doc["validator"], str):
        raise ValueError("chain_id and validator must be strings")
    phase = Phase[str(doc["phase"]).upper()]
    block_hash = _unhex(doc["block_hash"])
    signed = doc["signed"]
    if not isinstance(signed, list) or len(signed) > MAX_DIGESTS:
        raise ValueError(f"signed must be a list of at most {MAX_DIGESTS} digests")
    votes = doc.get("votes", [])  # absent in records written before votes were kept apart
    if not isinstance(votes, list) or len(votes) > MAX_VOTE_DIGESTS:
        raise ValueError(f"votes must be a list of at most {MAX_VOTE_DIGESTS} digests")
    return SignState(doc["height"], doc["view"], phase, block_hash, tuple(_unhex(d) for d in signed),
                     tuple(_unhex(d) for d in votes))


def _unhex(value: Any) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"expected 0x-hex, got {value!r}")
    return bytes.fromhex(value[2:])


# -- interchange ---------------------------------------------------------------
#
# Like EIP-3076 (Web3Signer's slashing-protection interchange), protection
# moves with the key as JSON.  An import never lowers the record: the result
# is the higher of the two slots, with the digests of both kept when they are
# at one height.  Two records naming different blocks at one slot mean the
# key already signed twice; that import is refused.

INTERCHANGE_FORMAT = "qenex-slashing-protection"
INTERCHANGE_VERSION = 1


def merge(ours: SignState, theirs: SignState) -> SignState:
    """The record that protects against both ``ours`` and ``theirs`` (pure)."""
    if ours.slot == theirs.slot and ours.block_hash != theirs.block_hash and ours.phase != Phase.NONE:
        raise SignGuardError(
            f"records disagree at {ours.phase.name} (height {ours.height}, view {ours.view}): "
            f"0x{ours.block_hash.hex()[:16]} here, 0x{theirs.block_hash.hex()[:16]} imported; "
            f"this key has signed both")
    high, low = (ours, theirs) if ours.slot >= theirs.slot else (theirs, ours)
    if low.height != high.height:
        return high
    signed = tuple(dict.fromkeys(low.signed + high.signed))[-MAX_DIGESTS:]
    votes = tuple(dict.fromkeys(low.votes + high.votes))[-MAX_VOTE_DIGESTS:]
    return SignState(high.height, high.view, high.phase, high.block_hash, signed, votes)


def export_interchange(guard: SignGuard) -> dict[str, Any]:
    return {
        "format": INTERCHANGE_FORMAT,
        "version": INTERCHANGE_VERSION,
        "chain_id": guard.chain_id,
        "validator": address_to_text(guard.validator),
        "record": _state_doc(guard.state),
    }


def import_interchange(guard: SignGuard, doc: Any) -> SignState:
    """Merge an interchange document into ``guard`` (fsynced); returns the new state. Bad input changes nothing."""
    if not isinstance(doc, dict) or doc.get("format") != INTERCHANGE_FORMAT:
        raise SignGuardError(f"not a {INTERCHANGE_FORMAT} document")
    if doc.get("version") != INTERCHANGE_VERSION:
        raise SignGuardError(f"unsupported interchange version {doc.get('version')!r}")
    if doc.get("chain_id") != guard.chain_id:
        raise SignGuardError(f"interchange is for chain {doc.get('chain_id')!r}, not {guard.chain_id!r}")
    if doc.get("validator") != address_to_text(guard.validator):
        raise SignGuardError(
            f"interchange is for validator {doc.get('validator')!r}, not {address_to_text(guard.validator)}")
    try:
        theirs = _parse({"version": RECORD_VERSION, "chain_id": guard.chain_id, "validator": doc["validator"],
                         **doc["record"]})
    except (KeyError, TypeError, ValueError) as exc:
        raise SignGuardError(f"interchange record is malformed: {exc!r}") from None
    new = merge(guard.state, theirs)
    if new != guard.state:
        guard._persist(new)
        guard._state = new
    return new


def _state_doc(state: SignState) -> dict[str, Any]:
    return {
        "height": state.height,
        "view": state.view,
        "phase": state.phase.name.lower(),
        "block_hash": "0x" + state.block_hash.hex(),
        "signed": ["0x" + d.hex() for d in state.signed],
        "votes": ["0x" + d.hex() for d in state.votes],
    }
