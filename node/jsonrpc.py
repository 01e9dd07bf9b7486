"""JSON-RPC 2.0 over HTTP POST: framing, batches, errors; no chain knowledge.

Methods are plain callables registered by name; their parameters are bound
from a positional array or a named object, and a mismatch is -32602.  A
method raises ``RPCError`` (code, message, data) for an expected failure;
anything else is logged and answered with -32603, and the server keeps
serving.
"""

from __future__ import annotations

import inspect
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from aiohttp import web

log = logging.getLogger("qenex.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603


class RPCError(Exception):
    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


def invalid_params(message: str) -> RPCError:
    return RPCError(INVALID_PARAMS, message)


Method = Callable[..., Any]


@dataclass
class Dispatcher:
    methods: dict[str, Method]
    max_batch: int = 100

    async def call(self, name: str, params: Any) -> Any:
        method = self.methods.get(name)
        if method is None:
            raise RPCError(METHOD_NOT_FOUND, f"method {name!r} not found")
        signature = inspect.signature(method)
        try:
            if params is None:
                bound = signature.bind()
            elif isinstance(params, list):
                bound = signature.bind(*params)
            elif isinstance(params, dict):
                bound = signature.bind(**params)
            else:
                raise RPCError(INVALID_REQUEST, "params must be an array or an object")
        except TypeError as exc:
            raise invalid_params(f"invalid params for {name}: {exc}") from exc
        result = method(*bound.args, **bound.kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def handle_one(self, request: Any) -> dict[str, Any] | None:
        if not isinstance(request, dict):
            return _error(None, RPCError(INVALID_REQUEST, "a request must be a JSON object"))
        request_id = request.get("id")
        is_notification = "id" not in request
        if request.get("jsonrpc") != "2.0":
            return _error(request_id, RPCError(INVALID_REQUEST, 'jsonrpc must be exactly "2.0"'))
        if not isinstance(request_id, (str, int, type(None))) or isinstance(request_id, bool):
            return _error(None, RPCError(INVALID_REQUEST, "id must be a string, a number or null"))
        method = request.get("method")
        if not isinstance(method, str):
            return _error(request_id, RPCError(INVALID_REQUEST, "method must be a string"))
        try:
            result = await self.call(method, request.get("params"))
        except RPCError as exc:
            return None if is_notification else _error(request_id, exc)
        except Exception:  # a bug in a method must not take the server down
            log.exception("rpc method %s failed", method)
            return None if is_notification else _error(request_id, RPCError(INTERNAL_ERROR, "internal error"))
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def handle_payload(self, body: bytes) -> Any:
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(None, RPCError(PARSE_ERROR, f"parse error: {exc}"))
        if isinstance(payload, list):
            if not payload:
                return _error(None, RPCError(INVALID_REQUEST, "empty batch"))
            if len(payload) > self.max_batch:
                return _error(None, RPCError(INVALID_REQUEST, f"batch of {len(payload)} exceeds {self.max_batch}"))
            responses = [r for r in [await self.handle_one(item) for item in payload] if r is not None]
            return responses or None
        return await self.handle_one(payload)


def _error(request_id: Any, exc: RPCError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": exc.to_json()}


def make_app(dispatcher: Dispatcher, *, max_request_bytes: int) -> web.Application:
    async def handle(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_request_bytes:
            return web.json_response(
                _error(None, RPCError(INVALID_REQUEST, f"request body over {max_request_bytes} bytes")), status=413
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return web.json_response(
                _error(None, RPCError(INVALID_REQUEST, f"request body over {max_request_bytes} bytes")), status=413
            )
        response = await dispatcher.handle_payload(body)
        if response is None:
            return web.Response(status=204)
        return web.json_response(response)

    async def health(_: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=max_request_bytes)
    app.router.add_post("/", handle)
    app.router.add_get("/health", health)
    return app


AsyncMethod = Callable[..., Awaitable[Any]]
