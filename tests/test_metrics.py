"""node.metrics: the scrape-time collector over a fake node, the event series,
the per-node registry, the RPC hook, the endpoint, and the [metrics] config."""

from __future__ import annotations

import asyncio
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from node.config import ConfigError, NodeConfig
from node.jsonrpc import Dispatcher
from node.metrics import MetricsServer, MetricsSource, NodeMetrics
from state.kv import MemoryKV


class FakeNode:
    """The parts a scrape reads, as plain attributes the test moves."""

    def __init__(self) -> None:
        self.state: dict | None = {"height": 7, "view": 2, "view_changes": 5, "view_change_commits": 1}
        self.mempool = (3, 912)
        self.stats = {"connected_peers": 3, "banned_peers": 1, "bans": 2, "penalties": 9,
                      "direct_frames_in": 40, "direct_frames_out": 41, "gossip_in": 5, "gossip_out": 6,
                      "requests_in": 7, "requests_out": 8, "direct_bytes_in": 4000, "direct_bytes_out": 4100,
                      "gossip_bytes_in": 300, "gossip_bytes_out": 310}
        self.syncing = False
        self.height = 6

    def source(self) -> MetricsSource:
        return MetricsSource(consensus_state=lambda: self.state, mempool_size=lambda: self.mempool,
                             p2p_stats=lambda: self.stats, syncing=lambda: self.syncing,
                             committed_height=lambda: self.height)


def samples(metrics: NodeMetrics) -> dict:
    text = metrics.exposition().decode()
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def one(name: str, **labels: str) -> tuple:
    return (name, frozenset(labels.items()))


def test_collector_reads_the_node_at_scrape_time():
    node = FakeNode()
    metrics = NodeMetrics(node.source(), process=False)
    got = samples(metrics)
    assert got[one("qenex_consensus_height")] == 7
    assert got[one("qenex_consensus_view")] == 2
    assert got[one("qenex_consensus_view_changes_total")] == 5
    assert got[one("qenex_chain_height")] == 6
    assert got[one("qenex_mempool_transactions")] == 3
    assert got[one("qenex_mempool_bytes")] == 912
    assert got[one("qenex_p2p_peers")] == 3
    assert got[one("qenex_p2p_banned_peers")] == 1
    assert got[one("qenex_p2p_bans_total")] == 2
    assert got[one("qenex_p2p_messages_total", kind="gossip", direction="out")] == 6
    assert got[one("qenex_p2p_messages_total", kind="request", direction="in")] == 7
    assert got[one("qenex_p2p_bytes_total", kind="direct", direction="out")] == 4100
    assert got[one("qenex_p2p_bytes_total", kind="gossip", direction="in")] == 300
    assert got[one("qenex_sync_syncing")] == 0
    node.state["height"], node.mempool, node.syncing, node.stats = 8, (0, 0), True, {}
    got = samples(metrics)
    assert got[one("qenex_consensus_height")] == 8
    assert got[one("qenex_mempool_transactions")] == 0
    assert got[one("qenex_sync_syncing")] == 1
    assert got[one("qenex_p2p_peers")] == 0  # p2p not running: zeros, not a failed scrape
    node.state = None  # no driver yet: the consensus series are absent, the rest still served
    got = samples(metrics)
    assert one("qenex_consensus_height") not in got and got[one("qenex_chain_height")] == 6


def test_names_follow_prometheus_conventions():
    metrics = NodeMetrics(FakeNode().source())
    families = list(text_string_to_metric_families(metrics.exposition().decode()))
    names = {f.name: f.type for f in families}
    for name, kind in names.items():
        assert name.startswith(("qenex_", "process_")), name
        if kind == "counter":  # the parser drops the _total suffix from a counter family's name
            assert not name.endswith("_total")
    text = metrics.exposition().decode()
    assert "process_resident_memory_bytes" in text and "process_cpu_seconds_total" in text
    for unit in ("qenex_block_interval_seconds", "qenex_block_size_bytes", "qenex_rpc_request_duration_seconds",
                 "qenex_risk_scoring_seconds", "qenex_store_write_batch_seconds",
                 "qenex_consensus_commit_latency_seconds"):
        assert names[unit] == "histogram"


def test_commit_series_use_header_times():
    metrics = NodeMetrics(process=False)
    metrics.observe_commit(time_ms=10_000, size=700, txs=0, now_ms=10_150)
    metrics.observe_commit(time_ms=10_500, size=9000, txs=12, now_ms=10_800)
    got = samples(metrics)
    assert got[one("qenex_blocks_committed_total")] == 2
    assert got[one("qenex_block_interval_seconds_count")] == 1  # the first block has no predecessor seen
    assert got[one("qenex_block_interval_seconds_sum")] == pytest.approx(0.5)
    assert got[one("qenex_consensus_commit_latency_seconds_sum")] == pytest.approx(0.45)
    assert got[one("qenex_block_size_bytes_sum")] == 9700
    assert got[one("qenex_block_transactions_sum")] == 12
    assert got[one("qenex_block_transactions_bucket", le="0.0")] == 1


