"""Pool price-direction predictor: indicators, seeded series, persistence, evaluation, RPC."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from node.jsonrpc import NOT_FOUND, RPCError
from node.risk.errors import RiskModelError
from node.risk.market import (
    INDICATORS, MIN_OBSERVATIONS, MarketModel, evaluate_market, indicators, pool_series, render_market,
    synthetic_series, train_market,
)
from node.rpc_risk import NO_MARKET_MODEL, POOL_HISTORY_TOO_SHORT, risk_methods
from state.errors import PoolQueryError
from tests.rpc_fixtures import rpc_context


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    path = tmp_path_factory.mktemp("market") / "market.npz"
    report = train_market(path, seed=1, series=3, length=800, epochs=8)
    return path, report


def test_fifteen_indicators_on_a_known_series():
    prices = np.array([100.0] * 10 + [100.0 * 1.01**k for k in range(1, 21)])
    x = indicators(prices, np.ones(len(prices)))
    assert x.shape == (15,) == (len(INDICATORS),) and np.isfinite(x).all()
    named = dict(zip(INDICATORS, x))
    assert named["ret_1"] == pytest.approx(np.log(1.01), rel=1e-4)
    assert named["ret_5"] == pytest.approx(5 * np.log(1.01), rel=1e-4)
    assert named["rsi_14"] == pytest.approx(1.0) and named["sma_cross"] > 0 and named["volume_ratio"] == 1.0
    flat = indicators(np.full(30, 5.0), np.zeros(30))
    assert flat[INDICATORS.index("bollinger_b")] == 0.5 and flat[INDICATORS.index("rsi_14")] == 0.5
    with pytest.raises(ValueError):
        indicators(np.ones(MIN_OBSERVATIONS - 1), np.ones(MIN_OBSERVATIONS - 1))


def test_series_are_seeded():
    a, b, c = synthetic_series(4, 300), synthetic_series(4, 300), synthetic_series(5, 300)
    assert np.array_equal(a[0], b[0]) and not np.array_equal(a[0], c[0])


def test_training_reports_model_and_both_baselines_and_round_trips(trained, tmp_path):
    path, report = trained
    assert {"model", "baseline_repeat_last_move", "baseline_majority"} <= set(report)
    assert report["model"]["log_loss"] < report["baseline_majority"]["log_loss"]  # better than a coin
    assert "baseline: repeat last move" in render_market(report)
    model = MarketModel.load(path)
    assert model.mlp.sizes == (15, 32, 16, 8, 1)
    again = evaluate_market(model, seed=1, series=3, length=800)
    assert again["model"] == report["model"]
    bad = tmp_path / "bad.npz"
    bad.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(RiskModelError, match="corrupt"):
        MarketModel.load(bad)


def _fake_app(prices):
    obs = [SimpleNamespace(height=h + 1, reserve0=10**6, reserve1=int(p * 10**6)) for h, p in enumerate(prices)]

    def pool_history(pid, a, b):
        if pid != "QNX/USD":
            raise PoolQueryError(f"pool {pid} does not exist")
        return [o for o in obs if a <= o.height <= b]

    return SimpleNamespace(height=len(obs), pool_history=pool_history)


def _predict(model, prices):
    return risk_methods(rpc_context(_fake_app(prices), market_model=model))["qenex_predictPrice"]


def test_predict_price_rpc(trained):
    path, _ = trained
    model = MarketModel.load(path)
    prices = synthetic_series(9, 80)[0]
    series, volumes = pool_series(_fake_app(prices), "QNX/USD")
    assert len(series) == 60 and volumes[0] == 0.0
    out = _predict(model, prices)("USD/QNX")  # either order names the pool
    assert out["pool"] == "QNX/USD"
    assert 0 <= out["probability_up"] <= 1 and out["model_version"] == 1 and len(out["indicators"]) == 15
    with pytest.raises(RPCError) as short:
        _predict(model, prices[:5])("QNX/USD")
    assert short.value.code == POOL_HISTORY_TOO_SHORT
    with pytest.raises(RPCError) as none:
        _predict(None, prices)("QNX/USD")
    assert none.value.code == NO_MARKET_MODEL
    with pytest.raises(RPCError) as unknown:
        _predict(model, prices)("QNX/EUR")
    assert unknown.value.code == NOT_FOUND and "EUR/QNX" in unknown.value.message  # the sorted id
    for bad in (None, 7, "QNX", "qnx/usd", "QNX/QNX"):
        with pytest.raises(RPCError) as invalid:
            _predict(model, prices)(bad)
        assert invalid.value.code == -32602
