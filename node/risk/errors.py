"""Errors of the risk hook."""

from __future__ import annotations

import re

from node.errors import ConfigError, MempoolError

_SCORE_CLAUSE = re.compile(r"score (\d+(?:\.\d+)?) > (\S+) \(")


class RiskModelError(ConfigError):
    """A model file is missing, corrupt, or built for another feature schema."""


class RiskRejected(MempoolError):
    """The risk hook refused the transaction: its score is above the reject threshold, or a rule refused it.

    ``data`` carries ``score``, ``threshold``, ``model_version`` and
    ``top_features`` (the features that pushed the score up most).  When a
    node.risk.policy rule refused it (a drain with a second takeover signal;
    its evidence leads ``top_features``, entries with a ``rule`` key),
    ``data`` also carries ``rule`` (say ``"drain+probe"``), and a message
    that claims the score crossed the threshold is corrected to name the
    rule instead: the score did not cross it.
    """

    code = -32020

    def __init__(self, message: str, **data: object) -> None:
        features = data.get("top_features")
        entries = features if isinstance(features, list) else []
        rules = [f["rule"] for f in entries if isinstance(f, dict) and f.get("rule")]
        if rules and "rule" not in data:
            data["rule"] = "+".join(rules)
            score, threshold = data.get("score"), data.get("threshold")
            if isinstance(score, (int, float)) and isinstance(threshold, (int, float)) and score <= threshold:
                message = _SCORE_CLAUSE.sub(
                    lambda m: f"rule {data['rule']} (score {m.group(1)} <= {m.group(2)}; ", message, count=1)
        super().__init__(message, **data)
