"""Human output of the CLI: exact amounts with decimals and symbol, readable heights and times.

No floats: amounts are integers of base units formatted on digits
(``1000012500000000000000000, 18, "QNX"`` -> ``"1,000,012.5 QNX"``); times
are integer milliseconds shown as UTC ISO 8601 with their age.  The
``render_*`` functions turn one RPC answer into the lines a person reads;
``--json`` output never goes through here.
"""

from __future__ import annotations

import datetime
from typing import Any, Callable, Mapping

from state.amounts import format_amount

Decimals = Callable[[str], int | None]  # symbol -> its decimals, None when unknown


def group_digits(digits: str) -> str:
    """``"1000012"`` -> ``"1,000,012"`` (a leading ``-`` stays)."""
    sign, digits = ("-", digits[1:]) if digits.startswith("-") else ("", digits)
    head = len(digits) % 3 or 3
    parts = [digits[:head]] + [digits[i:i + 3] for i in range(head, len(digits), 3)]
    return sign + ",".join(parts)


def amount(units: int | str, decimals: int | None, symbol: str | None = None) -> str:
    """Base units as whole units with thousands separators and the symbol: ``"1,000,012.5 QNX"``.

    Unknown decimals (``None``) show the base units themselves, marked as such.
    """
    value = int(units)
    if decimals is None:
        text = group_digits(str(value)) + " base units"
        return f"{text} of {symbol}" if symbol else text
    whole, _, fraction = format_amount(value, decimals).partition(".")
    text = group_digits(whole) + (f".{fraction}" if fraction else "")
    return f"{text} {symbol}" if symbol else text


def height(h: int | None) -> str:
    return "-" if h is None else group_digits(str(int(h)))


def age(ms: int) -> str:
    """A duration in milliseconds in its largest unit and the next: ``"3 min 5 s"``, ``"2 d 4 h"``, ``"250 ms"``."""
    ms = max(0, int(ms))
    if ms < 1000:
        return f"{ms} ms"
    units = (("d", 86_400), ("h", 3_600), ("min", 60), ("s", 1))
    seconds = ms // 1000
    for i, (name, size) in enumerate(units):
        if seconds >= size:
            text = f"{seconds // size} {name}"
            if i + 1 < len(units):
                next_name, next_size = units[i + 1]
                rest = seconds % size // next_size
                if rest:
                    text += f" {rest} {next_name}"
            return text
    raise AssertionError("unreachable: seconds >= 1")


def timestamp(time_ms: int, now_ms: int | None = None) -> str:
    """``"2026-12-02T09:16:23.120Z (5 s ago)"``; without ``now_ms``, the time alone."""
    seconds, millis = divmod(int(time_ms), 1000)
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc).replace(microsecond=millis * 1000)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis:03d}Z"
    if now_ms is None:
        return text
    delta = now_ms - int(time_ms)
    return f"{text} ({age(delta)} ago)" if delta >= 0 else f"{text} (in {age(-delta)})"


def _or_dash(value: Any) -> str:
    return "-" if value is None else str(value)


def table(rows: list[tuple[str, str]]) -> str:
    width = max((len(k) for k, _ in rows), default=0)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in rows)


# -- one renderer per answer ---------------------------------------------------------


def render_status(status: Mapping[str, Any], now_ms: int) -> str:
    """``qenexd status``: what a node is and how it is doing, in six lines."""
    consensus = status.get("consensus") or {}
    validator = status.get("validator")
    rows = [
        ("node", f"{status.get('node') or '?'} on chain {status['chain_id']}"),
        ("height", f"{height(status['height'])} (last block {timestamp(status['latest_block_time_ms'], now_ms)})"
         if status.get("latest_block_time_ms") is not None else height(status["height"])),
        ("block hash", str(status["latest_block_hash"])),
        ("peers", str(status["peers"])),
        ("validator", f"yes, {validator}" if validator else "no (observer)"),
        ("syncing", "yes" if status["syncing"] else "no"),
        ("mempool", f"{group_digits(str(status['mempool_size']))} pending"),
    ]
    if consensus:
        rows.append(("consensus", f"height {height(consensus.get('height'))}, view {consensus.get('view') or 0}, "
                                  f"{consensus.get('step') or '-'}"))
    return table(rows)


