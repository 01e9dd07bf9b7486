"""Hypothesis: random sequences of pool operations keep the AMM's invariants.

Operations run directly on state.pools over an Overlay (each in its own
child layer, dropped on failure, as BlockRun does), with begin_block between
some of them, so thousands of steps stay fast.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state import amm
from state.amounts import QNX
from state.app import Application
from state.errors import ExecutionFailed
from state.genesis import GenesisToken, Params
from state.kv import MemoryKV
from state.ledger import Ledger, Overlay
from state.pools import REWARDS_ESCROW, REWARDS_RESERVE, FlashLoans, Pools, pool_account
from state.testing import dev_key, make_genesis

VAL = dev_key("validator-0")
USERS = [dev_key(f"prop-{i}") for i in range(3)]
TOKENS = ("AAA", "BBB", "CCC")
PAIRS = [("AAA", "BBB"), ("BBB", "CCC"), ("AAA", "CCC")]
START = 10**24


def _app() -> Application:
    tokens = tuple(GenesisToken(s, s, 18, USERS[0].address) for s in TOKENS)
    extra = {u.address: {s: START for s in TOKENS} for u in USERS}
    extra[REWARDS_RESERVE] = {QNX: 50 * 10**18}
    rates = {f"{a}/{b}": 10**18 for a, b in PAIRS}
    return Application(MemoryKV(), make_genesis(validators=(VAL,), funded=USERS, tokens=tokens, extra_balances=extra,
                                                params=Params(pool_reward_rates=rates)))


APP = _app()  # read-only base; every example writes only to its own overlay
amounts = st.integers(1, 10**22)
user = st.integers(0, len(USERS) - 1)
pair = st.sampled_from(PAIRS)
op = st.one_of(
    st.tuples(st.just("create"), user, pair, amounts, amounts),
    st.tuples(st.just("add"), user, pair, amounts, amounts),
    st.tuples(st.just("remove"), user, pair, st.integers(1, 100)),  # percent of the user's shares
    st.tuples(st.just("swap"), user, pair, st.booleans(), amounts),
    st.tuples(st.just("route"), user, st.permutations(TOKENS), amounts),
    st.tuples(st.just("flash"), user, pair, st.booleans(), amounts, st.integers(-2, 2)),
    st.tuples(st.just("claim"), user, pair),
    st.tuples(st.just("block"),),
)


def _addresses():
    return [u.address for u in USERS] + [pool_account(f"{a}/{b}") for a, b in PAIRS] + [REWARDS_RESERVE, REWARDS_ESCROW]


def _totals(ledger: Ledger) -> dict[str, int]:
    return {t: sum(ledger.balance(a, t) for a in _addresses()) for t in TOKENS + (QNX,)}


def _check(ledger: Ledger, pools: Pools, supply: dict[str, int]) -> None:
    assert _totals(ledger) == supply  # every token's supply is conserved
    for pid in pools.ids():
        pool = pools.require(pid)
        # reserves always equal the pool account's holdings
        assert pool.reserve0 == ledger.balance(pool.account, pool.token0)
        assert pool.reserve1 == ledger.balance(pool.account, pool.token1)
        # LP shares are conserved: the locked 1000 plus every position
        assert pool.total_shares == amm.MINIMUM_LIQUIDITY + sum(pools.position(u.address, pid).shares for u in USERS)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(amounts, amounts), min_size=3, max_size=3), st.lists(op, min_size=1, max_size=40))
def test_random_pool_operation_sequences_keep_every_invariant(initial, ops):
    base = Overlay(APP._kv)
    ledger = Ledger(base)
    supply = _totals(ledger)
    height, time_ms = 1, APP.last_time_ms + 1000
    Pools(ledger, height=height, time_ms=time_ms).begin_block()
    for (a, b), (x, y) in zip(PAIRS, initial):  # most examples start with all three pools
        layer = base.child()
        try:
            Pools(Ledger(layer), height=height, time_ms=time_ms).create(USERS[0].address, a, b, x, y, 0,
                                                                        reward_rate=10**18)
        except ExecutionFailed:
            continue
        layer.merge_into(base)
    for step in ops:
        kind = step[0]
        if kind == "block":
            height, time_ms = height + 1, time_ms + 1000
            Pools(ledger, height=height, time_ms=time_ms).begin_block()
            _check(ledger, Pools(ledger), supply)
            continue
        layer = base.child()
        lg = Ledger(layer)
        pools = Pools(lg, height=height, time_ms=time_ms)
        sender = USERS[step[1]].address
        k_before = {pid: pools.require(pid).reserve0 * pools.require(pid).reserve1 for pid in pools.ids()}
        try:
            if kind == "create":
                _, _, (a, b), x, y = step
                pools.create(sender, a, b, x, y, 0, reward_rate=10**18)
            elif kind == "add":
                _, _, (a, b), x, y = step
                pools.add(sender, a, b, x, y, 0)
            elif kind == "remove":
                _, _, (a, b), percent = step
                shares = pools.position(sender, f"{a}/{b}").shares * percent // 100
                pools.remove(sender, a, b, max(shares, 1), 0, 0)
            elif kind == "swap":
                _, _, (a, b), flip, x = step
                path = (b, a) if flip else (a, b)
                before_in, before_out = lg.balance(sender, path[0]), lg.balance(sender, path[1])
                got = pools.swap(sender, path, x, 0, deadline=height, height=height)
                assert lg.balance(sender, path[0]) == before_in - x
                assert lg.balance(sender, path[1]) == before_out + got
            elif kind == "route":
                _, _, path, x = step
                pools.swap(sender, tuple(path), x, 0, deadline=height, height=height)
            elif kind == "flash":
                _, _, (a, b), flip, x, delta = step
                token = b if flip else a
                pid = f"{a}/{b}"
                loans = FlashLoans()
                owed = pools.flash_borrow(sender, pid, token, x)
                loans.borrowed(pid, token, owed)
                repay = max(owed + delta, 1)
                loans.repaid(pid, token, repay)
                pools.flash_repay(sender, pid, token, repay)
                loans.check_settled()
                assert delta >= 0 or owed + delta < 1  # repaying less than owed never settles
            elif kind == "claim":
                _, _, (a, b) = step
                pools.claim(sender, f"{a}/{b}")
        except ExecutionFailed:
            continue  # the layer is dropped: nothing happened
        layer.merge_into(base)
        after = Pools(ledger)
        for pid, k in k_before.items():
            pool = after.require(pid)
            if kind in ("swap", "route", "flash"):
                assert pool.reserve0 * pool.reserve1 >= k  # k never decreases on a swap or a flash loan
        _check(ledger, Pools(ledger), supply)


@settings(max_examples=200, deadline=None)
@given(st.integers(10**6, 10**30), st.integers(10**6, 10**30), st.lists(st.tuples(st.booleans(), st.integers(1, 10**30)),
                                                                        min_size=1, max_size=12))
def test_no_swap_sequence_extracts_value_without_paying_the_fee(r0, r1, swaps):
    """In one pool, any sequence of swaps strictly raises k, and never leaves the trader ahead in both tokens."""
    k = r0 * r1
    trader0 = trader1 = 0
    for zero_for_one, x in swaps:
        r_in, r_out = (r0, r1) if zero_for_one else (r1, r0)
        out = amm.amount_out(x, r_in, r_out)
        r_in, r_out = r_in + x, r_out - out
        r0, r1 = (r_in, r_out) if zero_for_one else (r_out, r_in)
        assert r0 * r1 > k  # the fee stays in the pool: k strictly grows
        k = r0 * r1
        if zero_for_one:
            trader0, trader1 = trader0 - x, trader1 + out
        else:
            trader0, trader1 = trader0 + out, trader1 - x
    assert trader0 < 0 or trader1 < 0


@given(st.integers(10**6, 10**30), st.integers(10**6, 10**30), st.integers(1, 10**30))
def test_a_round_trip_always_loses(r0, r1, x):
    """Selling x and selling the proceeds straight back returns less than x: both legs pay the fee.

    (Not ``≤ 0.997·x``: the first leg's fee stays in the pool and part of it comes back on the return leg.)
    """
    out = amm.amount_out(x, r0, r1)
    back = amm.amount_out(out, r1 - out, r0 + x) if out else 0
    assert back < x
    # with no fee on the return leg the constant product would give back (r0 + x)·out/r1; the fee takes more
    no_fee_back = out * (r0 + x) // r1
    assert back <= no_fee_back
