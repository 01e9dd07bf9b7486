"""Both clients against a hostile node: a slow drip never outlives ``timeout``, and an answer of the
wrong shape is RPCUnavailable (or RPCClientError for a well-formed error object), never a raw
RecursionError, TypeError, KeyError or AttributeError.

The node is tests/hostile_node.py: every answer is written by the test.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any, Callable

import pytest

from node import rpc_calls, txbuild
from node.client import AsyncClient, Client, RPCClientError, RPCUnavailable, tx_hash_of
from state.crypto import address_to_text
from tests.client_fixtures import ALICE, BOB
from tests.hostile_node import Exchange, hostile_node, http_answer, rpc_error, rpc_result

pytestmark = pytest.mark.timeout(30)

BOB_TEXT = address_to_text(BOB.address)
STATUS = {"chain_id": "qenex-test", "height": 5}
ACCOUNT = {"address": address_to_text(ALICE.address), "nonce": 3, "pending_nonce": 3, "queued": 0, "balances": {}}
PARAMS = {"gas": {"transfer": 21_000}, "min_gas_price": "1"}


def _both(url: str, use: Callable[[Any], Any], **options: Any) -> list[Any]:
    """``use(client)`` for a Client and for an AsyncClient of ``url``: each one's result or exception."""
    out: list[Any] = []
    try:
        out.append(use(Client(url, **options)))
    except Exception as exc:  # noqa: BLE001  (compared by the test)
        out.append(exc)

    async def run() -> Any:
        async with AsyncClient(url, **options) as client:
            result = use(client)
            return await result if asyncio.iscoroutine(result) else result

    try:
        out.append(asyncio.run(run()))
    except Exception as exc:  # noqa: BLE001
        out.append(exc)
    return out


def _raises_for_both(url: str, use: Callable[[Any], Any], error: type[Exception], text: str, **options: Any) -> None:
    for got in _both(url, use, **options):
        assert isinstance(got, error) and text in str(got), repr(got)
        assert url in str(got) or isinstance(got, RPCClientError), got


# -- 1. one deadline per call ------------------------------------------------------------

ANSWER = http_answer(b'{"jsonrpc": "2.0", "id": 1, "result": {"chain_id": "x", "height": 1}}')


@pytest.mark.parametrize("where", ["headers", "body"])
def test_a_node_dripping_its_answer_is_cut_off_at_the_timeout(where):
    head_len = ANSWER.index(b"\r\n\r\n") + 4
    split = 5 if where == "headers" else head_len + 5  # the first few bytes at once, then a byte per 50 ms

    def drip(ex: Exchange) -> None:
        ex.handler.wfile.write(ANSWER[:split])
        ex.handler.wfile.flush()
        ex.drip(ANSWER[split:], 0.05)  # ~3 s (headers) or ~3.5 s (body) in all, each byte well within 0.5 s

    with hostile_node(drip) as url:
        for client in (Client(url, timeout=0.5),):
            started = time.monotonic()
            with pytest.raises(RPCUnavailable, match="did not answer within 0.5 s"):
                client.call("qenex_status")
            assert time.monotonic() - started < 1.2

        async def run() -> None:
            async with AsyncClient(url, timeout=0.5) as client:
                started = time.monotonic()
                with pytest.raises(RPCUnavailable, match="did not answer within 0.5 s"):
                    await client.call("qenex_status")
                assert time.monotonic() - started < 1.2

        asyncio.run(run())


def test_the_async_resend_after_a_dropped_connection_shares_the_call_s_deadline():
    def answer(ex: Exchange) -> None:
        if ex.count == 0:
            ex.hang_up(after_s=0.8)  # dropped just before the timeout...
        else:
            time.sleep(5)  # ...and the resend hangs

    async def run(url: str) -> None:
        async with AsyncClient(url, timeout=1.0) as client:
            started = time.monotonic()
            with pytest.raises(RPCUnavailable, match="did not answer within 1 s"):
                await client.call("qenex_status")
            assert time.monotonic() - started < 1.5  # not 0.8 s plus a whole second timeout

    with hostile_node(answer) as url:
        asyncio.run(run(url))


