"""A local testnet of real node processes for the slow tests.

Binds 127.0.0.1 only, picks free ports, lives in a temporary directory, and
kills every process it started by PID (SIGTERM, then SIGKILL) however the
test ends.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Iterator

from click.testing import CliRunner

from cli.main import cli as qenexd
from cli.testnet import spawn_node, stop_processes
from node.genesis_tools import PORTS_PER_NODE, write_testnet
from node.rpc_client import RPCClient, RPCClientError, RPCUnavailable
from tests.ports import free_port_range

ROOT = Path(__file__).resolve().parents[1]

# Fast blocks and short timeouts keep the slow tests short.
TEST_CONSENSUS = {
    "timeout_base_ms": 1500,
    "timeout_increment_ms": 500,
    "min_block_interval_ms": 50,
    "empty_block_interval_ms": 100,
    "rebroadcast_ms": 500,
}


def wait_until(predicate: Callable[[], Any], timeout: float, what: str, poll: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
            if value:
                return value
        except (RPCUnavailable, RPCClientError, OSError) as exc:
            last_exc = exc
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last_exc})")


class LocalNet:
    """``validators`` genesis validators (nodes 0..validators-1), then ``full_nodes`` full nodes
    (``testnet init --full-nodes``); ``n`` counts them all, in the manifest's order."""

    def __init__(self, directory: Path, validators: int = 4, chain_id: str = "qenex-test-1",
                 params: Any = None, full_nodes: int = 0, accounts: int = 0) -> None:
        self.dir = directory
        self.n = validators + full_nodes
        self.validators = validators
        base = free_port_range(PORTS_PER_NODE * self.n)
        self.manifest = write_testnet(
            directory, validators=validators, chain_id=chain_id, base_port=base,
            consensus_overrides=TEST_CONSENSUS, params=params, full_nodes=full_nodes, accounts=accounts,
        )
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.chain_id = chain_id

    # -- processes --------------------------------------------------------

    def home(self, i: int) -> Path:
        return self.dir / self.manifest["nodes"][i]["home"]

    def start(self, i: int) -> None:
        assert i not in self.procs or self.procs[i].poll() is not None, f"node{i} already running"
        self.procs[i] = spawn_node(self.home(i), self.home(i) / "node.log")  # as `qenexd testnet start` does

    def start_all(self) -> None:
        for i in range(self.n):
            self.start(i)

    def kill(self, i: int, sig: int = signal.SIGKILL) -> None:
        proc = self.procs[i]
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stop_all(self) -> None:
        stop_processes(list(self.procs.values()))  # SIGTERM, then SIGKILL after the grace period

    def log_tail(self, i: int, lines: int = 40) -> str:
        path = self.home(i) / "node.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""

    # -- RPC --------------------------------------------------------------

    def rpc(self, i: int) -> RPCClient:
        return RPCClient(self.manifest["nodes"][i]["rpc"], timeout=5.0)

    def url(self, i: int) -> str:
        return self.manifest["nodes"][i]["rpc"]

    def scrape(self, i: int) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Node i's Prometheus samples, keyed by (name, labels)."""
        return scrape(self.manifest["nodes"][i]["metrics"])

    def height(self, i: int) -> int:
        return int(self.rpc(i).call("qenex_status")["height"])

    def wait_height(self, height: int, nodes: list[int] | None = None, timeout: float = 60.0) -> None:
        nodes = list(range(self.n)) if nodes is None else nodes

        def reached() -> bool:
            return all(self.height(i) >= height for i in nodes)

        try:
            wait_until(reached, timeout, f"height {height} on nodes {nodes}")
        except AssertionError:
            tails = "\n".join(f"--- node{i}\n{self.log_tail(i)}" for i in nodes)
            raise AssertionError(f"height {height} not reached on {nodes}\n{tails}") from None

    def account_key(self, name: str) -> Path:
        return self.dir / self.manifest["accounts"][name]["keyfile"]

    def address(self, name: str) -> str:
        return self.manifest["accounts"][name]["address"]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """``qenexd ARGS`` run in this process by click's test runner.

        The same command code, options and exit status a shell gets, without
        a fresh interpreter per call (importing the CLI takes ~1.8 s, libp2p
        most of it, and a test makes dozens of calls).  Its waits are bounded
        by the CLI's own timeouts (RPC 10 s, ``--wait`` 60 s).  An uncaught
        exception comes back as a traceback on stderr and status 1, as from
        a process.  ``cli_process`` runs the real ``python -m cli.main``.
        """
        result = CliRunner().invoke(qenexd, list(args), prog_name="qenexd")
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            stderr += "".join(traceback.format_exception(result.exception))
        return subprocess.CompletedProcess(["qenexd", *args], result.exit_code, result.stdout, stderr)

    def cli_process(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """``python -m cli.main ARGS`` in a process of its own."""
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
        )


def scrape(url: str, timeout: float = 5.0) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """GET a Prometheus endpoint and parse it: {(sample name, labels): value}."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(url, timeout=timeout) as response:
        text = response.read().decode("utf-8")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@contextlib.contextmanager
def running_localnet(
    directory: Path, validators: int = 4, configure: Callable[[LocalNet], None] | None = None,
    params: Any = None, full_nodes: int = 0, accounts: int = 0,
) -> Iterator[LocalNet]:
    """Start every node (after ``configure`` edits the homes, if given), wait
    for the first blocks; always stop them all.  ``params``: the genesis Params; ``accounts``:
    genesis-funded dev accounts (``testnet init --accounts``, node.genesis_tools.load_dev_accounts)."""
    network = LocalNet(directory, validators, params=params, full_nodes=full_nodes, accounts=accounts)
    if configure is not None:
        configure(network)
    try:
        network.start_all()
        network.wait_height(2, timeout=90)
        yield network
    finally:
        network.stop_all()
