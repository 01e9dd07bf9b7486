"""The codec under hostile input: depth, object counts, ext types, random bytes.

Whatever the bytes, decode raises nothing but DecodeError, and its cost is
bounded before objects are built (issue 7, findings 2, 3 and 8).
"""

from __future__ import annotations

import resource
import struct
import time

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state import codec
from state.blocks import Block
from state.codec import DEFAULT_MAX_OBJECTS, MAX_DEPTH, decode, encode, scan
from state.errors import DecodeError, DecodeLimitExceeded, EncodeError
from state.transactions import SignedTransaction


def nested_empty_arrays(size: int) -> bytes:
    """The finding-2 payload: valid, canonical msgpack, one object per byte."""
    groups, total = [], 3
    while total + 3 < size:
        n = min(60_000, size - total - 3)
        groups.append(b"\xdc" + n.to_bytes(2, "big") + b"\x90" * n)
        total += 3 + n
    return b"\xdc" + len(groups).to_bytes(2, "big") + b"".join(groups)


def deep(depth: int, leaf: bytes = b"\xc0") -> bytes:
    return b"\x91" * depth + leaf


# -- finding 2: counts and depth are bounded before objects are built -----------


def test_eight_mib_of_nested_empty_arrays_is_refused_without_building_it():
    data = nested_empty_arrays(8 * 1024 * 1024)
    # Valid msgpack, exactly one object: msgpack's own parser walks every
    # byte of it without building it (unpackb would build the 8 million
    # lists: 3 s and +580 MiB, and raise the peak RSS measured below).
    unpacker = msgpack.Unpacker(max_array_len=100_000, max_buffer_size=len(data))
    unpacker.feed(data)
    unpacker.skip()
    with pytest.raises(msgpack.OutOfData):
        unpacker.skip()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DecodeLimitExceeded) as info:
        decode(data)
    assert info.value.what == "object count" and info.value.limit == DEFAULT_MAX_OBJECTS
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    assert grown_kib < 64 * 1024  # the old decode built 8 million lists: +1.15 GiB


def test_a_tight_object_limit_stops_the_scan_early():
    data = nested_empty_arrays(1024 * 1024)
    with pytest.raises(DecodeLimitExceeded) as info:
        decode(data, max_objects=1000)
    assert info.value.limit == 1000 and info.value.value > 1000


def test_an_announced_array_longer_than_the_object_budget_is_refused_at_its_header():
    data = b"\xdc\xff\xff" + b"\xc0" * 0xFFFF
    with pytest.raises(DecodeLimitExceeded):
        decode(data, max_objects=100)
    assert decode(data, max_objects=0x10000) == [None] * 0xFFFF


def test_depth_limit():
    assert decode(deep(MAX_DEPTH)) is not None
    with pytest.raises(DecodeLimitExceeded) as info:
        decode(deep(MAX_DEPTH + 1))
    assert info.value.what == "nesting depth"
    with pytest.raises(DecodeLimitExceeded):
        decode(deep(3), max_depth=2)
    assert decode(deep(2), max_depth=2) == [[None]]


def test_object_count_is_exact():
    value = [1, [2, 3], {"a": [None]}, b"x", "y"]
    objects, has_map = scan(encode(value))
    assert (objects, has_map) == (11, True)  # 5 containers
    assert decode(encode(value), max_objects=11) == value
    with pytest.raises(DecodeLimitExceeded):
        decode(encode(value), max_objects=10)


def test_oversize_input_is_a_limit_error():
    with pytest.raises(DecodeLimitExceeded) as info:
        decode(b"\xc0" * 11, max_bytes=10)
    assert (info.value.value, info.value.limit) == (11, 10)


# -- finding 3: deep input is a DecodeError / EncodeError, never RecursionError --


@pytest.mark.parametrize("depth", [500, 800, 1024, 5000])
def test_deeply_nested_transaction_bytes_are_a_decode_error(depth):
    with pytest.raises(DecodeError):
        SignedTransaction.decode(deep(depth))
    with pytest.raises(DecodeError):
        Block.decode(deep(depth))


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 1000, 100_000])
def test_encoding_deep_values_is_an_encode_error(depth):
    value: list = []
    for _ in range(depth - 1):
        value = [value]
    with pytest.raises(EncodeError):
        encode(value)
    mapping: dict = {}
    for _ in range(depth - 1):
        mapping = {"k": mapping}
    with pytest.raises(EncodeError):
        encode(mapping)


