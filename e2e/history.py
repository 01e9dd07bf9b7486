"""What a run recorded: every submission, every block seen on every node, every perturbation.

Times are seconds since the run's clock started (``time.monotonic`` based).
The history is plain data, saved as JSON beside the run's logs, so the
checker can judge it again offline (``python -m e2e.checker history.json``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class Submission:
    """One ``qenex_sendTransaction``: which transaction, from whom, to which node, and the answer."""

    t: float
    tx: str
    sender: str
    nonce: int
    node: int
    accepted: bool
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Commit:
    """Node ``node`` serving block ``height`` (first sight during the run, or the final sweep)."""

    t: float
    node: int
    height: int
    block_hash: str
    app_hash: str
    txs: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Perturbation:
    """A fault applied at ``start`` and healed (restarted, resumed, reconnected) at ``end``.

    ``quorum_connected``: whether validators holding more than 2/3 of the
    power could still reach each other while it lasted, so the chain must
    stay live through it.
    """

    kind: str
    nodes: tuple[int, ...]
    start: float
    end: float
    quorum_connected: bool
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Exit:
    """A node process that ended without the runner killing or stopping it."""

    t: float
    node: int
    returncode: int


@dataclass(slots=True)
class History:
    validators: int
    load_start: float = 0.0
    load_end: float = 0.0
    submissions: list[Submission] = field(default_factory=list)
    commits: list[Commit] = field(default_factory=list)  # first sight of (node, height) during the run
    final: list[Commit] = field(default_factory=list)  # every node, every height, read at the end
    perturbations: list[Perturbation] = field(default_factory=list)
    exits: list[Exit] = field(default_factory=list)
    max_rss: dict[int, int] = field(default_factory=dict)  # node -> bytes
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["max_rss"] = {str(k): v for k, v in self.max_rss.items()}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "History":
        def commits(items: list[dict[str, Any]]) -> list[Commit]:
            return [Commit(**{**c, "txs": tuple(c["txs"])}) for c in items]

        return cls(
            validators=data["validators"],
            load_start=data["load_start"],
            load_end=data["load_end"],
            submissions=[Submission(**s) for s in data["submissions"]],
            commits=commits(data["commits"]),
            final=commits(data["final"]),
            perturbations=[Perturbation(**{**p, "nodes": tuple(p["nodes"])}) for p in data["perturbations"]],
            exits=[Exit(**e) for e in data["exits"]],
            max_rss={int(k): v for k, v in data["max_rss"].items()},
            notes=list(data.get("notes", [])),
        )

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json()) + "\n")

    @classmethod
    def load(cls, path: Path) -> "History":
        return cls.from_json(json.loads(path.read_text()))
