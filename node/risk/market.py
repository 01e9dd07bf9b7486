"""Pool price-direction predictor: 15 technical indicators → MLP 15→32→16→8→1.

Input: a pool's per-block observations (``Application.pool_history``), price
= reserve1 / reserve0 (token0 priced in token1), volume proxy = |Δreserve0| /
reserve0 between consecutive observations.  Target: is the next *change*
of the price up (flat blocks, with no trade, are skipped)?

==  ===============  =====================================================
 #  indicator        meaning (p = price series, r = 1-step log returns)
==  ===============  =====================================================
 0  ret_1            log return of the last move (the last non-zero change; flat blocks skipped)
 1  ret_3            log return over 3 observations
 2  ret_5            ... over 5
 3  ret_10           ... over 10
 4  ret_20           ... over 20
 5  sma_cross        SMA5 / SMA20 - 1
 6  price_vs_sma10   p / SMA10 - 1
 7  ema_cross        EMA5 / EMA20 - 1 (MACD-like)
 8  rsi_14           RSI over 14 observations, scaled to [0, 1]
 9  vol_10           std of r over 10
10  vol_20           std of r over 20
11  volume_5         mean volume proxy over 5
12  volume_ratio     volume_5 / volume_20 (1 if none)
13  twap_dev         p / TWAP20 - 1 (TWAP: mean price of the last 20 blocks)
14  bollinger_b      (p - (SMA20 - 2σ)) / 4σ, 0.5 if σ = 0
==  ===============  =====================================================

Evaluation (``evaluate_market``) is on held-out seeded series against two
naive baselines: "the next move repeats the last one" and "always the
training majority".  The synthetic series have mild momentum and mean
reversion, so a good model should beat both by a few points, no more.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from node.risk.errors import RiskModelError
from node.risk.nn import MLP

INDICATORS: tuple[str, ...] = (
    "ret_1", "ret_3", "ret_5", "ret_10", "ret_20", "sma_cross", "price_vs_sma10", "ema_cross", "rsi_14",
    "vol_10", "vol_20", "volume_5", "volume_ratio", "twap_dev", "bollinger_b",
)
MARKET_SIZES = (15, 32, 16, 8, 1)
MIN_OBSERVATIONS = 21
FORMAT = "qenex-market-model/1"


def _ema(p: np.ndarray, span: int) -> float:
    alpha = 2.0 / (span + 1)
    e = float(p[0])
    for v in p[1:]:
        e = alpha * float(v) + (1 - alpha) * e
    return e


def indicators(prices: np.ndarray, volumes: np.ndarray) -> np.ndarray:
    """The 15 indicators at the last point of ``prices`` (≥ 21 points; ``volumes`` aligned)."""
    p = np.asarray(prices, dtype=np.float64)[-60:]
    v = np.asarray(volumes, dtype=np.float64)[-60:]
    if len(p) < MIN_OBSERVATIONS:
        raise ValueError(f"need {MIN_OBSERVATIONS} observations, got {len(p)}")
    lp = np.log(p)
    r = np.diff(lp)
    last = p[-1]
    sma5, sma10, sma20 = p[-5:].mean(), p[-10:].mean(), p[-20:].mean()
    sigma20 = p[-20:].std()
    gains, losses = np.clip(r[-14:], 0, None).sum(), -np.clip(r[-14:], None, 0).sum()
    rsi = 0.5 if gains + losses == 0 else gains / (gains + losses)
    vol5, vol20 = v[-5:].mean(), v[-20:].mean()
    moves = r[r != 0]
    out = np.array([
        moves[-1] if len(moves) else 0.0, lp[-1] - lp[-4], lp[-1] - lp[-6], lp[-1] - lp[-11], lp[-1] - lp[-21],
        sma5 / sma20 - 1, last / sma10 - 1, _ema(p[-40:], 5) / _ema(p[-40:], 20) - 1, rsi,
        r[-10:].std(), r[-20:].std(), vol5, vol5 / vol20 if vol20 > 0 else 1.0,
        last / sma20 - 1, 0.5 if sigma20 == 0 else (last - (sma20 - 2 * sigma20)) / (4 * sigma20),
    ])
    return out.astype(np.float32)


# -- synthetic series -----------------------------------------------------------------


def synthetic_series(seed: int, length: int = 3000) -> tuple[np.ndarray, np.ndarray]:
    """A price path with regime-switching drift, mild momentum, mean reversion and volume bursts."""
    rng = np.random.default_rng(seed)
    price = np.empty(length)
    volume = np.empty(length)
    p, r_prev, fair, drift = 100.0, 0.0, 100.0, 0.0
    for t in range(length):
        if rng.random() < 0.01:
            drift = float(rng.normal(0, 0.002))
        vol = float(rng.choice([0.004, 0.01], p=[0.8, 0.2]))
        fair *= float(np.exp(rng.normal(0, 0.002)))
        r = drift + 0.25 * r_prev - 0.03 * np.log(p / fair) + rng.normal(0, vol)
        if rng.random() < 0.15:
            r = 0.0  # a block with no trade
        p *= float(np.exp(r))
        price[t] = p
        volume[t] = abs(r) * (1 + 5 * rng.random())
        r_prev = r if r != 0 else r_prev
    return price, volume


def dataset(prices: np.ndarray, volumes: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(indicators, next-move-up labels, last-move-up) for every point with a later move."""
    rows, ys, last_up = [], [], []
    nxt = np.full(len(prices), -1)
    j = -1
    for t in range(len(prices) - 2, -1, -1):  # index of the next change after t
        if prices[t + 1] != prices[t]:
            j = t + 1
        nxt[t] = j
    for t in range(MIN_OBSERVATIONS + 40, len(prices) - 1):
        if nxt[t] < 0:
            continue
        rows.append(indicators(prices[: t + 1], volumes[: t + 1]))
        ys.append(1 if prices[nxt[t]] > prices[t] else 0)
        moves = np.flatnonzero(np.diff(prices[: t + 1]))
        last_up.append(1 if len(moves) and prices[moves[-1] + 1] > prices[moves[-1]] else 0)
    return np.array(rows, dtype=np.float32), np.array(ys, dtype=np.float32), np.array(last_up)


