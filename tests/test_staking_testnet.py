"""Staking on live processes (issue 10, acceptance 2): a validator unstakes all its self-bond.

Four validators (power 100 each) on a chain with epochs of 10 blocks and an
unbonding period of 15.  node3's operator (its node key) unstakes everything
with the CLI: at the end of that epoch every node's set drops it, the other
three keep finalizing, and the 100 QNX come back to the operator exactly at
the maturity height, the same on every node (balances read at heights
maturity - 1 and maturity), with every node agreeing on every block hash.
"""

from __future__ import annotations

import json

import pytest

from node.config import Home
from state.crypto import address_to_text
from state.genesis import POWER_REDUCTION, Params, StakingParams
from state.keyfile import load_keyfile
from tests.localnet import running_localnet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EPOCH = 10
UNBONDING = 15
PARAMS = Params(epoch_length=EPOCH, staking=StakingParams(unbonding_blocks=UNBONDING, max_evidence_age=UNBONDING - EPOCH))


def test_a_validator_that_unstakes_everything_leaves_at_the_epoch_and_is_paid_at_maturity(tmp_path):
    with running_localnet(tmp_path, params=PARAMS) as net:
        key_file = Home(net.home(3)).node_key_file
        operator = address_to_text(load_keyfile(key_file, None).address)
        result = net.cli("tx", "unstake", "--from", str(key_file), "--validator", operator, "--all",
                         "--rpc", net.url(0), "--wait", "--json")
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        out = json.loads(result.stdout)
        assert out["status"] == "ok", out
        included = int(out["height"])
        maturity = included + UNBONDING
        epoch_end = -(-included // EPOCH) * EPOCH

        staking = net.rpc(1).call("qenex_getStaking", operator)
        [entry] = staking["unbonding"]
        assert (int(entry["balance"]), entry["maturity_height"]) == (100 * POWER_REDUCTION, maturity)
        epoch = net.rpc(2).call("qenex_getEpoch")
        assert epoch["epoch_length"] == EPOCH and epoch["staking"] is True

        # It leaves the set that signs the first height of the next epoch, on every node.
        net.wait_height(epoch_end + 1, nodes=[0, 1, 2], timeout=120)
        for i in range(4):
            before = net.rpc(i).call("qenex_getValidators", epoch_end)
            after = net.rpc(i).call("qenex_getValidators", epoch_end + 1)
            assert operator in {v["address"] for v in before["validators"]}
            assert len(after["validators"]) == 3 and operator not in {v["address"] for v in after["validators"]}
            assert all(v["stake"] == str(100 * POWER_REDUCTION) for v in after["validators"])

        # The chain keeps finalizing on the three; the funds come back exactly at maturity.
        net.wait_height(maturity + 3, nodes=[0, 1, 2], timeout=120)
        wait_until(lambda: net.height(3) >= maturity + 1, 60, "node3 (now a follower) to pass maturity")
        balances = set()
        for i in range(4):
            rpc = net.rpc(i)
            pre = int(rpc.call("qenex_getAccount", operator, maturity - 1)["balances"]["QNX"])
            post = int(rpc.call("qenex_getAccount", operator, maturity)["balances"]["QNX"])
            assert post - pre == 100 * POWER_REDUCTION, f"node{i}: paid {post - pre} at maturity"
            assert rpc.call("qenex_getStaking", operator, maturity)["unbonding"] == []
            assert len(rpc.call("qenex_getStaking", operator, maturity - 1)["unbonding"]) == 1
            balances.add((pre, post))
        assert len(balances) == 1
        hashes = [[net.rpc(i).call("qenex_getBlock", h)["hash"] for h in range(1, maturity + 2)] for i in range(4)]
        assert all(h == hashes[0] for h in hashes)
