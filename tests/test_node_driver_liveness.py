"""The three schedules of issue 8 through the real ConsensusDriver: four drivers, real applications and WALs.

The test is the network and the scheduler: it routes what each driver
broadcasts (rewriting the Byzantine validator's messages per recipient), takes
items off each driver's inbox one at a time exactly as ``ConsensusDriver._run``
does, fires armed timers and queues ``RebroadcastDue`` when all is quiet, and
serves sync from peers' stores through ``BlockSync.serve_blocks`` (the
Byzantine peer answers first, with junk).  Validation, building, commit, WAL
and sync application are the driver's own code.  Each schedule stalled a
height forever before the fix; now every honest driver commits height 1.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from typing import Any, Callable

from consensus.verify import CertificateVerifier
from consensus import events as ce
from consensus.messages import Message, Proposal, ViewChange, Vote, VoteKind, decode_message
from state.validators import ValidatorSet
from node.config import ConsensusSection, MempoolSection
from node.driver import ConsensusDriver, DriverHooks
from node.mempool import Mempool
from node.sync import BlockSync, SyncedBlock, check_blocks
from node.wal import WriteAheadLog
from state.app import Application
from state.codec import encode
from state.crypto import sha256
from state.errors import StateError
from state.kv import MemoryKV
from state.testing import TEST_CHAIN_ID as CHAIN
from state.testing import dev_key, make_genesis
from tests.test_node_driver import deliver


KEYS = [dev_key(f"liveness-{i}") for i in range(4)]
GENESIS = make_genesis(validators=KEYS)
VSET = ValidatorSet([(k.public_key, 10) for k in KEYS])
pytestmark = pytest.mark.timeout(120)
QUIET_ROUNDS = 60  # rounds of "rebroadcast, then fire the timers" the network gets after healing

Rewrite = Callable[[Message, int], list[Message]]


def index_of(address: bytes) -> int:
    return next(i for i, k in enumerate(KEYS) if k.address == address)


def junk(block: bytes) -> bytes:
    return block + b"\x00"  # claims the block's hash, does not decode (trailing bytes)


class Cluster:
    def __init__(self, tmp_path: Path, byzantine: int, rewrite: Rewrite) -> None:
        self.byzantine = byzantine
        self.rewrite = rewrite
        self.outbox: list[tuple[int, bytes]] = []  # what drivers broadcast, in order
        self.packets: list[tuple[int, int, Message]] = []  # (src, dst, message) in flight
        self.penalties: list[tuple[int, str, str]] = []
        self.sync_wanted: set[int] = set()
        self.isolated: int | None = None
        self.drivers: list[ConsensusDriver] = []
        for i, key in enumerate(KEYS):
            app = Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier())

            async def broadcast(data: bytes, i: int = i) -> None:
                self.outbox.append((i, data))

            self.drivers.append(ConsensusDriver(
                app=app, mempool=Mempool(app, MempoolSection()), wal=WriteAheadLog(tmp_path / f"wal{i}"),
                config=ConsensusSection(timeout_base_ms=600_000, rebroadcast_ms=600_000,
                                        min_block_interval_ms=0, empty_block_interval_ms=0),
                signer=key,
                hooks=DriverHooks(broadcast=broadcast,
                                  penalize=lambda p, r, i=i: self.penalties.append((i, p, r)),
                                  request_sync=lambda h, i=i: self.sync_wanted.add(i))))

    @property
    def honest(self) -> list[int]:
        return [i for i in range(len(KEYS)) if i != self.byzantine]

    async def start(self) -> None:
        for driver in self.drivers:
            driver.start()
            for task in driver._tasks:  # the test takes their place: it runs the inbox and the rebroadcasts
                task.cancel()
        await self.idle()

    async def stop(self) -> None:
        for driver in self.drivers:
            await driver.stop()
            driver.wal.close()

    async def idle(self) -> None:
        for _ in range(3):
            await asyncio.sleep(0)
        while any(d._build_task is not None and not d._build_task.done() for d in self.drivers):
            await asyncio.sleep(0.001)

    # -- the network --------------------------------------------------------------------

    def fan_out(self) -> None:
        """Broadcasts become one packet per recipient (the Byzantine sender's rewritten, a partition's lost)."""
        for src, data in self.outbox:
            message = decode_message(data)
            if message.height > 1:
                continue  # the schedules are about height 1; later heights would run on forever
            for dst in range(len(KEYS)):
                if dst == src or self.isolated in (src, dst):
                    continue
                for sent in (self.rewrite(message, dst) if src == self.byzantine else [message]):
                    self.packets.append((src, dst, sent))
        self.outbox = []

    def route(self, hold: Callable[[int, int, Message], bool] = lambda s, d, m: False) -> bool:
        """Deliver every packet not held, in order; True if any moved."""
        self.fan_out()
        held = [p for p in self.packets if hold(*p)]
        moved = [p for p in self.packets if not hold(*p)]
        self.packets = held
        for src, dst, message in moved:
            deliver(self.drivers[dst], message.encode(), f"n{src}")
        return bool(moved)

    def step(self, i: int) -> bool:
        """One inbox item, dispatched as ConsensusDriver._run dispatches it."""
        driver = self.drivers[i]
        if driver.inbox.empty():
            return False
        item = driver.inbox.get_nowait()
        if isinstance(item, SyncedBlock):
            driver._apply_synced(item)
        else:
            driver._handle(item)
        return True

    async def settle(self, busy: frozenset[int] = frozenset(),
                     hold: Callable[[int, int, Message], bool] = lambda s, d, m: False) -> None:
        while True:
            moved = self.route(hold)
            for i in range(len(KEYS)):
                while i not in busy and self.step(i):
                    moved = True
            await self.idle()
            if not moved and not self.outbox and all(
                    self.drivers[i].inbox.empty() for i in range(len(KEYS)) if i not in busy):
                return

    def fire_timers(self, nodes: list[int]) -> None:
        for i in nodes:
            driver = self.drivers[i]
            current = [(h, v) for h, v in driver.armed_timeouts if h == driver.height]
            if current:
                h, v = max(current)
                driver._timers[(h, v)].cancel()
                driver._fire_timeout(h, v)

    async def sync(self) -> None:
        """BlockSync's fetch, one round each: the Byzantine peer answers junk first, then an honest store."""
        for i in sorted(self.sync_wanted):
            me = self.drivers[i]
            height = me.app.height + 1
            peers = [j for j in self.honest if j != i and self.drivers[j].app.height >= height]
            if not peers:
                continue
            self.sync_wanted.discard(i)
            server = self.drivers[peers[0]].app
            block, cert = server.get_block(height), server.get_commit_cert(height)
            try:  # BlockSync's worker-thread check refuses (and penalises) the junk
                check_blocks(encode([1, [[junk(block.encode()), cert]]]), height)
                raise AssertionError("junk passed the sync check")
            except StateError as exc:
                self.penalties.append((i, f"n{self.byzantine}", f"bad blocks response: {exc}"))
            serving = BlockSync(server, None, None)  # type: ignore[arg-type]  # serving needs no network
            served = await serving.serve_blocks(f"n{i}", encode([1, height, 1]))
            for decoded, certificate, raw_cert in check_blocks(served, height):
                me.inbox.put_nowait(SyncedBlock(decoded, certificate, raw_cert, f"n{peers[0]}"))

    async def heal(self, height: int = 1) -> int:
        """FIFO, nothing lost; when quiet: sync, rebroadcast, then the timers.  Returns the timer rounds used."""
        self.isolated = None
        for rounds in range(QUIET_ROUNDS):
            await self.settle()
            await self.sync()
            await self.settle()
            if all(self.drivers[i].app.height >= height for i in self.honest):
                return rounds
            for driver in self.drivers:
                driver.inbox.put_nowait(ce.RebroadcastDue())
            await self.settle()
            await self.sync()
            await self.settle()
            if all(self.drivers[i].app.height >= height for i in self.honest):
                return rounds
            self.fire_timers(list(range(len(KEYS))))
        raise AssertionError(f"LIVENESS: not committed after {QUIET_ROUNDS} timer rounds: "
                             f"{[(d.app.height, d.engine_state()['view']) for d in self.drivers]}")


