"""Two independent nodes running the same contract transactions agree on every byte (issue 11, acceptance 3).

A proposer Application builds blocks of random calls to the three example
contracts (and to a hostile one); a second, independent Application (a
validator) runs each block with ``execute_block``, compiling every module
anew before every block as a node that just restarted would, and commits
it.  Their app hashes, every receipt (gas_used, events, output, reason) and
the contracts' storage must be identical.
"""

from __future__ import annotations

import wasmtime
from hypothesis import HealthCheck, given, settings, strategies as st

from state import vm
from state.app import Application
from state.codec import encode
from state.contracts import contract_address
from state.kv import MemoryKV
from state.payloads import ContractCall, ContractDeploy
from state.testing import STUB_VERIFIER, Chain, ONE_QNX, stub_cert
from tests.contract_fixtures import ALICE, BOB, VALIDATOR, contract_chain, wat
from tests.test_contracts_hostile import HOSTILE

EXAMPLES = "examples/contracts/"
CAROL = BOB  # the escrow's arbiter in these runs


def _code(name: str) -> bytes:
    return bytes(wasmtime.wat2wasm(open(EXAMPLES + name + ".wat").read()))


CALL = st.one_of(
    st.tuples(st.just("counter"), st.just("increment"), st.lists(st.integers(0, 2**64 - 1), max_size=1)),
    st.tuples(st.just("counter"), st.just("increment"), st.just(["not a number"])),
    st.tuples(st.just("token"), st.just("transfer"),
              st.tuples(st.sampled_from([ALICE.address, BOB.address]), st.integers(0, 2**20)).map(list)),
    st.tuples(st.just("token"), st.just("approve"),
              st.tuples(st.sampled_from([ALICE.address, BOB.address]), st.integers(0, 2**20)).map(list)),
    st.tuples(st.just("token"), st.just("transfer_from"),
              st.tuples(st.sampled_from([ALICE.address, BOB.address]), st.sampled_from([ALICE.address, BOB.address]),
                        st.integers(0, 2**20)).map(list)),
    st.tuples(st.just("escrow"), st.sampled_from(["deposit", "release", "refund"]), st.just([])),
    st.tuples(st.just("hostile"), st.sampled_from(
        ["write", "write_then_trap", "write_then_abort", "loop", "recurse", "oob_load", "big_value", "many_events",
         "bad_result"]), st.just([])),
)
CALLS = st.lists(st.tuples(CALL, st.booleans()), min_size=1, max_size=15)


def _pair():
    """A proposer chain with the four contracts deployed, and a validator that replayed those blocks."""
    net = contract_chain()
    validator = Application(MemoryKV(), net.app.genesis, commit_verifier=STUB_VERIFIER)
    targets = {}
    for name, code, init in (("counter", _code("counter"), []), ("token", _code("token"), [10**12]),
                             ("escrow", _code("escrow"), [BOB.address, ALICE.address, 10**6]),
                             ("hostile", HOSTILE, [])):
        targets[name], receipt = net.deploy(code, init)
        assert receipt.ok, receipt.reason
    for height in range(1, net.app.height + 1):
        block = net.app.get_block(height)
        validator.commit_block(block, validator.execute_block(block), stub_cert(block.height, block.hash))
    return net, validator, targets


def _attached(contract: str, method: str) -> tuple:
    return (("QNX", ONE_QNX),) if (contract, method) == ("escrow", "deposit") else ()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(CALLS)
def test_proposer_and_validator_agree_on_random_calls_to_the_examples(calls):
    net, validator, targets = _pair()
    for i in range(0, len(calls), 4):
        txs = [net.chain.tx(BOB if by_bob else ALICE,
                            ContractCall(targets[c], m, encode(a), _attached(c, m), 3_000_000))
               for (c, m, a), by_bob in calls[i:i + 4]]
        block, proposed = net.chain.block(txs)
        vm.MODULES._modules.clear()  # the validator compiles everything again, as after a restart
        result = validator.execute_block(block)
        assert [r.encode() for r in result.receipts] == [r.encode() for r in proposed.receipts]
        assert [r.gas_used for r in result.receipts] == [r.gas_used for r in proposed.receipts]
        assert result.app_hash == proposed.app_hash
        validator.commit_block(block, result, stub_cert(block.height, block.hash))
    for address in targets.values():
        assert validator.contracts().storage(address, limit=1000) == net.app.contracts().storage(address, limit=1000)
    assert validator.app_hash == net.app.app_hash


def test_gas_is_identical_for_identical_calls():
    net = contract_chain()
    address, _ = net.deploy(wat('(func (export "f") (call $result_u64 (call $block_height)))'))
    gas = {net.call(address, "f").gas_used for _ in range(5)}
    assert len(gas) == 1
