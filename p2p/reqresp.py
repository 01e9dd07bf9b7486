"""Request/response: a fresh stream per request, one frame each way."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.custom_types import TProtocol
from libp2p.network.stream.exceptions import StreamReset
from libp2p.peer.id import ID

from p2p.config import P2PConfig
from p2p.errors import FrameTooLarge, RequestFailed, TruncatedFrame
from p2p.framing import encode_frame
from p2p.stats import Stats
from p2p.streams import (
    PENALTY_OVERSIZE,
    PENALTY_SLOW,
    FaultFn,
    close_quietly,
    read_one_frame,
    reset_quietly,
    stream_peer,
)

logger = logging.getLogger("qenex.p2p")

# (protocol, from_peer, request) -> response; awaits the asyncio handler.
AppHandler = Callable[[str, str, bytes], Awaitable[bytes]]


async def send_request(
    host: IHost,
    peer_id: ID,
    protocol: str,
    data: bytes,
    timeout_s: float,
    limit: int,
    on_fault: FaultFn,
) -> bytes:
    peer = peer_id.to_base58()
    frame = encode_frame(data, limit)
    stream: INetStream | None = None
    ok = False
    try:
        with trio.fail_after(timeout_s):
            try:
                stream = await host.new_stream(peer_id, [TProtocol(protocol)])
            except trio.TooSlowError:
                raise
            except Exception as exc:
                raise RequestFailed(peer, protocol, f"cannot open stream: {exc}") from exc
            await stream.write(frame)
            response = await read_one_frame(stream, limit)
        ok = True
        return response
    except trio.TooSlowError as exc:
        raise RequestFailed(peer, protocol, f"timeout after {timeout_s}s") from exc
    except FrameTooLarge as exc:
        on_fault(peer_id, f"{protocol} response of {exc.size} bytes over {exc.limit}", PENALTY_OVERSIZE, None)
        raise RequestFailed(peer, protocol, f"response of {exc.size} bytes exceeds {exc.limit}") from exc
    except StreamReset as exc:
        raise RequestFailed(peer, protocol, "stream reset by peer") from exc
    except (EOFError, TruncatedFrame) as exc:
        raise RequestFailed(peer, protocol, f"stream closed before the response: {exc}") from exc
    except RequestFailed:
        raise
    except Exception as exc:
        raise RequestFailed(peer, protocol, f"{type(exc).__name__}: {exc}") from exc
    finally:
        if stream is not None:
            await (close_quietly(stream) if ok else reset_quietly(stream))


class RequestServer:
    """Serves inbound requests by awaiting the application's handler."""

    def __init__(self, config: P2PConfig, stats: Stats, app: AppHandler, on_fault: FaultFn) -> None:
        self._config = config
        self._stats = stats
        self._app = app
        self._on_fault = on_fault
        self._active = 0  # requests being served; trio is single-threaded

    async def handle(self, stream: INetStream) -> None:
        if self._active >= self._config.max_inbound_requests:
            # Busy: an honest peer retries later, so no penalty.
            self._stats.add("requests_in_refused_busy")
            await reset_quietly(stream)
            return
        self._active += 1
        try:
            await self._handle(stream)
        finally:
            self._active -= 1

    async def _handle(self, stream: INetStream) -> None:
        peer_id = stream_peer(stream)
        protocol = str(stream.get_protocol())
        if peer_id is None:
            await reset_quietly(stream)
            return
        limit = self._config.max_frame_bytes
        request = b""
        with trio.move_on_after(self._config.request_read_timeout_s) as read_scope:
            try:
                request = await read_one_frame(stream, limit)
            except FrameTooLarge as exc:
                self._on_fault(peer_id, f"{protocol} request of {exc.size} bytes over {exc.limit}", PENALTY_OVERSIZE, None)
                await reset_quietly(stream)
                return
            except (EOFError, TruncatedFrame) as exc:
                logger.debug("%s request from %s ended early: %s", protocol, peer_id, exc)
                await reset_quietly(stream)
                return
        if read_scope.cancelled_caught:
            self._on_fault(peer_id, f"{protocol} request not received in time", PENALTY_SLOW, None)
            await reset_quietly(stream)
            return

        self._stats.add("requests_in")
        try:
            with trio.fail_after(self._config.request_handler_timeout_s):
                response = await self._app(protocol, peer_id.to_base58(), request)
            if not isinstance(response, (bytes, bytearray)):
                raise TypeError(f"handler returned {type(response).__name__}, not bytes")
            frame = encode_frame(bytes(response), limit)
        except Exception:
            # Our handler failed (or its answer is too big): our problem, not
            # the peer's. The requester sees a reset.
            self._stats.add("requests_in_failed")
            logger.exception("%s handler failed for request from %s", protocol, peer_id)
            await reset_quietly(stream)
            return
        await stream.write(frame)
        await close_quietly(stream)
