"""Counters written by the trio thread and read from the asyncio thread."""

from __future__ import annotations

import threading

COUNTERS = (
    "direct_frames_in",
    "direct_frames_out",
    "direct_bytes_in",
    "direct_bytes_out",
    "direct_dropped_overflow",
    "direct_dropped_send_failed",
    "direct_dropped_disconnected",
    "direct_streams_opened",
    "direct_stream_failures",
    "gossip_in",
    "gossip_out",
    "gossip_bytes_in",
    "gossip_bytes_out",
    "gossip_self_filtered",
    "gossip_rejected",
    "requests_out",
    "requests_failed",
    "requests_in",
    "requests_in_failed",
    "stream_faults",
    "penalties",
    "bans",
    "dials",
    "dial_failures",
    "callback_errors",
    "gossip_dropped_backpressure",
    "direct_dropped_backpressure",
    "direct_refused_not_allowed",
    "inbound_connections_refused",
    "inbound_strangers_evicted",
    "requests_in_refused_busy",
)


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(COUNTERS, 0)

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
