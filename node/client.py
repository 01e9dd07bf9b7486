"""The Python client of a qenexd node: ``Client`` (blocking) and ``AsyncClient`` (asyncio, aiohttp).

    from node.client import Client
    from node import txbuild

    with Client.connect("http://127.0.0.1:26601/") as node:
        print(node.status()["height"], node.account(address)["balances"])
        stx = node.sign(key, txbuild.transfer(bob, node.units("QNX", "12.5")))
        record = node.send_and_wait(stx)          # {"status": "ok", "height": ..., ...}

Both clients have the same methods.  Every read RPC is a method named after
its ``node.rpc_calls`` builder (``status``, ``account``, ``block``,
``transaction``, ``receipt``, ``proof``, ``validators``, ``mempool``,
``token``, ``params``, ``pool``, ``pools``, ``quote``, ``twap``,
``history``, ``position``, ``risk_score``, ``risk_model``,
``predict_price``, ``staking``, ``staking_validators``, ``evidence``,
``epoch``, ``contract``, ``contract_state``, ``call_contract``); results are
the node's JSON (``node.client_types``).
Transactions: build a payload (``node.txbuild``), ``sign`` it (chain id,
next pending nonce and the minimum fee come from the node in one batch
request), ``submit`` it, ``wait_final`` for its receipt, or
``send_and_wait`` for both.  ``batch`` sends many calls in one request.
``subscribe`` follows a topic over the node's WebSocket (``/ws``).

Errors: ``RPCClientError`` (the node answered with a JSON-RPC error:
``code``, ``message``, ``data``), ``RPCUnavailable`` (no usable answer:
unreachable, not answered within ``timeout`` (one deadline per call), cut,
not JSON, not JSON-RPC of the expected shape, over ``max_response_bytes``),
``TxTimeout``, ``SubscriptionClosed`` / ``SubscriberTooSlow`` (close code
4008).  All derive from ``ClientError`` (a ``NodeError``).

A ``Client`` keeps one keep-alive HTTP connection (calls from several
threads take turns); an ``AsyncClient`` one aiohttp session (a connection
pool) opened on first use and closed by ``aclose`` / ``async with``.
"""

from __future__ import annotations

import asyncio
import functools
import http.client
import io
import itertools
import json
import queue
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, AsyncIterator, Awaitable, Callable, Generic, Iterator, ParamSpec, Sequence
from typing import TypeVar, overload
from urllib.parse import urlsplit

from node import rpc_calls, txbuild
from node.client_types import Params, Status, TxRecord
from node.errors import NodeError
from node.rpc_calls import Call
from state.amounts import MAX_AMOUNT, MAX_DECIMALS, parse_amount
from state.crypto import PrivateKey, address_to_text, sha256
from state.errors import StateError
from state.payloads import MAX_UINT64, Payload, check_chain_id, check_uint, is_int
from state.transactions import SignedTransaction

if TYPE_CHECKING:
    import aiohttp

__all__ = [
    "ClientError", "RPCClientError", "RPCUnavailable", "TxTimeout", "SubscriptionClosed", "SubscriberTooSlow",
    "Notification", "Subscription", "Client", "AsyncClient", "Call", "DEFAULT_TIMEOUT_S",
    "DEFAULT_MAX_RESPONSE_BYTES", "raw_hex",
]

T = TypeVar("T")
P = ParamSpec("P")

DEFAULT_TIMEOUT_S = 10.0
# The largest answer a client reads (a full block of 5,000 batches is a few MB);
# anything longer is refused before it is parsed.
DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
ALREADY_KNOWN = -32003  # node.errors.AlreadyKnown
NOT_FOUND = -32004
TOO_SLOW_CLOSE_CODE = 4008
WAIT_POLL_S = 0.2


# -- errors --------------------------------------------------------------------------


WS_HEARTBEAT_S = 30.0  # ping the node this often on a subscription; no pong within half of it: closed


class ClientError(NodeError):
    """Root of everything a client raises."""


class RPCClientError(ClientError):
    """The node answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class RPCUnavailable(ClientError):
    """No usable answer: the node is unreachable, timed out, hung up, or answered something that is not JSON-RPC."""


class TxTimeout(ClientError):
    """A transaction was not final within the time allowed."""

    def __init__(self, tx_hash: str, timeout: float) -> None:
        super().__init__(f"transaction {tx_hash} not finalized within {timeout:.0f} s")
        self.tx_hash = tx_hash
        self.timeout = timeout


class SubscriptionClosed(ClientError):
    """The node closed a subscription's WebSocket (``code`` is the close code, None if the connection dropped)."""

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class SubscriberTooSlow(SubscriptionClosed):
    """The node dropped the subscription because notifications were read too slowly (close code 4008)."""


# -- JSON-RPC framing, shared by both clients -------------------------------------------


def _same_id(got: Any, want: int) -> bool:
    return type(got) is int and got == want  # not True for 1, nor 1.0


