"""Run one e2e manifest: ``python -m e2e.runner e2e/manifests/ci.toml [--out DIR] [--network MODE]``.

Stages (after CometBFT's runner): setup (a fresh ``write_testnet`` home set
in a temporary directory, and the namespaces when used), start (every
node, then wait for blocks), load + perturb (transfers from genesis-funded
load accounts while the schedule runs; every submission and every block
each node serves is recorded), wait (every node catches up), sweep (every
node's whole chain is read), check (``e2e.checker``), cleanup.

Cleanup always runs: on success, on a violation, on an exception, on Ctrl-C
and on SIGTERM, every node process this runner started (by PID, and its
process group) is killed and every namespace, veth and bridge it made is
deleted.  ``DIR/runner-state.json`` lists them while the run lives.

Listeners: 127.0.0.1 only (loopback mode), or the addresses of namespaces
this run created.  Exit status: 0 all invariants hold, 1 a violation, 2 the
manifest or the environment does not allow the run (one line says why),
130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from e2e import netns  # noqa: E402
from e2e.checker import Bounds, check, perturbation_rows, summary_table  # noqa: E402
from e2e.history import Commit, Exit, History, Perturbation, Submission  # noqa: E402
from e2e.manifest import NEEDS_NAMESPACES, NEEDS_ROOT, Fault, Manifest, ManifestError, load_manifest  # noqa: E402

STOP_GRACE_S = 15.0
START_TIMEOUT_S = 90.0
COMMIT_WAIT_S = 12.0  # a sender re-sends its transaction (to another node) when it is not committed by then
RPC_TIMEOUT_S = 3.0


class E2EError(Exception):
    """The run cannot go on (environment, manifest, a node that does not start): one line for the user."""


def log(msg: str) -> None:
    print(f"[e2e {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def _ephemeral_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def port_taken(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def free_base_port(count: int) -> int:
    """A base of ``count`` free consecutive ports on 127.0.0.1, below the ephemeral range (tests/ports.py's reason)."""
    high = _ephemeral_start() - count
    for _ in range(200):
        base = random.randrange(20000, high)
        if not any(port_taken(p) for p in range(base, base + count)):
            return base
    raise E2EError("no free range of ports found on 127.0.0.1")


class NodeProc:
    """One node process: its state as the runner made it (up, paused, down, stopping)."""

    def __init__(self, index: int, home: Path, prefix: list[str]) -> None:
        self.index, self.home, self.prefix = index, home, prefix
        self.proc: subprocess.Popen[bytes] | None = None
        self.state = "down"
        self.gate = False  # runs the test-only connection gate (loopback partitions)

    def start(self, extra_env: dict[str, str] | None = None) -> None:
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        from node.misbehaviour import CLOCK_OFFSET_ENV, GATE_ENV

        env.pop(CLOCK_OFFSET_ENV, None)
        if self.gate:
            env[GATE_ENV] = "1"
        env.update(extra_env or {})
        with open(self.home / "node.log", "ab") as out:
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "cli.main", "start", "--home", str(self.home)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True)
        self.state = "up"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None and self.proc.poll() is None else None

    def signal(self, sig: int) -> None:
        if self.pid is not None:
            os.kill(self.pid, sig)

    def kill_group(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own session: the node and anything it spawned
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass

    def log_tail(self, lines: int = 15) -> str:
        path = self.home / "node.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


class Runner:
    def __init__(self, manifest: Manifest, out: Path) -> None:
        self.m = manifest
        self.out = out
        self.run_id = secrets.token_hex(2)
        self.net: netns.NamespaceNet | None = None
        self.nodes: list[NodeProc] = []
        self.urls: list[str] = []
        self.history = History(validators=manifest.validators)
        self.byzantine_address = ""  # the equivocating validator's consensus address, with [byzantine]
        self.members: set[int] | None = None  # nodes in the current validator set (None: all)
        self.testnet_nodes: list[dict[str, Any]] = []
        self.t0 = time.monotonic()
        self.committed: set[str] = set()
        self.stop_load = False
        self.stop_observing = False
        self.notes: list[str] = []
        self.netem_reason: str | None = None
        self.torn_down = False
        self.phase = "setup"
        self.left_over: list[str] = []
        self.mounts: list[Path] = []  # tmpfs data directories (diskfull), unmounted at teardown

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 3)

    def note(self, msg: str) -> None:
        log(msg)
        self.notes.append(msg)

    # -- setup --------------------------------------------------------------

    def choose_network(self) -> str:
        if os.geteuid() != 0 and any(f.kind in NEEDS_ROOT for f in self.m.faults):
            raise E2EError(f"manifest {self.m.name} has a diskfull perturbation, which mounts a tmpfs: run as root")
        why = netns.namespace_support()
        if self.m.network == "loopback":
            return "loopback"
        if why is None:
            return "namespaces"
        if self.m.network == "namespaces" or self.m.needs_namespaces:
            kinds = sorted({f.kind for f in self.m.faults} & NEEDS_NAMESPACES)
            raise E2EError(f"manifest {self.m.name} needs network namespaces "
                           f"({', '.join(kinds) or 'network = namespaces'}), but {why}")
        self.note(f"network namespaces unavailable ({why}): falling back to 127.0.0.1 loopback")
        return "loopback"

    def write_state(self) -> None:
        state = {"runner_pid": os.getpid(), "run_id": self.run_id, "phase": self.phase,
                 "pids": {n.index: n.proc.pid for n in self.nodes if n.proc is not None},
                 "alive": sorted(n.index for n in self.nodes if n.pid is not None),
                 "namespaces": list(self.net.namespaces) if self.net else [],
                 "links": list(self.net.links) if self.net else [],
                 "left_over": self.left_over, "mounts": [str(p) for p in self.mounts]}
        (self.out / "runner-state.json").write_text(json.dumps(state) + "\n")

    def setup(self) -> None:
        from node.config import Home, NodeConfig
        from node.genesis_tools import PORTS_PER_NODE, write_testnet

        mode = self.choose_network()
        n = self.m.validators
        if mode == "loopback":
            base = self.m.base_port or free_base_port(PORTS_PER_NODE * n)
            taken = [p for p in range(base, base + PORTS_PER_NODE * n) if port_taken(p)]
            if taken:
                raise E2EError(f"port{'s' if len(taken) > 1 else ''} {', '.join(map(str, taken))} on 127.0.0.1 "
                               f"{'are' if len(taken) > 1 else 'is'} taken by another process: choose another "
                               f"base_port (or 0 for a free range)")
        else:
            base = self.m.base_port or 26600  # each node alone in its namespace
        log(f"manifest {self.m.name}: {n} validators on {mode}"
            + (" (each node in its own network namespace, veth pairs to a bridge)" if mode == "namespaces"
               else " (127.0.0.1)") + f", run {self.run_id}, output {self.out}")
        self.write_state()
        if mode == "namespaces":
            self.net = netns.NamespaceNet(self.run_id, n)
            self.write_state()  # names are known before anything exists
            try:
                self.net.create()
            finally:
                self.write_state()
            self.netem_reason = self.net.netem_support()
            if self.netem_reason and any(f.kind == "netem" for f in self.m.faults):
                self.note(f"netem perturbations will be skipped: {self.netem_reason}")
        testnet = self.out / "testnet"
        from dataclasses import fields

        from node.config import ConsensusSection
        known = {f.name for f in fields(ConsensusSection)}
        if set(self.m.consensus) - known:
            raise E2EError(f"[consensus] keys {sorted(set(self.m.consensus) - known)} are not node settings")
        params = None
        if self.m.byzantine_node is not None:
            from state.genesis import Params, StakingParams

            epoch = self.m.epoch_length
            # Downtime slashing is kept out of the way (a window no perturbation can fill): what this
            # manifest proves is the equivocation's.
            params = Params(epoch_length=epoch, staking=StakingParams(
                unbonding_blocks=10 * epoch, max_evidence_age=9 * epoch, signed_blocks_window=100_000))
        manifest = write_testnet(testnet, validators=n, chain_id=f"qenex-e2e-{self.m.name}", base_port=base,
                                 consensus_overrides=self.m.consensus or None, accounts=self.m.senders,
                                 params=params)
        if self.m.byzantine_node is not None:
            home = Home(testnet / f"node{self.m.byzantine_node}")
            cfg = home.load_config()
            home.write_config(replace(cfg, consensus=replace(
                cfg.consensus, double_sign_from_height=self.m.byzantine_from_height)))
            self.byzantine_address = manifest["nodes"][self.m.byzantine_node]["address"]
            log(f"node{self.m.byzantine_node} equivocates from height {self.m.byzantine_from_height} "
                f"(test-only misbehaviour); epochs of {self.m.epoch_length} blocks")
        self.urls = [node["rpc"] for node in manifest["nodes"]]
        self.testnet_nodes = list(manifest["nodes"])
        if self.net is not None:
            addrs = [node["p2p"] for node in manifest["nodes"]]
            for i in range(n):
                home = Home(testnet / f"node{i}")
                cfg = NodeConfig.from_toml(home.config_file.read_text())
                ip = self.net.ip(i)
                cfg = replace(cfg, p2p=replace(cfg.p2p, listen_host=ip, bootstrap=tuple(
                    a.replace("/ip4/127.0.0.1/", f"/ip4/{self.net.ip(j)}/") for j, a in enumerate(addrs) if j != i)),
                    rpc=replace(cfg.rpc, listen_host=ip))
                home.write_config(cfg)
                self.urls[i] = self.urls[i].replace("127.0.0.1", ip)
        self.testnet_dir = testnet
        for i in sorted({f.nodes[0] for f in self.m.faults if f.kind == "diskfull"}):
            self._mount_tmpfs_data(testnet / f"node{i}" / "data")
        self.nodes = [NodeProc(i, testnet / f"node{i}", self.net.exec_prefix(i) if self.net else [])
                      for i in range(n)]
        if self.net is None and any(f.kind == "partition" for f in self.m.faults):
            for node in self.nodes:
                node.gate = True

    def _mount_tmpfs_data(self, data: Path) -> None:
        """Move a node's data directory onto a tmpfs of ``data_mib`` (what a diskfull perturbation fills)."""
        import shutil

        aside = data.with_name("data.e2e-copy")
        data.rename(aside)
        data.mkdir()
        self.mounts.append(data)
        self.write_state()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={self.m.data_mib}m,mode=0700", "tmpfs",
                               str(data)], capture_output=True, text=True)
        if proc.returncode != 0:
            self.mounts.remove(data)
            raise E2EError(f"cannot mount a tmpfs on {data} for the diskfull perturbation: {proc.stderr.strip()}")
        shutil.copytree(aside, data, dirs_exist_ok=True, symlinks=True)
        shutil.rmtree(aside)

    def _unmount_all(self) -> None:
        import shutil

        for data in self.mounts:
            keep = data.with_name("data.after-tmpfs")  # the node's data, kept for a look after the run
            try:
                shutil.copytree(data, keep, dirs_exist_ok=True, symlinks=True,
                                ignore=shutil.ignore_patterns(FILLER))
            except OSError:
                pass
            proc = subprocess.run(["umount", str(data)], capture_output=True, text=True)
            if proc.returncode != 0:
                subprocess.run(["umount", "-l", str(data)], capture_output=True, text=True)
                if os.path.ismount(data):
                    self.left_over.append(str(data))
        self.mounts = [m for m in self.mounts if os.path.ismount(m)]

    # -- teardown -------------------------------------------------------------

    def teardown(self) -> None:
        if self.torn_down:
            return
        self.torn_down = True
        self.phase = "cleanup"
        for node in self.nodes:  # SIGTERM (resumed first if paused), then SIGKILL of the process group
            if node.pid is not None:
                try:
                    os.kill(node.pid, signal.SIGCONT)
                    os.kill(node.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 10
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
            node.kill_group()
        self._unmount_all()
        if self.net is not None:
            self.left_over += self.net.destroy()
            if self.left_over:
                log(f"could not remove {self.left_over}")
        self.phase = "done"
        self.write_state()

    # -- the run ----------------------------------------------------------------

    async def run(self) -> History:
        from node.client import AsyncClient

        self.clients = [AsyncClient(url, timeout=RPC_TIMEOUT_S) for url in self.urls]
        try:
            await self._start_all()
            await self._run_phases()
        finally:
            for c in self.clients:
                await c.aclose()
        self.history.notes = self.notes
        return self.history

    async def _start_all(self) -> None:
        for node in self.nodes:
            node.start()
        self.write_state()
        deadline = time.monotonic() + START_TIMEOUT_S
        waiting = set(range(len(self.nodes)))
        while waiting:
            for i in sorted(waiting):
                node = self.nodes[i]
                if node.proc is not None and node.proc.poll() is not None:
                    raise E2EError(f"node{i} exited at start-up with status {node.proc.returncode}:\n"
                                   f"{node.log_tail()}")
                try:
                    if int((await self.clients[i].status())["height"]) >= 2:
                        waiting.discard(i)
                except Exception:
                    pass
            if time.monotonic() > deadline:
                raise E2EError(f"nodes {sorted(waiting)} did not reach height 2 within {START_TIMEOUT_S:.0f} s:\n"
                               + "\n".join(self.nodes[i].log_tail() for i in sorted(waiting)))
            await asyncio.sleep(0.5)
        log("all nodes are committing blocks")

    async def _run_phases(self) -> None:
        from node import txbuild
        from node.genesis_tools import load_dev_accounts
        from state.payloads import TxKind

        status = await self.clients[0].status()
        self.chain_id = status["chain_id"]
        self.fee = txbuild.min_fee(await self.clients[0].params(), TxKind.TRANSFER)
        keys = load_dev_accounts(self.testnet_dir)[:self.m.senders]
        observers = [asyncio.create_task(self._observe(i)) for i in range(len(self.nodes))]
        watchdog = asyncio.create_task(self._watch_processes())
        self.history.load_start = self.now()
        self.phase = "load"
        self.write_state()
        self.next_slot = time.monotonic()
        senders = [asyncio.create_task(self._sender(k, key, keys)) for k, key in enumerate(keys)]
        log(f"load: {len(keys)} senders, {self.m.rate:g} submissions/s for {self.m.duration_s:g} s; "
            f"{len(self.m.faults)} perturbations")
        try:
            await self._perturb()
            remaining = self.history.load_start + self.m.duration_s - self.now()
            if remaining > 0:
                await asyncio.sleep(remaining)
            self.stop_load = True
            self.history.load_end = self.now()
            for result in await asyncio.gather(*senders, return_exceptions=True):
                if isinstance(result, BaseException) and not isinstance(result, asyncio.CancelledError):
                    raise E2EError(f"a load sender failed: {type(result).__name__}: {result}") from result
            await self._settle()
        finally:
            self.stop_load = self.stop_observing = True
            for task in senders + observers + [watchdog]:
                task.cancel()
            await asyncio.gather(*senders, *observers, watchdog, return_exceptions=True)
        await self._sweep()
        if self.m.byzantine_node is not None:
            await self._check_slashed()

    async def _check_slashed(self) -> None:
        """Every node has the equivocation applied, the offender tombstoned, and (once the epoch that
        applied it ended) out of its set; anything else is a violation of this manifest."""
        from state.staking import epoch_bounds, epoch_of

        offender = self.byzantine_address
        for i, client in enumerate(self.clients):
            try:
                evidence = (await client.evidence())["evidence"]
                records = (await client.staking_validators())["validators"]
                head = int((await client.status())["height"])
                members = {v["address"] for v in (await client.validators())["validators"]}
            except Exception as exc:
                self.note(f"violation: node{i}'s slashing state could not be read: {type(exc).__name__}: {exc}")
                continue
            applied = [e for e in evidence if e["validator"] == offender]
            record = next((v for v in records if v["address"] == offender), None)
            if not applied:
                self.note(f"violation: node{i} has no equivocation of node{self.m.byzantine_node} applied "
                          f"(evidence of {sorted(e['validator'] for e in evidence)})")
                continue
            if record is None or not record["tombstoned"]:
                self.note(f"violation: node{i} does not report node{self.m.byzantine_node} tombstoned")
            epoch = self.m.epoch_length
            left = epoch_bounds(epoch_of(applied[0]["included_height"], epoch) + 1, epoch)[0]  # the next set
            if head >= left and offender in members:
                self.note(f"violation: node{i} still has node{self.m.byzantine_node} in its set at height "
                          f"{head + 1} (it should have left at {left})")
            if i == 0:
                self.note(f"node{self.m.byzantine_node}'s equivocation at height {applied[0]['height']} was applied "
                          f"in block {applied[0]['included_height']}: {int(applied[0]['burned']) / 10**18:g} QNX "
                          f"burned, tombstoned, out of the set from height {left}")

    # -- recording ---------------------------------------------------------------

    async def _observe(self, i: int) -> None:
        from node import rpc_calls

        client, known = self.clients[i], 0
        while not self.stop_observing:
            if self.nodes[i].state == "up":
                try:
                    head = int((await client.status())["height"])
                    if head < known:
                        self.note(f"violation: node{i}'s head went back from {known} to {head}")
                    top = min(head, known + 200)
                    for lo in range(known + 1, top + 1, 40):
                        hs = list(range(lo, min(lo + 40, top + 1)))
                        blocks = await client.batch([rpc_calls.block(h) for h in hs])
                        t = self.now()
                        for h, b in zip(hs, blocks):
                            if isinstance(b, Exception):
                                raise b
                            txs = tuple(b["txs"])
                            self.history.commits.append(Commit(t, i, h, b["hash"], b["app_hash"], txs))
                            self.committed.update(txs)
                            known = h
                except Exception:
                    pass
            await asyncio.sleep(self.m.poll_s)

    async def _watch_processes(self) -> None:
        while True:
            for node in self.nodes:
                if node.state in ("up", "paused") and node.proc is not None:
                    rc = node.proc.poll()
                    if rc is not None:
                        node.state = "exited"
                        self.history.exits.append(Exit(self.now(), node.index, rc))
                        log(f"node{node.index} exited by itself with status {rc}:\n{node.log_tail()}")
                    else:
                        rss = _rss(node.proc.pid)
                        self.history.max_rss[node.index] = max(self.history.max_rss.get(node.index, 0), rss)
            await asyncio.sleep(1.0)

    async def _sender(self, k: int, key: Any, keys: list[Any]) -> None:
        from node import txbuild
        from node.client import RPCClientError, RPCUnavailable
        from state.crypto import address_to_text

        n = len(self.nodes)
        rng = random.Random(k)
        sender = address_to_text(key.address)
        nonce, home, count = 0, k % n, 0
        while not self.stop_load:
            slot = max(time.monotonic(), self.next_slot)
            self.next_slot = slot + 1.0 / self.m.rate
            await asyncio.sleep(slot - time.monotonic())
            if self.stop_load:
                return
            count += 1
            to = keys[rng.randrange(len(keys))].address
            stx = txbuild.sign(key, txbuild.transfer(to, 1000 * count + k), chain_id=self.chain_id, nonce=nonce,
                               fee=self.fee)
            tx, target = "0x" + stx.hash.hex(), home
            while not self.stop_load:
                target = self._live_node(target)
                if target is None:
                    await asyncio.sleep(0.5)
                    target = home
                    continue
                accepted, error = False, None
                try:
                    await self.clients[target].submit(stx)
                    accepted = True
                except RPCClientError as exc:
                    accepted = exc.code == -32003  # already known: it holds it
                    error = f"{exc.code}: {exc.message}"[:160]
                except RPCUnavailable as exc:
                    error = f"unavailable: {exc}"[:160]
                self.history.submissions.append(Submission(self.now(), tx, sender, nonce, target, accepted, error))
                if error is not None and error.startswith("unavailable"):
                    target = (target + 1) % n  # starting, stopping or paused: another node at once
                    await asyncio.sleep(0.2)
                    continue
                deadline = time.monotonic() + COMMIT_WAIT_S
                while not self.stop_load and tx not in self.committed and time.monotonic() < deadline:
                    await asyncio.sleep(0.2)
                if tx in self.committed:
                    nonce += 1
                    break
                try:  # not seen committed: has this nonce been used after all?
                    account = await self.clients[target].account(sender)
                    if int(account["nonce"]) > nonce:
                        nonce = int(account["nonce"])
                        break
                except Exception:
                    pass
                target = (target + 1) % n  # the same transaction again, to another node

    def _live_node(self, preferred: int) -> int | None:
        n = len(self.nodes)
        for j in range(n):
            i = (preferred + j) % n
            if self.nodes[i].state == "up":
                return i
        return None

    # -- perturbations -------------------------------------------------------------

    def _quorum_without(self, down: set[int]) -> bool:
        # Equal powers (write_testnet's default), over the nodes in the current set (all of them
        # unless the chain removed one, as [byzantine] does).
        members = self.members if self.members is not None else set(range(len(self.nodes)))
        return 3 * len(members - down) > 2 * len(members)

    async def _refresh_members(self) -> None:
        """Which nodes the current validator set holds, from any node that answers."""
        addresses = {node["address"]: i for i, node in enumerate(self.testnet_nodes)}
        for client in self.clients:
            try:
                listed = (await client.validators())["validators"]
            except Exception:
                continue
            self.members = {addresses[v["address"]] for v in listed if v["address"] in addresses}
            return

    async def _perturb(self) -> None:
        for fault in self.m.faults:
            wait = self.history.load_start + fault.at_s - self.now()
            if wait > 0:
                await asyncio.sleep(wait)
            await self._refresh_members()
            if fault.kind == "netem" and self.netem_reason:
                self.note(f"skipped {fault.describe()} at {self.now():.1f} s: {self.netem_reason}")
                continue
            start = self.now()
            log(f"perturb: {fault.describe()} for {fault.hold_s:g} s")
            quorum = await getattr(self, f"_do_{fault.kind}")(fault)
            end = self.now()
            self.history.perturbations.append(Perturbation(fault.kind, fault.nodes or tuple(
                x for g in fault.groups for x in g), start, end, quorum, fault.describe()))
            log(f"healed: {fault.describe()} ({end - start:.1f} s)")

    async def _do_kill(self, f: Fault) -> bool:
        nodes = [self.nodes[i] for i in f.nodes]
        for node in nodes:
            node.state = "down"
            node.signal(signal.SIGKILL)
        for node in nodes:
            if node.proc is not None:
                await asyncio.to_thread(node.proc.wait)
        await asyncio.sleep(f.hold_s)
        for node in nodes:
            node.start()
        self.write_state()
        return self._quorum_without(set(f.nodes))

    async def _do_pause(self, f: Fault) -> bool:
        nodes = [self.nodes[i] for i in f.nodes]
        for node in nodes:
            node.state = "paused"
            node.signal(signal.SIGSTOP)
        await asyncio.sleep(f.hold_s)
        for node in nodes:
            node.signal(signal.SIGCONT)
            node.state = "up"
        return self._quorum_without(set(f.nodes))

    async def _do_restart(self, f: Fault) -> bool:
        nodes = [self.nodes[i] for i in f.nodes]
        for node in nodes:
            node.state = "stopping"
            node.signal(signal.SIGTERM)
        await asyncio.gather(*(self._await_graceful_stop(node) for node in nodes))
        await asyncio.sleep(f.hold_s)
        for node in nodes:
            node.start()
        self.write_state()
        return self._quorum_without(set(f.nodes))

    async def _do_clockskew(self, f: Fault) -> bool:
        """Restart the node with its clock ``skew_ms`` off (node.misbehaviour's test-only offset), hold,
        and restart it with the true clock.  Within max_clock_drift_ms its proposals still pass; beyond
        it, a fast clock's proposals are refused (the others view-change past it) and a slow clock
        refuses the others' (the others still make a quorum)."""
        from node.misbehaviour import CLOCK_OFFSET_ENV

        node = self.nodes[f.nodes[0]]
        for env in ({CLOCK_OFFSET_ENV: str(f.skew_ms)}, None):
            node.state = "stopping"
            node.signal(signal.SIGTERM)
            await self._await_graceful_stop(node)
            node.start(env)
            self.write_state()
            if env is not None:
                await asyncio.sleep(f.hold_s)
        return True

    async def _await_graceful_stop(self, node: NodeProc) -> None:
        assert node.proc is not None
        t = time.monotonic()
        try:
            await asyncio.to_thread(node.proc.wait, STOP_GRACE_S)
            log(f"node{node.index} stopped gracefully in {time.monotonic() - t:.1f} s "
                f"(status {node.proc.returncode})")
            if node.proc.returncode != 0:
                self.note(f"violation: node{node.index} exited with status {node.proc.returncode} on SIGTERM")
        except subprocess.TimeoutExpired:
            self.note(f"violation: node{node.index} did not stop within {STOP_GRACE_S:.0f} s of SIGTERM; killed")
            node.kill_group()

    async def _do_diskfull(self, f: Fault) -> bool:
        """Fill the node's tmpfs data directory, hold, free it; a node that halts on it is restarted."""
        node = self.nodes[f.nodes[0]]
        filler = node.home / "data" / FILLER
        node.state = "diskfull"  # an exit now is the loud halt a full disk calls for, not a violation
        written = await asyncio.to_thread(_fill, filler)
        log(f"node{node.index}: data directory full ({written / 2**20:.1f} MiB of filler)")
        await asyncio.sleep(f.hold_s)
        rc = node.proc.poll() if node.proc else None
        filler.unlink(missing_ok=True)
        if rc is not None:
            self.note(f"node{node.index} exited with status {rc} while its disk was full; restarted")
            node.start()
            self.write_state()
        else:
            node.state = "up"
            self.note(f"node{node.index} kept running through a full disk")
        return self._quorum_without({node.index})

    async def _do_partition(self, f: Fault) -> bool:
        if self.net is not None:
            self.net.partition([list(g) for g in f.groups])
            await asyncio.sleep(f.hold_s)
            self.net.heal()
        else:
            # Loopback: each node's test-only gate refuses the other groups' peers (node.misbehaviour),
            # both ways; every node gated, for every node in the set of groups.
            self._write_gates({i: [j for g in f.groups if i not in g for j in g] for g in f.groups for i in g})
            await asyncio.sleep(f.hold_s)
            self._write_gates({i: [] for i in range(len(self.nodes))})
        return any(self._quorum_without(set(range(len(self.nodes))) - set(g)) for g in f.groups)

    def _write_gates(self, blocked: dict[int, list[int]]) -> None:
        from node.misbehaviour import GATE_FILE

        peer_ids = [node["p2p"].rsplit("/", 1)[1] for node in self.testnet_nodes]
        for i, others in blocked.items():
            path = self.nodes[i].home / "data" / GATE_FILE
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps({"blocked": [peer_ids[j] for j in others]}))
            os.replace(tmp, path)  # the node never reads half a file

    async def _do_netem(self, f: Fault) -> bool:
        assert self.net is not None
        try:
            for i in f.nodes:
                self.net.add_netem(i, f.delay_ms, f.jitter_ms, f.loss_pct)
            await asyncio.sleep(f.hold_s)
        finally:
            for i in f.nodes:
                self.net.clear_netem(i)
        return True

    async def _do_slowlink(self, f: Fault) -> bool:
        assert self.net is not None
        try:
            for i in f.nodes:
                self.net.add_rate_limit(i, f.rate_kbit, f.latency_ms)
            await asyncio.sleep(f.hold_s)
        finally:
            for i in f.nodes:
                self.net.clear_netem(i)
        return True

    # -- the end -------------------------------------------------------------------

    def _head(self, i: int) -> int:
        return max((c.height for c in self.history.commits if c.node == i), default=0)

    async def _settle(self) -> None:
        target = max(self._head(i) for i in range(len(self.nodes)))
        deadline = time.monotonic() + self.m.settle_s
        while time.monotonic() < deadline:
            behind = [i for i in range(len(self.nodes)) if self._head(i) < target]
            if not behind:
                log(f"every node reached height {target}")
                return
            await asyncio.sleep(0.5)
        self.note(f"after {self.m.settle_s:.0f} s, nodes {behind} are still below height {target}")

    async def _sweep(self) -> None:
        from node import rpc_calls

        for i, client in enumerate(self.clients):
            try:
                head = int((await client.status())["height"])
                for lo in range(1, head + 1, 50):
                    hs = list(range(lo, min(lo + 50, head + 1)))
                    blocks = await client.batch([rpc_calls.block(h) for h in hs])
                    t = self.now()
                    for h, b in zip(hs, blocks):
                        if isinstance(b, Exception):
                            raise b
                        self.history.final.append(Commit(t, i, h, b["hash"], b["app_hash"], tuple(b["txs"])))
            except Exception as exc:
                self.note(f"final sweep of node{i} failed: {type(exc).__name__}: {exc}")
        log(f"swept {len(self.history.final)} blocks from {len(self.clients)} nodes")


