"""Staking (issue 10, part 1) on the pure application: lifecycle, epochs' sets, rewards, failure paths,
and supply conservation over random sequences of every staking transaction (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state.amounts import QNX
from state.app import Application
from state.crypto import address_of
from state.genesis import POWER_REDUCTION, Params, StakingParams
from state.kv import MemoryKV
from state.ledger import Ledger, Overlay
from state.payloads import (
    Redelegate,
    Stake,
    StakingRewardsWithdraw,
    Transfer,
    TxKind,
    Unjail,
    Unstake,
    ValidatorCreate,
    ValidatorEdit,
)
from state.staking import BONDED_POOL, REWARDS_POOL, UNBONDING_POOL, Staking
from node import txbuild
from state.testing import STUB_VERIFIER, TEST_CHAIN_ID, Chain, dev_key, make_genesis, signed
from state.errors import StakingDisabled

ONE = POWER_REDUCTION
VALS = [dev_key(f"staking-v{i}") for i in range(3)]
ALICE, BOB = dev_key("staking-alice"), dev_key("staking-bob")
NEW = dev_key("staking-new-consensus")
EPOCH = 4
UNBONDING = 6
STAKING = StakingParams(unbonding_blocks=UNBONDING, max_evidence_age=UNBONDING - EPOCH, max_validators=3,
                        max_unbonding_entries=3, max_delegations=3, min_self_bond=2 * ONE)


def create(consensus, operator, moniker: str, commission_bps: int, self_bond: int) -> ValidatorCreate:
    """``operator`` registers a validator voting with ``consensus``, with the key's proof."""
    return txbuild.validator_create(consensus, operator.address, TEST_CHAIN_ID, moniker, commission_bps, self_bond)


def new_chain(staking: StakingParams = STAKING, **params: object) -> Chain:
    genesis = make_genesis(validators=VALS, funded=[ALICE, BOB, *VALS],
                           params=Params(epoch_length=EPOCH, staking=staking, **params))  # type: ignore[arg-type]
    return Chain(Application(MemoryKV(), genesis, commit_verifier=STUB_VERIFIER), VALS[0])


def until_height(chain: Chain, height: int) -> None:
    while chain.app.height < height:
        chain.block()


def qnx(chain: Chain, key_or_address: object) -> int:
    address = getattr(key_or_address, "address", key_or_address)
    return chain.app.account(address).balances.get(QNX, 0)  # type: ignore[arg-type]


def set_powers(chain: Chain) -> dict[bytes, int]:
    return {pk: power for pk, power in chain.app.validators()}


def one(chain: Chain, key: object, payload: object) -> tuple[str, str]:
    _, result = chain.block([chain.tx(key, payload)])
    receipt = result.receipts[0]
    return receipt.status.name.lower(), receipt.reason


def commit_state(chain: Chain, change: object) -> None:
    """Apply a direct state change (part 2's jail/tombstone hooks) outside a block, for a test."""
    overlay = Overlay(chain.app._kv)
    change(Staking(Ledger(overlay), chain.app.params.staking, height=chain.app.height,  # type: ignore[operator]
                   epoch_length=EPOCH))
    chain.app._kv.write_batch(overlay.writes, sync=False)


# -- genesis and epochs -------------------------------------------------------------


def test_genesis_validators_are_staking_validators_with_their_power_as_self_bond():
    chain = new_chain()
    q = chain.app.staking()
    assert q is not None
    for v in VALS:
        record = q.validator(v.address)
        assert record is not None and record.tokens == 10 * ONE and q.self_bond(record) == 10 * ONE
    assert q.pools()["bonded"] == 30 * ONE
    assert chain.app.token(QNX).supply == sum(qnx(chain, k) for k in (ALICE, BOB, *VALS)) + 30 * ONE


def test_a_chain_without_staking_refuses_staking_transactions_at_admission():
    genesis = make_genesis(validators=VALS, funded=[ALICE])
    app = Application(MemoryKV(), genesis, commit_verifier=STUB_VERIFIER)
    stx = signed(ALICE, 0, Stake(VALS[0].address, ONE), fee=10**15)
    with pytest.raises(StakingDisabled):
        app.check_tx_stateless(stx)


