"""Table-driven unit tests of the PBFT engine: event in, exact actions out, state after.

Like malachite's ``TestStep { input, expected_outputs, new_state }``.  Ed25519
signatures are deterministic, so expected messages are built with the same
keys and compared exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from consensus.engine import (
    Broadcast,
    BuildProposal,
    CommitBlock,
    Engine,
    HeightStarted,
    MessageReceived,
    PenalizePeer,
    ProposalBuilt,
    ProposalValidated,
    RebroadcastDue,
    Redeliver,
    ReportEvidence,
    RequestSync,
    ScheduleTimeout,
    Step,
    TimeoutConfig,
    TimeoutElapsed,
    ValidateProposal,
)
from consensus.messages import (
    CommitCertificate,
    Evidence,
    NewView,
    PreparedCertificate,
    Proposal,
    ViewChange,
    Vote,
    VoteKind,
)
from state.validators import ValidatorSet
from state.crypto import PrivateKey, sha256

CHAIN = "qenex-test"
PREPARE, COMMIT = VoteKind.PREPARE, VoteKind.COMMIT
TIMEOUTS = TimeoutConfig(base_ms=2000, increment_ms=1000, max_ms=30000)


def block(name: str) -> tuple[bytes, bytes]:
    data = f"block {name}".encode()
    return data, bytes(sha256(data))


BLOCK_A, HASH_A = block("A")
BLOCK_B, HASH_B = block("B")


def validated(height: int, view: int, block_hash: bytes, valid: bool, reason: str = "") -> ProposalValidated:
    """The driver's verdict on the bytes of ``block(...)``, whose hash is the digest of those bytes."""
    return ProposalValidated(height, view, block_hash, valid, reason, block_digest=block_hash)


class Net:
    """Keys, a validator set and message factories for one test."""

    def __init__(self, powers: list[int], seed: int = 1) -> None:
        keys = [PrivateKey(bytes([seed + i]) * 32) for i in range(len(powers))]
        self.vset = ValidatorSet([(k.public_key, p) for k, p in zip(keys, powers)])
        by_address = {bytes(k.address): k for k in keys}
        # Keys in address order, as the set orders validators.
        self.keys = [by_address[v.address] for v in self.vset]
        self.power = {bytes(k.address): p for k, p in zip(keys, powers)}

    def key(self, address: bytes) -> PrivateKey:
        return next(k for k in self.keys if k.address == address)

    def primary(self, view: int = 0, vset: ValidatorSet | None = None) -> PrivateKey:
        return self.key((vset or self.vset).proposer_for(view).address)

    def backups(self, view: int = 0) -> list[PrivateKey]:
        return [k for k in self.keys if k.address != self.vset.proposer_for(view).address]

    def engine(self, key: PrivateKey | None, height: int = 1) -> Engine:
        return Engine(CHAIN, key, height, self.vset, TIMEOUTS)

    def proposal(self, key: PrivateKey, view: int = 0, data: bytes = BLOCK_A, h: bytes = HASH_A,
                 height: int = 1) -> Proposal:
        return Proposal.create(key, CHAIN, height, view, data, h)

    def vote(self, key: PrivateKey, kind: VoteKind, view: int = 0, h: bytes = HASH_A, height: int = 1) -> Vote:
        return Vote.create(key, CHAIN, kind, height, view, h)

    def prepared(self, signers: list[PrivateKey], view: int = 0, data: bytes = BLOCK_A,
                 h: bytes = HASH_A) -> PreparedCertificate:
        votes = sorted((self.vote(k, PREPARE, view, h) for k in signers), key=lambda v: v.validator)
        return PreparedCertificate(1, view, data, h, tuple(votes))

    def view_change(self, key: PrivateKey, new_view: int, prepared: PreparedCertificate | None = None) -> ViewChange:
        return ViewChange.create(key, CHAIN, 1, new_view, prepared)


def received(message: Any, peer: str = "peer") -> MessageReceived:
    return MessageReceived(message, peer)


@dataclass
class TestStep:
    __test__ = False  # not a pytest class

    desc: str
    input: Any
    expected: list[Any]
    state: dict[str, Any] = field(default_factory=dict)


def run_steps(engine: Engine, steps: list[TestStep]) -> None:
    for number, step in enumerate(steps):
        actions = engine.handle(step.input)
        assert actions == step.expected, f"step {number} ({step.desc}): got {actions}"
        for name, want in step.state.items():
            got = getattr(engine.state, name)
            assert got == want, f"step {number} ({step.desc}): state.{name} is {got!r}, expected {want!r}"


# -- the happy path -------------------------------------------------------------


