"""JSON-RPC 2.0 over HTTP POST: framing, batches, errors; no chain knowledge.

Methods are plain callables registered by name; their parameters are bound
from a positional array or a named object, and a mismatch is -32602.  A
method raises ``RPCError`` (code, message, data) for an expected failure;
anything else is logged (one line, a capped traceback at most once per
``TRACEBACK_INTERVAL_S``) and answered with -32603, and the server keeps
serving.

Every input's cost is bounded before it is paid: JSON nested deeper than
``MAX_JSON_DEPTH`` is refused (-32700) by a scan before ``json.loads``
builds anything; a batch may spend at most ``max_batch_cost`` (each method
has a cost, default 1) and yields to the loop between its calls, so a batch
of expensive queries cannot hold the consensus driver off the event loop.
A method whose answer grows with the chain (a full block) ``charge``s the
running batch for its size after the fact, so a batch holds only a few
large answers; at most ``max_in_flight`` payloads are dispatched at once,
whatever the number of connections (aiohttp cancels the handler of a
connection that went away, so hanging up frees its place).
Every HTTP answer, error pages included, is a JSON-RPC body.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import re
import reprlib
import time
import traceback
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable

from aiohttp import web

log = logging.getLogger("qenex.rpc")

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
NOT_FOUND = -32004  # server error: the block, transaction, token or pool asked for does not exist
OVER_BUDGET = -32005  # server error: the batch spent its work budget
HEIGHT_PRUNED = -32006  # server error: the state at that height is older than the node keeps ([state] history_blocks)

MAX_JSON_DEPTH = 32  # a real request nests 4-5 deep (batch, request, params, path)
TRACEBACK_INTERVAL_S = 60.0
MAX_ERROR_LINES_PER_S = 10
MAX_MESSAGE_CHARS = 300


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


_BRIEF = reprlib.Repr()
_BRIEF.maxlevel, _BRIEF.maxstring, _BRIEF.maxother = 2, 60, 60
_BRIEF.maxlist = _BRIEF.maxdict = _BRIEF.maxtuple = 4
_BRIEF.maxlong = 40


def brief(value: Any) -> str:
    """A short repr of a client's value for an error message.

    Bounded in length and depth: ``repr`` of a 900-deep list recurses past the
    interpreter's limit, and a 1 MiB string would be echoed whole.
    """
    try:
        return _BRIEF.repr(value)
    except Exception:  # a pathological value still gets a message
        return f"<{type(value).__name__}>"


# -- nesting depth, scanned before parsing ----------------------------------

_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"')
_TO_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(c for c in range(256) if c not in b"[]{}")
_BRACKET_RUNS = re.compile(rb"\[+|\]+")
_EMPTY_PAIR_PASSES = 8


def json_depth_exceeds(body: bytes, limit: int) -> bool:
    """Whether the JSON text nests arrays/objects deeper than ``limit``.

    C-speed passes only, never a Python loop per byte: strings are cut out,
    every other byte but brackets is deleted, and a few passes drop innermost
    empty pairs (each pass lowers every branch by exactly one level, so an
    input of many shallow pairs collapses before the run count below).
    Exact for valid JSON; for invalid JSON its answer does not matter, as
    ``json.loads`` refuses it anyway.
    """
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    brackets = _JSON_STRING.sub(b"", body).translate(_TO_SQUARE, _NOT_BRACKETS)
    passes = 0
    while passes < _EMPTY_PAIR_PASSES and b"[]" in brackets:
        brackets = brackets.replace(b"[]", b"")
        passes += 1
    if not brackets:
        return passes > limit
    depth = deepest = 0
    for run in _BRACKET_RUNS.findall(brackets):
        if run[0] == 0x5B:  # "["
            depth += len(run)
            deepest = max(deepest, depth)
        else:
            depth -= len(run)
    return deepest + passes > limit


# -- internal-error logging --------------------------------------------------


@dataclass
class ErrorLog:
    """Internal errors as one truncated line each, at most ``max_lines_per_s``
    lines a second (the rest counted and reported with the next line), and a
    traceback capped to its last frames at most every ``traceback_interval_s``:
    a client that finds a bug cannot grow the log faster than that."""

    logger: logging.Logger
    traceback_interval_s: float = TRACEBACK_INTERVAL_S
    max_lines_per_s: int = MAX_ERROR_LINES_PER_S
    clock: Callable[[], float] = time.monotonic
    _last_traceback: float = field(default=float("-inf"))
    _second: float = field(default=float("-inf"))
    _lines: int = 0
    _suppressed: int = 0

    def report(self, what: str, exc: BaseException) -> None:
        now = self.clock()
        if now - self._second >= 1.0:
            self._second, self._lines = now, 0
        if self._lines >= self.max_lines_per_s:
            self._suppressed += 1
            return
        self._lines += 1
        text = f"{what}: {type(exc).__name__}: {str(exc)[:MAX_MESSAGE_CHARS]!r}"
        if self._suppressed:
            text += f" ({self._suppressed} more suppressed)"
            self._suppressed = 0
        if now - self._last_traceback >= self.traceback_interval_s:
            self._last_traceback = now
            frames = traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-8)
            tb = "".join(frames)[-4000:]
            self.logger.error("%s\n%s(next traceback in %.0f s at the earliest)", text, tb,
                              self.traceback_interval_s)
        else:
            self.logger.error("%s", text)


Method = Callable[..., Any]

# The running batch's remaining budget (a one-item list), None outside a batch.
_BATCH_BUDGET: ContextVar[list[int] | None] = ContextVar("qenex_rpc_batch_budget", default=None)


def charge(units: int) -> None:
    """Charge the running batch ``units`` more for a large answer; later calls then find less."""
    budget = _BATCH_BUDGET.get()
    if budget is not None and units > 0:
        budget[0] -= units


@dataclass
class Dispatcher:
    methods: dict[str, Method]
    max_batch: int = 100
    costs: dict[str, int] = field(default_factory=dict)  # work units per call; default 1
    max_batch_cost: int = 200
    max_in_flight: int = 16
    errors: ErrorLog = field(default_factory=lambda: ErrorLog(log))
    # Called after every call with (method, seconds, ok); unknown names are reported as "unknown".
    observe: Callable[[str, float, bool], None] | None = None
    _in_flight: asyncio.Semaphore | None = field(default=None, init=False, repr=False)

    async def call(self, name: str, params: Any) -> Any:
        method = self.methods.get(name)
        if method is None:
            raise RPCError(METHOD_NOT_FOUND, f"method {brief(name)} not found")
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
            raise invalid_params(f"invalid params for {name}: {str(exc)[:MAX_MESSAGE_CHARS]}") from None
        result = method(*bound.args, **bound.kwargs)
        if inspect.isawaitable(result):
            result = await result
        return result

    async def _observed_call(self, name: str, params: Any) -> Any:
        if self.observe is None:
            return await self.call(name, params)
        started = time.perf_counter()
        ok = False
        try:
            result = await self.call(name, params)
            ok = True
            return result
        finally:
            self.observe(name if name in self.methods else "unknown", time.perf_counter() - started, ok)

    async def handle_one(self, request: Any, budget: list[int] | None = None) -> dict[str, Any] | None:
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
            if budget is not None:
                cost = self.costs.get(method, 1)
                if cost > budget[0]:
                    raise RPCError(OVER_BUDGET, f"batch work budget of {self.max_batch_cost} spent; send {method} "
                                   "in a later request")
                budget[0] -= cost
            result = await self._observed_call(method, request.get("params"))
        except RPCError as exc:
            return None if is_notification else _error(request_id, exc)
        except Exception as exc:  # a bug in a method must not take the server down
            self.errors.report(f"rpc method {brief(method)} failed", exc)
            return None if is_notification else _error(request_id, RPCError(INTERNAL_ERROR, "internal error"))
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": request_id, "result": result}

    async def handle_payload(self, body: bytes) -> Any:
        if self._in_flight is None:
            self._in_flight = asyncio.Semaphore(self.max_in_flight)
        async with self._in_flight:
            return await self._handle_payload(body)

    async def _handle_payload(self, body: bytes) -> Any:
        if json_depth_exceeds(body, MAX_JSON_DEPTH):
            return _error(None, RPCError(PARSE_ERROR, f"parse error: JSON nested deeper than {MAX_JSON_DEPTH} levels"))
        try:
            payload = json.loads(body)
        except (ValueError, UnicodeDecodeError) as exc:
            return _error(None, RPCError(PARSE_ERROR, f"parse error: {str(exc)[:MAX_MESSAGE_CHARS]}"))
        except RecursionError:  # the scan above should have caught it; never a 500
            return _error(None, RPCError(PARSE_ERROR, "parse error: JSON nested too deep"))
        if isinstance(payload, list):
            if not payload:
                return _error(None, RPCError(INVALID_REQUEST, "empty batch"))
            if len(payload) > self.max_batch:
                return _error(None, RPCError(INVALID_REQUEST, f"batch of {len(payload)} exceeds {self.max_batch}"))
            budget = [self.max_batch_cost]
            token = _BATCH_BUDGET.set(budget)  # what charge() draws on, for this batch only
            try:
                responses = []
                for i, item in enumerate(payload):
                    if i:
                        await asyncio.sleep(0)  # let consensus and other clients run between calls
                    response = await self.handle_one(item, budget)
                    if response is not None:
                        responses.append(response)
            finally:
                _BATCH_BUDGET.reset(token)
            return responses or None
        return await self.handle_one(payload)


def _error(request_id: Any, exc: RPCError) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "error": exc.to_json()}


def error_response(status: int, code: int, message: str) -> web.Response:
    """An HTTP error whose body is a JSON-RPC error (id null), never text/plain."""
    return web.json_response(_error(None, RPCError(code, message)), status=status)


_HTTP_ERRORS = {
    404: (INVALID_REQUEST, "not found: JSON-RPC is served by POST /"),
    405: (INVALID_REQUEST, "method not allowed: send JSON-RPC with POST /"),
    413: (INVALID_REQUEST, "request body too large"),
}


@web.middleware
async def _json_rpc_errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                           ) -> web.StreamResponse:
    """Routing errors (wrong path or HTTP method) answered as JSON-RPC bodies."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        code, message = _HTTP_ERRORS.get(exc.status, (INVALID_REQUEST, exc.reason))
        return error_response(exc.status, code, message)


