"""The shared decoded-transaction cache (state.transactions.DECODED): the same canonical bytes give the
same object whichever path decodes them (gossip check, admission, a block), and nothing else does."""

from __future__ import annotations

import msgpack
import pytest

from state.app import Application
from state.blocks import Block
from state.kv import MemoryKV
from state.codec import decode, encode, pack_decoded
from state.errors import DecodeError, MalformedBlock, StateError
from state.payloads import ContractCall
from state.testing import dev_key, make_genesis, signed, transfer
from state.transactions import DECODED, SignedTransaction

ALICE, BOB = dev_key("cache-alice"), dev_key("cache-bob")


@pytest.fixture(autouse=True)
def _empty_cache():
    DECODED.clear()
    yield
    DECODED.clear()


def _block(txs: tuple[SignedTransaction, ...]) -> Block:
    """A block of ``txs`` as a proposer builds it (valid transfers from a funded ALICE)."""
    app = Application(MemoryKV(), make_genesis(funded=[ALICE]))
    block, _ = app.build_block(list(txs), proposer=dev_key("validator-0").address, time_ms=app.last_time_ms + 1000,
                               last_commit=b"")
    assert len(block.txs) == len(txs)
    return block


def test_the_same_bytes_decode_to_one_shared_object_on_every_path():
    stx = transfer(ALICE, 0, BOB.address, 5)
    raw = stx.encode()
    first = SignedTransaction.decode(raw)
    assert first == stx and SignedTransaction.decode(bytearray(raw)) is first
    block = _block((stx, transfer(ALICE, 1, BOB.address, 6)))
    decoded = Block.decode(block.encode())
    assert decoded.txs[0] is first  # the block's transaction is the object gossip decoded
    # a block only looks up: its other transaction was not added (a sync peer's uncertified block
    # must not fill the cache), and decoding it alone afterwards adds it
    assert decoded.txs[1] == block.txs[1] and DECODED.get(block.txs[1].encode()) is None
    assert SignedTransaction.decode(block.txs[1].encode()) is not decoded.txs[1]
    assert DECODED.get(block.txs[1].encode()) is not None
    for i, tx_wire in enumerate(decode(block.encode())[2]):
        assert pack_decoded(tx_wire) == block.txs[i].encode()  # a decoded part packs back to its own bytes


def test_a_block_whose_transaction_differs_only_in_a_bool_for_an_int_is_still_refused():
    """1 == True in Python: a lookup keyed by the wire's value would take a forged version field for
    the cached honest transaction; keyed by the exact bytes it cannot."""
    stx = transfer(ALICE, 0, BOB.address, 5)
    SignedTransaction.decode(stx.encode())  # cached
    wire = decode(_block((stx,)).encode())
    wire[2][0][0][0] = True  # the transaction version, 1 -> true
    forged = msgpack.packb(wire, use_bin_type=True)
    with pytest.raises(MalformedBlock, match="version"):
        Block.decode(forged)


def test_refusals_are_not_cached_and_the_size_limit_holds_on_a_hit():
    stx = transfer(ALICE, 0, BOB.address, 5)
    raw = stx.encode()
    with pytest.raises(DecodeError):
        SignedTransaction.decode(raw[:-1])
    SignedTransaction.decode(raw)
    with pytest.raises(StateError):
        SignedTransaction.decode(raw, max_bytes=len(raw) - 1)


def test_the_cache_is_bounded_by_count_and_by_bytes():
    generation = DECODED._count
    txs = [transfer(ALICE, n, BOB.address, 1) for n in range(2 * generation + 50)]
    for stx in txs:
        SignedTransaction.decode(stx.encode())
    assert generation <= len(DECODED) <= 2 * generation
    assert DECODED.get(txs[0].encode()) is None and DECODED.get(txs[-1].encode()) is not None
    DECODED.clear()
    big = [signed(ALICE, n, ContractCall(ALICE.address, "m", encode([b"x" * 7_990]), (), 10**6), fee=10**6)
           for n in range(800)]
    for stx in big:
        SignedTransaction.decode(stx.encode())
    held = [stx for stx in big if DECODED.get(stx.encode()) is not None]
    assert sum(stx.size for stx in held) <= 2 * DECODED._weight
    assert len(held) < len(big) and DECODED.get(big[-1].encode()) is not None
