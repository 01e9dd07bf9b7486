"""Issue 14: persisted risk history, ordinary traffic admitted, drains flagged whatever the fee, reasons, evaluation."""

from __future__ import annotations

import json

import msgpack
import numpy as np
import pytest

from node.config import Home
from node.genesis_tools import (DEV_ACCOUNTS_FILE, LOAD_BALANCE, RISK_ENV, RISK_MODEL_DIR, _trained_risk_models,
                                dev_account_key, load_dev_accounts, write_testnet)
from node.risk.evaluate import calibration_error, curves, evaluate
from node.risk.train import leave_one_pattern_out
from node.risk.history import HistoryStore, TxEvent, account_from_wire, account_to_wire
from node.risk.features import FEATURE_NAMES, N_FEATURES
from node.risk.history_db import META, HistoryDB
from node.risk.hook import RiskHook
from node.risk.store import ModelStore
from node.risk.synth import generate
from node.risk.train import fit, isotonic
from state.app import Application
from state.genesis import Genesis, GenesisToken
from state.keyfile import load_keyfile
from state.kv import MemoryKV
from state.testing import TEST_CHAIN_ID, ONE_QNX, dev_key, make_genesis, transfer
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


def test_a_store_of_the_previous_format_is_rebuilt_and_fresh_receivers_are_recorded_at_commit(tmp_path):
    """History format 2 (schema 4: recent sends carry their token, fresh receivers) replaces format 1: an old
    store is rebuilt from blocks.  A send to an address with no history and no account is recorded as a send
    to a fresh address; one to a genesis-funded account without history is not."""
    app, hook = _hook()
    _ordinary_history(app, hook, blocks=5)
    fresh = dev_key("never-seen").address
    hook.observe_block(commit(app, [transfer(ALICE, 1, fresh, ONE_QNX), transfer(BOB, 0, MALLORY.address, ONE_QNX)]))
    assert [r for _, r in hook.history.get(ALICE.address).fresh_sent] == [fresh]  # bob: funded in genesis
    assert [r for _, r in hook.history.get(BOB.address).fresh_sent] == [MALLORY.address]
    path = tmp_path / "risk-history"
    db = HistoryDB(path)
    db.kv.write_batch({META: msgpack.packb({"format": 1, "height": 3, "fees": []})}, sync=True)
    db.close()
    again = RiskHook(None, None, review=0.5, reject=0.9)
    again.attach(app, history_path=path)
    assert again.startup["loaded_height"] == 0 and again.startup["replayed_blocks"] == app.height
    assert again.history.get(ALICE.address).sent == 2
    again.close()


