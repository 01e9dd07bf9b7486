"""A peer process killed with SIGKILL and restarted on the same port is
redialled by the survivor within a few seconds."""

from __future__ import annotations

import asyncio
import json
import sys

import pytest

from p2p import P2PConfig, P2PService
from tests.ports import free_port

ECHO = "/test/echo/1.0.0"

PEER_SCRIPT = r"""
import asyncio, json, sys
from p2p import P2PConfig, P2PService

async def echo(peer, data):
    return b"echo:" + data

async def main():
    service = P2PService(
        P2PConfig(identity_seed=b"\x01" * 32, listen_port=int(sys.argv[1])),
        on_gossip=lambda *_: None, on_direct=lambda *_: None, request_handlers={"/test/echo/1.0.0": echo},
    )
    await service.start()
    print(json.dumps({"addr": service.listen_addrs[0], "peer_id": service.peer_id}), flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def spawn(port: int) -> tuple[asyncio.subprocess.Process, dict]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", PEER_SCRIPT, str(port), stdout=asyncio.subprocess.PIPE
    )
    assert proc.stdout is not None
    hello = json.loads(await asyncio.wait_for(proc.stdout.readline(), 20))
    return proc, hello


async def until(predicate, timeout: float, what: str) -> float:
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not predicate():
        if loop.time() - start > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
    return loop.time() - start


@pytest.mark.slow
async def test_killed_peer_is_redialled_after_restart() -> None:
    async def body() -> None:
        port = free_port()
        procs: list[asyncio.subprocess.Process] = []
        survivor: P2PService | None = None
        try:
            proc, hello = await spawn(port)
            procs.append(proc)
            survivor = P2PService(
                P2PConfig(identity_seed=b"\x02" * 32, bootstrap=(hello["addr"],)),  # default 1 s redial
                on_gossip=lambda *_: None,
                on_direct=lambda *_: None,
            )
            await survivor.start()
            peer = hello["peer_id"]
            await until(lambda: peer in survivor.connected_peers(), 5, "first connection")
            assert await survivor.request(peer, ECHO, b"1") == b"echo:1"

            proc.kill()  # SIGKILL: no goodbye
            await proc.wait()
            await until(lambda: peer not in survivor.connected_peers(), 5, "survivor notices")
            await asyncio.sleep(2)  # redials fail meanwhile and feed the negative cache

            proc, hello = await spawn(port)
            procs.append(proc)
            took = await until(lambda: peer in survivor.connected_peers(), 6, "redial after restart")
            assert took < 4, took
            assert await survivor.request(peer, ECHO, b"2") == b"echo:2"
            assert survivor.stats()["dial_failures"] >= 1
        finally:
            if survivor is not None:
                await survivor.stop()
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    await asyncio.wait_for(body(), 60)
