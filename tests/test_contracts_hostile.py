"""Hostile contracts and hostile transactions: every failure reverts everything, costs are paid first.

Each test runs real modules through the Application (state.execution and
state.contracts on the wasmtime engine); no part of the VM is mocked.
"""

from __future__ import annotations

import pytest

from state import keys, vm
from state.codec import decode, encode
from state.contracts import (
    GAS_HOST_CALL,
    GAS_STORAGE_GROWTH,
    MAX_STORAGE_KEY,
    MAX_STORAGE_VALUE,
    contract_address,
    call_intrinsic_gas,
)
from state.crypto import address_to_text
from state.errors import (
    BlockGasExceeded,
    ContractsDisabled,
    FeeTooLow,
    GasLimitTooHigh,
    GasLimitTooLow,
    HostCallFailed,
    MalformedTransaction,
    OutOfGas,
    UnknownMethod as UnknownMethodError,
)
from state.execution import check_stateless
from state.genesis import ContractParams, Params
from state.payloads import ContractCall, ContractDeploy
from state.testing import signed
from tests.contract_fixtures import ALICE, BOB, contract_chain, wat

# A contract whose methods misbehave on request.  Storage key "k" (at 0), value buffer at 64.
HOSTILE = wat('''
  (data (i32.const 0) "k")
  (data (i32.const 32) "QNX")
  (data (i32.const 40) "ev")
  (data (i32.const 48) "nope")
  (func (export "write_then_trap") (call $storage_set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1)) unreachable)
  (func (export "write_then_abort")
    (call $storage_set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1))
    (call $abort (i32.const 48) (i32.const 4)))
  (func (export "write") (call $storage_set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 1)))
  (func (export "loop") (loop $l (br $l)))
  (func $rec (call $rec))
  (func (export "recurse") (call $rec))
  (func (export "oob_load") (drop (i32.load (i32.const 70000))))
  (func (export "oob_pointer") (call $storage_set (i32.const 65530) (i32.const 20) (i32.const 0) (i32.const 1)))
  (func (export "huge_length") (call $storage_set (i32.const 0) (i32.const -1) (i32.const 0) (i32.const 1)))
  (func (export "long_key") (call $storage_set (i32.const 0) (i32.const 129) (i32.const 0) (i32.const 1)))
  (func (export "big_value") (call $storage_set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 4096)))
  (func (export "too_big_value") (call $storage_set (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 4097)))
  (func (export "many_events") (local $i i32)
    (loop $l (call $emit (i32.const 40) (i32.const 2) (i32.const 0) (i32.const 0))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 33)))))
  (func (export "pay_bob") (call $transfer_u64 (i32.const 100) (i32.const 32) (i32.const 3) (call $arg_u64 (i32.const 0))))
  (func (export "pay") (call $arg_address (i32.const 0) (i32.const 100))
    (call $transfer_u64 (i32.const 100) (i32.const 32) (i32.const 3) (call $arg_u64 (i32.const 1))))
  (func (export "bad_result") (i32.store (i32.const 200) (i32.const 0xc1)) (call $result_set (i32.const 200) (i32.const 1)))
  (func (export "many_host_calls") (local $i i32)
    (loop $l (drop (call $block_height)) (local.set $i (i32.add (local.get $i) (i32.const 1))) (br $l)))
''')


@pytest.fixture
def net():
    return contract_chain()


@pytest.fixture
def hostile(net):
    address, receipt = net.deploy(HOSTILE)
    assert receipt.ok, receipt.reason
    return address


def _unchanged(net, address, before_storage):
    assert net.storage(address) == before_storage


