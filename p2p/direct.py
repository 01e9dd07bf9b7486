"""Persistent direct streams: one outbound stream per peer, reused for every
frame, reopened on failure; any number of inbound streams read frame by frame.

Runs in the trio thread. Outbound frames wait in a bounded per-peer queue;
on overflow the oldest frame is dropped and counted, never silently.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.peer.id import ID

from p2p.config import P2PConfig
from p2p.errors import FrameTooLarge, SlowFrame, TruncatedFrame
from p2p.stats import Stats
from p2p.streams import (
    PENALTY_OVERSIZE,
    PENALTY_SLOW,
    PENALTY_STREAM_FLOOD,
    PENALTY_UNAUTHORISED,
    FaultFn,
    close_quietly,
    pump_frames,
    reset_quietly,
    stream_peer,
)

logger = logging.getLogger("qenex.p2p")

DIRECT_PROTOCOL = TProtocol("/qenex/direct/1.0.0")
WRITE_BATCH_BYTES = 1024 * 1024  # frames are coalesced into writes up to this size
RETRY_PAUSE_S = 0.2


OVERFLOW_LOG_INTERVAL_S = 1.0


class _Outbound:
    __slots__ = ("queue", "queued_bytes", "wakeup", "scope", "unlogged_drops", "last_drop_log", "writing")

    def __init__(self) -> None:
        self.writing = False
        self.queue: deque[bytes] = deque()
        self.queued_bytes = 0
        self.wakeup = trio.Event()
        self.scope = trio.CancelScope()
        self.unlogged_drops = 0
        self.last_drop_log = float("-inf")


class DirectLinks:
    def __init__(
        self,
        host: IHost,
        config: P2PConfig,
        stats: Stats,
        deliver: Callable[[str, list[bytes]], None],
        on_fault: FaultFn,
        allowed: Callable[[ID], bool] = lambda peer_id: True,
        penalize_refused: Callable[[], bool] = lambda: True,
    ) -> None:
        self._host = host
        self._config = config
        self._stats = stats
        self._deliver = deliver
        self._on_fault = on_fault
        self._allowed = allowed
        self._penalize_refused = penalize_refused
        self._outbound: dict[ID, _Outbound] = {}
        self._inbound_streams: dict[ID, int] = {}
        self._nursery: trio.Nursery | None = None

    def attach(self, nursery: trio.Nursery | None) -> None:
        """The nursery writer tasks run in; None while stopping."""
        self._nursery = nursery

    def queued(self, peer_id: ID) -> int:
        link = self._outbound.get(peer_id)
        return len(link.queue) if link else 0

    # outbound ------------------------------------------------------------

    def enqueue(self, peer_id: ID, frame: bytes) -> None:
        """Queue an encoded frame (header included) for peer_id."""
        if self._nursery is None:
            self._stats.add("direct_dropped_send_failed")
            logger.debug("direct frame to %s dropped: service stopping", peer_id)
            return
        link = self._outbound.get(peer_id)
        if link is None:
            link = _Outbound()
            self._outbound[peer_id] = link
            self._nursery.start_soon(self._writer, peer_id, link)
        link.queue.append(frame)
        link.queued_bytes += len(frame)
        dropped = 0
        while len(link.queue) > 1 and (
            len(link.queue) > self._config.direct_queue_frames
            or link.queued_bytes > self._config.direct_queue_bytes
        ):
            link.queued_bytes -= len(link.queue.popleft())
            dropped += 1
        if dropped:
            self._stats.add("direct_dropped_overflow", dropped)
            self._log_overflow(peer_id, link, dropped)
        link.wakeup.set()

    def _log_overflow(self, peer_id: ID, link: _Outbound, dropped: int) -> None:
        # Counted exactly in stats; logged at most once a second per peer.
        link.unlogged_drops += dropped
        now = trio.current_time()
        if now - link.last_drop_log >= OVERFLOW_LOG_INTERVAL_S:
            logger.warning(
                "direct queue to %s full: dropped %d oldest frame(s)", peer_id, link.unlogged_drops
            )
            link.unlogged_drops = 0
            link.last_drop_log = now

    def drop_peer(self, peer_id: ID) -> None:
        """The peer disconnected or was banned: discard its queue and writer."""
        link = self._outbound.pop(peer_id, None)
        if link is None:
            return
        if link.queue:
            self._stats.add("direct_dropped_disconnected", len(link.queue))
            logger.info("dropped %d queued direct frame(s) to disconnected %s", len(link.queue), peer_id)
        link.queue.clear()
        link.scope.cancel()

    async def drain(self, timeout_s: float) -> None:
        """At shutdown: give queued frames up to timeout_s to go out."""
        with trio.move_on_after(timeout_s):
            while any(link.queue or link.writing for link in self._outbound.values()):
                await trio.sleep(0.01)
        left = sum(len(link.queue) for link in self._outbound.values())
        if left:
            logger.warning("stopping with %d direct frame(s) unsent", left)

    def _take_batch(self, link: _Outbound) -> list[bytes]:
        batch = [link.queue.popleft()]
        size = len(batch[0])
        while link.queue and size + len(link.queue[0]) <= WRITE_BATCH_BYTES:
            frame = link.queue.popleft()
            batch.append(frame)
            size += len(frame)
        link.queued_bytes -= size
        return batch

    async def _open(self, peer_id: ID) -> INetStream:
        with trio.fail_after(self._config.direct_write_timeout_s):
            stream = await self._host.new_stream(peer_id, [DIRECT_PROTOCOL])
        self._stats.add("direct_streams_opened")
        return stream

    async def _writer(self, peer_id: ID, link: _Outbound) -> None:
        stream: INetStream | None = None
        try:
            with link.scope:
                while True:
                    while not link.queue:
                        link.wakeup = trio.Event()
                        await link.wakeup.wait()
                    batch = self._take_batch(link)
                    payload = b"".join(batch)
                    link.writing = True
                    sent = False
                    # One retry on a fresh stream: the old one may have been
                    # reset by the peer since our last write.
                    for attempt in (1, 2):
                        try:
                            if stream is None:
                                stream = await self._open(peer_id)
                            with trio.fail_after(self._config.direct_write_timeout_s):
                                await stream.write(payload)
                            sent = True
                            break
                        except Exception as exc:  # transport errors, TooSlowError
                            self._stats.add("direct_stream_failures")
                            logger.debug("direct write to %s failed (attempt %d): %r", peer_id, attempt, exc)
                            if stream is not None:
                                await reset_quietly(stream)
                                stream = None
                    link.writing = False
                    if sent:
                        self._stats.add("direct_frames_out", len(batch))
                        self._stats.add("direct_bytes_out", len(payload))
                    else:
                        self._stats.add("direct_dropped_send_failed", len(batch))
                        logger.warning("dropped %d direct frame(s) to %s: send failed", len(batch), peer_id)
                        await trio.sleep(RETRY_PAUSE_S)
        finally:
            if self._outbound.get(peer_id) is link:
                del self._outbound[peer_id]
            if stream is not None:
                await reset_quietly(stream)

    # inbound -------------------------------------------------------------

    async def handle_inbound(self, stream: INetStream) -> None:
        peer_id = stream_peer(stream)
        if peer_id is None:
            await reset_quietly(stream)
            return
        if not self._allowed(peer_id):
            # Before reading a byte: consensus traffic only from validators.
            self._stats.add("direct_refused_not_allowed")
            if self._penalize_refused():
                self._on_fault(peer_id, "direct stream from a peer that is not a validator", PENALTY_UNAUTHORISED,
                               None)
            else:
                logger.debug("direct stream from %s refused unpenalised: the allowlist may lag it", peer_id)
            await reset_quietly(stream)
            return
        open_streams = self._inbound_streams.get(peer_id, 0)
        if open_streams >= self._config.max_inbound_direct_streams_per_peer:
            self._on_fault(peer_id, f"more than {open_streams} direct streams", PENALTY_STREAM_FLOOD, None)
            await reset_quietly(stream)
            return
        self._inbound_streams[peer_id] = open_streams + 1
        peer = peer_id.to_base58()

        def on_frames(frames: list[bytes]) -> None:
            self._stats.add("direct_frames_in", len(frames))
            self._stats.add("direct_bytes_in", sum(map(len, frames)))
            self._deliver(peer, frames)

        try:
            await pump_frames(stream, self._config.max_frame_bytes, self._config.frame_body_timeout_s, on_frames)
        except FrameTooLarge as exc:
            self._on_fault(peer_id, f"direct frame of {exc.size} bytes over {exc.limit}", PENALTY_OVERSIZE, None)
            await reset_quietly(stream)
        except SlowFrame as exc:
            self._on_fault(peer_id, str(exc), PENALTY_SLOW, None)
            await reset_quietly(stream)
        except TruncatedFrame as exc:
            # A peer that dies mid-write truncates its last frame: no fault.
            logger.debug("direct stream from %s: %s", peer_id, exc)
            await reset_quietly(stream)
        else:
            await close_quietly(stream)
        finally:
            remaining = self._inbound_streams.get(peer_id, 1) - 1
            if remaining:
                self._inbound_streams[peer_id] = remaining
            else:
                self._inbound_streams.pop(peer_id, None)