def view_of(message: Message) -> int:
    return message.new_view if isinstance(message, ViewChange) else getattr(message, "view", 0)


def junk_proposal(message: Proposal, byzantine: int) -> Proposal:
    return Proposal.create(KEYS[byzantine], CHAIN, message.height, message.view, junk(message.block),
                           message.block_hash)


async def test_validation_answer_for_other_bytes_commits_through_the_driver(tmp_path):
    byzantine, a = index_of(VSET.proposer_for(0).address), index_of(VSET.proposer_for(1).address)

    def rewrite(message: Message, dst: int) -> list[Message]:
        if message.height != 1:
            return [message]
        if view_of(message) > 0 or (isinstance(message, Vote) and message.kind == VoteKind.COMMIT):
            return []
        if isinstance(message, Proposal) and dst == a:
            return [junk_proposal(message, byzantine)]
        return [message]

    cluster = Cluster(tmp_path, byzantine, rewrite)
    await cluster.start()
    try:
        to_a = lambda s, d, m: d == a  # noqa: E731
        await cluster.settle(busy=frozenset({a}), hold=to_a)
        cluster.fire_timers([i for i in range(4) if i not in (a, byzantine)])
        await cluster.settle(busy=frozenset({a}), hold=to_a)
        # a's driver now gets the junk proposal, a RebroadcastDue behind it, and
        # (after the junk's verdict is queued) everything else it missed.
        cluster.route(hold=lambda s, d, m: not isinstance(m, Proposal))
        cluster.drivers[a].inbox.put_nowait(ce.RebroadcastDue())
        assert cluster.step(a)  # the junk: ValidateProposal answered into the inbox, behind the RebroadcastDue
        assert isinstance(cluster.drivers[a].inbox._queue[-1], ce.ProposalValidated)  # type: ignore[attr-defined]
        cluster.route()
        await cluster.heal()
        blocks = {cluster.drivers[i].app.get_block(1).hash for i in cluster.honest}
        assert len(blocks) == 1
    finally:
        await cluster.stop()


