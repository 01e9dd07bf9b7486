"""Errors of the risk hook."""

from __future__ import annotations

from node.errors import ConfigError, MempoolError


class RiskModelError(ConfigError):
    """A model file is missing, corrupt, or built for another feature schema."""


class RiskRejected(MempoolError):
    """The risk hook refused the transaction: its score is above the reject threshold, or a rule refused it.

    ``data`` carries ``score``, ``threshold``, ``model_version`` and
    ``top_features`` (the features that pushed the score up most).  When a
    node.risk.policy rule refused it (a drain with a second takeover signal;
    its evidence leads ``top_features``, entries with a ``rule`` key),
    ``data`` also carries ``rule`` (say ``"drain+probe"``) and the message
    names the rule, not a score above the threshold (node.admission).
    """

    code = -32020
