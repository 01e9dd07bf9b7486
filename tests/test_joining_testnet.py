"""A full node joins the validator set on live processes (issue 10, acceptance 1).

Four validators (power 100 each) and two full nodes (``testnet init
--full-nodes 2``) on a chain with epochs of 10 blocks.  The first full node
syncs the validators' chain and serves RPC, signing nothing.  Bob, a funded dev
account, registers it through the full node's own RPC with ``qenexd tx
validator create --consensus-key <its node key file>`` (self-bond 50 QNX) and Alice
stakes 50 more: from the first height of the next epoch every node's
``qenex_getValidators`` lists five, with the newcomer at power 100, and it
proposes blocks and signs commit certificates (``qenex_getBlock``'s
``last_commit``) without having been restarted.  The second full node,
started from genesis only now with the newcomer among its peers, syncs past
the join, refusing the newcomer's votes until it reaches its epoch without
penalising it.  Then node1 stops: the
other three originals hold 300 of 500, short of a quorum, so every block
after that is proof the newcomer's votes count.  Last, the newcomer itself
restarts: the chain stalls without it and goes on when it is back, its
signatures resuming from its home's WAL and sign-state record.  Then its
operator unstakes everything: from the next epoch it is out of every node's
set and signs nothing more (its sign-state record stops below that height),
while the three remaining originals (300 of 400) finalize on.
"""

from __future__ import annotations

import contextlib
import json
import signal
import time
from dataclasses import replace
from pathlib import Path
from typing import Iterator

import pytest

from node.config import Home
from state.genesis import POWER_REDUCTION, Params, StakingParams
from tests.localnet import LocalNet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(420)]

EPOCH = 10
PARAMS = Params(epoch_length=EPOCH, staking=StakingParams(unbonding_blocks=30, max_evidence_age=30 - EPOCH))
FULL = 4  # node index of full0
LATE = 5  # full1, started once full0 validates
FIRST = [0, 1, 2, 3, FULL]


@contextlib.contextmanager
def late_second_full_node(directory: Path) -> Iterator[LocalNet]:
    """Four validators and two full nodes; full1 is left for the test to start; all stopped at the end."""
    net = LocalNet(directory, params=PARAMS, full_nodes=2)
    try:
        for i in FIRST:
            net.start(i)
        net.wait_height(2, nodes=FIRST, timeout=90)
        yield net
    finally:
        net.stop_all()


def _ok(result) -> dict:
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}"
    out = json.loads(result.stdout)
    assert out["status"] == "ok", out
    return out