def test_backup_happy_path() -> None:
    net = Net([1, 1, 1, 1])
    primary = net.primary()
    next_primary = net.vset.increment(1).proposer.address
    # "me" is primary neither now nor at height 2, so no BuildProposal below.
    me, b, c = sorted(net.backups(), key=lambda k: k.address == next_primary)
    engine = net.engine(me)
    proposal = net.proposal(primary)
    commits = [net.vote(k, COMMIT) for k in (me, b, c)]
    run_steps(engine, [
        TestStep("start", HeightStarted(1, net.vset), [ScheduleTimeout(1, 0, 2000)],
                 {"step": Step.PROPOSE, "view": 0, "primary": primary.address}),
        TestStep("proposal", received(proposal), [ValidateProposal(1, 0, BLOCK_A, HASH_A)],
                 {"proposal_hash": HASH_A, "step": Step.PROPOSE}),
        TestStep("duplicate proposal", received(proposal), []),
        TestStep("validated", validated(1, 0, HASH_A, True, ""),
                 [Broadcast(net.vote(me, PREPARE))], {"step": Step.PREPARE}),
        TestStep("prepare b", received(net.vote(b, PREPARE)), [], {"prepared_view": None}),
        TestStep("prepare b again", received(net.vote(b, PREPARE)), []),
        TestStep("prepare c: quorum 3 of 4", received(net.vote(c, PREPARE)),
                 [Broadcast(net.vote(me, COMMIT))],
                 {"step": Step.COMMIT, "prepared_view": 0, "prepared_block_hash": HASH_A}),
        TestStep("commit b", received(commits[1]), []),
        TestStep("own commit echoed back", received(commits[0]), []),
        TestStep("commit c", received(commits[2]),
                 [CommitBlock(1, BLOCK_A, HASH_A, CommitCertificate.from_votes(1, 0, HASH_A, commits))],
                 {"step": Step.COMMITTED, "committed_block_hash": HASH_A}),
        TestStep("late commit of the primary: still one CommitBlock", received(net.vote(primary, COMMIT)), []),
        TestStep("timeouts are ignored once committed", TimeoutElapsed(1, 0), [], {"step": Step.COMMITTED}),
        TestStep("next height", HeightStarted(2, net.vset.increment(1)), [ScheduleTimeout(2, 0, 2000)],
                 {"height": 2, "view": 0, "step": Step.PROPOSE, "prepared_view": None}),
    ])


def test_primary_builds_proposes_and_prepares() -> None:
    net = Net([1, 1, 1, 1])
    me = net.primary()
    engine = net.engine(me)
    run_steps(engine, [
        TestStep("start as primary", HeightStarted(1, net.vset), [ScheduleTimeout(1, 0, 2000), BuildProposal(1, 0)]),
        TestStep("a stale build is dropped", ProposalBuilt(1, 1, BLOCK_B, HASH_B), []),
        TestStep("built", ProposalBuilt(1, 0, BLOCK_A, HASH_A),
                 [Broadcast(net.proposal(me)), Broadcast(net.vote(me, PREPARE))], {"step": Step.PREPARE}),
        TestStep("built twice", ProposalBuilt(1, 0, BLOCK_B, HASH_B), []),
    ])


def test_commit_certificate_from_the_engine_verifies() -> None:
    net = Net([1, 1, 1, 1])
    engine = net.engine(None)
    engine.handle(HeightStarted(1, net.vset))
    engine.handle(received(net.proposal(net.primary())))
    actions = [a for k in net.keys[:3] for a in engine.handle(received(net.vote(k, COMMIT)))]
    assert actions == [ValidateProposal(1, 0, BLOCK_A, HASH_A)]  # an observer validates before it commits
    (commit,) = engine.handle(validated(1, 0, HASH_A, True))
    assert isinstance(commit, CommitBlock)
    commit.certificate.verify(CHAIN, net.vset)
    assert CommitCertificate.decode(commit.certificate.encode()) == commit.certificate


class Penalized:
    """Matches PenalizePeer(peer, reason) when ``fragment`` is in the reason."""

    def __init__(self, peer: str, fragment: str) -> None:
        self.peer, self.fragment = peer, fragment

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PenalizePeer) and other.peer == self.peer and self.fragment in other.reason

    def __repr__(self) -> str:
        return f"Penalized({self.peer!r}, {self.fragment!r})"


def started(engine: Engine, net: Net) -> Engine:
    engine.handle(HeightStarted(1, net.vset))
    return engine


# -- quorums count power -------------------------------------------------------


def test_quorum_counts_power_not_heads() -> None:
    # Total 90, quorum = 90*2//3 + 1 = 61: the 60-power validator alone is
    # short, with any 10 it is enough, and the three 10s together are not.
    net = Net([10, 10, 10, 60])
    assert (net.vset.total_power, net.vset.quorum_power) == (90, 61)
    whale = next(k for k in net.keys if net.power[k.address] == 60)
    small = [k for k in net.keys if net.power[k.address] == 10]
    engine = started(net.engine(None), net)  # an observer counts the same way
    engine.handle(received(net.proposal(net.primary())))
    smalls = [net.vote(k, COMMIT) for k in small]
    run_steps(engine, [
        TestStep("three 10s: 30 < 61", received(smalls[0]), []),
        TestStep("", received(smalls[1]), []),
        TestStep("", received(smalls[2]), [], {"step": Step.PROPOSE}),
    ])
    engine = started(net.engine(None), net)
    engine.handle(received(net.proposal(net.primary())))
    whale_vote = net.vote(whale, COMMIT)
    run_steps(engine, [
        TestStep("the whale alone: 60 < 61", received(whale_vote), []),
        TestStep("60 + 10 = 70 >= 61: validate the block first", received(smalls[0]),
                 [ValidateProposal(1, 0, BLOCK_A, HASH_A)], {"step": Step.PROPOSE}),
        TestStep("valid: commit", validated(1, 0, HASH_A, True),
                 [CommitBlock(1, BLOCK_A, HASH_A, CommitCertificate.from_votes(1, 0, HASH_A, [whale_vote, smalls[0]]))],
                 {"step": Step.COMMITTED}),
    ])


