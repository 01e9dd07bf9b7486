"""Two independent nodes running the same contract transactions agree on every byte.

One node keeps its compiled modules, the other compiles every module anew
before every block (as a node that just restarted would): app hashes,
receipts (gas, events, output, reasons) and contract storage must not differ.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings, strategies as st

from state import vm
from state.codec import encode
from state.payloads import ContractCall
from tests.contract_fixtures import ALICE, BOB, contract_chain, wat
from tests.test_contracts_hostile import HOSTILE

COUNTER = open("examples/contracts/counter.wat").read()

CALLS = st.lists(
    st.one_of(
        st.tuples(st.just("counter"), st.just("increment"), st.lists(st.integers(0, 2**64 - 1), max_size=1)),
        st.tuples(st.just("counter"), st.just("increment"), st.just(["not a number"])),
        st.tuples(st.just("hostile"), st.sampled_from(
            ["write", "write_then_trap", "write_then_abort", "loop", "recurse", "oob_load", "big_value",
             "many_events", "bad_result"]), st.just([])),
        st.tuples(st.just("hostile"), st.just("pay"), st.tuples(st.just(BOB.address), st.integers(0, 20)).map(list)),
    ),
    min_size=1, max_size=12,
)


def _run(calls, *, cold: bool):
    import wasmtime
    net = contract_chain()
    counter, _ = net.deploy(bytes(wasmtime.wat2wasm(COUNTER)))
    hostile, _ = net.deploy(HOSTILE)
    targets = {"counter": counter, "hostile": hostile}
    receipts = []
    for i in range(0, len(calls), 3):
        if cold:
            vm.MODULES._modules.clear()
        txs = [net.chain.tx(ALICE if j % 2 else BOB,
                            ContractCall(targets[c], m, encode(a), (("QNX", 7),) if m == "pay" else (), 3_000_000))
               for j, (c, m, a) in enumerate(calls[i:i + 3])]
        _, result = net.chain.block(txs)
        receipts.extend(r.encode() for r in result.receipts)
    return net.app.app_hash, receipts, net.storage(counter), net.storage(hostile)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CALLS)
def test_warm_and_cold_nodes_agree(calls):
    assert _run(calls, cold=False) == _run(calls, cold=True)


def test_gas_is_identical_for_identical_calls():
    net = contract_chain()
    address, _ = net.deploy(wat('(func (export "f") (call $result_u64 (call $block_height)))'))
    gas = {net.call(address, "f").gas_used for _ in range(5)}
    assert len(gas) == 1
