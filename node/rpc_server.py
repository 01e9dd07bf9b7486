"""The JSON-RPC HTTP server: aiohttp behind a connection cap and per-request deadlines.

aiohttp alone keeps a connection that never sends a byte until its
keep-alive timeout (an hour by default), lets a client trickle its headers
or its body one byte a second, and answers a malformed request with
text/plain after logging a traceback.  Every connection costs a file
descriptor, and a process out of descriptors fails wherever it next opens
one (the consensus WAL, LevelDB, a p2p socket).  So this server:

* holds at most ``max_connections`` (kept well below the descriptor limit
  by ``connection_cap``).  A connection arriving at the cap evicts the
  oldest one that is not running a request (idle, or still sending its
  headers or body); if every one is running a request, the newcomer gets a
  JSON-RPC 503 and is closed at once.  A flood of idle connections thus
  costs the attacker its own older connections, never a working client's
  request;
* gives every request two deadlines of ``request_timeout_s`` each: from the
  connection's opening (or the previous response) until its headers are in,
  and from then until its response is handed to the transport.  A missed
  deadline aborts the connection (an abort frees the descriptor even when
  the client reads nothing);
* answers every HTTP-level error (bad request line, oversize header, ...) as
  a JSON-RPC error body, with a debug line instead of a traceback.

EMFILE while accepting is survived by asyncio itself: it logs, pauses the
listening socket for a second and accepts again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from node.jsonrpc import INTERNAL_ERROR, INVALID_REQUEST, ErrorLog, error_response

log = logging.getLogger("qenex.rpc.server")

# Descriptors left to everything else when sizing the RPC connection cap:
# LevelDB's table cache, p2p sockets, the WAL, the admin server, the loop.
RESERVED_DESCRIPTORS = 256
MIN_CONNECTIONS = 8
MAX_LINE_BYTES = 4096  # request line and each header line
MAX_HEADERS = 32
_BUSY_MESSAGE = json.dumps(
    {"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": "server busy: too many connections"}}
).encode()
_BUSY_RESPONSE = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nConnection: close\r\n"
    b"Content-Length: " + str(len(_BUSY_MESSAGE)).encode() + b"\r\n\r\n" + _BUSY_MESSAGE
)


def connection_cap(configured: int, descriptor_limit: int) -> int:
    """``configured``, lowered so RPC clients can take at most half of the
    descriptors left after ``RESERVED_DESCRIPTORS``."""
    budget = max(MIN_CONNECTIONS, (descriptor_limit - RESERVED_DESCRIPTORS) // 2)
    return max(1, min(configured, budget))


class _Refused(asyncio.Protocol):
    """A connection over the cap: one canned 503, then closed."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(_BUSY_RESPONSE)
        transport.close()

    def data_received(self, data: bytes) -> None:
        pass


