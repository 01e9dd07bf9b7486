"""The VM's deterministic configuration and the deploy-time rules (state/vm.py), on the real engine.

Each refusal is checked twice: ``inspect_code`` names the rule, and a deploy
transaction carrying the module is included, fails with ``invalid_code`` and
still pays for the gas it used.
"""

from __future__ import annotations

import pytest
import wasmtime

from state import vm
from state.codec import encode
from state.contracts import GAS_DEPLOY, GAS_DEPLOY_CODE_BYTE, GAS_ARG_BYTE
from state.genesis import ContractParams
from tests.contract_fixtures import ALICE, contract_chain, wat

LIMITS = dict(max_memory_pages=16, max_table_elements=1024)


def refused(code: bytes) -> str:
    with pytest.raises(vm.CodeRefused) as info:
        vm.inspect_code(code, **LIMITS)
    return str(info.value)


# -- the engine's configuration ---------------------------------------------------------


def test_fuel_is_metered_per_operator():
    # wasmtime-py's Config setters are write-only, so the configuration is checked by its behaviour:
    # a loop of n iterations burns fuel linearly in n, the same on every run.
    net = contract_chain()
    code = wat('(func (export "spin") (local $i i64) (local.set $i (call $arg_u64 (i32.const 0))) '
               '(block $done (loop $l (br_if $done (i64.eqz (local.get $i))) '
               '(local.set $i (i64.sub (local.get $i) (i64.const 1))) (br $l))))')
    address, _ = net.deploy(code)
    gas = [net.app.contracts().call(address, "spin", encode([n]), gas_limit=10**8).gas_used for n in (1000, 2000, 3000)]
    assert gas[1] - gas[0] == gas[2] - gas[1] > 1000
    assert gas == [net.app.contracts().call(address, "spin", encode([n]), gas_limit=10**8).gas_used
                   for n in (1000, 2000, 3000)]
    assert vm.engine() is vm.engine()  # one engine per process


@pytest.mark.parametrize("op, bits", [
    ("(i32.reinterpret_f32 (f32.div (f32.const 0) (f32.const 0)))", 0x7FC00000),
    ("(i32.reinterpret_f32 (f32.sqrt (f32.const -1)))", 0x7FC00000),
])
def test_nan_results_are_canonical_whatever_the_cpu_would_give(op, bits):
    # x86's default NaN from 0/0 or sqrt(-1) has the sign bit set (0xFFC00000); canonicalisation makes it 0x7FC00000.
    net = contract_chain()
    address, receipt = net.deploy(wat(f'(func (export "nan") (call $result_u64 (i64.extend_i32_u {op})))'))
    assert receipt.ok, receipt.reason
    assert net.query(address, "nan") == bits


def test_f64_nan_is_canonical():
    net = contract_chain()
    code = wat('(func (export "nan") (call $result_u64 (i64.reinterpret_f64 (f64.div (f64.const 0) (f64.const 0)))))')
    address, _ = net.deploy(code)
    assert net.query(address, "nan") == 0x7FF8000000000000


@pytest.mark.parametrize("name, body", [
    ("simd", '(func (export "f") (drop (v128.const i64x2 0 0)))'),
    ("threads", '(func (export "f") (drop (i32.atomic.load (i32.const 0))))'),
    ("bulk memory", '(func (export "f") (memory.copy (i32.const 0) (i32.const 1) (i32.const 1)))'),
    ("tail call", '(func $g) (func (export "f") (return_call $g))'),
])
def test_disabled_proposals_are_refused_at_deploy(name, body):
    code = bytes(wasmtime.wat2wasm(f'(module (memory (export "memory") 1) {body})')) if name != "threads" else \
        bytes(wasmtime.wat2wasm(f'(module (memory (export "memory") 1 1 shared) {body})'))
    assert "does not validate" in refused(code) or "is not available" in refused(code)


def test_a_shared_memory_is_refused():
    code = bytes(wasmtime.wat2wasm('(module (memory (export "memory") 1 2 shared) (func (export "f")))'))
    assert "does not validate" in refused(code) or "is not available" in refused(code)


# -- imports and exports ------------------------------------------------------------------


def test_only_the_host_api_may_be_imported():
    code = bytes(wasmtime.wat2wasm('(module (import "wasi_snapshot_preview1" "fd_write" '
                                   '(func (param i32 i32 i32 i32) (result i32))) '
                                   '(memory (export "memory") 1) (func (export "f")))'))
    assert "wasi_snapshot_preview1.fd_write" in refused(code)
    code = bytes(wasmtime.wat2wasm('(module (import "qenex" "clock" (func (result i64))) '
                                   '(memory (export "memory") 1) (func (export "f")))'))
    assert "qenex.clock" in refused(code)


def test_a_host_import_with_the_wrong_signature_is_refused():
    code = bytes(wasmtime.wat2wasm('(module (import "qenex" "block_height" (func (result i32))) '
                                   '(memory (export "memory") 1) (func (export "f")))'))
    assert "has type" in refused(code)


