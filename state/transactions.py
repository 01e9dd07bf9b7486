"""Transactions, signed transactions and receipts.

``Transaction`` is ``[version, chain_id, kind, sender_pubkey, nonce, fee,
payload]``; its ``kind`` fixes the payload's layout (``state.payloads``).
``SignedTransaction`` is ``[tx, signature]``, signed over a domain-separated
digest of the transaction's canonical bytes.  ``Receipt`` is the outcome of an
included transaction.  Top-level structs lead with a version int.

Objects validate their fields on construction, so no invalid Transaction
exists past the decoding boundary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from state.codec import decode, encode, pack_decoded
from state.crypto import (
    ADDRESS_LEN,
    DOMAIN_TX,
    HASH_LEN,
    PUBKEY_LEN,
    SIGNATURE_LEN,
    Address,
    Hash,
    PrivateKey,
    address_of,
    domain_digest,
    sha256,
    verify,
)
from state.errors import InvalidKey, MalformedBlock, MalformedTransaction, TxTooLarge
from state.payloads import (
    MAX_UINT64,
    PAYLOAD_TYPES,
    Payload,
    TxKind,
    check_bytes,
    check_chain_id,
    check_tx_kind,
    check_uint,
    is_int,
    wire_array,
)

__all__ = [
    "TX_VERSION",
    "RECEIPT_VERSION",
    "MAX_TX_BYTES_LIMIT",
    "MAX_REASON_LEN",
    "Transaction",
    "SignedTransaction",
    "Receipt",
    "ReceiptStatus",
    "Event",
]

TX_VERSION = 1
RECEIPT_VERSION = 1
RECEIPT_VERSION_EVENTS = 2  # version 1's fields, then the events and the output (contract transactions)
MAX_EVENTS = 32
MAX_EVENT_TOPIC = 32
MAX_EVENT_DATA = 1024
MAX_OUTPUT_BYTES = 8 * 1024

MAX_REASON_LEN = 512
# Hard ceiling for a single encoded transaction, whatever the chain params say.
MAX_TX_BYTES_LIMIT = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Transaction:
    chain_id: str
    kind: TxKind
    sender_pubkey: bytes
    nonce: int
    fee: int
    payload: Payload
    _sender: Address = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_chain_id(self.chain_id)
        kind = check_tx_kind(self.kind)
        object.__setattr__(self, "kind", kind)
        check_bytes("sender_pubkey", self.sender_pubkey, PUBKEY_LEN)
        check_uint("nonce", self.nonce, 0, MAX_UINT64)
        check_uint("fee", self.fee)
        expected = PAYLOAD_TYPES[kind]
        if type(self.payload) is not expected:
            raise MalformedTransaction(
                f"kind {kind.name} needs a {expected.__name__} payload, got {type(self.payload).__name__}",
                field="payload",
                value=type(self.payload).__name__,
            )
        object.__setattr__(self, "_sender", address_of(self.sender_pubkey))

    @property
    def sender(self) -> Address:
        return self._sender

    def to_wire(self) -> list[Any]:
        return [
            TX_VERSION,
            self.chain_id,
            int(self.kind),
            self.sender_pubkey,
            self.nonce,
            self.fee,
            self.payload.to_wire(),
        ]

    @classmethod
    def from_wire(cls, wire: object) -> "Transaction":
        version, chain_id, kind, sender_pubkey, nonce, fee, payload = wire_array("transaction", wire, 7)
        if version != TX_VERSION or not is_int(version):
            raise MalformedTransaction(f"unsupported transaction version {version!r}", field="version", value=version)
        kind = check_tx_kind(kind)
        return cls(chain_id, kind, sender_pubkey, nonce, fee, PAYLOAD_TYPES[kind].from_wire(payload))

    def signing_digest(self) -> Hash:
        return domain_digest(DOMAIN_TX, encode(self.to_wire()))

    def sign(self, key: PrivateKey) -> "SignedTransaction":
        if key.public_key != self.sender_pubkey:
            raise InvalidKey("the signing key does not match the transaction's sender_pubkey")
        return SignedTransaction(self, key.sign(self.signing_digest()))


class _Generations:
    """The most recent entries of a map, bounded: two generations, each of at most ``count`` entries and
    (when ``weight`` is given) that much of their weights; when the recent one is full it becomes the
    older one, and the older one is dropped.

    Used by the p2p thread and the loop alike without a lock: every operation is one dict operation
    or attribute assignment, atomic in CPython; a race can drop an entry or let a generation run a few
    entries over, never return a wrong one.
    """

    def __init__(self, count: int, weight: int | None = None) -> None:
        self._count = count
        self._weight = weight
        self._recent: dict[bytes, Any] = {}
        self._recent_weight = 0
        self._older: dict[bytes, Any] = {}

    def get(self, key: bytes) -> Any:
        hit = self._recent.get(key)
        return hit if hit is not None else self._older.get(key)

    def put(self, key: bytes, value: Any, weight: int = 0) -> None:
        if len(self._recent) >= self._count or (
                self._weight is not None and self._recent_weight + weight > self._weight):
            self._older, self._recent, self._recent_weight = self._recent, {}, 0  # recent becomes older
        self._recent[key] = value
        self._recent_weight += weight

    def __len__(self) -> int:
        return len(self._recent) + len(self._older)

    def clear(self) -> None:
        self._recent, self._older, self._recent_weight = {}, {}, 0


# Hashes of transactions whose signature verified: two generations of 32,768 (about 7 MiB at most).
# A verdict must outlive the transaction's wait in the mempool (node.config: 10,000 pending and 5,000
# queued at most) until its block executes; at 200,000 per generation the set alone grew a loaded node
# by about 40 MiB over ten minutes.
_VERIFIED = _Generations(count=32_768)

# Signed transactions by their canonical bytes.  A node decodes each transaction's bytes in the p2p
# thread's gossip check, again in admission, and its block's wire again when it validates the block
# (each a canonical decode, the payload's checks, a re-encode and a hash: 20-40 µs).  The same
# canonical bytes always decode to the same transaction, which is immutable, so the first object is
# shared.  Only standalone decodes add (gossip, RPC: bounded by ``max_tx_bytes``); a block, perhaps a
# sync peer's not yet certified, only looks up, so it cannot fill the cache.  Two generations of 4,096
# transactions and 2 MiB of their bytes: two to four seconds of transfers at 2,000/s, gossip to
# commit; at most 8,192 objects, about 12 MiB for transfers, and about 4 MiB of bytes (some 10 MiB of
# objects) whatever their size.
DECODED = _Generations(count=4_096, weight=2 * 1024 * 1024)


@dataclass(frozen=True, slots=True)
class SignedTransaction:
    tx: Transaction
    signature: bytes
    _encoded: bytes = field(init=False, repr=False, compare=False)
    _hash: Hash = field(init=False, repr=False, compare=False)
    _sig_ok: list[bool] = field(init=False, repr=False, compare=False)  # one-slot cache

    def __post_init__(self) -> None:
        if not isinstance(self.tx, Transaction):
            raise MalformedTransaction(f"tx must be a Transaction, got {type(self.tx).__name__}", field="tx")
        check_bytes("signature", self.signature, SIGNATURE_LEN)
        encoded = encode([self.tx.to_wire(), self.signature])
        object.__setattr__(self, "_encoded", encoded)
        object.__setattr__(self, "_hash", sha256(encoded))
        object.__setattr__(self, "_sig_ok", [])

    def to_wire(self) -> list[Any]:
        return [self.tx.to_wire(), self.signature]

    @classmethod
    def from_wire(cls, wire: object) -> "SignedTransaction":
        tx_wire, signature = wire_array("signed transaction", wire, 2)
        return cls(Transaction.from_wire(tx_wire), signature)

    @classmethod
    def from_decoded(cls, wire: object) -> "SignedTransaction":
        """``from_wire`` of a part of a value ``decode`` returned (a block's transaction): the shared
        object when these exact bytes were decoded on their own before (state.codec.pack_decoded gives
        them), else a new one, not cached."""
        if isinstance(wire, list):
            hit = DECODED.get(pack_decoded(wire))
            if hit is not None:
                return hit
        return cls.from_wire(wire)  # not added: the block may not be certified yet (a sync peer's)

    def encode(self) -> bytes:
        return self._encoded

    @property
    def size(self) -> int:
        return len(self._encoded)

    @property
    def hash(self) -> Hash:
        return self._hash

    def verify_signature(self) -> bool:
        """Ed25519 check of the signature over ``tx.signing_digest()``.

        Cached per object and, for valid signatures, process-wide by tx hash:
        the hash covers the body and the signature, so a hit means the very
        same bytes verified before (in the mempool, usually) and the answer
        cannot differ.  This is what keeps a validator from verifying every
        transaction twice.
        """
        if not self._sig_ok:
            ok = _VERIFIED.get(self._hash) is not None or verify(self.tx.sender_pubkey, self.tx.signing_digest(),
                                                                 self.signature)
            if ok:
                _VERIFIED.put(self._hash, True)
            self._sig_ok.append(ok)
        return self._sig_ok[0]

    @classmethod
    def decode(cls, data: bytes, *, max_bytes: int = MAX_TX_BYTES_LIMIT) -> "SignedTransaction":
        """Decode untrusted bytes; raises TxTooLarge, DecodeError or a MalformedTransaction subclass."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise MalformedTransaction(f"expected bytes, got {type(data).__name__}")
        if len(data) > max_bytes:
            raise TxTooLarge(len(data), max_bytes)
        raw = bytes(data)
        hit: SignedTransaction | None = DECODED.get(raw)
        if hit is not None:
            return hit
        stx = cls.from_wire(decode(raw, max_bytes=max_bytes))
        DECODED.put(stx.encode(), stx, stx.size)
        return stx


# -- receipts ---------------------------------------------------------------------


class ReceiptStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"


_STATUS_TO_WIRE = {ReceiptStatus.OK: 1, ReceiptStatus.FAILED: 0}
_STATUS_FROM_WIRE = {v: k for k, v in _STATUS_TO_WIRE.items()}


@dataclass(frozen=True, slots=True)
class Event:
    """What a contract emitted: its address, a topic (1-32 bytes) and data (at most 1 KiB)."""

    contract: bytes
    topic: bytes
    data: bytes

    def __post_init__(self) -> None:
        try:
            check_bytes("event contract", self.contract, ADDRESS_LEN)
            if not isinstance(self.topic, bytes) or not 1 <= len(self.topic) <= MAX_EVENT_TOPIC:
                raise MalformedTransaction(f"event topic must be 1-{MAX_EVENT_TOPIC} bytes")
            if not isinstance(self.data, bytes) or len(self.data) > MAX_EVENT_DATA:
                raise MalformedTransaction(f"event data must be at most {MAX_EVENT_DATA} bytes")
        except MalformedTransaction as exc:
            raise MalformedBlock(f"receipt {exc}") from None

    def to_wire(self) -> list[Any]:
        return [self.contract, self.topic, self.data]


@dataclass(frozen=True, slots=True)
class Receipt:
    """Outcome of an included transaction.  ``reason`` is ``""`` when ok, else ``"<code>: <detail>"``.

    A contract transaction's receipt also carries the events it emitted and its output (canonical
    msgpack; empty if none); a receipt with neither keeps version 1's encoding."""

    tx_hash: Hash
    height: int
    index: int
    status: ReceiptStatus
    reason: str
    gas_used: int
    fee: int
    events: tuple[Event, ...] = ()
    output: bytes = b""

    def __post_init__(self) -> None:
        try:
            check_bytes("tx_hash", self.tx_hash, HASH_LEN)
            check_uint("height", self.height, 1, MAX_UINT64)
            check_uint("index", self.index, 0, MAX_UINT64)
            check_uint("gas_used", self.gas_used, 0, MAX_UINT64)
            check_uint("fee", self.fee)
            if not isinstance(self.reason, str) or len(self.reason) > MAX_REASON_LEN:
                raise MalformedTransaction(f"reason must be text of at most {MAX_REASON_LEN} characters")
            object.__setattr__(self, "status", ReceiptStatus(self.status))
            if not isinstance(self.events, (list, tuple)) or len(self.events) > MAX_EVENTS:
                raise MalformedTransaction(f"events must be at most {MAX_EVENTS}")
            if not all(isinstance(e, Event) for e in self.events):
                raise MalformedTransaction("events must be Event records")
            object.__setattr__(self, "events", tuple(self.events))
            if not isinstance(self.output, bytes) or len(self.output) > MAX_OUTPUT_BYTES:
                raise MalformedTransaction(f"output must be at most {MAX_OUTPUT_BYTES} bytes")
        except (MalformedTransaction, ValueError) as exc:
            raise MalformedBlock(f"receipt {exc}") from None

    @property
    def ok(self) -> bool:
        return self.status is ReceiptStatus.OK

    def to_wire(self) -> list[Any]:
        wire = [
            RECEIPT_VERSION,
            self.tx_hash,
            self.height,
            self.index,
            _STATUS_TO_WIRE[self.status],
            self.reason,
            self.gas_used,
            self.fee,
        ]
        if not self.events and not self.output:
            return wire
        return [RECEIPT_VERSION_EVENTS, *wire[1:], [e.to_wire() for e in self.events], self.output]

    @classmethod
    def from_wire(cls, wire: object) -> "Receipt":
        events: tuple[Event, ...] = ()
        output = b""
        if isinstance(wire, list) and len(wire) == 10 and wire[0] == RECEIPT_VERSION_EVENTS:
            events_wire, output = wire[8], wire[9]
            if not isinstance(events_wire, list) or len(events_wire) > MAX_EVENTS:
                raise MalformedBlock(f"receipt events must be an array of at most {MAX_EVENTS}")
            events = tuple(Event(*wire_array("event", e, 3, MalformedBlock)) for e in events_wire)
            if not events and not output:
                raise MalformedBlock("a version-2 receipt carries events or output")
            wire = [RECEIPT_VERSION, *wire[1:8]]
        version, tx_hash, height, index, status, reason, gas_used, fee = wire_array("receipt", wire, 8, MalformedBlock)
        if version != RECEIPT_VERSION or not is_int(version):
            raise MalformedBlock(f"unsupported receipt version {version!r}")
        if not is_int(status) or status not in _STATUS_FROM_WIRE:
            raise MalformedBlock(f"unknown receipt status {status!r}")
        return cls(tx_hash, height, index, _STATUS_FROM_WIRE[status], reason, gas_used, fee, events, output)

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> "Receipt":
        return cls.from_wire(decode(data, max_bytes=64 * 1024))
