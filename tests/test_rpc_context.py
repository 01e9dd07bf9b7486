"""The RPC methods see the node only through the RpcContext the runtime builds (issue 9).

``Node.rpc_context`` wires the method tables to the node's parts; what
changes while the node runs (peers, sync, the consensus engine, its
validator set, the risk flags) is read at call time, so a context built at
start-up stays true.
"""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import pytest

from tests.rpc_fixtures import bare_node
from node.jsonrpc import NOT_FOUND, RPCError
from node.rpc import build_methods
from node.rpc_context import RpcContext
from node.runtime import Node
from state.app import Application
from state.crypto import address_to_text
from state.kv import MemoryKV
from state.testing import Chain, dev_key, make_genesis, transfer

ALICE, BOB = dev_key("ctx-alice"), dev_key("ctx-bob")
VALIDATOR = dev_key("ctx-validator")


def _node(node_key=None) -> Node:
    app = Application(MemoryKV(), make_genesis(validators=[VALIDATOR], funded=[ALICE]))
    return bare_node(app, "ctx", node_key=node_key or dev_key("ctx-observer"))


def test_a_context_is_frozen_and_names_only_what_the_methods_use():
    ctx = _node().rpc_context()
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.app = None  # type: ignore[misc]
    assert not hasattr(ctx, "__dict__")  # slots: no room for a Node to ride along
    assert {f.name for f in dataclasses.fields(RpcContext)} == {
        "app", "node_name", "submit_raw_tx", "pending_nonce", "pending_tx", "pending_entries", "mempool_size",
        "flagged_risk", "peer_count", "peer_id", "validator_address", "syncing", "consensus_state",
        "validator_set", "risk", "market_model", "queued_tx", "queued_for", "queued_size", "contract_query_gas",
    }


def test_status_and_validators_read_the_node_at_call_time():
    node = _node()
    methods = build_methods(node.rpc_context())  # built once, as at start-up
    status = methods["qenex_status"]()
    assert status["node"] == "ctx" and status["height"] == 0
    assert (status["peers"], status["peer_id"], status["validator"], status["syncing"], status["consensus"]) == (
        0, None, None, False, None)
    genesis_set = node.app.validator_set(1)
    assert methods["qenex_getValidators"]()["validators"] == [{
        "address": address_to_text(VALIDATOR.address), "pubkey": "0x" + VALIDATOR.public_key.hex(),
        "power": "10", "proposer_priority": str(genesis_set.priorities[0])}]

    node.p2p = SimpleNamespace(connected_peers=lambda: ["peer-a", "peer-b"], peer_id="peer-self")
    node.sync = SimpleNamespace(syncing=True)
    node.driver = SimpleNamespace(engine_state=lambda: {"height": 1, "view": 0})
    status = methods["qenex_status"]()
    assert (status["peers"], status["peer_id"], status["syncing"], status["consensus"]) == (
        2, "peer-self", True, {"height": 1, "view": 0})
    # The set is the application's, for the next height, read per call.
    Chain(node.app, VALIDATOR).block([])
    validators = methods["qenex_getValidators"]()
    assert validators["height"] == 2 and validators["total_power"] == "10"
    assert validators["validators"][0]["proposer_priority"] == str(node.app.validator_set(2).priorities[0])


def test_status_names_this_node_as_validator_only_when_its_key_is_in_the_set():
    assert build_methods(_node(VALIDATOR).rpc_context())["qenex_status"]()["validator"] == address_to_text(
        VALIDATOR.address)


def test_submission_and_mempool_views_go_through_the_node():
    node = _node()
    ctx = node.rpc_context()
    methods = build_methods(ctx)
    stx = transfer(ALICE, 0, BOB.address, 5, chain_id=node.app.chain_id)
    assert methods["qenex_sendTransaction"]("0x" + stx.encode().hex()) == {"hash": "0x" + stx.hash.hex()}
    assert stx.hash in node.mempool and list(node._gossip_out) == [stx.encode()]
    assert methods["qenex_getAccount"](address_to_text(ALICE.address))["pending_nonce"] == 1
    pending = methods["qenex_getTransaction"]("0x" + stx.hash.hex())
    assert pending["status"] == "pending" and "risk" not in pending
    node.flagged[stx.hash] = {"decision": "review", "score": 0.7}  # flags are read per call
    assert methods["qenex_getTransaction"]("0x" + stx.hash.hex())["risk"]["decision"] == "review"
    view = methods["qenex_getMempool"](10)
    assert view["size"] == 1 and view["bytes"] == node.mempool.size_bytes and view["txs"][0]["risk"]["score"] == 0.7
    assert ctx.known_tx(stx.hash) == stx
    with pytest.raises(RPCError) as refused:  # a nonce already pending: the node's own error and code
        methods["qenex_sendTransaction"]("0x" + stx.encode().hex())
    assert refused.value.code == -32003 and len(node.mempool) == 1


def test_known_tx_finds_committed_transactions_and_nothing_else():
    node = _node()
    chain = Chain(node.app, VALIDATOR)
    stx = transfer(ALICE, 0, BOB.address, 5, chain_id=node.app.chain_id)
    chain.block([stx])
    ctx = node.rpc_context()
    assert ctx.known_tx(stx.hash) == stx and ctx.known_tx(b"\x00" * 32) is None
    with pytest.raises(RPCError) as missing:
        build_methods(ctx)["qenex_getTransaction"]("0x" + "00" * 32)
    assert missing.value.code == NOT_FOUND


def test_queued_transactions_show_as_queued():
    """Issue 12: a future nonce is held queued; the views count it apart from the pending ones."""
    node = _node()
    ctx = node.rpc_context()
    methods = build_methods(ctx)
    later = transfer(ALICE, 1, BOB.address, 5, chain_id=node.app.chain_id)
    assert methods["qenex_sendTransaction"]("0x" + later.encode().hex()) == {"hash": "0x" + later.hash.hex()}
    assert later.hash not in node.mempool and list(node._gossip_out) == []  # queued: not relayed
    account = methods["qenex_getAccount"](address_to_text(ALICE.address))
    assert (account["nonce"], account["pending_nonce"], account["queued"]) == (0, 0, 1)
    got = methods["qenex_getTransaction"]("0x" + later.hash.hex())
    assert got["status"] == "queued" and got["committed"] is False and got["nonce"] == 1
    view = methods["qenex_getMempool"](10)
    assert (view["size"], view["txs"], view["queued"], view["queued_bytes"]) == (0, [], 1, later.size)
    assert ctx.known_tx(later.hash) == later and methods["qenex_status"]()["mempool_size"] == 0
    first = transfer(ALICE, 0, BOB.address, 5, chain_id=node.app.chain_id)
    methods["qenex_sendTransaction"]("0x" + first.encode().hex())
    assert methods["qenex_getTransaction"]("0x" + later.hash.hex())["status"] == "pending"
    assert list(node._gossip_out) == [first.encode(), later.encode()]
    account = methods["qenex_getAccount"](address_to_text(ALICE.address))
    assert (account["pending_nonce"], account["queued"]) == (2, 0)
    assert methods["qenex_getMempool"](10)["queued"] == 0