def test_an_imported_memory_or_global_is_refused():
    code = bytes(wasmtime.wat2wasm('(module (import "qenex" "memory" (memory 1)) (func (export "f")))'))
    assert "qenex.memory" in refused(code)


@pytest.mark.parametrize("module, rule", [
    ('(module (func (export "f")))', "export its memory"),
    ('(module (memory (export "memory") 1))', "no entry point"),
    ('(module (memory (export "memory") 1) (func (export "init")))', "no entry point"),
    ('(module (memory (export "memory") 1) (func (export "f") (param i32)))', "no parameters"),
    ('(module (memory (export "memory") 1) (func (export "f") (result i32) (i32.const 0)))', "no parameters"),
    ('(module (memory (export "heap") 1) (func (export "f")))', "only 'memory'"),
    ('(module (memory (export "memory") 1) (global (export "g") i32 (i32.const 0)) (func (export "f")))',
     "not a function or the memory"),
    ('(module (memory (export "memory") 1) (func (export "bad-name")))', "is not 1-64 characters"),
    ('(module (memory (export "memory") 17) (func (export "f")))', "more than the limit of 16"),
    ('(module (memory (export "memory") 1) (table (export "t") 2000 funcref) (func (export "f")))',
     "not a function or the memory"),
])
def test_module_shape_rules(module, rule):
    assert rule in refused(bytes(wasmtime.wat2wasm(module)))


def test_a_table_larger_than_the_limit_fails_at_instantiation_inside_the_transaction():
    net = contract_chain()
    _, receipt = net.deploy(bytes(wasmtime.wat2wasm(
        '(module (memory (export "memory") 1) (table 2000 funcref) (func (export "f")))')))
    assert not receipt.ok and receipt.reason.startswith("trap:"), receipt.reason


def test_inspect_code_lists_methods_and_the_reentrancy_opt_in():
    _, info = vm.inspect_code(wat('(func (export "init")) (func (export "b")) (func (export "a")) '
                                  '(func (export "qenex_reentrant"))'), **LIMITS)
    assert info.methods == ("a", "b", "init") and info.has_init and info.reentrant


def _module_with_locals(functions: int, locals_each: int) -> bytes:
    from state.wasm_instrument import leb

    def section(sid: int, body: bytes) -> bytes:
        return bytes([sid]) + leb(len(body)) + body

    types = section(1, b"\x01\x60\x00\x00")
    funcs = section(3, leb(functions) + b"\x00" * functions)
    mem = section(5, b"\x01\x00\x01")
    exports = section(7, b"\x02" + b"\x06memory\x02\x00" + b"\x01f\x00\x00")
    body = b"\x01" + leb(locals_each) + b"\x7f" + b"\x0b"
    code = section(10, leb(functions) + (leb(len(body)) + body) * functions)
    return b"\0asm\x01\0\0\0" + types + funcs + mem + exports + code


def test_a_module_declaring_too_many_locals_is_refused_before_compiling():
    vm.inspect_code(_module_with_locals(1, 256), **LIMITS)  # within the limits: compiles
    assert "a function declares more than 256 locals" in refused(_module_with_locals(1, 257))
    assert "more than 50000 locals" in refused(_module_with_locals(200, 251))
    # 1,000 functions of 49,000 locals each would take wasmtime minutes; refused from the header alone.
    assert "more than 256 locals" in refused(_module_with_locals(1000, 49_000))


@pytest.mark.parametrize("garbage", [b"", b"\0asm", b"\0asm\x01\0\0\0\x0a\xff\xff\xff\xff\x0f", b"not wasm at all!"])
def test_garbage_bytes_are_refused_with_a_reason(garbage):
    assert refused(garbage)


# -- deploys that break a rule fail inside the chain and pay for it -------------------------


def test_a_refused_deploy_is_included_fails_and_pays_its_intrinsic_gas():
    net = contract_chain()
    code = bytes(wasmtime.wat2wasm('(module (func (export "f")))'))
    before = net.balance(ALICE.address)
    address, receipt = net.deploy(code)
    assert not receipt.ok and receipt.reason.startswith("invalid_code:"), receipt.reason
    assert receipt.gas_used == GAS_DEPLOY + GAS_DEPLOY_CODE_BYTE * len(code) + GAS_ARG_BYTE * 1
    assert net.balance(ALICE.address) == before - receipt.fee
    assert receipt.fee == receipt.gas_used * net.params.min_gas_price
    assert net.app.contracts().info(address) is None


def test_code_over_max_code_bytes_is_refused():
    net = contract_chain(ContractParams(max_code_bytes=100))
    code = wat('(func (export "f")) (data (i32.const 0) "' + "x" * 200 + '")')
    _, receipt = net.deploy(code)
    assert receipt.reason.startswith("invalid_code:") and "max_code_bytes 100" in receipt.reason


def test_a_start_function_is_refused():
    # it would run before a nested call's instance gets the budget its caller left; contracts use init
    net = contract_chain()
    code = wat('(func $s (drop (call $block_height))) (start $s) (func (export "f"))')
    _, receipt = net.deploy(code)
    assert receipt.reason == "invalid_code: a start function is not allowed (export init instead)", receipt.reason


