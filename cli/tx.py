"""``qenexd tx``: build, sign and submit transactions over JSON-RPC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli import format as fmt
from cli.common import CLIError, emit, handle_errors, home_option, json_option, resolve_key, rpc_option
from node import txbuild
from node.client import Client
from state.amounts import QNX_DECIMALS, parse_amount
from state.crypto import PrivateKey
from state.payloads import Payload


def _common(func: Any) -> Any:
    for option in reversed(
        [
            click.option("--from", "sender", required=True, help="Key name in the keyring, or a key file path."),
            home_option,
            rpc_option,
            click.option("--fee", default=None, help="Fee in QNX base units (default: gas x min gas price)."),
            click.option("--wait/--no-wait", default=False, help="Wait for finality and print the height."),
            click.option("--timeout", default=60.0, show_default=True, help="Seconds to wait with --wait."),
            json_option,
        ]
    ):
        func = option(func)
    return func


def fee_units(fee: str | None) -> int | None:
    return None if fee is None else txbuild.units(fee, "--fee")


def submit(client: Client, key: PrivateKey, payload: Payload, *, fee: str | None, wait: bool,
           timeout: float, as_json: bool = False) -> dict[str, Any]:
    """Sign ``payload`` from ``key``, send it, and with ``wait`` follow it to its receipt (a failed
    receipt is printed, as JSON with ``as_json``, before the one-line error and exit status 1)."""
    stx = client.sign(key, payload, fee=fee_units(fee))
    tx_hash = client.submit(stx)
    out: dict[str, Any] = {"hash": tx_hash, "status": "pending", "height": None}
    if wait:
        record = client.wait_final(tx_hash, timeout)
        out.update({"status": record["status"], "height": record["height"], "reason": record.get("reason", "")})
        if record["status"] != "ok":
            emit(out, as_json)
            raise CLIError(f"transaction {tx_hash} failed at height {record['height']}: {out['reason'] or '-'}")
    return out


def _send(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
          build: Any) -> dict[str, Any]:
    """The shape of every ``tx`` command: resolve the key, build the payload with the client, submit, print."""
    key = resolve_key(sender, home)
    client = Client(rpc)
    out = submit(client, key, build(client), fee=fee, wait=wait, timeout=timeout, as_json=as_json)
    emit(out, as_json, fmt.render_submitted)
    return out


@click.group()
def tx() -> None:
    """Sign and submit transactions."""


@tx.command()
@_common
@click.option("--to", "to", required=True, help="Receiver address (qnx1...).")
@click.option("--amount", required=True, help="Amount in whole token units, e.g. 12.5.")
@click.option("--token", default="QNX", show_default=True, help="Token symbol.")
@handle_errors
def transfer(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
             to: str, amount: str, token: str) -> None:
    """Transfer AMOUNT of TOKEN to an address."""
    txbuild.address(to, "--to")  # a typo is refused before the key is unlocked
    _send(sender, home, rpc, fee, wait, timeout, as_json,
          lambda c: txbuild.transfer(to, c.units(token, amount), token))


@tx.group()
def token() -> None:
    """Create and mint tokens."""


@token.command("create")
@_common
@click.option("--symbol", required=True, help="1-12 characters of A-Z and 0-9.")
@click.option("--name", "token_name", required=True, help="Display name.")
@click.option("--decimals", default=18, show_default=True, type=click.IntRange(0, 36))
@click.option("--supply", default="0", show_default=True, help="Initial supply in whole units, credited to you.")
@handle_errors
def token_create(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
                 symbol: str, token_name: str, decimals: int, supply: str) -> None:
    """Create a token; you become its issuer."""
    payload = txbuild.token_create(symbol, token_name, decimals, parse_amount(supply, decimals))
    _send(sender, home, rpc, fee, wait, timeout, as_json, lambda c: payload)


@token.command("mint")
@_common
@click.option("--symbol", required=True)
@click.option("--to", "to", required=True, help="Receiver address (qnx1...).")
@click.option("--amount", required=True, help="Amount in whole token units.")
@handle_errors
def token_mint(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
               symbol: str, to: str, amount: str) -> None:
    """Mint new units of a token you issued."""
    txbuild.address(to, "--to")
    _send(sender, home, rpc, fee, wait, timeout, as_json,
          lambda c: txbuild.token_mint(symbol, to, c.units(symbol, amount)))


# -- pools, swaps, batches, rewards (issue #3) ------------------------------------

DEFAULT_DEADLINE_BLOCKS = 100


def _deadline(client: Client, deadline: int | None) -> int:
    if deadline is not None:
        return deadline
    return int(client.status()["height"]) + DEFAULT_DEADLINE_BLOCKS


def _deposit(build: Any, sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float,
             as_json: bool, pool_name: str, amount_a: str, amount_b: str, min_shares: str) -> None:
    """Pool create and add take the same deposit: two amounts in whole units and a share floor."""
    a, b = txbuild.pair(pool_name)
    floor = txbuild.units(min_shares, "--min-shares")
    _send(sender, home, rpc, fee, wait, timeout, as_json,
          lambda c: build(pool_name, c.units(a, amount_a), c.units(b, amount_b), floor))


@tx.group()
def pool() -> None:
    """Create liquidity pools and add or remove liquidity."""


@pool.command("create")
@_common
@click.option("--pool", "pool_name", required=True, help='Token pair, e.g. "AAA/BBB".')
@click.option("--amount-a", required=True, help="Deposit of the first token, in whole units.")
@click.option("--amount-b", required=True, help="Deposit of the second token, in whole units.")
@click.option("--min-shares", default="0", show_default=True, help="Fail unless at least this many LP shares (base units).")
@handle_errors
def pool_create(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
                pool_name: str, amount_a: str, amount_b: str, min_shares: str) -> None:
    """Create the pool of a token pair with your first deposit (1000 shares are locked forever)."""
    _deposit(txbuild.pool_create, sender, home, rpc, fee, wait, timeout, as_json, pool_name, amount_a, amount_b,
             min_shares)


@pool.command("add")
@_common
@click.option("--pool", "pool_name", required=True, help='Token pair, e.g. "AAA/BBB".')
@click.option("--amount-a", required=True, help="Most of the first token to deposit, in whole units.")
@click.option("--amount-b", required=True, help="Most of the second token to deposit, in whole units.")
@click.option("--min-shares", default="0", show_default=True, help="Fail unless at least this many LP shares (base units).")
@handle_errors
def pool_add(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
             pool_name: str, amount_a: str, amount_b: str, min_shares: str) -> None:
    """Add liquidity at the pool's ratio (the unused part of one amount stays with you)."""
    _deposit(txbuild.pool_add, sender, home, rpc, fee, wait, timeout, as_json, pool_name, amount_a, amount_b,
             min_shares)