def test_a_call_waiting_for_another_thread_s_call_counts_that_wait():
    def slow(ex: Exchange) -> None:
        time.sleep(0.9)
        ex.reply(rpc_result(ex.request, STATUS))

    with hostile_node(slow) as url:
        client = Client(url, timeout=1.0)
        first = threading.Thread(target=client.status)
        first.start()
        time.sleep(0.2)
        started = time.monotonic()
        with pytest.raises(RPCUnavailable, match="did not answer within 1 s"):
            client.status()  # its own 0.9 s answer after the first call's would end at ~1.6 s
        assert time.monotonic() - started < 1.3
        first.join(5)


# -- 2. answers of the wrong shape --------------------------------------------------------

def _deep(ex: Exchange) -> None:
    ex.reply(b"[" * 100_000 + b"]" * 100_000)


SHAPES: list[tuple[str, Callable[[Exchange], None], type[Exception], str]] = [
    ("deeply nested arrays", _deep, RPCUnavailable, "nested too deeply"),
    ("deeply nested objects", lambda ex: ex.reply(b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
     RPCUnavailable, "nested too deeply"),
    ("a list, not an object", lambda ex: ex.reply([rpc_result(ex.request, STATUS)]), RPCUnavailable,
     "not answer qenex_status with a JSON-RPC object"),
    ("a result that is a list", lambda ex: ex.reply(rpc_result(ex.request, [1, 2])), RPCUnavailable,
     "answered qenex_status with list"),
    ("a result that is a string", lambda ex: ex.reply(rpc_result(ex.request, "ok")), RPCUnavailable,
     "not an object"),
    ("a result that is null", lambda ex: ex.reply(rpc_result(ex.request, None)), RPCUnavailable, "not an object"),
    ("an error that is a string", lambda ex: ex.reply({"jsonrpc": "2.0", "id": ex.request["id"], "error": "boom"}),
     RPCUnavailable, "malformed error"),
    ("an error without a code", lambda ex: ex.reply({"jsonrpc": "2.0", "id": ex.request["id"],
                                                    "error": {"message": "no"}}), RPCUnavailable, "malformed error"),
    ("an error with a text code", lambda ex: ex.reply({"jsonrpc": "2.0", "id": ex.request["id"],
                                                      "error": {"code": "-32000", "message": "no"}}),
     RPCUnavailable, "malformed error"),
    ("an error without a message", lambda ex: ex.reply({"jsonrpc": "2.0", "id": ex.request["id"],
                                                       "error": {"code": -32000}}), RPCUnavailable, "malformed error"),
    ("another call's id", lambda ex: ex.reply({"jsonrpc": "2.0", "id": ex.request["id"] + 1, "result": STATUS}),
     RPCUnavailable, "with the result of id"),
    ("id true", lambda ex: ex.reply({"jsonrpc": "2.0", "id": True, "result": STATUS}), RPCUnavailable,
     "with the result of id True"),
    ("no id", lambda ex: ex.reply({"jsonrpc": "2.0", "result": STATUS}), RPCUnavailable, "with the result of id None"),
    ("another call's error", lambda ex: ex.reply(rpc_error({"id": 99}, -32000, "no")), RPCUnavailable,
     "with the error of id 99"),
    ("both result and error", lambda ex: ex.reply({**rpc_result(ex.request, STATUS), "error": {"code": 1,
                                                                                          "message": "x"}}),
     RPCUnavailable, "both a result and an error"),
    ("a well-formed error", lambda ex: ex.reply(rpc_error(ex.request, -32000, "busy", {"k": 1})), RPCClientError, "busy"),
    ("a refusal before the request was read (id null)",
     lambda ex: ex.reply({"jsonrpc": "2.0", "id": None, "error": {"code": -32000, "message": "server busy"}}),
     RPCClientError, "server busy"),
    ("a huge integer", lambda ex: ex.reply(b'{"jsonrpc": "2.0", "id": 1, "result": ' + b"9" * 5000 + b"}"),
     RPCUnavailable, "did not answer JSON"),
    ("a body cut short of its Content-Length",
     lambda ex: (ex.handler.wfile.write(http_answer(b'{"jsonrpc": "2.0", "id": 1, "result": {}}')[:-5]),
                 ex.hang_up()),
     RPCUnavailable, "answer"),  # "cut its answer short" (Client), "no valid HTTP answer" (aiohttp)
]


@pytest.mark.parametrize("name, answer, error, text", SHAPES, ids=[s[0] for s in SHAPES])
def test_an_answer_of_the_wrong_shape_is_a_clear_client_error(name, answer, error, text):
    with hostile_node(answer) as url:
        _raises_for_both(url, lambda c: c.status(), error, text, timeout=5)


BATCHES: list[tuple[str, Callable[[list[Any]], Any], str]] = [
    ("one answer too many", lambda reqs: [rpc_result(r, {}) for r in reqs] + [rpc_result({"id": 2}, {})],
     "a batch of 2 calls with 3 answers"),
    ("one answer too few", lambda reqs: [rpc_result(reqs[0], {})], "a batch of 2 calls with 1 answers"),
    ("the same id twice", lambda reqs: [rpc_result(reqs[0], {}), rpc_result(reqs[0], {})], "an answer of id 0"),
    ("an id out of range", lambda reqs: [rpc_result(reqs[0], {}), rpc_result({"id": 7}, {})], "an answer of id 7"),
    ("an id of text", lambda reqs: [rpc_result(reqs[0], {}), rpc_result({"id": "1"}, {})], "an answer of id '1'"),
    ("an answer that is not an object", lambda reqs: [rpc_result(reqs[0], {}), 5], "int 5 among its answers"),
    ("an error that is a string", lambda reqs: [rpc_result(reqs[0], {}), {"jsonrpc": "2.0", "id": 1, "error": "x"}],
     "call 1 (qenex_getParams) of the batch with a malformed error"),
    ("neither", lambda reqs: [rpc_result(reqs[0], {}), {"jsonrpc": "2.0", "id": 1}],
     "call 1 (qenex_getParams) of the batch with neither"),
    ("a whole-batch error that is a string", lambda reqs: {"jsonrpc": "2.0", "id": None, "error": "too big"},
     "a batch with a malformed error"),
]


@pytest.mark.parametrize("name, answer, text", BATCHES, ids=[b[0] for b in BATCHES])
def test_a_batch_answer_of_the_wrong_shape_is_unavailable(name, answer, text):
    with hostile_node(lambda ex: ex.reply(answer(ex.request))) as url:
        _raises_for_both(url, lambda c: c.batch([rpc_calls.status(), rpc_calls.params()]), RPCUnavailable, text,
                         timeout=5)


def _signing_node(status: Any = STATUS, account: Any = ACCOUNT, params: Any = PARAMS) -> Callable[[Exchange], None]:
    by_method = {"qenex_status": status, "qenex_getAccount": account, "qenex_getParams": params}
    return lambda ex: ex.reply([rpc_result(r, by_method[r["method"]]) for r in ex.request])


SIGNING: list[tuple[str, dict[str, Any], str]] = [
    ("status is a list", {"status": [1]}, "qenex_status with no usable chain_id"),
    ("no chain id", {"status": {"height": 1}}, "qenex_status with no usable chain_id"),
    ("a chain id that is a number", {"status": {"chain_id": 7}}, "no usable chain_id"),
    ("a chain id no transaction can carry", {"status": {"chain_id": "x" * 10_000}}, "no usable chain_id"),
    ("account is null", {"account": None}, "qenex_getAccount with no usable pending_nonce"),
    ("a pending nonce of text", {"account": {**ACCOUNT, "pending_nonce": "3"}}, "no usable pending_nonce"),
    ("a pending nonce null", {"account": {**ACCOUNT, "pending_nonce": None}}, "no usable pending_nonce"),
    ("a negative pending nonce", {"account": {**ACCOUNT, "pending_nonce": -1}}, "no usable pending_nonce"),
    ("a pending nonce true", {"account": {**ACCOUNT, "pending_nonce": True}}, "no usable pending_nonce"),
    ("params without gas", {"params": {"min_gas_price": "1"}}, "qenex_getParams with no usable gas"),
    ("gas that is a list", {"params": {**PARAMS, "gas": [1]}}, "no usable gas"),
    ("a gas price of words", {"params": {**PARAMS, "min_gas_price": "cheap"}}, "no usable gas"),
    ("a negative gas price", {"params": {**PARAMS, "min_gas_price": "-1"}}, "no usable gas"),
]


@pytest.mark.parametrize("name, answers, text", SIGNING, ids=[s[0] for s in SIGNING])
def test_signing_on_answers_of_the_wrong_shape_is_unavailable(name, answers, text):
    payload = txbuild.transfer(BOB_TEXT, 1)
    with hostile_node(_signing_node(**answers)) as url:
        _raises_for_both(url, lambda c: c.sign(ALICE, payload), RPCUnavailable, text, timeout=5)


def test_signing_on_well_formed_answers_still_works():
    with hostile_node(_signing_node()) as url:
        for stx in _both(url, lambda c: c.sign(ALICE, txbuild.transfer(BOB_TEXT, 1))):
            assert stx.tx.chain_id == "qenex-test" and stx.tx.nonce == 3 and stx.tx.fee == 21_000


@pytest.mark.parametrize("token, text", [
    ({"symbol": "GOLD"}, "no usable decimals of GOLD"),
    ({"decimals": "6"}, "no usable decimals of GOLD"),
    ({"decimals": 10**9}, "no usable decimals of GOLD"),
])
def test_decimals_of_the_wrong_shape_are_unavailable(token, text):
    with hostile_node(lambda ex: ex.reply(rpc_result(ex.request, token))) as url:
        _raises_for_both(url, lambda c: c.units("GOLD", "1.5"), RPCUnavailable, text, timeout=5)


RECORDS: list[tuple[str, Any, str]] = [
    ("a list", [1], "not a transaction record"),
    ("a record without committed", {"status": "ok", "height": 3}, "not a transaction record"),
    ("committed as text", {"status": "ok", "height": 3, "committed": "yes"}, "not a transaction record"),
    ("committed without a height", {"status": "ok", "committed": True}, "lacking its status or height"),
    ("committed with a status of null", {"status": None, "height": 3, "committed": True}, "lacking its status"),
]


@pytest.mark.parametrize("name, record, text", RECORDS, ids=[r[0] for r in RECORDS])
def test_waiting_on_a_record_of_the_wrong_shape_is_unavailable(name, record, text):
    with hostile_node(lambda ex: ex.reply([rpc_result(ex.request[0], record)])) as url:
        _raises_for_both(url, lambda c: c.wait_final("0xab", timeout=2, poll=0.01), RPCUnavailable, text, timeout=5)


# -- 4. a submission the node already has -----------------------------------------------

STX = txbuild.sign(ALICE, txbuild.transfer(BOB_TEXT, 1), chain_id="qenex-test", nonce=0, fee=21_000)


def test_already_known_is_success_with_the_transaction_s_own_hash():
    known = lambda ex: ex.reply(rpc_error(ex.request, -32003, "transaction is already in the mempool"))  # noqa: E731
    with hostile_node(known) as url:
        assert _both(url, lambda c: c.submit(STX)) == ["0x" + STX.hash.hex()] * 2
        assert _both(url, lambda c: c.submit(STX.encode())) == [tx_hash_of(STX)] * 2
    refused = lambda ex: ex.reply(rpc_error(ex.request, -32010, "nonce too low"))  # noqa: E731
    with hostile_node(refused) as url:
        _raises_for_both(url, lambda c: c.submit(STX), RPCClientError, "nonce too low")


def test_the_async_resend_of_a_submission_the_node_took_is_success():
    """The first send's connection drops after the node took it; the resend is answered already known."""
    def answer(ex: Exchange) -> None:
        if ex.count == 0:
            ex.hang_up()
        else:
            ex.reply(rpc_error(ex.request, -32003, "already known"))

    async def run(url: str) -> str:
        async with AsyncClient(url, timeout=5) as client:
            return await client.submit(STX)

    with hostile_node(answer) as url:
        assert asyncio.run(run(url)) == tx_hash_of(STX)


@pytest.mark.parametrize("result, text", [
    ([1], "with [1]"),
    ({"hash": 7}, "with {'hash': 7}"),
    ({"hash": "0x" + "00" * 32}, "with {'hash': '0x0000"),
])
def test_a_submission_answered_with_another_hash_or_shape_is_unavailable(result, text):
    with hostile_node(lambda ex: ex.reply(rpc_result(ex.request, result))) as url:
        _raises_for_both(url, lambda c: c.submit(STX), RPCUnavailable, text)
    ok = lambda ex: ex.reply(rpc_result(ex.request, {"hash": tx_hash_of(STX).upper().replace("0X", "0x")}))  # noqa: E731
    with hostile_node(ok) as url:
        assert _both(url, lambda c: c.submit(STX)) == [tx_hash_of(STX)] * 2


def test_the_hash_of_a_signed_transaction_is_the_node_s():
    assert tx_hash_of(STX) == tx_hash_of(STX.encode()) == "0x" + STX.hash.hex()
