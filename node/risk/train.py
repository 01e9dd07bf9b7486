"""Train a risk model on seeded synthetic histories (node.risk.synth).

Every role has its own populations, never a split of one:

* training: ``generate(seed + k)`` for k < ``populations`` (each seed draws
  its own behaviour mix and fee distribution);
* calibration: ``generate(seed + 500 + k)`` for k < ``CALIBRATION_POPULATIONS``
  (3): the isotonic map from the network's output to the observed fraud
  rate is fitted on rows the network never saw (three populations, not
  one: a lone drain and an owner moving everything look alike, and with
  one population's two dozen of them the map at the top merged them with
  the certain frauds, so whether the model refused lone drains moved with
  the seed);
* held-out evaluation (node.risk.evaluate): ``generate(seed + 1000 + k)``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from node.risk import policy
from node.risk.anomaly import IsolationForest
from node.risk.model import MLP_SIZES, RiskModel
from node.risk.nn import MLP
from node.risk.store import ModelStore
from node.risk.synth import FRAUD_PATTERNS, Dataset, concat, generate

DEFAULT_REVIEW = 0.5
DEFAULT_REJECT = 0.9
CALIBRATION_OFFSET = 500
CALIBRATION_POPULATIONS = 3
HELD_OUT_OFFSET = 1000
POPULATIONS = 5


def training_seeds(seed: int, populations: int) -> list[int]:
    return [seed + k for k in range(populations)]


def calibration_seeds(seed: int) -> list[int]:
    return [seed + CALIBRATION_OFFSET + k for k in range(CALIBRATION_POPULATIONS)]


def held_out_seeds(seed: int, populations: int) -> list[int]:
    return [seed + HELD_OUT_OFFSET + k for k in range(populations)]


def isotonic(p: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pool-adjacent-violators fit of y on p: (block mean p, block fraud rate), both non-decreasing.

    Each block's rate is (frauds + 0.5) / (rows + 1): a block of 5,000 clean rows says fraud is rare
    there (1e-4), not impossible, so no score is exactly 0 or 1 (a node told to flag every score above
    0 flags every transaction).
    """
    order = np.argsort(p, kind="mergesort")
    ps, ys = np.asarray(p, np.float64)[order], np.asarray(y, np.float64)[order]
    # blocks as [sum_y, count, sum_p]
    sums: list[float] = []
    counts: list[float] = []
    psums: list[float] = []
    for pv, yv in zip(ps, ys):
        sums.append(yv)
        counts.append(1.0)
        psums.append(pv)
        while len(sums) > 1 and sums[-2] / counts[-2] >= sums[-1] / counts[-1]:
            sy, c, sp = sums.pop(), counts.pop(), psums.pop()
            sums[-1] += sy
            counts[-1] += c
            psums[-1] += sp
    xs = np.array(psums) / np.array(counts)
    vs = np.maximum.accumulate((np.array(sums) + 0.5) / (np.array(counts) + 1.0))
    xs = np.maximum.accumulate(xs)
    return np.concatenate([[0.0], xs, [1.0]]), np.concatenate([[vs[0]], vs, [vs[-1]]])


def fit(
    data: Dataset,
    *,
    seed: int = 0,
    epochs: int = 25,
    trees: int = 100,
    review: float = DEFAULT_REVIEW,
    reject: float = DEFAULT_REJECT,
    calibration: Dataset | None = None,
) -> tuple[RiskModel, dict[str, Any]]:
    started = time.perf_counter()
    x, y = data.x, data.y.astype(np.float32)
    mean = x.mean(axis=0)
    std = x.std(axis=0) + 1e-3
    mlp = MLP.init(MLP_SIZES, seed)
    xs = ((x - mean) / std).astype(np.float32)
    x_lo, x_hi = x.min(axis=0).astype(np.float32), x.max(axis=0).astype(np.float32)
    pos_weight = float(min(10.0, max(1.0, (len(y) - y.sum()) / max(y.sum(), 1) / 4)))
    t0 = time.perf_counter()
    losses = mlp.fit(xs, y, epochs=epochs, seed=seed, pos_weight=pos_weight)
    mlp_seconds = time.perf_counter() - t0
    forest = IsolationForest.fit(x[data.y == 0] if (data.y == 0).any() else x, trees=trees, seed=seed)
    raw = forest.score(x[data.y == 0] if (data.y == 0).any() else x)
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
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": "node.risk.synth.generate",
    }
    meta = {"thresholds": {"review": review, "reject": reject}, "training": info}
    model = RiskModel(mean.astype(np.float32), std.astype(np.float32), mlp, forest, lo, hi, meta, x_lo=x_lo, x_hi=x_hi)
    if calibration is not None and len(calibration) and calibration.y.any():
        raw, _, _ = model.raw_parts(calibration.x)
        model.cal_x, model.cal_y = isotonic(raw, calibration.y)
        info["calibration"] = {"method": "isotonic", "samples": len(calibration),
                               "positives": int(calibration.y.sum()), "points": len(model.cal_x)}
    info["seconds"] = round(time.perf_counter() - started, 3)
    return model, info


