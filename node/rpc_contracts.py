"""JSON-RPC methods of WebAssembly contracts (issue 11): records, storage and read-only calls.

| method | params | result |
|---|---|---|
| ``qenex_getContract`` | address, height? | ``{address, height, code_hash, code_size, deployer, created_height, storage_entries, storage_bytes, methods, reentrant, balances: {SYMBOL: "units"}}`` |
| ``qenex_getContractState`` | address, key_prefix?, limit? (1-1000, default 100), start_after?, height? | ``{address, height, entries: [{key, value}], next}``: storage in key order, keys and values 0x-hex; ``next`` is the last key listed when more may follow (pass it back as ``start_after``), else null |
| ``qenex_callContract`` | contract, method, args?, height? | ``{contract, method, height, output, result, gas_used, gas_limit}``: ``method`` run read-only on the committed state, with at most ``[rpc] contract_query_gas`` gas |

``args`` is JSON converted to the canonical msgpack a contract reads
(``node.contract_values``): integers stay integers, ``"0x"`` + hex digits is
bytes, other strings text, arrays arrays, objects maps; omitted, it is the
empty array.  ``output`` is the method's result as 0x-hex msgpack and
``result`` that value as JSON (bytes as 0x-hex, integers past 2**53 as
decimal strings), null when the method set none.  A query runs as the zero
address, attaches nothing, and may not write, transfer, emit or call a
method that does (each fails the query).

Errors: -32040 this chain has no contracts (its genesis has no contracts
section); -32041 no contract at that address (``data: {address, height}``);
-32042 the query failed: ``data: {code, reason, gas_used, gas_limit}`` with
the ContractFailed code (``out_of_gas``, ``trap``, ``aborted``,
``unknown_method``, ``host_call_failed``, ``unknown_contract`` when a
contract the queried one calls does not exist, ...), its reason and the gas
it used; -32602 a bad
parameter; heights as ``node.rpc_params.state_at`` (-32004 above the head,
-32006 older than the node keeps).

Contract code runs on the event loop's thread, like block execution
(state.vm: the engine is single-threaded by design), so a query holds the
loop for at most its gas: the cap bounds it (10,000,000 gas is a few tens of
milliseconds), and a batch pays 20 work units for each.  A contract's code
is compiled on first use (about 20 ms for 12 KiB; state.vm keeps 1,024
modules), by a call and by ``qenex_getContract`` (its method list), which
costs a batch 10 units.
"""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Callable

from node.contract_values import ContractValueError, args_from_json, output_to_json
from node.jsonrpc import RPCError, brief, charge, invalid_params
from node.rpc_context import RpcContext
from node.rpc_params import hex0x, parse_address, parse_hex, parse_int, state_at
from state.app import Application
from state import vm
from state.contracts import MAX_STORAGE_KEY, ContractQueries, ContractStore
from state.crypto import address_to_text
from state.errors import ContractFailed, ExecutionFailed, OutOfGas, StateError, UnknownContract

CONTRACTS_DISABLED = -32040
NO_CONTRACT = -32041
QUERY_FAILED = -32042

STATE_PAGE_MAX = 1000
STATE_PAGE_DEFAULT = 100
STATE_ENTRIES_PER_UNIT = 50  # a page of 1,000 entries of 4 KiB values is ~8 MB of hex: the batch pays for it
_METHOD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def parse_method(value: Any, name: str = "method") -> str:
    """A method name as transactions carry it: 1-64 characters of A-Z a-z 0-9 _, not starting with a digit."""
    if not isinstance(value, str) or _METHOD.fullmatch(value) is None:
        raise invalid_params(f"{name} must be 1-64 characters of A-Z a-z 0-9 _ starting with a letter or _, "
                             f"got {brief(value)}")
    return value


def _key(value: Any, name: str) -> bytes:
    raw = parse_hex(value, name)
    if len(raw) > MAX_STORAGE_KEY:
        raise invalid_params(f"{name} is {len(raw)} bytes; storage keys are at most {MAX_STORAGE_KEY}")
    return raw


def _queries(app: Application, height: Any) -> tuple[ContractQueries, int]:
    if app.params.contracts is None:
        raise RPCError(CONTRACTS_DISABLED, "this chain has no contracts (its genesis has no contracts section)")
    view = state_at(app, height)
    queries = app.contracts(view.height)
    assert queries is not None  # params.contracts is set
    return queries, view.height


def _no_contract(address: bytes, height: int) -> RPCError:
    text = address_to_text(address)
    return RPCError(NO_CONTRACT, f"no contract is deployed at {text} (height {height})",
                    {"address": text, "height": height})


