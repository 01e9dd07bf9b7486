"""Validator sets: quorum arithmetic, CometBFT proposer rotation, persistence."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import state.codec as codec
from state.errors import InvalidValidatorSet
from state.validators import ValidatorSet
from state.crypto import PrivateKey


def keys(n: int, seed: int = 1) -> list[PrivateKey]:
    return [PrivateKey(bytes([seed + i]) * 32) for i in range(n)]


def with_priorities(vset: ValidatorSet, priorities: tuple[int, ...], proposer_index: int = 0) -> ValidatorSet:
    """The same members with chosen priorities, through the persisted form."""
    rows = [[v.pubkey, v.power, p] for v, p in zip(vset.validators, priorities)]
    return ValidatorSet.decode(codec.encode([1, rows, proposer_index]))


def test_worked_example_powers_1_2_3() -> None:
    k1, k2, k3 = keys(3)
    vset = ValidatorSet([(k1.public_key, 1), (k2.public_key, 2), (k3.public_key, 3)])
    p1, p2, p3 = (bytes(k.address) for k in (k1, k2, k3))
    # The addresses happen to sort p1 < p2 < p3, so priorities below are in
    # that order, and p1 wins the tie at height 3.
    assert [v.address for v in vset] == [p1, p2, p3]
    # By hand, total = 6.  A new set starts at (0, 0, 0) and is incremented
    # once.  Each round: add the powers (1, 2, 3), the highest priority
    # proposes (ties: lowest address) and loses 6.
    #   h1: (1, 2, 3)  -> p3 -> (1, 2, -3)
    #   h2: (2, 4, 0)  -> p2 -> (2, -2, 0)
    #   h3: (3, 0, 3)  -> p1 (tie with p3, lower address) -> (-3, 0, 3)
    #   h4: (-2, 2, 6) -> p3 -> (-2, 2, 0)
    #   h5: (-1, 4, 3) -> p2 -> (-1, -2, 3)
    #   h6: (0, 0, 6)  -> p3 -> (0, 0, 0)
    #   h7: back to h1.
    expected = [
        (p3, (1, 2, -3)),
        (p2, (2, -2, 0)),
        (p1, (-3, 0, 3)),
        (p3, (-2, 2, 0)),
        (p2, (-1, -2, 3)),
        (p3, (0, 0, 0)),
        (p3, (1, 2, -3)),
    ]
    got = []
    for _ in expected:
        got.append((vset.proposer.address, vset.priorities))
        vset = vset.increment(1)
    assert got == expected


def test_views_rotate_the_proposer_within_a_height() -> None:
    k1, k2, k3 = keys(3)
    height1 = ValidatorSet([(k1.public_key, 1), (k2.public_key, 2), (k3.public_key, 3)])
    # From h1's (1, 2, -3): view 1 is one more round (p2), view 2 two (p1).
    assert [height1.proposer_for(v).address for v in range(3)] == [k3.address, k2.address, k1.address]
    assert height1.proposer_for(0) == height1.proposer
    assert height1.proposer_for(4) == height1.increment(4).proposer
    with pytest.raises(ValueError):
        height1.proposer_for(-1)


def test_rescaling_truncates_toward_zero_like_go() -> None:
    vset = ValidatorSet([(k.public_key, 1) for k in keys(3)])
    # Spread 200 > 2 * total (6): ratio = ceil(200 / 6) = 34; Go's 100/34 = 2
    # and -100/34 = -2 (Python's floor would give -3).  Then centre (avg 0)
    # and one round: (3, 1, -1) -> first proposes -> (0, 1, -1).
    moved = with_priorities(vset, (100, 0, -100)).increment(1)
    assert moved.priorities == (0, 1, -1)
    assert moved.proposer == vset.validators[0]
    # Centring uses Euclidean division: avg(-5, 0, 0) = -2, giving (-3, 2, 2);
    # one round: (-2, 3, 3), tie -> the lower address -> (-2, 0, 3).
    moved = with_priorities(vset, (-5, 0, 0)).increment(1)
    assert moved.priorities == (-2, 0, 3)
    assert moved.proposer == vset.validators[1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=12), min_size=1, max_size=6))
def test_each_validator_proposes_in_proportion_to_power(powers: list[int]) -> None:
    vset = ValidatorSet([(k.public_key, p) for k, p in zip(keys(len(powers), seed=40), powers)])
    counts: dict[bytes, int] = {}
    for _ in range(vset.total_power):
        counts[vset.proposer.address] = counts.get(vset.proposer.address, 0) + 1
        vset = vset.increment(1)
    assert counts == {v.address: v.power for v in vset if v.power}
    assert sum(vset.priorities) == 0


@pytest.mark.parametrize("powers, quorum", [
    ([1], 1), ([1, 1, 1], 3), ([1, 1, 1, 1], 3), ([10, 10, 10, 60], 61), ([10, 10, 10, 70], 67), ([3, 3, 3], 7),
])
def test_quorum_power(powers: list[int], quorum: int) -> None:
    vset = ValidatorSet([(k.public_key, p) for k, p in zip(keys(len(powers)), powers)])
    assert vset.quorum_power == quorum
    assert vset.quorum_power * 3 > vset.total_power * 2
    assert (vset.quorum_power - 1) * 3 <= vset.total_power * 2


def test_lookup_and_hash() -> None:
    ks = keys(4)
    vset = ValidatorSet([(k.public_key, i + 1) for i, k in enumerate(ks)])
    assert [v.address for v in vset] == sorted(v.address for v in vset)
    member = vset.get(ks[2].address)
    assert member is not None and member.pubkey == ks[2].public_key and member.power == 3
    assert vset.index_of(member.address) == list(vset).index(member)
    assert vset.get(b"\0" * 20) is None and vset.index_of(b"\0" * 20) is None
    assert vset.power_of([ks[0].address, ks[0].address, b"\0" * 20]) == 1
    # The hash covers members and powers, not priorities.
    assert vset.hash() == vset.increment(3).hash()
    other = ValidatorSet([(k.public_key, 1) for k in ks])
    assert other.hash() != vset.hash()
    assert len(vset.hash()) == 32


def test_encode_decode_keeps_priorities() -> None:
    vset = ValidatorSet([(k.public_key, p) for k, p in zip(keys(4), [5, 1, 7, 2])]).increment(5)
    again = ValidatorSet.decode(vset.encode())
    assert again == vset
    assert again.priorities == vset.priorities and again.proposer == vset.proposer
    assert again.increment(2) == vset.increment(2)


@pytest.mark.parametrize("entries, fragment", [
    ([], "at least one"),
    ([(b"\1" * 32, 0)], "must be > 0"),
    ([(b"\1" * 32, -3)], "must be > 0"),
    ([(b"\1" * 32, 1), (b"\1" * 32, 2)], "duplicated"),
    ([(b"\1" * 31, 1)], "32 bytes"),
    ([(b"\1" * 32, 2**62)], "exceeds"),
])
def test_bad_sets_are_refused(entries: list[tuple[bytes, int]], fragment: str) -> None:
    with pytest.raises(InvalidValidatorSet, match=fragment):
        ValidatorSet(entries)


def _unsorted_rows() -> list[list[object]]:
    vset = ValidatorSet([(k.public_key, 1) for k in keys(2)])
    return [[v.pubkey, 1, 0] for v in reversed(vset.validators)]


@pytest.mark.parametrize("data", [
    b"",
    codec.encode([2, [], 0]),  # unknown version
    codec.encode([1, [], 0]),  # empty
    codec.encode([1, [[b"\1" * 32, 1, 0]], 1]),  # proposer index out of range
    codec.encode([1, [[b"\1" * 32, 1]], 0]),  # no priority
    codec.encode([1, [[b"\1" * 32, True, 0]], 0]),  # a bool is not a power
    codec.encode([1, [[b"\1" * 32, 1, 2**63]], 0]),  # priority beyond int64
    codec.encode([1, _unsorted_rows(), 0]),  # not in address order
])
def test_bad_encodings_are_refused(data: bytes) -> None:
    with pytest.raises(InvalidValidatorSet):
        ValidatorSet.decode(data)


def test_the_hash_ignores_input_order_and_is_the_headers_formula() -> None:
    """One implementation of validators_hash: SHA-256 of [[address, pubkey, power], ...] in address order."""
    from state.codec import encode
    from state.crypto import address_of, sha256
    from state.testing import dev_key

    vals = [(dev_key(i).public_key, i + 1) for i in range(4)]
    assert ValidatorSet(vals).hash() == ValidatorSet(list(reversed(vals))).hash()
    assert ValidatorSet(vals).hash() != ValidatorSet([(pk, p + 1) for pk, p in vals]).hash()
    assert ValidatorSet(vals).hash() == sha256(encode(sorted([address_of(pk), pk, power] for pk, power in vals)))
