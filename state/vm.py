"""The WebAssembly engine of contracts: one deterministic wasmtime ``Engine`` per process.

Consensus-critical.  Every honest node must run the same module to the same
result and burn the same fuel, so the engine's configuration is fixed here
and nowhere else (``engine_config``), and tested (tests/test_contracts_vm.py):

* fuel metering on (``consume_fuel``): one unit per executed operator, the
  gas a contract's own code pays; the host API charges the rest
  (state.contracts);
* NaN canonicalisation on: float operations that produce a NaN produce the one
  canonical NaN, so the bit pattern does not depend on the CPU;
* every proposal that is non-deterministic or not needed off: threads and
  shared memory, SIMD and relaxed SIMD, bulk memory, multi-memory, memory64,
  tail calls, GC, typed function references, exceptions, wide arithmetic,
  custom page sizes and stack switching.  Reference types stay on: wasmtime
  50 refuses a configuration without them, and ``inspect_code`` refuses the
  reference-typed tables and instructions a module could use them for by
  validating against limits below;
* a bounded native stack for wasm (``MAX_WASM_STACK``); memory pages and
  table elements are bounded per store (``Store.set_limits``) and checked at
  deploy against the module's declared minimums;
* no WASI and no import but the host API (module ``qenex``, ``HOST_API``).

The exact wasmtime version is pinned (pyproject.toml): a new version may
change the fuel an operator costs, so upgrading it is a consensus change.

Modules are compiled from the code stored in state (never from serialized
artefacts) and kept in an in-memory cache by code hash (``ModuleCache``);
gas does not depend on the cache (it does not charge what a compile costs).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable

import ctypes
import struct

import wasmtime
from wasmtime import _ffi as ffi  # the pinned version's C API bindings: the hot paths below skip wrappers
from wasmtime import _func as wasmtime_func

from state import wasm_instrument
from state.crypto import sha256
from state.errors import StateInvariantBroken

WASM_PAGE = 65536
MAX_WASM_STACK = 2 * 1024 * 1024
# Before compiling, state.wasm_instrument reads every instruction and refuses what would make the
# compile cost far more than the code's size: control nesting deeper than 64, more than 50,000 locals in
# the module, more than 2,000 functions, any opcode outside the deterministic core.
STACK_EXPORT = wasm_instrument.STACK_EXPORT
HOST_MODULE = "qenex"
METHOD_MAX_LEN = 64

I32 = "i32"
I64 = "i64"

# The host API: (name, parameter types, result types).  The semantics are state.contracts'; the
# README documents the ABI.  Pointers and lengths are i32 (read as unsigned); amounts are u128
# little-endian in 16 bytes at a pointer, or u64 in an i64 for the *_u64 conveniences.
HOST_API: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "args_len": ((), (I32,)),
    "args_read": ((I32,), ()),
    "arg_count": ((), (I32,)),
    "arg_u64": ((I32,), (I64,)),
    "arg_u128": ((I32, I32), ()),
    "arg_bytes": ((I32, I32, I32), (I32,)),
    "arg_address": ((I32, I32), ()),
    "result_set": ((I32, I32), ()),
    "result_u64": ((I64,), ()),
    "storage_get": ((I32, I32, I32, I32), (I32,)),
    "storage_set": ((I32, I32, I32, I32), ()),
    "storage_remove": ((I32, I32), ()),
    "caller": ((I32,), ()),
    "self_address": ((I32,), ()),
    "block_height": ((), (I64,)),
    "block_time_ms": ((), (I64,)),
    "attached": ((I32, I32, I32), ()),
    "attached_u64": ((I32, I32), (I64,)),
    "balance": ((I32, I32, I32, I32), ()),
    "transfer": ((I32, I32, I32, I32), ()),
    "transfer_u64": ((I32, I32, I32, I64), ()),
    "emit": ((I32, I32, I32, I32), ()),
    "abort": ((I32, I32), ()),
    "call": ((I32, I32, I32, I32, I32, I32, I32, I32), (I32,)),
    "call_result_read": ((I32,), ()),
}

# The export that opts a contract in to being re-entered while it is already on the call stack.
REENTRANT_EXPORT = "qenex_reentrant"
INIT_METHOD = "init"


class CodeRefused(Exception):
    """A module may not be deployed: the reason names the rule (state.contracts wraps it)."""


def engine_config() -> wasmtime.Config:
    config = wasmtime.Config()
    config.consume_fuel = True
    config.cranelift_nan_canonicalization = True
    config.max_wasm_stack = MAX_WASM_STACK
    config.parallel_compilation = False  # one compile thread: the node's cores are the event loop's
    config.wasm_threads = False
    config.shared_memory = False
    config.wasm_simd = False
    config.wasm_relaxed_simd = False
    config.wasm_bulk_memory = False
    config.wasm_multi_memory = False
    config.wasm_memory64 = False
    config.wasm_tail_call = False
    config.wasm_gc = False
    config.wasm_function_references = False
    config.wasm_exceptions = False
    config.wasm_wide_arithmetic = False
    config.wasm_custom_page_sizes = False
    config.wasm_stack_switching = False
    config.wasm_component_model = False
    config.wasm_multi_value = True  # deterministic, and what compilers emit for multi-value returns
    config.cranelift_opt_level = "speed"
    # Reserve what the largest allowed memory needs (ContractParams.max_memory_pages <= 1024), not
    # wasmtime's 4 GiB per memory: eight nested instances must not depend on the host's address-space
    # limit (an mmap failure would otherwise read as a contract's trap on one node and not another).
    config.memory_reservation = 1024 * WASM_PAGE
    config.memory_reservation_for_growth = 0
    config.memory_guard_size = WASM_PAGE
    return config


_engine: wasmtime.Engine | None = None


def engine() -> wasmtime.Engine:
    """The process's one engine (built on first use).

    Contract code runs on one thread, the node's event loop (block execution and queries alike):
    state/ takes no locks and state.contracts keeps the running execution in a module global."""
    global _engine
    if _engine is None:
        _engine = wasmtime.Engine(engine_config())
    return _engine


# -- reading a module before compiling it: state.wasm_instrument ----------------------------


def _valtype(name: str) -> wasmtime.ValType:
    return wasmtime.ValType.i32() if name == I32 else wasmtime.ValType.i64()


def _type_names(types: list[wasmtime.ValType]) -> tuple[str, ...]:
    return tuple(str(t) for t in types)


@dataclass(frozen=True, slots=True)
class CodeInfo:
    """What deploy learned of a module: its entry points and whether it may be re-entered."""

    methods: tuple[str, ...]
    has_init: bool
    reentrant: bool


def _is_method_name(name: str) -> bool:
    return (0 < len(name) <= METHOD_MAX_LEN and name.isascii()
            and (name[0].isalpha() or name[0] == "_") and all(c.isalnum() or c == "_" for c in name))


def inspect_code(code: bytes, *, max_memory_pages: int, max_table_elements: int) -> tuple[wasmtime.Module, CodeInfo]:
    """Validate ``code``, put its functions behind the deterministic stack budget
    (state.wasm_instrument.limit_stack) and compile that; raises CodeRefused with the rule it breaks."""
    try:
        shape = wasm_instrument.scan_module(code)
    except wasm_instrument.ModuleRefused as exc:
        raise CodeRefused(str(exc)) from None
    try:
        wasmtime.Module.validate(engine(), code)
    except wasmtime.WasmtimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid module"
        raise CodeRefused(f"module does not validate: {first[:200]}") from None
    try:
        module = wasmtime.Module(engine(), wasm_instrument.limit_stack(code, shape))
    except wasmtime.WasmtimeError as exc:  # a valid module's rewrite should compile; refuse it alike everywhere
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "invalid module"
        raise CodeRefused(f"module cannot be put behind the stack budget: {first[:200]}") from None
    for imp in module.imports:
        if imp.module != HOST_MODULE or imp.name not in HOST_API:
            raise CodeRefused(f"module imports {imp.module}.{imp.name}; only the {HOST_MODULE} host API is available")
        ty = imp.type
        if not isinstance(ty, wasmtime.FuncType):
            raise CodeRefused(f"import {imp.module}.{imp.name} must be a function")
        params, results = HOST_API[imp.name]
        if _type_names(ty.params) != params or _type_names(ty.results) != results:
            raise CodeRefused(f"import {imp.module}.{imp.name} has type {_type_names(ty.params)} -> "
                              f"{_type_names(ty.results)}, the host API's is {params} -> {results}")
    methods: list[str] = []
    memory_seen = reentrant = False
    for exp in module.exports:
        ty = exp.type
        if isinstance(ty, wasmtime.MemoryType):
            if exp.name != "memory":
                raise CodeRefused(f"module exports a memory named {exp.name!r}; only 'memory' is allowed")
            memory_seen = True
        elif isinstance(ty, wasmtime.GlobalType) and exp.name == STACK_EXPORT:
            continue  # the budget limit_stack added
        elif isinstance(ty, wasmtime.FuncType):
            if ty.params or ty.results:
                raise CodeRefused(f"exported function {exp.name!r} must take no parameters and return nothing "
                                  "(arguments and results cross through the host API)")
            if exp.name == REENTRANT_EXPORT:
                reentrant = True
            elif not _is_method_name(exp.name):
                raise CodeRefused(f"exported function name {exp.name!r} is not 1-{METHOD_MAX_LEN} characters of "
                                  "A-Z a-z 0-9 _ starting with a letter or _")
            else:
                methods.append(exp.name)
        else:
            raise CodeRefused(f"module exports {exp.name!r}, which is not a function or the memory")
    for ty in [*(i.type for i in module.imports), *(e.type for e in module.exports)]:
        if isinstance(ty, wasmtime.MemoryType):
            pages = ty.limits.min
            if pages > max_memory_pages:
                raise CodeRefused(f"memory starts at {pages} pages, more than the limit of {max_memory_pages}")
        if isinstance(ty, wasmtime.TableType):
            if ty.limits.min > max_table_elements:
                raise CodeRefused(f"table starts at {ty.limits.min} elements, more than {max_table_elements}")
    if not memory_seen:
        raise CodeRefused("module must export its memory as 'memory'")
    if not any(m != INIT_METHOD for m in methods):
        raise CodeRefused("module exports no entry point (a function other than init)")
    return module, CodeInfo(tuple(sorted(methods)), INIT_METHOD in methods, reentrant)


class Compiled:
    """A module the cache holds: the compiled code, what deploy learned of it (``info``), the length of
    the code it was compiled from (what an instance is charged for), and, made on its first run, its
    imports resolved against the host linker once (a wasmtime InstancePre), so an instantiation does
    not look up every import by name again."""

    __slots__ = ("module", "info", "code_len", "_pre", "_pre_linker")

    def __init__(self, module: wasmtime.Module, info: CodeInfo, code_len: int) -> None:
        self.module = module
        self.info = info
        self.code_len = code_len
        self._pre: object | None = None  # a POINTER(wasmtime_instance_pre_t), owned
        self._pre_linker: wasmtime.Linker | None = None

    def pre(self, linker: wasmtime.Linker) -> int:
        """The address of this module's InstancePre for ``linker`` (made on first use)."""
        if self._pre is None:
            pre = ctypes.POINTER(ffi.wasmtime_instance_pre_t)()
            error = ffi.wasmtime_linker_instantiate_pre(linker.ptr(), self.module.ptr(), ctypes.byref(pre))
            if error:
                raise wasmtime.WasmtimeError._from_ptr(error)
            self._pre, self._pre_linker = pre, linker
        elif self._pre_linker is not linker:
            raise StateInvariantBroken("a compiled module is instantiated through a second linker")
        return _address(self._pre)

    def __del__(self) -> None:
        if self._pre is not None:
            ffi.wasmtime_instance_pre_delete(self._pre)
            self._pre = None


