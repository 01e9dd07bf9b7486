"""Chain events, as the ``events`` subscription shows them: derived from a
committed block's successful transactions (a failed one changed nothing).

There is no event log in receipts yet, so an event says what a transaction
asked for and that it succeeded (its payload); what execution computed (a
swap's amount out, the shares a deposit minted) is not in it.  One event per
transaction, one per operation of an atomic batch.  Contract
events join this list once contracts exist.

A pure function of the block and its receipts: the WebSocket hub may run it
in a worker thread.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from node.rpc import payload_to_json
from node.rpc_params import hex0x
from state.blocks import Block
from state.crypto import address_to_text
from state.payloads import BATCH_OP_TYPES, Batch, TxKind, pool_id
from state.transactions import Receipt

# What a filter's ``kinds`` may name: every tx kind and batch operation, lower case.
EVENT_KINDS: frozenset[str] = frozenset(
    {k.name.lower() for k in TxKind if k is not TxKind.BATCH} | {k.name.lower() for k in BATCH_OP_TYPES}
)
_OP_KINDS: dict[type, str] = {cls: kind.name.lower() for kind, cls in BATCH_OP_TYPES.items()}


class Event:
    """One event and what filters match it on (raw bytes and ids, cheap); ``json`` is its rendering,
    made on first use and kept: a block of a thousand transfers costs a thousand renderings only
    if some filter selects them all (bech32 text and JSON cost tens of microseconds each)."""

    __slots__ = ("kind", "addresses", "pools", "_body", "_json")

    def __init__(self, kind: str, addresses: frozenset[bytes], pools: frozenset[str],
                 body: "Callable[[], dict[str, Any]] | str") -> None:
        self.kind, self.addresses, self.pools = kind, addresses, pools
        self._body = body
        self._json: str | None = body if isinstance(body, str) else None

    @property
    def json(self) -> str:
        if self._json is None:
            assert callable(self._body)
            self._json = json.dumps(self._body(), separators=(",", ":"))
        return self._json


def _pools(op: Any) -> list[str]:
    """The pools an operation touches: every hop of a swap's path, or the pair's pool."""
    path = getattr(op, "path", None)
    if path is not None:
        return [pool_id(a, b) for a, b in zip(path, path[1:])]
    pool = getattr(op, "pool", None)
    return [pool] if isinstance(pool, str) else []


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _addresses(op: Any) -> set[bytes]:
    names = _FIELD_NAMES.get(type(op))
    if names is None:
        names = _FIELD_NAMES[type(op)] = tuple(f.name for f in dataclasses.fields(op))
    return {v for name in names if isinstance(v := getattr(op, name), bytes) and len(v) == 20}


def _render(height: int, stx: Any, index: int, kind: str, pools: list[str], op: Any,
            op_index: int | None) -> "Callable[[], dict[str, Any]]":
    def body() -> dict[str, Any]:
        out = {"height": height, "tx": hex0x(stx.hash), "index": index, "sender": address_to_text(stx.tx.sender),
               "kind": kind, "pools": pools, "payload": payload_to_json(op)}
        if op_index is not None:
            out["batch_op"] = op_index
        return out
    return body


def block_events(block: Block, receipts: Sequence[Receipt]) -> list[Event]:
    """Every event of committed ``block`` whose ``receipts`` are in block order."""
    events: list[Event] = []
    height = block.header.height
    for index, (stx, receipt) in enumerate(zip(block.txs, receipts, strict=True)):
        if not receipt.ok:
            continue
        tx = stx.tx
        sender = tx.sender
        ops: Iterable[tuple[int | None, str, Any]]
        if isinstance(tx.payload, Batch):
            ops = ((i, _OP_KINDS[type(op)], op) for i, op in enumerate(tx.payload.ops))
        else:
            ops = ((None, tx.kind.name.lower(), tx.payload),)
        for op_index, kind, op in ops:
            pools = _pools(op)
            events.append(Event(kind, frozenset(_addresses(op) | {sender}), frozenset(pools),
                                _render(height, stx, index, kind, pools, op, op_index)))
    return events


@dataclass(frozen=True, slots=True)
class EventFilter:
    """``events`` filter: every given part must match (None: any)."""

    address: bytes | None = None
    pool: str | None = None
    kinds: frozenset[str] | None = None

    def matches(self, event: Event) -> bool:
        return ((self.address is None or self.address in event.addresses)
                and (self.pool is None or self.pool in event.pools)
                and (self.kinds is None or event.kind in self.kinds))

    @property
    def any(self) -> bool:
        return self.address is None and self.pool is None and self.kinds is None


def select(events: Sequence[Event], flt: EventFilter) -> list[Event]:
    return list(events) if flt.any else [e for e in events if flt.matches(e)]