def test_quorum_is_strictly_more_than_two_thirds() -> None:
    # With 10, 10, 10, 70 the 70-power validator holds more than 2/3 of 100
    # by itself: quorum_power is 67, so it alone IS a quorum.
    assert Net([10, 10, 10, 70]).vset.quorum_power == 67
    assert Net([1, 1, 1]).vset.quorum_power == 3  # exactly 2/3 is not enough
    assert Net([1, 1, 1, 1]).vset.quorum_power == 3


def test_prepare_quorum_with_unequal_stakes() -> None:
    net = Net([10, 10, 10, 60])
    whale = next(k for k in net.keys if net.power[k.address] == 60)
    primary = net.primary()
    me = next(k for k in net.keys if k.address not in (whale.address, primary.address))
    engine = started(net.engine(me), net)
    engine.handle(received(net.proposal(primary)))
    run_steps(engine, [
        TestStep("validated", validated(1, 0, HASH_A, True), [Broadcast(net.vote(me, PREPARE))]),
        TestStep("whale prepares: 60 + 10 (mine) >= 61", received(net.vote(whale, PREPARE)),
                 [Broadcast(net.vote(me, COMMIT))], {"prepared_view": 0}),
    ])


# -- bad input -------------------------------------------------------------------


def test_bad_messages_penalise_the_peer() -> None:
    net = Net([1, 1, 1, 1])
    outsider = PrivateKey(b"\x99" * 32)
    primary = net.primary()
    me, b, c = net.backups()
    good = net.vote(b, PREPARE)
    forged = Vote(good.kind, good.height, good.view, good.block_hash, good.validator, bytes(64))
    other_chain = Vote.create(b, "other-chain", PREPARE, 1, 0, HASH_A)
    tampered = Proposal(1, 0, BLOCK_B, HASH_A, primary.address, net.proposal(primary).signature)
    engine = started(net.engine(me), net)
    run_steps(engine, [
        TestStep("forged signature", received(forged, "mallory"), [Penalized("mallory", "bad signature")]),
        TestStep("signed for another chain", received(other_chain, "mallory"), [Penalized("mallory", "bad signature")]),
        TestStep("not a validator", received(net.vote(outsider, PREPARE), "eve"), [Penalized("eve", "not a validator")]),
        TestStep("proposal by a backup", received(net.proposal(c), "carol"), [Penalized("carol", "primary is")]),
        TestStep("block bytes swapped under the signature", received(tampered, "relay"),
                 [Penalized("relay", "bad signature")], {"proposal_hash": None}),
        TestStep("local input is never penalised", MessageReceived(forged, None), []),
        TestStep("the genuine vote still counts", received(good), []),
        TestStep("the genuine proposal still works", received(net.proposal(primary)),
                 [ValidateProposal(1, 0, BLOCK_A, HASH_A)]),
    ])


def test_invalid_block_gets_no_prepare() -> None:
    net = Net([1, 1, 1, 1])
    me = net.backups()[0]
    engine = started(net.engine(me), net)
    engine.handle(received(net.proposal(net.primary())))
    run_steps(engine, [
        TestStep("invalid", validated(1, 0, HASH_A, False, "app hash mismatch"), [], {"step": Step.PROPOSE}),
        TestStep("proposal again: not re-validated", received(net.proposal(net.primary())), []),
        TestStep("timeout: leave the view", TimeoutElapsed(1, 0),
                 [Broadcast(net.view_change(me, 1)), ScheduleTimeout(1, 1, 3000)], {"step": Step.VIEW_CHANGE}),
    ])


def test_equivocation_is_reported_once() -> None:
    net = Net([1, 1, 1, 1])
    me, b, _ = net.backups()
    engine = started(net.engine(me), net)
    vote_a, vote_b = net.vote(b, PREPARE, h=HASH_A), net.vote(b, PREPARE, h=HASH_B)
    _, hash_c = block("C")
    run_steps(engine, [
        TestStep("first vote", received(vote_a), []),
        TestStep("conflicting vote", received(vote_b), [ReportEvidence(Evidence.of(vote_a, vote_b))]),
        TestStep("a third hash: dropped", received(net.vote(b, PREPARE, h=hash_c)), []),
        TestStep("same vote again", received(vote_b), []),
        TestStep("a COMMIT for A is a different kind", received(net.vote(b, COMMIT, h=HASH_A)), []),
        TestStep("evidence gossiped back: already reported", received(Evidence.of(vote_a, vote_b)), []),
    ])
    evidence = Evidence.of(vote_a, vote_b)
    evidence.verify(CHAIN, net.vset)
    assert evidence.vote_a.block_hash < evidence.vote_b.block_hash


# -- timeouts and view changes ----------------------------------------------------


def test_timeouts_grow_per_view_up_to_the_cap() -> None:
    net = Net([1, 1, 1, 1])
    me, b, c = net.backups()
    engine = Engine(CHAIN, me, 1, net.vset, TimeoutConfig(base_ms=2000, increment_ms=1000, max_ms=5000))
    got = [a.duration_ms for a in engine.handle(HeightStarted(1, net.vset)) if isinstance(a, ScheduleTimeout)]
    for view in range(6):
        if view:  # a quorum left for this view, and no NEW-VIEW came
            engine.handle(received(net.view_change(b, view)))
            engine.handle(received(net.view_change(c, view)))
        actions = engine.handle(TimeoutElapsed(1, view))
        got += [a.duration_ms for a in actions if isinstance(a, ScheduleTimeout)]
        assert engine.state.view == view + 1
    assert got == [2000, 3000, 4000, 5000, 5000, 5000, 5000]
    assert engine.handle(TimeoutElapsed(1, 2)) == []  # a stale timer


