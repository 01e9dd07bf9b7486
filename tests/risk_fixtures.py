"""Shared small risk models for the risk tests: trained once per session in a tmp dir."""

from __future__ import annotations

from pathlib import Path

from node.risk.train import train_to_store

# One training population, small: the suite stays fast (about 2 s).
SMALL = {"seed": 3, "accounts": 120, "blocks": 900, "epochs": 20, "populations_n": 1}


def train_small(directory: Path) -> Path:
    train_to_store(directory, **SMALL, evaluate_held_out=False)
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
