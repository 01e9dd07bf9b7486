"""The consensus driver against a real application and WAL, no network.

Regression tests for crash-recovery and Byzantine-input holes found in
review: a commit discovered while replaying the WAL, view timers after a
replay, a certified block whose bytes we never validated, a proposal whose
last_commit is not its parent's certificate, and a lying sync peer.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from consensus.verify import CertificateVerifier
from consensus import events as ce
from consensus.messages import CommitCertificate, Proposal, Vote, VoteKind, decode_message
from state.validators import ValidatorSet
from node.config import ConsensusSection, MempoolSection
from node.driver import ConsensusDriver, DriverHooks, event_to_record
from node.mempool import Mempool
from node.sync import BlockSync
from node.wal import WriteAheadLog
from state.app import Application
from state.blocks import Block
from state.codec import encode
from state.crypto import sha256
from state.kv import MemoryKV
from state.testing import TEST_CHAIN_ID as CHAIN
from state.testing import dev_key, make_genesis


def deliver(driver: ConsensusDriver, data: bytes, peer: str) -> None:
    """A consensus frame as the runtime hands it over (node/inbound.py decodes, then the inbox)."""
    driver.inbox.put_nowait(ce.MessageReceived(decode_message(data), peer))


KEYS = [dev_key(f"driver-{i}") for i in range(4)]
GENESIS = make_genesis(validators=KEYS)
VSET = ValidatorSet([(k.public_key, 10) for k in KEYS])


def key_of(address: bytes):
    return next(k for k in KEYS if k.address == address)


class Harness:
    def __init__(self, me, kv: MemoryKV, wal_path: Path) -> None:
        self.sent: list = []
        self.syncs: list[int] = []
        self.penalties: list[tuple[str, str]] = []

        async def broadcast(data: bytes) -> None:
            self.sent.append(decode_message(data))

        app = Application(kv, GENESIS, commit_verifier=CertificateVerifier())
        self.driver = ConsensusDriver(
            app=app,
            mempool=Mempool(app, MempoolSection()),
            wal=WriteAheadLog(wal_path),
            # long timers and intervals: nothing fires on its own during a test
            config=ConsensusSection(timeout_base_ms=600_000, rebroadcast_ms=600_000, empty_block_interval_ms=600_000),
            signer=me,
            hooks=DriverHooks(broadcast=broadcast, penalize=lambda p, r: self.penalties.append((p, r)),
                              request_sync=self.syncs.append),
        )

    async def settle(self) -> None:
        for _ in range(20):
            await asyncio.sleep(0.005)

    def votes(self, height: int) -> list[tuple[str, bytes]]:
        return [(m.kind.name, m.block_hash) for m in self.sent if isinstance(m, Vote) and m.height == height]


def _block1(proposer, time_ms: int | None = None) -> tuple[bytes, bytes]:
    block, _ = Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier()).build_block(
        [], proposer=proposer.address, time_ms=time_ms or int(time.time() * 1000), last_commit=b"")
    return block.encode(), block.hash


async def test_commit_found_while_replaying_starts_the_next_height_live(tmp_path):
    primary = key_of(VSET.proposer_for(0).address)
    me = next(k for k in KEYS if k is not primary)
    raw, block_hash = _block1(primary)
    # On disk at a SIGKILL: the quorum-completing COMMIT was logged, commit_block never ran.
    wal = WriteAheadLog(tmp_path / "wal")
    wal.start_height(event_to_record(ce.HeightStarted(1, VSET)))
    wal.append(event_to_record(ce.MessageReceived(Proposal.create(primary, CHAIN, 1, 0, raw, block_hash), "p")))
    wal.append(event_to_record(ce.ProposalValidated(1, 0, block_hash, True, "", block_digest=bytes(sha256(raw)))))
    for k in KEYS:
        if k is not me:
            wal.append(event_to_record(ce.MessageReceived(Vote.create(k, CHAIN, VoteKind.COMMIT, 1, 0, block_hash), "p")))
    wal.close()

    kv = MemoryKV()
    h = Harness(me, kv, tmp_path / "wal")
    h.driver.start()
    await h.settle()
    try:
        assert h.driver.app.height == 1
        assert WriteAheadLog(tmp_path / "wal").recovered()[0][:2] == ["height", 2]
        assert (2, 0) in h.driver.armed_timeouts
    finally:
        await h.driver.stop()
        h.driver.wal.close()


async def test_replay_arms_the_current_view_timer(tmp_path):
    me, kv = KEYS[0], MemoryKV()
    h = Harness(me, kv, tmp_path / "wal")
    h.driver.start()
    await h.settle()
    assert h.driver.armed_timeouts == [(1, 0)]
    await h.driver.stop()
    h.driver.wal.close()

    again = Harness(me, kv, tmp_path / "wal")
    again.driver.start()  # replays [height 1]
    await again.settle()
    try:
        assert again.driver.armed_timeouts == [(1, 0)]
    finally:
        await again.driver.stop()
        again.driver.wal.close()


async def test_certified_block_we_never_validated_is_synced_not_applied(tmp_path):
    primary = key_of(VSET.proposer_for(0).address)
    me = next(k for k in KEYS if k is not primary)
    raw, block_hash = _block1(primary)
    other_raw, other_hash = _block1(primary, Block.decode(raw).header.time_ms + 1)  # another valid block
    assert other_hash != block_hash
    h = Harness(me, MemoryKV(), tmp_path / "wal")
    h.driver.start()
    await h.settle()
    try:
        # The primary gave us the other block's bytes under the certified hash.
        votes = [Vote.create(k, CHAIN, VoteKind.COMMIT, 1, 0, block_hash) for k in KEYS if k is not me]
        cert = CommitCertificate.from_votes(1, 0, block_hash, votes)
        h.driver._execute(ce.CommitBlock(1, other_raw, block_hash, cert))
        assert h.driver.app.height == 0 and h.syncs == [1]
        h.driver._execute(ce.CommitBlock(1, b"\x93garbage", block_hash, cert))
        assert h.driver.app.height == 0 and h.syncs == [1, 1]
    finally:
        await h.driver.stop()
        h.driver.wal.close()


async def test_proposal_whose_last_commit_is_not_the_parents_certificate_is_invalid(tmp_path):
    primary = key_of(VSET.proposer_for(0).address)
    me = next(k for k in KEYS if k is not primary)
    kv = MemoryKV()
    app = Application(kv, GENESIS, commit_verifier=CertificateVerifier())
    raw, block_hash = _block1(primary)
    votes = [Vote.create(k, CHAIN, VoteKind.COMMIT, 1, 0, block_hash) for k in KEYS[:3]]
    cert = CommitCertificate.from_votes(1, 0, block_hash, votes)
    block1 = Block.decode(raw)
    app.commit_block(block1, app.execute_block(block1), cert.encode())
    h = Harness(me, kv, tmp_path / "wal")
    h.driver.start()
    await h.settle()
    try:
        proposer2 = key_of(VSET.increment(1).proposer_for(0).address)
        now = int(time.time() * 1000) + 5
        forged_cert = CommitCertificate.from_votes(1, 0, block_hash, votes[:2])  # below quorum
        for last_commit, ok in ((cert.encode(), True), (b"not a certificate", False), (forged_cert.encode(), False)):
            block, _ = h.driver.app.build_block([], proposer=proposer2.address, time_ms=now, last_commit=last_commit)
            verdict = h.driver._validate(ce.ValidateProposal(2, 0, block.encode(), block.hash))
            assert verdict.valid is ok, (last_commit[:20], verdict.reason)
    finally:
        await h.driver.stop()
        h.driver.wal.close()


class _Peers:
    """A fake network: one peer lies about its height, one serves blocks."""

    def __init__(self, app: Application, serving: Application) -> None:
        self.requests: list[str] = []
        self.penalties: list[tuple[str, str]] = []
        self.serving = serving
        self.server = BlockSync(serving, self, asyncio.Queue())

    def connected_peers(self) -> list[str]:
        return ["honest", "liar"]

    async def request(
        self, peer: str, protocol: str, data: bytes, timeout: float = 5.0, max_response_bytes: int | None = None
    ) -> bytes:
        if protocol.endswith("status/1"):
            height = 10**12 if peer == "liar" else self.serving.height
            return encode([1, CHAIN, height, bytes(32)])
        self.requests.append(peer)
        return encode([1, []]) if peer == "liar" else await self.server.serve_blocks(peer, data)

    def penalize(self, peer: str, reason: str, points: int = 10) -> None:
        self.penalties.append((peer, reason))

    def ban(self, peer: str, reason: str) -> None:
        self.penalties.append((peer, reason))


async def test_sync_skips_and_penalises_a_peer_that_claims_blocks_it_does_not_serve():
    primary = key_of(VSET.proposer_for(0).address)
    serving = Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier())
    raw, block_hash = _block1(primary)
    block1 = Block.decode(raw)
    cert = CommitCertificate.from_votes(1, 0, block_hash, [Vote.create(k, CHAIN, VoteKind.COMMIT, 1, 0, block_hash)
                                                           for k in KEYS[:3]])
    serving.commit_block(block1, serving.execute_block(block1), cert.encode())
    lagging = Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier())
    inbox: asyncio.Queue = asyncio.Queue()
    peers = _Peers(lagging, serving)
    sync = BlockSync(lagging, peers, inbox)
    task = asyncio.create_task(sync._sync_round())
    item = await asyncio.wait_for(inbox.get(), 5)
    task.cancel()
    assert item.peer == "honest" and item.block.encode() == raw
    assert peers.requests[:2] == ["liar", "honest"]
    assert peers.penalties and peers.penalties[0][0] == "liar"


async def test_next_height_messages_are_logged_so_a_restart_never_equivocates(tmp_path):
    """Traffic for h+1 that arrives while we are at h is handed back by the
    engine (Redeliver) and logged in h+1's WAL: after a crash we still know our
    PREPARE, and a conflicting proposal from the same primary gets no vote."""
    set2 = VSET.increment(1)
    p1, p2 = key_of(VSET.proposer_for(0).address), key_of(set2.proposer_for(0).address)
    me = next(k for k in KEYS if k not in (p1, p2))
    others = [k for k in KEYS if k is not me]
    now = int(time.time() * 1000)
    chain = Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier())
    b1, r1 = chain.build_block([], proposer=p1.address, time_ms=now, last_commit=b"")
    cert1 = CommitCertificate.from_votes(1, 0, b1.hash, [Vote.create(k, CHAIN, VoteKind.COMMIT, 1, 0, b1.hash)
                                                         for k in others])
    chain.commit_block(b1, r1, cert1.encode())
    b2a, _ = chain.build_block([], proposer=p2.address, time_ms=now + 1, last_commit=cert1.encode())
    b2b, _ = chain.build_block([], proposer=p2.address, time_ms=now + 2, last_commit=cert1.encode())

    kv = MemoryKV()
    h = Harness(me, kv, tmp_path / "wal")
    h.driver.start()
    await h.settle()
    deliver(h.driver, Proposal.create(p1, CHAIN, 1, 0, b1.encode(), b1.hash).encode(), "p1")
    await h.settle()
    deliver(h.driver, Proposal.create(p2, CHAIN, 2, 0, b2a.encode(), b2a.hash).encode(), "p2")
    for k in others:
        deliver(h.driver, Vote.create(k, CHAIN, VoteKind.PREPARE, 2, 0, b2a.hash).encode(), "peer")
    for k in others:
        deliver(h.driver, Vote.create(k, CHAIN, VoteKind.COMMIT, 1, 0, b1.hash).encode(), "peer")
    await h.settle()
    assert h.driver.app.height == 1
    assert ("PREPARE", b2a.hash) in h.votes(2)
    for task in h.driver._tasks:  # a SIGKILL: nothing more runs; the store and the WAL file survive
        task.cancel()
    h.driver.wal.close()

    again = Harness(me, kv, tmp_path / "wal")
    again.driver.start()
    await again.settle()
    try:
        assert again.driver.engine.state.prepared_block_hash == b2a.hash
        deliver(again.driver, Proposal.create(p2, CHAIN, 2, 0, b2b.encode(), b2b.hash).encode(), "p2")
        await again.settle()
        assert {block for _, block in again.votes(2)} <= {b2a.hash}, "signed a conflicting vote after restart"
    finally:
        await again.driver.stop()
        again.driver.wal.close()
