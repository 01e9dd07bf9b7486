"""Every way a node can fail to answer, for both clients: a clear RPCUnavailable or RPCClientError, never a crash.

A fake aiohttp server misbehaves on request: the method name says how.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading

import pytest
from aiohttp import web

from node.client import AsyncClient, Client, RPCClientError, RPCUnavailable

pytestmark = pytest.mark.timeout(60)

BIG = 1000  # max_response_bytes of the clients under test


def _misbehave(method: str, rid: object) -> web.Response:
    if method == "empty500":
        return web.Response(status=500)
    if method == "notjson":
        return web.Response(text="<html>oops</html>", content_type="text/html")
    if method == "list":
        return web.json_response([1, 2])
    if method == "neither":
        return web.json_response({"jsonrpc": "2.0", "id": rid})
    if method == "badError":
        return web.json_response({"jsonrpc": "2.0", "id": rid, "error": "boom"})
    if method == "huge":
        return web.json_response({"jsonrpc": "2.0", "id": rid, "result": "x" * (2 * BIG)})
    if method == "refused":
        return web.json_response({"jsonrpc": "2.0", "id": rid, "error": {"code": -32010, "message": "no", "data": {"k": 1}}},
                                 status=400)
    if method == "batchDropsOne":
        return web.json_response([{"jsonrpc": "2.0", "id": 0, "result": 1}])
    if method == "batchRefused":
        return web.json_response({"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "too big"}})
    if method == "batchObject":
        return web.json_response({"jsonrpc": "2.0", "id": 0, "result": 1})
    return web.json_response({"jsonrpc": "2.0", "id": rid, "result": {"ok": method}})


@pytest.fixture()
async def fake():
    async def handle(request: web.Request) -> web.StreamResponse:
        body = json.loads(await request.read())
        first = body[0] if isinstance(body, list) else body
        if first["method"] == "slow":
            await asyncio.sleep(1.5)
        if first["method"] in ("chunked", "hugeChunked"):  # no Content-Length: the client must count
            reply = web.StreamResponse(headers={"Content-Type": "application/json"})
            reply.enable_chunked_encoding()
            await reply.prepare(request)
            text = "x" * (2 * BIG if first["method"] == "hugeChunked" else 10)
            for part in (f'{{"jsonrpc": "2.0", "id": {first["id"]}, ', f'"result": "{text}"', "}"):
                await reply.write(part.encode())
            await reply.write_eof()
            return reply
        return _misbehave(first["method"], first["id"])

    app = web.Application()
    app.router.add_post("/", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/"
    await runner.cleanup()


CASES = [
    ("empty500", RPCUnavailable, "HTTP 500"),
    ("notjson", RPCUnavailable, "did not answer JSON"),
    ("list", RPCUnavailable, "JSON-RPC object"),
    ("neither", RPCUnavailable, "neither a result nor an error"),
    ("badError", RPCUnavailable, "malformed error"),  # a string is no error object
    ("huge", RPCUnavailable, f"more than {BIG} bytes"),
    ("hugeChunked", RPCUnavailable, f"more than {BIG} bytes"),
    ("refused", RPCClientError, "no"),
    ("slow", RPCUnavailable, "did not answer within 0.5 s"),
]


@pytest.mark.parametrize("method, error, text", CASES)
async def test_blocking_client_errors(fake, method, error, text):
    client = Client(fake, timeout=0.5, max_response_bytes=BIG)
    with pytest.raises(error, match=text) as info:
        await asyncio.to_thread(client.call, method)
    if method == "refused":
        assert info.value.code == -32010 and info.value.data == {"k": 1}
    assert await asyncio.to_thread(client.call, "fine") == {"ok": "fine"}  # and the client still works
    assert await asyncio.to_thread(client.call, "chunked") == "x" * 10


@pytest.mark.parametrize("method, error, text", CASES)
async def test_async_client_errors(fake, method, error, text):
    async with AsyncClient(fake, timeout=0.5, max_response_bytes=BIG) as client:
        with pytest.raises(error, match=text) as info:
            await client.call(method)
        if method == "refused":
            assert info.value.code == -32010 and info.value.data == {"k": 1}
        assert await client.call("fine") == {"ok": "fine"}
        assert await client.call("chunked") == "x" * 10


@pytest.mark.parametrize("method, error, text", [
    ("batchDropsOne", RPCUnavailable, "a batch of 2 calls with 1 answers"),
    ("batchRefused", RPCClientError, "too big"),
    ("batchObject", RPCUnavailable, "answered a batch with dict"),
])
async def test_batch_errors(fake, method, error, text):
    calls = [(method, []), ("x", [])]
    with pytest.raises(error, match=text):
        await asyncio.to_thread(Client(fake, max_response_bytes=BIG).batch, calls)
    async with AsyncClient(fake, max_response_bytes=BIG) as client:
        with pytest.raises(error, match=text):
            await client.batch(calls)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def test_nothing_listening_is_unavailable_for_both():
    url = f"http://127.0.0.1:{_free_port()}/"
    with pytest.raises(RPCUnavailable, match="cannot reach"):
        Client(url, timeout=2).status()
    async with AsyncClient(url, timeout=2) as client:
        with pytest.raises(RPCUnavailable, match="cannot reach"):
            await client.status()


def _request_id(conn: socket.socket) -> int:
    """The id of the one small request a test client sends on ``conn``."""
    data = b""
    while b"\r\n\r\n" not in data or not data.rstrip().endswith(b"}"):
        chunk = conn.recv(65536)
        if not chunk:
            break
        data += chunk
    return json.loads(data.partition(b"\r\n\r\n")[2])["id"]


def _answer(conn: socket.socket) -> None:
    body = b'{"jsonrpc":"2.0","id":%d,"result":7}' % _request_id(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


def _cut(conn: socket.socket) -> None:
    conn.recv(65536)


@contextlib.contextmanager
def _raw_server(*handlers):
    """A socket server on 127.0.0.1 giving its n-th connection to ``handlers[n]`` (then closing it);
    yields its URL and the list of accepted connections."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(len(handlers))
    accepted: list[socket.socket] = []

    def serve() -> None:
        for handle in handlers:
            conn, _ = listener.accept()
            accepted.append(conn)
            with conn:
                handle(conn)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/", accepted
    finally:
        listener.close()
        thread.join(5)


def test_a_keep_alive_connection_the_node_closed_is_retried_once_on_a_fresh_one():
    with _raw_server(_answer, _answer) as (url, accepted):  # each connection answers once, then the node hangs up
        client = Client(url, timeout=5)
        assert client.call("a") == 7
        assert client.call("b") == 7  # the first connection is dead: one fresh try succeeds
        assert len(accepted) == 2


def test_a_fresh_connection_cut_before_the_answer_is_unavailable_not_retried():
    with _raw_server(_cut) as (url, accepted):
        with pytest.raises(RPCUnavailable):
            Client(url, timeout=5).call("a")
        assert len(accepted) == 1


async def test_the_async_client_also_retries_a_closed_keep_alive_connection_once():
    with _raw_server(_answer, _answer) as (url, accepted):
        async with AsyncClient(url, timeout=5) as client:
            assert await client.call("a") == 7
            assert await client.call("b") == 7
        assert len(accepted) == 2
    with _raw_server(_cut, _cut) as (url, accepted):  # cut twice: unavailable after the one retry
        async with AsyncClient(url, timeout=5) as client:
            with pytest.raises(RPCUnavailable, match="hung up"):
                await client.call("a")
        assert len(accepted) == 2