def _error_from(url: str, method: str, obj: Any) -> RPCClientError:
    """A JSON-RPC error object as RPCClientError; RPCUnavailable if it is not one (no int code, no text message)."""
    if not isinstance(obj, dict):
        raise RPCUnavailable(f"{url} answered {method} with a malformed error: {obj!r:.200}")
    code, message = obj.get("code"), obj.get("message")
    if type(code) is not int or not isinstance(message, str):
        raise RPCUnavailable(f"{url} answered {method} with a malformed error object "
                             f"(code {code!r:.50}, message {message!r:.100})")
    return RPCClientError(code, message, obj.get("data"))


def _one_result(url: str, method: str, response: Any, request_id: int | None = None) -> Any:
    """The result of one call from its answer; RPCClientError for a well-formed error, RPCUnavailable for
    anything else (not an object, another call's id, neither or both of result and error).  Without
    ``request_id`` (a caller that matched the id itself) the id is not checked."""
    if not isinstance(response, dict):
        raise RPCUnavailable(f"{url} did not answer {method} with a JSON-RPC object "
                             f"(got {type(response).__name__})")
    answered = response.get("id")
    if "error" in response:
        if "result" in response:
            raise RPCUnavailable(f"{url} answered {method} with both a result and an error")
        if request_id is not None and answered is not None and not _same_id(answered, request_id):
            # (id null is a refusal before the request was read, e.g. server busy)
            raise RPCUnavailable(f"{url} answered {method} (id {request_id}) with the error of id {answered!r:.50}")
        raise _error_from(url, method, response["error"])
    if "result" not in response:
        raise RPCUnavailable(f"{url} answered {method} with neither a result nor an error")
    if request_id is not None and not _same_id(answered, request_id):
        raise RPCUnavailable(f"{url} answered {method} (id {request_id}) with the result of id {answered!r:.50}")
    return response["result"]


def _object_result(url: str, method: str, result: Any) -> Any:
    """Every read RPC answers a JSON object (``node.client_types``): anything else is no usable answer."""
    if not isinstance(result, dict):
        raise RPCUnavailable(f"{url} answered {method} with {type(result).__name__} {result!r:.100}, not an object")
    return result


def _as_call(item: Call[Any] | tuple[str, Sequence[Any]]) -> Call[Any]:
    return item if isinstance(item, Call) else Call(item[0], tuple(item[1]))


def _batch_results(url: str, methods: Sequence[str], responses: Any) -> list[Any]:
    """Results (or RPCClientError instances) in call order, from a batch's answer of ids 0..len(methods)-1:
    exactly one well-formed answer per call, or RPCUnavailable."""
    if isinstance(responses, dict) and "error" in responses:  # the whole batch was refused (size, parse, ...)
        raise _error_from(url, "a batch", responses["error"])
    if not isinstance(responses, list):
        raise RPCUnavailable(f"{url} answered a batch with {type(responses).__name__}")
    count = len(methods)
    if len(responses) != count:
        raise RPCUnavailable(f"{url} answered a batch of {count} calls with {len(responses)} answers")
    by_id: dict[int, dict[str, Any]] = {}
    for r in responses:
        if not isinstance(r, dict):
            raise RPCUnavailable(f"{url} answered a batch with {type(r).__name__} {r!r:.100} among its answers")
        i = r.get("id")
        if type(i) is not int or not 0 <= i < count or i in by_id:
            raise RPCUnavailable(f"{url} answered a batch of {count} calls with an answer of id {i!r:.50}")
        by_id[i] = r
    out: list[Any] = []
    for i, method in enumerate(methods):
        r = by_id[i]  # present: count distinct ids in range(count)
        if "error" in r and "result" in r:
            raise RPCUnavailable(f"{url} answered call {i} ({method}) of the batch with both a result and an error")
        if "error" in r:
            out.append(_error_from(url, f"call {i} ({method}) of the batch", r["error"]))
        elif "result" in r:
            out.append(r["result"])
        else:
            raise RPCUnavailable(f"{url} answered call {i} ({method}) of the batch with neither a result nor an error")
    return out


def _decode_body(url: str, status: int, raw: bytes) -> Any:
    if not raw:
        if status >= 300:
            raise RPCUnavailable(f"{url}: HTTP {status}")
        return None
    try:
        return json.loads(raw)
    except ValueError:  # also an integer of over 4,300 digits
        raise RPCUnavailable(f"{url} did not answer JSON (HTTP {status})") from None
    except RecursionError:  # arrays or objects nested deeper than the interpreter's stack
        raise RPCUnavailable(f"{url} answered JSON nested too deeply to read (HTTP {status})") from None


def _check_url(url: str) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ClientError(f"node URL {url!r} must be http(s)://HOST[:PORT]/")
    try:
        parts.port  # noqa: B018  (raises on a bad port)
    except ValueError as exc:
        raise ClientError(f"node URL {url!r}: {exc}") from None


