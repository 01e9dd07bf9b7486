"""A node joins the validator set without a restart (issue 10, "full nodes and joining").

The runtime gives every node with a key a signer, in the set or not
(``node.signer.node_signer`` with the application's sets, as ``node.runtime``
composes it): here five real drivers run with exactly those signers, each
behind its own sign-state record on disk.  Block 2's updates (the hook
staking fills at an epoch's last block) add E and remove D.  E, a full node
until then, proposes and votes from height 3 on, D signs nothing from height
3; neither's record ever shows a height outside its term, and ``MemberSigner``
refuses a request outside the term before the record or the key is reached.
A restart of E after it joined resumes as a validator from its WAL and record.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from consensus.messages import CommitCertificate, Proposal, Vote, VoteKind
from consensus.signing import SignRequest
from consensus.verify import CertificateVerifier
from node.blocks import BlockExecutor
from node.driver import ConsensusDriver
from node.inbound import consensus_peer_keys, staking_candidate_keys
from node.rpc import render_block
from node.signer import MemberSigner, node_signer
from node.signguard import SignGuard
from node.wal import WriteAheadLog
from state.app import Application
from state.crypto import address_to_text
from state.execution import BlockRun
from state.genesis import StakingParams
from state.kv import MemoryKV
from state.payloads import Unstake
from tests.test_staking import ALICE, EPOCH, NEW, ONE, UNBONDING, VALS, create, new_chain, one, until_height
from tests.test_validator_updates import CHAIN, GENESIS, TARGET, UPDATES, A, B, C, D, E, Network, certify

pytestmark = pytest.mark.timeout(60)
KEYS = (A, B, C, D, E)


@pytest.fixture
def updates_at_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(BlockRun, "end_block", lambda run: UPDATES if run.height == 2 else ())


def guarded(net: Network, tmp_path: Path) -> list[SignGuard]:
    """Give every driver the signer the runtime composes: its key, its own record, the app's sets."""
    guards = []
    for i, (driver, key) in enumerate(zip(net.drivers, KEYS)):
        guard = SignGuard.create(tmp_path / f"sign{i}.json", CHAIN, key.address)
        driver.signer = node_signer(None, key, guard, validator_set=driver.app.validator_set)
        guards.append(guard)
    return guards


async def test_a_full_node_proposes_and_votes_from_the_height_whose_set_holds_its_key(
        tmp_path: Path, updates_at_2: None) -> None:
    net = Network(tmp_path)
    guards = guarded(net, tmp_path)
    try:
        await net.run_until(TARGET + 4)  # enough heights for E to be the primary of one
        app = net.drivers[0].app
        votes = {i: {(m.height, m.kind) for m in net.sent[i] if isinstance(m, Vote)} for i in range(5)}
        assert not any(h < 3 for h, _ in votes[4]), "E voted before its key was in the set"
        assert all((h, VoteKind.COMMIT) in votes[4] for h in range(3, TARGET + 4))
        assert not any(h >= 3 for h, _ in votes[3]), "D voted after it left the set"
        proposed = {m.height for m in net.sent[4] if isinstance(m, Proposal)}
        assert proposed and min(proposed) >= 3
        assert any(app.get_block(h).header.proposer == E.address for h in proposed)  # type: ignore[union-attr]
        # Each driver keeps the first quorum it saw: E's vote is in some (E's own, at least).
        signers = [{a for a, _ in CommitCertificate.decode(d.app.get_commit_cert(h)).signatures}  # type: ignore[arg-type]
                   for d in net.drivers for h in range(3, TARGET + 4)]
        assert any(E.address in s for s in signers), "E's COMMIT votes never counted in a certificate"
        assert all(D.address not in s for s in signers)
        # The records on disk agree: E's first signature is at height 3, D's last at 2.
        reloaded = [SignGuard.load(g.path, CHAIN, k.address) for g, k in zip(guards, KEYS)]
        assert reloaded[4].state.height >= 3 and reloaded[3].state.height == 2
        # Consensus streams: the allowlist at the head holds E, and not D (out since height 3).
        allowed = consensus_peer_keys(app)
        assert E.public_key in allowed and D.public_key not in allowed
    finally:
        await net.stop()

    # E restarts after joining: a fresh driver over its WAL and reloaded record signs again.
    e_app = net.drivers[4].app
    record = SignGuard.load(guards[4].path, CHAIN, E.address)
    restarted = ConsensusDriver(app=e_app, mempool=net.drivers[4].mempool, wal=WriteAheadLog(tmp_path / "wal4"),
                                config=net.drivers[4].config,
                                signer=node_signer(None, E, record, validator_set=e_app.validator_set),
                                hooks=net.drivers[4].hooks)
    restarted.start()
    try:
        assert restarted.engine is not None and restarted.engine.state.is_validator
    finally:
        await restarted.stop()
        restarted.wal.close()


