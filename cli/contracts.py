"""Contract commands (issue 11): ``qenexd tx contract deploy|call``, ``query contract``,
``query contract-state`` and ``query call``.

``--init`` / ``--args`` are JSON (node.contract_values): integers, ``"0x..."``
for bytes, other strings as text, arrays and objects; default: no arguments
(the empty array).  ``--attach AMOUNT TOKEN`` (repeatable) moves tokens to the
contract before its code runs, AMOUNT in whole units as the other tx commands
take it.  ``--gas-limit`` defaults to the deploy's intrinsic gas + 5,000,000,
or 2,000,000 for a call, capped by the chain's ``max_tx_gas``; the fee is the
limit x the gas price, and what the code does not use is refunded.  With
``--wait`` the receipt is printed: status, reason, gas used, fee, events,
output (and a deploy's contract address).  Code and arguments are checked
here before the key is unlocked: invalid WebAssembly text, code the chain
would refuse (state.vm's deploy rules), an unknown contract or method are one
line and exit status 1, and cost no fee.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import click

from cli import format as fmt
from cli.common import CLIError, decimals_of, emit, handle_errors, json_option, printable, resolve_key, rpc_option
from cli.query import height_option
from cli.tx import _common, fee_units
from node import txbuild
from node.client import Client
from node.contract_values import ContractValueError, args_from_json
from state.amounts import QNX, QNX_DECIMALS
from state.contracts import call_intrinsic_gas, contract_address, deploy_intrinsic_gas
from state.crypto import address_to_text
from state.errors import AmountError
from state.payloads import Payload

MAX_SOURCE_BYTES = 4 * 1024 * 1024  # a .wat or .wasm read from disk (code itself is at most 64 KiB)


# -- inputs ------------------------------------------------------------------------------


def _json_args(text: str | None, option: str) -> bytes:
    if text is None:
        return args_from_json(None)
    try:
        value = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CLIError(f"{option}: not valid JSON: {exc}") from None
    try:
        return args_from_json(value, option)
    except ContractValueError as exc:
        raise CLIError(str(exc)) from None


def _read(path: Path, option: str) -> bytes:
    try:
        if path.stat().st_size > MAX_SOURCE_BYTES:
            raise CLIError(f"{option} {path}: over {MAX_SOURCE_BYTES} bytes, far more than any contract")
        return path.read_bytes()
    except OSError as exc:
        raise CLIError(f"{option} {path}: cannot read it: {exc.strerror or exc}") from None


def wat_to_wasm(text: str, where: str) -> bytes:
    """WebAssembly text compiled to a binary module (wasmtime.wat2wasm); one line naming the fault."""
    import wasmtime  # here, not at start-up: only deploys need the engine

    try:
        return bytes(wasmtime.wat2wasm(text))
    except wasmtime.WasmtimeError as exc:
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        at = next((line.split(":", 1)[-1] for line in lines if line.startswith("-->")), "")
        message = lines[0] if lines else "invalid WebAssembly text"
        position = f" (line {at.split(':')[0]}, column {at.split(':')[1]})" if at.count(":") == 1 else ""
        raise CLIError(f"{where}: invalid WebAssembly text: {message}{position}") from None


def load_code(wasm: Path | None, wat: Path | None) -> tuple[bytes, str]:
    """The module's bytes and where they came from, from exactly one of --wasm and --wat."""
    if (wasm is None) == (wat is None):
        raise CLIError("give exactly one of --wasm FILE and --wat FILE")
    if wasm is not None:
        return _read(wasm, "--wasm"), str(wasm)
    assert wat is not None
    raw = _read(wat, "--wat")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CLIError(f"--wat {wat}: not UTF-8 text (a binary module? use --wasm)") from None
    return wat_to_wasm(text, str(wat)), str(wat)


def check_code(code: bytes, where: str, contracts: dict[str, Any]) -> None:
    """Refuse here what the chain would refuse at deploy (and charge the gas for): over max_code_bytes,
    not valid wasm, imports outside the host API, no entry point, limits (state.vm.inspect_code)."""
    from state import vm

    limit = int(contracts["max_code_bytes"])
    if len(code) > limit:
        raise CLIError(f"{where}: {len(code)} bytes of code, more than the chain's max_code_bytes {limit}")
    try:
        vm.inspect_code(code, max_memory_pages=int(contracts["max_memory_pages"]),
                        max_table_elements=int(contracts["max_table_elements"]))
    except vm.CodeRefused as exc:
        raise CLIError(f"{where}: the chain would refuse this code: {exc}") from None


