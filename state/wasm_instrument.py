"""Reading and rewriting a WebAssembly binary before it is compiled: bounds and a deterministic stack.

Consensus-critical (state.vm uses it at deploy and at every compile).

``scan_module`` decodes every function body's instructions (the MVP set plus
multi-value block types and the reference-type instructions wasmtime keeps
on) and refuses, before Cranelift sees the module, what would make compiling
it cost far more than its size: control nesting deeper than
``MAX_NESTING`` (64), more than ``MAX_FUNCTION_LOCALS`` (256) locals in a
function or ``MAX_MODULE_LOCALS`` in the module, more than ``MAX_FUNCTIONS``
functions.  Within these bounds the slowest module measured here compiles
at about 3.5 µs per byte (42 ms for 12 KiB; 1,000 nested loops over 400 live
locals took 246 s before the bounds).  An opcode outside that set is refused too
(SIMD, threads, bulk memory, and anything unknown).

Function types are held to ``MAX_TYPE_PARAMS`` parameters and
``MAX_TYPE_RESULTS`` results, and a start function is refused.

``limit_stack`` makes stack exhaustion deterministic.  wasmtime traps when
the native stack that compiled wasm uses passes ``max_wasm_stack``, and that
depends on the machine code Cranelift emits for the CPU it runs on: the same
recursion could succeed on one validator and trap on another.  So every
defined function ``i`` is moved to a new index, and index ``i`` becomes a
small wrapper that takes the function's *weight* from a budget global,
traps (``unreachable``) if the budget goes negative, calls the moved body,
and gives the weight back.  Every call (direct, indirect, export; a start function is refused)
goes through the wrapper, so the deepest call chain a contract can build is
a pure function of its code.  A function's weight is an upper bound of its
native frame: 16 bytes for each parameter, local and byte of body (the
operand stack cannot be deeper than the body is long) plus 256, so the
budget (``STACK_BUDGET``, half of ``max_wasm_stack``) trips first on every
CPU.  The budget is one for the whole transaction, not per instance: a
nested call's instance starts with what its caller's budget has left, less
``NESTED_CALL_WEIGHT`` for the host's frames in between (state.contracts),
so eight, or sixty-four, nested contracts together stay within it.  The budget global is exported as ``STACK_EXPORT`` so a trap can be told
apart from the contract's own ``unreachable``.
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_NESTING = 64
MAX_MODULE_LOCALS = 50_000
MAX_TYPE_PARAMS = 32  # a call's arguments and results live in its frames: bounded so the weight bounds them
MAX_TYPE_RESULTS = 4
MAX_FUNCTION_LOCALS = 256  # register allocation grows with live locals times nesting: the compile-time bound
MAX_FUNCTIONS = 2_000
STACK_BUDGET = 1024 * 1024  # half of state.vm.MAX_WASM_STACK: every chain of frames stays far inside the native limit
NESTED_CALL_WEIGHT = 32 * 1024  # the host's native frames between a caller's instance and its callee's
STACK_EXPORT = "qenex$stack"
_FRAME_BYTES = 16
_FRAME_BASE = 256


class ModuleRefused(Exception):
    """The bytes break a rule of this module; the message names it."""


# -- LEB128 -------------------------------------------------------------------------


def _u(data: bytes, pos: int, limit: int = 35) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > limit:
            raise ModuleRefused("malformed module: truncated or overlong LEB128 integer")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return result, pos


def _skip_s(data: bytes, pos: int, limit: int) -> int:
    return _u(data, pos, limit)[1]


def leb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def sleb(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        done = (value == 0 and not byte & 0x40) or (value == -1 and byte & 0x40)
        out.append(byte | (0 if done else 0x80))
        if done:
            return bytes(out)


def _vec_bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    n, pos = _u(data, pos)
    if pos + n > len(data):
        raise ModuleRefused("malformed module: a name runs past its section")
    return data[pos:pos + n], pos + n


# -- sections --------------------------------------------------------------------------


def sections(code: bytes) -> list[tuple[int, bytes]]:
    if len(code) < 8 or code[:4] != b"\0asm":
        raise ModuleRefused("not a WebAssembly binary module (missing the \\0asm header)")
    if code[4:8] != b"\x01\0\0\0":
        raise ModuleRefused("unsupported WebAssembly binary version")
    out = []
    pos = 8
    while pos < len(code):
        sid = code[pos]
        size, pos = _u(code, pos + 1)
        if pos + size > len(code):
            raise ModuleRefused("malformed module: a section runs past the end")
        out.append((sid, code[pos:pos + size]))
        pos += size
    return out


# Opcodes with no immediate (MVP numeric, parametric, control without labels).
_PLAIN = set(range(0x45, 0xC5)) | {0x00, 0x01, 0x05, 0x0F, 0x1A, 0x1B, 0xD1}
_MEMARG = set(range(0x28, 0x3F))
_ONE_INDEX = {0x0C, 0x0D, 0x10, 0x20, 0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0xD2}
_FC_PLAIN = set(range(0, 8))
_FC_ONE = {13, 15, 16, 17}
_FC_TWO = {12, 14}


def _blocktype(body: bytes, pos: int) -> int:
    if pos >= len(body):
        raise ModuleRefused("malformed module: truncated block type")
    if body[pos] == 0x40 or body[pos] in (0x7F, 0x7E, 0x7D, 0x7C, 0x70, 0x6F):
        return pos + 1
    return _skip_s(body, pos, 35)  # a type index (s33)


def scan_body(body: bytes, pos: int) -> int:
    """Walk one function's instructions from ``pos``; the deepest control nesting reached."""
    depth = deepest = 0
    end = len(body)
    while pos < end:
        op = body[pos]
        pos += 1
        if op in _PLAIN:
            continue
        if op in (0x02, 0x03, 0x04):
            pos = _blocktype(body, pos)
            depth += 1
            if depth > MAX_NESTING:
                raise ModuleRefused(f"a function nests blocks deeper than {MAX_NESTING}")
            deepest = max(deepest, depth)
        elif op == 0x0B:
            if depth == 0:
                if pos != end:
                    raise ModuleRefused("malformed module: code after a function's end")
                return deepest
            depth -= 1
        elif op in _MEMARG:
            pos = _u(body, _u(body, pos)[1])[1]
        elif op in _ONE_INDEX:
            pos = _u(body, pos)[1]
        elif op == 0x0E:
            n, pos = _u(body, pos)
            if n > len(body):
                raise ModuleRefused("malformed module: br_table longer than its body")
            for _ in range(n + 1):
                pos = _u(body, pos)[1]
        elif op == 0x11:
            pos = _u(body, _u(body, pos)[1])[1]
        elif op == 0x1C:
            n, pos = _u(body, pos)
            pos += n
        elif op in (0x3F, 0x40, 0xD0):
            pos += 1
        elif op == 0x41:
            pos = _skip_s(body, pos, 35)
        elif op == 0x42:
            pos = _skip_s(body, pos, 70)
        elif op == 0x43:
            pos += 4
        elif op == 0x44:
            pos += 8
        elif op == 0xFC:
            sub, pos = _u(body, pos)
            if sub in _FC_PLAIN:
                continue
            if sub in _FC_ONE:
                pos = _u(body, pos)[1]
            elif sub in _FC_TWO:
                pos = _u(body, _u(body, pos)[1])[1]
            else:
                raise ModuleRefused(f"instruction 0xfc {sub} (bulk memory) is not available")
        else:
            raise ModuleRefused(f"opcode 0x{op:02x} is not available (SIMD, threads or an unknown proposal)")
    raise ModuleRefused("malformed module: a function body does not end")