def compile_code(code: bytes, *, max_memory_pages: int, max_table_elements: int) -> Compiled:
    """``inspect_code`` as a cache entry.  Safe off the loop thread (node.rpc_contracts compiles a cold
    query's module in a worker): it touches no cache, and the engine must exist already (``engine()``
    on the loop first), so two threads never make two engines."""
    if _engine is None:
        raise StateInvariantBroken("compile_code before the engine was made (call vm.engine() first)")
    module, info = inspect_code(code, max_memory_pages=max_memory_pages, max_table_elements=max_table_elements)
    return Compiled(module, info, len(code))


class ModuleCache:
    """Compiled modules by code hash, least recently used out first (compiled from state's code only)."""

    def __init__(self, capacity: int = 1024) -> None:
        self.capacity = capacity
        self._modules: OrderedDict[bytes, Compiled] = OrderedDict()
        self.compiles = 0

    @staticmethod
    def _key(code_hash: bytes, max_memory_pages: int, max_table_elements: int) -> bytes:
        return code_hash + max_memory_pages.to_bytes(4, "big") + max_table_elements.to_bytes(4, "big")

    def lookup(self, code_hash: bytes, *, max_memory_pages: int, max_table_elements: int) -> Compiled | None:
        """The module compiled from the code whose hash is ``code_hash``, if it is cached."""
        key = self._key(code_hash, max_memory_pages, max_table_elements)
        hit = self._modules.get(key)
        if hit is not None:
            self._modules.move_to_end(key)
        return hit

    def get(self, code: bytes, *, code_hash: bytes | None = None, max_memory_pages: int,
            max_table_elements: int) -> Compiled:
        code_hash = code_hash or sha256(code)
        hit = self.lookup(code_hash, max_memory_pages=max_memory_pages, max_table_elements=max_table_elements)
        if hit is not None:
            return hit
        engine()
        compiled = compile_code(code, max_memory_pages=max_memory_pages, max_table_elements=max_table_elements)
        return self.put(code_hash, compiled, max_memory_pages=max_memory_pages, max_table_elements=max_table_elements)

    def put(self, code_hash: bytes, compiled: Compiled, *, max_memory_pages: int, max_table_elements: int) -> Compiled:
        """Cache ``compiled`` (made by ``compile_code`` from the code of ``code_hash``, perhaps in another
        thread); the module already cached under that hash, if one is, stays and is returned."""
        key = self._key(code_hash, max_memory_pages, max_table_elements)
        held = self._modules.get(key)
        if held is not None:
            return held
        self.compiles += 1
        self._modules[key] = compiled
        while len(self._modules) > self.capacity:
            self._modules.popitem(last=False)
        return compiled


