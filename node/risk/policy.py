"""Rules on top of the model: a drain is flagged for review, a drain with a second takeover signal is refused.

The model's calibrated score says how often transactions like this one were
fraud in training.  For a lone account drain that is close to a coin toss by
design (an owner moving everything to a new wallet of their own looks the
same); with a second takeover signal it usually scores above the reject
threshold, but "usually" moved with one block of the sender's age and with
each retraining (issue 14: refused 0.19 to 0.95 of the time depending on
the signal).  A fraud team does not leave its hardest
refusals to a score that moves: it writes them down as rules, each one a
named condition on named values it can audit, test and explain to the
customer, and lets the model catch what no rule names.  So the hook's
decision is the stricter of the model's and these rules', never lower than
the model's:

* **drain** → at least review: this transaction and the sender's pending
  ones move at least ``DRAIN_SHARE`` (90 %) of its committed balance of the
  token (feature ``drained_share``), and this one pays a new receiver: one
  the sender never paid (``new_counterparty``), or one first seen in the
  last ``WINDOW`` (100) blocks (``receiver_age_log``: the second half of a
  drain split over blocks pays the address the first half made).  The
  model may still refuse a lone drain (an operator's reject threshold is
  the operator's); how often it does moves with the training seed (seeds
  0, 1 and 2: 5 %, 53 % and 17 % of the plain drains in the held-out
  populations, and 16 %, 30 % and 17 % of the owners moving everything),
  which is why the refusals this policy promises do not depend on it.
* **drain and a second takeover signal** → reject.  The signals, each on
  features of the row (so the held-out evaluation measures exactly what the
  node decides):

  ``probe``      the sender paid, in the last 10 blocks or in pending
                 transactions, at least one fresh address other than this
                 receiver (``fresh_others_10`` > 0): quick test sends from a
                 stolen key, or the other legs of a fan-out.  An owner's test
                 payment to the wallet it then fills is not one.
  ``split``      before this transaction, at least ``SPLIT_SHARE`` (30 %) of
                 what the sender held ``WINDOW`` blocks ago already went to
                 receivers it had never paid, in the window or pending
                 (``prior_new_outflow_share``): the drain is the last part of
                 a split or a fan-out.
  ``burst``      at least ``BURST_PENDING`` (2) transactions pending and at
                 least twice as many as its busiest committed block ever held
                 (``pending_log``, ``pending_vs_peak``), or at least
                 ``BURST_SENDS`` (3) sends in the last 10 blocks and pending
                 (``velocity_10``), at least twice what its lifetime rate
                 predicts (``velocity_vs_baseline``: (1 + sends) over (1 +
                 expected)): a spree, in flight or just committed.
  ``collector``  the receiver, which the sender never paid, has been paid by
                 other accounts and has never sent anything
                 (``receiver_senders_log`` > 0, ``receiver_sent_log`` = 0): a
                 thief's address collecting several victims.
  ``dormant``    the sender was quiet for at least ``DORMANT_TIMES`` (5) times
                 its habitual gap between sends (``idle_vs_habit``).

What the rules cost is measured, not assumed: ``qenexd risk eval`` reports
how often each one fires on normal traffic (and on the owners who move
everything to a wallet of their own) beside the drains it refuses.  Known
price: an owner who moves everything to a new wallet in two large steps
within ``WINDOW`` blocks (``split``), right after paying some other new
address (``probe``), or right after a long quiet spell (``dormant``), is
refused; it can retry after the window (or after one more ordinary
payment, for ``dormant``), when the same transfer is flagged instead.
What they do not see: a thief who waits more than ``WINDOW`` blocks
between the parts of a split or more than 10 after the probes, and the
first victim of a collector (nothing has been paid to it yet); those
drains are flagged, and refused only if the model scores them so.  The
windows are in blocks, as every feature is: on the synthetic chains a
household pays every 20 to 200 blocks, but a testnet makes an empty block
every 100 ms, where 10 blocks are about a second.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from node.risk.features import FEATURE_NAMES, WINDOW

DRAIN_SHARE = 0.9
SPLIT_SHARE = 0.3
BURST_PENDING = 2
BURST_SENDS = 3
BURST_VELOCITY = math.log10(2)  # twice the sender's own rate
DORMANT_TIMES = 5.0
SIGNALS = ("probe", "split", "burst", "collector", "dormant")

_I = {name: i for i, name in enumerate(FEATURE_NAMES)}
DRAINED = _I["drained_share"]
NEW_COUNTERPARTY = _I["new_counterparty"]
RECEIVER_AGE = _I["receiver_age_log"]
RECEIVER_IS_NEW = _I["receiver_is_new"]
FRESH_OTHERS = _I["fresh_others_10"]
PRIOR_NEW = _I["prior_new_outflow_share"]
PENDING_LOG = _I["pending_log"]
PENDING_VS_PEAK = _I["pending_vs_peak"]
VELOCITY = _I["velocity_vs_baseline"]
VELOCITY_10 = _I["velocity_10"]
RECEIVER_SENDERS = _I["receiver_senders_log"]
RECEIVER_SENT = _I["receiver_sent_log"]
IDLE_VS_HABIT = _I["idle_vs_habit"]

# Thresholds on the log-scaled features, a hair below the exact value so
# float32 rounding of the row cannot move a boundary case.
_EPS = 1e-4
_YOUNG = math.log10(1 + WINDOW)  # receiver_age_log below this: first seen in the window
_BURST_PENDING_LOG = math.log10(1 + BURST_PENDING) - _EPS
_BURST_PEAK = math.log10(2) - _EPS
_BURST_SENDS_LOG = math.log10(1 + BURST_SENDS) - _EPS
_DORMANT = math.log10(DORMANT_TIMES) - _EPS

# The feature each rule names as its evidence (the value a reviewer checks).
EVIDENCE = {"drain": "drained_share", "probe": "fresh_others_10", "split": "prior_new_outflow_share",
            "burst": "pending_vs_peak", "collector": "receiver_senders_log", "dormant": "idle_vs_habit"}


def drain_mask(x: np.ndarray) -> np.ndarray:
    """The drain rule over rows of raw features."""
    x = np.atleast_2d(np.asarray(x, np.float64))  # compared as check() compares: in float64
    return (x[:, DRAINED] >= DRAIN_SHARE - _EPS) & ((x[:, NEW_COUNTERPARTY] == 1.0) | (x[:, RECEIVER_AGE] < _YOUNG))


def signal_masks(x: np.ndarray) -> dict[str, np.ndarray]:
    """Each second takeover signal over rows of raw features (whether or not the row is a drain)."""
    x = np.atleast_2d(np.asarray(x, np.float64))
    burst_pending = (x[:, PENDING_LOG] >= _BURST_PENDING_LOG) & (x[:, PENDING_VS_PEAK] >= _BURST_PEAK)
    return {
        "probe": x[:, FRESH_OTHERS] > 0,
        "split": x[:, PRIOR_NEW] >= SPLIT_SHARE - _EPS,
        "burst": burst_pending | ((x[:, VELOCITY_10] >= _BURST_SENDS_LOG) & (x[:, VELOCITY] >= BURST_VELOCITY - _EPS)),
        "collector": ((x[:, NEW_COUNTERPARTY] == 1.0) & (x[:, RECEIVER_IS_NEW] == 0.0)
                      & (x[:, RECEIVER_SENDERS] > 0) & (x[:, RECEIVER_SENT] == 0.0)),
        "dormant": x[:, IDLE_VS_HABIT] >= _DORMANT,
    }


def rule_decisions(x: np.ndarray) -> np.ndarray:
    """0 (no rule), 1 (drain: review) or 2 (drain and a second signal: reject) per row."""
    drain = drain_mask(x)
    second = np.zeros(len(drain), bool)
    for mask in signal_masks(x).values():
        second |= mask
    return np.where(drain & second, 2, np.where(drain, 1, 0)).astype(np.int8)


def decisions(scores: np.ndarray, x: np.ndarray, review: float, reject: float) -> np.ndarray:
    """The hook's decisions (0 admit, 1 review, 2 reject): the stricter of the model's and the rules'."""
    model = np.where(scores > reject, 2, np.where(scores > review, 1, 0)).astype(np.int8)
    return np.maximum(model, rule_decisions(x))


