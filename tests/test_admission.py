"""The admission pipeline (node/admission.py): one sequence for RPC and gossip, risk before insert."""

from __future__ import annotations

import logging
from unittest import mock

import pytest

import state.transactions
from node.admission import GOSSIP, RPC, Admission, refusal_kind
from node.config import MempoolSection
from node.errors import AlreadyKnown, MempoolFull, TxRejected
from node.inbound import PENALTY_GARBAGE
from node.mempool import Mempool
from node.risk.errors import RiskRejected
from node.risk.hook import Assessment, RiskHook
from state.app import Application
from state.codec import encode
from state.genesis import Params
from state.kv import MemoryKV
from state.testing import ONE_QNX, dev_key, make_genesis, transfer
from state.payloads import TxKind
from state.transactions import SignedTransaction

ALICE, BOB, CAROL, DAVE = (dev_key(f"admission-{n}") for n in ("alice", "bob", "carol", "dave"))
SINK = dev_key("admission-sink").address
FEE = Params().min_fee(TxKind.TRANSFER)
BALANCE = 1_000 * ONE_QNX
TOP = [{"feature": "balance_share", "value": 0.99, "contribution": 0.5}]


class ScriptedRisk:
    """A risk hook whose decisions a test sets per tx hash (default: admit); records every pass."""

    reject = 0.9

    def __init__(self, verdicts: dict[bytes, str] | None = None) -> None:
        self.verdicts = verdicts or {}
        self.passes: list[list[bytes]] = []

    def assess(self, stxs):
        self.passes.append([s.hash for s in stxs])
        out = []
        for s in stxs:
            decision = self.verdicts.get(s.hash, "admit")
            score = {"admit": 0.1, "review": 0.6, "reject": 0.95}[decision]
            out.append(Assessment(s.hash, decision, score, 7, TOP if decision != "admit" else []))
        return out


class BrokenRisk:
    reject = 0.9

    def assess(self, stxs):
        raise RuntimeError("model file vanished")


class Net:
    def __init__(self) -> None:
        self.penalties: list[tuple[str, str, int]] = []

    def penalize(self, peer: str, reason: str, points: int = 10) -> None:
        self.penalties.append((peer, reason, points))

    def ban(self, peer: str, reason: str) -> None:
        raise AssertionError(f"banned {peer}: {reason}")


class Rig:
    """An Admission over a fresh application and mempool, with insert and eviction instrumented."""

    def __init__(self, risk=None, **limits) -> None:
        self.app = Application(MemoryKV(), make_genesis(funded=[ALICE, BOB, CAROL, DAVE], balance=BALANCE))
        self.pool = Mempool(self.app, MempoolSection(**limits))
        self.risk = risk if risk is not None else ScriptedRisk()
        self.flagged: dict[bytes, dict] = {}
        self.relayed: list[bytes] = []
        self.net = Net()
        self.inserted: list[bytes] = []
        self.evicted: list[bytes] = []
        insert, evict = self.pool.insert, self.pool._evict

        def record_insert(candidate):
            self.inserted.append(candidate.stx.hash)
            return insert(candidate)

        def record_evict(entry):
            self.evicted.append(entry.stx.hash)
            return evict(entry)

        self.pool.insert, self.pool._evict = record_insert, record_evict
        self.admission = Admission(self.app, self.pool, self.risk, flagged=self.flagged, relay=self.relayed.append,
                                   net=self.net)

    def gossip(self, *raws, peer: str = "peer"):
        return self.admission.on_gossip_batch(peer, encode([1, list(raws)]))

    def rpc_kind(self, raw: bytes) -> str:
        try:
            self.admission.submit(raw)
        except Exception as exc:
            return refusal_kind(exc)
        return "admitted"


def forged(stx: SignedTransaction) -> SignedTransaction:
    return SignedTransaction(stx.tx, bytes(64))


# -- risk before insert ------------------------------------------------------------------------


def test_a_risk_reject_is_never_inserted_and_leaves_no_trace():
    drain = transfer(ALICE, 0, SINK, 900 * ONE_QNX)
    rig = Rig(ScriptedRisk({drain.hash: "reject"}))
    with pytest.raises(RiskRejected) as info:
        rig.admission.submit(drain.encode())
    err = info.value
    assert err.code == -32020
    assert err.data == {"score": 0.95, "threshold": 0.9, "model_version": 7, "top_features": TOP}
    assert str(err) == (f"transaction 0x{drain.hash.hex()} refused by the risk hook: score 0.950 > 0.9 "
                        "(model v7; top features: balance_share)")
    assert rig.inserted == [] and len(rig.pool) == 0 and rig.pool.pending_nonce(ALICE.address) is None
    assert rig.flagged == {} and rig.relayed == []
    assert rig.admission.submit(transfer(ALICE, 0, SINK, ONE_QNX).encode())  # its nonce is still free


