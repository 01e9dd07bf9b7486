"""Pool math against Uniswap V2's published cases (v2-core test/UniswapV2Pair.spec.ts), exactly."""

from __future__ import annotations

from fractions import Fraction
from math import isqrt

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from state import amm
from state.errors import InsufficientInput, InsufficientLiquidity

E18 = 10**18


# [swapAmount, token0Amount, token1Amount, expectedOutputAmount]; plain numbers are whole tokens
SWAP_CASES = [
    (1, 5, 10, 1662497915624478906),
    (1, 10, 5, 453305446940074565),
    (2, 5, 10, 2851015155847869602),
    (2, 10, 5, 831248957812239453),
    (1, 10, 10, 906610893880149131),
    (1, 100, 100, 987158034397061298),
    (1, 1000, 1000, 996006981039903216),
]
# [outputAmount, token0Amount, token1Amount, inputAmount]
OPTIMISTIC_CASES = [
    (997000000000000000, 5 * E18, 10 * E18, 1 * E18),
    (997000000000000000, 10 * E18, 5 * E18, 1 * E18),
    (997000000000000000, 5 * E18, 5 * E18, 1 * E18),
    (1 * E18, 5 * E18, 5 * E18, 1003009027081243732),
]


@pytest.mark.parametrize("swap, r0, r1, expected", SWAP_CASES)
def test_uniswap_swap_cases(swap, r0, r1, expected):
    swap, r0, r1 = swap * E18, r0 * E18, r1 * E18
    assert amm.amount_out(swap, r0, r1) == expected
    # the pair's own K check accepts exactly this output and refuses one more
    assert amm.k_holds(r0 + swap, r1 - expected, swap, 0, r0, r1)
    assert not amm.k_holds(r0 + swap, r1 - expected - 1, swap, 0, r0, r1)


@pytest.mark.parametrize("output, r0, r1, inp", OPTIMISTIC_CASES)
def test_uniswap_optimistic_cases(output, r0, r1, inp):
    # token0 is sent in, then `output` of token0 taken out: a same-token flash swap
    assert amm.k_holds(r0 + inp - output, r1, inp, 0, r0, r1)
    assert not amm.k_holds(r0 + inp - output - 1, r1, inp, 0, r0, r1)
    # our flash-loan rule is the same boundary: output is borrowable for inp, output + 1 is not
    assert amm.flash_repayment(output) <= inp < amm.flash_repayment(output + 1)


def test_first_mint_of_10000_and_5_tokens():
    shares = amm.initial_shares(10_000 * E18, 5 * E18)
    assert shares == isqrt(50_000 * 10**36) - 1000 == 223606797749978969640 - 1000


def test_refusals():
    with pytest.raises(InsufficientInput):
        amm.amount_out(0, 10, 10)
    with pytest.raises(InsufficientLiquidity):
        amm.amount_out(1, 0, 10)
    with pytest.raises(InsufficientLiquidity):
        amm.initial_shares(1000, 1000)  # isqrt = 1000: nothing left after the locked shares
    with pytest.raises(InsufficientLiquidity):
        amm.burn_amounts(1, 1, 10**9, 10**6)


def test_decimal_ratio_is_exact_to_40_significant_digits():
    assert amm.decimal_ratio(1, 3) == "0." + "3" * 40
    assert amm.decimal_ratio(2, 1) == "2"
    assert amm.decimal_ratio(10**39 + 1, 10**39) == "1." + "0" * 38 + "1"
    tiny = amm.decimal_ratio(1, 7 * 10**30)
    assert tiny == "0." + "0" * 30 + "142857" * 6 + "1428"  # 40 significant digits after the zeros
    text = amm.decimal_ratio(2**127, 3)
    assert len(text.replace(".", "")) == 40
    assert Fraction(text) <= Fraction(2**127, 3) < Fraction(text) + Fraction(1, 10)


@given(st.integers(1, 2**128 - 1), st.integers(1, 2**128 - 1))
def test_fixed_point_price_keeps_38_significant_digits(r0, r1):
    price = amm.price_fixed(r0, r1)
    exact = Fraction(r1, r0)
    approx = Fraction(price, 1 << amm.PRICE_SHIFT)
    assert approx <= exact
    assert (exact - approx) / exact < Fraction(1, 10**38)
    text = amm.decimal_ratio(r1, r0)
    assert (exact - Fraction(text)) / exact < Fraction(1, 10**38)


@given(st.integers(1, 2**100), st.integers(1, 2**100), st.integers(1, 2**100))
@example(amount_in=1, r_in=1, r_out=213988535)  # whole quotient: getAmountIn asks for 2
def test_amount_out_never_decreases_k_and_matches_the_closed_form(amount_in, r_in, r_out):
    out = amm.amount_out(amount_in, r_in, r_out)
    assert out < r_out
    assert (r_in + amount_in) * (r_out - out) >= r_in * r_out
    assert out == (amount_in * 997 * r_out) // (r_in * 1000 + amount_in * 997)
    if out:
        needed = amm.amount_in_for(out, r_in, r_out)
        assert amm.amount_out(needed, r_in, r_out) >= out
        # Uniswap's getAmountIn rounds up by one unit when the quotient is whole.
        assert needed <= amount_in + 1
