"""The consensus driver: owns the engine, its single inbox, timers and WAL.

Like CometBFT's receiveRoutine, one task takes events off one queue, logs
them to the WAL, feeds them to the pure engine and carries out the actions it
returns.  Block building, validation and commit call the application here;
the engine never sees a store.  Our own signed messages are fsynced in the
WAL before they leave the process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, NoReturn

from consensus import events as ce
from consensus.engine import Engine
from consensus.messages import CommitCertificate, decode_message
from consensus.validators import ValidatorSet
from node.errors import WalError
from node.mempool import Mempool
from node.signguard import SignGuard
from node.sync import SyncedBlock
from node.wal import WriteAheadLog
from node.config import ConsensusSection
from state.app import Application, BlockResult
from state.blocks import Block
from state.crypto import PrivateKey, address_to_text, sha256
from state.errors import StateError

log = logging.getLogger("qenex.driver")

MAX_EVIDENCE = 10_000

# WAL record kinds: the engine's inputs, in a stable wire form.
_W_HEIGHT = "height"
_W_MSG = "msg"
_W_BUILT = "built"
_W_VALID = "valid"
_W_TIMEOUT = "timeout"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def event_to_record(event: Any) -> list[Any] | None:
    if isinstance(event, ce.HeightStarted):
        return [_W_HEIGHT, event.height, event.validator_set.encode()]
    if isinstance(event, ce.MessageReceived):
        return [_W_MSG, event.message.encode(), event.from_peer]
    if isinstance(event, ce.ProposalBuilt):
        return [_W_BUILT, event.height, event.view, event.block, event.block_hash]
    if isinstance(event, ce.ProposalValidated):
        return [_W_VALID, event.height, event.view, event.block_hash, event.valid, event.reason, event.block_digest]
    if isinstance(event, ce.TimeoutElapsed):
        return [_W_TIMEOUT, event.height, event.view]
    return None  # RebroadcastDue and the like carry no state worth replaying


def record_to_event(record: list[Any]) -> Any:
    kind = record[0]
    if kind == _W_HEIGHT:
        return ce.HeightStarted(record[1], ValidatorSet.decode(record[2]))
    if kind == _W_MSG:
        return ce.MessageReceived(decode_message(record[1]), record[2])
    if kind == _W_BUILT:
        return ce.ProposalBuilt(record[1], record[2], record[3], record[4])
    if kind == _W_VALID:
        # A record written before verdicts named their bytes matches no request
        # (b""): the engine re-asks on the first RebroadcastDue.
        digest = record[6] if len(record) > 6 else b""
        return ce.ProposalValidated(record[1], record[2], record[3], record[4], record[5], block_digest=digest)
    if kind == _W_TIMEOUT:
        return ce.TimeoutElapsed(record[1], record[2])
    raise ValueError(f"unknown WAL record kind {kind!r}")


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
    signer: PrivateKey | None
    genesis_validators: ValidatorSet
    hooks: DriverHooks
    # Checked before any message signed with our key leaves (node/signguard.py).
    sign_guard: SignGuard | None = None
    inbox: asyncio.Queue[Any] = field(default_factory=asyncio.Queue)
    engine: Engine | None = None
    validator_set: ValidatorSet | None = None
    _results: dict[bytes, tuple[Block, BlockResult]] = field(default_factory=dict)
    _last_cert: bytes = b""
    _last_commit_at: float = 0.0
    _progress_at: float = 0.0
    _build_task: asyncio.Task[None] | None = None
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _replaying: bool = False
    _vset_height: int = 0
    evidence: dict[tuple[bytes, int], Any] = field(default_factory=dict)  # one per (validator, height)
    _prev_validator_set: ValidatorSet | None = None
    _timers: dict[tuple[int, int], asyncio.TimerHandle] = field(default_factory=dict)
    view_change_commits: int = 0  # heights committed in a view > 0

    # -- lifecycle --------------------------------------------------------

    def _timeouts(self) -> ce.TimeoutConfig:
        return ce.TimeoutConfig(
            base_ms=self.config.timeout_base_ms,
            increment_ms=self.config.timeout_increment_ms,
            max_ms=self.config.timeout_max_ms,
        )

    def validator_set_for(self, height: int) -> ValidatorSet:
        """The set that signs ``height`` (priorities advanced once per height)."""
        vset = self.genesis_validators
        if height > 1:
            vset = vset.increment(height - 1)
        return vset

    def start(self) -> None:
        height = self.app.height + 1
        recovered = self.wal.recovered()
        self.validator_set = None
        if recovered and recovered[0][0] == _W_HEIGHT and recovered[0][1] == height:
            try:
                self.validator_set = ValidatorSet.decode(recovered[0][2])
            except Exception as exc:
                self._unreplayable(0, recovered[0], exc)
            self._vset_height = height
        if self.validator_set is None:
            self.validator_set = self.validator_set_for(height)
            recovered = []
        self._last_cert = self.app.get_commit_cert(self.app.height) or b""
        self.engine = Engine(
            chain_id=self.app.chain_id,
            signer=self.signer,
            height=height,
            validator_set=self.validator_set,
            timeouts=self._timeouts(),
        )
        if recovered:
            log.info("replaying %d WAL records for height %d", len(recovered), height)
            events = []
            for index, record in enumerate(recovered):
                try:
                    events.append(record_to_event(record))
                except Exception as exc:
                    self._unreplayable(index, record, exc)
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
            self._start_height(height, self.validator_set)
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

    def _start_height(self, height: int, vset: ValidatorSet) -> None:
        for key in [k for k in self._timers if k[0] < height]:
            self._timers.pop(key).cancel()  # timers of a decided height are stale
        self._prev_validator_set = self.validator_set if self._vset_height == height - 1 else None
        self.validator_set = vset
        self._vset_height = height
        event = ce.HeightStarted(height, vset)
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
            "evidence": len(self.evidence),
        }

    @property
    def height(self) -> int:
        return self.app.height + 1

    def _handle(self, event: Any, *, log_input: bool = True) -> None:
        assert self.engine is not None
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
            evidence = action.evidence
            key = (evidence.validator, evidence.height)
            if key not in self.evidence and len(self.evidence) < MAX_EVIDENCE:
                log.warning("equivocation by %s at height %d", address_to_text(evidence.validator), evidence.height)
                self.evidence[key] = evidence
        elif isinstance(action, ce.RequestSync):
            if not self._replaying:
                self.hooks.request_sync(action.height)
        elif isinstance(action, ce.PenalizePeer):
            if action.peer and not self._replaying:
                self.hooks.penalize(action.peer, action.reason)
        else:
            log.error("unknown consensus action %r", action)

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
        time_ms = max(now_ms(), self.app.last_time_ms + 1)
        block, result = self.app.build_block(
            txs, proposer=self.signer.address, time_ms=time_ms, last_commit=self._last_cert
        )
        self._results[block.hash] = (block, result)
        self.inbox.put_nowait(ce.ProposalBuilt(height, view, block.encode(), block.hash))

    def _validate(self, action: Any) -> Any:
        def verdict(valid: bool, reason: str = "") -> Any:
            # Names the bytes judged: other bytes may claim the same hash.
            return ce.ProposalValidated(action.height, action.view, action.block_hash, valid, reason,
                                        block_digest=bytes(sha256(action.block)))

        cached = self._results.get(action.block_hash)
        if cached is not None:
            if cached[0].encode() == action.block:
                return verdict(True)
            return verdict(False, "block bytes do not match the block of that hash")
        try:
            block = Block.decode(action.block)
        except StateError as exc:
            return verdict(False, f"undecodable block: {exc}")
        if block.hash != action.block_hash:
            return verdict(False, "block hash does not match its header")
        if block.header.height != action.height:
            return verdict(False, f"block height {block.header.height} is not {action.height}")
        problem = self._last_commit_problem(block)
        if problem:
            return verdict(False, problem)
        try:
            # now_ms: a proposal may not be timed further ahead of our clock
            # than max_clock_drift_ms (timeliness is checked only here, never
            # when replaying or syncing committed blocks).
            result = self.app.execute_block(block, now_ms=now_ms())
        except StateError as exc:
            return verdict(False, str(exc))
        self._results[block.hash] = (block, result)
        return verdict(True)

    def _last_commit_problem(self, block: Block) -> str | None:
        """Why ``block.last_commit`` is not a valid certificate of its parent, or None.

        state/ keeps the certificate opaque; this is where it is checked, so
        the commit record on chain is one a light client can trust.
        """
        height = block.header.height
        if height == 1:
            return None if block.last_commit == b"" else "block 1 must carry no last commit"
        try:
            cert = CommitCertificate.decode(block.last_commit)
        except Exception as exc:
            return f"last_commit is not a commit certificate: {exc}"
        if cert.height != height - 1 or cert.block_hash != block.header.prev_hash:
            return f"last_commit certifies ({cert.height}, 0x{cert.block_hash.hex()[:16]}), not the parent block"
        vset = self._prev_validator_set or self.validator_set_for(height - 1)
        try:
            cert.verify(self.app.chain_id, vset)
        except Exception as exc:
            return f"last_commit does not verify: {exc}"
        return None

    def _commit(self, action: Any) -> None:
        cert: CommitCertificate = action.certificate
        cert_bytes = cert.encode()
        if action.height != self.app.height + 1:
            log.info("commit for height %d ignored: we are at %d", action.height, self.app.height)
            return
        cached = self._results.get(action.block_hash)
        if cached is not None:
            block, result = cached
        elif not action.block:
            # The engine holds no validated bytes for the certified hash.
            log.info("block %d is certified but we never validated it; syncing it", action.height)
            self.hooks.request_sync(action.height)
            return
        else:
            # We never validated the certified block; the bytes we hold may
            # be a Byzantine primary's substitute.  Apply them only if they
            # are the certified block, else fetch it by sync.
            try:
                block = Block.decode(action.block)
            except StateError as exc:
                log.warning("certified block %d: our bytes do not decode (%s); syncing it", action.height, exc)
                self.hooks.request_sync(action.height)
                return
            if block.hash != action.block_hash or block.header.height != action.height:
                log.warning("certified block %d: our bytes are another block; syncing it", action.height)
                self.hooks.request_sync(action.height)
                return
            # The certified block must execute here; if not, our state is wrong.
            result = self.app.execute_block(block)
        self.app.commit_block(block, result, cert_bytes)
        if cert.view > 0:
            self.view_change_commits += 1
        self.after_commit(block, cert_bytes)

    def after_commit(self, block: Block, cert_bytes: bytes) -> None:
        """Shared by consensus commits and block sync."""
        self._results.clear()
        self._last_cert = cert_bytes
        self._last_commit_at = self._progress_at = time.monotonic()
        self.mempool.update(block)
        if self.validator_set is not None and self._vset_height == block.header.height:
            next_set = self.validator_set.increment(1)
        else:
            next_set = self.validator_set_for(self.height)
        self.hooks.on_commit(block)
        self._start_height(self.height, next_set)

    def _apply_synced(self, item: SyncedBlock) -> None:
        """Verify a fetched block against its certificate and apply it.  Both
        arrive decoded (sync decodes them off the loop), so nothing here is
        proportional to the block's size but its execution."""
        block, cert = item.block, item.cert
        height = block.header.height
        if height != self.app.height + 1:
            return  # already have it (consensus or an earlier sync got there first)
        if cert.height != height or cert.block_hash != block.hash:
            self.hooks.penalize(item.peer, f"certificate does not sign block {height}")
            return
        vset = self.validator_set if self._vset_height == height else self.validator_set_for(height)
        assert vset is not None
        try:
            cert.verify(self.app.chain_id, vset)
        except Exception as exc:
            # No honest peer serves a certificate our validator set rejects at
            # the height we asked for; a ban, so a slow liar cannot outpace the
            # score's decay.
            ban = self.hooks.ban or self.hooks.penalize
            ban(item.peer, f"synced block {height}: certificate does not verify: {exc}")
            return
        problem = self._last_commit_problem(block)
        if problem:
            self.hooks.penalize(item.peer, f"synced block {height}: {problem}")
            return
        # A block that more than 2/3 of power committed must apply here: if it
        # does not, our own state is wrong and carrying on would be worse.
        self.app.apply_block(block, item.cert_bytes)
        log.info("synced block %d from %s", height, item.peer[-8:])
        self.after_commit(block, item.cert_bytes)
