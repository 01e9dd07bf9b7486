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


def vote(height: int, block_hash: bytes) -> SignRequest:
    return SignRequest(height, 0, Phase.PREPARE, block_hash, vote_digest(CHAIN, VoteKind.PREPARE, height, 0, block_hash))


def test_a_copied_home_and_a_restored_backup_cannot_double_sign_and_each_refusal_is_audited(homes):
    """Issue 16, acceptance 2: the copy of a validator's home (same node key) connected to the same
    signer, and a signer whose record was restored from an older backup with the interchange then
    imported, are both refused a conflicting vote; every refusal is in the signer's audit log."""
    key_file = homes / "key.json"
    save_keyfile(key_file, VALIDATOR, None)
    home = homes / "s"
    out = qenexd("signer", "init", "--home", str(home), "--chain-id", CHAIN, "--listen", f"unix:{home}/s.sock",
                 "--node-public-key", "0x" + NODE.public_key.hex(), "--validator-key", str(key_file), "--json")
    assert out.returncode == 0, out.stderr
    config = json.loads(out.stdout)["node_config"]

    def client() -> RemoteSigner:
        return RemoteSigner(SignerAddress.parse(config["address"]), bytes.fromhex(config["public_key"][2:]),
                            NODE, VALIDATOR.public_key, CHAIN, timeout_s=5.0, retry_s=0.0)

    original, copy = client(), client()  # the copy of the home holds the same node key
    proc = start_signer(home)
    try:
        signed = original.sign_request(vote(5, X))
        assert signed is not None
        assert copy.sign_request(vote(5, Y)) is None, "the copied home got a conflicting vote signed"
        assert copy.sign_request(vote(5, X)) == signed  # the identical vote is the same signature, not a second one
        backup = homes / "sign_state.backup"
        shutil.copy(home / "sign_state.json", backup)
        assert original.sign_request(vote(6, X)) is not None
        assert stop(proc, signal.SIGTERM) == 0

        exported = homes / "protection.json"
        assert qenexd("signer", "export-protection", "--home", str(home), "--out", str(exported)).returncode == 0
        shutil.copy(backup, home / "sign_state.json")  # the host is restored from last night's backup
        assert qenexd("signer", "import-protection", "--home", str(home), str(exported)).returncode == 0
        proc = start_signer(home)
        copy.close()
        copy = client()
        assert copy.sign_request(vote(6, Y)) is None, "the restored signer signed a height it had signed"
        assert copy.refusals == 1  # refused by the record, not unreachable
        assert stop(proc, signal.SIGTERM) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        original.close()
        copy.close()

    verified = qenexd("audit", "verify", "--home", str(home), "--json")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    entries = [json.loads(line) for line in qenexd("audit", "export", "--home", str(home)).stdout.splitlines()]
    refused = [(e["params"]["height"], e["params"]["block_hash"]) for e in entries if e["action"] == "sign_refused"]
    assert refused == [(5, "0x" + Y.hex()), (6, "0x" + Y.hex())]
