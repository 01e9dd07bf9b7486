"""The ``ci`` e2e manifest on real node processes (e2e/manifests/ci.toml): kill -9 and restart,
SIGSTOP/SIGCONT, graceful restart, under transfer load; every invariant of e2e/checker.py holds."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_the_ci_manifest_passes(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "e2e.runner", "ci", "--out", str(tmp_path)], cwd=ROOT,
                          capture_output=True, text=True, timeout=230)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    f = report["figures"]
    assert (f["forks"], f["lost"], f["duplicates"], f["violations"]) == (0, 0, 0, 0), report
    assert f["perturbations"] == 3 and f["perturbation_kinds"] == "kill,pause,restart"
    assert f["txs_committed"] > 500, f  # the load kept flowing through the perturbations
    assert f["wall_s"] < 180, f
    state = json.loads((tmp_path / "runner-state.json").read_text())
    assert state["phase"] == "done" and state["alive"] == []
