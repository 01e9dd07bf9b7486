"""Slashing: equivocation evidence applied once, and downtime over a sliding window of commits.

Modelled on Cosmos SDK ``x/slashing`` and ``x/evidence``, run at the start of
every block (before its transactions), on the block's overlay, so build and
execute reach the same app hash:

- **Double signing.** Each evidence item a block carries has been verified by
  the application (consensus/'s verifier, against the set of the infraction's
  height) and checked for age.  Applying it burns ``slash_double_sign_bps`` of
  what was bonded to the offender at that height (``Staking.slash``: its
  bonded tokens, unbondings and redelegations away from it created since),
  jails it for good (tombstoned: ``unjail`` is refused forever, so it leaves
  the set at the next epoch end and never returns) and records the infraction
  under (height, consensus address), so the same equivocation is never applied
  twice and is listed by ``qenex_getEvidence``.  A second equivocation by a
  validator already tombstoned is refused in blocks: it cannot be punished
  again, and a proposer gains nothing by carrying it.
- **Downtime.** Block ``h``'s ``last_commit`` certifies block ``h - 1``: every
  member of the set that signed ``h - 1`` either signed that certificate or
  missed it.  A member's signing record keeps one bit per height of the last
  ``signed_blocks_window`` (in 1024-bit chunks, so a block writes at most one
  chunk per member), the count of missed bits, and the first and last heights
  tracked.  Once a full window has been tracked, more than ``window -
  min_signed`` misses (``min_signed = window · min_signed_per_window_bps /
  10,000``, floored) slashes ``slash_downtime_bps`` and jails it until ``h +
  downtime_jail_blocks``; its record starts afresh.  A gap in tracking (the
  validator left the set, or was jailed) also starts it afresh, so old misses
  never count twice.  Jailed members are not tracked.

Which signatures a ``last_commit`` carries is chosen by the proposer of
``h``: it may leave an honest validator's signature out (the certificate
needs only more than 2/3 of power).  Proposers holding a share ``b`` of the
power propose about that share of the heights, so they can make an honest
validator miss about ``b`` of its window: with ``b`` below 1/3 that stays
under the threshold while ``min_signed_per_window_bps`` is at most about
6,600 (the default is 5,000).  The engine's late-vote collection
(``consensus.engine``) gives an honest proposer every signature that arrived
before it built; a proposer whose head came by sync carries only the
quorum it fetched, so a consistently slow validator can still collect
misses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from state import keys
from state.codec import encode
from state.crypto import Address, address_to_text
from state.errors import StateInvariantBroken
from state.genesis import StakingParams
from state.ledger import _stored
from state.staking import BPS, Staking

CHUNK_BITS = 1024
CHUNK_BYTES = CHUNK_BITS // 8
SIGNING_RECORD_VERSION = 1
EVIDENCE_RECORD_VERSION = 1


@dataclass(frozen=True, slots=True)
class SigningInfo:
    start_height: int  # the first height tracked in this run of the window
    last_height: int  # the last height tracked
    missed: int  # set bits in the window

    def to_wire(self) -> list[int]:
        return [SIGNING_RECORD_VERSION, self.start_height, self.last_height, self.missed]


@dataclass(frozen=True, slots=True)
class EvidenceRecord:
    height: int  # of the infraction
    validator: Address  # consensus address
    operator: Address
    included_height: int
    burned: int
    evidence: bytes


@dataclass(frozen=True, slots=True)
class CommitVote:
    """One member of the set that signed height ``h - 1``: did block ``h``'s last_commit carry it?"""

    validator: bytes  # consensus address
    signed: bool


def max_missed(params: StakingParams) -> int:
    """The most misses a full window may hold without a downtime slash."""
    window = params.signed_blocks_window
    return window - window * params.min_signed_per_window_bps // BPS