def _ws_url(url: str) -> str:
    """``http://HOST:PORT/...`` -> ``ws://HOST:PORT/ws`` (``https`` -> ``wss``)."""
    parts = urlsplit(url)
    return f"{'wss' if parts.scheme == 'https' else 'ws'}://{parts.netloc}/ws"


# -- building a transaction: one path for both clients -----------------------------------


def _signing_calls(key: PrivateKey, fee: int | None) -> list[Call[Any]]:
    calls: list[Call[Any]] = [rpc_calls.status(), rpc_calls.account(address_to_text(key.address))]
    if fee is None:
        calls.append(rpc_calls.params())
    return calls


def _node_value(url: str, method: str, what: str, read: Callable[[], T]) -> T:
    """``read()`` of a value the node gave (checked by the state's own field checks); RPCUnavailable naming
    the value if it is missing or unusable."""
    try:
        return read()
    except (KeyError, IndexError, TypeError, ValueError, AttributeError, StateError) as exc:
        raise RPCUnavailable(f"{url} answered {method} with no usable {what}: {type(exc).__name__}: {exc}") from None


def _checked_uint(name: str, value: Any, high: int) -> int:
    check_uint(name, value, 0, high)
    return int(value)


def _signed(url: str, key: PrivateKey, payload: Payload, fee: int | None, nonce: int | None,
            answers: list[Any]) -> SignedTransaction:
    for answer in answers:
        if isinstance(answer, RPCClientError):
            raise answer
    status: Status = answers[0]
    chain_id = _node_value(url, "qenex_status", "chain_id", lambda: check_chain_id(status["chain_id"]))
    if nonce is None:
        nonce = _node_value(url, "qenex_getAccount", "pending_nonce",
                            lambda: _checked_uint("pending_nonce", answers[1]["pending_nonce"], MAX_UINT64))
    if fee is None:
        params: Params = answers[2]
        fee = _node_value(url, "qenex_getParams", f"gas or min_gas_price for {payload.KIND.name}",  # type: ignore[attr-defined]
                          lambda: _checked_uint("fee", txbuild.min_fee(params, payload.KIND, payload), MAX_AMOUNT))  # type: ignore[attr-defined]
    return txbuild.sign(key, payload, chain_id=chain_id, nonce=nonce, fee=fee)


def raw_hex(stx: SignedTransaction | bytes) -> str:
    """A signed transaction as ``qenex_sendTransaction`` takes it: 0x-hex of its encoding."""
    return "0x" + (stx.encode() if isinstance(stx, SignedTransaction) else bytes(stx)).hex()


def tx_hash_of(stx: SignedTransaction | bytes) -> str:
    """The 0x-hex hash the node gives a signed transaction: sha256 of its (canonical) encoding."""
    return "0x" + (stx.hash if isinstance(stx, SignedTransaction) else sha256(bytes(stx))).hex()


def _submitted(url: str, stx: SignedTransaction | bytes, answer: Any) -> str:
    """The hash of a transaction the node took (its answer to qenex_sendTransaction, or the
    RPCClientError in its place).  Already known (-32003) is success: the node has these very bytes,
    e.g. from a send resent after a dropped connection.  A hash that is not this transaction's is no
    usable answer: waiting on it would wait for another transaction."""
    tx_hash = tx_hash_of(stx)
    if isinstance(answer, RPCClientError):
        if answer.code == ALREADY_KNOWN:
            return tx_hash
        raise answer
    answered = answer.get("hash") if isinstance(answer, dict) else None
    if not isinstance(answered, str) or answered.lower() != tx_hash:
        raise RPCUnavailable(f"{url} answered qenex_sendTransaction of {tx_hash} with {answer!r:.200}")
    return tx_hash


def _record_if_final(url: str, tx_hash: str, answer: Any) -> TxRecord | None:
    """One poll of a transaction (its record, or the RPCClientError in its place): the record once committed,
    None while the node has it pending, queued or not at all; any other error is raised, and a record
    without a boolean ``committed`` (or a committed one without its status and height) is RPCUnavailable."""
    if isinstance(answer, RPCClientError):
        if answer.code != NOT_FOUND:
            raise answer
        return None
    where = f"{url} answered qenex_getTransaction of {tx_hash}"
    if not isinstance(answer, dict) or not isinstance(answer.get("committed"), bool):
        raise RPCUnavailable(f"{where} with {answer!r:.200}, not a transaction record")
    if not answer["committed"]:
        return None
    if not isinstance(answer.get("status"), str) or not is_int(answer.get("height")):
        raise RPCUnavailable(f"{where} with a committed record lacking its status or height: {answer!r:.200}")
    return answer  # type: ignore[return-value]


def _decimals_from(url: str, symbol: str, token: Any) -> int:
    return _node_value(url, "qenex_getToken", f"decimals of {symbol}",
                       lambda: _checked_uint("decimals", token["decimals"], MAX_DECIMALS))


# -- the read methods, declared once for both clients ------------------------------------


