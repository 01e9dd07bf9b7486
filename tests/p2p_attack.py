"""Garbage for a live qenexd node: every libp2p-level attack of
tests/test_p2p_hostile.py, plus well-framed garbage at the node's own
protocols (tx gossip, consensus frames, block-sync requests)."""

from __future__ import annotations

import asyncio
import random

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
