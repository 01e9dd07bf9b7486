"""WebSocket subscriptions on the RPC port: ``GET /ws``, JSON-RPC 2.0 in text frames.

Calls: ``qenex_subscribe [topic, filter?]`` answers a subscription id;
``qenex_unsubscribe [id]`` answers true (false for an id this connection does
not hold).  Notifications::

    {"jsonrpc": "2.0", "method": "qenex_subscription",
     "params": {"subscription": ID, "topic": TOPIC, "result": ...}}

Topics:

* ``newHeads``: each committed block's header, as ``qenex_getBlock`` renders it
  (without transactions);
* ``tx {hash}``: the status now (``pending``, ``queued`` or ``unknown``), then the
  final record once a block holds it (``status`` ok/failed, ``height``, ``index``,
  ``reason``, ``gas_used``, ``fee``, ``final: true``), after which the node
  forgets the subscription.  A hash already committed gets its record at once;
* ``events {address?, pool?, kinds?, contract?}``: per committed block with
  matching events, ``{height, block_hash, events: [...]}`` (node.events; kind
  ``contract`` is what contract code emitted, ``contract`` filters by the
  contract's address);
* ``pendingTransactions``: ``{hashes: [...]}``, the transactions this node newly
  admitted to its mempool, gathered for at most ``PENDING_FLUSH_S``.

What a subscriber costs is bounded before it is paid, and a subscriber never
slows consensus:

* commits and admissions only append to the hub's own queue (O(1)); one task
  renders each item once and offers the same string to every subscriber (a
  queue holds references to it, joined into a frame only when sent).  A
  block's events are rendered off the loop, once per event and once per
  distinct filter, at most ``MAX_EVENTS_NOTE_BYTES`` per notification (the
  rest counted in ``omitted``);
* each connection has a bounded queue of outgoing messages (count and bytes)
  drained by its own writer task.  An offer to a full queue disconnects that
  client with close code 4008, "subscriber too slow"; nothing ever waits on a
  client, and a close the client does not take is cut (transport abort) after
  ``close_timeout_s``;
* at most ``max_clients`` connections (the rest get a JSON-RPC 503 before the
  upgrade), ``max_subscriptions`` per connection, ``max_event_subscriptions``
  and ``max_pending_subscriptions`` node-wide (the costly kinds), incoming
  frames of at most ``max_frame_bytes`` (aiohttp closes with 1009 above it),
  JSON nested no deeper than the HTTP server allows, and a rate of calls and
  pings per connection (token bucket; a flood is closed with 1008);
* a connection holding no subscription for ``idle_s`` is closed (1000), and a
  peer that stops answering pings (``heartbeat_s``) is dropped;
* if the hub ever falls ``HUB_QUEUE_BLOCKS`` blocks behind, later blocks are
  not announced: tx subscribers then get their final record from the store,
  and heads and events subscribers are closed with 4009 to resubscribe.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from aiohttp import WSMsgType, web

from node.events import EVENT_KINDS, Event, EventFilter, block_events, select
from node.jsonrpc import (
    INVALID_REQUEST,
    MAX_JSON_DEPTH,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    RPCError,
    brief,
    error_response,
    invalid_params,
    json_depth_exceeds,
)
from node.rpc import header_to_json, receipt_to_json
from node.rpc_context import RpcContext
from node.rpc_params import hex0x, parse_address, parse_hex, parse_pool
from state.blocks import Block
from state.transactions import Receipt, SignedTransaction

log = logging.getLogger("qenex.rpc.ws")

TOPICS = ("newHeads", "tx", "events", "pendingTransactions")
SUBSCRIPTION_LIMIT = -32007  # server error: this connection or this node holds as many subscriptions as it may
TOO_SLOW_CLOSE_CODE = 4008
PENDING_FLUSH_S = 0.1
PENDING_MAX_HASHES = 5_000  # per notification; past it, admissions are counted in ``dropped``
HUB_QUEUE_BLOCKS = 256  # commits waiting for the hub's task; past it the hub is broken, not slow
GAP_CLOSE_CODE = 4009  # the hub skipped blocks: this subscriber missed notifications and must resubscribe
MAX_EVENTS_NOTE_BYTES = 1024 * 1024  # one events notification; past it, the rest are counted in "omitted"


@dataclass(frozen=True, slots=True)
class WsLimits:
    max_clients: int = 128
    max_subscriptions: int = 32
    max_event_subscriptions: int = 64
    max_pending_subscriptions: int = 64
    queue_messages: int = 512
    queue_bytes: int = 4 * 1024 * 1024
    max_frame_bytes: int = 8 * 1024
    idle_s: float = 30.0
    heartbeat_s: float = 30.0
    close_timeout_s: float = 2.0
    calls_per_s: float = 50.0
    call_burst: int = 200


@dataclass(slots=True)
class _Sub:
    id: str
    topic: str
    client: "_Client"
    events: EventFilter | None = None
    tx_hash: bytes | None = None
    head: str = ""  # the notification's text before its result (ids and topics are plain ASCII)

    def __post_init__(self) -> None:
        self.head = ('{"jsonrpc":"2.0","method":"qenex_subscription","params":{"subscription":"%s","topic":"%s",'
                     '"result":' % (self.id, self.topic))

    def notify(self, result_json: str) -> None:
        """Offer one notification; ``result_json`` is shared by every subscriber, never copied here."""
        self.client.offer(self.head, result_json, "}}")


class _Client:
    """One WebSocket connection: its subscriptions and its bounded outgoing queue."""

    def __init__(self, hub: "SubscriptionHub", ws: web.WebSocketResponse, request: web.Request) -> None:
        self.hub = hub
        self.ws = ws
        self.request = request
        self.remote = request.remote or "?"
        self.subs: dict[str, _Sub] = {}
        # Each message is the parts of one text frame, joined only when sent: a notification's
        # result is one string shared by every subscriber, so a queue holds references, not copies.
        self.queue: collections.deque[tuple[str, ...]] = collections.deque()
        self.queued_bytes = 0
        self.wake = asyncio.Event()
        self.closing = False
        self.tokens = float(hub.limits.call_burst)
        self.refilled = time.monotonic()
        self.idle_since: float | None = time.monotonic()
        self.close_task: asyncio.Task[None] | None = None
        self.drained = asyncio.Event()

    def offer(self, *parts: str) -> None:
        if self.closing:
            return
        limits = self.hub.limits
        size = sum(map(len, parts))
        if len(self.queue) >= limits.queue_messages or self.queued_bytes + size > limits.queue_bytes:
            self.hub.stats["too_slow"] += 1
            self.kick(TOO_SLOW_CLOSE_CODE, "subscriber too slow")
            return
        self.queue.append(parts)
        self.queued_bytes += size
        self.drained.clear()
        self.wake.set()

    def answer(self, request_id: Any, result: Any) -> None:
        self.offer(json.dumps({"jsonrpc": "2.0", "id": request_id, "result": result}))

    def error(self, request_id: Any, exc: RPCError) -> None:
        self.offer(json.dumps({"jsonrpc": "2.0", "id": request_id, "error": exc.to_json()}))

    def take_call(self) -> bool:
        """A token from the call budget (refilled at ``calls_per_s``)."""
        limits = self.hub.limits
        now = time.monotonic()
        self.tokens = min(float(limits.call_burst), self.tokens + (now - self.refilled) * limits.calls_per_s)
        self.refilled = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    async def write_loop(self) -> None:
        try:
            while True:
                while self.queue:
                    parts = self.queue.popleft()
                    message = parts[0] if len(parts) == 1 else "".join(parts)
                    self.queued_bytes -= len(message)
                    await self.ws.send_str(message)
                    self.hub.stats["sent"] += 1
                self.drained.set()
                if self.closing:
                    return
                await self.wake.wait()
                self.wake.clear()
        except (ConnectionError, RuntimeError):
            pass  # the socket went away: the read loop ends too

    def kick(self, code: int, reason: str, *, drain: bool = False) -> None:
        """Close this connection with ``code`` (at most ``close_timeout_s``, then abort); with ``drain``,
        what is queued is sent first (within the same time)."""
        if self.closing:
            return
        self.closing = True
        if not drain:
            self.queue.clear()
            self.queued_bytes = 0
        self.wake.set()
        self.hub._forget_subs(self)
        log.info("ws client %s closed: %s (%d)", self.remote, reason, code)
        task = self.close_task = asyncio.get_running_loop().create_task(self._close(code, reason, drain))
        self.hub._tasks.add(task)
        task.add_done_callback(self.hub._tasks.discard)

    async def _close(self, code: int, reason: str, drain: bool) -> None:
        try:
            if drain:
                await asyncio.wait_for(self.drained.wait(), self.hub.limits.close_timeout_s)
        except TimeoutError:
            pass
        closed = False
        try:
            closed = bool(await asyncio.wait_for(self.ws.close(code=code, message=reason.encode()),
                                                 self.hub.limits.close_timeout_s))
        except (TimeoutError, ConnectionError, RuntimeError):
            pass
        # A client that reads nothing never takes the close frame, and aiohttp's graceful transport close
        # would wait on its full buffer for ever (holding the connection, its descriptor and this read
        # loop): cut it unless the close handshake completed with nothing left to send.
        transport = self.request.transport
        if transport is not None and (not closed or transport.get_write_buffer_size() > 0):
            transport.abort()


class SubscriptionHub:
    """Every WebSocket subscriber of one node, and the fan-out of its commits and admissions.

    ``lookup_tx(hash)`` answers a transaction's status now: a dict with ``status``
    (and the final fields once committed); ``receipts(height)`` the receipts of a
    committed block.
    """

    def __init__(self, *, receipts: Callable[[int], "Iterable[Receipt] | None"],
                 lookup_tx: Callable[[bytes], dict[str, Any]], limits: WsLimits | None = None) -> None:
        self.limits = limits or WsLimits()
        self.receipts = receipts
        self.lookup_tx = lookup_tx
        self.clients: set[_Client] = set()
        self.heads: dict[str, _Sub] = {}
        self.pending: dict[str, _Sub] = {}
        self.events: dict[str, _Sub] = {}
        self.txs: dict[bytes, dict[str, _Sub]] = {}
        self.stats: collections.Counter[str] = collections.Counter()
        self._blocks: collections.deque[Block] = collections.deque()
        self._pending_hashes: list[str] = []
        self._pending_dropped = 0
        self._gap = False  # blocks were not announced (the hub fell behind): see _recover_gap
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._stopped = False

    # -- what the node calls ------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="ws-hub")

    async def stop(self) -> None:
        self._stopped = True
        for client in list(self.clients):
            client.kick(1001, "node shutting down")
        if self._task is not None:
            self._task.cancel()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.limits.close_timeout_s + 1)

    def on_commit(self, block: Block) -> None:
        """A block was committed (consensus or sync): queued for the hub's task, O(1)."""
        if not (self.heads or self.events or self.txs):
            return
        if len(self._blocks) >= HUB_QUEUE_BLOCKS:
            self.stats["blocks_dropped"] += 1
            if not self._gap:
                log.warning("ws hub is %d blocks behind: block %d and later ones not announced; heads and "
                            "events subscribers will be closed (%d), tx subscribers answered from the store",
                            len(self._blocks), block.header.height, GAP_CLOSE_CODE)
            self._gap = True
            return
        self._blocks.append(block)
        self._wake.set()

    def on_admitted(self, tx_hash: bytes) -> None:
        """A transaction entered this node's mempool (RPC or gossip)."""
        if not self.pending:
            return
        if len(self._pending_hashes) >= PENDING_MAX_HASHES:
            self._pending_dropped += 1
            return
        self._pending_hashes.append(hex0x(tx_hash))

    # -- the connection ----------------------------------------------------

    async def handle(self, request: web.Request) -> web.StreamResponse:
        limits = self.limits
        if self._stopped:
            return error_response(503, -32000, "node shutting down")
        if len(self.clients) >= limits.max_clients:
            self.stats["refused"] += 1
            return error_response(503, -32000, f"too many WebSocket clients (at most {limits.max_clients})")
        # autoping off: pings are answered below, after taking a token like any call
        ws = web.WebSocketResponse(heartbeat=limits.heartbeat_s, max_msg_size=limits.max_frame_bytes,
                                   timeout=limits.close_timeout_s, compress=False, autoping=False)
        if not ws.can_prepare(request).ok:
            return error_response(400, INVALID_REQUEST, "GET /ws expects a WebSocket upgrade")
        await ws.prepare(request)
        long_lived = getattr(request.protocol, "long_lived", None)
        if long_lived is not None:
            long_lived()  # node.rpc_server: no request deadline for this connection from now on
        client = _Client(self, ws, request)
        self.clients.add(client)
        writer = asyncio.get_running_loop().create_task(client.write_loop(), name="ws-writer")
        try:
            async for message in ws:
                if client.closing:
                    break
                if message.type == WSMsgType.TEXT:
                    self._on_text(client, message.data)
                elif message.type == WSMsgType.PING:
                    if self._take_call(client):
                        await ws.pong(message.data)
                elif message.type == WSMsgType.BINARY:
                    client.kick(1003, "binary frames are not accepted: send JSON-RPC text")
                # PONG: the heartbeat's answer (aiohttp notes it); nothing to do
        finally:
            if not client.closing:
                client.closing = True
                self._forget_subs(client)
            client.wake.set()
            self.clients.discard(client)
            if client.close_task is not None:  # returning first would let aiohttp close it with 1000
                await asyncio.shield(client.close_task)
            writer.cancel()
        return ws

    def _take_call(self, client: _Client) -> bool:
        if client.take_call():
            return True
        self.stats["flood"] += 1
        client.kick(1008, f"more than {self.limits.calls_per_s:g} calls/s", drain=True)
        return False

    def _on_text(self, client: _Client, text: str) -> None:
        if not self._take_call(client):
            return
        if json_depth_exceeds(text.encode(), MAX_JSON_DEPTH):
            client.error(None, RPCError(PARSE_ERROR, f"parse error: JSON nested deeper than {MAX_JSON_DEPTH} levels"))
            return
        try:
            call = json.loads(text)
        except ValueError:
            client.error(None, RPCError(PARSE_ERROR, "parse error: not JSON"))
            return
        if not isinstance(call, dict):
            what = "batches are not accepted on /ws" if isinstance(call, list) else "a request must be an object"
            client.error(None, RPCError(INVALID_REQUEST, f"invalid request: {what}"))
            return
        request_id = call.get("id")
        if not isinstance(request_id, (str, int, type(None))) or isinstance(request_id, bool):
            request_id = None
        method, params = call.get("method"), call.get("params", [])
        try:
            if call.get("jsonrpc") != "2.0" or not isinstance(method, str):
                raise RPCError(INVALID_REQUEST, 'invalid request: needs "jsonrpc": "2.0" and a method name')
            if not isinstance(params, list):
                raise invalid_params(f"{method} takes positional params (an array), got {type(params).__name__}")
            if method == "qenex_subscribe":
                self._subscribe(client, request_id, params)
            elif method == "qenex_unsubscribe":
                if len(params) != 1 or not isinstance(params[0], str):
                    raise invalid_params("qenex_unsubscribe takes one subscription id")
                client.answer(request_id, self._unsubscribe(client, params[0]))
            else:
                raise RPCError(METHOD_NOT_FOUND, f"method {brief(method)} not found on /ws "
                                                 "(qenex_subscribe, qenex_unsubscribe; other calls: POST /)")
        except RPCError as exc:
            client.error(request_id, exc)

    # -- subscribe / unsubscribe ----------------------------------------------

    def _subscribe(self, client: _Client, request_id: Any, params: list[Any]) -> None:
        if not 1 <= len(params) <= 2:
            raise invalid_params("qenex_subscribe takes [topic] or [topic, filter]")
        topic = params[0]
        flt = params[1] if len(params) == 2 else None
        if topic not in TOPICS:
            raise invalid_params(f"unknown topic {brief(topic)} (topics: {', '.join(TOPICS)})")
        limits = self.limits
        if len(client.subs) >= limits.max_subscriptions:
            raise RPCError(SUBSCRIPTION_LIMIT, f"this connection holds {limits.max_subscriptions} subscriptions, "
                                               "the most it may")
        sub = _Sub(f"0x{secrets.token_hex(8)}", topic, client)
        if topic in ("newHeads", "pendingTransactions"):
            if flt not in (None, {}):
                raise invalid_params(f"{topic} takes no filter, got {brief(flt)}")
            if topic == "pendingTransactions" and len(self.pending) >= limits.max_pending_subscriptions:
                raise RPCError(SUBSCRIPTION_LIMIT, f"this node serves {limits.max_pending_subscriptions} "
                                                   "pendingTransactions subscriptions, the most it may")
            (self.heads if topic == "newHeads" else self.pending)[sub.id] = sub
        elif topic == "events":
            sub.events = parse_event_filter(flt)
            if len(self.events) >= limits.max_event_subscriptions:
                raise RPCError(SUBSCRIPTION_LIMIT, f"this node serves {limits.max_event_subscriptions} events "
                                                   "subscriptions, the most it may")
            self.events[sub.id] = sub
        else:
            if not isinstance(flt, dict) or set(flt) != {"hash"}:
                raise invalid_params(f'tx takes a filter {{"hash": "0x..."}}, got {brief(flt)}')
            sub.tx_hash = parse_hex(flt["hash"], "hash", length=32)
            status = self.lookup_tx(sub.tx_hash)
            final = bool(status.get("final"))
            if not final:  # registered before any offer: an offer that overflows drops it with the client
                client.subs[sub.id] = sub
                self.txs.setdefault(sub.tx_hash, {})[sub.id] = sub
                client.idle_since = None
            client.answer(request_id, sub.id)
            sub.notify(json.dumps(status))
            if final:  # answered in full: nothing more will come
                self._idle(client)
            return
        client.subs[sub.id] = sub
        client.idle_since = None
        client.answer(request_id, sub.id)

    def _unsubscribe(self, client: _Client, sub_id: str) -> bool:
        sub = client.subs.pop(sub_id, None)
        if sub is None:
            return False
        self._drop_sub(sub)
        self._idle(client)
        return True

    def _drop_sub(self, sub: _Sub) -> None:
        self.heads.pop(sub.id, None)
        self.pending.pop(sub.id, None)
        self.events.pop(sub.id, None)
        if sub.tx_hash is not None and (watchers := self.txs.get(sub.tx_hash)) is not None:
            watchers.pop(sub.id, None)
            if not watchers:
                del self.txs[sub.tx_hash]

    def _forget_subs(self, client: _Client) -> None:
        for sub in client.subs.values():
            self._drop_sub(sub)
        client.subs.clear()

    def _idle(self, client: _Client) -> None:
        if not client.subs and not client.closing:
            client.idle_since = time.monotonic()

    # -- fan-out -------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), PENDING_FLUSH_S)
            except TimeoutError:
                pass
            self._wake.clear()
            try:
                self._flush_pending()
                self._close_idle()
                while self._blocks:
                    await self._announce(self._blocks.popleft())
                if self._gap:
                    self._recover_gap()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug here must not end the announcements of later blocks
                log.exception("ws hub failed to announce")

    def _flush_pending(self) -> None:
        if not self._pending_hashes and not self._pending_dropped:
            return
        body: dict[str, Any] = {"hashes": self._pending_hashes}
        if self._pending_dropped:
            body["dropped"] = self._pending_dropped
        text = json.dumps(body)
        self._pending_hashes, self._pending_dropped = [], 0
        for sub in list(self.pending.values()):
            sub.notify(text)

    def _close_idle(self) -> None:
        cutoff = time.monotonic() - self.limits.idle_s
        for client in list(self.clients):
            if client.idle_since is not None and client.idle_since < cutoff:
                client.kick(1000, f"no subscription for {self.limits.idle_s:g} s")

    async def _announce(self, block: Block) -> None:
        height = block.header.height
        if self.heads:
            text = json.dumps(header_to_json(block))
            for sub in list(self.heads.values()):
                sub.notify(text)
        if not (self.txs or self.events) or not block.txs:
            return
        receipts = tuple(self.receipts(height) or ())
        if len(receipts) != len(block.txs):
            log.warning("ws hub: no receipts for block %d; its tx and events notifications are skipped", height)
            return
        if self.txs:
            self._announce_txs(block, receipts)
        if self.events:
            filters = {sub.events for sub in self.events.values() if sub.events is not None}
            # Off the loop: events are rendered once each, one notification per distinct filter.
            texts = await asyncio.to_thread(_event_notes, block, receipts, filters)
            for sub in list(self.events.values()):  # read again: unsubscribed meanwhile -> nothing
                if sub.events is not None and (text := texts.get(sub.events)) is not None:
                    sub.notify(text)

    def _announce_txs(self, block: Block, receipts: tuple[Receipt, ...]) -> None:
        height = block.header.height
        if len(self.txs) < len(block.txs):
            where = {stx.hash: i for i, stx in enumerate(block.txs) if stx.hash in self.txs}
        else:
            where = {stx.hash: i for i, stx in enumerate(block.txs)}
        for tx_hash in [h for h in self.txs if h in where]:
            index = where[tx_hash]
            self._final(tx_hash, json.dumps(final_record(tx_hash, receipts[index], height, index, block.txs[index])))

    def _final(self, tx_hash: bytes, text: str) -> None:
        for sub in list(self.txs.pop(tx_hash, {}).values()):
            sub.client.subs.pop(sub.id, None)
            sub.notify(text)
            self._idle(sub.client)

    def _recover_gap(self) -> None:
        """After skipped blocks: a tx subscriber gets its final from the store; heads and events
        subscribers missed notifications, so they are closed (GAP_CLOSE_CODE) to resubscribe."""
        self._gap = False
        for tx_hash in list(self.txs):
            status = self.lookup_tx(tx_hash)
            if status.get("final"):
                self._final(tx_hash, json.dumps(status))
        for sub in list(self.heads.values()) + list(self.events.values()):
            sub.client.kick(GAP_CLOSE_CODE, "notifications were lost (the node fell behind): resubscribe")


