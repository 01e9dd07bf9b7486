"""E2E manifests: a testnet, its load and a schedule of perturbations, in TOML (``e2e/manifests/``).

::

    name = "ci"
    validators = 4
    network = "loopback"        # "loopback", "namespaces" (required) or "auto" (namespaces when possible)
    senders = 16                # genesis-funded load accounts, one transfer in flight each
    rate = 30                   # submissions per second, all senders together
    duration_s = 75             # load phase; every perturbation ends inside it
    settle_s = 40               # after the load: at most this long for every node to catch up
    [consensus]                 # node.config ConsensusSection overrides
    timeout_base_ms = 1500
    [bounds]                    # e2e.checker.Bounds
    converge_s = 30
    liveness_s = 20
    rss_mib = 1024
    [[perturbations]]
    at_s = 10                   # seconds after the load started
    kind = "kill"               # kill (-9, then restart), pause (SIGSTOP/SIGCONT), restart (SIGTERM, then start),
    node = 1                    # partition (groups = [[0, 1], [2, 3]]), netem (nodes, delay_ms, jitter_ms,
    hold_s = 5                  # loss_pct), slowlink (nodes, rate_kbit, latency_ms), diskfull (node: its
                                # data directory, a tmpfs of data_mib, filled up, then freed), clockskew
                                # (node, skew_ms: restarted with its clock that far off, then restarted right)
    [byzantine]                 # one validator equivocates (node.misbehaviour), on short epochs:
    node = 3                    # it must be slashed, tombstoned and out of every node's set by the end
    from_height = 30            # its first doubled COMMIT
    epoch_length = 20           # the genesis epochs (unbonding 10 epochs, evidence age 9)
    [chaos]                     # instead of (or after) [[perturbations]]: a seeded random sequence
    seed = 7
    start_s = 10
    end_s = 600
    hold_s = [4, 12]
    gap_s = [6, 15]
    kinds = ["kill", "pause", "restart", "partition", "netem", "slowlink", "diskfull"]
    multi = 0.25                # share of kill/pause/restart hitting two or all nodes at once

Perturbations run one at a time, in order (as CometBFT's runner does).
"""

from __future__ import annotations

import random
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

KINDS = ("kill", "pause", "restart", "partition", "netem", "slowlink", "diskfull", "clockskew")
# partition runs on loopback too, through the nodes' test-only connection gate (node.misbehaviour).
NEEDS_NAMESPACES = frozenset({"netem", "slowlink"})
NEEDS_ROOT = frozenset({"diskfull"})  # a tmpfs mounted on the node's data directory
NETWORKS = ("loopback", "namespaces", "auto")


class ManifestError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Fault:
    at_s: float
    kind: str
    nodes: tuple[int, ...] = ()
    groups: tuple[tuple[int, ...], ...] = ()
    hold_s: float = 5.0
    delay_ms: int = 100
    jitter_ms: int = 20
    loss_pct: float = 1.0
    rate_kbit: int = 256
    latency_ms: int = 200
    skew_ms: int = 5000  # clockskew: the node restarts with its clock this far off (test-only, node.misbehaviour)

    def describe(self) -> str:
        if self.kind == "partition":
            return "partition " + "|".join(",".join(map(str, g)) for g in self.groups)
        if self.kind == "netem":
            return f"netem {list(self.nodes)} {self.delay_ms}±{self.jitter_ms} ms loss {self.loss_pct}%"
        if self.kind == "slowlink":
            return f"slowlink {list(self.nodes)} {self.rate_kbit} kbit/s"
        if self.kind == "clockskew":
            return f"clockskew node{self.nodes[0]} {self.skew_ms:+d} ms"
        if len(self.nodes) > 1:
            return f"{self.kind} nodes {','.join(map(str, self.nodes))}"
        return f"{self.kind} node{self.nodes[0]}"


@dataclass(frozen=True, slots=True)
class Manifest:
    name: str
    validators: int = 4
    network: str = "loopback"
    senders: int = 16
    rate: float = 30.0
    duration_s: float = 75.0
    settle_s: float = 40.0
    poll_s: float = 0.5
    base_port: int = 0  # 0: a free range is picked
    data_mib: int = 64  # the tmpfs of a node that a diskfull perturbation fills
    consensus: dict[str, int] = field(default_factory=dict)
    converge_s: float = 30.0
    liveness_s: float = 20.0
    rss_mib: int = 1024
    faults: tuple[Fault, ...] = ()
    byzantine_node: int | None = None
    byzantine_from_height: int = 30
    epoch_length: int = 20  # genesis epochs when byzantine_node is set (otherwise write_testnet's default)

    @property
    def needs_namespaces(self) -> bool:
        return any(f.kind in NEEDS_NAMESPACES for f in self.faults)


