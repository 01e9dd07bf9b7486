"""``qenexd``: the node daemon and its command-line tools."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli import admin, audit, keys, query, risk, signer, snapshot, staking, testnet, tx, watch
from cli.common import CLIError, handle_errors, home_option, json_option, emit
from node.config import Home, NodeConfig
from node.genesis_tools import write_single_node_home


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="qenex", prog_name="qenexd")
def cli() -> None:
    """qenexd: a proof-of-stake chain node with PBFT finality.

    Launch a local testnet with `qenexd testnet init` and `qenexd testnet
    start`, send transactions with `qenexd tx`, read the chain with
    `qenexd query`.
    """


@cli.command()
@home_option
@click.option("--chain-id", default="qenex-local-1", show_default=True, help="Chain id of the new chain.")
@click.option("--name", default="node0", show_default=True, help="Node name shown in logs and status.")
@click.option("--p2p-port", default=26656, show_default=True, type=click.IntRange(0, 65535))
@click.option("--rpc-port", default=26657, show_default=True, type=click.IntRange(0, 65535))
@click.option("--force", is_flag=True, help="Overwrite an existing home.")
@json_option
@handle_errors
def init(home: Path, chain_id: str, name: str, p2p_port: int, rpc_port: int, force: bool, as_json: bool) -> None:
    """Create a single-validator node home (config, genesis, node key)."""
    h = Home(home)
    if h.config_file.exists() and not force:
        raise CLIError(f"{h.config_file} already exists (use --force to overwrite)")
    info = write_single_node_home(h, chain_id=chain_id, name=name, p2p_port=p2p_port, rpc_port=rpc_port)
    emit(info, as_json)


@cli.command()
@home_option
@handle_errors
def start(home: Path) -> None:
    """Run the node in the foreground until SIGINT/SIGTERM."""
    h = Home(home)
    config: NodeConfig = h.load_config()
    from node.runtime import run_node  # imports libp2p: only once the home is known to be good

    run_node(h, config)


cli.add_command(testnet.testnet)
cli.add_command(keys.keys)
cli.add_command(tx.tx)
cli.add_command(query.query)
staking.register(tx.tx, tx.rewards, query.query)  # tx validator/stake/..., query staking|epoch
cli.add_command(query.node_status)  # `qenexd status`: a node at a glance
cli.add_command(risk.risk)
cli.add_command(signer.signer)
cli.add_command(admin.admin)
cli.add_command(audit.audit)
cli.add_command(snapshot.snapshot)
cli.add_command(watch.watch)


def main() -> None:
    cli(prog_name="qenexd")


if __name__ == "__main__":
    sys.exit(main())
