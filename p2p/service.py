"""The asyncio face of the p2p layer.

``P2PService`` runs py-libp2p in its own trio thread (``p2p.bridge``) and
shows the node only coroutines and callbacks that run on the node's asyncio
loop. Nothing here blocks the loop on the trio thread: fire-and-forget calls
(send_direct, broadcast_direct, penalize) are posted, calls with a result
(publish, request) are awaited as asyncio futures. Traffic from the trio
thread reaches the loop through bounded inboxes (``p2p.inbox``), one per
kind, so a flood is dropped and counted rather than queued without bound.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping

from p2p.bridge import TrioThread
from p2p.config import P2PConfig
from p2p.engine import AppSink, GossipValidator, Libp2pEngine, Started
from p2p.errors import FrameTooLarge, NotConnected, RequestFailed, RequestTooLarge, ServiceNotRunning
from p2p.framing import encode_frame
from p2p.identity import parse_peer_id, peer_id_from_seed
from p2p.inbox import BoundedInbox
from p2p.stats import Stats

logger = logging.getLogger("qenex.p2p")

GossipCallback = Callable[[str, str, bytes], None]
DirectCallback = Callable[[str, bytes], None]
RequestHandler = Callable[[str, bytes], Awaitable[bytes]]


class P2PService:
    def __init__(
        self,
        config: P2PConfig,
        *,
        on_gossip: GossipCallback,
        on_direct: DirectCallback,
        request_handlers: Mapping[str, RequestHandler] | None = None,
        gossip_validators: Mapping[str, GossipValidator] | None = None,
    ) -> None:
        """``gossip_validators[topic](data)`` runs in the trio thread before a
        message is delivered or relayed: it must be cheap, stateless and
        thread-safe, and raise ``RejectMessage`` (or anything) to drop it."""
        self._config = config
        self._on_gossip = on_gossip
        self._on_direct = on_direct
        # Protocols are registered with the host at start(); entries may be
        # added until then (the node wires its sync handlers this way).
        self.request_handlers: dict[str, RequestHandler] = dict(request_handlers or {})
        self._stats = Stats()
        self._thread = TrioThread(name="qenex-p2p")
        self._gossip_inbox = BoundedInbox(
            "gossip", config.inbound_gossip_messages, config.inbound_gossip_bytes,
            self._schedule, self._deliver_gossip, self._dropped,
        )
        self._direct_inbox = BoundedInbox(
            "direct", config.inbound_direct_frames, config.inbound_direct_bytes,
            self._schedule, self._deliver_direct, self._dropped,
        )
        self._engine = Libp2pEngine(
            config,
            AppSink(gossip=self._gossip_from_trio, direct=self._direct_from_trio, request=self._request_from_trio),
            self._stats,
            dict(gossip_validators or {}),
        )
        self.peer_id: str = peer_id_from_seed(config.identity_seed)
        self.listen_addrs: list[str] = []
        self._state = "new"

    # lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Start the trio thread, listen, begin dialling bootstrap peers;
        returns once listening."""
        if self._state != "new":
            raise ServiceNotRunning(self._state)
        for protocol in self.request_handlers:
            if not isinstance(protocol, str) or not protocol.startswith("/"):
                raise ValueError(f"request protocol {protocol!r} must start with '/'")
        self._state = "starting"
        try:
            started: Started = await self._thread.start(
                self._engine.run, tuple(self.request_handlers), grace_s=self._config.stop_grace_s
            )
        except BaseException:
            self._state = "failed"
            await self._thread.stop(self._config.stop_grace_s)
            raise
        self.listen_addrs = started.listen_addrs
        self._state = "running"

    async def stop(self) -> None:
        """Shut the trio thread down within the grace timeout; idempotent."""
        if self._state in ("new", "stopped"):
            self._state = "stopped"
            return
        self._state = "stopping"
        await self._thread.stop(self._config.stop_grace_s)
        self._state = "stopped"

    @property
    def running(self) -> bool:
        """False once stopped, or if the network thread died."""
        return self._state == "running" and self._thread.running

    def _require_running(self) -> None:
        if not self.running:
            raise ServiceNotRunning("stopped" if self._state == "running" else self._state)

    # queries -----------------------------------------------------------------

    def connected_peers(self) -> list[str]:
        if not self.running:
            return []
        return sorted(self._engine.connected)

    def stats(self) -> dict[str, int]:
        snapshot = self._stats.snapshot()
        snapshot["connected_peers"] = len(self._engine.connected)
        snapshot["banned_peers"] = len(self._engine.banned)
        snapshot["inbox_gossip_queued"] = len(self._gossip_inbox)
        snapshot["inbox_direct_queued"] = len(self._direct_inbox)
        return snapshot

    def banned_peers(self) -> list[str]:
        return sorted(self._engine.banned)

    def set_direct_peers(self, peer_ids: Iterable[str] | None, *, penalize_others: bool = True) -> None:
        """Accept inbound direct streams only from these peers (None: from
        anyone). Others are reset before a byte is read, and penalised unless
        ``penalize_others`` is False: for an owner that knows its list may lag
        an honest peer's standing (a node catching up on a chain whose
        validator set changed at heights it has not reached)."""
        allowed = None if peer_ids is None else frozenset(str(parse_peer_id(p)) for p in peer_ids)
        self._engine.direct_allowed = allowed  # replaced, never mutated: read by the trio thread
        self._engine.direct_refusals_penalized = penalize_others

    # gossip --------------------------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> None:
        if len(data) > self._config.max_gossip_bytes:
            raise FrameTooLarge(len(data), self._config.max_gossip_bytes)
        self._require_running()
        await self._thread.call(self._engine.publish, topic, bytes(data))

    # direct streams ----------------------------------------------------------

    async def send_direct(self, peer_id: str, data: bytes) -> None:
        """Queue one frame for peer_id's persistent stream. Returns once
        queued (delivery is not confirmed); NotConnected if the peer is not
        connected now, FrameTooLarge over max_frame_bytes."""
        frame = encode_frame(bytes(data), self._config.max_frame_bytes)
        self._require_running()
        pid = parse_peer_id(peer_id)
        if peer_id not in self._engine.connected:
            raise NotConnected(peer_id)
        self._thread.post(self._engine.send_direct, pid, frame)

    async def broadcast_direct(self, data: bytes) -> None:
        """send_direct to every connected peer; per-peer failures are counted
        and logged by the links, never raised."""
        frame = encode_frame(bytes(data), self._config.max_frame_bytes)
        self._require_running()
        self._thread.post(self._engine.broadcast_direct, frame)

    # request/response --------------------------------------------------------

    async def request(
        self,
        peer_id: str,
        protocol: str,
        data: bytes,
        timeout: float = 5.0,
        max_response_bytes: int | None = None,
    ) -> bytes:
        """One request frame out, one response frame back, on a fresh stream.
        Every failure of the exchange (timeout, reset, unsupported protocol,
        oversize either way, service stopping) raises RequestFailed carrying
        peer and reason; a malformed peer id raises InvalidPeerId. A response
        whose header announces more than ``max_response_bytes`` (default
        max_frame_bytes) is refused before its body is read, and the peer
        penalised."""
        if len(data) > self._config.max_frame_bytes:
            raise RequestTooLarge(peer_id, protocol, len(data), self._config.max_frame_bytes)
        self._require_running()
        pid = parse_peer_id(peer_id)
        limit = self._config.max_frame_bytes if max_response_bytes is None else min(
            max_response_bytes, self._config.max_frame_bytes)
        try:
            return await self._thread.call(self._engine.request, pid, protocol, bytes(data), timeout, limit)
        except ServiceNotRunning as exc:
            raise RequestFailed(peer_id, protocol, f"service {exc.state}") from exc

    # scores ------------------------------------------------------------------

    def penalize(self, peer_id: str, reason: str, points: int = 10) -> None:
        """Lower a peer's score; at the ban threshold it is disconnected and
        banned for config.ban_seconds."""
        if points < 0:
            raise ValueError(f"penalty points {points} must be >= 0")
        pid = parse_peer_id(peer_id)
        if not self.running:
            return
        try:
            self._thread.post(self._engine.penalize, pid, reason, points)
        except ServiceNotRunning:
            pass

    def ban(self, peer_id: str, reason: str) -> None:
        """Penalise to the ban threshold at once: for input no honest peer
        sends (over a decode limit, consensus traffic from a non-validator)."""
        self.penalize(peer_id, reason, self._config.ban_threshold)

    def unban(self, peer_id: str) -> bool:
        """Lift a ban now (its score cleared too); False if the peer was not banned."""
        pid = parse_peer_id(peer_id)
        if peer_id not in self._engine.banned:
            return False
        self._require_running()
        self._thread.post(self._engine.unban, pid)
        return True

    # trio -> asyncio -----------------------------------------------------------

    def _gossip_from_trio(self, topic: str, from_peer: str, data: bytes) -> None:
        self._gossip_inbox.put((topic, from_peer, data), len(data))

    def _direct_from_trio(self, from_peer: str, frames: list[bytes]) -> None:
        for frame in frames:
            self._direct_inbox.put((from_peer, frame), len(frame))

    def _schedule(self, fn: Callable[[], None]) -> bool:
        return self._thread.to_loop(fn)

    def _dropped(self, kind: str, size: int) -> None:
        self._stats.add(f"{kind}_dropped_backpressure")

    def _deliver_gossip(self, item: tuple[str, str, bytes]) -> None:
        self._deliver(self._on_gossip, *item)

    def _deliver_direct(self, item: tuple[str, bytes]) -> None:
        self._deliver(self._on_direct, *item)

    def _deliver(self, callback: Callable[..., None], *args: object) -> None:
        # On the asyncio loop. A failing callback is the node's bug; log it
        # and keep delivering.
        try:
            callback(*args)
        except Exception:
            self._stats.add("callback_errors")
            logger.exception("p2p callback %r failed", callback)

    async def _request_from_trio(self, protocol: str, from_peer: str, data: bytes) -> bytes:
        handler = self.request_handlers[protocol]
        return await self._thread.run_in_loop(handler, from_peer, data)
