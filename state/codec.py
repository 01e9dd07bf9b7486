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
  key order; floats are refused everywhere, and so is every ext type but
  ``EXT_BIGUINT`` (msgpack's Timestamp, ext -1, included);
* nesting is at most ``MAX_DEPTH`` containers deep, both ways;
* decoding re-encodes and compares, so any non-minimal or non-canonical input
  (a wide int form, unsorted map keys, a bin8 where a fixstr should be, ...) is
  rejected, as are trailing bytes and oversize containers.

Decoding untrusted bytes is bounded before any object is built: a pre-scan of
the msgpack byte structure (``scan``) counts objects and nesting depth and
stops at the first limit it crosses (``DecodeLimitExceeded``).  Without it, 8
MiB of nested empty arrays is 8 million Python lists: seconds of CPU and over
a gigabyte of memory.  The scan costs about 0.2-0.3 µs per object and
allocates nothing per object.  Call sites that know their message pass tight
limits (``max_bytes``, ``max_objects``, ``max_depth``); the defaults fit the
largest legitimate block.
"""

from __future__ import annotations

from typing import Any

import msgpack

from state.errors import DecodeError, DecodeLimitExceeded, EncodeError

EXT_BIGUINT = 1
MSGPACK_INT_MAX = 2**64 - 1
MAX_UINT128 = 2**128 - 1

# Limits for untrusted input.  A block of 10,000 transactions stays well within.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
# A block of 5,000 transactions that are each a batch of 16 four-hop swaps
# (the densest valid transaction, about 200 objects) holds about 1.0 million.
DEFAULT_MAX_OBJECTS = 2**21
# Nothing on the chain nests deeper than about 10 (block > txs > tx > body >
# payload > ops > op > payload > path); far below Python's recursion limit and
# msgpack's own (511).
MAX_DEPTH = 32
DEFAULT_MAX_DEPTH = MAX_DEPTH
_MAX_CONTAINER_LEN = 100_000

_PLAIN_SCALARS = frozenset({int, str, bytes, bool, type(None)})


def _default(obj: Any) -> Any:
    if isinstance(obj, int) and not isinstance(obj, bool):
        if MSGPACK_INT_MAX < obj <= MAX_UINT128:
            return msgpack.ExtType(EXT_BIGUINT, obj.to_bytes((obj.bit_length() + 7) // 8, "big"))
        raise EncodeError(f"integer {obj} is outside the encodable range [-2**63, 2**128)")
    if isinstance(obj, float):
        raise EncodeError(f"floats are not encodable: {obj!r}")
    raise EncodeError(f"type {type(obj).__name__} is not encodable")


def _check(obj: Any) -> bool:
    """Refuse what msgpack would silently accept but we do not allow; True if
    ``obj`` holds a map (which then needs its keys sorted).

    Iterative, level by level, so depth costs no Python stack: deep input is
    an EncodeError, never a RecursionError.
    """
    has_map = False
    depth = 0
    level: list[Any] = [obj]
    while level:
        below: list[Any] = []
        containers = False
        for value in level:
            kind = type(value)
            if kind in _PLAIN_SCALARS:
                continue
            if kind is list or kind is tuple:
                containers = True
                below.extend(value)
            elif isinstance(value, (msgpack.ExtType, msgpack.Timestamp)):  # ExtType is a tuple
                raise EncodeError(f"{kind.__name__} is not encodable: only integers use an ext type")
            elif isinstance(value, (list, tuple)):
                containers = True
                below.extend(value)
            elif isinstance(value, dict):
                containers = has_map = True
                for key in value:
                    if not isinstance(key, (str, bytes)):
                        raise EncodeError(f"map key {key!r} is not str or bytes")
                below.extend(value.values())
            elif isinstance(value, float):
                raise EncodeError(f"floats are not encodable: {value!r}")
        if containers:
            depth += 1
            if depth > MAX_DEPTH:
                raise EncodeError(f"value nests more than {MAX_DEPTH} containers deep")
        level = below
    return has_map


def _sorted_maps(obj: Any) -> Any:
    # Recursion is safe here: _check has bounded the depth to MAX_DEPTH.
    if isinstance(obj, dict):
        keys = list(obj)
        if any(type(k) is not type(keys[0]) for k in keys):
            raise EncodeError("map keys must all be str or all be bytes")
        return {k: _sorted_maps(obj[k]) for k in sorted(keys)}
    if isinstance(obj, (list, tuple)):
        return [_sorted_maps(item) for item in obj]
    return obj


def _pack(obj: Any) -> bytes:
    try:
        return msgpack.packb(
            obj,
            use_bin_type=True,
            strict_types=False,
            default=_default,
            use_single_float=False,
        )
    except (OverflowError, TypeError, ValueError) as exc:
        raise EncodeError(str(exc)) from exc


def encode(obj: Any) -> bytes:
    """Canonical bytes of ``obj``; raises EncodeError for anything not representable."""
    if _check(obj):
        obj = _sorted_maps(obj)
    return _pack(obj)


# -- the pre-scan -----------------------------------------------------------------

_SCALAR, _ARRAY, _MAP, _SIZED, _EXT, _FIXEXT, _REFUSED = range(7)


def _tag_table() -> tuple[tuple[int, Any], ...]:
    """First byte -> (kind, argument): the whole msgpack format in one table.

    _SCALAR: total size; _ARRAY/_MAP: -count for fix forms, else the width of
    the count; _SIZED (str, bin) and _EXT: the width of the length; _FIXEXT:
    the data length; _REFUSED: why.
    """
    table: list[tuple[int, Any]] = [(_REFUSED, "")] * 256
    for b in [*range(0x00, 0x80), *range(0xE0, 0x100), 0xC0, 0xC2, 0xC3]:
        table[b] = (_SCALAR, 1)
    for b in range(0xA0, 0xC0):
        table[b] = (_SCALAR, 1 + (b & 0x1F))
    for b in range(0x80, 0x90):
        table[b] = (_MAP, -(b & 0x0F))
    for b in range(0x90, 0xA0):
        table[b] = (_ARRAY, -(b & 0x0F))
    for b, width in ((0xCC, 1), (0xCD, 2), (0xCE, 4), (0xCF, 8), (0xD0, 1), (0xD1, 2), (0xD2, 4), (0xD3, 8)):
        table[b] = (_SCALAR, 1 + width)
    for b, width in ((0xC4, 1), (0xC5, 2), (0xC6, 4), (0xD9, 1), (0xDA, 2), (0xDB, 4)):
        table[b] = (_SIZED, width)
    for b, width in ((0xC7, 1), (0xC8, 2), (0xC9, 4)):
        table[b] = (_EXT, width)
    for b, size in ((0xD4, 1), (0xD5, 2), (0xD6, 4), (0xD7, 8), (0xD8, 16)):
        table[b] = (_FIXEXT, size)
    table[0xDC], table[0xDD] = (_ARRAY, 2), (_ARRAY, 4)
    table[0xDE], table[0xDF] = (_MAP, 2), (_MAP, 4)
    table[0xCA], table[0xCB] = (_REFUSED, "float32"), (_REFUSED, "float64")
    table[0xC1] = (_REFUSED, "the reserved byte 0xc1")
    return tuple(table)


_TAGS = _tag_table()


def scan(data: bytes, *, max_objects: int = DEFAULT_MAX_OBJECTS, max_depth: int = DEFAULT_MAX_DEPTH) -> tuple[int, bool]:
    """Walk the msgpack structure of ``data`` without building anything.

    Returns (objects, has_map).  Raises DecodeLimitExceeded at the first
    object over ``max_objects``, the first container deeper than
    ``max_depth`` or longer than the container limit; DecodeError for floats,
    any ext type but EXT_BIGUINT, truncated input and trailing bytes.
    """
    end = len(data)
    tags = _TAGS
    from_bytes = int.from_bytes
    pos = 0
    objects = 0
    has_map = False
    open_counts: list[int] = []  # items still due in each enclosing container
    left = 1  # items still due at the current level
    while True:
        if pos >= end:
            raise DecodeError(f"truncated msgpack: input ends at byte {end} inside a value")
        kind, arg = tags[data[pos]]
        objects += 1
        if objects > max_objects:
            raise DecodeLimitExceeded("object count", objects, max_objects, at_least=True)
        if kind == _SCALAR:
            pos += arg
        elif kind == _ARRAY or kind == _MAP:
            if arg < 0:
                count = -arg
                pos += 1
            else:
                count = from_bytes(data[pos + 1 : pos + 1 + arg], "big")
                pos += 1 + arg
                if count > _MAX_CONTAINER_LEN:
                    raise DecodeLimitExceeded("container length", count, _MAX_CONTAINER_LEN)
            if kind == _MAP:
                has_map = True
                count *= 2
            if count:
                # Cheap early refusal: the announced items alone are too many.
                if objects + count > max_objects:
                    raise DecodeLimitExceeded("object count", objects + count, max_objects, at_least=True)
                open_counts.append(left)
                if len(open_counts) > max_depth:
                    raise DecodeLimitExceeded("nesting depth", len(open_counts), max_depth, at_least=True)
                left = count + 1  # +1: the decrement below is for the container itself
        elif kind == _SIZED:
            pos += 1 + arg + from_bytes(data[pos + 1 : pos + 1 + arg], "big")
        elif kind == _EXT or kind == _FIXEXT:
            if kind == _EXT:
                size = from_bytes(data[pos + 1 : pos + 1 + arg], "big")
                pos += 1 + arg
            else:
                size = arg
                pos += 1
            if pos >= end:
                raise DecodeError(f"truncated msgpack: input ends at byte {end} inside an ext header")
            code = data[pos]
            if code != EXT_BIGUINT:
                signed = code - 256 if code > 127 else code
                what = " (msgpack Timestamp)" if signed == -1 else ""
                raise DecodeError(f"unknown ext type {signed}{what}")
            pos += 1 + size
        else:
            raise DecodeError(f"value not allowed: {arg} at byte {pos}")
        left -= 1
        while not left:
            if not open_counts:
                if pos > end:
                    raise DecodeError(f"truncated msgpack: a value runs {pos - end} bytes past the end")
                if pos < end:
                    raise DecodeError(f"trailing bytes after the encoded value: {end - pos}")
                return objects, has_map
            left = open_counts.pop() - 1


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


def decode(
    data: bytes,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_objects: int = DEFAULT_MAX_OBJECTS,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> Any:
    """Decode canonical bytes; raises DecodeError on anything else
    (DecodeLimitExceeded, before building anything, over a limit).

    Arrays come back as lists, bin as bytes, str as str.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    if len(data) > max_bytes:
        raise DecodeLimitExceeded("input bytes", len(data), max_bytes)
    data = bytes(data)
    if not data:
        raise DecodeError("empty input")
    _, has_map = scan(data, max_objects=max_objects, max_depth=min(max_depth, MAX_DEPTH))
    try:
        obj = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=False,
            ext_hook=_ext_hook,
            timestamp=0,  # never reached: the scan refuses ext -1
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
        # Without maps the decoded value holds only what msgpack packs as-is
        # (the scan refused floats and foreign ext types): skip the checks.
        again = encode(obj) if has_map else _pack(obj)
    except EncodeError as exc:
        raise DecodeError(f"value not allowed: {exc}") from exc
    if again != data:
        raise DecodeError("non-canonical encoding")
    return obj


# -- unsigned integers without the generic machinery --------------------------------------
#
# Balances and nonces are read and written several times per transaction, and the generic encode
# and decode (checks, pre-scan, re-encode) cost 1-3 µs each for what is one integer.  These give
# exactly the bytes and values of encode and decode (tests/test_codec.py proves it over the whole
# range) at a tenth of the cost: a form that is not the canonical one goes to decode, which says why.

_UINT_HEADS = ((0xFF, b"\xcc", 1), (0xFFFF, b"\xcd", 2), (0xFFFFFFFF, b"\xce", 4), (MSGPACK_INT_MAX, b"\xcf", 8))


def encode_uint(value: int) -> bytes:
    """``encode(value)`` for an integer in [0, 2**128); EncodeError outside."""
    if type(value) is not int or value < 0:
        raise EncodeError(f"expected an integer in [0, 2**128), got {value!r}"[:200])
    if value < 0x80:
        return bytes((value,))
    for limit, head, width in _UINT_HEADS:
        if value <= limit:
            return head + value.to_bytes(width, "big")
    if value > MAX_UINT128:
        raise EncodeError(f"integer {value} is outside the encodable range [-2**63, 2**128)")
    width = (value.bit_length() + 7) // 8  # 9..16
    body = value.to_bytes(width, "big")
    return (b"\xd8\x01" + body) if width == 16 else (b"\xc7" + bytes((width, EXT_BIGUINT)) + body)


def decode_uint(data: bytes) -> int:
    """``decode(data)`` where the value must be an unsigned integer; DecodeError otherwise."""
    value: Any = None
    if len(data) == 1 and data[0] < 0x80:
        return data[0]
    if 2 <= len(data) <= 19:
        head = data[0]
        if 0xCC <= head <= 0xCF:
            value = int.from_bytes(data[1:], "big")
        elif head == 0xC7 and len(data) >= 3 and data[2] == EXT_BIGUINT:
            value = int.from_bytes(data[3:], "big")
        elif head == 0xD8 and data[1] == EXT_BIGUINT:
            value = int.from_bytes(data[2:], "big")
    if value is not None and value <= MAX_UINT128 and encode_uint(value) == data:
        return value  # type: ignore[no-any-return]
    value = decode(data)  # not the canonical form of an unsigned integer: decode says what it is
    if type(value) is not int or value < 0:
        raise DecodeError(f"expected an unsigned integer, got {value!r}"[:200])
    return value  # type: ignore[no-any-return]


def pack_decoded(obj: Any) -> bytes:
    """The bytes of a part of a value that ``decode`` returned: plain packing.  decode accepted only
    the canonical form, and msgpack's encoding of an array is its header and its elements'
    encodings, so each element packs back to exactly the bytes it was decoded from (a map too: its
    keys come back in the sorted order they had).  Not for values built in-process: use encode."""
    return _pack(obj)
