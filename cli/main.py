"""``qenexd``: the node daemon and its command-line tools."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from cli import admin, audit, contracts, keys, query, risk, signer, snapshot, staking, testnet, tx, watch
from cli.common import CLIError, handle_errors, home_option, json_option, emit
from node.config import Home, NodeConfig
from node.genesis_tools import write_full_node_home, write_single_node_home


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
@click.option("--chain-id", default="qenex-local-1", show_default=True,
              help="Chain id of the new chain (with --genesis: the genesis's; a different one is refused).")
@click.option("--name", default="node0", show_default=True, help="Node name shown in logs and status.")
@click.option("--p2p-port", default=26656, show_default=True, type=click.IntRange(0, 65535))
@click.option("--rpc-port", default=26657, show_default=True, type=click.IntRange(0, 65535))
@click.option("--genesis", "genesis_file", default=None, type=click.Path(path_type=Path),
              help="Follow the existing chain of this genesis.json (a full node) instead of starting a new one.")
@click.option("--peer", "peers", multiple=True, metavar="MULTIADDR",
              help="With --genesis: a node to sync from, /ip4/HOST/tcp/PORT/p2p/PEER_ID (repeatable; give every "
                   "validator's to validate later: peers are not discovered).")
@click.option("--no-contracts", "no_contracts", is_flag=True,
              help="A new chain without WebAssembly contracts (its genesis has no contracts section; contract "
                   "transactions are refused).  Default: contracts on, with the default limits.")
@click.option("--force", is_flag=True, help="Overwrite an existing home.")
@json_option
@handle_errors
def init(home: Path, chain_id: str, name: str, p2p_port: int, rpc_port: int, genesis_file: Path | None,
         peers: tuple[str, ...], no_contracts: bool, force: bool, as_json: bool) -> None:
    """Create a node home (config, genesis, node key): a single-validator chain of its own, or, with
    --genesis and --peer, a full node of an existing chain that syncs from the peers, serves RPC and
    signs nothing until its key is in the validator set (`qenexd tx validator create --consensus-key
    HOME/config/node_key.json`)."""
    h = Home(home)
    if h.config_file.exists() and not force:
        raise CLIError(f"{h.config_file} already exists (use --force to overwrite)")
    if genesis_file is None:
        if peers:
            raise CLIError("--peer needs --genesis: a new chain of its own has no peers to follow")
        info = write_single_node_home(h, chain_id=chain_id, name=name, p2p_port=p2p_port, rpc_port=rpc_port,
                                      contracts=not no_contracts)
    else:
        if no_contracts:
            raise CLIError("--no-contracts is for a new chain: with --genesis the genesis decides")
        given = click.get_current_context().get_parameter_source("chain_id") == click.core.ParameterSource.COMMANDLINE
        try:
            info = write_full_node_home(h, genesis_file=genesis_file, peers=peers, name=name, p2p_port=p2p_port,
                                        rpc_port=rpc_port, chain_id=chain_id if given else None)
        except ValueError as exc:
            raise CLIError(str(exc)) from None
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
contracts.register(tx.tx, query.query)  # tx contract deploy|call, query contract|contract-state|call
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
