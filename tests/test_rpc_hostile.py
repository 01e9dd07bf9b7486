"""Hostile RPC clients against a live validator process (issue 7, findings 1 and 3).

The victim (node0 of a 4-validator testnet) runs with RLIMIT_NOFILE 1024,
the common default.  At once: 1,100 idle connections (more than the RPC
cap, more than the descriptor limit) plus a hundred fresh ones a second,
slowloris clients trickling one header byte at a time, and loops of
transactions nested 600 deep and JSON nested 1,000 deep.  On the old code
the idle connections alone exhausted the descriptors and the consensus
driver died (OSError 24 opening the WAL); the deep requests wrote a ~3,000
line traceback each.  Here the victim keeps finalizing, ``qenex_status``
answers throughout, its descriptors stay under the limit and its log
barely grows.  The block rate with and without the attack is printed (not
asserted: the machine is shared).
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import time
from pathlib import Path

import pytest

from tests.localnet import running_localnet

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

NOFILE = 1024
IDLE = 1100
# The flood reaches its steady state (every slot held, the oldest evicted
# at 100 new connections a second) within two seconds; twelve seconds of it
# span many heights (a WAL opened at each).  The baseline only feeds the
# printed ratio, so a few seconds of it suffice.
ATTACK_S = 12.0
BASELINE_S = 3.0
LOG_GROWTH_LIMIT = 256 * 1024
STATUS_ATTEMPTS = 3  # per status probe, each on a fresh connection


def _request(payload: bytes) -> bytes:
    return b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (
        len(payload), payload)


DEEP_TX = _request(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "qenex_sendTransaction",
                               "params": ["0x" + (b"\x91" * 600 + b"\x90").hex()]}).encode())
DEEP_JSON = _request(b"[" * 1000 + b"]" * 1000)
STATUS = _request(b'{"jsonrpc":"2.0","id":1,"method":"qenex_status"}')


async def _read_answer(reader: asyncio.StreamReader) -> dict:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    return json.loads(await reader.readexactly(length))


class Attack:
    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.stop = asyncio.Event()
        self.idle: list[asyncio.StreamWriter] = []
        self.counts = {"idle_opened": 0, "slowloris_closed": 0, "deep_tx": 0, "deep_json": 0, "status": 0,
                       "status_evicted": 0}
        self.deep_codes: set[int] = set()
        self.status_latency: list[float] = []

    async def open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    async def idle_flood(self) -> None:
        for _ in range(IDLE):
            self.idle.append((await self.open())[1])
            self.counts["idle_opened"] += 1
        while not self.stop.is_set():
            for _ in range(100):
                self.idle.append((await self.open())[1])
                self.counts["idle_opened"] += 1
            await asyncio.sleep(1.0)

    async def slowloris(self) -> None:
        while not self.stop.is_set():
            reader, writer = await self.open()
            try:
                for byte in STATUS:
                    if self.stop.is_set():
                        break
                    writer.write(bytes([byte]))
                    await writer.drain()
                    await asyncio.sleep(1.0)
                    if reader.at_eof():
                        break
            except ConnectionError:
                pass
            self.counts["slowloris_closed"] += 1
            writer.close()

    async def deep(self, request: bytes, key: str) -> None:
        reader, writer = await self.open()
        while not self.stop.is_set():
            try:
                writer.write(request)
                answer = await asyncio.wait_for(_read_answer(reader), 30)
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.TimeoutError):
                writer.close()
                reader, writer = await self.open()
                continue
            self.deep_codes.add(answer["error"]["code"])
            self.counts[key] += 1
        writer.close()

    async def probe_status(self) -> None:
        while not self.stop.is_set():
            start = time.monotonic()
            for attempt in range(STATUS_ATTEMPTS):
                reader, writer = await self.open()
                writer.write(STATUS)
                try:
                    answer = await asyncio.wait_for(_read_answer(reader), 30)
                    break
                except (ConnectionError, asyncio.IncompleteReadError) as exc:
                    # Cut off before a byte of the answer: evicted by the flood
                    # before the victim had read the request (the server
                    # evicts the oldest connection not running a request).
                    # A client tries again; a cut answer fails the test.
                    if attempt == STATUS_ATTEMPTS - 1 or getattr(exc, "partial", b""):
                        raise
                    self.counts["status_evicted"] += 1
                finally:
                    writer.close()
            assert "height" in answer["result"], answer
            self.status_latency.append(time.monotonic() - start)
            self.counts["status"] += 1
            await asyncio.sleep(0.5)

    async def run(self, seconds: float) -> None:
        tasks = [asyncio.create_task(self.idle_flood())]
        tasks += [asyncio.create_task(self.slowloris()) for _ in range(20)]
        tasks += [asyncio.create_task(self.deep(DEEP_TX, "deep_tx")) for _ in range(2)]
        tasks += [asyncio.create_task(self.deep(DEEP_JSON, "deep_json"))]
        tasks += [asyncio.create_task(self.probe_status())]
        await asyncio.sleep(seconds)
        self.stop.set()
        done, pending = await asyncio.wait(tasks, timeout=5)
        for t in pending:
            t.cancel()
        for t in done:
            t.result()  # a failed status probe fails the test
        for w in self.idle:
            w.close()


def _descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_idle_slowloris_and_deep_nesting_clients_do_not_stop_a_validator(tmp_path: Path) -> None:
    with running_localnet(tmp_path) as net:
        victim = net.procs[0]
        resource.prlimit(victim.pid, resource.RLIMIT_NOFILE, (NOFILE, NOFILE))
        log_path = net.home(0) / "node.log"
        host, port = net.url(0).split("//")[1].rstrip("/").split(":")

        h0, t0 = net.height(0), time.monotonic()
        time.sleep(BASELINE_S)
        baseline = (net.height(0) - h0) / (time.monotonic() - t0)
        log_before = log_path.stat().st_size

        attack = Attack(host, int(port))
        h1, t1 = net.height(0), time.monotonic()
        max_fds = 0

        async def attack_and_watch() -> None:
            nonlocal max_fds
            runner = asyncio.create_task(attack.run(ATTACK_S))
            while not runner.done():
                max_fds = max(max_fds, _descriptors(victim.pid))
                await asyncio.sleep(0.5)
            await runner

        asyncio.run(attack_and_watch())
        during = (net.height(0) - h1) / (time.monotonic() - t1)
        assert victim.poll() is None, net.log_tail(0)
        net.wait_height(net.height(0) + 3, nodes=[0], timeout=60)  # still finalizing afterwards
        log_growth = log_path.stat().st_size - log_before
        print(f"\nblock rate: {baseline:.2f}/s without the attack, {during:.2f}/s during it "
              f"(ratio {during / baseline:.2f}); attack counts {attack.counts}; deep answers {sorted(attack.deep_codes)}; "
              f"status latency max {max(attack.status_latency):.2f} s over {len(attack.status_latency)} probes; "
              f"victim descriptors max {max_fds} (limit {NOFILE}); log growth {log_growth} bytes")
        assert during > 0, "the victim stopped finalizing under the attack"
        assert attack.counts["idle_opened"] > IDLE and attack.counts["slowloris_closed"] >= 20
        assert attack.counts["deep_tx"] > 0 and attack.counts["deep_json"] > 0 and attack.status_latency
        assert attack.deep_codes <= {-32010, -32700}, attack.deep_codes
        assert max_fds < NOFILE
        assert log_growth < LOG_GROWTH_LIMIT, net.log_tail(0)
