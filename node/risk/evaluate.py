"""Held-out evaluation of a risk model, built so that it cannot flatter.

On populations the model never saw (other seeds, other behaviour mixes):

* precision, recall, F1, ROC-AUC and the confusion matrix at the review and
  reject thresholds, against two naive baselines (an amount threshold and
  the balance-share rule of the ``rules`` fallback), each cut chosen on the
  *training* data;
* recall per fraud pattern at both thresholds, and the false-positive rate
  on normal traffic (per kind of normal behaviour too);
* calibration: expected calibration error (10 equal-width bins) and the
  reliability table, so "0.5" and "0.9" can be checked against what they
  claim;
* fee ablation: every score again with the fee feature neutralised (set to
  the median fee), to show how much the model leans on the fee;
* leave-one-pattern-out (``node.risk.train.leave_one_pattern_out``): retrain without each
  pattern and measure its recall: how the model does on a fraud it was
  never shown;
* the hook's decisions (the model with node.risk.policy's rules on top):
  recall per pattern and false positives again, and the drain table: for
  each kind of account drain the generator makes (plain, and with each
  second takeover signal), on its drain rows (the ones the drain rule
  matches: the part that completes the drain), how often the model alone
  and the hook refuse and flag it and which signals fired; beside it what
  the rules cost on normal traffic and on owners moving everything to a
  wallet of their own;
* ROC and precision-recall curves as points in the JSON, and as PNG plots
  when matplotlib is installed (``pip install qenexd[plots]``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from node.risk import policy
from node.risk.features import FEATURE_NAMES, FEE_FEATURE
from node.risk.model import RiskModel
from node.risk.synth import Dataset

ECE_BINS = 10
CURVE_POINTS = 200


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


def fee_neutralised(x: np.ndarray) -> np.ndarray:
    out = np.array(x, copy=True)
    out[:, FEE_FEATURE] = 0.0  # log10(fee / median fee) = 0: every fee is the median fee
    return out


def calibration_error(y: np.ndarray, scores: np.ndarray, bins: int = ECE_BINS) -> dict[str, Any]:
    """Expected calibration error over equal-width bins, and the reliability table."""
    y = np.asarray(y, np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    index = np.clip(np.digitize(scores, edges[1:-1]), 0, bins - 1)
    table = []
    ece = 0.0
    for b in range(bins):
        mask = index == b
        n = int(mask.sum())
        if not n:
            continue
        mean_score, rate = float(scores[mask].mean()), float(y[mask].mean())
        ece += n / len(y) * abs(mean_score - rate)
        table.append({"bin": f"{edges[b]:.1f}-{edges[b + 1]:.1f}", "n": n, "mean_score": round(mean_score, 4),
                      "fraud_rate": round(rate, 4)})
    above = {}
    for t in (0.5, 0.9):
        mask = scores > t
        above[str(t)] = round(float(y[mask].mean()), 4) if mask.any() else None
    return {"ece": round(ece, 4), "bins": table, "fraud_rate_above": above}


def curves(y: np.ndarray, scores: np.ndarray, points: int = CURVE_POINTS) -> dict[str, list[list[float]]]:
    """ROC (fpr, tpr) and precision-recall (recall, precision) points, thinned to about ``points`` each."""
    y = np.asarray(y).astype(bool)
    order = np.argsort(-scores, kind="mergesort")
    ys, ss = y[order], scores[order]
    tp = np.cumsum(ys)
    fp = np.cumsum(~ys)
    last = np.r_[np.flatnonzero(np.diff(ss)), len(ss) - 1]  # one point per distinct threshold
    tp, fp = tp[last], fp[last]
    pos, neg = max(int(y.sum()), 1), max(int((~y).sum()), 1)
    tpr, fpr = tp / pos, fp / neg
    precision = tp / np.maximum(tp + fp, 1)
    keep = np.unique(np.linspace(0, len(tpr) - 1, min(points, len(tpr))).astype(int))
    roc = [[0.0, 0.0]] + [[round(float(fpr[i]), 5), round(float(tpr[i]), 5)] for i in keep]
    pr = [[round(float(tpr[i]), 5), round(float(precision[i]), 5)] for i in keep]
    return {"roc": roc, "pr": pr}


def per_pattern(patterns: np.ndarray, scores: np.ndarray, review: float, reject: float) -> dict[str, Any]:
    out = {}
    for name in sorted(set(patterns.tolist()) - {"normal"}):
        mask = patterns == name
        out[name] = {
            "n": int(mask.sum()),
            "recall_review": round(float((scores[mask] > review).mean()), 4),
            "recall_reject": round(float((scores[mask] > reject).mean()), 4),
        }
    return out


def hook_per_pattern(patterns: np.ndarray, decided: np.ndarray) -> dict[str, Any]:
    out = {}
    for name in sorted(set(patterns.tolist()) - {"normal"}):
        mask = patterns == name
        out[name] = {"n": int(mask.sum()), "recall_review": round(float((decided[mask] >= 1).mean()), 4),
                     "recall_reject": round(float((decided[mask] == 2).mean()), 4)}
    return out


def drain_table(data: Dataset, scores: np.ndarray, decided: np.ndarray, reject: float) -> dict[str, Any]:
    """Per kind of account drain, on its drain rows: refused by the model alone and by the hook, signals fired.

    A kind's drain rows are its rows the drain rule matches (the transfer
    that completes the drain: the first legs of a split or a fan-out move
    less than 90 % and are not drains yet); ``rows`` counts them all.
    ``normal`` is what the same rules do to normal traffic.
    """
    assert data.kind is not None
    drain = policy.drain_mask(data.x)
    signals = policy.signal_masks(data.x)
    kinds: dict[str, Any] = {}
    for kind in sorted(k for k in set(data.kind.tolist()) if k.startswith("drain:") or k == "normal:move_all"):
        rows = data.kind == kind
        mask = rows & drain
        n = int(mask.sum())
        entry: dict[str, Any] = {"rows": int(rows.sum()), "n": n}
        if n:
            entry.update({
                "model_refused": round(float((scores[mask] > reject).mean()), 4),
                "refused": round(float((decided[mask] == 2).mean()), 4),
                "flagged": round(float((decided[mask] >= 1).mean()), 4),
                "signals": {name: round(float(m[mask].mean()), 4) for name, m in signals.items()},
            })
        kinds[kind.split(":", 1)[1]] = entry
    normal = data.pattern == "normal"
    rules = policy.rule_decisions(data.x)
    return {
        "kinds": kinds,
        "normal": {
            "n": int(normal.sum()),
            "drain_rule": round(float((rules[normal] >= 1).mean()), 6),
            "refused_by_rules": round(float((rules[normal] == 2).mean()), 6),
            "signal_rate": {name: round(float(m[normal].mean()), 5) for name, m in signals.items()},
        },
    }


def best_share_threshold(train: Dataset) -> float:
    """The balance-share cut (new receivers only, as the ``rules`` fallback) that maximises F1 on the training data."""
    share = train.x[:, FEATURE_NAMES.index("balance_share")] * train.x[:, FEATURE_NAMES.index("new_counterparty")]
    best, best_f1 = 0.9, -1.0
    for t in np.linspace(0.05, 0.95, 19):
        f1 = metrics_at(train.y, share, float(t))["f1"]
        if f1 > best_f1:
            best, best_f1 = float(t), f1
    return best


def evaluate(model: RiskModel, held_out: Dataset, amount_threshold: float,
             share_threshold: float = 0.9) -> dict[str, Any]:
    scores = model.score(held_out.x)
    y = held_out.y
    review, reject = model.review_threshold, model.reject_threshold
    share = held_out.x[:, FEATURE_NAMES.index("balance_share")] * held_out.x[:, FEATURE_NAMES.index("new_counterparty")]
    out: dict[str, Any] = {
        "samples": len(y),
        "positives": int(y.sum()),
        "model": {
            "version": model.version,
            "roc_auc": round(float(roc_auc_score(y, scores)), 4),
            "review": metrics_at(y, scores, review),
            "reject": metrics_at(y, scores, reject),
        },
        "baseline": {
            "rule": f"amount > {amount_threshold:.4g}",
            "roc_auc": round(float(roc_auc_score(y, held_out.amount)), 4),
            "at_threshold": metrics_at(y, held_out.amount, amount_threshold),
        },
        "baseline_share": {
            "rule": f"new receiver and balance share > {share_threshold:.2f}",
            "roc_auc": round(float(roc_auc_score(y, share)), 4),
            "at_threshold": metrics_at(y, share, share_threshold),
        },
    }
    out["per_pattern"] = per_pattern(held_out.pattern, scores, review, reject)
    normal = held_out.pattern == "normal"
    out["normal_flag_rate"] = round(float((scores[normal] > review).mean()), 4)
    out["false_positive_rate"] = {"review": round(float((scores[normal] > review).mean()), 5),
                                  "reject": round(float((scores[normal] > reject).mean()), 5)}
    if held_out.kind is not None:
        by_kind = {}
        for kind in sorted(set(held_out.kind[normal].tolist())):
            mask = normal & (held_out.kind == kind)
            by_kind[kind.split(":", 1)[-1]] = {"n": int(mask.sum()),
                                               "flagged": round(float((scores[mask] > review).mean()), 4),
                                               "refused": round(float((scores[mask] > reject).mean()), 4)}
        out["normal_by_kind"] = by_kind
        fraud_kinds = {}
        for kind in sorted(set(held_out.kind[~normal].tolist())):
            mask = ~normal & (held_out.kind == kind)
            fraud_kinds[kind] = {"n": int(mask.sum()),
                                 "recall_review": round(float((scores[mask] > review).mean()), 4),
                                 "recall_reject": round(float((scores[mask] > reject).mean()), 4)}
        out["fraud_by_kind"] = fraud_kinds
    out["calibration"] = calibration_error(y, scores)
    ablated = model.score(fee_neutralised(held_out.x))
    out["fee_ablation"] = {
        "roc_auc": round(float(roc_auc_score(y, ablated)), 4),
        "review": metrics_at(y, ablated, review),
        "per_pattern": per_pattern(held_out.pattern, ablated, review, reject),
        "false_positive_rate": round(float((ablated[normal] > review).mean()), 5),
    }
    decided = policy.decisions(scores, held_out.x, review, reject)
    out["hook"] = {
        "review": metrics_at(y, decided.astype(np.float64), 0.5),
        "reject": metrics_at(y, decided.astype(np.float64), 1.5),
        "per_pattern": hook_per_pattern(held_out.pattern, decided),
        "false_positive_rate": {"review": round(float((decided[normal] >= 1).mean()), 5),
                                "reject": round(float((decided[normal] == 2).mean()), 5)},
    }
    if held_out.kind is not None:
        out["drains"] = drain_table(held_out, scores, decided, reject)
    out["curves"] = curves(y, scores)
    return out


def write_plots(report: dict[str, Any], directory: Path, stem: str) -> list[Path] | str:
    """ROC and precision-recall PNGs next to the JSON report; a reason string if matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (pip install 'qenexd[plots]'): curves are in the JSON only"
    written = []
    for key, (xl, yl, title) in {"roc": ("false-positive rate", "true-positive rate", "ROC"),
                                 "pr": ("recall", "precision", "precision-recall")}.items():
        pts = np.array(report["curves"][key])
        fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
        ax.plot(pts[:, 0], pts[:, 1], lw=1.5)
        ax.set_xlabel(xl)
        ax.set_ylabel(yl)
        ax.set_title(f"{title} (held-out, AUC {report['model']['roc_auc']:.3f})" if key == "roc" else title)
        ax.grid(alpha=0.3)
        path = directory / f"{stem}-{key}.png"
        fig.tight_layout()
        fig.savefig(path)
        plt.close(fig)
        written.append(path)
    return written