def populations(seeds: list[int], accounts: int, blocks: int) -> Dataset:
    return concat([generate(s, accounts=accounts, blocks=blocks) for s in seeds])


def train_to_store(
    out: Path, *, seed: int = 0, accounts: int = 200, blocks: int = 1500, epochs: int = 25, trees: int = 100,
    review: float = DEFAULT_REVIEW, reject: float = DEFAULT_REJECT, populations_n: int = POPULATIONS,
    evaluate_held_out: bool = True,
) -> tuple[int, dict[str, Any]]:
    """Train, calibrate, evaluate on held-out populations, save as a new version; return (version, report)."""
    from node.risk.evaluate import best_amount_threshold, evaluate

    train = populations(training_seeds(seed, populations_n), accounts, blocks)
    calibration = populations(calibration_seeds(seed), accounts, blocks)
    model, _ = fit(train, seed=seed, epochs=epochs, trees=trees, review=review, reject=reject,
                   calibration=calibration)
    threshold = best_amount_threshold(train)
    model.meta["data"] = {"seed": seed, "accounts": accounts, "blocks": blocks, "populations": populations_n,
                          "training_seeds": training_seeds(seed, populations_n),
                          "calibration_seeds": calibration_seeds(seed), "baseline_amount_threshold": threshold}
    report: dict[str, Any] = {}
    if evaluate_held_out:
        held = held_out_seeds(seed, populations_n)
        report = evaluate(model, populations(held, accounts, blocks), threshold)
        model.meta["metrics"] = {"held_out_seeds": held, **report}
    store = ModelStore(out)
    version = store.save_new(model, parent=None)
    if report:
        report["model"]["version"] = version
    return version, report


def leave_one_pattern_out(train: Dataset, calibration: Dataset, held_out: Dataset, *, seed: int, epochs: int,
                          trees: int, review: float, reject: float) -> dict[str, Any]:
    """Per fraud pattern: train (and calibrate) without it, then its recall on the held-out data.

    The held-out set keeps every pattern; only the omitted pattern's recall
    is reported for each run (with the normal traffic's flag rate of that
    run), so each number says how the model does on a fraud it never saw;
    ``hook_recall_*`` is the same with the rules on top (they are written,
    not trained, so leaving a pattern out of training does not touch them).
    """
    out = {}
    for name in FRAUD_PATTERNS:
        model, _ = fit(train.subset(train.pattern != name), seed=seed, epochs=epochs, trees=trees, review=review,
                       reject=reject, calibration=calibration.subset(calibration.pattern != name))
        scores = model.score(held_out.x)
        decided = policy.decisions(scores, held_out.x, review, reject)
        mask = held_out.pattern == name
        normal = held_out.pattern == "normal"
        out[name] = {"n": int(mask.sum()),
                     "recall_review": round(float((scores[mask] > review).mean()), 4) if mask.any() else None,
                     "recall_reject": round(float((scores[mask] > reject).mean()), 4) if mask.any() else None,
                     "false_positive_rate": round(float((scores[normal] > review).mean()), 5),
                     # the hook's: the same model with node.risk.policy's rules (which no training touches)
                     "hook_recall_review": round(float((decided[mask] >= 1).mean()), 4) if mask.any() else None,
                     "hook_recall_reject": round(float((decided[mask] == 2).mean()), 4) if mask.any() else None}
    return out