@pytest.mark.parametrize("signature, rule", [
    ("(param " + "i64 " * 33 + ")", "33 parameters"),
    ("(result " + "i64 " * 5 + ")", "5 results"),
])
def test_function_types_are_bounded(signature, rule):
    code = bytes(wasmtime.wat2wasm(f'(module (memory (export "memory") 1) (type (func {signature})) (func (export "f")))'))
    assert rule in refused(code)


def test_memory_grows_only_to_the_limit():
    net = contract_chain(ContractParams(max_memory_pages=4))
    code = wat('(func (export "grow") (call $result_u64 (i64.extend_i32_s (memory.grow (i32.const 3))))) '
               '(func (export "grow_too_far") (call $result_u64 (i64.extend_i32_s (memory.grow (i32.const 4)))))')
    address, receipt = net.deploy(code)
    assert receipt.ok, receipt.reason
    assert net.query(address, "grow") == 1  # the old size: grown from 1 page to 4
    assert net.query(address, "grow_too_far") == 2**64 - 1  # -1: refused, deterministically


def test_the_same_code_deployed_twice_is_stored_once():
    net = contract_chain()
    code = wat('(func (export "f"))')
    a, _ = net.deploy(code)
    b, _ = net.deploy(code)
    assert a != b
    from state import keys
    stored = [k for k, _ in net.app._kv.iterate(keys.CONTRACT_CODE)]
    assert len(stored) == 1
    assert net.app.contracts().info(a).code_hash == net.app.contracts().info(b).code_hash


def test_scan_module_reads_the_locals_off_the_code_section():
    from state.wasm_instrument import scan_module
    functions = scan_module(_module_with_locals(3, 10)).functions
    assert (sum(f.locals for f in functions), len(functions)) == (30, 3)


def test_a_truncated_leb_is_malformed():
    assert "LEB128" in refused(b"\0asm\x01\0\0\0" + bytes([10]) + b"\xff\xff\xff\xff\xff\xff")


RECURSE = '''(module (memory (export "memory") 1)
  (func $rec (param $n i32) (param $a f64) (param $b f64) (param $c f64)
    (i32.store (i32.const 0) (local.get $n))
    (call $rec (i32.add (local.get $n) (i32.const 1)) (f64.floor (local.get $a)) (f64.ceil (local.get $b))
               (f64.nearest (local.get $c))))
  (func (export "go") (call $rec (i32.const 1) (f64.const 1) (f64.const 2) (f64.const 3))))'''


def _depth_reached(code: bytes, *, old_cpu: bool) -> int:
    config = vm.engine_config()
    if old_cpu:  # a CPU without SSE4.1 (e.g. QEMU's default model): Cranelift emits other, bigger frames
        config.cranelift_flag_set("has_sse41", "false")
    engine = wasmtime.Engine(config)
    store = wasmtime.Store(engine)
    store.set_fuel(10**9)
    instance = wasmtime.Instance(store, wasmtime.Module(engine, code), [])
    with pytest.raises(wasmtime.Trap):
        instance.exports(store)["go"](store)
    memory = instance.exports(store)["memory"]
    return int.from_bytes(memory.read(store, 0, 4), "little")


def test_the_stack_budget_makes_recursion_depth_the_same_on_every_cpu():
    from state import wasm_instrument
    raw = bytes(wasmtime.wat2wasm(RECURSE))
    # without the budget, how deep a recursion gets depends on the machine code for the CPU ...
    assert _depth_reached(raw, old_cpu=False) != _depth_reached(raw, old_cpu=True)
    # ... with it, the budget trips first, at the same depth everywhere
    limited = wasm_instrument.limit_stack(raw, wasm_instrument.scan_module(raw))
    depths = {_depth_reached(limited, old_cpu=False), _depth_reached(limited, old_cpu=True)}
    assert len(depths) == 1 and 0 < depths.pop() < 2000


@pytest.mark.parametrize("wat_text, rule", [
    ("(module (memory (export \"memory\") 1) (func (export \"f\") " + "(block " * 65 + ")" * 65 + "))",
     "nests blocks deeper than 64"),
    ('(module (memory (export "memory") 1) (global (export "qenex$stack") (mut i32) (i32.const 0)) '
     '(func (export "f")))', "reserved"),
])
def test_compile_bombs_and_reserved_names_are_refused_before_compiling(wat_text, rule):
    assert rule in refused(bytes(wasmtime.wat2wasm(wat_text)))


def test_sixty_four_nested_loops_compile_fast_enough_to_be_priced():
    # the reviewer's bomb shape (deep loops, many live locals) within the bound: it compiles
    locals_ = " ".join(["(local i64)"] * 256)
    body = "".join("(loop " for _ in range(64)) + "".join(
        f"(local.set {i} (i64.add (local.get {i}) (local.get {(i + 1) % 256})))" for i in range(256)) + ")" * 64
    code = bytes(wasmtime.wat2wasm(f'(module (memory (export "memory") 1) (func (export "f") {locals_} {body}))'))
    vm.inspect_code(code, **LIMITS)
