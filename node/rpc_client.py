"""The blocking JSON-RPC client under its first name: ``node.client.Client`` is the client now.

Kept so code written against ``RPCClient`` (``call``, ``batch`` of
``(method, params)`` pairs, ``wait_for_tx``) keeps working; new code imports
``node.client``.
"""

from __future__ import annotations

from node.client import Client as RPCClient
from node.client import RPCClientError, RPCUnavailable

__all__ = ["RPCClient", "RPCClientError", "RPCUnavailable"]
