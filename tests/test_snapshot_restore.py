"""Restore review fixes (node/snapshot.py, node/restore_swap.py): a restored validator never
signs where it lost its lock, the swap survives a crash between its renames, a symlinked
store stays where it is, the home's history window is used, and the refusals each have a
test that fails without them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from consensus import events as ce
from consensus.engine import Engine
from consensus.messages import CommitCertificate, Vote, VoteKind
from consensus.signing import KeySigner, SignRequest
from node.config import ConsensusSection, Home, MempoolSection, StateSection
from node.driver import ConsensusDriver, DriverHooks, event_to_record
from node.errors import StartRefused
from node.mempool import Mempool
from node.restore_swap import journal_file
from node.signer import node_signer
from node.snapshot import (
    FOOTER_MAGIC,
    SnapshotCorrupt,
    SnapshotMismatch,
    SnapshotRefused,
    SnapshotTruncated,
    create_from_home,
    restore_snapshot,
    verify_snapshot,
)
from node.wal import WriteAheadLog
from state import keys
from state.app import Application
from state.blocks import BlockHeader
from state.codec import decode, encode
from state.crypto import sha256
from state.kv import LevelDBKV
from tests.test_snapshot import CHAIN, ChainHome, files


@pytest.fixture
def chain(tmp_path) -> ChainHome:
    c = ChainHome(tmp_path / "home")
    c.commit(5)
    return c


@pytest.fixture
def snap(chain, tmp_path) -> Path:
    return create_from_home(chain.home, tmp_path / "s5.qsnap")[1]


# -- finding 1: the WAL and the sign floor ---------------------------------------------


def _block_on_store(chain: ChainHome):
    """Block 6 built on the home's store at 5, not committed (what the validator proposed before a crash)."""
    kv = LevelDBKV(chain.home.state_dir)
    try:
        app = Application(kv, chain.genesis, initialise=False)
        block, _ = app.build_block([], proposer=chain.key.address, time_ms=app.last_time_ms + 1000,
                                   last_commit=app.get_commit_cert(app.height) or b"")
        return block, app.validator_set(app.height + 1)
    finally:
        kv.close()


async def test_a_wal_of_the_next_height_is_kept_and_its_lock_replays(chain, snap):
    """Store at 5, WAL of height 6 holding our proposal of A (signed: PROPOSAL, PREPARE):
    restored to 5, the driver replays the WAL and commits A, the block it had signed."""
    block, vset = _block_on_store(chain)
    wal = WriteAheadLog(chain.home.wal_file)
    wal.start_height(event_to_record(ce.HeightStarted(6, vset)))
    wal.append(event_to_record(ce.ProposalBuilt(6, 0, block.encode(), block.hash)), sync=True)
    wal.close()
    state = chain.open()
    for request in (SignRequest.proposal(CHAIN, 6, 0, block.hash, block.encode()),
                    SignRequest.vote(CHAIN, VoteKind.PREPARE, 6, 0, block.hash)):
        state.sign_guard.approve(request)  # what the first run signed before the crash
    state.kv.close()

    note = restore_snapshot(chain.home, snap, force=True)
    assert chain.home.wal_file.exists() and note["wal_moved_to"] is None

    state = chain.open()
    sent: list = []

    async def broadcast(data: bytes) -> None:
        sent.append(data)

    driver = ConsensusDriver(
        app=state.app, mempool=Mempool(state.app, MempoolSection()), wal=WriteAheadLog(chain.home.wal_file),
        config=ConsensusSection(timeout_base_ms=600_000, rebroadcast_ms=600_000, empty_block_interval_ms=600_000),
        signer=node_signer(None, chain.key, state.sign_guard),
        hooks=DriverHooks(broadcast=broadcast, penalize=lambda p, r: None, request_sync=lambda h: None))
    try:
        driver.start()
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert state.app.height == 6 and state.app.last_block_hash == block.hash
        assert note["wal_kept"] is True and note["sign_floor"] <= 5
    finally:
        await driver.stop()
        driver.wal.close()
        state.kv.close()


