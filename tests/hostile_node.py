"""A hostile "node" for client and CLI tests: an HTTP server on 127.0.0.1 (ephemeral port) whose every
answer a test writes itself, well-formed or not, all at once or dripped a byte at a time.

    with hostile_node(answer) as url:
        Client(url).status()

``answer(exchange)`` is called once per POST, in the server's thread; ``exchange.request`` is the
decoded JSON-RPC request (one object or a batch list) and ``exchange.reply(...)`` /
``exchange.drip(...)`` / ``exchange.hang_up()`` write the answer.  ``rpc_result`` and
``rpc_error`` build single answers echoing the request's id.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator


class Exchange:
    def __init__(self, handler: BaseHTTPRequestHandler, request: Any, count: int) -> None:
        self.handler = handler
        self.request = request
        self.count = count  # 0 for the server's first POST, 1 for the second, ...

    @property
    def method(self) -> str:
        first = self.request[0] if isinstance(self.request, list) and self.request else self.request
        return first.get("method", "") if isinstance(first, dict) else ""

    def reply(self, body: bytes | str | Any, status: int = 200) -> None:
        """Answer ``body`` (bytes or text as given, anything else as JSON) with its Content-Length."""
        raw = body if isinstance(body, bytes) else body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.handler.send_response(status)
        self.handler.send_header("Content-Type", "application/json")
        self.handler.send_header("Content-Length", str(len(raw)))
        self.handler.end_headers()
        self.handler.wfile.write(raw)

    def drip(self, raw: bytes, every_s: float) -> None:
        """Write ``raw`` (status line and headers included) one byte at a time."""
        self.handler.close_connection = True
        try:
            for i in range(len(raw)):
                self.handler.wfile.write(raw[i:i + 1])
                self.handler.wfile.flush()
                time.sleep(every_s)
        except OSError:  # the client gave up and hung up: what the test wants
            pass

    def hang_up(self, after_s: float = 0.0) -> None:
        """Close the connection without answering (after ``after_s`` seconds)."""
        time.sleep(after_s)
        self.handler.close_connection = True
        with contextlib.suppress(OSError):
            self.handler.connection.shutdown(socket.SHUT_RDWR)


def rpc_result(request: Any, result: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request.get("id"), "result": result}


def rpc_error(request: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return {"jsonrpc": "2.0", "id": request.get("id"), "error": error}


def http_answer(body: bytes) -> bytes:
    """A whole HTTP/1.1 answer of JSON ``body``, as bytes to drip."""
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


@contextlib.contextmanager
def hostile_node(answer: Callable[[Exchange], None]) -> Iterator[str]:
    seen = [0]
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the node's server

        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with lock:
                count, seen[0] = seen[0], seen[0] + 1
            answer(Exchange(self, json.loads(body), count))

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