def test_loaded_accounts_are_decoded_on_first_use_and_a_damaged_one_starts_again(tmp_path, caplog):
    from node.risk.history import StoredAccount

    store = HistoryStore()
    a, b, c = (bytes([i]) * 20 for i in (1, 2, 3))
    for h in (1, 2, 3):
        store.observe(TxEvent(a, b, "QNX", 2.0, 0.001, h))
        store.observe(TxEvent(c, a, "QNX", 1.0, 0.001, h))
        store.touch_height(h)
    db = HistoryDB(tmp_path / "h")
    db.flush(store)
    record = db.kv.get(b"a" + c)
    db.kv.write_batch({b"a" + c: record[:8] + b"\xc1 damaged"}, sync=True)
    loaded = HistoryStore()
    assert db.load(loaded) == 3
    assert all(isinstance(v, StoredAccount) for v in loaded.accounts.values())  # nothing decoded yet
    assert list(loaded.accounts) == [a, b, c]  # recency order (all last active at 3), then address
    assert loaded.get(a) == store.get(a) and not isinstance(loaded.accounts[a], StoredAccount)
    assert loaded.get(c) is None and c not in loaded.accounts and "damaged" in caplog.text
    kept = db.kv.get(b"a" + a)
    db.flush(loaded)  # the damaged record is deleted; the decoded one is left as it was (not dirty)
    assert db.kv.get(b"a" + c) is None and db.kv.get(b"a" + a) == kept
    db.close()


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
    assert hook.assess([transfer(ALICE, nonce, BOB.address, 5 * ONE_QNX)], admitting=False)[0].decision == "admit"
    normal_fee = hook.assess([transfer(ALICE, nonce, MALLORY.address, balance * 99 // 100)], admitting=False)[0]
    # one takeover signal: flagged at least (the drain rule); refused only if the model alone scores it so
    assert normal_fee.decision in ("review", "reject") and normal_fee.score > 0.5, normal_fee
    # The drain's own signals lead its reasons; their order moves with the trained weights (a fresh
    # install with numpy 2.4.6 ranks the amount against the sender's history first, just above it).
    assert {"balance_share", "drained_share"} & {f["feature"] for f in normal_fee.top_features[:2]}, \
        normal_fee.top_features
    assert normal_fee.rule == "drain"  # the drain rule matched; no second signal
    base_fee = transfer(ALICE, nonce, MALLORY.address, 1).tx.fee
    for times in (10, 1000):
        high = hook.assess([transfer(ALICE, nonce, MALLORY.address, balance * 99 // 100, fee=times * base_fee)])[0]
        assert high.score > 0.5, (times, high)


def test_a_drain_with_a_second_takeover_signal_is_refused_and_the_hook_remembers_only_admissions(testnet_model):
    # What tests/test_risk_testnet.py does on live nodes: a probe to a fresh
    # address, then the balance fanned out to two fresh addresses while the
    # probe is pending.
    app, hook = _hook(testnet_model)
    nonce = _ordinary_history(app, hook)
    balance = app.account(ALICE.address).balances["QNX"]
    fresh = [dev_key(f"thief{i}").address for i in range(3)]
    probe = transfer(ALICE, nonce, fresh[0], ONE_QNX // 100)
    first = transfer(ALICE, nonce + 1, fresh[1], balance * 60 // 100)
    rest = transfer(ALICE, nonce + 2, fresh[2], balance * 35 // 100)
    # score queries (qenex_riskScore) leave nothing behind: no pending memory, no cached row
    assert [hook.explain(t)[0].decision for t in (probe, first, rest)][0] == "admit"
    assert hook._pending == {} and not hook._features
    # the probe is admitted; the first leg (60 %: a large purchase could look so) is not a drain yet,
    # so the model alone decides it
    decisions = [hook.assess([probe])[0].decision, hook.assess([first])[0].decision]
    assert decisions[0] == "admit" and decisions[1] in ("admit", "review"), decisions
    refused = hook.assess([rest])[0]
    assert refused.decision == "reject" and {"probe", "split"} <= set(refused.rule.split("+")), refused
    row = hook.features(rest)
    assert row[FEATURE_NAMES.index("pending_to_unseen")] == pytest.approx(np.log10(3))
    assert row[FEATURE_NAMES.index("drained_share")] == pytest.approx(0.95, abs=1e-3)
    assert row[FEATURE_NAMES.index("balance_share")] == pytest.approx(0.35, abs=1e-3)
    assert row[FEATURE_NAMES.index("fresh_others_10")] == pytest.approx(np.log10(3))  # the probe and the first leg
    assert row[FEATURE_NAMES.index("prior_new_outflow_share")] == pytest.approx(0.6, abs=1e-3)
    assert set(hook._pending[ALICE.address]) == {nonce, nonce + 1}  # the refused one is not pending
    # the same rows scored as one gossip batch decide the same
    again_app, again = _hook(testnet_model)
    _ordinary_history(again_app, again)
    assert [a.decision for a in again.assess([probe, first, rest])] == decisions + ["reject"]
    # once committed, nothing of them is pending any more
    hook.observe_block(commit(app, [probe, first]))
    assert ALICE.address not in hook._pending


THIEF, WALLET = dev_key("thief").address, dev_key("new-wallet").address


def _blocks(app, hook, *txs, empty=0):
    """Commit ``txs`` in one block (if any), then ``empty`` empty blocks, folding each into the history."""
    if txs:
        hook.observe_block(commit(app, list(txs)))
    for _ in range(empty):
        hook.observe_block(commit(app, []))


def _takeover(kind, app, hook, nonce):
    """After alice's ordinary history: what ``kind`` of takeover (or owner) does before the drain; the drain.

    Returns the transfers to assess in order (the last one empties the account).
    """
    balance = app.account(ALICE.address).balances["QNX"]
    fresh = [dev_key(f"fresh{i}").address for i in range(3)]
    if kind == "plain":
        return [transfer(ALICE, nonce, THIEF, balance * 99 // 100)]
    if kind == "probe, pending":  # a quick test send from the stolen key, not committed yet (two would be a burst)
        return [transfer(ALICE, nonce, fresh[0], ONE_QNX // 100),
                transfer(ALICE, nonce + 1, THIEF, balance * 99 // 100)]
    if kind == "probe, committed":  # the probe committed three blocks before the drain
        _blocks(app, hook, transfer(ALICE, nonce, fresh[0], ONE_QNX // 100), empty=2)
        balance = app.account(ALICE.address).balances["QNX"]
        return [transfer(ALICE, nonce + 1, THIEF, balance * 99 // 100)]
    if kind == "split over blocks":  # 60 % to the thief, committed; the rest to the same (no longer new) address
        _blocks(app, hook, transfer(ALICE, nonce, THIEF, balance * 60 // 100), empty=1)
        balance = app.account(ALICE.address).balances["QNX"]
        return [transfer(ALICE, nonce + 1, THIEF, balance * 99 // 100)]
    if kind == "burst":  # three payments to bob, a known counterparty, in flight, then the drain
        return [transfer(ALICE, nonce + k, BOB.address, (2 + k) * ONE_QNX) for k in range(3)] + [
            transfer(ALICE, nonce + 3, THIEF, balance * 98 // 100)]
    if kind == "collector":  # bob was drained to the thief first: an address that collects and never pays
        _blocks(app, hook, transfer(BOB, 0, THIEF, app.account(BOB.address).balances["QNX"] * 95 // 100))
        return [transfer(ALICE, nonce, THIEF, balance * 99 // 100)]
    if kind == "dormant":  # alice paid every 7.5 blocks on average; now 45 quiet blocks
        _blocks(app, hook, empty=45 - (app.height - 17))
        return [transfer(ALICE, nonce, THIEF, balance * 99 // 100)]
    if kind == "owner: test payment committed, then everything":
        _blocks(app, hook, transfer(ALICE, nonce, WALLET, ONE_QNX // 100), empty=1)
        balance = app.account(ALICE.address).balances["QNX"]
        return [transfer(ALICE, nonce + 1, WALLET, balance * 99 // 100)]
    if kind == "owner: test payment pending, then everything":
        return [transfer(ALICE, nonce, WALLET, ONE_QNX // 100), transfer(ALICE, nonce + 1, WALLET, balance * 98 // 100)]
    raise AssertionError(kind)


TAKEOVERS = [  # (kind, the hook's decision on the drain, the rule that matched)
    ("plain", "review", "drain"),
    ("probe, pending", "reject", "drain+probe"),
    ("probe, committed", "reject", "drain+probe"),
    ("split over blocks", "reject", "drain+split"),
    ("burst", "reject", "drain+burst"),
    ("collector", "reject", "drain+collector"),
    ("dormant", "reject", "drain+dormant"),
    ("owner: test payment committed, then everything", "review", "drain"),
    ("owner: test payment pending, then everything", "review", "drain"),
]


@pytest.mark.parametrize("kind,decision,rule", TAKEOVERS, ids=[t[0] for t in TAKEOVERS])
def test_each_second_takeover_signal_turns_a_drain_into_a_refusal_whatever_the_model_says(
        testnet_model, monkeypatch, kind, decision, rule):
    """The rules (node.risk.policy) alone: a model that admits everything still flags every drain, refuses
    each drain with a second signal, and flags, without refusing, an owner filling a wallet it tested."""
    app, hook = _hook(testnet_model)
    nonce = _ordinary_history(app, hook)
    txs = _takeover(kind, app, hook, nonce)
    monkeypatch.setattr(hook.model, "score_one", lambda row: (0.01, 0.01, 0.0))
    monkeypatch.setattr(hook.model, "score_parts", lambda x: (np.full(len(x), 0.01),) * 2 + (np.zeros(len(x)),))
    before = [hook.assess([t])[0] for t in txs[:-1]]
    assert all(a.decision == "admit" for a in before), before  # what comes before the drain is no drain
    drain = hook.assess([txs[-1]])[0]
    assert (drain.decision, drain.rule) == (decision, rule), (drain, hook.features(txs[-1]).tolist())
    # the evidence leads the reasons: drained_share, then the signal's own feature, with their values
    evidence = [f for f in drain.top_features if f.get("rule")]
    assert [f["rule"] for f in evidence] == rule.split("+")
    assert evidence[0]["feature"] == "drained_share" and evidence[0]["value"] >= 0.9
    assert all(f["contribution"] is None for f in evidence)


@pytest.mark.parametrize("kind,decision,rule", TAKEOVERS, ids=[t[0] for t in TAKEOVERS])
def test_the_testnet_model_with_the_rules_decides_each_takeover(testnet_model, kind, decision, rule):
    """The same with the model every testnet node loads: the decision is the stricter of the two, so a drain
    with a second signal is refused and a lone drain is flagged (refused only if the model scores it so)."""
    app, hook = _hook(testnet_model)
    nonce = _ordinary_history(app, hook)
    txs = _takeover(kind, app, hook, nonce)
    for t in txs[:-1]:
        assert hook.assess([t])[0].decision != "reject"
    drain = hook.assess([txs[-1]])[0]
    assert drain.rule == rule, drain
    if decision == "reject":
        assert drain.decision == "reject", drain
    else:
        assert drain.decision == "review" or drain.score > 0.9, drain


def test_the_rules_never_lower_the_models_decision(testnet_model, monkeypatch):
    """A model that refuses everything (an operator's reject threshold is the operator's) still refuses a
    lone drain and an ordinary payment: the rules only ever raise a decision."""
    app, hook = _hook(testnet_model)
    nonce = _ordinary_history(app, hook)
    monkeypatch.setattr(hook.model, "score_one", lambda row: (0.99, 0.99, 0.0))
    balance = app.account(ALICE.address).balances["QNX"]
    lone = hook.assess([transfer(ALICE, nonce, MALLORY.address, balance * 95 // 100)], admitting=False)[0]
    assert (lone.decision, lone.rule, lone.score) == ("reject", "drain", 0.99)
    assert all(f.get("rule") is None for f in lone.top_features)  # the model decided: its reasons only
    ordinary = hook.assess([transfer(ALICE, nonce, BOB.address, 5 * ONE_QNX)], admitting=False)[0]
    assert (ordinary.decision, ordinary.rule) == ("reject", None)


def _load_testnet_app(tmp_path, monkeypatch, accounts):
    """The genesis of ``qenexd testnet init --accounts N`` in an Application, its dev accounts and validator key."""
    monkeypatch.setenv(RISK_ENV, "off")  # the model is loaded below; no copy per node needed
    write_testnet(tmp_path / "net", validators=1, chain_id=TEST_CHAIN_ID, base_port=40000, accounts=accounts)
    home = Home(tmp_path / "net" / "node0")
    app = Application(MemoryKV(), Genesis.from_json(home.genesis_file.read_text()))
    return app, load_dev_accounts(tmp_path / "net"), load_keyfile(home.node_key_file, None)


def test_testnet_accounts_are_funded_in_genesis_and_load_back(tmp_path, monkeypatch):
    app, keys, _ = _load_testnet_app(tmp_path, monkeypatch, 5)
    assert [k.address for k in keys] == [dev_account_key(i).address for i in range(5)]
    assert all(app.account(k.address).balances == {"QNX": LOAD_BALANCE} for k in keys)
    doc = json.loads((tmp_path / "net" / DEV_ACCOUNTS_FILE).read_text())
    assert doc["format"] == "qenex-dev-accounts/1" and "DEV ONLY" in doc["warning"]
    doc["accounts"][2]["secret"] = doc["accounts"][3]["secret"]
    (tmp_path / "net" / DEV_ACCOUNTS_FILE).write_text(json.dumps(doc))
    with pytest.raises(ValueError, match="entry 2's secret does not give its address"):
        load_dev_accounts(tmp_path / "net")
    with pytest.raises(ValueError, match="does not exist"):
        load_dev_accounts(tmp_path)
    with pytest.raises(ValueError, match="outside"):
        write_testnet(tmp_path / "big", validators=1, chain_id="x-1", base_port=40000, accounts=10**6)


def test_load_benchmark_traffic_on_testnet_accounts_is_admitted(testnet_model, tmp_path, monkeypatch):
    # bench/load.py's shape on the accounts of `testnet init --accounts`: 40
    # genesis-funded accounts paying each other round robin several times a
    # block from the first block on (no history at all), and one base unit
    # to a common sink each block (today's bench/load.py), payroll fan-out
    # from one of them every 10 blocks, an exchange hot wallet taking
    # deposits and paying withdrawals every block, a third of them to
    # brand-new addresses.  Every transaction is scored as admission scores
    # it: gossip batches in one pass, and every fifth block one at a time
    # (RPC submissions), pending ones included.
    app, keys, validator = _load_testnet_app(tmp_path, monkeypatch, 58)
    senders, payroll, staff, exchange, sink = keys[:40], keys[40], keys[41:56], keys[56], keys[57]
    hook = RiskHook(None, testnet_model, review=0.5, reject=0.9)
    hook.attach(app)
    nonces = {k.address: 0 for k in keys}
    decisions = []

    def tx(key, to, amount):
        t = transfer(key, nonces[key.address], to, amount)
        nonces[key.address] += 1
        return t

    for h in range(1, 41):
        txs = []
        for i, k in enumerate(senders):
            for j in range(3):
                txs.append(tx(k, senders[(i + 1 + j + h) % len(senders)].address, (1 + (i + j) % 7) * ONE_QNX // 10))
            txs.append(tx(k, sink.address, 1))
        if h % 10 == 0:  # payroll: the same 15 employees, a small share each
            txs += [tx(payroll, s.address, 20 * ONE_QNX) for s in staff]
        txs += [tx(staff[h % 15], exchange.address, ONE_QNX)]
        txs += [tx(exchange, (dev_key(f"user{h}-{j}").address if j % 3 == 0 else senders[(h + j) % 40].address),
                   ONE_QNX // 2) for j in range(3)]
        if h % 5:
            decisions += [a.decision for a in hook.assess(txs)]
        else:
            decisions += [hook.assess([t])[0].decision for t in txs]
        block = commit(app, txs, validator)
        assert len(block.txs) == len(txs)  # all valid: the history grows as on the testnet
        hook.observe_block(block)
    assert len(decisions) > 6000 and decisions.count("reject") == 0, decisions.count("reject")
    assert decisions.count("review") <= len(decisions) * 0.005, decisions.count("review")


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


def test_the_drain_rule_is_a_floor_under_the_model(testnet_model, monkeypatch):
    """Whatever the model scores it, more than 90 % of the balance to a never-paid receiver is flagged;
    a smaller transfer to the same fresh receiver is left to the model."""
    app, hook = _hook(testnet_model)
    nonce = _ordinary_history(app, hook)
    monkeypatch.setattr(hook.model, "score_one", lambda row: (0.01, 0.01, 0.0))  # a model that admits it all
    balance = app.account(ALICE.address).balances["QNX"]
    drain = hook.assess([transfer(ALICE, nonce, MALLORY.address, balance * 95 // 100)], admitting=False)[0]
    assert drain.decision == "review" and drain.score == 0.01
    half = hook.assess([transfer(ALICE, nonce, MALLORY.address, balance // 2)], admitting=False)[0]
    assert half.decision == "admit"


@pytest.mark.parametrize("other_tokens", [1, 20])
def test_a_receiver_is_funded_by_a_nonce_or_any_token_whatever_the_read_path(other_tokens, monkeypatch):
    """receiver_unfunded: point reads while the chain has few tokens, the account scan past that; the
    same answer either way (a receiver holding only another token is known, a fresh address is not)."""
    import node.risk.hook as hook_module

    tokens = [GenesisToken(f"T{i}", f"token {i}", 6, ALICE.address) for i in range(other_tokens)]
    holder, sender, fresh = dev_key("only-a-token"), dev_key("sent-once"), dev_key("never-seen")
    genesis = make_genesis(funded=[ALICE, BOB], tokens=tokens,
                           extra_balances={holder.address: {tokens[-1].symbol: 5}})
    app = Application(MemoryKV(), genesis)
    hook = RiskHook(None, None, review=0.5, reject=0.9)
    hook.attach(app)
    scans = []
    monkeypatch.setattr(app, "account", lambda address: scans.append(address) or Application.account(app, address))
    assert hook._funded(holder.address) and hook._funded(ALICE.address)
    assert not hook._funded(fresh.address) and not hook._funded(sender.address)
    assert bool(scans) == (other_tokens > hook_module.FUNDED_POINT_READS)


def test_recent_counterparty_counts_are_memoised_exactly():
    """features._recent_distinct memoises per table; whatever _remember does to the table (move, add,
    evict past MAX_COUNTERPARTIES), the count is the one a fresh walk gives."""
    import itertools
    import random

    from node.risk.features import _recent_distinct
    from node.risk.history import MAX_COUNTERPARTIES, _remember

    rng = random.Random(7)
    table: dict[bytes, int] = {}
    memo: dict = {}
    height = 0
    for step in range(3000):
        if rng.random() < 0.3:
            height += rng.randint(0, 3)
        _remember(table, bytes([rng.randrange(MAX_COUNTERPARTIES + 40) % 256, rng.randrange(2)]), height)
        since = height - rng.choice((0, 1, 5, 100))
        walked = sum(1 for _ in itertools.takewhile(lambda h: h >= since, reversed(table.values())))
        assert _recent_distinct(table, since, memo, "t") == walked, step
        assert _recent_distinct(table, since, memo, "t") == walked  # the memo's answer


def test_observing_a_transaction_clears_the_counts_memoised_for_its_tables():
    """Two updates that leave a table's size and newest entry as they were (A then B moved to the same
    height) change the count; observe clears the memo, so the features see it (found by a review)."""
    from node.risk.features import _recent_distinct

    store = HistoryStore()
    a, b, r = b"a" * 20, b"b" * 20, b"r" * 20
    for sender, height in ((a, 1), (b, 150)):
        store.observe(TxEvent(sender, r, "QNX", 1.0, 0.001, height))
    acc = store.get(r)
    assert _recent_distinct(acc.received_from, 100, acc.distinct_memo, "received_from") == 1
    for sender in (a, b):
        store.observe(TxEvent(sender, r, "QNX", 1.0, 0.001, 150))
    assert _recent_distinct(acc.received_from, 100, acc.distinct_memo, "received_from") == 2

