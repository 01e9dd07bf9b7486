"""WebSocket subscriptions (node.ws) on a live in-process node: every topic through the real client, and
every bad input over a raw WebSocket: each gets a specific error or close code, and the node serves on.

The multi-process check (a real testnet, each node's newHeads and a tx's finality) is in
tests/test_testnet.py; the fan-out's cost is measured by bench/load.py --ws-clients.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from node import txbuild
from node.client import AsyncClient, Client, SubscriberTooSlow
from node.events import EventFilter
from node.ws import SUBSCRIPTION_LIMIT, TOO_SLOW_CLOSE_CODE, SubscriptionHub, WsLimits, _Client, _Sub
from state.crypto import address_to_text
from state.genesis import GenesisToken
from tests.client_fixtures import ALICE, BOB, live_node

pytestmark = pytest.mark.timeout(90)

E18 = 10**18
TOKENS = tuple(GenesisToken(s, f"{s} token", 18, ALICE.address) for s in ("AAA", "BBB"))
BOB_TEXT = address_to_text(BOB.address)
ALICE_TEXT = address_to_text(ALICE.address)
LIMITS = WsLimits(max_clients=6, max_subscriptions=4, max_event_subscriptions=8, idle_s=1.0,
                  calls_per_s=50, call_burst=60, max_frame_bytes=2048)


@pytest.fixture(scope="module")
def node():
    with live_node(tokens=TOKENS, ws_limits=LIMITS) as n:
        yield n


def ws_url(node) -> str:
    return node.url.replace("http://", "ws://") + "ws"


async def next_note(subscription, timeout: float = 10.0):
    return await asyncio.wait_for(subscription.__anext__(), timeout)


async def call(ws, method: str, *params, request_id: int = 1) -> dict:
    await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": list(params)}))
    while True:
        reply = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
        if reply.get("id") == request_id:
            return reply


async def test_new_heads_follow_commits(node):
    async with AsyncClient(node.url) as client, client.subscribe("newHeads") as heads:
        start = node.app.height
        node.make_block()
        node.make_block()
        first, second = await next_note(heads), await next_note(heads)
        assert (first.topic, first.result["height"], second.result["height"]) == ("newHeads", start + 1, start + 2)
        block = node.app.get_block(start + 2)
        assert second.result["hash"] == "0x" + block.hash.hex()
        assert second.result["app_hash"] == "0x" + block.header.app_hash.hex()


async def test_tx_status_until_final_then_the_node_forgets_it(node):
    async with AsyncClient(node.url) as client:
        stx = await client.sign(ALICE, txbuild.transfer(BOB_TEXT, 5))
        tx_hash = "0x" + stx.hash.hex()
        async with client.subscribe("tx", {"hash": tx_hash}) as watch:
            now = await next_note(watch)
            assert now.result == {"hash": tx_hash, "status": "unknown", "committed": False, "final": False}
            assert await client.submit(stx) == tx_hash
            final = await next_note(watch)
            assert final.result["final"] is True and final.result["status"] == "ok"
            assert final.result["height"] == (await client.transaction(tx_hash))["height"]
            assert not node.hub.txs  # the subscription ended with its final record
        # a committed hash: its final record at once
        async with client.subscribe("tx", {"hash": tx_hash}) as again:
            record = await next_note(again)
            assert record.result["final"] is True and record.result["height"] == final.result["height"]


async def test_events_filtered_by_pool_address_and_kind(node):
    async with AsyncClient(node.url) as client:
        await client.send_and_wait(await client.sign(ALICE, txbuild.pool_create("AAA/BBB", 1000 * E18, 1000 * E18)))
        async with client.subscribe("events", {"pool": "BBB/AAA", "kinds": ["swap"]}) as swaps, \
                client.subscribe("events", {"address": BOB_TEXT}) as bobs, \
                client.subscribe("events") as everything:
            deadline = node.app.height + 10**6
            swap = await client.sign(ALICE, txbuild.swap(["AAA", "BBB"], E18, 1, deadline))
            pay = await client.sign(ALICE, txbuild.transfer(BOB_TEXT, 7), nonce=swap.tx.nonce + 1)
            await client.submit(swap)
            await client.submit(pay)
            seen: dict[str, set[str]] = {"swaps": set(), "bobs": set(), "all": set()}
            for name, sub in (("swaps", swaps), ("bobs", bobs), ("all", everything)):
                while len(seen[name]) < (1 if name != "all" else 2):
                    note = await next_note(sub)
                    assert note.topic == "events" and note.result["events"]
                    for event in note.result["events"]:
                        seen[name].add(event["kind"])
                        if name == "swaps":
                            assert event["pools"] == ["AAA/BBB"] and event["tx"] == "0x" + swap.hash.hex()
                            assert event["sender"] == ALICE_TEXT and event["payload"]["amount_in"] == str(E18)
                        if name == "bobs":
                            assert event["payload"]["to"] == BOB_TEXT and event["payload"]["amount"] == "7"
            assert seen == {"swaps": {"swap"}, "bobs": {"transfer"}, "all": {"swap", "transfer"}}


async def test_failed_transactions_make_no_event(node):
    async with AsyncClient(node.url) as client, client.subscribe("events", {"address": ALICE_TEXT}) as mine:
        greedy = txbuild.swap(["AAA", "BBB"], E18, 10**30, node.app.height + 10**6)  # after the pool test
        record = await client.send_and_wait(await client.sign(ALICE, greedy))
        assert record["status"] == "failed"
        ok = await client.send_and_wait(await client.sign(ALICE, txbuild.transfer(BOB_TEXT, 1)))
        note = await next_note(mine)
        assert [e["tx"] for e in note.result["events"]] == [ok["hash"]]


async def test_pending_transactions_batch_hashes(node):
    async with AsyncClient(node.url) as client, client.subscribe("pendingTransactions") as pending:
        stx = await client.sign(ALICE, txbuild.transfer(BOB_TEXT, 2))
        await client.submit(stx)
        hashes: list[str] = []
        while "0x" + stx.hash.hex() not in hashes:
            hashes += (await next_note(pending)).result["hashes"]


def test_the_blocking_client_gives_a_generator(node):
    import threading

    stop = threading.Event()

    def blocks() -> None:  # the generator subscribes on its first next(): keep heads coming
        while not stop.wait(0.1):
            node.make_block()

    maker = threading.Thread(target=blocks, daemon=True)
    with Client.connect(node.url) as client:
        heads = client.subscribe("newHeads")
        maker.start()
        try:
            first, second = next(heads).result["height"], next(heads).result["height"]
            assert second == first + 1
        finally:
            heads.close()
            stop.set()
            maker.join(5)


BAD_SUBSCRIBES = [
    (["bogus"], -32602, "unknown topic 'bogus'"),
    ([], -32602, "takes [topic]"),
    (["newHeads", {"x": 1}], -32602, "newHeads takes no filter"),
    (["tx"], -32602, 'tx takes a filter {"hash"'),
    (["tx", {"hash": "0x12"}], -32602, "hash must be 32 bytes"),
    (["events", "AAA/BBB"], -32602, "events filter must be an object"),
    (["events", {"address": "qnx1nope"}], -32602, "address"),
    (["events", {"pool": "AAABBB"}], -32602, 'pool id like "AAA/BBB"'),
    (["events", {"kinds": ["steal"]}], -32602, "unknown event kind 'steal'"),
    (["events", {"kinds": []}], -32602, "kinds must be a list of 1-32"),
    (["events", {"colour": "red"}], -32602, "unknown field(s)"),
    (["events", {"contract": "qnx1x"}], -32602, "contract: 'qnx1x' is not a valid bech32 address"),
]


async def test_bad_subscriptions_get_specific_errors_and_change_nothing(node):
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url(node)) as ws:
        for i, (params, code, message) in enumerate(BAD_SUBSCRIBES):
            reply = await call(ws, "qenex_subscribe", *params, request_id=i + 1)
            assert reply["error"]["code"] == code and message in reply["error"]["message"], (params, reply)
        assert not (node.hub.heads or node.hub.events or node.hub.txs or node.hub.pending)
        for raw, code, message in [("not json", -32700, "not JSON"), ("[1, 2]", -32600, "batches"),
                                   ("[" * 100 + "]" * 100, -32700, "nested deeper"),
                                   ('{"jsonrpc": "2.0", "id": 5, "method": "qenex_getAccount", "params": []}',
                                    -32601, "not found on /ws"),
                                   ('{"jsonrpc": "2.0", "id": 6, "method": "qenex_subscribe", "params": {}}',
                                    -32602, "positional params")]:
            await ws.send_str(raw)
            reply = json.loads((await asyncio.wait_for(ws.receive(), 10)).data)
            assert reply["error"]["code"] == code and message in reply["error"]["message"], (raw, reply)
        assert (await call(ws, "qenex_unsubscribe", "0xnot-mine", request_id=99))["result"] is False
        assert (await call(ws, "qenex_subscribe", "newHeads", request_id=100))["result"].startswith("0x")


async def test_ten_thousand_subscriptions_from_one_client(node):
    """The per-connection cap answers -32007 past it; the call rate closes the flood with 1008; the node
    keeps the subscriptions it granted to no one else and serves the next client."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(node)) as ws:
            for i in range(10_000):
                await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": i, "method": "qenex_subscribe",
                                              "params": ["newHeads"]}))
            granted, limited = 0, 0
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
                reply = json.loads(message.data)
                if "result" in reply:
                    granted += 1
                elif reply["error"]["code"] == SUBSCRIPTION_LIMIT:
                    assert "holds 4 subscriptions" in reply["error"]["message"]
                    limited += 1
            assert ws.close_code == 1008
            assert granted == LIMITS.max_subscriptions
            # the burst, and what the bucket refilled while 10,000 frames went out; then the cut
            assert LIMITS.call_burst - granted <= limited < LIMITS.call_burst + 100
        await asyncio.sleep(0.2)
        assert not node.hub.heads  # the kicked client's subscriptions are gone
        async with AsyncClient(node.url) as client, client.subscribe("newHeads") as heads:
            node.make_block()
            assert (await next_note(heads)).topic == "newHeads"