class rpc_method(Generic[P, T]):
    """A client method from a ``node.rpc_calls`` builder: on a ``Client`` it returns the result,
    on an ``AsyncClient`` an awaitable of it."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self.build = build
        self.name = build.__name__
        functools.update_wrapper(self, build)  # type: ignore[arg-type]

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, obj: None, owner: type) -> "rpc_method[P, T]": ...

    @overload
    def __get__(self, obj: "Client", owner: type) -> Callable[P, T]: ...

    @overload
    def __get__(self, obj: "AsyncClient", owner: type) -> Callable[P, Awaitable[T]]: ...

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        build, request, url = self.build, obj.request, obj.url
        method: Callable[..., Any]
        if isinstance(obj, AsyncClient):
            @functools.wraps(build)
            async def method(*args: P.args, **kwargs: P.kwargs) -> Any:
                call = build(*args, **kwargs)
                return _object_result(url, call.method, await request(call))
        else:
            @functools.wraps(build)
            def method(*args: P.args, **kwargs: P.kwargs) -> Any:
                call = build(*args, **kwargs)
                return _object_result(url, call.method, request(call))

        obj.__dict__[self.name] = method  # bound once per client: later lookups skip this descriptor
        return method


class _Reads:
    """Every read RPC (``node.rpc_calls``) as a method."""

    url: str

    status = rpc_method(rpc_calls.status)
    account = rpc_method(rpc_calls.account)
    block = rpc_method(rpc_calls.block)
    transaction = rpc_method(rpc_calls.transaction)
    receipt = rpc_method(rpc_calls.receipt)
    proof = rpc_method(rpc_calls.proof)
    validators = rpc_method(rpc_calls.validators)
    mempool = rpc_method(rpc_calls.mempool)
    token = rpc_method(rpc_calls.token)
    params = rpc_method(rpc_calls.params)
    pool = rpc_method(rpc_calls.pool)
    pools = rpc_method(rpc_calls.pools)
    quote = rpc_method(rpc_calls.quote)
    twap = rpc_method(rpc_calls.twap)
    history = rpc_method(rpc_calls.history)
    position = rpc_method(rpc_calls.position)
    risk_score = rpc_method(rpc_calls.risk_score)
    risk_model = rpc_method(rpc_calls.risk_model)
    predict_price = rpc_method(rpc_calls.predict_price)
    staking = rpc_method(rpc_calls.staking)
    staking_validators = rpc_method(rpc_calls.staking_validators)
    evidence = rpc_method(rpc_calls.evidence)
    epoch = rpc_method(rpc_calls.epoch)
    contract = rpc_method(rpc_calls.contract)
    contract_state = rpc_method(rpc_calls.contract_state)
    call_contract = rpc_method(rpc_calls.call_contract)


# -- the blocking client's transport: http.client under one deadline per call -------------
#
# A socket timeout bounds each read, not a call: a node dripping its answer a byte at a time would
# keep a call alive for ever.  So every socket operation of a call is given only the time left
# before the call's deadline, and none is started after it.


def _time_left(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError("the call's deadline passed")
    return left


class _DeadlineReader(io.RawIOBase):
    """An answer's socket reads, each allowed only the time left before the deadline."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self._sock = sock
        # a makefile() of the socket, as http.client's own reader: it keeps the socket open until the
        # answer is read even when http.client closes the connection first (Connection: close)
        self._raw = sock.makefile("rb", buffering=0)
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int | None:
        self._sock.settimeout(_time_left(self._deadline))
        return self._raw.readinto(buffer)

    def close(self) -> None:
        if not self.closed:
            self._raw.close()
        super().close()


class _DeadlineResponse(http.client.HTTPResponse):
    def __init__(self, sock: socket.socket, *args: Any, deadline: float, **kwargs: Any) -> None:
        super().__init__(sock, *args, **kwargs)
        self.fp.close()  # the plain makefile() reader: each of its reads would get a whole timeout
        self.fp = io.BufferedReader(_DeadlineReader(sock, deadline))


class _DeadlineConnectionMixin:
    """Connect and send within the time left before ``deadline`` (set before each call)."""

    deadline = float("inf")
    sock: socket.socket | None
    timeout: float | None

    def connect(self) -> None:
        self.timeout = _time_left(self.deadline)  # create_connection's (and a TLS handshake's) timeout
        super().connect()  # type: ignore[misc]

    def send(self, data: Any) -> None:
        if self.sock is None:
            self.connect()
        assert self.sock is not None
        self.sock.settimeout(_time_left(self.deadline))  # sendall: the timeout bounds the whole send
        super().send(data)  # type: ignore[misc]

    def response_class(self, sock: socket.socket, *args: Any, **kwargs: Any) -> _DeadlineResponse:
        return _DeadlineResponse(sock, *args, deadline=self.deadline, **kwargs)


class _DeadlineHTTPConnection(_DeadlineConnectionMixin, http.client.HTTPConnection):
    pass