def _not_primary_of_view_1(net: Net) -> list[PrivateKey]:
    """The view-0 backups, the first of which is not the view-1 primary either."""
    return sorted(net.backups(), key=lambda k: k.address == net.primary(1).address)


def test_a_view_change_alone_waits_for_a_quorum_before_moving_on() -> None:
    net = Net([1, 1, 1, 1])
    me, b, c = _not_primary_of_view_1(net)
    engine = started(net.engine(me), net)
    run_steps(engine, [
        TestStep("timeout in view 0", TimeoutElapsed(1, 0),
                 [Broadcast(net.view_change(me, 1)), ScheduleTimeout(1, 1, 3000)], {"view": 1}),
        TestStep("alone in view 1: wait, don't run ahead", TimeoutElapsed(1, 1), [ScheduleTimeout(1, 1, 3000)],
                 {"view": 1, "step": Step.VIEW_CHANGE}),
        TestStep("two of four", received(net.view_change(b, 1)), []),
        TestStep("still no quorum", TimeoutElapsed(1, 1), [ScheduleTimeout(1, 1, 3000)], {"view": 1}),
        TestStep("three of four", received(net.view_change(c, 1)), []),
        TestStep("a quorum left and no NEW-VIEW came: next view", TimeoutElapsed(1, 1),
                 [Broadcast(net.view_change(me, 2)), ScheduleTimeout(1, 2, 4000)], {"view": 2}),
    ])


def test_timeout_sends_view_change_with_prepared_certificate() -> None:
    net = Net([1, 1, 1, 1])
    primary = net.primary()
    me, b, c = _not_primary_of_view_1(net)
    engine = started(net.engine(me), net)
    engine.handle(received(net.proposal(primary)))
    engine.handle(validated(1, 0, HASH_A, True))
    engine.handle(received(net.vote(b, PREPARE)))
    engine.handle(received(net.vote(c, PREPARE)))
    cert = net.prepared([me, b, c])
    run_steps(engine, [
        TestStep("timeout while prepared", TimeoutElapsed(1, 0),
                 [Broadcast(net.view_change(me, 1, cert)), ScheduleTimeout(1, 1, 3000)],
                 {"view": 1, "step": Step.VIEW_CHANGE, "prepared_view": 0}),
        TestStep("late commits of view 0 are not sent any more", received(net.vote(b, PREPARE)), []),
        TestStep("the stale timer", TimeoutElapsed(1, 0), []),
        TestStep("", received(net.view_change(b, 1, cert)), []),
        TestStep("", received(net.view_change(c, 1, cert)), []),
        TestStep("the next one: same certificate", TimeoutElapsed(1, 1),
                 [Broadcast(net.view_change(me, 2, cert)), ScheduleTimeout(1, 2, 4000)], {"view": 2}),
    ])


def test_join_rule_follows_more_than_one_third() -> None:
    net = Net([1, 1, 1, 1])
    me, b, c = net.backups()
    engine = started(net.engine(me), net)
    run_steps(engine, [
        TestStep("one of four wants view 3: not enough", received(net.view_change(b, 3)), [], {"view": 0}),
        TestStep("two of four (> 1/3) for views >= 2: join view 2", received(net.view_change(c, 2)),
                 [Broadcast(net.view_change(me, 2)), ScheduleTimeout(1, 2, 4000)], {"view": 2}),
    ])


def test_new_primary_reproposes_the_highest_prepared_block() -> None:
    net = Net([1, 1, 1, 1])
    me = net.primary(1)
    x, y = [k for k in net.keys if k.address not in (me.address, net.primary(0).address)]
    engine = started(net.engine(me), net)
    old = net.prepared([net.primary(0), x, y], view=0)
    vc_me, vc_x, vc_y = net.view_change(me, 1), net.view_change(x, 1, old), net.view_change(y, 1)
    plan = tuple(sorted([vc_me, vc_x, vc_y], key=lambda vc: vc.validator))
    # The certificates travel without their block: the proposal carries it.
    new_view = NewView.create(me, CHAIN, tuple(vc.without_block() for vc in plan), net.proposal(me, view=1))
    assert [vc.prepared.block for vc in new_view.view_changes if vc.prepared] == [b""]
    run_steps(engine, [
        TestStep("timeout", TimeoutElapsed(1, 0), [Broadcast(vc_me), ScheduleTimeout(1, 1, 3000)]),
        TestStep("a certificate for A from x", received(vc_x), []),
        TestStep("quorum of view changes: check A first", received(vc_y), [ValidateProposal(1, 1, BLOCK_A, HASH_A)]),
        TestStep("a later view change is not added to the frozen set", received(net.view_change(net.primary(0), 1)), []),
        TestStep("A is valid: NEW-VIEW re-proposes it", validated(1, 1, HASH_A, True),
                 [Broadcast(new_view), Broadcast(net.vote(me, PREPARE, view=1))],
                 {"step": Step.PREPARE, "proposal_hash": HASH_A}),
        TestStep("rebroadcast", RebroadcastDue(), [Broadcast(new_view), Broadcast(net.vote(me, PREPARE, view=1))]),
    ])


