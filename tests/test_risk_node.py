"""The risk hook inside the node: admission, flags, gossip batches, RPC, start-up errors (its admin methods:
tests/test_admin_risk.py)."""

from __future__ import annotations

import collections
import shutil
from dataclasses import replace
from types import SimpleNamespace
from unittest import mock

import numpy as np
import pytest
from click.testing import CliRunner

from cli.main import cli
from node.admission import Admission
from node.config import Home, RiskSection
from node.errors import ConfigError
from node.genesis_tools import write_single_node_home
from node.jsonrpc import RPCError
from node.mempool import Mempool
from node.config import MempoolSection
from node.risk.errors import RiskModelError, RiskRejected
from node.risk.features import N_FEATURES
from node.risk.hook import RiskHook
from node.risk.store import ModelStore
from node.rpc_risk import NO_RISK_MODEL, risk_methods
from node.runtime import TX_TOPIC, Node
from state.app import Application
from state.codec import encode
from state.kv import MemoryKV
from state.testing import ONE_QNX, dev_key, make_genesis, transfer
from node.metrics import NodeMetrics
from tests.risk_fixtures import train_small
from tests.rpc_fixtures import rpc_context

ALICE, BOB, MALLORY = dev_key("alice"), dev_key("bob"), dev_key("mallory")
BALANCE = 1_000_000 * ONE_QNX
TOKEN = "s3cret-admin-token-of-32-chars!!"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return train_small(tmp_path_factory.mktemp("risk-model"))


def _node(model_dir, tmp_path, *, review=0.5, reject=0.9, with_model=True, fallback="admit"):
    directory = tmp_path / "models"
    if with_model:
        shutil.copytree(model_dir, directory)
    store = ModelStore(directory) if with_model else None
    hook = RiskHook(store, store.load() if store else None, review=review, reject=reject, fallback=fallback)
    app = Application(MemoryKV(), make_genesis(funded=[ALICE, BOB], balance=BALANCE))
    hook.attach(app)
    node = Node.__new__(Node)
    node.app, node.mempool, node.risk, node.flagged = app, Mempool(app, MempoolSection()), hook, {}
    node._gossip_out, node.p2p = collections.deque(), None
    node.metrics = NodeMetrics(process=False)
    node.admission = Admission(app, node.mempool, hook, flagged=node.flagged, relay=node._gossip_out.append)
    node.config = SimpleNamespace(risk=RiskSection(admin_token=TOKEN))
    return node


def _ctx(node):
    """The RPC context over the parts the RPC and admin methods read."""
    return rpc_context(node.app, mempool=node.mempool, flagged=node.flagged, risk=node.risk)


def _ordinary(nonce=0):
    return transfer(ALICE, nonce, BOB.address, 12 * ONE_QNX)


def _drain(nonce=0, share=0.99):
    return transfer(ALICE, nonce, MALLORY.address, int(BALANCE * share))


def test_ordinary_transfer_is_admitted_unflagged(model_dir, tmp_path):
    node = _node(model_dir, tmp_path)
    tx_hash = node.submit_raw_tx(_ordinary().encode())
    assert tx_hash in node.mempool and tx_hash not in node.flagged


def test_drain_is_refused_with_score_version_and_reasons_and_leaves_no_trace(model_dir, tmp_path):
    node = _node(model_dir, tmp_path)
    with pytest.raises(RiskRejected) as info:
        node.submit_raw_tx(_drain().encode())
    err = info.value
    assert err.code == -32020
    assert err.data["score"] > 0.9 and err.data["model_version"] == 1 and err.data["threshold"] == 0.9
    assert err.data["top_features"] and {"feature", "value", "contribution"} <= set(err.data["top_features"][0])
    assert "refused by the risk hook" in str(err)
    assert len(node.mempool) == 0 and node.mempool.pending_nonce(ALICE.address) is None
    assert node.submit_raw_tx(_ordinary(0).encode()) in node.mempool  # nonce 0 is still free


def test_above_review_threshold_is_admitted_and_flagged(model_dir, tmp_path):
    node = _node(model_dir, tmp_path, review=0.0, reject=1.0)
    tx_hash = node.submit_raw_tx(_drain().encode())
    assert tx_hash in node.mempool
    flag = node.flagged[tx_hash]
    assert flag["decision"] == "review" and flag["model_version"] == 1 and 0 <= flag["score"] <= 1


def test_gossip_batch_is_scored_at_once_rejects_dropped_without_penalty(model_dir, tmp_path):
    node = _node(model_dir, tmp_path)
    bob_tx = transfer(BOB, 0, ALICE.address, 3 * ONE_QNX)
    drain = _drain()
    with mock.patch.object(node.risk, "assess", wraps=node.risk.assess) as assess:
        node._on_gossip(TX_TOPIC, "peer", encode([1, [bob_tx.encode(), drain.encode()]]))
    assert assess.call_count == 1 and len(assess.call_args.args[0]) == 2
    assert bob_tx.hash in node.mempool and drain.hash not in node.mempool


