"""Helpers for tests (state's own and other packages'): deterministic keys and chains.

Keys come from fixed seeds, never from randomness, so every test run and
every node in a test agrees on them.  Transactions carry their kind's minimum
fee under the default Params unless a fee is given.  Not used by the node at runtime.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from state.abc import CommitVerifier
from state.amounts import QNX
from state.codec import decode, encode
from state.crypto import PrivateKey, sha256
from state.errors import DecodeError, InvalidCommit
from state.genesis import Genesis, GenesisAccount, GenesisToken, GenesisValidator, Params
from state.payloads import CONTRACT_KINDS, TokenCreate, TokenMint, Transfer, TxKind
from state.transactions import SignedTransaction, Transaction

if TYPE_CHECKING:
    from state.app import Application, BlockResult
    from state.blocks import Block
    from state.validators import ValidatorSet

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
    fee: int | None = None,
    chain_id: str = TEST_CHAIN_ID,
) -> SignedTransaction:
    fee = Params().min_fee(TxKind.TRANSFER) if fee is None else fee
    tx = Transaction(chain_id, TxKind.TRANSFER, key.public_key, nonce, fee, Transfer(to, token, amount))
    return tx.sign(key)


def token_create(
    key: PrivateKey,
    nonce: int,
    symbol: str,
    supply: int,
    *,
    decimals: int = 6,
    fee: int | None = None,
    chain_id: str = TEST_CHAIN_ID,
) -> SignedTransaction:
    payload = TokenCreate(symbol, f"{symbol} token", decimals, supply)
    fee = Params().min_fee(TxKind.TOKEN_CREATE) if fee is None else fee
    return Transaction(chain_id, TxKind.TOKEN_CREATE, key.public_key, nonce, fee, payload).sign(key)


def token_mint(
    key: PrivateKey,
    nonce: int,
    symbol: str,
    to: bytes,
    amount: int,
    *,
    fee: int | None = None,
    chain_id: str = TEST_CHAIN_ID,
) -> SignedTransaction:
    payload = TokenMint(symbol, to, amount)
    fee = Params().min_fee(TxKind.TOKEN_MINT) if fee is None else fee
    return Transaction(chain_id, TxKind.TOKEN_MINT, key.public_key, nonce, fee, payload).sign(key)


def signed(key: PrivateKey, nonce: int, payload: object, *, fee: int | None = None,
           chain_id: str = TEST_CHAIN_ID, params: Params | None = None) -> SignedTransaction:
    """Sign any payload with its kind's minimum fee (under ``params``, default Params()) unless ``fee`` is given."""
    kind = payload.KIND  # type: ignore[attr-defined]
    if fee is None:
        fee = (params or Params()).min_tx_fee(kind, payload) if kind in CONTRACT_KINDS else (params or Params()).min_fee(kind)
    return Transaction(chain_id, kind, key.public_key, nonce, fee, payload).sign(key)  # type: ignore[arg-type]


def stub_cert(height: int, block_hash: bytes) -> bytes:
    """A stand-in commit certificate for state's own tests (``StubCommitVerifier`` accepts it)."""
    return encode(["test-cert", height, bytes(block_hash)])


class StubCommitVerifier(CommitVerifier):
    """Accepts exactly ``stub_cert(height, block_hash)``: state's tests check a
    block's last_commit without consensus/ (the node uses consensus/'s)."""


    def verify_commit(self, chain_id: str, validators: "ValidatorSet", height: int, block_hash: bytes,
                      commit: bytes) -> None:
        try:
            got = decode(commit)
        except DecodeError as exc:
            raise InvalidCommit(f"not a test certificate: {exc}") from exc
        if got != ["test-cert", height, bytes(block_hash)]:
            raise InvalidCommit(f"test certificate {got!r} does not certify ({height}, 0x{bytes(block_hash).hex()[:16]})")


STUB_VERIFIER = StubCommitVerifier()


class Chain:
    """An Application driven block by block, as a single validator would (for tests and benchmarks).

    Block times advance by ``block_ms`` per block from the genesis time.
    """

    def __init__(self, app: "Application", proposer: PrivateKey, *, block_ms: int = 1000) -> None:
        self.app = app
        self.proposer = proposer
        self.block_ms = block_ms
        self.nonces: dict[bytes, int] = {}

    def next_nonce(self, key: PrivateKey) -> int:
        nonce = self.nonces.get(key.address, self.app.account(key.address).nonce)
        self.nonces[key.address] = nonce + 1
        return nonce

    def tx(self, key: PrivateKey, payload: object, **kw: object) -> SignedTransaction:
        return signed(key, self.next_nonce(key), payload, chain_id=self.app.chain_id, params=self.app.params, **kw)  # type: ignore[arg-type]

    def block(self, txs: Iterable[SignedTransaction] = (), *, time_ms: int | None = None,
              evidence: Iterable[bytes] = ()) -> tuple["Block", "BlockResult"]:
        """Build and commit one block; its last_commit is the stored ``stub_cert`` of its parent."""
        app = self.app
        last_commit = b"" if app.height == 0 else (app.get_commit_cert(app.height) or b"")
        when = time_ms if time_ms is not None else app.last_time_ms + self.block_ms
        block, result = app.build_block(list(txs), proposer=self.proposer.address, time_ms=when,
                                        last_commit=last_commit, evidence=evidence)
        app.commit_block(block, result, stub_cert(block.height, block.hash))
        self.nonces.clear()
        return block, result
