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
``node.risk.history_db`` flush.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

RECENT = 32  # recent outgoing transactions kept per account
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
    # The receiver holds a balance or has sent on chain (committed state):
    # a never-seen address is unfunded.  Scoring only; observe ignores it.
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
    sent_heights: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT))
    sent_recent: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=RECENT))
    received: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=RECENT))
    # 1 for each recent send whose receiver this account had never paid before
    new_flags: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT))
    # counterparty -> last height we sent to it / received from it
    sent_to: dict[bytes, int] = field(default_factory=dict)
    received_from: dict[bytes, int] = field(default_factory=dict)
    trades: dict[str, int] = field(default_factory=dict)  # swap "pool:direction" -> last height

    @property
    def last_sent(self) -> int | None:
        return self.sent_heights[-1] if self.sent_heights else None


def _remember(table: dict[bytes, int] | dict[str, int], key: object, height: int) -> None:
    table.pop(key, None)  # type: ignore[call-overload]
    table[key] = height  # type: ignore[index]
    if len(table) > MAX_COUNTERPARTIES:
        del table[next(iter(table))]  # oldest insertion: least recently touched


class HistoryStore:
    """Every account's history plus chain-wide fee statistics."""

    def __init__(self) -> None:
        self.accounts: dict[bytes, AccountHistory] = {}
        self.fees: deque[float] = deque(maxlen=FEE_WINDOW)
        self.height = 0
        self._fee_median: float | None = None
        self.dirty: set[bytes] = set()
        self.evicted: set[bytes] = set()
        self.max_accounts = MAX_ACCOUNTS

    def get(self, address: bytes) -> AccountHistory | None:
        return self.accounts.get(address)

    def _account(self, address: bytes, height: int) -> AccountHistory:
        acc = self.accounts.get(address)
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
        s.sent_recent.append((ev.height, ev.amount))
        _remember(s.sent_to, ev.receiver, ev.height)
        r.received.append((ev.height, ev.amount))
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


def account_to_wire(a: AccountHistory) -> list[object]:
    return [
        a.first_height, a.sent, a.log_sum, a.log_sq, a.amount_sum, a.max_amount, a.last_active, a.block_sends,
        a.peak_block_sends, list(a.sent_heights), [x for pair in a.sent_recent for x in pair],
        [x for pair in a.received for x in pair], list(a.new_flags),
        [x for kv in a.sent_to.items() for x in kv], [x for kv in a.received_from.items() for x in kv],
        [x for kv in a.trades.items() for x in kv],
    ]


def account_from_wire(w: list[object]) -> AccountHistory:
    """The inverse of account_to_wire; raises ValueError/TypeError on anything else."""
    if not isinstance(w, list) or len(w) != 16:
        raise ValueError(f"an account history is a 16-item array, got {type(w).__name__}")
    ints = w[:2] + w[6:9]
    floats = w[2:6]
    if not all(type(v) is int for v in ints) or not all(isinstance(v, (int, float)) for v in floats):
        raise ValueError("account history scalars have the wrong types")

    def pairs(flat: object) -> list[tuple[object, object]]:
        if not isinstance(flat, list) or len(flat) % 2:
            raise ValueError("a pair list has an odd length")
        return list(zip(flat[0::2], flat[1::2]))

    a = AccountHistory(first_height=w[0], sent=w[1], log_sum=float(w[2]), log_sq=float(w[3]),  # type: ignore[arg-type]
                       amount_sum=float(w[4]), max_amount=float(w[5]), last_active=w[6], block_sends=w[7],  # type: ignore[arg-type]
                       peak_block_sends=w[8])  # type: ignore[arg-type]
    a.sent_heights.extend(int(h) for h in w[9])  # type: ignore[union-attr]
    a.sent_recent.extend((int(h), float(x)) for h, x in pairs(w[10]))  # type: ignore[arg-type]
    a.received.extend((int(h), float(x)) for h, x in pairs(w[11]))  # type: ignore[arg-type]
    a.new_flags.extend(int(v) for v in w[12])  # type: ignore[union-attr]
    for target, flat, key_type in ((a.sent_to, w[13], bytes), (a.received_from, w[14], bytes), (a.trades, w[15], str)):
        for k, v in pairs(flat):
            if type(k) is not key_type or type(v) is not int:
                raise ValueError("a counterparty entry has the wrong types")
            target[k] = v  # type: ignore[index]
    return a
