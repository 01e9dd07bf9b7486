"""``qenexd tx``: build, sign and submit transactions over JSON-RPC."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from cli.common import CLIError, emit, handle_errors, home_option, json_option, resolve_key, rpc_option
from node.rpc_client import RPCClient
from state.amounts import parse_amount
from state.crypto import PrivateKey, address_from_text, address_to_text
from state.payloads import (
    Batch,
    FlashBorrow,
    FlashRepay,
    PoolAdd,
    PoolCreate,
    PoolRemove,
    RewardsClaim,
    SetRewardRate,
    Swap,
    SwapRoute,
    TokenCreate,
    TokenMint,
    Transfer,
    TxKind,
)
from state.transactions import SignedTransaction, Transaction


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


def parse_address(text: str, what: str) -> bytes:
    try:
        return address_from_text(text)
    except Exception as exc:
        raise CLIError(f"{what}: {exc}") from None


def token_decimals(client: RPCClient, symbol: str) -> int:
    return int(client.call("qenex_getToken", symbol)["decimals"])


def sign_tx(client: RPCClient, key: PrivateKey, kind: TxKind, payload: Any, *, fee: str | None) -> SignedTransaction:
    """A transaction from ``key`` on the node's chain at its next pending nonce,
    with ``fee`` in base units or, by default, the kind's gas at the minimum price."""
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
    return tx.sign(key)


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
    raw = sign_tx(client, key, kind, payload, fee=fee).encode()
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
    units = parse_amount(amount, token_decimals(client, token))
    out = submit(client, key, TxKind.TRANSFER, Transfer(to=parse_address(to, "--to"), token=token, amount=units),
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
    payload = TokenMint(symbol=symbol, to=parse_address(to, "--to"),
                        amount=parse_amount(amount, token_decimals(client, symbol)))
    out = submit(client, key, TxKind.TOKEN_MINT, payload, fee=fee, wait=wait, timeout=timeout)
    emit(out, as_json, _human)


# -- pools, swaps, batches, rewards (issue #3) ------------------------------------

DEFAULT_DEADLINE_BLOCKS = 100


def _pair(pool: str) -> tuple[str, str]:
    parts = pool.split("/")
    if len(parts) != 2 or not all(parts):
        raise CLIError(f'pool must look like "AAA/BBB", got {pool!r}')
    return parts[0], parts[1]


def _deadline(client: RPCClient, deadline: int | None) -> int:
    if deadline is not None:
        return deadline
    return int(client.call("qenex_status")["height"]) + DEFAULT_DEADLINE_BLOCKS


def _units(value: Any, what: str) -> int:
    text = str(value)
    if not text.isdigit():
        raise CLIError(f"{what} must be a whole number of base units, got {value!r}")
    return int(text)


def _deposit(payload_type: type[PoolCreate] | type[PoolAdd], sender: str, home: Path, rpc: str, fee: str | None,
             wait: bool, timeout: float, as_json: bool, pool_name: str, amount_a: str, amount_b: str,
             min_shares: str) -> None:
    """Pool create and add take the same deposit: two amounts in whole units and a share floor."""
    key = resolve_key(sender, home)
    client = RPCClient(rpc)
    a, b = _pair(pool_name)
    payload = payload_type(a, b, parse_amount(amount_a, token_decimals(client, a)),
                           parse_amount(amount_b, token_decimals(client, b)), _units(min_shares, "--min-shares"))
    emit(submit(client, key, payload_type.KIND, payload, fee=fee, wait=wait, timeout=timeout), as_json, _human)


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
    _deposit(PoolCreate, sender, home, rpc, fee, wait, timeout, as_json, pool_name, amount_a, amount_b, min_shares)


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
    _deposit(PoolAdd, sender, home, rpc, fee, wait, timeout, as_json, pool_name, amount_a, amount_b, min_shares)


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
    key = resolve_key(sender, home)
    client = RPCClient(rpc)
    a, b = _pair(pool_name)
    payload = PoolRemove(a, b, _units(shares, "--shares"), parse_amount(min_a, token_decimals(client, a)),
                         parse_amount(min_b, token_decimals(client, b)))
    emit(submit(client, key, TxKind.POOL_REMOVE, payload, fee=fee, wait=wait, timeout=timeout), as_json, _human)


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
    client = RPCClient(rpc)
    units = parse_amount(amount, token_decimals(client, token_in))
    route = path.split(",") if path else None
    quote = client.call("qenex_quoteSwap", token_in, token_out, str(units), route)
    route = quote["path"]
    if min_out is None:
        minimum = int(quote["amount_out"]) * (10_000 - slippage_bps) // 10_000
    else:
        minimum = parse_amount(min_out, token_decimals(client, token_out))
    until = _deadline(client, deadline)
    if len(route) == 2:
        kind, payload = TxKind.SWAP, Swap(token_in, token_out, units, minimum, until)
    else:
        kind, payload = TxKind.SWAP_ROUTE, SwapRoute(tuple(route), units, minimum, until)
    out = submit(client, key, kind, payload, fee=fee, wait=wait, timeout=timeout)
    out.update({"path": route, "quoted_out": quote["amount_out"], "min_out": str(minimum)})
    emit(out, as_json, _human)


def batch_ops_from_json(spec: Any, default_deadline: int) -> tuple[Any, ...]:
    """Batch operations from the JSON form (amounts are base units, as decimal strings or integers).

    ``{"ops": [{"op": "flash_borrow", "pool": "AAA/BBB", "token": "AAA", "amount": "1000"}, ...]}``;
    ops: transfer {to, token, amount}; swap {token_in, token_out, amount_in, min_out?, deadline?};
    route {path, amount_in, min_out?, deadline?}; add {pool, amount_a, amount_b, min_shares?};
    remove {pool, shares, min_a?, min_b?}; flash_borrow / flash_repay {pool, token, amount}.
    """
    ops_spec = spec.get("ops") if isinstance(spec, dict) else spec
    if not isinstance(ops_spec, list):
        raise CLIError('the batch file must hold {"ops": [...]} or a list of operations')
    ops: list[Any] = []
    for i, op in enumerate(ops_spec):
        if not isinstance(op, dict) or "op" not in op:
            raise CLIError(f'operation {i} must be an object with an "op" field')
        name = op["op"]

        def get(field: str, default: Any = None, *, _op: dict[str, Any] = op, _i: int = i) -> Any:
            if field not in _op and default is None:
                raise CLIError(f"operation {_i} ({_op['op']}) is missing {field!r}")
            return _op.get(field, default)

        if name == "transfer":
            ops.append(Transfer(parse_address(get("to"), f"operation {i} to"), get("token"),
                                _units(get("amount"), f"operation {i} amount")))
        elif name == "swap":
            ops.append(Swap(get("token_in"), get("token_out"), _units(get("amount_in"), f"operation {i} amount_in"),
                            _units(get("min_out", 0), f"operation {i} min_out"), int(get("deadline", default_deadline))))
        elif name == "route":
            ops.append(SwapRoute(tuple(get("path")), _units(get("amount_in"), f"operation {i} amount_in"),
                                 _units(get("min_out", 0), f"operation {i} min_out"),
                                 int(get("deadline", default_deadline))))
        elif name == "add":
            a, b = _pair(get("pool"))
            ops.append(PoolAdd(a, b, _units(get("amount_a"), f"operation {i} amount_a"),
                               _units(get("amount_b"), f"operation {i} amount_b"),
                               _units(get("min_shares", 0), f"operation {i} min_shares")))
        elif name == "remove":
            a, b = _pair(get("pool"))
            ops.append(PoolRemove(a, b, _units(get("shares"), f"operation {i} shares"),
                                  _units(get("min_a", 0), f"operation {i} min_a"),
                                  _units(get("min_b", 0), f"operation {i} min_b")))
        elif name in ("flash_borrow", "flash_repay"):
            a, b = _pair(get("pool"))
            cls = FlashBorrow if name == "flash_borrow" else FlashRepay
            ops.append(cls(a, b, get("token"), _units(get("amount"), f"operation {i} amount")))
        else:
            raise CLIError(f"operation {i} has unknown op {name!r}")
    return tuple(ops)


@tx.command()
@_common
@click.option("--file", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help='JSON file: {"ops": [{"op": "flash_borrow", ...}, ...]} (amounts in base units).')
@handle_errors
def batch(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
          path: Path) -> None:
    """Submit an atomic batch (flash loans must be repaid with their fee before it ends, or it all reverts)."""
    import json

    key = resolve_key(sender, home)
    client = RPCClient(rpc)
    try:
        spec = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise CLIError(f"{path}: not valid JSON: {exc}") from None
    payload = Batch(batch_ops_from_json(spec, _deadline(client, None)))
    emit(submit(client, key, TxKind.BATCH, payload, fee=fee, wait=wait, timeout=timeout), as_json, _human)


@tx.group()
def rewards() -> None:
    """Liquidity-mining rewards."""


@rewards.command("claim")
@_common
@click.option("--pool", "pool_name", required=True, help='Token pair, e.g. "AAA/BBB".')
@handle_errors
def rewards_claim(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
                  pool_name: str) -> None:
    """Claim the QNX rewards accrued on your LP shares of a pool."""
    key = resolve_key(sender, home)
    a, b = _pair(pool_name)
    emit(submit(RPCClient(rpc), key, TxKind.REWARDS_CLAIM, RewardsClaim(a, b), fee=fee, wait=wait, timeout=timeout),
         as_json, _human)


@rewards.command("set-rate")
@_common
@click.option("--pool", "pool_name", required=True, help='Token pair, e.g. "AAA/BBB".')
@click.option("--rate", required=True, help="QNX per block, in whole units.")
@handle_errors
def rewards_set_rate(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
                     pool_name: str, rate: str) -> None:
    """Set a pool's reward rate (only the genesis reward_authority may)."""
    key = resolve_key(sender, home)
    a, b = _pair(pool_name)
    payload = SetRewardRate(a, b, parse_amount(rate, 18))
    emit(submit(RPCClient(rpc), key, TxKind.SET_REWARD_RATE, payload, fee=fee, wait=wait, timeout=timeout),
         as_json, _human)
