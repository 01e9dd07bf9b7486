"""Direct-stream throughput and round trip between two P2PServices.

    python bench/p2p_direct.py [--frames 20000] [--size 1024] [--rtt 2000]

One-way: node B sends --frames frames of --size bytes to A as fast as the
queue allows (pacing on A's receive count so nothing is dropped); prints
frames/s and MiB/s. Round trip: B sends one frame, A's on_direct echoes it
back, B waits for it; prints p50/p99 over --rtt round trips.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from p2p import P2PConfig, P2PService


async def main(frames: int, size: int, rtt_count: int) -> None:
    received = 0
    echo_waiter: asyncio.Future[bytes] | None = None
    a: P2PService | None = None

    def a_on_direct(peer: str, data: bytes) -> None:
        nonlocal received
        received += 1
        if data.startswith(b"rtt"):
            assert a is not None
            asyncio.get_running_loop().create_task(a.send_direct(peer, data))

    def b_on_direct(peer: str, data: bytes) -> None:
        if echo_waiter is not None and not echo_waiter.done():
            echo_waiter.set_result(data)

    a = P2PService(P2PConfig(identity_seed=b"\x0a" * 32), on_gossip=lambda *_: None, on_direct=a_on_direct)
    await a.start()
    b = P2PService(
        P2PConfig(identity_seed=b"\x0b" * 32, bootstrap=(a.listen_addrs[0],)),
        on_gossip=lambda *_: None,
        on_direct=b_on_direct,
    )
    await b.start()
    try:
        while a.peer_id not in b.connected_peers():
            await asyncio.sleep(0.01)
        payload = b"x" * size
        window = 512  # frames in flight; below the 1024-frame queue bound
        t0 = time.perf_counter()
        for sent in range(frames):
            while sent - received >= window:
                await asyncio.sleep(0.0005)
            await b.send_direct(a.peer_id, payload)
        while received < frames:
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - t0
        print(
            f"one-way {size} B: {frames / elapsed:,.0f} frames/s, "
            f"{frames * size / elapsed / 2**20:.1f} MiB/s ({frames} frames in {elapsed:.2f}s)"
        )

        samples = []
        loop = asyncio.get_running_loop()
        for i in range(rtt_count):
            echo_waiter = loop.create_future()
            t = time.perf_counter()
            await b.send_direct(a.peer_id, b"rtt%08d" % i + payload[11:])
            await asyncio.wait_for(echo_waiter, 5)
            samples.append((time.perf_counter() - t) * 1000)
        samples.sort()
        p50 = statistics.median(samples)
        p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
        print(f"round trip {size} B: p50 {p50:.2f} ms, p99 {p99:.2f} ms ({rtt_count} samples)")
        print("drops:", b.stats()["direct_dropped_overflow"], a.stats()["direct_dropped_overflow"])
    finally:
        await b.stop()
        await a.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=20000)
    parser.add_argument("--size", type=int, default=1024)
    parser.add_argument("--rtt", type=int, default=2000)
    args = parser.parse_args()
    asyncio.run(main(args.frames, args.size, args.rtt))
