"""Contracts over JSON-RPC (node.rpc_contracts), in receipts, events, the mempool and the client.

On the pure application (no sockets) except the client test, which uses the
live in-process node of tests/client_fixtures.py.  Hostile inputs get a
specific error each, never -32603; a query that never stops is stopped by
the node's gas cap.
"""

from __future__ import annotations

import asyncio
import inspect
import json
from dataclasses import replace
from pathlib import Path

import pytest
import wasmtime
from hypothesis import given

from node import txbuild
from node.contract_values import EMPTY_ARGS, ContractValueError, args_from_json, output_to_json, to_json
from node.events import EventFilter, block_events, select
from node.jsonrpc import HEIGHT_PRUNED, INVALID_PARAMS, NOT_FOUND, RPCError
from node.mempool import Mempool
from node.config import MempoolSection
from node.risk.hook import RiskHook
from node.risk.store import ModelStore
from node.rpc import build_methods
from node.rpc_contracts import CONTRACTS_DISABLED, NO_CONTRACT, QUERY_FAILED
from node.ws import parse_event_filter
from state.app import Application
from state.codec import encode
from state.contracts import contract_address
from state.crypto import address_to_text
from state.genesis import ContractParams, Params, StakingParams
from state.kv import MemoryKV
from state.payloads import ContractCall, ContractDeploy, Transfer, Unjail
from state.testing import STUB_VERIFIER, Chain, dev_key, make_genesis, signed
from tests.contract_fixtures import wat
from tests.risk_fixtures import train_small
from tests.rpc_fixtures import bare_node, rpc_context

pytestmark = pytest.mark.timeout(180)

ALICE, BOB, CAROL = dev_key("c-rpc-alice"), dev_key("c-rpc-bob"), dev_key("c-rpc-carol")
VALIDATOR = dev_key("c-rpc-validator")
COUNTER = bytes(wasmtime.wat2wasm((Path(__file__).parents[1] / "examples/contracts/counter.wat").read_text()))


def _wat_bytes(data: bytes) -> str:
    return "".join(f"\\{b:02x}" for b in data)


RESULT = encode({"a": b"\x01", "big": 2**60, "list": [1, "two"]})
# put [key, value] stores value under key; spin never returns; out sets a msgpack map as its result;
# odd emits an event whose topic is not text; write tries storage in a query.
KV = bytes(wasmtime.wat2wasm(f"""
(module
  (import "qenex" "arg_bytes" (func $arg_bytes (param i32 i32 i32) (result i32)))
  (import "qenex" "storage_set" (func $storage_set (param i32 i32 i32 i32)))
  (import "qenex" "result_set" (func $result_set (param i32 i32)))
  (import "qenex" "emit" (func $emit (param i32 i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 4000) "{_wat_bytes(RESULT)}")
  (data (i32.const 3000) "\\00\\ff")
  (func (export "put")
    (local $k i32) (local $v i32)
    (local.set $k (call $arg_bytes (i32.const 0) (i32.const 0) (i32.const 128)))
    (local.set $v (call $arg_bytes (i32.const 1) (i32.const 256) (i32.const 1024)))
    (call $storage_set (i32.const 0) (local.get $k) (i32.const 256) (local.get $v)))
  (func (export "spin") (loop $l (br $l)))
  (func (export "out") (call $result_set (i32.const 4000) (i32.const {len(RESULT)})))
  (func (export "odd") (call $emit (i32.const 3000) (i32.const 2) (i32.const 3000) (i32.const 2))))
"""))


