"""JSON-RPC methods of the risk hook (issue #4): none are built yet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from node.runtime import Node


def risk_methods(node: "Node") -> dict[str, Callable[..., Any]]:
    return {}