def _attached(client: Client, pairs: tuple[tuple[str, str], ...]) -> list[tuple[str, int]]:
    out = []
    for amount, token in pairs:
        try:
            out.append((token, client.units(token, amount)))
        except AmountError as exc:
            raise CLIError(f"--attach {amount} {token}: {exc}") from None
    return out


def _gas_limit(given: int | None, default: int, intrinsic: int, max_gas: int) -> int:
    if given is None:
        return default
    if given > max_gas:
        raise CLIError(f"--gas-limit {given:,} exceeds the chain's max_tx_gas {max_gas:,}")
    if given < intrinsic:
        raise CLIError(f"--gas-limit {given:,} is below the transaction's intrinsic gas {intrinsic:,} "
                       "(charged before any code runs)")
    return given


# -- submitting and the receipt ----------------------------------------------------------

RECEIPT_FIELDS = ("index", "reason", "gas_used", "fee", "max_fee", "events", "output", "result", "contract_address")


def send(client: Client, key: Any, payload: Payload, *, fee: str | None, wait: bool, timeout: float,
         as_json: bool, deploy: bool) -> dict[str, Any]:
    """Sign, submit and (``wait``) follow to the receipt; a failed receipt is printed before the error line."""
    stx = client.sign(key, payload, fee=fee_units(fee))
    tx_hash = client.submit(stx)
    out: dict[str, Any] = {"hash": tx_hash, "status": "pending", "height": None, "gas_limit": payload.gas_limit,  # type: ignore[union-attr]
                           "max_fee": str(stx.tx.fee)}
    if deploy:  # known before it runs: the sender's address and this transaction's nonce
        out["contract_address"] = address_to_text(contract_address(key.address, stx.tx.nonce))
    if wait:
        record = client.wait_final(tx_hash, timeout)
        out.update({"status": record["status"], "height": record["height"]})
        out.update({k: record[k] for k in RECEIPT_FIELDS if k in record})  # type: ignore[literal-required]
        if record["status"] != "ok":
            out.pop("contract_address", None)  # nothing was deployed
            emit(out, as_json, render_receipt)
            raise CLIError(f"transaction {tx_hash} failed at height {record['height']}: {out.get('reason') or '-'}")
    emit(out, as_json, render_receipt)
    return out


def _qnx(units: Any) -> str:
    return fmt.amount(units, QNX_DECIMALS, QNX)


def _value(result: Any) -> str:
    return json.dumps(result, sort_keys=True) if not isinstance(result, str) else result


