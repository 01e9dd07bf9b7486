"""Risk features, synthetic data, models, persistence, versions and evaluation (no node)."""

from __future__ import annotations

import json
import time
import zipfile

import numpy as np
import pytest

from node.risk.anomaly import IsolationForest
from node.risk.errors import RiskModelError
from node.risk.evaluate import best_amount_threshold, evaluate, render_table, roc_auc_score
from node.risk.features import FEATURE_NAMES, N_FEATURES, extract, schema_hash
from node.risk.history import HistoryStore, TxEvent
from node.risk.model import RiskModel
from node.risk.nn import MLP
from node.risk.store import ModelStore
from node.risk.synth import PATTERNS, generate
from tests.risk_fixtures import SMALL, train_small

A, B, C, D = (bytes([i]) * 20 for i in (1, 2, 3, 4))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return ModelStore(train_small(tmp_path_factory.mktemp("risk-model")))


@pytest.fixture(scope="module")
def model(store):
    return store.load()


# -- features ----------------------------------------------------------------------


def test_feature_vector_is_35_named_floats_and_schema_hash_is_stable():
    assert N_FEATURES == 35 == len(set(FEATURE_NAMES))
    row = extract(TxEvent(A, B, "QNX", 5.0, 0.001, 1), 100.0, 0, HistoryStore())
    assert row.shape == (35,) and row.dtype == np.float32 and np.isfinite(row).all()
    assert schema_hash() == schema_hash() and len(schema_hash()) == 64


def _f(row, name):
    return float(row[FEATURE_NAMES.index(name)])


def test_features_follow_the_incremental_history():
    store = HistoryStore()
    for h in (1, 3, 5, 7):
        store.observe(TxEvent(A, B, "QNX", 10.0, 0.001, h))
        store.touch_height(h)
    store.observe(TxEvent(B, A, "QNX", 4.0, 0.001, 8))
    store.touch_height(8)
    known = extract(TxEvent(A, B, "QNX", 10.0, 0.001, 9), 100.0, 0, store)
    assert _f(known, "new_counterparty") == 0.0 and _f(known, "receiver_is_new") == 0.0
    assert _f(known, "round_trip") == 1.0  # B paid A at height 8
    assert _f(known, "sender_age_log") == pytest.approx(np.log10(1 + 8))
    assert _f(known, "sender_sent_log") == pytest.approx(np.log10(1 + 4))
    assert _f(known, "velocity_10") == pytest.approx(np.log10(1 + 4))
    assert _f(known, "balance_share") == pytest.approx(0.1)
    assert _f(known, "amount_vs_mean") == pytest.approx(0.0, abs=1e-6)
    assert _f(known, "passthrough") == pytest.approx(2.0)  # (10 + 40) out after 4 in: clipped
    drain = extract(TxEvent(A, D, "QNX", 99.0, 0.01, 9), 100.0, 2, store)
    assert _f(drain, "new_counterparty") == 1.0 and _f(drain, "receiver_is_new") == 1.0
    assert _f(drain, "balance_share") == pytest.approx(0.99)
    assert _f(drain, "amount_zscore") > 3 and _f(drain, "fee_vs_median") == pytest.approx(1.0, abs=1e-3)
    assert _f(drain, "velocity_10") == pytest.approx(np.log10(1 + 6))  # 4 committed + 2 pending


def test_swap_round_trip_is_the_opposite_trade_on_the_same_pool():
    store = HistoryStore()
    store.observe(TxEvent(A, D, "QNX", 5.0, 0.001, 1, is_swap=True, trade_key="P:0", reverse_key="P:1"))
    back = extract(TxEvent(A, D, "USD", 5.0, 0.001, 2, is_swap=True, trade_key="P:1", reverse_key="P:0",
                           pool_impact=0.2), 50.0, 0, store)
    again = extract(TxEvent(A, D, "QNX", 5.0, 0.001, 2, is_swap=True, trade_key="P:0", reverse_key="P:1"),
                    50.0, 0, store)
    assert _f(back, "round_trip") == 1.0 and _f(again, "round_trip") == 0.0
    assert _f(back, "is_swap") == 1.0 and _f(back, "pool_price_impact") == pytest.approx(0.2)
    assert _f(back, "token_native") == 0.0


