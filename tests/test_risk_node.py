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


def _probe(nonce=0):
    """A quick test send to a fresh address: a drain with it still pending is refused (rule drain+probe)."""
    return transfer(ALICE, nonce, dev_key("fresh").address, ONE_QNX // 100)


def test_ordinary_transfer_is_admitted_unflagged(model_dir, tmp_path):
    node = _node(model_dir, tmp_path)
    tx_hash = node.submit_raw_tx(_ordinary().encode())
    assert tx_hash in node.mempool and tx_hash not in node.flagged


def test_drain_is_refused_with_score_version_and_reasons_and_leaves_no_trace(model_dir, tmp_path):
    node = _node(model_dir, tmp_path)
    probe = node.submit_raw_tx(_probe(0).encode())
    with pytest.raises(RiskRejected) as info:
        node.submit_raw_tx(_drain(1).encode())
    err = info.value
    assert err.code == -32020
    assert err.data["model_version"] == 1 and err.data["threshold"] == 0.9
    assert err.data["score"] > 0.9 or err.data["rule"] == "drain+probe", err.data  # the model, or the rule
    assert err.data["top_features"] and {"feature", "value", "contribution"} <= set(err.data["top_features"][0])
    assert "refused by the risk hook" in str(err)
    assert probe in node.mempool
    assert len(node.mempool) == 1 and node.mempool.pending_nonce(ALICE.address) == 1
    assert node.submit_raw_tx(_ordinary(1).encode()) in node.mempool  # nonce 1 is still free


def test_above_review_threshold_is_admitted_and_flagged(model_dir, tmp_path):
    node = _node(model_dir, tmp_path, review=0.0, reject=1.0)
    tx_hash = node.submit_raw_tx(_drain().encode())
    assert tx_hash in node.mempool
    flag = node.flagged[tx_hash]
    assert flag["decision"] == "review" and flag["model_version"] == 1 and 0 <= flag["score"] <= 1


def test_gossip_batch_is_scored_at_once_rejects_dropped_without_penalty(model_dir, tmp_path):
    node = _node(model_dir, tmp_path)
    bob_tx = transfer(BOB, 0, ALICE.address, 3 * ONE_QNX)
    probe, drain = _probe(0), _drain(1)
    with mock.patch.object(node.risk, "assess", wraps=node.risk.assess) as assess:
        node._on_gossip(TX_TOPIC, "peer", encode([1, [bob_tx.encode(), probe.encode(), drain.encode()]]))
    assert assess.call_count == 1 and len(assess.call_args.args[0]) == 3
    assert bob_tx.hash in node.mempool and probe.hash in node.mempool and drain.hash not in node.mempool


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
    lone = methods["qenex_riskScore"]("0x" + _drain().encode().hex())
    assert lone["decision"] in ("review", "reject") and lone["rule"] == "drain"  # flagged at least
    node.submit_raw_tx(_probe(0).encode())
    out = methods["qenex_riskScore"]("0x" + _drain(1).encode().hex())
    assert out["decision"] == "reject" and out["rule"] == "drain+probe"
    assert out["model_version"] == 1 and len(out["features"]) == N_FEATURES
    assert out["top_features"] and len(node.mempool) == 1
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


# -- the rules on top of the model (node.risk.policy) ----------------------------------


def test_a_rule_refusal_says_so_in_the_rpc_error_the_flag_and_the_score_query(model_dir, tmp_path, monkeypatch):
    """A drain with a second takeover signal refused by the rule while the model's score stays low: the
    -32020 message names the rule (not a score above the threshold), data carries it and its evidence."""
    node = _node(model_dir, tmp_path)
    monkeypatch.setattr(node.risk.model, "score_one", lambda row: (0.2, 0.2, 0.0))
    probe = transfer(ALICE, 0, dev_key("fresh").address, ONE_QNX // 100)
    assert probe.hash not in node.flagged and node.submit_raw_tx(probe.encode()) in node.mempool
    drain = transfer(ALICE, 1, MALLORY.address, int(BALANCE * 0.98))
    out = risk_methods(_ctx(node))["qenex_riskScore"]("0x" + drain.encode().hex())
    assert (out["decision"], out["rule"], out["score"]) == ("reject", "drain+probe", 0.2)
    with pytest.raises(RiskRejected) as info:
        node.submit_raw_tx(drain.encode())
    err = info.value
    assert err.code == -32020 and err.data["rule"] == "drain+probe" and err.data["score"] == 0.2
    assert str(err).startswith(f"transaction 0x{drain.hash.hex()} refused by the risk hook: rule drain+probe "
                               "(score 0.200 <= 0.9; model v1; top features: drained_share, fresh_others_10"), str(err)
    evidence = err.data["top_features"][:2]
    assert [(f["feature"], f["rule"], f["contribution"]) for f in evidence] == [
        ("drained_share", "drain", None), ("fresh_others_10", "probe", None)]
    # the lone drain (no probe in flight): flagged by the drain rule, its reasons in the flag
    lone = _node(model_dir, tmp_path / "lone")
    monkeypatch.setattr(lone.risk.model, "score_one", lambda row: (0.2, 0.2, 0.0))
    tx_hash = lone.submit_raw_tx(_drain(0, 0.98).encode())
    flag = lone.flagged[tx_hash]
    assert flag["decision"] == "review" and flag["rule"] == "drain" and flag["top_features"][0]["rule"] == "drain"


def test_a_model_refusal_keeps_its_message_and_data(model_dir, tmp_path):
    node = _node(model_dir, tmp_path, reject=0.0)
    with pytest.raises(RiskRejected) as info:
        node.submit_raw_tx(_ordinary().encode())
    assert "rule" not in info.value.data and " > 0.0 (model v1; " in str(info.value)


def test_the_rules_decide_the_same_one_row_at_a_time_as_over_a_batch():
    """policy.check (admission's single row) and policy.rule_decisions (the evaluation's arrays) agree."""
    from node.risk import policy
    from node.risk.synth import generate

    data = generate(31, accounts=120, blocks=900)
    # every drain row, and as many others, including rows on the thresholds' edges
    drains = np.flatnonzero(policy.drain_mask(data.x))
    rows = np.vstack([data.x[drains], data.x[: 4000]])
    edge = rows[:50].copy()
    edge[:, policy.DRAINED] = np.float32(0.9)
    edge[:, policy.PRIOR_NEW] = np.float32(policy.SPLIT_SHARE)
    rows = np.vstack([rows, edge])
    batch = policy.rule_decisions(rows)
    single = np.array([{None: 0, "review": 1, "reject": 2}[getattr(policy.check(r), "decision", None)] for r in rows])
    assert len(drains) > 10 and (batch == single).all()
    assert (batch[-50:] >= 1).all()  # 90 % is a drain; 30 % before it is a split
    fired = [policy.check(r) for r in rows]
    assert {h.name for h in fired if h is not None} >= {"drain", "drain+split"}
