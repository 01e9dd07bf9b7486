"""The p2p package's exceptions: one root, specific subclasses that carry the
values that caused them."""

from __future__ import annotations


class P2PError(Exception):
    """Root of every error raised by ``p2p``."""


class InvalidConfig(P2PError):
    def __init__(self, field: str, value: object, why: str) -> None:
        super().__init__(f"config {field}={value!r}: {why}")
        self.field = field
        self.value = value


class InvalidPeerAddress(P2PError):
    def __init__(self, address: str, why: str) -> None:
        super().__init__(f"bad peer address {address!r}: {why}")
        self.address = address


class InvalidPeerId(P2PError):
    def __init__(self, peer_id: str, why: str) -> None:
        super().__init__(f"bad peer id {peer_id!r}: {why}")
        self.peer_id = peer_id


class FrameTooLarge(P2PError):
    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"frame of {size} bytes exceeds the limit of {limit} bytes")
        self.size = size
        self.limit = limit


class TruncatedFrame(P2PError):
    def __init__(self, have: int, want: int) -> None:
        super().__init__(f"stream ended inside a frame: have {have} of {want} bytes")
        self.have = have
        self.want = want


class NotConnected(P2PError):
    def __init__(self, peer_id: str) -> None:
        super().__init__(f"peer {peer_id} is not connected")
        self.peer_id = peer_id


class RequestFailed(P2PError):
    def __init__(self, peer_id: str, protocol: str, reason: str) -> None:
        super().__init__(f"request {protocol} to {peer_id} failed: {reason}")
        self.peer_id = peer_id
        self.protocol = protocol
        self.reason = reason


class RequestTooLarge(RequestFailed, FrameTooLarge):
    """Our own request is over max_frame_bytes: caught as either parent."""

    def __init__(self, peer_id: str, protocol: str, size: int, limit: int) -> None:
        reason = f"request of {size} bytes exceeds the limit of {limit} bytes"
        P2PError.__init__(self, f"request {protocol} to {peer_id} failed: {reason}")
        self.peer_id = peer_id
        self.protocol = protocol
        self.reason = reason
        self.size = size
        self.limit = limit


class ServiceNotRunning(P2PError):
    def __init__(self, state: str) -> None:
        super().__init__(f"p2p service is {state}")
        self.state = state


class ListenFailed(P2PError):
    def __init__(self, address: str) -> None:
        super().__init__(f"could not listen on {address}")
        self.address = address


class SlowFrame(P2PError):
    def __init__(self, have: int, timeout_s: float) -> None:
        super().__init__(f"frame incomplete after {timeout_s}s ({have} bytes buffered)")
        self.have = have
        self.timeout_s = timeout_s


class RejectMessage(P2PError):
    """Raised by a gossip validator: drop the message (never relay it) and
    penalise the peer that forwarded it by ``points``."""

    def __init__(self, reason: str, points: int) -> None:
        super().__init__(f"message rejected: {reason}")
        self.reason = reason
        self.points = points
