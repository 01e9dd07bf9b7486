"""The evidence pool (node/evidence.py): verified against its height's set, one per (validator, height),
bounded with the oldest going first, expiring, listed in a deterministic order."""

from __future__ import annotations

from consensus.messages import Evidence, Vote, VoteKind
from node.evidence import EvidencePool
from state.testing import TEST_CHAIN_ID as CHAIN
from state.testing import dev_key
from state.validators import ValidatorSet

KEYS = [dev_key(f"evidence-{i}") for i in range(4)]
VSET = ValidatorSet([(k.public_key, 10) for k in KEYS])


def equivocation(key, height: int, view: int = 0) -> Evidence:
    a = Vote.create(key, CHAIN, VoteKind.PREPARE, height, view, b"\x01" * 32)
    b = Vote.create(key, CHAIN, VoteKind.PREPARE, height, view, b"\x02" * 32)
    return Evidence.of(a, b)


def pool(**kw) -> EvidencePool:
    return EvidencePool(CHAIN, lambda h: VSET if h >= 1 else None, **kw)


def test_kept_once_per_validator_and_height_and_listed_in_order() -> None:
    p = pool()
    assert [p.add(equivocation(KEYS[2], 5), 9), p.add(equivocation(KEYS[0], 5), 9),
            p.add(equivocation(KEYS[1], 3), 9)] == ["added"] * 3
    assert p.add(equivocation(KEYS[0], 5, view=1), 9) == "known"  # same (validator, height): deduplicated
    assert [(e.height, e.validator) for e in p.pending()] == sorted((e.height, e.validator) for e in p.pending())
    assert len(p) == 3 and len(p.pending(2)) == 2


def test_forged_future_and_stale_evidence_is_refused() -> None:
    p = pool(max_age_heights=10)
    outsider = dev_key("evidence-outsider")
    assert p.add(equivocation(outsider, 5), 9) == "invalid"  # not a member of that height's set
    forged = equivocation(KEYS[0], 5)
    bad = Evidence(forged.vote_a, Vote(forged.vote_b.kind, 5, 0, forged.vote_b.block_hash, KEYS[0].address, b"\x00" * 64))
    assert p.add(bad, 9) == "invalid"  # a signature that is not the validator's
    assert p.add(equivocation(KEYS[0], 12), 9) == "stale"  # from the future
    assert p.add(equivocation(KEYS[0], 1), 20) == "stale"  # older than max_age_heights
    assert p.add(equivocation(KEYS[0], 0), 5) == "stale"  # no set is known for that height
    assert len(p) == 0 and p.refused == 5


def test_bounded_the_oldest_goes_first_and_it_expires() -> None:
    p = pool(max_items=2, max_age_heights=100)
    assert p.add(equivocation(KEYS[0], 1), 50) == p.add(equivocation(KEYS[1], 2), 50) == "added"
    assert p.add(equivocation(KEYS[2], 30), 50) == "added"  # full: height 1 goes to make room
    assert [e.height for e in p.pending()] == [2, 30]
    assert p.add(equivocation(KEYS[3], 1), 50) == "stale"  # older than everything kept: refused, nothing evicted
    assert p.prune(120) == 1 and [e.height for e in p.pending()] == [30]
