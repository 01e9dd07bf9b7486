"""Train a risk model on seeded synthetic histories (node.risk.synth).

Training data: ``generate(seed)``; held-out data for the stored metrics:
``generate(seed + 1000)`` — another population, not a split of the same one.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from node.risk.anomaly import IsolationForest
from node.risk.evaluate import best_amount_threshold, evaluate
from node.risk.model import MLP_SIZES, RiskModel
from node.risk.nn import MLP
from node.risk.store import ModelStore
from node.risk.synth import Dataset, generate

DEFAULT_REVIEW = 0.5
DEFAULT_REJECT = 0.9
HELD_OUT_OFFSET = 1000


def fit(
    data: Dataset,
    *,
    seed: int = 0,
    epochs: int = 25,
    trees: int = 100,
    review: float = DEFAULT_REVIEW,
    reject: float = DEFAULT_REJECT,
) -> tuple[RiskModel, dict[str, Any]]:
    started = time.perf_counter()
    x, y = data.x, data.y.astype(np.float32)
    mean = x.mean(axis=0)
    std = x.std(axis=0) + 1e-3
    mlp = MLP.init(MLP_SIZES, seed)
    xs = ((x - mean) / std).astype(np.float32)
    pos_weight = float(min(10.0, max(1.0, (len(y) - y.sum()) / max(y.sum(), 1) / 4)))
    t0 = time.perf_counter()
    losses = mlp.fit(xs, y, epochs=epochs, seed=seed, pos_weight=pos_weight)
    mlp_seconds = time.perf_counter() - t0
    forest = IsolationForest.fit(x, trees=trees, seed=seed)
    raw = forest.score(x)
    lo, hi = (float(v) for v in np.quantile(raw, [0.90, 0.999]))
    info = {
        "seed": seed,
        "samples": len(y),
        "positives": int(y.sum()),
        "epochs": epochs,
        "pos_weight": pos_weight,
        "final_loss": round(losses[-1], 5),
        "mlp_seconds": round(mlp_seconds, 3),
        "samples_per_second": round(len(y) * epochs / mlp_seconds),
        "seconds": round(time.perf_counter() - started, 3),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": "node.risk.synth.generate",
    }
    meta = {"thresholds": {"review": review, "reject": reject}, "training": info}
    return RiskModel(mean.astype(np.float32), std.astype(np.float32), mlp, forest, lo, hi, meta), info


def train_to_store(
    out: Path, *, seed: int = 0, accounts: int = 200, blocks: int = 1500, epochs: int = 25, trees: int = 100,
    review: float = DEFAULT_REVIEW, reject: float = DEFAULT_REJECT,
) -> tuple[int, dict[str, Any]]:
    """Train, evaluate on a held-out population, save as a new version; return (version, report)."""
    train = generate(seed, accounts=accounts, blocks=blocks)
    model, _ = fit(train, seed=seed, epochs=epochs, trees=trees, review=review, reject=reject)
    held_out = generate(seed + HELD_OUT_OFFSET, accounts=accounts, blocks=blocks)
    threshold = best_amount_threshold(train)
    report = evaluate(model, held_out, threshold)
    model.meta["metrics"] = {"held_out_seed": seed + HELD_OUT_OFFSET, **report}
    model.meta["data"] = {"seed": seed, "accounts": accounts, "blocks": blocks, "baseline_amount_threshold": threshold}
    store = ModelStore(out)
    version = store.save_new(model, parent=None)
    report["model"]["version"] = version
    return version, report
