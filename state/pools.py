"""Constant-product pools as ledger state: records, operations, per-block oracle and rewards.

A pool's tokens sit in the balances of its *pool account*, an address
derived from the pool id that no key can sign for, and its record keeps
``reserve0``/``reserve1`` equal to those balances (transfers and mints to a
pool account are refused, so nothing else moves them).  Token supply is
therefore conserved by construction: every movement is a debit and a credit.

Every operation here runs on a Ledger over an Overlay; a failure raises an
ExecutionFailed subclass and the caller drops the overlay.  The math is
state.amm's.

The oracle follows Uniswap V2: a pool's cumulative prices advance only when
the pool is written, by ``price · dt`` (dt: milliseconds since the pool's
last update, price fixed point with 256 fractional bits, from the reserves
that held until now), so a block that touches no pool writes nothing for
them.  A block that changes a pool's reserves records one observation
``(height, time_ms, reserves, cumulatives)`` under ``o``: the block's time,
the cumulatives at that time and the reserves the block left, which hold
until the next observation.  Cumulative prices are linear between
observations, so the cumulative at any later block time ``t`` is
``cum_k + price(reserves_k) · (t − t_k)`` from the last observation ``k``
at or before it (state.pool_queries), and a TWAP over any window is exact.

Liquidity mining: once per block, before its transactions, ``begin_block``
visits only the pools with a non-zero reward rate (the ``r`` index, id
order), moves each one's rate (or what is left) of QNX from the rewards
reserve account to the rewards escrow account and raises its
reward-per-share index by ``paid·2^128 / shares``; a position's rewards are
``shares · Δindex / 2^128``, settled on every share change and on claim.
Only the reward authority (or genesis) gives a pool a rate, so this walk is
bounded by it, not by how many pools anyone creates.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from state import amm, keys
from state.amounts import QNX
from state.codec import encode
from state.crypto import Address, address_to_text, sha256
from state.errors import (
    DeadlineExpired,
    FlashLoanNotRepaid,
    InsufficientLiquidity,
    InsufficientShares,
    NoFlashLoan,
    NotRewardAuthority,
    PoolExists,
    PoolLocked,
    SlippageExceeded,
    StateInvariantBroken,
    UnknownPool,
    UnknownToken,
)
from state.ledger import Ledger, _stored

POOL_VERSION = 1
WIDE_BYTES = 64  # fixed-width storage of cumulative prices and the reward index
WIDE_MAX = 2 ** (8 * WIDE_BYTES) - 1


def _derived(label: bytes) -> Address:
    return Address(sha256(b"QENEX/" + label)[:20])


# QNX for liquidity mining is paid out of this account (fund it in genesis or by transfer) ...
REWARDS_RESERVE = _derived(b"rewards/reserve")
# ... into this one, which holds accrued but unclaimed rewards.
REWARDS_ESCROW = _derived(b"rewards/escrow")


def pool_account(pool_id: str) -> Address:
    """The address holding a pool's tokens."""
    return _derived(b"pool/" + pool_id.encode())


def _wide(value: int) -> bytes:
    if not 0 <= value <= WIDE_MAX:
        raise StateInvariantBroken(f"fixed-point value {value} does not fit {WIDE_BYTES} bytes")
    return value.to_bytes(WIDE_BYTES, "big")


def _unwide(raw: object) -> int:
    if not isinstance(raw, bytes) or len(raw) != WIDE_BYTES:
        raise StateInvariantBroken(f"stored fixed-point value {raw!r} is not {WIDE_BYTES} bytes")
    return int.from_bytes(raw, "big")


