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


# -- pools (issue #3) -------------------------------------------------------------


@query.command()
@click.argument("pool_id")
@rpc_option
@json_option
@handle_errors
def pool(pool_id: str, rpc: str, as_json: bool) -> None:
    """Reserves, shares, fee, spot and cumulative prices, reward index of POOL_ID ("AAA/BBB")."""
    emit(RPCClient(rpc).call("qenex_getPool", pool_id), as_json)


@query.command()
@rpc_option
@json_option
@handle_errors
def pools(rpc: str, as_json: bool) -> None:
    """Every pool."""
    emit(RPCClient(rpc).call("qenex_listPools"), as_json)


@query.command()
@click.option("--in", "token_in", required=True, help="Token sold.")
@click.option("--out", "token_out", required=True, help="Token bought.")
@click.option("--amount", required=True, help="Exact input in base units.")
@click.option("--path", default=None, help="Explicit route, e.g. AAA,CCC,BBB (default: best of up to --max-hops pools).")
@click.option("--max-hops", default=3, show_default=True, type=click.IntRange(1, 3))
@rpc_option
@json_option
@handle_errors
def quote(token_in: str, token_out: str, amount: str, path: str | None, max_hops: int, rpc: str, as_json: bool) -> None:
    """Quote an exact-in swap: output, fees, price impact and the best path."""
    route = path.split(",") if path else None
    emit(RPCClient(rpc).call("qenex_quoteSwap", token_in, token_out, amount, route, max_hops), as_json)


@query.command()
@click.argument("pool_id")
@click.option("--window", "window_seconds", default=None, type=int, help="Seconds before the head block.")
@click.option("--from-height", default=None, type=int)
@click.option("--to-height", default=None, type=int, help="Default: the head.")
@rpc_option
@json_option
@handle_errors
def twap(pool_id: str, window_seconds: int | None, from_height: int | None, to_height: int | None, rpc: str,
         as_json: bool) -> None:
    """Time-weighted average prices of POOL_ID over a window of seconds or between two heights."""
    if window_seconds is None and from_height is None:
        window_seconds = 60
    emit(RPCClient(rpc).call("qenex_getTwap", pool_id, from_height, to_height, window_seconds), as_json)


@query.command("pool-history")
@click.argument("pool_id")
@click.option("--from-height", default=None, type=int)
@click.option("--to-height", default=None, type=int)
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@rpc_option
@json_option
@handle_errors
def pool_history(pool_id: str, from_height: int | None, to_height: int | None, limit: int, rpc: str,
                 as_json: bool) -> None:
    """Per-block observations (time, reserves, prices, cumulatives) of POOL_ID."""
    emit(RPCClient(rpc).call("qenex_getPoolHistory", pool_id, from_height, to_height, limit), as_json)


@query.command()
@click.argument("address")
@click.argument("pool_id")
@rpc_option
@json_option
@handle_errors
def position(address: str, pool_id: str, rpc: str, as_json: bool) -> None:
    """LP shares, redeemable amounts and pending rewards of ADDRESS in POOL_ID."""
    emit(RPCClient(rpc).call("qenex_getLiquidityPosition", address, pool_id), as_json)
