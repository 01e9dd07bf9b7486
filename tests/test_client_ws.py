"""Subscriptions (``AsyncClient.subscribe`` and the blocking generator) against a tiny aiohttp WebSocket server
speaking the fixed protocol: qenex_subscribe [topic, filter?] -> id; qenex_subscription notifications;
qenex_unsubscribe(id); close code 4008 = subscriber too slow.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import pytest
from aiohttp import WSCloseCode, web

from node.client import AsyncClient, Client, RPCClientError, RPCUnavailable, SubscriberTooSlow, SubscriptionClosed

pytestmark = pytest.mark.timeout(60)


class FakeWs:
    """``topic`` decides the server's behaviour; ``requests`` records what clients sent."""

    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.unsubscribed = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            call = json.loads(message.data)
            self.requests.append(call)
            if call["method"] == "qenex_unsubscribe":
                await ws.send_json({"jsonrpc": "2.0", "id": call["id"], "result": True})
                self.unsubscribed.set()
                continue
            topic = call["params"][0]
            if topic == "silent":
                continue
            if topic == "bogus":
                await ws.send_json({"jsonrpc": "2.0", "id": call["id"],
                                    "error": {"code": -32602, "message": "unknown topic 'bogus'"}})
                continue
            await ws.send_json({"jsonrpc": "2.0", "id": call["id"], "result": "sub-1"})
            await self.notify(ws, "sub-other", 99)  # another subscription's: not ours
            for height in (1, 2, 3, 4, 5):
                await self.notify(ws, "sub-1", height)
            if topic == "slow":
                await ws.close(code=4008, message=b"subscriber too slow")
            elif topic == "bye":
                await ws.close(code=WSCloseCode.GOING_AWAY)
        return ws

    @staticmethod
    async def notify(ws: web.WebSocketResponse, sub: str, height: int) -> None:
        await ws.send_json({"jsonrpc": "2.0", "method": "qenex_subscription",
                            "params": {"subscription": sub, "topic": "newHeads", "result": {"height": height}}})


@pytest.fixture()
async def fake():
    server = FakeWs()
    app = web.Application()
    app.router.add_get("/ws", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"  # type: ignore[union-attr]
    yield server
    await runner.cleanup()


async def test_notifications_in_order_then_unsubscribe(fake):
    async with AsyncClient(fake.url) as client:
        assert client.ws_url == fake.url.replace("http://", "ws://") + "ws"
        async with client.subscribe("events", {"pool": "AAA/BBB", "kinds": ["swap"]}) as events:
            assert events.id == "sub-1"
            got = []
            async for note in events:
                got.append(note.result["height"])
                assert note.subscription == "sub-1" and note.topic == "newHeads"
                if len(got) == 3:
                    break
        assert got == [1, 2, 3]
        await asyncio.wait_for(fake.unsubscribed.wait(), 10)
    assert fake.requests[0]["method"] == "qenex_subscribe"
    assert fake.requests[0]["params"] == ["events", {"pool": "AAA/BBB", "kinds": ["swap"]}]
    assert fake.requests[-1] == {"jsonrpc": "2.0", "id": 2, "method": "qenex_unsubscribe", "params": ["sub-1"]}


async def test_no_filter_sends_the_topic_alone_and_iteration_opens_lazily(fake):
    async with AsyncClient(fake.url) as client:
        subscription = client.subscribe("newHeads")
        first = await subscription.__anext__()
        assert first.result == {"height": 1} and fake.requests[0]["params"] == ["newHeads"]
        await subscription.aclose()
        with pytest.raises(StopAsyncIteration):
            await subscription.__anext__()


async def test_close_4008_is_subscriber_too_slow_and_other_closes_are_subscription_closed(fake):
    async with AsyncClient(fake.url) as client:
        with pytest.raises(SubscriberTooSlow) as slow:
            async with client.subscribe("slow") as notes:
                async for _ in notes:
                    pass
        assert slow.value.code == 4008 and "too slow" in str(slow.value)
        with pytest.raises(SubscriptionClosed) as closed:
            async for _ in client.subscribe("bye"):
                pass
        assert closed.value.code == 1001 and not isinstance(closed.value, SubscriberTooSlow)


async def test_a_refused_or_unanswered_subscribe_and_no_server(fake):
    async with AsyncClient(fake.url, timeout=0.5) as client:
        with pytest.raises(RPCClientError) as refused:
            await client.subscribe("bogus").open()
        assert refused.value.code == -32602 and "bogus" in refused.value.message
        with pytest.raises(RPCUnavailable, match="did not answer qenex_subscribe"):
            await client.subscribe("silent").open()
    async with AsyncClient(fake.url, ws_url=fake.url.replace("http://", "ws://") + "nope") as client:
        with pytest.raises(RPCUnavailable, match="cannot subscribe"):
            await client.subscribe("newHeads").open()


async def test_the_blocking_generator_yields_unsubscribes_on_close_and_raises_the_close(fake):
    client = Client(fake.url)

    def take(topic: str, count: int, queue_size: int = 256) -> list[int]:
        with contextlib.closing(client.subscribe(topic, queue_size=queue_size)) as notes:
            return [note.result["height"] for _, note in zip(range(count), notes)]

    assert await asyncio.to_thread(take, "newHeads", 3) == [1, 2, 3]
    await asyncio.wait_for(fake.unsubscribed.wait(), 10)
    assert await asyncio.to_thread(take, "newHeads", 5, 1) == [1, 2, 3, 4, 5]  # a queue of one: in order, none lost
    with pytest.raises(SubscriberTooSlow):
        await asyncio.to_thread(take, "slow", 100)
    with pytest.raises(RPCClientError, match="bogus"):
        await asyncio.to_thread(take, "bogus", 1)