def test_encoding_at_the_depth_limit_round_trips():
    value: list = [1]
    for _ in range(MAX_DEPTH - 1):
        value = [value]
    assert decode(encode(value)) == value


# -- finding 8: only EXT_BIGUINT ------------------------------------------------


def test_msgpack_timestamp_ext_is_refused():
    for data in (
        msgpack.packb(msgpack.Timestamp(1, 0)),  # fixext4, ext -1
        msgpack.packb(msgpack.Timestamp(2**33, 5)),  # fixext8
        msgpack.packb(msgpack.Timestamp(-1, 5)),  # ext8 of 12 bytes
        msgpack.packb([1, msgpack.Timestamp(7, 0)]),
    ):
        with pytest.raises(DecodeError, match="ext type -1"):
            decode(data)


def test_timestamp_and_foreign_ext_values_are_not_encodable():
    for value in (msgpack.Timestamp(1, 0), msgpack.ExtType(1, b"\x01" * 9), msgpack.ExtType(5, b"x"), [1.5]):
        with pytest.raises(EncodeError):
            encode(value)


def _ext(code: int, payload: bytes) -> bytes:
    fixed = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}.get(len(payload))
    head = bytes([fixed]) if fixed else b"\xc7" + bytes([len(payload)])
    return head + struct.pack(">b", code) + payload


@given(st.integers(-128, 127).filter(lambda c: c != codec.EXT_BIGUINT), st.binary(max_size=40))
def test_every_other_ext_type_is_refused(code, payload):
    data = _ext(code, payload)
    with pytest.raises(DecodeError, match="unknown ext type"):
        decode(data)
    with pytest.raises(DecodeError, match="unknown ext type"):
        decode(b"\x92\x01" + data)


def test_floats_and_the_reserved_byte_are_refused_by_the_scan():
    for data in (b"\xca" + struct.pack(">f", 1.0), b"\xcb" + struct.pack(">d", 1.0), b"\xc1", b"\x92\x01\xc1"):
        with pytest.raises(DecodeError, match="not allowed"):
            decode(data)


def test_truncated_and_trailing_input():
    for data in (b"\x92\x01", b"\xc4\x05ab", b"\xdc\x00", b"\xd4\x01", b"\xc7\x09\x01\x01"):
        with pytest.raises(DecodeError):
            decode(data)
    with pytest.raises(DecodeError, match="trailing"):
        decode(b"\x01\x02")


# -- random bytes: only DecodeError, bounded ---------------------------------------

_TAGS = st.sampled_from(
    [b"\x90", b"\x91", b"\x9f", b"\x80", b"\x81", b"\xdc\xff\xff", b"\xdd\xff\xff\xff\xff", b"\xde\x00\x10",
     b"\xc4\x02ab", b"\xc6\xff\xff\xff\xff", b"\xa1a", b"\xd4\xff\x00", b"\xd4\x01\x01", b"\xc7\x01\x01\x05",
     b"\xcf" + b"\xff" * 8, b"\xcc\x01", b"\xc0", b"\xc3", b"\xca\x00\x00\x00\x00", b"\xc1", b"\x01", b"\xff"]
)
hostile = st.one_of(st.binary(min_size=1, max_size=300), st.lists(_TAGS, min_size=1, max_size=200).map(b"".join))


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hostile, st.integers(1, 64), st.integers(0, 40))
def test_decode_raises_only_decode_error(data, max_objects, max_depth):
    for kwargs in ({}, {"max_objects": max_objects, "max_depth": max_depth}):
        try:
            value = decode(data, **kwargs)
        except DecodeError:
            continue
        assert encode(value) == data  # accepted means canonical
        objects, _ = scan(data)
        if kwargs:
            assert objects <= max_objects


@settings(max_examples=200, deadline=None)
@given(st.integers(1000, 4_000_000))
def test_decode_cost_is_bounded_by_the_object_limit(size):
    data = nested_empty_arrays(size)
    started = time.process_time()
    with pytest.raises(DecodeLimitExceeded):
        decode(data, max_objects=500)
    # 500 objects take microseconds; generous bound, a regression to
    # build-then-check would take seconds at the larger sizes.
    assert time.process_time() - started < 0.5
