"""Cheap pool meshes (issue 7, finding 4, state-growth half).

A mesh of 30 self-issued tokens with a pool on every pair (435 pools) costs
real QNX at the minimum gas price; afterwards an empty block writes nothing
for the pools (the oracle advances only when a pool is written, and only the
pools with a reward rate accrue per block); TWAPs stay exact over windows
with no observation inside, checked against an independent Fraction
recomputation from the reserves each block left.
"""

from __future__ import annotations

from fractions import Fraction
from itertools import combinations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state import amm, keys
from state.amounts import MAX_AMOUNT, QNX
from state.app import Application
from state.genesis import (
    POOL_CREATE_STORED_BYTES,
    STATE_BYTE_GAS,
    TOKEN_CREATE_STORED_BYTES,
    GenesisToken,
    Params,
)
from state.kv import MemoryKV
from state.payloads import MAX_NAME_LEN, PoolCreate, Swap, TokenCreate, TxKind
from state.pools import REWARDS_ESCROW, REWARDS_RESERVE
from state.testing import ONE_QNX, Chain, dev_key, make_genesis

VAL = dev_key("validator-0")
MESHER = dev_key("mesher")
TRADER = dev_key("trader")
E18 = 10**18


class RecordingKV(MemoryKV):
    """Remembers the size of each write batch (keys plus values), as LevelDB would be handed it."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def write_batch(self, puts, sync=True):  # type: ignore[no-untyped-def]
        self.batches.append(sum(len(k) + len(v or b"") for k, v in puts.items()))
        super().write_batch(puts, sync)


def _symbols(n: int) -> list[str]:
    return [f"T{i:02d}" for i in range(n)]


def _mesh(tokens: int) -> tuple[Chain, RecordingKV, int]:
    """Create ``tokens`` tokens and a pool on every pair; returns the chain, its store and the fees paid."""
    kv = RecordingKV()
    app = Application(kv, make_genesis(validators=(VAL,), funded=(MESHER,), balance=100 * ONE_QNX))
    chain = Chain(app, VAL)
    paid = 0
    symbols = _symbols(tokens)
    _, result = chain.block([chain.tx(MESHER, TokenCreate(s, s, 6, 10**30)) for s in symbols])
    assert all(r.ok for r in result.receipts)
    paid += result.fees
    pairs = list(combinations(symbols, 2))
    for start in range(0, len(pairs), 200):
        txs = [chain.tx(MESHER, PoolCreate(a, b, 10**9, 10**9, 0)) for a, b in pairs[start:start + 200]]
        _, result = chain.block(txs)
        assert len(result.receipts) == len(txs) and all(r.ok for r in result.receipts)
        paid += result.fees
    assert len(app.pools()) == len(pairs)
    return chain, kv, paid


def test_a_435_pool_mesh_costs_real_qnx_and_an_empty_block_then_writes_o1_bytes():
    lone, lone_kv, _ = _mesh(2)  # one pool
    mesh, mesh_kv, paid = _mesh(30)
    assert len(mesh.app.pools()) == 435
    # the fees: 30 token creations and 435 pool creations at the minimum gas price
    params = Params()
    expected = 30 * params.min_fee(TxKind.TOKEN_CREATE) + 435 * params.min_fee(TxKind.POOL_CREATE)
    assert paid == expected == 4_452_600_000_000_000_000  # 4.45 QNX (it was 2.8e-11 QNX)
    assert paid > 4 * ONE_QNX

    sizes = {}
    for name, chain, kv in (("lone", lone, lone_kv), ("mesh", mesh, mesh_kv)):
        while chain.app.height < 4:  # the same height for both, so block records have the same shape
            chain.block()
        _, result = chain.block()
        assert result.state_writes == ()  # nothing for the pools, nothing at all: no fees, no accrual
        sizes[name] = kv.batches[-1]
    # the same bytes with 435 pools as with 1 (it was 72 KiB of observations per empty block)
    assert sizes["mesh"] == sizes["lone"] < 1024


def test_creation_gas_covers_the_bytes_a_creation_can_store():
    """Creation gas prices state at STATE_BYTE_GAS per stored byte; the budgets cover the worst case."""
    kv = MemoryKV()
    longest = "Z" * 12
    app = Application(kv, make_genesis(validators=(VAL,), funded=(MESHER,), balance=100 * ONE_QNX))
    chain = Chain(app, VAL)

    def stored(result, sender):  # new bytes: not the sender's nonce and balances, nor the proposer's fee
        def new(key: bytes) -> bool:
            return key != keys.account_key(sender) and not key.startswith(keys.balance_prefix(sender)) \
                and key != keys.balance_key(VAL.address, QNX)
        return sum(len(k) + len(v or b"") for k, v in result.state_writes if new(k))

    _, r1 = chain.block([chain.tx(MESHER, TokenCreate("Y" * 12, "n" * MAX_NAME_LEN, 18, MAX_AMOUNT))])
    _, r2 = chain.block([chain.tx(MESHER, TokenCreate(longest, "n" * MAX_NAME_LEN, 18, MAX_AMOUNT))])
    # the token record, plus the issuer's new balance of it
    assert stored(r2, MESHER.address) + len(keys.balance_key(MESHER.address, longest)) + 18 <= TOKEN_CREATE_STORED_BYTES
    _, r3 = chain.block([chain.tx(MESHER, PoolCreate("Y" * 12, longest, MAX_AMOUNT // 2, MAX_AMOUNT // 3, 0))])
    assert r3.receipts[0].ok
    # the pool index entry grows with the pool count; 12-char symbols leave room for it in the budget
    assert stored(r3, MESHER.address) <= POOL_CREATE_STORED_BYTES - 100
    gas = Params().gas
    assert gas[TxKind.TOKEN_CREATE] >= STATE_BYTE_GAS * TOKEN_CREATE_STORED_BYTES
    assert gas[TxKind.POOL_CREATE] >= STATE_BYTE_GAS * POOL_CREATE_STORED_BYTES


def test_reward_accrual_touches_only_pools_with_a_rate():
    rates = {"T00/T01": 5 * E18}
    tokens = tuple(GenesisToken(s, s, 6, MESHER.address) for s in _symbols(4))
    genesis = make_genesis(validators=(VAL,), funded=(MESHER,), balance=100 * ONE_QNX, tokens=tokens,
                           extra_balances={MESHER.address: {s: 10**30 for s in _symbols(4)},
                                           REWARDS_RESERVE: {QNX: 100 * E18}},
                           params=Params(pool_reward_rates=rates))
    chain = Chain(Application(MemoryKV(), genesis), VAL)
    pairs = list(combinations(_symbols(4), 2))
    chain.block([chain.tx(MESHER, PoolCreate(a, b, 10**9, 10**9, 0)) for a, b in pairs])
    _, result = chain.block()
    written = {k for k, _ in result.state_writes}
    # the rated pool's record and the two reward accounts; no other pool, no observation
    assert written == {keys.pool_key("T00/T01"), keys.balance_key(REWARDS_RESERVE, QNX),
                       keys.balance_key(REWARDS_ESCROW, QNX)}
    pool = chain.app.pool("T00/T01")
    assert pool.reward_index == (5 * E18 << amm.REWARD_SHIFT) // pool.total_shares  # one block's accrual


# -- TWAP exact across blocks without observations -------------------------------------------

TWAP_TOKENS = tuple(GenesisToken(s, s, 18, TRADER.address) for s in ("AAA", "BBB"))
block_plan = st.lists(
    st.tuples(st.integers(1, 50_000), st.one_of(st.none(), st.tuples(st.booleans(), st.integers(1, 10**21)))),
    min_size=2, max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(10**18, 10**24), st.integers(10**18, 10**24), block_plan, st.data())
def test_twap_is_exact_over_windows_spanning_blocks_without_observations(r0, r1, plan, data):
    genesis = make_genesis(validators=(VAL,), funded=(TRADER,), balance=100 * ONE_QNX, tokens=TWAP_TOKENS,
                           extra_balances={TRADER.address: {"AAA": 10**30, "BBB": 10**30}})
    chain = Chain(Application(MemoryKV(), genesis), VAL)
    app = chain.app
    chain.block([chain.tx(TRADER, PoolCreate("AAA", "BBB", r0, r1, 0))])
    created = app.height
    # independent record: the time of each block and the reserves it left, read from the pool record
    times = {created: app.last_time_ms}
    left = {created: (app.pool("AAA/BBB").reserve0, app.pool("AAA/BBB").reserve1)}
    changed = {created}
    for gap, swap in plan:
        txs = []
        if swap is not None:
            flip, amount = swap
            txs = [chain.tx(TRADER, Swap("BBB", "AAA", amount, 0, 10**6) if flip else Swap("AAA", "BBB", amount, 0, 10**6))]
        _, result = chain.block(txs, time_ms=app.last_time_ms + gap)
        pool = app.pool("AAA/BBB")
        times[app.height] = app.last_time_ms
        left[app.height] = (pool.reserve0, pool.reserve1)
        if left[app.height] != left[app.height - 1]:
            changed.add(app.height)
    # observations are stored only where the reserves changed (or at creation)
    assert {o.height for o in app.pool_changes("AAA/BBB", 0, app.height)} == changed

    a = data.draw(st.integers(created, app.height - 1), label="from_height")
    b = data.draw(st.integers(a + 1, app.height), label="to_height")
    twap = app.pool_twap("AAA/BBB", a, b)
    exact0 = exact1 = Fraction(0)
    fixed0 = fixed1 = 0
    for h in range(a + 1, b + 1):
        (x, y), dt = left[h - 1], times[h] - times[h - 1]
        exact0 += Fraction(y, x) * dt
        exact1 += Fraction(x, y) * dt
        fixed0 += ((y << amm.PRICE_SHIFT) // x) * dt
        fixed1 += ((x << amm.PRICE_SHIFT) // y) * dt
    elapsed = times[b] - times[a]
    assert (twap.from_time_ms, twap.to_time_ms) == (times[a], times[b])
    assert (twap.cumulative0_delta, twap.cumulative1_delta) == (fixed0, fixed1)  # bit-exact accumulators
    for reported, exact in ((twap.price0, exact0 / elapsed), (twap.price1, exact1 / elapsed)):
        assert abs(Fraction(reported) - exact) / exact < Fraction(1, 10**38)
    # the per-block history is the reserves each block left, at each block's time
    history = app.pool_history("AAA/BBB", a, b)
    assert [(o.height, o.time_ms, (o.reserve0, o.reserve1)) for o in history] == [
        (h, times[h], left[h]) for h in range(a, b + 1)]