def test_a_full_node_syncs_is_registered_and_validates_from_the_next_epoch(tmp_path):
    started = time.monotonic()
    with late_second_full_node(tmp_path) as net:
        entry = net.manifest["nodes"][FULL]
        assert entry["role"] == "full"
        consensus_address = entry["address"]
        full = net.rpc(FULL)

        # It follows: the same blocks as the validators, and it is no validator.
        net.wait_height(5, nodes=FIRST, timeout=90)
        assert full.call("qenex_status")["validator"] is None
        assert {v["address"] for v in full.call("qenex_getValidators")["validators"]} == {
            n["address"] for n in net.manifest["nodes"][:4]}
        hashes = lambda i, top: [net.rpc(i).call("qenex_getBlock", h)["hash"] for h in range(1, top + 1)]
        assert hashes(FULL, 5) == hashes(0, 5)

        # Its operator (bob) registers it through the full node's RPC; alice stakes on it.
        operator = net.address("bob")
        created = _ok(net.cli("tx", "validator", "create", "--from", str(net.account_key("bob")),
                              "--consensus-key", str(Home(net.home(FULL)).node_key_file), "--moniker", "full0", "--commission-bps", "500",
                              "--self-bond", "50", "--rpc", net.url(FULL), "--wait", "--json"))
        staked = _ok(net.cli("tx", "stake", "--from", str(net.account_key("alice")), "--validator", operator,
                             "--amount", "50", "--rpc", net.url(FULL), "--wait", "--json"))
        # It joins at the epoch after the create (power 50), and has 100 from the epoch after the
        # stake (the same epoch when both landed in one).
        joined = -(-int(created["height"]) // EPOCH) * EPOCH + 1
        full_power = -(-int(staked["height"]) // EPOCH) * EPOCH + 1

        # From the next epoch every node lists five.
        net.wait_height(full_power + 1, nodes=FIRST, timeout=120)
        for i in FIRST:
            before = net.rpc(i).call("qenex_getValidators", joined - 1)
            after = net.rpc(i).call("qenex_getValidators", joined)
            assert consensus_address not in {v["address"] for v in before["validators"]}, f"node {i}"
            assert len(after["validators"]) == 5, f"node {i}: {after}"
            [newcomer] = [v for v in net.rpc(i).call("qenex_getValidators", full_power)["validators"]
                          if v["address"] == consensus_address]
            assert newcomer["power"] == "100" and newcomer["operator"] == operator
            assert newcomer["stake"] == str(100 * POWER_REDUCTION) and newcomer["moniker"] == "full0"
        wait_until(lambda: full.call("qenex_status")["validator"] == consensus_address, 30,
                   "the full node to report itself a validator")

        # It proposes, and its COMMIT votes are in certificates, from the first height of its epoch.
        def proposed_and_signed() -> bool:
            top = net.height(0)
            blocks = [net.rpc(0).call("qenex_getBlock", h) for h in range(joined, top + 1)]
            return (any(b["proposer"] == consensus_address for b in blocks)
                    and any(consensus_address in b["last_commit"]["signers"] for b in blocks))
        wait_until(proposed_and_signed, 90, "a block proposed by the newcomer and a certificate it signed", poll=1.0)
        for h in range(1, joined):
            block = net.rpc(0).call("qenex_getBlock", h)
            assert block["proposer"] != consensus_address
            assert block["last_commit"] is None or consensus_address not in block["last_commit"]["signers"]

        # A second full node starts from genesis now, given every current validator as a peer, the
        # newcomer too: while it syncs, the newcomer (in no set it has reached yet) sends it votes;
        # it refuses them without holding them against it, and catches up to the same chain.
        late = Home(net.home(LATE))
        config = late.load_config()
        late.write_config(replace(config, p2p=replace(config.p2p, bootstrap=config.p2p.bootstrap + (entry["p2p"],))))
        net.start(LATE)
        net.wait_height(net.height(0), nodes=[LATE], timeout=90)
        late_log = (net.home(LATE) / "node.log").read_text()
        assert f"penalised {entry['p2p'].rsplit('/', 1)[1]}" not in late_log, "held the newcomer's votes against it"
        assert len(net.rpc(LATE).call("qenex_getValidators", joined)["validators"]) == 5
        assert net.rpc(LATE).call("qenex_status")["validator"] is None

        # One original stops: 300 of 500 without the newcomer is no quorum, so blocks now need its votes.
        net.kill(1, signal.SIGTERM)
        stopped_at = max(net.height(i) for i in (0, 2, 3, FULL))
        net.wait_height(stopped_at + 5, nodes=[0, 2, 3, FULL], timeout=120)
        for h in range(stopped_at + 2, stopped_at + 6):  # the certificate in h + 1 signs h
            signers = net.rpc(2).call("qenex_getBlock", h)["last_commit"]["signers"]
            assert consensus_address in signers and net.manifest["nodes"][1]["address"] not in signers

        # The newcomer restarts (SIGTERM, then the same home): the chain waits for it, then goes on.
        net.kill(FULL, signal.SIGTERM)
        paused = net.height(0)
        time.sleep(3)
        assert net.height(0) <= paused + 1, "finalized without the newcomer and node1: 300 of 500 is no quorum"
        net.start(FULL)
        net.wait_height(paused + 5, nodes=[0, 2, 3, FULL], timeout=120)
        top = min(net.height(i) for i in (0, 2, 3, FULL))
        after_restart = [net.rpc(0).call("qenex_getBlock", h)["last_commit"]["signers"] for h in range(paused + 2, top + 1)]
        assert any(consensus_address in s for s in after_restart)
        reference = hashes(0, top)
        net.wait_height(top, nodes=[LATE], timeout=60)
        for i in (2, 3, FULL, LATE):
            assert hashes(i, top) == reference, f"node {i} disagrees"
        assert "is in the validator set" in (net.home(FULL) / "node.log").read_text()

        # Its operator unstakes the whole self-bond: from the next epoch it is out again (the three
        # running originals hold 300 of 400 then) and it signs nothing more, though it keeps running.
        left = _ok(net.cli("tx", "unstake", "--from", str(net.account_key("bob")), "--validator", operator,
                           "--all", "--rpc", net.url(FULL), "--wait", "--json"))
        out_from = -(-int(left["height"]) // EPOCH) * EPOCH + 1
        net.wait_height(out_from + 6, nodes=[0, 2, 3, FULL], timeout=120)
        for i in (0, 2, 3, FULL):
            members = {v["address"] for v in net.rpc(i).call("qenex_getValidators", out_from)["validators"]}
            assert members == {n["address"] for n in net.manifest["nodes"][:4]}, f"node {i}"
        assert full.call("qenex_status")["validator"] is None
        for h in range(out_from + 1, out_from + 7):  # block h + 1 certifies h
            block = net.rpc(FULL).call("qenex_getBlock", h)
            assert block["proposer"] != consensus_address and consensus_address not in block["last_commit"]["signers"]
        record = json.loads((net.home(FULL) / "data" / "sign_state.json").read_text())
        assert joined <= record["height"] < out_from, record
        assert "is no longer in the validator set" in (net.home(FULL) / "node.log").read_text()
    print(f"live joining test: {time.monotonic() - started:.0f} s")
