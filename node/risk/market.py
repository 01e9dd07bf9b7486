"""Market predictor (placeholder until built)."""

from __future__ import annotations

from typing import Any, Callable


def rpc_methods(node: Any) -> dict[str, Callable[..., Any]]:
    return {}
