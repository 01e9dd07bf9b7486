"""The Application: execution rules, every rejection path, determinism, atomic commit, LevelDB reopen."""

from __future__ import annotations

import dataclasses

import pytest

from state import keys
from state.amounts import MAX_AMOUNT, QNX
from state.app import Application, BlockResult
from state.blocks import Block, BlockHeader, tx_root
from state.crypto import sha256
from state.errors import (
    BadSignature,
    FeeTooLow,
    GenesisMismatch,
    InvalidBlock,
    StateInvariantBroken,
    StoreError,
    TxTooLarge,
    WrongChainId,
)
from state.genesis import GenesisToken, Params
from state.kv import LevelDBKV, MemoryKV
from state.merkle import verify_merkle_proof
from state.testing import STUB_VERIFIER, ONE_QNX, dev_key, make_genesis, stub_cert, token_create, token_mint, transfer
from state.payloads import TxKind
from state.transactions import SignedTransaction

VAL = dev_key("validator-0")
VAL2 = dev_key("validator-1")
ALICE = dev_key("alice")
BOB = dev_key("bob")
CAROL = dev_key("carol")
START = 1_000 * ONE_QNX
FEE = Params().min_fee(TxKind.TRANSFER)  # a transfer's minimum fee: 1,000 gas at the default min_gas_price


def genesis(**kw):
    kw.setdefault("validators", (VAL, VAL2))
    kw.setdefault("funded", (ALICE, BOB))
    return make_genesis(**kw)


def new_app(kv=None, **kw) -> Application:
    return Application(kv if kv is not None else MemoryKV(), genesis(**kw), commit_verifier=STUB_VERIFIER)


def state_snapshot(app: Application) -> dict[bytes, bytes]:
    return {k: v for k, v in app._kv.iterate() if keys.is_state_key(k)}


def diff(before: dict[bytes, bytes], after: dict[bytes, bytes]) -> set[bytes]:
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def cert(block: Block) -> bytes:
    return stub_cert(block.height, block.hash)


def last_commit(app: Application) -> bytes:
    return app.get_commit_cert(app.height) or b""


def build(app: Application, txs, *, proposer=VAL, time_ms=None) -> tuple[Block, BlockResult]:
    return app.build_block(
        txs, proposer=proposer.address, time_ms=time_ms or app.last_time_ms + 1000, last_commit=last_commit(app)
    )


def commit(app: Application, txs, **kw) -> tuple[Block, BlockResult]:
    block, result = build(app, txs, **kw)
    app.commit_block(block, result, cert(block))
    return block, result


def fee_and_nonce_keys(*senders) -> set[bytes]:
    out = {keys.balance_key(VAL.address, QNX)}
    for s in senders:
        out |= {keys.balance_key(s.address, QNX), keys.account_key(s.address)}
    return out


# -- genesis --------------------------------------------------------------------


def test_genesis_state():
    app = new_app()
    assert app.height == 0
    assert app.last_block_hash == app.genesis.hash
    assert app.last_time_ms == app.genesis.genesis_time_ms
    assert app.account(ALICE.address).balances == {QNX: START}
    assert app.account(ALICE.address).nonce == 0
    assert app.account(CAROL.address).balances == {}
    qnx = app.token(QNX)
    assert qnx is not None and qnx.decimals == 18 and qnx.supply == 2 * START
    assert [pk for pk, _ in app.validators()] == [k.public_key for k in sorted((VAL, VAL2), key=lambda k: k.address)]
    assert app.get_block(0) is None and app.get_block(1) is None


def test_genesis_app_hash_is_deterministic_and_sensitive():
    assert new_app().app_hash == new_app().app_hash
    assert new_app().app_hash != new_app(balance=START + 1).app_hash


def test_reopening_with_another_genesis_is_refused():
    kv = MemoryKV()
    new_app(kv)
    assert new_app(kv).height == 0  # same genesis: fine
    with pytest.raises(GenesisMismatch):
        new_app(kv, balance=1)


def test_genesis_tokens_exist_with_their_supply():
    app = new_app(
        tokens=(GenesisToken("USD", "Dollar", 6, CAROL.address),),
        extra_balances={ALICE.address: {"USD": 500}, BOB.address: {"USD": 250}},
    )
    usd = app.token("USD")
    assert usd is not None and usd.supply == 750 and usd.issuer == CAROL.address
    assert [t.symbol for t in app.tokens()] == ["QNX", "USD"]


