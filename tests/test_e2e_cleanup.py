"""The e2e runner cleans up after itself when interrupted mid-run: no node process, namespace,
veth or bridge survives a SIGINT (Ctrl-C) or a SIGTERM (e2e/runner.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from e2e import netns

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = """
name = "interrupted"
network = "{network}"
senders = 4
rate = 5
duration_s = 120
[consensus]
empty_block_interval_ms = 250
[[perturbations]]
at_s = 4
kind = "pause"
node = 1
hold_s = 60
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().rsplit(")", 1)[1].split()[0] != "Z"


def _interrupt_mid_run(tmp_path: Path, network: str, sig: int) -> dict:
    (tmp_path / "m.toml").write_text(MANIFEST.format(network=network))
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "e2e.runner", str(tmp_path / "m.toml"), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    state_file = out / "runner-state.json"
    try:
        deadline = time.monotonic() + 120
        state: dict = {}
        while time.monotonic() < deadline:  # mid-run: under load, node1 paused (SIGSTOP)
            if state_file.exists():
                try:
                    state = json.loads(state_file.read_text())
                except ValueError:
                    state = {}
                if state.get("phase") == "load" and len(state.get("alive", [])) == 4:
                    break
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.5)
        else:
            raise AssertionError(f"the run never reached its load phase: {state}")
        time.sleep(6)
        proc.send_signal(sig)
        output, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, output
    assert "interrupted; stopping every node" in output
    state = json.loads(state_file.read_text())
    assert state["phase"] == "done", state
    pids = [int(p) for p in state["pids"].values()]
    assert len(pids) == 4
    assert [p for p in pids if _alive(p)] == [], f"node processes left running: {pids}"
    return state


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_sigint_mid_run_leaves_no_process_and_no_namespace(tmp_path):
    network = "auto" if netns.namespace_support() is None else "loopback"
    state = _interrupt_mid_run(tmp_path, network, signal.SIGINT)
    if netns.namespace_support() is None:
        assert len(state["namespaces"]) == 4  # they were made ...
        assert netns.our_namespaces(state["run_id"]) == []  # ... and are gone, with their veths and bridge
        assert netns.our_links(state["run_id"]) == []


@pytest.mark.slow
@pytest.mark.timeout(200)
def test_sigterm_mid_run_on_loopback_leaves_no_process(tmp_path):
    _interrupt_mid_run(tmp_path, "loopback", signal.SIGTERM)
