"""Engine-level regression tests for issue 8 (liveness with one Byzantine validator), one group per cause.

Each performs the attack's decisive step on a pure engine; each failed before
the fix.  The whole schedules run in tests/test_consensus_sim.py (simulated
drivers) and tests/test_node_driver_liveness.py (real drivers).
"""

from __future__ import annotations

from typing import Any

from consensus.engine import (
    FUTURE_VIEW_WINDOW,
    Broadcast,
    CommitBlock,
    PenalizePeer,
    ProposalValidated,
    RebroadcastDue,
    RequestSync,
    TimeoutElapsed,
    ValidateProposal,
)
from consensus.messages import Vote, ViewChange
from state.crypto import sha256
from tests.test_consensus_engine import BLOCK_A, CHAIN, COMMIT, HASH_A, PREPARE, Net, block, received, started

JUNK_A = b"junk under A's hash"


def verdict(height: int, view: int, block_hash: bytes, data: bytes, valid: bool) -> ProposalValidated:
    return ProposalValidated(height, view, block_hash, valid, block_digest=bytes(sha256(data)))


def kinds(actions: list[Any]) -> list[str]:
    return [type(a).__name__ for a in actions]


# -- 1. a verdict judges only the bytes it names ------------------------------------------------


def test_a_late_verdict_on_junk_bytes_never_judges_the_genuine_bytes_of_that_hash() -> None:
    net = Net([1, 1, 1, 1])
    primary = net.primary()
    me = net.backups()[0]
    engine = started(net.engine(me), net)
    # The Byzantine primary's junk under the genuine hash, asked about twice (a rebroadcast).
    assert engine.handle(received(net.proposal(primary, data=JUNK_A))) == [ValidateProposal(1, 0, JUNK_A, HASH_A)]
    assert ValidateProposal(1, 0, JUNK_A, HASH_A) in engine.handle(RebroadcastDue())
    engine.handle(verdict(1, 0, HASH_A, JUNK_A, False))
    # The genuine bytes arrive (a prepared certificate) and a commit quorum needs them.
    others = [k for k in net.keys if k.address != me.address]
    engine.handle(received(ViewChange.create(others[1], CHAIN, 1, 1, net.prepared(others, data=BLOCK_A))))
    asked = [a for k in others for a in engine.handle(received(net.vote(k, COMMIT)))]
    assert ValidateProposal(1, 0, BLOCK_A, HASH_A) in asked
    # The second verdict on the junk comes last but one: it changes nothing.
    assert engine.handle(verdict(1, 0, HASH_A, JUNK_A, False)) == [] and not engine.last_input_changed_state
    (commit,) = engine.handle(verdict(1, 0, HASH_A, BLOCK_A, True))
    assert isinstance(commit, CommitBlock) and commit.block == BLOCK_A


# -- 2. a validator far behind learns the view from f+1 signed VIEW-CHANGEs ------------------------


def test_far_ahead_view_changes_from_more_than_a_third_pull_a_lagging_validator_to_the_lowest_of_them() -> None:
    net = Net([1, 1, 1, 1])
    me, b, c, d = net.keys
    engine = started(net.engine(me), net)
    far = FUTURE_VIEW_WINDOW + 100
    # One signer alone (it may be the Byzantine one, at any view): checked, held, no move.
    assert engine.handle(received(net.view_change(b, 2**32 - 1))) == [] and engine.last_input_changed_state
    # Its next far-ahead message in this view of ours is not even checked (a forgery goes unpunished).
    forged = ViewChange(1, far, None, b.address, bytes(64))
    assert engine.handle(received(forged)) == [] and not engine.last_input_changed_state
    # A forgery in c's name is checked and penalised, and does not use c's slot.
    assert kinds(engine.handle(received(ViewChange(1, far, None, c.address, bytes(64))))) == ["PenalizePeer"]
    actions = engine.handle(received(net.view_change(c, far)))
    assert Broadcast(net.view_change(me, far)) in actions and engine.view == far
    assert engine._far_checked == set()  # a fresh budget in the new view


def test_a_next_height_message_far_in_views_still_tells_us_the_height_was_committed() -> None:
    net = Net([1, 1, 1, 1])
    me, b = net.keys[0], net.keys[1]
    engine = started(net.engine(me), net)
    far = Vote.create(b, CHAIN, PREPARE, 2, FUTURE_VIEW_WINDOW + 6, HASH_A)
    assert engine.handle(received(far)) == [] and engine.last_input_changed_state and engine._buffer == []
    assert engine.handle(received(far)) == [] and not engine.last_input_changed_state  # once per signer
    assert RequestSync(1) in engine.handle(TimeoutElapsed(1, 0))


# -- 3. junk votes cannot crowd out the vote that completes a quorum --------------------------------


def test_a_signers_junk_votes_do_not_crowd_out_its_vote_for_a_hash_others_voted() -> None:
    net = Net([1, 1, 1, 1])
    me, byzantine, b, c = net.keys
    engine = started(net.engine(me), net)
    engine.handle(received(net.proposal(net.primary())))
    engine.handle(verdict(1, 0, HASH_A, BLOCK_A, True))
    for n in (1, 2):  # two junk COMMITs: the second is evidence
        engine.handle(received(net.vote(byzantine, COMMIT, h=block(f"junk{n}")[1])))
    # A third hash nobody else voted: dropped before any check (a forged one is not even penalised).
    third = Vote(COMMIT, 1, 0, block("junk3")[1], byzantine.address, bytes(64))
    assert engine.handle(received(third)) == [] and not engine.last_input_changed_state
    for k in (b, c):
        engine.handle(received(net.vote(k, COMMIT)))
    # The genuine COMMIT (relayed by a validator that decided) completes the quorum.
    (commit,) = [a for a in engine.handle(received(net.vote(byzantine, COMMIT), "relay"))
                 if not isinstance(a, Broadcast)]
    assert isinstance(commit, CommitBlock) and commit.block == BLOCK_A
    assert not any(isinstance(a, PenalizePeer) for a in engine.handle(RebroadcastDue()))


def test_byzantine_signers_voting_each_others_junk_cannot_grow_the_tally() -> None:
    """Review finding: with 'a hash another member voted is always accepted', f Byzantine signers
    voting each other's junk made an honest engine verify and store 2f^2 votes per (kind, view)."""
    n = 31
    f = (n - 1) // 3
    net = Net([1] * n)
    engine = started(net.engine(net.keys[0]), net)
    byzantine = net.keys[n - f:]
    junk = {k.address: [bytes(sha256(k.address + bytes([j]))) for j in (0, 1)] for k in byzantine}
    for k in byzantine:  # each signer's own two choices: kept (the second is evidence)
        for h in junk[k.address]:
            engine.handle(received(net.vote(k, COMMIT, view=0, h=h)))
    for k in byzantine:  # everybody else's junk: none of it has > 1/3 of power behind it
        for other in byzantine:
            if other is not k:
                for h in junk[other.address]:
                    engine.handle(received(net.vote(k, COMMIT, view=0, h=h)))
                    assert not engine.last_input_changed_state
    assert sum(len(votes) for votes in engine._by_signer.values()) == 2 * f
