"""WebAssembly contracts as native state: records, code, storage, the host API and its gas.

Consensus-critical.  A contract is a record under ``x + address`` (code hash,
deployer, creation height, storage size), its code once per hash under
``w``, and its storage under ``c + address + key``; all three are state, in
the app hash.  Its balances are ordinary balances of its address.

A deploy or call runs in an ``Execution`` on the child overlay of its
transaction (state.execution): any failure (a trap, ``abort``, running out of
gas, a refused host call, a failing nested call) raises a ``ContractFailed``
and the overlay, with every write, transfer, event and nested call in it, is
dropped.  Gas is the wasm fuel the code burns (one unit per operator,
state.vm) plus the host API's schedule below, all charged from the same
tank before the work it pays for is done: a host call first pays for the
bytes it is about to move, then moves them.

Host calls see the frame on top of the call stack.  A nested ``call`` runs the
callee in a new instance with the caller's remaining gas; the callee may not
be a contract already on the stack unless it exports ``qenex_reentrant``; the
stack is at most ``max_call_depth`` frames and a transaction creates at most
``max_calls_per_tx`` instances.  A query (``ContractQueries.call``) runs any
method read-only: the calls that would change state fail.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import wasmtime

from state import keys, vm, wasm_instrument
from state.amounts import MAX_AMOUNT, QNX
from state.codec import decode, encode
from state.crypto import ADDRESS_LEN, Address, address_from_text, address_to_text, domain_digest, sha256
from state.errors import (
    BalanceOverflow,
    CallDepthExceeded,
    ContractAborted,
    ContractFailed,
    ContractTrap,
    DecodeError,
    HostCallFailed,
    InsufficientBalance,
    InvalidCode,
    InvalidKey,
    OutOfGas,
    Reentrancy,
    StateInvariantBroken,
    UnknownContract,
    UnknownMethod,
)
from state.genesis import ContractParams
from state.abc import KVReader
from state.ledger import Ledger, Overlay, read_account
from state.payloads import MAX_ARGS_BYTES, check_symbol
from state.staking import MODULE_ACCOUNTS
from state.transactions import MAX_EVENT_DATA, MAX_EVENT_TOPIC, MAX_EVENTS, MAX_OUTPUT_BYTES, Event

DOMAIN_CONTRACT_ADDRESS = b"QENEX/contract-address/v1"
CONTRACT_RECORD_VERSION = 1
MAX_STORAGE_KEY = 128
MAX_STORAGE_VALUE = 4096
MAX_ABORT_MESSAGE = 256

# -- the gas schedule (documented in the README's contract ABI) ---------------------------
# Intrinsic gas, charged before any code runs (and checked statelessly against gas_limit):
GAS_DEPLOY = 100_000
GAS_DEPLOY_CODE_BYTE = 1_000  # validating, compiling and storing a byte of code (README: compiling can cost more)
GAS_CALL_TX = 20_000
GAS_ARG_BYTE = 30
# During execution:
GAS_INSTANCE = 20_000  # a new instance (the transaction's own, and each nested call) ...
GAS_INSTANCE_CODE_BYTE = 100  # ... plus this per byte of the instantiated code
GAS_HOST_CALL = 5_000  # every host call, before its own costs
GAS_PER_BYTE = 3  # every byte a host call copies in or out of linear memory
GAS_STORAGE_READ = 2_000
GAS_STORAGE_WRITE = 5_000  # plus a read (the old value's size is accounted)
GAS_STORAGE_BYTE = 30  # per byte of key and value written
GAS_STORAGE_GROWTH = 1_000  # per byte by which the contract's storage grows (never refunded)
GAS_TRANSFER = 10_000
GAS_EVENT = 2_000
GAS_EVENT_BYTE = 30
GAS_NESTED_ARG_BYTE = 2_000  # decoding a nested call's arguments (a transaction's were decoded at admission)

_U64 = 2**64 - 1


def contract_address(deployer: bytes, nonce: int) -> Address:
    """The address of the contract ``deployer`` deploys with the transaction of ``nonce``."""
    return Address(bytes(domain_digest(DOMAIN_CONTRACT_ADDRESS, encode([bytes(deployer), nonce])))[:ADDRESS_LEN])


def deploy_intrinsic_gas(code: bytes, init_args: bytes) -> int:
    return GAS_DEPLOY + GAS_DEPLOY_CODE_BYTE * len(code) + GAS_ARG_BYTE * len(init_args)


def call_intrinsic_gas(args: bytes) -> int:
    return GAS_CALL_TX + GAS_ARG_BYTE * len(args)


@dataclass(frozen=True, slots=True)
class ContractRecord:
    code_hash: bytes
    deployer: Address
    created_height: int
    storage_entries: int
    storage_bytes: int  # keys and values
    methods: tuple[str, ...]  # what deploy found (state.vm.CodeInfo), so reading them needs no compile
    reentrant: bool

    def to_wire(self) -> list[Any]:
        return [CONTRACT_RECORD_VERSION, self.code_hash, self.deployer, self.created_height, self.storage_entries,
                self.storage_bytes, list(self.methods), self.reentrant]


class ContractStore:
    """Typed access to contract state through a reader (and, to write, an Overlay)."""

    def __init__(self, store: KVReader) -> None:
        self.store = store

    def _put(self, key: bytes, value: bytes | None) -> None:
        if not isinstance(self.store, Overlay):
            raise StateInvariantBroken("state writes go through an Overlay")
        self.store.put(key, value)

    def record(self, address: bytes) -> ContractRecord | None:
        key = keys.contract_key(address)
        raw = self.store.get(key)
        if raw is None:
            return None
        try:
            wire = decode(raw)
        except DecodeError as exc:
            raise StateInvariantBroken(f"corrupt contract record under 0x{key.hex()}: {exc}") from exc
        if not isinstance(wire, list) or len(wire) != 8 or wire[0] != CONTRACT_RECORD_VERSION:
            raise StateInvariantBroken(f"contract record under 0x{key.hex()} has the wrong shape")
        return ContractRecord(wire[1], Address(wire[2]), wire[3], wire[4], wire[5], tuple(wire[6]), wire[7])

    def put_record(self, address: bytes, record: ContractRecord) -> None:
        self._put(keys.contract_key(address), encode(record.to_wire()))

    def code(self, code_hash: bytes) -> bytes:
        raw = self.store.get(keys.contract_code_key(code_hash))
        if raw is None:
            raise StateInvariantBroken(f"contract code 0x{code_hash.hex()} is missing")
        return raw

    def has_code(self, code_hash: bytes) -> bool:
        return self.store.get(keys.contract_code_key(code_hash)) is not None

    def put_code(self, code_hash: bytes, code: bytes) -> None:
        self._put(keys.contract_code_key(code_hash), code)

    def get(self, address: bytes, key: bytes) -> bytes | None:
        return self.store.get(keys.contract_storage_key(address, key))

    def put(self, address: bytes, key: bytes, value: bytes | None) -> None:
        self._put(keys.contract_storage_key(address, key), value)


# -- execution ------------------------------------------------------------------------------


def _to_i64(value: int) -> int:
    """An unsigned 64-bit value as wasm's i64 (two's complement)."""
    return value - 2**64 if value >= 2**63 else value


class _Frame:
    __slots__ = ("contract", "caller", "attached", "args", "args_value", "store", "context", "instance", "fuel",
                 "memory", "result", "call_result", "instantiating")

    def __init__(self, contract: bytes, caller: bytes, attached: dict[str, int], args: bytes) -> None:
        self.contract = contract
        self.caller = caller
        self.attached = attached
        self.args = args
        self.args_value: Any = None
        self.store: wasmtime.Store | None = None
        self.context = 0  # the store's context's address
        self.instance: Any = None  # the raw instance (state.vm.instantiate)
        self.fuel: vm.Fuel | None = None
        self.memory: vm.MemoryView | None = None  # made on the first host call that reads or writes it
        self.result = b""
        self.call_result = b""
        self.instantiating = True


def _budget(frame: _Frame) -> wasmtime.Global:
    """The instance's stack budget global (state.wasm_instrument), looked up when it is needed: on a
    nested call and on a trap."""
    budget = vm.export(frame.context, frame.instance, vm.STACK_EXPORT)
    if not isinstance(budget, wasmtime.Global):
        raise StateInvariantBroken("an instrumented module has no stack budget export")
    return budget


# The execution whose instance is running (contract code runs on one thread: state.vm.engine).
_CURRENT: list["Execution"] = []


def _dispatch(name: str) -> Callable[..., object]:
    if not _CURRENT:
        raise StateInvariantBroken(f"host call {name} outside an execution")
    return getattr(_CURRENT[-1], "h_" + name)  # type: ignore[no-any-return]


_linker: wasmtime.Linker | None = None


def _get_linker() -> wasmtime.Linker:
    global _linker
    if _linker is None:
        _linker = vm.build_linker(_dispatch)
    return _linker


@dataclass(frozen=True, slots=True)
class Outcome:
    """A successful run: the gas it used, the top frame's output, the events in emission order."""

    gas_used: int
    output: bytes
    events: tuple[Event, ...]


