"""The risk model: standardiser + MLP (35→64→32→16→1) + isolation forest + calibration.

Raw score (noisy-OR): ``r = 1 - (1 - p) * (1 - w * a)`` where ``p`` is the
MLP's fraud probability, ``a`` the forest's anomaly score rescaled to [0, 1]
on the normal training rows (its 90th percentile → 0, 99.9th → 1) and ``w``
the anomaly weight (0.5), so an anomaly no label covers still raises the
score.  The score is ``calibrate(r)``: an isotonic map fitted on a
population neither part trained on, so a score of 0.5 means "about half of
the transactions scored so were fraud" and 0.9 "nine in ten" (on the
synthetic populations, at their fraud rate; the held-out check of that is
the evaluation's calibration error).

File format: one ``.npz`` (loaded with ``allow_pickle=False``) holding the
arrays and a ``meta`` array of UTF-8 JSON: format, version, feature schema
hash and names, thresholds, training metadata and metrics.
"""

from __future__ import annotations

import bisect
import io
import json
import math
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from node.risk.anomaly import IsolationForest
from node.risk.errors import RiskModelError
from node.risk.features import FEATURE_NAMES, N_FEATURES, schema_hash
from node.risk.nn import MLP

FORMAT = "qenex-risk-model/1"
MLP_SIZES = (N_FEATURES, 64, 32, 16, 1)
ANOMALY_WEIGHT = 0.5


