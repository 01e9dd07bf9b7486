"""A soak: sustained load on a running testnet while every node's RSS is sampled.

    qenexd testnet init --dir testnet-soak --accounts 2000 && qenexd testnet start --dir testnet-soak --quiet &
    python bench/soak.py --dir testnet-soak --rate 600 --duration 600

Runs bench/load.py (``--rate`` for ``--duration`` seconds, the testnet's
genesis-funded senders) and, meanwhile, reads each node's RSS from /proc every
``--every`` seconds (PIDs from the testnet's pids.json).  Prints the samples,
then per node the RSS at the start, at half time and at the end, and the
change over the second half: flat memory is a change near zero there.  The
load's own summary follows.  Measures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from load import proc_usage  # noqa: E402  (bench/load.py: CPU seconds and RSS from /proc)


def rss_mib(pid: int) -> float | None:
    rss = proc_usage(pid)[1]
    return rss / 2**20 if rss else None  # 0: the process is gone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", type=Path, required=True, help="a running testnet (qenexd testnet start)")
    ap.add_argument("--rate", type=int, default=600)
    ap.add_argument("--duration", type=float, default=600.0)
    ap.add_argument("--accounts", type=int, default=2000)
    ap.add_argument("--every", type=float, default=30.0, help="seconds between RSS samples")
    args = ap.parse_args()
    pids: dict[str, int] = json.loads((args.dir / "pids.json").read_text())
    load = subprocess.Popen([sys.executable, str(ROOT / "bench" / "load.py"), "--dir", str(args.dir),
                             "--rate", str(args.rate), "--duration", str(args.duration),
                             "--accounts", str(args.accounts)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples: list[tuple[float, dict[str, float | None]]] = []
    t0 = time.monotonic()
    try:
        while load.poll() is None:
            samples.append((time.monotonic() - t0, {name: rss_mib(pid) for name, pid in pids.items()}))
            print(f"{samples[-1][0]:6.0f} s  " + "  ".join(f"{n} {v:.0f} MiB" if v is not None else f"{n} gone"
                                                       for n, v in samples[-1][1].items()), flush=True)
            deadline = time.monotonic() + args.every
            while load.poll() is None and time.monotonic() < deadline:
                time.sleep(0.5)
        out = load.stdout.read() if load.stdout else ""
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    during = [(t, s) for t, s in samples if t <= args.duration]  # the submission window, not the drain
    if len(during) >= 3:
        half = during[len(during) // 2]
        first, last = during[0], during[-1]
        print(f"\nRSS over the {args.duration:.0f} s of load ({args.rate}/s offered), MiB:")
        for name in pids:
            a, b, c = first[1].get(name), half[1].get(name), last[1].get(name)
            if None in (a, b, c):
                print(f"  {name}: exited during the soak")
                continue
            print(f"  {name}: start {a:.0f}, at {half[0]:.0f} s {b:.0f}, at {last[0]:.0f} s {c:.0f};"
                  f" second half {c - b:+.0f} MiB ({(c - b) / max(last[0] - half[0], 1) * 60:+.1f} MiB/min)")
    print("\n" + out.strip())


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