def _signed_at_10(chain: ChainHome) -> bytes:
    """The store reaches 9; the validator PREPAREd and COMMITted block A at (10, 0); its WAL is of 10."""
    chain.commit(4)
    state = chain.open()
    block_a = bytes([0xAA]) * 32
    for kind in (VoteKind.PREPARE, VoteKind.COMMIT):
        state.sign_guard.approve(SignRequest.vote(CHAIN, kind, 10, 0, block_a))
    state.kv.close()
    wal = WriteAheadLog(chain.home.wal_file)
    wal.start_height(["height", 10, b""])
    wal.close()
    return block_a


def test_a_restored_validator_signs_nothing_where_it_lost_its_lock(chain, snap):
    _signed_at_10(chain)
    note = restore_snapshot(chain.home, snap, height=7, force=True)
    assert note["sign_state_height"] == 10 and Path(note["wal_moved_to"]).exists()
    state = chain.open()
    try:
        block_b = bytes([0xBB]) * 32
        signers = {"local": node_signer(None, chain.key, state.sign_guard),
                   "remote": node_signer(KeySigner(chain.key), chain.key, state.sign_guard)}
        for name, signer in signers.items():
            for view in (0, 1, 5):  # the same view, and later views of the height it voted at
                for kind in (VoteKind.PREPARE, VoteKind.COMMIT):
                    request = SignRequest.vote(CHAIN, kind, 10, view, block_b)
                    assert signer.sign_request(request) is None, (name, view, kind)
            assert signer.sign_request(SignRequest.vote(CHAIN, VoteKind.PREPARE, 8, 0, block_b)) is None
            assert signer.sign_request(SignRequest.vote(CHAIN, VoteKind.PREPARE, 11, 0, block_b)) is not None, name
        assert note["wal_kept"] is False and note["sign_floor"] == 10
    finally:
        state.kv.close()


def test_a_restored_engine_at_the_height_it_voted_at_sends_nothing(chain, snap):
    """The engine as the node runs it (the restored signer) through a view change at height 10:
    before the floor it prepared another block in view 1 than the one it had committed in view 0."""
    _signed_at_10(chain)
    restore_snapshot(chain.home, snap, height=7, force=True)
    state = chain.open()
    try:
        vset = state.app.validator_set(8)
        engine = Engine(CHAIN, node_signer(None, chain.key, state.sign_guard), 10, vset, ce.TimeoutConfig())
        block_b = b"another block at 10"
        hash_b = bytes(sha256(block_b))
        sent = []
        for event in (ce.HeightStarted(10, vset), ce.ProposalBuilt(10, 0, block_b, hash_b), ce.TimeoutElapsed(10, 0),
                      ce.ProposalBuilt(10, 1, block_b, hash_b), ce.TimeoutElapsed(10, 1),
                      ce.ProposalBuilt(10, 2, block_b, hash_b)):
            sent += [a.message for a in engine.handle(event) if isinstance(a, ce.Broadcast)]
        assert sent == []
    finally:
        state.kv.close()


def test_a_record_copied_in_after_the_restore_sets_the_floor(chain, snap, tmp_path):
    """The note warns that a restore into a home without a record never creates one; the record
    copied in before the first start is adopted then, and the floor holds at its height."""
    _signed_at_10(chain)
    twin = chain.fresh_twin(tmp_path / "twin")
    twin.sign_state_file.unlink()
    note = restore_snapshot(twin, snap, height=7, blocks_from=chain.home)
    assert note["sign_state_height"] is None and "warning" in note
    shutil.copy(chain.home.sign_state_file, twin.sign_state_file)
    state = chain.open(twin)  # the record (10) is above the store (7): allowed, as the note now says
    try:
        assert state.sign_guard.floor == 10
        assert state.sign_guard.allow(Vote.create(chain.key, CHAIN, VoteKind.PREPARE, 10, 3, bytes(32))) is False
    finally:
        state.kv.close()
    assert json.loads(twin.restore_note.read_text())["sign_state_height"] == 10
    chain.open(twin).kv.close()  # and the next start is allowed by the note as it stands


# -- finding 2: the swap survives a crash between its renames ------------------------------


