"""What goes into the engine (events, past tense) and what comes out (actions, imperative).

The driver's side of the contract, action by action:

* ``Broadcast(message)``: send ``message.encode()`` to the validators (and
  observers).  Log the engine's inputs to the WAL and fsync before sending,
  so a restart never signs something different.
* ``BuildProposal(height, view)``: build a block on top of the last committed
  one; answer ``ProposalBuilt`` (a late answer for an old view is ignored).
* ``ValidateProposal(height, view, block, block_hash)``: decode, check that
  the block hashes to ``block_hash``, its height, time and execution; answer
  ``ProposalValidated`` naming ``sha256(block)`` as ``block_digest`` (the
  verdict is about those bytes only).  A block re-proposed after a view
  change was built by an earlier view's primary, so do not require its
  proposer field to be the current primary.
* ``ScheduleTimeout(height, view, duration_ms)``: after the duration, send
  ``TimeoutElapsed(height, view)``; stale ones are ignored by the engine.
* ``CommitBlock(height, block, block_hash, certificate)``: check the hash
  (fetch the block by sync if it does not match, or if ``block`` is empty:
  the engine sends only bytes it validated), apply it, store the
  certificate (the next block's ``last_commit``), then send
  ``HeightStarted(height + 1, set)`` with the set the application stored for
  ``height + 1`` (``Application.validator_set``; the engine never derives one).
* ``ReportEvidence(evidence)``: keep/gossip it for inclusion in a block.
* ``RequestSync(height)``: fetch blocks up to ``height`` with their commit
  certificates, ``CommitCertificate.verify`` each, apply, send HeightStarted.
* ``PenalizePeer(peer, reason)``: lower the peer's score.
* ``Redeliver(message, from_peer)``: handle ``MessageReceived(message,
  from_peer)`` now, before any other input, as if it had just arrived (log it
  in the WAL like any input).  Emitted on HeightStarted for the messages the
  engine held for that height, so they land in the new height's WAL.  Skip
  it while replaying a WAL: the log already holds what followed.

After each ``handle`` the engine's ``last_input_changed_state`` says whether
the input changed anything that can influence later outputs; log an input to
the WAL only when it is True (rejected, stale, out-of-window and duplicate
messages are False), still before sending any Broadcast of that step.

Send ``RebroadcastDue`` periodically while no block gets committed: the
engine re-sends its own messages and re-asks unanswered requests.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from consensus.messages import CommitCertificate, Evidence, Message
from state.validators import ValidatorSet


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    """A view lasts ``base_ms + increment_ms * view``, at most ``max_ms``."""

    base_ms: int = 2000
    increment_ms: int = 1000
    max_ms: int = 30000

    def duration_ms(self, view: int) -> int:
        return min(self.base_ms + self.increment_ms * view, self.max_ms)


# -- events -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeightStarted:
    """Start (or move to) ``height``, signed by ``validator_set``.

    Sent at start-up and after each committed (or synced) block is applied.
    """

    height: int
    validator_set: ValidatorSet


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A decoded consensus message; ``from_peer`` is None for local input."""

    message: Message
    from_peer: str | None = None


@dataclass(frozen=True, slots=True)
class ProposalBuilt:
    """The answer to BuildProposal."""

    height: int
    view: int
    block: bytes
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class ProposalValidated:
    """The answer to ValidateProposal (valid means: decodes, hash matches, executes).

    ``block_digest`` is ``sha256`` of the exact bytes judged: different bytes
    can claim one hash, and an answer only ever judges the bytes it names.
    Keyword-only, so no caller can leave it out by position.
    """

    height: int
    view: int
    block_hash: bytes
    valid: bool
    reason: str = ""
    block_digest: bytes = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class TimeoutElapsed:
    """The timer of a ScheduleTimeout(height, view) fired."""

    height: int
    view: int


@dataclass(frozen=True, slots=True)
class RebroadcastDue:
    """Sent periodically while no progress is made: re-send our own messages."""


Event = Union[HeightStarted, MessageReceived, ProposalBuilt, ProposalValidated, TimeoutElapsed, RebroadcastDue]


# -- actions ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send ``message`` to every validator (and observers that want it)."""

    message: Message


@dataclass(frozen=True, slots=True)
class BuildProposal:
    """We are primary of (height, view) and need a fresh block: answer with ProposalBuilt."""

    height: int
    view: int


@dataclass(frozen=True, slots=True)
class ValidateProposal:
    """Check ``block`` (decode, hash == block_hash, height, execute): answer with ProposalValidated."""

    height: int
    view: int
    block: bytes
    block_hash: bytes


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """Send TimeoutElapsed(height, view) after ``duration_ms``."""

    height: int
    view: int
    duration_ms: int


@dataclass(frozen=True, slots=True)
class CommitBlock:
    """``block`` is final at ``height``: apply it, store ``certificate``, then send HeightStarted.

    The engine cannot check that ``block`` hashes to ``block_hash`` (blocks are
    opaque to it); the driver must, and fetch the block by sync if it does not.
    """

    height: int
    block: bytes
    block_hash: bytes
    certificate: CommitCertificate


@dataclass(frozen=True, slots=True)
class ReportEvidence:
    evidence: Evidence


@dataclass(frozen=True, slots=True)
class RequestSync:
    """Blocks up to ``height`` are committed by others but not by us: fetch them
    (with their commit certificates) from peers, verify, apply, then send HeightStarted."""

    height: int


@dataclass(frozen=True, slots=True)
class PenalizePeer:
    peer: str
    reason: str


@dataclass(frozen=True, slots=True)
class Redeliver:
    """Feed ``MessageReceived(message, from_peer)`` back in now (held for the height just started)."""

    message: Message
    from_peer: str | None = None


Action = Union[Broadcast, BuildProposal, ValidateProposal, ScheduleTimeout, CommitBlock, ReportEvidence,
               RequestSync, PenalizePeer, Redeliver]
