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

from node.client import AsyncClient, Client, RPCClientError, RPCUnavailable
from state.crypto import address_to_text
from tests.client_fixtures import ALICE, BOB
from tests.hostile_node import Exchange, hostile_node, http_answer, rpc_result

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