class Net:
    """A chain with contracts, the counter and the kv contract deployed, and its RPC methods."""

    def __init__(self, params: Params | None = None) -> None:
        self.params = params or Params(contracts=ContractParams())
        self.app = Application(MemoryKV(), make_genesis(validators=[VALIDATOR], funded=[ALICE, BOB, CAROL],
                                                        params=self.params), commit_verifier=STUB_VERIFIER)
        self.chain = Chain(self.app, VALIDATOR)
        self.methods = build_methods(rpc_context(self.app))

    def deploy(self, code: bytes, init: bytes = EMPTY_ARGS, gas_limit: int = 20_000_000, key=ALICE):
        stx = self.chain.tx(key, ContractDeploy(code, init, (), gas_limit))
        _, result = self.chain.block([stx])
        return contract_address(key.address, stx.tx.nonce), stx, result.receipts[0]

    def call(self, contract: bytes, method: str, args=(), attached=(), gas_limit: int = 2_000_000, key=ALICE):
        stx = self.chain.tx(key, ContractCall(contract, method, encode(list(args)), tuple(attached), gas_limit))
        _, result = self.chain.block([stx])
        return stx, result.receipts[0]


@pytest.fixture(scope="module")
def net() -> Net:
    n = Net()
    n.counter, n.deploy_tx, receipt = n.deploy(COUNTER)
    assert receipt.ok, receipt.reason
    n.kv, _, receipt = n.deploy(KV)
    assert receipt.ok, receipt.reason
    n.increment_tx, receipt = n.call(n.counter, "increment", [5])
    assert receipt.ok, receipt.reason
    for i in range(5):
        assert n.call(n.kv, "put", [f"k{i}", b"v" * (i + 1)])[1].ok
    assert n.call(n.kv, "put", [b"\x00\x01", b""])[1].ok
    return n


def run(result):
    """A method's answer: qenex_callContract is async (a cold module compiles in a worker)."""
    return asyncio.run(result) if inspect.isawaitable(result) else result


def error(call, *args) -> RPCError:
    with pytest.raises(RPCError) as info:
        run(call(*args))
    return info.value


def text(address: bytes) -> str:
    return address_to_text(address)


# -- qenex_getContract ----------------------------------------------------------------------


def test_get_contract(net):
    c = net.methods["qenex_getContract"](text(net.counter))
    assert c["address"] == text(net.counter) and c["deployer"] == text(ALICE.address)
    assert c["code_size"] == len(COUNTER) and c["code_hash"].startswith("0x") and len(c["code_hash"]) == 66
    assert c["methods"] == ["get", "increment", "init"] and c["reentrant"] is False
    assert (c["created_height"], c["storage_entries"], c["storage_bytes"]) == (1, 1, 9)  # key "n", 8 bytes
    assert c["balances"] == {} and c["height"] == net.app.height
    at_creation = net.methods["qenex_getContract"](text(net.counter), 1)
    assert at_creation["height"] == 1 and at_creation["storage_entries"] == 1
    assert error(net.methods["qenex_getContract"], text(net.kv), 1).code == NO_CONTRACT  # deployed at 2


def test_get_contract_hostile_inputs(net):
    m = net.methods["qenex_getContract"]
    nobody = error(m, text(BOB.address))
    assert nobody.code == NO_CONTRACT and nobody.data == {"address": text(BOB.address), "height": net.app.height}
    for bad in ("qnx1x", "qnx1" + "q" * 500, "0x" + "00" * 20, 5, None, ["qnx1"], "\ud800"):
        assert error(m, bad).code == INVALID_PARAMS, bad
    assert error(m, text(net.counter), net.app.height + 1).code == NOT_FOUND
    assert error(m, text(net.counter), -1).code == INVALID_PARAMS


# -- qenex_getContractState -----------------------------------------------------------------


def test_contract_state_pages_with_a_cursor(net):
    m = net.methods["qenex_getContractState"]
    everything = m(text(net.kv))
    keys = [e["key"] for e in everything["entries"]]
    assert keys == ["0x0001"] + ["0x" + f"k{i}".encode().hex() for i in range(5)] and everything["next"] is None
    assert everything["entries"][1]["value"] == "0x76" and everything["entries"][0]["value"] == "0x"
    pages, after = [], None
    while True:
        page = m(text(net.kv), None, 2, after)
        pages.append([e["key"] for e in page["entries"]])
        after = page["next"]
        if after is None:
            break
    assert sum(pages, []) == keys and [len(p) for p in pages] == [2, 2, 2]
    only_k = m(text(net.kv), "0x" + b"k".hex(), 1000)
    assert len(only_k["entries"]) == 5 and only_k["next"] is None
    assert m(text(net.kv), "0x" + b"k3".hex())["entries"] == [{"key": "0x" + b"k3".hex(), "value": "0x76767676"}]
    assert m(text(net.kv), "0xff")["entries"] == []
    # named params, and a past height: the kv contract had no storage at its deploy
    assert m(address=text(net.kv), height=2)["entries"] == []


