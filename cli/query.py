"""``qenexd query``: read the chain over JSON-RPC."""

from __future__ import annotations

from typing import Any

import click

from cli.common import emit, handle_errors, json_option, rpc_option
from node.rpc_client import RPCClient


@click.group()
def query() -> None:
    """Query a node over JSON-RPC."""


@query.command()
@rpc_option
@json_option
@handle_errors
def status(rpc: str, as_json: bool) -> None:
    """Chain id, head height and hashes, peers."""
    emit(RPCClient(rpc).call("qenex_status"), as_json)


@query.command()
@click.argument("address")
@rpc_option
@json_option
@handle_errors
def account(address: str, rpc: str, as_json: bool) -> None:
    """Nonce and balances (base units) of ADDRESS."""
    emit(RPCClient(rpc).call("qenex_getAccount", address), as_json)


@query.command()
@click.argument("height", default="latest")
@click.option("--full", is_flag=True, help="Include whole transactions, not just hashes.")
@rpc_option
@json_option
@handle_errors
def block(height: str, full: bool, rpc: str, as_json: bool) -> None:
    """The block at HEIGHT (default: latest)."""
    arg: Any = int(height) if height.isdigit() else height
    emit(RPCClient(rpc).call("qenex_getBlock", arg, full), as_json)


@query.command(name="tx")
@click.argument("tx_hash")
@click.option("--proof", is_flag=True, help="Also fetch and verify the Merkle inclusion proof.")
@rpc_option
@json_option
@handle_errors
def tx_(tx_hash: str, proof: bool, rpc: str, as_json: bool) -> None:
    """A transaction and its receipt by hash."""
    client = RPCClient(rpc)
    record = client.call("qenex_getTransaction", tx_hash)
    if proof and record.get("committed"):
        from state.merkle import verify_merkle_proof

        p = client.call("qenex_getTransactionProof", tx_hash)
        header = client.call("qenex_getBlock", p["height"])
        ok = header["tx_root"] == p["tx_root"] and verify_merkle_proof(
            bytes.fromhex(p["tx_root"][2:]),
            bytes.fromhex(tx_hash[2:] if tx_hash.startswith("0x") else tx_hash),
            p["index"],
            p["tree_size"],
            [bytes.fromhex(x[2:]) for x in p["proof"]],
        )
        record["proof"] = {**p, "verified": ok}
    emit(record, as_json)


@query.command()
@rpc_option
@json_option
@handle_errors
def validators(rpc: str, as_json: bool) -> None:
    """The validator set with powers and proposer priorities."""
    emit(RPCClient(rpc).call("qenex_getValidators"), as_json)