MODULES = ModuleCache()


# -- running ---------------------------------------------------------------------------

HostDispatch = Callable[[str], Callable[..., object]]

# The hot path (fuel, linear memory, host calls, calling an export) calls libwasmtime through
# prototypes of our own that take plain integer addresses.  wasmtime-py's bindings type-check every
# pointer argument and its wrappers build Val and FuncType objects per call: on a token transfer
# (eight host calls) that was over half of the contract's run.  The prototypes are made from the same
# library (the pinned version's C API), never by changing wasmtime-py's own.
_VP = ctypes.c_void_p


def _c(name: str, restype: object, *argtypes: object) -> Callable[..., object]:
    return ctypes.CFUNCTYPE(restype, *argtypes)((name, ffi.dll))  # type: ignore[arg-type,call-overload]


_get_fuel = _c("wasmtime_context_get_fuel", _VP, _VP, _VP)
_set_fuel = _c("wasmtime_context_set_fuel", _VP, _VP, ctypes.c_uint64)
_memory_data = _c("wasmtime_memory_data", _VP, _VP, _VP)
_memory_size = _c("wasmtime_memory_data_size", ctypes.c_size_t, _VP, _VP)
_func_call = _c("wasmtime_func_call_unchecked", _VP, _VP, _VP, _VP, ctypes.c_size_t, _VP)
_define_func = _c("wasmtime_linker_define_func_unchecked", _VP, _VP, ctypes.c_char_p, ctypes.c_size_t,
                  ctypes.c_char_p, ctypes.c_size_t, _VP, _VP, _VP, _VP)