def render_table(report: dict[str, Any]) -> str:
    m, b = report["model"], report["baseline"]
    lines = [
        f"held-out samples: {report['samples']} ({report['positives']} fraud)",
        f"{'':44}{'precision':>10}{'recall':>8}{'F1':>8}{'ROC-AUC':>9}   tp/fp/fn/tn",
    ]

    def row(name: str, r: dict[str, Any], auc: float) -> str:
        c = r["confusion"]
        return (f"{name:44}{r['precision']:>10.3f}{r['recall']:>8.3f}{r['f1']:>8.3f}{auc:>9.3f}   "
                f"{c['tp']}/{c['fp']}/{c['fn']}/{c['tn']}")

    lines.append(row(f"model v{m['version']} review>{m['review']['threshold']}", m["review"], m["roc_auc"]))
    lines.append(row(f"model v{m['version']} reject>{m['reject']['threshold']}", m["reject"], m["roc_auc"]))
    lines.append(row(f"baseline {b['rule']}", b["at_threshold"], b["roc_auc"]))
    if "baseline_share" in report:
        s = report["baseline_share"]
        lines.append(row(f"baseline {s['rule']}", s["at_threshold"], s["roc_auc"]))
    if "fee_ablation" in report:
        fa = report["fee_ablation"]
        lines.append(row("model, fee neutralised, review", fa["review"], fa["roc_auc"]))
    lines.append("recall by pattern (review / reject): " + ", ".join(
        f"{k} {v['recall_review']:.3f}/{v['recall_reject']:.3f}" for k, v in report["per_pattern"].items()))
    if "fee_ablation" in report:
        lines.append("  with the fee neutralised:            " + ", ".join(
            f"{k} {v['recall_review']:.3f}/{v['recall_reject']:.3f}"
            for k, v in report["fee_ablation"]["per_pattern"].items()))
    if "leave_one_pattern_out" in report:
        lines.append("  trained without the pattern:         " + ", ".join(
            f"{k} {v['recall_review']:.3f}/{v['recall_reject']:.3f}"
            for k, v in report["leave_one_pattern_out"].items() if v["recall_review"] is not None))
        lines.append("  ... with the rules on top (hook):    " + ", ".join(
            f"{k} {v['hook_recall_review']:.3f}/{v['hook_recall_reject']:.3f}"
            for k, v in report["leave_one_pattern_out"].items() if v.get("hook_recall_review") is not None))
    fpr = report.get("false_positive_rate", {"review": report["normal_flag_rate"], "reject": float("nan")})
    lines.append(f"normal transactions flagged for review: {fpr['review']:.4%}, refused: {fpr['reject']:.4%}")
    if "hook" in report:
        hk = report["hook"]
        lines.append(row("hook (model + rules), review", hk["review"], float("nan")))
        lines.append(row("hook (model + rules), reject", hk["reject"], float("nan")))
        lines.append("  hook recall by pattern (review / reject): " + ", ".join(
            f"{k} {v['recall_review']:.3f}/{v['recall_reject']:.3f}" for k, v in hk["per_pattern"].items()))
        lines.append(f"  hook on normal transactions: flagged {hk['false_positive_rate']['review']:.4%}, "
                     f"refused {hk['false_positive_rate']['reject']:.4%}")
    if "drains" in report:
        d = report["drains"]
        lines.append("account drains, on the row that completes each (n; refused by the model alone -> "
                     "by the hook; flagged by the hook; signals seen):")
        for kind, v in d["kinds"].items():
            if not v["n"]:
                lines.append(f"  {kind:10} n=0 ({v['rows']} rows, none a drain by the rule)")
                continue
            seen = ", ".join(f"{k} {r:.2f}" for k, r in v["signals"].items() if r) or "none"
            lines.append(f"  {kind:10} n={v['n']:<4} refused {v['model_refused']:.3f} -> {v['refused']:.3f}; "
                         f"flagged {v['flagged']:.3f}; signals: {seen}")
        nm = d["normal"]
        lines.append(f"  rules on normal traffic (n={nm['n']}): drain rule {nm['drain_rule']:.4%}, "
                     f"refused by the rules {nm['refused_by_rules']:.4%}; each signal alone: " + ", ".join(
                         f"{k} {r:.3%}" for k, r in nm["signal_rate"].items()))
    if "normal_by_kind" in report:
        lines.append("  flagged by kind: " + ", ".join(
            f"{k} {v['flagged']:.4f} (n={v['n']})" for k, v in report["normal_by_kind"].items()))
    if "calibration" in report:
        c = report["calibration"]
        lines.append(f"calibration: ECE {c['ece']:.4f}; fraud rate among scores > 0.5: "
                     f"{c['fraud_rate_above']['0.5']}, > 0.9: {c['fraud_rate_above']['0.9']}")
    return "\n".join(lines)