# -- execution --------------------------------------------------------------------


def test_transfer_moves_funds_and_pays_the_proposer():
    app = new_app()
    stx = transfer(ALICE, 0, CAROL.address, 5 * ONE_QNX)
    block, result = commit(app, [stx])
    assert block.txs == (stx,)
    (receipt,) = result.receipts
    assert FEE == 10**12 and receipt.ok and receipt.fee == FEE and receipt.gas_used == 1000 and receipt.index == 0
    assert app.height == 1 and app.app_hash == result.app_hash == block.header.app_hash
    assert app.account(ALICE.address).balances == {QNX: START - 5 * ONE_QNX - FEE}
    assert app.account(ALICE.address).nonce == 1
    assert app.account(CAROL.address).balances == {QNX: 5 * ONE_QNX}
    assert app.account(VAL.address).balances == {QNX: FEE}
    assert app.token(QNX).supply == 2 * START  # fees move QNX, never create it


def test_sequential_nonces_in_one_block_and_fees_summed():
    app = new_app()
    txs = [transfer(ALICE, n, BOB.address, 1, fee=FEE + n) for n in range(5)]
    block, result = commit(app, txs)
    assert len(block.txs) == 5 and all(r.ok for r in result.receipts)
    assert result.fees == sum(FEE + n for n in range(5))
    assert app.account(ALICE.address).nonce == 5
    assert app.account(VAL.address).balances[QNX] == result.fees


def test_token_create_and_mint_by_issuer():
    app = new_app()
    commit(app, [token_create(ALICE, 0, "GOLD", 1000, decimals=2), token_mint(ALICE, 1, "GOLD", BOB.address, 50)])
    gold = app.token("GOLD")
    assert gold is not None
    assert (gold.issuer, gold.supply, gold.decimals, gold.name) == (ALICE.address, 1050, 2, "GOLD token")
    assert app.account(ALICE.address).balances["GOLD"] == 1000
    assert app.account(BOB.address).balances["GOLD"] == 50
    commit(app, [transfer(BOB, 0, CAROL.address, 20, token="GOLD")])
    assert app.account(BOB.address).balances["GOLD"] == 30
    assert app.account(CAROL.address).balances == {"GOLD": 20}


def test_token_with_zero_initial_supply():
    app = new_app()
    commit(app, [token_create(ALICE, 0, "ZERO", 0)])
    assert app.token("ZERO").supply == 0
    assert "ZERO" not in app.account(ALICE.address).balances


def test_spending_a_whole_balance_removes_the_key():
    app = new_app(funded=(ALICE,), balance=FEE + 9_000)
    commit(app, [transfer(ALICE, 0, BOB.address, 9_000)])
    assert app.account(ALICE.address).balances == {}
    assert app._kv.get(keys.balance_key(ALICE.address, QNX)) is None


# -- failed effects: fee and nonce only --------------------------------------------


def _failed_effect(app, stx, reason_code, *senders):
    before = state_snapshot(app)
    _, result = commit(app, [stx])
    (receipt,) = result.receipts
    assert not receipt.ok and receipt.reason.startswith(reason_code + ":"), receipt.reason
    assert diff(before, state_snapshot(app)) <= fee_and_nonce_keys(*senders)
    assert app.account(stx.tx.sender).nonce == stx.tx.nonce + 1
    return receipt


def test_insufficient_balance_charges_fee_and_nonce_only():
    app = new_app()
    receipt = _failed_effect(app, transfer(ALICE, 0, CAROL.address, START), "insufficient_balance", ALICE)
    assert app.account(ALICE.address).balances == {QNX: START - FEE}
    assert app.account(CAROL.address).balances == {}
    assert receipt.fee == FEE


def test_transfer_of_unknown_token_fails():
    app = new_app()
    _failed_effect(app, transfer(ALICE, 0, CAROL.address, 1, token="NOPE"), "unknown_token", ALICE)