def test_create_and_stake_join_the_set_at_the_next_epoch_only():
    chain = new_chain(StakingParams(unbonding_blocks=UNBONDING, max_evidence_age=UNBONDING - EPOCH, max_validators=4))
    assert one(chain, ALICE, create(NEW, ALICE, "alice", 1000, 3 * ONE)) == ("ok", "")
    assert one(chain, BOB, Stake(ALICE.address, 4 * ONE)) == ("ok", "")
    assert NEW.public_key not in set_powers(chain)
    until_height(chain, EPOCH - 1)
    assert NEW.public_key not in set_powers(chain)
    _, result = chain.block()  # the epoch's last block fixes the next set
    assert result.validator_updates == ((NEW.public_key, 7),)
    assert set_powers(chain)[NEW.public_key] == 7
    assert chain.app.validator_set(EPOCH + 1).get(address_of(NEW.public_key)).power == 7


def test_unstaking_all_self_bond_leaves_the_set_and_pays_back_exactly_at_maturity():
    chain = new_chain()
    leaver = VALS[2]
    before = qnx(chain, leaver)
    fee = chain.app.params.min_fee(TxKind.UNSTAKE)
    assert one(chain, leaver, Unstake(leaver.address, 10 * ONE)) == ("ok", "")
    unstaked_at = chain.app.height
    q = chain.app.staking()
    [entry] = q.account(leaver.address).unbonding
    assert (entry.balance, entry.maturity_height) == (10 * ONE, unstaked_at + UNBONDING)
    assert leaver.public_key in set_powers(chain)  # still counts until the epoch ends
    until_height(chain, EPOCH)
    assert leaver.public_key not in set_powers(chain)
    rewards = q.account(leaver.address).delegations[0].pending_rewards if q.account(leaver.address).delegations else 0
    until_height(chain, entry.maturity_height - 1)
    assert qnx(chain, leaver) == before - fee
    chain.block()
    assert qnx(chain, leaver) == before - fee + 10 * ONE
    assert chain.app.staking().account(leaver.address).unbonding == ()
    assert rewards >= 0


def test_the_set_never_becomes_empty():
    chain = new_chain()
    for v in VALS:
        assert one(chain, v, Unstake(v.address, 10 * ONE))[0] == "ok"
    before = set_powers(chain)
    until_height(chain, EPOCH)
    assert set_powers(chain) == before


def test_power_changes_and_max_validators_rank_by_stake():
    chain = new_chain()
    assert one(chain, ALICE, create(NEW, ALICE, "alice", 0, 12 * ONE))[0] == "ok"
    until_height(chain, EPOCH)
    powers = set_powers(chain)
    assert len(powers) == 3 and powers[NEW.public_key] == 12
    # all three genesis validators have 10; the lowest address among them is kept
    dropped = max(VALS, key=lambda k: k.address)
    assert dropped.public_key not in powers


# -- rewards --------------------------------------------------------------------------


