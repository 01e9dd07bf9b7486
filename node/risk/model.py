"""The risk model: standardiser + MLP (20→64→32→16→1) + isolation forest.

Combined score (noisy-OR): ``1 - (1 - p) * (1 - w * a)`` where ``p`` is the
MLP's fraud probability, ``a`` the forest's anomaly score rescaled to [0, 1]
on the training data (its 90th percentile → 0, 99.9th → 1) and ``w`` the
anomaly weight (0.5).  So the supervised network can reject on its own,
while an anomaly no label covers can at most reach ``w``: review, not reject,
at the default thresholds.

File format: one ``.npz`` (loaded with ``allow_pickle=False``) holding the
arrays and a ``meta`` array of UTF-8 JSON: format, version, feature schema
hash and names, thresholds, training metadata and metrics.
"""

from __future__ import annotations

import io
import json
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
        return ((np.asarray(x, dtype=np.float32) - self.mean) / self.std).astype(np.float32)

    def score_parts(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(combined, mlp probability, rescaled anomaly) for the rows of raw features ``x``."""
        x = np.atleast_2d(np.asarray(x, dtype=np.float32))
        p = self.mlp.predict(self.standardise(x))
        raw = self.forest.score(x)
        a = np.clip((raw - self.anomaly_lo) / max(self.anomaly_hi - self.anomaly_lo, 1e-6), 0.0, 1.0)
        combined = 1.0 - (1.0 - p) * (1.0 - ANOMALY_WEIGHT * a)
        return combined, p, a

    def score(self, x: np.ndarray) -> np.ndarray:
        return self.score_parts(x)[0]

    def top_features(self, row: np.ndarray, k: int = 3) -> list[dict[str, Any]]:
        """Gradient × (input − training mean) attributions of the MLP, highest first."""
        xs = self.standardise(np.atleast_2d(row))
        contrib = (self.mlp.input_gradient(xs) * xs)[0]
        order = np.argsort(-contrib)[:k]
        return [
            {"feature": FEATURE_NAMES[i], "value": round(float(np.atleast_2d(row)[0, i]), 4),
             "contribution": round(float(contrib[i]), 4)}
            for i in order
            if contrib[i] > 0
        ]

    # -- persistence -------------------------------------------------------

    def save(self, path: Path) -> None:
        meta = dict(self.meta, format=FORMAT, schema_hash=schema_hash(), feature_names=list(FEATURE_NAMES),
                    anomaly_weight=ANOMALY_WEIGHT)
        arrays = {"mean": self.mean, "std": self.std, "anomaly_range": np.array([self.anomaly_lo, self.anomaly_hi])}
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
        except (KeyError, ValueError, IndexError) as exc:
            raise RiskModelError(f"risk model {path} is inconsistent: {exc}") from None
        return cls(mean, std, mlp, forest, lo, hi, meta)
