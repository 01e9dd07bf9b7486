"""Genesis documents: JSON conventions, validation, order-independent hashing."""

from __future__ import annotations

import json

import pytest

from state.amounts import MAX_AMOUNT
from state.crypto import address_to_text
from state.errors import MalformedGenesis
from state.genesis import DEFAULT_GAS, Genesis, GenesisAccount, GenesisToken, GenesisValidator, Params
from state.payloads import TxKind
from state.testing import dev_key, make_genesis

A, B = dev_key("a"), dev_key("b")


def doc(**changes):
    base = json.loads(make_genesis(funded=(A, B)).to_json())
    base.update(changes)
    return json.dumps(base)


def test_json_uses_strings_for_amounts_hex_for_bytes_and_bech32_for_addresses():
    g = make_genesis(funded=(A,), tokens=(GenesisToken("USD", "Dollar", 6, B.address),))
    obj = json.loads(g.to_json())
    assert obj["accounts"][0]["balances"]["QNX"] == str(10**21)
    assert obj["accounts"][0]["address"] == address_to_text(A.address)
    assert obj["validators"][0]["pubkey"].startswith("0x")
    assert obj["tokens"][0]["issuer"].startswith("qnx1")
    assert {k: obj["params"]["gas"][k] for k in ("transfer", "token_create", "token_mint")} == {
        "transfer": 1000, "token_create": 2_550_000, "token_mint": 2000
    }
    assert obj["params"]["min_gas_price"] == str(10**9)


def test_order_of_lists_does_not_change_the_hash():
    obj = json.loads(make_genesis(funded=(A, B), validators=(A, B)).to_json())
    shuffled = dict(obj, accounts=obj["accounts"][::-1], validators=obj["validators"][::-1])
    assert Genesis.from_json(json.dumps(shuffled)).hash == Genesis.from_json(json.dumps(obj)).hash


def test_params_are_optional_and_partially_overridable():
    obj = json.loads(doc())
    del obj["params"]
    assert Genesis.from_json(json.dumps(obj)).params == Params()
    obj["params"] = {"max_block_txs": 7, "gas": {"transfer": 5}}
    params = Genesis.from_json(json.dumps(obj)).params
    assert params.max_block_txs == 7 and params.gas_for(TxKind.TRANSFER) == 5
    assert params.gas_for(TxKind.TOKEN_MINT) == DEFAULT_GAS[TxKind.TOKEN_MINT]
    assert params.min_fee(TxKind.TRANSFER) == 5 * 10**9  # the default min_gas_price is 1e9


def test_integer_amounts_are_accepted_on_input():
    obj = json.loads(doc())
    obj["accounts"][0]["balances"]["QNX"] = 12
    assert Genesis.from_json(json.dumps(obj)).accounts[0].balances["QNX"] == 12


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        doc(chain_id="bad chain id"),
        doc(validators=[]),
        doc(genesis_time_ms=1.5),
        doc(extra_field=1),
        doc(params={"max_block_txs": 0}),
        doc(params={"gas": {"teleport": 1}}),
        doc(params={"min_gas_price": 1.0}),
        doc(tokens=[{"symbol": "QNX", "name": "again", "decimals": 18, "issuer": address_to_text(A.address)}]),
        doc(tokens=[{"symbol": "usd", "name": "x", "decimals": 6, "issuer": address_to_text(A.address)}]),
        doc(accounts=[{"address": address_to_text(A.address), "balances": {"USD": "1"}}]),
        doc(accounts=[{"address": address_to_text(A.address)[:-1] + "x", "balances": {}}]),
        doc(accounts=[{"address": address_to_text(A.address), "balances": {"QNX": "-1"}}]),
        doc(accounts=[{"address": address_to_text(A.address), "balances": {"QNX": "1.5"}}]),
        doc(validators=[{"name": "v", "pubkey": "0x1234", "power": 1}]),
        doc(validators=[{"name": "v", "pubkey": "0x" + A.public_key.hex(), "power": 0}]),
    ],
)
def test_invalid_documents_are_refused(text):
    with pytest.raises(MalformedGenesis):
        Genesis.from_json(text)


def test_duplicates_and_supply_overflow_are_refused():
    v = GenesisValidator("v", A.public_key, 1)
    with pytest.raises(MalformedGenesis, match="duplicate validator"):
        Genesis("c", 0, (v, GenesisValidator("w", A.public_key, 2)))
    with pytest.raises(MalformedGenesis, match="duplicate account"):
        Genesis("c", 0, (v,), (), (GenesisAccount(A.address, {}), GenesisAccount(A.address, {})))
    with pytest.raises(MalformedGenesis, match="supply"):
        Genesis(
            "c", 0, (v,), (), (GenesisAccount(A.address, {"QNX": MAX_AMOUNT}), GenesisAccount(B.address, {"QNX": 1}))
        )


def test_params_invariants():
    with pytest.raises(MalformedGenesis):
        Params(max_tx_bytes=3 * 1024 * 1024)  # larger than half a block
    with pytest.raises(MalformedGenesis):
        Params(gas={TxKind.TRANSFER: 1})  # every kind needs a gas cost
