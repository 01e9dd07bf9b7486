"""One network namespace per node, joined by veth pairs to a bridge; partitions and netem inside them.

Layout of run ``ID`` (names carry the prefix ``qe2e`` so leftovers are ours
to find, interface names stay under Linux's 15 characters)::

    root namespace:  bridge qe2e<ID>br  10.213.K.254/24
                     veth   qe2e<ID>h<i>  (enslaved to the bridge)
    namespace qe2e-<ID>-n<i>:  lo, eth0 = the veth peer, 10.213.K.<i+1>/24

Nodes listen on their namespace's address (p2p and RPC) and on its own
loopback (metrics, admin); the runner reaches RPC from the bridge address.
A partition adds ``blackhole`` routes for the other group's addresses inside
each namespace (packets silently dropped, as on a cut link); healing removes
them.  Latency, jitter and loss are a ``tc netem`` qdisc on eth0 (when the
kernel has sch_netem), a slow link a ``tc tbf`` one.

Everything created is recorded before it exists and removed by ``destroy``
(deleting a namespace deletes its veth pair).
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from dataclasses import dataclass, field

PREFIX = "qe2e"
SUBNET_BASE = "10.213"


class NetnsUnavailable(Exception):
    """Namespaces cannot be used here; ``reason`` says why."""


def namespace_support() -> str | None:
    """None when this process can build namespaces; else the reason it cannot."""
    if os.geteuid() != 0:
        return "not running as root (network namespaces need CAP_NET_ADMIN)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"`ip netns list` failed: {probe.stderr.strip()}"
    return None


def tc_support() -> str | None:
    return None if shutil.which("tc") else "the `tc` command (iproute2) is not installed"


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=20)
    if check and proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(args)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def our_namespaces(run_id: str | None = None) -> list[str]:
    """Names of namespaces with our prefix (of one run, or of any)."""
    out = _run("ip", "netns", "list", check=False).stdout.split("\n")
    names = [line.split()[0] for line in out if line.strip()]
    want = f"{PREFIX}-{run_id}-" if run_id else f"{PREFIX}-"
    return [n for n in names if n.startswith(want)]


def our_links(run_id: str | None = None) -> list[str]:
    out = _run("ip", "-o", "link", "show", check=False).stdout.split("\n")
    names = [line.split(":")[1].strip().split("@")[0] for line in out if line.count(":") >= 2]
    want = f"{PREFIX}{run_id}" if run_id else PREFIX
    return [n for n in names if n.startswith(want)]


def _free_subnet() -> int:
    routes = _run("ip", "-4", "route", "show", check=False).stdout + _run("ip", "-4", "addr", check=False).stdout
    for k in random.sample(range(1, 255), 254):
        if f"{SUBNET_BASE}.{k}." not in routes:
            return k
    raise NetnsUnavailable(f"no free /24 under {SUBNET_BASE}.0.0/16")


@dataclass
class NamespaceNet:
    run_id: str
    nodes: int
    subnet: int = 0
    namespaces: list[str] = field(default_factory=list)  # created so far
    links: list[str] = field(default_factory=list)  # root-namespace links created so far
    blackholes: set[tuple[int, int]] = field(default_factory=set)  # (from node, to node)
    netem: set[int] = field(default_factory=set)

    @property
    def bridge(self) -> str:
        return f"{PREFIX}{self.run_id}br"

    @property
    def gateway(self) -> str:
        return f"{SUBNET_BASE}.{self.subnet}.254"

    def ns(self, i: int) -> str:
        return f"{PREFIX}-{self.run_id}-n{i}"

    def ip(self, i: int) -> str:
        return f"{SUBNET_BASE}.{self.subnet}.{i + 1}"

    def exec_prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.ns(i)]

    def create(self) -> None:
        self.subnet = _free_subnet()
        self.links.append(self.bridge)
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i in range(self.nodes):
            ns, host, peer = self.ns(i), f"{PREFIX}{self.run_id}h{i}", f"{PREFIX}{self.run_id}p{i}"
            self.namespaces.append(ns)
            _run("ip", "netns", "add", ns)
            self.links.append(host)
            _run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
            _run("ip", "link", "set", peer, "netns", ns)
            _run("ip", "link", "set", host, "master", self.bridge)
            _run("ip", "link", "set", host, "up")
            inside = self.exec_prefix(i)
            _run(*inside, "ip", "link", "set", peer, "name", "eth0")
            _run(*inside, "ip", "addr", "add", f"{self.ip(i)}/24", "dev", "eth0")
            _run(*inside, "ip", "link", "set", "eth0", "up")
            _run(*inside, "ip", "link", "set", "lo", "up")

    # -- perturbations ------------------------------------------------------

    def partition(self, groups: list[list[int]]) -> None:
        for a, group in enumerate(groups):
            for b, other in enumerate(groups):
                if a == b:
                    continue
                for i in group:
                    for j in other:
                        if (i, j) not in self.blackholes:
                            _run(*self.exec_prefix(i), "ip", "route", "add", "blackhole", f"{self.ip(j)}/32")
                            self.blackholes.add((i, j))

    def heal(self) -> None:
        for i, j in sorted(self.blackholes):
            _run(*self.exec_prefix(i), "ip", "route", "del", "blackhole", f"{self.ip(j)}/32", check=False)
        self.blackholes.clear()

    def add_netem(self, i: int, delay_ms: int, jitter_ms: int, loss_pct: float) -> None:
        args = ["tc", "qdisc", "add", "dev", "eth0", "root", "netem"]
        if delay_ms:
            args += ["delay", f"{delay_ms}ms"] + ([f"{jitter_ms}ms", "distribution", "normal"] if jitter_ms else [])
        if loss_pct:
            args += ["loss", f"{loss_pct}%"]
        _run(*self.exec_prefix(i), *args)
        self.netem.add(i)

    def netem_support(self) -> str | None:
        """None when ``tc netem`` works inside the namespaces; else why not (a kernel without sch_netem)."""
        if tc_support():
            return tc_support()
        probe = _run(*self.exec_prefix(0), "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms",
                     check=False)
        if probe.returncode != 0:
            return f"`tc qdisc add ... netem` fails: {probe.stderr.strip()} (the kernel has no sch_netem)"
        _run(*self.exec_prefix(0), "tc", "qdisc", "del", "dev", "lo", "root", check=False)
        return None

    def add_rate_limit(self, i: int, rate_kbit: int, latency_ms: int) -> None:
        """A slow link (``tc tbf``): eth0 sends at most ``rate_kbit``, queueing up to ``latency_ms``."""
        burst = max(1600, rate_kbit * 1000 // 8 // 100)  # about 10 ms of traffic, at least one packet
        _run(*self.exec_prefix(i), "tc", "qdisc", "add", "dev", "eth0", "root", "tbf", "rate", f"{rate_kbit}kbit",
             "burst", str(burst), "latency", f"{latency_ms}ms")
        self.netem.add(i)

    def clear_netem(self, i: int) -> None:
        _run(*self.exec_prefix(i), "tc", "qdisc", "del", "dev", "eth0", "root", check=False)
        self.netem.discard(i)

    # -- teardown -------------------------------------------------------------

    def destroy(self) -> list[str]:
        """Remove every namespace and link of this run; returns what could not be removed."""
        for ns in self.namespaces:
            _run("ip", "netns", "del", ns, check=False)
        for link in reversed(self.links):
            _run("ip", "link", "del", link, check=False)  # veths went with their namespace; the bridge is left
        return our_namespaces(self.run_id) + our_links(self.run_id)


def remove_leftovers() -> list[str]:
    """Delete every namespace and link with our prefix (a run killed with SIGKILL leaves them)."""
    removed = []
    for ns in our_namespaces():
        _run("ip", "netns", "del", ns, check=False)
        removed.append(ns)
    for link in our_links():
        _run("ip", "link", "del", link, check=False)
        removed.append(link)
    return removed
