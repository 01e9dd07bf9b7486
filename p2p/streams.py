"""Trio-side stream plumbing: frame reading with timeouts, handler guards."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import INetStream
from libp2p.io.exceptions import IOException
from libp2p.network.connection.exceptions import RawConnError
from libp2p.peer.id import ID
from libp2p.stream_muxer.exceptions import MuxedConnError, MuxedStreamError

from p2p.errors import SlowFrame
from p2p.framing import FrameDecoder

logger = logging.getLogger("qenex.p2p")

READ_CHUNK = 256 * 1024

# Penalty points (ban threshold defaults to 100).
PENALTY_MALFORMED = 25  # bytes that do not parse: garbage protobuf, bad handshake
PENALTY_OVERSIZE = 50  # a length prefix over our bound: deliberate or broken
PENALTY_SLOW = 10  # started a frame and never finished it
PENALTY_STREAM_FLOOD = 5  # more concurrent inbound streams than allowed
PENALTY_UNAUTHORISED = 25  # a direct (consensus) stream from a peer that is not a validator

# (peer, reason, points, exception or None) -> None; trio thread.
FaultFn = Callable[[ID, str, int, BaseException | None], None]
StreamHandler = Callable[[INetStream], Awaitable[None]]

# Failures of the transport under a stream: a peer that went away, reset a
# stream or closed a connection did nothing wrong.
TRANSPORT_FAILURES: tuple[type[BaseException], ...] = (
    IOException,  # includes StreamError/StreamEOF/StreamReset/IncompleteReadError
    MuxedStreamError,
    MuxedConnError,
    RawConnError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    ConnectionError,
)


async def reset_quietly(stream: INetStream) -> None:
    with trio.CancelScope(shield=True):
        try:
            await stream.reset()
        except Exception:
            logger.debug("stream reset failed", exc_info=True)


async def close_quietly(stream: INetStream) -> None:
    with trio.CancelScope(shield=True):
        try:
            await stream.close()
        except Exception:
            logger.debug("stream close failed", exc_info=True)


def stream_peer(stream: INetStream) -> ID | None:
    try:
        return stream.muxed_conn.peer_id
    except Exception:
        return None


def guard(name: str, handler: StreamHandler, on_fault: FaultFn) -> StreamHandler:
    """Wrap a stream handler: nothing it raises may leave it.

    Transport failures are logged at debug level; anything else is the peer's
    fault (malformed input reached a parser) or our bug, is logged with its
    traceback, penalises the peer, and resets the stream.
    """

    async def guarded(stream: INetStream) -> None:
        try:
            await handler(stream)
        except TRANSPORT_FAILURES as exc:
            logger.debug("%s stream from %s ended: %r", name, stream_peer(stream), exc)
            await reset_quietly(stream)
        except Exception as exc:
            peer_id = stream_peer(stream)
            if peer_id is not None:
                on_fault(peer_id, f"{name} stream raised {type(exc).__name__}", PENALTY_MALFORMED, exc)
            else:
                logger.warning("%s stream from unknown peer raised", name, exc_info=exc)
            await reset_quietly(stream)

    guarded.__qualname__ = f"guard({name})"
    return guarded


async def pump_frames(
    stream: INetStream,
    limit: int,
    body_timeout_s: float,
    on_frames: Callable[[list[bytes]], None],
) -> None:
    """Read frames until the stream ends; on_frames gets every frame that
    one read completed (so a burst costs one hand-off, not one per frame).

    Waiting for the next header has no timeout (an idle stream is healthy and
    a dead connection resets it); once a frame has started it must complete
    within body_timeout_s, so a trickling peer cannot hold the stream. Raises
    FrameTooLarge, SlowFrame, TruncatedFrame, or the transport's errors.
    """
    decoder = FrameDecoder(limit)
    deadline = float("inf")
    while True:
        with trio.move_on_at(deadline):
            try:
                data = await stream.read(READ_CHUNK)
            except EOFError:  # StreamEOF
                data = b""
            if not data:
                decoder.finish()
                return
            frames = decoder.feed(data)
            if frames:
                on_frames(frames)
            if not decoder.pending:
                deadline = float("inf")
            elif frames or deadline == float("inf"):
                deadline = trio.current_time() + body_timeout_s
            continue
        raise SlowFrame(decoder.buffered, body_timeout_s)


async def read_one_frame(stream: INetStream, limit: int) -> bytes:
    """Read exactly one frame (the caller bounds the time)."""
    decoder = FrameDecoder(limit)
    while True:
        try:
            data = await stream.read(READ_CHUNK)
        except EOFError:
            data = b""
        if not data:
            decoder.finish()
            # finish() raises unless nothing at all arrived
            raise EOFError("stream closed before a frame arrived")
        frames = decoder.feed(data)
        if frames:
            return frames[0]
