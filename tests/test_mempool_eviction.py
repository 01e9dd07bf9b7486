"""Mempool spam (issue 7, finding 7): a full pool of minimum-fee transactions makes room for a better payer.

Eviction takes only senders' last pending nonces (never a gap), only when the
newcomer pays strictly more per gas, at most MAX_EVICTIONS per admission; the
RPC view of the pool is arrival order without sorting it.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import node.mempool as mempool_module
from node.config import MempoolSection
from node.admission import Admission
from node.errors import AlreadyKnown, MempoolFull, MempoolError, TxRejected
from node.mempool import MAX_EVICTIONS, Mempool
from state.app import Application
from state.genesis import Params
from state.kv import MemoryKV
from state.payloads import TokenCreate, TxKind
from state.testing import ONE_QNX, dev_key, make_genesis, signed, token_create, transfer

VALIDATOR = dev_key("validator-0")
SENDERS = [dev_key(f"spam-{i}") for i in range(12)]
RICH = dev_key("rich")
SINK = dev_key("sink").address
FEE = Params().min_fee(TxKind.TRANSFER)
APP = Application(MemoryKV(), make_genesis(validators=[VALIDATOR], funded=SENDERS + [RICH], balance=10 * ONE_QNX))


def _pool(**limits) -> Mempool:
    return Mempool(APP, MempoolSection(**limits))


def _add(pool: Mempool, stx) -> bytes:
    """Check (pure), then insert: the mempool's half of admission."""
    return pool.insert(pool.check(stx, len(stx.encode())))


def _runs(pool: Mempool) -> dict[bytes, list[int]]:
    out: dict[bytes, list[int]] = {}
    for stx, _ in pool.entries():
        out.setdefault(stx.tx.sender, []).append(stx.tx.nonce)
    return out


def _assert_gap_free(pool: Mempool) -> None:
    for sender, nonces in _runs(pool).items():
        base = APP.account(sender).nonce
        assert sorted(nonces) == list(range(base, base + len(nonces))), "a pending run has a gap"
        assert pool.pending_nonce(sender) == base + len(nonces)


def _filled(max_txs: int = 20) -> tuple[Mempool, list]:
    """A pool full of minimum-fee transfers: 10 senders, 2 nonces each, in arrival order."""
    pool = _pool(max_txs=max_txs)
    order = []
    for nonce in range(2):
        for key in SENDERS[:10]:
            stx = transfer(key, nonce, SINK, 1)
            _add(pool, stx)
            order.append(stx)
    assert len(pool) == max_txs
    return pool, order


def test_a_full_pool_of_minimum_fees_admits_a_higher_fee_by_evicting_the_newest_cheapest_tail():
    pool, order = _filled()
    before = len(pool), pool.size_bytes
    with pytest.raises(MempoolFull, match="not above the lowest pending"):
        _add(pool, transfer(SENDERS[10], 0, SINK, 1, fee=FEE))  # equal fee: refused, nothing changes
    assert (len(pool), pool.size_bytes) == before and [s for s, _ in pool.entries()] == order

    rich = transfer(RICH, 0, SINK, 1, fee=1000 * FEE)
    _add(pool, rich)
    assert len(pool) == 20 and rich.hash in pool
    # every tail paid the same; the most recent one (sender 9's nonce 1) went, its nonce 0 stayed
    assert order[-1].hash not in pool and order[9].hash in pool
    assert all(s.hash in pool for s in order[:-1])
    _assert_gap_free(pool)
    # one more: the next newest tail goes, never a head whose successor is pending
    _add(pool, transfer(RICH, 1, SINK, 1, fee=1000 * FEE))
    assert order[-2].hash not in pool and order[8].hash in pool
    _assert_gap_free(pool)
    assert pool.reap(100, 10**9)[0].hash == rich.hash  # and it is reaped first


