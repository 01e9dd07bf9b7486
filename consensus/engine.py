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
    ReportEvidence,
    RequestSync,
    ScheduleTimeout,
    TimeoutConfig,
    TimeoutElapsed,
    ValidateProposal,
)
from consensus.messages import (
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
from consensus.validators import ValidatorSet
from consensus.verify import check_new_view, check_proposal, check_signed, check_view_change, highest_certificate
from state.crypto import PrivateKey, sha256

__all__ = [
    "Engine", "EngineState", "Step", "TimeoutConfig",
    "HeightStarted", "MessageReceived", "ProposalBuilt", "ProposalValidated", "TimeoutElapsed", "RebroadcastDue",
    "Broadcast", "BuildProposal", "ValidateProposal", "ScheduleTimeout", "CommitBlock", "ReportEvidence",
    "RequestSync", "PenalizePeer", "Event", "Action",
]

# Bounds on what a peer can make us store.
FUTURE_VIEW_WINDOW = 64  # votes for views further ahead than this are dropped
MAX_VIEW_CHANGES_PER_VALIDATOR = 4  # the highest few views per validator
MAX_BUFFERED = 1024  # messages for the next height, in total
MAX_BUFFERED_PER_SIGNER = 32
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
        signer: PrivateKey | None,
        height: int,
        validator_set: ValidatorSet,
        timeouts: TimeoutConfig = TimeoutConfig(),
    ) -> None:
        self.chain_id = chain_id
        self._signer = signer
        self._timeouts = timeouts
        self._started = False
        self._buffer: list[tuple[Message, str | None]] = []
        self._ahead_signers: set[bytes] = set()  # verified signers seen at height + 1
        self._sync_requested = height - 1  # highest height we asked sync for
        self._out: list[Action] = []
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

    def handle(self, event: Event) -> list[Action]:
        self._out = []
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
        return out

    # -- per-height state ------------------------------------------------------

    def _reset(self, height: int, vset: ValidatorSet) -> None:
        self._height = height
        self._vset = vset
        me = None if self._signer is None else bytes(self._signer.address)
        self._me: bytes | None = me if me is not None and me in vset else None
        self._view = 0
        self._step = Step.PROPOSE
        self._proposals: dict[int, Proposal] = {}  # the accepted proposal of each view
        self._new_views: dict[int, NewView] = {}  # the accepted NEW-VIEW of each view
        self._blocks: dict[bytes, list[tuple[bytes, bytes]]] = {}  # hash -> [(sha256(bytes), bytes)]
        self._validity: dict[tuple[bytes, bytes], bool] = {}  # (hash, sha256(bytes)) -> valid
        self._validating: dict[bytes, bytes] = {}  # hash -> bytes sent to ValidateProposal
        self._by_signer: dict[tuple[VoteKind, int, bytes], list[Vote]] = {}  # at most 2 (evidence)
        self._tally: dict[tuple[VoteKind, int, bytes], dict[bytes, Vote]] = {}  # (kind, view, hash)
        self._reported: set[tuple[VoteKind, int, bytes]] = set()
        self._view_changes: dict[bytes, dict[int, ViewChange]] = {}  # validator -> new_view -> VC
        self._prepared: PreparedCertificate | None = None
        self._building: int | None = None  # view of an outstanding BuildProposal
        self._new_view_plans: dict[int, tuple[ViewChange, ...]] = {}
        self._decided: tuple[int, bytes] | None = None

    def _on_height_started(self, height: int, vset: ValidatorSet) -> None:
        if height < self._height or (self._started and height == self._height):
            return
        pending = [(m, p) for m, p in self._buffer if _height_of(m) == height]
        self._buffer = []
        self._ahead_signers = set()
        self._reset(height, vset)
        self._started = True
        self._schedule_timeout()
        if self._me is not None and vset.proposer.address == self._me:
            self._building = 0
            self._emit(BuildProposal(height, 0))
        for message, peer in pending:
            self._on_message(message, peer)

    # -- messages ------------------------------------------------------------------

    def _on_message(self, message: Message, peer: str | None) -> None:
        if isinstance(message, (PreparedCertificate, CommitCertificate)):
            return  # only ever sent inside other messages or by block sync
        height = _height_of(message)
        if not self._started:
            if height in (self._height, self._height + 1):
                self._buffer_message(message, peer)
            return
        if height < self._height:
            return
        if height == self._height + 1:
            self._buffer_message(message, peer)
            return
        if height > self._height + 1:
            if self._looks_genuine(message) and height - 1 > self._sync_requested:
                self._sync_requested = height - 1
                self._emit(RequestSync(height - 1))
            return
        if self._decided is not None and not isinstance(message, (Vote, Evidence)):
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
            if peer is not None:
                self._emit(PenalizePeer(peer, exc.reason))

    def _buffer_message(self, message: Message, peer: str | None) -> None:
        if len(self._buffer) >= MAX_BUFFERED or any(m == message for m, _ in self._buffer):
            return
        signer = _signer_of(message)
        if sum(1 for m, _ in self._buffer if _signer_of(m) == signer) >= MAX_BUFFERED_PER_SIGNER:
            return
        self._buffer.append((message, peer))
        # Checked against our set, which is the next one's too unless at an epoch boundary.
        if self._started and signer not in self._ahead_signers and self._looks_genuine(message):
            self._ahead_signers.add(signer)

    def _looks_genuine(self, message: Message) -> bool:
        """Signed by a member of our current set (used only to decide to sync)."""
        try:
            if isinstance(message, (Vote, Proposal, ViewChange)):
                check_signed(self.chain_id, self._vset, message)
            elif isinstance(message, NewView):
                check_signed(self.chain_id, self._vset, message.proposal)
            else:
                return False
        except InvalidMessage:
            return False
        return True

    def _on_proposal(self, proposal: Proposal) -> None:
        if proposal.view != 0:
            return  # later views' proposals travel inside NEW-VIEW only
        if self._proposals.get(0) == proposal:
            return
        check_proposal(self.chain_id, self._vset, proposal)
        self._accept_proposal(proposal)

    def _accept_proposal(self, proposal: Proposal) -> None:
        # The first valid proposal of a view wins; an equivocating primary's
        # second one is ignored.
        if proposal.view not in self._proposals:
            self._proposals[proposal.view] = proposal
            self._add_block(proposal.block_hash, proposal.block)

    def _add_block(self, block_hash: bytes, block: bytes) -> None:
        if not block:
            return  # a certificate whose bytes were left out
        candidates = self._blocks.setdefault(block_hash, [])
        if len(candidates) < MAX_BLOCK_CANDIDATES and all(b != block for _, b in candidates):
            candidates.append((bytes(sha256(block)), block))

    def _on_vote(self, vote: Vote) -> None:
        key = (vote.kind, vote.view, vote.validator)
        earlier = self._by_signer.get(key, [])
        if any(v.block_hash == vote.block_hash for v in earlier):
            return  # a duplicate (our own included): idempotent
        if vote.view > self._view + FUTURE_VIEW_WINDOW or len(earlier) >= 2:
            return
        check_signed(self.chain_id, self._vset, vote)
        self._record_vote(vote)

    def _record_vote(self, vote: Vote) -> None:
        key = (vote.kind, vote.view, vote.validator)
        earlier = self._by_signer.setdefault(key, [])
        if earlier and key not in self._reported:
            self._reported.add(key)
            self._emit(ReportEvidence(Evidence.of(earlier[0], vote)))
        earlier.append(vote)
        self._tally.setdefault((vote.kind, vote.view, vote.block_hash), {})[vote.validator] = vote

    def _on_view_change(self, vc: ViewChange) -> None:
        if vc.new_view < self._view:
            return  # stale
        known = self._view_changes.get(vc.validator, {})
        if vc.new_view in known:
            return  # a duplicate, or a second one for the same view (first wins)
        check_view_change(self.chain_id, self._vset, vc)
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
        vote = evidence.vote_a
        key = (vote.kind, vote.view, vote.validator)
        if evidence.height != self._height or key in self._reported:
            return
        evidence.verify(self.chain_id, self._vset)
        self._reported.add(key)
        self._emit(ReportEvidence(evidence))

    # -- answers from the driver ---------------------------------------------------

    def _on_proposal_built(self, event: ProposalBuilt) -> None:
        view = event.view
        if (event.height, view) != (self._height, self._view) or self._building != view or self._decided:
            return
        self._building = None
        assert self._signer is not None and self._me is not None
        self._validity[(event.block_hash, bytes(sha256(event.block)))] = True
        proposal = Proposal.create(self._signer, self.chain_id, self._height, view, event.block, event.block_hash)
        if view == 0:
            self._accept_proposal(proposal)
            self._broadcast(proposal)
        else:
            self._send_new_view(self._new_view_plans[view], proposal)

    def _on_proposal_validated(self, event: ProposalValidated) -> None:
        if event.height != self._height:
            return
        block = self._validating.pop(event.block_hash, None)
        if block is not None:
            self._validity[(event.block_hash, bytes(sha256(block)))] = event.valid

    # -- timers ----------------------------------------------------------------------

    def _on_timeout(self, height: int, view: int) -> None:
        if not self._started or (height, view) != (self._height, self._view) or self._decided:
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
        for known in self._view_changes.values():
            for stale in [v for v in known if v < view]:
                del known[stale]
        if send_view_change and self._me is not None:
            assert self._signer is not None
            vc = ViewChange.create(self._signer, self.chain_id, self._height, view, self._prepared)
            self._store_view_change(vc)
            self._broadcast(vc)
        self._schedule_timeout()

    def _on_rebroadcast(self) -> None:
        if not self._started or self._me is None:
            return
        if self._decided is None:
            # Requests the driver may have lost (it skips them while replaying
            # its WAL after a restart) are asked again; answers are idempotent.
            if self._building is not None:
                self._emit(BuildProposal(self._height, self._building))
            for block_hash, block in self._validating.items():
                self._emit(ValidateProposal(self._height, self._view, block, block_hash))
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
        for kind in (VoteKind.PREPARE, VoteKind.COMMIT):
            vote = self._own_vote(kind, view)
            if vote is not None:
                self._emit(Broadcast(vote))

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
        for (kind, view, block_hash), votes in self._tally.items():
            if kind != VoteKind.COMMIT or not self._vset.has_quorum(self._vset.power_of(votes)):
                continue
            block = self._block_for(view, block_hash)
            if block is None:
                # A quorum committed a block we never received: fetch it.
                if self._sync_requested < self._height:
                    self._sync_requested = self._height
                    self._emit(RequestSync(self._height))
                continue
            certificate = CommitCertificate.from_votes(self._height, view, block_hash, list(votes.values()))
            self._decided = (view, block_hash)
            self._step = Step.COMMITTED
            self._emit(CommitBlock(self._height, block, block_hash, certificate))
            return True
        return False

    def _block_for(self, view: int, block_hash: bytes) -> bytes | None:
        """Bytes for ``block_hash``: validated ones first, then the view's signed proposal."""
        candidates = self._blocks.get(block_hash, [])
        for digest, block in candidates:
            if self._validity.get((block_hash, digest)):
                return block
        proposal = self._proposals.get(view)
        if proposal is not None and proposal.block_hash == block_hash:
            return proposal.block
        return candidates[0][1] if candidates else None

    def _update_prepared(self) -> None:
        for view, proposal in self._proposals.items():
            if self._prepared is not None and view <= self._prepared.view:
                continue
            votes = self._tally.get((VoteKind.PREPARE, view, proposal.block_hash), {})
            if self._vset.has_quorum(self._vset.power_of(votes)):
                prepares = tuple(sorted(votes.values(), key=lambda v: v.validator))
                self._prepared = PreparedCertificate(
                    self._height, view, proposal.block, proposal.block_hash, prepares)

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
        valid = self._validity.get((proposal.block_hash, bytes(sha256(proposal.block))))
        if valid is None:
            if proposal.block_hash not in self._validating:
                self._validating[proposal.block_hash] = proposal.block
                self._emit(ValidateProposal(self._height, self._view, proposal.block, proposal.block_hash))
            return False
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
        votes = self._tally.get((VoteKind.PREPARE, self._view, prepare.block_hash), {})
        if not self._vset.has_quorum(self._vset.power_of(votes)):
            return False
        if self._own_vote(VoteKind.COMMIT, self._view) is None:
            self._vote(VoteKind.COMMIT, prepare.block_hash)
        self._step = Step.COMMIT
        return True

    def _vote(self, kind: VoteKind, block_hash: bytes) -> None:
        assert self._signer is not None
        vote = Vote.create(self._signer, self.chain_id, kind, self._height, self._view, block_hash)
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
        block = self._validated_block(best.block_hash, plan)
        if block is None:
            return False
        assert self._signer is not None
        proposal = Proposal.create(self._signer, self.chain_id, self._height, view, block, best.block_hash)
        self._send_new_view(plan, proposal)
        return True

    def _validated_block(self, block_hash: bytes, plan: tuple[ViewChange, ...]) -> bytes | None:
        """Bytes of ``block_hash`` our driver validated; ask it about a candidate if none.

        A certificate's prepares sign the hash only, so a Byzantine validator
        could attach other bytes to a genuine certificate: try each candidate.
        """
        for vc in plan:
            if vc.prepared is not None and vc.prepared.block_hash == block_hash:
                self._add_block(block_hash, vc.prepared.block)
        for digest, block in self._blocks.get(block_hash, []):
            valid = self._validity.get((block_hash, digest))
            if valid:
                return block
            if valid is None:
                if block_hash not in self._validating:
                    self._validating[block_hash] = block
                    self._emit(ValidateProposal(self._height, self._view, block, block_hash))
                return None
        return None

    def _send_new_view(self, plan: tuple[ViewChange, ...], proposal: Proposal) -> None:
        assert self._signer is not None
        # The certificates prove hashes; the proposal carries the one block needed.
        nv = NewView.create(self._signer, self.chain_id, tuple(vc.without_block() for vc in plan), proposal)
        self._new_views[proposal.view] = nv
        self._accept_proposal(proposal)
        self._step = Step.PROPOSE
        self._broadcast(nv)

    # -- output ----------------------------------------------------------------------

    def _emit(self, action: Action) -> None:
        self._out.append(action)

    def _broadcast(self, message: Message) -> None:
        self._emit(Broadcast(message))


def _height_of(message: Message) -> int:
    return message.height


def _signer_of(message: Message) -> bytes:
    if isinstance(message, (Proposal, Vote, ViewChange, NewView)):
        return message.signer
    if isinstance(message, Evidence):
        return message.validator
    return b""
