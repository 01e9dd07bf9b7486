"""``qenexd watch``: follow a node's WebSocket subscriptions (node.ws), one line per notification."""

from __future__ import annotations

import contextlib
import json
from typing import Any, Callable, Iterator

import click

from cli import format as fmt
from cli.common import CLIError, handle_errors, json_option, rpc_option
from node.client import Client, Notification
from state.amounts import QNX, QNX_DECIMALS

count_option = click.option("--count", type=click.IntRange(1), default=None,
                            help="Stop after this many notifications (default: until interrupted).")


@click.group()
def watch() -> None:
    """Follow the chain live over the node's WebSocket (ws://HOST:PORT/ws): heads, one transaction,
    events, pending transactions.  Ctrl-C stops."""


def _follow(rpc: str, topic: str, flt: dict[str, Any] | None, count: int | None, as_json: bool,
            line: Callable[[Any], str], *, until: Callable[[Any], bool] = lambda _r: False) -> None:
    seen = 0
    with Client.connect(rpc) as client, contextlib.closing(client.subscribe(topic, flt)) as notes:
        try:
            for note in _notes(notes):
                click.echo(json.dumps(note.result, sort_keys=True) if as_json else line(note.result))
                seen += 1
                if until(note.result) or (count is not None and seen >= count):
                    return
        except KeyboardInterrupt:
            return


def _notes(notes: Iterator[Notification]) -> Iterator[Notification]:
    for note in notes:
        if not isinstance(note.result, dict):
            raise CLIError(f"the node sent a {note.topic} notification that is not an object: {note.result!r:.80}")
        yield note


def _head_line(head: dict[str, Any]) -> str:
    return (f"height {fmt.height(head['height'])}  {head['hash']}  {head['num_txs']} txs  "
            f"{fmt.timestamp(head['time_ms'])}  proposer {head['proposer']}")


def _tx_line(record: dict[str, Any]) -> str:
    if not record.get("final"):
        return f"{record['hash']}  {record['status']}"
    reason = f"  {record['reason']}" if record.get("reason") else ""
    return (f"{record['hash']}  {record['status']} at height {fmt.height(record['height'])} "
            f"(index {record['index']}, gas {record['gas_used']}, fee {fmt.amount(record['fee'], QNX_DECIMALS, QNX)}){reason}")


def _events_lines(batch: dict[str, Any]) -> str:
    lines = []
    for event in batch["events"]:
        where = f"  {','.join(event['pools'])}" if event.get("pools") else ""
        op = f" op {event['batch_op']}" if "batch_op" in event else ""
        if event.get("kind") == "contract":  # what contract code emitted
            topic = event["topic"] if event.get("topic") is not None else event["topic_hex"]
            lines.append(f"height {fmt.height(event['height'])}  contract {event['contract']}  {topic}  "
                         f"data {event['data']}  tx {event['tx']}")
            continue
        target = f"  {event['contract']}" if event.get("contract") else ""
        lines.append(f"height {fmt.height(event['height'])}  {event['kind']}{where}{target}  from {event['sender']}  "
                     f"tx {event['tx']}{op}")
    return "\n".join(lines)


@watch.command("heads")
@rpc_option
@count_option
@json_option
@handle_errors
def heads(rpc: str, count: int | None, as_json: bool) -> None:
    """Each block the node commits."""
    _follow(rpc, "newHeads", None, count, as_json, _head_line)


@watch.command("tx")
@click.argument("tx_hash", metavar="HASH")
@rpc_option
@json_option
@handle_errors
def tx(tx_hash: str, rpc: str, as_json: bool) -> None:
    """One transaction's status until it is final (exits then; status 1 if it failed)."""
    final: dict[str, Any] = {}

    def done(record: Any) -> bool:
        if record.get("final"):
            final.update(record)
            return True
        return False

    _follow(rpc, "tx", {"hash": tx_hash}, None, as_json, _tx_line, until=done)
    if final and final.get("status") != "ok":
        raise SystemExit(1)


@watch.command("events")
@click.option("--address", default=None, help="Only events of this qnx1... address (as sender or receiver).")
@click.option("--pool", default=None, help='Only events of this pool ("AAA/BBB").')
@click.option("--kind", "kinds", multiple=True,
              help="Only these kinds (repeatable): transfer, swap, pool_add, ..., contract_call, contract (what "
                   "contract code emitted)")
@click.option("--contract", default=None, help="Only events of this contract (qnx1...): calls, its deploy, what it emitted.")
@rpc_option
@count_option
@json_option
@handle_errors
def events(address: str | None, pool: str | None, kinds: tuple[str, ...], contract: str | None, rpc: str,
           count: int | None, as_json: bool) -> None:
    """Events of committed blocks (successful transfers, swaps, liquidity, rewards, token operations, contract
    transactions and the events contract code emitted)."""
    flt: dict[str, Any] = {}
    if address:
        flt["address"] = address
    if pool:
        flt["pool"] = pool
    if contract:
        flt["contract"] = contract
    if kinds:
        flt["kinds"] = list(kinds)
    _follow(rpc, "events", flt or None, count, as_json, _events_lines)


@watch.command("pending")
@rpc_option
@count_option
@json_option
@handle_errors
def pending(rpc: str, count: int | None, as_json: bool) -> None:
    """Hashes of transactions newly admitted to the node's mempool."""
    _follow(rpc, "pendingTransactions", None, count, as_json,
            lambda batch: "\n".join(batch["hashes"]) + (f"\n({batch['dropped']} more not listed)"
                                                       if batch.get("dropped") else ""))
