"""bench/load.py over fresh testnets of several sizes: one table.

    python bench/load_sweep.py --validators 4,7,10 --rate 600 --duration 15

For each validator count N: ``qenexd testnet init -n N --accounts A`` in a
temporary directory (the risk hook on, as ``make testnet`` runs it), ``qenexd
testnet start`` in a process group of its own, wait for the first blocks,
run bench/load.py against it (its genesis-funded senders), stop the group,
and keep the figures bench/load.py printed.  Prints one row per N:
finalized transfers/s, finality p50/p90/p99, CPU per finalized transfer per
node, RSS of the nodes at the end, refusals.  Measures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QENEXD = [sys.executable, "-m", "cli.main"]

PATTERNS = {
    "tps": r"throughput (\d+) finalized transfers/s",
    "p50": r"finality latency\s+p50 (\d+) ms",
    "p90": r"p90 (\d+) ms",
    "p99": r"p99 (\d+) ms",
    "cpu_us": r"node cpu per finalized transfer (\d+) us",
    "rejected": r"rejected (\d+)",
}


def height(rpc: str) -> int:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "qenex_status", "params": []}).encode()
    request = urllib.request.Request(rpc, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=2) as reply:
        return int(json.loads(reply.read())["result"]["height"])


def one_size(n: int, args: argparse.Namespace, base_port: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix=f"qenex-sweep-{n}-") as tmp:
        net = Path(tmp) / "net"
        subprocess.run([*QENEXD, "testnet", "init", "-n", str(n), "--dir", str(net), "--accounts", str(args.accounts),
                        "--base-port", str(base_port)], cwd=ROOT, check=True, capture_output=True, timeout=300)
        log = open(Path(tmp) / "testnet.log", "wb")
        launcher = subprocess.Popen([*QENEXD, "testnet", "start", "--dir", str(net), "--quiet"], cwd=ROOT,
                                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            rpc = json.loads((net / "testnet.json").read_text())["nodes"][0]["rpc"]
            deadline = time.monotonic() + 120
            while True:
                try:
                    if height(rpc) >= 2:
                        break
                except OSError:
                    pass
                if time.monotonic() > deadline or launcher.poll() is not None:
                    raise SystemExit(f"{n} validators: the testnet did not reach height 2 (see {tmp}/testnet.log)")
                time.sleep(0.5)
            out = subprocess.run([sys.executable, str(ROOT / "bench" / "load.py"), "--dir", str(net),
                                  "--rate", str(args.rate), "--duration", str(args.duration),
                                  "--accounts", str(args.accounts)],
                                 cwd=ROOT, capture_output=True, text=True, timeout=args.duration + 600).stdout
            rss = [int(m) for m in re.findall(r"node\d+: \d+% of a core, RSS (\d+) MiB", out)]
        finally:
            pids_file = net / "pids.json"
            nodes = list(json.loads(pids_file.read_text()).values()) if pids_file.exists() else []
            os.killpg(launcher.pid, signal.SIGTERM)  # the launcher stops its nodes (each in a session of its own)
            try:
                launcher.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(launcher.pid, signal.SIGKILL)
                launcher.wait()
            for pid in nodes:  # any node the launcher did not stop, by PID
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            log.close()
    row: dict[str, object] = {"validators": n}
    for key, pattern in PATTERNS.items():
        m = re.search(pattern, out)
        row[key] = int(m.group(1)) if m else None
    row["rss"] = f"{min(rss)}-{max(rss)}" if rss else "?"
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--validators", default="4,7,10", help="comma-separated validator counts")
    ap.add_argument("--rate", type=int, default=600, help="offered transfers per second (bench/load.py --rate)")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds of submission per size")
    ap.add_argument("--accounts", type=int, default=1000, help="genesis-funded senders")
    ap.add_argument("--base-port", type=int, default=41600)
    args = ap.parse_args()
    rows = [one_size(int(n), args, args.base_port) for n in args.validators.split(",")]
    print(f"offered {args.rate}/s for {args.duration:.0f} s, {args.accounts} genesis-funded senders, risk hook on")
    print("| validators | finalized/s | finality p50 | p90 | p99 | CPU per transfer per node | node RSS (MiB) | refused |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['validators']} | {r['tps']} | {r['p50']} ms | {r['p90']} ms | {r['p99']} ms | {r['cpu_us']} µs "
              f"| {r['rss']} | {r['rejected']} |")


if __name__ == "__main__":
    main()