# (env, caller, args and results, their count) -> a wasm_trap_t* or NULL
_CALLBACK_TYPE = ctypes.CFUNCTYPE(_VP, _VP, _VP, _VP, ctypes.c_size_t)
_SLOT = ctypes.sizeof(ffi.wasmtime_val_raw_t)  # 16: each argument and result is one raw slot


def _address(pointer: object) -> int:
    return ctypes.cast(pointer, _VP).value or 0  # type: ignore[arg-type]


def context_of(store: wasmtime.Store) -> int:
    """The address of a store's context (valid while the store lives)."""
    return _address(store._context())


# Host functions go through wasmtime's "unchecked" callback: the arguments arrive as raw i32/i64 slots,
# read in one copy, instead of wasmtime-py's generic trampoline, which boxes every value in a Val and a
# Caller.  An exception raised by a host function is handed to wasmtime-py's own re-raise slot, so the
# export's call (call_export, or an instantiation's start function) raises that very exception.
_CALLBACKS: list[object] = []  # the C callbacks must outlive the linker


@ctypes.CFUNCTYPE(None, ctypes.c_void_p)
def _no_finalizer(_data: int) -> None:
    return None


def _raw_callback(dispatch: HostDispatch, name: str, params: tuple[str, ...], results: tuple[str, ...]) -> object:
    if len(params) * _SLOT > 255 or len(results) > 1:
        raise ValueError(f"host function {name}: the fast path takes at most 15 parameters and one result")
    # each slot is a 16-byte union; an i32 is its low 4 bytes, an i64 its low 8 (little-endian)
    unpack = struct.Struct("<" + "".join("q8x" if p == I64 else "i12x" for p in params)).unpack
    size = len(params) * _SLOT
    result = (ctypes.c_int64 if results[0] == I64 else ctypes.c_int32) if results else None

    def callback(_env: int, _caller: int, slots: int, _n: int) -> int | None:
        try:
            value = dispatch(name)(*unpack(ctypes.string_at(slots, size))) if size else dispatch(name)()
            if result is not None:
                result.from_address(slots).value = value  # type: ignore[arg-type]
            return None
        except BaseException as exc:  # noqa: BLE001 - re-raised by the export's caller
            wasmtime_func.LAST_EXCEPTION = exc
            return _address(wasmtime.Trap("host call failed")._consume())

    return _CALLBACK_TYPE(callback)