class _DeadlineHTTPSConnection(_DeadlineConnectionMixin, http.client.HTTPSConnection):
    pass


# -- the blocking client ----------------------------------------------------------------


class Client(_Reads):
    """A blocking client over one keep-alive HTTP connection."""

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES, ws_url: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        _check_url(url)
        self.url = url
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.ws_url = ws_url or _ws_url(url)
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        parts = urlsplit(url)
        self._host, self._port, self._https = parts.hostname or "", parts.port, parts.scheme == "https"
        self._path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._conn: _DeadlineHTTPConnection | _DeadlineHTTPSConnection | None = None
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._decimals: dict[str, int] = {}

    @classmethod
    def connect(cls, url: str, **options: Any) -> "Client":
        """A client of the node at ``url`` (checked now; the connection opens on the first call)."""
        return cls(url, **options)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # transport

    def _post(self, body: bytes) -> Any:
        """POST ``body`` and decode the answer, all within ``timeout`` seconds of the call (waiting for
        another thread's call, connecting, sending, the headers and every byte of the body)."""
        deadline = time.monotonic() + self.timeout
        if not self._lock.acquire(timeout=self.timeout):
            raise RPCUnavailable(f"{self.url} did not answer within {self.timeout:g} s (other calls of this "
                                 f"client were still waiting for it)")
        try:
            return self._post_locked(body, deadline)
        finally:
            self._lock.release()

    def _post_locked(self, body: bytes, deadline: float) -> Any:
        for attempt in (0, 1):
            reused = self._conn is not None
            if self._conn is None:
                cls = _DeadlineHTTPSConnection if self._https else _DeadlineHTTPConnection
                self._conn = cls(self._host, self._port, timeout=self.timeout)
            self._conn.deadline = deadline
            try:
                self._conn.request("POST", self._path, body, self.headers)
                response = self._conn.getresponse()
                limit = self.max_response_bytes
                if response.length is not None and response.length > limit:  # refused unread
                    raise RPCUnavailable(f"{self.url} answered more than {limit} bytes")
                raw = response.read(limit + 1)
                if len(raw) > limit:
                    raise RPCUnavailable(f"{self.url} answered more than {limit} bytes")
                if response.length:  # fewer bytes than its Content-Length, then the end of the stream
                    raise RPCUnavailable(f"{self.url} cut its answer short ({len(raw)} bytes, "
                                         f"{response.length} missing)")
                if response.will_close:
                    self._drop()
                return _decode_body(self.url, response.status, raw)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError) as exc:
                self._drop()
                if reused and attempt == 0:
                    continue  # the node closed an idle keep-alive connection: one fresh try
                raise RPCUnavailable(f"{self.url} hung up: {type(exc).__name__}: {exc}") from None
            except http.client.HTTPException as exc:  # a cut or garbled answer (BadStatusLine, IncompleteRead)
                self._drop()
                raise RPCUnavailable(
                    f"{self.url} gave no valid HTTP answer: {type(exc).__name__}: {exc}") from None
            except TimeoutError:
                self._drop()
                raise RPCUnavailable(f"{self.url} did not answer within {self.timeout:g} s") from None
            except OSError as exc:
                self._drop()
                raise RPCUnavailable(f"cannot reach node at {self.url}: {exc}") from None
            except RPCUnavailable:
                self._drop()
                raise
        raise AssertionError("unreachable")

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    # calls

    def call(self, method: str, *params: Any) -> Any:
        """Call ``method`` with positional ``params``; its result, or RPCClientError."""
        return self.request(Call(method, params))

    def request(self, call: Call[T]) -> T:
        request_id = next(self._ids)
        body = json.dumps(call.request(request_id)).encode()
        return _one_result(self.url, call.method, self._post(body), request_id)  # type: ignore[no-any-return]

    def batch(self, calls: Sequence[Call[Any] | tuple[str, Sequence[Any]]]) -> list[Any]:
        """Many calls in one request: their results in order, an RPCClientError in the place of each refused one.

        A batch the node refuses as a whole (over its size or work budget) raises that RPCClientError.
        """
        items = [_as_call(c) for c in calls]
        if not items:
            return []
        body = json.dumps([c.request(i) for i, c in enumerate(items)]).encode()
        return _batch_results(self.url, [c.method for c in items], self._post(body))

    # transactions

    def decimals(self, symbol: str) -> int:
        """Token ``symbol``'s decimals (asked once per client)."""
        if symbol not in self._decimals:
            self._decimals[symbol] = _decimals_from(self.url, symbol, self.token(symbol))
        return self._decimals[symbol]

    def units(self, symbol: str, amount: str) -> int:
        """Whole units of ``symbol`` (``"12.5"``) as base units, exactly."""
        return parse_amount(amount, self.decimals(symbol))

    def sign(self, key: PrivateKey, payload: Payload, *, fee: int | None = None,
             nonce: int | None = None) -> SignedTransaction:
        """``payload`` from ``key`` on the node's chain, at its next pending nonce and the kind's minimum fee
        unless ``nonce`` / ``fee`` (base units) are given."""
        return _signed(self.url, key, payload, fee, nonce, self.batch(_signing_calls(key, fee)))

    def submit(self, stx: SignedTransaction | bytes) -> str:
        """Send a signed transaction; its hash once the node admitted it, or already had it (-32003);
        else RPCClientError (e.g. -32010)."""
        try:
            answer: Any = self.request(rpc_calls.send_transaction(raw_hex(stx)))
        except RPCClientError as exc:
            answer = exc
        return _submitted(self.url, stx, answer)

    def wait_final(self, tx_hash: str, timeout: float = 60.0, *, poll: float = WAIT_POLL_S) -> TxRecord:
        """Poll until ``tx_hash`` is in a committed block; its record with the receipt (``status`` ok/failed)."""
        deadline = time.monotonic() + timeout
        while (record := _record_if_final(self.url, tx_hash, self.batch([rpc_calls.transaction(tx_hash)])[0])) is None:
            if time.monotonic() > deadline:
                raise TxTimeout(tx_hash, timeout)
            time.sleep(poll)
        return record

    wait_for_tx = wait_final  # the name node.rpc_client's callers know

    def send_and_wait(self, stx: SignedTransaction | bytes, timeout: float = 60.0) -> TxRecord:
        """``submit`` then ``wait_final``."""
        return self.wait_final(self.submit(stx), timeout)

    # subscriptions

    def subscribe(self, topic: str, filter: dict[str, Any] | None = None, *,
                  queue_size: int = 256) -> Iterator["Notification"]:
        """A generator of a topic's notifications (``AsyncClient.subscribe`` run in a thread of its own).

        Close the generator (``close()``, or leave a ``with contextlib.closing(...)``) to unsubscribe.
        At most ``queue_size`` notifications wait for the reader; past that the thread stops reading
        the socket, and a node that finds this subscriber too slow closes it (SubscriberTooSlow).
        """
        return _subscription_thread(AsyncClient(self.url, timeout=self.timeout, ws_url=self.ws_url,
                                                max_response_bytes=self.max_response_bytes),
                                    topic, filter, queue_size)