def test_the_member_signer_refuses_outside_the_term_and_touches_nothing(tmp_path: Path, updates_at_2: None) -> None:
    net = Network(tmp_path)
    guards = guarded(net, tmp_path)
    app = net.drivers[4].app
    e_signer = net.drivers[4].signer
    assert isinstance(e_signer, MemberSigner)
    before = guards[4].path.read_bytes()
    request = SignRequest.vote(CHAIN, VoteKind.PREPARE, 1, 0, b"\x11" * 32)
    assert e_signer.sign_request(request) is None and e_signer.refusals == 1
    assert guards[4].path.read_bytes() == before, "a refused request reached the sign-state record"
    # A height the application does not know yet is refused too, even for a member.
    far = SignRequest.vote(CHAIN, VoteKind.PREPARE, app.height + 2, 0, b"\x11" * 32)
    a_signer = net.drivers[0].signer
    assert a_signer.sign_request(far) is None
    # A member at a height it knows signs, through its record.
    assert a_signer.sign_request(SignRequest.vote(CHAIN, VoteKind.PREPARE, 1, 0, b"\x11" * 32)) is not None
    assert SignGuard.load(guards[0].path, CHAIN, A.address).state.height == 1
    asyncio.run(net.stop())


def test_consensus_streams_are_accepted_from_the_sets_either_side_of_the_head(updates_at_2: None) -> None:
    """At the epoch boundary (block 2 committed) both E, who signs from height 3, and D, whose late
    COMMIT votes for height 2 may still arrive, are allowed; a height later D is not."""
    app = Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier())
    blocks = BlockExecutor(app)
    assert consensus_peer_keys(app) == {k.public_key for k in (A, B, C, D)}  # height 0: genesis set only
    for height in (1, 2, 3):
        vset = app.validator_set(height)
        assert vset is not None
        proposer = vset.proposer_for(0).address
        block = blocks.build([], proposer=proposer, time_ms=GENESIS.genesis_time_ms + height * 1000)
        assert blocks.commit_certified(height, block.hash, block.encode(), certify(height, block.hash, [A, B, C]))
        if height == 2:
            assert consensus_peer_keys(app) == {k.public_key for k in KEYS}
    assert consensus_peer_keys(app) == {k.public_key for k in (A, B, C, E)}


def test_get_block_names_the_signers_of_the_certificate_it_carries() -> None:
    """How a client sees whose votes counted: qenex_getBlock's ``last_commit`` (node.rpc.render_block)."""
    app = Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier())
    blocks = BlockExecutor(app)
    for height in (1, 2):
        proposer = app.validator_set(height).proposer_for(0).address  # type: ignore[union-attr]
        block = blocks.build([], proposer=proposer, time_ms=GENESIS.genesis_time_ms + height * 1000)
        assert blocks.commit_certified(height, block.hash, block.encode(), certify(height, block.hash, [C, A, D]))
    first, second = app.get_block(1), app.get_block(2)
    assert first is not None and second is not None
    assert render_block(first, False)["last_commit"] is None
    commit = render_block(second, False)["last_commit"]
    assert commit == {"height": 1, "view": 0, "block_hash": "0x" + first.hash.hex(),
                      "signers": [address_to_text(k.address) for k in sorted((A, C, D), key=lambda k: k.address)]}


def test_a_registered_candidate_is_on_the_allowlist_before_the_epoch_that_includes_it() -> None:
    """A node one block behind the boundary must not refuse the newcomer's first votes: staking
    candidates (bonded, not jailed or tombstoned) are allowed as soon as they are registered, and
    one that unstakes everything drops off again."""
    chain = new_chain(StakingParams(unbonding_blocks=UNBONDING, max_evidence_age=UNBONDING - EPOCH, max_validators=4))
    assert staking_candidate_keys(chain.app) == {k.public_key for k in VALS}
    assert one(chain, ALICE, create(NEW, ALICE, "alice", 1000, 3 * ONE)) == ("ok", "")
    assert chain.app.height < EPOCH and NEW.public_key not in {pk for pk, _ in chain.app.validators()}
    candidates = staking_candidate_keys(chain.app)
    assert NEW.public_key in candidates and NEW.public_key in consensus_peer_keys(chain.app, candidates)
    assert NEW.public_key not in consensus_peer_keys(chain.app)  # the sets alone do not hold it yet
    until_height(chain, EPOCH)
    assert NEW.public_key in {pk for pk, _ in chain.app.validators()}
    assert one(chain, ALICE, Unstake(ALICE.address, 3 * ONE)) == ("ok", "")
    assert NEW.public_key not in staking_candidate_keys(chain.app)
    no_staking = Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier())
    assert staking_candidate_keys(no_staking) == frozenset()
