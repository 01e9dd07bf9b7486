"""Errors of the risk hook."""

from __future__ import annotations

from node.errors import ConfigError, MempoolError


class RiskModelError(ConfigError):
    """A model file is missing, corrupt, or built for another feature schema."""


class RiskRejected(MempoolError):
    """The risk hook scored the transaction above the reject threshold.

    ``data`` carries ``score``, ``threshold``, ``model_version`` and
    ``top_features`` (the features that pushed the score up most).
    """

    code = -32020
