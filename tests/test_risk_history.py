"""Issue 14: persisted risk history, ordinary traffic admitted, drains flagged whatever the fee, reasons, evaluation."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from node.genesis_tools import RISK_MODEL_DIR, _trained_risk_models
from node.risk.evaluate import calibration_error, curves, evaluate
from node.risk.train import leave_one_pattern_out
from node.risk.history import HistoryStore, TxEvent, account_from_wire, account_to_wire
from node.risk.features import N_FEATURES
from node.risk.history_db import META, HistoryDB
from node.risk.hook import RiskHook
from node.risk.store import ModelStore
from node.risk.synth import generate
from node.risk.train import fit, isotonic
from state.app import Application
from state.kv import MemoryKV
from state.testing import ONE_QNX, dev_key, make_genesis, transfer
from tests.risk_fixtures import commit

ALICE, BOB, MALLORY = dev_key("alice"), dev_key("bob"), dev_key("mallory")
BALANCE = 1_000_000 * ONE_QNX


@pytest.fixture(scope="module")
def testnet_model():
    """The model every testnet node loads (trained once per machine and code version)."""
    return ModelStore(_trained_risk_models() / RISK_MODEL_DIR).load()


def _hook(model=None, funded=(ALICE, BOB), balance=BALANCE):
    app = Application(MemoryKV(), make_genesis(funded=list(funded), balance=balance))
    hook = RiskHook(None, model, review=0.5, reject=0.9)
    hook.attach(app)
    return app, hook


def _ordinary_history(app, hook, blocks=30):
    nonce = 0
    for h in range(1, blocks + 1):
        txs = []
        if h in (2, 9, 17):
            txs = [transfer(ALICE, nonce, BOB.address, (12, 3, 7)[nonce] * ONE_QNX)]
            nonce += 1
        hook.observe_block(commit(app, txs))
    return nonce


# -- persistence -------------------------------------------------------------------------


def test_account_history_round_trips_through_its_wire_form():
    store = HistoryStore()
    a, b = bytes([1]) * 20, bytes([2]) * 20
    for h in (1, 1, 4, 9):
        store.observe(TxEvent(a, b, "QNX", 3.5 * h, 0.001, h))
    store.observe(TxEvent(b, a, "QNX", 2.0, 0.001, 10, is_swap=True, trade_key="P:0", reverse_key="P:1"))
    for acc in (store.get(a), store.get(b)):
        again = account_from_wire(msgpack.unpackb(msgpack.packb(account_to_wire(acc), use_bin_type=True), raw=False))
        assert again == acc
    assert store.get(a).peak_block_sends == 2 and store.get(a).max_amount == pytest.approx(31.5)
    with pytest.raises(ValueError):
        account_from_wire([1, 2, 3])


def test_history_persists_and_start_up_replays_only_newer_blocks(tmp_path):
    app, hook = _hook()
    hook.close()
    path = tmp_path / "risk-history"
    hook = RiskHook(None, None, review=0.5, reject=0.9)
    hook.attach(app, history_path=path)
    _ordinary_history(app, hook)
    probe = transfer(ALICE, 3, MALLORY.address, 5 * ONE_QNX)
    before = hook.features(probe)
    hook.close()

    again = RiskHook(None, None, review=0.5, reject=0.9)
    again.attach(app, history_path=path)
    assert again.startup["loaded_height"] == 30 and again.startup["replayed_blocks"] == 0
    assert np.array_equal(again.features(probe), before)
    # a crash after two more commits, before their history batch: only those two are replayed
    for _ in range(2):
        commit(app, [])
    again.close()
    third = RiskHook(None, None, review=0.5, reject=0.9)
    third.attach(app, history_path=path)
    assert third.startup["loaded_height"] == 30 and third.startup["replayed_blocks"] == 2
    assert HistoryDB.__name__ and third.history_db.stored_height() == 32
    third.close()


def test_a_damaged_or_ahead_store_is_rebuilt_from_blocks(tmp_path):
    app, hook = _hook()
    _ordinary_history(app, hook, blocks=12)
    path = tmp_path / "risk-history"
    db = HistoryDB(path)
    db.kv.write_batch({META: b"\xc1 not msgpack"}, sync=True)
    db.close()
    h = RiskHook(None, None, review=0.5, reject=0.9)
    h.attach(app, history_path=path)
    assert h.startup["loaded_height"] == 0 and h.startup["replayed_blocks"] == 12
    assert h.history.get(ALICE.address).sent == 2  # the payments at heights 2 and 9
    h.history.height = 99  # a store from a later chain state (say, state restored from a backup)
    h.history_db.flush(h.history)
    h.close()
    h = RiskHook(None, None, review=0.5, reject=0.9)
    h.attach(app, history_path=path)
    assert h.startup["loaded_height"] == 0 and h.history.height == 12
    h.close()


def test_history_is_bounded_and_evictions_reach_the_store(tmp_path):
    store = HistoryStore()
    store.max_accounts = 50
    db = HistoryDB(tmp_path / "h")
    for i in range(100):
        store.observe(TxEvent(bytes([i]) * 20, bytes([200]) * 20, "QNX", 1.0, 0.001, i + 1))
        store.touch_height(i + 1)
        db.flush(store)
    assert len(store.accounts) <= 50
    loaded = HistoryStore()
    db.load(loaded)
    assert set(loaded.accounts) == set(store.accounts)
    db.close()


# -- admission -----------------------------------------------------------------------------


def test_a_drain_after_ordinary_history_is_flagged_at_the_normal_fee_and_a_big_fee_does_not_help(testnet_model):
    app, hook = _hook(testnet_model)
    nonce = _ordinary_history(app, hook)
    balance = app.account(ALICE.address).balances["QNX"]
    assert hook.assess([transfer(ALICE, nonce, BOB.address, 5 * ONE_QNX)])[0].decision == "admit"
    normal_fee = hook.assess([transfer(ALICE, nonce, MALLORY.address, balance * 99 // 100)])[0]
    assert normal_fee.decision in ("review", "reject") and normal_fee.score > 0.5
    assert normal_fee.top_features[0]["feature"] == "balance_share"
    base_fee = transfer(ALICE, nonce, MALLORY.address, 1).tx.fee
    for times in (10, 1000):
        high = hook.assess([transfer(ALICE, nonce, MALLORY.address, balance * 99 // 100, fee=times * base_fee)])[0]
        assert high.score > 0.5, (times, high)


def test_ordinary_traffic_is_admitted(testnet_model):
    # The load benchmark on genesis-funded accounts: 40 accounts paying each
    # other round robin, several transactions each per block.
    senders = [dev_key(f"load{i}") for i in range(40)]
    exchange, payroll = dev_key("exchange"), dev_key("payroll")
    staff = [dev_key(f"staff{i}") for i in range(15)]
    app, hook = _hook(testnet_model, funded=senders + staff + [exchange, payroll], balance=10_000 * ONE_QNX)
    nonces = {k.address: 0 for k in senders + staff + [exchange, payroll]}
    decisions = []

    def tx(key, to, amount):
        t = transfer(key, nonces[key.address], to, amount)
        nonces[key.address] += 1
        return t

    for h in range(1, 31):
        txs = []
        for i, k in enumerate(senders):
            for j in range(3):
                txs.append(tx(k, senders[(i + 1 + j + h) % len(senders)].address, (1 + (i + j) % 7) * ONE_QNX // 10))
        # payroll: every 10 blocks the same 15 employees, a small share each
        if h % 10 == 0:
            txs += [tx(payroll, s.address, 20 * ONE_QNX) for s in staff]
        # exchange hot wallet: deposits in, withdrawals out, a third to brand-new addresses
        txs += [tx(staff[h % 15], exchange.address, ONE_QNX)]
        txs += [tx(exchange, (dev_key(f"user{h}-{j}").address if j % 3 == 0 else senders[(h + j) % 40].address),
                   ONE_QNX // 2) for j in range(3)]
        if h > 20:  # once each account has the history, score what it sends as admission would, pending included
            decisions += [a.decision for a in hook.assess(txs)]
        hook.observe_block(commit(app, txs))
    assert decisions and decisions.count("reject") == 0
    assert decisions.count("review") <= len(decisions) * 0.02, decisions.count("review")


# -- reasons, calibration, evaluation ---------------------------------------------------------


def test_reasons_carry_values_and_contributions_that_add_up_to_the_raw_score(testnet_model):
    data = generate(77, accounts=60, blocks=300)
    fraud = data.x[data.y == 1][:20]
    for row in fraud:
        top = testnet_model.top_features(row, k=N_FEATURES)
        raw = float(testnet_model.raw_parts(row[None, :])[0][0])
        assert all({"feature", "value", "contribution", "mlp", "anomaly"} <= set(t) for t in top)
        assert sum(t["contribution"] for t in top) == pytest.approx(raw, abs=0.01)
        assert [t["contribution"] for t in top] == sorted((t["contribution"] for t in top), reverse=True)


def test_isotonic_calibration_is_monotone_and_matches_rates():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=5000)
    y = (rng.uniform(size=5000) < p**2).astype(np.int8)  # miscalibrated on purpose
    xs, vs = isotonic(p, y)
    assert np.all(np.diff(xs) >= 0) and np.all(np.diff(vs) >= 0)
    calibrated = np.interp(p, xs, vs)
    assert calibration_error(y, calibrated)["ece"] < calibration_error(y, p)["ece"] / 3


def test_evaluation_reports_ablation_calibration_curves_and_leave_one_pattern_out():
    train, cal, held = (generate(s, accounts=60, blocks=400) for s in (21, 22, 23))
    model, _ = fit(train, seed=0, epochs=5, trees=20, calibration=cal)
    report = evaluate(model, held, 100.0)
    assert {"fee_ablation", "calibration", "curves", "false_positive_rate", "per_pattern", "baseline",
            "baseline_share"} <= set(report)
    assert 0 <= report["calibration"]["ece"] <= 1
    roc = np.array(report["curves"]["roc"])
    assert roc[0].tolist() == [0.0, 0.0] and np.all(np.diff(roc[:, 0]) >= 0) and roc[-1].tolist() == [1.0, 1.0]
    assert curves(np.array([0, 1]), np.array([0.2, 0.8]))["pr"][0] == [1.0, 1.0]
    lopo = leave_one_pattern_out(train, cal, held, seed=0, epochs=2, trees=10, review=0.5, reject=0.9)
    assert set(lopo) == {"drain", "burst", "mule", "wash", "dust"}
    assert all(v["recall_review"] is None or 0 <= v["recall_review"] <= 1 for v in lopo.values())
