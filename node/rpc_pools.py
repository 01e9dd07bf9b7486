"""JSON-RPC methods of the liquidity pools (issue #3): none are built yet."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from node.runtime import Node


def pool_methods(node: "Node") -> dict[str, Callable[..., Any]]:
    return {}
