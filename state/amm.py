"""Constant-product pool math, exactly as Uniswap V2, on plain integers.

Pure functions: no state, no I/O.  Every result is floored exactly as the
Solidity code floors it, and every function refuses (with an ExecutionFailed
subclass) what the Uniswap contracts revert on.  Python integers do not wrap;
callers check results against MAX_AMOUNT where they are stored.

Prices are fixed point with 256 fractional bits (``PRICE_SHIFT``), wider than
Uniswap's UQ112x112 because our reserves go up to 2**128 − 1: any price
between 2**-128 and 2**128 keeps at least 38 significant decimal digits.
"""

from __future__ import annotations

from math import isqrt

from state.amounts import MAX_AMOUNT
from state.errors import BalanceOverflow, InsufficientInput, InsufficientLiquidity

FEE_NUMERATOR = 997  # 0.3% fee: 997/1000 of the input trades
FEE_DENOMINATOR = 1000
MINIMUM_LIQUIDITY = 1000  # shares locked forever at the first mint
PRICE_SHIFT = 256  # fractional bits of a fixed-point price
REWARD_SHIFT = 128  # fractional bits of the reward-per-share index
BPS = 10_000


def amount_out(amount_in: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountOut: ``floor(in·997·R_out / (R_in·1000 + in·997))``."""
    if amount_in <= 0:
        raise InsufficientInput(amount_in)
    if reserve_in <= 0 or reserve_out <= 0:
        raise InsufficientLiquidity(f"reserves {reserve_in} and {reserve_out} must both be positive")
    with_fee = amount_in * FEE_NUMERATOR
    return with_fee * reserve_out // (reserve_in * FEE_DENOMINATOR + with_fee)


def amount_in_for(amount_out_: int, reserve_in: int, reserve_out: int) -> int:
    """UniswapV2Library.getAmountIn: an input that buys ``amount_out_``.

    It is the smallest such input, except when the exact quotient is whole:
    Uniswap's unconditional ``+ 1`` then asks for one unit more, and we keep
    its rounding so quotes match the reference.
    """
    if amount_out_ <= 0:
        raise InsufficientInput(amount_out_)
    if reserve_in <= 0 or amount_out_ >= reserve_out:
        raise InsufficientLiquidity(f"cannot buy {amount_out_} from a reserve of {reserve_out}")
    return reserve_in * amount_out_ * FEE_DENOMINATOR // ((reserve_out - amount_out_) * FEE_NUMERATOR) + 1


def k_holds(balance0: int, balance1: int, amount0_in: int, amount1_in: int, reserve0: int, reserve1: int) -> bool:
    """UniswapV2Pair.swap's check: fee-adjusted balances keep ``k`` at least the old ``R0·R1``."""
    adjusted0 = balance0 * FEE_DENOMINATOR - amount0_in * (FEE_DENOMINATOR - FEE_NUMERATOR)
    adjusted1 = balance1 * FEE_DENOMINATOR - amount1_in * (FEE_DENOMINATOR - FEE_NUMERATOR)
    return adjusted0 * adjusted1 >= reserve0 * reserve1 * FEE_DENOMINATOR**2


def flash_repayment(borrowed: int) -> int:
    """What a flash borrow of ``borrowed`` must return: ``ceil(borrowed·1000/997)``.

    The smallest repayment for which Uniswap V2's fee-adjusted ``k`` check
    passes on a same-token flash swap (the optimistic test cases).
    """
    return -(-borrowed * FEE_DENOMINATOR // FEE_NUMERATOR)


def quote(amount_a: int, reserve_a: int, reserve_b: int) -> int:
    """UniswapV2Library.quote: ``a·R_b / R_a``, the amount of B worth ``a`` at the spot price."""
    if amount_a <= 0:
        raise InsufficientInput(amount_a)
    if reserve_a <= 0 or reserve_b <= 0:
        raise InsufficientLiquidity(f"reserves {reserve_a} and {reserve_b} must both be positive")
    return amount_a * reserve_b // reserve_a


def optimal_deposit(desired_a: int, desired_b: int, reserve_a: int, reserve_b: int) -> tuple[int, int]:
    """UniswapV2Router02._addLiquidity: the largest deposit at the pool's ratio within the desired amounts."""
    if reserve_a == 0 and reserve_b == 0:
        return desired_a, desired_b
    b_optimal = quote(desired_a, reserve_a, reserve_b)
    if b_optimal <= desired_b:
        return desired_a, b_optimal
    return quote(desired_b, reserve_b, reserve_a), desired_b


def initial_shares(amount_a: int, amount_b: int) -> int:
    """Shares minted to the first depositor: ``isqrt(a·b) − 1000`` (1000 more are locked)."""
    shares = isqrt(amount_a * amount_b) - MINIMUM_LIQUIDITY
    if shares <= 0:
        raise InsufficientLiquidity(f"isqrt({amount_a}·{amount_b}) does not exceed the {MINIMUM_LIQUIDITY} locked shares")
    return shares


def later_shares(amount_a: int, amount_b: int, reserve_a: int, reserve_b: int, total_shares: int) -> int:
    """``min(a·S/R_a, b·S/R_b)``."""
    shares = min(amount_a * total_shares // reserve_a, amount_b * total_shares // reserve_b)
    if shares <= 0:
        raise InsufficientLiquidity(f"a deposit of {amount_a} and {amount_b} mints no shares")
    return shares


def burn_amounts(shares: int, reserve_a: int, reserve_b: int, total_shares: int) -> tuple[int, int]:
    """Pro-rata withdrawal: ``(s·R_a/S, s·R_b/S)``."""
    a, b = shares * reserve_a // total_shares, shares * reserve_b // total_shares
    if a <= 0 or b <= 0:
        raise InsufficientLiquidity(f"burning {shares} of {total_shares} shares returns nothing of one token")
    return a, b


def checked(what: str, value: int) -> int:
    """``value`` if it fits an amount, else BalanceOverflow naming ``what``."""
    if value > MAX_AMOUNT:
        raise BalanceOverflow(what, value, MAX_AMOUNT)
    return value


def price_fixed(reserve_base: int, reserve_quote: int) -> int:
    """Spot price of the base token in the quote token, fixed point with PRICE_SHIFT fractional bits."""
    return (reserve_quote << PRICE_SHIFT) // reserve_base


def price_impact_bps(amount_in: int, reserve_in: int) -> int:
    """How far a swap of ``amount_in`` moves the price, in basis points, the 0.3% fee excluded.

    For the V2 formula the execution price after the fee is the spot price
    times ``R_in·1000 / (R_in·1000 + in·997)``, so the impact is
    ``in·997 / (R_in·1000 + in·997)``; rounded up, so a nonzero impact never shows as 0.
    """
    with_fee = amount_in * FEE_NUMERATOR
    denominator = reserve_in * FEE_DENOMINATOR + with_fee
    return -(-with_fee * BPS // denominator)


def decimal_ratio(numerator: int, denominator: int, digits: int = 40) -> str:
    """``numerator/denominator`` as a decimal string with ``digits`` significant digits, truncated.

    Exact integer arithmetic: no floats.  ``"0"`` for a zero numerator.
    """
    if denominator <= 0 or numerator < 0:
        raise ValueError(f"ratio {numerator}/{denominator} is not a non-negative number")
    if numerator == 0:
        return "0"
    whole = numerator // denominator
    if whole:
        int_digits = len(str(whole))
        frac_digits = max(digits - int_digits, 0)
    else:
        # leading zeros after the point do not count as significant digits
        zeros = 0
        probe = numerator * 10
        while probe < denominator:
            probe *= 10
            zeros += 1
        frac_digits = zeros + digits
    scaled = numerator * 10**frac_digits // denominator
    text = str(scaled).rjust(frac_digits + 1, "0")
    if frac_digits == 0:
        return text
    head, tail = text[:-frac_digits], text[-frac_digits:]
    tail = tail.rstrip("0")
    return head if not tail else f"{head}.{tail}"


def fixed_to_decimal(value: int, shift: int = PRICE_SHIFT, digits: int = 40) -> str:
    """A fixed-point value with ``shift`` fractional bits as a decimal string."""
    return decimal_ratio(value, 1 << shift, digits)
