"""Helpers for tests (state's own and other packages'): deterministic keys and chains.

Keys come from fixed seeds, never from randomness, so every test run and
every node in a test agrees on them.  Not used by the node at runtime.
"""

from __future__ import annotations

from typing import Iterable

from state.amounts import QNX
from state.crypto import PrivateKey, sha256
from state.genesis import Genesis, GenesisAccount, GenesisToken, GenesisValidator, Params
from state.types import SignedTransaction, TokenCreate, TokenMint, Transaction, Transfer, TxKind

TEST_CHAIN_ID = "qenex-test"
TEST_GENESIS_TIME_MS = 1_700_000_000_000
ONE_QNX = 10**18


def dev_key(label: str | int) -> PrivateKey:
    """A deterministic key: the same label always gives the same key."""
    return PrivateKey(sha256(f"qenex test key {label}".encode()))


def make_genesis(
    *,
    validators: Iterable[PrivateKey] = (),
    funded: Iterable[PrivateKey] = (),
    balance: int = 1_000 * ONE_QNX,
    tokens: Iterable[GenesisToken] = (),
    extra_balances: dict[bytes, dict[str, int]] | None = None,
    params: Params | None = None,
    chain_id: str = TEST_CHAIN_ID,
    genesis_time_ms: int = TEST_GENESIS_TIME_MS,
) -> Genesis:
    validators = tuple(validators) or (dev_key("validator-0"),)
    balances: dict[bytes, dict[str, int]] = {k.address: {QNX: balance} for k in funded}
    for address, extra in (extra_balances or {}).items():
        balances.setdefault(address, {}).update(extra)
    return Genesis(
        chain_id=chain_id,
        genesis_time_ms=genesis_time_ms,
        validators=tuple(GenesisValidator(f"v{i}", k.public_key, 10) for i, k in enumerate(validators)),
        tokens=tuple(tokens),
        accounts=tuple(GenesisAccount(a, b) for a, b in balances.items()),
        params=params or Params(),
    )


def transfer(
    key: PrivateKey,
    nonce: int,
    to: bytes,
    amount: int,
    *,
    token: str = QNX,
    fee: int = 1000,
    chain_id: str = TEST_CHAIN_ID,
) -> SignedTransaction:
    tx = Transaction(chain_id, TxKind.TRANSFER, key.public_key, nonce, fee, Transfer(to, token, amount))
    return tx.sign(key)


def token_create(
    key: PrivateKey,
    nonce: int,
    symbol: str,
    supply: int,
    *,
    decimals: int = 6,
    fee: int = 50_000,
    chain_id: str = TEST_CHAIN_ID,
) -> SignedTransaction:
    payload = TokenCreate(symbol, f"{symbol} token", decimals, supply)
    return Transaction(chain_id, TxKind.TOKEN_CREATE, key.public_key, nonce, fee, payload).sign(key)


def token_mint(
    key: PrivateKey,
    nonce: int,
    symbol: str,
    to: bytes,
    amount: int,
    *,
    fee: int = 2000,
    chain_id: str = TEST_CHAIN_ID,
) -> SignedTransaction:
    payload = TokenMint(symbol, to, amount)
    return Transaction(chain_id, TxKind.TOKEN_MINT, key.public_key, nonce, fee, payload).sign(key)