async def test_frames_too_large_binary_and_idle_connections_are_closed(node):
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(node)) as ws:
            await ws.send_str(json.dumps({"pad": "x" * 4096}))
            await asyncio.wait_for(ws.receive(), 10)
            assert ws.close_code == 1009  # message too big
        async with session.ws_connect(ws_url(node)) as ws:
            await ws.send_bytes(b"\x00\x01")
            await asyncio.wait_for(ws.receive(), 10)
            assert ws.close_code == 1003
        async with session.ws_connect(ws_url(node)) as ws:  # subscribes to nothing: closed after idle_s
            message = await asyncio.wait_for(ws.receive(), 10)
            assert message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED) and ws.close_code == 1000
        async with session.get(ws_url(node).replace("ws://", "http://")) as plain:
            body = await plain.json()
            assert plain.status == 400 and "expects a WebSocket upgrade" in body["error"]["message"]


async def test_too_many_clients_are_refused_before_the_upgrade(node):
    async with aiohttp.ClientSession() as session:
        sockets = []
        try:
            for _ in range(LIMITS.max_clients):
                ws = await session.ws_connect(ws_url(node))
                sockets.append(ws)
                assert "result" in await call(ws, "qenex_subscribe", "newHeads")
            with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
                await session.ws_connect(ws_url(node))
            assert refused.value.status == 503
            with Client.connect(node.url) as client:  # the HTTP side is unaffected
                assert client.status()["height"] == node.app.height
        finally:
            for ws in sockets:
                await ws.close()


