"""Per-account on-chain history, kept incrementally one committed block at a time.

The risk features (node.risk.features) read only this summary and the
transaction being scored, so scoring never scans blocks.  ``observe`` is
called once per committed transaction, in block order; the same class
replays the synthetic histories of node.risk.synth, so training and the
node compute features from one code path.

Memory is bounded per account (fixed-length deques of recent heights and
amounts, counterparty maps trimmed to the most recent entries) and in
accounts: past ``MAX_ACCOUNTS`` the least recently active tenth is
forgotten.  ``dirty`` and ``evicted`` say what changed since the last
``node.risk.history_db`` flush.  An account loaded from disk stays a
``StoredAccount`` (its last activity and its encoded record) until it is
first read or written, so a start-up with 50,000 accounts decodes none of
them; a record that turns out to be damaged then is dropped (logged), and
that account starts again with no history.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

RECENT = 32  # recent outgoing transactions kept per account
FRESH_RECENT = 8  # recent sends to receivers that had no history, kept per account (with the receiver)
MAX_COUNTERPARTIES = 256
FEE_WINDOW = 512
MAX_ACCOUNTS = 50_000


@dataclass(frozen=True, slots=True)
class TxEvent:
    """What the risk hook knows of one transaction, chain types stripped.

    ``amount`` and ``fee`` are in whole token units (floats: features only);
    ``receiver`` is the pool account for swaps; ``pool_impact`` is the
    fraction of the input-side reserve a swap takes (0 when unknown).
    """

    sender: bytes
    receiver: bytes
    token: str
    amount: float
    fee: float
    height: int
    is_swap: bool = False
    reverse_key: str = ""  # swaps: "pool:direction" of the opposite trade
    trade_key: str = ""  # swaps: "pool:direction" of this trade
    pool_impact: float = 0.0
    # The receiver holds a balance or has sent on chain (committed state
    # before this transaction's block): a never-seen address is unfunded.
    # observe records a send to a receiver with neither history nor an
    # account as a send to a fresh address (AccountHistory.fresh_sent).
    receiver_funded: bool = False


@dataclass(slots=True)
class AccountHistory:
    first_height: int
    sent: int = 0
    log_sum: float = 0.0
    log_sq: float = 0.0
    amount_sum: float = 0.0
    max_amount: float = 0.0
    last_active: int = 0  # last height it sent or received
    block_sends: int = 0  # sends in the block of its last send
    peak_block_sends: int = 0  # the most sends it ever made in one block
    # The recent sends, one entry per send in each of these four (aligned, oldest first), and the
    # recent receipts in two: parallel deques, so features sum a window with bisect and islice.
    sent_heights: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT))
    sent_amounts: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    sent_tokens: deque[str] = field(default_factory=lambda: deque(maxlen=RECENT))
    # 1 for each recent send whose receiver this account had never paid before
    new_flags: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT))
    received_heights: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT))
    received_amounts: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT))
    # (height, receiver) of recent sends to a receiver with no history and no account at the time: a fresh address
    fresh_sent: deque[tuple[int, bytes]] = field(default_factory=lambda: deque(maxlen=FRESH_RECENT))
    # counterparty -> last height we sent to it / received from it
    sent_to: dict[bytes, int] = field(default_factory=dict)
    received_from: dict[bytes, int] = field(default_factory=dict)
    trades: dict[str, int] = field(default_factory=dict)  # swap "pool:direction" -> last height
    # node.risk.features' count of recent counterparties, per table: (since, size, newest entry, count),
    # cleared by HistoryStore.observe whenever it changes a table.  Not history (never saved): a
    # receiver paid by thousands of senders a block is counted once per block, not per transaction.
    distinct_memo: dict[str, tuple[int, int, object, int]] = field(default_factory=dict, repr=False, compare=False)

    @property
    def last_sent(self) -> int | None:
        return self.sent_heights[-1] if self.sent_heights else None


def _remember(table: dict[bytes, int] | dict[str, int], key: object, height: int) -> None:
    table.pop(key, None)  # type: ignore[call-overload]
    table[key] = height  # type: ignore[index]
    if len(table) > MAX_COUNTERPARTIES:
        del table[next(iter(table))]  # oldest insertion: least recently touched


log = logging.getLogger("qenex.risk")


class StoredAccount:
    """An account as loaded from disk: its last activity (eviction order) and its record, decoded on first use."""

    __slots__ = ("last_active", "record")

    def __init__(self, last_active: int, record: bytes) -> None:
        self.last_active = last_active
        self.record = record


class HistoryStore:
    """Every account's history plus chain-wide fee statistics."""

    def __init__(self) -> None:
        self.accounts: dict[bytes, AccountHistory | StoredAccount] = {}
        self.fees: deque[float] = deque(maxlen=FEE_WINDOW)
        self.height = 0
        self._fee_median: float | None = None
        self.dirty: set[bytes] = set()
        self.evicted: set[bytes] = set()
        self.max_accounts = MAX_ACCOUNTS

    def get(self, address: bytes) -> AccountHistory | None:
        acc = self.accounts.get(address)
        if acc.__class__ is StoredAccount:
            return self._decode(address, acc)  # type: ignore[arg-type]
        return acc  # type: ignore[return-value]

    def _decode(self, address: bytes, stored: StoredAccount) -> AccountHistory | None:
        import msgpack

        try:
            acc = account_from_wire(msgpack.unpackb(stored.record, raw=False))
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            log.warning("risk history record of 0x%s is damaged (%s): that account starts again", address.hex(), exc)
            del self.accounts[address]
            self.evicted.add(address)  # the next flush deletes the record
            return None
        self.accounts[address] = acc  # same key: its place in the recency order stays
        return acc

    def _account(self, address: bytes, height: int) -> AccountHistory:
        acc = self.get(address)
        if acc is None:
            acc = self.accounts[address] = AccountHistory(first_height=height)
            self.evicted.discard(address)
        self.dirty.add(address)
        return acc

    def evict_if_full(self) -> None:
        """Forget the least recently active tenth of the accounts once there are more than ``max_accounts``."""
        if len(self.accounts) <= self.max_accounts:
            return
        n = len(self.accounts) - self.max_accounts + self.max_accounts // 10
        for address, _ in sorted(self.accounts.items(), key=lambda kv: (kv[1].last_active, kv[0]))[:n]:
            del self.accounts[address]
            self.dirty.discard(address)
            self.evicted.add(address)

    def fee_median(self) -> float:
        if self._fee_median is None:
            ordered = sorted(self.fees)
            self._fee_median = ordered[len(ordered) // 2] if ordered else 0.0
        return self._fee_median

    def observe(self, ev: TxEvent) -> None:
        """Fold one committed transaction into the history."""
        self.height = max(self.height, ev.height)
        fresh = ev.receiver not in self.accounts and not ev.receiver_funded and not ev.is_swap
        s = self._account(ev.sender, ev.height)
        r = self._account(ev.receiver, ev.height)
        s.sent += 1
        la = math.log10(1.0 + ev.amount)
        s.log_sum += la
        s.log_sq += la * la
        s.amount_sum += ev.amount
        if ev.amount > s.max_amount:
            s.max_amount = ev.amount
        s.new_flags.append(0 if ev.receiver in s.sent_to else 1)
        s.block_sends = s.block_sends + 1 if s.sent_heights and s.sent_heights[-1] == ev.height else 1
        if s.block_sends > s.peak_block_sends:
            s.peak_block_sends = s.block_sends
        s.last_active = r.last_active = ev.height
        s.sent_heights.append(ev.height)
        s.sent_amounts.append(ev.amount)
        s.sent_tokens.append(ev.token)
        if fresh:
            s.fresh_sent.append((ev.height, ev.receiver))
        _remember(s.sent_to, ev.receiver, ev.height)
        s.distinct_memo.clear()  # the counts node.risk.features memoised for these tables are stale
        r.distinct_memo.clear()
        r.received_heights.append(ev.height)
        r.received_amounts.append(ev.amount)
        _remember(r.received_from, ev.sender, ev.height)
        if ev.trade_key:
            _remember(s.trades, ev.trade_key, ev.height)
        self.fees.append(ev.fee)
        self._fee_median = None

    def touch_height(self, height: int) -> None:
        """A committed block (possibly empty) moves the clock forward."""
        self.height = max(self.height, height)
        self.evict_if_full()


# -- persistence (node.risk.history_db): one account as a msgpack array -----------


WIRE_ITEMS = 19


def account_to_wire(a: AccountHistory) -> list[object]:
    return [
        a.first_height, a.sent, a.log_sum, a.log_sq, a.amount_sum, a.max_amount, a.last_active, a.block_sends,
        a.peak_block_sends, list(a.sent_heights), list(a.sent_amounts), list(a.sent_tokens), list(a.new_flags),
        list(a.received_heights), list(a.received_amounts),
        [x for kv in a.sent_to.items() for x in kv], [x for kv in a.received_from.items() for x in kv],
        [x for kv in a.trades.items() for x in kv], [x for pair in a.fresh_sent for x in pair],
    ]


_INT, _NUM, _STR, _BYTES = frozenset({int}), frozenset({int, float}), frozenset({str}), frozenset({bytes})


def _typed(values: object, types: frozenset[type], what: str) -> list[Any]:
    """``values`` if it is a list of exactly those types (checked in C: start-up loads 50,000 of these)."""
    if not isinstance(values, list) or not set(map(type, values)) <= types:
        raise ValueError(f"account history {what} are not a list of {'/'.join(t.__name__ for t in types)}")
    return values


def _table(flat: object, key_types: frozenset[type], what: str) -> dict[Any, int]:
    if not isinstance(flat, list) or len(flat) % 2:
        raise ValueError(f"account history {what} are not a flat list of pairs")
    return dict(zip(_typed(flat[0::2], key_types, what), _typed(flat[1::2], _INT, what)))


def account_from_wire(w: list[object]) -> AccountHistory:
    """The inverse of account_to_wire; raises ValueError/TypeError on anything else."""
    if not isinstance(w, list) or len(w) != WIRE_ITEMS:
        raise ValueError(f"an account history is a {WIRE_ITEMS}-item array, got "
                         f"{f'{len(w)} items' if isinstance(w, list) else type(w).__name__}")
    ints = w[:2] + w[6:9]
    floats = w[2:6]
    if not all(type(v) is int for v in ints) or not all(isinstance(v, (int, float)) for v in floats):
        raise ValueError("account history scalars have the wrong types")
    a = AccountHistory(first_height=w[0], sent=w[1], log_sum=float(w[2]), log_sq=float(w[3]),  # type: ignore[arg-type]
                       amount_sum=float(w[4]), max_amount=float(w[5]),  # type: ignore[arg-type]
                       last_active=w[6], block_sends=w[7], peak_block_sends=w[8])  # type: ignore[arg-type]
    sends = [_typed(w[9], _INT, "send heights"), _typed(w[10], _NUM, "send amounts"),
             _typed(w[11], _STR, "send tokens"), _typed(w[12], _INT, "new-receiver flags")]
    receipts = [_typed(w[13], _INT, "receipt heights"), _typed(w[14], _NUM, "receipt amounts")]
    if len({len(v) for v in sends}) != 1 or len({len(v) for v in receipts}) != 1:
        raise ValueError("the recent sends' (or receipts') parallel lists differ in length")
    a.sent_heights.extend(sends[0])
    a.sent_amounts.extend(map(float, sends[1]))
    a.sent_tokens.extend(sends[2])
    a.new_flags.extend(sends[3])
    a.received_heights.extend(receipts[0])
    a.received_amounts.extend(map(float, receipts[1]))
    a.sent_to = _table(w[15], _BYTES, "receivers")
    a.received_from = _table(w[16], _BYTES, "senders")
    a.trades = _table(w[17], _STR, "trades")
    fresh = w[18]
    if not isinstance(fresh, list) or len(fresh) % 2:
        raise ValueError("account history fresh receivers are not a flat list of pairs")
    a.fresh_sent.extend(zip(_typed(fresh[0::2], _INT, "fresh heights"), _typed(fresh[1::2], _BYTES, "fresh receivers")))
    return a