def final_record(tx_hash: bytes, receipt: Receipt, height: int, index: int,
                 stx: "SignedTransaction | None" = None) -> dict[str, Any]:
    """A committed transaction's record, as the ``tx`` topic ends with it (a contract transaction's
    with its events, output and deployed address: ``node.rpc.receipt_to_json``)."""
    return {"hash": hex0x(tx_hash), **receipt_to_json(receipt, stx), "height": height, "index": index,
            "committed": True, "final": True}


def tx_status(ctx: RpcContext, tx_hash: bytes) -> dict[str, Any]:
    """A transaction's status now (the hub's ``lookup_tx``): its final record if committed, else
    ``pending``, ``queued`` or ``unknown``."""
    loc = ctx.app.get_tx(tx_hash)
    if loc is not None:
        return final_record(tx_hash, loc.receipt, loc.height, loc.index, loc.stx)
    status = ("pending" if ctx.pending_tx(tx_hash) is not None
              else "queued" if ctx.queued_tx(tx_hash) is not None else "unknown")
    return {"hash": hex0x(tx_hash), "status": status, "committed": False, "final": False}


def _event_notes(block: Block, receipts: tuple[Receipt, ...], filters: set[EventFilter]) -> dict[EventFilter, str]:
    """Each distinct filter's notification text for ``block`` (absent where nothing matches): pure,
    thread-safe.  A text holds at most MAX_EVENTS_NOTE_BYTES of events; the rest are counted in
    ``omitted`` (qenex_getBlock with full=true has them all)."""
    events = block_events(block, receipts)
    if not events:
        return {}
    head = '{"height":%d,"block_hash":"%s","events":[' % (block.header.height, hex0x(block.hash))
    out = {}
    for flt in filters:
        chosen = select(events, flt)
        if not chosen:
            continue
        parts, size = [], 0
        for event in chosen:
            if size + len(event.json) + 1 > MAX_EVENTS_NOTE_BYTES:
                break
            parts.append(event.json)
            size += len(event.json) + 1
        omitted = len(chosen) - len(parts)
        out[flt] = head + ",".join(parts) + (f'],"omitted":{omitted}}}' if omitted else "]}")
    return out


