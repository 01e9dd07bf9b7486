"""Pools through the Application: every tx kind, each bad input's specific error, flash-loan batches, TWAP, rewards."""

from __future__ import annotations

from fractions import Fraction
from math import isqrt

import pytest

from state import amm
from state.amounts import MAX_AMOUNT, QNX
from state.app import Application
from state.errors import AmountOutOfRange, DecodeError, IdenticalTokens, MalformedTransaction
from state.genesis import GenesisToken, Params
from state.kv import MemoryKV
from state.pools import REWARDS_ESCROW, REWARDS_RESERVE, pool_account
from state.testing import STUB_VERIFIER, Chain, dev_key, make_genesis, signed
from state.payloads import Batch, FlashBorrow, FlashRepay, PoolAdd, PoolCreate, PoolRemove, RewardsClaim, SetRewardRate, Swap, SwapRoute, Transfer
from state.transactions import SignedTransaction

VAL = dev_key("validator-0")
ALICE = dev_key("alice")
BOB = dev_key("bob")
E18 = 10**18
BIG = 10**30
TOKENS = ("AAA", "BBB", "CCC", "DDD")
REWARD_RATE = 10 * E18


def genesis(**params):
    tokens = tuple(GenesisToken(s, f"{s} token", 18, ALICE.address) for s in TOKENS)
    extra = {
        ALICE.address: {s: BIG for s in ("AAA", "BBB", "CCC")} | {"DDD": MAX_AMOUNT - BIG},
        BOB.address: {s: BIG for s in ("AAA", "BBB", "CCC")} | {"DDD": BIG},
        REWARDS_RESERVE: {QNX: 1_000_000 * E18},
    }
    params.setdefault("reward_authority", ALICE.address)
    params.setdefault("pool_reward_rates", {"AAA/BBB": REWARD_RATE})
    return make_genesis(validators=(VAL,), funded=(ALICE, BOB), tokens=tokens, extra_balances=extra,
                        params=Params(**params))


def new_chain(**params) -> Chain:
    return Chain(Application(MemoryKV(), genesis(**params), commit_verifier=STUB_VERIFIER), VAL)


def run(chain: Chain, key, payload):
    """One transaction in its own block; returns its receipt."""
    _, result = chain.block([chain.tx(key, payload)])
    assert len(result.receipts) == 1
    return result.receipts[0]


def with_pool(a=5 * E18, b=10 * E18, pair=("AAA", "BBB")) -> Chain:
    chain = new_chain()
    assert run(chain, ALICE, PoolCreate(pair[0], pair[1], a, b, 0)).ok
    return chain


def holdings(app: Application, *keys):
    """Everything a pool operation could change except QNX (which pays fees) and the per-block oracle fields."""
    out = {}
    for pool in app.pools():
        out[pool.id] = (pool.reserve0, pool.reserve1, pool.total_shares, pool.reward_rate)
        for k in keys:
            out[(pool.id, k.address)] = app.pool_position(k.address, pool.id).shares
    for k in keys:
        out[k.address] = {s: v for s, v in app.account(k.address).balances.items() if s != QNX}
    return out


# -- Uniswap V2 acceptance through the state machine ----------------------------------


def test_first_deposit_of_10000_and_5_mints_sqrt_50000_e18_minus_1000():
    chain = with_pool(10_000 * E18, 5 * E18)
    pool = chain.app.pool("AAA/BBB")
    assert pool.total_shares == isqrt(50_000 * 10**36)
    assert chain.app.pool_position(ALICE.address, "AAA/BBB").shares == isqrt(50_000 * 10**36) - 1000
    assert (pool.reserve0, pool.reserve1) == (10_000 * E18, 5 * E18)


@pytest.mark.parametrize("swap, r0, r1, expected", [(1, 5, 10, 1662497915624478906), (2, 10, 5, 831248957812239453),
                                                    (1, 1000, 1000, 996006981039903216)])