def test_a_risk_reject_evicts_nothing_from_a_full_pool():
    rig = Rig(max_txs=3)
    for key in (ALICE, BOB, CAROL):
        rig.admission.submit(transfer(key, 0, SINK, 1).encode())
    before = [stx.hash for stx, _ in rig.pool.entries()]
    rich = transfer(DAVE, 0, SINK, 900 * ONE_QNX, fee=100 * FEE)  # would evict a cheaper tail
    rig.risk.verdicts[rich.hash] = "reject"
    rig.inserted.clear()
    with pytest.raises(RiskRejected, match="it may not evict pending transactions"):
        rig.admission.submit(rich.encode())
    assert rig.inserted == [] and rig.evicted == []
    assert [stx.hash for stx, _ in rig.pool.entries()] == before
    # the same through gossip: dropped quietly, nothing evicted, the peer not penalised
    (outcome,) = rig.gossip(rich.encode())
    assert outcome.kind == "RiskRejected" and rig.inserted == [] and rig.evicted == [] and rig.net.penalties == []
    # an admitted one does evict
    ok = transfer(DAVE, 0, SINK, ONE_QNX, fee=100 * FEE)
    rig.admission.submit(ok.encode())
    assert len(rig.evicted) == 1 and ok.hash in rig.pool and len(rig.pool) == 3


def test_review_is_admitted_and_flagged_once_inserted():
    review = transfer(ALICE, 0, SINK, 900 * ONE_QNX)
    rig = Rig(ScriptedRisk({review.hash: "review"}))
    assert rig.admission.submit(review.encode()) == review.hash
    assert review.hash in rig.pool and rig.relayed == [review.encode()]
    assert rig.flagged[review.hash] == {"decision": "review", "score": 0.6, "model_version": 7, "top_features": TOP,
                                        "mlp": None, "anomaly": None}


def test_a_review_refused_at_insert_is_not_flagged():
    """Scored, then the pool filled up under it within the same batch: no trace."""
    first = transfer(ALICE, 0, SINK, 1, fee=10 * FEE)
    review = transfer(BOB, 0, SINK, 1, fee=5 * FEE)
    rig = Rig(ScriptedRisk({review.hash: "review"}), max_txs=1)
    outcomes = rig.gossip(first.encode(), review.encode())
    assert [o.kind for o in outcomes] == ["admitted", "MempoolFull"]
    assert rig.risk.passes == [[first.hash, review.hash]]
    assert review.hash not in rig.pool and rig.flagged == {}


def test_the_real_hook_scores_a_candidate_as_it_would_once_pending():
    """Features come from committed state and the tx's own nonce, so a candidate scored before its
    insert gets the row it would get once pending; the rules fallback flags the drain once it is in."""
    app = Application(MemoryKV(), make_genesis(funded=[ALICE], balance=BALANCE))
    pool = Mempool(app, MempoolSection())

    def hook() -> RiskHook:
        h = RiskHook(None, None, review=0.5, reject=0.9, fallback="rules")
        h.attach(app)
        return h

    txs = [transfer(ALICE, 0, SINK, ONE_QNX), transfer(ALICE, 1, SINK, ONE_QNX), transfer(ALICE, 2, SINK, 990 * ONE_QNX)]
    rows_before = [hook().features(stx) for stx in txs]
    flagged: dict = {}
    outcomes = Admission(app, pool, hook(), flagged=flagged, relay=lambda raw: None).admit(
        [stx.encode() for stx in txs], GOSSIP)
    assert [o.kind for o in outcomes] == ["admitted"] * 3 and len(pool) == 3
    after = hook()
    assert all((before == after.features(stx)).all() for before, stx in zip(rows_before, txs))
    assert list(flagged) == [txs[2].hash] and flagged[txs[2].hash]["decision"] == "review"


# -- the hook failing ---------------------------------------------------------------------------


def test_a_hook_that_raises_admits_unscored_with_a_log_line(caplog):
    rig = Rig(BrokenRisk())
    stx = transfer(ALICE, 0, SINK, ONE_QNX)
    with caplog.at_level(logging.ERROR, logger="qenex.admission"):
        assert rig.admission.submit(stx.encode()) == stx.hash
        (outcome,) = rig.gossip(transfer(BOB, 0, SINK, ONE_QNX).encode())
    assert outcome.admitted and outcome.assessment is None
    assert stx.hash in rig.pool and rig.flagged == {} and len(rig.pool) == 2
    assert [r.getMessage() for r in caplog.records] == ["risk scoring failed; admitting unscored"] * 2