# -- a subscriber that reads nothing -------------------------------------------------------------


class StuckSocket:
    """A WebSocket whose peer reads nothing: every send waits forever once the first went out."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed_with: tuple[int, bytes] | None = None
        self.closed = False

    async def send_str(self, text: str) -> None:
        self.sent.append(text)
        await asyncio.Event().wait()

    async def close(self, *, code: int, message: bytes) -> None:
        self.closed_with = (code, message)
        await asyncio.Event().wait()  # the close frame never drains either


class FakeTransport:
    aborted = False

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True


class FakeRequest:
    remote = "127.0.0.1"

    def __init__(self) -> None:
        self.transport = FakeTransport()


async def test_a_subscriber_that_cannot_keep_up_is_closed_with_4008_and_never_waited_on():
    limits = WsLimits(queue_messages=4, close_timeout_s=0.2)
    hub = SubscriptionHub(receipts=lambda h: (), lookup_tx=lambda h: {}, limits=limits)
    stuck, request = StuckSocket(), FakeRequest()
    slow = _Client(hub, stuck, request)  # type: ignore[arg-type]
    writer = asyncio.create_task(slow.write_loop())
    sub = _Sub("0x01", "newHeads", slow)
    slow.subs[sub.id] = hub.heads[sub.id] = sub
    for i in range(limits.queue_messages + 2):  # one in flight, four queued, then one too many
        slow.offer(f"message {i}")  # never awaits: the commit path calls this
        await asyncio.sleep(0)
    assert slow.closing and hub.stats["too_slow"] == 1 and not hub.heads
    await asyncio.sleep(0.4)
    assert stuck.closed_with == (TOO_SLOW_CLOSE_CODE, b"subscriber too slow")
    assert request.transport.aborted  # the close frame did not drain: the connection is cut
    writer.cancel()


async def test_the_client_raises_subscriber_too_slow_on_4008(node):
    """End to end: the node's 4008 reaches the client as SubscriberTooSlow."""
    async with AsyncClient(node.url) as client, client.subscribe("newHeads") as heads:
        await asyncio.sleep(0.1)
        victim = next(iter(node.hub.heads.values())).client
        node.loop.call_soon_threadsafe(victim.kick, TOO_SLOW_CLOSE_CODE, "subscriber too slow")
        with pytest.raises(SubscriberTooSlow):
            await next_note(heads)


