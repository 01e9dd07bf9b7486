"""Garbage for a live qenexd node: every libp2p-level attack of
tests/test_p2p_hostile.py, plus well-framed garbage at the node's own
protocols (tx gossip, consensus frames, block-sync requests)."""

from __future__ import annotations

import asyncio
import random
from typing import Callable

import trio

from node.runtime import TX_TOPIC
from node.sync import BLOCKS_PROTOCOL, STATUS_PROTOCOL
from p2p import P2PConfig, P2PService
from p2p.errors import P2PError
from tests.test_p2p_hostile import ATTACKS, _attack, raw_tcp_garbage


async def _application_garbage(victim_addr: str) -> int:
    victim_id = victim_addr.rsplit("/p2p/", 1)[1]
    rng = random.Random(7)
    peer = P2PService(
        P2PConfig(identity_seed=bytes([77]) * 32, bootstrap=(victim_addr,), topics=(TX_TOPIC,),
                  redial_interval_s=0.2, gossip_heartbeat_s=0.2),
        on_gossip=lambda *a: None,
        on_direct=lambda *a: None,
        request_handlers={},
    )
    sent = 0
    try:
        await peer.start()
        for _ in range(100):
            if victim_id in peer.connected_peers():
                break
            await asyncio.sleep(0.05)
        for _ in range(20):
            try:
                await peer.publish(TX_TOPIC, rng.randbytes(300))       # not a tx batch
                await peer.send_direct(victim_id, rng.randbytes(200))  # not a consensus message
            except P2PError:
                break  # the victim penalised us into a ban: exactly what it should do
            sent += 2
            await asyncio.sleep(0.02)
        for protocol in (BLOCKS_PROTOCOL, STATUS_PROTOCOL):
            try:
                await peer.request(victim_id, protocol, rng.randbytes(100), timeout=3.0)
            except P2PError:
                pass  # the victim resets the stream: that is the point
            sent += 1
    finally:
        await peer.stop()
    return sent


def send_garbage_to(victim_addr: str, timeout: float = 30.0) -> dict[str, int]:
    async def main() -> dict[str, int]:
        await asyncio.gather(
            *(
                asyncio.to_thread(trio.run, _attack, victim_addr, bytes([150 + i]) * 32, action)
                for i, action in enumerate(ATTACKS)
            ),
            return_exceptions=True,  # an attacker cut off by the victim is a success
        )
        await raw_tcp_garbage(victim_addr)
        app_frames = await _application_garbage(victim_addr)
        return {"attempts": len(ATTACKS) + 1 + app_frames}

    return asyncio.run(asyncio.wait_for(main(), timeout))


# -- valid-but-expensive payloads (issue 7, finding 2) ------------------------------


def nested_empty_arrays(size: int) -> bytes:
    """Valid, canonical msgpack with one object per byte: 8 MiB of it cost
    the old codec 9.6 s of CPU and +1.15 GiB before it was refused."""
    groups, total = [], 3
    while total + 3 < size:
        n = min(60_000, size - total - 3)
        groups.append(b"\xdc" + n.to_bytes(2, "big") + b"\x90" * n)
        total += 3 + n
    return b"\xdc" + len(groups).to_bytes(2, "big") + b"".join(groups)


def _attacker(seed: int, victim_addr: str, status_reply: bytes | None, max_frame: int) -> P2PService:
    async def serve_status(peer: str, data: bytes) -> bytes:
        assert status_reply is not None
        return status_reply

    return P2PService(
        P2PConfig(identity_seed=bytes([seed]) * 32, bootstrap=(victim_addr,), topics=(TX_TOPIC,),
                  redial_interval_s=0.5, gossip_heartbeat_s=0.5, max_frame_bytes=max_frame),
        on_gossip=lambda *a: None,
        on_direct=lambda *a: None,
        request_handlers={STATUS_PROTOCOL: serve_status} if status_reply is not None else {},
    )


async def _expensive_attack(victim_addr: str, duration_s: float, min_s: float,
                            done: Callable[[list[str]], bool] | None) -> dict[str, object]:
    """Three hostile peers for duration_s: one sends 1 MiB proposal-typed
    frames of nested empty arrays; two answer the victim's status requests,
    one with a 200-byte reply of 200 objects, one with 8 MiB of them.

    With ``done``, the attack ends early, after at least min_s, once
    ``done(attacker_ids)`` holds (say, the victim has banned them all)."""
    victim_id = victim_addr.rsplit("/p2p/", 1)[1]
    big = nested_empty_arrays(1024 * 1024)
    frame = b"\x93\x01\x01" + big  # claims to be a PROPOSAL: the type with the largest limits
    consensus = _attacker(91, victim_addr, None, 4 * 1024 * 1024)
    small_status = _attacker(92, victim_addr, nested_empty_arrays(200), 4 * 1024 * 1024)
    huge_status = _attacker(93, victim_addr, nested_empty_arrays(8 * 1024 * 1024), 9 * 1024 * 1024)
    peers = (consensus, small_status, huge_status)
    sent = 0
    loop = asyncio.get_running_loop()
    start = loop.time()
    try:
        for peer in peers:
            await peer.start()
        start = loop.time()
        deadline = start + duration_s
        while loop.time() < deadline:
            if done is not None and loop.time() >= start + min_s and done([p.peer_id for p in peers]):
                break
            if victim_id in consensus.connected_peers():
                try:
                    await consensus.send_direct(victim_id, frame)
                    sent += 1
                except P2PError:
                    pass
            await asyncio.sleep(0.25)
    finally:
        await asyncio.gather(*(p.stop() for p in peers), return_exceptions=True)
    return {
        "consensus_frames_sent": sent,
        "attacker_ids": [p.peer_id for p in peers],
        "seconds": round(loop.time() - start, 1),
    }


def expensive_attack(victim_addr: str, duration_s: float, *, min_s: float = 0.0,
                     done: Callable[[list[str]], bool] | None = None) -> dict[str, object]:
    return asyncio.run(asyncio.wait_for(_expensive_attack(victim_addr, duration_s, min_s, done), duration_s + 30))