@dataclass(frozen=True, slots=True)
class RuleHit:
    """A rule that matched one row: its decision, its name ("drain", "drain+probe+split"), the signals."""

    decision: str  # "review" | "reject"
    name: str
    signals: tuple[str, ...]
    evidence: tuple[dict[str, Any], ...]


def _signals_of(v: list[float]) -> tuple[str, ...]:
    """signal_masks for one row as a list of floats (admission's path: no arrays)."""
    fired = []
    if v[FRESH_OTHERS] > 0:
        fired.append("probe")
    if v[PRIOR_NEW] >= SPLIT_SHARE - _EPS:
        fired.append("split")
    if ((v[PENDING_LOG] >= _BURST_PENDING_LOG and v[PENDING_VS_PEAK] >= _BURST_PEAK)
            or (v[VELOCITY_10] >= _BURST_SENDS_LOG and v[VELOCITY] >= BURST_VELOCITY - _EPS)):
        fired.append("burst")
    if v[NEW_COUNTERPARTY] == 1.0 and v[RECEIVER_IS_NEW] == 0.0 and v[RECEIVER_SENDERS] > 0 and v[RECEIVER_SENT] == 0.0:
        fired.append("collector")
    if v[IDLE_VS_HABIT] >= _DORMANT:
        fired.append("dormant")
    return tuple(fired)


def check(row: np.ndarray) -> RuleHit | None:
    """The rules on one row of raw features: None when it is not a drain (the same as rule_decisions)."""
    row = np.asarray(row, dtype=np.float32).ravel()
    if not float(row[DRAINED]) >= DRAIN_SHARE - _EPS:
        return None  # most rows: one comparison
    v = row.tolist()
    if not (v[NEW_COUNTERPARTY] == 1.0 or v[RECEIVER_AGE] < _YOUNG):
        return None
    fired = _signals_of(v)
    evidence = tuple({"feature": EVIDENCE[rule], "value": round(v[_I[EVIDENCE[rule]]], 4),
                      "contribution": None, "rule": rule} for rule in ("drain",) + fired)
    return RuleHit("reject" if fired else "review", "+".join(("drain",) + fired), fired, evidence)


_RANK = {"admit": 0, "review": 1, "reject": 2}


def stricter(model_decision: str, hit: RuleHit | None) -> str:
    """The hook's decision: the model's, raised to the rule's when a rule matched and is stricter."""
    if hit is None or _RANK[hit.decision] <= _RANK[model_decision]:
        return model_decision
    return hit.decision


__all__ = ["DRAIN_SHARE", "SPLIT_SHARE", "BURST_PENDING", "BURST_SENDS", "BURST_VELOCITY", "DORMANT_TIMES", "SIGNALS",
           "EVIDENCE",
           "RuleHit", "check", "decisions", "drain_mask", "rule_decisions", "signal_masks", "stricter"]
