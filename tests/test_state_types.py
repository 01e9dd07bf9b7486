"""The data model: every message round-trips; malformed shapes raise specific errors."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from state.amounts import MAX_AMOUNT, format_amount, parse_amount
from state.blocks import Block, BlockHeader
from state.codec import encode
from state.crypto import PrivateKey
from state.errors import (
    AmountError,
    AmountOutOfRange,
    AmountOverflow,
    DecodeError,
    InvalidKey,
    InvalidSymbol,
    MalformedBlock,
    MalformedTransaction,
    TooManyDecimals,
    TxTooLarge,
    UnknownTxKind,
    WrongLength,
)
from state.genesis import Genesis, GenesisAccount, GenesisToken, GenesisValidator, Params
from state.payloads import TokenCreate, TokenMint, Transfer, TxKind
from state.testing import dev_key, transfer
from state.transactions import Receipt, ReceiptStatus, SignedTransaction, Transaction

addresses = st.binary(min_size=20, max_size=20)
hashes = st.binary(min_size=32, max_size=32)
symbols = st.from_regex(r"[A-Z0-9]{1,12}", fullmatch=True)
chain_ids = st.from_regex(r"[A-Za-z0-9._-]{1,64}", fullmatch=True)
names = st.text(min_size=1, max_size=64).filter(str.isprintable)
amounts = st.integers(1, MAX_AMOUNT)
u64 = st.integers(0, 2**64 - 1)

payloads = st.one_of(
    st.builds(Transfer, addresses, symbols, amounts),
    st.builds(TokenCreate, symbols, names, st.integers(0, 36), st.integers(0, MAX_AMOUNT)),
    st.builds(TokenMint, symbols, addresses, amounts),
)


@st.composite
def transactions(draw):
    payload = draw(payloads)
    return Transaction(
        draw(chain_ids),
        payload.KIND,
        draw(st.binary(min_size=32, max_size=32)),
        draw(u64),
        draw(st.integers(0, MAX_AMOUNT)),
        payload,
    )


signed = st.builds(SignedTransaction, transactions(), st.binary(min_size=64, max_size=64))
headers = st.builds(
    BlockHeader, chain_ids, st.integers(1, 2**64 - 1), u64, hashes, hashes, hashes, hashes, addresses, hashes
)
blocks = st.builds(Block, headers, st.lists(signed, max_size=4).map(tuple), st.binary(max_size=200))
receipts = st.builds(
    Receipt,
    hashes,
    st.integers(1, 2**64 - 1),
    u64,
    st.sampled_from(ReceiptStatus),
    st.text(max_size=100),
    u64,
    st.integers(0, MAX_AMOUNT),
)


@settings(max_examples=150, deadline=None)
@given(transactions())
def test_transaction_round_trips(tx):
    assert Transaction.from_wire(tx.to_wire()) == tx
    assert encode(Transaction.from_wire(tx.to_wire()).to_wire()) == encode(tx.to_wire())


@settings(max_examples=150, deadline=None)
@given(signed)
def test_signed_transaction_round_trips(stx):
    again = SignedTransaction.decode(stx.encode())
    assert again == stx
    assert again.hash == stx.hash
    assert again.encode() == stx.encode()


@settings(max_examples=100, deadline=None)
@given(headers)
def test_header_round_trips(header):
    again = BlockHeader.decode(header.encode())
    assert again == header and again.hash == header.hash


@settings(max_examples=50, deadline=None)
@given(blocks)
def test_block_round_trips(block):
    again = Block.decode(block.encode())
    assert again == block
    assert again.hash == block.hash == block.header.hash
    assert again.encode() == block.encode()


@settings(max_examples=100, deadline=None)
@given(receipts)
def test_receipt_round_trips(receipt):
    assert Receipt.decode(receipt.encode()) == receipt


@st.composite
def geneses(draw):
    keys = draw(st.lists(st.binary(min_size=32, max_size=32), min_size=1, max_size=4, unique=True))
    validators = tuple(GenesisValidator(f"v{i}", k, draw(st.integers(1, 1000))) for i, k in enumerate(keys))
    token_symbols = draw(st.lists(symbols.filter(lambda s: s != "QNX"), max_size=3, unique=True))
    tokens = tuple(GenesisToken(s, f"{s} coin", draw(st.integers(0, 36)), draw(addresses)) for s in token_symbols)
    holders = draw(st.lists(addresses, max_size=4, unique=True))
    accounts = tuple(
        GenesisAccount(
            a, {s: draw(st.integers(0, 2**100)) for s in draw(st.sets(st.sampled_from(["QNX", *token_symbols])))}
        )
        for a in holders
    )
    params = Params(max_block_txs=draw(st.integers(1, 10_000)), min_gas_price=draw(st.integers(0, 10**12)))
    return Genesis(draw(chain_ids), draw(u64), validators, tokens, accounts, params)


@settings(max_examples=60, deadline=None)
@given(geneses())
def test_genesis_round_trips_through_wire_and_json(genesis):
    assert Genesis.decode(genesis.encode()) == genesis
    again = Genesis.from_json(genesis.to_json())
    assert again == genesis
    assert again.hash == genesis.hash


# -- signatures ---------------------------------------------------------------------


def test_signature_verifies_and_tampering_breaks_it():
    key = dev_key("alice")
    stx = transfer(key, 0, dev_key("bob").address, 5)
    assert stx.verify_signature()
    forged = SignedTransaction(dataclasses.replace(stx.tx, nonce=1), stx.signature)
    assert not forged.verify_signature()
    flipped = SignedTransaction(stx.tx, bytes([stx.signature[0] ^ 1]) + stx.signature[1:])
    assert not flipped.verify_signature()


def test_signing_with_another_key_is_refused():
    stx = transfer(dev_key("alice"), 0, dev_key("bob").address, 5)
    with pytest.raises(InvalidKey):
        stx.tx.sign(dev_key("mallory"))


def test_the_signed_digest_covers_the_chain_id():
    a = transfer(dev_key("alice"), 0, dev_key("bob").address, 5, chain_id="chain-a")
    b = transfer(dev_key("alice"), 0, dev_key("bob").address, 5, chain_id="chain-b")
    assert a.tx.signing_digest() != b.tx.signing_digest()


# -- malformed shapes -------------------------------------------------------------


def _raw(tx_wire, signature=b"\x00" * 64) -> bytes:
    return encode([tx_wire, signature])


def _good_wire():
    return transfer(dev_key("alice"), 0, dev_key("bob").address, 5).tx.to_wire()


def _with(index, value, payload_index=None):
    wire = _good_wire()
    if payload_index is None:
        wire[index] = value
    else:
        wire[6][payload_index] = value
    return wire


@pytest.mark.parametrize(
    "wire, error",
    [
        (_with(3, b"\x01" * 31), WrongLength),
        (_with(3, "not bytes"), MalformedTransaction),
        (_with(2, 99), UnknownTxKind),
        (_with(2, 0), UnknownTxKind),
        (_with(2, "transfer"), UnknownTxKind),
        (_with(0, 2), MalformedTransaction),
        (_with(1, ""), MalformedTransaction),
        (_with(1, "has space"), MalformedTransaction),
        (_with(4, -1), AmountOutOfRange),
        (_with(4, 2**64), AmountOutOfRange),
        (_with(5, -5), AmountOutOfRange),
        (_with(0, -5, payload_index=2), AmountOutOfRange),
        (_with(0, 0, payload_index=2), AmountOutOfRange),
        (_with(0, "qnx", payload_index=1), InvalidSymbol),
        (_with(0, "ABCDEFGHIJKLM", payload_index=1), InvalidSymbol),
        (_with(0, "", payload_index=1), InvalidSymbol),
        (_with(0, b"\x01" * 19, payload_index=0), WrongLength),
        (_with(6, [b"\x01" * 20, "QNX"]), MalformedTransaction),
        (_good_wire()[:6], MalformedTransaction),
        (_with(6, "payload"), MalformedTransaction),
    ],
)
def test_malformed_transactions_raise_specific_errors(wire, error):
    with pytest.raises(error):
        SignedTransaction.decode(_raw(wire))


def test_bad_signature_length_is_wrong_length():
    with pytest.raises(WrongLength):
        SignedTransaction.decode(_raw(_good_wire(), b"\x00" * 63))


def test_amount_above_max_cannot_even_be_decoded():
    wire = _good_wire()
    data = _raw(wire)
    # replace the amount 5 (fixint 0x05 before the signature) with a 17-byte ext integer
    bad = data.replace(b"\x05\xc4\x40", b"\xc7\x11\x01" + b"\x01" + bytes(16) + b"\xc4\x40")
    assert bad != data
    with pytest.raises(DecodeError):
        SignedTransaction.decode(bad)
    with pytest.raises(AmountOutOfRange):
        Transfer(b"\x01" * 20, "QNX", MAX_AMOUNT + 1)


def test_trailing_bytes_and_oversize_are_refused():
    data = transfer(dev_key("alice"), 0, dev_key("bob").address, 5).encode()
    with pytest.raises(DecodeError):
        SignedTransaction.decode(data + b"\x00")
    with pytest.raises(TxTooLarge):
        SignedTransaction.decode(data, max_bytes=len(data) - 1)


def test_payload_must_match_kind():
    with pytest.raises(MalformedTransaction):
        Transaction("c", TxKind.TOKEN_MINT, b"\x01" * 32, 0, 0, Transfer(b"\x01" * 20, "QNX", 1))


def test_decimals_and_names_are_bounded():
    with pytest.raises(AmountOutOfRange):
        TokenCreate("FOO", "Foo", 37, 0)
    with pytest.raises(MalformedTransaction):
        TokenCreate("FOO", "x" * 65, 6, 0)
    with pytest.raises(MalformedTransaction):
        TokenCreate("FOO", "bad\nname", 6, 0)


@pytest.mark.parametrize("field", ["prev_hash", "tx_root", "app_hash", "validators_hash", "last_commit_hash"])
def test_header_hash_fields_must_be_32_bytes(field):
    header = BlockHeader("c", 1, 0, *[b"\x00" * 32] * 4, b"\x00" * 20, b"\x00" * 32)
    with pytest.raises(MalformedBlock):
        dataclasses.replace(header, **{field: b"\x00" * 31})


def test_malformed_blocks():
    header = BlockHeader("c", 1, 0, *[b"\x00" * 32] * 4, b"\x00" * 20, b"\x00" * 32)
    with pytest.raises(MalformedBlock):
        Block.decode(encode([1, header.to_wire(), [], None]))  # last_commit nil
    with pytest.raises(MalformedBlock):
        Block.decode(encode([2, header.to_wire(), [], b""]))
    with pytest.raises(MalformedBlock):
        Block.decode(encode([1, header.to_wire(), [["junk"]], b""]))
    with pytest.raises(MalformedBlock):
        BlockHeader("c", 0, 0, *[b"\x00" * 32] * 4, b"\x00" * 20, b"\x00" * 32)


# -- amounts ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, decimals, value",
    [
        ("12.5", 6, 12_500_000),
        ("0", 18, 0),
        ("1", 0, 1),
        ("0.000001", 6, 1),
        ("1.50", 1, 15),
        (" 7 ", 2, 700),
        ("340282366920938463463.374607431768211455", 18, MAX_AMOUNT),
    ],
)
def test_parse_amount(text, decimals, value):
    assert parse_amount(text, decimals) == value


@pytest.mark.parametrize(
    "text, decimals, error",
    [
        ("1.0000001", 6, TooManyDecimals),
        ("0.5", 0, TooManyDecimals),
        ("340282366920938463463.374607431768211456", 18, AmountOverflow),
        ("-1", 6, AmountError),
        ("1e5", 6, AmountError),
        (".5", 6, AmountError),
        ("5.", 6, AmountError),
        ("", 6, AmountError),
        ("1,5", 6, AmountError),
        ("1", 37, AmountError),
    ],
)
def test_parse_amount_refuses(text, decimals, error):
    with pytest.raises(error):
        parse_amount(text, decimals)


@given(st.integers(0, MAX_AMOUNT), st.integers(0, 36))
def test_format_then_parse_is_identity(value, decimals):
    assert parse_amount(format_amount(value, decimals), decimals) == value


def test_format_amount():
    assert format_amount(12_500_000, 6) == "12.5"
    assert format_amount(10**18, 18) == "1"
    assert format_amount(1, 18) == "0.000000000000000001"
    with pytest.raises(AmountOverflow):
        format_amount(MAX_AMOUNT + 1, 6)
    with pytest.raises(AmountError):
        format_amount(-1, 6)


def test_private_key_is_not_printed():
    assert "seed" not in repr(PrivateKey(b"\x01" * 32))


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_mutated_bytes_never_escape_the_error_tree(data):
    block = Block(
        BlockHeader("c", 1, 5, *[b"\x00" * 32] * 4, b"\x00" * 20, b"\x00" * 32),
        (transfer(dev_key("alice"), 0, dev_key("bob").address, 5),),
        b"cert",
    )
    raw = bytearray(block.encode())
    for _ in range(data.draw(st.integers(1, 3))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    try:
        again = Block.decode(bytes(raw))
    except DecodeError:
        return
    assert again.encode() == bytes(raw)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_decode_to_a_tx_or_a_decode_error(data):
    try:
        SignedTransaction.decode(data)
    except DecodeError:
        pass