def build_linker(dispatch: HostDispatch) -> wasmtime.Linker:
    """A linker whose host functions call ``dispatch(name)(*args)``: the caller binds the running frame."""
    linker = wasmtime.Linker(engine())
    module = HOST_MODULE.encode()
    for name, (params, results) in HOST_API.items():
        ty = wasmtime.FuncType([_valtype(p) for p in params], [_valtype(r) for r in results])
        callback = _raw_callback(dispatch, name, params, results)
        _CALLBACKS.append(callback)
        raw_name = name.encode()
        error = _define_func(_address(linker.ptr()), module, len(module), raw_name, len(raw_name),
                             _address(ty.ptr()), _address(callback), None, _address(_no_finalizer))
        if error:
            raise wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))
    return linker


_pre_instantiate = _c("wasmtime_instance_pre_instantiate", _VP, _VP, _VP, _VP, _VP)
_export_get = _c("wasmtime_instance_export_get", ctypes.c_bool, _VP, _VP, ctypes.c_char_p, ctypes.c_size_t, _VP)
_EXTERN_FUNC = ffi.WASMTIME_EXTERN_FUNC.value
_EXTERN_MEMORY = ffi.WASMTIME_EXTERN_MEMORY.value


def _raise_failure(error: int | None, trap: int | None) -> None:
    """What wasmtime-py raises for a call's or an instantiation's outcome: a host function's exception
    first, else a WasmtimeError or the Trap."""
    if error:  # owned by the WasmtimeError made first, so re-raising a host exception frees it too
        failure = wasmtime.WasmtimeError._from_ptr(ctypes.cast(error, ctypes.POINTER(ffi.wasmtime_error_t)))
        wasmtime_func.maybe_raise_last_exn()
        raise failure
    if trap:
        raised = wasmtime.Trap._from_ptr(ctypes.cast(trap, ctypes.POINTER(ffi.wasm_trap_t)))
        wasmtime_func.maybe_raise_last_exn()
        raise raised


def instantiate(linker: wasmtime.Linker, compiled: Compiled, context: int) -> ffi.wasmtime_instance_t:
    """An instance of ``compiled`` in the store whose context is ``context``; raises what
    ``Linker.instantiate`` would (a store limit is a WasmtimeError, a start function's trap a Trap)."""
    instance = ffi.wasmtime_instance_t()
    trap = ctypes.c_void_p()
    error = _pre_instantiate(compiled.pre(linker), context, ctypes.addressof(instance), ctypes.addressof(trap))
    if error or trap.value:
        _raise_failure(error, trap.value)  # type: ignore[arg-type]
    return instance


def _export_item(context: int, instance: ffi.wasmtime_instance_t, name: str) -> ffi.wasmtime_extern_t | None:
    item = ffi.wasmtime_extern_t()
    raw = name.encode()
    if not _export_get(context, ctypes.addressof(instance), raw, len(raw), ctypes.addressof(item)):
        return None
    return item


def export(context: int, instance: ffi.wasmtime_instance_t, name: str) -> object | None:
    """One export of ``instance`` by name, as wasmtime-py's object (for the rare paths)."""
    item = _export_item(context, instance, name)
    return None if item is None else wasmtime._extern.wrap_extern(item)


_NO_ARGS = ffi.wasmtime_val_raw_t()  # a method takes and returns nothing; the C API still gets a valid slot
_NO_ARGS_ADDRESS = ctypes.addressof(_NO_ARGS)


