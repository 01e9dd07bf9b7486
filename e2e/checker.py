"""Judge a recorded history (``e2e.history``): pure functions, no I/O, no clock.

Each ``check_*`` returns a list of violations, each one sentence naming the
nodes, heights, hashes and times that broke the invariant.  ``check`` runs
them all and computes the figures of the summary table.

Invariants:

* no fork: at every height every node that served a block served the same
  block hash and the same app hash, during the run and at the end;
* no lost commit: a transaction seen committed anywhere, at any time, is in
  every node's final chain at that same height;
* no duplicate: no transaction is committed twice (two heights, or twice in
  a block), and no two committed transactions spend one (sender, nonce);
* convergence: after each perturbation heals, every node reaches the head
  the chain had at that moment within ``converge_s``;
* liveness: while validators holding more than 2/3 of the power are up and
  connected, the chain's head advances at least every ``liveness_s``;
* no node exits but the ones the runner killed or stopped;
* each node's resident memory stays under ``rss_bytes``.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from e2e.history import Commit, History, Perturbation


@dataclass(frozen=True, slots=True)
class Bounds:
    converge_s: float = 30.0
    liveness_s: float = 20.0
    rss_bytes: int = 1024 * 2**20


@dataclass(slots=True)
class Report:
    violations: list[str] = field(default_factory=list)
    figures: dict[str, object] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.violations


def _short(h: str) -> str:
    return h[:12] + ".." if len(h) > 14 else h


def _all_sights(history: History) -> list[Commit]:
    return history.commits + history.final


def check_no_fork(history: History) -> list[str]:
    seen: dict[int, dict[tuple[str, str], set[int]]] = defaultdict(lambda: defaultdict(set))
    for c in _all_sights(history):
        seen[c.height][(c.block_hash, c.app_hash)].add(c.node)
    out = []
    for height in sorted(seen):
        versions = seen[height]
        if len(versions) > 1:
            parts = "; ".join(f"block {_short(b)} app {_short(a)} on nodes {sorted(n)}"
                              for (b, a), n in sorted(versions.items()))
            kind = "app hash" if len({b for b, _ in versions}) == 1 else "block"
            out.append(f"fork at height {height}: nodes disagree on the {kind}: {parts}")
    return out


def _final_chains(history: History) -> dict[int, dict[int, Commit]]:
    chains: dict[int, dict[int, Commit]] = defaultdict(dict)
    for c in history.final:
        chains[c.node][c.height] = c
    return chains


def committed_anywhere(history: History) -> dict[str, tuple[int, int]]:
    """tx -> (height, node) of its first sight as committed, on any node, during the run or at the end."""
    out: dict[str, tuple[int, int]] = {}
    for c in sorted(_all_sights(history), key=lambda c: c.t):
        for tx in c.txs:
            out.setdefault(tx, (c.height, c.node))
    return out


def check_no_lost_commit(history: History) -> list[str]:
    chains = _final_chains(history)
    out = []
    for tx, (height, where) in sorted(committed_anywhere(history).items(), key=lambda kv: kv[1]):
        for node in range(history.validators):
            block = chains.get(node, {}).get(height)
            if block is None:
                head = max(chains.get(node, {}), default=0)
                out.append(f"lost commit: tx {_short(tx)} committed at height {height} (seen on node{where}) "
                           f"but node{node}'s final chain has no block {height} (head {head})")
            elif tx not in block.txs:
                out.append(f"lost commit: tx {_short(tx)} committed at height {height} (seen on node{where}) "
                           f"is not in node{node}'s final block {height} ({_short(block.block_hash)})")
    return out


def check_no_duplicate(history: History) -> list[str]:
    out = []
    by_tx = {s.tx: s for s in history.submissions}
    for node, chain in sorted(_final_chains(history).items()):
        places: dict[str, list[tuple[int, int]]] = defaultdict(list)
        for height, block in sorted(chain.items()):
            for index, tx in enumerate(block.txs):
                places[tx].append((height, index))
        for tx, where in sorted(places.items()):
            if len(where) > 1:
                out.append(f"duplicate: tx {_short(tx)} committed {len(where)} times on node{node} "
                           f"at (height, index) {where}")
        spent: dict[tuple[str, int], set[str]] = defaultdict(set)
        for tx in places:
            sub = by_tx.get(tx)
            if sub is not None:
                spent[(sub.sender, sub.nonce)].add(tx)
        for (sender, nonce), txs in sorted(spent.items()):
            if len(txs) > 1:
                out.append(f"duplicate: nonce {nonce} of {sender} spent by {len(txs)} committed txs on node{node}: "
                           f"{sorted(_short(t) for t in txs)}")
    return out


def _reached(history: History) -> dict[int, list[tuple[float, int]]]:
    """node -> [(t, height)] sorted by time: when each node was first seen at each height."""
    out: dict[int, list[tuple[float, int]]] = defaultdict(list)
    for c in history.commits:
        out[c.node].append((c.t, c.height))
    for sights in out.values():
        sights.sort()
    return out


def head_at(history: History, t: float) -> int:
    """The highest height any node had been seen at by time ``t``."""
    return max((c.height for c in history.commits if c.t <= t), default=0)


def recovery_time(history: History, p: Perturbation) -> tuple[float | None, str]:
    """Seconds from ``p``'s end until every node was seen at the head the chain had then (None: never)."""
    target = head_at(history, p.end)
    reached = _reached(history)
    worst = 0.0
    for node in range(history.validators):
        when = next((t for t, h in reached.get(node, []) if h >= target), None)
        if when is None:
            top = max((h for _, h in reached.get(node, [])), default=0)
            return None, f"node{node} never reached height {target} (highest seen {top})"
        worst = max(worst, when - p.end)
    return max(worst, 0.0), ""


