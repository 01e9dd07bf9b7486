"""The PBFT engine: a pure state machine, ``Engine.handle(event) -> list[action]``.

Per height: the primary of (height, view) proposes (PRE-PREPARE); a validator
whose driver validated the block sends PREPARE; with PREPAREs from more than
2/3 of power it is *prepared* and sends COMMIT; COMMITs from more than 2/3 of
power commit the block.  A view that times out ends with VIEW-CHANGE carrying
the highest prepared certificate; the next primary gathers a quorum of them
and sends NEW-VIEW, re-proposing the highest prepared block if there is one.

Why this is safe (f < 1/3 of power Byzantine): an honest validator prepares
at most one block per view and votes only in its current view, which only
grows; so a commit of block B in view v means more than 1/3 of power is
honest, prepared B in v, and reports a certificate of view >= v in every
VIEW-CHANGE it sends later.  Any NEW-VIEW quorum contains one of them, and
validators only accept a NEW-VIEW that re-proposes its highest certificate,
so by induction no other block gathers PREPAREs at a later view.

The engine decides "what to do next" by re-checking its conditions after every
event (``_advance``), level-triggered, which keeps out-of-order delivery,
duplicates and replays from the WAL simple: the same inputs give the same
outputs.  No clock, no randomness, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from consensus.errors import InvalidMessage
from consensus.events import (
    Action,
    Broadcast,
    BuildProposal,
    CommitBlock,
    Event,
    HeightStarted,
    MessageReceived,
    PenalizePeer,
    ProposalBuilt,
    ProposalValidated,
    RebroadcastDue,
    Redeliver,
    ReportEvidence,
    RequestSync,
    ScheduleTimeout,
    TimeoutConfig,
    TimeoutElapsed,
    ValidateProposal,
)
from consensus.messages import (
    MAX_MESSAGE_BYTES,
    CommitCertificate,
    Evidence,
    Message,
    NewView,
    PreparedCertificate,
    Proposal,
    ViewChange,
    Vote,
    VoteKind,
)
from consensus.signing import ConsensusSigner, SignRequest, as_signer
from state.validators import ValidatorSet
from consensus.verify import (
    check_new_view,
    check_proposal,
    check_signed,
    check_view_change,
    highest_certificate,
    signed_by_member,
)
from state.crypto import PrivateKey, sha256

__all__ = [
    "Engine", "EngineState", "Step", "TimeoutConfig",
    "HeightStarted", "MessageReceived", "ProposalBuilt", "ProposalValidated", "TimeoutElapsed", "RebroadcastDue",
    "Broadcast", "BuildProposal", "ValidateProposal", "ScheduleTimeout", "CommitBlock", "ReportEvidence",
    "RequestSync", "PenalizePeer", "Redeliver", "Event", "Action",
]

# Bounds on what a peer can make us store or compute.
# Messages for views further ahead than this are dropped unchecked, except one
# VIEW-CHANGE per signer per view of ours (checked, so that a validator left
# behind by a long partition can learn the current view and catch up).
FUTURE_VIEW_WINDOW = 64
MAX_VIEW_CHANGES_PER_VALIDATOR = 4  # the highest few views per validator
# The next height's messages, held until it starts: only signed ones, one per
# (type, kind, view, signer); each member gets an equal share of the bytes, so
# no coalition of signers can crowd out another's (the primary's proposal).
MAX_BUFFERED_PER_SIGNER = 32
MAX_BUFFERED_BYTES = 8 * MAX_MESSAGE_BYTES
MAX_BLOCK_CANDIDATES = 4  # distinct byte strings claimed for one block hash


class Step(StrEnum):
    WAITING = "waiting"  # constructed, HeightStarted not yet received
    PROPOSE = "propose"  # waiting for the view's proposal (or its validation)
    PREPARE = "prepare"  # sent PREPARE, waiting to be prepared
    COMMIT = "commit"  # sent COMMIT, waiting for a commit quorum
    VIEW_CHANGE = "view_change"  # left the previous view, waiting for NEW-VIEW
    COMMITTED = "committed"  # emitted CommitBlock, waiting for the next HeightStarted


@dataclass(frozen=True, slots=True)
class EngineState:
    """A read-only snapshot for inspection and tests."""

    height: int
    view: int
    step: Step
    primary: bytes
    is_validator: bool
    proposal_hash: bytes | None  # the accepted proposal of the current view
    prepared_view: int | None  # highest prepared certificate ("locked" block)
    prepared_block_hash: bytes | None
    committed_view: int | None
    committed_block_hash: bytes | None


class Engine:
    def __init__(
        self,
        chain_id: str,
        signer: PrivateKey | ConsensusSigner | None,
        height: int,
        validator_set: ValidatorSet,
        timeouts: TimeoutConfig = TimeoutConfig(),
    ) -> None:
        self.chain_id = chain_id
        self._signer = as_signer(signer)  # signs through slashing protection; may refuse
        self.unsigned = 0  # requests the signer refused or could not answer (nothing sent)
        self._timeouts = timeouts
        self._started = False
        self._buffer: list[tuple[Message, str | None]] = []
        self._buffer_slots: set[tuple[str, int, int, bytes]] = set()  # (type, kind, view, signer)
        self._buffer_held: dict[bytes, tuple[int, int]] = {}  # signer -> (messages, bytes) held
        self._ahead_signers: set[bytes] = set()  # verified signers seen at height + 1
        self._sync_requested = height - 1  # highest height we asked sync for, reset each height
        self._out: list[Action] = []
        self._changed = False
        # The height we decided last: its COMMIT votes, growing with the ones that arrive after
        # the decision (a certificate needs only a quorum; the next block's last_commit carries
        # every signature we hold, so rewards and downtime see who really signed).
        self._last: tuple[int, int, bytes, ValidatorSet, dict[bytes, Vote]] | None = None
        self.late_commit_votes = 0  # COMMIT votes for the previous height added after its decision
        self._late_reported: set[bytes] = set()
        self._reset(height, validator_set)
        self._step = Step.WAITING

    # -- public --------------------------------------------------------------

    @property
    def height(self) -> int:
        return self._height

    @property
    def view(self) -> int:
        return self._view

    @property
    def validator_set(self) -> ValidatorSet:
        return self._vset

    @property
    def state(self) -> EngineState:
        proposal = self._proposals.get(self._view)
        return EngineState(
            height=self._height,
            view=self._view,
            step=self._step,
            primary=self._vset.proposer_for(self._view).address,
            is_validator=self._me is not None,
            proposal_hash=None if proposal is None else proposal.block_hash,
            prepared_view=None if self._prepared is None else self._prepared.view,
            prepared_block_hash=None if self._prepared is None else self._prepared.block_hash,
            committed_view=None if self._decided is None else self._decided[0],
            committed_block_hash=None if self._decided is None else self._decided[1],
        )

    def last_commit_certificate(self, height: int) -> CommitCertificate | None:
        """The certificate of ``height`` (the height decided last) with every COMMIT vote for the
        decided block that reached us, including those after the decision; None if we did not
        decide ``height`` ourselves (it came by sync) or it is not the last one."""
        if self._last is None or self._last[0] != height:
            return None
        h, view, block_hash, _, votes = self._last
        return CommitCertificate.from_votes(h, view, block_hash, list(votes.values()))

    @property
    def last_input_changed_state(self) -> bool:
        """Whether the last ``handle`` changed anything that can influence later outputs.

        False only for inputs dropped or found to be no-ops (bad signature,
        non-member, out of the view window, stale height or view, a duplicate),
        so a driver may leave those out of its WAL: replaying only the inputs
        for which this was True rebuilds the same state.
        """
        return self._changed

    def handle(self, event: Event) -> list[Action]:
        self._out = []
        self._changed = True  # cleared only on paths known to change nothing
        if isinstance(event, MessageReceived):
            self._on_message(event.message, event.from_peer)
        elif isinstance(event, HeightStarted):
            self._on_height_started(event.height, event.validator_set)
        elif isinstance(event, ProposalBuilt):
            self._on_proposal_built(event)
        elif isinstance(event, ProposalValidated):
            self._on_proposal_validated(event)
        elif isinstance(event, TimeoutElapsed):
            self._on_timeout(event.height, event.view)
        elif isinstance(event, RebroadcastDue):
            self._on_rebroadcast()
        else:
            raise TypeError(f"unknown consensus event {event!r}")
        if self._started:
            self._advance()
        out, self._out = self._out, []
        if not isinstance(event, RebroadcastDue) and any(not isinstance(a, PenalizePeer) for a in out):
            self._changed = True  # a safety net: whatever acted was not a no-op
        return out

    def _unchanged(self) -> None:
        """The current input is dropped or a no-op: nothing was touched."""
        self._changed = False

    # -- per-height state ------------------------------------------------------

    def _reset(self, height: int, vset: ValidatorSet) -> None:
        self._height = height
        self._vset = vset
        me = None if self._signer is None else bytes(self._signer.address)
        self._me: bytes | None = me if me is not None and me in vset else None
        self._view = 0
        self._step = Step.PROPOSE
        self._view_change_unsigned: int | None = None  # a view we left without our signer's VIEW-CHANGE
        self._proposals: dict[int, Proposal] = {}  # the accepted proposal of each view
        self._new_views: dict[int, NewView] = {}  # the accepted NEW-VIEW of each view
        self._blocks: dict[bytes, list[tuple[bytes, bytes]]] = {}  # hash -> [(sha256(bytes), bytes)]
        # Verdicts are bound to the exact bytes judged, never to the hash alone:
        # a Byzantine primary can send other bytes under a genuine hash.
        self._validity: dict[tuple[bytes, bytes], bool] = {}  # (hash, sha256(bytes)) -> valid
        self._validating: dict[tuple[bytes, bytes], bytes] = {}  # (hash, sha256(bytes)) -> bytes being judged
        self._valid_blocks: dict[bytes, bytes] = {}  # hash -> bytes our driver found valid
        # Per (kind, view, signer): up to 2 hashes of its own choosing (the
        # second is evidence), plus any hash that more than 1/3 of power chose,
        # so junk votes cannot crowd out the one that completes a quorum.
        self._by_signer: dict[tuple[VoteKind, int, bytes], list[Vote]] = {}
        self._tally: dict[tuple[VoteKind, int, bytes], dict[bytes, Vote]] = {}  # (kind, view, hash)
        # Kept with the tally so checks after each event cost O(quorums), not
        # O(views): long view-change climbs would otherwise make them quadratic.
        self._tally_power: dict[tuple[VoteKind, int, bytes], int] = {}
        # Power behind each hash from signers' own choices (their first two hashes per kind and view).
        self._chosen_power: dict[tuple[VoteKind, int, bytes], int] = {}
        self._quorums: list[tuple[VoteKind, int, bytes]] = []  # tallies with >2/3 of power, in order reached
        self._reported: set[bytes] = set()  # validators whose equivocation we reported (one per height)
        self._view_changes: dict[bytes, dict[int, ViewChange]] = {}  # validator -> new_view -> VC
        self._far_checked: set[bytes] = set()  # signers whose far-ahead VIEW-CHANGE we checked in this view
        self._prepared: PreparedCertificate | None = None
        self._building: int | None = None  # view of an outstanding BuildProposal
        self._new_view_plans: dict[int, tuple[ViewChange, ...]] = {}
        self._decided: tuple[int, bytes] | None = None

    def _on_height_started(self, height: int, vset: ValidatorSet) -> None:
        if height < self._height or (self._started and height == self._height):
            self._unchanged()
            return
        if self._decided is not None and height == self._height + 1:
            view, block_hash = self._decided
            votes = dict(self._tally.get((VoteKind.COMMIT, view, block_hash), {}))
            self._last = (self._height, view, block_hash, self._vset, votes)
        else:
            self._last = None
        self._late_reported: set[bytes] = set()
        pending = [(m, p) for m, p in self._buffer if _height_of(m) == height]
        self._buffer = []
        self._buffer_slots = set()
        self._buffer_held = {}
        self._ahead_signers = set()
        self._sync_requested = height - 1
        self._reset(height, vset)
        self._started = True
        self._schedule_timeout()
        if self._me is not None and vset.proposer.address == self._me:
            self._building = 0
            self._emit(BuildProposal(height, 0))
        # Handed back rather than handled here, so the driver logs them in
        # the new height's WAL like any other input.
        for message, peer in pending:
            self._emit(Redeliver(message, peer))

    # -- messages ------------------------------------------------------------------

    def _on_message(self, message: Message, peer: str | None) -> None:
        if isinstance(message, (PreparedCertificate, CommitCertificate)):
            self._unchanged()
            return  # only ever sent inside other messages or by block sync
        height = _height_of(message)
        if not self._started:
            if height in (self._height, self._height + 1):
                self._buffer_message(message, peer)
            else:
                self._unchanged()
            return
        if height < self._height:
            if not (height == self._height - 1 and isinstance(message, Vote)
                    and self._late_commit_vote(message, peer)):
                self._unchanged()
            return
        if height == self._height + 1:
            self._buffer_message(message, peer)
            return
        if height > self._height + 1:
            if height - 1 > self._sync_requested and self._signed_by_member(message):
                self._sync_requested = height - 1
                self._emit(RequestSync(height - 1))
            else:
                self._unchanged()
            return
        if _view_of(message) > self._view + FUTURE_VIEW_WINDOW and not self._may_check_far_ahead(message):
            # Before any check: the cost of a message must not grow with its view.
            self._unchanged()
            return
        if self._decided is not None and not isinstance(message, (Vote, Evidence)):
            self._unchanged()
            return  # committed: only equivocation is still worth noticing until the next height
        try:
            if isinstance(message, Vote):
                self._on_vote(message)
            elif isinstance(message, Proposal):
                self._on_proposal(message)
            elif isinstance(message, ViewChange):
                self._on_view_change(message)
            elif isinstance(message, NewView):
                self._on_new_view(message)
            elif isinstance(message, Evidence):
                self._on_evidence(message)
        except InvalidMessage as exc:
            self._unchanged()  # every check runs before anything is stored
            if peer is not None:
                self._emit(PenalizePeer(peer, exc.reason))

    def _late_commit_vote(self, vote: Vote, peer: str | None) -> bool:
        """Add a COMMIT for the block we decided last to its certificate, or report a conflicting
        one as evidence; True if it did either (the input is then logged like any other that
        changed the engine).  A signature is checked only for a member's first vote for the
        decided block, or its first conflicting one; a forged one penalises its peer, as on
        the current height's path."""
        if self._last is None or vote.kind != VoteKind.COMMIT:
            return False
        height, view, block_hash, vset, votes = self._last
        if (vote.height, vote.view) != (height, view) or vote.validator not in vset:
            return False
        earlier = votes.get(vote.validator)
        if earlier is not None and (earlier.block_hash == vote.block_hash or vote.validator in self._late_reported):
            return False
        if earlier is None and vote.block_hash != block_hash:
            return False
        try:
            check_signed(self.chain_id, vset, vote)
        except InvalidMessage as exc:
            if peer is not None:
                self._emit(PenalizePeer(peer, exc.reason))
            return False
        if earlier is not None:
            # A second COMMIT of the decided view for another block: equivocation found late.
            self._late_reported.add(vote.validator)
            self._emit(ReportEvidence(Evidence.of(earlier, vote)))
            return True
        votes[vote.validator] = vote
        self.late_commit_votes += 1
        return True

    def _may_check_far_ahead(self, message: Message) -> bool:
        """Whether to check a VIEW-CHANGE beyond the view window (PBFT's view catch-up).

        Validators that moved on while we were cut off keep sending VIEW-CHANGEs
        for views we would otherwise never look at; more than 1/3 of power in
        them proves an honest validator is there, and ``_maybe_join_view`` takes
        us to the lowest view that much power has reached.  The cost stays
        bounded: one such message per signer per view of ours is checked (a
        forged one does not use the signer's slot, and is penalised), and a
        VIEW-CHANGE costs the same to check whatever its view.
        """
        if not isinstance(message, ViewChange) or self._decided is not None:
            return False
        return message.validator in self._vset and message.validator not in self._far_checked

    def _buffer_message(self, message: Message, peer: str | None) -> None:
        """Hold a message for the next height if it is signed by a member and has a free slot.

        Checked against our set, which is the next height's too except at an
        epoch boundary (where the set changes and some genuine messages may be
        dropped: their senders rebroadcast them, and the last height's COMMITs
        that others relay, ``_relay_last_commit``, get us to that height).
        """
        signer = _signer_of(message)
        view = _view_of(message)
        kind = int(message.kind) if isinstance(message, Vote) else -1
        slot = (type(message).__name__, kind, view, signer)
        share = MAX_BUFFERED_BYTES // len(self._vset)
        count, held = self._buffer_held.get(signer, (0, 0))
        if view > FUTURE_VIEW_WINDOW:
            # Not held, but still proof that the signer finished our height (it
            # may have needed many views, while we were cut off): one check
            # per signer, so the next timeout fetches the block by sync.
            if (self._started and signer in self._vset and signer not in self._ahead_signers
                    and self._signed_by_member(message)):
                self._ahead_signers.add(signer)
            else:
                self._unchanged()
            return
        # Cheap checks first; the slot also makes exact duplicates free to drop
        # (no comparison of whole messages).
        if ((isinstance(message, Proposal) and view != 0) or slot in self._buffer_slots
                or signer not in self._vset or held >= share or count >= MAX_BUFFERED_PER_SIGNER):
            self._unchanged()
            return
        size = len(message.encode())
        if held + size > share or not self._signed_by_member(message):
            self._unchanged()
            return
        self._buffer.append((message, peer))
        self._buffer_slots.add(slot)
        self._buffer_held[signer] = (count + 1, held + size)
        if self._started:
            self._ahead_signers.add(signer)

    def _signed_by_member(self, message: Message) -> bool:
        """Signed by a member of our current set (the outer signature only)."""
        try:
            if isinstance(message, Evidence):
                message.verify(self.chain_id, self._vset)
                return True
            if isinstance(message, (Vote, Proposal, ViewChange, NewView)):
                return signed_by_member(self.chain_id, self._vset, message)
        except InvalidMessage:
            pass
        return False

    def _on_proposal(self, proposal: Proposal) -> None:
        if proposal.view != 0 or 0 in self._proposals:
            # Later views' proposals travel inside NEW-VIEW only; the first
            # valid proposal of a view wins (an equivocating primary's second
            # one, or a duplicate, is ignored).
            self._unchanged()
            return
        check_proposal(self.chain_id, self._vset, proposal)
        self._accept_proposal(proposal)

    def _accept_proposal(self, proposal: Proposal) -> None:
        # The first valid proposal of a view wins; an equivocating primary's
        # second one is ignored.
        if proposal.view not in self._proposals:
            self._proposals[proposal.view] = proposal
            # Past the candidate cap: one accepted proposal per view, signed by
            # its primary, so junk attached to certificates cannot push it out.
            self._add_block(proposal.block_hash, proposal.block, capped=False)

    def _add_block(self, block_hash: bytes, block: bytes, *, capped: bool = True) -> None:
        if not block:
            return  # a certificate whose bytes were left out
        candidates = self._blocks.setdefault(block_hash, [])
        if (not capped or len(candidates) < MAX_BLOCK_CANDIDATES) and all(b != block for _, b in candidates):
            candidates.append((bytes(sha256(block)), block))

    def _on_vote(self, vote: Vote) -> None:
        key = (vote.kind, vote.view, vote.validator)
        earlier = self._by_signer.get(key, [])
        if any(v.block_hash == vote.block_hash for v in earlier):
            self._unchanged()
            return  # a duplicate (our own included)
        if len(earlier) >= 2 and not self._vset.exceeds_one_third(
                self._chosen_power.get((vote.kind, vote.view, vote.block_hash), 0)):
            # A signer's third hash counts only if more than 1/3 of power chose
            # it among their first two: a hash that can still reach a quorum
            # has that much honest support, so a signer's junk never crowds out
            # its genuine vote, while Byzantine signers voting each other's junk
            # cannot grow the tally (at most two hashes have > 1/3 of disjoint
            # first choices, so a signer adds at most four per kind and view).
            self._unchanged()
            return
        check_signed(self.chain_id, self._vset, vote)
        self._record_vote(vote)

    def _record_vote(self, vote: Vote) -> None:
        key = (vote.kind, vote.view, vote.validator)
        earlier = self._by_signer.setdefault(key, [])
        if earlier and vote.validator not in self._reported:
            self._reported.add(vote.validator)
            self._emit(ReportEvidence(Evidence.of(earlier[0], vote)))
        earlier.append(vote)
        tally_key = (vote.kind, vote.view, vote.block_hash)
        if len(earlier) <= 2:
            member_power = self._vset.get(vote.validator)
            self._chosen_power[tally_key] = self._chosen_power.get(tally_key, 0) + (
                0 if member_power is None else member_power.power)
        votes = self._tally.setdefault(tally_key, {})
        if vote.validator in votes:
            return
        votes[vote.validator] = vote
        before = self._tally_power.get(tally_key, 0)
        member = self._vset.get(vote.validator)
        power = before + (0 if member is None else member.power)
        self._tally_power[tally_key] = power
        if self._vset.has_quorum(power) and not self._vset.has_quorum(before):
            self._quorums.append(tally_key)

    def _on_view_change(self, vc: ViewChange) -> None:
        known = self._view_changes.get(vc.validator, {})
        if vc.new_view < self._view or vc.new_view in known:
            self._unchanged()
            return  # stale, a duplicate, or a second one for the same view (first wins)
        check_view_change(self.chain_id, self._vset, vc)
        if vc.new_view > self._view + FUTURE_VIEW_WINDOW:
            self._far_checked.add(vc.validator)  # its one far-ahead message for this view of ours
        self._store_view_change(vc)

    def _store_view_change(self, vc: ViewChange) -> None:
        known = self._view_changes.setdefault(vc.validator, {})
        known[vc.new_view] = vc
        while len(known) > MAX_VIEW_CHANGES_PER_VALIDATOR:
            del known[min(known)]
        if vc.prepared is not None:
            self._add_block(vc.prepared.block_hash, vc.prepared.block)

    def _on_new_view(self, nv: NewView) -> None:
        if nv.view < self._view or nv.view in self._new_views:
            self._unchanged()
            return  # stale, a duplicate, or an equivocating primary's second one
        check_new_view(self.chain_id, self._vset, nv)
        if nv.view > self._view:
            self._enter_view(nv.view, send_view_change=False)
        self._new_views[nv.view] = nv
        for vc in nv.view_changes:
            if vc.prepared is not None:
                self._add_block(vc.prepared.block_hash, vc.prepared.block)
        self._accept_proposal(nv.proposal)
        if self._step == Step.VIEW_CHANGE:
            self._step = Step.PROPOSE

    def _on_evidence(self, evidence: Evidence) -> None:
        # One report per validator and height is enough to punish it.
        if evidence.height != self._height or evidence.validator in self._reported:
            self._unchanged()
            return
        evidence.verify(self.chain_id, self._vset)
        self._reported.add(evidence.validator)
        self._emit(ReportEvidence(evidence))

    # -- answers from the driver ---------------------------------------------------

    def _on_proposal_built(self, event: ProposalBuilt) -> None:
        view = event.view
        if (event.height, view) != (self._height, self._view) or self._building != view or self._decided:
            self._unchanged()
            return
        self._building = None
        assert self._signer is not None and self._me is not None
        self._record_verdict(event.block_hash, bytes(sha256(event.block)), event.block, True)  # our own build
        proposal = self._signed_proposal(view, event.block, event.block_hash)
        if proposal is None:
            return  # not signed: the view times out and another primary proposes
        if view == 0:
            self._accept_proposal(proposal)
            self._broadcast(proposal)
        else:
            self._send_new_view(self._new_view_plans[view], proposal)

    def _on_proposal_validated(self, event: ProposalValidated) -> None:
        # Matched by hash *and* digest: an answer about other bytes under the
        # same hash (a Byzantine primary's junk, answered late because a
        # rebroadcast asked twice) never judges the bytes we hold now.
        key = (event.block_hash, event.block_digest)
        block = self._validating.pop(key, None) if event.height == self._height else None
        if block is None:
            self._unchanged()
            return  # unasked, already answered, or for an earlier height
        self._record_verdict(event.block_hash, event.block_digest, block, event.valid)

    # -- asking the driver about blocks ------------------------------------------------
    #
    # Every question goes through _ask_validation and every answer through
    # _record_verdict.  Two kinds of question: "are these exact bytes valid?"
    # (_verdict, for the proposal we would PREPARE) and "which bytes of this
    # hash are valid?" (_judged_block, for a certified hash whose candidates
    # came with proposals and certificates: the commit and NEW-VIEW paths).

    def _record_verdict(self, block_hash: bytes, digest: bytes, block: bytes, valid: bool) -> None:
        self._validity[(block_hash, digest)] = valid
        if valid:
            self._valid_blocks.setdefault(block_hash, block)

    def _ask_validation(self, block_hash: bytes, digest: bytes, block: bytes) -> None:
        """Send ``block`` to ValidateProposal unless it is being judged already."""
        key = (block_hash, digest)
        if key not in self._validating:
            self._validating[key] = block
            self._emit(ValidateProposal(self._height, self._view, block, block_hash))

    def _judging(self, block_hash: bytes) -> bool:
        """Whether some bytes claimed for ``block_hash`` are with the driver now."""
        return any(h == block_hash for h, _ in self._validating)

    def _verdict(self, block_hash: bytes, block: bytes) -> bool | None:
        """The driver's verdict on these exact bytes; None while unknown (and asked, once)."""
        digest = bytes(sha256(block))
        valid = self._validity.get((block_hash, digest))
        if valid is None:
            self._ask_validation(block_hash, digest, block)
        return valid

    def _judged_block(self, block_hash: bytes) -> bytes | None:
        """Bytes of ``block_hash`` our driver found valid; else ask about the next unjudged candidate.

        A certificate signs the hash only, so a Byzantine validator can attach
        other bytes to a genuine one: each candidate is tried in turn.  None
        while no candidate is known valid; at most one candidate per hash is
        sent to the driver at a time.
        """
        block = self._valid_blocks.get(block_hash)
        if block is not None:
            return block
        if not self._judging(block_hash):
            for digest, candidate in self._blocks.get(block_hash, []):
                if (block_hash, digest) not in self._validity:
                    self._ask_validation(block_hash, digest, candidate)
                    break
        return None

    # -- timers ----------------------------------------------------------------------

    def _on_timeout(self, height: int, view: int) -> None:
        if not self._started or (height, view) != (self._height, self._view) or self._decided:
            self._unchanged()
            return
        if self._ahead_signers:
            # Someone signed for the next height, so this one was committed
            # without us: fetch it rather than wait for a quorum that moved on.
            self._sync_requested = max(self._sync_requested, self._height)
            self._emit(RequestSync(self._height))
        if self._me is None:
            self._schedule_timeout()  # observers follow NEW-VIEWs, they don't vote to leave
        elif self._step == Step.VIEW_CHANGE and not self._vset.has_quorum(self._power_at_or_above(view)):
            # As in PBFT, the timer that ends a view change only counts once a
            # quorum has left for it: a validator alone (or too early) waits
            # for the others rather than running ahead into views nobody joins.
            self._schedule_timeout()
        else:
            self._enter_view(view + 1, send_view_change=True)

    def _power_at_or_above(self, view: int) -> int:
        """Power of the validators that sent a VIEW-CHANGE to ``view`` or beyond."""
        return self._vset.power_of(a for a, known in self._view_changes.items() if max(known, default=-1) >= view)

    def _schedule_timeout(self) -> None:
        self._emit(ScheduleTimeout(self._height, self._view, self._timeouts.duration_ms(self._view)))

    def _enter_view(self, view: int, *, send_view_change: bool) -> None:
        self._view = view
        self._step = Step.VIEW_CHANGE
        self._building = None
        self._far_checked = set()  # "far ahead" is measured from our view: a fresh budget
        for known in self._view_changes.values():
            for stale in [v for v in known if v < view]:
                del known[stale]
        if send_view_change and self._me is not None:
            self._send_view_change(view)
        self._schedule_timeout()

    def _send_view_change(self, view: int) -> None:
        assert self._me is not None
        sig = self._sign(SignRequest.view_change(self.chain_id, self._height, view, self._prepared))
        if sig is None:
            self._view_change_unsigned = view  # asked again on the next rebroadcast
            return
        self._view_change_unsigned = None
        vc = ViewChange(self._height, view, self._prepared, self._me, sig)
        self._store_view_change(vc)
        self._broadcast(vc)

    def _on_rebroadcast(self) -> None:
        self._unchanged()  # it only re-sends and re-asks
        if not self._started:
            return
        if self._decided is None:
            # Requests the driver may have lost (it skips them while replaying
            # its WAL after a restart) are asked again; answers are idempotent
            # and name the bytes they judged.
            if self._building is not None:
                self._emit(BuildProposal(self._height, self._building))
            for (block_hash, _), block in self._validating.items():
                self._emit(ValidateProposal(self._height, self._view, block, block_hash))
        self._relay_last_commit()
        if self._me is None:
            return  # an observer validates certified blocks but sends nothing
        if self._decided is not None:
            # Relay the whole commit quorum, not just our vote: a Byzantine
            # validator may have sent its COMMIT to us alone, leaving peers
            # that prepared the block one vote short and in a view change
            # that cannot gather a quorum while we wait here for the block.
            # The votes are signed, so relaying them is safe.
            view, block_hash = self._decided
            for vote in self._tally.get((VoteKind.COMMIT, view, block_hash), {}).values():
                if vote.validator != self._me:
                    self._emit(Broadcast(vote))
        view = self._view if self._decided is None else self._decided[0]
        nv = self._new_views.get(view)
        proposal = self._proposals.get(view)
        if nv is not None and nv.signer == self._me:
            self._emit(Broadcast(nv))
        elif proposal is not None and view == 0 and proposal.proposer == self._me:
            self._emit(Broadcast(proposal))
        own_vc = self._view_changes.get(self._me, {}).get(view)
        if own_vc is not None and self._step == Step.VIEW_CHANGE:
            self._emit(Broadcast(own_vc))
        elif (own_vc is None and self._step == Step.VIEW_CHANGE and self._decided is None
              and self._view_change_unsigned == view):
            # Our signer did not answer when we left for this view (down, or
            # refused): ask again, or the view change may lack our power.
            self._changed = True
            self._send_view_change(view)
        for kind in (VoteKind.PREPARE, VoteKind.COMMIT):
            vote = self._own_vote(kind, view)
            if vote is not None:
                self._emit(Broadcast(vote))

    def _relay_last_commit(self) -> None:
        """Relay the COMMIT votes of the height we decided last to peers still on it.

        This is CometBFT's catch-up for a peer one height behind (the reactor
        sends it ``LastCommit``). A peer left on the last height usually finds
        out that it was decided from our messages for the current height: it
        holds them for the next height and syncs on its next timeout. That only
        works if it can check who signed them against its own set. At an epoch
        boundary it may not be able to: the new height's other members can all
        be newcomers it does not know, while the members that decided the last
        height and then left the set send nothing more. The peer then waits
        for a quorum of its height's set that has moved on and will never come.
        The votes are signed, so we relay them as they are, and the peer
        commits in whatever view they were cast. We send this only while the
        driver sees no progress (a RebroadcastDue), at most one vote per member
        of the last set, sorted by validator.

        We relay only if we are a member of this height's set or were one of
        the last height's; an observer sends nothing. We leave out our own
        vote: the sign guard checks every message that carries our signature,
        and a vote for a height below the one it has recorded is refused as
        going backwards.
        """
        if self._last is None or self._signer is None:
            return
        _, _, _, vset, votes = self._last
        me = bytes(self._signer.address)
        if self._me is None and me not in vset:
            return
        for validator in sorted(votes):
            if validator != me:
                self._emit(Broadcast(votes[validator]))

    # -- deciding what to do next ------------------------------------------------------

    def _advance(self) -> None:
        while not self._check_commit():
            self._update_prepared()
            progressed = (
                self._maybe_prepare()
                or self._maybe_commit_vote()
                or self._maybe_join_view()
                or self._maybe_send_new_view()
            )
            if not progressed:
                return

    def _check_commit(self) -> bool:
        """Commit on COMMITs from >2/3 of power, in any view; True once decided."""
        if self._decided is not None:
            return True
        for kind, view, block_hash in self._quorums:
            if kind != VoteKind.COMMIT:
                continue
            block = self._block_for(block_hash)
            if block is None:
                continue  # waiting for the driver's verdict on a candidate
            votes = self._tally[(kind, view, block_hash)]
            certificate = CommitCertificate.from_votes(self._height, view, block_hash, list(votes.values()))
            self._decided = (view, block_hash)
            self._step = Step.COMMITTED
            self._emit(CommitBlock(self._height, block, block_hash, certificate))
            return True
        return False

    def _block_for(self, block_hash: bytes) -> bytes | None:
        """Bytes of a certified block to commit: only bytes our driver validated.

        A certificate signs the hash only, so any bytes we hold may be a
        Byzantine substitute.  Candidates not yet judged are sent to
        ValidateProposal one at a time (None: wait for the answer).  With no
        candidate left, ``b""``: the block is decided but we lack it, and the
        driver fetches it by sync (CommitBlock with empty bytes).
        """
        block = self._judged_block(block_hash)
        if block is None and not self._judging(block_hash):
            return b""  # every candidate judged invalid, or none known
        return block

    def _update_prepared(self) -> None:
        for kind, view, block_hash in self._quorums:
            proposal = self._proposals.get(view)
            if (kind != VoteKind.PREPARE or proposal is None or proposal.block_hash != block_hash
                    or (self._prepared is not None and view <= self._prepared.view)):
                continue
            votes = self._tally[(kind, view, block_hash)]
            prepares = tuple(sorted(votes.values(), key=lambda v: v.validator))
            self._prepared = PreparedCertificate(self._height, view, proposal.block, proposal.block_hash, prepares)

    def _own_vote(self, kind: VoteKind, view: int) -> Vote | None:
        if self._me is None:
            return None
        votes = self._by_signer.get((kind, view, self._me))
        return votes[0] if votes else None

    def _maybe_prepare(self) -> bool:
        if self._me is None or self._step != Step.PROPOSE:
            return False
        proposal = self._proposals.get(self._view)
        if proposal is None:
            return False
        if self._own_vote(VoteKind.PREPARE, self._view) is not None:
            self._step = Step.PREPARE  # e.g. our own vote came back before we made it (restart)
            return True
        valid = self._verdict(proposal.block_hash, proposal.block)
        if valid is None:
            return False  # asked; the answer comes back as ProposalValidated
        if not valid:
            return False  # wait for the timeout and a better primary
        self._vote(VoteKind.PREPARE, proposal.block_hash)
        self._step = Step.PREPARE
        return True

    def _maybe_commit_vote(self) -> bool:
        if self._me is None or self._step != Step.PREPARE:
            return False
        prepare = self._own_vote(VoteKind.PREPARE, self._view)
        if prepare is None:
            return False
        if not self._vset.has_quorum(self._tally_power.get((VoteKind.PREPARE, self._view, prepare.block_hash), 0)):
            return False
        if self._own_vote(VoteKind.COMMIT, self._view) is None:
            self._vote(VoteKind.COMMIT, prepare.block_hash)
        self._step = Step.COMMIT
        return True

    def _vote(self, kind: VoteKind, block_hash: bytes) -> None:
        assert self._signer is not None
        sig = self._sign(SignRequest.vote(self.chain_id, kind, self._height, self._view, block_hash))
        if sig is None:
            return  # no vote: we follow the others' votes
        assert self._me is not None
        vote = Vote(VoteKind(kind), self._height, self._view, block_hash, self._me, sig)
        self._record_vote(vote)
        self._broadcast(vote)

    def _maybe_join_view(self) -> bool:
        """Liveness: VIEW-CHANGEs from >1/3 of power for higher views pull us along.

        We join the highest view that more than 1/3 of power has reached, so at
        least one honest validator is there.
        """
        ahead = []
        for address, known in self._view_changes.items():
            highest = max(known, default=-1)
            if highest > self._view:
                member = self._vset.get(address)
                if member is not None:
                    ahead.append((highest, member.power))
        power = 0
        for view, member_power in sorted(ahead, reverse=True):
            power += member_power
            if self._vset.exceeds_one_third(power):
                self._enter_view(view, send_view_change=True)
                return True
        return False

    def _maybe_send_new_view(self) -> bool:
        view = self._view
        if (self._me is None or view == 0 or self._step != Step.VIEW_CHANGE or view in self._new_views
                or self._building == view or self._vset.proposer_for(view).address != self._me):
            return False
        plan = self._new_view_plans.get(view)
        if plan is None:
            changes = [known[view] for known in self._view_changes.values() if view in known]
            if not self._vset.has_quorum(self._vset.power_of(vc.validator for vc in changes)):
                return False
            # Frozen now: the block we pick must match the certificates we send.
            plan = tuple(sorted(changes, key=lambda vc: vc.validator))
            self._new_view_plans[view] = plan
        best = highest_certificate(plan)
        if best is None:
            self._building = view
            self._emit(BuildProposal(self._height, view))
            return True
        # The plan's certificates are stored VIEW-CHANGEs, whose blocks became
        # candidates when they were stored (_store_view_change).
        block = self._judged_block(best.block_hash)
        if block is None:
            return False
        assert self._signer is not None
        proposal = self._signed_proposal(view, block, best.block_hash)
        if proposal is None:
            return False
        return self._send_new_view(plan, proposal)

    def _send_new_view(self, plan: tuple[ViewChange, ...], proposal: Proposal) -> bool:
        # The certificates prove hashes; the proposal carries the one block needed.
        changes = tuple(vc.without_block() for vc in plan)
        sig = self._sign(SignRequest.new_view(self.chain_id, proposal.height, proposal.view, proposal.block_hash,
                                              changes))
        if sig is None:
            return False
        nv = NewView(proposal.height, proposal.view, changes, proposal, sig)
        self._new_views[proposal.view] = nv
        self._accept_proposal(proposal)
        self._step = Step.PROPOSE
        self._broadcast(nv)
        return True

    # -- signing ---------------------------------------------------------------------

    def _sign(self, request: SignRequest) -> bytes | None:
        """Our signature of ``request.digest``, or None when the signer refuses or cannot answer."""
        assert self._signer is not None
        signature = self._signer.sign_request(request)
        if signature is None:
            self.unsigned += 1
        return signature

    def _signed_proposal(self, view: int, block: bytes, block_hash: bytes) -> Proposal | None:
        assert self._me is not None
        sig = self._sign(SignRequest.proposal(self.chain_id, self._height, view, block_hash, block))
        return None if sig is None else Proposal(self._height, view, block, block_hash, self._me, sig)

    # -- output ----------------------------------------------------------------------

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    def _broadcast(self, message: Message) -> None:
        self._emit(Broadcast(message))


def _height_of(message: Message) -> int:
    return message.height


def _view_of(message: Message) -> int:
    if isinstance(message, (Vote, Proposal, NewView)):
        return message.view
    if isinstance(message, ViewChange):
        return message.new_view
    if isinstance(message, Evidence):
        return message.vote_a.view
    return 0


def _signer_of(message: Message) -> bytes:
    if isinstance(message, (Proposal, Vote, ViewChange, NewView)):
        return message.signer
    if isinstance(message, Evidence):
        return message.validator
    return b""