def test_contract_state_hostile_inputs(net):
    m = net.methods["qenex_getContractState"]
    for limit in (0, 1001, 10**9, -1, "many", 1.5, True):
        assert error(m, text(net.kv), None, limit).code == INVALID_PARAMS, limit
    assert error(m, text(net.kv), "0x" + "00" * 129).code == INVALID_PARAMS  # longer than any key
    assert error(m, text(net.kv), "0xzz").code == INVALID_PARAMS
    assert error(m, text(net.kv), None, 10, "0x" + "ab" * 200).code == INVALID_PARAMS
    assert error(m, text(net.kv), None, 10, 7).code == INVALID_PARAMS
    assert error(m, text(BOB.address)).code == NO_CONTRACT
    assert error(m, "qnx1nope").code == INVALID_PARAMS


# -- qenex_callContract ---------------------------------------------------------------------


def test_call_contract(net):
    m = net.methods["qenex_callContract"]
    got = run(m(text(net.counter), "get"))
    assert got["result"] == 5 and got["output"] == "0x05" and 0 < got["gas_used"] < got["gas_limit"] == 10_000_000
    assert run(m(text(net.counter), "get", [], 2))["result"] == 0  # before the increment (height 3)
    out = run(m(text(net.kv), "out"))
    assert out["output"] == "0x" + RESULT.hex()
    assert out["result"] == {"a": "0x01", "big": str(2**60), "list": [1, "two"]}  # past 2**53: a decimal string
    assert run(m(contract=text(net.counter), method="get", height=3))["result"] == 5


def test_a_cold_query_compiles_its_module_off_the_event_loop(net, monkeypatch):
    """A query to a contract whose module is not cached compiles it in the RPC's worker thread (a
    batch of cold queries would otherwise hold the loop consensus runs on), then answers as before."""
    import threading

    from state import vm

    compiled_in = []
    real = vm.compile_code
    monkeypatch.setattr(vm, "compile_code", lambda *a, **k: compiled_in.append(threading.get_ident()) or real(*a, **k))
    vm.MODULES._modules.clear()

    async def query():
        return await net.methods["qenex_callContract"](text(net.counter), "get"), threading.get_ident()

    got, loop_thread = asyncio.run(query())
    assert got["result"] == 5
    assert len(compiled_in) == 1 and compiled_in[0] != loop_thread  # once, in the worker; the query hit the cache
    again, _ = asyncio.run(query())
    assert again == got and len(compiled_in) == 1


def test_call_results_render_big_integers_as_strings():
    assert to_json(2**60) == str(2**60) and to_json(2**53 - 1) == 2**53 - 1 and to_json(-(2**63)) == str(-(2**63))
    assert output_to_json(encode({b"\x01": [True, None]})) == {"0x01": [True, None]}
    assert output_to_json(b"") is None


def test_a_query_that_never_stops_is_stopped_by_the_gas_cap(net):
    failed = error(net.methods["qenex_callContract"], text(net.kv), "spin")
    assert failed.code == QUERY_FAILED and failed.data["code"] == "out_of_gas"
    assert failed.data["gas_used"] == failed.data["gas_limit"] == 10_000_000
    small = build_methods(replace(rpc_context(net.app), contract_query_gas=50_000))
    assert error(small["qenex_callContract"], text(net.kv), "spin").data["gas_limit"] == 50_000
    assert error(small["qenex_callContract"], text(net.counter), "get").data["code"] == "out_of_gas"


