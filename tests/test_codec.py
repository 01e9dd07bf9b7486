"""The canonical codec: every encodable value round-trips, every other form is refused."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.codec import EXT_BIGUINT, MAX_UINT128, decode, decode_uint, encode, encode_uint
from state.errors import DecodeError, EncodeError

ints = st.integers(min_value=-(2**63), max_value=MAX_UINT128)
scalars = st.one_of(st.none(), st.booleans(), ints, st.binary(max_size=64), st.text(max_size=32))


def _maps(children):
    return st.one_of(
        st.dictionaries(st.text(max_size=8), children, max_size=5),
        st.dictionaries(st.binary(max_size=8), children, max_size=5),
    )


values = st.recursive(
    scalars, lambda children: st.one_of(st.lists(children, max_size=5), _maps(children)), max_leaves=25
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_every_encodable_value_round_trips(value):
    data = encode(value)
    assert decode(data) == value
    assert encode(decode(data)) == data


@given(st.integers(min_value=2**64, max_value=MAX_UINT128))
def test_big_ints_use_minimal_ext(value):
    data = encode(value)
    length = (value.bit_length() + 7) // 8
    assert msgpack.unpackb(data, ext_hook=lambda code, raw: (code, raw)) == (EXT_BIGUINT, value.to_bytes(length, "big"))
    assert decode(data) == value


@given(st.dictionaries(st.text(min_size=1, max_size=6), st.integers(0, 9), min_size=2, max_size=6))
def test_maps_are_emitted_sorted_whatever_the_insertion_order(mapping):
    reordered = dict(reversed(list(mapping.items())))
    assert encode(mapping) == encode(reordered)


def test_tuples_encode_as_lists():
    assert encode((1, b"x")) == encode([1, b"x"])


@pytest.mark.parametrize(
    "value",
    [1.5, [0.0], {"a": 1.0}, 2**128, -(2**63) - 1, {1: "int key"}, {"a": 1, b"b": 2}, object(), {"x", "y"}],
)
def test_unencodable_values_are_refused(value):
    with pytest.raises(EncodeError):
        encode(value)


def _ext(code: int, payload: bytes) -> bytes:
    return msgpack.packb(msgpack.ExtType(code, payload))


@pytest.mark.parametrize(
    "data, why",
    [
        (b"\xcc\x05", "uint8 for a fixint"),
        (b"\xcd\x00\x05", "uint16 for a fixint"),
        (b"\xd0\x01", "int8 for a positive fixint"),
        (b"\xcf" + (5).to_bytes(8, "big"), "uint64 for a fixint"),
        (b"\x82\xa1b\x01\xa1a\x02", "unsorted map keys"),
        (b"\x01\x02", "trailing bytes"),
        (b"\xc0\x00", "trailing byte after nil"),
        (b"\xcb" + struct.pack(">d", 1.0), "float64"),
        (b"\xca" + struct.pack(">f", 1.0), "float32"),
        (_ext(EXT_BIGUINT, b"\x05"), "big int below 2**64 as ext"),
        (_ext(EXT_BIGUINT, (2**64 - 1).to_bytes(8, "big")), "2**64-1 as ext"),
        (_ext(EXT_BIGUINT, b"\x00" + (2**64).to_bytes(9, "big")), "leading zero ext byte"),
        (_ext(EXT_BIGUINT, b""), "empty ext"),
        (_ext(EXT_BIGUINT, b"\x01" + bytes(16)), "ext above 2**128-1"),
        (_ext(7, b"\x01" * 9), "unknown ext type"),
        (b"\xd9\x01a", "str8 for a fixstr"),
        (b"\xc5\x00\x01a", "bin16 for a bin8"),
        (b"\xdc\x00\x01\x01", "array16 for a fixarray"),
        (b"\xde\x00\x01\xa1a\x01", "map16 for a fixmap"),
        (b"\x92\x01", "truncated array"),
        (b"", "empty input"),
        (b"\xc1", "reserved byte"),
        (b"\xa2\xff\xfe", "invalid utf-8"),
        (b"\x82\xa1a\x01\xa1a\x02", "duplicate map key"),
    ],
)
def test_non_canonical_or_malformed_input_is_refused(data, why):
    with pytest.raises(DecodeError):
        decode(data)


def test_canonical_forms_of_the_same_shapes_decode():
    assert decode(b"\xc4\x01a") == b"a"
    assert decode(b"\xa1a") == "a"
    assert decode(b"\x91\x01") == [1]
    assert decode(b"\x82\xa1a\x01\xa1b\x02") == {"a": 1, "b": 2}


def test_oversize_input_is_refused():
    data = encode(b"x" * 100)
    with pytest.raises(DecodeError):
        decode(data, max_bytes=50)


def test_non_bytes_input_is_refused():
    with pytest.raises(DecodeError):
        decode("text")  # type: ignore[arg-type]


@given(st.binary(max_size=64))
def test_decode_never_raises_anything_but_decode_error(data):
    try:
        value = decode(data)
    except DecodeError:
        return
    assert encode(value) == data


# -- the unsigned-integer fast paths: the same bytes and the same refusals as the generic codec ----

_EDGES = [0, 1, 127, 128, 255, 256, 2**16 - 1, 2**16, 2**32 - 1, 2**32, 2**64 - 1, 2**64, 2**72 - 1, 2**72,
          2**120 - 1, 2**120, MAX_UINT128]


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.sampled_from(_EDGES), st.integers(min_value=0, max_value=MAX_UINT128),
                 st.integers(min_value=0, max_value=2**70)))
def test_encode_uint_is_encode_and_decode_uint_reads_it_back(value):
    assert encode_uint(value) == encode(value)
    assert decode_uint(encode(value)) == value


@pytest.mark.parametrize("value", [-1, -(2**63), MAX_UINT128 + 1, True, None, "1", 1.0])
def test_encode_uint_refuses_what_is_not_an_unsigned_amount(value):
    with pytest.raises(EncodeError):
        encode_uint(value)


@settings(max_examples=2000, deadline=None)
@given(st.one_of(st.binary(max_size=20),
                 st.builds(lambda head, body: bytes([head]) + body,
                           st.sampled_from([0xCC, 0xCD, 0xCE, 0xCF, 0xC7, 0xD8, 0xD4, 0xD5, 0xD6, 0xD7]),
                           st.binary(max_size=19))))
def test_decode_uint_accepts_exactly_the_canonical_unsigned_integers(data):
    """Whatever the bytes: decode_uint returns what decode returns when that is an unsigned integer,
    and raises DecodeError otherwise (a non-minimal form, a wrong ext code, trailing bytes, a bool)."""
    try:
        expected = decode(data)
    except DecodeError:
        expected = None
    if type(expected) is int and expected >= 0:
        assert decode_uint(data) == expected
    else:
        with pytest.raises(DecodeError):
            decode_uint(data)


@pytest.mark.parametrize("data", [b"\xcc\x05", b"\xcd\x00\xff", b"\xcf" + bytes(8), b"\xc7\x09\x01" + bytes(9),
                                  b"\xc7\x08\x01" + b"\x01" * 8, b"\xc7\x11\x01" + b"\x01" * 17, b"\xc7\x09\x02" + b"\x01" * 9,
                                  b"\xc7", b"\xc7\x09", b"\xd8\x01" + b"\x00" * 16, b"\x05\x00", b"", b"\xc3", b"\xff"])
def test_decode_uint_refuses_non_canonical_integers(data):
    with pytest.raises(DecodeError):
        decode_uint(data)
