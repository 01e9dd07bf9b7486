"""Regression tests for the engine-side review findings, one group per finding.

Pure and table-driven like test_consensus_engine: event in, actions out, and
``last_input_changed_state`` (what the driver's WAL relies on) after each.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

import state.codec as codec
from consensus.engine import (
    FUTURE_VIEW_WINDOW,
    MAX_BUFFERED_BYTES,
    Broadcast,
    CommitBlock,
    Engine,
    HeightStarted,
    ProposalValidated,
    RebroadcastDue,
    Redeliver,
    ReportEvidence,
    RequestSync,
    ScheduleTimeout,
    TimeoutElapsed,
    ValidateProposal,
)
from consensus.messages import (
    MESSAGE_VERSION,
    CommitCertificate,
    Evidence,
    MessageType,
    NewView,
    Proposal,
    ViewChange,
    Vote,
    decode_message,
)
from state.validators import ValidatorSet
from state.crypto import PrivateKey, sha256
from tests.test_consensus_engine import (
    BLOCK_A,
    BLOCK_B,
    CHAIN,
    COMMIT,
    HASH_A,
    HASH_B,
    PREPARE,
    Net,
    block,
    received,
    started,
)

FAR = 2**32 - 1


def forged_new_view(height: int, view: int, signer: bytes = bytes(20)) -> NewView:
    """The reviewer's 308-byte NEW-VIEW: no key needed."""
    vc = [MessageType.VIEW_CHANGE.value, MESSAGE_VERSION, height, view, None, signer, bytes(64)]
    prop = [MessageType.PROPOSAL.value, MESSAGE_VERSION, height, view, b"x", bytes(32), signer, bytes(64)]
    message = decode_message(codec.encode([MessageType.NEW_VIEW.value, MESSAGE_VERSION, height, view, [vc], prop,
                                           bytes(64)]))
    assert isinstance(message, NewView)
    return message


def feed(engine: Engine, event: Any) -> tuple[list[Any], bool]:
    return engine.handle(event), engine.last_input_changed_state


# -- 1. a forged NEW-VIEW for a huge view ------------------------------------------------


def _far_messages(net: Net) -> list[tuple[str, Any]]:
    b = net.keys[1]
    return [
        ("forged NEW-VIEW, view 2**32-1", forged_new_view(1, FAR)),
        ("signed NEW-VIEW by a member, view 2**32-1", NewView.create(b, CHAIN, (), Proposal.create(b, CHAIN, 1, FAR, b"x", HASH_A))),
        ("vote", net.vote(b, PREPARE, view=FAR)),
        ("view change", net.view_change(b, FAR)),
        ("evidence", Evidence.of(net.vote(b, PREPARE, view=FAR), net.vote(b, PREPARE, view=FAR, h=HASH_B))),
        ("vote just past the window", net.vote(b, PREPARE, view=FUTURE_VIEW_WINDOW + 1)),
    ]


@pytest.mark.parametrize("index", range(6))
def test_messages_beyond_the_view_window_are_dropped_before_any_check(index: int) -> None:
    net = Net([1, 1, 1, 1])
    desc, message = _far_messages(net)[index]
    for height in (1, 2):  # the current height, and the next one's buffer
        engine = started(net.engine(net.keys[0]), net)
        if isinstance(message, ViewChange) and height == 1:
            # One far-ahead VIEW-CHANGE per signer and view of ours is checked
            # (view catch-up, tests/test_consensus_liveness.py); the rest are not.
            assert feed(engine, received(net.view_change(net.keys[1], FAR - 1))) == ([], True)
        if height == 2:
            # One far-ahead next-height message per signer is checked: it tells
            # us the height was committed (tests/test_consensus_liveness.py).
            assert feed(engine, received(Vote.create(net.keys[1], CHAIN, PREPARE, 2, FAR - 1, HASH_B))) == ([], True)
        began = time.perf_counter()
        assert feed(engine, received(message if height == 1 else _at_height_2(net, message))) == ([], False), desc
        assert time.perf_counter() - began < 0.5, desc
        assert engine._buffer == []


def _at_height_2(net: Net, message: Any) -> Any:
    if isinstance(message, Vote):
        return net.vote(net.key(message.validator), message.kind, message.view, message.block_hash, height=2)
    return forged_new_view(2, FAR) if isinstance(message, NewView) else Vote.create(
        net.keys[1], CHAIN, PREPARE, 2, FAR, HASH_A)


