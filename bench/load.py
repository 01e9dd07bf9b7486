"""Sustained transfer load against a running local testnet.

    python bench/load.py --dir testnet --rate 1000 --duration 30

1. takes ``--accounts`` senders from the testnet's genesis-funded load accounts
   (``qenexd testnet init --accounts N``), or else funds fresh ones from alice,
2. pre-signs ``rate x duration`` transfers round-robin over the senders,
3. submits them at the target rate in JSON-RPC batches spread over every node,
4. follows the chain and matches committed transactions to submit times.

Prints submitted/accepted/finalized counts, finalized transfers per second
over the sustained window, and finality latency p50/p90/p99 (submit →
first RPC sight of the committed block).  Nothing here asserts; it measures.

``--ws-clients N`` keeps N WebSocket subscribers (spread over the nodes)
following ``newHeads`` for the whole run, and every fifth of them also an
``events`` feed of alice's address; ``--scrape S`` scrapes every node's
metrics every S seconds.  ``bench/overhead.py`` compares runs with and
without both.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node import rpc_calls, txbuild  # noqa: E402
from node.genesis_tools import load_dev_accounts  # noqa: E402
from node.client import AsyncClient, ClientError, RPCClientError, raw_hex  # noqa: E402
from state.crypto import PrivateKey, address_to_text  # noqa: E402
from state.keyfile import load_keyfile  # noqa: E402
from state.payloads import TxKind  # noqa: E402

MEMPOOL_FULL = -32001


async def send_batch(client: AsyncClient, raws: list[str]) -> list[object]:
    """One JSON-RPC batch of submissions: each answer, or the RPCClientError that refused it."""
    return await client.batch([rpc_calls.send_transaction(raw) for raw in raws])


def node_pids(directory: Path) -> dict[str, int]:
    """PIDs written by `qenexd testnet start` (empty if nodes run otherwise)."""
    path = directory / "pids.json"
    return json.loads(path.read_text()) if path.exists() else {}


def proc_usage(pid: int) -> tuple[float, int]:
    """(CPU seconds so far, RSS bytes) of a process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        return cpu, rss
    except (OSError, IndexError, ValueError):
        return 0.0, 0


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def watch(client: AsyncClient, i: int, manifest: dict, notes: dict[str, int]) -> None:
    """One subscriber: newHeads (and, for every fifth, alice's events) until cancelled."""
    async def follow(topic: str, flt: dict | None, key: str) -> None:
        try:
            async with client.subscribe(topic, flt) as stream:
                async for _ in stream:
                    notes[key] += 1
        except ClientError:
            notes["closed"] += 1

    feeds = [follow("newHeads", None, "heads")]
    if i % 5 == 0:
        feeds.append(follow("events", {"address": manifest["accounts"]["alice"]["address"]}, "events"))
    await asyncio.gather(*feeds)


