"""Per-account on-chain history, kept incrementally one committed block at a time.

The risk features (node.risk.features) read only this summary and the
transaction being scored, so scoring never scans blocks.  ``observe`` is
called once per committed transaction, in block order; the same class
replays the synthetic histories of node.risk.synth, so training and the
node compute features from one code path.

Memory is bounded per account: fixed-length deques of recent heights and
amounts, and counterparty maps trimmed to the most recent entries.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

RECENT = 32  # recent outgoing transactions kept per account
MAX_COUNTERPARTIES = 256
FEE_WINDOW = 512


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


@dataclass(slots=True)
class AccountHistory:
    first_height: int
    sent: int = 0
    log_sum: float = 0.0
    log_sq: float = 0.0
    amount_sum: float = 0.0
    sent_heights: deque[int] = field(default_factory=lambda: deque(maxlen=RECENT))
    sent_recent: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=RECENT))
    received: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=RECENT))
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

    def get(self, address: bytes) -> AccountHistory | None:
        return self.accounts.get(address)

    def _account(self, address: bytes, height: int) -> AccountHistory:
        acc = self.accounts.get(address)
        if acc is None:
            acc = self.accounts[address] = AccountHistory(first_height=height)
        return acc

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