# -- the asyncio client -----------------------------------------------------------------


class AsyncClient(_Reads):
    """An asyncio client over an aiohttp session (opened on first use, closed by ``aclose``).

    A request whose connection the node drops before answering is sent once more on a fresh one
    (aiohttp cannot say whether the connection was a reused keep-alive one, the usual cause); a
    resent submission the node already took is answered -32003, already known.
    """

    def __init__(self, url: str, *, timeout: float = DEFAULT_TIMEOUT_S,
                 max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES, connections: int = 100,
                 ws_url: str | None = None, session: "aiohttp.ClientSession | None" = None,
                 headers: dict[str, str] | None = None) -> None:
        _check_url(url)
        self.url = url
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.connections = connections
        self.ws_url = ws_url or _ws_url(url)
        self._session = session
        self._owns_session = session is None
        self._ids = itertools.count(1)
        self._decimals: dict[str, int] = {}

    @classmethod
    def connect(cls, url: str, **options: Any) -> "AsyncClient":
        return cls(url, **options)

    async def aclose(self) -> None:
        if self._session is not None and self._owns_session:
            await self._session.close()
        self._session = None

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def session(self) -> "aiohttp.ClientSession":
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                connector=aiohttp.TCPConnector(limit=self.connections))
            self._owns_session = True
        return self._session

    async def _post(self, body: bytes) -> Any:
        """POST ``body`` and decode the answer within ``timeout`` seconds, the one resend included
        (and whatever timeout a session given to the client has)."""
        try:
            async with asyncio.timeout(self.timeout):
                return await self._post_twice(body)
        except TimeoutError:
            raise RPCUnavailable(f"{self.url} did not answer within {self.timeout:g} s") from None

    async def _post_twice(self, body: bytes) -> Any:
        import aiohttp

        try:
            return await self._post_once(body)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            # most often a pooled keep-alive connection the node closed while idle: one fresh try
            pass
        try:
            return await self._post_once(body)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise RPCUnavailable(f"{self.url} hung up: {type(exc).__name__}: {exc}") from None

    async def _post_once(self, body: bytes) -> Any:
        import aiohttp

        try:
            async with self.session().post(self.url, data=body, headers=self.headers) as r:
                limit = self.max_response_bytes
                if r.content_length is not None:  # the node always says: refuse a long answer unread
                    if r.content_length > limit:
                        raise RPCUnavailable(f"{self.url} answered more than {limit} bytes")
                    raw = await r.read()
                else:  # chunked: read no further than the limit
                    raw = b""
                    while len(raw) <= limit and not r.content.at_eof():
                        raw += await r.content.read(limit + 1 - len(raw))
                    if len(raw) > limit:
                        raise RPCUnavailable(f"{self.url} answered more than {limit} bytes")
                status = r.status
        except TimeoutError:  # asyncio's and aiohttp's timeouts (both are TimeoutError, an OSError)
            raise RPCUnavailable(f"{self.url} did not answer within {self.timeout:g} s") from None
        except aiohttp.ClientConnectorError as exc:
            raise RPCUnavailable(f"cannot reach node at {self.url}: {exc.os_error or exc}") from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            raise  # _post decides: retried once
        except (aiohttp.ClientError, OSError) as exc:
            raise RPCUnavailable(f"{self.url} gave no valid HTTP answer: {type(exc).__name__}: {exc}") from None
        return _decode_body(self.url, status, raw)

    async def call(self, method: str, *params: Any) -> Any:
        return await self.request(Call(method, params))

    async def request(self, call: Call[T]) -> T:
        request_id = next(self._ids)
        body = json.dumps(call.request(request_id)).encode()
        return _one_result(self.url, call.method, await self._post(body), request_id)  # type: ignore[no-any-return]

    async def batch(self, calls: Sequence[Call[Any] | tuple[str, Sequence[Any]]]) -> list[Any]:
        """As ``Client.batch``."""
        items = [_as_call(c) for c in calls]
        if not items:
            return []
        body = json.dumps([c.request(i) for i, c in enumerate(items)]).encode()
        return _batch_results(self.url, [c.method for c in items], await self._post(body))

    async def decimals(self, symbol: str) -> int:
        if symbol not in self._decimals:
            self._decimals[symbol] = _decimals_from(self.url, symbol, await self.token(symbol))
        return self._decimals[symbol]

    async def units(self, symbol: str, amount: str) -> int:
        return parse_amount(amount, await self.decimals(symbol))

    async def sign(self, key: PrivateKey, payload: Payload, *, fee: int | None = None,
                   nonce: int | None = None) -> SignedTransaction:
        """As ``Client.sign``."""
        return _signed(self.url, key, payload, fee, nonce, await self.batch(_signing_calls(key, fee)))

    async def submit(self, stx: SignedTransaction | bytes) -> str:
        """As ``Client.submit``: already known (-32003, e.g. the answer to a send resent after a dropped
        connection) is success."""
        try:
            answer: Any = await self.request(rpc_calls.send_transaction(raw_hex(stx)))
        except RPCClientError as exc:
            answer = exc
        return _submitted(self.url, stx, answer)

    async def wait_final(self, tx_hash: str, timeout: float = 60.0, *, poll: float = WAIT_POLL_S) -> TxRecord:
        """As ``Client.wait_final``."""
        deadline = time.monotonic() + timeout
        while (record := _record_if_final(self.url, tx_hash,
                                          (await self.batch([rpc_calls.transaction(tx_hash)]))[0])) is None:
            if time.monotonic() > deadline:
                raise TxTimeout(tx_hash, timeout)
            await asyncio.sleep(poll)
        return record

    async def send_and_wait(self, stx: SignedTransaction | bytes, timeout: float = 60.0) -> TxRecord:
        return await self.wait_final(await self.submit(stx), timeout)

    def subscribe(self, topic: str, filter: dict[str, Any] | None = None) -> "Subscription":
        """Follow ``topic`` (newHeads, tx {hash}, events {address?, pool?, kinds?}, pendingTransactions).

        ``async with client.subscribe("newHeads") as heads: async for note in heads: ...``
        """
        return Subscription(self, topic, filter)