def test_swap_tx_pays_exactly_the_uniswap_output(swap, r0, r1, expected):
    chain = with_pool(r0 * E18, r1 * E18)
    before = chain.app.account(BOB.address).balances
    receipt = run(chain, BOB, Swap("AAA", "BBB", swap * E18, expected, 1000))
    assert receipt.ok, receipt.reason
    after = chain.app.account(BOB.address).balances
    assert after["BBB"] - before["BBB"] == expected
    assert before["AAA"] - after["AAA"] == swap * E18
    pool = chain.app.pool("AAA/BBB")
    assert (pool.reserve0, pool.reserve1) == (r0 * E18 + swap * E18, r1 * E18 - expected)


def test_optimistic_case_as_a_flash_loan_batch():
    # optimistic case 3 of UniswapV2Pair.spec.ts: borrow 1 token0 of (5, 5), repay 1.003009027081243732
    out, inp = 1 * E18, 1003009027081243732
    chain = with_pool(5 * E18, 5 * E18)
    ok = run(chain, BOB, Batch((FlashBorrow("AAA", "BBB", "AAA", out), FlashRepay("AAA", "BBB", "AAA", inp))))
    assert ok.ok, ok.reason
    bad = run(chain, BOB, Batch((FlashBorrow("AAA", "BBB", "AAA", out + 1), FlashRepay("AAA", "BBB", "AAA", inp))))
    assert not bad.ok and bad.reason.startswith("flash_loan_not_repaid")


# -- acceptance 5: each bad input is rejected with a specific error and no state change ----


@pytest.mark.parametrize(
    "payload, code",
    [
        (Swap("AAA", "CCC", E18, 0, 1000), "unknown_pool"),
        (PoolAdd("CCC", "DDD", E18, E18, 0), "unknown_pool"),
        (Swap("AAA", "BBB", E18, amm.amount_out(E18, 6 * E18, 12 * E18) + 1, 1000), "slippage"),
        (PoolAdd("AAA", "BBB", E18, 2 * E18, 10**30), "slippage"),
        (PoolRemove("AAA", "BBB", 10**9, 10**30, 0), "slippage"),
        (Swap("AAA", "BBB", E18, 0, 1), "deadline_expired"),
        (SwapRoute(("AAA", "BBB"), E18, 0, 2), "deadline_expired"),
        (PoolRemove("AAA", "BBB", 10**35, 0, 0), "insufficient_shares"),
        (PoolCreate("BBB", "AAA", E18, E18, 0), "pool_exists"),
        (Transfer(pool_account("AAA/BBB"), "AAA", 1), "pool_account"),
        (Batch((FlashBorrow("AAA", "BBB", "AAA", E18),)), "flash_loan_not_repaid"),
        (Batch((Swap("AAA", "BBB", E18, 0, 1000), Swap("AAA", "CCC", E18, 0, 1000))), "batch_failed: operation 1: unknown_pool"),
        (SetRewardRate("AAA", "BBB", 1), "not_reward_authority"),  # sent by BOB
        (Swap("AAA", "BBB", BIG + 1, 0, 1000), "insufficient_balance"),
    ],
)
def test_bad_pool_inputs_fail_with_a_specific_reason_and_change_nothing(payload, code):
    chain = with_pool()
    app = chain.app
    assert run(chain, BOB, PoolAdd("AAA", "BBB", E18, 2 * E18, 0)).ok
    before = holdings(app, ALICE, BOB)
    qnx = app.account(BOB.address).balances[QNX]
    receipt = run(chain, BOB, payload)
    assert not receipt.ok
    assert receipt.reason.startswith(code), receipt.reason
    assert holdings(app, ALICE, BOB) == before
    assert app.account(BOB.address).balances[QNX] == qnx - receipt.fee  # only the fee was charged


