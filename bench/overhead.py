"""What metrics and WebSocket fan-out cost: the load benchmark on fresh 4-validator testnets, alternately
plain (metrics off, no subscriber) and observed (metrics on and scraped every second, ``--ws-clients``
WebSocket subscribers following newHeads, every fifth also an events feed).

    python bench/overhead.py --rate 800 --duration 30 --runs 2

Each run starts a new testnet in a temporary directory (127.0.0.1, free ports), runs bench/load.py
against it, and stops every node by PID.  Prints each run's finalized throughput, p50 finality and
node CPU per finalized transfer, and the observed/plain ratios of the means (the CPU ratio is the
steadier on a shared machine: the clients' own CPU is not in it).  Nothing here asserts; it measures.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cli.testnet import spawn_node, stop_processes  # noqa: E402
from node.client import Client, ClientError  # noqa: E402
from node.config import Home  # noqa: E402
from node.genesis_tools import write_testnet  # noqa: E402
from tests.ports import free_port_range  # noqa: E402


def run_once(observed: bool, args: argparse.Namespace) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="qenex-overhead-") as tmp:
        directory = Path(tmp)
        manifest = write_testnet(directory, validators=4, chain_id="qenex-bench-1",
                                 base_port=free_port_range(4 * 4), accounts=args.accounts)
        if not observed:  # metrics off: testnet init turns them on
            for node in manifest["nodes"]:
                home = Home(directory / node["home"])
                config = home.load_config()
                home.write_config(dataclasses.replace(config, metrics=dataclasses.replace(config.metrics, port=0)))
        procs = [spawn_node(directory / n["home"], directory / n["home"] / "node.log") for n in manifest["nodes"]]
        try:
            (directory / "pids.json").write_text(  # what `qenexd testnet start` writes; load.py reads it
                json.dumps({n["name"]: p.pid for n, p in zip(manifest["nodes"], procs)}))
            deadline = time.monotonic() + 60
            while True:
                try:
                    with Client.connect(manifest["nodes"][0]["rpc"], timeout=2) as client:
                        if client.status()["height"] >= 2:
                            break
                except ClientError:
                    pass
                if time.monotonic() > deadline:
                    raise SystemExit("the testnet did not reach height 2 in 60 s")
                time.sleep(0.5)
            command = [sys.executable, str(ROOT / "bench" / "load.py"), "--dir", str(directory), "--rate",
                       str(args.rate), "--duration", str(args.duration), "--accounts", str(args.accounts)]
            if observed:
                command += ["--ws-clients", str(args.ws_clients), "--scrape", "1"]
            done = subprocess.run(command, capture_output=True, text=True, timeout=args.duration + 300)
            out = done.stdout
            if done.returncode != 0:
                print(f"bench/load.py failed ({done.returncode}):\n{done.stderr[-2000:]}")
        finally:
            stop_processes(procs)
    print(("observed" if observed else "plain   ") + " | " + " | ".join(
        line for line in out.splitlines() if line.startswith(("throughput", "finality", "websocket", "submitted",
                                                               "node cpu"))))
    throughput = re.search(r"throughput (\d+)", out)
    p50 = re.search(r"p50 (\d+) ms", out)
    cpu = re.search(r"node cpu per finalized transfer (\d+) us", out)
    return {"throughput": float(throughput.group(1)) if throughput else float("nan"),
            "p50_ms": float(p50.group(1)) if p50 else float("nan"),
            "cpu_us": float(cpu.group(1)) if cpu else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=int, default=800)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--accounts", type=int, default=200)
    ap.add_argument("--ws-clients", type=int, default=50)
    ap.add_argument("--runs", type=int, default=2, help="runs of each kind, alternated")
    args = ap.parse_args()
    results: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(args.runs):
        for observed in (False, True):
            results[observed].append(run_once(observed, args))
    plain = statistics.fmean(r["throughput"] for r in results[False])
    seen = statistics.fmean(r["throughput"] for r in results[True])
    print(f"plain: {plain:.0f} finalized/s, observed ({args.ws_clients} ws clients + metrics scraped every 1 s): "
          f"{seen:.0f} finalized/s, ratio {seen / plain:.3f}")
    cpu_plain = statistics.fmean(r["cpu_us"] for r in results[False])
    cpu_seen = statistics.fmean(r["cpu_us"] for r in results[True])
    print(f"node cpu per finalized transfer: plain {cpu_plain:.0f} us, observed {cpu_seen:.0f} us, "
          f"ratio {cpu_seen / cpu_plain:.3f}")


if __name__ == "__main__":
    main()
