"""The WebSocket hub (node.ws) against the review's attacks: a reader that never reads and never takes the
close, events of big blocks for many filters, a tx subscribe that overflows its own queue, a hub that fell
behind, ping floods, a notification racing an unsubscribe, and a node that vanished under a client."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import time

import aiohttp
import pytest
from aiohttp import web

import node.client as client_module
import node.ws as ws_module
from node import txbuild
from node.client import AsyncClient, SubscriptionClosed
from node.events import EventFilter
from node.ws import GAP_CLOSE_CODE, HUB_QUEUE_BLOCKS, TOO_SLOW_CLOSE_CODE, SubscriptionHub, WsLimits, _Client, _Sub
from state.crypto import address_to_text
from tests.client_fixtures import ALICE, BOB, live_node

pytestmark = pytest.mark.timeout(120)


# -- raw sockets -------------------------------------------------------------------------------------


def handshake(port: int, *, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket()
    if rcvbuf:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16))
    s.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n")
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = s.recv(1)
        assert chunk, reply
        reply += chunk
    assert reply.startswith(b"HTTP/1.1 101"), reply
    return s


def frame(payload: bytes) -> bytes:
    mask = os.urandom(4)
    header = struct.pack("!BB", 0x81, 0x80 | len(payload)) if len(payload) < 126 else \
        struct.pack("!BBH", 0x81, 0x80 | 126, len(payload))
    return header + mask + bytes(c ^ mask[i % 4] for i, c in enumerate(payload))


def subscribe_frame(topic: str, request_id: int) -> bytes:
    return frame(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "qenex_subscribe",
                             "params": [topic]}).encode())


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_reader_that_never_reads_loses_its_slot_its_descriptor_and_its_rpc_connection():
    limits = WsLimits(max_clients=3, max_subscriptions=32, queue_messages=64, close_timeout_s=0.5, idle_s=60)
    with live_node(ws_limits=limits) as node:
        sockets = []
        for _ in range(3):
            s = handshake(node.server.port, rcvbuf=4096)
            for i in range(32):
                s.sendall(subscribe_frame("newHeads", i))
            sockets.append(s)
        wait_for(lambda: len(node.hub.heads) == 96, 10, "96 subscriptions")

        async def flood() -> None:  # many heads (the same block announced again: the hub does not care)
            block, _ = node.chain.block([])
            for _ in range(600):
                node.hub.on_commit(block)
                await asyncio.sleep(0.001)

        node.run(flood(), timeout=60)
        wait_for(lambda: node.hub.stats["too_slow"] == 3, 30, "three readers closed as too slow")
        # the close frame never drains: cut within close_timeout_s, every slot freed
        wait_for(lambda: not node.hub.clients and node.server.connections == 0, 10,
                 f"slots freed (clients {len(node.hub.clients)}, rpc {node.server.connections})")
        fresh = handshake(node.server.port)  # a new client is admitted (101), not refused (503)
        fresh.close()
        for s in sockets:
            s.close()


# -- the hub alone, over fake sockets --------------------------------------------------------------


class RecordingSocket:
    """A WebSocket whose peer reads everything at once (or, with ``stuck``, nothing once the first went out)."""

    def __init__(self, stuck: bool = False) -> None:
        self.sent: list[str] = []
        self.closed_with: tuple[int, bytes] | None = None
        self.stuck = stuck

    async def send_str(self, text: str) -> None:
        self.sent.append(text)
        if self.stuck:
            await asyncio.Event().wait()

    async def close(self, *, code: int, message: bytes) -> bool:
        self.closed_with = (code, message)
        return True


class FakeTransport:
    aborted = False

    def is_closing(self) -> bool:
        return self.aborted

    def get_write_buffer_size(self) -> int:
        return 0

    def abort(self) -> None:
        self.aborted = True


class FakeRequest:
    remote = "127.0.0.1"

    def __init__(self) -> None:
        self.transport = FakeTransport()


def fake_client(hub: SubscriptionHub, *, stuck: bool = False) -> tuple[_Client, RecordingSocket, asyncio.Task]:
    sock = RecordingSocket(stuck)
    client = _Client(hub, sock, FakeRequest())  # type: ignore[arg-type]
    hub.clients.add(client)
    return client, sock, asyncio.get_running_loop().create_task(client.write_loop())


def subscribe(hub: SubscriptionHub, client: _Client, *params, request_id: int = 1) -> None:
    hub._on_text(client, json.dumps({"jsonrpc": "2.0", "id": request_id, "method": "qenex_subscribe",
                                     "params": list(params)}))


UNKNOWN = {"status": "unknown", "final": False}
FINAL = {"status": "ok", "final": True, "height": 3}


async def test_a_tx_subscribe_that_overflows_its_own_queue_leaves_nothing_behind():
    for status in (UNKNOWN, FINAL):
        hub = SubscriptionHub(receipts=lambda h: (), lookup_tx=lambda h, s=status: dict(s),
                              limits=WsLimits(queue_messages=4, close_timeout_s=0.1))
        client, sock, writer = fake_client(hub, stuck=True)
        for i in range(4):  # one in flight, three queued
            client.offer(f"filler {i}")
            await asyncio.sleep(0)
        subscribe(hub, client, "tx", {"hash": "0x" + "ab" * 32})  # no KeyError, whatever the status
        assert client.closing and hub.stats["too_slow"] == 1
        assert not hub.txs and not client.subs, status
        writer.cancel()


def committed_transfers(count: int):
    """A committed block of ``count`` transfers from alice to bob, and its receipts."""
    from state.app import Application
    from state.kv import MemoryKV
    from state.payloads import Transfer
    from state.testing import STUB_VERIFIER, Chain, make_genesis, signed
    from tests.client_fixtures import VALIDATOR

    app = Application(MemoryKV(), make_genesis(validators=[VALIDATOR], funded=[ALICE, BOB]),
                      commit_verifier=STUB_VERIFIER)
    chain = Chain(app, VALIDATOR)
    txs = [signed(ALICE, i, Transfer(to=BOB.address, token="QNX", amount=i + 1), chain_id=app.chain_id)
           for i in range(count)]
    block, result = chain.block(txs)
    assert all(r.ok for r in result.receipts)
    return block, app.block_receipts(block.header.height)


async def test_events_are_rendered_once_shared_by_equal_filters_and_capped_per_notification(monkeypatch):
    monkeypatch.setattr(ws_module, "MAX_EVENTS_NOTE_BYTES", 2_000)
    block, receipts = committed_transfers(20)
    assert len(block.txs) == 20
    everything, transfers = EventFilter(), EventFilter(kinds=frozenset({"transfer"}))
    notes = ws_module._event_notes(block, receipts, {everything, transfers})
    body = json.loads(notes[everything])
    assert len(notes[everything]) <= 2_000 + 200
    assert body["omitted"] == len(block.txs) - len(body["events"]) > 0
    assert [e["index"] for e in body["events"]] == list(range(len(body["events"])))

    hub = SubscriptionHub(receipts=lambda h: receipts, lookup_tx=lambda h: UNKNOWN)
    clients = [fake_client(hub, stuck=True) for _ in range(2)]  # their answers in flight; the rest queue
    for client, _, _ in clients:
        subscribe(hub, client, "events")
    await asyncio.sleep(0.05)
    await hub._announce(block)
    first, second = (client.queue[-1] for client, _, _ in clients)
    assert first[1] is second[1] and first[1] == notes[everything]  # one string, referenced twice
    assert first[0] != second[0]  # each with its own subscription id
    for _, _, writer in clients:
        writer.cancel()


async def test_a_notification_is_not_sent_after_its_unsubscribe(monkeypatch):
    block, receipts = committed_transfers(1)
    hub = SubscriptionHub(receipts=lambda h: receipts, lookup_tx=lambda h: UNKNOWN)
    client, sock, writer = fake_client(hub)
    subscribe(hub, client, "events")
    await asyncio.sleep(0.05)
    sub_id = next(iter(client.subs))
    real = asyncio.to_thread

    async def unsubscribe_meanwhile(func, *args):
        hub._unsubscribe(client, sub_id)  # the client's qenex_unsubscribe lands while events render
        return await real(func, *args)

    monkeypatch.setattr(ws_module.asyncio, "to_thread", unsubscribe_meanwhile)
    sent_before = len(sock.sent)
    await hub._announce(block)
    await asyncio.sleep(0.05)
    assert len(sock.sent) == sent_before
    writer.cancel()


async def test_a_hub_that_fell_behind_answers_tx_from_the_store_and_closes_heads_with_4009():
    block, _ = committed_transfers(1)
    hub = SubscriptionHub(receipts=lambda h: (), lookup_tx=lambda h: dict(UNKNOWN))
    watcher, watcher_sock, w1 = fake_client(hub)
    follower, follower_sock, w2 = fake_client(hub)
    subscribe(hub, watcher, "tx", {"hash": "0x" + "cd" * 32})
    subscribe(hub, follower, "newHeads")
    hub.lookup_tx = lambda h: dict(FINAL, hash="0x" + h.hex())  # committed in a block the hub skipped
    hub.start()
    for _ in range(HUB_QUEUE_BLOCKS + 5):  # one loop step: the hub's task cannot run in between
        hub.on_commit(block)
    assert hub.stats["blocks_dropped"] == 5
    for _ in range(100):
        await asyncio.sleep(0.05)
        if follower_sock.closed_with is not None:
            break
    assert follower_sock.closed_with is not None and follower_sock.closed_with[0] == GAP_CLOSE_CODE
    final = json.loads(watcher_sock.sent[-1])["params"]["result"]
    assert final["final"] is True and final["hash"] == "0x" + "cd" * 32
    assert not hub.txs and not hub.heads
    await hub.stop()
    w1.cancel()
    w2.cancel()


# -- pings -------------------------------------------------------------------------------------------


async def test_a_ping_flood_is_charged_like_calls_and_a_healthy_client_survives_the_heartbeat():
    limits = WsLimits(heartbeat_s=2.0, calls_per_s=20, call_burst=40, idle_s=60)  # pong due within 1 s
    with live_node(ws_limits=limits) as node:
        url = node.url.replace("http://", "ws://") + "ws"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(url) as healthy:
                await healthy.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "qenex_subscribe",
                                                   "params": ["newHeads"]}))
                assert "result" in json.loads((await asyncio.wait_for(healthy.receive(), 10)).data)
                notes: list[dict] = []

                async def read() -> None:  # an aiohttp client answers pings only while it reads
                    async for message in healthy:
                        if message.type == aiohttp.WSMsgType.TEXT:
                            notes.append(json.loads(message.data))

                reader = asyncio.create_task(read())
                async with session.ws_connect(url) as flooder:
                    try:
                        for _ in range(500):
                            await flooder.ping(b"x")
                    except ConnectionResetError:
                        pass  # the node closed it mid-flood
                    while not flooder.closed:
                        message = await asyncio.wait_for(flooder.receive(), 10)
                        if message.type not in (aiohttp.WSMsgType.PONG, aiohttp.WSMsgType.TEXT):
                            break
                    # 1008, or 1006 when the flooder (busy pinging, not reading) missed the close and was cut
                    assert flooder.close_code in (1008, 1006) and node.hub.stats["flood"] == 1
                await asyncio.sleep(4.5)  # two heartbeats: the healthy client's pongs keep it
                node.make_block()
                for _ in range(100):
                    if notes:
                        break
                    await asyncio.sleep(0.05)
                assert not healthy.closed and notes[0]["params"]["topic"] == "newHeads"
                reader.cancel()


async def test_the_client_notices_a_node_that_stops_answering_pings(monkeypatch):
    monkeypatch.setattr(client_module, "WS_HEARTBEAT_S", 0.4)

    async def mute(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=False)  # never answers a ping: a vanished node
        await ws.prepare(request)
        async for message in ws:
            if message.type == aiohttp.WSMsgType.TEXT:
                call = json.loads(message.data)
                await ws.send_json({"jsonrpc": "2.0", "id": call["id"], "result": "0x01"})
        return ws

    app = web.Application()
    app.router.add_get("/ws", mute)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        async with AsyncClient(f"http://127.0.0.1:{port}/", timeout=5) as client:
            async with client.subscribe("newHeads") as heads:
                started = time.monotonic()
                with pytest.raises(SubscriptionClosed):
                    await asyncio.wait_for(heads.__anext__(), 10)
                assert time.monotonic() - started < 5
    finally:
        await runner.cleanup()


def test_close_codes_are_distinct():
    assert len({TOO_SLOW_CLOSE_CODE, GAP_CLOSE_CODE, 1000, 1003, 1008, 1009}) == 6
    assert _Sub("0x1", "newHeads", None).head.startswith('{"jsonrpc":"2.0"')  # type: ignore[arg-type]