def _fault(i: int, raw: dict[str, Any], n: int) -> Fault:
    kind = raw.get("kind")
    if kind not in KINDS:
        raise ManifestError(f"perturbation {i}: kind {kind!r} is not one of {', '.join(KINDS)}")
    nodes = tuple(raw["nodes"]) if "nodes" in raw else ((raw["node"],) if "node" in raw else ())
    groups = tuple(tuple(g) for g in raw.get("groups", ()))
    if kind == "partition":
        members = sorted(x for g in groups for x in g)
        if len(groups) < 2 or members != sorted(set(members)) or not set(members) <= set(range(n)):
            raise ManifestError(f"perturbation {i}: partition groups {raw.get('groups')} must be disjoint groups "
                                f"of nodes 0..{n - 1}")
    elif not nodes or not all(0 <= x < n for x in nodes):
        raise ManifestError(f"perturbation {i}: {kind} needs node (or nodes) in 0..{n - 1}, got {nodes}")
    known = {f for f in Fault.__dataclass_fields__} | {"node"}
    unknown = set(raw) - known
    if unknown:
        raise ManifestError(f"perturbation {i}: unknown keys {sorted(unknown)}")
    args = {k: v for k, v in raw.items() if k not in ("node", "nodes", "groups")}
    return Fault(nodes=nodes, groups=groups, **args)


def chaos_schedule(spec: dict[str, Any], n: int) -> list[Fault]:
    """A seeded random sequence of perturbations between ``start_s`` and ``end_s``: same seed, same schedule."""
    rng = random.Random(spec.get("seed", 0))
    kinds = list(spec.get("kinds", KINDS))
    hold, gap = spec.get("hold_s", [4, 12]), spec.get("gap_s", [6, 15])
    t, end, out = float(spec.get("start_s", 10)), float(spec["end_s"]), []
    while True:
        kind = rng.choice(kinds)
        h = round(rng.uniform(*hold), 1)
        if t + h > end:
            return out
        node = rng.randrange(n)
        if kind == "partition":
            order = rng.sample(range(n), n)
            cut = rng.choice([n // 2, n - 1])  # 2|2 (no quorum) or 3|1 (quorum on one side)
            f = Fault(t, kind, groups=(tuple(sorted(order[:cut])), tuple(sorted(order[cut:]))), hold_s=h)
        elif kind == "netem":
            f = Fault(t, kind, nodes=tuple(sorted(rng.sample(range(n), rng.randint(1, n)))), hold_s=h,
                      delay_ms=rng.choice([20, 50, 100, 200]), jitter_ms=rng.choice([0, 10, 50]),
                      loss_pct=rng.choice([0.0, 1.0, 5.0]))
        elif kind == "slowlink":
            f = Fault(t, kind, nodes=(node,), hold_s=h, rate_kbit=rng.choice([64, 256, 1024]))
        elif kind in ("kill", "pause", "restart") and rng.random() < spec.get("multi", 0.0):
            # two or all nodes at once: the chain stops until they are back
            f = Fault(t, kind, nodes=tuple(sorted(rng.sample(range(n), rng.choice([2, n])))), hold_s=h)
        else:  # kill, pause, restart, diskfull
            f = Fault(t, kind, nodes=(node,), hold_s=h)
        out.append(f)
        t = round(t + h + rng.uniform(*gap), 1)


def load_manifest(path: Path) -> Manifest:
    try:
        raw = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"{path}: {exc}") from None
    n = int(raw.get("validators", 4))
    faults = [_fault(i, f, n) for i, f in enumerate(raw.get("perturbations", []))]
    if "chaos" in raw:
        faults += chaos_schedule(raw["chaos"], n)
    bounds = raw.get("bounds", {})
    m = Manifest(
        name=raw.get("name", path.stem), validators=n, network=raw.get("network", "loopback"),
        senders=int(raw.get("senders", 16)), rate=float(raw.get("rate", 30)),
        duration_s=float(raw.get("duration_s", 75)), settle_s=float(raw.get("settle_s", 40)),
        poll_s=float(raw.get("poll_s", 0.5)), base_port=int(raw.get("base_port", 0)),
        data_mib=int(raw.get("data_mib", 64)),
        consensus=dict(raw.get("consensus", {})), converge_s=float(bounds.get("converge_s", 30)),
        liveness_s=float(bounds.get("liveness_s", 20)), rss_mib=int(bounds.get("rss_mib", 1024)),
        faults=tuple(sorted(faults, key=lambda f: f.at_s)),
    )
    if "byzantine" in raw:
        byz = raw["byzantine"]
        unknown = set(byz) - {"node", "from_height", "epoch_length"}
        if unknown or not isinstance(byz.get("node"), int) or not 0 <= byz["node"] < n:
            raise ManifestError(f"{path}: [byzantine] needs node in 0..{n - 1} (and optionally from_height, "
                                f"epoch_length){'; unknown keys ' + str(sorted(unknown)) if unknown else ''}")
        m = replace(m, byzantine_node=byz["node"], byzantine_from_height=int(byz.get("from_height", 30)),
                    epoch_length=int(byz.get("epoch_length", 20)))
    if m.network not in NETWORKS:
        raise ManifestError(f"{path}: network {m.network!r} is not one of {', '.join(NETWORKS)}")
    for a, b in zip(m.faults, m.faults[1:]):
        if a.at_s + a.hold_s > b.at_s:
            raise ManifestError(f"{path}: {a.describe()} at {a.at_s} s lasts until {a.at_s + a.hold_s} s, "
                                f"past the next one at {b.at_s} s (perturbations run one at a time)")
    if m.faults and m.faults[-1].at_s + m.faults[-1].hold_s > m.duration_s - 5:
        raise ManifestError(f"{path}: the last perturbation must end 5 s before the load stops at {m.duration_s} s")
    return m


def with_network(m: Manifest, network: str) -> Manifest:
    return replace(m, network=network)
