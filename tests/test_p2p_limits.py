"""The p2p layer's bounds (issue 7, finding 2): gossip validated before
relay, direct streams only from allowed peers, a cap on live inbound
connections, bounded trio -> asyncio inboxes, ban()."""

from __future__ import annotations

import asyncio

from p2p import P2PConfig, P2PService, RejectMessage
from p2p.inbox import BoundedInbox
from tests.test_p2p_service import FAST, TOPIC, Inbox, seed, stopping, until


def service(n: int, *, bootstrap: tuple[str, ...] = (), validators=None, **overrides: object) -> tuple[P2PService, Inbox]:
    inbox = Inbox()
    options: dict[str, object] = dict(FAST)
    options.update(overrides)
    config = P2PConfig(identity_seed=seed(n), bootstrap=bootstrap, topics=(TOPIC,), **options)  # type: ignore[arg-type]
    return (
        P2PService(
            config,
            on_gossip=lambda topic, peer, data: inbox.gossip.append((topic, peer, data)),
            on_direct=lambda peer, data: inbox.direct.append((peer, data)),
            gossip_validators=validators,
        ),
        inbox,
    )


def refuse_bad(data: bytes) -> None:
    if data.startswith(b"bad"):
        raise RejectMessage("starts with bad", 7)


async def test_gossip_is_validated_before_it_is_relayed() -> None:
    async def body() -> None:
        hub, hub_inbox = service(1, validators={TOPIC: refuse_bad})
        await hub.start()
        a, _ = service(2, bootstrap=(hub.listen_addrs[0],))
        c, c_inbox = service(3, bootstrap=(hub.listen_addrs[0],))
        async with stopping(hub, a, c):
            await a.start()
            await c.start()
            await until(lambda: len(hub.connected_peers()) == 2, what="star")
            for attempt in range(100):  # until the mesh has formed
                await a.publish(TOPIC, b"good-%d" % attempt)
                await asyncio.sleep(0.05)
                if any(d.startswith(b"good") for _, _, d in c_inbox.gossip):
                    break
            for i in range(5):
                await a.publish(TOPIC, b"bad-%d" % i)
            await a.publish(TOPIC, b"good-last")
            await until(lambda: any(d == b"good-last" for _, _, d in c_inbox.gossip), what="last good")
            await asyncio.sleep(0.3)
            assert not [d for _, _, d in c_inbox.gossip if d.startswith(b"bad")]  # never relayed
            assert not [d for _, _, d in hub_inbox.gossip if d.startswith(b"bad")]  # nor delivered
            assert hub.stats()["gossip_rejected"] == 5
            assert hub.stats()["penalties"] >= 5

    await asyncio.wait_for(body(), 40)


async def test_direct_streams_only_from_allowed_peers_and_ban() -> None:
    async def body() -> None:
        victim, inbox = service(1, ban_threshold=50)
        await victim.start()
        friend, _ = service(2, bootstrap=(victim.listen_addrs[0],))
        stranger, _ = service(3, bootstrap=(victim.listen_addrs[0],))
        async with stopping(victim, friend, stranger):
            await friend.start()
            await stranger.start()
            await until(lambda: len(victim.connected_peers()) == 2, what="connected")
            # The dialers record the connection on their own threads: wait for
            # both ends, or send_direct can race the dialer's bookkeeping.
            await until(lambda: victim.peer_id in friend.connected_peers()
                        and victim.peer_id in stranger.connected_peers(), what="dialers connected")
            victim.set_direct_peers([friend.peer_id])
            await friend.send_direct(victim.peer_id, b"from a friend")
            await stranger.send_direct(victim.peer_id, b"from a stranger")
            await until(lambda: victim.stats()["direct_refused_not_allowed"] >= 1, what="refusal")
            await until(lambda: len(inbox.direct) == 1, what="friend's frame")
            assert inbox.direct == [(friend.peer_id, b"from a friend")]
            assert victim.stats()["penalties"] >= 1
            victim.ban(friend.peer_id, "test")
            await until(lambda: friend.peer_id in victim.banned_peers(), what="ban")
            await until(lambda: friend.peer_id not in victim.connected_peers(), what="disconnect")

    await asyncio.wait_for(body(), 30)


