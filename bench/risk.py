"""Risk hook benchmarks: scoring latency per transaction and training throughput.

    python bench/risk.py [--repeats 2000] [--batch 500] [--startup-blocks 10000]

Trains the default seeded model in a temporary directory, then measures

* model only: one row through ``score_one`` (admission's single-transaction
  path), and a batch of ``--batch`` rows through ``score`` (per-row time =
  batch time / batch);
* full hook (what admission pays): features from the history and the
  committed accounts in a real Application on LevelDB, as a node has it,
  + scoring + the rules (node.risk.policy), single and batched.  The
  ``--batch`` senders first commit ``--history-blocks`` blocks of payments
  to each other (so each has a full history: recent sends, counterparties,
  fresh receivers to walk), then each scores one transfer: to a
  counterparty it paid (four in five) or to a fresh address (one in five);
  "single" is these one at a time (admission's RPC path), "flagged" is 95 %
  of the balance to a fresh address from 50 of them (a drain: the rules run
  their signals and the reasons are computed), "batch" is all of them in
  one pass (gossip), and once more with those 50 drains in place of the
  same senders' payments (one in ten: flagged rows cost their reasons).
  Every cache (features by hash, accounts read at this height, pending
  memory) is emptied before each single transaction and before each batch,
  so the numbers include every read;
* training: MLP samples/s (samples x epochs / fit seconds) and the whole
  ``train`` (data generation + MLP + forest + held-out eval) wall time.

* start-up (``--startup-blocks N``, 0 to skip): a chain of N blocks (20
  transfers each among ``--startup-accounts`` genesis-funded accounts,
  200 by default; the history keeps at most 50,000), LevelDB), its risk
  history persisted as a node does after each commit; then the risk part of
  a restart (open the history store, load it, replay nothing) against
  rebuilding it by replaying the last 5,000 blocks (what a node without the
  store does).

Prints p50/p90/p99 in microseconds.  Issue 14's bars: full hook under 150 us
p99 single and under 50 us per transaction batched; the risk part of a
start-up with a 10,000-block history under 2 s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from node.risk.hook import RiskHook  # noqa: E402
from node.risk.model import MLP_SIZES  # noqa: E402
from node.risk.nn import MLP  # noqa: E402
from node.risk.store import ModelStore  # noqa: E402
from node.risk.synth import generate  # noqa: E402
from node.risk.train import train_to_store  # noqa: E402
from state.app import Application  # noqa: E402
from state.kv import LevelDBKV  # noqa: E402
from state.testing import ONE_QNX, dev_key, make_genesis, transfer  # noqa: E402


def percentiles(samples_s: list[float]) -> str:
    # p90 too: on an oversubscribed machine a 4 ms scheduler slice lands in p99
    us = np.array(samples_s) * 1e6
    p50, p90, p99 = np.percentile(us, [50, 90, 99])
    return f"p50 {p50:8.1f} us   p90 {p90:8.1f} us   p99 {p99:8.1f} us"


def clear_caches(hook: RiskHook) -> None:
    hook._features.clear()
    hook._accounts.clear()
    hook._pending.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--startup-blocks", type=int, default=10_000)
    parser.add_argument("--startup-accounts", type=int, default=200)
    parser.add_argument("--history-blocks", type=int, default=40,
                        help="blocks of payments among the hook's senders before it is measured")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        version, _ = train_to_store(Path(tmp))
        train_wall = time.perf_counter() - started
        store = ModelStore(Path(tmp))
        t = time.perf_counter()
        model = store.load()
        model_load = time.perf_counter() - t
        training = model.meta["training"]

        data = generate(42, accounts=100, blocks=600)
        rows = data.x
        single = []
        for i in range(args.repeats):
            row = rows[i % len(rows)][None, :]
            t = time.perf_counter()
            model.score_one(row)
            single.append(time.perf_counter() - t)
        batched = []
        for i in range(max(20, args.repeats // args.batch * 5)):
            start = (i * args.batch) % max(1, len(rows) - args.batch)
            chunk = rows[start : start + args.batch]
            t = time.perf_counter()
            model.score(chunk)
            batched.append((time.perf_counter() - t) / len(chunk))

        senders = [dev_key(f"s{i}") for i in range(args.batch)]
        kv = LevelDBKV(Path(tmp) / "state", create_if_missing=True)
        app = Application(kv, make_genesis(funded=senders, balance=1000 * ONE_QNX))
        hook = RiskHook(store, model, review=0.5, reject=0.9)
        hook.attach(app)
        nonces = warm_history(app, hook, senders, args.history_blocks)
        ordinary, drains = [], []
        for i, k in enumerate(senders):
            if i % 5 == 3:  # an ordinary payment to a new receiver
                ordinary.append(transfer(k, nonces[i], dev_key(f"fresh{i}").address, (i % 7 + 1) * ONE_QNX))
            else:  # to a counterparty it paid during the warm-up
                ordinary.append(transfer(k, nonces[i], senders[(i * 7 + 1) % len(senders)].address,
                                         (i % 7 + 1) * ONE_QNX))
            if i % 10 == 7:  # a drain: 95 % of the balance to a fresh address
                balance = app.account(k.address).balances["QNX"]
                drains.append(transfer(k, nonces[i], dev_key(f"thief{i}").address, balance * 95 // 100))
        mixed = list(ordinary)
        for i, d in zip(range(7, len(mixed), 10), drains):
            mixed[i] = d  # the same sender's drain instead of its payment

        def one_by_one(txs: list) -> list[float]:
            out = []
            for i in range(args.repeats):
                stx = txs[i % len(txs)]
                clear_caches(hook)  # measure feature extraction and the account reads too, not the caches
                t = time.perf_counter()
                hook.assess([stx])
                out.append(time.perf_counter() - t)
            return out

        hook_single = one_by_one(ordinary)
        hook_flagged = one_by_one(drains)
        decisions = {a.decision for a in hook.assess(drains, admitting=False)}
        def batches(txs: list) -> list[float]:
            out = []
            for _ in range(10):
                clear_caches(hook)
                t = time.perf_counter()
                hook.assess(txs)
                out.append((time.perf_counter() - t) / len(txs))
            return out

        hook_batched = batches(ordinary)
        hook_mixed = batches(mixed)

        big = generate(0)
        mlp = MLP.init(MLP_SIZES, 0)
        xs = ((big.x - model.mean) / model.std).astype(np.float32)
        t = time.perf_counter()
        mlp.fit(xs, big.y.astype(np.float32), epochs=10)
        fit_rate = 10 * len(big) / (time.perf_counter() - t)
        kv.close()

    print(f"model v{version}: {training['samples']} training samples, MLP {MLP_SIZES}, 100-tree isolation forest")
    print(f"scoring, model only,  single tx      {percentiles(single)}  (score_one)")
    print(f"scoring, model only,  batch of {args.batch:<4}  {percentiles(batched)}  (per tx)")
    print(f"scoring, full hook,   single tx      {percentiles(hook_single)}  (features + account read + score + rules;"
          f" senders with {args.history_blocks} blocks of history)")
    print(f"scoring, full hook,   flagged drain  {percentiles(hook_flagged)}  (the same + reasons; decided "
          f"{'/'.join(sorted(decisions))})")
    print(f"scoring, full hook,   batch of {args.batch:<4}  {percentiles(hook_batched)}  (per tx)")
    print(f"scoring, full hook,   batch of {args.batch:<4}  {percentiles(hook_mixed)}  (per tx; one in ten a drain)")
    print(f"training, MLP (Adam, batch 128)       {fit_rate:,.0f} samples/s ({len(big)} samples x 10 epochs)")
    print(f"training, whole `risk train`          {train_wall:.2f} s wall (data + MLP + forest + calibration + "
          f"held-out eval); loading the model file: {model_load * 1e3:.1f} ms")
    if args.startup_blocks:
        startup(args.startup_blocks, args.startup_accounts)


def warm_history(app: Application, hook: RiskHook, senders: list, blocks: int) -> list[int]:
    """``blocks`` committed blocks in which every sender pays another (one of a few it pays in turn);
    folded into the hook's history as the node does.  Returns each sender's next nonce."""
    from state.codec import encode

    validator = dev_key("validator-0")
    nonces = [0] * len(senders)
    n = len(senders)
    for h in range(1, blocks + 1):
        txs = []
        for i, key in enumerate(senders):
            to = senders[(i * 7 + 1 + (h % 3)) % n].address if h % 9 else dev_key(f"new{h}-{i}").address
            txs.append(transfer(key, nonces[i], to, ONE_QNX // 10))
            nonces[i] += 1
        block, result = app.build_block(txs, proposer=validator.address, time_ms=app.last_time_ms + 1000,
                                        last_commit=app.get_commit_cert(app.height) or b"")
        app.commit_block(block, result, encode(["bench-cert", app.height + 1]))
        hook.observe_block(block)
    return nonces


def startup(n_blocks: int, n_accounts: int = 200) -> None:
    from state.codec import encode

    accounts = [dev_key(f"acct{i}") for i in range(n_accounts)]
    validator = dev_key("validator-0")
    with tempfile.TemporaryDirectory() as tmp:
        kv = LevelDBKV(Path(tmp) / "state", create_if_missing=True)
        app = Application(kv, make_genesis(funded=accounts, balance=10**9 * ONE_QNX))
        hook = RiskHook(None, None, review=0.5, reject=0.9)
        hook.attach(app, history_path=Path(tmp) / "risk-history")
        nonces = [0] * len(accounts)
        t0 = time.perf_counter()
        for h in range(1, n_blocks + 1):
            txs = []
            for j in range(20):
                i = (h * 20 + j) % len(accounts)
                txs.append(transfer(accounts[i], nonces[i], accounts[(i * 7 + h) % len(accounts)].address, ONE_QNX))
                nonces[i] += 1
            block, result = app.build_block(txs, proposer=validator.address, time_ms=app.last_time_ms + 1000,
                                            last_commit=app.get_commit_cert(app.height) or b"")
            app.commit_block(block, result, encode(["bench-cert", h]))
            hook.observe_block(block)
        build = time.perf_counter() - t0
        hook.close()
        t = time.perf_counter()
        again = RiskHook(None, None, review=0.5, reject=0.9)
        again.attach(app, history_path=Path(tmp) / "risk-history")
        loaded = time.perf_counter() - t
        info = dict(again.startup)
        again.close()
        t = time.perf_counter()
        replay = RiskHook(None, None, review=0.5, reject=0.9)
        replay.attach(app)
        replayed = time.perf_counter() - t
        kv.close()
    print(f"start-up, {n_blocks}-block chain ({n_blocks * 20} transfers, built in {build:.0f} s): "
          f"risk history loaded in {loaded:.3f} s ({info['accounts']} accounts, {info['replayed_blocks']} blocks "
          f"replayed); rebuilding it from the last 5,000 blocks instead: {replayed:.2f} s")


if __name__ == "__main__":
    main()