def test_a_forged_new_view_inside_the_window_never_walks_the_proposer_order() -> None:
    net = Net([1, 1, 1, 1])
    engine = started(net.engine(net.keys[0]), net)
    walked = len(net.vset._primaries)
    actions, changed = feed(engine, received(forged_new_view(1, FUTURE_VIEW_WINDOW)))
    assert [type(a).__name__ for a in actions] == ["PenalizePeer"] and "not signed by a validator" in actions[0].reason
    assert not changed and len(net.vset._primaries) == walked


def test_proposer_for_a_large_view_is_fast_and_matches_increment() -> None:
    keys = [PrivateKey(bytes([90 + i]) * 32) for i in range(5)]
    vset = ValidatorSet([(k.public_key, p) for k, p in zip(keys, [1, 3, 7, 2, 10])]).increment(3)
    for view in (0, 7, 3, 64, 40, 200, 1, 199):
        assert vset.proposer_for(view) == vset.increment(view).proposer, view
    began = time.perf_counter()
    for view in range(200, 1200):  # a view change at a time: each costs only its new rounds
        vset.proposer_for(view)
    assert time.perf_counter() - began < 1.0


# -- 2. messages held for the next height are handed back, not handled ----------------------


def test_held_messages_come_back_as_redeliver_and_replay_gives_the_same_state() -> None:
    net = Net([1, 1, 1, 1])
    set2 = net.vset.increment(1)
    primary2 = net.primary(0, set2)
    me = next(k for k in net.keys if k.address not in (primary2.address, net.primary().address))
    others2 = [k for k in net.keys if k.address != me.address]
    held = [net.proposal(primary2, data=BLOCK_B, h=HASH_B, height=2)] + [
        net.vote(k, PREPARE, h=HASH_B, height=2) for k in others2[:2]]
    live = started(net.engine(me), net)
    for message in held:
        assert feed(live, received(message)) == ([], True)  # held: logged at height 1, fed again at 2
    commits = [net.vote(k, COMMIT) for k in net.keys if k.address != me.address]
    live.handle(received(net.proposal(net.primary())))
    live.handle(ProposalValidated(1, 0, HASH_A, True, block_digest=HASH_A))
    for vote in commits:
        live.handle(received(vote))
    assert live.state.committed_block_hash == HASH_A
    actions = live.handle(HeightStarted(2, set2))
    assert [a for a in actions if isinstance(a, Redeliver)] == [Redeliver(m, "peer") for m in held]
    assert live.state.proposal_hash is None  # nothing handled yet
    # The driver's WAL for height 2: HeightStarted, then each Redeliver as MessageReceived.
    wal: list[Any] = [HeightStarted(2, set2)] + [received(m) for m in held] + [
        ProposalValidated(2, 0, HASH_B, True, block_digest=HASH_B)]
    outputs = [live.handle(event) for event in wal[1:]]
    assert Broadcast(net.vote(me, PREPARE, h=HASH_B, height=2)) in outputs[-1]
    replayed = net.engine(me, height=2)
    assert [replayed.handle(event) for event in wal][1:] == outputs
    assert replayed.state == live.state


# -- 3. the next-height buffer takes only signed messages, one per slot -----------------------


def test_forged_next_height_messages_are_not_held_and_the_genuine_proposal_is() -> None:
    net = Net([1, 1, 1, 1])
    engine = started(net.engine(net.keys[0]), net)
    b = net.keys[1]
    forged = [Vote(PREPARE, 2, 0, HASH_A, i.to_bytes(20, "big"), bytes(64)) for i in range(1100)]  # strangers
    forged += [Vote(PREPARE, 2, v, HASH_A, b.address, bytes(64)) for v in range(FUTURE_VIEW_WINDOW)]  # bad signatures
    assert all(feed(engine, received(m)) == ([], False) for m in forged)
    genuine = net.proposal(net.primary(0, net.vset.increment(1)), height=2)
    cases = [
        ("the genuine proposal", genuine, True),
        ("again", genuine, False),
        ("the primary's second proposal for view 0", net.proposal(net.primary(0, net.vset.increment(1)),
                                                                  data=BLOCK_B, h=HASH_B, height=2), False),
        ("a proposal for view 1 (they travel in NEW-VIEW)", net.proposal(b, 1, height=2), False),
        ("a genuine vote", net.vote(b, PREPARE, height=2), True),
        ("a second vote in the same slot", net.vote(b, PREPARE, h=HASH_B, height=2), False),
        ("a COMMIT is another slot", net.vote(b, COMMIT, height=2), True),
    ]
    for desc, message, held in cases:
        assert feed(engine, received(message)) == ([], held), desc
    assert [m for m, _ in engine._buffer] == [genuine, net.vote(b, PREPARE, height=2), net.vote(b, COMMIT, height=2)]


