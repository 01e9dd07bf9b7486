"""Parameter parsing for the JSON-RPC method tables: a leaf module.

Every ``qenex_*`` parameter is validated at the boundary by one of these
functions, and a bad one is -32602 with a message naming it and showing
(briefly) what was sent.  They import only ``node.jsonrpc`` and ``state``, so
every RPC module (the method tables, the risk admin server) can use them
without importing another RPC module.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from node.jsonrpc import HEIGHT_PRUNED, NOT_FOUND, RPCError, brief, invalid_params
from state.amounts import MAX_AMOUNT
from state.crypto import address_from_text
from state.errors import HeightAboveHead, HeightPruned, StateError
from state.payloads import check_symbol, pool_id

if TYPE_CHECKING:
    from state.app import Application
    from state.history import StateView

MAX_HEIGHT = 2**64 - 1  # heights are u64 in the store's keys
MAX_ADDRESS_CHARS = 90  # bech32's own limit
MAX_AMOUNT_DIGITS = 40  # 2**128 - 1 has 39


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


def parse_hex(value: Any, name: str, *, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise invalid_params(f"{name} must be a 0x-hex string, got {type(value).__name__}")
    text = value[2:] if value.startswith(("0x", "0X")) else value
    if length is not None and len(text) != 2 * length:
        raise invalid_params(f"{name} must be {length} bytes (0x + {2 * length} hex digits), got {len(text)} characters")
    if not text.isascii():
        raise invalid_params(f"{name} is not valid hex: {brief(value)}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise invalid_params(f"{name} is not valid hex: {brief(value)}") from None


def parse_address(value: Any, name: str = "address") -> bytes:
    if not isinstance(value, str):
        raise invalid_params(f"{name} must be a qnx1... address string, got {type(value).__name__}")
    if len(value) > MAX_ADDRESS_CHARS or not value.isascii():
        raise invalid_params(f"{name} {brief(value)} is not a qnx1... address")
    try:
        return address_from_text(value)
    except StateError as exc:
        raise invalid_params(f"{name}: {exc}") from None


def parse_int(value: Any, name: str, low: int, high: int) -> int:
    """An integer (or a decimal string of at most 20 ASCII digits) in [low, high]."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise invalid_params(f"{name} must be an integer in [{low}, {high}], got {brief(value)}")
    return value


def parse_height(value: Any, name: str = "height") -> int:
    """A block height: an integer or a decimal string of ASCII digits, in [0, 2**64 - 1]."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_HEIGHT:
        raise invalid_params(f'{name} must be an integer in [0, 2**64 - 1] or "latest", got {brief(value)}')
    return value


def state_at(app: "Application", height: Any, name: str = "height") -> "StateView":
    """The committed state at ``height`` (None or "latest": the head): -32602 for a malformed
    height, -32004 above the head, -32006 below the oldest height kept (``data`` names it)."""
    number = app.height if height is None or height == "latest" else parse_height(height, name)
    try:
        return app.at(number)
    except HeightAboveHead as exc:
        raise RPCError(NOT_FOUND, f"{name}: {exc}", {"height": number, "head": exc.head}) from None
    except HeightPruned as exc:
        raise RPCError(HEIGHT_PRUNED, f"{name}: {exc}",
                       {"height": number, "oldest_height": exc.oldest, "head": exc.head}) from None


def parse_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_params(f"{name} must be true or false, got {brief(value)}")
    return value


def parse_symbol(value: Any, name: str) -> str:
    try:
        return check_symbol(value)
    except StateError:
        raise invalid_params(f"{name} {brief(value)} is not a token symbol (1-12 characters of A-Z and 0-9)") from None


def parse_pool(value: Any, name: str = "pool") -> str:
    """A pool id ``"AAA/BBB"`` (either order), returned as the sorted id."""
    if not isinstance(value, str) or value.count("/") != 1:
        raise invalid_params(f'{name} must be a pool id like "AAA/BBB", got {brief(value)}')
    a, b = value.split("/")
    a, b = parse_symbol(a, name), parse_symbol(b, name)
    if a == b:
        raise invalid_params(f"{name} {brief(value)} names the same token twice")
    return pool_id(a, b)


def parse_amount_units(value: Any, name: str) -> int:
    """An amount of base units: an integer or a decimal string, in [1, 2**128 - 1]."""
    if isinstance(value, int) and not isinstance(value, bool):
        amount = value
    elif isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= MAX_AMOUNT_DIGITS:
        amount = int(value)
    else:
        raise invalid_params(f"{name} must be a decimal string of base units, got {brief(value)}")
    if not 1 <= amount <= MAX_AMOUNT:
        raise invalid_params(f"{name} {amount} is outside [1, 2**128 - 1]")
    return amount
