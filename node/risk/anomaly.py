"""An isolation forest in numpy, stored as plain arrays (no pickle).

Each tree is a complete binary tree of fixed depth ``D``: node ``k`` has
children ``2k+1`` and ``2k+2``; internal nodes hold (feature, threshold);
a branch that stopped early (one sample left) routes everything left with
threshold +inf, and its leftmost leaf at depth D holds the path length
``depth + c(size)``.  Scoring is D vectorised steps over all trees and
rows at once on one flat numbering of the nodes (``_flatten``), so a single
row costs about 5·D small numpy calls.
"""

from __future__ import annotations

import numpy as np

EULER = 0.5772156649


def c_factor(n: np.ndarray | float) -> np.ndarray:
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + EULER) - 2.0 * (n[big] - 1.0) / n[big]
    out[n == 2] = 1.0
    return out


class IsolationForest:
    def __init__(self, feature: np.ndarray, threshold: np.ndarray, leaf_value: np.ndarray, sample_size: int) -> None:
        self.feature = feature.astype(np.int32)  # (trees, internal nodes)
        self.threshold = threshold.astype(np.float32)
        self.leaf_value = leaf_value.astype(np.float32)  # (trees, leaves)
        self.sample_size = int(sample_size)
        self.depth = int(np.log2(self.leaf_value.shape[1]))
        self._flatten()

    def _flatten(self) -> None:
        """One flat numbering of every tree's nodes, so scoring walks all trees with a few ``take`` calls.

        Internal node k of tree t is ``t*I + k``; its leaf j is ``T*I + t*L + j``
        (T trees, I internal nodes, L leaves each).  ``_child[g]`` is g's left
        child; the right one is the next number.  Trees stored here are
        never changed afterwards.
        """
        trees, n_internal = self.feature.shape
        n_leaves = self.leaf_value.shape[1]
        tree = np.arange(trees)[:, None]
        left = 2 * np.arange(n_internal)[None, :] + 1
        leaf = trees * n_internal + tree * n_leaves + left - n_internal
        child = np.where(left < n_internal, tree * n_internal + left, leaf)
        self._child = child.ravel().astype(np.intp)
        self._feat = self.feature.ravel().astype(np.intp)
        self._thr = self.threshold.ravel()
        self._real = np.isfinite(self._thr).astype(np.float64)  # 0 for the +inf padding splits
        self._value = np.concatenate([np.zeros(trees * n_internal, np.float64), self.leaf_value.ravel()])
        self._roots = (np.arange(trees) * n_internal).astype(np.intp)
        self._c = float(c_factor(np.array([self.sample_size]))[0])

    @classmethod
    def fit(cls, x: np.ndarray, *, trees: int = 100, sample_size: int = 256, seed: int = 0) -> "IsolationForest":
        rng = np.random.default_rng(seed)
        sample_size = min(sample_size, len(x))
        depth = int(np.ceil(np.log2(max(sample_size, 2))))
        n_internal = 2**depth - 1
        feat = np.zeros((trees, n_internal), dtype=np.int32)
        thr = np.full((trees, n_internal), np.inf, dtype=np.float32)
        leaf = np.zeros((trees, 2**depth), dtype=np.float32)
        for t in range(trees):
            sample = x[rng.choice(len(x), sample_size, replace=False)]
            stack = [(0, 0, sample)]
            while stack:
                node, d, rows = stack.pop()
                if d == depth or len(rows) <= 1:
                    # leftmost leaf under this node at depth D
                    leaf_index = node
                    for _ in range(depth - d):
                        leaf_index = 2 * leaf_index + 1
                    leaf[t, leaf_index - n_internal] = d + float(c_factor(np.array([len(rows)]))[0])
                    if d < depth:
                        cls._route_left(feat[t], thr[t], node, depth - d)
                    continue
                lo, hi = rows.min(axis=0), rows.max(axis=0)
                spread = np.flatnonzero(hi > lo)
                if len(spread) == 0:
                    leaf_index = node
                    for _ in range(depth - d):
                        leaf_index = 2 * leaf_index + 1
                    leaf[t, leaf_index - n_internal] = d + float(c_factor(np.array([len(rows)]))[0])
                    cls._route_left(feat[t], thr[t], node, depth - d)
                    continue
                f = int(rng.choice(spread))
                split = float(rng.uniform(lo[f], hi[f]))
                feat[t, node] = f
                thr[t, node] = split
                mask = rows[:, f] < split
                stack.append((2 * node + 1, d + 1, rows[mask]))
                stack.append((2 * node + 2, d + 1, rows[~mask]))
        return cls(feat, thr, leaf, sample_size)

    @staticmethod
    def _route_left(feat: np.ndarray, thr: np.ndarray, node: int, levels: int) -> None:
        for _ in range(levels):
            feat[node] = 0
            thr[node] = np.inf
            node = 2 * node + 1

    def path_lengths(self, x: np.ndarray) -> np.ndarray:
        """Mean path length over the trees for each row of ``x``: D steps over all trees and rows at once."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        n, width = x.shape
        flat = x.ravel()
        g = np.repeat(self._roots[:, None], n, axis=1)  # (trees, rows)
        offsets = (np.arange(n) * width).astype(np.intp)[None, :]
        for _ in range(self.depth):
            g = self._child.take(g) + (flat.take(offsets + self._feat.take(g)) >= self._thr.take(g))
        return self._value.take(g).sum(axis=0) / len(self._roots)

    def path_length_one(self, row: np.ndarray) -> float:
        """path_lengths of one row (float32, 1-D): the admission hot path, a handful of small ``take`` calls."""
        g = self._roots
        child, feat, thr = self._child, self._feat, self._thr
        for _ in range(self.depth):
            g = child.take(g) + (row.take(feat.take(g)) >= thr.take(g))
        return float(self._value.take(g).sum()) / len(g)

    def score_one(self, row: np.ndarray) -> float:
        return 2.0 ** (-self.path_length_one(row) / self._c)

    def feature_shares(self, x: np.ndarray) -> np.ndarray:
        """Per row, each feature's share (summing to 1) of the splits on its paths, weighted 1/(depth+1).

        A feature that splits a row off near the root shortens its path most,
        so it is what made the row anomalous; padding splits (threshold +inf)
        are not counted.
        """
        trees = self.feature.shape[0]
        n_features = x.shape[1]
        out = np.zeros((len(x), n_features), dtype=np.float64)
        node = np.zeros((trees, len(x)), dtype=np.int64)
        tree_ix = np.arange(trees)[:, None]
        row_ix = np.broadcast_to(np.arange(len(x))[None, :], node.shape)
        for d in range(self.depth):
            f = self.feature[tree_ix, node]
            t = self.threshold[tree_ix, node]
            real = np.isfinite(t)
            np.add.at(out, (row_ix[real], f[real]), 1.0 / (d + 1))
            go_right = x[row_ix, f] >= t
            node = 2 * node + 1 + go_right
        total = out.sum(axis=1, keepdims=True)
        return out / np.where(total > 0, total, 1.0)

    def feature_shares_one(self, row: np.ndarray) -> np.ndarray:
        """feature_shares of one row (float32, 1-D) on the flat numbering: admission's flagged path."""
        g = self._roots
        child, feat, thr, real = self._child, self._feat, self._thr, self._real
        feats, weights = [], []
        for d in range(self.depth):
            f = feat.take(g)
            feats.append(f)
            weights.append(real.take(g) * (1.0 / (d + 1)))  # padding splits weigh 0
            g = child.take(g) + (row.take(f) >= thr.take(g))
        out = np.bincount(np.concatenate(feats), weights=np.concatenate(weights), minlength=len(row))
        total = out.sum()
        return out / total if total > 0 else out

    def score(self, x: np.ndarray) -> np.ndarray:
        """Anomaly score in (0, 1]: 2^(-E[h] / c(n)); above ~0.6 is unusual."""
        return np.power(2.0, -self.path_lengths(x) / self._c)

    def to_arrays(self) -> dict[str, np.ndarray]:
        return {
            "if_feature": self.feature,
            "if_threshold": self.threshold,
            "if_leaf": self.leaf_value,
            "if_sample_size": np.array([self.sample_size], dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, a: dict[str, np.ndarray]) -> "IsolationForest":
        return cls(a["if_feature"], a["if_threshold"], a["if_leaf"], int(a["if_sample_size"][0]))
