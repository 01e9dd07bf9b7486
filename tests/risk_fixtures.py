"""Shared small risk models for the risk tests: trained once per session in a tmp dir."""

from __future__ import annotations

from pathlib import Path

from node.risk.train import train_to_store

# One training population, small: the suite stays fast (about 2 s).
SMALL = {"seed": 3, "accounts": 120, "blocks": 900, "epochs": 20, "populations_n": 1}


def train_small(directory: Path) -> Path:
    train_to_store(directory, **SMALL, evaluate_held_out=False)
    return directory
