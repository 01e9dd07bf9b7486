"""Risk hook benchmarks: scoring latency per transaction and training throughput.

    python bench/risk.py [--repeats 2000] [--batch 500] [--startup-blocks 10000]

Trains the default seeded model in a temporary directory, then measures

* model only: one row through ``score_one`` (admission's single-transaction
  path), and a batch of ``--batch`` rows through ``score`` (per-row time =
  batch time / batch);
* full hook (what admission pays): features from the history and the
  committed accounts in a real Application on LevelDB, as a node has it,
  + scoring, single and batched.  Every cache (features by hash, accounts
  read at this height, pending memory) is emptied before each single
  transaction and before each batch, so the numbers include every read;
* training: MLP samples/s (samples x epochs / fit seconds) and the whole
  ``train`` (data generation + MLP + forest + held-out eval) wall time.

* start-up (``--startup-blocks N``, 0 to skip): a chain of N blocks (20
  transfers each among 200 genesis-funded accounts, LevelDB), its risk
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
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        version, _ = train_to_store(Path(tmp))
        train_wall = time.perf_counter() - started
        store = ModelStore(Path(tmp))
        model = store.load()
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
        receiver = dev_key("receiver").address
        txs = [transfer(k, 0, receiver, (i % 97 + 1) * ONE_QNX) for i, k in enumerate(senders)]
        hook_single = []
        for i in range(args.repeats):
            stx = txs[i % len(txs)]
            clear_caches(hook)  # measure feature extraction and the account reads too, not the caches
            t = time.perf_counter()
            hook.assess([stx])
            hook_single.append(time.perf_counter() - t)
        hook_batched = []
        for _ in range(10):
            clear_caches(hook)
            t = time.perf_counter()
            hook.assess(txs)
            hook_batched.append((time.perf_counter() - t) / len(txs))

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
    print(f"scoring, full hook,   single tx      {percentiles(hook_single)}  (features + account read + score)")
    print(f"scoring, full hook,   batch of {args.batch:<4}  {percentiles(hook_batched)}  (per tx)")
    print(f"training, MLP (Adam, batch 128)       {fit_rate:,.0f} samples/s ({len(big)} samples x 10 epochs)")
    print(f"training, whole `risk train`          {train_wall:.2f} s wall (data + MLP + forest + calibration + held-out eval)")
    if args.startup_blocks:
        startup(args.startup_blocks)


def startup(n_blocks: int) -> None:
    from state.codec import encode

    accounts = [dev_key(f"acct{i}") for i in range(200)]
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
            t = time.perf_counter()
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
