"""The asyncio face of the p2p layer.

``P2PService`` runs py-libp2p in its own trio thread (``p2p.bridge``) and
shows the node only coroutines and callbacks that run on the node's asyncio
loop. Nothing here blocks the loop on the trio thread: fire-and-forget calls
(send_direct, broadcast_direct, penalize) are posted, calls with a result
(publish, request) are awaited as asyncio futures.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping

from p2p.bridge import TrioThread
from p2p.config import P2PConfig
from p2p.engine import AppSink, Engine, Started
from p2p.errors import FrameTooLarge, NotConnected, RequestFailed, RequestTooLarge, ServiceNotRunning
from p2p.framing import encode_frame
from p2p.identity import parse_peer_id, peer_id_from_seed
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
    ) -> None:
        self._config = config
        self._on_gossip = on_gossip
        self._on_direct = on_direct
        # Protocols are registered with the host at start(); entries may be
        # added until then (the node wires its sync handlers this way).
        self.request_handlers: dict[str, RequestHandler] = dict(request_handlers or {})
        self._stats = Stats()
        self._thread = TrioThread(name="qenex-p2p")
        self._engine = Engine(
            config,
            AppSink(gossip=self._gossip_from_trio, direct=self._direct_from_trio, request=self._request_from_trio),
            self._stats,
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
        return snapshot

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

    async def request(self, peer_id: str, protocol: str, data: bytes, timeout: float = 5.0) -> bytes:
        """One request frame out, one response frame back, on a fresh stream.
        Every failure of the exchange (timeout, reset, unsupported protocol,
        oversize either way, service stopping) raises RequestFailed carrying
        peer and reason; a malformed peer id raises InvalidPeerId."""
        if len(data) > self._config.max_frame_bytes:
            raise RequestTooLarge(peer_id, protocol, len(data), self._config.max_frame_bytes)
        self._require_running()
        pid = parse_peer_id(peer_id)
        try:
            return await self._thread.call(self._engine.request, pid, protocol, bytes(data), timeout)
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

    # trio -> asyncio -----------------------------------------------------------

    def _gossip_from_trio(self, topic: str, from_peer: str, data: bytes) -> None:
        self._thread.to_loop(self._deliver, self._on_gossip, topic, from_peer, data)

    def _direct_from_trio(self, from_peer: str, frames: list[bytes]) -> None:
        self._thread.to_loop(self._deliver_direct, from_peer, frames)

    def _deliver_direct(self, from_peer: str, frames: list[bytes]) -> None:
        for frame in frames:
            self._deliver(self._on_direct, from_peer, frame)

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