def _crash_on_rename(monkeypatch, after: int) -> None:
    """os.rename works ``after`` times, then the process "dies" (raises) on the next one."""
    real, calls = os.rename, []

    def rename(src, dst, *args, **kwargs):
        calls.append((src, dst))
        if len(calls) > after:
            raise OSError("simulated crash between the renames")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "rename", rename)


@pytest.mark.parametrize("after", [1, 2])  # old store aside | and the new one in, before the WAL moves
@pytest.mark.parametrize("finisher", ["start", "restore"])
def test_a_crash_between_the_renames_is_finished_by_the_next_start_or_restore(chain, snap, monkeypatch, after,
                                                                               finisher):
    chain.commit(2)
    wal = WriteAheadLog(chain.home.wal_file)
    wal.start_height(["height", 8, b""])
    wal.close()
    with monkeypatch.context() as patch:
        _crash_on_rename(patch, after)
        with pytest.raises(OSError, match="simulated crash"):
            restore_snapshot(chain.home, snap, force=True)
    assert journal_file(chain.home).exists()
    if after == 1:
        assert not chain.home.state_dir.exists()  # the window the journal closes
    if finisher == "start":
        state = chain.open()
        assert any("finished the restore" in w for w in state.warnings)
        assert state.app.height == 5 and state.app.app_hash == chain.app_hashes[5]
        state.kv.close()
    else:
        with pytest.raises(SnapshotRefused, match="not empty"):  # finished, then the new request as usual
            restore_snapshot(chain.home, snap)
    assert not journal_file(chain.home).exists()
    assert not chain.home.wal_file.exists() and chain.home.wal_file.with_name("consensus.wal.pre-restore-1").exists()
    assert (chain.home.data_dir / "state.pre-restore-1" / "CURRENT").is_file()
    assert [p.name for p in chain.home.data_dir.iterdir() if p.name.startswith(".state-restore-")] == []
    assert json.loads(chain.home.restore_note.read_text())["height"] == 5


def test_an_interrupted_restore_that_cannot_be_finished_is_one_clear_line(chain, snap, monkeypatch):
    with monkeypatch.context() as patch:
        _crash_on_rename(patch, 1)
        with pytest.raises(OSError):
            restore_snapshot(chain.home, snap, force=True)
    build = json.loads(journal_file(chain.home).read_text())["build"]
    shutil.rmtree(build)  # the new store lost too
    with pytest.raises(StartRefused, match="interrupted restore.*neither the restored store") as err:
        chain.open()
    assert "\n" not in str(err.value) and "state.pre-restore-1" in str(err.value)
    assert journal_file(chain.home).exists()


# -- finding 3: a symlinked store -----------------------------------------------------------


def test_a_symlinked_store_is_restored_at_its_target_and_the_link_kept(chain, snap, tmp_path):
    disk = tmp_path / "disk2"
    disk.mkdir()
    shutil.move(str(chain.home.state_dir), disk / "qstate")
    chain.home.state_dir.symlink_to(disk / "qstate")
    chain.commit(2)  # through the link
    note = restore_snapshot(chain.home, snap, force=True)
    assert chain.home.state_dir.is_symlink() and os.readlink(chain.home.state_dir) == str(disk / "qstate")
    assert Path(note["replaced_store"]) == disk / "qstate.pre-restore-1"
    assert sorted(p.name for p in disk.iterdir()) == ["qstate", "qstate.pre-restore-1"]
    assert not [p for p in chain.home.data_dir.iterdir() if p.name.startswith(("state.", ".state-"))]
    state = chain.open()
    assert state.app.height == 5 and state.app.app_hash == chain.app_hashes[5]
    state.kv.close()


# -- finding 4: the home's history window ------------------------------------------------------


@pytest.mark.parametrize("height", [5, 9])  # the snapshot's own height, and rolled forward
def test_restore_keeps_the_homes_history_window(chain, snap, tmp_path, height):
    chain.commit(4)
    config = chain.home.load_config()
    chain.home.write_config(dataclasses.replace(config, state=StateSection(history_blocks=2)))
    restore_snapshot(chain.home, snap, height=height, force=True)
    kv = LevelDBKV(chain.home.state_dir)
    try:
        app = Application(kv, chain.genesis, initialise=False)
        assert app.height == height and app.oldest_height == height - 2
    finally:
        kv.close()


