"""``qenexd testnet``: a local multi-validator network of child processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click

from cli.common import CLIError, emit, handle_errors, json_option
from node.genesis_tools import MAX_LOAD_ACCOUNTS, write_testnet
from node.rpc_client import RPCClient, RPCClientError, RPCUnavailable

STOP_GRACE_S = 10.0


@click.group()
def testnet() -> None:
    """Create and run a local multi-validator testnet."""


@testnet.command("init")
@click.option("--validators", "-n", default=4, show_default=True, type=click.IntRange(1, 32))
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--chain-id", default="qenex-testnet-1", show_default=True)
@click.option("--full-nodes", "-m", default=0, show_default=True, type=click.IntRange(0, 32),
              help="M more nodes (full0, ...) outside the genesis set that follow the chain; register one with "
                   "`qenexd tx validator create --consensus-key fullJ/config/node_key.json` to make it a validator.")
@click.option("--base-port", default=26600, show_default=True, type=click.IntRange(1024, 65000),
              help="Node i uses base+2i (p2p), base+2i+1 (RPC), base+2N+i (metrics) and base+3N+i (admin), "
                   "N = validators + full nodes (validators first).")
@click.option("--powers", default=None, help="Comma-separated voting powers, one per validator.")
@click.option("--accounts", default=0, show_default=True, type=click.IntRange(0, MAX_LOAD_ACCOUNTS),
              help="Fund N more dev accounts in genesis for load generators; their keys (derived from a public "
                   "seed: DEV ONLY) go to DIR/accounts.json.")
@click.option("--no-contracts", "no_contracts", is_flag=True,
              help="A testnet without WebAssembly contracts (default: contracts on, with the default limits).")
@click.option("--force", is_flag=True, help="Overwrite an existing testnet in DIR.")
@json_option
@handle_errors
def init(validators: int, full_nodes: int, directory: Path, chain_id: str, base_port: int, powers: str | None,
         accounts: int, no_contracts: bool, force: bool, as_json: bool) -> None:
    """Write configs, genesis and keys for N validators (and M full nodes) under DIR."""
    if (directory / "testnet.json").exists() and not force:
        raise CLIError(f"{directory / 'testnet.json'} already exists (use --force to overwrite)")
    power_list = None
    if powers:
        try:
            power_list = [int(p) for p in powers.split(",")]
        except ValueError:
            raise CLIError(f"--powers must be comma-separated integers, got {powers!r}") from None
    try:
        manifest = write_testnet(directory, validators=validators, chain_id=chain_id, base_port=base_port,
                                 powers=power_list, accounts=accounts, full_nodes=full_nodes,
                                 contracts=not no_contracts)
    except ValueError as exc:
        raise CLIError(str(exc)) from None

    def human(m: dict[str, Any]) -> str:
        full = [n for n in m["nodes"] if n["role"] == "full"]
        lines = [f"testnet {m['chain_id']} with {len(m['nodes']) - len(full)} validators"
                 + (f" and {len(full)} full nodes" if full else "") + f" in {directory}"]
        lines += [f"  {n['name']}: rpc {n['rpc']}  metrics {n['metrics']}  admin {n['admin']}"
                  + ("  (full node, pubkey " + n["pubkey"] + ")" if n["role"] == "full" else "") for n in m["nodes"]]
        lines += [f"  account {name}: {a['address']} ({a['keyfile']})" for name, a in m["accounts"].items()]
        if "load_accounts" in m:
            la = m["load_accounts"]
            lines.append(f"  {la['count']} funded load accounts in {directory / la['file']} (dev-only keys)")
        lines.append(f"start it with: qenexd testnet start --dir {directory}")
        lines.append(f"admin API: token in {directory}/nodeI/config/node.toml; for state changes enrol a TOTP "
                     f"secret first: qenexd admin enroll --home {directory}/node0")
        return "\n".join(lines)

    emit(manifest, as_json, human)


def load_manifest(directory: Path) -> dict[str, Any]:
    path = directory / "testnet.json"
    if not path.exists():
        raise CLIError(f"no testnet in {directory}: run `qenexd testnet init --dir {directory}` first")
    return json.loads(path.read_text())


def spawn_node(home: Path, log_path: Path) -> subprocess.Popen[bytes]:
    log_file = open(log_path, "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "cli.main", "start", "--home", str(home)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C reaches the launcher, which stops the nodes in order
        )
    finally:
        log_file.close()


def stop_processes(procs: list[subprocess.Popen[bytes]], grace: float = STOP_GRACE_S) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for proc in procs:
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@testnet.command("start")
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--quiet", is_flag=True, help="Do not print finalized blocks.")
@handle_errors
def start(directory: Path, quiet: bool) -> None:
    """Run every node of the testnet as a child process; Ctrl-C stops them all."""
    manifest = load_manifest(directory)
    stopping = False

    def on_signal(signum: int, _frame: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)

    procs: list[subprocess.Popen[bytes]] = []
    for node in manifest["nodes"]:
        home = directory / node["home"]
        procs.append(spawn_node(home, home / "node.log"))
        click.echo(f"started {node['name']} pid {procs[-1].pid}, rpc {node['rpc']}, log {home / 'node.log'}")
    (directory / "pids.json").write_text(json.dumps({n["name"]: p.pid for n, p in zip(manifest["nodes"], procs)}))
    clients = [RPCClient(n["rpc"], timeout=2.0) for n in manifest["nodes"]]
    printed = 0
    try:
        while not stopping:
            for node, proc in zip(manifest["nodes"], procs):
                if proc.poll() is not None:
                    raise CLIError(f"{node['name']} exited with status {proc.returncode}; see its node.log")
            if not quiet:
                printed = _print_new_blocks(clients, printed)
            time.sleep(0.5)
    finally:
        click.echo("stopping nodes ...")
        stop_processes(procs)
        (directory / "pids.json").unlink(missing_ok=True)
        click.echo("all nodes stopped")


def _print_new_blocks(clients: list[RPCClient], printed: int) -> int:
    heights = []
    for client in clients:
        try:
            heights.append(client.call("qenex_status")["height"])
        except (RPCUnavailable, RPCClientError):
            heights.append(None)
    live = [h for h in heights if h is not None]
    if not live:
        return printed
    head = min(live)  # print a height once every live node has it, so the agreement count means something
    for height in range(max(printed + 1, head - 20), head + 1):
        hashes = []
        block = None
        for client, h in zip(clients, heights):
            if h is None or h < height:
                continue
            try:
                block = client.call("qenex_getBlock", height)
                hashes.append(block["hash"])
            except (RPCUnavailable, RPCClientError):
                continue
        if block is None:
            continue
        agree = hashes.count(block["hash"])
        click.echo(
            f"height {height:>6}  txs {block['num_txs']:>5}  hash {block['hash'][2:14]}  "
            f"app {block['app_hash'][2:14]}  proposer {block['proposer'][:12]}..  "
            f"{agree}/{len(clients)} nodes"
        )
    return max(printed, head)