def test_new_primary_builds_when_nothing_was_prepared() -> None:
    net = Net([1, 1, 1, 1])
    me = net.primary(1)
    x, y = [k for k in net.keys if k.address not in (me.address, net.primary(0).address)]
    engine = started(net.engine(me), net)
    engine.handle(TimeoutElapsed(1, 0))
    plan = tuple(sorted([net.view_change(k, 1) for k in (me, x, y)], key=lambda vc: vc.validator))
    run_steps(engine, [
        TestStep("", received(net.view_change(x, 1)), []),
        TestStep("quorum, no certificate: build", received(net.view_change(y, 1)), [BuildProposal(1, 1)]),
        TestStep("built", ProposalBuilt(1, 1, BLOCK_B, HASH_B),
                 [Broadcast(NewView.create(me, CHAIN, plan, net.proposal(me, 1, BLOCK_B, HASH_B))),
                  Broadcast(net.vote(me, PREPARE, view=1, h=HASH_B))]),
    ])


def test_backup_checks_new_view_before_accepting_its_proposal() -> None:
    net = Net([1, 1, 1, 1])
    primary1 = net.primary(1)
    me, x = [k for k in net.keys if k.address not in (primary1.address, net.primary(0).address)]
    old = net.prepared([net.primary(0), x, me], view=0)
    vcs = tuple(sorted([net.view_change(primary1, 1), net.view_change(x, 1, old), net.view_change(me, 1)],
                       key=lambda vc: vc.validator))
    ignores_cert = NewView.create(primary1, CHAIN, vcs, net.proposal(primary1, 1, BLOCK_B, HASH_B))
    too_few = NewView.create(primary1, CHAIN, vcs[:2], net.proposal(primary1, 1, BLOCK_A, HASH_A))
    by_backup = NewView.create(x, CHAIN, vcs, net.proposal(x, 1, BLOCK_A, HASH_A))
    good = NewView.create(primary1, CHAIN, vcs, net.proposal(primary1, 1, BLOCK_A, HASH_A))
    engine = started(net.engine(me), net)
    run_steps(engine, [
        TestStep("ignores the prepared block", received(ignores_cert, "p1"), [Penalized("p1", "highest prepared")]),
        TestStep("too little power", received(too_few, "p1"), [Penalized("p1", "needs 3")]),
        TestStep("not the primary of view 1", received(by_backup, "x"), [Penalized("x", "primary is")],
                 {"view": 0}),
        TestStep("a valid NEW-VIEW moves us to view 1", received(good, "p1"),
                 [ScheduleTimeout(1, 1, 3000), ValidateProposal(1, 1, BLOCK_A, HASH_A)],
                 {"view": 1, "step": Step.PROPOSE, "proposal_hash": HASH_A}),
        TestStep("validated", validated(1, 1, HASH_A, True), [Broadcast(net.vote(me, PREPARE, view=1))]),
        TestStep("a second NEW-VIEW for view 1 is ignored", received(ignores_cert), []),
    ])


def test_stale_and_post_commit_messages_change_nothing() -> None:
    net = Net([1, 1, 1, 1])
    primary1, primary2 = net.primary(1), net.primary(2)
    me = next(k for k in net.keys if k.address not in (primary1.address, primary2.address, net.primary().address))
    others = [k for k in net.keys if k.address != me.address]
    vcs1 = tuple(sorted([net.view_change(k, 1) for k in others], key=lambda vc: vc.validator))
    vcs2 = tuple(sorted([net.view_change(k, 2) for k in others], key=lambda vc: vc.validator))
    nv1 = NewView.create(primary1, CHAIN, vcs1, net.proposal(primary1, 1))
    nv2 = NewView.create(primary2, CHAIN, vcs2, net.proposal(primary2, 2, BLOCK_B, HASH_B))
    engine = started(net.engine(me), net)
    run_steps(engine, [
        TestStep("NEW-VIEW for view 2", received(nv2),
                 [ScheduleTimeout(1, 2, 4000), ValidateProposal(1, 2, BLOCK_B, HASH_B)], {"view": 2}),
        TestStep("a NEW-VIEW for a lower view never takes us back", received(nv1), [], {"view": 2}),
        TestStep("nor do view changes for it", received(net.view_change(others[0], 1)), [], {"view": 2}),
    ])
    commits = [net.vote(k, COMMIT, view=2, h=HASH_B) for k in others]
    engine.handle(validated(1, 2, HASH_B, True))
    for vote in commits:
        engine.handle(received(vote))
    assert engine.state.step == Step.COMMITTED
    nv3 = NewView.create(net.primary(3), CHAIN,
                         tuple(sorted([net.view_change(k, 3) for k in others], key=lambda vc: vc.validator)),
                         net.proposal(net.primary(3), 3))
    run_steps(engine, [
        TestStep("committed: a later NEW-VIEW is ignored", received(nv3), [], {"step": Step.COMMITTED, "view": 2}),
        TestStep("and view changes", received(net.view_change(others[1], 5)), [], {"view": 2}),
        TestStep("and proposals", received(net.proposal(net.primary())), [], {"step": Step.COMMITTED}),
    ])


def test_commit_in_an_earlier_view_still_counts() -> None:
    # We left view 0, but a quorum had committed there: the certificate is proof.
    net = Net([1, 1, 1, 1])
    primary = net.primary()
    me, b, c = net.backups()
    engine = started(net.engine(me), net)
    engine.handle(received(net.proposal(primary)))
    engine.handle(TimeoutElapsed(1, 0))
    engine.handle(validated(1, 0, HASH_A, True))  # answered after we left view 0
    commits = [net.vote(k, COMMIT) for k in (primary, b, c)]
    run_steps(engine, [
        TestStep("", received(commits[0]), []),
        TestStep("", received(commits[1]), []),
        TestStep("quorum of view-0 commits", received(commits[2]),
                 [CommitBlock(1, BLOCK_A, HASH_A, CommitCertificate.from_votes(1, 0, HASH_A, commits))],
                 {"step": Step.COMMITTED, "committed_view": 0}),
    ])