async def test_far_ahead_after_partition_commits_through_the_driver(tmp_path):
    byzantine, lagging, views = 3, 0, 70
    cluster = Cluster(tmp_path, byzantine, lambda m, d: [] if isinstance(m, Vote) and m.height == 1 else [m])
    await cluster.start()
    try:
        cluster.isolated = lagging
        others = [i for i in range(4) if i != lagging]
        while min(cluster.drivers[i].engine.view for i in others if i != byzantine) < views:
            await cluster.settle()
            cluster.fire_timers(list(range(4)))
        cluster.outbox, cluster.packets = [], []  # lost in the partition
        assert cluster.drivers[lagging].engine.view < 5
        await cluster.heal()
    finally:
        await cluster.stop()


async def test_junk_commits_crowding_out_the_genuine_one_commit_through_the_driver(tmp_path):
    byzantine = index_of(VSET.proposer_for(0).address)
    c = next(i for i in range(4) if i != byzantine)

    def rewrite(message: Message, dst: int) -> list[Message]:
        if message.height != 1:
            return [message]
        if isinstance(message, Proposal) and dst == c:
            return [junk_proposal(message, byzantine)]
        if isinstance(message, Vote) and message.kind == VoteKind.COMMIT and dst != c:
            return [Vote.create(KEYS[byzantine], CHAIN, VoteKind.COMMIT, 1, message.view,
                                bytes(sha256(f"junk{n}".encode()))) for n in (1, 2)]
        return [message]

    cluster = Cluster(tmp_path, byzantine, rewrite)
    await cluster.start()
    try:
        await cluster.settle()
        assert cluster.drivers[c].engine.state.committed_block_hash is not None  # decided, without the bytes
        assert all(cluster.drivers[i].app.height == 0 for i in cluster.honest) and c in cluster.sync_wanted
        await cluster.heal()
        assert len({cluster.drivers[i].app.get_block(1).hash for i in cluster.honest}) == 1
        assert all(p == f"n{byzantine}" for _, p, _ in cluster.penalties)  # the junk sync answers
    finally:
        await cluster.stop()


def test_a_wal_verdict_written_before_verdicts_named_their_bytes_judges_nothing():
    from node.driver import record_to_event

    event = record_to_event(["valid", 1, 0, bytes(32), True, ""])  # the 6-field record of earlier versions
    assert event == ce.ProposalValidated(1, 0, bytes(32), True, "", block_digest=b"")
