"""Review findings on the RPC hardening (issue 7): answers that grow with the chain.

A full ``qenex_getBlock`` of thousands of transactions took seconds of bech32
on the event loop and a batch of them built a 158 MB answer; a client that
hung up left its batch running.  Now a large answer charges the batch for its
size, a committed block is rendered once (off the loop when large), at most
``max_in_flight`` payloads run at once, and aiohttp cancels the handler of a
connection that went away.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from node.jsonrpc import OVER_BUDGET, Dispatcher, make_app
from node.rpc import FULL_BLOCK_TXS_PER_UNIT, RPC_COSTS, build_methods
from node.rpc_server import RPCServer
from node.runtime import Node
from state.testing import dev_key, transfer
from tests.test_pools_app import ALICE, new_chain
from tests.test_rpc_fuzz import bare_node

pytestmark = pytest.mark.timeout(120)

TXS = 1_000  # a block whose full answer costs 20 extra units


def _node() -> Node:
    chain = new_chain()
    sink = dev_key("sink").address
    nonce = chain.next_nonce(ALICE)
    chain.block([transfer(ALICE, nonce + i, sink, 1, chain_id=chain.app.chain_id) for i in range(TXS)])
    return bare_node(chain.app, "budget")


NODE = _node()
HEIGHT = NODE.app.height


def _batch(n: int, method: str = "qenex_getBlock", params: list | None = None) -> bytes:
    params = [HEIGHT, True] if params is None else params
    return json.dumps([{"jsonrpc": "2.0", "id": i, "method": method, "params": params} for i in range(n)]).encode()


async def test_a_batch_of_full_blocks_is_charged_for_their_size() -> None:
    dispatcher = Dispatcher(build_methods(NODE.rpc_context()), costs=RPC_COSTS)
    answers = await dispatcher.handle_payload(_batch(50))
    served = [a for a in answers if "result" in a]
    refused = [a for a in answers if "error" in a]
    per_call = RPC_COSTS["qenex_getBlock"] + TXS // FULL_BLOCK_TXS_PER_UNIT
    assert len(served) == -(-dispatcher.max_batch_cost // per_call)  # the last one may overrun once
    assert refused and all(a["error"]["code"] == OVER_BUDGET for a in refused)
    assert len(served[0]["result"]["txs"]) == TXS
    # Hashes only are cheap: the whole batch is served.
    cheap = await dispatcher.handle_payload(_batch(50, params=[HEIGHT, False]))
    assert all("result" in a for a in cheap)
    # Outside a batch nothing is refused, and a later batch starts with a whole budget.
    single = await dispatcher.handle_payload(json.dumps(
        {"jsonrpc": "2.0", "id": 1, "method": "qenex_getBlock", "params": [HEIGHT, True]}).encode())
    assert len(single["result"]["txs"]) == TXS
    again = await dispatcher.handle_payload(_batch(2))
    assert all("result" in a for a in again)


async def test_a_committed_block_is_rendered_once() -> None:
    methods = build_methods(NODE.rpc_context())
    first = await methods["qenex_getBlock"](HEIGHT, True)
    second = await methods["qenex_getBlock"](str(HEIGHT), True)
    assert first is second and first["num_txs"] == TXS
    assert (await methods["qenex_getBlock"]("latest", False))["txs"][0] == first["txs"][0]["hash"]


async def test_at_most_max_in_flight_payloads_run_at_once() -> None:
    running = 0
    peak = 0
    release = asyncio.Event()

    async def slow() -> str:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1
        return "ok"

    dispatcher = Dispatcher({"slow": slow}, max_in_flight=3)
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "slow"}).encode()
    tasks = [asyncio.create_task(dispatcher.handle_payload(body)) for _ in range(10)]
    await asyncio.sleep(0.1)
    assert peak == 3
    release.set()
    assert [t["result"] for t in await asyncio.gather(*tasks)] == ["ok"] * 10
    assert peak == 3


async def test_a_client_that_hangs_up_stops_its_request() -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def forever() -> None:
        started.set()
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    app = make_app(Dispatcher({"forever": forever}), max_request_bytes=1 << 20)
    server = RPCServer(app, "127.0.0.1", 0, max_connections=8, request_timeout_s=30)
    await server.start()
    try:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "forever"})
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write((f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n{body}").encode())
        await writer.drain()
        await asyncio.wait_for(started.wait(), 10)
        writer.close()
        await asyncio.wait_for(cancelled.wait(), 10)
    finally:
        await server.stop()