def test_queries_cannot_write_or_emit(net):
    m = net.methods["qenex_callContract"]
    for contract, method, args in ((net.counter, "increment", [1]), (net.kv, "put", ["x", "y"]), (net.kv, "odd", [])):
        failed = error(m, text(contract), method, args)
        assert failed.code == QUERY_FAILED and failed.data["code"] == "host_call_failed", failed.data
        assert "read-only" in failed.data["reason"]
    assert run(m(text(net.counter), "get"))["result"] == 5  # nothing changed


DEEP: list = [1]
for _ in range(33):
    DEEP = [DEEP]


def test_call_contract_hostile_inputs(net):
    m = net.methods["qenex_callContract"]
    assert error(m, text(BOB.address), "get").code == NO_CONTRACT
    unknown = error(m, text(net.counter), "nope")
    assert unknown.code == QUERY_FAILED and unknown.data["code"] == "unknown_method"
    assert 0 < unknown.data["gas_used"] < unknown.data["gas_limit"]  # the intrinsic and instance gas it paid
    assert error(m, text(net.counter), "init").data["code"] == "unknown_method"  # init runs at deploy only
    for method in ("", "9lives", "a" * 65, "get;drop", 5, None, ["get"], "g\u00e9t"):
        assert error(m, text(net.counter), method).code == INVALID_PARAMS, method
    for args in ([1.5], 1e308, ["0xzz"], ["\ud800"], [2**128], [-(2**64)], "x" * 9000, ["0x" + "00" * 9000],
                 {"a": DEEP}):
        assert error(m, text(net.counter), "get", args).code == INVALID_PARAMS, str(args)[:50]
    # arguments of the wrong type reach the contract: one that reads them fails the query, one that does not
    # read them answers
    wrong = error(m, text(net.kv), "put", [1, 2])
    assert wrong.code == QUERY_FAILED and "not bytes or text" in wrong.data["reason"]
    assert run(m(text(net.counter), "get", 7))["result"] == 5
    assert error(m, "qnx1nope", "get").code == INVALID_PARAMS
    assert error(m, text(net.counter), "get", None, net.app.height + 5).code == NOT_FOUND


# relay(target) calls target.get with no arguments, through the call host function
RELAY = wat("""
  (data (i32.const 300) "get")
  (data (i32.const 350) "\\90")
  (func (export "relay")
    (call $arg_address (i32.const 0) (i32.const 400))
    (drop (call $call (i32.const 400) (i32.const 300) (i32.const 3) (i32.const 350) (i32.const 1)
                      (i32.const 0) (i32.const 0) (i32.const 0))))
""")


def test_a_missing_contract_the_queried_one_calls_fails_the_query():
    """-32041 names the queried contract only: a missing callee is the query's failure (-32042)."""
    n = Net()
    counter, _, receipt = n.deploy(COUNTER)
    assert receipt.ok, receipt.reason
    relay, _, receipt = n.deploy(RELAY)
    assert receipt.ok, receipt.reason
    m = n.methods["qenex_callContract"]
    assert run(m(text(relay), "relay", [text(counter)]))["result"] is None  # the callee exists: the query answers
    failed = error(m, text(relay), "relay", [text(BOB.address)])
    assert failed.code == QUERY_FAILED, (failed.code, failed.message)
    assert failed.data["code"] == "unknown_contract" and text(BOB.address) in failed.data["reason"]
    assert 0 < failed.data["gas_used"] < failed.data["gas_limit"]
    # the queried contract missing is still -32041: at an address nothing holds, or before its deploy
    assert error(m, text(BOB.address), "relay", [text(counter)]).code == NO_CONTRACT
    before = error(m, text(relay), "relay", [text(counter)], 1)
    assert before.code == NO_CONTRACT and before.data == {"address": text(relay), "height": 1}


