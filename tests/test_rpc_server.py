"""The JSON-RPC HTTP server under hostile clients, in-process (issue 7, findings 1 and 8).

Idle connections were never closed (about 1,030 exhausted a 1024-descriptor
process and killed its consensus driver), a client could trickle headers or
a body forever, and HTTP-level errors were text/plain.  These tests perform
each attack against ``node.rpc_server.RPCServer`` on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from node.jsonrpc import INVALID_REQUEST, PARSE_ERROR, Dispatcher, make_app
from node.rpc_server import RESERVED_DESCRIPTORS, RPCServer, connection_cap

pytestmark = pytest.mark.timeout(60)

CAP = 8
TIMEOUT_S = 0.5
STATUS = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "status"}).encode()


def request_bytes(body: bytes, *, method: str = "POST", path: str = "/", extra: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict]:
    status_line = await reader.readline()
    headers = {}
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.decode().partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    assert headers.get("content-type", "").startswith("application/json"), (status_line, headers, body)
    return int(status_line.split()[1]), json.loads(body)


class Server:
    def __init__(self, hold: asyncio.Event | None = None) -> None:
        self.hold = hold or asyncio.Event()

    async def __aenter__(self) -> "Server":
        async def held() -> str:
            await self.hold.wait()
            return "released"

        dispatcher = Dispatcher({"status": lambda: {"ok": True}, "held": held})
        self.rpc = RPCServer(make_app(dispatcher, max_request_bytes=1000), "127.0.0.1", 0,
                             max_connections=CAP, request_timeout_s=TIMEOUT_S)
        await self.rpc.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.hold.set()
        await self.rpc.stop()

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection("127.0.0.1", self.rpc.port)

    async def call(self, payload: bytes = STATUS, **kw: str) -> tuple[int, dict]:
        reader, writer = await self.open()
        try:
            writer.write(request_bytes(payload, **kw))
            return await asyncio.wait_for(read_response(reader), 10)
        finally:
            writer.close()


async def closed_by_server(reader: asyncio.StreamReader, within: float = 10.0) -> bool:
    try:
        while await asyncio.wait_for(reader.read(4096), within):
            pass
    except (ConnectionResetError, asyncio.IncompleteReadError):
        pass
    return True


def test_connection_cap_stays_well_below_the_descriptor_limit():
    assert connection_cap(256, 1024) == 256 and 256 <= (1024 - RESERVED_DESCRIPTORS) // 2
    assert connection_cap(10_000, 1024) == (1024 - RESERVED_DESCRIPTORS) // 2
    assert connection_cap(256, 300) == 22 and connection_cap(256, 200) == 8


async def test_idle_connections_beyond_the_cap_evict_the_oldest_and_requests_still_answer():
    async with Server() as server:
        idle = [await server.open() for _ in range(5 * CAP)]
        await asyncio.sleep(0.05)
        assert server.rpc.connections <= CAP
        assert server.rpc.evicted >= 4 * CAP - 1
        status, body = await server.call()
        assert status == 200 and body["result"] == {"ok": True}
        assert await closed_by_server(idle[0][0])  # the oldest went first
        for _, writer in idle:
            writer.close()


async def test_idle_and_trickling_connections_are_closed_at_their_deadline():
    async with Server() as server:
        idle_reader, idle_writer = await server.open()
        trickle_reader, trickle_writer = await server.open()
        body_reader, body_writer = await server.open()
        body_writer.write(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{")  # then a byte at a time

        async def trickle(writer: asyncio.StreamWriter, data: bytes) -> None:
            try:
                for byte in data:
                    writer.write(bytes([byte]))
                    await asyncio.sleep(TIMEOUT_S / 5)
            except (ConnectionError, RuntimeError):
                pass

        tasks = [asyncio.create_task(trickle(trickle_writer, request_bytes(STATUS))),
                 asyncio.create_task(trickle(body_writer, b" " * 400))]
        for reader in (idle_reader, trickle_reader, body_reader):
            assert await closed_by_server(reader)
        assert server.rpc.expired >= 3 and server.rpc.connections == 0
        for t in tasks:
            t.cancel()
        for w in (idle_writer, trickle_writer, body_writer):
            w.close()


async def test_keep_alive_connection_serves_requests_then_expires_when_idle():
    async with Server() as server:
        reader, writer = await server.open()
        for _ in range(3):
            writer.write(request_bytes(STATUS))
            status, body = await read_response(reader)
            assert status == 200 and body["result"] == {"ok": True}
        assert await closed_by_server(reader)
        writer.close()


async def test_when_every_connection_runs_a_request_a_newcomer_gets_a_json_503():
    async with Server() as server:
        held = json.dumps({"jsonrpc": "2.0", "id": 7, "method": "held"}).encode()
        busy = [await server.open() for _ in range(CAP)]
        for _, writer in busy:
            writer.write(request_bytes(held))
        await asyncio.sleep(0.1)
        status, body = await server.call()
        assert status == 503 and body["error"]["code"] == -32000 and server.rpc.refused == 1
        server.hold.set()
        for reader, writer in busy:
            status, body = await read_response(reader)
            assert body == {"jsonrpc": "2.0", "id": 7, "result": "released"}
            writer.close()


@pytest.mark.parametrize(
    "raw, status, code",
    [
        (b"GARBAGE\r\n\r\n", 400, INVALID_REQUEST),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, 400, INVALID_REQUEST),  # a TLS hello
        (b"POST / HTTP/1.1\r\nHost: x\r\nX: " + b"a" * 10_000 + b"\r\n\r\n", 400, INVALID_REQUEST),
        (b"POST /" + b"a" * 10_000 + b" HTTP/1.1\r\n\r\n", 400, INVALID_REQUEST),
        (b"POST / HTTP/1.1\r\n" + b"".join(b"X%d: y\r\n" % i for i in range(100)) + b"\r\n", 400, INVALID_REQUEST),
        (request_bytes(b"{}", method="GET"), 405, INVALID_REQUEST),
        (request_bytes(STATUS, path="/nope"), 404, INVALID_REQUEST),
        (request_bytes(b"x" * 2000), 413, INVALID_REQUEST),
        (b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + b"[" * 2000 + b"\r\n0\r\n\r\n",
         413, INVALID_REQUEST),
        (request_bytes(b"[" * 400 + b"]" * 400), 200, PARSE_ERROR),
        (request_bytes(b"\xff\xfe"), 200, PARSE_ERROR),
        (request_bytes(STATUS, extra="Content-Type: text/plain\r\nContent-Encoding: gzip\r\n"), 200, None),
    ],
)
async def test_every_http_answer_is_a_json_rpc_body(raw, status, code):
    async with Server() as server:
        reader, writer = await server.open()
        writer.write(raw)
        got_status, body = await asyncio.wait_for(read_response(reader), 10)
        writer.close()
        assert got_status == status and body["jsonrpc"] == "2.0"
        if code is None:
            assert body["result"] == {"ok": True}
        else:
            assert body["error"]["code"] == code and body["id"] is None
        assert (await server.call())[0] == 200  # and the server keeps serving


async def test_the_blocking_client_reads_refusals_as_errors():
    from node.rpc_client import RPCClient, RPCClientError

    async with Server() as server:
        client = RPCClient(f"http://127.0.0.1:{server.rpc.port}/", timeout=5)
        assert await asyncio.to_thread(client.call, "status") == {"ok": True}
        with pytest.raises(RPCClientError) as info:
            await asyncio.to_thread(client.batch, [("status", [])] * 101)  # over max_batch: one error for all
        assert info.value.code == INVALID_REQUEST
        with pytest.raises(RPCClientError) as info:
            await asyncio.to_thread(client.call, "status", "x" * 2000)  # 413, a JSON-RPC body
        assert info.value.code == INVALID_REQUEST and "over 1000 bytes" in str(info.value)
