"""Snapshots (node/snapshot.py): write from a LevelDB snapshot, verify, restore, roll forward.

A single-validator home commits real blocks with real certificates; an
independent in-memory node applies the same blocks through block sync's path,
so a restored store's app hash at H is compared with a node that never saw
the snapshot.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli as qenexd
from consensus.messages import CommitCertificate, Vote, VoteKind
from consensus.verify import CertificateVerifier
from node.blocks import BlockExecutor
from node.config import Home, NodeConfig
from node.errors import ConfigError, StartRefused
from node.genesis_tools import write_single_node_home
from node.homecheck import init_home_state, open_home_state
from node.signguard import SignGuard
from node.snapshot import (
    MAGIC,
    SnapshotCorrupt,
    SnapshotMismatch,
    SnapshotRefused,
    SnapshotTruncated,
    StoreInUse,
    create_from_home,
    prune_snapshots,
    read_manifest,
    restore_snapshot,
    verify_snapshot,
    write_snapshot,
)
from node.wal import WriteAheadLog
from state import keys
from state.app import Application
from state.crypto import PrivateKey
from state.genesis import Genesis
from state.keyfile import load_keyfile
from state.kv import LevelDBKV, MemoryKV
from state.testing import transfer

CHAIN = "qenex-snap-1"


def files(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class ChainHome:
    """A single-validator home and an independent node that applies the same blocks."""

    def __init__(self, root: Path, chain_id: str = CHAIN) -> None:
        self.home = Home(root)
        write_single_node_home(self.home, chain_id=chain_id, name="n0", p2p_port=0, rpc_port=0)
        self.genesis = Genesis.from_json(self.home.genesis_file.read_text())
        self.key = load_keyfile(self.home.node_key_file, None)
        self.nonce = 0
        self.independent = BlockExecutor(Application(MemoryKV(), self.genesis, commit_verifier=CertificateVerifier()))
        self.app_hashes: dict[int, bytes] = {0: self.independent.app.app_hash}

    def certify(self, block) -> bytes:
        vote = Vote.create(self.key, self.genesis.chain_id, VoteKind.COMMIT, block.header.height, 0, block.hash)
        return CommitCertificate.from_votes(block.header.height, 0, block.hash, [vote]).encode()

    def commit(self, count: int, history_blocks: int = 10_000) -> int:
        """Commit ``count`` blocks with a transfer each (the node must be stopped); returns the height."""
        kv = LevelDBKV(self.home.state_dir)
        try:
            app = Application(kv, self.genesis, initialise=False, commit_verifier=CertificateVerifier(),
                              history_blocks=history_blocks)
            for _ in range(count):
                tx = transfer(self.key, self.nonce, PrivateKey.generate().address, 10**15 + self.nonce,
                              chain_id=self.genesis.chain_id)
                self.nonce += 1
                block, result = app.build_block([tx], proposer=self.key.address, time_ms=app.last_time_ms + 1000,
                                                last_commit=app.get_commit_cert(app.height) or b"")
                cert = self.certify(block)
                app.commit_block(block, result, cert)
                assert self.independent.apply_synced(block, cert) is None
                self.app_hashes[block.header.height] = self.independent.app.app_hash
            return app.height
        finally:
            kv.close()

    def records(self) -> dict[bytes, bytes]:
        kv = LevelDBKV(self.home.state_dir)
        try:
            return dict(kv.iterate())
        finally:
            kv.close()

    def fresh_twin(self, root: Path) -> Home:
        """A new, empty home of the same validator and chain (as `init` would leave it)."""
        twin = Home(root)
        shutil.copytree(self.home.config_dir, twin.config_dir)
        init_home_state(twin, self.genesis, self.key.address)
        return twin

    def open(self, home: Home | None = None):
        return open_home_state(home or self.home, self.genesis, self.key.address)


@pytest.fixture
def chain(tmp_path) -> ChainHome:
    c = ChainHome(tmp_path / "home")
    c.commit(5)
    return c


@pytest.fixture
def snap(chain, tmp_path) -> Path:
    manifest, path = create_from_home(chain.home, tmp_path / "s5.qsnap")
    assert manifest.height == 5
    return path


def test_round_trip_restores_exactly_the_store(chain, snap, tmp_path):
    m = verify_snapshot(snap)
    assert (m.height, m.chain_id, m.app_hash) == (5, CHAIN, chain.app_hashes[5])
    assert m.key_count == len(chain.records())
    twin = chain.fresh_twin(tmp_path / "twin")
    note = restore_snapshot(twin, snap)
    assert note["height"] == 5 and note["app_hash"] == "0x" + chain.app_hashes[5].hex()
    restored = LevelDBKV(twin.state_dir)
    try:
        assert dict(restored.iterate()) == chain.records()
    finally:
        restored.close()
    state = chain.open(twin)  # the home check accepts the restored home
    assert state.app.height == 5 and state.app.app_hash == chain.app_hashes[5]
    state.kv.close()
    assert sorted(p.name for p in twin.data_dir.iterdir() if p.name.startswith(".state-restore-")) == []


def test_a_snapshot_is_the_height_its_leveldb_snapshot_was_taken_at(chain, tmp_path):
    """Commits after the LevelDB snapshot is taken (as a running node's go on) are not in the file."""
    kv = LevelDBKV(chain.home.state_dir)
    view = kv.snapshot()
    app = Application(kv, chain.genesis, initialise=False, commit_verifier=CertificateVerifier())
    block, result = app.build_block([], proposer=chain.key.address, time_ms=app.last_time_ms + 1000,
                                    last_commit=app.get_commit_cert(5) or b"")
    app.commit_block(block, result, chain.certify(block))
    assert app.height == 6
    manifest = write_snapshot(view, tmp_path / "during.qsnap")
    view.close()
    kv.close()
    assert manifest.height == 5 and manifest.app_hash == chain.app_hashes[5]
    assert verify_snapshot(tmp_path / "during.qsnap").height == 5


def _flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("where", ["record", "manifest-hash"])
def test_a_tampered_snapshot_is_refused_and_the_home_is_untouched(chain, snap, tmp_path, where):
    twin = chain.fresh_twin(tmp_path / "twin")
    if where == "record":
        _flip(snap, len(MAGIC) + 40)
        error, fragment = SnapshotCorrupt, "content SHA-256"
    else:  # a balance changed and the manifest's hash recomputed: only the replay can tell
        _rewrite_with_a_changed_balance(snap, chain)
        error, fragment = SnapshotCorrupt, "tampered state"
    with pytest.raises(error, match=fragment):
        verify_snapshot(snap)
    before = files(twin.root)
    with pytest.raises(error, match=fragment):
        restore_snapshot(twin, snap)
    assert files(twin.root) == before


def _rewrite_with_a_changed_balance(path: Path, chain: ChainHome) -> None:
    records = chain.records()
    key = keys.balance_key(chain.key.address, "QNX")
    value = bytearray(records[key])
    value[-1] ^= 0x01
    records[key] = bytes(value)
    store = MemoryKV()
    store.write_batch(records)
    write_snapshot(store, path, overwrite=True)


def test_a_truncated_snapshot_is_refused_and_the_home_is_untouched(chain, snap, tmp_path):
    twin = chain.fresh_twin(tmp_path / "twin")
    data = snap.read_bytes()
    for cut in (len(data) - 1, len(data) // 2, 10):
        snap.write_bytes(data[:cut])
        before = files(twin.root)
        with pytest.raises(SnapshotTruncated, match="truncated"):
            restore_snapshot(twin, snap)
        assert files(twin.root) == before


def test_a_snapshot_of_another_chain_is_refused(snap, tmp_path):
    other = ChainHome(tmp_path / "other", chain_id="qenex-other-1")
    before = files(other.home.root)
    with pytest.raises(SnapshotMismatch, match="qenex-snap-1"):
        restore_snapshot(other.home, snap)
    assert files(other.home.root) == before


def test_a_non_empty_home_needs_force_and_keeps_its_old_store(chain, snap):
    chain.commit(3)
    before = files(chain.home.root)
    with pytest.raises(SnapshotRefused, match="not empty .*height 8.*--force"):
        restore_snapshot(chain.home, snap)
    assert files(chain.home.root) == before
    note = restore_snapshot(chain.home, snap, force=True)
    assert note["height"] == 5
    kept = Path(note["replaced_store"])
    assert kept.name == "state.pre-restore-1" and (kept / "CURRENT").is_file()


def test_heights_out_of_range_are_refused(chain, snap, tmp_path):
    chain.commit(3)  # the home's store holds blocks up to 8
    before = files(chain.home.root)
    with pytest.raises(SnapshotRefused, match="holds blocks only up to 8"):
        restore_snapshot(chain.home, snap, height=9, force=True)
    with pytest.raises(SnapshotRefused, match="below the snapshot's height 5"):
        restore_snapshot(chain.home, snap, height=4, force=True)
    assert files(chain.home.root) == before
    twin = chain.fresh_twin(tmp_path / "twin")
    with pytest.raises(SnapshotRefused, match="holds blocks only up to 0|no .*store to take blocks"):
        restore_snapshot(twin, snap, height=6)


def test_replay_to_h_matches_an_independent_node_and_keeps_the_sign_record(chain, snap):
    chain.commit(4)  # the store reaches 9; the validator signed there
    guard = SignGuard.load(chain.home.sign_state_file, CHAIN, chain.key.address)
    assert guard.allow(Vote.create(chain.key, CHAIN, VoteKind.COMMIT, 9, 0, bytes(32)))
    sign_record = chain.home.sign_state_file.read_bytes()
    wal = WriteAheadLog(chain.home.wal_file)
    wal.start_height(["height", 10, b""])
    wal.close()
    note = restore_snapshot(chain.home, snap, height=7, force=True)
    assert note["height"] == 7 and note["app_hash"] == "0x" + chain.app_hashes[7].hex()
    assert note["sign_state_height"] == 9 and Path(note["wal_moved_to"]).exists()
    assert not chain.home.wal_file.exists()
    assert chain.home.sign_state_file.read_bytes() == sign_record  # never rolled back
    state = chain.open()  # the sign record (9) is above the store (7): allowed by the restore note
    assert state.app.height == 7 and state.app.app_hash == chain.app_hashes[7]
    assert any("restored from a snapshot" in w for w in state.warnings)
    assert not state.sign_guard.allow(Vote.create(chain.key, CHAIN, VoteKind.COMMIT, 8, 0, bytes(32)))
    state.kv.close()


def test_the_restore_note_only_covers_the_restore_it_describes(chain, snap):
    chain.commit(4)
    guard = SignGuard.load(chain.home.sign_state_file, CHAIN, chain.key.address)
    assert guard.allow(Vote.create(chain.key, CHAIN, VoteKind.COMMIT, 9, 0, bytes(32)))
    restore_snapshot(chain.home, snap, height=7, force=True)
    note = json.loads(chain.home.restore_note.read_text())
    # The store later rolled back below the restored height: refused again.
    note["height"] = 8
    chain.home.restore_note.write_text(json.dumps(note))
    with pytest.raises(StartRefused, match="rolled back"):
        chain.open()
    # The validator signed past the note's height since: the note no longer applies.
    note["height"] = 7
    chain.home.restore_note.write_text(json.dumps(note))
    guard = SignGuard.load(chain.home.sign_state_file, CHAIN, chain.key.address)
    assert guard.allow(Vote.create(chain.key, CHAIN, VoteKind.COMMIT, 12, 0, bytes(32)))
    with pytest.raises(StartRefused, match="height 12"):
        chain.open()


def test_blocks_from_another_home(chain, snap, tmp_path):
    chain.commit(2)
    twin = chain.fresh_twin(tmp_path / "twin")
    note = restore_snapshot(twin, snap, height=7, blocks_from=chain.home)
    assert note["app_hash"] == "0x" + chain.app_hashes[7].hex()
    other = ChainHome(tmp_path / "other", chain_id=CHAIN)  # same chain id, another genesis
    with pytest.raises(SnapshotMismatch):
        restore_snapshot(chain.fresh_twin(tmp_path / "twin2"), snap, height=6, blocks_from=other.home)


def test_cli_create_refuses_a_store_in_use_in_one_line(chain):
    held = LevelDBKV(chain.home.state_dir)  # as a running node holds it
    try:
        result = CliRunner().invoke(qenexd, ["snapshot", "create", "--home", str(chain.home.root)])
        assert result.exit_code != 0
        line = result.stderr.strip()
        assert "\n" not in line and "qenexd admin snapshot" in line and "LOCK" in line
        with pytest.raises(StoreInUse):
            create_from_home(chain.home)
    finally:
        held.close()


def test_cli_create_verify_restore(chain, tmp_path):
    runner = CliRunner()
    created = runner.invoke(qenexd, ["snapshot", "create", "--home", str(chain.home.root), "--json"])
    assert created.exit_code == 0, created.output
    doc = json.loads(created.stdout)
    assert doc["height"] == 5 and Path(doc["path"]).parent == chain.home.snapshots_dir
    verified = runner.invoke(qenexd, ["snapshot", "verify", doc["path"], "--json"])
    assert verified.exit_code == 0, verified.output
    assert json.loads(verified.stdout)["app_hash"] == "0x" + chain.app_hashes[5].hex()
    again = runner.invoke(qenexd, ["snapshot", "create", "--home", str(chain.home.root), "--out", doc["path"]])
    assert again.exit_code == 1 and "already exists" in again.stderr
    refused = runner.invoke(qenexd, ["snapshot", "restore", "--home", str(chain.home.root), doc["path"]])
    assert refused.exit_code == 1 and "--force" in refused.stderr and "\n" not in refused.stderr.strip()
    bad = tmp_path / "bad.qsnap"
    bad.write_bytes(Path(doc["path"]).read_bytes()[:-3])
    result = runner.invoke(qenexd, ["snapshot", "verify", str(bad)])
    assert result.exit_code == 1 and "truncated" in result.stderr


def test_read_manifest_rejects_what_is_not_a_snapshot(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"x" * 100)
    with pytest.raises(SnapshotCorrupt, match="header"):
        read_manifest(junk)


def test_snapshot_config_and_pruning(tmp_path):
    config = NodeConfig.from_toml("[snapshot]\ninterval_blocks = 10\nkeep = 2\n")
    assert (config.snapshot.interval_blocks, config.snapshot.keep) == (10, 2)
    assert NodeConfig.from_toml(config.to_toml()) == config
    assert NodeConfig.from_toml("").snapshot.interval_blocks == 0
    with pytest.raises(ConfigError, match="snapshot.keep"):
        NodeConfig.from_toml("[snapshot]\nkeep = 0\n")
    for h in (10, 20, 30, 40):
        (tmp_path / f"snapshot-{h:012d}.qsnap").write_bytes(b"")
    (tmp_path / "mine.qsnap").write_bytes(b"")
    gone = prune_snapshots(tmp_path, 2)
    assert [p.name for p in gone] == ["snapshot-000000000010.qsnap", "snapshot-000000000020.qsnap"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "mine.qsnap", "snapshot-000000000030.qsnap", "snapshot-000000000040.qsnap"]


def _stripped_node(chain: ChainHome, config: NodeConfig):
    """A Node with only what its snapshot methods read (no p2p, driver or RPC)."""
    import threading

    from node.runtime import Node

    node = Node.__new__(Node)
    node.home, node.config = chain.home, config
    node.kv = LevelDBKV(chain.home.state_dir)
    node.app = Application(node.kv, chain.genesis, initialise=False, commit_verifier=CertificateVerifier())
    node._snapshot_tasks, node._periodic_snapshot, node._snapshot_abort = set(), None, threading.Event()
    return node


def _commit_on(node, chain: ChainHome) -> None:
    app = node.app
    block, result = app.build_block([], proposer=chain.key.address, time_ms=app.last_time_ms + 1000,
                                    last_commit=app.get_commit_cert(app.height) or b"")
    app.commit_block(block, result, chain.certify(block))


def test_admin_snapshot_is_the_state_when_it_was_asked_for(chain):
    import asyncio

    node = _stripped_node(chain, NodeConfig())

    async def scenario():
        task = asyncio.ensure_future(node.admin_snapshot(None))
        await asyncio.sleep(0)  # the LevelDB snapshot is taken; the file is written in a worker thread
        _commit_on(node, chain)  # a commit while the worker runs
        return await task

    try:
        doc = asyncio.run(scenario())
    finally:
        node.kv.close()
    assert doc["height"] == 5 and Path(doc["path"]) == chain.home.snapshots_dir / "snapshot-000000000005.qsnap"
    assert verify_snapshot(Path(doc["path"])).app_hash == chain.app_hashes[5]


def test_periodic_snapshots_skip_while_one_runs_and_keep_the_last_k(chain):
    import asyncio

    from node.config import SnapshotSection

    node = _stripped_node(chain, NodeConfig(snapshot=SnapshotSection(interval_blocks=2, keep=2)))

    async def scenario():
        for _ in range(5):  # heights 6..10
            _commit_on(node, chain)
            node._maybe_periodic_snapshot(node.app.height)
            if node.app.height == 6:
                first = node._periodic_snapshot
                node._maybe_periodic_snapshot(6)  # the one just started is still running: skipped
                assert node._periodic_snapshot is first
            while node._snapshot_tasks:
                await asyncio.wait(set(node._snapshot_tasks))
            await asyncio.sleep(0)  # done callbacks (pruning) run

    try:
        asyncio.run(scenario())
    finally:
        node.kv.close()
    assert sorted(p.name for p in chain.home.snapshots_dir.iterdir()) == [
        "snapshot-000000000008.qsnap", "snapshot-000000000010.qsnap"]


def test_the_snapshot_benchmark_runs():
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "bench/snapshot.py", "--blocks", "3", "--txs", "2"], cwd=root,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "verify (with replay)" in done.stdout


def test_a_damaged_store_is_replaced_only_with_force(chain, snap):
    (chain.home.state_dir / "CURRENT").unlink()  # the store is lost: the reason to restore
    before = files(chain.home.root)
    with pytest.raises(SnapshotRefused, match="unreadable.*--force"):
        restore_snapshot(chain.home, snap)
    with pytest.raises(SnapshotRefused, match="no readable store to take blocks from"):
        restore_snapshot(chain.home, snap, height=6, force=True)
    assert files(chain.home.root) == before
    assert restore_snapshot(chain.home, snap, force=True)["height"] == 5
    state = chain.open()
    assert state.app.app_hash == chain.app_hashes[5]
    state.kv.close()


def test_admin_snapshot_errors_are_specific_rpc_errors(chain, snap):
    import asyncio

    from node.jsonrpc import INVALID_PARAMS, RPCError

    node = _stripped_node(chain, NodeConfig())
    try:
        chain.home.snapshots_dir.mkdir(parents=True, exist_ok=True)
        kept = chain.home.snapshots_dir / "kept.qsnap"
        shutil.copy(snap, kept)
        for kwargs, fragment in (({"out_path": "kept.qsnap"}, "already exists"), ({"dir": "/x"}, "only out_path"),
                                 ({"out_path": 7}, "non-empty path"), ({"out_path": str(snap) + "2"}, "plain file name"),
                                 ({"out_path": "../escape.qsnap"}, "plain file name"), ({"out_path": ".."}, "plain file name")):
            with pytest.raises(RPCError, match=fragment) as err:
                asyncio.run(node.admin_snapshot(**kwargs))
            assert err.value.code == INVALID_PARAMS
        assert kept.stat().st_size > 0 and read_manifest(kept).height == 5  # the named file was not replaced
        assert not Path(str(snap) + "2").exists() and not (chain.home.root / "escape.qsnap").exists()
    finally:
        node.kv.close()


def test_the_past_height_index_is_recomputed_on_restore_not_trusted(chain, tmp_path):
    """The changelog (state.history) depends on the source's window: a node with a 2-block window
    snapshots fine, and a forged changelog record in the file never reaches the restored home."""
    chain.commit(4, history_blocks=2)
    _, path = create_from_home(chain.home, tmp_path / "s9.qsnap")
    assert verify_snapshot(path).height == 9
    records = chain.records()
    forged_key = next(k for k in records if k.startswith(keys.CHANGELOG))
    kv = LevelDBKV(chain.home.state_dir)
    try:
        kv.write_batch({forged_key: b"\x01forged"})
    finally:
        kv.close()
    _, forged = create_from_home(chain.home, tmp_path / "forged.qsnap")
    assert verify_snapshot(forged).height == 9  # the index is node-local: not part of what verify proves
    twin = chain.fresh_twin(tmp_path / "twin")
    restore_snapshot(twin, forged)
    restored = LevelDBKV(twin.state_dir)
    try:
        history = {k: v for k, v in restored.iterate() if k.startswith(keys.CHANGELOG)}
        assert history.get(forged_key) != b"\x01forged"
        state = Application(restored, chain.genesis, initialise=False, commit_verifier=CertificateVerifier())
        independent = chain.independent.app
        for h in range(1, 10):  # the restore replayed from genesis: every height is readable again
            assert state.at(h).account(chain.key.address) == independent.at(h).account(chain.key.address)
    finally:
        restored.close()
