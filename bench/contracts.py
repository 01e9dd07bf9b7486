"""Contracts: deploy time, call throughput and latency for the counter and the token transfer (issue 11).

    python bench/contracts.py --calls 2000 --senders 500
    python bench/contracts.py --testnet testnet --calls 2000 --senders 200 --rate 200
                           # also through a running testnet (`qenexd testnet init --accounts 200`)

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
nodes (each sender always to the same node) and reports finality latency
p50/p90/p99 (submit to first sight of the committed block holding it, on
node 0) and finalized calls/s.
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
from state.crypto import address_to_text  # noqa: E402
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


async def testnet(directory: Path, calls: int, senders_wanted: int, rate: float) -> None:
    """Token transfers through a running testnet: finality latency and finalized calls/s."""
    import asyncio
    import json

    import aiohttp

    from node import rpc_calls, txbuild
    from node.client import AsyncClient, RPCClientError, raw_hex
    from node.genesis_tools import load_dev_accounts
    from state.keyfile import load_keyfile

    manifest = json.loads((directory / "testnet.json").read_text())
    urls = [n["rpc"] for n in manifest["nodes"]]
    alice = load_keyfile(directory / manifest["accounts"]["alice"]["keyfile"], None)
    try:
        senders = load_dev_accounts(directory)[:senders_wanted]
    except ValueError:
        senders = []
    if not senders:
        raise SystemExit(f"--testnet needs genesis-funded senders: `qenexd testnet init --accounts {senders_wanted}`")
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        clients = [AsyncClient(url, session=session, timeout=30) for url in urls]
        first = clients[0]
        chain_id = (await first.status())["chain_id"]
        params = await first.params()
        if not params.get("contracts"):
            raise SystemExit("this testnet has no contracts (made with --no-contracts)")
        nonce = int((await first.account(manifest["accounts"]["alice"]["address"]))["pending_nonce"])

        async def final(stx) -> dict:  # type: ignore[no-untyped-def]
            await first.submit(stx)
            return await first.wait_final("0x" + stx.hash.hex(), timeout=60)

        deploy = txbuild.contract_deploy(code_of("token"), encode([10**15]), gas_limit=20_000_000)
        t0 = time.monotonic()
        record = await final(txbuild.sign(alice, deploy, chain_id=chain_id, nonce=nonce,
                                          fee=txbuild.min_fee(params, deploy.KIND, deploy)))
        print(f"testnet: token deployed in {time.monotonic() - t0:.2f} s (submit to final), status {record['status']}")
        token = contract_address(alice.address, nonce)
        gas = 400_000
        funding = []
        for i, key in enumerate(senders):
            payload = txbuild.contract_call(token, "transfer", encode([key.address, 10**9]), gas_limit=gas)
            funding.append(txbuild.sign(alice, payload, chain_id=chain_id, nonce=nonce + 1 + i,
                                        fee=txbuild.min_fee(params, payload.KIND, payload)))
        for i in range(0, len(funding), 100):
            refused = [r for r in await first.batch([rpc_calls.send_transaction(raw_hex(s)) for s in funding[i:i + 100]])
                       if isinstance(r, RPCClientError)]
            if refused:
                raise SystemExit(f"funding refused: {refused[0]}")
        await first.wait_final("0x" + funding[-1].hash.hex(), timeout=120)
        receiver = dev_key("bench-contracts-receiver").address
        nonces = {k.address: int((await first.account(address_to_text(k.address)))["pending_nonce"]) for k in senders}
        signed_calls = []
        for i in range(calls):
            key = senders[i % len(senders)]
            payload = txbuild.contract_call(token, "transfer", encode([receiver, 1]), gas_limit=gas)
            signed_calls.append((i % len(senders) % len(urls),
                                 txbuild.sign(key, payload, chain_id=chain_id, nonce=nonces[key.address],
                                              fee=txbuild.min_fee(params, payload.KIND, payload))))
            nonces[key.address] += 1
        submit_at: dict[str, float] = {}
        final_at: dict[str, float] = {}
        start = int((await first.status())["height"])
        done = asyncio.Event()

        async def follow() -> None:
            height = start
            while not done.is_set():
                head = int((await first.status())["height"])
                while height < head:
                    height += 1
                    block = await first.block(height)
                    now = time.monotonic()
                    for h in block["txs"]:
                        final_at.setdefault(h, now)
                await asyncio.sleep(0.02)

        follower = asyncio.create_task(follow())
        t_start = time.monotonic()
        refused = 0
        pending: set[asyncio.Task] = set()

        async def submit(node: int, stx) -> None:  # type: ignore[no-untyped-def]
            nonlocal refused
            submit_at["0x" + stx.hash.hex()] = time.monotonic()
            try:
                await clients[node].submit(stx)
            except RPCClientError:
                refused += 1

        for i, (node, stx) in enumerate(signed_calls):
            delay = t_start + i / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(submit(node, stx))
            pending.add(task)
            task.add_done_callback(pending.discard)
        await asyncio.gather(*pending)
        submitted = time.monotonic() - t_start
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and len(final_at.keys() & submit_at.keys()) < calls - refused:
            await asyncio.sleep(0.1)
        done.set()
        await follower
        ours = [h for h in submit_at if h in final_at]
        latencies = [(final_at[h] - submit_at[h]) * 1000 for h in ours]
        window = max(final_at[h] for h in ours) - t_start if ours else float("nan")
        balance = await first.call_contract(address_to_text(token), "balance_of", [address_to_text(receiver)])
        print(f"testnet: {len(ours)}/{calls} token transfers final ({refused} refused), offered at {rate:.0f}/s "
              f"(submitted at {calls / submitted:.0f}/s), "
              f"{len(ours) / window:.0f}/s finalized; finality p50 {percentile(latencies, 0.5):.0f} ms  "
              f"p90 {percentile(latencies, 0.9):.0f} ms  p99 {percentile(latencies, 0.99):.0f} ms; "
              f"receiver balance {balance['result']} on node 0")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--senders", type=int, default=500)
    ap.add_argument("--block", type=int, default=400, help="calls per block (each reserves 400,000 gas of max_block_gas)")
    ap.add_argument("--testnet", metavar="DIR", type=Path, help="also measure through this running testnet "
                    "(made with `qenexd testnet init --accounts N`, N >= --senders)")
    ap.add_argument("--rate", type=float, default=200.0, help="testnet part: calls offered per second")
    args = ap.parse_args(argv)
    if min(args.calls, args.senders, args.block) < 1 or args.rate <= 0:
        raise SystemExit("--calls, --senders, --block and --rate must be positive")
    state_machine(args.calls, args.senders, args.block)
    if args.testnet is not None:
        import asyncio

        asyncio.run(testnet(args.testnet, args.calls, args.senders, args.rate))


if __name__ == "__main__":
    main()
