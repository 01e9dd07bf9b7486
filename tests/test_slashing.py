"""Slashing (issue 10, part 2) on the pure application: equivocation evidence in blocks, downtime.

Evidence is real: two conflicting COMMIT votes signed with a validator's key, checked by
consensus/'s verifier against the set of the infraction's height.  Certificates are state's
test stand-ins, and which members signed each parent (downtime) is the test verifier's choice.
Every block is also executed on a replica application, which must reach the same app hash.
"""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from consensus.messages import Evidence, Vote, VoteKind
from consensus.verify import CertificateVerifier
from state.amounts import QNX
from state.app import Application
from state.blocks import MAX_BLOCK_EVIDENCE, MAX_EVIDENCE_BYTES, Block, evidence_hash
from state.codec import decode, encode
from state.crypto import address_of, sha256
from state.errors import InvalidBlock, MalformedBlock
from state.genesis import POWER_REDUCTION, Params, StakingParams
from state.kv import MemoryKV
from state.payloads import Redelegate, Stake, Unjail, Unstake
from state.slashing import max_missed
from state.testing import Chain, StubCommitVerifier, dev_key, make_genesis, stub_cert
from tests.test_staking import ACTORS, ALICE, BOB, CONSENSUS_KEYS, check_conservation, schedules
from tests.test_staking import VALS as VALS3

ONE = POWER_REDUCTION
# Four validators of equal power: one of them down, the other three still make a quorum.
VALS = [*VALS3, dev_key("staking-v3")]
EPOCH = 4
UNBONDING = 8
WINDOW = 6
JAIL = 5
PARAMS = StakingParams(unbonding_blocks=UNBONDING, max_evidence_age=UNBONDING - EPOCH, max_validators=4,
                       max_unbonding_entries=3, max_delegations=3, min_self_bond=2 * ONE,
                       slash_double_sign_bps=500, slash_downtime_bps=100, signed_blocks_window=WINDOW,
                       min_signed_per_window_bps=5000, downtime_jail_blocks=JAIL)


class Verifier(StubCommitVerifier):
    """Stub certificates; real evidence; ``offline`` members are missing from every certificate
    unless the others lack a quorum (then no certificate could have formed without them: the
    chain waited for them, and all signed)."""

    def __init__(self) -> None:
        self.offline: set[bytes] = set()
        self.app: Application | None = None

    verify_evidence = CertificateVerifier.verify_evidence

    def commit_signers(self, commit: bytes) -> tuple[bytes, ...]:
        assert self.app is not None
        _, height, _ = decode(commit)
        vset = self.app.validator_set(height)
        online = [v for v in vset if v.address not in self.offline]
        if not vset.has_quorum(sum(v.power for v in online)):
            online = list(vset)
        return tuple(bytes(v.address) for v in online)


class Replicated(Chain):
    """A Chain whose every block is executed and committed by a second application too."""

    def __init__(self, staking: StakingParams = PARAMS) -> None:
        genesis = make_genesis(validators=VALS, funded=[ALICE, BOB, *VALS],
                               params=Params(epoch_length=EPOCH, staking=staking))
        self.verifier = Verifier()
        super().__init__(Application(MemoryKV(), genesis, commit_verifier=self.verifier), VALS[0])
        self.verifier.app = self.app
        self.replica = Application(MemoryKV(), genesis, commit_verifier=self.verifier)

    def block(self, txs=(), *, time_ms=None, evidence=()):  # type: ignore[override]
        members = {address_of(pk) for pk, _ in self.app.validators()}
        self.proposer = next(k for k in (*VALS, *CONSENSUS_KEYS) if k.address in members)
        block, result = super().block(txs, time_ms=time_ms, evidence=evidence)
        replayed = self.replica.execute_block(block)
        assert replayed.app_hash == result.app_hash
        self.replica.commit_block(block, replayed, stub_cert(block.height, block.hash))
        return block, result


def equivocation(key, height: int, view: int = 0, chain_id: str = "qenex-test") -> bytes:
    a = Vote.create(key, chain_id, VoteKind.COMMIT, height, view, sha256(b"a%d" % height))
    b = Vote.create(key, chain_id, VoteKind.COMMIT, height, view, sha256(b"b%d" % height))
    return Evidence.of(a, b).encode()