@dataclass(frozen=True, slots=True)
class Function:
    type_index: int
    params: int
    results: int
    locals: int
    body: bytes  # the whole entry: local declarations and instructions


@dataclass(frozen=True, slots=True)
class Shape:
    imported_functions: int
    globals: int
    functions: tuple[Function, ...]


def _func_types(payload: bytes) -> list[tuple[int, int]]:
    """(parameters, results) of the type section's function types (block types use them too)."""
    count, pos = _u(payload, 0)
    params = []
    for _ in range(count):
        if pos >= len(payload) or payload[pos] != 0x60:
            raise ModuleRefused("malformed module: a type is not a function type")
        n, pos = _u(payload, pos + 1)
        pos += n
        m, pos = _u(payload, pos)
        pos += m
        if n > MAX_TYPE_PARAMS or m > MAX_TYPE_RESULTS:
            raise ModuleRefused(f"a function type has {n} parameters and {m} results; at most {MAX_TYPE_PARAMS} "
                                f"and {MAX_TYPE_RESULTS} are allowed")
        params.append((n, m))
    return params


def _imported_functions(payload: bytes) -> tuple[int, int]:
    """(function imports, global imports) of the import section."""
    count, pos = _u(payload, 0)
    funcs = globs = 0
    for _ in range(count):
        _, pos = _vec_bytes(payload, pos)
        _, pos = _vec_bytes(payload, pos)
        if pos >= len(payload):
            raise ModuleRefused("malformed module: truncated import")
        kind = payload[pos]
        pos += 1
        if kind == 0:
            pos = _u(payload, pos)[1]
            funcs += 1
        elif kind == 3:
            pos += 2
            globs += 1
        else:  # tables and memories: state.vm refuses the import itself; only its framing matters here
            if kind == 1:
                pos += 1
            flags, pos = _u(payload, pos)
            pos = _u(payload, pos)[1]
            if flags & 1:
                pos = _u(payload, pos)[1]
    return funcs, globs