def resume_time(history: History, p: Perturbation) -> float | None:
    """Seconds from ``p``'s end until the chain's head moved past the head it had then (None: never)."""
    target = head_at(history, p.end)
    return next((max(c.t - p.end, 0.0) for c in sorted(history.commits, key=lambda c: c.t)
                 if c.height > target), None)


def perturbation_rows(history: History) -> list[str]:
    """One line per perturbation: when, whether a quorum stayed connected, heads before and after, recovery."""
    def heads(t: float) -> list[int]:
        return [max((c.height for c in history.commits if c.node == n and c.t <= t), default=0)
                for n in range(history.validators)]

    rows = []
    for p in history.perturbations:
        rec, _ = recovery_time(history, p)
        res = resume_time(history, p)
        rows.append(f"{p.detail or p.kind:<34} {p.start:7.1f}-{p.end:7.1f} s  quorum {'yes' if p.quorum_connected else 'no '}"
                    f"  heads {heads(p.start)} -> {heads(p.end)}  all caught up "
                    f"{'never' if rec is None else f'{rec:.1f} s'}  next block {'never' if res is None else f'{res:.1f} s'}")
    return rows


def check_convergence(history: History, bounds: Bounds) -> list[str]:
    out = []
    for p in history.perturbations:
        seconds, why = recovery_time(history, p)
        name = f"{p.kind} of {list(p.nodes)} ({p.start:.1f}-{p.end:.1f} s)"
        if seconds is None:
            out.append(f"not converged after {name}: {why}")
        elif seconds > bounds.converge_s:
            out.append(f"not converged after {name}: took {seconds:.1f} s > {bounds.converge_s:.0f} s")
    return out


def _quorum_windows(history: History) -> list[tuple[float, float]]:
    """The stretches of the load phase during which a quorum was up and connected."""
    gaps = sorted((p.start, p.end) for p in history.perturbations if not p.quorum_connected)
    windows, t = [], history.load_start
    for a, b in gaps:
        if a > t:
            windows.append((t, a))
        t = max(t, b)
    if history.load_end > t:
        windows.append((t, history.load_end))
    return windows


def check_liveness(history: History, bounds: Bounds) -> list[str]:
    advances = sorted({(c.t, c.height) for c in history.commits})
    times, top = [], 0
    for t, h in advances:  # the moments the chain's head moved up
        if h > top:
            times.append(t)
            top = h
    out = []
    for a, b in _quorum_windows(history):
        marks = [a] + [t for t in times if a < t <= b] + [b]
        worst = max(range(len(marks) - 1), key=lambda i: marks[i + 1] - marks[i])
        gap = marks[worst + 1] - marks[worst]
        if gap > bounds.liveness_s:
            out.append(f"liveness: no new block for {gap:.1f} s ({marks[worst]:.1f}-{marks[worst + 1]:.1f} s) "
                       f"while a quorum was connected (bound {bounds.liveness_s:.0f} s)")
    return out