# -- rebroadcast, other heights, observers ---------------------------------------------


def test_rebroadcast_resends_own_messages_of_the_current_view() -> None:
    net = Net([1, 1, 1, 1])
    primary = net.primary()
    me, b, c = net.backups()
    engine = started(net.engine(me), net)
    run_steps(engine, [
        TestStep("nothing signed yet", RebroadcastDue(), []),
        TestStep("", received(net.proposal(primary)), [ValidateProposal(1, 0, BLOCK_A, HASH_A)]),
        TestStep("an unanswered request is asked again", RebroadcastDue(), [ValidateProposal(1, 0, BLOCK_A, HASH_A)]),
        TestStep("", validated(1, 0, HASH_A, True), [Broadcast(net.vote(me, PREPARE))]),
        TestStep("a second answer changes nothing", validated(1, 0, HASH_A, True), []),
        TestStep("prepare", RebroadcastDue(), [Broadcast(net.vote(me, PREPARE))]),
        TestStep("", received(net.vote(b, PREPARE)), []),
        TestStep("", received(net.vote(c, PREPARE)), [Broadcast(net.vote(me, COMMIT))]),
        TestStep("prepare and commit", RebroadcastDue(), [Broadcast(net.vote(me, PREPARE)), Broadcast(net.vote(me, COMMIT))]),
        TestStep("timeout", TimeoutElapsed(1, 0),
                 [Broadcast(net.view_change(me, 1, net.prepared([me, b, c]))), ScheduleTimeout(1, 1, 3000)]),
        TestStep("the view change", RebroadcastDue(), [Broadcast(net.view_change(me, 1, net.prepared([me, b, c])))]),
    ])
    primary_engine = started(net.engine(primary), net)
    assert primary_engine.handle(RebroadcastDue()) == [BuildProposal(1, 0)]  # e.g. lost in a restart
    primary_engine.handle(ProposalBuilt(1, 0, BLOCK_A, HASH_A))
    assert primary_engine.handle(RebroadcastDue()) == [Broadcast(net.proposal(primary)),
                                                        Broadcast(net.vote(primary, PREPARE))]


def test_messages_for_the_next_height_are_buffered() -> None:
    net = Net([1, 1, 1, 1])
    next_set = net.vset.increment(1)
    primary2 = net.primary(0, next_set)
    me = next(k for k in net.keys if k.address != primary2.address)
    proposal2 = net.proposal(primary2, height=2)
    engine = started(net.engine(me), net)
    run_steps(engine, [
        TestStep("height 2 proposal while at 1", received(proposal2), []),
        TestStep("older height: ignored", MessageReceived(net.vote(primary2, PREPARE, height=0), "p"), []),
        TestStep("height 2 started: handed back to be logged and fed in", HeightStarted(2, next_set),
                 [ScheduleTimeout(2, 0, 2000), Redeliver(proposal2, "peer")], {"height": 2, "proposal_hash": None}),
        TestStep("fed back", received(proposal2), [ValidateProposal(2, 0, BLOCK_A, HASH_A)],
                 {"proposal_hash": HASH_A}),
    ])


def test_stuck_with_signs_of_the_next_height_requests_sync() -> None:
    net = Net([1, 1, 1, 1])
    me, b, _ = net.backups()
    engine = started(net.engine(me), net)
    run_steps(engine, [
        TestStep("a height-2 vote", received(net.vote(b, PREPARE, height=2)), []),
        TestStep("timeout: others moved on, fetch height 1", TimeoutElapsed(1, 0),
                 [RequestSync(1), Broadcast(net.view_change(me, 1)), ScheduleTimeout(1, 1, 3000)]),
    ])


def test_far_ahead_messages_request_sync_once() -> None:
    net = Net([1, 1, 1, 1])
    me, b, c = net.backups()
    forged = Vote(PREPARE, 9, 0, HASH_A, b.address, bytes(64))
    engine = started(net.engine(me), net)
    run_steps(engine, [
        TestStep("unverifiable: nothing", received(forged), []),
        TestStep("height 5 is signed: blocks up to 4 exist", received(net.vote(b, PREPARE, height=5)), [RequestSync(4)]),
        TestStep("again", received(net.vote(c, PREPARE, height=5)), []),
        TestStep("higher still", received(net.vote(c, PREPARE, height=7)), [RequestSync(6)]),
    ])


def test_commit_quorum_without_validated_bytes_commits_empty_for_sync() -> None:
    net = Net([1, 1, 1, 1])
    me, b, c = net.backups()
    engine = started(net.engine(me), net)
    commits = [net.vote(k, COMMIT) for k in (net.primary(), b, c)]
    engine.handle(received(commits[0]))
    engine.handle(received(commits[1]))
    run_steps(engine, [
        TestStep("quorum for a block never seen: decided, the driver syncs the bytes", received(commits[2]),
                 [CommitBlock(1, b"", HASH_A, CommitCertificate.from_votes(1, 0, HASH_A, commits))],
                 {"step": Step.COMMITTED, "committed_block_hash": HASH_A}),
        TestStep("the proposal arrives after all: too late", received(net.proposal(net.primary())), []),
    ])