# -- synthetic data ------------------------------------------------------------------


def test_generator_is_seeded_and_holds_every_fraud_pattern():
    a, b = generate(7, accounts=60, blocks=400), generate(7, accounts=60, blocks=400)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.y, b.y) and list(a.pattern) == list(b.pattern)
    c = generate(8, accounts=60, blocks=400)
    assert len(c) != len(a) or not np.array_equal(c.x, a.x)
    big = generate(1, accounts=120, blocks=900)
    present = set(big.pattern.tolist())
    assert set(PATTERNS) <= present, present
    assert ((big.pattern != "normal") == (big.y == 1)).all()
    assert 0.005 < big.y.mean() < 0.2


def test_fraud_patterns_have_their_signatures():
    d = generate(1, accounts=120, blocks=900)

    def mean(pattern, name):
        return float(d.x[d.pattern == pattern, FEATURE_NAMES.index(name)].mean())

    assert mean("drain", "balance_share") > 0.6 > mean("normal", "balance_share")
    assert mean("dust", "amount_log") < 0.01 < mean("normal", "amount_log")
    payments = d.x[d.kind == "normal:payment", FEATURE_NAMES.index("round_trip")].mean()
    assert mean("wash", "round_trip") > 0.5 > payments  # (a load cluster pays itself round robin: round trips)
    assert mean("burst", "velocity_vs_baseline") > mean("normal", "velocity_vs_baseline")
    assert mean("burst", "pending_vs_peak") > mean("normal", "pending_vs_peak")
    assert mean("drain", "receiver_unfunded") > 0.5 > mean("normal", "receiver_unfunded")
    # a mule forwards what it collected in parts, each a share of what is left, several pending at once
    assert mean("mule", "drained_share") > 0.4 > 0.1 > mean("normal", "drained_share")
    assert mean("mule", "prior_new_outflow_share") > 0.3 > mean("normal", "prior_new_outflow_share")
    assert mean("mule", "sender_age_log") < mean("normal", "sender_age_log")  # fresh accounts
    # schema 4's takeover signals, on the transfer that completes each drain of the kinds that carry them
    completes = d.x[:, FEATURE_NAMES.index("drained_share")] >= 0.9

    def kind_mean(kind, name):
        return float(d.x[(d.kind == kind) & completes, FEATURE_NAMES.index(name)].mean())

    assert kind_mean("drain:fanout", "prior_new_outflow_share") > 0.3 > 0.1 > mean("normal", "prior_new_outflow_share")
    assert kind_mean("drain:probe", "fresh_others_10") > 0.3 > kind_mean("normal:move_all", "fresh_others_10")


# -- models --------------------------------------------------------------------------


def test_mlp_learns_a_separable_problem_and_has_the_issue_shape():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 20)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.float32)
    mlp = MLP.init((20, 64, 32, 16, 1), seed=0)
    mlp.fit(x, y, epochs=10)
    assert mlp.sizes == (20, 64, 32, 16, 1)
    from node.risk.model import MLP_SIZES
    assert MLP_SIZES == (35, 64, 32, 16, 1)
    assert ((mlp.predict(x) > 0.5) == y).mean() > 0.95


def test_isolation_forest_scores_outliers_higher_and_round_trips_as_arrays():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 5)).astype(np.float32)
    forest = IsolationForest.fit(x, trees=50, seed=1)
    scores = forest.score(np.vstack([np.zeros((1, 5)), np.full((1, 5), 8.0)]).astype(np.float32))
    assert scores[1] > scores[0] + 0.2
    again = IsolationForest.from_arrays(forest.to_arrays())
    assert np.allclose(again.score(x[:50]), forest.score(x[:50]))