# -- the order of the checks ----------------------------------------------------------------------


def test_a_bad_signature_is_reported_before_a_wrong_nonce():
    bad = forged(transfer(ALICE, 5, SINK, 1))  # skips ahead, and forged
    rig = Rig()
    with pytest.raises(TxRejected, match="bad signature") as info:
        rig.admission.submit(bad.encode())
    assert info.value.data == {"reason": "BadSignature"}
    (outcome,) = rig.gossip(bad.encode())
    assert outcome.kind == "BadSignature" and [p[2] for p in rig.net.penalties] == [PENALTY_GARBAGE]
    assert rig.risk.passes == []  # nothing reached the hook


def test_a_wrong_chain_id_is_reported_without_verifying_the_signature():
    bad = forged(transfer(ALICE, 0, SINK, 7, chain_id="other-chain"))
    rig = Rig()
    with mock.patch.object(state.transactions, "verify", wraps=state.transactions.verify) as verify:
        with pytest.raises(TxRejected, match="chain id 'other-chain'") as info:
            rig.admission.submit(bad.encode())
        (outcome,) = rig.gossip(bad.encode())
    assert info.value.data == {"reason": "WrongChainId"} and outcome.kind == "WrongChainId"
    assert verify.call_count == 0
    # and a right chain id does pay for the check
    with mock.patch.object(state.transactions, "verify", wraps=state.transactions.verify) as verify:
        with pytest.raises(TxRejected, match="bad signature"):
            rig.admission.submit(forged(transfer(ALICE, 0, SINK, 8)).encode())
    assert verify.call_count == 1


def test_size_is_refused_before_decoding():
    rig = Rig()
    limit = rig.app.params.max_tx_bytes
    with mock.patch.object(SignedTransaction, "decode") as decode:
        with pytest.raises(TxRejected, match=f"exceeds the limit of {limit}") as info:
            rig.admission.submit(b"\x00" * (limit + 1))
    assert info.value.data == {"reason": "too_large"} and decode.call_count == 0
    with pytest.raises(TxRejected, match="malformed transaction") as info:
        rig.admission.submit(b"\x93\x01")
    assert info.value.data == {"reason": "malformed"}


def test_a_duplicate_is_refused_before_its_signature_is_checked_again():
    rig = Rig()
    stx = transfer(ALICE, 0, SINK, 9)
    rig.admission.submit(stx.encode())
    copy = SignedTransaction.decode(stx.encode())  # a new object: no per-object signature cache
    with mock.patch.object(SignedTransaction, "verify_signature") as verify:
        with pytest.raises(AlreadyKnown):
            rig.admission.submit(copy.encode())
    assert verify.call_count == 0


# -- one decision, whatever the source -----------------------------------------------------------


def _cases():
    risky, review = transfer(ALICE, 0, SINK, 900 * ONE_QNX), transfer(BOB, 0, SINK, 800 * ONE_QNX)
    cases = {
        "good": (transfer(CAROL, 0, SINK, ONE_QNX).encode(), "admitted"),
        "review": (review.encode(), "admitted"),
        "risky": (risky.encode(), "RiskRejected"),
        "forged": (forged(transfer(CAROL, 0, SINK, 2)).encode(), "BadSignature"),
        "foreign": (transfer(CAROL, 0, SINK, 3, chain_id="other-chain").encode(), "WrongChainId"),
        "malformed": (b"\x92\x01\x02", "malformed"),
        "oversize": (b"\x00" * (Params().max_tx_bytes + 1), "too_large"),
        "fee": (transfer(CAROL, 0, SINK, 4, fee=FEE - 1).encode(), "FeeTooLow"),
        "nonce": (transfer(CAROL, 3, SINK, 5).encode(), "bad_nonce"),
        "balance": (transfer(DAVE, 0, SINK, 2 * BALANCE).encode(), "insufficient_balance"),
    }
    return cases, {risky.hash: "reject", review.hash: "review"}


@pytest.mark.parametrize("name", sorted(_cases()[0]))
def test_rpc_and_gossip_decide_the_same(name):
    cases, verdicts = _cases()
    raw, expected = cases[name]
    rpc, gossip = Rig(ScriptedRisk(verdicts)), Rig(ScriptedRisk(verdicts))
    assert rpc.rpc_kind(raw) == expected
    (outcome,) = gossip.gossip(raw)
    assert outcome.kind == expected
    assert [s.hash for s, _ in rpc.pool.entries()] == [s.hash for s, _ in gossip.pool.entries()]
    assert rpc.flagged == gossip.flagged
    assert (len(rpc.relayed), gossip.relayed) == (int(expected == "admitted"), [])  # the policies' one other difference


