"""Slashing on live processes (issue 10, acceptance 3 and 4).

Four validators of power 100 on a local testnet (its genesis is a test chain's), epochs of 10
blocks.

* **Equivocation.** alice delegates 10 QNX to node3; node3 is restarted with the test-only
  ``double_sign_from_height`` (node.misbehaviour), so each COMMIT it sends is followed by a
  conflicting one.  The honest validators report it, a proposer includes the evidence, and every
  node applies it: node3's 110 QNX and alice's 10 are slashed by exactly 5 %, node3 is
  tombstoned and leaves the set at the epoch's end; block and app hashes agree on every node at
  every height, and no block takes more than a few views.
* **Downtime.** node3 is stopped past the signed-blocks window (20 commits, at least half
  signed): it is slashed by exactly 1 % and jailed, leaves the set at the epoch's end; restarted,
  it unjails after the jail period with ``qenexd tx unjail`` and is back at the next epoch.
"""

from __future__ import annotations

import dataclasses
import json
import signal

import pytest

from node.config import Home
from state.crypto import address_to_text
from state.genesis import POWER_REDUCTION, Params, StakingParams
from state.keyfile import load_keyfile
from tests.localnet import LocalNet, running_localnet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

ONE = POWER_REDUCTION
EPOCH = 10
BAD = 3


def _operator(net: LocalNet, i: int) -> str:
    return address_to_text(load_keyfile(Home(net.home(i)).node_key_file, None).address)


def _record(net: LocalNet, node: int, operator: str) -> dict:
    listed = net.rpc(node).call("qenex_getStakingValidators")["validators"]
    return next(v for v in listed if v["operator"] == operator)


def _members(net: LocalNet, node: int, height: int) -> dict[str, str]:
    return {v["address"]: v["power"] for v in net.rpc(node).call("qenex_getValidators", height)["validators"]}


def _agree_on_every_block(net: LocalNet, nodes: list[int], top: int) -> list[int]:
    """Every node's block hash (which commits to the app hash) at every height; the block times."""
    times = []
    for height in range(1, top + 1):
        blocks = [net.rpc(i).call("qenex_getBlock", height) for i in nodes]
        assert len({(b["hash"], b["app_hash"]) for b in blocks}) == 1, f"nodes disagree at height {height}"
        times.append(blocks[0]["time_ms"])
    return times


def _restart_with(net: LocalNet, i: int, **consensus: int) -> None:
    net.kill(i, signal.SIGTERM)
    home = Home(net.home(i))
    config = home.load_config()
    home.write_config(dataclasses.replace(config, consensus=dataclasses.replace(config.consensus, **consensus)))
    net.start(i)


def test_an_equivocating_validator_is_slashed_tombstoned_and_removed(tmp_path):
    params = Params(epoch_length=EPOCH, staking=StakingParams(
        unbonding_blocks=400, max_evidence_age=390, slash_double_sign_bps=500,
        signed_blocks_window=10_000))  # no downtime slash while node3 restarts
    with running_localnet(tmp_path, params=params) as net:
        operator = _operator(net, BAD)
        result = net.cli("tx", "stake", "--from", str(net.account_key("alice")), "--validator", operator,
                         "--amount", "10", "--rpc", net.url(0), "--wait", "--json")
        assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
        assert _record(net, 0, operator)["stake"] == str(110 * ONE)

        _restart_with(net, BAD, double_sign_from_height=net.height(0) + 3)
        evidence = wait_until(lambda: net.rpc(0).call("qenex_getEvidence")["evidence"], 120,
                              "the equivocation to be committed")
        [item] = evidence
        consensus_address = next(v["address"] for v in net.rpc(0).call("qenex_getStakingValidators")["validators"]
                                 if v["operator"] == operator)
        assert item["validator"] == consensus_address and item["operator"] == operator
        assert item["burned"] == str(110 * ONE * 5 // 100)
        included = item["included_height"]
        block = net.rpc(1).call("qenex_getBlock", included)
        assert len(block["evidence"]) == 1

        epoch_end = -(-included // EPOCH) * EPOCH
        net.wait_height(epoch_end + 3, timeout=120)
        alice = net.address("alice")
        for i in range(4):
            record = _record(net, i, operator)
            assert record["tombstoned"] and record["jailed"], record
            assert record["stake"] == str(110 * ONE * 95 // 100)  # 104.5 QNX
            [delegation] = net.rpc(i).call("qenex_getStaking", alice)["delegations"]
            assert delegation["amount"] == str(10 * ONE * 95 // 100)  # exactly 9.5 QNX
            assert consensus_address in _members(net, i, epoch_end)
            assert consensus_address not in _members(net, i, epoch_end + 1) and len(_members(net, i, epoch_end + 1)) == 3

        # Unjail is refused for good.
        key_file = Home(net.home(BAD)).node_key_file
        result = net.cli("tx", "unjail", "--from", str(key_file), "--rpc", net.url(0), "--wait", "--json")
        out = json.loads(result.stdout)  # a failed receipt is printed as JSON too, then exit status 1
        assert result.returncode == 1 and out["status"] == "failed" and out["reason"].startswith("tombstoned"), out

        top = min(net.height(i) for i in range(4))
        times = _agree_on_every_block(net, [0, 1, 2, 3], top)
        gaps = [b - a for a, b in zip(times, times[1:])]
        # No stall beyond a few views (base timeout 1.5 s, +0.5 s a view); the restart itself
        # leaves three of four validators, a quorum.
        assert max(gaps) < 10_000, max(gaps)


def test_a_validator_down_past_the_window_is_jailed_slashed_and_unjails_back(tmp_path):
    window, jail = 20, 30
    params = Params(epoch_length=EPOCH, staking=StakingParams(
        unbonding_blocks=400, max_evidence_age=390, signed_blocks_window=window, min_signed_per_window_bps=5000,
        downtime_jail_blocks=jail, slash_downtime_bps=100))
    with running_localnet(tmp_path, params=params) as net:
        operator = _operator(net, BAD)
        net.wait_height(window + 2, timeout=120)
        net.kill(BAD, signal.SIGTERM)
        record = wait_until(lambda: (r := _record(net, 0, operator))["jailed"] and r, 120, "node3 to be jailed")
        assert not record["tombstoned"] and record["stake"] == str(100 * ONE * 99 // 100)  # exactly 1 % burned
        jailed_until = record["jailed_until"]
        consensus_address = record["address"]

        left = -(-net.height(0) // EPOCH) * EPOCH + 1
        net.wait_height(left + 1, nodes=[0, 1, 2], timeout=120)
        assert all(consensus_address not in _members(net, i, left) for i in range(3))

        net.start(BAD)
        wait_until(lambda: net.height(BAD) >= net.height(0) - 1, 120, "node3 to catch up")
        net.wait_height(jailed_until, nodes=[0, 1, 2], timeout=120)
        key_file = Home(net.home(BAD)).node_key_file
        result = net.cli("tx", "unjail", "--from", str(key_file), "--rpc", net.url(0), "--wait", "--json")
        assert result.returncode == 0 and json.loads(result.stdout)["status"] == "ok", (result.stdout, result.stderr)
        back = -(-int(json.loads(result.stdout)["height"]) // EPOCH) * EPOCH + 1
        net.wait_height(back + 2, timeout=120)
        for i in range(4):
            assert _members(net, i, back).get(consensus_address) == "99", i
        top = min(net.height(i) for i in range(4))
        _agree_on_every_block(net, [0, 1, 2, 3], top)