def render_events(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    rows = []
    for i, e in enumerate(events):
        topic = e["topic"] if e.get("topic") is not None else e["topic_hex"]
        rows.append(("events" if i == 0 else "", f"{topic}  data {e['data']}  from {e['contract']}"))
    return rows


def render_receipt(out: dict[str, Any]) -> str:
    rows = [("hash", out["hash"])]
    if out.get("height") is None:
        rows.append(("status", "submitted (not waited for: --wait follows it to its receipt)"))
    else:
        status = f"{out['status']} at height {fmt.height(out['height'])}"
        rows.append(("status", status + (f": {out['reason']}" if out.get("reason") else "")))
    if out.get("contract_address"):
        rows.append(("contract", out["contract_address"] + ("" if out.get("height") is not None else
                                                             " (once the deploy succeeds)")))
    if "gas_used" in out:
        rows.append(("gas used", f"{fmt.group_digits(str(out['gas_used']))} of {fmt.group_digits(str(out['gas_limit']))}"))
    else:
        rows.append(("gas limit", fmt.group_digits(str(out["gas_limit"]))))
    if "fee" in out:
        rows.append(("fee", f"{_qnx(out['fee'])} (of at most {_qnx(out['max_fee'])}; the rest refunded)"))
    else:
        rows.append(("max fee", _qnx(out["max_fee"])))
    if out.get("output") not in (None, "0x"):
        rows.append(("output", f"{out['output']} = {_value(out.get('result'))}"))
    rows += render_events(out.get("events") or [])
    return fmt.table(rows)


# -- tx contract deploy | call ------------------------------------------------------------


@click.group()
def contract() -> None:
    """Deploy WebAssembly contracts and call their methods."""


@contract.command("deploy")
@_common
@click.option("--wasm", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The contract as a binary WebAssembly module (.wasm).")
@click.option("--wat", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The contract as WebAssembly text (.wat), compiled here.")
@click.option("--init", "init_json", default=None, metavar="JSON",
              help='Arguments of its init, as JSON (e.g. \'[1000, "0x00ff"]\'); default: none.')
@click.option("--attach", "attach", nargs=2, multiple=True, metavar="AMOUNT TOKEN",
              help="Move AMOUNT (whole units) of TOKEN to the contract before init runs (repeatable).")
@click.option("--gas-limit", type=click.IntRange(1), default=None,
              help=f"Most gas it may use (default: intrinsic gas + {txbuild.DEPLOY_GAS_HEADROOM:,}, at most the "
                   "chain's max_tx_gas).")
@handle_errors
def deploy(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
           wasm: Path | None, wat: Path | None, init_json: str | None, attach: tuple[tuple[str, str], ...],
           gas_limit: int | None) -> None:
    """Deploy a contract; prints its address (derived from your address and this transaction's nonce)."""
    code, where = load_code(wasm, wat)
    init_args = _json_args(init_json, "--init")
    client = Client(rpc)
    params = client.params()
    max_gas = txbuild.max_tx_gas(params, "contract deploys")
    check_code(code, where, params["contracts"])  # type: ignore[typeddict-item]
    limit = _gas_limit(gas_limit, txbuild.default_deploy_gas(params, code, init_args),
                       deploy_intrinsic_gas(code, init_args), max_gas)
    payload = txbuild.contract_deploy(code, init_args, _attached(client, attach), gas_limit=limit)
    send(client, resolve_key(sender, home), payload, fee=fee, wait=wait, timeout=timeout, as_json=as_json,
         deploy=True)


@contract.command("call")
@_common
@click.argument("contract_address", metavar="CONTRACT")
@click.argument("method")
@click.option("--args", "args_json", default=None, metavar="JSON",
              help="The method's arguments as JSON (e.g. '[5]'); default: none.")
@click.option("--attach", "attach", nargs=2, multiple=True, metavar="AMOUNT TOKEN",
              help="Move AMOUNT (whole units) of TOKEN to the contract before the method runs (repeatable).")
@click.option("--gas-limit", type=click.IntRange(1), default=None,
              help=f"Most gas it may use (default: {txbuild.CALL_GAS_DEFAULT:,}, at most the chain's max_tx_gas).")
@handle_errors
def call(sender: str, home: Path, rpc: str, fee: str | None, wait: bool, timeout: float, as_json: bool,
         contract_address: str, method: str, args_json: str | None, attach: tuple[tuple[str, str], ...],
         gas_limit: int | None) -> None:
    """Call METHOD of CONTRACT in a transaction (it may write storage, move tokens and emit events)."""
    target = txbuild.address(contract_address, "CONTRACT")
    args = _json_args(args_json, "--args")
    client = Client(rpc)
    params = client.params()
    max_gas = txbuild.max_tx_gas(params, "contract calls")
    info = client.contract(address_to_text(target))  # -32041 for an address without a contract
    if method == "init" or method not in info["methods"]:
        callable_ = ", ".join(m for m in info["methods"] if m != "init") or "none"
        raise CLIError(f"contract {info['address']} has no method {method!r} to call (its methods: {callable_})")
    limit = _gas_limit(gas_limit, txbuild.default_call_gas(params), call_intrinsic_gas(args), max_gas)
    payload = txbuild.contract_call(target, method, args, _attached(client, attach), gas_limit=limit)
    send(client, resolve_key(sender, home), payload, fee=fee, wait=wait, timeout=timeout, as_json=as_json,
         deploy=False)


# -- query contract | contract-state | call ------------------------------------------------


def render_contract(c: dict[str, Any], decimals: Callable[[str], int | None]) -> str:
    rows = [
        ("address", c["address"]),
        ("height", fmt.height(c["height"])),
        ("code", f"{c['code_hash']} ({fmt.group_digits(str(c['code_size']))} bytes)"),
        ("deployer", f"{c['deployer']} at height {fmt.height(c['created_height'])}"),
        ("storage", f"{fmt.group_digits(str(c['storage_entries']))} entries, "
                    f"{fmt.group_digits(str(c['storage_bytes']))} bytes"),
        ("methods", ", ".join(c["methods"]) + (" (re-entrant)" if c.get("reentrant") else "")),
    ]
    balances = c.get("balances") or {}
    if not balances:
        rows.append(("balances", "-"))
    for i, (symbol, units) in enumerate(balances.items()):
        rows.append(("balances" if i == 0 else "", fmt.amount(units, decimals(symbol), symbol)))
    return fmt.table(rows)


def _text_hint(hex_text: str) -> str:
    try:
        text = bytes.fromhex(hex_text[2:]).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""
    return f" ({text!r})" if text.isprintable() and text else ""


def render_state(page: dict[str, Any]) -> str:
    if not page["entries"]:
        lines = [f"no storage entries (at height {fmt.height(page['height'])})"]
    else:
        lines = [f"{e['key']}{_text_hint(e['key'])}  {e['value']}" for e in page["entries"]]
    if page.get("next"):
        lines.append(f"more: --start-after {page['next']}")
    return "\n".join(lines)


def render_call(r: dict[str, Any]) -> str:
    return fmt.table([
        ("result", "-" if r["result"] is None else _value(r["result"])),
        ("output", r["output"]),
        ("gas used", f"{fmt.group_digits(str(r['gas_used']))} (of at most {fmt.group_digits(str(r['gas_limit']))})"),
        ("height", fmt.height(r["height"])),
    ])


@click.command("contract")
@click.argument("address")
@height_option
@rpc_option
@json_option
@handle_errors
def query_contract(address: str, height: int | None, rpc: str, as_json: bool) -> None:
    """A contract: its code hash and size, deployer, storage size, methods and balances."""
    client = Client(rpc)
    info = client.contract(address, height)
    emit(info, as_json, lambda c: render_contract(c, decimals_of(client, c["balances"])))


def _hex_option(value: str | None, option: str) -> str | None:
    if value is None:
        return None
    text = value[2:] if value.startswith(("0x", "0X")) else value
    try:
        bytes.fromhex(text)
    except ValueError:
        raise CLIError(f"{option} {printable(value, 80, one_line=True)!r} is not hex") from None
    return "0x" + text


@click.command("contract-state")
@click.argument("address")
@click.option("--prefix", default=None, metavar="HEX", help="Only the keys that start with these bytes (hex).")
@click.option("--limit", default=100, show_default=True, type=click.IntRange(1, 1000))
@click.option("--start-after", default=None, metavar="HEX", help="List the keys after this one (the previous page's "
                                                                  "last key, printed as `more: ...`).")
@height_option
@rpc_option
@json_option
@handle_errors
def query_contract_state(address: str, prefix: str | None, limit: int, start_after: str | None, height: int | None,
                         rpc: str, as_json: bool) -> None:
    """A contract's storage in key order: hex keys and values, one page."""
    page = Client(rpc).contract_state(address, _hex_option(prefix, "--prefix"), limit,
                                      _hex_option(start_after, "--start-after"), height)
    emit(page, as_json, render_state)


@click.command("call")
@click.argument("contract_address", metavar="CONTRACT")
@click.argument("method")
@click.option("--args", "args_json", default=None, metavar="JSON", help="The method's arguments as JSON; default: none.")
@height_option
@rpc_option
@json_option
@handle_errors
def query_call(contract_address: str, method: str, args_json: str | None, height: int | None, rpc: str,
               as_json: bool) -> None:
    """Run METHOD of CONTRACT read-only on the node (no transaction, no fee): its result and the gas it used."""
    _json_args(args_json, "--args")  # refused here with the option's name; the node converts the same JSON
    args = None if args_json is None else json.loads(args_json)
    emit(Client(rpc).call_contract(contract_address, method, args, height), as_json, render_call)


def register(tx: click.Group, query: click.Group) -> None:
    tx.add_command(contract)
    query.add_command(query_contract)
    query.add_command(query_contract_state)
    query.add_command(query_call)
