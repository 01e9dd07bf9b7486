"""A small blocking JSON-RPC 2.0 client for the CLI, tests and benchmarks."""

from __future__ import annotations

import http.client
import itertools
import json
import time
import urllib.error
import urllib.request
from typing import Any

from node.errors import NodeError


class RPCClientError(NodeError):
    """The node answered with a JSON-RPC error (``code``, ``data`` kept)."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.data = data


class RPCUnavailable(NodeError):
    """The node could not be reached."""


class RPCClient:
    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self.timeout = timeout
        self._ids = itertools.count(1)

    def _post(self, payload: Any) -> Any:
        body = json.dumps(payload).encode()
        request = urllib.request.Request(self.url, data=body, headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            if not raw:
                raise RPCUnavailable(f"{self.url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise RPCUnavailable(f"cannot reach node at {self.url}: {reason}") from None
        except http.client.HTTPException as exc:  # a cut or garbled answer (BadStatusLine, IncompleteRead)
            raise RPCUnavailable(f"{self.url} gave no valid HTTP answer: {type(exc).__name__}: {exc}") from None
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise RPCUnavailable(f"{self.url} did not answer JSON") from None

    def call(self, method: str, *params: Any) -> Any:
        response = self._post({"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)})
        if not isinstance(response, dict):
            raise RPCUnavailable(f"{self.url} did not answer {method} with a JSON-RPC object")
        if "error" in response:
            error = response["error"]
            raise RPCClientError(error.get("code", 0), error.get("message", "unknown error"), error.get("data"))
        return response["result"]

    def batch(self, calls: list[tuple[str, list[Any]]]) -> list[Any]:
        """Results (or RPCClientError instances) in call order."""
        payload = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
        responses = self._post(payload)
        if isinstance(responses, dict) and "error" in responses:  # the whole batch was refused (parse, size, ...)
            error = responses["error"]
            raise RPCClientError(error.get("code", 0), error.get("message", "unknown error"), error.get("data"))
        if not isinstance(responses, list):
            raise RPCUnavailable(f"{self.url} answered a batch with {type(responses).__name__}")
        by_id = {r.get("id"): r for r in responses if isinstance(r, dict)}
        out: list[Any] = []
        for i in range(len(calls)):
            r = by_id.get(i)
            if r is None:
                raise RPCUnavailable(f"{self.url} did not answer call {i} of the batch")
            if "error" in r:
                out.append(RPCClientError(r["error"]["code"], r["error"]["message"], r["error"].get("data")))
            else:
                out.append(r["result"])
        return out

    def wait_for_tx(self, tx_hash: str, *, timeout: float = 60.0, poll: float = 0.2) -> dict[str, Any]:
        """Poll until ``tx_hash`` is committed; returns its record."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                record = self.call("qenex_getTransaction", tx_hash)
                if record.get("committed"):
                    return record
            except RPCClientError as exc:
                if exc.code != -32004:
                    raise
            if time.monotonic() > deadline:
                raise NodeError(f"transaction {tx_hash} not finalized within {timeout:.0f} s")
            time.sleep(poll)
