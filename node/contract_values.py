"""Contract values between JSON and the chain's canonical msgpack (state.codec): a leaf module.

Arguments (``qenex_callContract``'s ``args``, the CLI's ``--args`` and
``--init``) are JSON converted once, here, to the msgpack a contract reads
through the host API (``arg_u64``, ``arg_bytes``, ``arg_address`` ...):

* a JSON integer is an integer (in [-2**63, 2**128)); ``true``/``false`` are
  booleans, ``null`` is nil; a JSON number with a fraction or an exponent is
  refused (the codec has no floats);
* a string ``"0x"`` followed by an even number of hex digits is **bytes**
  (``"0x"`` alone: empty bytes); any other string is text (UTF-8).  A string
  that starts with ``0x`` but is not hex is refused rather than guessed at:
  text that looks like hex cannot be passed (a contract's ``arg_bytes``
  reads text and bytes alike, so send the bytes you mean);
* an array is an array, an object a map with text keys.

A contract's output goes the other way (``result``): bytes as 0x-hex text,
integers as JSON numbers while they are exact in a double (|n| < 2**53) and as
decimal strings beyond, maps with bytes keys keyed by their 0x-hex.  That
rendering is for reading: ``output`` (the raw msgpack, hex) is the exact
value.
"""

from __future__ import annotations

from typing import Any

from node.errors import NodeError
from state.codec import MAX_DEPTH, decode, encode
from state.crypto import address_to_text
from state.errors import DecodeError, EncodeError
from state.payloads import MAX_ARGS_BYTES
from state.transactions import MAX_OUTPUT_BYTES, Event

EMPTY_ARGS = encode([])  # what a call without arguments carries: an empty array (args are 1+ bytes)
MAX_EXACT_JSON_INT = 2**53 - 1
_HEX = frozenset("0123456789abcdefABCDEF")


class ContractValueError(NodeError):
    """A JSON value that is no contract argument (the message names where and why)."""


def _from_json(value: Any, where: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise ContractValueError(f"{where}: nests more than {MAX_DEPTH} arrays or objects deep")
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        if not -(2**63) <= value < 2**128:
            raise ContractValueError(f"{where}: integer {value} is outside [-2**63, 2**128)")
        return value
    if isinstance(value, float):
        raise ContractValueError(f"{where}: {value!r} is not an integer (contract values have no floats)")
    if isinstance(value, str):
        if value[:2] in ("0x", "0X"):
            digits = value[2:]
            if len(digits) % 2 or not set(digits) <= _HEX:
                raise ContractValueError(f"{where}: {value[:40]!r} starts with 0x but is not hex bytes "
                                         "(0x + an even number of hex digits)")
            return bytes.fromhex(digits)
        return value
    if isinstance(value, list):
        return [_from_json(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if isinstance(value, dict):
        return {str(k): _from_json(v, f"{where}.{k}"[:200], depth + 1) for k, v in value.items()}
    raise ContractValueError(f"{where}: {type(value).__name__} is not a JSON value")


def args_from_json(value: Any, what: str = "args") -> bytes:
    """Canonical msgpack of a JSON value (None: no arguments, the empty array); at most MAX_ARGS_BYTES."""
    if value is None:
        return EMPTY_ARGS
    try:
        raw = encode(_from_json(value, what, 0))
    except EncodeError as exc:  # text that is not UTF-8 (a lone surrogate), a map of mixed keys ...
        raise ContractValueError(f"{what}: not encodable: {exc}") from None
    if len(raw) > MAX_ARGS_BYTES:
        raise ContractValueError(f"{what}: {len(raw)} bytes of msgpack, more than the limit of {MAX_ARGS_BYTES}")
    return raw


def to_json(value: Any) -> Any:
    """A decoded contract value as JSON (see the module docstring); depth is the codec's, at most 32."""
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if abs(value) <= MAX_EXACT_JSON_INT else str(value)
    if isinstance(value, list):
        return [to_json(item) for item in value]
    if isinstance(value, dict):
        return {("0x" + k.hex()) if isinstance(k, bytes) else k: to_json(v) for k, v in value.items()}
    raise TypeError(f"{type(value).__name__} is not a decoded contract value")


def output_to_json(raw: bytes) -> Any:
    """A contract's output (canonical msgpack, as state checked it) as JSON; None when empty or not msgpack."""
    if not raw:
        return None
    try:
        return to_json(decode(raw, max_bytes=MAX_OUTPUT_BYTES, max_objects=MAX_OUTPUT_BYTES))
    except DecodeError:  # state checks outputs with these limits; a stored one always decodes
        return None


def topic_text(topic: bytes) -> str | None:
    """An event topic as text when it is printable UTF-8 (the usual case: a name), else None."""
    try:
        text = topic.decode("utf-8")
    except UnicodeDecodeError:
        return None
    return text if text.isprintable() else None


def event_to_json(event: Event) -> dict[str, Any]:
    """``{contract, topic, topic_hex, data}``: ``topic`` is the text (None if not printable UTF-8)."""
    return {"contract": address_to_text(event.contract), "topic": topic_text(event.topic),
            "topic_hex": "0x" + event.topic.hex(), "data": "0x" + event.data.hex()}


__all__ = ["EMPTY_ARGS", "ContractValueError", "args_from_json", "to_json", "output_to_json", "topic_text",
           "event_to_json"]
