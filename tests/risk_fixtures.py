"""Shared small risk models for the risk tests: trained once per process, copied into each module's tmp dir."""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

from node.risk.train import train_to_store

# One training population, small: the suite stays fast (about 2 s).
SMALL = {"seed": 3, "accounts": 120, "blocks": 900, "epochs": 20, "populations_n": 1}


@functools.cache
def _trained_small() -> Path:
    # Seeded: training again would only repeat the same bytes (seconds of numpy each time).
    directory = Path(tempfile.mkdtemp(prefix="qenex-risk-small-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    train_to_store(directory / "store", **SMALL, evaluate_held_out=False)
    return directory / "store"


def train_small(directory: Path) -> Path:
    """``directory`` holding the small model store (version 1), a copy of its own to change."""
    shutil.copytree(_trained_small(), directory, dirs_exist_ok=True)
    return directory


def commit(app, txs, proposer=None):
    """Build and commit a block of ``txs`` on a test Application (fake commit certificate)."""
    from state.codec import encode
    from state.testing import dev_key

    proposer = proposer or dev_key("validator-0")
    block, result = app.build_block(list(txs), proposer=proposer.address, time_ms=app.last_time_ms + 1000,
                                    last_commit=app.get_commit_cert(app.height) or b"")
    app.commit_block(block, result, encode(["test-cert", block.height]))
    return block
