"""Token amounts: integers of base units, converted exactly to and from text.

No floats: "12.5" with 6 decimals is 12_500_000 base units, computed on
digits.
"""

from __future__ import annotations

import re

from state.errors import AmountError, AmountOverflow, TooManyDecimals

MAX_AMOUNT = 2**128 - 1
QNX = "QNX"
QNX_DECIMALS = 18
MAX_DECIMALS = 36

_AMOUNT_TEXT = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


def _check_decimals(decimals: int) -> None:
    if isinstance(decimals, bool) or not isinstance(decimals, int) or not 0 <= decimals <= MAX_DECIMALS:
        raise AmountError(f"decimals {decimals!r} is outside [0, {MAX_DECIMALS}]")


def parse_amount(text: str, decimals: int) -> int:
    """``"12.5"`` → base units, exactly.  Refuses signs, exponents and excess precision."""
    _check_decimals(decimals)
    match = _AMOUNT_TEXT.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise AmountError(f"{text!r} is not a decimal amount like 12 or 12.5")
    whole, fraction = match.group(1), (match.group(2) or "").rstrip("0")
    if len(fraction) > decimals:
        raise TooManyDecimals(text, decimals)
    value = int(whole) * 10**decimals + int(fraction.ljust(decimals, "0") or "0")
    if value > MAX_AMOUNT:
        raise AmountOverflow(text.strip(), MAX_AMOUNT)
    return value


def format_amount(value: int, decimals: int) -> str:
    """Base units → exact decimal text without trailing zeros (``12500000, 6`` → ``"12.5"``)."""
    _check_decimals(decimals)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise AmountError(f"amount {value!r} is not a non-negative integer")
    if value > MAX_AMOUNT:
        raise AmountOverflow(value, MAX_AMOUNT)
    whole, fraction = divmod(value, 10**decimals)
    digits = str(fraction).rjust(decimals, "0").rstrip("0") if decimals else ""
    return f"{whole}.{digits}" if digits else str(whole)