def test_admissions_refusals_and_risk_decisions():
    metrics = NodeMetrics(process=False)
    metrics.observe_admission("rpc", None)
    metrics.observe_admission("gossip", "bad_nonce")
    metrics.observe_admission("gossip", "bad_nonce")
    metrics.observe_risk(["admit", "review", "admit"], 0.002)
    got = samples(metrics)
    assert got[one("qenex_mempool_admissions_total", source="rpc")] == 1
    assert got[one("qenex_mempool_refusals_total", source="gossip", reason="bad_nonce")] == 2
    assert got[one("qenex_risk_decisions_total", decision="admit")] == 2
    assert got[one("qenex_risk_scoring_seconds_count")] == 1


def test_each_node_has_its_own_registry():
    a, b = NodeMetrics(FakeNode().source()), NodeMetrics(FakeNode().source())  # no duplicate-series error
    a.observe_admission("rpc", None)
    assert one("qenex_mempool_admissions_total", source="rpc") not in samples(b)


def test_store_write_batches_are_timed_and_still_written():
    kv = MemoryKV()
    metrics = NodeMetrics(process=False)
    metrics.time_store_writes(kv)
    kv.write_batch({b"k": b"v"})
    assert kv.get(b"k") == b"v"
    assert samples(metrics)[one("qenex_store_write_batch_seconds_count")] == 1


async def test_dispatcher_reports_every_call_by_method():
    metrics = NodeMetrics(process=False)

    def boom() -> None:
        raise ValueError("bug")

    dispatcher = Dispatcher({"ping": lambda: "pong", "boom": boom}, observe=metrics.observe_rpc)
    await dispatcher.handle_one({"jsonrpc": "2.0", "id": 1, "method": "ping"})
    await dispatcher.handle_one({"jsonrpc": "2.0", "id": 2, "method": "ping", "params": [1]})  # bad params
    await dispatcher.handle_one({"jsonrpc": "2.0", "id": 3, "method": "boom"})
    await dispatcher.handle_one({"jsonrpc": "2.0", "id": 4, "method": "x" * 500})  # not a method: one label
    got = samples(metrics)
    assert got[one("qenex_rpc_requests_total", method="ping", outcome="ok")] == 1
    assert got[one("qenex_rpc_requests_total", method="ping", outcome="error")] == 1
    assert got[one("qenex_rpc_requests_total", method="boom", outcome="error")] == 1
    assert got[one("qenex_rpc_requests_total", method="unknown", outcome="error")] == 1
    assert got[one("qenex_rpc_request_duration_seconds_count", method="ping")] == 2


async def test_server_serves_the_exposition_on_loopback():
    metrics = NodeMetrics(FakeNode().source(), process=False)
    server = MetricsServer(metrics)
    await server.start("127.0.0.1", 0)
    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        body = await asyncio.to_thread(lambda: urllib.request.urlopen(url, timeout=5).read().decode())
        assert "qenex_consensus_height 7.0" in body
        with pytest.raises(urllib.error.HTTPError):
            await asyncio.to_thread(lambda: urllib.request.urlopen(url[:-len("metrics")] + "x", timeout=5))
    finally:
        await server.stop()


# -- [metrics] config ---------------------------------------------------------------

def test_metrics_are_off_by_default_and_parse():
    assert NodeConfig().metrics.port == 0
    config = NodeConfig.from_toml('[metrics]\nport = 9100\nhost = "::1"\n')
    assert (config.metrics.host, config.metrics.port) == ("::1", 9100)
    assert NodeConfig.from_toml(config.to_toml()) == config


@pytest.mark.parametrize("text, message", [
    ("[metrics]\nport = 70000\n", "metrics.port must be in 0..65535"),
    ("[metrics]\nport = -1\n", "metrics.port must not be negative"),
    ('[metrics]\nport = "9100"\n', "metrics.port must be int"),
    ("[metrics]\nport = true\n", "metrics.port must be int"),
    ('[metrics]\nport = 9100\nhost = "0.0.0.0"\n', "not a loopback address"),
    ('[metrics]\nport = 9100\nhost = "10.0.0.5"\n', "allow_non_loopback"),
    ('[metrics]\nallow_non_loopback = 1\n', "must be bool"),
    ('[metrics]\npath = "/m"\n', "unknown key(s) ['metrics.path']"),
])
def test_bad_metrics_config_is_refused_specifically(text, message):
    with pytest.raises(ConfigError, match=None) as info:
        NodeConfig.from_toml(text)
    assert message in str(info.value)


def test_non_loopback_host_needs_the_explicit_allowance():
    config = NodeConfig.from_toml('[metrics]\nport = 9100\nhost = "0.0.0.0"\nallow_non_loopback = true\n')
    assert config.metrics.host == "0.0.0.0"