def test_args_from_json():
    assert args_from_json(None) == EMPTY_ARGS == encode([])
    assert args_from_json([1, "0x00ff", "hi", True, None, {"k": [2]}, "0x"]) == \
        encode([1, b"\x00\xff", "hi", True, None, {"k": [2]}, b""])
    assert args_from_json(2**128 - 1) == encode(2**128 - 1)
    for bad in (0.5, "0x1", "0xgg", 2**128, [float("inf")]):
        with pytest.raises(ContractValueError):
            args_from_json(bad)


def test_contracts_disabled_answers_a_specific_error():
    app = Application(MemoryKV(), make_genesis(validators=[VALIDATOR], funded=[ALICE]), commit_verifier=STUB_VERIFIER)
    m = build_methods(rpc_context(app))
    for name, args in (("qenex_getContract", [text(BOB.address)]), ("qenex_getContractState", [text(BOB.address)]),
                       ("qenex_callContract", [text(BOB.address), "get"])):
        refused = error(m[name], *args)
        assert refused.code == CONTRACTS_DISABLED and "no contracts" in refused.message
    assert "contracts" not in m["qenex_getParams"]()


def test_pruned_heights_are_refused_as_elsewhere():
    n = Net()
    n.app.set_history_blocks(2)
    address, _, _ = n.deploy(COUNTER)
    for _ in range(4):
        n.chain.block()
    refused = error(n.methods["qenex_callContract"], text(address), "get", None, 1)
    assert refused.code == HEIGHT_PRUNED and refused.data["oldest_height"] > 1


# -- receipts ---------------------------------------------------------------------------------


def test_receipts_carry_events_output_and_the_deployed_address(net):
    tx = net.methods["qenex_getTransaction"]
    deployed = tx("0x" + net.deploy_tx.hash.hex())
    assert deployed["contract_address"] == text(net.counter) and deployed["events"] == []
    assert deployed["output"] == "0x" and "result" not in deployed
    assert int(deployed["fee"]) < int(deployed["max_fee"]) == net.deploy_tx.tx.fee  # the unused gas refunded
    assert deployed["payload"]["gas_limit"] == 20_000_000 and deployed["payload"]["init_args"] == "0x90"
    called = tx("0x" + net.increment_tx.hash.hex())
    assert called["events"] == [{"contract": text(net.counter), "topic": "incremented",
                                 "topic_hex": "0x" + b"incremented".hex(), "data": "0x" + (5).to_bytes(8, "little").hex()}]
    assert called["output"] == "0x05" and called["result"] == 5 and "contract_address" not in called
    block = asyncio.run(net.methods["qenex_getBlock"](called["height"], True))
    assert block["txs"][0]["events"] == called["events"] and block["txs"][0]["status"] == "ok"
    _, odd = net.call(net.kv, "odd")
    assert odd.ok and odd.events[0].topic == b"\x00\xff"
    shown = tx("0x" + odd.tx_hash.hex())["events"][0]
    assert shown["topic"] is None and shown["topic_hex"] == "0x00ff"


def test_a_failed_deploy_names_no_contract_and_pays_for_its_gas():
    n = Net()
    code = bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1) (func (export "init") unreachable) '
                                   '(func (export "f")))'))
    address, stx, receipt = n.deploy(code)
    assert not receipt.ok and receipt.reason.startswith("trap")
    shown = n.methods["qenex_getTransaction"]("0x" + stx.hash.hex())
    assert shown["status"] == "failed" and "contract_address" not in shown and int(shown["fee"]) > 0
    assert error(n.methods["qenex_getContract"], text(address)).code == NO_CONTRACT


# -- events -------------------------------------------------------------------------------------


