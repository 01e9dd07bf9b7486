"""The canonical codec: every encodable value round-trips, every other form is refused."""

from __future__ import annotations

import struct

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.codec import EXT_BIGUINT, MAX_UINT128, decode, encode
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
