"""A live single node in this process for client and CLI tests: the real RPC server, mempool and admission
over an in-memory Application, with a block producer that commits whatever is pending.

No p2p, consensus or processes: ``LiveNode`` runs the server and the
producer on an event loop in a thread of its own, so blocking clients (and
the CLI through click's runner) can call it from the test's thread.  Blocks
are made only when the mempool holds something, or when ``make_block`` asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from typing import Any, Iterator

from node.jsonrpc import Dispatcher, make_app
from node.rpc import RPC_COSTS, build_methods
from node.rpc_server import RPCServer
from node.ws import SubscriptionHub, WsLimits, tx_status
from state.app import Application
from state.genesis import GenesisToken, Params
from state.kv import MemoryKV
from state.testing import STUB_VERIFIER, Chain, dev_key, make_genesis
from tests.rpc_fixtures import bare_node

ALICE, BOB = dev_key("client-alice"), dev_key("client-bob")
VALIDATOR = dev_key("client-validator")
PRODUCE_EVERY_S = 0.02


class LiveNode:
    def __init__(self, *, tokens: tuple[GenesisToken, ...] = (), params: Params | None = None,
                 ws_limits: WsLimits | None = None) -> None:
        genesis = make_genesis(validators=[VALIDATOR], funded=[ALICE, BOB], tokens=tokens, params=params,
                               extra_balances={ALICE.address: {t.symbol: 10**30 for t in tokens}})
        self.app = Application(MemoryKV(), genesis, commit_verifier=STUB_VERIFIER)
        self.node = bare_node(self.app, "client-test")
        self.chain = Chain(self.app, VALIDATOR)
        self.loop = asyncio.new_event_loop()
        self.url = ""
        self.server: RPCServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="live-node", daemon=True)
        self._producer: asyncio.Task[None] | None = None
        self.ws_limits = ws_limits or WsLimits()

    def run(self, coro: Any, timeout: float = 30) -> Any:
        """Run ``coro`` on the node's loop and wait for its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def start(self) -> "LiveNode":
        self._thread.start()
        self.run(self._start())
        return self

    async def _start(self) -> None:
        context = self.node.rpc_context()
        dispatcher = Dispatcher(build_methods(context), costs=RPC_COSTS)
        self.hub = self.node.ws_hub = SubscriptionHub(receipts=self.app.block_receipts,
                                                      lookup_tx=functools.partial(tx_status, context),
                                                      limits=self.ws_limits)
        self.hub.start()
        self.server = RPCServer(make_app(dispatcher, max_request_bytes=4 * 1024 * 1024, websocket=self.hub.handle),
                                "127.0.0.1", 0, max_connections=300, request_timeout_s=10)
        await self.server.start()
        self.url = f"http://127.0.0.1:{self.server.port}/"
        self._producer = asyncio.create_task(self._produce())

    async def _produce(self) -> None:
        while True:
            await asyncio.sleep(PRODUCE_EVERY_S)
            if len(self.node.mempool):
                self._block()

    def _block(self) -> None:
        txs = self.node.mempool.reap(self.app.params.max_block_txs, self.app.params.max_block_bytes)
        block, _ = self.chain.block(txs)
        self.node.mempool.update(block)
        self.hub.on_commit(block)

    def make_block(self) -> None:
        async def one() -> None:
            self._block()

        self.run(one())

    def stop(self) -> None:
        async def shutdown() -> None:
            if self._producer is not None:
                self._producer.cancel()
            await self.hub.stop()
            if self.server is not None:
                await self.server.stop()

        self.run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def live_node(**kwargs: Any) -> Iterator[LiveNode]:
    node = LiveNode(**kwargs).start()
    try:
        yield node
    finally:
        node.stop()
