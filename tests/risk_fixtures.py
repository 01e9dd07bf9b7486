"""Shared small risk models for the risk tests: trained once per process, copied into each module's tmp dir."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from node.risk.train import train_to_store

SMALL = {"seed": 3, "accounts": 120, "blocks": 900, "epochs": 20}


@functools.cache
def _trained_small() -> Path:
    # Seeded: training again would only repeat the same bytes (seconds of numpy each time).
    directory = Path(tempfile.mkdtemp(prefix="qenex-risk-small-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    train_to_store(directory / "store", **SMALL)
    return directory / "store"


def train_small(directory: Path) -> Path:
    """``directory`` holding the small model store (version 1), a copy of its own to change."""
    shutil.copytree(_trained_small(), directory, dirs_exist_ok=True)
    return directory