def call_method(context: int, instance: ffi.wasmtime_instance_t, name: str) -> None:
    """Call the exported ``() -> ()`` function ``name`` (deploy checked every method's type); raises
    what wasmtime-py's call would: a host function's exception, a Trap or a WasmtimeError."""
    item = _export_item(context, instance, name)
    if item is None or item.kind != _EXTERN_FUNC:
        raise StateInvariantBroken(f"method {name!r} that deploy found is not an exported function")
    trap = ctypes.c_void_p()
    error = _func_call(context, ctypes.addressof(item.of.func), _NO_ARGS_ADDRESS, 0, ctypes.addressof(trap))
    if error or trap.value:
        _raise_failure(error, trap.value)  # type: ignore[arg-type]


class Fuel:
    """Get and set a store's fuel (see the prototypes above)."""

    __slots__ = ("_context", "_cell", "_cell_address")

    def __init__(self, context: int) -> None:
        self._context = context
        self._cell = ctypes.c_uint64(0)
        self._cell_address = ctypes.addressof(self._cell)

    def get(self) -> int:
        if _get_fuel(self._context, self._cell_address):
            raise StateInvariantBroken("the store does not meter fuel")
        return self._cell.value

    def set(self, fuel: int) -> None:
        if _set_fuel(self._context, fuel):
            raise StateInvariantBroken("the store does not meter fuel")


def new_store(fuel: int, *, max_memory_pages: int, max_table_elements: int) -> wasmtime.Store:
    store = wasmtime.Store(engine())
    store.set_limits(memory_size=max_memory_pages * WASM_PAGE, table_elements=max_table_elements,
                     instances=1, tables=1, memories=1)
    store.set_fuel(fuel)
    return store


STACK_BUDGET = wasm_instrument.STACK_BUDGET


_STORE_LIMITS = ("exceeds table limits", "exceeds memory limits", "resource limit exceeded")


def is_store_limit(error: wasmtime.WasmtimeError) -> bool:
    """An instantiation refused by the store's limits (the contract's doing, the same on every node)."""
    text = str(error)
    return any(phrase in text for phrase in _STORE_LIMITS)


def is_out_of_fuel(trap: wasmtime.Trap) -> bool:
    return trap.trap_code == wasmtime.TrapCode.OUT_OF_FUEL


def trap_summary(trap: BaseException) -> str:
    """The first line of a trap's message: its kind, without the backtrace's addresses."""
    if isinstance(trap, wasmtime.Trap) and trap.trap_code is not None:
        return str(trap.trap_code.name).lower()
    text = str(trap).strip().splitlines()
    return (text[0] if text else type(trap).__name__)[:200]


class MemoryView:
    """Bounds-checked reads and writes of one instance's linear memory.

    The base address and size are read again on every access: ``memory.grow`` may move the memory."""

    __slots__ = ("_context", "_item", "_memory_address")

    def __init__(self, context: int, instance: ffi.wasmtime_instance_t) -> None:
        item = _export_item(context, instance, "memory")
        if item is None or item.kind != _EXTERN_MEMORY:
            raise StateInvariantBroken("a deployed module has no exported memory")  # deploy requires one
        self._context = context
        self._item = item  # owns the wasmtime_memory_t whose address is used
        self._memory_address = ctypes.addressof(item.of.memory)

    def size(self) -> int:
        return _memory_size(self._context, self._memory_address)  # type: ignore[no-any-return]

    def read(self, ptr: int, length: int) -> bytes:
        ptr &= 0xFFFFFFFF
        length &= 0xFFFFFFFF
        size = _memory_size(self._context, self._memory_address)
        if ptr + length > size:  # type: ignore[operator]
            raise IndexError(f"read of {length} bytes at {ptr} is outside the memory of {size} bytes")
        if not length:
            return b""
        return ctypes.string_at(_memory_data(self._context, self._memory_address) + ptr, length)  # type: ignore[operator]

    def write(self, ptr: int, data: bytes) -> None:
        ptr &= 0xFFFFFFFF
        size = _memory_size(self._context, self._memory_address)
        if ptr + len(data) > size:  # type: ignore[operator]
            raise IndexError(f"write of {len(data)} bytes at {ptr} is outside the memory of {size} bytes")
        if data:
            ctypes.memmove(_memory_data(self._context, self._memory_address) + ptr, data, len(data))  # type: ignore[operator]
