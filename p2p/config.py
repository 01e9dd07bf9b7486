"""Configuration of the p2p service."""

from __future__ import annotations

from dataclasses import dataclass

from p2p.errors import InvalidConfig

# Gossipsub silently drops publishes of about 1 MiB (P2P-NOTES.md); our own
# publish bound must stay well below it.
LIBP2P_GOSSIP_CEILING = 1024 * 1024 - 64 * 1024


@dataclass(frozen=True, slots=True)
class P2PConfig:
    identity_seed: bytes
    listen_host: str = "127.0.0.1"
    listen_port: int = 0
    bootstrap: tuple[str, ...] = ()
    topics: tuple[str, ...] = ()
    max_frame_bytes: int = 4 * 1024 * 1024
    max_gossip_bytes: int = 512 * 1024
    redial_interval_s: float = 1.0
    gossip_heartbeat_s: float = 1.0
    # Outbound direct queue per peer; on overflow the oldest frame is dropped
    # and counted in stats()["direct_dropped_overflow"].
    direct_queue_frames: int = 1024
    direct_queue_bytes: int = 32 * 1024 * 1024
    # A frame whose header has arrived must be complete within this time;
    # an idle stream (no partial frame) is never timed out.
    frame_body_timeout_s: float = 30.0
    # Writes and stream opens on the direct link; a peer that stops reading
    # gets its stream reset after this long.
    direct_write_timeout_s: float = 10.0
    # Inbound request: time to read the request and to run our handler.
    request_read_timeout_s: float = 10.0
    request_handler_timeout_s: float = 30.0
    max_inbound_direct_streams_per_peer: int = 4
    # Live inbound connections; one over the cap is closed at once.
    max_inbound_connections: int = 64
    # Inbound requests being served at once (all peers); more are reset.
    max_inbound_requests: int = 64
    # Trio -> asyncio hand-off per kind; when full, the oldest are dropped and
    # counted in stats()["<kind>_dropped_backpressure"].
    inbound_direct_frames: int = 2048
    inbound_direct_bytes: int = 64 * 1024 * 1024
    inbound_gossip_messages: int = 512
    inbound_gossip_bytes: int = 32 * 1024 * 1024
    # Peer score: penalties add up, decay linearly, and at the threshold the
    # peer is disconnected and banned for ban_seconds.
    ban_threshold: int = 100
    ban_seconds: float = 300.0
    score_decay_per_s: float = 1.0
    stop_grace_s: float = 5.0

    def __post_init__(self) -> None:
        if not isinstance(self.identity_seed, bytes) or len(self.identity_seed) != 32:
            raise InvalidConfig("identity_seed", self.identity_seed, "must be 32 bytes")
        if not 0 <= self.listen_port <= 65535:
            raise InvalidConfig("listen_port", self.listen_port, "must be 0..65535")
        if not isinstance(self.bootstrap, tuple):
            raise InvalidConfig("bootstrap", self.bootstrap, "must be a tuple")
        if not isinstance(self.topics, tuple) or not all(self.topics):
            raise InvalidConfig("topics", self.topics, "must be a tuple of non-empty str")
        if self.max_frame_bytes <= 0:
            raise InvalidConfig("max_frame_bytes", self.max_frame_bytes, "must be > 0")
        if not 0 < self.max_gossip_bytes <= LIBP2P_GOSSIP_CEILING:
            raise InvalidConfig(
                "max_gossip_bytes",
                self.max_gossip_bytes,
                f"must be in 1..{LIBP2P_GOSSIP_CEILING} (libp2p drops ~1 MiB)",
            )
        for name in (
            "redial_interval_s",
            "gossip_heartbeat_s",
            "frame_body_timeout_s",
            "direct_write_timeout_s",
            "request_read_timeout_s",
            "request_handler_timeout_s",
            "ban_seconds",
            "stop_grace_s",
        ):
            if not getattr(self, name) > 0:
                raise InvalidConfig(name, getattr(self, name), "must be > 0")
        for name in (
            "direct_queue_frames",
            "direct_queue_bytes",
            "max_inbound_direct_streams_per_peer",
            "max_inbound_connections",
            "max_inbound_requests",
            "inbound_direct_frames",
            "inbound_direct_bytes",
            "inbound_gossip_messages",
            "inbound_gossip_bytes",
            "ban_threshold",
        ):
            if not getattr(self, name) >= 1:
                raise InvalidConfig(name, getattr(self, name), "must be >= 1")
        if self.score_decay_per_s < 0:
            raise InvalidConfig("score_decay_per_s", self.score_decay_per_s, "must be >= 0")