def test_contract_events_and_the_contract_filter(net):
    height = net.methods["qenex_getTransaction"]("0x" + net.increment_tx.hash.hex())["height"]
    block = net.app.get_block(height)
    events = block_events(block, net.app.block_receipts(height))
    assert [e.kind for e in events] == ["contract_call", "contract"]
    emitted = json.loads(events[1].json)
    assert emitted["contract"] == text(net.counter) and emitted["topic"] == "incremented" and emitted["log_index"] == 0
    assert json.loads(events[0].json)["contract"] == text(net.counter)
    by_contract = parse_event_filter({"contract": text(net.counter)})
    assert select(events, by_contract) == events
    assert select(events, parse_event_filter({"contract": text(net.kv)})) == []
    assert select(events, parse_event_filter({"kinds": ["contract"]})) == [events[1]]
    assert select(events, EventFilter(address=bytes(net.counter))) == events
    deploy_events = block_events(net.app.get_block(1), net.app.block_receipts(1))
    assert [json.loads(e.json)["contract"] for e in deploy_events] == [text(net.counter)]
    assert select(deploy_events, by_contract) == deploy_events
    with pytest.raises(RPCError):
        parse_event_filter({"contract": "qnx1bad"})


# -- the mempool and admission ------------------------------------------------------------------


def _submit(node, stx) -> RPCError | dict:
    try:
        return build_methods(node.rpc_context())["qenex_sendTransaction"]("0x" + stx.encode().hex())
    except RPCError as exc:
        return exc


def test_admission_refuses_what_inclusion_would():
    n = Net()
    node = bare_node(n.app, "contracts")
    intrinsic = 100_000 + 1_000 * len(COUNTER) + 30
    cases = [
        (signed(ALICE, 0, ContractDeploy(COUNTER, EMPTY_ARGS, (), 10**9), params=n.params, chain_id=n.app.chain_id),
         "GasLimitTooHigh"),
        (signed(ALICE, 0, ContractDeploy(COUNTER, EMPTY_ARGS, (), intrinsic - 1), params=n.params,
                chain_id=n.app.chain_id), "GasLimitTooLow"),
        (signed(ALICE, 0, ContractDeploy(COUNTER, EMPTY_ARGS, (), 1_000_000), fee=10**9, chain_id=n.app.chain_id),
         "FeeTooLow"),
        (signed(ALICE, 0, Unjail(), fee=10**18, chain_id=n.app.chain_id), "StakingDisabled"),
    ]
    for stx, reason in cases:
        refused = _submit(node, stx)
        assert isinstance(refused, RPCError) and refused.code == -32010 and refused.data["reason"] == reason, refused
    ok = signed(ALICE, 0, ContractDeploy(COUNTER, EMPTY_ARGS, (), 1_000_000), params=n.params, chain_id=n.app.chain_id)
    assert _submit(node, ok) == {"hash": "0x" + ok.hash.hex()}
    assert node.mempool.reap(10, 10**6) == [ok]

    plain = Application(MemoryKV(), make_genesis(validators=[VALIDATOR], funded=[ALICE]), commit_verifier=STUB_VERIFIER)
    refused = _submit(bare_node(plain, "plain"), signed(ALICE, 0, ContractDeploy(COUNTER, EMPTY_ARGS, (), 1_000_000),
                                                        fee=10**18, chain_id=plain.chain_id))
    assert refused.code == -32010 and refused.data["reason"] == "ContractsDisabled"


def test_reaping_and_eviction_compare_fee_per_gas():
    n = Net()
    pool = Mempool(n.app, MempoolSection(max_txs=2))
    price = n.params.min_gas_price
    transfer_gas = n.params.gas_for(Transfer.KIND)
    # the deploy pays 1,000x a transfer's fee in all, but the least per gas
    deploy = signed(ALICE, 0, ContractDeploy(COUNTER, EMPTY_ARGS, (), 1000 * transfer_gas), fee=1000 * transfer_gas * price,
                    chain_id=n.app.chain_id)
    transfer = signed(BOB, 0, Transfer(ALICE.address, "QNX", 1), fee=2 * transfer_gas * price, chain_id=n.app.chain_id)
    for stx in (deploy, transfer):
        pool.insert(pool.check(stx, stx.size))
    assert pool.reap(10, 10**6) == [transfer, deploy]
    # the pool is full: a transfer paying 1.5x per gas (far less in all) evicts the deploy, the cheapest per gas
    cheaper = signed(CAROL, 0, Transfer(ALICE.address, "QNX", 1), fee=3 * transfer_gas * price // 2,
                     chain_id=n.app.chain_id)
    pool.insert(pool.check(cheaper, cheaper.size))
    assert deploy.hash not in pool and pool.reap(10, 10**6) == [transfer, cheaper]


