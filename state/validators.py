"""Validator sets and CometBFT's weighted round-robin proposer selection.

The one owner of a validator set's definition: its members, its hash (the
header's ``validators_hash``), its proposer priorities and its encoding.  The
application (``state.app``) stores the set that signs each height and derives
the next one with ``updated(changes).increment(1)``, as CometBFT's
``state/execution.go`` does with ``UpdateWithChangeSet`` and
``IncrementProposerPriority``; consensus/ reads sets, it never makes them.

The priority algorithm follows CometBFT's ``types/validator_set.go`` step by
step, integers only: each ``increment(times)`` first rescales priorities so
their spread is at most ``2 * total_power`` and centres them on zero, then
runs ``times`` rounds of "every validator gains its power; the highest
priority (ties: lowest address) is the proposer and loses ``total_power``".
A new set starts at priority zero and is incremented once, as
``NewValidatorSet`` does, so ``proposer`` is defined from the start.

The set for height ``h + 1`` is ``set_h.increment(1)``; the proposer of view
``v`` at height ``h`` is ``set_h.proposer_for(v) == set_h.increment(v).proposer``.
Note that ``increment(k)`` rescales once, so it is not always the same as
``k`` calls of ``increment(1)``: persist sets with ``encode()``, which keeps
the priorities, rather than recomputing them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import state.codec as codec
from state.crypto import PUBKEY_LEN, address_of, sha256
from state.errors import DecodeError, InvalidValidatorSet

VALIDATOR_SET_VERSION = 1
# CometBFT's MaxTotalVotingPower: leaves headroom in int64 for priorities.
MAX_TOTAL_POWER = (2**63 - 1) // 8
MAX_VALIDATORS = 10_000
_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
_PRIORITY_WINDOW_FACTOR = 2


@dataclass(frozen=True, slots=True)
class Validator:
    address: bytes
    pubkey: bytes
    power: int


def _clip(value: int) -> int:
    """CometBFT's safeAddClip/safeSubClip: saturate at the int64 bounds."""
    return max(_INT64_MIN, min(_INT64_MAX, value))