# -- model ----------------------------------------------------------------------------


@dataclass
class MarketModel:
    mean: np.ndarray
    std: np.ndarray
    mlp: MLP
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def version(self) -> int:
        return int(self.meta.get("version", 1))

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.mlp.predict(((np.atleast_2d(x) - self.mean) / self.std).astype(np.float32))

    def save(self, path: Path) -> None:
        meta = dict(self.meta, format=FORMAT, indicators=list(INDICATORS))
        arrays = {"mean": self.mean, "std": self.std, **self.mlp.to_arrays("mlp_"),
                  "meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)}
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            np.savez(fh, **arrays)
        path.with_suffix(".json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")

    @classmethod
    def load(cls, path: Path) -> "MarketModel":
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
            meta = json.loads(arrays.pop("meta").tobytes().decode())
            if meta.get("format") != FORMAT or meta.get("indicators") != list(INDICATORS):
                raise ValueError(f"format {meta.get('format')!r} with another indicator schema")
            mlp = MLP.from_arrays(arrays, "mlp_", len(MARKET_SIZES) - 1)
            if mlp.sizes != MARKET_SIZES:
                raise ValueError(f"network shape {mlp.sizes}, expected {MARKET_SIZES}")
            return cls(arrays["mean"], arrays["std"], mlp, meta)
        except FileNotFoundError:
            raise RiskModelError(f"market model {path} does not exist") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError, UnicodeDecodeError) as exc:
            raise RiskModelError(f"market model {path} is corrupt or does not match: {exc}") from None


def load_market_model(setting: str, base: Path) -> "MarketModel | None":
    """The model ``[risk] market_model`` names (relative to ``base`` unless absolute), or None."""
    if not setting:
        return None
    path = Path(setting)
    return MarketModel.load(path if path.is_absolute() else base / path)