class Execution:
    """One transaction's (or one query's) run of contract code over ``ledger``."""

    def __init__(self, ledger: Ledger, params: ContractParams, *, height: int, time_ms: int, gas_limit: int,
                 read_only: bool = False, cache: vm.ModuleCache = vm.MODULES) -> None:
        self.ledger = ledger
        self.contracts = ContractStore(ledger.store)
        self.params = params
        self.height = height
        self.time_ms = time_ms
        self.gas_limit = gas_limit
        self.gas_left = gas_limit  # while no instance runs; an instance's store holds it otherwise
        self.read_only = read_only
        self.cache = cache
        self.frames: list[_Frame] = []
        self.events: list[Event] = []
        self.instances = 0
        self._records: dict[bytes, ContractRecord] = {}  # storage counters of the contracts written
        self._seen: dict[bytes, ContractRecord] = {}  # records read and not written (a cache)

    # -- gas --------------------------------------------------------------------------

    def _remaining(self) -> int:
        if self.frames and self.frames[-1].fuel is not None:
            return self.frames[-1].fuel.get()  # type: ignore[union-attr]
        return self.gas_left

    def charge(self, gas: int) -> None:
        fuel = self.frames[-1].fuel if self.frames else None
        left = fuel.get() if fuel is not None else self.gas_left
        if gas > left:
            if fuel is not None:
                fuel.set(0)
            self.gas_left = 0
            raise OutOfGas(self.gas_limit)
        if fuel is not None:
            fuel.set(left - gas)
        else:
            self.gas_left = left - gas

    @property
    def gas_used(self) -> int:
        return self.gas_limit - self._remaining()

    # -- entry points -----------------------------------------------------------------

    def deploy(self, deployer: bytes, nonce: int, code: bytes, init_args: bytes,
               attached: tuple[tuple[str, int], ...]) -> tuple[Address, Outcome]:
        """Store ``code`` as a new contract of ``deployer`` and run its ``init``; raises ContractFailed
        (whose ``gas_used`` is always set)."""
        return self._gas_known(self._deploy, deployer, nonce, code, init_args, attached)

    def call(self, caller: bytes, contract: bytes, method: str, args: bytes,
             attached: tuple[tuple[str, int], ...] = ()) -> Outcome:
        """Run ``method`` of ``contract`` for ``caller`` (a transaction's sender or a query's); raises
        ContractFailed (whose ``gas_used`` is always set)."""
        return self._gas_known(self._call, caller, contract, method, args, attached)

    def _gas_known(self, run: Callable[..., Any], *args: Any) -> Any:
        """``run(*args)``; a ContractFailed raised before any instance recorded its gas gets it here."""
        try:
            return run(*args)
        except ContractFailed as exc:
            if exc.gas_used is None:
                exc.gas_used = self.gas_used
            raise

    def _deploy(self, deployer: bytes, nonce: int, code: bytes, init_args: bytes,
                attached: tuple[tuple[str, int], ...]) -> tuple[Address, Outcome]:
        self.charge(deploy_intrinsic_gas(code, init_args))
        if len(code) > self.params.max_code_bytes:
            raise InvalidCode(f"code of {len(code)} bytes exceeds max_code_bytes {self.params.max_code_bytes}")
        address = contract_address(deployer, nonce)
        if self.contracts.record(address) is not None:  # a hash collision: never in practice
            raise InvalidCode(f"a contract already exists at {address_to_text(address)}")
        code_hash = sha256(code)
        try:
            compiled = self.cache.get(code, code_hash=code_hash, max_memory_pages=self.params.max_memory_pages,
                                      max_table_elements=self.params.max_table_elements)
        except vm.CodeRefused as exc:
            raise InvalidCode(str(exc)) from None
        info = compiled.info
        if not self.contracts.has_code(code_hash):
            self.contracts.put_code(code_hash, code)
        record = ContractRecord(code_hash, Address(deployer), self.height, 0, 0, info.methods, info.reentrant)
        self.contracts.put_record(address, record)
        self._records[address] = record
        self._move_attached(deployer, address, attached)
        frame = _Frame(address, deployer, dict(attached), init_args)
        self._run(frame, compiled, vm.INIT_METHOD if info.has_init else None)
        return address, self._finish(frame)

    def _call(self, caller: bytes, contract: bytes, method: str, args: bytes,
              attached: tuple[tuple[str, int], ...]) -> Outcome:
        self.charge(call_intrinsic_gas(args))
        compiled = self._load(contract, method)
        self._move_attached(caller, contract, attached)
        frame = _Frame(contract, caller, dict(attached), args)
        self._run(frame, compiled, method)
        return self._finish(frame)

    def _finish(self, frame: _Frame) -> Outcome:
        for address, record in sorted(self._records.items()):
            self.contracts.put_record(address, record)
        return Outcome(self.gas_used, frame.result, tuple(self.events))

    def _load(self, contract: bytes, method: str) -> vm.Compiled:
        record = self._record(contract)
        limits = {"max_memory_pages": self.params.max_memory_pages,
                  "max_table_elements": self.params.max_table_elements}
        compiled = self.cache.lookup(record.code_hash, **limits)
        if compiled is not None:  # the same charge as below: the cache holds the code's length
            self.charge(GAS_INSTANCE + GAS_INSTANCE_CODE_BYTE * compiled.code_len)
        else:
            code = self.contracts.code(record.code_hash)
            self.charge(GAS_INSTANCE + GAS_INSTANCE_CODE_BYTE * len(code))
            try:
                compiled = self.cache.get(code, code_hash=record.code_hash, **limits)
            except vm.CodeRefused as exc:  # the chain's limits were met at deploy and cannot change
                raise StateInvariantBroken(f"stored contract code no longer compiles: {exc}") from exc
        if method == vm.INIT_METHOD or method not in compiled.info.methods:
            raise UnknownMethod(address_to_text(contract), method)
        return compiled

    def _record(self, contract: bytes) -> ContractRecord:
        record = self._records.get(contract) or self._seen.get(contract)
        if record is None:
            record = self.contracts.record(contract)
            if record is None:
                raise UnknownContract(address_to_text(contract))
            self._seen[contract] = record
        return record

    def _move_attached(self, source: bytes, contract: bytes, attached: tuple[tuple[str, int], ...]) -> None:
        for symbol, amount in attached:
            if self.read_only:
                raise HostCallFailed("call", "a query cannot attach tokens")
            self._transfer(source, contract, symbol, amount, "attach")

    def _transfer(self, source: bytes, to: bytes, symbol: str, amount: int, call: str) -> None:
        if self.ledger.token(symbol) is None:
            raise HostCallFailed(call, f"unknown token {symbol}")
        if to in MODULE_ACCOUNTS:
            raise HostCallFailed(call, f"{address_to_text(to)} is the staking {MODULE_ACCOUNTS[to]} account")
        if self.ledger.store.get(keys.pool_account_key(to)) is not None:
            raise HostCallFailed(call, f"{address_to_text(to)} is a pool account")
        try:
            self.ledger.debit(source, symbol, amount)
            self.ledger.credit(to, symbol, amount)
        except (InsufficientBalance, BalanceOverflow) as exc:
            raise HostCallFailed(call, f"{address_to_text(source)}: {exc}") from None

    def _run(self, frame: _Frame, compiled: vm.Compiled, method: str | None) -> None:
        if len(self.frames) >= self.params.max_call_depth:
            raise CallDepthExceeded("call depth", self.params.max_call_depth)
        if self.instances >= self.params.max_calls_per_tx:
            raise CallDepthExceeded("contract instances in one transaction", self.params.max_calls_per_tx)
        self.instances += 1
        parent = self.frames[-1] if self.frames else None
        fuel = self._remaining()
        store = vm.new_store(fuel, max_memory_pages=self.params.max_memory_pages,
                             max_table_elements=self.params.max_table_elements)
        frame.store = store
        frame.context = context = vm.context_of(store)
        frame.fuel = vm.Fuel(context)
        self.frames.append(frame)
        _CURRENT.append(self)
        try:
            try:
                frame.instance = vm.instantiate(_get_linker(), compiled, context)
                if parent is not None:  # one stack budget for the whole call chain, less the host's frames
                    left = _budget(parent).value(parent.store) - wasm_instrument.NESTED_CALL_WEIGHT
                    if left < 0:
                        raise CallDepthExceeded("the wasm call stack (state.wasm_instrument's budget)",
                                                vm.STACK_BUDGET)
                    _budget(frame).set_value(store, left)
                frame.instantiating = False
                if method is not None:
                    vm.call_method(context, frame.instance, method)
            except wasmtime.Trap as trap:
                if vm.is_out_of_fuel(trap):
                    raise OutOfGas(self.gas_limit) from None
                if frame.instance is not None and _budget(frame).value(store) < 0:
                    failure: ContractFailed = CallDepthExceeded("the wasm call stack (state.wasm_instrument's budget)",
                                                                vm.STACK_BUDGET)
                else:
                    failure = ContractTrap(address_to_text(frame.contract), vm.trap_summary(trap))
                # wasmtime saves fuel to the store only at calls and some traps, so what the code burnt
                # before a trap is not known exactly: a trap in the contract's own code costs the whole limit.
                failure.gas_used = self.gas_limit
                raise failure from None
            except wasmtime.WasmtimeError as exc:  # instantiation refused
                if not vm.is_store_limit(exc):  # not the contract's doing (the host's resources): halt, not fork
                    raise StateInvariantBroken(f"instantiating a contract failed on this host: {exc}") from exc
                raise ContractTrap(address_to_text(frame.contract), vm.trap_summary(exc)) from None
        except ContractFailed as exc:
            if exc.gas_used is None:
                exc.gas_used = self.gas_limit if isinstance(exc, OutOfGas) else self.gas_limit - frame.fuel.get()
            raise
        finally:
            _CURRENT.pop()
            self.frames.pop()
            left = frame.fuel.get()
            if parent is not None and parent.fuel is not None:
                parent.fuel.set(left)
            else:
                self.gas_left = left
            # drop the instance's references now: a store reserves its memory until it is freed, and a
            # failure's traceback would otherwise keep it alive until the garbage collector runs
            frame.store = frame.memory = frame.fuel = frame.instance = None
            frame.context = 0
            del store

    # -- host API helpers -------------------------------------------------------------

    def _frame(self, call: str) -> _Frame:
        frame = self.frames[-1]
        if frame.instantiating:
            raise HostCallFailed(call, "host calls are not available while the module is instantiated "
                                       "(a start function)")
        return frame

    def _memory(self) -> vm.MemoryView:
        frame = self.frames[-1]
        if frame.memory is None:
            frame.memory = vm.MemoryView(frame.context, frame.instance)
        return frame.memory

    def _read(self, call: str, ptr: int, length: int) -> bytes:
        try:
            return self._memory().read(ptr, length)
        except IndexError as exc:
            raise HostCallFailed(call, str(exc)) from None

    def _write(self, call: str, ptr: int, data: bytes) -> None:
        try:
            self._memory().write(ptr, data)
        except IndexError as exc:
            raise HostCallFailed(call, str(exc)) from None

    def _bounded(self, call: str, what: str, length: int, limit: int) -> int:
        length &= 0xFFFFFFFF
        if length > limit:
            raise HostCallFailed(call, f"{what} of {length} bytes exceeds the limit of {limit}")
        return length

    def _begin(self, call: str, extra: int = 0) -> _Frame:
        frame = self._frame(call)
        self.charge(GAS_HOST_CALL + extra)
        return frame

    def _writable(self, call: str) -> None:
        if self.read_only:
            raise HostCallFailed(call, "a query is read-only")

    def _symbol(self, call: str, ptr: int, length: int) -> str:
        length = self._bounded(call, "token symbol", length, 12)
        self.charge(GAS_PER_BYTE * length)
        raw = self._read(call, ptr, length)
        try:
            return check_symbol(raw.decode("ascii"))
        except (UnicodeDecodeError, DecodeError):
            raise HostCallFailed(call, f"token symbol {raw!r} is not 1-12 characters of A-Z and 0-9") from None

    def _address(self, call: str, ptr: int) -> bytes:
        return self._read(call, ptr, ADDRESS_LEN)

    def _amount(self, call: str, ptr: int) -> int:
        return int.from_bytes(self._read(call, ptr, 16), "little")

    def _arg(self, call: str, index: int | None) -> Any:
        """Element ``index`` (an i32, read unsigned) of the arguments array; None: the whole value."""
        frame = self._frame(call)
        if frame.args_value is None:
            if len(self.frames) > 1:
                self.charge(GAS_NESTED_ARG_BYTE * len(frame.args))
            try:
                value = decode(frame.args, max_bytes=MAX_ARGS_BYTES, max_objects=MAX_ARGS_BYTES)
            except DecodeError as exc:  # transactions' args were checked; a nested call's are here
                raise HostCallFailed(call, f"arguments are not canonical msgpack: {exc}") from None
            frame.args_value = (value,)
        value = frame.args_value[0]
        if index is None:
            return value
        index &= 0xFFFFFFFF
        if not isinstance(value, list):
            raise HostCallFailed(call, "the arguments are not an array")
        if index >= len(value):
            raise HostCallFailed(call, f"argument {index} is missing ({len(value)} given)")
        return value[index]

    # -- the host API (state.vm.HOST_API has the signatures) ----------------------------

    def h_args_len(self) -> int:
        return len(self._begin("args_len").args)

    def h_args_read(self, ptr: int) -> None:
        frame = self._begin("args_read", GAS_PER_BYTE * len(self.frames[-1].args))
        self._write("args_read", ptr, frame.args)

    def h_arg_count(self) -> int:
        self._begin("arg_count")
        value = self._arg("arg_count", None)
        if not isinstance(value, list):
            raise HostCallFailed("arg_count", "the arguments are not an array")
        return len(value)

    def h_arg_u64(self, index: int) -> int:
        self._begin("arg_u64")
        value = self._arg("arg_u64", index)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _U64:
            raise HostCallFailed("arg_u64", f"argument {index} is not an integer in [0, 2^64)")
        return _to_i64(value)

    def h_arg_u128(self, index: int, ptr: int) -> None:
        self._begin("arg_u128", GAS_PER_BYTE * 16)
        value = self._arg("arg_u128", index)
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_AMOUNT:
            raise HostCallFailed("arg_u128", f"argument {index} is not an integer in [0, 2^128)")
        self._write("arg_u128", ptr, value.to_bytes(16, "little"))

    def h_arg_bytes(self, index: int, ptr: int, cap: int) -> int:
        self._begin("arg_bytes")
        value = self._arg("arg_bytes", index)
        if isinstance(value, str):
            value = value.encode()
        if not isinstance(value, bytes):
            raise HostCallFailed("arg_bytes", f"argument {index} is not bytes or text")
        out = value[:cap & 0xFFFFFFFF]
        self.charge(GAS_PER_BYTE * len(out))
        self._write("arg_bytes", ptr, out)
        return len(value)

    def h_arg_address(self, index: int, ptr: int) -> None:
        self._begin("arg_address", GAS_PER_BYTE * ADDRESS_LEN)
        value = self._arg("arg_address", index)
        if isinstance(value, str):
            try:
                value = address_from_text(value)
            except InvalidKey as exc:
                raise HostCallFailed("arg_address", f"argument {index}: {exc}") from None
        if not isinstance(value, bytes) or len(value) != ADDRESS_LEN:
            raise HostCallFailed("arg_address", f"argument {index} is not an address (20 bytes or qnx1 text)")
        self._write("arg_address", ptr, value)

    def h_result_set(self, ptr: int, length: int) -> None:
        """The result, as bytes: the ABI says canonical msgpack, but the chain does not decode it (a
        reader renders it only if it decodes), so a hostile result costs its copy and nothing more."""
        length = self._bounded("result_set", "result", length, MAX_OUTPUT_BYTES)
        frame = self._begin("result_set", GAS_PER_BYTE * length)
        frame.result = self._read("result_set", ptr, length)

    def h_result_u64(self, value: int) -> None:
        self._begin("result_u64").result = encode(value & _U64)

    def h_storage_get(self, key_ptr: int, key_len: int, value_ptr: int, value_cap: int) -> int:
        key_len = self._bounded("storage_get", "key", key_len, MAX_STORAGE_KEY)
        if not key_len:
            raise HostCallFailed("storage_get", "a storage key must not be empty")
        frame = self._begin("storage_get", GAS_STORAGE_READ + GAS_PER_BYTE * key_len)
        key = self._read("storage_get", key_ptr, key_len)
        value = self.contracts.get(frame.contract, key)
        if value is None:
            return -1
        out = value[:value_cap & 0xFFFFFFFF]
        self.charge(GAS_PER_BYTE * len(out))
        self._write("storage_get", value_ptr, out)
        return len(value)

    def h_storage_set(self, key_ptr: int, key_len: int, value_ptr: int, value_len: int) -> None:
        self._writable("storage_set")
        key_len = self._bounded("storage_set", "key", key_len, MAX_STORAGE_KEY)
        value_len = self._bounded("storage_set", "value", value_len, MAX_STORAGE_VALUE)
        if not key_len:
            raise HostCallFailed("storage_set", "a storage key must not be empty")
        frame = self._begin("storage_set", GAS_STORAGE_READ + GAS_STORAGE_WRITE
                            + (GAS_STORAGE_BYTE + GAS_PER_BYTE) * (key_len + value_len))
        key = self._read("storage_set", key_ptr, key_len)
        value = self._read("storage_set", value_ptr, value_len)
        old = self.contracts.get(frame.contract, key)
        grown = key_len + value_len - (0 if old is None else key_len + len(old))
        if grown > 0:
            self.charge(GAS_STORAGE_GROWTH * grown)
        self._account(frame.contract, 1 if old is None else 0, grown)
        self.contracts.put(frame.contract, key, value)

    def h_storage_remove(self, key_ptr: int, key_len: int) -> None:
        self._writable("storage_remove")
        key_len = self._bounded("storage_remove", "key", key_len, MAX_STORAGE_KEY)
        if not key_len:
            raise HostCallFailed("storage_remove", "a storage key must not be empty")
        frame = self._begin("storage_remove", GAS_STORAGE_READ + GAS_STORAGE_WRITE + GAS_PER_BYTE * key_len)
        key = self._read("storage_remove", key_ptr, key_len)
        old = self.contracts.get(frame.contract, key)
        if old is not None:
            self._account(frame.contract, -1, -(key_len + len(old)))
            self.contracts.put(frame.contract, key, None)

    def _account(self, contract: bytes, entries: int, size: int) -> None:
        record = self._record(contract)
        self._records[contract] = ContractRecord(record.code_hash, record.deployer, record.created_height,
                                                 record.storage_entries + entries, record.storage_bytes + size,
                                                 record.methods, record.reentrant)

    def h_caller(self, ptr: int) -> None:
        self._write("caller", ptr, self._begin("caller", GAS_PER_BYTE * ADDRESS_LEN).caller)

    def h_self_address(self, ptr: int) -> None:
        self._write("self_address", ptr, self._begin("self_address", GAS_PER_BYTE * ADDRESS_LEN).contract)

    def h_block_height(self) -> int:
        self._begin("block_height")
        return self.height

    def h_block_time_ms(self) -> int:
        self._begin("block_time_ms")
        return self.time_ms

    def h_attached(self, sym_ptr: int, sym_len: int, out_ptr: int) -> None:
        frame = self._begin("attached", GAS_PER_BYTE * 16)
        amount = frame.attached.get(self._symbol("attached", sym_ptr, sym_len), 0)
        self._write("attached", out_ptr, amount.to_bytes(16, "little"))

    def h_attached_u64(self, sym_ptr: int, sym_len: int) -> int:
        frame = self._begin("attached_u64")
        amount = frame.attached.get(self._symbol("attached_u64", sym_ptr, sym_len), 0)
        if amount > _U64:
            raise HostCallFailed("attached_u64", f"attached amount {amount} does not fit in 64 bits")
        return _to_i64(amount)

    def h_balance(self, addr_ptr: int, sym_ptr: int, sym_len: int, out_ptr: int) -> None:
        self._begin("balance", GAS_STORAGE_READ + GAS_PER_BYTE * (ADDRESS_LEN + 16))
        address = self._address("balance", addr_ptr)
        symbol = self._symbol("balance", sym_ptr, sym_len)
        self._write("balance", out_ptr, self.ledger.balance(address, symbol).to_bytes(16, "little"))

    def h_transfer(self, to_ptr: int, sym_ptr: int, sym_len: int, amount_ptr: int) -> None:
        self._transfer_from_contract("transfer", to_ptr, sym_ptr, sym_len, lambda: self._amount("transfer", amount_ptr),
                                     16)

    def h_transfer_u64(self, to_ptr: int, sym_ptr: int, sym_len: int, amount: int) -> None:
        self._transfer_from_contract("transfer_u64", to_ptr, sym_ptr, sym_len, lambda: amount & _U64, 0)

    def _transfer_from_contract(self, call: str, to_ptr: int, sym_ptr: int, sym_len: int,
                                amount_of: Callable[[], int], amount_bytes: int) -> None:
        self._writable(call)
        frame = self._begin(call, GAS_TRANSFER + GAS_PER_BYTE * (ADDRESS_LEN + amount_bytes))
        to = self._address(call, to_ptr)
        symbol = self._symbol(call, sym_ptr, sym_len)
        amount = amount_of()
        if amount:
            self._transfer(frame.contract, to, symbol, amount, call)

    def h_emit(self, topic_ptr: int, topic_len: int, data_ptr: int, data_len: int) -> None:
        self._writable("emit")
        topic_len = self._bounded("emit", "topic", topic_len, MAX_EVENT_TOPIC)
        data_len = self._bounded("emit", "data", data_len, MAX_EVENT_DATA)
        if not topic_len:
            raise HostCallFailed("emit", "an event topic must not be empty")
        if len(self.events) >= MAX_EVENTS:
            raise HostCallFailed("emit", f"a transaction emits at most {MAX_EVENTS} events")
        frame = self._begin("emit", GAS_EVENT + (GAS_EVENT_BYTE + GAS_PER_BYTE) * (topic_len + data_len))
        topic = self._read("emit", topic_ptr, topic_len)
        data = self._read("emit", data_ptr, data_len)
        self.events.append(Event(frame.contract, topic, data))

    def h_abort(self, msg_ptr: int, msg_len: int) -> None:
        msg_len = min(msg_len & 0xFFFFFFFF, MAX_ABORT_MESSAGE)
        frame = self._begin("abort", GAS_PER_BYTE * msg_len)
        message = self._read("abort", msg_ptr, msg_len).decode("utf-8", errors="replace")
        raise ContractAborted(address_to_text(frame.contract), message)

    def h_call(self, addr_ptr: int, method_ptr: int, method_len: int, args_ptr: int, args_len: int,
               sym_ptr: int, sym_len: int, amount_ptr: int) -> int:
        method_len = self._bounded("call", "method", method_len, vm.METHOD_MAX_LEN)
        args_len = self._bounded("call", "arguments", args_len, MAX_ARGS_BYTES)
        frame = self._begin("call", GAS_PER_BYTE * (ADDRESS_LEN + method_len + args_len))
        target = self._address("call", addr_ptr)
        method = self._read("call", method_ptr, method_len).decode("ascii", errors="replace")
        args = self._read("call", args_ptr, args_len)
        attached: tuple[tuple[str, int], ...] = ()
        if sym_len & 0xFFFFFFFF:
            symbol = self._symbol("call", sym_ptr, sym_len)
            self.charge(GAS_PER_BYTE * 16)
            amount = self._amount("call", amount_ptr)
            if amount:
                attached = ((symbol, amount),)
        compiled = self._load(target, method)
        if not compiled.info.reentrant and any(f.contract == target for f in self.frames):
            raise Reentrancy(address_to_text(target))
        self._move_attached(frame.contract, target, attached)
        callee = _Frame(target, frame.contract, dict(attached), args)
        self._run(callee, compiled, method)
        frame.call_result = callee.result
        return len(callee.result)

    def h_call_result_read(self, ptr: int) -> None:
        frame = self._begin("call_result_read", GAS_PER_BYTE * len(self.frames[-1].call_result))
        self._write("call_result_read", ptr, frame.call_result)