def _div_trunc(a: int, b: int) -> int:
    """Go's integer division, which truncates toward zero (Python floors)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b > 0) else -q


class ValidatorSet:
    """An immutable validator set with proposer priorities, sorted by address."""

    __slots__ = ("_validators", "_priorities", "_proposer_index", "_by_address", "_total", "_primaries", "_walk",
                 "_hash")

    def __init__(self, entries: Iterable[tuple[bytes, int]]) -> None:
        validators = []
        for pubkey, power in entries:
            if not isinstance(pubkey, bytes) or len(pubkey) != PUBKEY_LEN:
                raise InvalidValidatorSet(f"public key {pubkey!r} is not {PUBKEY_LEN} bytes")
            validators.append(Validator(bytes(address_of(pubkey)), pubkey, power))
        validators.sort(key=lambda v: v.address)
        self._init(tuple(validators), (0,) * len(validators), 0)
        self._become(self._incremented(1))

    # -- construction ------------------------------------------------------

    def _init(self, validators: tuple[Validator, ...], priorities: tuple[int, ...], proposer_index: int) -> None:
        if not validators:
            raise InvalidValidatorSet("a validator set needs at least one validator")
        if len(validators) > MAX_VALIDATORS:
            raise InvalidValidatorSet(f"{len(validators)} validators exceed the limit of {MAX_VALIDATORS}")
        total = 0
        for index, val in enumerate(validators):
            if not isinstance(val.power, int) or isinstance(val.power, bool) or val.power <= 0:
                raise InvalidValidatorSet(f"validator {val.address.hex()} has power {val.power!r}, must be > 0")
            if index and validators[index - 1].address >= val.address:
                raise InvalidValidatorSet(f"validator {val.address.hex()} is duplicated or out of address order")
            total += val.power
        if total > MAX_TOTAL_POWER:
            raise InvalidValidatorSet(f"total power {total} exceeds {MAX_TOTAL_POWER}")
        if not 0 <= proposer_index < len(validators):
            raise InvalidValidatorSet(f"proposer index {proposer_index} out of range")
        self._validators = validators
        self._priorities = priorities
        self._proposer_index = proposer_index
        self._by_address = {v.address: i for i, v in enumerate(validators)}
        self._total = total
        self._hash: bytes | None = None
        self._reset_walk()

    @classmethod
    def _make(cls, validators: tuple[Validator, ...], priorities: tuple[int, ...], proposer_index: int) -> "ValidatorSet":
        obj = cls.__new__(cls)
        obj._init(validators, priorities, proposer_index)
        return obj

    def _become(self, other: "ValidatorSet") -> None:
        self._priorities = other._priorities
        self._proposer_index = other._proposer_index
        self._reset_walk()

    def _reset_walk(self) -> None:
        # Memo of proposer_for: the primaries of views 0..len-1 (the set is
        # immutable), and the priorities after the last round walked, so a
        # later view costs only the rounds beyond it.
        self._primaries: list[int] = [self._proposer_index]
        self._walk: list[int] | None = None

    # -- queries -----------------------------------------------------------

    @property
    def validators(self) -> tuple[Validator, ...]:
        return self._validators

    @property
    def priorities(self) -> tuple[int, ...]:
        """Proposer priorities, in the same (address) order as ``validators``."""
        return self._priorities

    @property
    def total_power(self) -> int:
        return self._total

    @property
    def quorum_power(self) -> int:
        """The smallest power strictly greater than 2/3 of the total."""
        return self._total * 2 // 3 + 1

    def has_quorum(self, power: int) -> bool:
        return power >= self.quorum_power

    def exceeds_one_third(self, power: int) -> bool:
        return power * 3 > self._total

    def get(self, address: bytes) -> Validator | None:
        index = self._by_address.get(address)
        return None if index is None else self._validators[index]

    def index_of(self, address: bytes) -> int | None:
        return self._by_address.get(address)

    def power_of(self, addresses: Iterable[bytes]) -> int:
        """Total power of the distinct members among ``addresses``."""
        return sum(self._validators[i].power for i in {self._by_address.get(a) for a in addresses} if i is not None)

    def __contains__(self, address: object) -> bool:
        return address in self._by_address

    def __len__(self) -> int:
        return len(self._validators)

    def __iter__(self) -> Iterator[Validator]:
        return iter(self._validators)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ValidatorSet):
            return NotImplemented
        return (self._validators, self._priorities, self._proposer_index) == (
            other._validators, other._priorities, other._proposer_index)

    def __hash__(self) -> int:
        return hash((self._validators, self._priorities, self._proposer_index))

    def __repr__(self) -> str:
        members = ", ".join(f"{v.address.hex()[:8]}:{v.power}@{p}" for v, p in zip(self._validators, self._priorities))
        return f"ValidatorSet([{members}], proposer={self.proposer.address.hex()[:8]})"

    def hash(self) -> bytes:
        """SHA-256 over ``[address, pubkey, power]`` in address order (no priorities): the
        header's ``validators_hash``, the one implementation.  Memoised (the set is immutable)."""
        if self._hash is None:
            self._hash = bytes(sha256(codec.encode([[v.address, v.pubkey, v.power] for v in self._validators])))
        return self._hash

    # -- changes ---------------------------------------------------------------

    def updated(self, changes: Iterable[tuple[bytes, int]]) -> "ValidatorSet":
        """The set after ``changes`` of (pubkey, power): power 0 removes a member,
        a new key joins, a member's power is replaced.  CometBFT's
        ``UpdateWithChangeSet``: members keep their priority, a newcomer starts
        at ``-(total + total // 8)`` of the new total power (so it does not
        propose at once); the next ``increment`` rescales and centres, and picks
        the proposer.  No change returns ``self``.

        Raises InvalidValidatorSet: a malformed key, a key changed twice, a
        negative or non-integer power, removing a non-member, or a result that is
        empty or over the limits.
        """
        wanted: dict[bytes, tuple[bytes, int]] = {}
        for change in changes:
            if not (isinstance(change, tuple) and len(change) == 2):
                raise InvalidValidatorSet(f"validator update {change!r} is not (pubkey, power)")
            pubkey, power = change
            if not isinstance(pubkey, bytes) or len(pubkey) != PUBKEY_LEN:
                raise InvalidValidatorSet(f"validator update key {pubkey!r} is not {PUBKEY_LEN} bytes")
            if not _is_int(power) or power < 0:
                raise InvalidValidatorSet(f"validator update power {power!r} must be an integer >= 0")
            address = bytes(address_of(pubkey))
            if address in wanted:
                raise InvalidValidatorSet(f"validator {address.hex()} is updated twice in one change set")
            if power == 0 and address not in self._by_address:
                raise InvalidValidatorSet(f"validator {address.hex()} cannot be removed: not in the set")
            wanted[address] = (pubkey, power)
        if not wanted:
            return self
        members: dict[bytes, tuple[Validator, int | None]] = {
            v.address: (v, p) for v, p in zip(self._validators, self._priorities)}
        for address, (pubkey, power) in wanted.items():
            if power == 0:
                del members[address]
            else:
                priority = members[address][1] if address in members else None
                members[address] = (Validator(address, pubkey, power), priority)
        if not members:
            raise InvalidValidatorSet("the update would remove every validator")
        total = sum(v.power for v, _ in members.values())
        if total > MAX_TOTAL_POWER:
            raise InvalidValidatorSet(f"total power {total} exceeds {MAX_TOTAL_POWER}")
        newcomer = _clip(-(total + (total >> 3)))
        ordered = sorted(members.items())
        return ValidatorSet._make(
            tuple(v for _, (v, _p) in ordered),
            tuple(newcomer if p is None else p for _, (_v, p) in ordered),
            0,
        )

    # -- proposer selection --------------------------------------------------

    @property
    def proposer(self) -> Validator:
        """The proposer chosen by the last increment: the primary of view 0."""
        return self._validators[self._proposer_index]

    def proposer_for(self, view: int) -> Validator:
        """The primary of ``view`` at this set's height: ``increment(view).proposer``.

        Memoised and walked incrementally (``increment(k)`` rescales once and
        then runs k rounds, so round k+1 continues from round k): the first
        call for view v costs O(v * n), and each later one only the rounds
        beyond the highest view asked so far.  Callers bound ``view`` (the
        engine drops views far ahead of its own before asking).
        """
        if view < 0:
            raise ValueError(f"view {view} is negative")
        primaries = self._primaries
        if view < len(primaries):
            return self._validators[primaries[view]]
        prio = self._walk if self._walk is not None else self._rescaled()
        total, powers = self._total, [v.power for v in self._validators]
        while len(primaries) <= view:
            prio = [_clip(p + w) for p, w in zip(prio, powers)]
            proposer = 0
            for i in range(1, len(prio)):
                if prio[i] > prio[proposer]:
                    proposer = i
            prio[proposer] = _clip(prio[proposer] - total)
            primaries.append(proposer)
        self._walk = prio
        return self._validators[primaries[view]]

    def increment(self, times: int = 1) -> "ValidatorSet":
        """A new set with priorities advanced ``times`` rounds (0 returns self)."""
        if times < 0:
            raise ValueError(f"cannot increment proposer priority {times} times")
        if times == 0:
            return self
        return self._incremented(times)

    def _rescaled(self) -> list[int]:
        """The priorities before the first round of an increment."""
        total = self._total
        prio = list(self._priorities)
        # RescalePriorities(2 * total): bound the spread, dividing as Go does.
        diff_max = _PRIORITY_WINDOW_FACTOR * total
        diff = max(prio) - min(prio)
        if diff > diff_max:
            ratio = (diff + diff_max - 1) // diff_max
            prio = [_div_trunc(p, ratio) for p in prio]
        # shiftByAvgProposerPriority: big.Int division is Euclidean (floors here).
        avg = sum(prio) // len(prio)
        return [_clip(p - avg) for p in prio]

    def _incremented(self, times: int) -> "ValidatorSet":
        total = self._total
        prio = self._rescaled()
        proposer = 0
        for _ in range(times):
            prio = [_clip(p + v.power) for p, v in zip(prio, self._validators)]
            proposer = 0
            for i in range(1, len(prio)):
                # Strictly greater: on a tie the earlier (lower) address stays.
                if prio[i] > prio[proposer]:
                    proposer = i
            prio[proposer] = _clip(prio[proposer] - total)
        return ValidatorSet._make(self._validators, tuple(prio), proposer)

    # -- persistence -----------------------------------------------------------

    def encode(self) -> bytes:
        """``[version, [[pubkey, power, priority], ...], proposer_index]``."""
        return codec.encode([
            VALIDATOR_SET_VERSION,
            [[v.pubkey, v.power, p] for v, p in zip(self._validators, self._priorities)],
            self._proposer_index,
        ])

    @classmethod
    def decode(cls, data: bytes) -> "ValidatorSet":
        try:
            obj: Any = codec.decode(data)
        except DecodeError as exc:
            raise InvalidValidatorSet(f"undecodable validator set: {exc}") from exc
        if not (isinstance(obj, list) and len(obj) == 3 and obj[0] == VALIDATOR_SET_VERSION
                and isinstance(obj[1], list) and _is_int(obj[2])):
            raise InvalidValidatorSet("validator set is not [version, [...], proposer_index]")
        validators, priorities = [], []
        for entry in obj[1]:
            if not (isinstance(entry, list) and len(entry) == 3 and isinstance(entry[0], bytes)
                    and len(entry[0]) == PUBKEY_LEN and _is_int(entry[1]) and _is_int(entry[2])):
                raise InvalidValidatorSet(f"validator entry {entry!r} is not [pubkey, power, priority]")
            if not _INT64_MIN <= entry[2] <= _INT64_MAX:
                raise InvalidValidatorSet(f"priority {entry[2]} is outside int64")
            validators.append(Validator(bytes(address_of(entry[0])), entry[0], entry[1]))
            priorities.append(entry[2])
        return cls._make(tuple(validators), tuple(priorities), obj[2])


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)