def _series(seeds: range, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = [dataset(*synthetic_series(s, length)) for s in seeds]
    return tuple(np.concatenate([p[i] for p in parts]) for i in range(3))  # type: ignore[return-value]


def train_market(path: Path, *, seed: int = 0, series: int = 6, length: int = 1500, epochs: int = 15) -> dict[str, Any]:
    x, y, _ = _series(range(seed, seed + series), length)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    mlp = MLP.init(MARKET_SIZES, seed)
    mlp.fit(((x - mean) / std).astype(np.float32), y, epochs=epochs, seed=seed, lr=1e-3, l2=1e-4)
    model = MarketModel(mean.astype(np.float32), std.astype(np.float32), mlp,
                        {"version": 1, "training": {"seed": seed, "series": series, "length": length,
                                                    "samples": int(len(y)), "epochs": epochs}})
    report = evaluate_market(model, seed=seed, series=series, length=length)
    model.meta["metrics"] = report
    model.save(path)
    return report


def evaluate_market(model: MarketModel, *, seed: int, series: int = 6, length: int = 1500) -> dict[str, Any]:
    """Accuracy and log loss on held-out series (seeds seed+1000...) for the model and two naive baselines."""
    from node.risk.evaluate import roc_auc_score

    _, y_train, _ = _series(range(seed, seed + series), length)
    x, y, last_up = _series(range(seed + 1000, seed + 1000 + series), length)
    p = model.predict(x)
    majority = float(y_train.mean() >= 0.5)
    pc = np.clip(p, 1e-6, 1 - 1e-6)
    base_rate = float(np.clip(y_train.mean(), 1e-6, 1 - 1e-6))
    return {
        "held_out_samples": int(len(y)),
        "up_share": round(float(y.mean()), 4),
        "model": {"accuracy": round(float(((p > 0.5) == y).mean()), 4),
                  "roc_auc": round(roc_auc_score(y, p), 4),
                  "log_loss": round(float(-(y * np.log(pc) + (1 - y) * np.log(1 - pc)).mean()), 4)},
        "baseline_repeat_last_move": {"accuracy": round(float((last_up == y).mean()), 4)},
        "baseline_majority": {"accuracy": round(float(((majority > 0.5) == y).mean()), 4),
                              "log_loss": round(float(-(y * np.log(base_rate) + (1 - y) * np.log(1 - base_rate)).mean()), 4)},
    }


def render_market(report: dict[str, Any]) -> str:
    m, rep, maj = report["model"], report["baseline_repeat_last_move"], report["baseline_majority"]
    return "\n".join([
        f"held-out samples: {report['held_out_samples']} (next move up: {report['up_share']:.3f})",
        f"{'':30}{'accuracy':>10}{'log loss':>10}{'ROC-AUC':>9}",
        f"{'model (15→32→16→8→1)':30}{m['accuracy']:>10.4f}{m['log_loss']:>10.4f}{m['roc_auc']:>9.4f}",
        f"{'baseline: repeat last move':30}{rep['accuracy']:>10.4f}{'-':>10}{'-':>9}",
        f"{'baseline: training majority':30}{maj['accuracy']:>10.4f}{maj['log_loss']:>10.4f}{'0.5':>9}",
    ])


# -- the model's input from the chain (its RPC is node.rpc_risk) -----------------------


def pool_series(app: Any, pool_id: str, last: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Prices (reserve1/reserve0) and volume proxies of the last ``last`` observations of a pool."""
    observations = app.pool_history(pool_id, max(0, app.height - last + 1), app.height)
    obs = [o for o in observations if o.reserve0 > 0 and o.reserve1 > 0]
    prices = np.array([o.reserve1 / o.reserve0 for o in obs], dtype=np.float64)
    r0 = np.array([o.reserve0 for o in obs], dtype=np.float64)
    volumes = np.concatenate([[0.0], np.abs(np.diff(r0)) / r0[1:]]) if len(r0) else np.zeros(0)
    return prices, volumes
