"""Length-prefixed frames: 4-byte big-endian length, then the payload.

``FrameDecoder`` is sans-I/O: feed it bytes as they arrive and it returns the
complete frames, raising ``FrameTooLarge`` as soon as a header announces more
than the limit (before buffering the body). The trio drivers that read
streams live in ``p2p.streams``.
"""

from __future__ import annotations

import struct

from p2p.errors import FrameTooLarge, TruncatedFrame

HEADER = struct.Struct(">I")
HEADER_SIZE = HEADER.size


def encode_frame(payload: bytes, limit: int) -> bytes:
    if len(payload) > limit:
        raise FrameTooLarge(len(payload), limit)
    return HEADER.pack(len(payload)) + payload


class FrameDecoder:
    """Incremental decoder; memory is bounded by the limit plus one chunk."""

    __slots__ = ("_buffer", "_limit", "_want")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._want: int | None = None  # body length once the header is parsed

    @property
    def pending(self) -> bool:
        """True while a frame has started but is not complete."""
        return bool(self._buffer) or self._want is not None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> list[bytes]:
        self._buffer += data
        frames: list[bytes] = []
        while True:
            if self._want is None:
                if len(self._buffer) < HEADER_SIZE:
                    return frames
                (length,) = HEADER.unpack_from(self._buffer)
                if length > self._limit:
                    raise FrameTooLarge(length, self._limit)
                del self._buffer[:HEADER_SIZE]
                self._want = length
            if len(self._buffer) < self._want:
                return frames
            frames.append(bytes(self._buffer[: self._want]))
            del self._buffer[: self._want]
            self._want = None

    def finish(self) -> None:
        """Called at end of stream: raises if it ended inside a frame."""
        if self._want is not None:
            raise TruncatedFrame(len(self._buffer), self._want)
        if self._buffer:
            raise TruncatedFrame(len(self._buffer), HEADER_SIZE)