# -- finding 5: each refusal has a test that fails without it ----------------------------------


def _rewrite_manifest(path: Path, **changes) -> None:
    """Edit the manifest in the footer, content untouched (the manifest is not in the content hash)."""
    data = path.read_bytes()
    tail = 4 + len(FOOTER_MAGIC)
    (length,) = struct.unpack(">I", data[-tail:-len(FOOTER_MAGIC)])
    doc = json.loads(data[-tail - length:-tail])
    doc.update(changes)
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(data[:-tail - length] + raw + struct.pack(">I", len(raw)) + FOOTER_MAGIC)


def test_a_manifest_sha256_that_is_not_the_contents_is_refused(chain, snap, tmp_path):
    twin = chain.fresh_twin(tmp_path / "twin")
    _rewrite_manifest(snap, content_sha256="00" * 32)
    with pytest.raises(SnapshotCorrupt, match="content SHA-256"):
        verify_snapshot(snap)
    before = files(twin.root)
    with pytest.raises(SnapshotCorrupt, match="content SHA-256"):
        restore_snapshot(twin, snap)
    assert files(twin.root) == before


def test_a_manifest_naming_another_chain_id_is_refused_as_another_chain(chain, snap, tmp_path):
    twin = chain.fresh_twin(tmp_path / "twin")
    _rewrite_manifest(snap, chain_id="qenex-elsewhere-1")
    before = files(twin.root)
    with pytest.raises(SnapshotMismatch, match="qenex-elsewhere-1"):
        restore_snapshot(twin, snap)
    assert files(twin.root) == before


def test_a_snapshot_missing_bytes_in_the_middle_is_refused_as_truncated(chain, snap, tmp_path):
    twin = chain.fresh_twin(tmp_path / "twin")
    data = snap.read_bytes()
    snap.write_bytes(data[:100] + data[164:])  # the footer is intact: only the size tells
    before = files(twin.root)
    with pytest.raises(SnapshotTruncated, match="its manifest says"):
        restore_snapshot(twin, snap)
    assert files(twin.root) == before


def test_a_home_whose_wal_holds_records_needs_force(chain, snap, tmp_path):
    twin = chain.fresh_twin(tmp_path / "twin")  # an empty store, but the node ran at height 1
    wal = WriteAheadLog(twin.wal_file)
    wal.start_height(["height", 1, b""])
    wal.close()
    before = files(twin.root)
    with pytest.raises(SnapshotRefused, match="WAL holds records.*--force"):
        restore_snapshot(twin, snap)
    assert files(twin.root) == before


def _forge_app_hash(home: Home, height: int, sign) -> None:
    """Rewrite block ``height`` of a stopped home with a wrong app hash in its header, certified anew."""
    kv = LevelDBKV(home.state_dir)
    try:
        version, header_wire, last_commit, count, evidence = decode(kv.get(keys.block_key(height)))
        header = BlockHeader.from_wire(header_wire)
        forged = dataclasses.replace(header, app_hash=bytes(b ^ 0xFF for b in header.app_hash))
        kv.write_batch({keys.block_key(height): encode([version, forged.to_wire(), last_commit, count, evidence]),
                        keys.commit_cert_key(height): sign(height, forged.hash)})
    finally:
        kv.close()


def test_a_replayed_block_with_another_app_hash_is_refused_and_nothing_is_overwritten(chain, snap, tmp_path):
    chain.commit(2)
    source = Home(tmp_path / "source")
    shutil.copytree(chain.home.root, source.root)

    def certify(height: int, block_hash: bytes) -> bytes:
        vote = Vote.create(chain.key, CHAIN, VoteKind.COMMIT, height, 0, block_hash)
        return CommitCertificate.from_votes(height, 0, block_hash, [vote]).encode()

    _forge_app_hash(source, 6, certify)
    for home, kwargs in ((chain.fresh_twin(tmp_path / "twin"), {"blocks_from": source}),
                         (source, {"force": True})):
        before = files(home.root)
        with pytest.raises(SnapshotCorrupt, match="block 6 does not replay: .*app_hash"):
            restore_snapshot(home, snap, height=7, **kwargs)
        assert files(home.root) == before