@pytest.mark.parametrize("method, code", [
    ("write_then_trap", "trap"),
    ("write_then_abort", "aborted"),
    ("loop", "out_of_gas"),
    ("recurse", "call_depth_exceeded"),
    ("oob_load", "trap"),
    ("oob_pointer", "host_call_failed"),
    ("huge_length", "host_call_failed"),
    ("long_key", "host_call_failed"),
    ("too_big_value", "host_call_failed"),
    ("many_events", "host_call_failed"),
    ("many_host_calls", "out_of_gas"),
])
def test_every_failure_reverts_and_still_pays(net, hostile, method, code):
    storage = net.storage(hostile)
    before = net.balance(ALICE.address)
    receipt = net.call(hostile, method, gas_limit=2_000_000)
    assert not receipt.ok and receipt.reason.startswith(code + ":"), receipt.reason
    _unchanged(net, hostile, storage)
    assert receipt.fee == receipt.gas_used * net.params.min_gas_price > 0
    assert net.balance(ALICE.address) == before - receipt.fee
    assert receipt.events == () and receipt.output == b""
    if code in ("out_of_gas", "trap", "call_depth_exceeded"):  # a trap costs the whole limit
        assert receipt.gas_used == 2_000_000


def test_abort_message_reaches_the_receipt(net, hostile):
    receipt = net.call(hostile, "write_then_abort")
    assert receipt.reason == f"aborted: contract {address_to_text(hostile)} aborted: nope"


def test_unbounded_recursion_ends_at_the_stack_budget(net, hostile):
    receipts = [net.call(hostile, "recurse", gas_limit=50_000_000) for _ in range(3)]
    assert len({(r.reason, r.gas_used) for r in receipts}) == 1
    assert receipts[0].reason.startswith("call_depth_exceeded:") and "wasm call stack" in receipts[0].reason
    assert receipts[0].gas_used == 50_000_000


def test_a_success_writes_and_the_record_counts_storage(net, hostile):
    assert net.call(hostile, "write").ok
    assert net.storage(hostile) == {b"k": b"k"}
    info = net.app.contracts().info(hostile)
    assert (info.storage_entries, info.storage_bytes) == (1, 2)
    assert net.call(hostile, "big_value", gas_limit=10_000_000).ok
    info = net.app.contracts().info(hostile)
    assert (info.storage_entries, info.storage_bytes) == (1, 1 + MAX_STORAGE_VALUE)


def test_storage_growth_is_paid_per_byte(net, hostile):
    small = net.call(hostile, "write")
    big = net.call(hostile, "big_value", gas_limit=10_000_000)
    assert big.gas_used - small.gas_used >= GAS_STORAGE_GROWTH * (MAX_STORAGE_VALUE - 1)
    again = net.call(hostile, "big_value", gas_limit=10_000_000)  # same size: no growth the second time
    assert big.gas_used - again.gas_used == GAS_STORAGE_GROWTH * (MAX_STORAGE_VALUE - 1)


def test_host_calls_cost_their_base_price(net):
    # n calls of block_height cost exactly n * GAS_HOST_CALL more than none (plus the loop's own fuel)
    code = wat('(func (export "f") (local $i i64) (local.set $i (call $arg_u64 (i32.const 0))) '
               '(block $done (loop $l (br_if $done (i64.eqz (local.get $i))) (drop (call $block_height)) '
               '(local.set $i (i64.sub (local.get $i) (i64.const 1))) (br $l))))')
    address, _ = net.deploy(code)
    q = net.app.contracts()
    gas = [q.call(address, "f", encode([n]), gas_limit=10**8).gas_used for n in (10, 20, 30)]
    step = gas[1] - gas[0]
    assert gas[2] - gas[1] == step and GAS_HOST_CALL * 10 < step < GAS_HOST_CALL * 10 + 10 * 40