# -- subscriptions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Notification:
    """One ``qenex_subscription`` message: the subscription id, its topic and the item."""

    subscription: str
    topic: str
    result: Any


class Subscription:
    """An async iterator of one topic's notifications over the node's WebSocket.

    Opened by ``async with`` (or the first ``__anext__``); ``aclose`` sends
    ``qenex_unsubscribe`` and closes the socket.  Any close by the node ends
    it with SubscriptionClosed (SubscriberTooSlow for code 4008).
    """

    def __init__(self, client: AsyncClient, topic: str, filter: dict[str, Any] | None) -> None:
        self.client = client
        self.topic = topic
        self.filter = filter
        self.id: str | None = None
        self._ws: "aiohttp.ClientWebSocketResponse | None" = None
        self._closed = False

    async def __aenter__(self) -> "Subscription":
        await self.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __aiter__(self) -> AsyncIterator[Notification]:
        return self

    async def open(self) -> str:
        """Connect and subscribe; the subscription id."""
        import aiohttp

        if self.id is not None:
            return self.id
        url = self.client.ws_url
        params: list[Any] = [self.topic] if self.filter is None else [self.topic, self.filter]
        try:
            # heartbeat: a node that vanished without closing (power loss, a cut link) is noticed in a minute
            self._ws = await self.client.session().ws_connect(url, max_msg_size=self.client.max_response_bytes,
                                                              heartbeat=WS_HEARTBEAT_S)
            await self._ws.send_str(json.dumps(Call("qenex_subscribe", tuple(params)).request(1)))
            while True:
                message = await self._ws.receive(timeout=self.client.timeout)
                reply = self._decode(message)
                if isinstance(reply, dict) and reply.get("id") == 1:
                    break
        except TimeoutError:
            await self._close_socket()
            raise RPCUnavailable(f"{url} did not answer qenex_subscribe within {self.client.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            await self._close_socket()
            raise RPCUnavailable(f"cannot subscribe at {url}: {type(exc).__name__}: {exc}") from None
        except BaseException:
            await self._close_socket()
            raise
        try:
            result = _one_result(url, "qenex_subscribe", reply)
        except ClientError:  # RPCClientError, or RPCUnavailable for a malformed error object
            await self._close_socket()
            raise
        if not isinstance(result, str):
            await self._close_socket()
            raise RPCUnavailable(f"{url} answered qenex_subscribe with {result!r:.100}, not a subscription id")
        self.id = result
        return result

    def _decode(self, message: "aiohttp.WSMessage") -> Any:
        import aiohttp

        if message.type == aiohttp.WSMsgType.TEXT:
            try:
                return json.loads(message.data)
            except ValueError:
                raise RPCUnavailable(f"{self.client.ws_url} sent a message that is not JSON") from None
        if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSING, aiohttp.WSMsgType.CLOSED):
            code = self._ws.close_code if self._ws is not None else None
            if code == TOO_SLOW_CLOSE_CODE:
                raise SubscriberTooSlow(f"the node dropped subscription {self.id} to {self.topic}: subscriber too "
                                        f"slow (close code {code})", code)
            raise SubscriptionClosed(f"the node closed subscription {self.id} to {self.topic} (close code {code})",
                                     code)
        if message.type == aiohttp.WSMsgType.ERROR:
            raise SubscriptionClosed(f"subscription {self.id} to {self.topic} failed: {self._ws.exception() if self._ws else ''}")
        return None  # binary, ping/pong: not ours to read

    async def __anext__(self) -> Notification:
        if self._closed:
            raise StopAsyncIteration
        if self.id is None:
            await self.open()
        assert self._ws is not None
        while True:
            message = await self._ws.receive()
            if self._closed:
                raise StopAsyncIteration
            item = self._decode(message)
            if not isinstance(item, dict) or item.get("method") != "qenex_subscription":
                continue  # e.g. the answer to our unsubscribe
            params = item.get("params")
            if not isinstance(params, dict) or params.get("subscription") != self.id:
                continue
            return Notification(self.id, str(params.get("topic", self.topic)), params.get("result"))

    async def aclose(self) -> None:
        """Unsubscribe (best effort: the node forgets a subscription whose socket closes anyway) and close."""
        if self._closed:
            return
        self._closed = True
        ws = self._ws
        if ws is not None and not ws.closed and self.id is not None:
            try:
                await ws.send_str(json.dumps(Call("qenex_unsubscribe", (self.id,)).request(2)))
            except (ConnectionError, RuntimeError):
                pass
        await self._close_socket()

    async def _close_socket(self) -> None:
        if self._ws is not None and not self._ws.closed:
            await self._ws.close()


