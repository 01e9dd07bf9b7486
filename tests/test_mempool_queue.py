"""The mempool's queued (future-nonce) area, replacement by fee, and the refusal before decoding (issue 12).

The rules are in node/mempool.py's docstring; nothing here is timed.
"""

from __future__ import annotations

from unittest import mock

import pytest

import node.admission
from node.admission import Admission
from node.config import MempoolSection
from node.errors import AccountLimitReached, AlreadyKnown, MempoolFull, TxRejected
from node.mempool import Mempool
from node.risk.errors import RiskRejected
from state.app import Application
from state.codec import encode
from state.genesis import Params
from state.kv import MemoryKV
from state.payloads import TxKind
from state.testing import ONE_QNX, Chain, dev_key, make_genesis, transfer
from tests.test_admission import ScriptedRisk

ALICE, BOB, CAROL, DAVE = (dev_key(f"queue-{n}") for n in ("alice", "bob", "carol", "dave"))
VALIDATOR = dev_key("queue-validator")
SINK = dev_key("queue-sink").address
FEE = Params().min_fee(TxKind.TRANSFER)


class Rig:
    def __init__(self, risk=None, **limits) -> None:
        self.app = Application(MemoryKV(), make_genesis(validators=[VALIDATOR], funded=[ALICE, BOB, CAROL, DAVE],
                                                        balance=10 * ONE_QNX))
        self.pool = Mempool(self.app, MempoolSection(**limits))
        self.relayed: list[bytes] = []
        self.flagged: dict[bytes, dict] = {}
        self.admission = Admission(self.app, self.pool, risk, flagged=self.flagged, relay=self.relayed.append)
        self.chain = Chain(self.app, VALIDATOR)

    def submit(self, stx) -> bytes:
        return self.admission.submit(stx.encode())

    def gossip(self, *stxs):
        return self.admission.on_gossip_batch("peer", encode([1, [s.encode() for s in stxs]]))

    def commit(self, txs) -> None:
        """Commit a block of ``txs`` (from anywhere: another node's pool) and update the pool."""
        block, _ = self.chain.block(txs)
        self.pool.update(block)

    def pending(self) -> list[tuple[bytes, int]]:
        return [(s.tx.sender, s.tx.nonce) for s in self.pool.reap(10_000, 10**9)]

    def totals_agree(self) -> None:
        """Counts and byte totals are the sums over what the pool lists."""
        pending = list(self.pool.entries())
        queued = list(self.pool.queued_entries())
        assert len(self.pool) == len(pending) and self.pool.size_bytes == sum(n for _, n in pending)
        assert self.pool.queued_count == len(queued) and self.pool.queued_bytes == sum(n for _, n in queued)