@dataclass(frozen=True, slots=True)
class Pool:
    """A pool record.  ``token0 < token1``; prices are fixed point (amm.PRICE_SHIFT bits)."""

    token0: str
    token1: str
    reserve0: int
    reserve1: int
    total_shares: int  # includes amm.MINIMUM_LIQUIDITY locked forever
    reward_rate: int  # QNX base units per block
    reward_index: int  # QNX per share, amm.REWARD_SHIFT fractional bits
    cumulative0: int  # Σ price of token0 in token1 · ms, up to last_time_ms
    cumulative1: int  # Σ price of token1 in token0 · ms, up to last_time_ms
    last_time_ms: int  # time of the block that last wrote the pool
    created_height: int

    @property
    def id(self) -> str:
        return f"{self.token0}/{self.token1}"

    @property
    def account(self) -> Address:
        return pool_account(self.id)

    def reserves_for(self, token_in: str) -> tuple[int, int]:
        """(reserve of ``token_in``, reserve of the other token)."""
        if token_in == self.token0:
            return self.reserve0, self.reserve1
        return self.reserve1, self.reserve0

    def with_reserve(self, token: str, value: int) -> "Pool":
        amm.checked(f"reserve of {token} in pool {self.id}", value)
        if token == self.token0:
            return replace(self, reserve0=value)
        return replace(self, reserve1=value)

    def advanced(self, time_ms: int) -> "Pool":
        """The pool with its cumulative prices carried to ``time_ms`` on its current reserves."""
        dt = time_ms - self.last_time_ms
        if dt < 0:
            raise StateInvariantBroken(f"block time {time_ms} is before pool {self.id}'s last update {self.last_time_ms}")
        c0, c1 = self.cumulative0, self.cumulative1
        if dt and self.reserve0 and self.reserve1:
            c0 += amm.price_fixed(self.reserve0, self.reserve1) * dt
            c1 += amm.price_fixed(self.reserve1, self.reserve0) * dt
        return replace(self, cumulative0=c0, cumulative1=c1, last_time_ms=time_ms)

    def to_wire(self) -> list[Any]:
        return [
            POOL_VERSION,
            self.token0,
            self.token1,
            self.reserve0,
            self.reserve1,
            self.total_shares,
            self.reward_rate,
            _wide(self.reward_index),
            _wide(self.cumulative0),
            _wide(self.cumulative1),
            self.last_time_ms,
            self.created_height,
        ]

    @classmethod
    def from_wire(cls, w: list[Any]) -> "Pool":
        return cls(w[1], w[2], w[3], w[4], w[5], w[6], _unwide(w[7]), _unwide(w[8]), _unwide(w[9]), w[10], w[11])


@dataclass(frozen=True, slots=True)
class Position:
    shares: int
    index_snapshot: int
    unclaimed: int  # settled rewards not yet claimed, QNX base units

    def settled(self, index: int) -> "Position":
        earned = self.shares * (index - self.index_snapshot) >> amm.REWARD_SHIFT
        return Position(self.shares, index, amm.checked("unclaimed rewards", self.unclaimed + earned))

    def pending(self, index: int) -> int:
        return self.settled(index).unclaimed


@dataclass(frozen=True, slots=True)
class Observation:
    """A pool at the end of block ``height``: its time, the cumulatives then, and the reserves it left.

    Stored only for blocks that created the pool or changed its reserves; the
    reserves hold until the next observation, so the cumulatives grow
    linearly in between (``at``).
    """

    height: int
    time_ms: int
    reserve0: int
    reserve1: int
    cumulative0: int
    cumulative1: int

    def at(self, height: int, time_ms: int) -> "Observation":
        """This observation carried to a later block (``height``, ``time_ms``) with no reserve change between."""
        dt = time_ms - self.time_ms
        if dt < 0 or height < self.height:
            raise StateInvariantBroken(f"observation at height {self.height} carried back to height {height}")
        c0, c1 = self.cumulative0, self.cumulative1
        if dt and self.reserve0 and self.reserve1:
            c0 += amm.price_fixed(self.reserve0, self.reserve1) * dt
            c1 += amm.price_fixed(self.reserve1, self.reserve0) * dt
        return Observation(height, time_ms, self.reserve0, self.reserve1, c0, c1)

    def to_wire(self) -> list[Any]:
        return [1, self.time_ms, self.reserve0, self.reserve1, _wide(self.cumulative0), _wide(self.cumulative1)]


def observation_from(key: bytes, raw: bytes) -> Observation:
    _, time_ms, r0, r1, c0, c1 = _stored(key, raw, 6)
    return Observation(int.from_bytes(key[-8:], "big"), time_ms, r0, r1, _unwide(c0), _unwide(c1))


