"""A validator set change through ``validator_updates`` (issue 9, acceptance 2).

Nothing in the node derives a set from genesis: the application stores the
set of every height and derives the next from the block's updates.  Here a
test drives the updates directly (``BlockRun.end_block``, the hook staking
will fill): block 2 removes validator D and adds E.  From height 3 the
application, the engine (through the driver), the WAL and block sync all use
the new set; height 2 and earlier keep the old one, readable after a reopen.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.messages import CommitCertificate, Vote, VoteKind, decode_message
from consensus.verify import CertificateVerifier
from node.blocks import BlockExecutor
from node.config import ConsensusSection, MempoolSection
from node.driver import ConsensusDriver, DriverHooks
from node.mempool import Mempool
from node.wal import WriteAheadLog, record_to_event
from state.app import Application
from state.crypto import PrivateKey
from state.errors import InvalidBlock
from state.execution import BlockRun
from state.kv import MemoryKV
from state.testing import TEST_CHAIN_ID as CHAIN
from state.testing import dev_key, make_genesis
from tests.test_node_driver import deliver

A, B, C, D, E = (dev_key(f"updates-{name}") for name in "ABCDE")
GENESIS = make_genesis(validators=[A, B, C, D])
UPDATES = ((E.public_key, 10), (D.public_key, 0))  # made by block 2, in force from height 3
TARGET = 4
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def updates_at_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BlockRun, "end_block", lambda run: UPDATES if run.height == 2 else ())


def certify(height: int, block_hash: bytes, signers: list[PrivateKey]) -> bytes:
    votes = [Vote.create(k, CHAIN, VoteKind.COMMIT, height, 0, block_hash) for k in signers]
    return CommitCertificate.from_votes(height, 0, block_hash, votes).encode()


class Network:
    """Five real drivers (A-D validators at genesis, E an observer until height 3); the test routes every
    broadcast to every other driver and runs each inbox as ConsensusDriver._run would."""

    def __init__(self, tmp_path: Path) -> None:
        self.outbox: list[tuple[int, bytes]] = []
        self.sent: list[list[object]] = [[] for _ in range(5)]
        self.drivers: list[ConsensusDriver] = []
        for i, key in enumerate((A, B, C, D, E)):
            app = Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier())

            async def broadcast(data: bytes, i: int = i) -> None:
                self.outbox.append((i, data))
                self.sent[i].append(decode_message(data))

            self.drivers.append(ConsensusDriver(
                app=app, mempool=Mempool(app, MempoolSection()), wal=WriteAheadLog(tmp_path / f"wal{i}"),
                config=ConsensusSection(timeout_base_ms=600_000, rebroadcast_ms=600_000,
                                        min_block_interval_ms=0, empty_block_interval_ms=0),
                signer=key,
                hooks=DriverHooks(broadcast=broadcast, penalize=lambda p, r: None, request_sync=lambda h: None)))

    async def run_until(self, height: int) -> None:
        for driver in self.drivers:
            driver.start()
            for task in driver._tasks:
                task.cancel()  # the test runs the inboxes
        for _ in range(2_000):
            if all(d.app.height >= height for d in self.drivers):
                return
            await asyncio.sleep(0)
            for src, data in self.outbox:
                for dst, driver in enumerate(self.drivers):
                    if dst != src and driver.app.height < height:
                        deliver(driver, data, f"n{src}")
            self.outbox = []
            for driver in self.drivers:
                while not driver.inbox.empty():
                    driver._handle(driver.inbox.get_nowait())
        raise AssertionError(f"heights {[d.app.height for d in self.drivers]} did not reach {height}")

    async def stop(self) -> None:
        for driver in self.drivers:
            await driver.stop()
            driver.wal.close()


def test_the_application_stores_the_new_set_from_the_next_height(updates_at_2: None) -> None:
    kv = MemoryKV()
    app = Application(kv, GENESIS, commit_verifier=CertificateVerifier())
    blocks = BlockExecutor(app)
    old = app.validator_set(1)
    assert old is not None and {v.address for v in old} == {A.address, B.address, C.address, D.address}
    for height in (1, 2):
        vset = app.validator_set(height)
        assert vset is not None
        signer = next(k for k in (A, B, C, D) if k.address == vset.proposer_for(0).address)
        block = blocks.build([], proposer=signer.address, time_ms=GENESIS.genesis_time_ms + height * 1000)
        assert block.header.validators_hash == vset.hash()
        assert blocks.commit_certified(height, block.hash, block.encode(), certify(height, block.hash, [A, B, C]))
    new = app.validator_set(3)
    assert new == app.validator_set(2).updated(UPDATES).increment(1)
    assert {v.address for v in new} == {A.address, B.address, C.address, E.address}
    assert app.validator_set(2) == old.increment(1) and app.validator_set(1) == old  # the past stays readable
    assert app.validators_hash == new.hash()
    # Persisted in the block's batch: a reopened application reads the same sets.
    again = Application(kv, GENESIS, commit_verifier=CertificateVerifier())
    assert [again.validator_set(h) for h in (1, 2, 3)] == [app.validator_set(h) for h in (1, 2, 3)]
    assert again.validator_set(4) is None and again.validator_set(0) is None
    # D is out: a block 3 proposed by D is refused.
    with pytest.raises(InvalidBlock, match="is not a validator"):
        app.build_block([], proposer=D.address, time_ms=app.last_time_ms + 1, last_commit=blocks.last_commit)


def test_bad_updates_make_the_block_invalid(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BlockRun, "end_block", lambda run: ((dev_key("nobody").public_key, 0),))
    app = Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier())
    with pytest.raises(InvalidBlock, match="validator updates are invalid: .*cannot be removed"):
        BlockExecutor(app).build([], proposer=app.validator_set(1).proposer_for(0).address,  # type: ignore[union-attr]
                                 time_ms=GENESIS.genesis_time_ms + 1)


async def test_engine_driver_and_sync_follow_the_new_set(tmp_path: Path, updates_at_2: None) -> None:
    net = Network(tmp_path)
    try:
        await net.run_until(TARGET)
        a_app = net.drivers[0].app
        new = a_app.validator_set(3)
        assert new is not None and E.address in new and D.address not in new
        for i, driver in enumerate(net.drivers):
            assert driver.app.last_block_hash == a_app.last_block_hash, f"driver {i} forked"
            assert driver.engine is not None and driver.engine.height == TARGET + 1
            # the engine of the current height runs on the application's set
            assert driver.validator_set == driver.app.validator_set(TARGET + 1)
            # and the WAL's height record carries it
            first = record_to_event(WriteAheadLog(tmp_path / f"wal{i}").recovered()[0])
            assert first.height == TARGET + 1 and first.validator_set == driver.app.validator_set(TARGET + 1)
        votes = {i: {(m.height, m.kind) for m in net.sent[i] if isinstance(m, Vote)} for i in range(5)}
        assert (3, VoteKind.COMMIT) not in votes[3], "D voted after it left the set"
        assert (2, VoteKind.COMMIT) in votes[3]
        assert (3, VoteKind.COMMIT) in votes[4] and (2, VoteKind.COMMIT) not in votes[4], "E voted outside its term"
        for height in range(3, TARGET + 1):
            cert = CommitCertificate.decode(a_app.get_commit_cert(height))  # type: ignore[arg-type]
            assert {a for a, _ in cert.signatures} <= {v.address for v in new}
            assert a_app.get_block(height).header.validators_hash == a_app.validator_set(height).hash()  # type: ignore[union-attr]
    finally:
        await net.stop()

    # Sync: a fresh node applies the chain from A's store, verifying each
    # certificate against the set of its own height.
    follower = BlockExecutor(Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier()))
    for height in (1, 2):
        block = a_app.get_block(height)
        assert block is not None
        assert follower.apply_synced(block, a_app.get_commit_cert(height)) is None  # type: ignore[arg-type]
    block3 = a_app.get_block(3)
    assert block3 is not None
    # A, B and D hold > 2/3 of the old set but not of the new one: refused, a ban.
    stale = certify(3, block3.hash, [A, B, D])
    refused = follower.apply_synced(block3, stale)
    assert refused is not None and refused.ban and "does not verify" in refused.reason
    assert follower.app.height == 2
    assert follower.apply_synced(block3, certify(3, block3.hash, [A, B, E])) is None
    assert follower.app.validator_set(3) == new and follower.app.height == 3
