"""Contracts: deploy time, call throughput and latency for the counter and the token transfer (issue 11).

    python bench/contracts.py --calls 2000 --senders 500
    python bench/contracts.py --testnet testnet --calls 300     # also through a running 4-node testnet

State machine part (always): one Application on MemoryKV with contracts on.
Deploys the example counter and token (examples/contracts/) and times each
deploy's execution, cold (the module cache emptied first: validation and
compilation included) and warm.  Then ``--calls`` counter increments and
``--calls`` token transfers from ``--senders`` funded accounts (the token
deployer first hands each sender a balance), in blocks of ``--block`` calls;
each call's execution (``BlockRun.include``: inclusion checks, fee, the wasm
run, refund) is timed alone, signatures verified beforehand as admission
does.  Prints per-call p50/p90/p99 and calls/s of execution, gas per call,
and RSS.

Testnet part (``--testnet DIR``, a testnet made by ``qenexd testnet init``
and running): deploys the token through node 0's RPC, funds senders, then
submits ``--calls`` token transfers at ``--rate`` per second spread over all
nodes and reports finality latency p50/p90/p99 (submit to the block that
holds it, read back from every node) and finalized calls/s.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import wasmtime  # noqa: E402

from state import vm  # noqa: E402
from state.app import Application  # noqa: E402
from state.codec import decode, encode  # noqa: E402
from state.contracts import contract_address  # noqa: E402
from state.genesis import ContractParams, Params  # noqa: E402
from state.kv import MemoryKV  # noqa: E402
from state.payloads import ContractCall, ContractDeploy  # noqa: E402
from state.testing import ONE_QNX, STUB_VERIFIER, Chain, dev_key, make_genesis, signed, stub_cert  # noqa: E402

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "contracts"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def code_of(name: str) -> bytes:
    return bytes(wasmtime.wat2wasm((EXAMPLES / f"{name}.wat").read_text()))


def _line(label: str, micros: list[float], gas: list[int]) -> str:
    total = sum(micros) / 1e6
    return (f"{label:<22} n={len(micros):>5}  p50 {percentile(micros, 0.5):7.1f} µs  p90 {percentile(micros, 0.9):7.1f} µs"
            f"  p99 {percentile(micros, 0.99):7.1f} µs  {len(micros) / total:8.0f} calls/s  gas {min(gas)}-{max(gas)}")


def state_machine(calls: int, senders: int, block: int) -> None:
    deployer = dev_key("bench-contracts-deployer")
    proposer = dev_key("bench-contracts-validator")
    keys = [dev_key(f"bench-contracts-sender-{i}") for i in range(senders)]
    params = Params(contracts=ContractParams())
    app = Application(MemoryKV(), make_genesis(validators=[proposer], funded=[deployer, *keys],
                                               balance=10**6 * ONE_QNX, params=params), commit_verifier=STUB_VERIFIER)
    chain = Chain(app, proposer)
    rss_start = rss_mib()

    def run_block(txs: list, timed: list[float] | None = None, gas: list[int] | None = None) -> list:
        for stx in txs:
            stx.verify_signature()  # as admission does: execution then hits the verified-hash cache
        height = app.height + 1
        last_commit = b"" if app.height == 0 else (app.get_commit_cert(app.height) or b"")
        run = app._new_run(height, app.last_time_ms + 1000, last_commit)
        receipts = []
        for stx in txs:
            t0 = time.perf_counter()
            receipt = run.include(stx)
            elapsed = (time.perf_counter() - t0) * 1e6
            if not receipt.ok:
                raise SystemExit(f"bench call failed: {receipt.reason}")
            receipts.append(receipt)
            if timed is not None:
                timed.append(elapsed)
                gas.append(receipt.gas_used)  # type: ignore[union-attr]
        # commit through the normal path (a proposer's build_block of the same txs) to keep the app consistent
        built, result = app.build_block(txs, proposer=proposer.address, time_ms=app.last_time_ms + 1000,
                                        last_commit=last_commit)
        app.commit_block(built, result, stub_cert(built.height, built.hash))
        chain.nonces.clear()
        return receipts

    # -- deploys, cold and warm
    print("deploy (execution of the deploy transaction, the module compiled when cold)")
    addresses = {}
    for name, init in (("counter", []), ("token", [10**15])):
        code = code_of(name)
        cold, warm = [], []
        for i in range(6):
            if i == 0:
                vm.MODULES._modules.clear()
            nonce = app.account(deployer.address).nonce
            addresses.setdefault(name, contract_address(deployer.address, nonce))
            stx = signed(deployer, nonce, ContractDeploy(code, encode(init), (), 20_000_000), params=params,
                         chain_id=app.chain_id)
            t = []
            g: list[int] = []
            run_block([stx], t, g)
            (cold if i == 0 else warm).append(t[0])
        print(f"  {name:<8} {len(code):>6} bytes  cold {cold[0] / 1000:7.2f} ms   warm p50 {percentile(warm, 0.5) / 1000:6.2f} ms"
              f"   gas {g[0]}")
    counter, token = addresses["counter"], addresses["token"]

    # -- fund the senders with tokens
    nonce = app.account(deployer.address).nonce
    funding = [signed(deployer, nonce + i, ContractCall(token, "transfer", encode([k.address, 10**9]), (), 400_000),
                      params=params, chain_id=app.chain_id) for i, k in enumerate(keys)]
    for i in range(0, len(funding), block):
        run_block(funding[i:i + block])

    receiver = dev_key("bench-contracts-receiver").address
    for label, contract, method, args in (("counter increment", counter, "increment", []),
                                          ("token transfer", token, "transfer", [receiver, 1])):
        timed: list[float] = []
        gas: list[int] = []
        done = 0
        while done < calls:
            n = min(block, calls - done)
            txs = []
            for j in range(n):
                key = keys[(done + j) % senders]
                txs.append(signed(key, chain.next_nonce(key), ContractCall(contract, method, encode(args), (), 400_000),
                                  params=params, chain_id=app.chain_id))
            run_block(txs, timed, gas)
            done += n
        print(_line(label, timed, gas))
    balance = decode(app.contracts().call(token, "balance_of", encode([receiver]), gas_limit=10**7).output)
    print(f"token receiver balance {balance} (expected {calls})   counter {decode(app.contracts().call(counter, 'get', encode([]), gas_limit=10**7).output)}")
    print(f"RSS {rss_start:.0f} MiB at start, {rss_mib():.0f} MiB at end; modules compiled {vm.MODULES.compiles}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--senders", type=int, default=500)
    ap.add_argument("--block", type=int, default=400, help="calls per block (each reserves 400,000 gas of max_block_gas)")
    args = ap.parse_args(argv)
    if min(args.calls, args.senders, args.block) < 1:
        raise SystemExit("--calls, --senders and --block must be at least 1")
    state_machine(args.calls, args.senders, args.block)


if __name__ == "__main__":
    main()