def test_observer_never_signs_but_commits() -> None:
    net = Net([1, 1, 1, 1])
    outsider = PrivateKey(b"\x77" * 32)
    for signer in (None, outsider):
        engine = net.engine(signer)
        prepares = [net.vote(k, PREPARE) for k in net.keys]
        commits = [net.vote(k, COMMIT) for k in net.keys[:3]]
        run_steps(engine, [
            TestStep("start", HeightStarted(1, net.vset), [ScheduleTimeout(1, 0, 2000)], {"is_validator": False}),
            TestStep("proposal: nothing to validate", received(net.proposal(net.primary())), []),
            *[TestStep("prepare", received(p), []) for p in prepares],
            TestStep("rebroadcast: nothing of ours", RebroadcastDue(), []),
            TestStep("timeout: no view change of ours", TimeoutElapsed(1, 0), [ScheduleTimeout(1, 0, 2000)],
                     {"view": 0}),
            TestStep("", received(commits[0]), []),
            TestStep("", received(commits[1]), []),
            TestStep("commit quorum: validate the bytes first", received(commits[2]),
                     [ValidateProposal(1, 0, BLOCK_A, HASH_A)]),
            TestStep("commit", validated(1, 0, HASH_A, True),
                     [CommitBlock(1, BLOCK_A, HASH_A, CommitCertificate.from_votes(1, 0, HASH_A, commits))]),
        ])


@pytest.mark.parametrize("event", [
    TimeoutElapsed(1, 0),
    ProposalBuilt(1, 0, BLOCK_A, HASH_A),
    validated(1, 0, HASH_A, True),
    RebroadcastDue(),
])
def test_nothing_happens_before_the_height_starts(event: Any) -> None:
    net = Net([1, 1, 1, 1])
    assert net.engine(net.primary()).handle(event) == []


# -- a signer that may refuse ---------------------------------------------------------


class _RefusingSigner:
    """Signs like ``key`` until ``down`` is set; then answers None (no signature)."""

    def __init__(self, key: PrivateKey) -> None:
        self.key = key
        self.down = False
        self.requests: list[Any] = []

    @property
    def address(self):
        return self.key.address

    @property
    def public_key(self) -> bytes:
        return self.key.public_key

    def sign_request(self, request):
        self.requests.append(request)
        return None if self.down else self.key.sign(request.digest)


def test_a_refused_signature_means_no_vote_and_the_engine_still_follows() -> None:
    from consensus.signing import Phase

    net = Net([1, 1, 1, 1])
    primary = net.primary()
    next_primary = net.vset.increment(1).proposer.address
    me, b, c = sorted(net.backups(), key=lambda k: k.address == next_primary)
    signer = _RefusingSigner(me)
    engine = Engine(CHAIN, signer, 1, net.vset, TIMEOUTS)
    commits = [net.vote(k, COMMIT) for k in (b, c, primary)]
    run_steps(engine, [
        TestStep("start", HeightStarted(1, net.vset), [ScheduleTimeout(1, 0, 2000)]),
        TestStep("proposal", received(net.proposal(primary)), [ValidateProposal(1, 0, BLOCK_A, HASH_A)]),
        TestStep("validated: signed through the signer", validated(1, 0, HASH_A, True),
                 [Broadcast(net.vote(me, PREPARE))]),
    ])
    assert [(r.phase, r.height, r.view, r.block_hash) for r in signer.requests] == [(Phase.PREPARE, 1, 0, HASH_A)]
    assert signer.requests[0].digest == net.vote(me, PREPARE).digest(CHAIN)
    signer.down = True
    run_steps(engine, [
        TestStep("prepare b", received(net.vote(b, PREPARE)), []),
        TestStep("prepare c: a COMMIT is due but not signed", received(net.vote(c, PREPARE)), []),
        TestStep("commit b", received(commits[0]), []),
        TestStep("commit c", received(commits[1]), []),
        TestStep("commit of the primary: committed without our COMMIT", received(commits[2]),
                 [CommitBlock(1, BLOCK_A, HASH_A, CommitCertificate.from_votes(1, 0, HASH_A, commits))],
                 {"step": Step.COMMITTED}),
        TestStep("next height", HeightStarted(2, net.vset.increment(1)), [ScheduleTimeout(2, 0, 2000)]),
        TestStep("a timeout: no VIEW-CHANGE signed, only the next timer", TimeoutElapsed(2, 0),
                 [ScheduleTimeout(2, 1, 3000)], {"view": 1}),
    ])
    assert engine.unsigned == 2
    signer.down = False
    relayed = [Broadcast(v) for v in sorted(commits, key=lambda v: v.validator)]  # height 1's, for peers left there
    actions = engine.handle(RebroadcastDue())  # the signer is back: the missing VIEW-CHANGE is signed now
    assert actions[:3] == relayed
    sent = [a.message for a in actions[3:] if isinstance(a, Broadcast)]
    assert [(type(m).__name__, m.new_view, m.validator) for m in sent] == [("ViewChange", 1, me.address)]
    assert engine.handle(RebroadcastDue()) == relayed + [Broadcast(sent[0])]  # re-sent, not re-signed


# -- the last height's certificate keeps growing --------------------------------------------


