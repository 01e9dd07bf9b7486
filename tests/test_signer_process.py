"""``qenexd signer``: the real signer process, killed and restarted by PID; interchange through the CLI."""

from __future__ import annotations

import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from consensus.messages import VoteKind, vote_digest
from consensus.signing import Phase, SignRequest
from node.remote_signer import RemoteSigner, SignerAddress
from node.signguard import SignGuard, check
from state.keyfile import save_keyfile
from state.testing import TEST_CHAIN_ID as CHAIN
from state.testing import dev_key

ROOT = Path(__file__).resolve().parent.parent
VALIDATOR = dev_key("process-validator")
NODE = dev_key("process-node")
X, Y = b"\x0a" * 32, b"\x0b" * 32

pytestmark = pytest.mark.slow


def prepare(block_hash: bytes) -> SignRequest:
    return SignRequest(5, 0, Phase.PREPARE, block_hash, vote_digest(CHAIN, VoteKind.PREPARE, 5, 0, block_hash))


def qenexd(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "cli.main", *args], capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env=env)


def start_signer(home: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "cli.main", "signer", "start", "--home", str(home)],
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    assert proc.stderr is not None
    selector = selectors.DefaultSelector()
    selector.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if selector.select(timeout=deadline - time.monotonic()):
            line = proc.stderr.readline()
            if "listening on" in line:
                return proc
            if not line:
                break
    proc.kill()
    proc.wait(10)
    raise AssertionError("the signer did not start")


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> int:
    os.kill(proc.pid, sig)
    return proc.wait(10)


@pytest.fixture
def homes():
    path = Path(tempfile.mkdtemp(prefix="qsigp", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_signer_process_killed_restarted_and_its_protection_moved(homes):
    key_file = homes / "key.json"
    save_keyfile(key_file, VALIDATOR, None)
    home = homes / "a"
    out = qenexd("signer", "init", "--home", str(home), "--chain-id", CHAIN, "--listen", f"unix:{home}/s.sock",
                 "--node-public-key", "0x" + NODE.public_key.hex(), "--validator-key", str(key_file), "--json")
    assert out.returncode == 0, out.stderr
    node_config = json.loads(out.stdout)["node_config"]
    assert node_config["validator_public_key"] == "0x" + VALIDATOR.public_key.hex()
    remote = RemoteSigner(SignerAddress.parse(node_config["address"]), bytes.fromhex(node_config["public_key"][2:]),
                          NODE, VALIDATOR.public_key, CHAIN, timeout_s=5.0, retry_s=0.0)
    proc = start_signer(home)
    try:
        first = remote.sign_request(prepare(X))
        assert first is not None
        stop(proc)  # SIGKILL: the record was fsynced before the signature left
        assert remote.sign_request(prepare(Y)) is None
        proc = start_signer(home)
        assert remote.sign_request(prepare(Y)) is None, "the restarted signer forgot what it signed"
        assert remote.refusals == 1
        assert remote.sign_request(prepare(X)) == first
        assert stop(proc, signal.SIGTERM) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        remote.close()

    # the key moves to a new signer host whose record is empty: the interchange goes with it
    exported = homes / "protection.json"
    assert qenexd("signer", "export-protection", "--home", str(home), "--out", str(exported)).returncode == 0
    other = homes / "b"
    assert qenexd("signer", "init", "--home", str(other), "--chain-id", CHAIN, "--listen", f"unix:{other}/s.sock",
                  "--node-public-key", "0x" + NODE.public_key.hex(), "--validator-key", str(key_file)).returncode == 0
    bad = homes / "bad.json"
    bad.write_text("{not json")
    refused = qenexd("signer", "import-protection", "--home", str(other), str(bad))
    assert refused.returncode == 1 and "not JSON" in refused.stderr
    done = qenexd("signer", "import-protection", "--home", str(other), str(exported), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["height"] == 5
    moved = SignGuard.load(other / "sign_state.json", CHAIN, VALIDATOR.address)
    assert check(moved.state, prepare(Y)) is not None
    assert check(moved.state, prepare(X)) is None
