"""Shared small risk models for the risk tests: trained once per session in a tmp dir."""

from __future__ import annotations

from pathlib import Path

from node.risk.train import train_to_store

SMALL = {"seed": 3, "accounts": 120, "blocks": 900, "epochs": 20}


def train_small(directory: Path) -> Path:
    train_to_store(directory, **SMALL)
    return directory