def render_account(account: Mapping[str, Any], decimals: Decimals) -> str:
    """An account at the head (nonce, next pending nonce, queued) or at a past height, where the node
    has no mempool view and answers ``pending_nonce`` and ``queued`` null."""
    pending = account.get("pending_nonce")
    nonce = f"{account['nonce']} " + (f"(next {pending})" if pending is not None else "(next: n/a at a past height)")
    rows = [("address", account["address"]), ("nonce", nonce)]
    if account.get("height") is not None:
        rows.append(("height", height(account["height"])))
    if account.get("queued"):
        rows.append(("queued", str(account["queued"])))
    balances = account.get("balances") or {}
    if not balances:
        rows.append(("balances", "-"))
    for i, (symbol, units) in enumerate(balances.items()):
        rows.append(("balances" if i == 0 else "", amount(units, decimals(symbol), symbol)))
    return table(rows)


def render_block(block: Mapping[str, Any], now_ms: int) -> str:
    rows = [
        ("height", height(block["height"])),
        ("time", timestamp(block["time_ms"], now_ms)),
        ("hash", block["hash"]),
        ("proposer", block["proposer"]),
        ("transactions", group_digits(str(block["num_txs"]))),
        ("app hash", block["app_hash"]),
        ("previous", block["prev_hash"]),
    ]
    commit = block.get("last_commit")
    if commit:
        rows.append(("last commit", f"height {height(commit['height'])}, view {commit['view']}, "
                                    f"{len(commit['signers'])} signers"))
        rows += [("", signer) for signer in commit["signers"]]
    for i, tx in enumerate(block.get("txs") or []):
        label = "txs" if i == 0 else ""
        rows.append((label, tx if isinstance(tx, str) else f"{tx['hash']} {tx['kind']} from {tx['sender']}"))
    return table(rows)


def render_tx(record: Mapping[str, Any], decimals: Decimals) -> str:
    status = record.get("status", "?")
    index = f", index {record['index']}" if record.get("index") is not None else ""
    where = f" at height {height(record['height'])}{index}" if record.get("committed") else ""
    rows = [
        ("hash", record["hash"]),
        ("status", f"{status}{where}" + (f": {record['reason']}" if record.get("reason") else "")),
        ("kind", record["kind"]),
        ("sender", f"{record['sender']} (nonce {record['nonce']})"),
        ("fee", amount(record["fee"], decimals("QNX"), "QNX")),
    ]
    if "gas_used" in record:
        rows.append(("gas used", group_digits(str(record["gas_used"]))))
    if "max_fee" in record:  # a contract transaction: charged for the gas used, the rest refunded
        rows.append(("max fee", amount(record["max_fee"], decimals("QNX"), "QNX")))
    if record.get("contract_address"):
        rows.append(("contract", record["contract_address"]))
    if record.get("output") not in (None, "0x"):
        rows.append(("output", f"{record['output']} = {record.get('result')!r}"))
    for i, event in enumerate(record.get("events") or []):
        topic = event.get("topic") if event.get("topic") is not None else event.get("topic_hex")
        rows.append(("events" if i == 0 else "", f"{topic}  data {event.get('data')}  from {event.get('contract')}"))
    for key, value in (record.get("payload") or {}).items():
        rows.append((f"  {key}", _payload_value(key, value, record.get("payload") or {}, decimals)))
    if "risk" in record:
        risk = record["risk"]
        rows.append(("risk", f"{_or_dash(risk.get('decision'))} (score {_or_dash(risk.get('score'))})"))
    if "proof" in record:
        p = record["proof"]
        rows.append(("proof", f"{'verified' if p.get('verified') else 'NOT VERIFIED'} against tx_root {p['tx_root']}"))
    return table(rows)


