"""The one canonical msgpack codec of the chain.

Every hashed or signed structure is encoded here, so two honest nodes always
produce the same bytes for the same value, and any byte string has at most one
meaning.  Rules:

* integers in ``[-2**63, 2**64)`` use msgpack's smallest integer form; integers
  in ``[2**64, 2**128)`` (amounts) use ext type ``EXT_BIGUINT`` holding minimal
  big-endian bytes; anything else is refused;
* ``bytes`` are bin, ``str`` is str, lists and tuples are arrays, ``None`` is
  nil, booleans are booleans;
* maps are allowed only with ``str`` or ``bytes`` keys and are emitted in sorted
  key order; floats are refused everywhere;
* decoding re-encodes and compares, so any non-minimal or non-canonical input
  (a wide int form, unsorted map keys, a bin8 where a fixstr should be, ...) is
  rejected, as are trailing bytes and oversize containers.
"""

from __future__ import annotations

from typing import Any

import msgpack

from state.errors import DecodeError, EncodeError

EXT_BIGUINT = 1
MSGPACK_INT_MAX = 2**64 - 1
MAX_UINT128 = 2**128 - 1

# Limits for untrusted input.  A block of 10,000 transactions stays well within.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
_MAX_CONTAINER_LEN = 100_000


def _default(obj: Any) -> Any:
    if isinstance(obj, int) and not isinstance(obj, bool):
        if MSGPACK_INT_MAX < obj <= MAX_UINT128:
            return msgpack.ExtType(EXT_BIGUINT, obj.to_bytes((obj.bit_length() + 7) // 8, "big"))
        raise EncodeError(f"integer {obj} is outside the encodable range [-2**63, 2**128)")
    if isinstance(obj, float):
        raise EncodeError(f"floats are not encodable: {obj!r}")
    raise EncodeError(f"type {type(obj).__name__} is not encodable")


def _check(obj: Any) -> None:
    """Refuse what msgpack would silently accept but we do not allow."""
    if isinstance(obj, float):
        raise EncodeError(f"floats are not encodable: {obj!r}")
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, (str, bytes)):
                raise EncodeError(f"map key {key!r} is not str or bytes")
            _check(value)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            _check(item)


def _sorted_maps(obj: Any) -> Any:
    if isinstance(obj, dict):
        keys = list(obj)
        if any(type(k) is not type(keys[0]) for k in keys):
            raise EncodeError("map keys must all be str or all be bytes")
        return {k: _sorted_maps(obj[k]) for k in sorted(keys)}
    if isinstance(obj, (list, tuple)):
        return [_sorted_maps(item) for item in obj]
    return obj


def encode(obj: Any) -> bytes:
    """Canonical bytes of ``obj``; raises EncodeError for anything not representable."""
    _check(obj)
    try:
        return msgpack.packb(
            _sorted_maps(obj),
            use_bin_type=True,
            strict_types=False,
            default=_default,
            use_single_float=False,
        )
    except (OverflowError, TypeError, ValueError) as exc:
        raise EncodeError(str(exc)) from exc


def _ext_hook(code: int, data: bytes) -> int:
    if code != EXT_BIGUINT:
        raise DecodeError(f"unknown ext type {code}")
    if not data or data[0] == 0:
        raise DecodeError("big integer is not minimally encoded")
    value = int.from_bytes(data, "big")
    if value > MAX_UINT128:
        raise DecodeError(f"integer {value} exceeds 2**128 - 1, the largest amount")
    if value <= MSGPACK_INT_MAX:
        raise DecodeError(f"big integer {value} fits a msgpack integer: non-canonical ext encoding")
    return value


def decode(data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Any:
    """Decode canonical bytes; raises DecodeError on anything else.

    Arrays come back as lists, bin as bytes, str as str.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_bytes:
        raise DecodeError(f"input of {len(data)} bytes exceeds the limit of {max_bytes}")
    if not data:
        raise DecodeError("empty input")
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            ext_hook=_ext_hook,
            max_bin_len=max_bytes,
            max_str_len=max_bytes,
            max_array_len=_MAX_CONTAINER_LEN,
            max_map_len=_MAX_CONTAINER_LEN,
            max_ext_len=32,  # room to say that a 17-byte amount overflows, not just 'too long'
        )
    except DecodeError:
        raise
    except msgpack.ExtraData as exc:
        raise DecodeError("trailing bytes after the encoded value") from exc
    except (ValueError, TypeError, msgpack.UnpackException, UnicodeDecodeError, RecursionError) as exc:
        raise DecodeError(f"malformed msgpack: {exc}") from exc
    try:
        again = encode(obj)
    except EncodeError as exc:
        raise DecodeError(f"value not allowed: {exc}") from exc
    if again != data:
        raise DecodeError("non-canonical encoding")
    return obj