def run(key, nonces, **kw):
    return {n: transfer(key, n, SINK, ONE_QNX // 100 + n, **kw) for n in nonces}


# -- gaps filled out of order ----------------------------------------------------------------------


def test_nonces_arriving_3_1_2_0_end_up_pending_in_order():
    rig = Rig()
    txs = run(ALICE, range(4))
    for n in (3, 1, 2):
        rig.submit(txs[n])
        assert len(rig.pool) == 0 and rig.pool.pending_nonce(ALICE.address) is None
    assert rig.pool.queued_for(ALICE.address) == 3 and rig.relayed == []  # queued: never relayed by us
    rig.submit(txs[0])
    assert rig.pending() == [(ALICE.address, n) for n in range(4)]
    assert rig.pool.queued_count == 0 and rig.pool.pending_nonce(ALICE.address) == 4
    assert rig.relayed == [txs[n].encode() for n in range(4)]  # promoted ones relayed once pending
    rig.totals_agree()


def test_a_gossip_batch_out_of_order_is_all_admitted_and_not_relayed_again():
    rig = Rig()
    txs = run(ALICE, range(4))
    outcomes = rig.gossip(txs[3], txs[1], txs[2], txs[0], transfer(BOB, 0, SINK, 1))
    assert [o.kind for o in outcomes] == ["admitted"] * 5
    assert sorted(rig.pending()) == sorted([(ALICE.address, n) for n in range(4)] + [(BOB.address, 0)])
    assert rig.relayed == []  # gossipsub relayed the frame; the promoted ones came in it
    rig.totals_agree()


def test_a_gossip_promotion_of_an_rpc_queued_tx_relays_it():
    rig = Rig()
    txs = run(ALICE, range(2))
    rig.submit(txs[1])
    assert rig.relayed == []
    (outcome,) = rig.gossip(txs[0])
    assert outcome.admitted and rig.relayed == [txs[1].encode()]


def test_a_queued_transaction_is_risk_scored_before_it_is_stored():
    later, reviewed = transfer(ALICE, 1, SINK, 1), transfer(ALICE, 2, SINK, 2)
    risk = ScriptedRisk({later.hash: "reject", reviewed.hash: "review"})
    rig = Rig(risk)
    with pytest.raises(RiskRejected):
        rig.submit(later)
    assert rig.pool.queued_count == 0 and risk.passes == [[later.hash]]
    rig.submit(reviewed)
    assert rig.pool.get_queued(reviewed.hash) is not None and reviewed.hash in rig.flagged


def test_queued_transactions_are_never_reaped():
    rig = Rig()
    for stx in run(ALICE, (1, 2, 5)).values():
        rig.submit(stx)
    assert rig.pool.reap(100, 10**9) == [] and len(rig.pool) == 0 and rig.pool.queued_count == 3
    rig.submit(transfer(BOB, 0, SINK, 1))
    assert rig.pending() == [(BOB.address, 0)]


def test_a_far_future_nonce_is_still_refused():
    rig = Rig(max_per_account=4)
    with pytest.raises(TxRejected, match="skips ahead") as info:
        rig.submit(transfer(ALICE, 4, SINK, 1))  # its run could never reach nonce 4 before a commit
    assert info.value.data["reason"] == "bad_nonce" and rig.pool.queued_count == 0
    rig.submit(transfer(ALICE, 3, SINK, 1))
    assert rig.pool.queued_count == 1


# -- promotion after a commit ------------------------------------------------------------------------


def test_a_commit_promotes_what_it_unblocks():
    rig = Rig()
    ours = run(ALICE, (1, 2))
    for stx in ours.values():
        rig.submit(stx)
    rig.relayed.clear()
    rig.commit([transfer(ALICE, 0, SINK, 7)])  # nonce 0 came from another node's pool
    assert rig.pending() == [(ALICE.address, 1), (ALICE.address, 2)] and rig.pool.queued_count == 0
    assert [s.hash for s in rig.pool.take_promoted()] == [ours[1].hash, ours[2].hash]  # the runtime relays them
    rig.totals_agree()


def test_a_commit_drops_queued_nonces_it_made_stale():
    rig = Rig()
    mine = run(ALICE, (1, 3))
    for stx in mine.values():
        rig.submit(stx)
    rig.commit([transfer(ALICE, 0, SINK, 5), transfer(ALICE, 1, SINK, 6)])  # a different nonce 1 won
    assert rig.pool.get_queued(mine[1].hash) is None and rig.pool.get_queued(mine[3].hash) is not None
    assert len(rig.pool) == 0 and rig.pool.queued_count == 1
    rig.totals_agree()


def test_promotion_rechecks_the_balance_against_the_run_before_it():
    rig = Rig()
    late = transfer(ALICE, 1, SINK, 6 * ONE_QNX)
    rig.submit(late)  # fits the committed balance alone
    rig.submit(transfer(ALICE, 0, SINK, 6 * ONE_QNX))  # after this one it no longer does
    assert rig.pending() == [(ALICE.address, 0)]
    assert rig.pool.queued_count == 0 and late.hash not in rig.pool and rig.pool.get_queued(late.hash) is None
    rig.totals_agree()


def test_promotion_evicts_nobody_and_waits_for_room():
    rig = Rig(max_txs=2)
    rig.submit(transfer(BOB, 0, SINK, 1))
    rig.submit(transfer(ALICE, 1, SINK, 1))
    rig.submit(transfer(ALICE, 0, SINK, 1))  # the pool is full now: nonce 1 stays queued
    assert len(rig.pool) == 2 and rig.pool.queued_for(ALICE.address) == 1
    rig.commit(rig.pool.reap(1, 10**9))  # frees a slot
    assert rig.pool.queued_count == 0 and len(rig.pool) == 2
    rig.totals_agree()


# -- replacement ------------------------------------------------------------------------------------


def test_replacing_a_pending_nonce_needs_the_minimum_bump():
    rig = Rig(replace_bump_percent=10)
    txs = run(ALICE, range(3), fee=FEE * 10)
    for stx in txs.values():
        rig.submit(stx)
    for fee in (FEE * 9, FEE * 10, FEE * 10 + FEE * 10 * 9 // 100):
        with pytest.raises(TxRejected, match="at least 10% more") as info:
            rig.submit(transfer(ALICE, 1, SINK, 42, fee=fee))
        assert info.value.data["reason"] == "replacement_underpriced" and info.value.code == -32010
    assert rig.pending() == [(ALICE.address, n) for n in range(3)] and txs[1].hash in rig.pool
    bumped = transfer(ALICE, 1, SINK, 42, fee=FEE * 11)
    rig.submit(bumped)
    assert txs[1].hash not in rig.pool and bumped.hash in rig.pool and len(rig.pool) == 3
    assert [s.hash for s in rig.pool.reap(10, 10**9)] == [txs[0].hash, bumped.hash, txs[2].hash]
    assert rig.pool.pending_nonce(ALICE.address) == 3
    rig.totals_agree()
    with pytest.raises(AlreadyKnown):
        rig.submit(bumped)


def test_a_replacement_must_keep_the_run_within_the_balance():
    rig = Rig()
    rig.submit(transfer(ALICE, 0, SINK, 4 * ONE_QNX))
    rig.submit(transfer(ALICE, 1, SINK, 4 * ONE_QNX))
    with pytest.raises(TxRejected, match="insufficient"):
        rig.submit(transfer(ALICE, 0, SINK, 7 * ONE_QNX, fee=FEE * 2))
    rig.submit(transfer(ALICE, 0, SINK, 5 * ONE_QNX, fee=FEE * 2))  # its own outflow is what leaves
    assert len(rig.pool) == 2
    rig.totals_agree()


def test_replacing_a_tail_keeps_the_eviction_index_right():
    rig = Rig(max_txs=2)
    rig.submit(transfer(ALICE, 0, SINK, 1, fee=FEE))
    rig.submit(transfer(BOB, 0, SINK, 1, fee=FEE * 3))
    rig.submit(transfer(ALICE, 0, SINK, 2, fee=FEE * 5))  # ALICE's tail now pays 5
    with pytest.raises(MempoolFull):
        rig.submit(transfer(CAROL, 0, SINK, 1, fee=FEE * 2))  # cheaper than both tails
    rig.submit(transfer(CAROL, 0, SINK, 1, fee=FEE * 4))  # evicts BOB's (3), not ALICE's replaced one
    assert sorted(rig.pending()) == sorted([(ALICE.address, 0), (CAROL.address, 0)])
    rig.totals_agree()


def test_replacing_a_queued_nonce():
    rig = Rig()
    old = transfer(ALICE, 2, SINK, 1, fee=FEE * 2)
    rig.submit(old)
    with pytest.raises(TxRejected, match="replacement"):
        rig.submit(transfer(ALICE, 2, SINK, 2, fee=FEE * 2))
    new = transfer(ALICE, 2, SINK, 3, fee=FEE * 3)
    rig.submit(new)
    assert rig.pool.get_queued(old.hash) is None and rig.pool.get_queued(new.hash) is not None
    assert rig.pool.queued_count == 1 and rig.pool.queued_bytes == new.size
    rig.submit(transfer(ALICE, 0, SINK, 1))
    rig.submit(transfer(ALICE, 1, SINK, 1))
    assert [s.hash for s in rig.pool.reap(10, 10**9)][-1] == new.hash and rig.pool.queued_count == 0


# -- limits and eviction -----------------------------------------------------------------------------


def test_the_per_account_queued_limit():
    rig = Rig(max_queued_per_account=2)
    for stx in run(ALICE, (1, 2)).values():
        rig.submit(stx)
    with pytest.raises(AccountLimitReached, match="2 queued") as info:
        rig.submit(transfer(ALICE, 3, SINK, 1))
    assert info.value.code == -32002 and rig.pool.queued_count == 2
    rig.submit(transfer(BOB, 1, SINK, 1))  # another sender has its own
    assert rig.pool.queued_count == 3


def test_a_full_queued_area_evicts_the_cheapest_then_the_oldest():
    rig = Rig(max_queued=2)
    a = transfer(ALICE, 1, SINK, 1, fee=FEE * 2)
    b = transfer(BOB, 1, SINK, 1, fee=FEE * 2)
    rig.submit(a)
    rig.submit(b)
    with pytest.raises(MempoolFull, match="queued area is full") as info:
        rig.submit(transfer(CAROL, 1, SINK, 1, fee=FEE * 2))  # not above the lowest: refused
    assert info.value.code == -32001
    c = transfer(CAROL, 1, SINK, 1, fee=FEE * 3)
    rig.submit(c)  # equal prices: the older (a) goes
    assert rig.pool.get_queued(a.hash) is None and rig.pool.get_queued(b.hash) is not None
    d = transfer(DAVE, 1, SINK, 1, fee=FEE * 4)
    rig.submit(d)  # the cheapest (b at 2) goes before c at 3
    assert {s.hash for s, _ in rig.pool.queued_entries()} == {c.hash, d.hash}
    rig.totals_agree()


def test_a_queued_tx_not_promoted_in_time_ages_out():
    rig = Rig(queued_max_blocks=2)
    old = transfer(ALICE, 1, SINK, 1)
    rig.submit(old)
    rig.commit([])
    assert rig.pool.get_queued(old.hash) is not None
    young = transfer(BOB, 1, SINK, 1)
    rig.submit(young)
    rig.commit([])
    assert rig.pool.get_queued(old.hash) is None and rig.pool.get_queued(young.hash) is not None
    rig.commit([])
    assert rig.pool.queued_count == 0
    rig.totals_agree()


def test_a_full_pending_area_does_not_refuse_a_future_nonce():
    rig = Rig(max_txs=1)
    rig.submit(transfer(ALICE, 0, SINK, 1, fee=FEE * 5))
    with pytest.raises(MempoolFull):
        rig.submit(transfer(BOB, 0, SINK, 1))
    rig.submit(transfer(BOB, 1, SINK, 1))  # queued: the pending caps are not its business
    assert rig.pool.queued_count == 1


# -- refusal before decoding -------------------------------------------------------------------------


def _saturated() -> Rig:
    rig = Rig(max_txs=1, max_queued=1)
    rig.submit(transfer(ALICE, 0, SINK, 1))
    rig.submit(transfer(ALICE, 2, SINK, 1))
    return rig


def test_a_saturated_pool_refuses_before_decoding_or_verifying():
    rig = _saturated()
    rich = transfer(BOB, 0, SINK, 1, fee=FEE * 100)
    with mock.patch.object(node.admission, "decode_tx", side_effect=AssertionError("decoded")) as dec, \
            mock.patch.object(node.admission, "check_signature", side_effect=AssertionError("verified")) as ver:
        with pytest.raises(MempoolFull, match="refused before decoding") as info:
            rig.submit(rich)
        assert info.value.code == -32001
        with pytest.raises(MempoolFull):
            rig.admission.submit(b"\xc1 not even msgpack")  # garbage too: the length alone decided
        (outcome,) = rig.gossip(rich)
        assert outcome.kind == "MempoolFull" and outcome.tx_hash is None
    assert dec.call_count == 0 and ver.call_count == 0
    assert len(rig.pool) == 1 and rig.pool.queued_count == 1


def test_with_queued_room_a_full_pool_still_decodes_to_evict_by_fee():
    rig = Rig(max_txs=1, max_queued=1)
    rig.submit(transfer(ALICE, 0, SINK, 1))
    rich = transfer(BOB, 0, SINK, 1, fee=FEE * 100)
    with mock.patch.object(node.admission, "decode_tx", wraps=node.admission.decode_tx) as dec:
        rig.submit(rich)
    assert dec.call_count == 1 and rig.pending() == [(BOB.address, 0)]


def test_a_transaction_larger_than_the_byte_cap_is_refused_before_decoding():
    rig = Rig(max_bytes=100)
    with mock.patch.object(node.admission, "decode_tx", side_effect=AssertionError("decoded")) as dec:
        with pytest.raises(MempoolFull, match="can never fit"):
            rig.submit(transfer(ALICE, 0, SINK, 1))
    assert dec.call_count == 0