class _GuardedHandler(RequestHandler):
    """aiohttp's per-connection protocol with a deadline and JSON-RPC error pages."""

    def __init__(self, guard: "RPCServer", manager: web.Server, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self.guard = guard
        self.conn_transport: asyncio.Transport | None = None
        self.rpc_request: web.BaseRequest | None = None
        self._deadline: asyncio.TimerHandle | None = None
        self.ws = False

    # -- lifecycle (asyncio.Protocol) ----------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.conn_transport = transport
        self._arm()
        super().connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._disarm()
        self.guard._forget(self)
        super().connection_lost(exc)

    # -- deadlines -----------------------------------------------------------

    def _arm(self) -> None:
        self._disarm()
        self._deadline = asyncio.get_running_loop().call_later(self.guard.request_timeout_s, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        self.guard.expired += 1
        self.drop()

    def drop(self) -> None:
        self.guard._forget(self)
        if self.conn_transport is not None and not self.conn_transport.is_closing():
            self.conn_transport.abort()

    def request_started(self, request: web.BaseRequest) -> None:
        self.rpc_request = request
        if not self.ws:
            self._arm()  # headers are in: a fresh deadline for the body, the call and the response

    def long_lived(self) -> None:
        """The request became a WebSocket (node.ws): it has no deadline from now
        on; the WebSocket hub bounds its idle time and its queue instead."""
        self._disarm()
        self.ws = True

    def request_finished(self) -> None:
        self.rpc_request = None
        self._arm()  # until the next request's headers (keep-alive idle time included)

    @property
    def running_request(self) -> bool:
        """A request whose body has fully arrived (it is being answered)."""
        return self.rpc_request is not None and self.rpc_request.content.is_eof()

    # -- HTTP-level errors -----------------------------------------------------

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if request.writer.output_size > 0:
            raise ConnectionError("response already started; cannot send an error")
        if status >= 500:
            self.guard.errors.report(f"rpc http error {status}", exc or RuntimeError(message or "no detail"))
            resp = error_response(status, INTERNAL_ERROR, "internal error")
        else:
            detail = getattr(exc, "message", None) or message or str(exc or "")
            log.debug("bad HTTP request from %s: %s", request.remote, str(detail)[:200])
            resp = error_response(status, INVALID_REQUEST, f"bad HTTP request: {str(detail)[:200]}")
        resp.force_close()
        return resp


class RPCServer:
    """Serves an aiohttp application on ``host:port`` behind the guards above."""

    def __init__(self, app: web.Application, host: str, port: int, *, max_connections: int,
                 request_timeout_s: float, backlog: int = 128) -> None:
        self.app = app
        self.host = host
        self.requested_port = port
        self.max_connections = max_connections
        self.request_timeout_s = request_timeout_s
        self.backlog = backlog
        self.errors = ErrorLog(log)
        self.refused = 0
        self.evicted = 0
        self.expired = 0
        self._live: dict[_GuardedHandler, None] = {}  # insertion order = age
        self._runner: web.AppRunner | None = None
        self._server: asyncio.AbstractServer | None = None
        app.middlewares.append(self._track_requests)

    @property
    def connections(self) -> int:
        return len(self._live)

    @property
    def port(self) -> int:
        assert self._server is not None and self._server.sockets
        return int(self._server.sockets[0].getsockname()[1])

    async def start(self) -> None:
        # handler_cancellation: a client that hangs up stops its request's work
        # (aiohttp's default lets it run on, so hanging up would free a
        # connection slot while the work went on).
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, handler_cancellation=True)
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._accept, self.host, self.requested_port, backlog=self.backlog)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for handler in list(self._live):
            handler.drop()
        if self._runner is not None:
            await self._runner.cleanup()

    # -- connections ---------------------------------------------------------------

    def _accept(self) -> asyncio.BaseProtocol:
        if len(self._live) >= self.max_connections:
            victim = next((h for h in self._live if not h.running_request), None)
            if victim is None:
                self.refused += 1
                return _Refused()
            self.evicted += 1
            victim.drop()
        assert self._runner is not None and self._runner.server is not None
        handler = _GuardedHandler(
            self,
            self._runner.server,
            loop=asyncio.get_running_loop(),
            access_log=None,
            keepalive_timeout=self.request_timeout_s,
            max_line_size=MAX_LINE_BYTES,
            max_field_size=MAX_LINE_BYTES,
            max_headers=MAX_HEADERS,
            lingering_time=min(2.0, self.request_timeout_s),
            auto_decompress=False,  # no compressed request bodies: nothing to inflate
        )
        self._live[handler] = None
        return handler

    def _forget(self, handler: _GuardedHandler) -> None:
        self._live.pop(handler, None)

    @web.middleware
    async def _track_requests(self, request: web.Request,
                              handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
        proto = request.protocol
        guarded = proto if isinstance(proto, _GuardedHandler) else None
        if guarded is not None:
            guarded.request_started(request)
        try:
            return await handler(request)
        finally:
            if guarded is not None:
                guarded.request_finished()
