"""``qenexd tx``: build, sign and submit transactions over JSON-RPC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.common import CLIError, emit, handle_errors, home_option, json_option, resolve_key, rpc_option
from node.rpc_client import RPCClient
from state.amounts import parse_amount
from state.crypto import PrivateKey, address_from_text, address_to_text
from state.types import TokenCreate, TokenMint, Transaction, Transfer, TxKind


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


def _parse_address(text: str, what: str) -> bytes:
    try:
        return address_from_text(text)
    except Exception as exc:
        raise CLIError(f"{what}: {exc}") from None


def _token_decimals(client: RPCClient, symbol: str) -> int:
    return int(client.call("qenex_getToken", symbol)["decimals"])


def submit(
    client: RPCClient,
    key: PrivateKey,
    kind: TxKind,
    payload: Any,
    *,
    fee: str | None,
    wait: bool,
    timeout: float,
) -> dict[str, Any]:
    status = client.call("qenex_status")
    account = client.call("qenex_getAccount", address_to_text(key.address))
    if fee is None:
        params = client.call("qenex_getParams")
        fee_units = int(params["gas"][kind.name.lower()]) * int(params["min_gas_price"])
    else:
        if not fee.isdigit():
            raise CLIError(f"--fee must be a whole number of base units, got {fee!r}")
        fee_units = int(fee)
    tx = Transaction(
        chain_id=status["chain_id"],
        kind=kind,
        sender_pubkey=key.public_key,
        nonce=int(account["pending_nonce"]),
        fee=fee_units,
        payload=payload,
    )
    raw = tx.sign(key).encode()
    result = client.call("qenex_sendTransaction", "0x" + raw.hex())
    out: dict[str, Any] = {"hash": result["hash"], "status": "pending", "height": None}
    if wait:
        record = client.wait_for_tx(result["hash"], timeout=timeout)
        out.update({"status": record["status"], "height": record["height"], "reason": record.get("reason", "")})
        if record["status"] != "ok":
            emit(out, False)
            raise CLIError(f"transaction {result['hash']} failed at height {record['height']}: {record['reason']}")
    return out


def _human(out: dict[str, Any]) -> str:
    if out["height"] is None:
        return f"submitted {out['hash']}"
    return f"{out['hash']} {out['status']} at height {out['height']}"


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
    key = resolve_key(sender, home)
    client = RPCClient(rpc)
    units = parse_amount(amount, _token_decimals(client, token))
    out = submit(client, key, TxKind.TRANSFER, Transfer(to=_parse_address(to, "--to"), token=token, amount=units),
                 fee=fee, wait=wait, timeout=timeout)
    emit(out, as_json, _human)


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
    key = resolve_key(sender, home)
    payload = TokenCreate(symbol=symbol, name=token_name, decimals=decimals,
                          initial_supply=parse_amount(supply, decimals))
    out = submit(RPCClient(rpc), key, TxKind.TOKEN_CREATE, payload, fee=fee, wait=wait, timeout=timeout)
    emit(out, as_json, _human)


@token.command("mint")
@_common
@click.option("--symbol", required=True)
@click.option("--to", "to", required=True, help="Receiver address (qnx1...).")
@click.option("--amount", required=True, help="Amount in whole token units.")
@handle_errors
def token_mint(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
               symbol: str, to: str, amount: str) -> None:
    """Mint new units of a token you issued."""
    key = resolve_key(sender, home)
    client = RPCClient(rpc)
    payload = TokenMint(symbol=symbol, to=_parse_address(to, "--to"),
                        amount=parse_amount(amount, _token_decimals(client, symbol)))
    out = submit(client, key, TxKind.TOKEN_MINT, payload, fee=fee, wait=wait, timeout=timeout)
    emit(out, as_json, _human)