async def test_refusals_cost_nothing_while_the_owner_says_its_allowlist_may_lag() -> None:
    """A node catching up cannot know who joined the validator set at heights it has not reached
    (node.runtime): with penalize_others=False their streams are still refused unread, but never
    held against them (the default penalises: the test above)."""
    async def body() -> None:
        victim, inbox = service(1)
        await victim.start()
        joiner, _ = service(2, bootstrap=(victim.listen_addrs[0],))
        async with stopping(victim, joiner):
            await joiner.start()
            await until(lambda: victim.peer_id in joiner.connected_peers()
                        and joiner.peer_id in victim.connected_peers(), what="connected")
            victim.set_direct_peers([], penalize_others=False)
            def settled() -> int:  # the joiner's writer is done with a frame: written or given up
                stats = joiner.stats()
                return stats.get("direct_frames_out", 0) + stats.get("direct_dropped_send_failed", 0)

            for i in range(8):  # 8 refusals at the default 25 points would ban it twice over
                await joiner.send_direct(victim.peer_id, b"too early %d" % i)
                # One frame can cost two refusals (the writer retries on a fresh stream): wait for the
                # writer too, or a frame still queued here is delivered once the joiner is allowed.
                await until(lambda: victim.stats()["direct_refused_not_allowed"] >= i + 1
                            and settled() >= i + 1, what=f"refusal {i}")
            assert inbox.direct == [] and victim.stats()["penalties"] == 0
            victim.set_direct_peers([joiner.peer_id])  # the victim reached the joiner's height
            await joiner.send_direct(victim.peer_id, b"in the set")
            await until(lambda: (joiner.peer_id, b"in the set") in inbox.direct, what="frame once allowed")
            # A refused frame whose stream the victim handles only after the change is read then (its
            # stream was accepted): all that may precede the new frame.
            assert inbox.direct[-1] == (joiner.peer_id, b"in the set")
            assert all(frame.startswith(b"too early") for _, frame in inbox.direct[:-1])
            assert joiner.peer_id in victim.connected_peers() and victim.banned_peers() == []

    await asyncio.wait_for(body(), 30)


async def test_inbound_connections_over_the_cap_are_closed() -> None:
    async def body() -> None:
        victim, _ = service(1, max_inbound_connections=2)
        await victim.start()
        peers = [service(n, bootstrap=(victim.listen_addrs[0],))[0] for n in range(2, 6)]
        async with stopping(victim, *peers):
            for peer in peers:
                await peer.start()
            await until(lambda: victim.stats()["inbound_connections_refused"] >= 2, timeout=10, what="refusals")
            await asyncio.sleep(0.5)
            assert len(victim.connected_peers()) <= 2

    await asyncio.wait_for(body(), 30)


def test_bounded_inbox_drops_the_oldest_and_counts() -> None:
    scheduled: list = []
    delivered: list = []
    dropped: list = []
    inbox = BoundedInbox("direct", 3, 100, lambda fn: scheduled.append(fn) or True, delivered.append,
                         lambda kind, size: dropped.append((kind, size)))
    for i in range(5):
        inbox.put(i, 10)
    assert len(scheduled) == 1  # one drain scheduled for the whole burst
    assert dropped == [("direct", 10), ("direct", 10)] and len(inbox) == 3
    inbox.put("big", 95)  # over the byte bound: everything older goes
    assert len(inbox) == 1 and inbox.queued_bytes == 95
    scheduled.pop()()
    assert delivered == ["big"] and len(inbox) == 0
    inbox.put("next", 1)
    assert len(scheduled) == 1


def test_bounded_inbox_delivers_in_batches() -> None:
    scheduled: list = []
    delivered: list = []
    inbox = BoundedInbox("gossip", 1000, 10**6, lambda fn: scheduled.append(fn) or True, delivered.append,
                         lambda kind, size: None)
    for i in range(150):
        inbox.put(i, 1)
    while scheduled:
        scheduled.pop()()
    assert delivered == list(range(150))


async def test_strangers_holding_the_inbound_slots_do_not_lock_out_a_validator() -> None:
    """Review: the cap exempted nobody, so idle strangers in every slot kept a
    restarted validator out.  An allowlisted peer is admitted; the oldest
    stranger is closed to make room."""
    async def body() -> None:
        victim, inbox = service(1, max_inbound_connections=2)
        await victim.start()
        strangers = [service(n, bootstrap=(victim.listen_addrs[0],))[0] for n in (2, 3)]
        validator, _ = service(9, bootstrap=(victim.listen_addrs[0],))
        victim.set_direct_peers([validator.peer_id])
        async with stopping(victim, *strangers, validator):
            for s in strangers:
                await s.start()
            await until(lambda: len(victim.connected_peers()) == 2, what="strangers in")
            await validator.start()

            async def delivered() -> bool:
                try:
                    await validator.send_direct(victim.peer_id, b"PREPARE")
                except Exception:
                    pass
                await asyncio.sleep(0.25)
                return bool(inbox.direct)

            for _ in range(40):
                if await delivered():
                    break
            assert validator.peer_id in victim.connected_peers(), "validator locked out by strangers"
            assert inbox.direct and inbox.direct[0][0] == validator.peer_id
            assert victim.stats().get("inbound_strangers_evicted", 0) >= 1
            assert len(victim.connected_peers()) <= 2  # a stranger made room; the cap holds

    await asyncio.wait_for(body(), 40)
