"""Prometheus metrics: every series this node exports, defined here and nowhere else.

Each node owns a ``CollectorRegistry`` (never prometheus-client's global one:
several nodes may share a test process).  Two kinds of series:

* values the node already keeps (consensus height and view, mempool size,
  p2p ``stats()``, sync state) are read at scrape time by ``NodeCollector``
  from a ``MetricsSource``, so nothing is counted twice and the hot paths
  pay nothing;
* events nobody counted before (block interval, size and txs, commit
  latency, admissions by reason, risk decisions and scoring time, RPC calls,
  LevelDB write batches) are counted where they happen, through the
  ``observe_*`` methods below; the composition root (node.runtime) calls them.

The endpoint is an aiohttp app on the node's own loop (``MetricsServer``),
not prometheus-client's ``start_http_server``: that one serves from its own
thread, and a scrape would then read the driver's and mempool's state from
outside the loop that owns them.  On the loop, a scrape is one synchronous
``generate_latest`` between two events.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, ProcessCollector
from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("qenex.metrics")

PREFIX = "qenex_"
LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")

# Buckets chosen for this node's block cadence (100 ms .. tens of seconds)
# and its sizes (empty blocks are a few hundred bytes; the cap is megabytes).
_SECONDS_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
_SECONDS_BLOCK = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_BYTES_BLOCK = (256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216)
_TXS_BLOCK = (0, 1, 5, 10, 50, 100, 500, 1000, 5000, 10000)

# p2p stats() key -> (kind, direction) labels.  Bytes: direct (consensus)
# streams and gossip payloads; request/response bytes are not counted by p2p.
P2P_MESSAGES = {
    "direct_frames_in": ("direct", "in"),
    "direct_frames_out": ("direct", "out"),
    "gossip_in": ("gossip", "in"),
    "gossip_out": ("gossip", "out"),
    "requests_in": ("request", "in"),
    "requests_out": ("request", "out"),
}
P2P_BYTES = {
    "direct_bytes_in": ("direct", "in"),
    "direct_bytes_out": ("direct", "out"),
    "gossip_bytes_in": ("gossip", "in"),
    "gossip_bytes_out": ("gossip", "out"),
}


@dataclass(frozen=True, slots=True)
class MetricsSource:
    """What the scrape-time collector reads; each callable is read at scrape time.

    ``consensus_state``: the driver's ``engine_state()`` (height, view) plus
    ``view_changes`` (None: no driver yet); ``p2p_stats``: ``P2PService.stats()``
    (empty: not running).
    """

    consensus_state: Callable[[], Mapping[str, Any] | None]
    mempool_size: Callable[[], tuple[int, int]]
    p2p_stats: Callable[[], Mapping[str, int]]
    syncing: Callable[[], bool]
    committed_height: Callable[[], int]


class NodeCollector(Collector):
    """Reads the node's existing counters when scraped."""

    def __init__(self, source: MetricsSource) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        src = self._source
        yield _gauge("chain_height", "Height of the last committed block", src.committed_height())
        state = src.consensus_state()
        if state is not None:
            yield _gauge("consensus_height", "Height the consensus engine is deciding", state["height"])
            yield _gauge("consensus_view", "Current view at the height being decided", state["view"])
            yield _counter("consensus_view_changes", "Views passed without a commit (each is a view change)",
                           state.get("view_changes", 0))
            yield _counter("consensus_view_change_commits", "Heights committed in a view above 0",
                           state.get("view_change_commits", 0))
        count, size = src.mempool_size()
        yield _gauge("mempool_transactions", "Transactions in the mempool", count)
        yield _gauge("mempool_bytes", "Encoded bytes of the transactions in the mempool", size)
        yield _gauge("sync_syncing", "1 while block sync is catching up, else 0", 1 if src.syncing() else 0)
        stats = src.p2p_stats()
        yield _gauge("p2p_peers", "Connected peers", stats.get("connected_peers", 0))
        yield _gauge("p2p_banned_peers", "Peers banned right now", stats.get("banned_peers", 0))
        yield _counter("p2p_bans", "Peers banned since start", stats.get("bans", 0))
        yield _counter("p2p_penalties", "Penalties charged to peers since start", stats.get("penalties", 0))
        messages = CounterMetricFamily(PREFIX + "p2p_messages", "Network messages by kind and direction",
                                       labels=("kind", "direction"))
        for key, labels in P2P_MESSAGES.items():
            messages.add_metric(labels, stats.get(key, 0))
        yield messages
        traffic = CounterMetricFamily(PREFIX + "p2p_bytes", "Payload bytes by kind and direction (direct streams, gossip)",
                                      labels=("kind", "direction"))
        for key, labels in P2P_BYTES.items():
            traffic.add_metric(labels, stats.get(key, 0))
        yield traffic


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(PREFIX + name, doc, value=value)


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(PREFIX + name, doc, value=value)


