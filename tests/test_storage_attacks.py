"""Storage accidents on a live 4-validator testnet (issue 7, finding 5).

A validator is stopped, its home tampered with, and started again: a state
directory restored from an older copy under the newer WAL (and, with the WAL
gone too, under the newer sign-state record), and a store that lost its
LevelDB CURRENT file.  Each time the process must exit non-zero with one
line, and nothing in its home may have changed.  Untampered again, it
rejoins and agrees with the others on every block.
"""

from __future__ import annotations

import hashlib
import shutil
import signal
from pathlib import Path

import pytest

from tests.localnet import LocalNet, running_localnet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

VICTIM = 3


def snapshot(home: Path) -> dict[str, str]:
    return {str(p.relative_to(home)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(home.rglob("*")) if p.is_file() and p.name != "node.log"}


def start_expecting_refusal(net: LocalNet, fragment: str) -> str:
    home = net.home(VICTIM)
    log = home / "node.log"
    offset = log.stat().st_size
    before = snapshot(home)
    net.start(VICTIM)
    code = net.procs[VICTIM].wait(timeout=90)
    output = log.read_bytes()[offset:].decode(errors="replace").strip().splitlines()
    assert code != 0, f"the tampered node started: {output[-5:]}"
    assert len(output) == 1 and output[0].startswith("Error:") and fragment in output[0], output
    assert "Traceback" not in output[0]
    assert snapshot(home) == before, "a refused start changed the home"
    return output[0]


def test_restored_older_state_and_missing_current_are_refused_on_live_processes(tmp_path):
    with running_localnet(tmp_path / "net") as net:
        home = net.home(VICTIM)
        state, wal = home / "data" / "state", home / "data" / "consensus.wal"
        net.wait_height(4)
        older = net.height(VICTIM)
        net.kill(VICTIM, signal.SIGTERM)
        shutil.copytree(state, tmp_path / "older-state")  # the operator's old backup

        net.start(VICTIM)
        net.wait_height(older + 6, nodes=[VICTIM], timeout=120)  # it votes on new heights
        net.kill(VICTIM, signal.SIGTERM)
        shutil.move(state, tmp_path / "newer-state")
        shutil.copytree(tmp_path / "older-state", state)

        # 1. The older state under the newer WAL: it would re-decide finalized heights.
        start_expecting_refusal(net, "older than the WAL")

        # 2. The WAL gone as well: the sign-state record still knows what this validator signed.
        shutil.move(wal, tmp_path / "wal")
        start_expecting_refusal(net, "the state was rolled back")

        # 3. The newer state back, but its LevelDB CURRENT file lost: no fresh chain at height 0.
        shutil.rmtree(state)
        shutil.move(tmp_path / "newer-state", state)
        shutil.move(tmp_path / "wal", wal)
        current = (state / "CURRENT").read_bytes()
        (state / "CURRENT").unlink()
        start_expecting_refusal(net, "no CURRENT file")

        # Untampered, it starts, catches up and agrees with everyone.
        (state / "CURRENT").write_bytes(current)
        net.start(VICTIM)
        target = max(net.height(i) for i in range(3)) + 3
        net.wait_height(target, timeout=120)
        for height in range(1, target + 1):
            hashes = {net.rpc(i).call("qenex_getBlock", height)["hash"] for i in range(net.n)}
            assert len(hashes) == 1, f"disagreement at height {height}"
        assert "sign guard refused" not in (home / "node.log").read_text(errors="replace")