def test_model_scores_are_in_unit_interval_and_batched_equals_single(model):
    data = generate(11, accounts=60, blocks=300)
    batch = model.score(data.x)
    assert ((0 <= batch) & (batch <= 1)).all()
    singles = np.array([model.score(row[None, :])[0] for row in data.x[:50]])
    assert np.allclose(singles, batch[:50], atol=1e-6)
    # admission's single-row path: the same score, network probability and anomaly part
    parts = np.array(model.score_parts(data.x[:200])).T
    assert np.allclose([model.score_one(row) for row in data.x[:200]], parts, atol=1e-5)


def test_save_load_round_trip_is_exact_and_pickle_free(store, model, tmp_path):
    path = store.path(model.version)
    with np.load(path, allow_pickle=False) as npz:
        assert "meta" in npz.files
    meta = json.loads(path.with_suffix(".json").read_text())
    assert meta["schema_hash"] == schema_hash() and meta["feature_names"] == list(FEATURE_NAMES)
    assert {"training", "thresholds", "version", "data"} <= set(meta)
    assert meta["training"]["calibration"]["method"] == "isotonic"
    copy = tmp_path / "copy.npz"
    model.save(copy)
    again = RiskModel.load(copy)
    x = generate(2, accounts=40, blocks=200).x
    assert np.array_equal(again.score(x), model.score(x))


def test_corrupt_truncated_and_foreign_files_are_clear_errors(store, model, tmp_path):
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip file")
    with pytest.raises(RiskModelError, match="corrupt"):
        RiskModel.load(garbage)
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(store.path(model.version).read_bytes()[:5000])
    with pytest.raises(RiskModelError, match="corrupt"):
        RiskModel.load(truncated)
    with pytest.raises(RiskModelError, match="does not exist"):
        RiskModel.load(tmp_path / "missing.npz")
    other = tmp_path / "other.npz"
    np.savez(other, x=np.zeros(3))
    with pytest.raises(RiskModelError, match="corrupt|not a model"):
        RiskModel.load(other)


def test_a_model_for_another_feature_schema_is_refused(model, tmp_path):
    path = tmp_path / "old.npz"
    model.save(path)
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(arrays["meta"].tobytes())
    meta["schema_hash"] = "0" * 64
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(RiskModelError, match="feature schema"):
        RiskModel.load(path)
    with zipfile.ZipFile(path) as zf:
        assert not any(name.endswith(".pkl") for name in zf.namelist())


def test_store_versions_rollback_and_restore(tmp_path, model):
    s = ModelStore(tmp_path / "models")
    v1 = s.save_new(model)
    v2 = s.save_new(model, parent=v1)
    assert (v1, v2) == (1, 2) and s.current_version() == 2 and s.versions() == [1, 2]
    assert s.rollback() == 1 and s.load().version == 1
    with pytest.raises(RiskModelError, match="oldest"):
        s.rollback()
    s.set_current(2)
    assert s.load().version == 2
    with pytest.raises(RiskModelError, match="no model version 9"):
        s.set_current(9)


# -- evaluation ----------------------------------------------------------------------


def test_roc_auc_matches_the_definition():
    assert roc_auc_score(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert roc_auc_score(np.array([0, 1]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_model_beats_the_amount_threshold_baseline_on_held_out_data(store, model):
    train = generate(SMALL["seed"], accounts=SMALL["accounts"], blocks=SMALL["blocks"])
    held = generate(SMALL["seed"] + 1000, accounts=SMALL["accounts"], blocks=SMALL["blocks"])
    report = evaluate(model, held, best_amount_threshold(train))
    assert report["model"]["roc_auc"] > 0.93 and report["baseline"]["roc_auc"] < 0.8
    assert report["model"]["reject"]["f1"] > report["baseline"]["at_threshold"]["f1"] + 0.3
    assert report["model"]["reject"]["precision"] > 0.7
    table = render_table(report)
    assert "baseline amount >" in table and "ROC-AUC" in table


def test_training_is_fast_enough():
    data = generate(5, accounts=60, blocks=400)
    mlp = MLP.init((35, 64, 32, 16, 1), seed=0)
    started = time.perf_counter()
    mlp.fit(data.x, data.y.astype(np.float32), epochs=5)
    rate = 5 * len(data) / (time.perf_counter() - started)
    assert rate > 1000, rate