class NodeMetrics:
    """The registry of one node and the series counted where things happen."""

    def __init__(self, source: MetricsSource | None = None, *, process: bool = True) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.block_interval = Histogram(PREFIX + "block_interval_seconds",
                                        "Header time between consecutive committed blocks",
                                        buckets=_SECONDS_BLOCK, registry=r)
        self.block_size = Histogram(PREFIX + "block_size_bytes", "Encoded size of committed blocks",
                                    buckets=_BYTES_BLOCK, registry=r)
        self.block_txs = Histogram(PREFIX + "block_transactions", "Transactions per committed block",
                                   buckets=_TXS_BLOCK, registry=r)
        self.commit_latency = Histogram(PREFIX + "consensus_commit_latency_seconds",
                                        "Wall time from a block's header time to its commit on this node",
                                        buckets=_SECONDS_BLOCK, registry=r)
        self.blocks = Counter(PREFIX + "blocks_committed", "Blocks committed since start", registry=r)
        self.admissions = Counter(PREFIX + "mempool_admissions", "Transactions admitted to the mempool",
                                  ("source",), registry=r)
        self.refusals = Counter(PREFIX + "mempool_refusals", "Transactions refused admission, by reason",
                                ("source", "reason"), registry=r)
        self.risk_decisions = Counter(PREFIX + "risk_decisions", "Risk hook decisions by outcome",
                                      ("decision",), registry=r)
        self.risk_latency = Histogram(PREFIX + "risk_scoring_seconds", "Time to score one batch with the risk hook",
                                      buckets=_SECONDS_FAST, registry=r)
        self.rpc_requests = Counter(PREFIX + "rpc_requests", "JSON-RPC calls by method and outcome",
                                    ("method", "outcome"), registry=r)
        self.rpc_latency = Histogram(PREFIX + "rpc_request_duration_seconds", "JSON-RPC call duration by method",
                                     ("method",), buckets=_SECONDS_FAST, registry=r)
        self.store_write = Histogram(PREFIX + "store_write_batch_seconds", "LevelDB write-batch duration (synced)",
                                     buckets=_SECONDS_FAST, registry=r)
        if process:
            ProcessCollector(registry=r)  # process_resident_memory_bytes, process_cpu_seconds_total (Linux)
        if source is not None:
            r.register(NodeCollector(source))
        self._last_block_time_ms: int | None = None

    # -- events -------------------------------------------------------------

    def observe_commit(self, *, time_ms: int, size: int, txs: int, now_ms: int | None = None) -> None:
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self.blocks.inc()
        self.block_size.observe(size)
        self.block_txs.observe(txs)
        self.commit_latency.observe(max(0, now_ms - time_ms) / 1000)
        if self._last_block_time_ms is not None:
            self.block_interval.observe(max(0, time_ms - self._last_block_time_ms) / 1000)
        self._last_block_time_ms = time_ms

    def observe_admission(self, source: str, refusal_reason: str | None) -> None:
        if refusal_reason is None:
            self.admissions.labels(source).inc()
        else:
            self.refusals.labels(source, refusal_reason).inc()

    def observe_risk(self, decisions: list[str], seconds: float) -> None:
        self.risk_latency.observe(seconds)
        for decision in decisions:
            self.risk_decisions.labels(decision).inc()

    def observe_rpc(self, method: str, seconds: float, ok: bool) -> None:
        self.rpc_requests.labels(method, "ok" if ok else "error").inc()
        self.rpc_latency.labels(method).observe(seconds)

    def time_store_writes(self, kv: Any) -> None:
        """Time every ``write_batch`` of ``kv`` (the node's LevelDB): the
        store lives in ``state/``, which keeps no clock, so the timing is
        wrapped around it here, on this one instance."""
        inner = kv.write_batch
        histogram = self.store_write

        def write_batch(puts: Any, sync: bool = True) -> None:
            started = time.perf_counter()
            try:
                inner(puts, sync=sync)
            finally:
                histogram.observe(time.perf_counter() - started)

        kv.write_batch = write_batch

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``GET /metrics`` on the node's loop."""

    def __init__(self, metrics: NodeMetrics) -> None:
        self._metrics = metrics
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    async def start(self, host: str, port: int) -> None:
        app = web.Application()
        app.router.add_get("/metrics", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, host, port)
        await site.start()
        sockets = site._server.sockets if site._server is not None else []  # type: ignore[union-attr]
        self.port = sockets[0].getsockname()[1] if sockets else port
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    async def _serve(self, request: web.Request) -> web.Response:
        body = self._metrics.exposition()
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