def test_commits_that_arrive_after_the_decision_join_the_last_certificate() -> None:
    net = Net([1, 1, 1, 1])
    engine = net.engine(None)
    engine.handle(HeightStarted(1, net.vset))
    engine.handle(received(net.proposal(net.primary())))
    for k in net.keys[:3]:
        engine.handle(received(net.vote(k, COMMIT)))
    (commit,) = engine.handle(validated(1, 0, HASH_A, True))
    assert len(commit.certificate.signatures) == 3  # a quorum decides
    engine.handle(HeightStarted(2, net.vset.increment(1)))
    late = net.keys[3]
    assert engine.last_commit_certificate(2) is None and engine.last_commit_certificate(1) == commit.certificate
    run_steps(engine, [
        TestStep("a forged late COMMIT is dropped and its peer penalised",
                 received(Vote(COMMIT, 1, 0, HASH_A, bytes(late.address), bytes(64))),
                 [Penalized("peer", "bad signature")]),
        TestStep("a late PREPARE is not a COMMIT", received(net.vote(late, PREPARE)), []),
        TestStep("the fourth COMMIT arrives after the decision", received(net.vote(late, COMMIT)), []),
        TestStep("once", received(net.vote(late, COMMIT)), []),
    ])
    assert not engine.last_input_changed_state  # the duplicate is a no-op (not logged)
    fuller = engine.last_commit_certificate(1)
    assert fuller is not None and len(fuller.signatures) == 4 and engine.late_commit_votes == 1
    fuller.verify(CHAIN, net.vset)
    # A member's second COMMIT of the decided view for another block is evidence, found late.
    twin = net.vote(net.keys[0], COMMIT, h=HASH_B)
    (report,) = engine.handle(received(twin))
    assert report == ReportEvidence(Evidence.of(net.vote(net.keys[0], COMMIT), twin))
    assert engine.handle(received(twin)) == []  # reported once
    forged_twin = Vote(COMMIT, 1, 0, HASH_B, bytes(net.keys[1].address), bytes(64))
    assert engine.handle(received(forged_twin)) == [Penalized("peer", "bad signature")]
    # A height decided by sync (no decision of our own) has no fuller certificate.
    engine.handle(HeightStarted(3, net.vset.increment(2)))
    engine.handle(HeightStarted(4, net.vset.increment(3)))
    assert engine.last_commit_certificate(3) is None


def test_the_last_heights_commit_votes_are_relayed_on_rebroadcast_across_a_set_change() -> None:
    # At an epoch boundary a peer left on the last height may be unable to learn that it was decided
    # from our messages: the new height's other members can all be newcomers it cannot check, and those
    # that decided with it and then left the set send nothing more (tests/consensus_sim.py,
    # schedule_leavers_decide_and_go_silent).  So whoever decided the last height and is a member of
    # this height's set or was one of the last height's re-sends its COMMIT votes on rebroadcast, as
    # CometBFT sends LastCommit to a peer one height behind; never its own (the sign guard refuses a
    # vote below its recorded height), and an observer still sends nothing.
    net = Net([1, 1, 1, 1])
    primary = net.primary()
    joiner = PrivateKey(b"\x77" * 32)
    stays = net.vset.updated([(joiner.public_key, 1)]).increment(1)  # the joiner joins at height 2
    # me: not height 2's first primary (which would also build), so a rebroadcast sends only the relay
    me, b, c = sorted(net.backups(), key=lambda k: k.address == stays.proposer.address)
    leaves = net.vset.updated([(me.public_key, 0), (joiner.public_key, 1)]).increment(1)  # and me leaves

    def decide(engine: Engine) -> None:
        engine.handle(HeightStarted(1, net.vset))
        engine.handle(received(net.proposal(primary)))
        engine.handle(validated(1, 0, HASH_A, True))
        for k in (primary, b, c):
            engine.handle(received(net.vote(k, PREPARE)))
        for k in (primary, b, c):  # a validator decides with its own and two, then c's joins
            engine.handle(received(net.vote(k, COMMIT)))
        engine.handle(validated(1, 0, HASH_A, True))  # an observer asks only once it has the quorum
        assert engine.state.step == Step.COMMITTED

    commits = {bytes(k.address): net.vote(k, COMMIT) for k in net.keys}
    others = [Broadcast(commits[a]) for a in sorted(commits) if a != me.address]
    for next_set in (stays, leaves):
        assert next_set.proposer.address != me.address
        engine = net.engine(me)
        decide(engine)
        assert engine.handle(HeightStarted(2, next_set)) == [ScheduleTimeout(2, 0, 2000)]
        assert engine.handle(RebroadcastDue()) == others, next_set is stays
        assert not engine.last_input_changed_state  # it only re-sends: nothing for the WAL
    # A joiner follows height 1 as an observer and decides it; a member of height 2, it relays all four.
    engine = Engine(CHAIN, joiner, 1, net.vset, TIMEOUTS)
    decide(engine)
    engine.handle(received(net.vote(me, COMMIT)))
    engine.handle(HeightStarted(2, stays))
    assert engine.handle(RebroadcastDue()) == [Broadcast(commits[a]) for a in sorted(commits)]
    # An observer of both heights relays nothing; neither does a node that synced the last height.
    for signer, next_set in ((None, stays), (joiner, net.vset.increment(1))):
        engine = Engine(CHAIN, signer, 1, net.vset, TIMEOUTS)
        decide(engine)
        engine.handle(HeightStarted(2, next_set))
        assert engine.handle(RebroadcastDue()) == []
    engine = started(net.engine(me), net)
    engine.handle(HeightStarted(2, stays))  # height 1 came by sync
    assert engine.handle(RebroadcastDue()) == []