FILLER = "e2e-disk-filler"


def _fill(path: Path) -> int:
    """Write ``path`` until the file system is full; returns the bytes written."""
    chunk, written = b"\0" * (1 << 20), 0
    with open(path, "wb", buffering=0) as out:
        while True:
            try:
                written += out.write(chunk)
            except OSError:
                break
        for size in (1 << 16, 4096, 512):  # the last scraps
            while True:
                try:
                    written += out.write(chunk[:size])
                except OSError:
                    break
    return written


def _rss(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("manifest", type=Path, help="a manifest file, or a name under e2e/manifests/ (ci, partition, chaos)")
    ap.add_argument("--out", type=Path, default=None, help="run directory (default: a new temporary directory)")
    ap.add_argument("--network", choices=("loopback", "namespaces", "auto"), default=None,
                    help="override the manifest's network")
    ap.add_argument("--remove-leftovers", action="store_true",
                    help="delete every qe2e-* namespace and link (left by a run killed with SIGKILL) and exit")
    args = ap.parse_args(argv)
    if args.remove_leftovers:
        print("\n".join(netns.remove_leftovers()) or "nothing to remove")
        return 0
    path = args.manifest
    if not path.exists() and (ROOT / "e2e" / "manifests" / f"{path}.toml").exists():
        path = ROOT / "e2e" / "manifests" / f"{path}.toml"
    try:
        manifest = load_manifest(path)
    except ManifestError as exc:
        print(f"e2e: {exc}", file=sys.stderr)
        return 2
    if args.network:
        manifest = replace(manifest, network=args.network)
    out = args.out or Path(tempfile.mkdtemp(prefix=f"qenex-e2e-{manifest.name}-"))
    out.mkdir(parents=True, exist_ok=True)
    runner = Runner(manifest, out)

    def on_sigterm(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, on_sigterm)
    started = time.monotonic()
    try:
        runner.setup()
        history = asyncio.run(runner.run())
    except E2EError as exc:
        print(f"e2e: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("e2e: interrupted; stopping every node and removing the namespaces", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        runner.teardown()
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    history.save(out / "history.json")
    report = check(history, Bounds(manifest.converge_s, manifest.liveness_s, manifest.rss_mib * 2**20))
    report.violations += [n.removeprefix("violation: ") for n in history.notes if n.startswith("violation: ")]
    mode = "namespaces" if runner.net is not None else "loopback (127.0.0.1)"
    report.figures["network"] = mode
    report.figures["wall_s"] = round(time.monotonic() - started, 1)
    report.figures["violations"] = len(report.violations)
    (out / "report.json").write_text(json.dumps({"figures": report.figures, "violations": report.violations,
                                                 "notes": history.notes}, indent=1) + "\n")
    print(summary_table(manifest.name, report, [("network", mode), ("wall time", f"{report.figures['wall_s']} s"),
                                                ("run directory", out)]))
    for row in perturbation_rows(history):
        print(f"  {row}")
    for n in history.notes:
        if not n.startswith("violation: "):
            print(f"  note: {n}")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