def test_the_lowest_fee_per_gas_goes_first_and_a_sender_never_evicts_its_own_predecessor():
    pool = _pool(max_txs=4)
    _add(pool, transfer(SENDERS[0], 0, SINK, 1, fee=5 * FEE))
    head = transfer(SENDERS[1], 0, SINK, 1, fee=2 * FEE)
    tail = transfer(SENDERS[1], 1, SINK, 1, fee=2 * FEE)
    _add(pool, head)
    _add(pool, tail)
    # per gas, not per transaction: a token creation at its minimum pays 2,550x a transfer's fee but only
    # the minimum per gas, so it is the cheapest here
    token = token_create(SENDERS[2], 0, "SPAM", 1)
    assert token.tx.fee > 1000 * FEE
    _add(pool, token)
    _add(pool, transfer(SENDERS[3], 0, SINK, 1, fee=3 * FEE))
    assert token.hash not in pool and len(pool) == 4
    # SENDERS[3]'s own tail (3x) is cheaper than its next nonce, but never evicted for it: SENDERS[1]'s
    # tail goes, then its head, never the head before the tail
    _add(pool, transfer(SENDERS[3], 1, SINK, 1, fee=4 * FEE))
    assert tail.hash not in pool and head.hash in pool
    _assert_gap_free(pool)
    _add(pool, transfer(SENDERS[3], 2, SINK, 1, fee=4 * FEE))
    assert head.hash not in pool and pool.pending_nonce(SENDERS[1].address) is None
    assert pool.pending_nonce(SENDERS[3].address) == 3
    _assert_gap_free(pool)


def _big(fee: int):
    """A token creation with a long multi-byte name: a few transfers' worth of bytes."""
    return signed(RICH, 0, TokenCreate("BIG", "\N{GRINNING FACE}" * 64, 6, 1), fee=fee)


def test_eviction_by_bytes_is_bounded_per_admission():
    small = [transfer(k, 0, SINK, 1) for k in SENDERS[:10]]
    size = len(small[0].encode())
    pool = _pool(max_bytes=10 * size)
    for stx in small:
        _add(pool, stx)
    big = _big(10**6 * FEE)
    need = -(-len(big.encode()) // size)  # how many small ones its bytes displace
    assert 1 < need <= 10
    _add(pool, big)
    assert big.hash in pool and pool.size_bytes <= 10 * size
    assert sum(s.hash in pool for s in small) == 10 - need
    assert MAX_EVICTIONS >= need
    # a newcomer larger than the whole pool is refused outright, nothing evicted
    tiny = _pool(max_bytes=size)
    _add(tiny, small[0])
    with pytest.raises(MempoolFull, match="can never fit"):
        _add(tiny, big)
    assert small[0].hash in tiny


def test_more_than_max_evictions_is_refused_and_changes_nothing(monkeypatch):
    monkeypatch.setattr(mempool_module, "MAX_EVICTIONS", 2)
    small = [transfer(k, 0, SINK, 1) for k in SENDERS[:10]]
    size = len(small[0].encode())
    pool = _pool(max_bytes=10 * size)
    for stx in small:
        _add(pool, stx)
    big = _big(10**6 * FEE)
    with pytest.raises(MempoolFull, match="more than 2"):
        _add(pool, big)
    assert all(s.hash in pool for s in small) and len(pool) == 10
    _add(pool, transfer(RICH, 0, SINK, 1, fee=2 * FEE))  # the index survived the aborted plan
    assert len(pool) == 10 and small[-1].hash not in pool


def test_a_full_pool_refuses_a_cheap_newcomer_before_checking_its_signature():
    pool, _ = _filled()
    forged = transfer(SENDERS[10], 0, SINK, 1)
    forged = type(forged)(forged.tx, bytes(64))  # garbage signature
    with pytest.raises(MempoolFull):
        pool.precheck(forged, len(forged.encode()))  # admission runs it before the signature step
    admission = Admission(APP, pool, None, flagged={}, relay=lambda raw: None)
    with pytest.raises(MempoolFull):
        admission.submit(forged.encode())


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 11), st.integers(1, 40)), min_size=1, max_size=80), st.integers(1, 12))
def test_random_admissions_under_pressure_never_leave_a_gap(steps, max_txs):
    pool = _pool(max_txs=max_txs, max_per_account=50)
    next_nonce = {k.address: 0 for k in SENDERS}
    for who, multiple in steps:
        key = SENDERS[who]
        nonce = pool.pending_nonce(key.address)
        nonce = APP.account(key.address).nonce if nonce is None else nonce
        stx = transfer(key, nonce, SINK, 1, fee=multiple * FEE)
        before = {s.hash: s for s, _ in pool.entries()}
        try:
            _add(pool, stx)
        except MempoolError:
            assert {s.hash for s, _ in pool.entries()} == set(before)  # a refusal changes nothing
            continue
        gone = [s for h, s in before.items() if h not in pool]
        # only strictly cheaper transactions of other senders were evicted, and only as many as needed
        assert all(s.tx.fee < stx.tx.fee and s.tx.sender != key.address for s in gone)
        assert len(gone) == max(0, len(before) + 1 - max_txs)
        assert len(pool) <= max_txs
        _assert_gap_free(pool)
        next_nonce[key.address] = nonce + 1
    # reaping still yields executable runs in nonce order per sender
    seen: dict[bytes, int] = {}
    for stx in pool.reap(1000, 10**9):
        assert stx.tx.nonce == seen.get(stx.tx.sender, APP.account(stx.tx.sender).nonce)
        seen[stx.tx.sender] = stx.tx.nonce + 1