def check_exits(history: History) -> list[str]:
    return [f"node{e.node} exited with status {e.returncode} at {e.t:.1f} s without being killed"
            for e in history.exits]


def check_rss(history: History, bounds: Bounds) -> list[str]:
    return [f"node{node} RSS reached {rss / 2**20:.0f} MiB > {bounds.rss_bytes / 2**20:.0f} MiB"
            for node, rss in sorted(history.max_rss.items()) if rss > bounds.rss_bytes]


def figures(history: History) -> dict[str, object]:
    accepted = {s.tx for s in history.submissions if s.accepted}
    submitted = {s.tx for s in history.submissions}
    anywhere = committed_anywhere(history)
    ours = submitted & anywhere.keys()
    recoveries = [recovery_time(history, p)[0] for p in history.perturbations]
    resumes = [resume_time(history, p) for p in history.perturbations]
    chains = _final_chains(history)
    return {
        "perturbations": len(history.perturbations),
        "perturbation_kinds": ",".join(sorted({p.kind for p in history.perturbations})),
        "height": min((max(c) for c in chains.values() if c), default=0),
        "txs_submitted": len(submitted),
        "submissions": len(history.submissions),
        "txs_accepted": len(accepted),
        "txs_committed": len(ours),
        "accepted_not_committed": len(accepted - anywhere.keys()),
        "max_recovery_s": max((r for r in recoveries if r is not None), default=0.0),
        "max_resume_s": max((r for r in resumes if r is not None), default=0.0),
        "max_rss_mib": round(max(history.max_rss.values(), default=0) / 2**20),
    }


def check(history: History, bounds: Bounds) -> Report:
    report = Report()
    forks = check_no_fork(history)
    lost = check_no_lost_commit(history)
    dups = check_no_duplicate(history)
    report.violations = (forks + lost + dups + check_convergence(history, bounds) + check_liveness(history, bounds)
                         + check_exits(history) + check_rss(history, bounds))
    report.figures = figures(history) | {"forks": len(forks), "lost": len(lost), "duplicates": len(dups),
                                         "violations": len(report.violations)}
    return report


def summary_table(name: str, report: Report, extra: Iterable[tuple[str, object]] = ()) -> str:
    f = report.figures
    rows = [
        ("manifest", name),
        *extra,
        ("perturbations applied", f"{f['perturbations']} ({f['perturbation_kinds'] or '-'})"),
        ("blocks committed (final height)", f["height"]),
        ("txs submitted / accepted / committed", f"{f['txs_submitted']} / {f['txs_accepted']} / {f['txs_committed']}"),
        ("accepted, never committed (mempool lost)", f["accepted_not_committed"]),
        ("lost commits", f["lost"]),
        ("duplicates", f["duplicates"]),
        ("forks", f["forks"]),
        ("max recovery time (all nodes at the head)", f"{f['max_recovery_s']:.1f} s"),
        ("max time to the next block after a heal", f"{f['max_resume_s']:.1f} s"),
        ("max RSS", f"{f['max_rss_mib']} MiB"),
        ("result", "PASS" if report.ok else f"FAIL ({len(report.violations)} violations)"),
    ]
    width = max(len(k) for k, _ in rows)
    lines = [f"{k:<{width}}  {v}" for k, v in rows]
    lines += [f"  ! {v}" for v in report.violations[:50]]
    if len(report.violations) > 50:
        lines.append(f"  ! ... and {len(report.violations) - 50} more")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """``python -m e2e.checker HISTORY.json [converge_s liveness_s rss_mib]``: judge a saved history again."""
    if not argv:
        print(main.__doc__, file=sys.stderr)
        return 2
    history = History.load(Path(argv[0]))
    bounds = Bounds(*(float(a) for a in argv[1:3])) if len(argv) >= 3 else Bounds()
    if len(argv) >= 4:
        bounds = Bounds(bounds.converge_s, bounds.liveness_s, int(float(argv[3]) * 2**20))
    report = check(history, bounds)
    print(summary_table(argv[0], report))
    print(json.dumps(report.figures))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