@dataclass
class RiskModel:
    mean: np.ndarray
    std: np.ndarray
    mlp: MLP
    forest: IsolationForest
    anomaly_lo: float
    anomaly_hi: float
    meta: dict[str, Any] = field(default_factory=dict)
    # Isotonic calibration of the raw score: a non-decreasing map through
    # (cal_x, cal_y), interpolated linearly; identity when empty.
    cal_x: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    cal_y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float64))
    # per-feature training range the network's input is clipped to (none when empty)
    x_lo: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    x_hi: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    # score_one's precomputed arrays (_SingleRow); rebuilt after the weights change (weights_changed)
    _single: "_SingleRow | None" = field(default=None, repr=False, compare=False)

    @property
    def version(self) -> int:
        return int(self.meta.get("version", 0))

    @property
    def reject_threshold(self) -> float:
        return float(self.meta.get("thresholds", {}).get("reject", 0.9))

    @property
    def review_threshold(self) -> float:
        return float(self.meta.get("thresholds", {}).get("review", 0.5))

    def standardise(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if len(self.x_lo):
            # The network never saw values outside the training range: clip
            # rather than extrapolate (a 1000x fee must not buy a low score);
            # the forest sees the raw row, so such a value is still an anomaly.
            x = np.clip(x, self.x_lo, self.x_hi)
        return ((x - self.mean) / self.std).astype(np.float32)

    def calibrate(self, p: np.ndarray) -> np.ndarray:
        if len(self.cal_x) == 0:
            return p
        return np.interp(p, self.cal_x, self.cal_y)

    def anomaly(self, x: np.ndarray) -> np.ndarray:
        raw = self.forest.score(x)
        return np.clip((raw - self.anomaly_lo) / max(self.anomaly_hi - self.anomaly_lo, 1e-6), 0.0, 1.0)

    def raw_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(raw noisy-OR score, mlp probability, rescaled anomaly) for the rows of raw features ``x``."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float32))
        p = self.mlp.predict(self.standardise(x))
        a = self.anomaly(x)
        return 1.0 - (1.0 - p) * (1.0 - ANOMALY_WEIGHT * a), p, a

    def score_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(calibrated score, mlp probability, rescaled anomaly) for the rows of raw features ``x``."""
        raw, p, a = self.raw_parts(x)
        return self.calibrate(raw), p, a

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.score_parts(x)[0]

    def score_one(self, row: np.ndarray) -> tuple[float, float, float]:
        """score_parts of one row of raw features, as floats: admission's single-transaction path.

        The same function as the batched one (to float32 rounding), with the
        standardiser folded into the first layer and no per-call array
        bookkeeping: a few dozen small numpy calls in all.
        """
        single = self._single
        if single is None:
            single = self._single = _SingleRow.build(self)
        return single.score(np.asarray(row, dtype=np.float32).ravel(), self)

    def weights_changed(self) -> None:
        """Call after changing the network in place (feedback steps): score_one rebuilds its arrays."""
        self._single = None

    def top_features(self, row: np.ndarray, k: int = 3,
                     parts: tuple[float, float] | None = None) -> list[dict[str, Any]]:
        """The features that pushed this row's score up most, highest first.

        Contributions are in units of the raw score (before the calibration,
        which is monotone: the order is the same, and a saturated calibrated
        score would hide them): ``mlp`` is the network's gradient × (input −
        training mean) in standardised units, through the noisy-OR;
        ``anomaly`` is the feature's share of the isolation forest's splits
        on this row's paths (weighted towards the root: what made the row
        easy to isolate) times the anomaly part of the raw score;
        ``contribution`` is their sum (all rows' contributions add up to the
        raw score, p + w·a·(1 − p)).  Features that lowered the score are
        left out.  ``parts``: the row's (mlp probability, rescaled anomaly) when
        the caller has them already (score_one's), so they are not computed
        twice.
        """
        row2 = np.atleast_2d(np.asarray(row, dtype=np.float32))
        if parts is None:
            _, p_arr, a_arr = self.raw_parts(row2)
            p, a = float(p_arr[0]), float(a_arr[0])
        else:
            p, a = parts
        xs = self.standardise(row2)
        # d p / d logit = p (1 - p) vanishes when the network is sure (and is
        # 0 once float32 saturates); the logit's gradient × input ranks the
        # reasons all the same, so scale it to the share of the score the
        # network explains.
        grad = self.mlp.logit_gradient(xs)[0]
        logit_contrib = grad * xs[0]
        positive = np.clip(logit_contrib, 0.0, None)
        mlp = positive / max(positive.sum(), 1e-9) * p  # raw = p + w·a·(1 − p): p is the network's part
        mlp = np.where(logit_contrib > 0, mlp, 0.0)
        forest = (self.forest.feature_shares_one(row2[0]) * (ANOMALY_WEIGHT * a * (1.0 - p)) if a > 0
                  else np.zeros(row2.shape[1]))
        total = mlp + forest
        order = np.argsort(-total)[:k]
        return [
            {"feature": FEATURE_NAMES[i], "value": round(float(row2[0, i]), 4),
             "contribution": round(float(total[i]), 4), "mlp": round(float(mlp[i]), 4),
             "anomaly": round(float(forest[i]), 4), "logit": round(float(logit_contrib[i]), 4)}
            for i in order
            if total[i] > 0
        ]

    # -- persistence -------------------------------------------------------

    def save(self, path: Path) -> None:
        meta = dict(self.meta, format=FORMAT, schema_hash=schema_hash(), feature_names=list(FEATURE_NAMES),
                    anomaly_weight=ANOMALY_WEIGHT)
        arrays = {"mean": self.mean, "std": self.std, "anomaly_range": np.array([self.anomaly_lo, self.anomaly_hi]),
                  "cal_x": np.asarray(self.cal_x, np.float64), "cal_y": np.asarray(self.cal_y, np.float64),
                  "x_lo": np.asarray(self.x_lo, np.float32), "x_hi": np.asarray(self.x_hi, np.float32)}
        arrays.update(self.mlp.to_arrays("mlp_"))
        arrays.update(self.forest.to_arrays())
        arrays["meta"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        tmp.replace(path)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> "RiskModel":
        path = Path(path)
        if not path.is_file():
            raise RiskModelError(f"risk model {path} does not exist")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(arrays.pop("meta").tobytes().decode())
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError, io.UnsupportedOperation) as exc:
            raise RiskModelError(f"risk model {path} is corrupt or not a model file: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise RiskModelError(f"risk model {path} has format {meta.get('format') if isinstance(meta, dict) else None!r}, expected {FORMAT!r}")
        if meta.get("schema_hash") != schema_hash():
            raise RiskModelError(
                f"risk model {path} (version {meta.get('version')}) was trained on feature schema "
                f"{str(meta.get('schema_hash'))[:12]}, this node computes {schema_hash()[:12]}: retrain it with `qenexd risk train`"
            )
        try:
            mlp = MLP.from_arrays(arrays, "mlp_", len(MLP_SIZES) - 1)
            if mlp.sizes != MLP_SIZES:
                raise ValueError(f"network shape {mlp.sizes}, expected {MLP_SIZES}")
            forest = IsolationForest.from_arrays(arrays)
            mean, std = arrays["mean"].astype(np.float32), arrays["std"].astype(np.float32)
            if mean.shape != (N_FEATURES,) or std.shape != (N_FEATURES,):
                raise ValueError(f"standardiser shape {mean.shape}, expected ({N_FEATURES},)")
            lo, hi = (float(v) for v in arrays["anomaly_range"])
            cal_x, cal_y = arrays["cal_x"].astype(np.float64), arrays["cal_y"].astype(np.float64)
            if cal_x.shape != cal_y.shape or cal_x.ndim != 1 or np.any(np.diff(cal_x) < 0) or np.any(np.diff(cal_y) < 0):
                raise ValueError("calibration map is not a non-decreasing function")
            x_lo, x_hi = arrays["x_lo"].astype(np.float32), arrays["x_hi"].astype(np.float32)
            if x_lo.shape != x_hi.shape or x_lo.shape not in ((0,), (N_FEATURES,)):
                raise ValueError(f"input range shape {x_lo.shape}, expected ({N_FEATURES},)")
        except (KeyError, ValueError, IndexError) as exc:
            raise RiskModelError(f"risk model {path} is inconsistent: {exc}") from None
        return cls(mean, std, mlp, forest, lo, hi, meta, cal_x, cal_y, x_lo, x_hi)


@dataclass(frozen=True, slots=True)
class _SingleRow:
    """score_one's arrays: the first layer with the standardiser folded in, the calibration as lists."""

    lo: np.ndarray | None
    hi: np.ndarray | None
    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]
    out_w: np.ndarray
    out_b: float
    cal_x: list[float]
    cal_y: list[float]

    @classmethod
    def build(cls, m: RiskModel) -> "_SingleRow":
        ws, bs = m.mlp.weights, m.mlp.biases
        scale = (1.0 / m.std).astype(np.float32)
        w0 = np.ascontiguousarray(ws[0] * scale[:, None], dtype=np.float32)  # ((x - mean) / std) @ W0 + b0
        b0 = (bs[0] - (m.mean * scale) @ ws[0]).astype(np.float32)
        lo = np.ascontiguousarray(m.x_lo, np.float32) if len(m.x_lo) else None
        hi = np.ascontiguousarray(m.x_hi, np.float32) if len(m.x_hi) else None
        hidden_w = (w0,) + tuple(np.ascontiguousarray(w, np.float32) for w in ws[1:-1])
        hidden_b = (b0,) + tuple(np.ascontiguousarray(b, np.float32) for b in bs[1:-1])
        return cls(lo, hi, hidden_w, hidden_b, np.ascontiguousarray(ws[-1][:, 0], np.float32), float(bs[-1][0]),
                   [float(v) for v in m.cal_x], [float(v) for v in m.cal_y])

    def calibrate(self, r: float) -> float:
        xs, ys = self.cal_x, self.cal_y
        if not xs:
            return r
        if r <= xs[0]:
            return ys[0]
        if r >= xs[-1]:
            return ys[-1]
        i = bisect.bisect_right(xs, r)  # xs[i-1] <= r < xs[i], as np.interp
        x0, x1 = xs[i - 1], xs[i]
        return ys[i - 1] if x1 == x0 else ys[i - 1] + (ys[i] - ys[i - 1]) * (r - x0) / (x1 - x0)

    def score(self, row: np.ndarray, m: RiskModel) -> tuple[float, float, float]:
        h = row if self.lo is None else np.minimum(np.maximum(row, self.lo), self.hi)
        for w, b in zip(self.weights, self.biases):
            h = h @ w
            h += b
            np.maximum(h, 0.0, out=h)
        z = float(h @ self.out_w) + self.out_b
        p = 1.0 / (1.0 + math.exp(-min(max(z, -40.0), 40.0)))
        a = (m.forest.score_one(row) - m.anomaly_lo) / max(m.anomaly_hi - m.anomaly_lo, 1e-6)
        a = 0.0 if a < 0.0 else 1.0 if a > 1.0 else a
        raw = 1.0 - (1.0 - p) * (1.0 - ANOMALY_WEIGHT * a)
        return self.calibrate(raw), p, a