async def scrape(session: aiohttp.ClientSession, manifest: dict, every: float, notes: dict[str, int]) -> None:
    """Scrape every node's metrics every ``every`` seconds, as Prometheus would."""
    urls = [n["metrics"] for n in manifest["nodes"] if n.get("metrics")]
    while True:
        for url in urls:
            try:
                async with session.get(url) as r:
                    await r.read()
                    notes["scrapes"] += 1
            except (aiohttp.ClientError, OSError):
                pass
        await asyncio.sleep(every)


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, default=Path("testnet"))
    ap.add_argument("--rate", type=int, default=1000, help="target submissions per second")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of sustained submission")
    ap.add_argument("--accounts", type=int, default=200, help="sender accounts")
    ap.add_argument("--batch", type=int, default=100, help="transactions per JSON-RPC batch")
    ap.add_argument("--drain", type=float, default=20.0, help="seconds to wait for the tail to finalize")
    ap.add_argument("--ws-clients", type=int, default=0, help="WebSocket subscribers kept open during the run")
    ap.add_argument("--scrape", type=float, default=0.0, help="scrape every node's metrics every S seconds")
    ap.add_argument("--resubmit", type=float, default=0.0, metavar="S",
                    help="resubmit what a full pool refused (-32001) after S seconds, as a wallet would (0: count it)")
    args = ap.parse_args()

    manifest = json.loads((args.dir / "testnet.json").read_text())
    urls = [n["rpc"] for n in manifest["nodes"]]
    alice = load_keyfile(args.dir / manifest["accounts"]["alice"]["keyfile"], None)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        # one client per node over one shared session (one connection pool)
        clients = {url: AsyncClient(url, session=session, timeout=30) for url in urls}
        first = clients[urls[0]]
        chain_id = (await first.status())["chain_id"]
        fee = txbuild.min_fee(await first.params(), TxKind.TRANSFER)

        # 1. senders: the testnet's genesis-funded load accounts (testnet init --accounts N), else fund fresh ones
        try:
            senders = load_dev_accounts(args.dir)[:args.accounts]
        except ValueError:
            senders = []
        if len(senders) == args.accounts:
            print(f"using {len(senders)} genesis-funded senders from {args.dir / 'accounts.json'}")
        else:
            senders = [PrivateKey.generate() for _ in range(args.accounts)]
            nonce = int((await first.account(manifest["accounts"]["alice"]["address"]))["pending_nonce"])
            per_tx = int(args.rate * args.duration) // args.accounts + 1
            funding = [txbuild.sign(alice, txbuild.transfer(s.address, (per_tx + 10) * (fee + 1)),
                                    chain_id=chain_id, nonce=nonce + i, fee=fee) for i, s in enumerate(senders)]
            for i in range(0, len(funding), args.batch):
                refused = [r for r in await send_batch(first, [raw_hex(stx) for stx in funding[i:i + args.batch]])
                           if isinstance(r, RPCClientError)]
                if refused:
                    raise SystemExit(f"funding: {len(refused)} transfers refused, the first: {refused[0]}\n"
                                     f"(the risk hook refuses a fan-out to fresh accounts: create the testnet with "
                                     f"`qenexd testnet init --accounts {args.accounts}` for genesis-funded senders)")
            t0 = time.monotonic()
            try:
                await first.wait_final("0x" + funding[-1].hash.hex(), timeout=60)
            except ClientError as exc:
                raise SystemExit(f"funding did not finalize: {exc}") from None
            print(f"funded {len(senders)} senders in {time.monotonic() - t0:.1f} s")

        # 2. pre-sign
        total = int(args.rate * args.duration)
        t_sign = time.monotonic()
        signed: list[tuple[str, str]] = []
        # each sender's next nonce (an earlier run on this testnet used some)
        nonces = []
        for i in range(0, len(senders), args.batch):
            for reply in await first.batch([rpc_calls.account(address_to_text(s.address))
                                            for s in senders[i:i + args.batch]]):
                if isinstance(reply, RPCClientError):
                    raise SystemExit(f"reading a sender's nonce failed: {reply}")
                nonces.append(int(reply["pending_nonce"]))  # type: ignore[index]
        for i in range(total):
            k = i % len(senders)
            stx = txbuild.sign(senders[k], txbuild.transfer(alice.address, 1), chain_id=chain_id, nonce=nonces[k],
                               fee=fee)
            nonces[k] += 1
            signed.append(("0x" + stx.hash.hex(), raw_hex(stx)))
        print(f"signed {total} transfers in {time.monotonic() - t_sign:.1f} s")

        # 3. submit at rate while following the chain
        notes: dict[str, int] = {"heads": 0, "events": 0, "closed": 0, "scrapes": 0}
        submit_at: dict[str, float] = {}
        committed_at: dict[str, float] = {}
        rejected = 0
        reasons: dict[str, int] = {}
        start_height = int((await first.status())["height"])
        done = asyncio.Event()

        async def follow() -> None:
            height = start_height
            while not done.is_set():
                try:
                    head = int((await first.status())["height"])
                except Exception:
                    await asyncio.sleep(0.05)
                    continue
                while height < head:
                    height += 1
                    block = await first.block(height)
                    now = time.monotonic()
                    for h in block["txs"]:
                        committed_at.setdefault(h, now)
                await asyncio.sleep(0.05)

        # subscribers on a session of their own: long-lived sockets must not take the RPC pool's places
        ws_session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=10))
        watchers = [asyncio.create_task(watch(AsyncClient(urls[i % len(urls)], session=ws_session), i, manifest,
                                              notes)) for i in range(args.ws_clients)]
        scraper = asyncio.create_task(scrape(session, manifest, args.scrape, notes)) if args.scrape else None
        pids = node_pids(args.dir)
        loadgen_cpu_before = proc_usage(os.getpid())[0]
        cpu_before = {name: proc_usage(pid)[0] for name, pid in pids.items()}
        follower = asyncio.create_task(follow())
        t_start = time.monotonic()
        # Each sender talks to one node (as a real client does): its nonces
        # then arrive in order, never racing gossip from another node.
        per_node: list[list[tuple[str, str]]] = [[] for _ in urls]
        for i, item in enumerate(signed):
            per_node[(i % len(senders)) % len(urls)].append(item)
        node_batches = [
            [(items[i:i + args.batch], urls[n]) for i in range(0, len(items), args.batch)]
            for n, items in enumerate(per_node)
        ]
        # round-robin over nodes so every node is fed at the same pace
        order = [b for group in itertools.zip_longest(*node_batches) for b in group if b is not None]
        interval = args.batch / args.rate
        pending: set[asyncio.Task] = set()

        resubmits = {"sent": 0, "outstanding": 0}
        resubmit_until = t_start + args.duration + args.drain / 2

        async def send(batch: list[tuple[str, str]], url: str, first: bool = True) -> None:
            """One batch; with --resubmit, what a full pool refused (-32001) is sent again later, as a
            wallet would (its finality still counts from the first submission)."""
            nonlocal rejected
            now = time.monotonic()
            if first:
                for h, _ in batch:
                    submit_at[h] = now
            again: list[tuple[str, str]] = []
            try:
                replies = await send_batch(clients[url], [raw for _, raw in batch])
                for item, r in zip(batch, replies):
                    if isinstance(r, RPCClientError):
                        if args.resubmit and r.code == MEMPOOL_FULL and time.monotonic() < resubmit_until:
                            again.append(item)
                            continue
                        rejected += 1
                        reason = r.message.split(" for ")[0][:60]
                        reasons[reason] = reasons.get(reason, 0) + 1
            except Exception as exc:
                print("batch failed:", exc)
                rejected += len(batch)
            if again:
                resubmits["sent"] += len(again)
                resubmits["outstanding"] += 1
                try:
                    await asyncio.sleep(args.resubmit)
                    await send(again, url, first=False)
                finally:
                    resubmits["outstanding"] -= 1

        for i, (batch, url) in enumerate(order):
            target = t_start + i * interval
            delay = target - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(send(batch, url))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        t_submitted = time.monotonic()
        while resubmits["outstanding"]:  # resubmissions still in flight (bounded by resubmit_until)
            await asyncio.sleep(0.1)
        deadline = t_submitted + args.drain
        while time.monotonic() < deadline and len(committed_at.keys() & submit_at.keys()) < total - rejected:
            await asyncio.sleep(0.2)
        done.set()
        await follower
        for task in watchers + ([scraper] if scraper else []):
            task.cancel()
        await asyncio.gather(*watchers, *([scraper] if scraper else []), return_exceptions=True)
        await ws_session.close()
        wall = time.monotonic() - t_start
        usage = {name: proc_usage(pid) for name, pid in pids.items()}
        usage["load generator"] = proc_usage(os.getpid())
        cpu_before["load generator"] = loadgen_cpu_before

    ours = [h for h in submit_at if h in committed_at]
    latencies = [committed_at[h] - submit_at[h] for h in ours]
    if ours:
        first = min(committed_at[h] for h in ours)
        last = max(committed_at[h] for h in ours)
        span = max(last - first, 1e-9)
    else:
        span = float("nan")
    print(f"submitted {total} in {t_submitted - t_start:.1f} s (target {args.rate}/s), rejected {rejected}"
          + (f", {resubmits['sent']} resubmissions after -32001" if args.resubmit else ""))
    for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  rejected x{count}: {reason}")
    print(f"finalized {len(ours)} of ours")
    print(f"throughput {len(ours) / span:.0f} finalized transfers/s over {span:.1f} s")
    if latencies:
        print(
            "finality latency  p50 {:.0f} ms  p90 {:.0f} ms  p99 {:.0f} ms  mean {:.0f} ms".format(
                1000 * percentile(latencies, 0.50), 1000 * percentile(latencies, 0.90),
                1000 * percentile(latencies, 0.99), 1000 * statistics.fmean(latencies),
            )
        )
    if args.ws_clients or args.scrape:
        print(f"websocket: {args.ws_clients} clients received {notes['heads']} heads and {notes['events']} event "
              f"batches, {notes['closed']} closed by the node; {notes['scrapes']} metrics scrapes")
    node_cpu = []
    for name, (cpu, rss) in sorted(usage.items()):
        busy = (cpu - cpu_before.get(name, 0.0)) / wall
        print(f"{name}: {100 * busy:.0f}% of a core, RSS {rss / 2**20:.0f} MiB")
        if name != "load generator":
            node_cpu.append(cpu - cpu_before.get(name, 0.0))
    if node_cpu and ours:
        # Every node's CPU over the run, per transfer it finalized: the cost a node pays, less
        # sensitive to a shared machine than throughput (clients' CPU is not in it).
        print(f"node cpu per finalized transfer {1e6 * statistics.fmean(node_cpu) / len(ours):.0f} us "
              f"(mean of {len(node_cpu)} nodes)")


if __name__ == "__main__":
    asyncio.run(main())