def _function_count(payload: bytes) -> tuple[int, int]:
    """The count opening the function or code section, bounded before anything loops over it."""
    count, pos = _u(payload, 0)
    if count > MAX_FUNCTIONS:
        raise ModuleRefused(f"module has {count} functions, more than the limit of {MAX_FUNCTIONS}")
    return count, pos


def scan_module(code: bytes) -> Shape:
    """Decode ``code``'s functions and refuse what the rules of this module forbid."""
    parts = sections(code)
    types: list[tuple[int, int]] = []
    imported = imported_globals = 0
    declared: list[int] = []
    globals_defined = 0
    bodies: list[bytes] = []
    for sid, payload in parts:
        if sid == 1:
            types = _func_types(payload)
        elif sid == 2:
            imported, imported_globals = _imported_functions(payload)
        elif sid == 3:
            count, pos = _function_count(payload)
            for _ in range(count):
                index, pos = _u(payload, pos)
                declared.append(index)
        elif sid == 6:
            globals_defined = _u(payload, 0)[0]
        elif sid == 8:
            # a start function would run before the node can hand a nested call's instance the budget its
            # caller left (and it may not use the host API anyway): a contract initialises in init
            raise ModuleRefused("a start function is not allowed (export init instead)")
        elif sid == 7:
            count, pos = _u(payload, 0)
            for _ in range(count):
                name, pos = _vec_bytes(payload, pos)
                if name == STACK_EXPORT.encode():
                    raise ModuleRefused(f"the export name {STACK_EXPORT!r} is reserved")
                pos = _u(payload, pos + 1)[1]
        elif sid == 10:
            count, pos = _function_count(payload)
            for _ in range(count):
                size, pos = _u(payload, pos)
                if pos + size > len(payload):
                    raise ModuleRefused("malformed module: a function body runs past the code section")
                bodies.append(payload[pos:pos + size])
                pos += size
    if len(bodies) != len(declared):
        raise ModuleRefused("malformed module: function and code sections disagree")
    total = 0
    functions = []
    for type_index, body in zip(declared, bodies):
        groups, pos = _u(body, 0)
        count = 0
        for _ in range(groups):
            n, pos = _u(body, pos)
            pos += 1
            count += n
            total += n
            if count > MAX_FUNCTION_LOCALS:
                raise ModuleRefused(f"a function declares more than {MAX_FUNCTION_LOCALS} locals")
            if total > MAX_MODULE_LOCALS:
                raise ModuleRefused(f"module declares more than {MAX_MODULE_LOCALS} locals")
        scan_body(body, pos)
        if type_index >= len(types):
            raise ModuleRefused("malformed module: a function names a type that does not exist")
        params, results = types[type_index]
        functions.append(Function(type_index, params, results, count, body))
    return Shape(imported, imported_globals + globals_defined, tuple(functions))


