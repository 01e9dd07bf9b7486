"""Held-out evaluation of a risk model against a rule-based amount-threshold baseline.

The baseline flags a transaction whose amount exceeds a threshold; the
threshold is the one that maximises F1 on the *training* data, so the
comparison on the held-out set is fair.  Metrics: precision, recall, F1,
ROC-AUC and the confusion matrix at the model's review and reject
thresholds.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from node.risk.model import RiskModel
from node.risk.synth import Dataset


def roc_auc_score(y: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney ROC-AUC with average ranks for ties (numpy only)."""
    y = np.asarray(y).astype(bool)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    pos, neg = int(y.sum()), int((~y).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def confusion(y: np.ndarray, flagged: np.ndarray) -> dict[str, int]:
    y = y.astype(bool)
    return {
        "tp": int((flagged & y).sum()),
        "fp": int((flagged & ~y).sum()),
        "fn": int((~flagged & y).sum()),
        "tn": int((~flagged & ~y).sum()),
    }


def metrics_at(y: np.ndarray, scores: np.ndarray, threshold: float) -> dict[str, Any]:
    c = confusion(y, scores > threshold)
    precision = c["tp"] / (c["tp"] + c["fp"]) if c["tp"] + c["fp"] else 0.0
    recall = c["tp"] / (c["tp"] + c["fn"]) if c["tp"] + c["fn"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"threshold": threshold, "precision": round(precision, 4), "recall": round(recall, 4),
            "f1": round(f1, 4), "confusion": c}


def best_amount_threshold(train: Dataset) -> float:
    """The amount cut that maximises F1 on the training data."""
    candidates = np.quantile(train.amount, np.linspace(0.5, 0.999, 200))
    best, best_f1 = float(candidates[0]), -1.0
    for t in candidates:
        f1 = metrics_at(train.y, train.amount, float(t))["f1"]
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best


def evaluate(model: RiskModel, held_out: Dataset, amount_threshold: float) -> dict[str, Any]:
    scores = model.score(held_out.x)
    y = held_out.y
    out: dict[str, Any] = {
        "samples": len(y),
        "positives": int(y.sum()),
        "model": {
            "version": model.version,
            "roc_auc": round(float(roc_auc_score(y, scores)), 4),
            "review": metrics_at(y, scores, model.review_threshold),
            "reject": metrics_at(y, scores, model.reject_threshold),
        },
        "baseline": {
            "rule": f"amount > {amount_threshold:.4g}",
            "roc_auc": round(float(roc_auc_score(y, held_out.amount)), 4),
            "at_threshold": metrics_at(y, held_out.amount, amount_threshold),
        },
    }
    per_pattern = {}
    for name in sorted(set(held_out.pattern.tolist()) - {"normal"}):
        mask = held_out.pattern == name
        per_pattern[name] = {
            "n": int(mask.sum()),
            "recall_review": round(float((scores[mask] > model.review_threshold).mean()), 4),
            "recall_reject": round(float((scores[mask] > model.reject_threshold).mean()), 4),
        }
    normal = held_out.pattern == "normal"
    out["per_pattern"] = per_pattern
    out["normal_flag_rate"] = round(float((scores[normal] > model.review_threshold).mean()), 4)
    return out


def render_table(report: dict[str, Any]) -> str:
    m, b = report["model"], report["baseline"]
    lines = [
        f"held-out samples: {report['samples']} ({report['positives']} fraud)",
        f"{'':28}{'precision':>10}{'recall':>8}{'F1':>8}{'ROC-AUC':>9}   tp/fp/fn/tn",
    ]

    def row(name: str, r: dict[str, Any], auc: float) -> str:
        c = r["confusion"]
        return (f"{name:28}{r['precision']:>10.3f}{r['recall']:>8.3f}{r['f1']:>8.3f}{auc:>9.3f}   "
                f"{c['tp']}/{c['fp']}/{c['fn']}/{c['tn']}")

    lines.append(row(f"model v{m['version']} review>{m['review']['threshold']}", m["review"], m["roc_auc"]))
    lines.append(row(f"model v{m['version']} reject>{m['reject']['threshold']}", m["reject"], m["roc_auc"]))
    lines.append(row(f"baseline {b['rule']}", b["at_threshold"], b["roc_auc"]))
    lines.append("recall by pattern (review / reject): " + ", ".join(
        f"{k} {v['recall_review']:.2f}/{v['recall_reject']:.2f}" for k, v in report["per_pattern"].items()))
    lines.append(f"normal transactions flagged for review: {report['normal_flag_rate']:.4f}")
    return "\n".join(lines)
