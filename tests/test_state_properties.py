"""Randomized execution: whatever mix of valid and invalid transactions arrives,
supplies are conserved, balances stay in range, and a validator replaying the
proposer's blocks reaches the same app hash."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from state import keys
from state.amounts import MAX_AMOUNT, QNX
from state.app import Application
from state.blocks import Block
from state.codec import decode
from state.kv import MemoryKV
from state.testing import STUB_VERIFIER, stub_cert, dev_key, make_genesis, token_create, token_mint, transfer

KEYS = [dev_key(f"prop-{i}") for i in range(4)]
VAL = dev_key("validator-0")
SYMBOLS = ["QNX", "AAA", "BBB"]
GENESIS = make_genesis(validators=(VAL,), funded=KEYS[:3], balance=10**6)


@st.composite
def actions(draw):
    sender = draw(st.integers(0, 3))
    nonce_shift = draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
    kind = draw(st.sampled_from(["transfer", "create", "mint"]))
    amount = draw(st.one_of(st.integers(1, 10**6), st.just(MAX_AMOUNT)))
    return sender, nonce_shift, kind, draw(st.sampled_from(SYMBOLS)), draw(st.integers(0, 3)), amount


def _tx(app_nonces, action):
    sender, shift, kind, symbol, to, amount = action
    key = KEYS[sender]
    nonce = max(0, app_nonces.get(sender, 0) + shift)
    if shift == 0:
        app_nonces[sender] = nonce + 1
    if kind == "transfer":
        return transfer(key, nonce, KEYS[to].address, amount, token=symbol)
    if kind == "create":
        return token_create(key, nonce, symbol, amount % (MAX_AMOUNT + 1))
    return token_mint(key, nonce, symbol, KEYS[to].address, amount)


def _check_supplies(app: Application) -> None:
    totals: dict[str, int] = {}
    for key, raw in app._kv.iterate(keys.BALANCE):
        symbol = key[1 + 20 :].decode()
        amount = decode(raw)
        assert 0 < amount <= MAX_AMOUNT
        totals[symbol] = totals.get(symbol, 0) + amount
    for info in app.tokens():
        assert totals.get(info.symbol, 0) == info.supply, info.symbol
    assert app.token(QNX).supply == GENESIS.supply(QNX)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(actions(), max_size=8), min_size=1, max_size=4))
def test_random_blocks_conserve_supply_and_replay_identically(blocks):
    proposer = Application(MemoryKV(), GENESIS)
    validator = Application(MemoryKV(), GENESIS, commit_verifier=STUB_VERIFIER)
    nonces: dict[int, int] = {}
    for i, actions_ in enumerate(blocks):
        txs = [_tx(nonces, a) for a in actions_]
        last_commit = proposer.get_commit_cert(proposer.height) or b""
        block, result = proposer.build_block(
            txs, proposer=VAL.address, time_ms=GENESIS.genesis_time_ms + i + 1, last_commit=last_commit
        )
        cert = stub_cert(block.height, block.hash)
        proposer.commit_block(block, result, cert)
        replayed = validator.apply_block(Block.decode(block.encode()), cert)
        assert replayed == result
        assert validator.app_hash == proposer.app_hash
        _check_supplies(proposer)
        # what the proposer skipped changed nothing: every included tx has a receipt
        assert len(result.receipts) == len(block.txs)
        # resync nonces to what was committed
        for s in range(4):
            nonces[s] = proposer.account(KEYS[s].address).nonce
