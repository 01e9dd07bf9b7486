"""Read-only staking queries over committed state (the head or a past height): what the RPC serves."""

from __future__ import annotations

from dataclasses import dataclass

from state import keys
from state.abc import KVStore
from state.amounts import QNX
from state.crypto import Address
from state.genesis import Params
from state.ledger import Ledger, _stored
from state.slashing import EvidenceRecord, SigningInfo, Slashing
from state.staking import (
    BONDED_POOL,
    REWARDS_POOL,
    UNBONDING_POOL,
    Redelegation,
    Staking,
    UnbondingEntry,
    Validator,
    epoch_bounds,
    epoch_of,
)


@dataclass(frozen=True, slots=True)
class EpochInfo:
    epoch: int
    first_height: int
    last_height: int
    epoch_length: int

    @property
    def next_set_height(self) -> int:
        """The first height signed by the set the last block of this epoch computes."""
        return self.last_height + 1

    @classmethod
    def of(cls, height: int, epoch_length: int) -> "EpochInfo":
        epoch = epoch_of(height, epoch_length)
        first, last = epoch_bounds(epoch, epoch_length)
        return cls(epoch, first, last, epoch_length)


@dataclass(frozen=True, slots=True)
class DelegationView:
    validator: Address
    shares: int
    amount: int  # what the shares are worth now
    pending_rewards: int


@dataclass(frozen=True, slots=True)
class StakingAccount:
    delegations: tuple[DelegationView, ...]
    unbonding: tuple[UnbondingEntry, ...]
    redelegations: tuple[Redelegation, ...]
    validator: Validator | None  # the validator this address operates, if any
    self_bond: int


class StakingQueries:
    def __init__(self, store: KVStore, params: Params) -> None:
        if params.staking is None:
            raise ValueError("staking queries on a chain without staking")
        self._store = store
        self._staking = Staking(Ledger(store), params.staking, height=0, epoch_length=params.epoch_length)

    def validator(self, operator: bytes) -> Validator | None:
        return self._staking.validator(operator)

    def validator_by_consensus(self, consensus_address: bytes) -> Validator | None:
        operator = self._staking.operator_of_key(consensus_address)
        return None if operator is None else self._staking.validator(operator)

    def validators(self) -> list[Validator]:
        """Every validator record, in operator address order."""
        prefix = b"sv"
        return [Validator.from_wire(k[len(prefix):], _stored(k, v, 13)) for k, v in self._store.iterate(prefix)]

    def ranked(self) -> list[Validator]:
        """The set the next epoch end would choose from the state read (Staking.ranked: eligible
        candidates, self-bond met, by stake, at most max_validators; bounded by max_candidates)."""
        return self._staking.ranked()

    def self_bond(self, v: Validator) -> int:
        return self._staking.self_bond(v)

    def active(self) -> dict[bytes, int]:
        return self._staking.active()

    def account(self, address: bytes) -> StakingAccount:
        s = self._staking
        delegations = []
        for operator in s.delegated_to(address):
            v, d = s.validator(operator), s.delegation(address, operator)
            if v is None or d is None:
                continue
            delegations.append(DelegationView(operator, d.shares, v.value_of(d.shares),
                                              d.settled(v.reward_index).unclaimed))
        prefix = b"sr" + bytes(address)
        redelegations = []
        for key, raw in self._store.iterate(prefix):
            w = _stored(key, raw, 5)
            redelegations.append(Redelegation(Address(w[1]), Address(key[len(prefix):]), w[2], w[3], w[4]))
        own = s.validator(address)
        return StakingAccount(tuple(delegations), tuple(s.unbondings(address)), tuple(redelegations), own,
                              0 if own is None else s.self_bond(own))

    def evidence(self, *, from_height: int = 0, after: bytes | None = None, limit: int = 100) -> list[EvidenceRecord]:
        """Applied equivocations by infraction height, then consensus address, from ``from_height``
        (past ``after``'s record at that height, when given), at most ``limit``: a caller pages on
        from the last record's (height, validator)."""
        records = []
        start = keys.STAKING_EVIDENCE + from_height.to_bytes(8, "big")
        if after is not None:
            start = keys.staking_evidence_key(from_height, after) + b"\x00"
        stop = keys.STAKING_EVIDENCE + b"\xff" * 9
        for key, raw in self._store.iterate_range(start, stop):
            if len(records) >= limit:
                break
            w = _stored(key, raw, 5)
            height = int.from_bytes(key[2:10], "big")
            records.append(EvidenceRecord(height, Address(key[10:]), Address(w[1]), w[2], w[3], w[4]))
        return records

    def signing_info(self, consensus_address: bytes) -> SigningInfo | None:
        """The downtime window's record of a member (missed commits), None while untracked."""
        return Slashing(self._staking).signing_info(consensus_address)

    def pools(self) -> dict[str, int]:
        """The module accounts' QNX: bonded, unbonding, rewards (undistributed)."""
        ledger = Ledger(self._store)
        return {name: ledger.balance(addr, QNX) for name, addr in
                (("bonded", BONDED_POOL), ("unbonding", UNBONDING_POOL), ("rewards", REWARDS_POOL))}


__all__ = ["EpochInfo", "DelegationView", "StakingAccount", "StakingQueries"]