def test_event_filters_compare_by_value():
    assert EventFilter(None, "AAA/BBB", frozenset({"swap"})) == EventFilter(None, "AAA/BBB", frozenset({"swap"}))
    assert EventFilter().any and not EventFilter(pool="AAA/BBB").any


async def test_an_unreachable_ws_is_rpc_unavailable():
    from node.client import RPCUnavailable

    async with AsyncClient("http://127.0.0.1:9/", timeout=2) as client:
        with pytest.raises(RPCUnavailable):
            await client.subscribe("newHeads").open()


# -- qenexd watch ---------------------------------------------------------------------------------


def _watch(node, *args: str):
    from click.testing import CliRunner

    from cli.main import cli

    return CliRunner().invoke(cli, ["watch", *args, "--rpc", node.url], catch_exceptions=False)


def _keep_committing(node):
    import threading

    stop = threading.Event()

    def run() -> None:
        while not stop.wait(0.1):
            node.make_block()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return stop, thread


def test_watch_heads_and_events_print_one_line_each(node):
    stop, thread = _keep_committing(node)
    try:
        out = _watch(node, "heads", "--count", "2")
        assert out.exit_code == 0, out.output
        lines = out.output.splitlines()
        assert len(lines) == 2 and all(line.startswith("height ") and " txs " in line for line in lines)
        as_json = _watch(node, "heads", "--count", "1", "--json")
        assert json.loads(as_json.output)["height"] >= 1
    finally:
        stop.set()
        thread.join(5)


def test_watch_tx_until_final_and_bad_filters_are_one_line(node):
    with Client.connect(node.url) as client:
        stx = client.sign(ALICE, txbuild.transfer(BOB_TEXT, 3))
        record = client.send_and_wait(stx)
    out = _watch(node, "tx", record["hash"])
    assert out.exit_code == 0 and f"{record['hash']}  ok at height {record['height']:,}" in out.output
    bad = _watch(node, "events", "--kind", "steal")
    assert bad.exit_code == 1 and "unknown event kind 'steal'" in bad.output and "Traceback" not in bad.output
    bad = _watch(node, "tx", "0x12")
    assert bad.exit_code == 1 and "hash must be 32 bytes" in bad.output