def test_the_contract_pays_out_only_what_it_holds_and_a_failure_returns_attached_tokens(net, hostile):
    receipt = net.call(hostile, "pay", [BOB.address, 5], attached=(("QNX", 10),))
    assert receipt.ok, receipt.reason
    assert net.balance(hostile) == 5
    bob = net.balance(BOB.address)
    alice = net.balance(ALICE.address)
    receipt = net.call(hostile, "pay", [BOB.address, 50], attached=(("QNX", 10),))
    assert receipt.reason.startswith("host_call_failed:") and "QNX balance 15 is less than 50" in receipt.reason
    assert net.balance(hostile) == 5  # the attached 10 came back
    assert net.balance(ALICE.address) == alice - receipt.fee
    assert net.balance(BOB.address) == bob


def test_a_contract_cannot_pay_a_pool_or_staking_account(net, hostile):
    from state.staking import MODULE_ACCOUNTS
    module = next(iter(MODULE_ACCOUNTS))
    receipt = net.call(hostile, "pay", [module, 1], attached=(("QNX", 10),))
    assert receipt.reason.startswith("host_call_failed:") and "staking" in receipt.reason


def test_a_query_is_read_only_and_capped(net, hostile):
    queries = net.app.contracts()
    with pytest.raises(HostCallFailed, match="read-only"):
        queries.call(hostile, "write", encode([]), gas_limit=10**7)
    with pytest.raises(OutOfGas):
        queries.call(hostile, "loop", encode([]), gas_limit=10**6)
    assert net.storage(hostile) == {}


def test_unknown_contract_and_method(net, hostile):
    nobody = contract_address(BOB.address, 99)
    assert net.call(nobody, "f").reason.startswith("unknown_contract:")
    assert net.call(hostile, "missing").reason.startswith("unknown_method:")
    assert net.call(hostile, "init").reason.startswith("unknown_method:")  # init runs only at deploy


# -- nested calls ----------------------------------------------------------------------------

CALLER_BODY = '''
  (data (i32.const 300) "write")
  (data (i32.const 310) "write_then_trap")
  (data (i32.const 330) "poke")
  (data (i32.const 340) "k")
  (data (i32.const 350) "\\90")
  ;; call(target = args[0], method at 300/310/330) with empty-array args
  (func $call_it (param $m i32) (param $len i32)
    (call $arg_address (i32.const 0) (i32.const 400))
    (drop (call $call (i32.const 400) (local.get $m) (local.get $len) (i32.const 350) (i32.const 1)
                      (i32.const 0) (i32.const 0) (i32.const 0))))
  (func (export "call_write") (call $call_it (i32.const 300) (i32.const 5)))
  (func (export "write_then_call_trap")
    (call $storage_set (i32.const 340) (i32.const 1) (i32.const 340) (i32.const 1))
    (call $call_it (i32.const 310) (i32.const 15)))
  ;; poke(target): target.poke(target), forwarding its own arguments
  (func (export "poke")
    (call $arg_address (i32.const 0) (i32.const 400))
    (call $args_read (i32.const 500))
    (drop (call $call (i32.const 400) (i32.const 330) (i32.const 4) (i32.const 500) (call $args_len)
                      (i32.const 0) (i32.const 0) (i32.const 0))))
'''
CALLER = wat(CALLER_BODY)
REENTRANT_CALLER = wat(CALLER_BODY + '(func (export "qenex_reentrant"))')


def test_a_nested_failure_reverts_the_caller_too(net, hostile):
    caller, receipt = net.deploy(CALLER)
    assert receipt.ok, receipt.reason
    receipt = net.call(caller, "call_write", [hostile])
    assert receipt.ok, receipt.reason
    assert net.storage(hostile) == {b"k": b"k"}
    receipt = net.call(caller, "write_then_call_trap", [hostile])
    assert receipt.reason.startswith("trap:") and address_to_text(hostile) in receipt.reason
    assert net.storage(caller) == {}