def test_get_mempool_lists_in_arrival_order_without_sorting_the_pool(monkeypatch):
    from node.rpc import build_methods
    from tests.rpc_fixtures import rpc_context

    pool, order = _filled()
    rich = transfer(RICH, 0, SINK, 1, fee=1000 * FEE)
    _add(pool, rich)  # evicts order[-1]
    pool.remove_many([order[3].hash])  # a committed/refused one leaves; sender 3's nonce 1 goes with it
    expected = [s for s in order[:-1] if s.tx.sender != SENDERS[3].address] + [rich]

    def no_sort(*args, **kwargs):
        raise AssertionError("the mempool view must not sort the whole pool")

    monkeypatch.setattr(mempool_module, "sorted", no_sort, raising=False)
    assert [s.hash for s, _ in pool.entries()] == [s.hash for s in expected]
    assert [s.hash for s, _ in pool.entries(5)] == [s.hash for s in expected[:5]]
    view = build_methods(rpc_context(APP, mempool=pool))["qenex_getMempool"](3)
    assert view["size"] == len(expected) and [t["hash"] for t in view["txs"]] == ["0x" + s.hash.hex() for s in expected[:3]]


def test_check_is_pure_and_only_insert_evicts() -> None:
    """Review finding: a transaction the risk hook refuses had already evicted others, for free
    (it is never included, so the same nonce could be reused to empty the pool).  Eviction now happens
    only in insert, which admission calls after the risk hook (tests/test_admission.py)."""
    pool = _pool(max_txs=len(SENDERS))
    for key in SENDERS:
        _add(pool, transfer(key, 0, SINK, 1, chain_id=APP.chain_id))
    before = [stx.hash for stx, _ in pool.entries()]
    for i in range(5):
        rich = transfer(RICH, 0, SINK, 2 + i, fee=10 * FEE, chain_id=APP.chain_id)
        pool.precheck(rich, len(rich.encode()))
        candidate = pool.check(rich, len(rich.encode()))
        assert pool.needs_room(candidate.size)
    assert [stx.hash for stx, _ in pool.entries()] == before and pool.pending_nonce(RICH.address) is None
    pool.insert(candidate)
    assert len(pool) == len(SENDERS) and rich.hash in pool and before[-1] not in pool


def test_a_stale_candidate_is_checked_again_at_insert() -> None:
    """insert trusts check's verdict only while what it read holds."""
    pool = _pool()
    first, second = transfer(RICH, 0, SINK, 1), transfer(RICH, 1, SINK, 1)
    draft = pool.draft()
    c0, c1 = pool.check(first, len(first.encode()), draft), pool.check(second, len(second.encode()), draft)
    with pytest.raises(TxRejected, match="nonce 1 is not the next nonce 0 .*skips ahead"):
        pool.insert(c1)  # its predecessor never went in
    assert len(pool) == 0
    pool.insert(c0)
    pool.insert(c1)
    assert pool.pending_nonce(RICH.address) == 2
    with pytest.raises(AlreadyKnown):
        pool.insert(c1)
    assert len(pool) == 2
