"""A small dense network in numpy: ReLU hidden layers, one sigmoid output.

Used by the risk model (35→64→32→16→1) and the market predictor
(15→32→16→8→1).  Training is mini-batch Adam on binary cross-entropy;
``sgd_step`` is the online update used by admin feedback.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -40, 40)))


class MLP:
    def __init__(self, weights: list[np.ndarray], biases: list[np.ndarray]) -> None:
        self.weights = [np.asarray(w, dtype=np.float32) for w in weights]
        self.biases = [np.asarray(b, dtype=np.float32) for b in biases]

    @classmethod
    def init(cls, sizes: tuple[int, ...], seed: int) -> "MLP":
        rng = np.random.default_rng(seed)
        ws = [rng.normal(0, np.sqrt(2.0 / a), (a, b)).astype(np.float32) for a, b in zip(sizes, sizes[1:])]
        bs = [np.zeros(b, dtype=np.float32) for b in sizes[1:]]
        return cls(ws, bs)

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.weights[0].shape[0],) + tuple(w.shape[1] for w in self.weights)

    def _forward(self, x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        acts = [x]
        a = x
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            a = np.maximum(a @ w + b, 0.0)
            acts.append(a)
        z = a @ self.weights[-1] + self.biases[-1]
        return acts, _sigmoid(z[:, 0])

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities for the rows of ``x`` (already standardised)."""
        a = x
        for w, b in zip(self.weights[:-1], self.biases[:-1]):
            a = np.maximum(a @ w + b, 0.0)
        return _sigmoid((a @ self.weights[-1] + self.biases[-1])[:, 0])

    def gradients(self, x: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None):
        acts, p = self._forward(x)
        n = len(x)
        delta = (p - y)[:, None] / n
        if sample_weight is not None:
            delta = delta * sample_weight[:, None]
        gw: list[np.ndarray] = [None] * len(self.weights)  # type: ignore[list-item]
        gb: list[np.ndarray] = [None] * len(self.weights)  # type: ignore[list-item]
        for i in range(len(self.weights) - 1, -1, -1):
            gw[i] = acts[i].T @ delta
            gb[i] = delta.sum(axis=0)
            if i:
                delta = (delta @ self.weights[i].T) * (acts[i] > 0)
        return gw, gb, p

    def logit_gradient(self, x: np.ndarray) -> np.ndarray:
        """d logit / d input for each row (top-feature attributions; finite where the sigmoid saturates)."""
        acts, _ = self._forward(x)
        delta = np.ones((len(x), 1), dtype=np.float32)
        for i in range(len(self.weights) - 1, -1, -1):
            delta = delta @ self.weights[i].T
            if i:
                delta = delta * (acts[i] > 0)
        return delta

    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        *,
        epochs: int = 30,
        batch: int = 128,
        lr: float = 2e-3,
        seed: int = 0,
        pos_weight: float = 1.0,
        l2: float = 1e-5,
    ) -> list[float]:
        rng = np.random.default_rng(seed)
        x = x.astype(np.float32)
        y = y.astype(np.float32)
        params = self.weights + self.biases
        m = [np.zeros_like(p) for p in params]
        v = [np.zeros_like(p) for p in params]
        t = 0
        losses = []
        b1, b2, eps = 0.9, 0.999, 1e-8
        for _ in range(epochs):
            order = rng.permutation(len(x))
            total = 0.0
            for start in range(0, len(x), batch):
                idx = order[start : start + batch]
                xb, yb = x[idx], y[idx]
                sw = np.where(yb > 0.5, pos_weight, 1.0).astype(np.float32)
                gw, gb, p = self.gradients(xb, yb, sw)
                grads = [g + l2 * w for g, w in zip(gw, self.weights)] + gb
                t += 1
                for j, (param, g) in enumerate(zip(params, grads)):
                    m[j] = b1 * m[j] + (1 - b1) * g
                    v[j] = b2 * v[j] + (1 - b2) * g * g
                    mh = m[j] / (1 - b1**t)
                    vh = v[j] / (1 - b2**t)
                    param -= (lr * mh / (np.sqrt(vh) + eps)).astype(np.float32)
                pc = np.clip(p, 1e-7, 1 - 1e-7)
                total += float(-(yb * np.log(pc) + (1 - yb) * np.log(1 - pc)).sum())
            losses.append(total / len(x))
        return losses

    def sgd_step(self, x: np.ndarray, y: np.ndarray, lr: float) -> None:
        gw, gb, _ = self.gradients(x.astype(np.float32), y.astype(np.float32))
        for w, g in zip(self.weights, gw):
            w -= (lr * g).astype(np.float32)
        for b, g in zip(self.biases, gb):
            b -= (lr * g).astype(np.float32)

    def to_arrays(self, prefix: str) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        for i, (w, b) in enumerate(zip(self.weights, self.biases)):
            out[f"{prefix}w{i}"] = w
            out[f"{prefix}b{i}"] = b
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray], prefix: str, layers: int) -> "MLP":
        return cls([arrays[f"{prefix}w{i}"] for i in range(layers)], [arrays[f"{prefix}b{i}"] for i in range(layers)])
