"""The in-process benchmarks still run (a bench that rots is found here, not by its next reader)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("args", [
    ["bench/swap.py", "state", "--blocks", "3", "--swaps", "20", "--traders", "4"],
    ["bench/consensus_sweep.py", "--kind", "lies", "-n", "2"],
])
def test_bench_script_runs(args: list[str]) -> None:
    done = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip(), "a benchmark prints its numbers"