@dataclass(frozen=True, slots=True)
class _Ended:
    error: BaseException | None


def _subscription_thread(client: AsyncClient, topic: str, filter: dict[str, Any] | None,
                         queue_size: int) -> Iterator[Notification]:
    items: "queue.Queue[Notification | _Ended]" = queue.Queue(maxsize=queue_size)
    ready = threading.Event()
    running: dict[str, Any] = {}

    async def pump() -> None:
        async with client, client.subscribe(topic, filter) as subscription:
            async for note in subscription:
                while True:  # a full queue: stop reading the socket (never block the loop's thread)
                    try:
                        items.put_nowait(note)
                        break
                    except queue.Full:
                        await asyncio.sleep(0.01)

    def run() -> None:
        loop = asyncio.new_event_loop()
        task = loop.create_task(pump())
        running.update(loop=loop, task=task)
        ready.set()
        try:
            loop.run_until_complete(task)
            end = _Ended(None)
        except asyncio.CancelledError:
            end = _Ended(None)
        except BaseException as exc:  # handed to the reader, raised there
            end = _Ended(exc)
        finally:
            loop.close()
        while True:
            try:
                items.put(end, timeout=0.1)
                return
            except queue.Full:
                if running.get("stopped"):
                    return

    def notifications() -> Iterator[Notification]:
        thread = threading.Thread(target=run, name=f"qenex-subscribe-{topic}", daemon=True)
        thread.start()
        ready.wait()
        try:
            while True:
                item = items.get()
                if isinstance(item, _Ended):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
        finally:
            running["stopped"] = True
            loop, task = running["loop"], running["task"]
            try:
                loop.call_soon_threadsafe(task.cancel)
            except RuntimeError:  # the loop already finished
                pass
            thread.join(timeout=10)

    return notifications()