def test_mint_by_non_issuer_fails():
    app = new_app()
    commit(app, [token_create(ALICE, 0, "GOLD", 1000)])
    _failed_effect(app, token_mint(BOB, 0, "GOLD", BOB.address, 1), "not_issuer", BOB)
    assert app.token("GOLD").supply == 1000
    assert "GOLD" not in app.account(BOB.address).balances


def test_overflowing_mint_fails_without_wrapping():
    app = new_app()
    commit(app, [token_create(ALICE, 0, "BIG", MAX_AMOUNT - 10)])
    _failed_effect(app, token_mint(ALICE, 1, "BIG", BOB.address, 11), "overflow", ALICE)
    assert app.token("BIG").supply == MAX_AMOUNT - 10
    commit(app, [token_mint(ALICE, 2, "BIG", BOB.address, 10)])
    assert app.token("BIG").supply == MAX_AMOUNT
    assert app.account(BOB.address).balances["BIG"] == 10


def test_creating_an_existing_token_fails():
    app = new_app()
    _failed_effect(app, token_create(ALICE, 0, "QNX", 5), "token_exists", ALICE)
    assert app.token(QNX).supply == 2 * START


def test_a_failed_tx_does_not_disturb_its_neighbours():
    app = new_app()
    txs = [
        transfer(ALICE, 0, CAROL.address, 1),
        transfer(ALICE, 1, CAROL.address, 10 * START),  # fails
        transfer(ALICE, 2, CAROL.address, 2),
    ]
    _, result = commit(app, txs)
    assert [r.ok for r in result.receipts] == [True, False, True]
    assert app.account(CAROL.address).balances == {QNX: 3}
    assert app.account(ALICE.address).nonce == 3


# -- invalid for inclusion: skipped by the proposer, fatal in a block ----------------


def _never_included(app, stx, error=None):
    """The proposer skips ``stx``; a block carrying it is invalid; nothing changes either way."""
    before, head = state_snapshot(app), (app.height, app.app_hash)
    block, result = build(app, [stx])
    assert block.txs == () and result.receipts == ()
    forged = forge(app, [stx])
    with pytest.raises(InvalidBlock) as info:
        app.execute_block(forged)
    if error is not None:
        assert isinstance(info.value.__cause__, error)
    assert state_snapshot(app) == before and (app.height, app.app_hash) == head


def forge(app, txs, **header_changes) -> Block:
    """A block with ``txs`` whose header is otherwise correct (except for its app hash)."""
    block, _ = build(app, [])
    header = dataclasses.replace(block.header, tx_root=tx_root(txs), **header_changes)
    return Block(header, tuple(txs), block.last_commit)


def test_bad_signature_is_never_included():
    app = new_app()
    stx = transfer(ALICE, 0, CAROL.address, 1)
    bad = SignedTransaction(stx.tx, bytes(64))
    with pytest.raises(BadSignature):
        app.check_tx_stateless(bad)
    _never_included(app, bad, BadSignature)


def test_wrong_chain_id_is_never_included():
    app = new_app()
    stx = transfer(ALICE, 0, CAROL.address, 1, chain_id="other-chain")
    with pytest.raises(WrongChainId) as info:
        app.check_tx_stateless(stx)
    assert (info.value.got, info.value.want) == ("other-chain", app.chain_id)
    _never_included(app, stx, WrongChainId)


def test_replayed_nonce_is_never_included():
    app = new_app()
    stx = transfer(ALICE, 0, CAROL.address, 1)
    commit(app, [stx])
    _never_included(app, stx)
    block, _ = build(app, [stx, stx])
    assert block.txs == ()


def test_duplicate_in_one_block_is_included_once():
    app = new_app()
    stx = transfer(ALICE, 0, CAROL.address, 1)
    block, _ = build(app, [stx, stx])
    assert block.txs == (stx,)
    with pytest.raises(InvalidBlock):
        app.execute_block(forge(app, [stx, stx]))


def test_skipped_nonce_is_never_included():
    app = new_app()
    _never_included(app, transfer(ALICE, 1, CAROL.address, 1))


def test_fee_too_low_is_never_included():
    app = new_app()
    stx = transfer(ALICE, 0, CAROL.address, 1, fee=FEE - 1)
    with pytest.raises(FeeTooLow) as info:
        app.check_tx_stateless(stx)
    assert (info.value.fee, info.value.minimum) == (FEE - 1, FEE)
    _never_included(app, stx, FeeTooLow)


