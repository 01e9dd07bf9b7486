"""Staking as ledger state: validators, delegations as shares, unbonding, redelegation, epochs, rewards.

Modelled on Cosmos SDK ``x/staking`` and ``x/distribution``, kept small:

- **Money.** Every staked base unit sits in a module account no key signs
  for: ``BONDED_POOL`` (stake delegated to any validator, in the active set
  or not), ``UNBONDING_POOL`` (unstaked, waiting for maturity) and
  ``REWARDS_POOL`` (fees and issuance credited to validators and not yet
  withdrawn).  Transfers and mints to them are refused, so QNX supply =
  liquid balances + bonded + unbonding + undistributed rewards, every
  movement a debit and a credit (issuance the one mint, and in part 2
  slashing the one burn).
- **Shares.** A validator holds ``tokens`` and issues ``shares``; a
  delegation owns shares.  Bonding ``a`` mints ``a · shares / tokens``
  (``a`` for the first); unbonding ``a`` burns ``ceil(a · shares / tokens)``,
  so rounding favours the stake that stays.  Slashing (part 2) lowers
  ``tokens`` only, so every delegation loses the same fraction in O(1).
- **Rewards.** Per validator a reward-per-share index (``REWARD_SHIFT``
  fractional bits, as state.pools): crediting ``r`` to a validator keeps
  ``commission_bps`` of it as the operator's commission and raises the index
  by ``(r − commission) · 2^128 / shares``.  A delegation settles
  ``shares · Δindex / 2^128`` into its ``unclaimed`` on every share change
  and on withdrawal, so a block costs O(signers), never O(delegators), and a
  claim never walks blocks.  Per-share (not per-token, as F1) the index
  needs no slash periods: a slash changes tokens, not shares.
- **Unbonding.** Unstaking moves the tokens to ``UNBONDING_POOL`` at once
  (the validator's power changes with the next epoch's set, like any stake
  change) and appends an entry maturing at ``height + unbonding_blocks`` to
  the delegator's list and to the queue record of that height;
  ``end_block`` of that height pays it out.  Build and execute both run
  ``end_block``, so the payout is part of the block's app hash.
- **Redelegation.** Moves bonded stake between validators with no
  unbonding.  Rule: at most one redelegation in flight per (delegator,
  destination) — a second one to the same destination is refused until the
  first matures ``unbonding_blocks`` later — and stake that arrived at a
  validator by redelegation cannot be redelegated away from it before that
  (Cosmos's no-hopping rule).  Each record keeps its source, amount and
  creation height, so part 2 can slash redelegated stake for the source's
  infractions.
- **Epochs.** Epoch ``e`` is heights ``e·L + 1 .. (e+1)·L`` (``L =
  epoch_length``).  ``end_block`` of the last height of an epoch ranks the
  candidates (validators holding stake): not jailed, not tombstoned,
  self-bond ≥ ``min_self_bond``, power ≥ 1, by bonded tokens (ties: lower
  operator address), keeps the top ``max_validators`` and emits the
  difference from the active set as ``(pubkey, power)`` updates, power 0
  removing.  Power = bonded tokens // 10^18 (whole QNX), capped so the
  total fits CometBFT's limit.  An empty result is ignored (the set stays as
  it is): the chain never loses its validators.

Every function runs on a Ledger over an Overlay and raises a StakingFailed
subclass (the caller drops the overlay) on a refused transaction.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Iterable

from state import keys
from state.amm import REWARD_SHIFT
from state.amounts import MAX_AMOUNT, QNX
from state.codec import encode
from state.crypto import Address, address_of, address_to_text, sha256
from state.errors import (
    BalanceOverflow,
    CandidatesFull,
    CommissionChangedThisEpoch,
    CommissionChangeTooLarge,
    CommissionOutOfBounds,
    DuplicateConsensusKey,
    InsufficientStake,
    JailPeriodNotOver,
    NotJailed,
    RedelegationInProgress,
    SelfBondTooLow,
    StateInvariantBroken,
    Tombstoned,
    TooManyEntries,
    UnknownValidator,
    ValidatorExists,
)
from state.genesis import POWER_REDUCTION, Genesis, StakingParams
from state.ledger import Ledger, _stored
from state.validators import MAX_TOTAL_POWER, MAX_VALIDATORS

VALIDATOR_RECORD_VERSION = 1
WIDE_BYTES = 64
BPS = 10_000
# Completions (unbondings and redelegations) maturing at one height live in one record, which each
# unstake or redelegate re-reads and re-writes: capped, so a block of them costs O(n), not O(n^2).
MAX_QUEUE_PER_HEIGHT = 256
# Each validator's power is capped so that any set of MAX_VALIDATORS fits MAX_TOTAL_POWER.
MAX_POWER = MAX_TOTAL_POWER // MAX_VALIDATORS

UNBONDING, REDELEGATION = 0, 1  # queue entry kinds


def _derived(label: bytes) -> Address:
    return Address(sha256(b"QENEX/" + label)[:20])


BONDED_POOL = _derived(b"staking/bonded")
UNBONDING_POOL = _derived(b"staking/unbonding")
REWARDS_POOL = _derived(b"staking/rewards")
MODULE_ACCOUNTS = {BONDED_POOL: "bonded", UNBONDING_POOL: "unbonding", REWARDS_POOL: "rewards"}


def _wide(value: int) -> bytes:
    if not 0 <= value < 2 ** (8 * WIDE_BYTES):
        raise StateInvariantBroken(f"reward index {value} does not fit {WIDE_BYTES} bytes")
    return value.to_bytes(WIDE_BYTES, "big")


def _unwide(raw: object) -> int:
    if not isinstance(raw, bytes) or len(raw) != WIDE_BYTES:
        raise StateInvariantBroken(f"stored reward index {raw!r} is not {WIDE_BYTES} bytes")
    return int.from_bytes(raw, "big")


def _checked(what: str, value: int) -> int:
    if not 0 <= value <= MAX_AMOUNT:
        raise BalanceOverflow(what, value, MAX_AMOUNT)
    return value


# -- epochs -----------------------------------------------------------------------


def epoch_of(height: int, epoch_length: int) -> int:
    """The epoch of ``height`` (>= 1): epoch e is heights e·L + 1 .. (e+1)·L."""
    return (height - 1) // epoch_length


def epoch_bounds(epoch: int, epoch_length: int) -> tuple[int, int]:
    """(first, last) height of ``epoch``."""
    return epoch * epoch_length + 1, (epoch + 1) * epoch_length


def is_epoch_end(height: int, epoch_length: int) -> bool:
    return height % epoch_length == 0


# -- records ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Validator:
    operator: Address  # the account that created it and signs its staking transactions
    pubkey: bytes  # consensus key (votes); its address is the consensus address
    moniker: str
    commission_bps: int
    commission_epoch: int  # 1 + the epoch of the last commission change; 0: never changed
    tokens: int  # bonded QNX base units
    shares: int  # delegation shares outstanding
    jailed: bool
    jailed_until: int  # the first height at which unjail is allowed
    tombstoned: bool
    reward_index: int  # QNX per share, REWARD_SHIFT fractional bits
    commission: int  # accrued, not withdrawn
    created_height: int

    @property
    def power(self) -> int:
        return min(self.tokens // POWER_REDUCTION, MAX_POWER)

    def value_of(self, shares: int) -> int:
        """The tokens ``shares`` of this validator are worth (floored)."""
        return shares * self.tokens // self.shares if self.shares else 0

    def to_wire(self) -> list[Any]:
        return [VALIDATOR_RECORD_VERSION, self.pubkey, self.moniker, self.commission_bps, self.commission_epoch,
                self.tokens, self.shares, int(self.jailed), self.jailed_until, int(self.tombstoned),
                _wide(self.reward_index), self.commission, self.created_height]

    @classmethod
    def from_wire(cls, operator: bytes, w: list[Any]) -> "Validator":
        return cls(Address(operator), w[1], w[2], w[3], w[4], w[5], w[6], bool(w[7]), w[8], bool(w[9]),
                   _unwide(w[10]), w[11], w[12])


@dataclass(frozen=True, slots=True)
class Delegation:
    shares: int
    index_snapshot: int
    unclaimed: int  # settled rewards not yet withdrawn

    def settled(self, index: int) -> "Delegation":
        earned = self.shares * (index - self.index_snapshot) >> REWARD_SHIFT
        return Delegation(self.shares, index, _checked("unclaimed staking rewards", self.unclaimed + earned))


@dataclass(frozen=True, slots=True)
class UnbondingEntry:
    validator: Address
    initial: int  # what was unstaked
    balance: int  # what will be paid (initial less part 2's slashes)
    creation_height: int
    maturity_height: int

    def to_wire(self) -> list[Any]:
        return [self.validator, self.initial, self.balance, self.creation_height, self.maturity_height]


@dataclass(frozen=True, slots=True)
class Redelegation:
    source: Address
    destination: Address
    amount: int  # tokens moved
    creation_height: int
    maturity_height: int


class Staking:
    """Typed staking records over a Ledger's store, and the operations on them."""

    def __init__(self, ledger: Ledger, params: StakingParams, *, height: int, epoch_length: int) -> None:
        self.ledger = ledger
        self.params = params
        self.height = height
        self.epoch_length = epoch_length

    def _put(self, key: bytes, value: bytes | None) -> None:
        self.ledger._put(key, value)

    def _get(self, key: bytes, length: int | None = None) -> Any:
        raw = self.ledger.store.get(key)
        return None if raw is None else _stored(key, raw, length)

    # -- validators -------------------------------------------------------------

    def validator(self, operator: bytes) -> Validator | None:
        w = self._get(keys.staking_validator_key(operator), 13)
        return None if w is None else Validator.from_wire(operator, w)

    def require(self, operator: bytes) -> Validator:
        v = self.validator(operator)
        if v is None:
            raise UnknownValidator(address_to_text(operator))
        return v

    def put_validator(self, v: Validator) -> None:
        self._put(keys.staking_validator_key(v.operator), encode(v.to_wire()))
        candidates = self.candidates()
        listed = v.operator in candidates
        if v.tokens and not listed:
            if len(candidates) >= self.params.max_candidates:
                raise CandidatesFull(self.params.max_candidates)
            self._put_candidates(sorted(candidates + [v.operator]))
        elif not v.tokens and listed:
            self._put_candidates([c for c in candidates if c != v.operator])

    def candidates(self) -> list[Address]:
        """Operators of the validators holding stake, in address order (what an epoch end ranks)."""
        w = self._get(keys.STAKING_CANDIDATES, 2)
        return [] if w is None else [Address(a) for a in w[1]]

    def _put_candidates(self, operators: list[Address]) -> None:
        self._put(keys.STAKING_CANDIDATES, encode([1, operators]) if operators else None)

    def operator_of_key(self, consensus_address: bytes) -> Address | None:
        raw = self.ledger.store.get(keys.staking_consensus_key(consensus_address))
        return None if raw is None else Address(raw)

    def active(self) -> dict[bytes, int]:
        """The set staking last emitted (the consensus set): pubkey -> power."""
        w = self._get(keys.STAKING_ACTIVE, 2)
        return {} if w is None else {pk: power for pk, power in w[1]}

    def _put_active(self, members: dict[bytes, int]) -> None:
        ordered = sorted(members.items(), key=lambda item: address_of(item[0]))
        self._put(keys.STAKING_ACTIVE, encode([1, [[pk, p] for pk, p in ordered]]))

    # -- delegations --------------------------------------------------------------

    def delegation(self, delegator: bytes, operator: bytes) -> Delegation | None:
        w = self._get(keys.staking_delegation_key(delegator, operator), 4)
        return None if w is None else Delegation(w[1], _unwide(w[2]), w[3])

    def delegated_to(self, delegator: bytes) -> list[Address]:
        """The validators ``delegator`` holds a delegation record with, in address order."""
        w = self._get(keys.staking_delegator_index_key(delegator), 2)
        return [] if w is None else [Address(a) for a in w[1]]

    def _put_delegation(self, delegator: bytes, operator: bytes, d: Delegation) -> None:
        key = keys.staking_delegation_key(delegator, operator)
        index = self.delegated_to(delegator)
        if d.shares == 0 and d.unclaimed == 0:
            self._put(key, None)
            if operator in index:
                rest = [a for a in index if a != operator]
                self._put(keys.staking_delegator_index_key(delegator), encode([1, rest]) if rest else None)
            return
        if operator not in index:
            if len(index) >= self.params.max_delegations:
                raise TooManyEntries(f"delegations of {address_to_text(delegator)}", self.params.max_delegations)
            self._put(keys.staking_delegator_index_key(delegator), encode([1, sorted(index + [Address(operator)])]))
        self._put(key, encode([1, d.shares, _wide(d.index_snapshot), d.unclaimed]))

    def unbondings(self, delegator: bytes) -> list[UnbondingEntry]:
        w = self._get(keys.staking_unbonding_key(delegator), 2)
        return [] if w is None else [UnbondingEntry(Address(e[0]), *e[1:]) for e in w[1]]

    def _put_unbondings(self, delegator: bytes, entries: list[UnbondingEntry]) -> None:
        value = encode([1, [e.to_wire() for e in entries]]) if entries else None
        self._put(keys.staking_unbonding_key(delegator), value)

    def redelegation(self, delegator: bytes, destination: bytes) -> Redelegation | None:
        w = self._get(keys.staking_redelegation_key(delegator, destination), 5)
        return None if w is None else Redelegation(Address(w[1]), Address(destination), w[2], w[3], w[4])

    def _queue(self, height: int) -> list[list[Any]]:
        w = self._get(keys.staking_queue_key(height), 2)
        return [] if w is None else list(w[1])

    def _check_queue_room(self, height: int) -> None:
        if len(self._queue(height)) >= MAX_QUEUE_PER_HEIGHT:
            raise TooManyEntries(f"completions maturing at height {height} (unstakes and redelegations sent in "
                                 f"one block; send it in a later block)", MAX_QUEUE_PER_HEIGHT)

    def _enqueue(self, height: int, entry: list[Any]) -> None:
        queue = self._queue(height)
        if entry not in queue:
            self._put(keys.staking_queue_key(height), encode([1, queue + [entry]]))

    def slashable(self, operator: bytes, height: int) -> list[list[Any]]:
        """Unbondings ([0, delegator]) and redelegations ([1, delegator, destination]) away from
        ``operator`` created at ``height`` and not matured (bounded: they all mature at one height,
        whose queue holds at most MAX_QUEUE_PER_HEIGHT)."""
        w = self._get(keys.staking_slashable_key(operator, height), 2)
        return [] if w is None else list(w[1])

    def _mark_slashable(self, operator: bytes, entry: list[Any]) -> None:
        bucket = self.slashable(operator, self.height)
        if entry not in bucket:
            self._put(keys.staking_slashable_key(operator, self.height), encode([1, bucket + [entry]]))

    def _unmark_slashable(self, operator: bytes, height: int, entry: list[Any]) -> None:
        rest = [e for e in self.slashable(operator, height) if e != entry]
        self._put(keys.staking_slashable_key(operator, height), encode([1, rest]) if rest else None)

    # -- shares -------------------------------------------------------------------

    def _bond(self, v: Validator, delegator: bytes, amount: int) -> Validator:
        """Mint shares of ``v`` worth ``amount`` to ``delegator`` (the tokens are already in BONDED_POOL)."""
        if v.shares and not v.tokens:
            raise InsufficientStake(address_to_text(v.operator), 0, amount)  # fully slashed (part 2)
        minted = amount if not v.shares else amount * v.shares // v.tokens
        if minted == 0:
            raise InsufficientStake(address_to_text(v.operator), 0, amount)
        d = self.delegation(delegator, v.operator) or Delegation(0, v.reward_index, 0)
        d = d.settled(v.reward_index)
        self._put_delegation(delegator, v.operator, replace(d, shares=d.shares + minted))
        return replace(v, tokens=_checked("validator tokens", v.tokens + amount), shares=v.shares + minted)

    def _unbond(self, v: Validator, delegator: bytes, amount: int, *, self_bond_rule: bool = True) -> Validator:
        """Burn the shares worth ``amount`` from ``delegator``'s delegation with ``v`` (a slash passes
        ``self_bond_rule=False``: it is not the operator's choice)."""
        d = self.delegation(delegator, v.operator)
        have = v.value_of(d.shares) if d is not None else 0
        if d is None or amount > have:
            raise InsufficientStake(address_to_text(v.operator), have, amount)
        burned = -(-amount * v.shares // v.tokens)  # ceil: rounding favours the stake that stays
        d = d.settled(v.reward_index)
        d = replace(d, shares=d.shares - burned)
        after = replace(v, tokens=v.tokens - amount, shares=v.shares - burned)
        if self_bond_rule and delegator == v.operator:
            left = after.value_of(d.shares)
            if 0 < left < self.params.min_self_bond:
                raise SelfBondTooLow(left, self.params.min_self_bond, what="the self-bond left")
        self._put_delegation(delegator, v.operator, d)
        return after

    def self_bond(self, v: Validator) -> int:
        d = self.delegation(v.operator, v.operator)
        return 0 if d is None else v.value_of(d.shares)

    # -- transactions -------------------------------------------------------------

    def create(self, sender: bytes, pubkey: bytes, moniker: str, commission_bps: int, self_bond: int) -> Validator:
        if self.validator(sender) is not None:
            raise ValidatorExists(address_to_text(sender))
        holder = self.operator_of_key(address_of(pubkey))
        if holder is not None:
            raise DuplicateConsensusKey(pubkey, address_to_text(holder))
        if commission_bps > self.params.max_commission_bps:
            raise CommissionOutOfBounds(commission_bps, self.params.max_commission_bps)
        if self_bond < self.params.min_self_bond:
            raise SelfBondTooLow(self_bond, self.params.min_self_bond)
        self.ledger.debit(sender, QNX, self_bond)
        self.ledger.credit(BONDED_POOL, QNX, self_bond)
        v = Validator(Address(sender), pubkey, moniker, commission_bps, 0, 0, 0, False, 0, False, 0, 0, self.height)
        v = self._bond(v, sender, self_bond)
        self.put_validator(v)
        self._put(keys.staking_consensus_key(address_of(pubkey)), bytes(sender))
        return v

    def edit(self, sender: bytes, moniker: str, commission_bps: int) -> Validator:
        v = self.require(sender)
        if commission_bps != v.commission_bps:
            if commission_bps > self.params.max_commission_bps:
                raise CommissionOutOfBounds(commission_bps, self.params.max_commission_bps)
            epoch = epoch_of(self.height, self.epoch_length)
            if v.commission_epoch == epoch + 1:
                raise CommissionChangedThisEpoch(epoch)
            if abs(commission_bps - v.commission_bps) > self.params.max_commission_change_bps:
                raise CommissionChangeTooLarge(v.commission_bps, commission_bps,
                                               self.params.max_commission_change_bps)
            v = replace(v, commission_bps=commission_bps, commission_epoch=epoch + 1)
        v = replace(v, moniker=moniker)
        self.put_validator(v)
        return v

    def stake(self, sender: bytes, operator: bytes, amount: int) -> None:
        v = self.require(operator)
        self.ledger.debit(sender, QNX, amount)
        self.ledger.credit(BONDED_POOL, QNX, amount)
        self.put_validator(self._bond(v, sender, amount))

    def unstake(self, sender: bytes, operator: bytes, amount: int) -> UnbondingEntry:
        v = self.require(operator)
        self._check_queue_room(self.height + self.params.unbonding_blocks)
        entries = self.unbondings(sender)
        if len(entries) >= self.params.max_unbonding_entries:
            raise TooManyEntries(f"unbonding entries of {address_to_text(sender)}", self.params.max_unbonding_entries)
        self.put_validator(self._unbond(v, sender, amount))
        self.ledger.debit(BONDED_POOL, QNX, amount)
        self.ledger.credit(UNBONDING_POOL, QNX, amount)
        maturity = self.height + self.params.unbonding_blocks
        entry = UnbondingEntry(Address(operator), amount, amount, self.height, maturity)
        self._put_unbondings(sender, entries + [entry])
        self._enqueue(maturity, [UNBONDING, bytes(sender)])
        self._mark_slashable(operator, [UNBONDING, bytes(sender)])
        return entry

    def redelegate(self, sender: bytes, source: bytes, destination: bytes, amount: int) -> Redelegation:
        src = self.require(source)
        dst = self.require(destination)
        self._check_queue_room(self.height + self.params.unbonding_blocks)
        pending = self.redelegation(sender, destination)
        if pending is not None:
            raise RedelegationInProgress(
                f"a redelegation of {address_to_text(sender)} to {address_to_text(destination)} is in progress "
                f"(one per destination per unbonding period)", pending.maturity_height)
        incoming = self.redelegation(sender, source)
        if incoming is not None:
            raise RedelegationInProgress(
                f"stake of {address_to_text(sender)} redelegated to {address_to_text(source)} cannot move on",
                incoming.maturity_height)
        self.put_validator(self._unbond(src, sender, amount))
        self.put_validator(self._bond(dst, sender, amount))
        maturity = self.height + self.params.unbonding_blocks
        record = Redelegation(Address(source), Address(destination), amount, self.height, maturity)
        self._put(keys.staking_redelegation_key(sender, destination),
                  encode([1, bytes(source), amount, self.height, maturity]))
        self._enqueue(maturity, [REDELEGATION, bytes(sender), bytes(destination)])
        self._mark_slashable(source, [REDELEGATION, bytes(sender), bytes(destination)])
        return record

    def unjail(self, sender: bytes) -> None:
        v = self.require(sender)
        if v.tombstoned:
            raise Tombstoned(address_to_text(sender))
        if not v.jailed:
            raise NotJailed(address_to_text(sender))
        if self.height < v.jailed_until:
            raise JailPeriodNotOver(address_to_text(sender), v.jailed_until, self.height)
        self.put_validator(replace(v, jailed=False, jailed_until=0))

    def withdraw_rewards(self, sender: bytes) -> int:
        """Pay ``sender`` every delegation's rewards and, as an operator, its commission; the amount paid."""
        paid = 0
        for operator in self.delegated_to(sender):
            v = self.require(operator)
            d = self.delegation(sender, operator)
            if d is None:
                raise StateInvariantBroken(f"delegation index lists {operator.hex()} without a record")
            d = d.settled(v.reward_index)
            paid += d.unclaimed
            self._put_delegation(sender, operator, replace(d, unclaimed=0))
        own = self.validator(sender)
        if own is not None and own.commission:
            paid += own.commission
            self.put_validator(replace(own, commission=0))
        if paid:
            self.ledger.debit(REWARDS_POOL, QNX, paid)
            self.ledger.credit(sender, QNX, paid)
        return paid

    def pending_rewards(self, delegator: bytes, operator: bytes) -> int:
        v, d = self.validator(operator), self.delegation(delegator, operator)
        return 0 if v is None or d is None else d.settled(v.reward_index).unclaimed

    # -- slashing and jailing (state.slashing decides when) ------------------------------

    def _burn(self, pool: Address, amount: int) -> None:
        """Take ``amount`` out of ``pool`` and out of the QNX supply: slashing is the one burn."""
        if not amount:
            return
        self.ledger.debit(pool, QNX, amount)
        info = self.ledger.token(QNX)
        if info is None or info.supply < amount:
            raise StateInvariantBroken("burning slashed stake exceeds the QNX supply")
        self.ledger.put_token(replace(info, supply=info.supply - amount))

    def slash(self, operator: bytes, bps: int, infraction_height: int) -> int:
        """Burn ``bps``/10,000 of what was bonded to ``operator``'s validator at ``infraction_height``:
        its bonded tokens (every delegation's shares lose that fraction of their worth: shares
        stay, tokens fall), each unbonding entry away from it created since the first height of
        the infraction's epoch (its balance), and each redelegation away from it created since
        then (the moved stake's shares at the destination).  Returns what was burned.

        From the epoch's first height, not the infraction's: stake unstaked in an epoch still
        votes until the epoch ends, so a validator that unstakes everything and then equivocates
        in the same epoch is slashed all the same.

        Simpler than Cosmos's ``Slash`` in one way, stated here: the bonded part is a fraction of
        the tokens bonded *now*, so stake delegated between the infraction and its evidence is
        slashed too (Cosmos caps the total at the power held at the infraction height)."""
        burned = 0
        since = epoch_bounds(epoch_of(infraction_height, self.epoch_length), self.epoch_length)[0]
        for height in range(since, self.height + 1):
            for entry in self.slashable(operator, height):
                if entry[0] == UNBONDING:
                    burned += self._slash_unbondings(entry[1], operator, height, bps)
                else:
                    burned += self._slash_redelegation(entry[1], entry[2], operator, height, bps)
        v = self.require(operator)
        cut = v.tokens * bps // BPS
        if cut:
            self._burn(BONDED_POOL, cut)
            self.put_validator(replace(v, tokens=v.tokens - cut))
        return burned + cut

    def _slash_unbondings(self, delegator: bytes, operator: bytes, height: int, bps: int) -> int:
        entries, burned = [], 0
        for e in self.unbondings(delegator):
            if e.validator == operator and e.creation_height == height and e.balance:
                cut = min(e.initial * bps // BPS, e.balance)
                e = replace(e, balance=e.balance - cut)
                burned += cut
            entries.append(e)
        if burned:
            self._burn(UNBONDING_POOL, burned)
            self._put_unbondings(delegator, entries)
        return burned

    def _slash_redelegation(self, delegator: bytes, destination: bytes, source: bytes, height: int,
                            bps: int) -> int:
        record = self.redelegation(delegator, destination)
        if record is None or record.source != source or record.creation_height != height:
            return 0
        dst = self.require(destination)
        d = self.delegation(delegator, destination)
        if d is None or not dst.shares or not dst.tokens:
            return 0
        cut = min(record.amount * bps // BPS, dst.value_of(d.shares))
        if not cut:
            return 0
        self.put_validator(self._unbond(dst, delegator, cut, self_bond_rule=False))
        self._burn(BONDED_POOL, cut)
        return cut

    def jail(self, operator: bytes, until_height: int) -> None:
        """Jail ``operator``'s validator until ``until_height`` (it leaves the set at the next epoch end)."""
        v = self.require(operator)
        self.put_validator(replace(v, jailed=True, jailed_until=max(until_height, v.jailed_until)))

    def tombstone(self, operator: bytes) -> None:
        """Jail for good: ``unjail`` is refused forever."""
        v = self.require(operator)
        self.put_validator(replace(v, jailed=True, tombstoned=True))

    # -- once per block ---------------------------------------------------------------

    def allocate(self, amount: int, signers: Iterable[tuple[bytes, int]]) -> None:
        """Credit ``amount`` (already in REWARDS_POOL) to the validators behind ``signers``
        (consensus address, power), pro rata to power; rounding dust stays undistributed in the pool."""
        signers = sorted(signers)
        total = sum(power for _, power in signers)
        if not amount or not total:
            return
        for consensus_address, power in signers:
            operator = self.operator_of_key(consensus_address)
            share = amount * power // total
            if operator is None or not share:
                continue
            v = self.require(operator)
            commission = share * v.commission_bps // BPS
            rest = share - commission
            index = v.reward_index
            if v.shares:
                index += (rest << REWARD_SHIFT) // v.shares
            else:
                commission += rest  # nobody delegates: all of it is the operator's
            self.put_validator(replace(v, reward_index=index,
                                       commission=_checked("validator commission", v.commission + commission)))

    def end_block(self) -> tuple[tuple[bytes, int], ...]:
        """Mature this height's unbonding and redelegation entries; at an epoch's last height, the updates
        that make the next epoch's set."""
        self._mature()
        if not is_epoch_end(self.height, self.epoch_length):
            return ()
        return self._next_set_updates()

    def _mature(self) -> None:
        queue = self._queue(self.height)
        if not queue:
            return
        for entry in queue:
            if entry[0] == UNBONDING:
                delegator = entry[1]
                entries = self.unbondings(delegator)
                due = [e for e in entries if e.maturity_height == self.height]
                for e in due:
                    if e.balance:
                        self.ledger.debit(UNBONDING_POOL, QNX, e.balance)
                        self.ledger.credit(delegator, QNX, e.balance)
                    self._unmark_slashable(e.validator, e.creation_height, [UNBONDING, bytes(delegator)])
                self._put_unbondings(delegator, [e for e in entries if e.maturity_height != self.height])
            else:
                _, delegator, destination = entry
                record = self.redelegation(delegator, destination)
                if record is not None and record.maturity_height == self.height:
                    self._put(keys.staking_redelegation_key(delegator, destination), None)
                    self._unmark_slashable(record.source, record.creation_height,
                                           [REDELEGATION, bytes(delegator), bytes(destination)])
        self._put(keys.staking_queue_key(self.height), None)

    def ranked(self) -> list[Validator]:
        """The next set's members, by bonded tokens (ties: lower operator address), at most max_validators."""
        eligible = []
        for operator in self.candidates():
            v = self.require(operator)
            if v.jailed or v.tombstoned or v.power < 1 or self.self_bond(v) < self.params.min_self_bond:
                continue
            eligible.append(v)
        eligible.sort(key=lambda v: (-v.tokens, v.operator))
        return eligible[: self.params.max_validators]

    def _next_set_updates(self) -> tuple[tuple[bytes, int], ...]:
        top = self.ranked()
        if not top:
            return ()  # never an empty set: the current one stays
        new = {v.pubkey: v.power for v in top}
        old = self.active()
        changed = sorted((pk for pk in set(old) | set(new) if old.get(pk, 0) != new.get(pk, 0)), key=address_of)
        if changed:
            self._put_active(new)
        return tuple((pk, new.get(pk, 0)) for pk in changed)


def genesis_staking(ledger: Ledger, genesis: Genesis) -> None:
    """Each genesis validator as a staking validator operated by its own key's address, self-bonded
    with its power in whole QNX (minted into BONDED_POOL: ``Genesis.supply`` counts it), commission 0;
    the active set is the genesis set."""
    params = genesis.params.staking
    if params is None:
        return
    staking = Staking(ledger, params, height=0, epoch_length=genesis.params.epoch_length)
    bonded = 0
    for gv in genesis.validators:
        tokens = gv.power * POWER_REDUCTION
        operator = address_of(gv.pubkey)
        v = Validator(operator, gv.pubkey, gv.name, 0, 0, tokens, tokens, False, 0, False, 0, 0, 0)
        staking._put_delegation(operator, operator, Delegation(tokens, 0, 0))
        staking.put_validator(v)
        staking._put(keys.staking_consensus_key(operator), bytes(operator))
        bonded += tokens
    staking._put_active({gv.pubkey: gv.power for gv in genesis.validators})
    ledger.credit(BONDED_POOL, QNX, bonded)


__all__ = [
    "BONDED_POOL",
    "UNBONDING_POOL",
    "REWARDS_POOL",
    "MODULE_ACCOUNTS",
    "MAX_POWER",
    "Validator",
    "Delegation",
    "UnbondingEntry",
    "Redelegation",
    "Staking",
    "epoch_of",
    "epoch_bounds",
    "is_epoch_end",
    "genesis_staking",
]
