"""Staking over JSON-RPC (node.rpc_staking) and the client's builders, on the pure application."""

from __future__ import annotations

from dataclasses import replace

import pytest

from node import txbuild
from node.jsonrpc import RPCError
from node.rpc import build_methods
from state.crypto import address_to_text
from state.genesis import POWER_REDUCTION, Params
from state.kv import MemoryKV
from state.app import Application
from state.payloads import TxKind
from state.testing import STUB_VERIFIER, Chain, make_genesis
from tests.rpc_fixtures import rpc_context
from tests.test_staking import ALICE, BOB, EPOCH, NEW, UNBONDING, VALS, new_chain


def methods(chain: Chain) -> dict:
    ctx = replace(rpc_context(chain.app), validator_set=lambda: chain.app.validator_set(chain.app.height + 1))
    return build_methods(ctx)


def test_get_staking_epoch_and_validator_fields():
    chain = new_chain()
    chain.block([chain.tx(BOB, txbuild.stake(VALS[0].address, 3 * POWER_REDUCTION)),
                 chain.tx(ALICE, txbuild.validator_create(NEW, ALICE.address, chain.app.chain_id, "alice", 100, 5 * POWER_REDUCTION))])
    chain.block([chain.tx(BOB, txbuild.unstake(VALS[0].address, POWER_REDUCTION))])
    m = methods(chain)
    bob = m["qenex_getStaking"](address_to_text(BOB.address))
    assert bob["delegations"][0]["amount"] == str(2 * POWER_REDUCTION)
    assert bob["unbonding"][0]["maturity_height"] == 2 + UNBONDING
    assert bob["validator"] is None
    alice = m["qenex_getStaking"](address_to_text(ALICE.address))
    assert alice["validator"]["moniker"] == "alice" and alice["validator"]["active_power"] is None
    assert m["qenex_getStaking"](address_to_text(BOB.address), 1)["unbonding"] == []
    epoch = m["qenex_getEpoch"]()
    assert (epoch["epoch"], epoch["first_height"], epoch["last_height"], epoch["next_set_height"]) == (
        0, 1, EPOCH, EPOCH + 1)
    listed = m["qenex_getStakingValidators"]()["validators"]
    assert len(listed) == 4
    members = m["qenex_getValidators"]()["validators"]
    assert {v["moniker"] for v in members} == {"v0", "v1", "v2"}
    assert all("stake" in v and v["jailed"] is False for v in members)


def test_no_staking_section_answers_not_found():
    app = Application(MemoryKV(), make_genesis(validators=VALS), commit_verifier=STUB_VERIFIER)
    m = build_methods(rpc_context(app))
    with pytest.raises(RPCError):
        m["qenex_getStaking"](address_to_text(BOB.address))
    assert m["qenex_getEpoch"]()["staking"] is False
    assert "stake" not in str(m["qenex_getParams"]())


def test_min_fee_reads_staking_gas_from_params():
    chain_params = new_chain().app.params
    params = chain_params.to_json_obj()
    assert txbuild.min_fee(params, TxKind.STAKE) == chain_params.min_fee(TxKind.STAKE)
    with pytest.raises(txbuild.TxBuildError):
        txbuild.min_fee(Params().to_json_obj(), TxKind.STAKE)
