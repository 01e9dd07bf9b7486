"""Fuzz a live node's JSON-RPC server and watch that it keeps finalizing.

    python bench/fuzz.py --dir testnet --cases 100000     # a running `qenexd testnet start --dir testnet`
    python bench/fuzz.py --cases 100000                   # starts (and stops) its own 4-validator testnet

Sends ``--cases`` requests to node ``--node``: random, malformed, deep and
huge params for every method, garbage and deep raw transactions (and
mutated valid ones), garbage bodies, batches, and raw HTTP junk.  Prints the
cases sent, crashes (the node process exited), internal errors (-32603, an
HTTP 500, or a body that is not JSON-RPC), the answers by error code, and the
node's block rate before, during and after.  Nothing here asserts; it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node import txbuild  # noqa: E402
from node.client import AsyncClient  # noqa: E402
from state.keyfile import load_keyfile  # noqa: E402

METHODS = [
    "qenex_status", "qenex_getAccount", "qenex_getBlock", "qenex_getTransaction", "qenex_sendTransaction",
    "qenex_getValidators", "qenex_getMempool", "qenex_getTransactionProof", "qenex_getToken", "qenex_getParams",
    "qenex_getPool", "qenex_listPools", "qenex_quoteSwap", "qenex_getTwap", "qenex_getLiquidityPosition",
    "qenex_getPoolHistory", "qenex_riskScore", "qenex_riskModel", "qenex_predictPrice",
]
NAMES = ["address", "height", "full", "hash", "raw", "limit", "symbol", "pool", "token_in", "token_out", "amount_in",
         "path", "max_hops", "from_height", "to_height", "window_seconds"]


class Cases:
    """A seeded stream of (kind, bytes-to-send) cases."""

    def __init__(self, seed: int, valid_raws: list[bytes], address: str) -> None:
        self.rnd = random.Random(seed)
        self.raws = valid_raws
        self.near = ["latest", "²", "٣", "9" * 5000, str(2**64), "0", "-1", "1.5", "AAA", "QNX", "AAA/BBB", "QNX/AAA",
                     "\ud800", "A\udfffA", "0x", "0x" + "ab" * 32, address, address.upper(), "qnx1", 0, 1, -1, 2**64,
                     2**128, 10**400, 3, 4, True, False, None, 1.5, [], {}, ["QNX", "AAA"]]

    def text(self) -> str:
        r = self.rnd
        pool = "AZ09az/_-x" + "".join(chr(c) for c in (0x00B2, 0xD800, 0xDFFF, 0x10FFFF, 0xFF21, 0x0663, 0))
        return "".join(r.choice(pool) for _ in range(r.randint(0, 20)))

    def value(self, depth: int = 0) -> Any:
        r = self.rnd
        k = r.randrange(12 if depth < 3 else 8)
        if k == 0:
            return r.choice(self.near)
        if k == 1:
            return r.randint(-(2**70), 2**130)
        if k == 2:
            return r.random() * 10 ** r.randint(0, 300)
        if k == 3:
            return self.text()
        if k in (4, 5):
            return r.choice(self.near)
        if k == 6:
            return r.choice([None, True, False, 0, ""])
        if k == 7:
            return "0x" + r.randbytes(r.choice([0, 1, 20, 32, 33, 200])).hex()
        if k in (8, 9):
            return [self.value(depth + 1) for _ in range(r.randint(0, 4))]
        if k == 10:
            return {r.choice(NAMES + [self.text()]): self.value(depth + 1) for _ in range(r.randint(0, 3))}
        return self.deep(r.randint(5, 40))

    def deep(self, n: int) -> Any:
        v: Any = self.rnd.choice(self.near)
        for _ in range(n):
            v = [v] if self.rnd.random() < 0.5 else {"k": v}
        return v

    def raw_tx(self) -> str:
        r = self.rnd
        k = r.randrange(6)
        if k == 0:
            data = r.randbytes(r.randint(0, 400))
        elif k == 1:
            data = b"\x91" * r.randint(100, 1100) + b"\x90"  # deep arrays
        elif k == 2:
            data = b"\x81\xa1k" * r.randint(100, 800) + b"\xc0"  # deep maps
        elif k == 3 and self.raws:
            raw = bytearray(r.choice(self.raws))
            for _ in range(r.randint(1, 4)):
                raw[r.randrange(len(raw))] = r.randrange(256)
            data = bytes(raw)
        elif k == 4:
            data = b"\xdc\xff\xff" + b"\xc0" * r.randint(0, 5000)
        else:
            data = r.randbytes(r.randint(16_000, 20_000))
        return "0x" + data.hex()

    def request(self) -> dict[str, Any]:
        r = self.rnd
        method = r.choice(METHODS) if r.random() < 0.95 else self.text()
        if method in ("qenex_sendTransaction", "qenex_riskScore") and r.random() < 0.7:
            params: Any = [self.raw_tx()]
        elif r.random() < 0.6:
            params = [self.value() for _ in range(r.randint(0, 6))]
        elif r.random() < 0.8:
            params = {r.choice(NAMES): self.value() for _ in range(r.randint(0, 4))}
        else:
            params = self.value()
        req: dict[str, Any] = {"jsonrpc": r.choice(["2.0"] * 20 + ["1.0", None]), "method": method, "params": params}
        if r.random() < 0.97:
            req["id"] = r.choice([1, "x", None, r.randint(0, 10**9)])
        return req

    def next(self) -> tuple[str, bytes]:
        r = self.rnd
        k = r.random()
        if k < 0.70:
            return "call", json.dumps(self.request()).encode()
        if k < 0.82:
            return "batch", json.dumps([self.request() if r.random() < 0.9 else self.value()
                                        for _ in range(r.randint(0, 105))]).encode()
        if k < 0.88:
            opener = r.choice([b"[", b'{"a":'])
            n = r.randint(30, 200_000)
            return "deep-json", opener * n + b"1" + (b"]" if opener == b"[" else b"}") * n
        if k < 0.92:
            return "huge", b'{"jsonrpc":"2.0","id":1,"method":"qenex_getBlock","params":["' + b"9" * r.randint(
                10_000, 1_100_000) + b'"]}'
        if k < 0.99:
            return "garbage", r.randbytes(r.randint(0, 2000))
        return "http-junk", r.choice([
            b"GARBAGE\r\n\r\n", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", b"POST /nope HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}",
            b"POST / HTTP/1.1\r\nX: " + b"a" * 20_000 + b"\r\n\r\n", r.randbytes(300),
        ])


def is_json_rpc(body: Any) -> bool:
    if isinstance(body, list):
        return bool(body) and all(is_json_rpc(b) for b in body)
    return isinstance(body, dict) and body.get("jsonrpc") == "2.0" and ("result" in body or "error" in body)


def codes(body: Any) -> Iterator[int]:
    for item in body if isinstance(body, list) else [body]:
        if "error" in item:
            yield item["error"].get("code")


async def send_raw(host: str, port: int, data: bytes) -> tuple[int, bytes]:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(data)
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 15)
        status = int(head.split()[1])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        return status, await reader.readexactly(length)
    finally:
        writer.close()


async def height(client: AsyncClient) -> int:
    # the client retries once when the server closed a pooled keep-alive connection (its connection
    # cap evicts idle ones, which the fuzz fills)
    return int((await client.status())["height"])


async def block_rate(client: AsyncClient, seconds: float) -> float:
    h0, t0 = await height(client), time.monotonic()
    await asyncio.sleep(seconds)
    return (await height(client) - h0) / (time.monotonic() - t0)


def valid_raws(directory: Path, manifest: dict[str, Any], chain_id: str) -> list[bytes]:
    """Signed transfers at far-future nonces: real transactions for the mutation cases to start from."""
    alice = load_keyfile(directory / manifest["accounts"]["alice"]["keyfile"], None)
    return [txbuild.sign(alice, txbuild.transfer(bytes(20), 1), chain_id=chain_id, nonce=10**6 + i,
                         fee=10**9).encode() for i in range(20)]


async def fuzz(directory: Path, args: argparse.Namespace, alive: Any) -> None:
    manifest = json.loads((directory / "testnet.json").read_text())
    url = manifest["nodes"][args.node]["rpc"]
    host, port = url.split("//")[1].rstrip("/").split(":")
    other = url  # the victim's own height: it must keep finalizing, not just the others
    timeout = aiohttp.ClientTimeout(total=60)
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        # well-formed reads go through the client; the fuzz cases below are hand-built on purpose
        victim = AsyncClient(other, session=session)
        chain_id = (await victim.status())["chain_id"]
        cases = Cases(args.seed, valid_raws(directory, manifest, chain_id), manifest["accounts"]["alice"]["address"])
        before = await block_rate(victim, args.window)
        print(f"block rate before: {before:.2f}/s (measured on {other})", flush=True)
        kinds: collections.Counter[str] = collections.Counter()
        answers: collections.Counter[str] = collections.Counter()
        internal: list[str] = []
        transport_errors = 0
        sent = 0
        queue: asyncio.Queue[tuple[str, bytes] | None] = asyncio.Queue(maxsize=args.concurrency * 4)

        async def worker() -> None:
            nonlocal transport_errors
            while (item := await queue.get()) is not None:
                kind, data = item
                try:
                    if kind == "http-junk":
                        status, raw = await send_raw(host, int(port), data)
                    else:
                        async with session.post(url, data=data, headers={"Content-Type": "application/json"}) as r:
                            status, raw = r.status, await r.read()
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, ValueError):
                    transport_errors += 1
                    continue
                if status == 204 and not raw:
                    answers["204 (notifications only)"] += 1
                    continue
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = None
                if status >= 500 and status != 503 or not is_json_rpc(body):
                    internal.append(f"{kind}: HTTP {status} {raw[:200]!r} <- {data[:120]!r}")
                    continue
                found = list(codes(body))
                if -32603 in found:
                    internal.append(f"{kind}: -32603 <- {data[:200]!r}")
                for c in found or ["result"]:
                    answers[str(c)] += 1

        workers = [asyncio.create_task(worker()) for _ in range(args.concurrency)]
        t0 = time.monotonic()
        h0 = await height(victim)
        for _ in range(args.cases):
            if not alive():
                break
            kind, data = cases.next()
            kinds[kind] += 1
            await queue.put((kind, data))
            sent += 1
            if sent % 10_000 == 0:
                print(f"  {sent} cases, {len(internal)} internal errors, {time.monotonic() - t0:.0f} s", flush=True)
        for _ in workers:
            await queue.put(None)
        await asyncio.gather(*workers)
        elapsed = time.monotonic() - t0
        during = (await height(victim) - h0) / elapsed
        crashed = not alive()
        after = 0.0 if crashed else await block_rate(victim, args.window)
        print(f"cases: {sent} in {elapsed:.0f} s ({sent / elapsed:.0f}/s) by kind {dict(kinds)}")
        print(f"crashes: {int(crashed)}")
        print(f"internal errors (-32603 / HTTP 500 / not JSON-RPC): {len(internal)}")
        for line in internal[:10]:
            print("   ", line)
        print(f"transport errors (connection refused/reset/timeout): {transport_errors}")
        print(f"answers by code: {dict(answers.most_common())}")
        print(f"block rate: before {before:.2f}/s, during {during:.2f}/s, after {after:.2f}/s "
              f"(during/before {during / before if before else float('nan'):.2f})")
        log = directory / manifest["nodes"][args.node]["home"] / "node.log"
        if log.exists():
            print(f"victim log: {log.stat().st_size} bytes")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=None, help="a running testnet (default: start one)")
    ap.add_argument("--cases", type=int, default=100_000)
    ap.add_argument("--node", type=int, default=0, help="index of the node to fuzz")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--window", type=float, default=10.0, help="seconds to measure the block rate before/after")
    args = ap.parse_args()
    if args.dir is not None:
        pids = args.dir / "pids.json"
        pid = list(json.loads(pids.read_text()).values())[args.node] if pids.exists() else None

        def alive() -> bool:
            return pid is None or Path(f"/proc/{pid}").exists()

        asyncio.run(fuzz(args.dir, args, alive))
        return
    from tests.localnet import running_localnet

    with tempfile.TemporaryDirectory(prefix="qenex-fuzz-") as tmp, contextlib.ExitStack() as stack:
        net = stack.enter_context(running_localnet(Path(tmp)))
        proc = net.procs[args.node]
        asyncio.run(fuzz(Path(tmp), args, lambda: proc.poll() is None))


if __name__ == "__main__":
    main()
