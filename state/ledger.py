"""Typed state records and a write overlay over the store.

``Overlay`` buffers writes over a reader; a child overlay gives a
transaction's effect its own layer, merged on success and dropped on failure.
``Ledger`` reads and writes typed records (nonces, balances, tokens,
validators) through any reader or overlay, with checked arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from state import keys
from state.abc import KVReader, KVStore
from state.amounts import MAX_AMOUNT
from state.codec import decode, decode_uint, encode, encode_uint
from state.crypto import Address, address_of
from state.errors import BalanceOverflow, DecodeError, InsufficientBalance, StateInvariantBroken

ACCOUNT_VERSION = 1
TOKEN_VERSION = 1
VALIDATOR_VERSION = 1


@dataclass(frozen=True, slots=True)
class Account:
    nonce: int
    balances: dict[str, int]  # symbol -> base units, sorted by symbol, no zero entries (a fresh copy)


@dataclass(frozen=True, slots=True)
class TokenInfo:
    symbol: str
    name: str
    decimals: int
    issuer: Address
    supply: int

    def to_wire(self) -> list[Any]:
        return [TOKEN_VERSION, self.symbol, self.name, self.decimals, self.issuer, self.supply]


@dataclass(frozen=True, slots=True)
class ValidatorInfo:
    name: str
    pubkey: bytes
    power: int

    @property
    def address(self) -> Address:
        return address_of(self.pubkey)

    def to_wire(self) -> list[Any]:
        return [VALIDATOR_VERSION, self.pubkey, self.power, self.name]


def _stored_uint(key: bytes, raw: bytes) -> int:
    """A balance (or a nonce's body) we wrote ourselves: state.codec's fast path for integers."""
    try:
        return decode_uint(raw)
    except DecodeError as exc:
        raise StateInvariantBroken(f"corrupt value under key 0x{key.hex()}: {exc}") from exc


# An account record is [ACCOUNT_VERSION, nonce]: a fixarray of two, the version, then the nonce.
_ACCOUNT_HEAD = bytes((0x92, ACCOUNT_VERSION))


def _stored(key: bytes, raw: bytes, length: int | None = None) -> Any:
    """Decode a value we wrote ourselves; anything odd means a corrupt store."""
    try:
        value = decode(raw)
    except DecodeError as exc:
        raise StateInvariantBroken(f"corrupt value under key 0x{key.hex()}: {exc}") from exc
    if length is not None and (not isinstance(value, list) or len(value) != length or value[0] != 1):
        raise StateInvariantBroken(f"value under key 0x{key.hex()} has the wrong shape: {value!r}")
    return value


class _Empty(KVReader):
    def get(self, key: bytes) -> bytes | None:
        return None


EMPTY = _Empty()


class Overlay(KVReader):
    """Buffered writes over ``parent``; None records a delete."""

    def __init__(self, parent: KVReader) -> None:
        self._parent = parent
        self.writes: dict[bytes, bytes | None] = {}

    def get(self, key: bytes) -> bytes | None:
        if key in self.writes:
            return self.writes[key]
        return self._parent.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        self.writes[key] = value

    def child(self) -> "Overlay":
        return Overlay(self)

    def merge_into(self, parent: "Overlay") -> None:
        if parent is not self._parent:
            raise StateInvariantBroken("overlay merged into something other than its parent")
        parent.writes.update(self.writes)

    def changes(self, base: KVReader) -> list[tuple[bytes, bytes | None]]:
        """Writes that differ from ``base``, sorted by key: the canonical write set."""
        return [(k, v) for k, _, v in self.changes_with_prior(base)]

    def changes_with_prior(self, base: KVReader) -> list[tuple[bytes, bytes | None, bytes | None]]:
        """``changes(base)`` as (key, value in ``base``, new value): what state.history records."""
        out = []
        for key in sorted(self.writes):
            value, prior = self.writes[key], base.get(key)
            if prior != value:
                out.append((key, prior, value))
        return out


class Ledger:
    """Typed access to state records through a reader (and, to write, an Overlay)."""

    def __init__(self, store: KVReader) -> None:
        self.store = store

    def _put(self, key: bytes, value: bytes | None) -> None:
        if not isinstance(self.store, Overlay):
            raise StateInvariantBroken("state writes go through an Overlay")
        self.store.put(key, value)

    # -- nonces and balances ----------------------------------------------

    def nonce(self, address: bytes) -> int:
        key = keys.account_key(address)
        raw = self.store.get(key)
        if raw is None:
            return 0
        if raw[:2] == _ACCOUNT_HEAD:
            return _stored_uint(key, raw[2:])
        return _stored(key, raw, 2)[1]  # type: ignore[no-any-return]  # raises: the wrong shape

    def set_nonce(self, address: bytes, nonce: int) -> None:
        self._put(keys.account_key(address), _ACCOUNT_HEAD + encode_uint(nonce) if nonce else None)

    def balance(self, address: bytes, symbol: str) -> int:
        key = keys.balance_key(address, symbol)
        raw = self.store.get(key)
        return 0 if raw is None else _stored_uint(key, raw)

    def set_balance(self, address: bytes, symbol: str, amount: int) -> None:
        if not 0 <= amount <= MAX_AMOUNT:
            raise StateInvariantBroken(f"balance {amount} of {symbol} is outside [0, {MAX_AMOUNT}]")
        self._put(keys.balance_key(address, symbol), encode_uint(amount) if amount else None)

    def credit(self, address: bytes, symbol: str, amount: int) -> None:
        new = self.balance(address, symbol) + amount
        if new > MAX_AMOUNT:
            raise BalanceOverflow(f"{symbol} balance", new, MAX_AMOUNT)
        self.set_balance(address, symbol, new)

    def debit(self, address: bytes, symbol: str, amount: int) -> None:
        have = self.balance(address, symbol)
        if have < amount:
            raise InsufficientBalance(symbol, have, amount)
        self.set_balance(address, symbol, have - amount)

    # -- tokens and validators --------------------------------------------

    def token(self, symbol: str) -> TokenInfo | None:
        key = keys.token_key(symbol)
        raw = self.store.get(key)
        if raw is None:
            return None
        _, sym, name, decimals, issuer, supply = _stored(key, raw, 6)
        return TokenInfo(sym, name, decimals, Address(issuer), supply)

    def put_token(self, info: TokenInfo) -> None:
        if not 0 <= info.supply <= MAX_AMOUNT:
            raise StateInvariantBroken(f"supply {info.supply} of {info.symbol} is outside [0, {MAX_AMOUNT}]")
        self._put(keys.token_key(info.symbol), encode(info.to_wire()))

    def put_validator(self, info: ValidatorInfo) -> None:
        self._put(keys.validator_key(info.address), encode(info.to_wire()))


# -- whole-store reads (committed state only) -----------------------------------


def read_account(kv: KVStore, address: bytes) -> Account:
    prefix = keys.balance_prefix(address)
    balances = {k[len(prefix) :].decode(): _stored_uint(k, v) for k, v in kv.iterate(prefix)}
    return Account(Ledger(kv).nonce(address), dict(sorted(balances.items())))


def read_tokens(kv: KVStore) -> list[TokenInfo]:
    ledger = Ledger(kv)
    out = []
    for key, _ in kv.iterate(keys.TOKEN):
        info = ledger.token(key[len(keys.TOKEN) :].decode())
        assert info is not None
        out.append(info)
    return out
