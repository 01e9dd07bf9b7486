"""The long consensus sweep: randomized schedules with one Byzantine validator, per adversary kind.

The same simulator and properties as tests/test_consensus_sim.py (driver
model, safety at every commit, liveness within a timeout budget after
healing), with many more schedules than the fast suite runs.  CPU heavy: run it
under the shared lock, one kind at a time::

    flock /tmp/qenex-heavy.lock env PYTHONPATH=$PWD .venv/bin/python bench/consensus_sweep.py --kind junk_bytes -n 5000

Prints one line per kind: schedules run, violations (safety, liveness, other),
wall time, and the distribution of timeouts needed after healing.  A violation
prints its parameters, which replay with ``tests.consensus_sim.run``.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.consensus_sim import N, NODES, STAKES, Kind, run  # noqa: E402


def schedule(kind: Kind, rng: random.Random) -> dict[str, Any]:
    """Random parameters for ``run``, drawn like the hypothesis strategies of the fast suite."""
    stakes = rng.choice(STAKES)
    byzantine = rng.randrange(N)
    smallest = min(range(N), key=lambda i: (stakes[i], i))
    powers = tuple(stakes[(i - byzantine + smallest) % N] for i in range(N))
    partition = None
    if kind == Kind.VIEW_CHANGE_ONLY or rng.random() < 0.25:
        node = rng.choice([i for i in range(N) if i != byzantine])
        views = rng.randrange(65, 160) if kind == Kind.VIEW_CHANGE_ONLY and rng.random() < 0.8 else rng.randrange(1, 70)
        partition = (node, views)
    slow = {rng.randrange(NODES * NODES) for _ in range(rng.randrange(5))}
    return dict(
        byzantine=byzantine,
        pattern=rng.randrange(2**61),
        drop_budget=rng.randrange(26),
        choices=[rng.randrange(2**14 + 1) for _ in range(rng.randrange(20, 401))],
        slow_links=sum(1 << link for link in slow),
        powers=powers if rng.random() < 0.5 else (1,) * N,
        kind=kind,
        partition=partition,
    )


def sweep(kind: Kind, count: int, seed: int) -> int:
    rng = random.Random(f"{seed}:{kind.name}")
    began = time.monotonic()
    violations = {"safety": 0, "liveness": 0, "other": 0}
    timeouts: list[int] = []
    views: list[int] = []
    for number in range(count):
        params = schedule(kind, rng)
        try:
            sim = run(**params)
        except AssertionError as exc:
            text = str(exc)
            what = "safety" if "SAFETY" in text else "liveness" if "LIVENESS" in text else "other"
            violations[what] += 1
            print(f"  VIOLATION ({what}) #{number}: {params!r}\n    {text.splitlines()[0] if text else ''}",
                  flush=True)
            continue
        timeouts.append(sim.heal_timeouts)
        views.append(sim.max_view)
    elapsed = time.monotonic() - began
    timeouts.sort()
    views.sort()

    def pct(values: list[int], p: int) -> int:
        return values[min(len(values) - 1, len(values) * p // 100)] if values else 0

    print(f"{kind.name.lower():17} schedules={count} safety={violations['safety']} liveness={violations['liveness']} "
          f"other={violations['other']} time={elapsed:.0f}s ({elapsed / max(count, 1) * 1000:.0f} ms each) "
          f"heal-timeouts p50={pct(timeouts, 50)} p99={pct(timeouts, 99)} max={pct(timeouts, 100)} "
          f"max-view p50={pct(views, 50)} max={pct(views, 100)}", flush=True)
    return sum(violations.values())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=[k.name.lower() for k in Kind] + ["all"], default="all")
    parser.add_argument("-n", "--count", type=int, default=5000, help="schedules per kind")
    parser.add_argument("--seed", type=int, default=8)
    args = parser.parse_args()
    kinds = list(Kind) if args.kind == "all" else [Kind[args.kind.upper()]]
    failed = sum(sweep(kind, args.count, args.seed) for kind in kinds)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
