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
from consensus.validators import ValidatorSet
from state.crypto import PrivateKey, sha256

CHAIN = "qenex-test"
PREPARE, COMMIT = VoteKind.PREPARE, VoteKind.COMMIT
TIMEOUTS = TimeoutConfig(base_ms=2000, increment_ms=1000, max_ms=30000)


def block(name: str) -> tuple[bytes, bytes]:
    data = f"block {name}".encode()
    return data, bytes(sha256(data))


BLOCK_A, HASH_A = block("A")
BLOCK_B, HASH_B = block("B")


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
        TestStep("validated", ProposalValidated(1, 0, HASH_A, True, ""),
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
    (commit,) = actions
    assert isinstance(commit, CommitBlock)
    commit.certificate.verify(CHAIN, net.vset)
    assert CommitCertificate.decode(commit.certificate.encode()) == commit.certificate
