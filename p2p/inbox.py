"""A bounded hand-off from the trio thread to the asyncio loop.

The trio side reads peers as fast as they write; the asyncio side may be
busy (executing a block). Posting every frame with ``call_soon_threadsafe``
let the loop's ready queue grow without bound. Here each kind of traffic
(gossip, direct frames) has its own bounded queue: when it is full, new
the oldest items are dropped and counted (consensus retransmits, gossip is
best effort), and one scheduled drain delivers them in batches, yielding to the
loop between batches.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

DRAIN_BATCH = 64  # items delivered per loop callback, so other callbacks interleave


class BoundedInbox:
    def __init__(
        self,
        name: str,
        max_items: int,
        max_bytes: int,
        schedule: Callable[[Callable[[], None]], bool],
        deliver: Callable[[Any], None],
        on_drop: Callable[[str, int], None],
    ) -> None:
        self.name = name
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._schedule = schedule  # runs a callable on the asyncio loop; False if gone
        self._deliver = deliver  # asyncio side, one item
        self._on_drop = on_drop  # (name, bytes) for each dropped item; trio side
        self._lock = threading.Lock()
        self._items: deque[tuple[Any, int]] = deque()
        self._bytes = 0
        self._scheduled = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def queued_bytes(self) -> int:
        return self._bytes

    def put(self, item: Any, size: int) -> None:
        """Trio side. When full, the oldest queued items are dropped (and
        counted): the newest matter most, as on the outbound queues."""
        dropped: list[int] = []
        with self._lock:
            self._items.append((item, size))
            self._bytes += size
            while len(self._items) > 1 and (len(self._items) > self._max_items or self._bytes > self._max_bytes):
                _, old = self._items.popleft()
                self._bytes -= old
                dropped.append(old)
            schedule = not self._scheduled
            self._scheduled = True
        for old in dropped:
            self._on_drop(self.name, old)
        if schedule and not self._schedule(self._drain):
            with self._lock:
                self._scheduled = False

    def _drain(self) -> None:
        """Asyncio side: deliver up to DRAIN_BATCH items, then reschedule."""
        with self._lock:
            batch = [self._items.popleft() for _ in range(min(DRAIN_BATCH, len(self._items)))]
            self._bytes -= sum(size for _, size in batch)
            more = bool(self._items)
            if not more:
                self._scheduled = False
        for item, _ in batch:
            self._deliver(item)
        if more and not self._schedule(self._drain):
            with self._lock:
                self._scheduled = False
