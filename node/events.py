"""Chain events, as the ``events`` subscription shows them: derived from a
committed block's successful transactions (a failed one changed nothing).

A transaction's event says what it asked for and that it succeeded (its
payload); what execution computed (a swap's amount out, the shares a deposit
minted) is not in it.  One event per transaction, one per operation of an
atomic batch.  A contract transaction's event also names its ``contract``
(a deploy's new address), and is followed by one event of kind ``contract``
per event the code emitted, in emission order: ``{contract, topic (text, or
null when not printable UTF-8), topic_hex, data, log_index}`` (from its
receipt, state.transactions.Event).  A filter's ``contract`` matches both
kinds by the contract's address; ``address`` matches a contract too.

A pure function of the block and its receipts: the WebSocket hub may run it
in a worker thread.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Sequence

from node.contract_values import event_to_json
from node.rpc import payload_to_json
from node.rpc_params import hex0x
from state.blocks import Block
from state.contracts import contract_address
from state.crypto import address_to_text
from state.payloads import BATCH_OP_TYPES, Batch, ContractCall, ContractDeploy, TxKind, pool_id
from state.transactions import Receipt

# What a filter's ``kinds`` may name: every tx kind and batch operation, lower case.
CONTRACT_EVENT = "contract"  # an event a contract emitted (one per receipt event)
EVENT_KINDS: frozenset[str] = frozenset(
    {k.name.lower() for k in TxKind if k is not TxKind.BATCH} | {k.name.lower() for k in BATCH_OP_TYPES}
    | {CONTRACT_EVENT}
)
_OP_KINDS: dict[type, str] = {cls: kind.name.lower() for kind, cls in BATCH_OP_TYPES.items()}


class Event:
    """One event and what filters match it on (raw bytes and ids, cheap); ``json`` is its rendering,
    made on first use and kept: a block of a thousand transfers costs a thousand renderings only
    if some filter selects them all (bech32 text and JSON cost tens of microseconds each)."""

    __slots__ = ("kind", "addresses", "pools", "contracts", "_body", "_json")

    def __init__(self, kind: str, addresses: frozenset[bytes], pools: frozenset[str],
                 body: "Callable[[], dict[str, Any]] | str", contracts: frozenset[bytes] = frozenset()) -> None:
        self.kind, self.addresses, self.pools, self.contracts = kind, addresses, pools, contracts
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
        # code and arguments are bytes that may be 20 long without being an address
        names = _FIELD_NAMES[type(op)] = tuple(f.name for f in dataclasses.fields(op)
                                               if f.name not in ("code", "init_args", "args"))
    return {v for name in names if isinstance(v := getattr(op, name), bytes) and len(v) == 20}


def _render(height: int, stx: Any, index: int, kind: str, pools: list[str], op: Any,
            op_index: int | None, contract: bytes | None) -> "Callable[[], dict[str, Any]]":
    def body() -> dict[str, Any]:
        out = {"height": height, "tx": hex0x(stx.hash), "index": index, "sender": address_to_text(stx.tx.sender),
               "kind": kind, "pools": pools, "payload": payload_to_json(op)}
        if op_index is not None:
            out["batch_op"] = op_index
        if contract is not None:
            out["contract"] = address_to_text(contract)
        return out
    return body


def _render_emitted(height: int, stx: Any, index: int, event: Any, log_index: int) -> "Callable[[], dict[str, Any]]":
    def body() -> dict[str, Any]:
        return {"height": height, "tx": hex0x(stx.hash), "index": index, "sender": address_to_text(stx.tx.sender),
                "kind": CONTRACT_EVENT, "pools": [], **event_to_json(event), "log_index": log_index}
    return body


def _target(tx: Any) -> bytes | None:
    """The contract a contract transaction deploys or calls; None for other kinds."""
    if isinstance(tx.payload, ContractCall):
        return bytes(tx.payload.contract)
    if isinstance(tx.payload, ContractDeploy):
        return bytes(contract_address(tx.sender, tx.nonce))
    return None


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
        target = _target(tx)
        contracts = frozenset() if target is None else frozenset({target})
        for op_index, kind, op in ops:
            pools = _pools(op)
            events.append(Event(kind, frozenset(_addresses(op) | {sender} | contracts), frozenset(pools),
                                _render(height, stx, index, kind, pools, op, op_index, target), contracts))
        for log_index, emitted in enumerate(receipt.events):
            emitter = frozenset({bytes(emitted.contract)})
            events.append(Event(CONTRACT_EVENT, emitter | {sender}, frozenset(),
                                _render_emitted(height, stx, index, emitted, log_index), emitter))
    return events


@dataclass(frozen=True, slots=True)
class EventFilter:
    """``events`` filter: every given part must match (None: any)."""

    address: bytes | None = None
    pool: str | None = None
    kinds: frozenset[str] | None = None
    contract: bytes | None = None

    def matches(self, event: Event) -> bool:
        return ((self.address is None or self.address in event.addresses)
                and (self.pool is None or self.pool in event.pools)
                and (self.kinds is None or event.kind in self.kinds)
                and (self.contract is None or self.contract in event.contracts))

    @property
    def any(self) -> bool:
        return self.address is None and self.pool is None and self.kinds is None and self.contract is None


def select(events: Sequence[Event], flt: EventFilter) -> list[Event]:
    return list(events) if flt.any else [e for e in events if flt.matches(e)]