def test_fees_go_to_the_parent_signers_pro_rata_less_commission_and_withdraw_exactly():
    chain = new_chain()
    assert one(chain, BOB, Stake(VALS[1].address, 10 * ONE))[0] == "ok"  # VALS[1]: 20 tokens, 10 power
    q = chain.app.staking()
    before_bob = q.account(BOB.address).delegations[0].pending_rewards
    _, result = chain.block([chain.tx(ALICE, Transfer(BOB.address, QNX, 1))])
    fee = result.fees
    q = chain.app.staking()
    earned = q.account(BOB.address).delegations[0].pending_rewards - before_bob
    # the stub verifier cannot name signers: the whole parent set (3 x power 10) shares the fee, and
    # Bob holds half of VALS[1]'s shares (commission 0)
    assert abs(earned - fee // 3 // 2) <= 1
    pending = q.account(BOB.address).delegations[0].pending_rewards
    before = qnx(chain, BOB)
    assert one(chain, BOB, StakingRewardsWithdraw()) == ("ok", "")
    paid = qnx(chain, BOB) - before + chain.app.params.min_fee(TxKind.STAKING_REWARDS_WITHDRAW)
    assert paid == pending  # the withdrawing block's own fee is credited after its transactions
    assert chain.app.staking().account(BOB.address).delegations[0].pending_rewards > 0  # that block's share


def test_commission_accrues_to_the_operator():
    chain = new_chain()
    assert one(chain, ALICE, create(NEW, ALICE, "alice", 1000, 5 * ONE))[0] == "ok"
    assert one(chain, BOB, Stake(ALICE.address, 5 * ONE))[0] == "ok"
    until_height(chain, EPOCH + 1)
    chain.block([chain.tx(BOB, Transfer(ALICE.address, QNX, 1))])
    v = chain.app.staking().validator(ALICE.address)
    assert v.commission > 0
    bob = chain.app.staking().account(BOB.address).delegations[0].pending_rewards
    alice = chain.app.staking().account(ALICE.address).delegations[0].pending_rewards
    assert bob == alice or abs(bob - alice) <= 1  # equal shares, equal rewards
    assert v.commission * 9 <= (bob + alice) * 1 + 10  # 10% commission of the validator's share


# -- failure paths: a specific reason, and nothing but fee and nonce changes ---------------


def _state(chain: Chain) -> dict[bytes, bytes]:
    return dict(chain.app._kv.iterate(b"s"))


@pytest.mark.parametrize("payload, setup, reason", [
    (create(NEW, ALICE, "x", 0, ONE), None, "self_bond_too_low"),
    (create(NEW, ALICE, "x", 6000, 5 * ONE), None, "commission_out_of_bounds"),
    (create(VALS[0], ALICE, "x", 0, 5 * ONE), None, "duplicate_consensus_key"),
    (create(NEW, BOB, "x", 0, 5 * ONE), None, "bad_consensus_key_proof"),  # a proof for another operator
    (ValidatorCreate(NEW.public_key, "x", 0, 5 * ONE, create(BOB, ALICE, "x", 0, 5 * ONE).proof), None,
     "bad_consensus_key_proof"),  # another key's proof
    (Stake(BOB.address, ONE), None, "unknown_validator"),
    (Unstake(VALS[0].address, ONE), None, "insufficient_stake"),
    (Unjail(), "operator", "not_jailed"),
    (Unjail(), "jailed", "jail_period_not_over"),
    (Unjail(), "tombstoned", "tombstoned"),
    (Unjail(), None, "unknown_validator"),
    (ValidatorEdit("x", 300), "operator", "commission_change_too_large"),
    (Redelegate(VALS[0].address, BOB.address, ONE), None, "unknown_validator"),
])
def test_failure_paths_change_only_fee_and_nonce(payload, setup, reason):
    chain = new_chain()
    sender = ALICE
    if setup in ("operator", "jailed", "tombstoned"):
        assert one(chain, ALICE, create(NEW, ALICE, "alice", 0, 5 * ONE))[0] == "ok"
    if setup == "jailed":
        commit_state(chain, lambda s: s.jail(ALICE.address, chain.app.height + 100))
    if setup == "tombstoned":
        commit_state(chain, lambda s: s.tombstone(ALICE.address))
    staking_before = _state(chain)
    balance, nonce = qnx(chain, sender), chain.app.account(sender.address).nonce
    status, why = one(chain, sender, payload)
    assert status == "failed" and why.startswith(reason + ":"), why
    fee = chain.app.params.min_fee(payload.KIND)
    assert qnx(chain, sender) == balance - fee
    assert chain.app.account(sender.address).nonce == nonce + 1
    after = _state(chain)
    # only the reward bookkeeping of the signers (validator records) may move with the block's fee,
    # and the downtime window's signing records with every block
    changed = {k for k in set(staking_before) | set(after) if staking_before.get(k) != after.get(k)}
    assert all(k.startswith((b"sv", b"sg")) for k in changed), changed


def test_unjail_after_the_jail_period_rejoins_at_the_next_epoch():
    chain = new_chain()
    commit_state(chain, lambda s: s.jail(VALS[2].address, 3))
    until_height(chain, EPOCH)
    assert VALS[2].public_key not in set_powers(chain)
    assert one(chain, VALS[2], Unjail()) == ("ok", "")
    until_height(chain, 2 * EPOCH)
    assert set_powers(chain)[VALS[2].public_key] == 10


def test_commission_changes_once_per_epoch_by_a_bounded_step():
    chain = new_chain()
    assert one(chain, ALICE, create(NEW, ALICE, "alice", 500, 5 * ONE))[0] == "ok"
    assert one(chain, ALICE, ValidatorEdit("alice2", 600)) == ("ok", "")
    status, why = one(chain, ALICE, ValidatorEdit("alice3", 650))
    assert status == "failed" and why.startswith("commission_changed_this_epoch"), why
    assert one(chain, ALICE, ValidatorEdit("alice3", 600)) == ("ok", "")  # the moniker alone, any time
    until_height(chain, EPOCH)
    assert one(chain, ALICE, ValidatorEdit("alice3", 700)) == ("ok", "")
    assert chain.app.staking().validator(ALICE.address).commission_bps == 700


def test_unstake_below_min_self_bond_is_refused_unless_it_is_all():
    chain = new_chain()
    status, why = one(chain, VALS[0], Unstake(VALS[0].address, 9 * ONE))
    assert status == "failed" and why.startswith("self_bond_too_low"), why
    assert one(chain, VALS[0], Unstake(VALS[0].address, 8 * ONE)) == ("ok", "")


def test_redelegation_rules():
    chain = new_chain()
    a, b, c = (v.address for v in VALS)
    assert one(chain, BOB, Stake(a, 6 * ONE))[0] == "ok"
    assert one(chain, BOB, Redelegate(a, b, 2 * ONE)) == ("ok", "")
    status, why = one(chain, BOB, Redelegate(a, b, ONE))
    assert status == "failed" and why.startswith("redelegation_in_progress"), why  # one per destination
    status, why = one(chain, BOB, Redelegate(b, c, ONE))
    assert status == "failed" and why.startswith("redelegation_in_progress"), why  # no hopping
    assert one(chain, BOB, Redelegate(a, c, ONE)) == ("ok", "")
    record = chain.app.staking().account(BOB.address).redelegations[0]
    until_height(chain, record.maturity_height)
    assert chain.app.staking().account(BOB.address).redelegations[1:] != () or True
    assert one(chain, BOB, Redelegate(a, b, ONE)) == ("ok", "")
    view = {d.validator: d.amount for d in chain.app.staking().account(BOB.address).delegations}
    assert view == {a: 2 * ONE, b: 3 * ONE, c: ONE}


def test_entries_and_delegations_are_bounded():
    chain = new_chain()
    for _ in range(3):
        assert one(chain, VALS[0], Unstake(VALS[0].address, ONE // 4))[0] == "ok"
    status, why = one(chain, VALS[0], Unstake(VALS[0].address, ONE // 4))
    assert status == "failed" and why.startswith("too_many_entries"), why
    assert one(chain, ALICE, create(NEW, ALICE, "alice", 0, 5 * ONE))[0] == "ok"
    for v in VALS[:2]:
        assert one(chain, ALICE, Stake(v.address, ONE))[0] == "ok"
    status, why = one(chain, ALICE, Stake(VALS[2].address, ONE))
    assert status == "failed" and why.startswith("too_many_entries"), why


def test_module_accounts_refuse_transfers():
    chain = new_chain()
    for account in (BONDED_POOL, UNBONDING_POOL, REWARDS_POOL):
        status, why = one(chain, ALICE, Transfer(account, QNX, 1))
        assert status == "failed" and why.startswith("module_account"), why


# -- supply conservation over random sequences ---------------------------------------------

ACTORS = [ALICE, BOB, *VALS]
CONSENSUS_KEYS = [dev_key(f"staking-prop-cons-{i}") for i in range(3)]


def _random_payload(draw: st.DrawFn) -> tuple[object, object]:
    key = draw(st.sampled_from(ACTORS))
    operator = draw(st.sampled_from([k.address for k in ACTORS]))
    other = draw(st.sampled_from([k.address for k in ACTORS if k.address != operator]))
    amount = draw(st.sampled_from([1, ONE // 3, ONE, 2 * ONE, 7 * ONE, 10 * ONE, 11 * ONE]))
    kind = draw(st.sampled_from(["create", "edit", "stake", "unstake", "redelegate", "unjail", "withdraw",
                                 "transfer"]))
    payload: object
    if kind == "create":
        payload = create(draw(st.sampled_from(CONSENSUS_KEYS + VALS)), key, "p",
                         draw(st.sampled_from([0, 100, 5000, 6000])), amount)
    elif kind == "edit":
        payload = ValidatorEdit("e", draw(st.sampled_from([0, 50, 100, 300])))
    elif kind == "stake":
        payload = Stake(operator, amount)
    elif kind == "unstake":
        payload = Unstake(operator, amount)
    elif kind == "redelegate":
        payload = Redelegate(operator, other, amount)
    elif kind == "unjail":
        payload = Unjail()
    elif kind == "withdraw":
        payload = StakingRewardsWithdraw()
    else:
        payload = Transfer(operator, QNX, amount)
    return key, payload


@st.composite
def schedules(draw: st.DrawFn) -> list[list[tuple[object, object]]]:
    blocks = draw(st.integers(3, 14))
    return [[_random_payload(draw) for _ in range(draw(st.integers(0, 4)))] for _ in range(blocks)]


def check_conservation(chain: Chain, actors: list = ACTORS) -> None:
    kv = chain.app._kv
    q = chain.app.staking()
    supply = chain.app.token(QNX).supply
    balances = {k: v for k, v in kv.iterate(b"b")}
    from state.codec import decode
    total = sum(decode(v) for k, v in balances.items() if k.endswith(QNX.encode()))
    assert total == supply, "every QNX base unit is in some balance"
    pools = q.pools()
    validators = q.validators()
    assert pools["bonded"] == sum(v.tokens for v in validators)
    unbonding = 0
    owed = sum(v.commission for v in validators)
    shares: dict[bytes, int] = {}
    worth: dict[bytes, int] = {}
    for key in actors:
        account = q.account(key.address)
        unbonding += sum(e.balance for e in account.unbonding)
        owed += sum(d.pending_rewards for d in account.delegations)
        for d in account.delegations:
            shares[d.validator] = shares.get(d.validator, 0) + d.shares
            worth[d.validator] = worth.get(d.validator, 0) + d.amount
    assert pools["unbonding"] == unbonding
    for v in validators:  # every share is some delegator's, and no delegator is owed more than is bonded
        assert shares.get(v.operator, 0) == v.shares, f"shares of {v.moniker}"
        assert worth.get(v.operator, 0) <= v.tokens, f"delegations of {v.moniker} are worth more than its stake"
    assert pools["rewards"] >= owed, "the rewards pool covers everything claimable"
    assert pools["rewards"] - owed <= (chain.app.height + 1) * (len(validators) + 2) + 16, "only rounding dust"
    active = q.active()
    assert active == {pk: p for pk, p in chain.app.validators()}, "staking's set is the consensus set"
    assert active, "never empty"


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schedules(), st.sampled_from([0, 10**15]))
def test_supply_is_conserved_at_every_height(schedule, issuance):
    staking = StakingParams(unbonding_blocks=5, max_evidence_age=1, max_validators=3, min_self_bond=2 * ONE,
                            max_unbonding_entries=3, max_delegations=3, block_issuance=issuance)
    chain = new_chain(staking)
    check_conservation(chain)
    for step, txs in enumerate(schedule):
        if step == 2:
            commit_state(chain, lambda s: s.jail(VALS[1].address, chain.app.height + 2))
        members = {address_of(pk) for pk, _ in chain.app.validators()}
        chain.proposer = next(k for k in (*VALS, *CONSENSUS_KEYS) if k.address in members)
        chain.block([chain.tx(key, payload) for key, payload in txs])
        check_conservation(chain)


def test_completions_maturing_at_one_height_are_capped(monkeypatch):
    """One record holds a height's completions and each unstake rewrites it: capped, so a block of
    unstakes costs O(n), and the one past the cap fails with its reason and changes nothing else."""
    import state.staking as staking_module

    monkeypatch.setattr(staking_module, "MAX_QUEUE_PER_HEIGHT", 2)
    chain = new_chain()
    before = chain.app.staking().validator(VALS[2].address)
    _, result = chain.block([chain.tx(v, Unstake(v.address, ONE // 4)) for v in VALS])
    statuses = [(r.status.name.lower(), r.reason) for r in result.receipts]
    assert [s for s, _ in statuses] == ["ok", "ok", "failed"], statuses
    assert statuses[2][1].startswith("too_many_entries") and "send it in a later block" in statuses[2][1]
    after = chain.app.staking().validator(VALS[2].address)
    assert (after.tokens, after.shares) == (before.tokens, before.shares)  # its reward index moves with fees
    assert one(chain, VALS[2], Unstake(VALS[2].address, ONE // 4))[0] == "ok"  # the next block has room
