"""Block execution alone on LevelDB: how fast the state machine applies blocks of transfers (issue 12).

    python bench/apply.py --blocks 20 --txs 2000 --senders 2000

Builds ``--blocks`` blocks of ``--txs`` transfers each, from ``--senders``
genesis-funded accounts (round robin, so each sender's nonces run in
order) to fresh receivers, on a proposer Application (MemoryKV).  Every
signature is verified once up front, as admission does in a node (the
process-wide verified-hash cache then skips it during execution).  A second,
independent Application on LevelDB in a temporary directory (the validator
path, with the stub commit verifier) then runs ``execute_block`` and
``commit_block`` on each block in turn, checking the app hash against the
proposer's.  Prints transfers/s for each of the two, p50/p99 per block of
each and of both, and the process's RSS (current and peak).  Only the
validator's calls are timed; building, signing and verifying are not.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from state.app import Application  # noqa: E402
from state.genesis import Params  # noqa: E402
from state.kv import LevelDBKV, MemoryKV  # noqa: E402
from state.testing import ONE_QNX, STUB_VERIFIER, dev_key, make_genesis, stub_cert, transfer  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss_mib() -> tuple[float, float]:
    """(current, peak) resident set size in MiB (Linux: /proc/self/statm; ru_maxrss is KiB)."""
    page = resource.getpagesize()
    try:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[1]) * page / 2**20
    except OSError:
        current = float("nan")
    return current, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=20)
    ap.add_argument("--txs", type=int, default=2000, help="transfers per block")
    ap.add_argument("--senders", type=int, default=2000, help="genesis-funded sending accounts")
    ap.add_argument("--history-blocks", type=int, default=10_000,
                    help="the validator's retention window (state.history; below --blocks, pruning runs too)")
    args = ap.parse_args(argv)
    if min(args.blocks, args.txs, args.senders) < 1 or args.history_blocks < 0:
        raise SystemExit("--blocks, --txs and --senders must be at least 1, --history-blocks at least 0")

    validator = dev_key("apply-validator")
    senders = [dev_key(f"apply-sender-{i}") for i in range(args.senders)]
    params = Params(max_block_txs=max(Params().max_block_txs, args.txs))
    genesis = make_genesis(validators=(validator,), funded=senders, balance=10**6 * ONE_QNX, params=params)
    proposer = Application(MemoryKV(), genesis)
    nonces = [0] * len(senders)

    t_prep = time.perf_counter()
    blocks = []
    n = 0
    for b in range(args.blocks):
        txs = []
        for _ in range(args.txs):
            i = n % len(senders)
            receiver = dev_key(f"apply-receiver-{n % 10_000}").address
            txs.append(transfer(senders[i], nonces[i], receiver, 1 + n % 1000, chain_id=genesis.chain_id))
            nonces[i] += 1
            n += 1
        for stx in txs:
            assert stx.verify_signature()  # as admission would have, before the block
        height = proposer.height + 1
        block, built = proposer.build_block(txs, proposer=validator.address,
                                            time_ms=genesis.genesis_time_ms + 1000 * height,
                                            last_commit=proposer.get_commit_cert(height - 1) or b"")
        if len(block.txs) != len(txs):
            raise SystemExit(f"only {len(block.txs)} of {len(txs)} transfers were includable in block {height}")
        proposer.commit_block(block, built, stub_cert(height, block.hash))
        blocks.append((block, built.app_hash))
    prep_s = time.perf_counter() - t_prep

    exec_times: list[float] = []
    commit_times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="qenex-apply-") as tmp:
        store = LevelDBKV(Path(tmp) / "validator", create_if_missing=True)
        try:
            app = Application(store, genesis, commit_verifier=STUB_VERIFIER, history_blocks=args.history_blocks)
            rss_start = rss_mib()
            for block, app_hash in blocks:
                t0 = time.perf_counter()
                result = app.execute_block(block)
                t1 = time.perf_counter()
                if result.app_hash != app_hash:
                    raise SystemExit(f"block {block.height}: the validator disagrees with the proposer")
                app.commit_block(block, result, stub_cert(block.height, block.hash))
                t2 = time.perf_counter()
                exec_times.append(t1 - t0)
                commit_times.append(t2 - t1)
            rss_end = rss_mib()
        finally:
            store.close()

    total = args.blocks * args.txs
    exec_s, commit_s = sum(exec_times), sum(commit_times)
    both = [e + c for e, c in zip(exec_times, commit_times)]

    def ms(values: list[float]) -> str:
        return f"p50 {percentile(values, 0.5) * 1000:8.1f} ms  p99 {percentile(values, 0.99) * 1000:8.1f} ms"

    print(f"block execution on LevelDB: {args.blocks} blocks x {args.txs} transfers from {args.senders} senders, "
          f"signatures verified beforehand (setup {prep_s:.1f} s, not timed), history_blocks {args.history_blocks}")
    print(f"  execute_block {total / exec_s:10.0f} transfers/s   per block {ms(exec_times)}")
    print(f"  commit_block  {total / commit_s:10.0f} transfers/s   per block {ms(commit_times)}")
    print(f"  both          {total / (exec_s + commit_s):10.0f} transfers/s   per block {ms(both)}")
    print(f"  RSS {rss_start[0]:.0f} MiB before the validator's blocks, {rss_end[0]:.0f} MiB after "
          f"(peak {rss_end[1]:.0f} MiB, setup included)")


if __name__ == "__main__":
    main()