def test_each_signer_holds_at_most_its_share_of_the_buffer_bytes() -> None:
    net = Net([1, 1, 1, 1])
    engine = started(net.engine(net.keys[0]), net)
    b = net.keys[1]
    big = b"\x00" * (MAX_BUFFERED_BYTES // len(net.vset) // 2)  # two fill b's share
    held = [feed(engine, received(NewView.create(b, CHAIN, (), Proposal.create(b, CHAIN, 2, v, big, HASH_A))))[1]
            for v in range(1, 4)]
    assert held == [True, False, False]
    assert feed(engine, received(net.vote(net.keys[2], PREPARE, height=2))) == ([], True)  # others keep their share


# -- 4. a commit quorum commits only bytes this engine validated ------------------------------


def test_commit_quorum_uses_only_validated_bytes() -> None:
    net = Net([1, 1, 1, 1])
    me, b, c = net.backups()
    commits = [net.vote(k, COMMIT) for k in (net.primary(), b, c)]
    certificate = CommitCertificate.from_votes(1, 0, HASH_A, commits)
    rows: list[tuple[bool | None, Any]] = [
        # (what our driver said about the proposal's bytes, actions on the commit quorum)
        (None, "ask"),  # unjudged: wait for the verdict (an observer asks for it now)
        (False, [CommitBlock(1, b"", HASH_A, certificate)]),  # invalid bytes are never committed: sync
        (True, [CommitBlock(1, BLOCK_A, HASH_A, certificate)]),
    ]
    for verdict, expected in rows:
        for signer in (me, None):
            engine = started(net.engine(signer), net)
            engine.handle(received(net.proposal(net.primary())))
            if verdict is not None:
                if signer is None:
                    engine._validating[(HASH_A, HASH_A)] = BLOCK_A  # as if an observer had asked
                engine.handle(ProposalValidated(1, 0, HASH_A, verdict, block_digest=HASH_A))
            out = [a for vote in commits for a in engine.handle(received(vote))]
            want = expected
            if want == "ask":  # a validator asked already, when the proposal came
                want = [ValidateProposal(1, 0, BLOCK_A, HASH_A)] if signer is None else []
            assert [a for a in out if not isinstance(a, Broadcast)] == want, (verdict, signer)
            assert engine.state.step == ("committed" if verdict is not None else engine.state.step)


# -- 5. last_input_changed_state ----------------------------------------------------------------


def test_last_input_changed_state_is_false_only_for_rejected_or_no_op_input() -> None:
    net = Net([1, 1, 1, 1])
    me, b, c = net.backups()
    stranger = PrivateKey(b"\x66" * 32)
    engine = started(net.engine(me), net)
    proposal = net.proposal(net.primary())
    rows: list[tuple[str, Any, bool]] = [
        ("a bad signature", received(Vote(PREPARE, 1, 0, HASH_A, b.address, bytes(64))), False),
        ("a stranger's vote", received(Vote.create(stranger, CHAIN, PREPARE, 1, 0, HASH_A)), False),
        ("an older height", received(net.vote(b, PREPARE, height=0)), False),
        ("beyond the view window", received(net.vote(b, PREPARE, view=FUTURE_VIEW_WINDOW + 1)), False),
        ("the proposal", received(proposal), True),
        ("the proposal again", received(proposal), False),
        ("a stale validation answer", ProposalValidated(1, 0, HASH_B, True, block_digest=HASH_B), False),
        ("the validation answer", ProposalValidated(1, 0, HASH_A, True, block_digest=HASH_A), True),
        ("a vote", received(net.vote(b, PREPARE)), True),
        ("the same vote", received(net.vote(b, PREPARE)), False),
        ("a conflicting vote: evidence", received(net.vote(b, PREPARE, h=HASH_B)), True),
        ("a third hash", received(net.vote(b, PREPARE, h=block("C")[1])), False),
        ("the evidence gossiped back", received(Evidence.of(net.vote(b, PREPARE), net.vote(b, PREPARE, h=HASH_B))), False),
        ("a vote for a view within the window", received(net.vote(c, PREPARE, view=FUTURE_VIEW_WINDOW)), True),
        ("a view change", received(net.view_change(c, 1)), True),
        ("the same view change", received(net.view_change(c, 1)), False),
        ("a far-ahead signed vote: asks for sync", received(net.vote(c, PREPARE, height=9)), True),
        ("another at that height: already asked", received(net.vote(b, PREPARE, height=9)), False),
        ("a stale timeout", TimeoutElapsed(1, 5), False),
        ("restarting the same height", HeightStarted(1, net.vset), False),
    ]
    for desc, event, changed in rows:
        engine.handle(event)
        assert engine.last_input_changed_state is changed, desc


# -- 6. evidence: view window, one report per validator and height ------------------------------


def test_evidence_is_windowed_and_reported_once_per_validator_and_height() -> None:
    net = Net([1, 1, 1, 1])
    me, b, c = net.backups()
    engine = started(net.engine(me), net)

    def evidence(key: PrivateKey, view: int, kind: Any = PREPARE) -> Evidence:
        return Evidence.of(net.vote(key, kind, view), net.vote(key, kind, view, h=HASH_B))

    rows = [
        ("far view", evidence(b, 10**6), []),
        ("b at view 3", evidence(b, 3), [ReportEvidence(evidence(b, 3))]),
        ("b again at another view", evidence(b, 4), []),
        ("b again as COMMIT", evidence(b, 3, COMMIT), []),
        ("c is another validator", evidence(c, 0), [ReportEvidence(evidence(c, 0))]),
    ]
    for desc, ev, expected in rows:
        assert engine.handle(received(ev)) == expected, desc
    assert engine.handle(received(net.vote(b, COMMIT))) == []
    assert engine.handle(received(net.vote(b, COMMIT, h=HASH_B))) == []  # b already reported at this height


# -- 7. sync requests are not suppressed for good by one far-future message ------------------------


def test_the_sync_high_water_mark_resets_each_height() -> None:
    net = Net([1, 1, 1, 1])
    me, b, _ = net.backups()
    engine = started(net.engine(me), net)
    assert engine.handle(received(net.vote(b, PREPARE, height=10**9))) == [RequestSync(10**9 - 1)]
    assert engine.handle(received(net.vote(b, PREPARE, height=7))) == []  # asked already at this height
    engine.handle(HeightStarted(2, net.vset.increment(1)))
    assert engine.handle(received(net.vote(b, PREPARE, height=7))) == [RequestSync(6)]


# -- 6. a NEW-VIEW re-proposes only bytes this engine validated ---------------------------------


def test_a_new_primary_tries_each_candidate_of_a_certified_hash_one_at_a_time() -> None:
    """A prepared certificate signs the hash only: a Byzantine validator can attach other bytes to a
    genuine one.  The NEW-VIEW path asks about the candidates as the commit path does, one at a time."""
    net = Net([1, 1, 1, 1])
    me = net.primary(1)
    byzantine, honest = [k for k in net.keys if k.address not in (me.address, net.primary(0).address)]
    junk = b"other bytes under A's hash"
    engine = started(net.engine(me), net)
    signers = [net.primary(0), byzantine, honest]
    vc_me = net.view_change(me, 1)
    vc_junk = net.view_change(byzantine, 1, net.prepared(signers, data=junk))
    vc_genuine = net.view_change(honest, 1, net.prepared(signers))
    plan = tuple(sorted([vc_me, vc_junk, vc_genuine], key=lambda vc: vc.validator))
    new_view = NewView.create(me, CHAIN, tuple(vc.without_block() for vc in plan), net.proposal(me, view=1))
    steps = [
        (TimeoutElapsed(1, 0), [Broadcast(vc_me), ScheduleTimeout(1, 1, 3000)]),
        (received(vc_junk), []),
        (received(vc_genuine), [ValidateProposal(1, 1, junk, HASH_A)]),  # first candidate first
        (RebroadcastDue(), [ValidateProposal(1, 1, junk, HASH_A), Broadcast(vc_me)]),  # still one at a time
        (ProposalValidated(1, 1, HASH_A, False, block_digest=bytes(sha256(junk))), [ValidateProposal(1, 1, BLOCK_A, HASH_A)]),
        (ProposalValidated(1, 1, HASH_A, True, block_digest=HASH_A),
         [Broadcast(new_view), Broadcast(net.vote(me, PREPARE, view=1))]),
    ]
    for number, (event, expected) in enumerate(steps):
        assert engine.handle(event) == expected, number
    assert engine.state.proposal_hash == HASH_A and engine.state.view == 1
