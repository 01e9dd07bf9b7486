"""P2PService end to end, several services in one process on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest

from p2p import (
    FrameTooLarge,
    InvalidPeerId,
    ListenFailed,
    NotConnected,
    P2PConfig,
    P2PService,
    RequestFailed,
    ServiceNotRunning,
    peer_id_from_seed,
)
from tests.ports import free_port

TOPIC = "txs"
ECHO = "/test/echo/1.0.0"
SLOW = "/test/slow/1.0.0"
BIG = "/test/big/1.0.0"
BOOM = "/test/boom/1.0.0"
FAST = dict(redial_interval_s=0.2, gossip_heartbeat_s=0.2)


def seed(n: int) -> bytes:
    return bytes([n]) * 32


@dataclass
class Inbox:
    gossip: list[tuple[str, str, bytes]] = field(default_factory=list)
    direct: list[tuple[str, bytes]] = field(default_factory=list)


async def echo(peer: str, data: bytes) -> bytes:
    return b"echo:" + peer.encode() + b":" + data


async def slow(peer: str, data: bytes) -> bytes:
    await asyncio.sleep(3)
    return data


async def big(peer: str, data: bytes) -> bytes:
    return b"x" * int(data)


async def boom(peer: str, data: bytes) -> bytes:
    raise RuntimeError("handler bug")


def make(n: int, *, bootstrap: tuple[str, ...] = (), **overrides: object) -> tuple[P2PService, Inbox]:
    inbox = Inbox()
    options: dict[str, object] = dict(FAST)
    options.update(overrides)
    config = P2PConfig(identity_seed=seed(n), bootstrap=bootstrap, topics=(TOPIC,), **options)  # type: ignore[arg-type]
    service = P2PService(
        config,
        on_gossip=lambda topic, peer, data: inbox.gossip.append((topic, peer, data)),
        on_direct=lambda peer, data: inbox.direct.append((peer, data)),
        request_handlers={ECHO: echo, SLOW: slow, BIG: big, BOOM: boom},
    )
    return service, inbox


async def until(predicate: Callable[[], bool], timeout: float = 15.0, what: str = "condition") -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def stopping(*services: P2PService) -> AsyncIterator[None]:
    try:
        yield
    finally:
        await asyncio.gather(*(s.stop() for s in services), return_exceptions=True)


async def start_star(count: int, **overrides: object) -> tuple[list[P2PService], list[Inbox]]:
    """Node 0 first; the others bootstrap from it (they are not dialled to
    each other, so gossip between them must be forwarded by node 0)."""
    hub, hub_inbox = make(1, **overrides)
    await hub.start()
    services, inboxes = [hub], [hub_inbox]
    for n in range(2, count + 1):
        service, inbox = make(n, bootstrap=(hub.listen_addrs[0],), **overrides)
        services.append(service)
        inboxes.append(inbox)
        await service.start()
    await until(lambda: len(hub.connected_peers()) == count - 1, what="star connected")
    # Each end records a connection on its own thread: wait for the spokes'
    # view too, or a spoke's send_direct can race its own bookkeeping.
    await until(lambda: all(hub.peer_id in s.connected_peers() for s in services[1:]), what="spokes connected")
    return services, inboxes


async def test_start_reports_identity_and_address() -> None:
    async def body() -> None:
        service, _ = make(7)
        async with stopping(service):
            await service.start()
            assert service.peer_id == peer_id_from_seed(seed(7))
            (addr,) = service.listen_addrs
            assert addr.startswith("/ip4/127.0.0.1/tcp/")
            assert addr.endswith(f"/p2p/{service.peer_id}")
            assert int(addr.split("/")[4]) != 0
            assert service.running
        assert not service.running
        await service.stop()  # idempotent
        with pytest.raises(ServiceNotRunning):
            await service.publish(TOPIC, b"x")
        with pytest.raises(ServiceNotRunning):
            await service.start()

    await asyncio.wait_for(body(), 20)


async def test_gossip_reaches_every_peer_but_not_the_publisher() -> None:
    async def body() -> None:
        services, inboxes = await start_star(3)
        async with stopping(*services):
            # The mesh needs a heartbeat or two after connecting: publish
            # warm-up messages until every node has heard from every other.
            async def warm(i: int) -> None:
                for attempt in range(100):
                    await services[i].publish(TOPIC, b"warm-%d-%d" % (i, attempt))
                    await asyncio.sleep(0.05)
                    if all(
                        any(p == services[i].peer_id for _, p, _ in inboxes[j].gossip)
                        for j in range(3)
                        if j != i
                    ):
                        return
                raise AssertionError(f"node {i} gossip never reached the others")

            await asyncio.gather(*(warm(i) for i in range(3)))
            for inbox in inboxes:
                inbox.gossip.clear()
            for i, service in enumerate(services):
                await service.publish(TOPIC, b"real-%d" % i)
            # A last warm-up message may still be in flight: count the real ones.
            def real(inbox: Inbox) -> list[tuple[str, str, bytes]]:
                return [g for g in inbox.gossip if g[2].startswith(b"real-")]

            await until(lambda: all(len(real(inbox)) == 2 for inbox in inboxes), what="gossip")
            for i, inbox in enumerate(inboxes):
                received = {(peer, data) for _, peer, data in real(inbox)}
                expected = {(s.peer_id, b"real-%d" % j) for j, s in enumerate(services) if j != i}
                assert received == expected
                assert all(topic == TOPIC for topic, _, _ in inbox.gossip)
                assert services[i].stats()["gossip_self_filtered"] >= 1
                stats = services[i].stats()  # payload bytes, as counted for metrics: at least the real messages
                assert stats["gossip_bytes_out"] >= len(b"real-0") and stats["gossip_bytes_in"] >= 2 * len(b"real-0")
            await asyncio.sleep(0.3)
            assert all(len(real(inbox)) == 2 for inbox in inboxes)  # no duplicates

    await asyncio.wait_for(body(), 30)


async def test_publish_bound() -> None:
    async def body() -> None:
        service, _ = make(1, max_gossip_bytes=1000)
        async with stopping(service):
            await service.start()
            with pytest.raises(FrameTooLarge) as info:
                await service.publish(TOPIC, b"x" * 1001)
            assert (info.value.size, info.value.limit) == (1001, 1000)
            await service.publish(TOPIC, b"x" * 1000)

    await asyncio.wait_for(body(), 20)


async def test_direct_frames_arrive_in_order_over_one_stream() -> None:
    async def body() -> None:
        (a, b, c), (ia, ib, ic) = await start_star(3)
        async with stopping(a, b, c):
            # A burst within the queue bound (1024 frames): nothing dropped.
            frames = [b"frame-%05d" % i + b"." * (i % 97) for i in range(1000)]
            for frame in frames:
                await b.send_direct(a.peer_id, frame)
            await until(lambda: len(ia.direct) == len(frames), what="direct frames")
            assert ia.direct == [(b.peer_id, f) for f in frames]
            assert b.stats()["direct_streams_opened"] == 1  # persistent, reused
            assert b.stats()["direct_frames_out"] == len(frames)
            assert b.stats()["direct_dropped_overflow"] == 0
            big_frame = bytes(range(256)) * 4096  # 1 MiB
            await a.send_direct(b.peer_id, big_frame)
            await a.send_direct(b.peer_id, b"")
            await until(lambda: len(ib.direct) == 2, what="big frame")
            assert ib.direct == [(a.peer_id, big_frame), (a.peer_id, b"")]
            await a.broadcast_direct(b"to-all")
            await until(lambda: (a.peer_id, b"to-all") in ic.direct and (a.peer_id, b"to-all") in ib.direct)

    await asyncio.wait_for(body(), 30)


async def test_direct_send_errors() -> None:
    async def body() -> None:
        (a, b), _ = await start_star(2, max_frame_bytes=1000)
        async with stopping(a, b):
            with pytest.raises(NotConnected) as info:
                await a.send_direct(peer_id_from_seed(seed(99)), b"x")
            assert info.value.peer_id == peer_id_from_seed(seed(99))
            with pytest.raises(FrameTooLarge):
                await a.send_direct(b.peer_id, b"x" * 1001)
            with pytest.raises(InvalidPeerId):
                await a.send_direct("not-a-peer", b"x")

    await asyncio.wait_for(body(), 20)


async def test_overflow_drops_the_oldest_and_counts_it() -> None:
    async def body() -> None:
        (a, b), (ia, _) = await start_star(2, direct_queue_frames=4)
        async with stopping(a, b):
            sent = 3000
            for i in range(sent):
                await b.send_direct(a.peer_id, b"%06d" % i + b"-" * 2000)
            stats = b.stats()
            await until(
                lambda: len(ia.direct)
                + b.stats()["direct_dropped_overflow"]
                + a.stats()["direct_dropped_backpressure"]
                == sent,
                what="all frames delivered or counted as dropped (by the sender or the receiver's inbox)",
            )
            received = [int(data[:6]) for _, data in ia.direct]
            assert received == sorted(received)  # order kept
            assert received[-1] == sent - 1  # the newest is never dropped
            assert b.stats()["direct_dropped_overflow"] > 0, stats

    await asyncio.wait_for(body(), 30)


async def test_request_response_and_its_failures() -> None:
    async def body() -> None:
        (a, b), _ = await start_star(2)
        async with stopping(a, b):
            assert await b.request(a.peer_id, ECHO, b"ping") == b"echo:" + b.peer_id.encode() + b":ping"
            answers = await asyncio.gather(*(b.request(a.peer_id, ECHO, b"%d" % i) for i in range(20)))
            assert answers == [b"echo:" + b.peer_id.encode() + b":%d" % i for i in range(20)]

            with pytest.raises(RequestFailed) as info:
                await b.request(a.peer_id, SLOW, b"x", timeout=0.5)
            assert info.value.peer_id == a.peer_id and info.value.protocol == SLOW
            assert "timeout" in info.value.reason

            with pytest.raises(RequestFailed) as info:
                await b.request(a.peer_id, "/test/unknown/1.0.0", b"x", timeout=2)
            assert "cannot open stream" in info.value.reason

            with pytest.raises(RequestFailed) as info:
                await b.request(a.peer_id, BOOM, b"x", timeout=2)  # handler raised: reset
            assert a.stats()["requests_in_failed"] == 1

            with pytest.raises(RequestFailed) as info:
                await b.request(a.peer_id, ECHO, b"x" * (4 * 1024 * 1024 + 1))
            assert isinstance(info.value, FrameTooLarge) and info.value.size == 4 * 1024 * 1024 + 1
            assert info.value.peer_id == a.peer_id and "exceeds" in info.value.reason

            # A request still works after all of that.
            assert await b.request(a.peer_id, ECHO, b"again") == b"echo:" + b.peer_id.encode() + b":again"

    await asyncio.wait_for(body(), 30)


async def test_oversize_response_is_refused_by_the_requester() -> None:
    async def body() -> None:
        a, _ = make(1)
        await a.start()
        b, _ = make(2, bootstrap=(a.listen_addrs[0],), max_frame_bytes=1000)
        async with stopping(a, b):
            await b.start()
            await until(lambda: a.peer_id in b.connected_peers())
            assert len(await b.request(a.peer_id, BIG, b"1000")) == 1000
            with pytest.raises(RequestFailed) as info:
                await b.request(a.peer_id, BIG, b"1001")
            assert "exceeds 1000" in info.value.reason
            assert b.stats()["penalties"] == 1

    await asyncio.wait_for(body(), 20)


async def test_callback_errors_do_not_stop_delivery() -> None:
    async def body() -> None:
        seen: list[bytes] = []

        def flaky(peer: str, data: bytes) -> None:
            if data == b"bad":
                raise ValueError("node bug")
            seen.append(data)

        a = P2PService(P2PConfig(identity_seed=seed(1), **FAST), on_gossip=lambda *_: None, on_direct=flaky)
        await a.start()
        b, _ = make(2, bootstrap=(a.listen_addrs[0],))
        async with stopping(a, b):
            await b.start()
            await until(lambda: a.peer_id in b.connected_peers())
            for data in (b"one", b"bad", b"two"):
                await b.send_direct(a.peer_id, data)
            await until(lambda: seen == [b"one", b"two"])
            assert a.stats()["callback_errors"] == 1

    await asyncio.wait_for(body(), 20)


async def test_penalties_ban_and_disconnect_until_the_ban_expires() -> None:
    async def body() -> None:
        (a, b), _ = await start_star(2, ban_seconds=1.5)
        async with stopping(a, b):
            a.penalize(b.peer_id, "test", points=60)
            await asyncio.sleep(0.3)
            assert b.peer_id in a.connected_peers()
            a.penalize(b.peer_id, "test again", points=50)  # scores decay 1 point/s
            await until(lambda: not a.connected_peers(), what="ban disconnect")
            assert a.stats()["bans"] == 1 and a.stats()["banned_peers"] == 1
            # b keeps redialling its bootstrap peer; a keeps refusing while
            # the ban lasts, then lets it back in.
            for _ in range(6):
                await asyncio.sleep(0.1)
                assert b.peer_id not in a.connected_peers()
            await until(lambda: b.peer_id in a.connected_peers(), timeout=5, what="reconnect after ban")
            # each side learns of the new connection on its own schedule
            await until(lambda: a.peer_id in b.connected_peers(), timeout=5, what="b sees the reconnection")
            await b.send_direct(a.peer_id, b"back")

    await asyncio.wait_for(body(), 20)


async def test_peer_restarted_on_the_same_port_is_redialled() -> None:
    async def body() -> None:
        port = free_port()
        a, _ = make(1, listen_port=port, redial_interval_s=1.0, gossip_heartbeat_s=1.0)
        await a.start()
        b, ib = make(2, bootstrap=(a.listen_addrs[0],), redial_interval_s=1.0, gossip_heartbeat_s=1.0)
        a2, ia2 = make(1, listen_port=port, redial_interval_s=1.0, gossip_heartbeat_s=1.0)
        async with stopping(a, b, a2):
            await b.start()
            await until(lambda: a.peer_id in b.connected_peers())
            await b.send_direct(a.peer_id, b"before")
            await a.stop()
            await until(lambda: not b.connected_peers(), what="b notices a is gone")
            await asyncio.sleep(1.5)  # b's redials fail meanwhile (negative cache)
            await a2.start()
            assert a2.listen_addrs == a.listen_addrs
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            await until(lambda: a2.peer_id in b.connected_peers(), timeout=5, what="redial")
            assert loop.time() - t0 < 4
            await b.send_direct(a2.peer_id, b"after")
            await until(lambda: ia2.direct == [(b.peer_id, b"after")])
            await a2.send_direct(b.peer_id, b"reply")
            await until(lambda: ib.direct == [(a2.peer_id, b"reply")])
            assert b.stats()["dial_failures"] >= 1

    await asyncio.wait_for(body(), 30)


async def test_listen_failure_is_reported() -> None:
    async def body() -> None:
        a, _ = make(1)
        await a.start()
        port = int(a.listen_addrs[0].split("/")[4])
        b, _ = make(2, listen_port=port)
        async with stopping(a, b):
            with pytest.raises(ListenFailed) as info:
                await b.start()
            assert info.value.address == f"/ip4/127.0.0.1/tcp/{port}"
            assert not b.running

    await asyncio.wait_for(body(), 20)


async def test_idle_direct_stream_outlives_the_frame_timeout() -> None:
    """The body timeout applies to a started frame only: a stream that sits
    idle between frames stays open and is reused."""

    async def body() -> None:
        (a, b), (ia, _) = await start_star(2, frame_body_timeout_s=0.3)
        async with stopping(a, b):
            await b.send_direct(a.peer_id, b"one")
            await until(lambda: len(ia.direct) == 1)
            await asyncio.sleep(1.0)
            await b.send_direct(a.peer_id, b"two")
            await until(lambda: len(ia.direct) == 2)
            stats = b.stats()
            assert stats["direct_streams_opened"] == 1 and stats["direct_stream_failures"] == 0
            assert a.stats()["penalties"] == 0

    await asyncio.wait_for(body(), 20)


async def test_send_then_stop_delivers_the_queue() -> None:
    async def body() -> None:
        (a, b), (ia, _) = await start_star(2)
        async with stopping(a, b):
            for i in range(100):
                await b.send_direct(a.peer_id, b"%d" % i)
            await b.stop()
            await until(lambda: len(ia.direct) == 100)

    await asyncio.wait_for(body(), 20)
