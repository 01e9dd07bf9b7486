"""Mempool checks, ordering, limits and recheck, on the real application (the whole admission
pipeline, risk hook included, is tests/test_admission.py)."""

from __future__ import annotations

import pytest

from node.admission import Admission
from node.config import MempoolSection
from node.errors import AccountLimitReached, AlreadyKnown, MempoolFull, TxRejected
from node.mempool import Mempool
from state.app import Application
from state.genesis import Params
from state.kv import MemoryKV
from state.payloads import TxKind
from state.testing import ONE_QNX, TEST_GENESIS_TIME_MS, dev_key, make_genesis, transfer

ALICE, BOB, CAROL = dev_key("alice"), dev_key("bob"), dev_key("carol")
VALIDATOR = dev_key("validator-0")
FEE = Params().min_fee(TxKind.TRANSFER)


def _setup(**limits):
    app = Application(MemoryKV(), make_genesis(validators=[VALIDATOR], funded=[ALICE, BOB], balance=10 * ONE_QNX))
    return app, Mempool(app, MempoolSection(**limits))


def _add(pool, stx):
    """The mempool's own contract: check (pure), then insert."""
    return pool.insert(pool.check(stx, len(stx.encode())))


def _admit(app, pool, stx):
    """Through the admission pipeline (stateless checks first), without a risk hook."""
    return Admission(app, pool, None, flagged={}, relay=lambda raw: None).submit(stx.encode())


def test_admits_a_sequential_run_and_reaps_it_in_nonce_order():
    app, pool = _setup()
    for nonce in range(3):
        _add(pool, transfer(ALICE, nonce, CAROL.address, 1))
    assert len(pool) == 3 and pool.pending_nonce(ALICE.address) == 3
    assert [s.tx.nonce for s in pool.reap(10, 10**6)] == [0, 1, 2]


def test_reap_orders_by_fee_across_senders_but_never_breaks_a_nonce_run():
    app, pool = _setup()
    _add(pool, transfer(ALICE, 0, CAROL.address, 1, fee=FEE))
    _add(pool, transfer(ALICE, 1, CAROL.address, 1, fee=9 * FEE))
    _add(pool, transfer(BOB, 0, CAROL.address, 1, fee=5 * FEE))
    order = [(s.tx.sender, s.tx.nonce) for s in pool.reap(10, 10**6)]
    assert order == [(BOB.address, 0), (ALICE.address, 0), (ALICE.address, 1)]
    assert len(pool.reap(2, 10**6)) == 2


@pytest.mark.parametrize(
    "make, fragment",
    [
        (lambda: transfer(ALICE, 5, CAROL.address, 1), "skips ahead"),
        (lambda: transfer(ALICE, 0, CAROL.address, 1, chain_id="other"), "chain"),
        (lambda: transfer(ALICE, 0, CAROL.address, 11 * ONE_QNX), "insufficient"),
        (lambda: transfer(ALICE, 0, CAROL.address, 1, fee=1), "fee"),
        (lambda: transfer(CAROL, 0, ALICE.address, 1), "insufficient"),
    ],
)
def test_rejections_are_specific_and_leave_the_pool_unchanged(make, fragment):
    app, pool = _setup()
    with pytest.raises(TxRejected, match=fragment):
        _admit(app, pool, make())
    assert len(pool) == 0 and pool.size_bytes == 0 and pool.pending_nonce(ALICE.address) is None


def test_bad_signature_is_rejected():
    from dataclasses import replace

    app, pool = _setup()
    stx = transfer(ALICE, 0, CAROL.address, 1)
    forged = replace(stx, signature=bytes(64))
    with pytest.raises(TxRejected, match="signature"):
        _admit(app, pool, forged)
    assert len(pool) == 0


def test_pending_spend_counts_against_the_balance():
    app, pool = _setup()
    _add(pool, transfer(ALICE, 0, CAROL.address, 6 * ONE_QNX))
    with pytest.raises(TxRejected, match="insufficient"):
        _add(pool, transfer(ALICE, 1, CAROL.address, 6 * ONE_QNX))
    assert len(pool) == 1


def test_duplicates_and_limits():
    app, pool = _setup(max_per_account=2, max_txs=3)
    first = transfer(ALICE, 0, CAROL.address, 1)
    _add(pool, first)
    with pytest.raises(AlreadyKnown):
        _add(pool, first)
    _add(pool, transfer(ALICE, 1, CAROL.address, 1))
    with pytest.raises(AccountLimitReached):
        _add(pool, transfer(ALICE, 2, CAROL.address, 1))
    _add(pool, transfer(BOB, 0, CAROL.address, 1))
    with pytest.raises(MempoolFull):
        _add(pool, transfer(BOB, 1, CAROL.address, 1))


def test_update_after_a_block_drops_committed_and_rechecks_the_rest():
    app, pool = _setup()
    txs = [transfer(ALICE, n, CAROL.address, 1) for n in range(3)]
    for stx in txs:
        _add(pool, stx)
    block, result = app.build_block(txs[:2], proposer=VALIDATOR.address, time_ms=TEST_GENESIS_TIME_MS + 1,
                                    last_commit=b"")
    app.commit_block(block, result, b"cert")
    pool.update(block)
    assert [s.tx.nonce for s in pool.reap(10, 10**6)] == [2]
    assert pool.pending_nonce(ALICE.address) == 3


def test_recheck_drops_a_pending_tx_made_unexecutable_by_a_competing_commit():
    app, pool = _setup()
    _add(pool, transfer(ALICE, 0, CAROL.address, 1))
    # another node's mempool held a different nonce-0 transfer, and it won
    other = transfer(ALICE, 0, BOB.address, 2)
    block, result = app.build_block([other], proposer=VALIDATOR.address, time_ms=TEST_GENESIS_TIME_MS + 1,
                                    last_commit=b"")
    app.commit_block(block, result, b"cert")
    assert pool.update(block) == 1
    assert len(pool) == 0 and pool.size_bytes == 0