def test_the_risk_hook_admits_contract_transactions_unscored(tmp_path):
    """A model that refuses every transfer (reject threshold 0) still admits a call attaching 99% of the
    sender's QNX: contract transactions are not scored (node.risk.hook's docstring says why)."""
    n = Net()
    address, _, receipt = n.deploy(COUNTER)
    assert receipt.ok
    store = ModelStore(train_small(tmp_path / "model"))
    hook = RiskHook(store, store.load(), review=0.0, reject=0.0)
    node = bare_node(n.app, "risk")
    node.risk = hook
    hook.attach(n.app)
    from node.admission import Admission

    node.admission = Admission(n.app, node.mempool, hook, flagged=node.flagged, relay=lambda raw: None)
    balance = n.app.account(ALICE.address).balances["QNX"]
    drain = signed(ALICE, 1, Transfer(dev_key("c-rpc-fresh").address, "QNX", balance * 99 // 100),
                   chain_id=n.app.chain_id)
    assert _submit(node, drain).code == -32020  # the model refuses a transfer
    attach = signed(ALICE, 1, ContractCall(address, "increment", EMPTY_ARGS, (("QNX", balance * 99 // 100),),
                                           1_000_000), params=n.params, chain_id=n.app.chain_id)
    assert _submit(node, attach) == {"hash": "0x" + attach.hash.hex()}
    assert attach.hash not in node.flagged


# -- the client ----------------------------------------------------------------------------------


def test_the_client_builds_signs_and_reads_contracts():
    from tests.client_fixtures import ALICE as CLIENT_ALICE, live_node
    from node.client import Client, RPCClientError

    with live_node(params=Params(contracts=ContractParams())) as live, Client(live.url) as client:
        params = client.params()
        gas = txbuild.default_deploy_gas(params, COUNTER, EMPTY_ARGS)
        assert gas == 100_000 + 1_000 * len(COUNTER) + 30 + txbuild.DEPLOY_GAS_HEADROOM
        stx = client.sign(CLIENT_ALICE, txbuild.contract_deploy(COUNTER, gas_limit=gas))
        assert stx.tx.fee == gas * int(params["min_gas_price"])
        record = client.send_and_wait(stx)
        address = record["contract_address"]
        assert record["status"] == "ok" and address == text(contract_address(CLIENT_ALICE.address, stx.tx.nonce))
        call = txbuild.contract_call(address, "increment", args_from_json([3]),
                                     gas_limit=txbuild.default_call_gas(params))
        done = client.send_and_wait(client.sign(CLIENT_ALICE, call))
        assert done["result"] == 3 and done["events"][0]["topic"] == "incremented"
        assert client.contract(address)["storage_entries"] == 1
        assert client.contract_state(address)["entries"] == [{"key": "0x6e", "value": "0x0300000000000000"}]
        assert client.call_contract(address, "get")["result"] == 3
        assert client.call_contract(address, "get", [], done["height"] - 1)["result"] == 0
        with pytest.raises(RPCClientError) as info:
            client.contract(text(BOB.address))
        assert info.value.code == NO_CONTRACT
    with pytest.raises(txbuild.TxBuildError, match="no contracts"):
        txbuild.min_fee(Params().to_json_obj(), ContractDeploy.KIND, txbuild.contract_deploy(COUNTER, gas_limit=10**6))
    with pytest.raises(txbuild.TxBuildError, match="twice"):
        txbuild.attached([("QNX", 1), ("QNX", 2)])
    assert txbuild.attached([("ZZZ", 1), ("AAA", 2)]) == (("AAA", 2), ("ZZZ", 1))


# -- fuzzing -------------------------------------------------------------------------------------


def _fuzz_methods():
    from tests.test_rpc_fuzz import FUZZ, check, params

    return FUZZ, check, params


_FUZZ, _check, _params = _fuzz_methods()


@pytest.mark.parametrize("method", ["qenex_getContract", "qenex_getContractState", "qenex_callContract"])
@_FUZZ
@given(p=_params)
def test_contract_methods_answer_random_params_specifically(net, method, p):
    from node.jsonrpc import Dispatcher

    dispatcher = Dispatcher(net.methods)
    request = {"jsonrpc": "2.0", "id": 1, "method": method}
    if p is not None:
        request["params"] = p
    _check(asyncio.run(dispatcher.handle_payload(json.dumps(request).encode())))


def test_staking_and_contracts_params_together():
    p = Params(staking=StakingParams(), contracts=ContractParams())
    app = Application(MemoryKV(), make_genesis(validators=[VALIDATOR], funded=[ALICE], params=p),
                      commit_verifier=STUB_VERIFIER)
    shown = build_methods(rpc_context(app))["qenex_getParams"]()
    assert shown["contracts"]["max_tx_gas"] == ContractParams().max_tx_gas and "staking" in shown
    assert txbuild.min_fee(shown, ContractCall.KIND, ContractCall(ALICE.address, "f", EMPTY_ARGS, (), 7)) == \
        7 * p.min_gas_price


async def test_contract_events_over_the_websocket():
    """The events topic filtered by contract, and a tx subscription's final record, on the live node (that a
    filter for another contract gets nothing is test_contract_events_and_the_contract_filter's)."""
    from node.client import AsyncClient
    from tests.client_fixtures import ALICE as CLIENT_ALICE, live_node

    with live_node(params=Params(contracts=ContractParams())) as live:
        async with AsyncClient(live.url) as client:
            params = await client.params()
            record = await client.send_and_wait(await client.sign(
                CLIENT_ALICE, txbuild.contract_deploy(COUNTER, gas_limit=txbuild.default_deploy_gas(params, COUNTER,
                                                                                                    EMPTY_ARGS))))
            address = record["contract_address"]
            call = await client.sign(CLIENT_ALICE, txbuild.contract_call(address, "increment", args_from_json([2]),
                                                                         gas_limit=txbuild.CALL_GAS_DEFAULT))
            tx_hash = "0x" + call.hash.hex()
            async with client.subscribe("events", {"contract": address, "kinds": ["contract"]}) as emitted, \
                    client.subscribe("tx", {"hash": tx_hash}) as watch:
                assert (await asyncio.wait_for(watch.__anext__(), 10)).result["status"] == "unknown"
                await client.submit(call)
                note = (await asyncio.wait_for(emitted.__anext__(), 10)).result
                final = (await asyncio.wait_for(watch.__anext__(), 10)).result
                assert [(e["kind"], e["contract"], e["topic"], e["log_index"]) for e in note["events"]] == [
                    ("contract", address, "incremented", 0)]
                assert note["events"][0]["tx"] == tx_hash and note["events"][0]["data"] == "0x" + (2).to_bytes(8, "little").hex()
                assert final["final"] and final["result"] == 2 and final["events"][0]["topic"] == "incremented"


def test_the_query_gas_cap_is_node_config(net):
    from node.config import NodeConfig
    from node.errors import ConfigError

    config = NodeConfig.from_toml("[rpc]\ncontract_query_gas = 60000\n")
    assert config.rpc.contract_query_gas == 60_000 and NodeConfig().rpc.contract_query_gas == 10_000_000
    for bad in ("0", "-5", '"lots"'):
        with pytest.raises(ConfigError, match="contract_query_gas"):
            NodeConfig.from_toml(f"[rpc]\ncontract_query_gas = {bad}\n")
    node = bare_node(net.app, "capped")
    node.config = config
    capped = error(build_methods(node.rpc_context())["qenex_callContract"], text(net.kv), "spin")
    assert capped.data == {"code": "out_of_gas", "reason": "out_of_gas: ran out of gas (limit 60000)", "gas_used": 60_000,
                           "gas_limit": 60_000}