def _query_failed(method: str, exc: ExecutionFailed, gas_limit: int) -> RPCError:
    gas_used = exc.gas_used if isinstance(exc, ContractFailed) else None
    if gas_used is None and isinstance(exc, OutOfGas):  # state sets it since 55c265a; all of it if not
        gas_used = gas_limit
    return RPCError(QUERY_FAILED, f"query of {method} failed: {exc.reason}"[:300],
                    {"code": exc.code, "reason": exc.reason[:512], "gas_used": gas_used, "gas_limit": gas_limit})


# One worker compiles the modules of cold queries, so a batch of queries to contracts not in the module
# cache (up to 42 ms each for the largest code) does not hold the event loop, which consensus runs on.
_COMPILER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qenex-wasm-compile")


async def _warm(app: Application, contract: bytes) -> None:
    """Compile ``contract``'s module in the worker if the cache lacks it (the query then finds it).

    Best effort: an address with no contract, or code that does not compile, is left to the query,
    which answers it as it always does; a contract the query calls in turn still compiles inline."""
    params = app.params.contracts
    if params is None:
        return
    store = ContractStore(app.at(app.height).store)
    try:
        record = store.record(contract)
        if record is None:
            return
        limits = {"max_memory_pages": params.max_memory_pages, "max_table_elements": params.max_table_elements}
        if vm.MODULES.lookup(record.code_hash, **limits) is not None:
            return
        code = store.code(record.code_hash)
    except StateError:
        return
    vm.engine()  # made here, on the loop, never by the worker
    try:
        compiled = await asyncio.get_running_loop().run_in_executor(_COMPILER, partial(vm.compile_code, code, **limits))
    except vm.CodeRefused:
        return
    vm.MODULES.put(record.code_hash, compiled, **limits)


def contract_methods(ctx: RpcContext) -> dict[str, Callable[..., Any]]:
    app = ctx.app

    def get_contract(address: Any, height: Any = None) -> dict[str, Any]:
        who = parse_address(address)
        q, at = _queries(app, height)
        info = q.info(who)
        if info is None:
            raise _no_contract(who, at)
        return {
            "address": address_to_text(info.address),
            "height": at,
            "code_hash": hex0x(info.code_hash),
            "code_size": info.code_size,
            "deployer": address_to_text(info.deployer),
            "created_height": info.created_height,
            "storage_entries": info.storage_entries,
            "storage_bytes": info.storage_bytes,
            "methods": list(info.methods),
            "reentrant": info.reentrant,
            "balances": {symbol: str(amount) for symbol, amount in info.balances.items()},
        }

    def get_contract_state(address: Any, key_prefix: Any = None, limit: Any = STATE_PAGE_DEFAULT,
                           start_after: Any = None, height: Any = None) -> dict[str, Any]:
        who = parse_address(address)
        prefix = b"" if key_prefix is None else _key(key_prefix, "key_prefix")
        count = parse_int(limit, "limit", 1, STATE_PAGE_MAX)
        after = None if start_after is None else _key(start_after, "start_after")
        q, at = _queries(app, height)
        if ContractStore(q.store).record(who) is None:
            raise _no_contract(who, at)
        entries, last = q.storage(who, prefix=prefix, start_after=after, limit=count)
        charge(len(entries) // STATE_ENTRIES_PER_UNIT)
        return {
            "address": address_to_text(who),
            "height": at,
            "entries": [{"key": hex0x(k), "value": hex0x(v)} for k, v in entries],
            "next": None if last is None else hex0x(last),
        }

    async def call_contract(contract: Any, method: Any, args: Any = None, height: Any = None) -> dict[str, Any]:
        who = parse_address(contract, "contract")
        name = parse_method(method)
        try:
            raw_args = args_from_json(args)
        except ContractValueError as exc:
            raise invalid_params(str(exc)) from None
        await _warm(app, who)  # before the state view: the head may move while the worker compiles
        q, at = _queries(app, height)
        gas_limit = ctx.contract_query_gas
        try:
            result = q.call(who, name, raw_args, gas_limit=gas_limit)
        except UnknownContract as exc:
            if exc.address == address_to_text(who):  # the queried contract; one it calls is the query's failure
                raise _no_contract(who, at) from None
            raise _query_failed(name, exc, gas_limit) from None
        except ExecutionFailed as exc:  # a ContractFailed (its gas_used known), or another effect's refusal
            raise _query_failed(name, exc, gas_limit) from None
        return {
            "contract": address_to_text(who),
            "method": name,
            "height": at,
            "output": hex0x(result.output),
            "result": output_to_json(result.output),
            "gas_used": result.gas_used,
            "gas_limit": gas_limit,
        }

    return {
        "qenex_getContract": get_contract,
        "qenex_getContractState": get_contract_state,
        "qenex_callContract": call_contract,
    }