def test_overflow_fails_the_transaction_not_the_chain():
    chain = new_chain()
    # a pool holding almost all of DDD's 2**128 - 1 supply: lending 99.8% of it would owe more than 2**128 - 1
    assert run(chain, ALICE, PoolCreate("DDD", "AAA", MAX_AMOUNT - BIG, E18, 0)).ok
    before = holdings(chain.app, ALICE, BOB)
    receipt = run(chain, BOB, Batch((FlashBorrow("AAA", "DDD", "DDD", MAX_AMOUNT - BIG - 10**36),
                                     FlashRepay("AAA", "DDD", "DDD", 1))))
    assert not receipt.ok and "overflow" in receipt.reason, receipt.reason
    assert holdings(chain.app, ALICE, BOB) == before
    # and an amount past 2**128 - 1 never becomes a transaction at all
    with pytest.raises(AmountOutOfRange):
        Swap("AAA", "BBB", MAX_AMOUNT + 1, 0, 10)


@pytest.mark.parametrize(
    "build, error",
    [
        (lambda: Swap("AAA", "AAA", E18, 0, 10), IdenticalTokens),
        (lambda: PoolCreate("AAA", "AAA", E18, E18, 0), IdenticalTokens),
        (lambda: SwapRoute(("AAA", "BBB", "AAA"), E18, 0, 10), MalformedTransaction),
        (lambda: Swap("AAA", "BBB", 0, 0, 10), AmountOutOfRange),
        (lambda: PoolCreate("AAA", "BBB", 0, E18, 0), AmountOutOfRange),
        (lambda: PoolAdd("AAA", "BBB", E18, 0, 0), AmountOutOfRange),
        (lambda: PoolRemove("AAA", "BBB", 0, 0, 0), AmountOutOfRange),
        (lambda: FlashBorrow("AAA", "BBB", "CCC", 1), MalformedTransaction),
        (lambda: Batch(()), MalformedTransaction),
    ],
)
def test_malformed_pool_payloads_never_become_transactions(build, error):
    with pytest.raises(error):
        build()


def test_identical_tokens_and_zero_amounts_are_refused_when_decoding_bytes():
    good = signed(BOB, 0, Swap("AAA", "BBB", 1, 0, 10))
    wire = good.to_wire()
    for payload in (["AAA", "AAA", 1, 0, 10], ["AAA", "BBB", 0, 0, 10]):
        wire[0][6] = payload
        from state.codec import encode

        with pytest.raises(DecodeError):
            SignedTransaction.decode(encode(wire))


# -- liquidity, routes, quotes ---------------------------------------------------------


def test_add_uses_the_pool_ratio_and_remove_is_pro_rata():
    chain = with_pool(5 * E18, 10 * E18)
    app = chain.app
    before = app.account(BOB.address).balances
    assert run(chain, BOB, PoolAdd("BBB", "AAA", 4 * E18, 1 * E18, 0)).ok  # wants 1 AAA : 2 BBB
    mid = app.account(BOB.address).balances
    assert before["AAA"] - mid["AAA"] == E18 and before["BBB"] - mid["BBB"] == 2 * E18
    shares = app.pool_position(BOB.address, "AAA/BBB").shares
    total = app.pool("AAA/BBB").total_shares
    assert shares == E18 * (total - shares) // (5 * E18)
    assert run(chain, BOB, PoolRemove("AAA", "BBB", shares, 0, 0)).ok
    after = app.account(BOB.address).balances
    assert after["AAA"] == mid["AAA"] + shares * 6 * E18 // total
    assert app.pool_position(BOB.address, "AAA/BBB").shares == 0