SHOWN_HEX_CHARS = 66  # a contract's code or arguments in full are for --json


def _payload_value(key: str, value: Any, payload: Mapping[str, Any], decimals: Decimals) -> str:
    if key in ("code", "init_args", "args") and isinstance(value, str) and len(value) > SHOWN_HEX_CHARS:
        return f"{value[:SHOWN_HEX_CHARS]}... ({group_digits(str((len(value) - 2) // 2))} bytes)"
    if key == "attached" and isinstance(value, list):
        return ", ".join(amount(units, decimals(symbol), symbol) for symbol, units in value) or "-"
    token = payload.get("token") or payload.get("symbol")
    if key in ("amount", "initial_supply") and isinstance(value, str) and token:
        return amount(value, decimals(token), token)
    if key == "amount_in" and isinstance(value, str) and payload.get("token_in"):
        return amount(value, decimals(payload["token_in"]), payload["token_in"])
    if key == "min_out" and isinstance(value, str) and payload.get("token_out"):
        return amount(value, decimals(payload["token_out"]), payload["token_out"])
    if isinstance(value, list):  # a route's symbols, or a batch's operations
        return "; ".join(_op(v) if isinstance(v, dict) else str(v) for v in value)
    return str(value)


def _op(op: Mapping[str, Any]) -> str:
    fields = ", ".join(f"{k}={'>'.join(v) if isinstance(v, list) else v}" for k, v in op.items() if k != "op")
    return f"{op.get('op', '?')}({fields})"


def render_validators(validators: Mapping[str, Any]) -> str:
    rows = [("height", height(validators["height"])), ("total power", group_digits(validators["total_power"]))]
    for v in validators["validators"]:
        rows.append((v["address"], f"power {group_digits(v['power'])}, priority {group_digits(v['proposer_priority'])}"))
    return table(rows)


def render_token(token: Mapping[str, Any]) -> str:
    return table([
        ("symbol", token["symbol"]),
        ("name", token["name"]),
        ("decimals", str(token["decimals"])),
        ("issuer", token["issuer"]),
        ("total supply", amount(token["total_supply"], token["decimals"], token["symbol"])),
    ])


def render_pool(pool: Mapping[str, Any], decimals: Decimals, now_ms: int | None = None) -> str:
    t0, t1 = pool["token0"], pool["token1"]
    rows = [
        ("pool", f"{pool['id']} (fee {pool['fee_bps']} bps)"),
        ("reserves", f"{amount(pool['reserve0'], decimals(t0), t0)} / {amount(pool['reserve1'], decimals(t1), t1)}"),
        ("shares", f"{group_digits(pool['total_shares'])} ({group_digits(pool['locked_shares'])} locked)"),
        (f"price {t0}", f"{pool['price0'] or '-'} {t1}"),
        (f"price {t1}", f"{pool['price1'] or '-'} {t0}"),
        ("reward rate", amount(pool["reward_rate"], decimals("QNX"), "QNX") + " per block"),
        ("created", f"height {height(pool['created_height'])}"),
        ("updated", timestamp(pool["last_update_ms"], now_ms) if pool.get("last_update_ms") else "-"),
    ]
    return table(rows)


def render_quote(quote: Mapping[str, Any], decimals: Decimals) -> str:
    path = quote["path"]
    t_in, t_out = path[0], path[-1]
    return table([
        ("in", amount(quote["amount_in"], decimals(t_in), t_in)),
        ("out", amount(quote["amount_out"], decimals(t_out), t_out)),
        ("path", " > ".join(path)),
        ("fee", amount(quote["fee"], decimals(t_in), t_in)),
        ("price impact", f"{quote['price_impact_bps']} bps"),
        ("spot price", quote["spot_price"]),
        ("execution price", quote["execution_price"]),
    ])


def render_submitted(out: Mapping[str, Any]) -> str:
    """A submitted transaction: its hash, and where it landed when waited for."""
    if out.get("height") is None:
        return f"submitted {out['hash']}"
    return f"{out['hash']} {out['status']} at height {height(out['height'])}"