def weight(function: Function) -> int:
    """An upper bound of the native stack a call of ``function`` takes: its frame and its wrapper's.

    Each parameter, result, local and byte of body (the operand stack, and the arguments and results of
    the calls it makes, cannot outgrow the body's bytes; a call's results at most MAX_TYPE_RESULTS
    slots) counts 16 bytes, the results of the calls it makes MAX_TYPE_RESULTS slots each call site
    (bounded again by the body), and 256 more for the return address, saved registers and the wrapper."""
    slots = function.params + 2 * function.results + function.locals + len(function.body) * (1 + MAX_TYPE_RESULTS // 2)
    return min(STACK_BUDGET + 1, _FRAME_BYTES * slots + _FRAME_BASE)


# The order known sections must appear in (the data count section, 12, sits between elements and code).
_RANK = {1: 1, 2: 2, 3: 3, 4: 4, 5: 5, 6: 6, 7: 7, 8: 8, 9: 9, 12: 10, 10: 11, 11: 12}


def _section(sid: int, payload: bytes) -> bytes:
    return bytes([sid]) + leb(len(payload)) + payload


def _vec(items: list[bytes]) -> bytes:
    return leb(len(items)) + b"".join(items)


def limit_stack(code: bytes, shape: Shape) -> bytes:
    """``code`` with every defined function behind a wrapper that spends a deterministic stack budget."""
    n = len(shape.functions)
    first = shape.imported_functions
    budget = shape.globals  # the new global's index
    wrappers = []
    for k, function in enumerate(shape.functions):
        w = weight(function)
        body = (b"\x00"  # no locals
                + b"\x23" + leb(budget) + b"\x41" + sleb(w) + b"\x6b" + b"\x24" + leb(budget)
                + b"\x23" + leb(budget) + b"\x41\x00" + b"\x48" + b"\x04\x40\x00\x0b"
                + b"".join(b"\x20" + leb(i) for i in range(function.params))
                + b"\x10" + leb(first + n + k)
                + b"\x23" + leb(budget) + b"\x41" + sleb(w) + b"\x6a" + b"\x24" + leb(budget)
                + b"\x0b")
        wrappers.append(leb(len(body)) + body)
    originals = [leb(len(f.body)) + f.body for f in shape.functions]
    types = [leb(f.type_index) for f in shape.functions]
    new_global = b"\x7f\x01" + b"\x41" + sleb(STACK_BUDGET) + b"\x0b"
    export = _vec_bytes_of(STACK_EXPORT.encode()) + b"\x03" + leb(budget)
    out = [code[:8]]
    seen_global = seen_export = False
    for sid, payload in sections(code):
        if sid == 0:
            continue  # custom sections (names) would name the wrong functions now
        if _RANK.get(sid, 99) > _RANK[6] and not seen_global:
            out.append(_section(6, _vec([new_global])))
            seen_global = True
        if _RANK.get(sid, 99) > _RANK[7] and not seen_export:
            out.append(_section(7, _vec([export])))
            seen_export = True
        if sid == 3:
            count, pos = _u(payload, 0)
            out.append(_section(3, leb(count * 2) + payload[pos:] + b"".join(types)))
        elif sid == 6:
            count, pos = _u(payload, 0)
            out.append(_section(6, leb(count + 1) + payload[pos:] + new_global))
            seen_global = True
        elif sid == 7:
            count, pos = _u(payload, 0)
            out.append(_section(7, leb(count + 1) + payload[pos:] + export))
            seen_export = True
        elif sid == 10:
            out.append(_section(10, _vec(wrappers + originals)))
        else:
            out.append(_section(sid, payload))
    if not seen_global:
        out.append(_section(6, _vec([new_global])))
    if not seen_export:
        out.append(_section(7, _vec([export])))
    return b"".join(out)


def _vec_bytes_of(data: bytes) -> bytes:
    return leb(len(data)) + data