@pool.command("remove")
@_common
@click.option("--pool", "pool_name", required=True, help='Token pair, e.g. "AAA/BBB".')
@click.option("--shares", required=True, help="LP shares to burn (base units).")
@click.option("--min-a", default="0", show_default=True, help="Fail unless at least this much of the first token (whole units).")
@click.option("--min-b", default="0", show_default=True, help="Fail unless at least this much of the second token (whole units).")
@handle_errors
def pool_remove(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
                pool_name: str, shares: str, min_a: str, min_b: str) -> None:
    """Burn LP shares for a pro-rata share of the reserves."""
    a, b = txbuild.pair(pool_name)
    burn = txbuild.units(shares, "--shares")
    _send(sender, home, rpc, fee, wait, timeout, as_json,
          lambda c: txbuild.pool_remove(pool_name, burn, c.units(a, min_a), c.units(b, min_b)))


@tx.command()
@_common
@click.option("--in", "token_in", required=True, help="Token you sell.")
@click.option("--out", "token_out", required=True, help="Token you buy.")
@click.option("--amount", required=True, help="Exact amount to sell, in whole units.")
@click.option("--min-out", default=None, help="Least output in whole units (default: the quote less --slippage-bps).")
@click.option("--slippage-bps", default=50, show_default=True, type=click.IntRange(0, 10_000))
@click.option("--path", "path", default=None, help="Explicit route, e.g. AAA,CCC,BBB (default: the best quoted path).")
@click.option("--deadline", default=None, type=int, help=f"Last block height (default: head + {DEFAULT_DEADLINE_BLOCKS}).")
@handle_errors
def swap(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
         token_in: str, token_out: str, amount: str, min_out: str | None, slippage_bps: int, path: str | None,
         deadline: int | None) -> None:
    """Swap an exact amount of one token for at least a minimum of another (multi-hop when the path says so)."""
    key = resolve_key(sender, home)
    client = Client(rpc)
    units = client.units(token_in, amount)
    quote = client.quote(token_in, token_out, units, path.split(",") if path else None)
    if min_out is None:
        minimum = int(quote["amount_out"]) * (10_000 - slippage_bps) // 10_000
    else:
        minimum = client.units(token_out, min_out)
    payload = txbuild.swap(quote["path"], units, minimum, _deadline(client, deadline))
    out = submit(client, key, payload, fee=fee, wait=wait, timeout=timeout, as_json=as_json)
    out.update({"path": quote["path"], "quoted_out": quote["amount_out"], "min_out": str(minimum)})
    emit(out, as_json, fmt.render_submitted)


@tx.command()
@_common
@click.option("--file", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON file: {"ops": [{"op": "flash_borrow", ...}, ...]} (amounts in base units).')
@handle_errors
def batch(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
          path: Path) -> None:
    """Submit an atomic batch (flash loans must be repaid with their fee before it ends, or it all reverts)."""
    import json

    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CLIError(f"{path}: not valid JSON: {exc}") from None
    _send(sender, home, rpc, fee, wait, timeout, as_json,
          lambda c: txbuild.batch(txbuild.batch_ops_from_json(spec, _deadline(c, None))))


@tx.group()
def rewards() -> None:
    """Liquidity-mining rewards (claim, set-rate) and staking rewards (withdraw)."""


@rewards.command("claim")
@_common
@click.option("--pool", "pool_name", required=True, help='Token pair, e.g. "AAA/BBB".')
@handle_errors
def rewards_claim(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
                  pool_name: str) -> None:
    """Claim the QNX rewards accrued on your LP shares of a pool."""
    payload = txbuild.rewards_claim(pool_name)
    _send(sender, home, rpc, fee, wait, timeout, as_json, lambda c: payload)


@rewards.command("set-rate")
@_common
@click.option("--pool", "pool_name", required=True, help='Token pair, e.g. "AAA/BBB".')
@click.option("--rate", required=True, help="QNX per block, in whole units.")
@handle_errors
def rewards_set_rate(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
                     pool_name: str, rate: str) -> None:
    """Set a pool's reward rate (only the genesis reward_authority may)."""
    payload = txbuild.set_reward_rate(pool_name, parse_amount(rate, QNX_DECIMALS))
    _send(sender, home, rpc, fee, wait, timeout, as_json, lambda c: payload)