def make_app(dispatcher: Dispatcher, *, max_request_bytes: int,
             websocket: Callable[[web.Request], Awaitable[web.StreamResponse]] | None = None) -> web.Application:
    """POST / (JSON-RPC), GET /health and, given ``websocket``, GET /ws (node.ws)."""
    too_large = f"request body over {max_request_bytes} bytes"

    async def handle(request: web.Request) -> web.StreamResponse:
        if request.content_length is not None and request.content_length > max_request_bytes:
            return error_response(413, INVALID_REQUEST, too_large)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return error_response(413, INVALID_REQUEST, too_large)
        try:
            response = await dispatcher.handle_payload(body)
            if response is None:
                return web.Response(status=204)
            return web.Response(text=json.dumps(response), content_type="application/json")
        except Exception as exc:  # a result that does not serialise, or a bug above the methods
            dispatcher.errors.report("rpc request failed", exc)
            return error_response(500, INTERNAL_ERROR, "internal error")

    async def health(_: web.Request) -> web.StreamResponse:
        return web.json_response({"ok": True})

    app = web.Application(client_max_size=max_request_bytes, middlewares=[_json_rpc_errors])
    app.router.add_post("/", handle)
    app.router.add_get("/health", health)
    if websocket is not None:
        app.router.add_get("/ws", websocket)
    return app


AsyncMethod = Callable[..., Awaitable[Any]]
