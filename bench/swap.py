"""Swap benchmarks: the state machine alone, and qenex_quoteSwap over JSON-RPC.

    python bench/swap.py state --blocks 20 --swaps 1000
    python bench/swap.py rpc --dir /tmp/amm-tn --calls 2000      # or --rpc http://127.0.0.1:37601/

``state``: an Application on MemoryKV (or ``--leveldb DIR``) with one deep
AAA/BBB pool and ``--traders`` funded accounts.  Each block of ``--swaps``
pre-signed swaps (alternating directions) is built by a proposer
Application, executed by a second, independent one (the validator path,
with the same app hash checked) and committed on both.  Signatures are
verified once up front, as the mempool does in a node (the process-wide
verified-hash cache then skips them in execution).  Prints swaps/s for
build, execute and commit, and per-swap execution µs p50/p99 measured
around each transaction's inclusion on the validator path.

``rpc``: against a running node; creates tokens AAA/BBB and the pool from
alice's key if the testnet has none, then calls qenex_quoteSwap
``--calls`` times over one keep-alive HTTP connection, alternating
directions and amounts, and prints latency p50/p99/max and calls/s.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from state.amounts import QNX  # noqa: E402
from state.app import Application  # noqa: E402
from state.genesis import GenesisToken, Params  # noqa: E402
from state.kv import LevelDBKV, MemoryKV  # noqa: E402
from state.payloads import PoolCreate, Swap  # noqa: E402
from state.testing import STUB_VERIFIER, dev_key, make_genesis, signed, stub_cert  # noqa: E402

if TYPE_CHECKING:
    from node.client import Client

E18 = 10**18


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- 1. the state machine alone ------------------------------------------------------


def bench_state(args: argparse.Namespace) -> None:
    validator = dev_key("bench-validator")
    lp = dev_key("bench-lp")
    traders = [dev_key(f"bench-trader-{i}") for i in range(args.traders)]
    tokens = tuple(GenesisToken(s, s, 18, lp.address) for s in ("AAA", "BBB"))
    extra = {k.address: {"AAA": 10**30, "BBB": 10**30} for k in [lp, *traders]}
    params = Params(max_block_txs=max(5000, args.swaps))
    genesis = make_genesis(validators=(validator,), funded=[lp, *traders], tokens=tokens, extra_balances=extra,
                           params=params, balance=10**24)

    def store(tag: str):  # type: ignore[no-untyped-def]
        if not args.leveldb:
            return MemoryKV()
        (Path(args.leveldb) / tag).mkdir(parents=True, exist_ok=True)
        return LevelDBKV(Path(args.leveldb) / tag, create_if_missing=True)

    proposer_app = Application(store("proposer"), genesis)
    validator_app = Application(store("validator"), genesis, commit_verifier=STUB_VERIFIER)
    nonces = {k.address: 0 for k in [lp, *traders]}

    def tx(key, payload):  # type: ignore[no-untyped-def]
        stx = signed(key, nonces[key.address], payload, chain_id=genesis.chain_id, params=params)
        nonces[key.address] += 1
        return stx

    def commit(txs, time_ms):  # type: ignore[no-untyped-def]
        height = proposer_app.height + 1
        last_commit = proposer_app.get_commit_cert(height - 1) or b""
        t0 = time.perf_counter()
        block, built = proposer_app.build_block(txs, proposer=validator.address, time_ms=time_ms,
                                                last_commit=last_commit)
        t1 = time.perf_counter()
        # validator path, timing each inclusion (what execute_block does, transaction by transaction)
        run = validator_app._new_run(height, time_ms)
        per_tx = []
        for stx in block.txs:
            s = time.perf_counter()
            run.include(stx)
            per_tx.append(time.perf_counter() - s)
        t2 = time.perf_counter()
        result = validator_app.execute_block(block)
        t3 = time.perf_counter()
        assert result.app_hash == built.app_hash, "validator disagrees with the proposer"
        proposer_app.commit_block(block, built, stub_cert(height, block.hash))
        validator_app.commit_block(block, result, stub_cert(height, block.hash))
        t4 = time.perf_counter()
        return block, built, t1 - t0, t3 - t2, (t4 - t3) / 2, per_tx

    genesis_ms = genesis.genesis_time_ms
    commit([tx(lp, PoolCreate("AAA", "BBB", 10**27, 10**27, 0))], genesis_ms + 1000)
    assert proposer_app.pool("AAA/BBB") is not None

    build_s = exec_s = commit_s = 0.0
    per_swap: list[float] = []
    total = ok = 0
    for b in range(args.blocks):
        txs = []
        for i in range(args.swaps):
            key = traders[i % len(traders)]
            path = ("AAA", "BBB") if (i + b) % 2 == 0 else ("BBB", "AAA")
            txs.append(tx(key, Swap(path[0], path[1], (1 + i % 97) * 10**20, 0, 10**9)))
        for stx in txs:
            assert stx.verify_signature()  # as the mempool would have, before the block
        block, built, tb, te, tc, per_tx = commit(txs, genesis_ms + 1000 * (b + 2))
        assert len(block.txs) == len(txs), f"only {len(block.txs)} of {len(txs)} swaps were includable"
        ok += sum(r.ok for r in built.receipts)
        total += len(txs)
        build_s, exec_s, commit_s = build_s + tb, exec_s + te, commit_s + tc
        per_swap += per_tx
    pool = proposer_app.pool("AAA/BBB")
    print(f"state machine: {args.blocks} blocks x {args.swaps} swaps ({ok}/{total} ok), "
          f"{'LevelDB' if args.leveldb else 'MemoryKV'}, {len(traders)} traders")
    print(f"  build_block   {total / build_s:10.0f} swaps/s")
    print(f"  execute_block {total / exec_s:10.0f} swaps/s")
    print(f"  commit_block  {args.blocks / commit_s:10.1f} blocks/s ({commit_s / args.blocks * 1000:.1f} ms per block)")
    print(f"  per swap (validator path, one inclusion): p50 {percentile(per_swap, 0.5) * 1e6:.1f} us  "
          f"p99 {percentile(per_swap, 0.99) * 1e6:.1f} us  max {max(per_swap) * 1e6:.1f} us")
    print(f"  final reserves {pool.reserve0} / {pool.reserve1}, app hash 0x{proposer_app.app_hash.hex()[:16]}...")


# -- 2. qenex_quoteSwap over JSON-RPC ------------------------------------------------------


def _ensure_pool(client: "Client", directory: Path | None) -> None:
    from node import txbuild
    from node.client import RPCClientError
    from state.keyfile import load_keyfile

    try:
        client.pool("AAA/BBB")
        return
    except RPCClientError:
        pass
    if directory is None:
        raise SystemExit("no AAA/BBB pool on that node; pass --dir TESTNET so alice can create one")
    manifest = json.loads((directory / "testnet.json").read_text())
    key = load_keyfile(directory / manifest["accounts"]["alice"]["keyfile"], None)
    nonce = int(client.account(manifest["accounts"]["alice"]["address"])["pending_nonce"])
    payloads = [txbuild.token_create("AAA", "AAA", 18, 10**30), txbuild.token_create("BBB", "BBB", 18, 10**30),
                txbuild.pool_create("AAA/BBB", 10**27, 2 * 10**27)]
    for i, payload in enumerate(payloads):
        record = client.send_and_wait(client.sign(key, payload, nonce=nonce + i), timeout=60)
        if record["status"] != "ok":
            raise SystemExit(f"setup transaction failed: {record}")


def bench_rpc(args: argparse.Namespace) -> None:
    directory = Path(args.dir) if args.dir else None
    url = args.rpc or json.loads((directory / "testnet.json").read_text())["nodes"][0]["rpc"]  # type: ignore[operator]
    from node.client import Client

    client = Client(url)  # one keep-alive connection
    _ensure_pool(client, directory)
    for _ in range(50):  # warm up
        client.quote("AAA", "BBB", E18)
    latencies = []
    start = time.perf_counter()
    for i in range(args.calls):
        pair = ("AAA", "BBB") if i % 2 == 0 else ("BBB", "AAA")
        s = time.perf_counter()
        quote = client.quote(pair[0], pair[1], (1 + i % 1000) * E18)
        latencies.append(time.perf_counter() - s)
        assert int(quote["amount_out"]) > 0
    elapsed = time.perf_counter() - start
    print(f"qenex_quoteSwap over JSON-RPC ({url}, one keep-alive connection, {args.calls} calls)")
    print(f"  p50 {percentile(latencies, 0.5) * 1000:.3f} ms  p99 {percentile(latencies, 0.99) * 1000:.3f} ms  "
          f"max {max(latencies) * 1000:.3f} ms  ({args.calls / elapsed:.0f} calls/s)")
    print(f"  sample: {json.dumps(quote)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="which", required=True)
    s = sub.add_parser("state", help="swap execution in the state machine alone")
    s.add_argument("--blocks", type=int, default=20)
    s.add_argument("--swaps", type=int, default=1000, help="swaps per block")
    s.add_argument("--traders", type=int, default=200)
    s.add_argument("--leveldb", default=None, help="directory for two LevelDB stores instead of MemoryKV")
    r = sub.add_parser("rpc", help="qenex_quoteSwap latency against a running node")
    r.add_argument("--rpc", default=None, help="node RPC URL")
    r.add_argument("--dir", default=None, help="testnet directory (testnet.json; alice creates the pool if needed)")
    r.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    if args.which == "rpc" and not (args.rpc or args.dir):
        ap.error("rpc needs --rpc URL or --dir TESTNET")
    (bench_state if args.which == "state" else bench_rpc)(args)


if __name__ == "__main__":
    _ = QNX
    main()
