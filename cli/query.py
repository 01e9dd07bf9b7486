"""``qenexd query`` (and ``qenexd status``): read the chain through ``node.client``."""

from __future__ import annotations

from typing import Any

import click

from cli import format as fmt
from cli.common import CLIError, decimals_of, emit, handle_errors, json_option, now_ms, rpc_option
from node.client import Client, RPCClientError
from node.jsonrpc import INVALID_PARAMS

height_option = click.option("--height", default=None, type=click.IntRange(0),
                             help="Read the state at this past height (default: the head).")


def at_height(read: Any, *args: Any, height: int | None) -> Any:
    """``read(*args, height=height)``, with a clear error from a node that takes no height parameter."""
    try:
        return read(*args, height=height)
    except RPCClientError as exc:
        if height is not None and exc.code == INVALID_PARAMS and "too many positional" in str(exc):
            raise CLIError(f"this node does not answer reads at a past height (--height {height}): {exc}") from None
        raise


@click.group()
def query() -> None:
    """Query a node over JSON-RPC."""


def _status(rpc: str, as_json: bool) -> None:
    emit(Client(rpc).status(), as_json, lambda s: fmt.render_status(s, now_ms()))


@query.command()
@rpc_option
@json_option
@handle_errors
def status(rpc: str, as_json: bool) -> None:
    """Chain id, head height and age, peers, validator or not, syncing, mempool size."""
    _status(rpc, as_json)


@click.command("status")
@rpc_option
@json_option
@handle_errors
def node_status(rpc: str, as_json: bool) -> None:
    """A node at a glance: height and last block age, peers, validator or not, syncing, mempool size."""
    _status(rpc, as_json)


@query.command()
@click.argument("address")
@height_option
@rpc_option
@json_option
@handle_errors
def account(address: str, height: int | None, rpc: str, as_json: bool) -> None:
    """Nonce and balances of ADDRESS."""
    client = Client(rpc)
    info = at_height(client.account, address, height=height)
    emit(info, as_json, lambda a: fmt.render_account(a, decimals_of(client, a["balances"])))


@query.command()
@click.argument("height", default="latest")
@click.option("--full", is_flag=True, help="Include whole transactions, not just hashes.")
@rpc_option
@json_option
@handle_errors
def block(height: str, full: bool, rpc: str, as_json: bool) -> None:
    """The block at HEIGHT (default: latest)."""
    arg: Any = int(height) if height.isascii() and height.isdigit() else height
    emit(Client(rpc).block(arg, full), as_json, lambda b: fmt.render_block(b, now_ms()))


@query.command(name="tx")
@click.argument("tx_hash")
@click.option("--proof", is_flag=True, help="Also fetch and verify the Merkle inclusion proof.")
@rpc_option
@json_option
@handle_errors
def tx_(tx_hash: str, proof: bool, rpc: str, as_json: bool) -> None:
    """A transaction and its receipt by hash."""
    client = Client(rpc)
    record: dict[str, Any] = dict(client.transaction(tx_hash))
    if proof and record.get("committed"):
        from state.merkle import verify_merkle_proof

        p = client.proof(tx_hash)
        header = client.block(p["height"])
        ok = header["tx_root"] == p["tx_root"] and verify_merkle_proof(
            bytes.fromhex(p["tx_root"][2:]),
            bytes.fromhex(tx_hash[2:] if tx_hash.startswith("0x") else tx_hash),
            p["index"],
            p["tree_size"],
            [bytes.fromhex(x[2:]) for x in p["proof"]],
        )
        record["proof"] = {**p, "verified": ok}
    payload = record.get("payload") or {}
    symbols = {payload.get(k) for k in ("token", "symbol", "token_in", "token_out")} - {None}
    symbols |= {pair[0] for pair in payload.get("attached") or () if isinstance(pair, list) and pair}  # contracts
    emit(record, as_json, lambda r: fmt.render_tx(r, decimals_of(client, symbols)))


@query.command()
@height_option
@rpc_option
@json_option
@handle_errors
def validators(height: int | None, rpc: str, as_json: bool) -> None:
    """The validator set with powers and proposer priorities."""
    emit(at_height(Client(rpc).validators, height=height), as_json, fmt.render_validators)


@query.command()
@click.argument("symbol")
@height_option
@rpc_option
@json_option
@handle_errors
def token(symbol: str, height: int | None, rpc: str, as_json: bool) -> None:
    """Name, decimals, issuer and total supply of token SYMBOL."""
    emit(at_height(Client(rpc).token, symbol, height=height), as_json, fmt.render_token)


# -- pools (issue #3) -------------------------------------------------------------


@query.command()
@click.argument("pool_id")
@height_option
@rpc_option
@json_option
@handle_errors
def pool(pool_id: str, height: int | None, rpc: str, as_json: bool) -> None:
    """Reserves, shares, fee, spot and cumulative prices, reward index of POOL_ID ("AAA/BBB")."""
    client = Client(rpc)
    emit(at_height(client.pool, pool_id, height=height), as_json,
         lambda p: fmt.render_pool(p, decimals_of(client, (p["token0"], p["token1"])), now_ms()))


@query.command()
@rpc_option
@json_option
@handle_errors
def pools(rpc: str, as_json: bool) -> None:
    """Every pool."""
    client = Client(rpc)

    def human(listed: dict[str, Any]) -> str:
        decimals = decimals_of(client, {t for p in listed["pools"] for t in (p["token0"], p["token1"])})
        return "\n\n".join(fmt.render_pool(p, decimals, now_ms()) for p in listed["pools"]) or "(no pools)"

    emit(client.pools(), as_json, human)


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
    client = Client(rpc)
    route = path.split(",") if path else None
    emit(client.quote(token_in, token_out, amount, route, max_hops), as_json,
         lambda q: fmt.render_quote(q, decimals_of(client, q["path"])))


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
    emit(Client(rpc).twap(pool_id, from_height, to_height, window_seconds), as_json)


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
    emit(Client(rpc).history(pool_id, from_height, to_height, limit), as_json)


@query.command()
@click.argument("address")
@click.argument("pool_id")
@rpc_option
@json_option
@handle_errors
def position(address: str, pool_id: str, rpc: str, as_json: bool) -> None:
    """LP shares, redeemable amounts and pending rewards of ADDRESS in POOL_ID."""
    emit(Client(rpc).position(address, pool_id), as_json)