def test_unpayable_fee_is_never_included():
    app = new_app()
    _never_included(app, transfer(CAROL, 0, ALICE.address, 1))  # CAROL has no QNX


def test_oversize_tx_is_never_included():
    app = new_app(params=Params(max_tx_bytes=256))
    big = token_create(ALICE, 0, "LONG", 1)
    big = dataclasses.replace(big.tx, payload=dataclasses.replace(big.tx.payload, name="\N{GRINNING FACE}" * 64)).sign(
        ALICE
    )
    assert big.size > 256
    with pytest.raises(TxTooLarge) as info:
        app.check_tx_stateless(big)
    assert (info.value.size, info.value.limit) == (big.size, 256)
    _never_included(app, big, TxTooLarge)


def test_tx_outflows():
    app = new_app()
    assert app.tx_outflows(transfer(ALICE, 0, BOB.address, 7)) == {QNX: FEE + 7}
    assert app.tx_outflows(transfer(ALICE, 0, BOB.address, 7, token="GOLD")) == {"GOLD": 7, QNX: FEE}
    assert app.tx_outflows(token_create(ALICE, 0, "GOLD", 10**9)) == {QNX: 2_550_000 * 10**9}


# -- block validation ----------------------------------------------------------------


@pytest.mark.parametrize(
    "change",
    [
        {"chain_id": "other"},
        {"height": 2},
        {"prev_hash": bytes(32)},
        {"time_ms": 0},
        {"tx_root": bytes(32)},
        {"app_hash": bytes(32)},
        {"validators_hash": bytes(32)},
        {"last_commit_hash": bytes(32)},
        {"proposer": ALICE.address},
    ],
)
def test_execute_block_rejects_a_bad_header(change):
    app = new_app()
    block, _ = build(app, [transfer(ALICE, 0, BOB.address, 1)])
    app.execute_block(block)  # the honest block is valid
    bad = Block(dataclasses.replace(block.header, **change), block.txs, block.last_commit)
    with pytest.raises(InvalidBlock):
        app.execute_block(bad)
    assert app.height == 0


def test_time_must_increase_and_not_run_ahead():
    app = new_app()
    with pytest.raises(InvalidBlock):
        build(app, [], time_ms=app.last_time_ms)
    block, _ = build(app, [], time_ms=app.last_time_ms + 60_000)
    app.execute_block(block)  # no clock given: only monotonicity
    app.execute_block(block, now_ms=app.last_time_ms + 50_000)  # within 10 s drift
    with pytest.raises(InvalidBlock):
        app.execute_block(block, now_ms=app.last_time_ms + 49_999)


def test_last_commit_rules():
    app = new_app()
    block, _ = build(app, [])
    with pytest.raises(InvalidBlock):  # block 1 carries no commit
        app.execute_block(Block(dataclasses.replace(block.header, last_commit_hash=sha256(b"x")), (), b"x"))
    commit(app, [])
    block, _ = build(app, [])
    assert block.last_commit == last_commit(app) and block.header.last_commit_hash == sha256(last_commit(app))
    with pytest.raises(InvalidBlock):  # block 2 must carry one
        app.execute_block(Block(dataclasses.replace(block.header, last_commit_hash=sha256(b"")), (), b""))
    with pytest.raises(InvalidBlock):
        app.build_block([], proposer=VAL.address, time_ms=app.last_time_ms + 1, last_commit=b"")


def test_proposer_must_be_a_validator():
    app = new_app()
    with pytest.raises(InvalidBlock):
        build(app, [], proposer=ALICE)
    block, _ = build(app, [transfer(ALICE, 0, BOB.address, 1)], proposer=VAL2)
    result = app.execute_block(block)
    app.commit_block(block, result, cert(block))
    assert app.account(VAL2.address).balances == {QNX: FEE}