class Pools:
    """Typed pool records over a Ledger's store.

    Writing needs the block being executed (``height``, ``time_ms``): every
    pool write carries the pool's oracle to that time.
    """

    def __init__(self, ledger: Ledger, *, height: int | None = None, time_ms: int | None = None) -> None:
        self.ledger = ledger
        self.height = height
        self.time_ms = time_ms

    def _put(self, key: bytes, value: bytes | None) -> None:
        self.ledger._put(key, value)

    # -- records ----------------------------------------------------------

    def get(self, pid: str) -> Pool | None:
        key = keys.pool_key(pid)
        raw = self.ledger.store.get(key)
        return None if raw is None else Pool.from_wire(_stored(key, raw, 12))

    def require(self, pid: str) -> Pool:
        pool = self.get(pid)
        if pool is None:
            raise UnknownPool(pid)
        return pool

    def put(self, pool: Pool) -> None:
        """Write ``pool`` as of this block: its oracle advanced to the block's time on the reserves
        that held until now, an observation if its reserves changed, the reward index if its rate
        became or stopped being non-zero."""
        if self.height is None or self.time_ms is None:
            raise StateInvariantBroken(f"pool {pool.id} written outside a block")
        old = self.get(pool.id)
        if old is None:
            pool = replace(pool, last_time_ms=self.time_ms)
        else:
            now = old.advanced(self.time_ms)
            pool = replace(pool, cumulative0=now.cumulative0, cumulative1=now.cumulative1, last_time_ms=self.time_ms)
        self._put(keys.pool_key(pool.id), encode(pool.to_wire()))
        if old is None or (old.reserve0, old.reserve1) != (pool.reserve0, pool.reserve1):
            obs = Observation(self.height, self.time_ms, pool.reserve0, pool.reserve1, pool.cumulative0,
                              pool.cumulative1)
            self._put(keys.observation_key(pool.id, self.height), encode(obs.to_wire()))
        if (old is not None and old.reward_rate > 0) != (pool.reward_rate > 0):
            rated = set(self.rated_ids()) ^ {pool.id}
            self._put(keys.REWARDED_INDEX, encode([1, sorted(rated)]) if rated else None)

    def ids(self) -> list[str]:
        raw = self.ledger.store.get(keys.POOL_INDEX)
        return [] if raw is None else list(_stored(keys.POOL_INDEX, raw, 2)[1])

    def rated_ids(self) -> list[str]:
        """Pools with a non-zero reward rate, in id order."""
        raw = self.ledger.store.get(keys.REWARDED_INDEX)
        return [] if raw is None else list(_stored(keys.REWARDED_INDEX, raw, 2)[1])

    def position(self, address: bytes, pid: str) -> Position:
        key = keys.lp_key(address, pid)
        raw = self.ledger.store.get(key)
        if raw is None:
            return Position(0, 0, 0)
        _, shares, snap, unclaimed = _stored(key, raw, 4)
        return Position(shares, _unwide(snap), unclaimed)

    def put_position(self, address: bytes, pid: str, pos: Position) -> None:
        empty = pos.shares == 0 and pos.unclaimed == 0
        value = None if empty else encode([1, pos.shares, _wide(pos.index_snapshot), pos.unclaimed])
        self._put(keys.lp_key(address, pid), value)

    def pool_of_account(self, address: bytes) -> str | None:
        raw = self.ledger.store.get(keys.pool_account_key(address))
        return None if raw is None else raw.decode()

    # -- token movements, keeping reserves equal to the pool account's balances --

    def _pay_in(self, pool: Pool, payer: bytes, token: str, amount: int) -> Pool:
        self.ledger.debit(payer, token, amount)
        self.ledger.credit(pool.account, token, amount)
        reserve, _ = pool.reserves_for(token)
        return pool.with_reserve(token, reserve + amount)

    def _pay_out(self, pool: Pool, to: bytes, token: str, amount: int) -> Pool:
        self.ledger.debit(pool.account, token, amount)
        self.ledger.credit(to, token, amount)
        reserve, _ = pool.reserves_for(token)
        return pool.with_reserve(token, reserve - amount)

    def _change_shares(self, pool: Pool, owner: bytes, delta: int) -> Pool:
        pos = self.position(owner, pool.id).settled(pool.reward_index)
        if pos.shares + delta < 0:
            raise InsufficientShares(pool.id, pos.shares, -delta)
        self.put_position(owner, pool.id, replace(pos, shares=pos.shares + delta))
        return replace(pool, total_shares=amm.checked(f"shares of pool {pool.id}", pool.total_shares + delta))

    # -- operations ---------------------------------------------------------

    def create(
        self, sender: bytes, token_a: str, token_b: str, amount_a: int, amount_b: int, min_shares: int,
        *, reward_rate: int,
    ) -> Pool:
        pid = f"{min(token_a, token_b)}/{max(token_a, token_b)}"
        if self.get(pid) is not None:
            raise PoolExists(pid)
        for token in (token_a, token_b):
            if self.ledger.token(token) is None:
                raise UnknownToken(token)
        t0, t1 = pid.split("/")
        if self.height is None or self.time_ms is None:
            raise StateInvariantBroken(f"pool {pid} created outside a block")
        pool = Pool(t0, t1, 0, 0, 0, reward_rate, 0, 0, 0, self.time_ms, self.height)
        # A donation sent to the derivable address before creation joins the first deposit, as in Uniswap V2.
        pool = replace(
            pool, reserve0=self.ledger.balance(pool.account, t0), reserve1=self.ledger.balance(pool.account, t1)
        )
        pool = self._pay_in(pool, sender, token_a, amount_a)
        pool = self._pay_in(pool, sender, token_b, amount_b)
        shares = amm.initial_shares(pool.reserve0, pool.reserve1)
        if shares < min_shares:
            raise SlippageExceeded("shares minted", shares, min_shares)
        pool = replace(pool, total_shares=amm.MINIMUM_LIQUIDITY)  # locked: owned by no one
        pool = self._change_shares(pool, sender, shares)
        self.put(pool)
        self._put(keys.pool_account_key(pool.account), pid.encode())
        ids = sorted(self.ids() + [pid])
        self._put(keys.POOL_INDEX, encode([1, ids]))
        return pool

    def _unlocked(self, pid: str, locked: frozenset[str]) -> Pool:
        if pid in locked:
            raise PoolLocked(pid)
        return self.require(pid)

    def add(
        self, sender: bytes, token_a: str, token_b: str, amount_a: int, amount_b: int, min_shares: int,
        locked: frozenset[str] = frozenset(),
    ) -> int:
        pool = self._unlocked(f"{min(token_a, token_b)}/{max(token_a, token_b)}", locked)
        reserve_a, reserve_b = pool.reserves_for(token_a)
        deposit_a, deposit_b = amm.optimal_deposit(amount_a, amount_b, reserve_a, reserve_b)
        shares = amm.later_shares(deposit_a, deposit_b, reserve_a, reserve_b, pool.total_shares)
        if shares < min_shares:
            raise SlippageExceeded("shares minted", shares, min_shares)
        pool = self._pay_in(pool, sender, token_a, deposit_a)
        pool = self._pay_in(pool, sender, token_b, deposit_b)
        pool = self._change_shares(pool, sender, shares)
        self.put(pool)
        return shares

    def remove(
        self, sender: bytes, token_a: str, token_b: str, shares: int, min_a: int, min_b: int,
        locked: frozenset[str] = frozenset(),
    ) -> tuple[int, int]:
        pool = self._unlocked(f"{min(token_a, token_b)}/{max(token_a, token_b)}", locked)
        owned = self.position(sender, pool.id).shares
        if owned < shares:
            raise InsufficientShares(pool.id, owned, shares)
        reserve_a, reserve_b = pool.reserves_for(token_a)
        out_a, out_b = amm.burn_amounts(shares, reserve_a, reserve_b, pool.total_shares)
        if out_a < min_a:
            raise SlippageExceeded(f"{token_a} out", out_a, min_a)
        if out_b < min_b:
            raise SlippageExceeded(f"{token_b} out", out_b, min_b)
        pool = self._change_shares(pool, sender, -shares)
        pool = self._pay_out(pool, sender, token_a, out_a)
        pool = self._pay_out(pool, sender, token_b, out_b)
        self.put(pool)
        return out_a, out_b

    def swap(
        self, sender: bytes, path: tuple[str, ...], amount_in: int, min_out: int, *, deadline: int, height: int,
        locked: frozenset[str] = frozenset(),
    ) -> int:
        """Exact-in swap along ``path``; the output of each hop goes straight into the next pool."""
        if height > deadline:
            raise DeadlineExpired(deadline, height)
        hops = self.route(path, amount_in, locked)
        amount_out = hops[-1][2]
        if amount_out < min_out:
            raise SlippageExceeded(f"{path[-1]} out", amount_out, min_out)
        self.ledger.debit(sender, path[0], amount_in)
        for (pool, amount, out), token_in, token_out in zip(hops, path, path[1:]):
            reserve_in, reserve_out = pool.reserves_for(token_in)
            new_in = amm.checked(f"reserve of {token_in} in pool {pool.id}", reserve_in + amount)
            if new_in * (reserve_out - out) < reserve_in * reserve_out:
                raise StateInvariantBroken(f"swap in pool {pool.id} would decrease k")
            self.ledger.credit(pool.account, token_in, amount)
            self.ledger.debit(pool.account, token_out, out)
            self.put(pool.with_reserve(token_in, new_in).with_reserve(token_out, reserve_out - out))
        self.ledger.credit(sender, path[-1], amount_out)
        return amount_out

    def route(
        self, path: tuple[str, ...], amount_in: int, locked: frozenset[str] = frozenset()
    ) -> list[tuple[Pool, int, int]]:
        """(pool, amount in, amount out) per hop of ``path``; reads only (paths never revisit a pool)."""
        hops = []
        amount = amount_in
        for token_in, token_out in zip(path, path[1:]):
            pool = self._unlocked(f"{min(token_in, token_out)}/{max(token_in, token_out)}", locked)
            reserve_in, reserve_out = pool.reserves_for(token_in)
            out = amm.amount_out(amount, reserve_in, reserve_out)
            if out <= 0:
                raise InsufficientLiquidity(f"{amount} {token_in} buys no {token_out} in pool {pool.id}")
            hops.append((pool, amount, out))
            amount = out
        return hops

    def flash_borrow(self, sender: bytes, pid: str, token: str, amount: int) -> int:
        """Lend ``amount`` of ``token``; returns what must be repaid."""
        pool = self.require(pid)
        reserve, _ = pool.reserves_for(token)
        if amount >= reserve:
            raise InsufficientLiquidity(f"pool {pid} holds {reserve} {token}; cannot lend {amount}")
        self.put(self._pay_out(pool, sender, token, amount))
        return amm.flash_repayment(amount)

    def flash_repay(self, sender: bytes, pid: str, token: str, amount: int) -> None:
        pool = self.require(pid)
        self.put(self._pay_in(pool, sender, token, amount))

    def claim(self, sender: bytes, pid: str) -> int:
        pool = self.require(pid)
        pos = self.position(sender, pid).settled(pool.reward_index)
        paid = pos.unclaimed
        if paid:
            self.ledger.debit(REWARDS_ESCROW, QNX, paid)
            self.ledger.credit(sender, QNX, paid)
        self.put_position(sender, pid, replace(pos, unclaimed=0))
        return paid

    def set_reward_rate(self, sender: bytes, pid: str, rate: int, authority: bytes) -> None:
        if authority == bytes(20) or sender != authority:
            shown = "(none: genesis names no reward authority)" if authority == bytes(20) else address_to_text(authority)
            raise NotRewardAuthority(address_to_text(sender), shown)
        self.put(replace(self.require(pid), reward_rate=rate))

    # -- once per block -------------------------------------------------------

    def begin_block(self) -> None:
        """Liquidity-mining accrual of this block, over the pools with a reward rate only."""
        rated = self.rated_ids()
        if not rated:
            return
        reserve_left = self.ledger.balance(REWARDS_RESERVE, QNX)
        for pid in rated:
            pool = self.require(pid)
            pay = min(pool.reward_rate, reserve_left)
            if pay and pool.total_shares:
                reserve_left -= pay
                self.ledger.debit(REWARDS_RESERVE, QNX, pay)
                self.ledger.credit(REWARDS_ESCROW, QNX, pay)
                self.put(replace(pool, reward_index=pool.reward_index + (pay << amm.REWARD_SHIFT) // pool.total_shares))


class FlashLoans:
    """The open flash loans of one batch: pool id -> token -> amount still owed."""

    def __init__(self) -> None:
        self.owed: dict[str, dict[str, int]] = {}

    @property
    def locked(self) -> frozenset[str]:
        return frozenset(pid for pid, debts in self.owed.items() if any(debts.values()))

    def borrowed(self, pid: str, token: str, repayment: int) -> None:
        debts = self.owed.setdefault(pid, {})
        debts[token] = amm.checked("flash loan debt", debts.get(token, 0) + repayment)

    def repaid(self, pid: str, token: str, amount: int) -> None:
        owed = self.owed.get(pid, {}).get(token, 0)
        if owed == 0:
            raise NoFlashLoan(pid, token)
        # Paying more than owed is a gift to the pool's liquidity providers.
        self.owed[pid][token] = max(owed - amount, 0)

    def check_settled(self) -> None:
        for pid in sorted(self.owed):
            for token in sorted(self.owed[pid]):
                if self.owed[pid][token]:
                    raise FlashLoanNotRepaid(pid, token, self.owed[pid][token])


__all__ = [
    "Pool",
    "Position",
    "Observation",
    "Pools",
    "FlashLoans",
    "REWARDS_RESERVE",
    "REWARDS_ESCROW",
    "pool_account",
    "observation_from",
]
