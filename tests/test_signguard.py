"""The sign guard (issue 7, finding 5): a validator never signs two different
things for one (height, view, phase), never signs below what it signed, and
the record that says so survives a restart and a rolled-back state."""

from __future__ import annotations

import json
import stat

import pytest

from consensus.messages import PreparedCertificate, Proposal, ViewChange, Vote, VoteKind
from node.signguard import SignGuard, SignGuardError, SignRefused, requests_for
from state.crypto import sha256
from state.testing import TEST_CHAIN_ID as CHAIN
from state.testing import dev_key

ME = dev_key("guard-me")
OTHER = dev_key("guard-other")
X, Y = bytes(sha256(b"block x")), bytes(sha256(b"block y"))


def vote(kind, height, view, block_hash, key=ME):
    return Vote.create(key, CHAIN, kind, height, view, block_hash)


@pytest.fixture
def guard(tmp_path):
    return SignGuard.create(tmp_path / "sign_state.json", CHAIN, ME.address)


def test_the_pbft_sequence_and_re_sends_are_allowed(guard):
    proposal = Proposal.create(ME, CHAIN, 1, 0, b"block x", X)
    for message in (proposal, vote(VoteKind.PREPARE, 1, 0, X), vote(VoteKind.COMMIT, 1, 0, X),
                    vote(VoteKind.PREPARE, 1, 0, X), proposal,  # re-sends after a restart: same bytes
                    ViewChange.create(ME, CHAIN, 1, 1, None), vote(VoteKind.PREPARE, 1, 1, Y),
                    vote(VoteKind.COMMIT, 1, 0, X),  # the decided view's vote, relayed after moving on
                    vote(VoteKind.PREPARE, 2, 0, Y)):
        assert guard.allow(message), message
    assert guard.refusals == 0
    assert (guard.state.height, guard.state.view, guard.state.phase.name) == (2, 0, "PREPARE")


@pytest.mark.parametrize("second", [
    vote(VoteKind.PREPARE, 5, 0, Y),  # equivocation: same slot, other block
    vote(VoteKind.COMMIT, 5, 0, Y),  # commit another block than the one prepared in this view
    vote(VoteKind.PREPARE, 4, 3, X),  # backwards: a lower height
])
def test_equivocation_and_going_backwards_are_refused(guard, second):
    assert guard.allow(vote(VoteKind.PREPARE, 5, 0, X))
    before = guard.path.read_bytes()
    assert not guard.allow(second)
    assert guard.refusals == 1 and guard.path.read_bytes() == before  # nothing recorded


def test_a_second_view_change_for_a_view_must_carry_the_same_certificate(guard):
    prepares = tuple(sorted((vote(VoteKind.PREPARE, 3, 0, X, k) for k in (ME, OTHER)), key=lambda v: v.validator))
    cert = PreparedCertificate(3, 0, b"block x", X, prepares)
    assert guard.allow(ViewChange.create(ME, CHAIN, 3, 1, None))
    assert guard.allow(ViewChange.create(ME, CHAIN, 3, 1, None))
    with pytest.raises(SignRefused, match="equivocation"):
        for request in requests_for(ViewChange.create(ME, CHAIN, 3, 1, cert), CHAIN, ME.address):
            guard.approve(request)


def test_relayed_messages_of_others_are_not_ours_to_guard(guard):
    assert guard.allow(vote(VoteKind.PREPARE, 9, 0, X))
    assert guard.allow(vote(VoteKind.PREPARE, 9, 0, Y, key=OTHER))
    assert guard.allow(vote(VoteKind.PREPARE, 1, 0, Y, key=OTHER))
    assert guard.refusals == 0


def test_the_record_is_durable_private_and_checked_on_load(tmp_path, guard):
    assert guard.allow(vote(VoteKind.COMMIT, 7, 2, X))
    assert stat.S_IMODE(guard.path.stat().st_mode) == 0o600
    again = SignGuard.load(guard.path, CHAIN, ME.address)
    assert again.state == guard.state
    assert not again.allow(vote(VoteKind.COMMIT, 7, 2, Y))  # a restarted process remembers
    with pytest.raises(SignGuardError, match="not"):
        SignGuard.load(guard.path, CHAIN, OTHER.address)
    with pytest.raises(SignGuardError, match="chain"):
        SignGuard.load(guard.path, "other-chain", ME.address)
    doc = json.loads(guard.path.read_text())
    doc["height"] = -1
    guard.path.write_text(json.dumps(doc))
    with pytest.raises(SignGuardError, match="malformed"):
        SignGuard.load(guard.path, CHAIN, ME.address)
    with pytest.raises(SignGuardError, match="does not exist"):
        SignGuard.load(tmp_path / "missing.json", CHAIN, ME.address)


async def test_the_driver_never_sends_a_vote_the_guard_refuses(tmp_path):
    """A validator that signed PREPARE for X at (1, 0), then lost its WAL, is
    shown another valid proposal Y for (1, 0) by a Byzantine primary: the
    engine (knowing nothing) signs PREPARE Y; the guard keeps it in."""
    from consensus import events as ce
    from state.blocks import Block
    from state.kv import MemoryKV
    from tests.test_node_driver import KEYS, VSET, Harness, _block1, key_of

    primary = key_of(VSET.proposer_for(0).address)
    me = next(k for k in KEYS if k is not primary)
    raw_x, hash_x = _block1(primary)
    raw_y, hash_y = _block1(primary, Block.decode(raw_x).header.time_ms + 1)
    guard = SignGuard.create(tmp_path / "sign_state.json", CHAIN, me.address)
    assert guard.allow(Vote.create(me, CHAIN, VoteKind.PREPARE, 1, 0, hash_x))

    h = Harness(me, MemoryKV(), tmp_path / "wal")  # an empty WAL: the lost one
    h.driver.sign_guard = guard
    h.driver.start()
    await h.settle()
    try:
        h.driver.inbox.put_nowait(ce.MessageReceived(Proposal.create(primary, CHAIN, 1, 0, raw_y, hash_y), "p"))
        await h.settle()
        assert ("PREPARE", hash_y) not in h.votes(1), "an equivocating vote left the process"
        assert guard.refusals == 1
        # the same proposal X again: the vote we did sign may be re-sent
        h2 = Harness(me, MemoryKV(), tmp_path / "wal2")
        h2.driver.sign_guard = guard
        h2.driver.start()
        await h2.settle()
        h2.driver.inbox.put_nowait(ce.MessageReceived(Proposal.create(primary, CHAIN, 1, 0, raw_x, hash_x), "p"))
        await h2.settle()
        assert ("PREPARE", hash_x) in h2.votes(1)
        await h2.driver.stop()
        h2.driver.wal.close()
    finally:
        await h.driver.stop()
        h.driver.wal.close()