def test_reentrancy_is_refused_unless_the_callee_opts_in(net):
    caller, _ = net.deploy(CALLER)
    # caller.poke(caller) calls caller.poke again while caller is on the stack
    receipt = net.call(caller, "poke", [caller])
    assert receipt.reason.startswith("reentrancy:"), receipt.reason
    again, _ = net.deploy(REENTRANT_CALLER)
    receipt = net.call(again, "poke", [again], gas_limit=50_000_000)
    # it may re-enter, and so recurses until the depth limit stops it
    assert receipt.reason.startswith("call_depth_exceeded:"), receipt.reason
    assert "call depth exceeds the limit of 8" in receipt.reason


def test_instances_per_transaction_are_bounded():
    net = contract_chain(ContractParams(max_call_depth=64, max_calls_per_tx=5))
    again, _ = net.deploy(REENTRANT_CALLER)
    receipt = net.call(again, "poke", [again], gas_limit=50_000_000)
    assert "contract instances in one transaction exceeds the limit of 5" in receipt.reason


# -- transactions that may not enter a block ------------------------------------------------


def test_contract_kinds_are_refused_on_a_chain_without_contracts():
    params = Params()
    stx = signed(ALICE, 0, ContractCall(BOB.address, "f", encode([]), (), 100_000), fee=10**18)
    with pytest.raises(ContractsDisabled):
        check_stateless(stx, chain_id=stx.tx.chain_id, params=params)


def test_gas_limits_are_checked_before_anything_runs():
    params = Params(contracts=ContractParams(max_tx_gas=1_000_000, max_block_gas=2_000_000))
    low = signed(ALICE, 0, ContractCall(BOB.address, "f", encode([]), (), call_intrinsic_gas(encode([])) - 1),
                 params=params)
    with pytest.raises(GasLimitTooLow):
        check_stateless(low, chain_id=low.tx.chain_id, params=params)
    high = signed(ALICE, 0, ContractCall(BOB.address, "f", encode([]), (), 1_000_001), params=params)
    with pytest.raises(GasLimitTooHigh):
        check_stateless(high, chain_id=high.tx.chain_id, params=params)
    cheap = signed(ALICE, 0, ContractCall(BOB.address, "f", encode([]), (), 100_000),
                   fee=100_000 * params.min_gas_price - 1, params=params)
    with pytest.raises(FeeTooLow):
        check_stateless(cheap, chain_id=cheap.tx.chain_id, params=params)


def test_a_block_holds_contract_transactions_up_to_max_block_gas_by_what_they_use():
    net = contract_chain(ContractParams(max_tx_gas=5_000_000, max_block_gas=12_000_000))
    address, receipt = net.deploy(HOSTILE, gas_limit=5_000_000)
    assert receipt.ok, receipt.reason

    def tx(method, nonce_offset=0):
        return net.chain.tx(ALICE, ContractCall(address, method, encode([]), (), 5_000_000))

    # high limits that use little do not squat the block: all of these fit
    cheap = [tx("write") for _ in range(6)]
    _, result = net.chain.block(cheap)
    assert len(result.receipts) == 6 and all(r.ok for r in result.receipts)
    # two loops use their whole 5M each; a third 5M limit no longer fits in 12M
    loops = [tx("loop") for _ in range(3)]
    _, result = net.chain.block(loops)
    assert [r.reason.split(":")[0] for r in result.receipts] == ["out_of_gas", "out_of_gas"]
    run = net.app._new_run(net.app.height + 1, net.app.last_time_ms + 1)
    run.include(loops[2])
    run.include(signed(ALICE, loops[2].tx.nonce + 1, ContractCall(address, "loop", encode([]), (), 5_000_000),
                       params=net.params))
    late = signed(ALICE, loops[2].tx.nonce + 2, ContractCall(address, "write", encode([]), (), 5_000_000),
                  params=net.params)
    balance = run.ledger.balance(ALICE.address, "QNX")
    with pytest.raises(BlockGasExceeded, match="10000000 of max_block_gas 12000000 used"):
        run.include(late)
    assert run.ledger.balance(ALICE.address, "QNX") == balance and len(run.txs) == 2  # refused, changed nothing


