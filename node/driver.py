"""The consensus driver: owns the engine, its single inbox, timers and WAL.

Like CometBFT's receiveRoutine, one task takes events off one queue, logs
them to the WAL, feeds them to the pure engine and carries out the actions it
returns.  Blocks are built, validated and committed by ``node.blocks``
(one path for proposals, commits and sync); validator sets are the
application's (``Application.validator_set``).  Equivocation evidence (found by
our engine, or sent by a peer) goes to ``node.evidence``, is relayed once to
the other validators, and a proposal carries what the chain can still apply.
A proposal's ``last_commit`` is the engine's certificate of the previous height
with every COMMIT that reached us by build time (the decision needed only a
quorum), so rewards and downtime see who really signed.  The engine never
sees a store.  Our own signed messages are fsynced in the WAL before they
leave the process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, NoReturn

from consensus import events as ce
from consensus.engine import Engine
from consensus.messages import Evidence, Vote
from consensus.signing import ConsensusSigner
from node.blocks import BlockExecutor, now_ms
from node.config import ConsensusSection
from node.errors import WalError
from node.evidence import MAX_AGE_HEIGHTS, EvidencePool
from node.mempool import Mempool
from node.misbehaviour import DoubleSigner
from node.signguard import SignGuard
from node.sync import SyncedBlock
from node.wal import WriteAheadLog, event_to_record, height_of_log, record_to_event
from state.app import Application
from state.crypto import PrivateKey, address_to_text, sha256
from state.blocks import MAX_BLOCK_EVIDENCE, Block
from state.validators import ValidatorSet

log = logging.getLogger("qenex.driver")


@dataclass
class DriverHooks:
    """What the driver needs from the rest of the node."""

    broadcast: Callable[[bytes], Awaitable[None]]
    penalize: Callable[[str, str], None]
    request_sync: Callable[[int], None]
    # Bans a peer for what no honest peer sends (a synced certificate that does not verify).
    ban: Callable[[str, str], None] | None = None
    on_commit: Callable[[Block], None] = lambda block: None
    on_fatal: Callable[[BaseException], None] = lambda exc: None  # the node should stop


@dataclass
class ConsensusDriver:
    app: Application
    mempool: Mempool
    wal: WriteAheadLog
    config: ConsensusSection
    signer: PrivateKey | ConsensusSigner | None  # a bare key signs unguarded (tests); the node passes node.signer
    hooks: DriverHooks
    # Checked before any message signed with our key leaves (node/signguard.py).
    sign_guard: SignGuard | None = None
    # TEST ONLY: a validator that equivocates on purpose (node.misbehaviour); None on every real node.
    double_signer: DoubleSigner | None = None
    inbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    engine: Engine | None = None
    blocks: BlockExecutor = field(init=False)
    evidence: EvidencePool = field(init=False)
    _last_commit_at: float = 0.0
    _progress_at: float = 0.0
    _build_task: asyncio.Task[None] | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _replaying: bool = False
    _timers: dict[tuple[int, int], asyncio.TimerHandle] = field(default_factory=dict)
    view_change_commits: int = 0  # heights committed in a view > 0
    views_left: int = 0  # views passed at heights already left (metrics: + the current view = view changes)

    def __post_init__(self) -> None:
        self.blocks = BlockExecutor(self.app)
        staking = self.app.params.staking
        self.evidence = EvidencePool(self.app.chain_id, self.app.validator_set,
                                     max_age_heights=MAX_AGE_HEIGHTS if staking is None else staking.max_evidence_age)

    # -- lifecycle --------------------------------------------------------

    @property
    def validator_set(self) -> ValidatorSet:
        """The set that signs the height being decided (the application's)."""
        return self.blocks.validator_set_for(self.height)

    def _timeouts(self) -> ce.TimeoutConfig:
        return ce.TimeoutConfig(
            base_ms=self.config.timeout_base_ms,
            increment_ms=self.config.timeout_increment_ms,
            max_ms=self.config.timeout_max_ms,
        )

    def start(self) -> None:
        height = self.app.height + 1
        vset = self.validator_set
        recovered = self.wal.recovered()
        if height_of_log(recovered) != height:
            recovered = []  # a log of an earlier height: its height was committed
        events = []
        for index, record in enumerate(recovered):
            try:
                events.append(record_to_event(record))
            except Exception as exc:
                self._unreplayable(index, record, exc)
        if events and events[0].validator_set != vset:
            # The log was written by this node for this height, from the
            # application's set: a different set means one of them is not ours.
            moved = self.wal.quarantine()
            raise WalError(
                f"the WAL of height {height} names a validator set other than the application's "
                f"(hash 0x{events[0].validator_set.hash().hex()[:16]}, expected 0x{vset.hash().hex()[:16]}); "
                f"the log was moved aside to {moved}")
        self.engine = Engine(
            chain_id=self.app.chain_id,
            signer=self.signer,
            height=height,
            validator_set=vset,
            timeouts=self._timeouts(),
        )
        if events:
            log.info("replaying %d WAL records for height %d", len(events), height)
            self._replaying = True
            for event in events:
                if self._replaying:
                    self._handle(event, log_input=False)
                elif isinstance(event, ce.MessageReceived):
                    # A commit during replay moved us to the next height (and
                    # rewrote the WAL): later messages are live input again.
                    self._handle(event)
            if self._replaying:
                self._replaying = False
                self._resume_after_replay()
        else:
            self._start_height(height)
        self._progress_at = self._last_commit_at = time.monotonic()
        self._tasks.append(asyncio.create_task(self._run(), name="consensus-driver"))
        self._tasks.append(asyncio.create_task(self._rebroadcast_loop(), name="consensus-rebroadcast"))

    def _unreplayable(self, index: int, record: list[Any], exc: Exception) -> NoReturn:
        """A checksummed record that cannot be replayed (a bug or a forger): one line, the file kept."""
        moved = self.wal.quarantine()
        raise WalError(
            f"WAL record {index} ({str(record[0])[:16]!r}) cannot be replayed: "
            f"{type(exc).__name__}: {str(exc)[:200]}; the log was moved aside to {moved}"
        ) from None

    async def stop(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for task in self._tasks + ([self._build_task] if self._build_task else []):
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()

    def _resume_after_replay(self) -> None:
        """Timers were not armed while replaying: arm the current view's, and
        re-send what we signed (peers may never have seen it); RebroadcastDue
        also re-asks any BuildProposal/ValidateProposal left unanswered."""
        assert self.engine is not None
        view = self.engine.view
        self._execute(ce.ScheduleTimeout(self.engine.height, view, self._timeouts().duration_ms(view)))
        self._handle(ce.RebroadcastDue(), log_input=False)

    def _start_height(self, height: int) -> None:
        for key in [k for k in self._timers if k[0] < height]:
            self._timers.pop(key).cancel()  # timers of a decided height are stale
        event = ce.HeightStarted(height, self.blocks.validator_set_for(height))
        if not self._replaying:
            self.wal.start_height(event_to_record(event))  # type: ignore[arg-type]
        self._handle(event, log_input=False)

    async def _run(self) -> None:
        while True:
            event = await self.inbox.get()
            try:
                if isinstance(event, SyncedBlock):
                    self._apply_synced(event)
                else:
                    self._handle(event)
            except Exception as exc:
                # Our own invariant broke: halt loudly rather than carry on.
                log.critical("consensus driver failed on %r", type(event).__name__, exc_info=True)
                self.hooks.on_fatal(exc)
                raise

    def _fire_timeout(self, height: int, view: int) -> None:
        self._timers.pop((height, view), None)
        self.inbox.put_nowait(ce.TimeoutElapsed(height, view))

    @property
    def armed_timeouts(self) -> list[tuple[int, int]]:
        """(height, view) of the view timers waiting to fire."""
        return sorted(self._timers)

    async def _rebroadcast_loop(self) -> None:
        interval = self.config.rebroadcast_ms / 1000
        while True:
            await asyncio.sleep(interval)
            if time.monotonic() - self._progress_at >= interval:
                self.inbox.put_nowait(ce.RebroadcastDue())

    # -- inputs -----------------------------------------------------------

    def engine_state(self) -> dict[str, Any]:
        state = self.engine.state if self.engine else None
        return {
            "height": self.height,
            "view": getattr(state, "view", 0),
            "step": str(getattr(state, "step", "")),
            "primary": address_to_text(state.primary) if state is not None else None,
            "view_change_commits": self.view_change_commits,
            "view_changes": self.views_left + getattr(state, "view", 0),
            "evidence": len(self.evidence),
            "late_commit_votes": self.engine.late_commit_votes if self.engine else 0,
        }

    @property
    def height(self) -> int:
        return self.app.height + 1

    def _handle(self, event: Any, *, log_input: bool = True) -> None:
        assert self.engine is not None
        if isinstance(event, ce.MessageReceived) and isinstance(event.message, Evidence):
            # Evidence of any height within the pool's age goes to the pool, not the engine (which
            # finds its own in the votes it sees); it needs no WAL: a lost item is sent again.
            self._add_evidence(event.message, event.from_peer)
            return
        actions = self.engine.handle(event)
        if self.sign_guard is not None:
            actions = [a for a in actions if not isinstance(a, ce.Broadcast) or self.sign_guard.allow(a.message)]
        # Logged after handling, and only if the input changed the engine's
        # state (junk and duplicates do not grow the WAL); still before any
        # of its consequences leave the process.
        if log_input and not self._replaying and self.engine.last_input_changed_state:
            record = event_to_record(event)
            if record is not None:
                self.wal.append(record)
        if not self._replaying and any(isinstance(a, ce.Broadcast) for a in actions):
            self.wal.sync()  # our votes are durable before anyone sees them
        for action in actions:
            self._execute(action)

    # -- actions ----------------------------------------------------------

    def _execute(self, action: Any) -> None:
        if isinstance(action, ce.Broadcast):
            data = action.message.encode()
            asyncio.get_running_loop().create_task(self.hooks.broadcast(data))
            if self.double_signer is not None and isinstance(action.message, Vote) and not self._replaying:
                twin = self.double_signer.conflicting(action.message)
                if twin is not None:
                    log.critical("TEST-ONLY MISBEHAVIOUR: sent a conflicting COMMIT at height %d view %d",
                                 twin.height, twin.view)
                    asyncio.get_running_loop().create_task(self.hooks.broadcast(twin.encode()))
        elif isinstance(action, ce.ScheduleTimeout):
            if not self._replaying:
                key = (action.height, action.view)
                if key in self._timers:
                    self._timers[key].cancel()
                self._timers[key] = asyncio.get_running_loop().call_later(
                    action.duration_ms / 1000, self._fire_timeout, action.height, action.view
                )
        elif isinstance(action, ce.BuildProposal):
            if not self._replaying:
                if self._build_task is not None:
                    self._build_task.cancel()
                self._build_task = asyncio.get_running_loop().create_task(
                    self._build(action.height, action.view)
                )
        elif isinstance(action, ce.ValidateProposal):
            if not self._replaying:
                self.inbox.put_nowait(self._validate(action))
        elif isinstance(action, ce.Redeliver):
            # Messages held for this height come back through the inbox path,
            # so they are logged in this height's WAL (during a replay the WAL
            # already holds what followed).
            if not self._replaying:
                self._handle(ce.MessageReceived(action.message, action.from_peer))
        elif isinstance(action, ce.CommitBlock):
            # A commit found while replaying is carried out for real: the
            # next height then starts live (WAL rewritten, timers armed).
            self._replaying = False
            self._commit(action)
        elif isinstance(action, ce.ReportEvidence):
            self._add_evidence(action.evidence, None)
        elif isinstance(action, ce.RequestSync):
            if not self._replaying:
                self.hooks.request_sync(action.height)
        elif isinstance(action, ce.PenalizePeer):
            if action.peer and not self._replaying:
                self.hooks.penalize(action.peer, action.reason)
        else:
            log.error("unknown consensus action %r", action)

    def _add_evidence(self, evidence: Evidence, peer: str | None) -> None:
        if (evidence.height, evidence.validator) in self.evidence or self._evidence_done(
                evidence.height, evidence.validator):
            # Held, or applied (or no longer applicable) already: never verified or relayed again,
            # so a peer replaying old evidence costs a few reads, not N^2 messages.
            return
        outcome = self.evidence.add(evidence, self.height)
        if outcome == "added" and not self._replaying:
            # Relayed once, when new to us: each validator forwards an item at most once, so a
            # flood of one item costs O(validators) messages.
            asyncio.get_running_loop().create_task(self.hooks.broadcast(evidence.encode()))
        elif outcome == "invalid" and peer is not None:
            self.hooks.penalize(peer, "evidence that does not verify")

    def _evidence_done(self, height: int, validator: bytes) -> bool:
        return self.app.evidence_refusal(height, validator) is not None

    def _last_commit(self) -> bytes | None:
        """The engine's fuller certificate of the head, if it decided the head itself."""
        if self.engine is None:
            return None
        cert = self.engine.last_commit_certificate(self.app.height)
        return None if cert is None else cert.encode()

    async def _build(self, height: int, view: int) -> None:
        try:
            await self._build_when_ready(height, view)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The engine re-asks on the next RebroadcastDue; never fail silently.
            log.exception("building the proposal for (%d, %d) failed", height, view)

    async def _build_when_ready(self, height: int, view: int) -> None:
        """Wait for transactions (bounded), then build and hand back a block."""
        min_wait = self.config.min_block_interval_ms / 1000
        max_wait = self.config.empty_block_interval_ms / 1000
        while True:
            waited = time.monotonic() - self._last_commit_at
            if waited >= max_wait or (len(self.mempool) > 0 and waited >= min_wait):
                break
            await asyncio.sleep(0.01)
        if height != self.height:
            return
        params = self.app.params
        txs = self.mempool.reap(params.max_block_txs, params.max_block_bytes - 64 * 1024)
        assert self.signer is not None
        # The pool was pruned at the last commit: what it holds the chain may still apply (the
        # application skips anything else), and a block carries at most MAX_BLOCK_EVIDENCE.
        evidence = [e.encode() for e in self.evidence.pending(MAX_BLOCK_EVIDENCE)]
        block = self.blocks.build(txs, proposer=self.signer.address, last_commit=self._last_commit(),
                                  evidence=evidence)
        self.inbox.put_nowait(ce.ProposalBuilt(height, view, block.encode(), block.hash))

    def _validate(self, action: Any) -> Any:
        # now_ms: a proposal may not be timed further ahead of our clock than
        # max_clock_drift_ms (timeliness is judged only here, never for
        # committed or synced blocks).
        problem = self.blocks.validate(action.block, action.block_hash, action.height, now=now_ms())
        # The verdict names the bytes judged: other bytes may claim the same hash.
        return ce.ProposalValidated(action.height, action.view, action.block_hash, problem is None, problem or "",
                                    block_digest=bytes(sha256(action.block)))

    def _commit(self, action: Any) -> None:
        if action.height != self.app.height + 1:
            log.info("commit for height %d ignored: we are at %d", action.height, self.app.height)
            return
        cert_bytes = action.certificate.encode()
        block = self.blocks.commit_certified(action.height, action.block_hash, action.block, cert_bytes)
        if block is None:
            self.hooks.request_sync(action.height)
            return
        if action.certificate.view > 0:
            self.view_change_commits += 1
        self.after_commit(block)

    def after_commit(self, block: Block) -> None:
        """Shared by consensus commits and block sync: the next height starts
        with the set the application stored for it."""
        self._last_commit_at = self._progress_at = time.monotonic()
        self.views_left += getattr(self.engine.state, "view", 0) if self.engine else 0
        self.mempool.update(block)
        self.evidence.prune(self.height, self._evidence_done)
        if block.evidence:
            log.warning("block %d carries %d equivocation evidence item(s): the offenders are slashed and tombstoned",
                        block.header.height, len(block.evidence))
        self.hooks.on_commit(block)
        self._start_height(self.height)

    def _apply_synced(self, item: SyncedBlock) -> None:
        """Apply a fetched block through the one block path.  The block arrives
        decoded (sync decodes it off the loop); here its certificate is decoded
        once more by the verifier (bounded by the certificate limit) and the
        block executed."""
        height = item.block.header.height
        if height != self.app.height + 1:
            return  # already have it (consensus or an earlier sync got there first)
        refused = self.blocks.apply_synced(item.block, item.cert_bytes)
        if refused is not None:
            punish = (self.hooks.ban or self.hooks.penalize) if refused.ban else self.hooks.penalize
            punish(item.peer, refused.reason)
            return
        log.info("synced block %d from %s", height, item.peer[-8:], extra={"peer": item.peer})
        self.after_commit(item.block)
