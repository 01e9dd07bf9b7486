"""Start-up checks of a node home (issue 7, finding 5), without a network.

Every refusal is one line, a StartRefused, and leaves the home as it was.
The same attacks on live node processes are in test_storage_attacks.py.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest

from consensus.messages import Vote, VoteKind
from node.config import Home
from node.errors import ConfigError, StartRefused
from node.genesis_tools import write_single_node_home
from node.homecheck import open_home_state
from node.signguard import SignGuard
from node.wal import WriteAheadLog
from state.genesis import Genesis
from state.keyfile import load_keyfile
from state.testing import TEST_CHAIN_ID


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` with a hash of its bytes."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def home(tmp_path) -> Home:
    h = Home(tmp_path / "home")
    write_single_node_home(h, chain_id=TEST_CHAIN_ID, name="n0", p2p_port=0, rpc_port=0)
    return h


def _open(home: Home):
    genesis = Genesis.from_json(home.genesis_file.read_text())
    key = load_keyfile(home.node_key_file, None)
    return open_home_state(home, genesis, key.address)


def _refused(home: Home, fragment: str) -> str:
    before = snapshot(home.root)
    with pytest.raises(StartRefused, match=fragment) as err:
        _open(home)
    assert "\n" not in str(err.value)
    assert snapshot(home.root) == before, "a refused start changed the home"
    return str(err.value)


def _commit_empty_blocks(state, count: int) -> None:
    from consensus.messages import CommitCertificate

    key = load_keyfile(Home(Path(state.kv.path).parents[1]).node_key_file, None)
    for _ in range(count):
        block, result = state.app.build_block([], proposer=key.address, time_ms=state.app.last_time_ms + 1000,
                                              last_commit=state.app.get_commit_cert(state.app.height) or b"")
        cert = CommitCertificate.from_votes(block.header.height, 0, block.hash,
                                            [Vote.create(key, state.app.chain_id, VoteKind.COMMIT,
                                                         block.header.height, 0, block.hash)])
        state.app.commit_block(block, result, cert.encode())


def test_init_creates_the_store_and_a_start_opens_it(home):
    assert (home.state_dir / "CURRENT").is_file() and home.init_marker.is_file() and home.sign_state_file.is_file()
    state = _open(home)
    assert state.app.height == 0 and state.warnings == []
    state.kv.close()
    with pytest.raises(ConfigError, match="already holds a state store"):
        write_single_node_home(home, chain_id=TEST_CHAIN_ID, name="n0", p2p_port=0, rpc_port=0)


def test_missing_current_file_is_refused_not_recreated(home):
    (home.state_dir / "CURRENT").unlink()
    _refused(home, "no CURRENT file")


def test_marker_without_a_store_is_refused(home):
    shutil.rmtree(home.state_dir)
    _refused(home, "does not exist")


def test_an_emptied_store_is_not_initialised_at_start(home):
    from state.kv import LevelDBKV

    shutil.rmtree(home.state_dir)
    LevelDBKV(home.state_dir, create_if_missing=True).close()  # a fresh, empty LevelDB in its place
    _refused(home, "empty")


def test_state_older_than_the_wal_is_refused(home, tmp_path):
    state = _open(home)
    _commit_empty_blocks(state, 2)
    state.kv.close()
    backup = tmp_path / "backup"
    shutil.copytree(home.state_dir, backup)  # an older copy, at height 2
    state = _open(home)
    _commit_empty_blocks(state, 3)
    state.kv.close()
    wal = WriteAheadLog(home.wal_file)  # the driver's log of height 6
    wal.start_height(["height", 6, b""])
    wal.close()
    shutil.rmtree(home.state_dir)
    shutil.copytree(backup, home.state_dir)
    message = _refused(home, "older than the WAL")
    assert "height 6" in message and "at 2" in message


def test_sign_record_above_the_store_is_refused(home):
    guard = SignGuard.load(home.sign_state_file, TEST_CHAIN_ID, load_keyfile(home.node_key_file, None).address)
    key = load_keyfile(home.node_key_file, None)
    assert guard.allow(Vote.create(key, TEST_CHAIN_ID, VoteKind.COMMIT, 9, 0, bytes(32)))
    message = _refused(home, "rolled back")
    assert "height 9" in message


def test_a_missing_sign_record_in_an_initialised_home_is_refused(home):
    home.sign_state_file.unlink()
    _refused(home, "does not exist")


def test_damaged_wal_is_moved_aside_and_refused_in_one_line(home):
    wal = WriteAheadLog(home.wal_file)
    wal.start_height(["height", 1, b""])
    wal.append(["timeout", 1, 0])
    wal.append(["timeout", 1, 1])
    wal.close()
    data = bytearray(home.wal_file.read_bytes())
    data[len(data) // 2] ^= 0x10
    home.wal_file.write_bytes(bytes(data))
    with pytest.raises(StartRefused, match="moved aside") as err:
        _open(home)
    assert "\n" not in str(err.value)
    assert not home.wal_file.exists()
    assert home.wal_file.with_name("consensus.wal.corrupt-1").read_bytes() == bytes(data)
    _open(home).kv.close()  # and the next start proceeds


def test_a_home_from_before_the_marker_is_upgraded(home):
    home.init_marker.unlink()
    home.sign_state_file.unlink()
    state = _open(home)
    state.kv.close()
    assert home.init_marker.is_file() and home.sign_state_file.is_file()
    assert any("predates the init marker" in w for w in state.warnings)