def test_the_unused_gas_is_refunded_at_the_offered_price(net, hostile):
    before = net.balance(ALICE.address)
    fee = 3_000_000 * net.params.min_gas_price * 2  # twice the minimum price
    stx = net.chain.tx(ALICE, ContractCall(hostile, "write", encode([]), (), 3_000_000), fee=fee)
    _, result = net.chain.block([stx])
    receipt = result.receipts[0]
    assert receipt.ok
    assert receipt.fee == fee * receipt.gas_used // 3_000_000
    assert net.balance(ALICE.address) == before - receipt.fee


@pytest.mark.parametrize("build", [
    lambda: ContractCall(BOB.address, "f", b"\xcd\x00\x01", (), 100_000),  # non-canonical int
    lambda: ContractCall(BOB.address, "f", b"\x90\x90", (), 100_000),  # trailing bytes
    lambda: ContractCall(BOB.address, "f", b"", (), 100_000),
    lambda: ContractCall(BOB.address, "bad-name", b"\x90", (), 100_000),
    lambda: ContractCall(BOB.address, "f", b"\x90", (("QNX", 1), ("AAA", 1)), 100_000),  # unsorted
    lambda: ContractCall(BOB.address, "f", b"\x90", (("QNX", 1), ("QNX", 2)), 100_000),  # twice
    lambda: ContractCall(BOB.address, "f", b"\x90", (("QNX", 0),), 100_000),
    lambda: ContractCall(BOB.address, "f", b"\x90", (), 0),
    lambda: ContractCall(BOB.address, "f", b"\x90", (), 2**63),
    lambda: ContractDeploy(b"\0asm", b"\x90", (), 100_000),
    lambda: ContractDeploy(b"\0asm\x01\0\0\0" * 9000, b"\x90", (), 100_000),
])
def test_malformed_payloads_are_refused_at_construction(build):
    with pytest.raises(MalformedTransaction):
        build()


def test_a_deploy_records_the_contract_under_its_derived_address(net):
    nonce = net.app.account(ALICE.address).nonce
    address, receipt = net.deploy(HOSTILE)
    assert address == contract_address(ALICE.address, nonce)
    info = net.app.contracts().info(address)
    assert info.deployer == ALICE.address and info.created_height == net.app.height
    assert net.app._kv.get(keys.contract_key(address)) is not None


def test_receipts_with_events_survive_the_store(net):
    code = wat('(data (i32.const 0) "topic") (func (export "f") '
               '(call $emit (i32.const 0) (i32.const 5) (i32.const 0) (i32.const 5)) (call $result_u64 (i64.const 7)))')
    address, _ = net.deploy(code)
    receipt = net.call(address, "f")
    stored = net.app.get_receipt(receipt.tx_hash)
    assert stored == receipt
    assert [(e.contract, e.topic, e.data) for e in stored.events] == [(address, b"topic", b"topic")]
    assert decode(stored.output) == 7


def test_gas_does_not_depend_on_the_module_cache(net, hostile):
    net.call(hostile, "write", gas_limit=2_000_000)  # the first write grows the storage; the next ones do not
    first = net.call(hostile, "write", gas_limit=2_000_000)
    vm.MODULES._modules.clear()
    second = net.call(hostile, "write", gas_limit=2_000_000)
    assert first.gas_used == second.gas_used


DEEP = '''
  (data (i32.const 330) "deep")
  (data (i32.const 350) "\\90")
  (func $rec (param $n i32) (param $a i64) (param $b i64) (param $c i64) (param $d i64)
    (if (i32.eqz (local.get $n))
      (then
        (call $self_address (i32.const 400))
        (drop (call $call (i32.const 400) (i32.const 330) (i32.const 4) (i32.const 350) (i32.const 1)
                          (i32.const 0) (i32.const 0) (i32.const 0))))
      (else (call $rec (i32.sub (local.get $n) (i32.const 1)) (local.get $a) (local.get $b) (local.get $c)
                       (local.get $d)))))
  (func (export "deep") (call $rec (i32.const DEPTH) (i64.const 1) (i64.const 2) (i64.const 3) (i64.const 4)))
  (func (export "qenex_reentrant"))
'''