# -- read-only queries ------------------------------------------------------------------------


def _successor(prefix: bytes) -> bytes:
    """The smallest key above every key that starts with ``prefix``."""
    trimmed = prefix.rstrip(b"\xff")
    return trimmed[:-1] + bytes([trimmed[-1] + 1])


@dataclass(frozen=True, slots=True)
class ContractInfo:
    address: Address
    code_hash: bytes
    code_size: int
    deployer: Address
    created_height: int
    storage_entries: int
    storage_bytes: int
    methods: tuple[str, ...]
    reentrant: bool
    balances: dict[str, int]


@dataclass(frozen=True, slots=True)
class QueryResult:
    output: bytes
    gas_used: int


class ContractQueries:
    """Contract reads on a committed state (the head's store or a past height's)."""

    def __init__(self, store: Any, params: ContractParams, *, height: int, time_ms: int) -> None:
        self.store = store
        self.params = params
        self.height = height
        self.time_ms = time_ms

    def info(self, address: bytes) -> ContractInfo | None:
        contracts = ContractStore(self.store)
        record = contracts.record(address)
        if record is None:
            return None
        code_size = len(contracts.code(record.code_hash))
        balances = read_account(self.store, address).balances
        return ContractInfo(Address(address), record.code_hash, code_size, record.deployer, record.created_height,
                            record.storage_entries, record.storage_bytes, record.methods, record.reentrant,
                            balances)

    def storage(self, address: bytes, *, prefix: bytes = b"", start_after: bytes | None = None,
                limit: int = 100) -> tuple[list[tuple[bytes, bytes]], bytes | None]:
        """Up to ``limit`` (key, value) pairs under ``prefix`` in key order, after ``start_after``;
        and the last key returned when more may follow (the next page's ``start_after``)."""
        base = keys.contract_storage_prefix(address)
        start = base + prefix
        if start_after is not None and base + start_after >= start:
            start = base + start_after + b"\x00"
        out: list[tuple[bytes, bytes]] = []
        for key, value in self.store.iterate_range(start, _successor(base + prefix)):
            if len(out) == limit:
                return out, out[-1][0]
            out.append((key[len(base):], value))
        return out, None

    def call(self, address: bytes, method: str, args: bytes, *, gas_limit: int, caller: bytes = bytes(ADDRESS_LEN)
             ) -> QueryResult:
        """Run ``method`` read-only with at most ``gas_limit`` gas; raises ContractFailed."""
        execution = Execution(Ledger(Overlay(self.store)), self.params, height=self.height, time_ms=self.time_ms,
                              gas_limit=gas_limit, read_only=True)
        outcome = execution.call(caller, address, method, args)
        return QueryResult(outcome.output, outcome.gas_used)


__all__ = [
    "GAS_DEPLOY", "GAS_DEPLOY_CODE_BYTE", "GAS_CALL_TX", "GAS_ARG_BYTE", "GAS_INSTANCE", "GAS_INSTANCE_CODE_BYTE",
    "GAS_HOST_CALL", "GAS_PER_BYTE", "GAS_STORAGE_READ", "GAS_STORAGE_WRITE", "GAS_STORAGE_BYTE",
    "GAS_STORAGE_GROWTH", "GAS_TRANSFER", "GAS_EVENT", "GAS_EVENT_BYTE", "MAX_STORAGE_KEY", "MAX_STORAGE_VALUE",
    "contract_address", "deploy_intrinsic_gas", "call_intrinsic_gas", "ContractRecord", "ContractStore",
    "Execution", "Outcome", "ContractInfo", "QueryResult", "ContractQueries", "QNX",
]