MAX_FILTER_KINDS = 32


def parse_event_filter(flt: Any) -> EventFilter:
    """An ``events`` filter: ``{address?, pool?, kinds?, contract?}`` (every part optional)."""
    if flt is None:
        return EventFilter()
    if not isinstance(flt, dict):
        raise invalid_params(f"events filter must be an object {{address?, pool?, kinds?, contract?}}, "
                             f"got {brief(flt)}")
    unknown = set(flt) - {"address", "pool", "kinds", "contract"}
    if unknown:
        raise invalid_params(f"events filter has unknown field(s) {brief(sorted(map(str, unknown)))} "
                             "(address, pool, kinds, contract)")
    address = parse_address(flt["address"], "address") if flt.get("address") is not None else None
    contract = parse_address(flt["contract"], "contract") if flt.get("contract") is not None else None
    pool = parse_pool(flt["pool"]) if flt.get("pool") is not None else None
    kinds = None
    if flt.get("kinds") is not None:
        raw = flt["kinds"]
        if not isinstance(raw, list) or not 1 <= len(raw) <= MAX_FILTER_KINDS:
            raise invalid_params(f"kinds must be a list of 1-{MAX_FILTER_KINDS} event kinds")
        bad = [k for k in raw if not isinstance(k, str) or k not in EVENT_KINDS]
        if bad:
            raise invalid_params(f"unknown event kind {brief(bad[0])} (kinds: {', '.join(sorted(EVENT_KINDS))})")
        kinds = frozenset(raw)
    return EventFilter(address, pool, kinds, contract)