def test_block_limits_are_respected_by_the_proposer_and_enforced():
    app = new_app(params=Params(max_block_txs=3))
    txs = [transfer(ALICE, n, BOB.address, 1) for n in range(5)]
    block, _ = build(app, txs)
    assert block.txs == tuple(txs[:3])
    with pytest.raises(InvalidBlock):
        app.execute_block(forge(app, txs[:4]))

    app = new_app(params=Params(max_block_bytes=2048, max_tx_bytes=1024))
    txs = [transfer(ALICE, n, BOB.address, 1) for n in range(30)]
    block, result = build(app, txs)
    assert 0 < len(block.txs) < 30 and block.size <= 2048
    assert block.txs == tuple(txs[: len(block.txs)])
    app.execute_block(block)
    with pytest.raises(InvalidBlock):
        app.execute_block(forge(app, txs))


def test_proposer_and_validator_compute_the_same_result():
    proposer, validator = new_app(), new_app()
    for round_ in range(3):
        txs = [transfer(ALICE, round_ * 2 + i, BOB.address, 10 + i) for i in range(2)]
        block, built = build(proposer, txs)
        wire = Block.decode(block.encode())
        executed = validator.execute_block(wire)
        assert executed == built
        proposer.commit_block(block, built, cert(block))
        validator.commit_block(wire, executed, cert(block))
        assert proposer.app_hash == validator.app_hash


def test_a_stale_result_cannot_be_committed():
    app = new_app()
    b1, r1 = build(app, [transfer(ALICE, 0, BOB.address, 1)])
    b1_alt, r1_alt = build(app, [transfer(BOB, 0, ALICE.address, 1)], time_ms=app.last_time_ms + 7)
    app.commit_block(b1, r1, cert(b1))
    with pytest.raises(StateInvariantBroken):
        app.commit_block(b1_alt, r1_alt, cert(b1_alt))
    with pytest.raises(StateInvariantBroken):
        app.commit_block(b1_alt, r1, cert(b1_alt))
    b2, r2 = build(app, [])
    with pytest.raises(StateInvariantBroken):
        app.commit_block(b2, r2, b"")  # a committed block has a certificate


# -- determinism -----------------------------------------------------------------


def _scripted_blocks(app: Application, rounds: int):
    script = [
        [transfer(ALICE, 0, CAROL.address, 7 * ONE_QNX), token_create(BOB, 0, "GOLD", 10**6)],
        [token_mint(BOB, 1, "GOLD", CAROL.address, 5), transfer(ALICE, 1, BOB.address, START)],
        [transfer(CAROL, 0, ALICE.address, 3, token="GOLD"), token_mint(ALICE, 2, "GOLD", ALICE.address, 1)],
        [],
    ]
    for i in range(rounds):
        yield commit(app, script[i % len(script)] if i < len(script) else [])[0]


def test_two_apps_fed_the_same_blocks_agree_at_every_height():
    a, b = new_app(), new_app()
    for block in _scripted_blocks(a, 6):
        result = b.apply_block(Block.decode(block.encode()), cert(block))
        assert result.app_hash == a.app_hash == b.app_hash
    assert a.account(CAROL.address) == b.account(CAROL.address)
    assert {k: v for k, v in a._kv.iterate()} == {k: v for k, v in b._kv.iterate()}


def test_app_hash_commits_to_each_state_change():
    a, b = new_app(), new_app()
    ba, _ = commit(a, [transfer(ALICE, 0, CAROL.address, 1)], time_ms=a.last_time_ms + 5)
    bb, _ = commit(b, [transfer(ALICE, 0, CAROL.address, 2)], time_ms=b.last_time_ms + 5)
    assert ba.header.app_hash != bb.header.app_hash


def test_result_writes_are_sorted_and_minimal():
    app = new_app()
    _, result = build(app, [transfer(ALICE, 0, ALICE.address, 5)])  # a self-transfer: balance moves by the fee only
    written = [k for k, _ in result.state_writes]
    assert written == sorted(written)
    assert set(written) == fee_and_nonce_keys(ALICE)


# -- atomic commit ---------------------------------------------------------------


class FailingKV(MemoryKV):
    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def write_batch(self, puts, sync=True):
        if self.fail:
            raise StoreError("simulated crash before the batch reached the disk")
        super().write_batch(puts, sync)