def test_multi_hop_route_and_best_path_quote():
    chain = with_pool(100 * E18, 100 * E18)
    app = chain.app
    assert run(chain, ALICE, PoolCreate("BBB", "CCC", 100 * E18, 100 * E18, 0)).ok
    assert run(chain, ALICE, PoolCreate("AAA", "CCC", E18, E18, 0)).ok  # shallow direct pool
    quote = app.quote_swap("AAA", "CCC", E18)
    assert quote.path == ("AAA", "BBB", "CCC")  # two deep hops beat one shallow one
    hop1 = amm.amount_out(E18, 100 * E18, 100 * E18)
    assert quote.amounts == (E18, hop1, amm.amount_out(hop1, 100 * E18, 100 * E18))
    assert quote.fees == (3 * E18 // 1000, -(-hop1 * 3 // 1000))
    assert 0 < quote.price_impact_bps < 300
    direct = app.quote_swap("AAA", "CCC", E18, path=("AAA", "CCC"))
    assert direct.amount_out < quote.amount_out and direct.price_impact_bps >= 4900
    before = app.account(BOB.address).balances["CCC"]
    assert run(chain, BOB, SwapRoute(quote.path, E18, quote.amount_out, 1000)).ok
    assert app.account(BOB.address).balances["CCC"] - before == quote.amount_out


# -- flash loans: atomic, deterministic on every node ------------------------------------


def test_flash_loan_batch_repaying_succeeds_and_not_repaying_reverts_everything_on_two_nodes():
    chains = [with_pool(100 * E18, 100 * E18) for _ in range(2)]
    a, b = chains[0].app, chains[1].app
    assert a.app_hash == b.app_hash
    borrow = 10 * E18
    repaying = Batch((
        FlashBorrow("AAA", "BBB", "AAA", borrow),
        Transfer(ALICE.address, "AAA", 5),
        FlashRepay("AAA", "BBB", "AAA", amm.flash_repayment(borrow)),
        Swap("AAA", "BBB", E18, 0, 1000),
    ))
    short = Batch((
        FlashBorrow("AAA", "BBB", "AAA", borrow),
        Transfer(ALICE.address, "AAA", 5),
        FlashRepay("AAA", "BBB", "AAA", amm.flash_repayment(borrow) - 1),
    ))
    locked = Batch((FlashBorrow("AAA", "BBB", "AAA", borrow), Swap("BBB", "AAA", E18, 0, 1000),
                    FlashRepay("AAA", "BBB", "AAA", 2 * borrow)))
    txs = [chains[0].tx(BOB, p) for p in (repaying, short, locked)]
    block, result = chains[0].block(txs)
    assert [r.ok for r in result.receipts] == [True, False, False]
    assert result.receipts[1].reason.startswith("flash_loan_not_repaid")
    assert result.receipts[2].reason.startswith("batch_failed: operation 1: pool_locked")
    # the other node executes the proposer's block and reaches the same app hash
    other = b.execute_block(block)
    assert other.app_hash == result.app_hash
    b.commit_block(block, other, b"cert")
    assert a.app_hash == b.app_hash
    assert a.pool("AAA/BBB") == b.pool("AAA/BBB")
    pool = a.pool("AAA/BBB")
    fee = amm.flash_repayment(borrow) - borrow
    assert pool.reserve0 == 100 * E18 + fee + E18  # the loan fee stays with the LPs


# -- TWAP and history -----------------------------------------------------------------


def test_twap_matches_an_independent_computation_from_the_history():
    chain = with_pool(5 * E18, 10 * E18)
    app = chain.app
    for i, amount in enumerate((E18, 3 * E18, E18 // 7)):
        chain.block([chain.tx(BOB, Swap("AAA", "BBB", amount, 0, 1000))], time_ms=app.last_time_ms + 700 + 300 * i)
        chain.block(time_ms=app.last_time_ms + 1234)
    created = app.pool("AAA/BBB").created_height
    history = app.pool_history("AAA/BBB", created, app.height)
    assert [o.height for o in history] == list(range(created, app.height + 1))
    start, end = history[1], history[-1]
    twap = app.pool_twap("AAA/BBB", start.height, end.height)
    # an observation holds the reserves its block left: they priced the interval up to the next block
    exact = sum(Fraction(prev.reserve1, prev.reserve0) * (o.time_ms - prev.time_ms)
                for prev, o in zip(history[1:], history[2:])) / (end.time_ms - start.time_ms)
    assert abs(Fraction(twap.price0) - exact) / exact < Fraction(1, 10**38)
    window = app.pool_twap_window("AAA/BBB", 2000)
    assert window.to_height == app.height and window.elapsed_ms >= 2000
    assert app.pool_observation("AAA/BBB", window.from_height + 1).time_ms > end.time_ms - 2000


# -- liquidity mining -----------------------------------------------------------------


def test_rewards_accrue_pro_rata_and_claims_conserve_qnx():
    chain = with_pool(100 * E18, 100 * E18)
    app = chain.app
    supply = sum(app.account(k.address).balances.get(QNX, 0) for k in (ALICE, BOB, VAL))
    supply += app.account(REWARDS_RESERVE).balances[QNX]
    assert run(chain, BOB, PoolAdd("AAA", "BBB", 100 * E18, 100 * E18, 0)).ok
    for _ in range(3):
        chain.block()
    pool = app.pool("AAA/BBB")
    pending = {k: app.pool_position(k.address, "AAA/BBB").pending(pool.reward_index) for k in (ALICE, BOB)}
    assert pending[BOB] > 0 and abs(pending[BOB] - 3 * REWARD_RATE // 2) < E18 // 1000
    assert pending[ALICE] > pending[BOB]  # ALICE also earned alone for a block
    before = app.account(BOB.address).balances[QNX]
    receipt = run(chain, BOB, RewardsClaim("BBB", "AAA"))
    assert receipt.ok
    gained = app.account(BOB.address).balances[QNX] - before + receipt.fee
    assert gained >= pending[BOB] + REWARD_RATE // 2 - E18 // 1000  # plus the claim block's accrual
    total = sum(app.account(a).balances.get(QNX, 0) for a in (ALICE.address, BOB.address, VAL.address,
                                                            REWARDS_RESERVE, REWARDS_ESCROW))
    assert total == supply


def test_only_the_reward_authority_sets_rates():
    chain = with_pool()
    assert not run(chain, BOB, SetRewardRate("AAA", "BBB", 1)).ok
    assert run(chain, ALICE, SetRewardRate("AAA", "BBB", 7)).ok
    assert chain.app.pool("AAA/BBB").reward_rate == 7
    nobody = new_chain(reward_authority=bytes(20))
    assert run(nobody, ALICE, PoolCreate("AAA", "BBB", E18, E18, 0)).ok
    assert run(nobody, ALICE, SetRewardRate("AAA", "BBB", 7)).reason.startswith("not_reward_authority")


def test_outflows_cover_the_pool_kinds():
    app = new_chain().app
    gwei = 10**9  # the default min_gas_price
    assert app.tx_outflows(signed(BOB, 0, PoolCreate("AAA", "BBB", 3, 4, 0))) == {
        "AAA": 3, "BBB": 4, QNX: 10_060_000 * gwei}
    assert app.tx_outflows(signed(BOB, 0, Swap("BBB", "AAA", 9, 0, 5))) == {"BBB": 9, QNX: 5000 * gwei}
    assert app.tx_outflows(signed(BOB, 0, SwapRoute(("CCC", "AAA", "BBB"), 9, 0, 5))) == {"CCC": 9, QNX: 10_000 * gwei}
    assert app.tx_outflows(signed(BOB, 0, RewardsClaim("AAA", "BBB"))) == {QNX: 3000 * gwei}


def test_genesis_json_round_trips_reward_params_and_old_json_still_loads():
    from state.genesis import Genesis

    g = genesis()
    assert Genesis.from_json(g.to_json()) == g
    import json

    obj = json.loads(g.to_json())
    del obj["params"]["reward_authority"], obj["params"]["pool_reward_rates"]
    for kind in ("pool_create", "swap", "batch"):
        del obj["params"]["gas"][kind]
    old = Genesis.from_json(json.dumps(obj))
    assert old.params.reward_authority == bytes(20) and old.params.pool_reward_rates == {}
    assert old.params.gas_for(Swap.KIND) == 5000