def test_batched_assessment_equals_one_by_one(model_dir, tmp_path):
    node = _node(model_dir, tmp_path)
    txs = [transfer(ALICE, 0, BOB.address, (k + 1) * 1000 * ONE_QNX) for k in range(40)]
    batch = [a.score for a in node.risk.assess(txs)]
    single = [node.risk.assess([t])[0].score for t in txs]
    assert np.allclose(batch, single, atol=1e-6)


def test_kinds_the_model_was_not_trained_on_are_admitted_unscored(model_dir, tmp_path):
    from state.testing import token_create

    node = _node(model_dir, tmp_path)
    stx = token_create(ALICE, 0, "USD", 10**12)
    assert node.risk.features(stx) is None
    assert node.submit_raw_tx(stx.encode()) in node.mempool and stx.hash not in node.flagged
    out = risk_methods(_ctx(node))["qenex_riskScore"]("0x" + stx.encode().hex())
    assert out["decision"] == "admit" and out["scored"] is False
    node.risk.observe_block(SimpleNamespace(header=SimpleNamespace(height=1), txs=[stx]))
    assert node.risk.history.get(ALICE.address) is None


def test_committed_blocks_update_the_history_incrementally(model_dir, tmp_path):
    node = _node(model_dir, tmp_path)
    before = node.risk.features(transfer(ALICE, 1, BOB.address, 5 * ONE_QNX))
    block = SimpleNamespace(header=SimpleNamespace(height=1), txs=[_ordinary()])
    node.risk.observe_block(block)
    node.risk.observe_block(block)  # a replayed commit is not counted twice
    after = node.risk.features(transfer(ALICE, 2, BOB.address, 5 * ONE_QNX))
    names = list(__import__("node.risk.features", fromlist=["FEATURE_NAMES"]).FEATURE_NAMES)
    assert before[names.index("new_counterparty")] == 1.0 and after[names.index("new_counterparty")] == 0.0
    assert after[names.index("sender_sent_log")] == pytest.approx(np.log10(2))


def test_risk_score_rpc_scores_without_submitting(model_dir, tmp_path):
    node = _node(model_dir, tmp_path)
    methods = risk_methods(_ctx(node))
    out = methods["qenex_riskScore"]("0x" + _drain().encode().hex())
    assert out["decision"] == "reject" and out["model_version"] == 1 and len(out["features"]) == N_FEATURES
    assert out["top_features"] and len(node.mempool) == 0
    info = methods["qenex_riskModel"]()
    assert info["loaded"] and info["version"] == 1 and len(info["feature_names"]) == N_FEATURES
    with pytest.raises(RPCError) as bad:
        methods["qenex_riskScore"]("0xzz")
    assert bad.value.code == -32602


def test_without_a_model_the_fallback_policy_applies(model_dir, tmp_path):
    admit = _node(model_dir, tmp_path, with_model=False)
    assert admit.submit_raw_tx(_drain().encode()) in admit.mempool and not admit.flagged
    with pytest.raises(RPCError) as err:
        risk_methods(_ctx(admit))["qenex_riskScore"]("0x" + _ordinary().encode().hex())
    assert err.value.code == NO_RISK_MODEL
    rules = _node(model_dir, tmp_path / "r", with_model=False, fallback="rules")
    drained = rules.submit_raw_tx(_drain().encode())
    assert rules.flagged[drained]["decision"] == "review"


# -- start-up --------------------------------------------------------------------------


def _home_with_model(tmp_path, model_dir, corrupt=None):
    home = Home(tmp_path / "home")
    write_single_node_home(home, chain_id="risk-test", name="n0", p2p_port=0, rpc_port=0)
    shutil.copytree(model_dir, home.config_dir / "risk")
    if corrupt:
        corrupt(home.config_dir / "risk" / "model-v0001.npz")
    config = home.load_config()
    home.write_config(replace(config, risk=replace(config.risk, model_dir="risk")))
    return home


def test_node_loads_the_configured_model(tmp_path, model_dir):
    node = Node(_home_with_model(tmp_path, model_dir))
    assert node.risk.model is not None and node.risk.model.version == 1


def test_node_refuses_to_start_on_a_corrupt_model_with_one_clear_line(tmp_path, model_dir):
    home = _home_with_model(tmp_path, model_dir, corrupt=lambda p: p.write_bytes(p.read_bytes()[:3000]))
    with pytest.raises(RiskModelError, match="corrupt"):
        Node(home)
    assert issubclass(RiskModelError, ConfigError)
    result = CliRunner().invoke(cli, ["start", "--home", str(home.root)])
    assert result.exit_code == 1
    assert "corrupt" in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1