def test_the_p2p_pre_check_runs_the_same_stateless_functions():
    import node.admission as admission
    import node.inbound as inbound
    import node.txcheck as txcheck

    for name in ("decode_tx", "check_envelope", "check_signature"):
        assert getattr(inbound, name) is getattr(txcheck, name) is getattr(admission, name)


def test_the_policies_are_data():
    assert RPC.relay and not GOSSIP.relay and dict(RPC.penalties) == {}
    assert dict(GOSSIP.penalties) == {"malformed": 1, "too_large": 1, "WrongChainId": PENALTY_GARBAGE,
                                      "BadSignature": PENALTY_GARBAGE}


# -- gossip batches -------------------------------------------------------------------------------


def test_a_mixed_batch_gives_exactly_the_expected_penalties_and_admissions():
    cases, verdicts = _cases()
    rig = Rig(ScriptedRisk(verdicts))
    names = ["good", "malformed", "forged", "risky", "review", "foreign", "oversize", "fee", "nonce", "balance"]
    outcomes = rig.gossip(*(cases[n][0] for n in names), 7, peer="mallory")  # 7: not even bytes
    assert [o.kind for o in outcomes] == [cases[n][1] for n in names] + ["malformed"]
    assert [(peer, points) for peer, _, points in rig.net.penalties] == [
        ("mallory", 1), ("mallory", PENALTY_GARBAGE), ("mallory", PENALTY_GARBAGE), ("mallory", 1), ("mallory", 1)]
    assert "BadSignature" in rig.net.penalties[1][1] and "WrongChainId" in rig.net.penalties[2][1]
    admitted = [o.tx_hash for o in outcomes if o.admitted]
    assert [s.hash for s, _ in rig.pool.entries()] == admitted == rig.inserted and len(admitted) == 2
    assert list(rig.flagged) == [admitted[1]] and rig.relayed == []
    # one scoring pass, over exactly the candidates that passed every check before it
    assert rig.risk.passes == [[outcomes[i].tx_hash for i in (0, 3, 4)]]


def test_a_senders_run_in_one_batch_is_checked_as_pending():
    rig = Rig()
    run = [transfer(ALICE, n, SINK, ONE_QNX) for n in range(4)]
    outcomes = rig.gossip(*(stx.encode() for stx in run), run[1].encode())
    assert [o.kind for o in outcomes] == ["admitted"] * 4 + ["AlreadyKnown"]
    assert rig.pool.pending_nonce(ALICE.address) == 4 and len(rig.risk.passes) == 1


def test_a_batch_overdrawn_by_a_senders_run_refuses_the_overdraft():
    rig = Rig()
    run = [transfer(ALICE, n, SINK, 400 * ONE_QNX) for n in range(3)]
    outcomes = rig.gossip(*(stx.encode() for stx in run))
    assert [o.kind for o in outcomes] == ["admitted", "admitted", "insufficient_balance"]


def test_when_the_hook_rejects_a_runs_head_its_successors_leave_no_trace_either():
    run = [transfer(ALICE, n, SINK, ONE_QNX) for n in range(3)]
    rig = Rig(ScriptedRisk({run[0].hash: "reject", run[1].hash: "review"}))
    outcomes = rig.gossip(*(stx.encode() for stx in run), transfer(BOB, 0, SINK, 1).encode())
    assert [o.kind for o in outcomes] == ["RiskRejected", "bad_nonce", "bad_nonce", "admitted"]
    assert rig.pool.pending_nonce(ALICE.address) is None and rig.flagged == {} and rig.net.penalties == []
    assert len(rig.pool) == 1


def test_a_bad_frame_costs_the_peer_and_admits_nothing():
    rig = Rig()
    assert rig.admission.on_gossip_batch("junk", b"\x01\x02") == []
    assert [(p, n) for p, _, n in rig.net.penalties] == [("junk", PENALTY_GARBAGE)] and len(rig.pool) == 0


def test_a_full_pool_refuses_gossip_cheaply_and_without_penalty():
    rig = Rig(max_txs=1)
    rig.admission.submit(transfer(ALICE, 0, SINK, 1, fee=5 * FEE).encode())
    (outcome,) = rig.gossip(transfer(BOB, 0, SINK, 1).encode())
    assert isinstance(outcome.refusal, MempoolFull) and rig.risk.passes == [[rig.inserted[0]]]
    assert rig.net.penalties == []