def conserved(chain: Chain) -> None:
    check_conservation(chain, [*ACTORS, VALS[3]])


def status(result, index=0) -> tuple[str, str]:
    receipt = result.receipts[index]
    return receipt.status.name.lower(), receipt.reason


def value(chain: Chain, delegator, operator) -> int:
    account = chain.app.staking().account(delegator)
    return sum(d.amount for d in account.delegations if d.validator == operator)


def until(chain: Chain, height: int) -> None:
    while chain.app.height < height:
        chain.block()


# -- double signing -------------------------------------------------------------------


def test_equivocation_slashes_the_validator_its_delegators_and_what_left_since_then_tombstones_it():
    chain = Replicated(dataclasses.replace(PARAMS, max_unbonding_entries=4))
    bad = VALS[1]
    _, r = chain.block([chain.tx(BOB, Stake(bad.address, 10 * ONE)), chain.tx(ALICE, Stake(bad.address, 6 * ONE))])
    assert [status(r, i)[0] for i in range(2)] == ["ok", "ok"]
    _, r = chain.block([chain.tx(BOB, Unstake(bad.address, 2 * ONE))])  # height 2: an epoch before, not slashed
    until(chain, EPOCH)
    # Height 5, the epoch's first: before the infraction, but its power still votes at height 6.
    chain.block([chain.tx(BOB, Unstake(bad.address, ONE))])
    infraction = chain.app.height + 1  # 6
    chain.block([chain.tx(BOB, Unstake(bad.address, ONE))])  # at the infraction height itself
    _, r = chain.block([chain.tx(BOB, Unstake(bad.address, 2 * ONE)),  # height 7: after it
                        chain.tx(ALICE, Redelegate(bad.address, VALS[0].address, 4 * ONE))])
    assert [status(r, i)[0] for i in range(2)] == ["ok", "ok"]
    q = chain.app.staking()
    tokens = q.validator(bad.address).tokens
    own, bob, alice_moved = value(chain, bad.address, bad.address), value(chain, BOB.address, bad.address), \
        value(chain, ALICE.address, VALS[0].address)
    supply = chain.app.token(QNX).supply

    block, result = chain.block(evidence=[equivocation(bad, infraction)])
    assert len(block.evidence) == 1 and block.header.evidence_hash == evidence_hash(block.evidence)
    q = chain.app.staking()
    v = q.validator(bad.address)
    assert v.tokens == tokens - tokens * 500 // 10_000 and v.tombstoned and v.jailed
    assert value(chain, bad.address, bad.address) == pytest.approx(own * 95 // 100, abs=1)
    assert value(chain, BOB.address, bad.address) == pytest.approx(bob * 95 // 100, abs=1)
    balances = [e.balance for e in q.account(BOB.address).unbonding]
    # Only what still voted at the infraction: the entries of its epoch, not the one before.
    assert balances == [2 * ONE, ONE * 95 // 100, ONE * 95 // 100, 2 * ONE * 95 // 100]
    assert value(chain, ALICE.address, VALS[0].address) == pytest.approx(alice_moved - 4 * ONE * 5 // 100, abs=1)
    [record] = q.evidence()
    burned = tokens * 5 // 100 + 4 * ONE * 5 // 100 + 4 * ONE * 5 // 100
    assert (record.height, record.validator, record.burned) == (infraction, bad.address, burned)
    assert chain.app.token(QNX).supply == supply - burned
    conserved(chain)

    # Tombstoned: unjail is refused for good, and it leaves the set at the epoch's end.
    _, r = chain.block([chain.tx(bad, Unjail())])
    assert status(r)[0] == "failed" and status(r)[1].startswith("tombstoned")
    until(chain, 2 * EPOCH)
    assert bad.public_key not in dict(chain.app.validators())
    assert chain.replica.app_hash == chain.app.app_hash


def test_evidence_is_applied_once_and_a_block_that_carries_it_again_is_invalid():
    chain = Replicated()
    until(chain, 2)
    ev = equivocation(VALS[2], 2)
    block, _ = chain.block(evidence=[ev, ev])  # the proposer keeps one
    assert block.evidence == (ev,)
    block, _ = chain.block(evidence=[ev])
    assert block.evidence == ()  # applied: the builder skips it
    # A proposer that carries it anyway makes an invalid block.
    built, _ = chain.app.build_block([], proposer=chain.proposer.address, time_ms=chain.app.last_time_ms + 1000,
                                     last_commit=chain.app.get_commit_cert(chain.app.height))
    forged = Block(dataclasses.replace(built.header, evidence_hash=evidence_hash([ev])), built.txs,
                   built.last_commit, (ev,))
    with pytest.raises(InvalidBlock, match="already applied"):
        chain.app.execute_block(forged)


@pytest.mark.parametrize("make, reason", [
    (lambda: equivocation(VALS[1], 11), "not below the block's height"),
    (lambda: equivocation(VALS[1], 12), "no validator set is known"),
    (lambda: equivocation(VALS[1], 1), "expired"),
    (lambda: equivocation(dev_key("not-a-validator"), 3), "not a validator"),
    (lambda: equivocation(VALS[1], 3, chain_id="another-chain"), "bad signature"),
    (lambda: _raw_reversed(VALS[1], 3), "ascending order"),
    (lambda: b"\x01\x02", "not an evidence message"),
    (lambda: Vote.create(VALS[1], "qenex-test", VoteKind.COMMIT, 3, 0, sha256(b"x")).encode(), "expected evidence"),
])
def test_evidence_that_may_not_be_applied_is_skipped_by_builders_and_invalidates_a_block(make, reason):
    chain = Replicated()
    until(chain, 1 + UNBONDING + 1)  # height 10: evidence of height 1 is past max_evidence_age
    ev = make()
    built, _ = chain.app.build_block([], proposer=chain.proposer.address, time_ms=chain.app.last_time_ms + 1000,
                                     last_commit=chain.app.get_commit_cert(chain.app.height), evidence=[ev])
    assert built.evidence == ()
    forged = Block(dataclasses.replace(built.header, evidence_hash=evidence_hash([ev])), built.txs,
                   built.last_commit, (ev,))
    with pytest.raises(InvalidBlock, match=reason):
        chain.app.execute_block(forged)


def _raw_reversed(key, height) -> bytes:
    """Evidence whose two votes are in descending hash order (not the canonical form)."""
    a, b = sorted((Vote.create(key, "qenex-test", VoteKind.COMMIT, height, 0, sha256(x)) for x in (b"a", b"b")),
                  key=lambda v: v.block_hash)
    kind, version, *_ = Evidence(a, b).to_wire()
    return encode([kind, version, b.to_wire(), a.to_wire()])


def test_a_block_carries_at_most_the_evidence_limit_and_one_equivocation_per_validator():
    chain = Replicated()
    until(chain, 8)
    many = [equivocation(VALS[i % 4], 5 + i // 4, view=i) for i in range(MAX_BLOCK_EVIDENCE + 2)]
    block, _ = chain.block(evidence=many)
    # The first equivocation of each tombstones it; its later ones cannot punish it again and are left out.
    assert block.evidence == tuple(many[:4])
    assert sorted(e.validator for e in chain.app.staking().evidence()) == sorted(v.address for v in VALS)
    with pytest.raises(MalformedBlock, match="exceed the limit"):
        Block(block.header, (), block.last_commit, tuple(many[:MAX_BLOCK_EVIDENCE + 1]))
    wire = block.to_wire()
    wire[4] = many[:MAX_BLOCK_EVIDENCE + 1]
    with pytest.raises(MalformedBlock, match="exceed the limit"):
        Block.decode(encode(wire))
    wire[4] = [b"x" * (MAX_EVIDENCE_BYTES + 1)]
    with pytest.raises(MalformedBlock, match="evidence 0 must be"):
        Block.decode(encode(wire))


# -- downtime ------------------------------------------------------------------------------


def test_a_validator_missing_the_window_is_slashed_jailed_leaves_and_returns_after_unjail():
    chain = Replicated()
    down = VALS[2]
    chain.verifier.offline = {down.address}
    tokens = chain.app.staking().validator(down.address).tokens
    assert max_missed(PARAMS) == 3
    # Block h tracks h - 1: heights 1..6 missed fill the window at block 7, past 3 misses.
    until(chain, WINDOW)
    assert not chain.app.staking().validator(down.address).jailed
    assert chain.app.staking().signing_info(down.address).missed == WINDOW - 1
    chain.block()
    jailed_at = chain.app.height
    v = chain.app.staking().validator(down.address)
    assert v.jailed and not v.tombstoned and v.jailed_until == jailed_at + JAIL
    assert v.tokens == tokens - tokens // 100
    assert chain.app.staking().signing_info(down.address) is None  # starts afresh
    conserved(chain)
    until(chain, 2 * EPOCH)
    assert down.public_key not in dict(chain.app.validators())

    chain.verifier.offline = set()
    _, r = chain.block([chain.tx(down, Unjail())])
    assert status(r)[0] == "failed" and status(r)[1].startswith("jail_period_not_over")
    until(chain, jailed_at + JAIL - 1)
    _, r = chain.block([chain.tx(down, Unjail())])
    assert status(r) == ("ok", "")
    epoch_end = -(-chain.app.height // EPOCH) * EPOCH
    until(chain, epoch_end)
    assert dict(chain.app.validators())[down.public_key] == v.power
    # Back in the set, its window starts afresh: the misses before the jail never count again.
    until(chain, epoch_end + 2)
    info = chain.app.staking().signing_info(down.address)
    assert info is not None and info.missed == 0 and info.start_height == epoch_end + 1


def test_a_validator_that_misses_no_more_than_the_threshold_is_never_jailed():
    chain = Replicated()
    down = VALS[2]
    for height in range(1, 5 * WINDOW):
        # It misses 3 of every 6 commits: exactly max_missed in every full window.
        chain.verifier.offline = {down.address} if height % 2 else set()
        chain.block()
    assert not chain.app.staking().validator(down.address).jailed
    assert chain.app.staking().signing_info(down.address).missed <= max_missed(PARAMS)


# -- supply conservation with slashing (hypothesis) --------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(), st.lists(st.tuples(st.integers(0, 13), st.integers(0, 2), st.integers(1, 4)), max_size=4),
       st.lists(st.tuples(st.integers(0, 13), st.integers(0, 2)), max_size=6))
def test_supply_is_conserved_and_replicas_agree_with_slashing_at_random_heights(schedule, offences, outages):
    staking = StakingParams(unbonding_blocks=8, max_evidence_age=4, max_validators=4, min_self_bond=2 * ONE,
                            max_unbonding_entries=3, max_delegations=3, signed_blocks_window=3,
                            min_signed_per_window_bps=5000, downtime_jail_blocks=2, slash_downtime_bps=1000)
    chain = Replicated(staking)
    conserved(chain)
    for step, txs in enumerate(schedule):
        chain.verifier.offline = {VALS[v].address for s, v in outages if s <= step < s + 4}
        evidence = [equivocation(VALS[v], chain.app.height + 1 - back) for s, v, back in offences
                    if s == step and chain.app.height + 1 - back >= 1]
        chain.block([chain.tx(key, payload) for key, payload in txs], evidence=evidence)
        conserved(chain)
        assert chain.app.app_hash == chain.replica.app_hash
        assert {pk for pk, _ in chain.app.validators()}, "the set is never empty"
    q = chain.app.staking()
    event(f"tombstoned {sum(v.tombstoned for v in q.validators())}, jailed {sum(v.jailed for v in q.validators())}")


# -- RPC and CLI -------------------------------------------------------------------------------


def test_rpc_lists_applied_evidence_in_pages_and_missed_blocks_per_validator():
    from dataclasses import replace as dc_replace

    from cli.staking import render_evidence
    from node.jsonrpc import RPCError
    from node.rpc import build_methods
    from state.crypto import address_to_text
    from tests.rpc_fixtures import rpc_context

    chain = Replicated()
    chain.verifier.offline = {VALS[3].address}
    until(chain, 3)
    chain.block(evidence=[equivocation(VALS[2], 2), equivocation(VALS[1], 2), equivocation(VALS[0], 3)])
    ctx = dc_replace(rpc_context(chain.app), validator_set=lambda: chain.app.validator_set(chain.app.height + 1))
    m = build_methods(ctx)
    first = m["qenex_getEvidence"](0, None, 2)
    assert [e["height"] for e in first["evidence"]] == [2, 2] and first["next"] is not None
    rest = m["qenex_getEvidence"](first["next"]["from_height"], first["next"]["after"], 2)
    assert [e["height"] for e in rest["evidence"]] == [3] and rest["next"] is None
    listed = first["evidence"] + rest["evidence"]
    assert {e["validator"] for e in listed} == {address_to_text(VALS[i].address) for i in range(3)}
    assert all(int(e["burned"]) > 0 and e["included_height"] == 4 for e in listed)
    assert "tombstoned, in block 4" in render_evidence(first) and "more: --from-height 2" in render_evidence(first)
    with pytest.raises(RPCError):
        m["qenex_getEvidence"](0, None, 101)
    members = {v["address"]: v for v in m["qenex_getValidators"]()["validators"]}
    down = members[address_to_text(VALS[3].address)]
    assert down["missed_blocks"] == 3 and down["window_start"] == 1  # heights 1..3 missed, block 4 tracked 3
    records = {v["moniker"]: v for v in m["qenex_getStakingValidators"]()["validators"]}
    assert records["v0"]["tombstoned"] and records["v3"]["missed_blocks"] == 3


def test_genesis_refuses_an_unbonding_period_within_one_epoch():
    from state.errors import MalformedGenesis

    with pytest.raises(MalformedGenesis, match="unbonding_blocks 4 must exceed epoch_length 4"):
        Params(epoch_length=EPOCH, staking=dataclasses.replace(PARAMS, unbonding_blocks=EPOCH, max_evidence_age=EPOCH))


# -- the downtime window against a reference model ---------------------------------------------


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([1, 2, 5, 7, 1023, 1024, 1025, 2100]), st.integers(0, 2**32 - 1))
def test_the_downtime_window_matches_a_reference_model(window, seed):
    """Slashing.track straight on the staking state, block after block, against a plain model: a
    deque of the last ``window`` tracked results per member, reset on jail and on any gap; random
    miss rates, members absent from some parents' sets, and jailed members unjailed at random
    heights (so windows wrap, reset and rejoin)."""
    import random
    from collections import deque

    from state.ledger import Ledger, Overlay
    from state.slashing import CommitVote, Slashing
    from state.staking import Staking

    rng = random.Random(seed)
    params = dataclasses.replace(PARAMS, signed_blocks_window=window, min_signed_per_window_bps=rng.choice(
        [0, 3000, 5000, 9000]), downtime_jail_blocks=rng.randint(0, 5), max_evidence_age=1,
        unbonding_blocks=max(window, 2) + EPOCH)
    genesis = make_genesis(validators=VALS, params=Params(epoch_length=EPOCH, staking=params))
    kv = MemoryKV()
    Application(kv, genesis)
    rates = [rng.choice([0.0, 0.3, 0.5, 0.9, 1.0]) for _ in VALS]
    model: dict[bytes, deque] = {}
    last: dict[bytes, int] = {}
    for height in range(2, 3 * window + 40):
        overlay = Overlay(kv)
        staking = Staking(Ledger(overlay), params, height=height, epoch_length=EPOCH)
        for v in VALS:  # random unjails once the jail period is over
            record = staking.validator(v.address)
            if record.jailed and height >= record.jailed_until and rng.random() < 0.2:
                staking.put_validator(dataclasses.replace(record, jailed=False, jailed_until=0))
        # Now and then a member is not in the parent's set (it left and comes back): a gap.
        votes = [CommitVote(v.address, rng.random() >= rates[i]) for i, v in enumerate(VALS) if rng.random() > 0.03]
        jailed_before = {v.address for v in VALS if staking.validator(v.address).jailed}
        jailed = set(Slashing(staking).track(votes))
        tracked = height - 1
        for vote in votes:
            if vote.validator in jailed_before:
                continue
            bits = model.get(vote.validator)
            if bits is None or last.get(vote.validator) != tracked - 1:
                bits = model[vote.validator] = deque(maxlen=window)
            bits.append(not vote.signed)
            last[vote.validator] = tracked
            should_jail = len(bits) == window and sum(bits) > max_missed(params)
            assert (vote.validator in jailed) == should_jail, (height, window)
            info = Slashing(staking).signing_info(vote.validator)
            if should_jail:
                assert info is None
                del model[vote.validator]
                last.pop(vote.validator)
            else:
                assert info is not None and info.missed == sum(bits), (height, info, sum(bits))
        kv.write_batch(overlay.writes, sync=False)