@pytest.mark.parametrize("depth", [300, 20000])
def test_deep_wasm_recursion_at_every_call_depth_ends_cleanly(net, depth):
    # Each of the 8 nested instances recurses within (300) or past (20000) its stack budget: the native
    # stack holds all of them, and the transaction fails with a reason (the call depth, or the budget).
    address, _ = net.deploy(wat(DEEP.replace("DEPTH", str(depth))))
    receipt = net.call(address, "deep", gas_limit=50_000_000)
    assert receipt.reason.startswith("call_depth_exceeded:"), receipt.reason


def test_an_argument_index_is_unsigned(net):
    # i32 -1 is index 4294967295: missing, not "the whole arguments value"
    address, _ = net.deploy(wat('(func (export "m") (call $result_u64 (call $arg_u64 (i32.const -1))))'))
    receipt = net.call(address, "m", raw_args=encode(7))
    assert receipt.reason.endswith("the arguments are not an array"), receipt.reason
    receipt = net.call(address, "m", [7])
    assert "argument 4294967295 is missing (1 given)" in receipt.reason, receipt.reason


def test_a_failure_before_any_code_runs_still_knows_its_gas(net, hostile):
    with pytest.raises(OutOfGas) as info:
        net.app.contracts().call(hostile, "write", encode([]), gas_limit=100)  # not even the intrinsic gas
    assert info.value.gas_used == 100
    with pytest.raises(UnknownMethodError) as info:
        net.app.contracts().call(hostile, "missing", encode([]), gas_limit=10**7)
    assert 0 < info.value.gas_used < 10**7


def test_a_result_is_opaque_bytes_to_the_chain(net, hostile):
    # not decoded in consensus (a hostile result costs only its copy); readers render it if it decodes
    receipt = net.call(hostile, "bad_result")
    assert receipt.ok and receipt.output == b"\xc1"
    from node.contract_values import output_to_json
    assert output_to_json(receipt.output) is None


def test_one_stack_budget_for_the_whole_call_chain(tmp_path):
    # 64 nested instances, each recursing: with a budget per instance their native stacks added up past the
    # thread's and the process died (SIGSEGV); with one budget handed down the chain it ends in a receipt.
    import subprocess
    import sys
    script = tmp_path / "chain.py"
    script.write_text(
        "from state.genesis import ContractParams\n"
        "from tests.contract_fixtures import contract_chain, wat\n"
        "from tests.test_contracts_hostile import DEEP\n"
        "net = contract_chain(ContractParams(max_call_depth=64, max_calls_per_tx=64))\n"
        "address, _ = net.deploy(wat(DEEP.replace('DEPTH', '60')))\n"
        "print(net.call(address, 'deep', gas_limit=50_000_000).reason)\n")
    import os
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=root,
                          env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert done.stdout.startswith("call_depth_exceeded: the wasm call stack"), done.stdout


def _rss_bytes() -> int:
    import resource

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def test_failed_host_calls_free_their_native_errors(net, hostile):
    """A host call that raises reaches the export's caller as a native wasmtime error, which must be
    freed: failing queries are free to send, and each leaked about 1.6 KiB when the Python exception
    was raised before the error had an owner (20,000 failures grew the process by 32 MB)."""
    queries = net.app.contracts()

    def fail(times: int) -> None:
        for _ in range(times):
            with pytest.raises(HostCallFailed):
                queries.call(hostile, "write", encode([]), gas_limit=10**7)

    fail(2_000)  # allocator and caches warm
    before = _rss_bytes()
    fail(20_000)
    assert _rss_bytes() - before < 10 * 2**20