class Slashing:
    def __init__(self, staking: Staking) -> None:
        self.staking = staking
        self.params = staking.params
        self.height = staking.height

    # -- records -----------------------------------------------------------------

    def evidence_record(self, height: int, validator: bytes) -> EvidenceRecord | None:
        key = keys.staking_evidence_key(height, validator)
        raw = self.staking.ledger.store.get(key)
        if raw is None:
            return None
        w = _stored(key, raw, 5)
        return EvidenceRecord(height, Address(validator), Address(w[1]), w[2], w[3], w[4])

    def signing_info(self, validator: bytes) -> SigningInfo | None:
        key = keys.staking_signing_key(validator)
        raw = self.staking.ledger.store.get(key)
        if raw is None:
            return None
        w = _stored(key, raw, 4)
        return SigningInfo(w[1], w[2], w[3])

    def _bit(self, validator: bytes, height: int) -> bool:
        index = height % self.params.signed_blocks_window
        raw = self.staking.ledger.store.get(keys.staking_signing_bits_key(validator, index // CHUNK_BITS))
        if raw is None:
            return False
        return bool(raw[(index % CHUNK_BITS) // 8] >> (index % 8) & 1)

    def _set_bit(self, validator: bytes, height: int, value: bool) -> None:
        index = height % self.params.signed_blocks_window
        key = keys.staking_signing_bits_key(validator, index // CHUNK_BITS)
        raw = self.staking.ledger.store.get(key)
        chunk = bytearray(raw if raw is not None else bytes(CHUNK_BYTES))
        if len(chunk) != CHUNK_BYTES:
            raise StateInvariantBroken(f"signing bits under 0x{key.hex()} are {len(chunk)} bytes")
        bit = 1 << (index % 8)
        chunk[(index % CHUNK_BITS) // 8] = (chunk[(index % CHUNK_BITS) // 8] | bit) if value else (
            chunk[(index % CHUNK_BITS) // 8] & ~bit)
        self.staking._put(key, bytes(chunk) if any(chunk) else None)

    def _clear(self, validator: bytes) -> None:
        """Forget a member's window: record and every chunk (at most window / 1024 deletes)."""
        self.staking._put(keys.staking_signing_key(validator), None)
        chunks = -(-self.params.signed_blocks_window // CHUNK_BITS)
        for chunk in range(chunks):
            key = keys.staking_signing_bits_key(validator, chunk)
            if self.staking.ledger.store.get(key) is not None:
                self.staking._put(key, None)

    # -- double signing ------------------------------------------------------------

    def refusal(self, height: int, validator: bytes) -> str | None:
        """Why an (already verified) equivocation at ``height`` by ``validator`` may not be applied
        in this block, or None (age, a second application, an offender that is no validator or
        already tombstoned)."""
        if height >= self.height:
            return f"evidence of height {height} is not below the block's height {self.height}"
        if self.height - height > self.params.max_evidence_age:
            return (f"evidence of height {height} expired: older than max_evidence_age "
                    f"{self.params.max_evidence_age} blocks at height {self.height}")
        if self.evidence_record(height, validator) is not None:
            return f"the equivocation by {address_to_text(validator)} at height {height} was already applied"
        operator = self.staking.operator_of_key(validator)
        if operator is None:
            return f"{address_to_text(validator)} is no registered validator"
        if self.staking.require(operator).tombstoned:
            return f"validator {address_to_text(operator)} is already tombstoned"
        return None

    def apply_evidence(self, height: int, validator: bytes, evidence: bytes) -> EvidenceRecord:
        """Slash, tombstone and record one equivocation (``refusal`` returned None for it)."""
        problem = self.refusal(height, validator)
        if problem is not None:
            raise StateInvariantBroken(f"evidence applied that may not be: {problem}")
        operator = self.staking.operator_of_key(validator)
        assert operator is not None
        burned = self.staking.slash(operator, self.params.slash_double_sign_bps, height)
        self.staking.tombstone(operator)
        self._clear(validator)
        record = EvidenceRecord(height, Address(validator), operator, self.height, burned, evidence)
        self.staking._put(keys.staking_evidence_key(height, validator),
                          encode([EVIDENCE_RECORD_VERSION, bytes(operator), self.height, burned, evidence]))
        return record

    # -- downtime ----------------------------------------------------------------------

    def track(self, votes: Iterable[CommitVote]) -> list[Address]:
        """Record the parent's commit (height ``self.height - 1``) for each member; slash and jail
        whoever passed the threshold.  Returns the operators jailed, in consensus-address order."""
        tracked = self.height - 1
        if tracked < 1:
            return []
        jailed = []
        for vote in sorted(votes, key=lambda v: v.validator):
            operator = self.staking.operator_of_key(vote.validator)
            if operator is None:
                continue
            v = self.staking.require(operator)
            if v.jailed:
                continue
            info = self.signing_info(vote.validator)
            if info is None or info.last_height != tracked - 1:
                if info is not None:
                    self._clear(vote.validator)
                info = SigningInfo(tracked, tracked - 1, 0)
            missed = info.missed
            was = self._bit(vote.validator, tracked) if info.start_height + self.params.signed_blocks_window <= tracked \
                else False
            now = not vote.signed
            if was != now:
                self._set_bit(vote.validator, tracked, now)
                missed += 1 if now else -1
            info = SigningInfo(info.start_height, tracked, missed)
            full = tracked - info.start_height + 1 >= self.params.signed_blocks_window
            if full and missed > max_missed(self.params):
                self.staking.slash(operator, self.params.slash_downtime_bps, tracked)
                self.staking.jail(operator, self.height + self.params.downtime_jail_blocks)
                self._clear(vote.validator)
                jailed.append(operator)
                continue
            self.staking._put(keys.staking_signing_key(vote.validator), encode(info.to_wire()))
        return jailed


__all__ = ["Slashing", "SigningInfo", "EvidenceRecord", "CommitVote", "max_missed", "CHUNK_BITS"]