def test_a_failed_commit_writes_nothing_and_the_head_stays():
    kv = FailingKV()
    app = new_app(kv)
    commit(app, [transfer(ALICE, 0, BOB.address, 1)])
    before = dict(kv.iterate())
    head = (app.height, app.app_hash, app.last_block_hash, app.last_time_ms)
    block, result = build(app, [transfer(ALICE, 1, CAROL.address, 5)])
    kv.fail = True
    with pytest.raises(StoreError):
        app.commit_block(block, result, cert(block))
    assert dict(kv.iterate()) == before
    assert (app.height, app.app_hash, app.last_block_hash, app.last_time_ms) == head
    assert app.get_tx(block.txs[0].hash) is None
    # a restart sees the last committed height, and the same block then commits
    kv.fail = False
    again = new_app(kv)
    assert (again.height, again.app_hash) == head[:2]
    again.commit_block(block, again.execute_block(block), cert(block))
    assert again.height == 2 and again.account(CAROL.address).balances == {QNX: 5}


def test_execute_block_writes_nothing():
    app = new_app()
    before = dict(app._kv.iterate())
    block, _ = build(app, [transfer(ALICE, 0, BOB.address, 1)])
    app.execute_block(block)
    assert dict(app._kv.iterate()) == before


def test_commit_writes_one_synced_batch():
    calls = []

    class Recording(MemoryKV):
        def write_batch(self, puts, sync=True):
            calls.append((dict(puts), sync))
            super().write_batch(puts, sync)

    app = new_app(Recording())
    calls.clear()
    block, _ = commit(app, [transfer(ALICE, 0, BOB.address, 1)])
    assert len(calls) == 1 and calls[0][1] is True
    written = calls[0][0]
    assert keys.block_key(1) in written and keys.commit_cert_key(1) in written
    assert keys.tx_index_key(block.txs[0].hash) in written and keys.META_HEAD in written


# -- queries ---------------------------------------------------------------------


def test_block_tx_and_proof_queries():
    app = new_app()
    txs = [transfer(ALICE, n, BOB.address, n + 1) for n in range(7)]
    block, result = commit(app, txs)
    assert app.get_block(1) == block
    assert app.get_block_by_hash(block.hash) == block
    assert app.get_block_by_hash(bytes(32)) is None
    assert app.get_commit_cert(1) == cert(block)
    for i, stx in enumerate(txs):
        loc = app.get_tx(stx.hash)
        assert (loc.height, loc.index, loc.stx, loc.receipt) == (1, i, stx, result.receipts[i])
        proof = app.get_tx_proof(stx.hash)
        assert proof.tx_root == block.header.tx_root and proof.tree_size == 7
        assert verify_merkle_proof(proof.tx_root, stx.hash, proof.index, proof.tree_size, proof.proof)
    assert app.get_tx(bytes(32)) is None and app.get_tx_proof(bytes(32)) is None


def test_leveldb_store_survives_reopen(tmp_path):
    path = tmp_path / "state"
    kv = LevelDBKV(path, create_if_missing=True)
    app = new_app(kv)
    blocks = list(_scripted_blocks(app, 4))
    head = (app.height, app.app_hash, app.last_block_hash, app.last_time_ms)
    carol = app.account(CAROL.address)
    kv.close()

    kv = LevelDBKV(path)
    app = new_app(kv)
    assert (app.height, app.app_hash, app.last_block_hash, app.last_time_ms) == head
    assert app.account(CAROL.address) == carol
    assert [app.get_block(b.height) for b in blocks] == blocks
    stx = blocks[0].txs[1]
    proof = app.get_tx_proof(stx.hash)
    assert verify_merkle_proof(proof.tx_root, stx.hash, proof.index, proof.tree_size, proof.proof)
    commit(app, [transfer(ALICE, 2, CAROL.address, 1)])
    assert app.height == 5
    with pytest.raises(GenesisMismatch):
        new_app(kv, balance=1)
    kv.close()

    memory = new_app()
    for block in blocks:
        memory.apply_block(block, cert(block))
    assert memory.app_hash == head[1]


def test_block_header_round_trip_from_store_keeps_hash():
    app = new_app()
    block, _ = commit(app, [transfer(ALICE, 0, BOB.address, 1)])
    stored = app.get_block(1)
    assert isinstance(stored.header, BlockHeader) and stored.hash == block.hash
    assert stored.encode() == block.encode()
