"""The chain's data model: transactions, blocks, receipts.

Every struct encodes (``to_wire``) as a fixed-order array through the
canonical codec.  Top-level structs (Transaction, SignedTransaction,
BlockHeader, Block, Receipt) lead with a version int; payloads sit inside a
versioned transaction whose ``kind`` fixes their layout, so they carry none.

Objects validate their fields on construction, so a decoded value is a valid
value: no invalid Transaction or Block exists past the decoding boundary.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any, ClassVar, Iterable, NewType, Sequence, Union

from state.amounts import MAX_AMOUNT, MAX_DECIMALS, QNX, QNX_DECIMALS, format_amount, parse_amount
from state.codec import DEFAULT_MAX_BYTES, decode, encode
from state.crypto import (
    ADDRESS_LEN,
    DOMAIN_TX,
    HASH_LEN,
    PUBKEY_LEN,
    SIGNATURE_LEN,
    Address,
    Hash,
    PrivateKey,
    address_of,
    domain_digest,
    sha256,
    verify,
)
from state.errors import (
    AmountOutOfRange,
    IdenticalTokens,
    InvalidKey,
    InvalidSymbol,
    MalformedBlock,
    MalformedTransaction,
    TxTooLarge,
    UnknownTxKind,
    WrongLength,
)
from state.merkle import merkle_root

__all__ = [
    "MAX_AMOUNT",
    "MAX_DECIMALS",
    "QNX",
    "QNX_DECIMALS",
    "format_amount",
    "parse_amount",
    "Height",
    "TxKind",
    "Transfer",
    "TokenCreate",
    "TokenMint",
    "PoolCreate",
    "PoolAdd",
    "PoolRemove",
    "Swap",
    "SwapRoute",
    "FlashBorrow",
    "FlashRepay",
    "BatchOp",
    "BatchOpKind",
    "Batch",
    "RewardsClaim",
    "SetRewardRate",
    "pool_id",
    "Payload",
    "Transaction",
    "SignedTransaction",
    "BlockHeader",
    "Block",
    "Receipt",
    "ReceiptStatus",
    "tx_root",
    "check_symbol",
    "check_chain_id",
    "EMPTY_COMMIT",
]

Height = NewType("Height", int)

TX_VERSION = 1
HEADER_VERSION = 1
BLOCK_VERSION = 1
RECEIPT_VERSION = 1

MAX_UINT64 = 2**64 - 1
MAX_CHAIN_ID_LEN = 64
MAX_NAME_LEN = 64
MAX_REASON_LEN = 512
# Hard ceiling for a single encoded transaction, whatever the chain params say.
MAX_TX_BYTES_LIMIT = 1024 * 1024
# last_commit of block 1: there is no previous block to certify.
EMPTY_COMMIT = b""

_SYMBOL = re.compile(r"[A-Z0-9]{1,12}")
_CHAIN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class TxKind(IntEnum):
    TRANSFER = 1
    TOKEN_CREATE = 2
    TOKEN_MINT = 3
    # reserved: STAKE = 4, UNSTAKE = 5
    POOL_CREATE = 10
    POOL_ADD = 11
    POOL_REMOVE = 12
    SWAP = 13
    SWAP_ROUTE = 14
    BATCH = 15
    REWARDS_CLAIM = 16
    SET_REWARD_RATE = 17


class BatchOpKind(IntEnum):
    """Operations an atomic batch may hold; the tx kinds keep their numbers."""

    TRANSFER = 1
    POOL_ADD = 11
    POOL_REMOVE = 12
    SWAP = 13
    SWAP_ROUTE = 14
    FLASH_BORROW = 20
    FLASH_REPAY = 21


# -- field checks -------------------------------------------------------------


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _uint(name: str, value: object, low: int = 0, high: int = MAX_AMOUNT) -> None:
    if not _is_int(value):
        raise MalformedTransaction(f"{name} must be an integer, got {type(value).__name__}", field=name, value=value)
    if not low <= value <= high:  # type: ignore[operator]
        raise AmountOutOfRange(name, value, low, high)


def _bytes(name: str, value: object, length: int) -> None:
    if not isinstance(value, bytes):
        raise MalformedTransaction(f"{name} must be bytes, got {type(value).__name__}", field=name, value=value)
    if len(value) != length:
        raise WrongLength(name, len(value), length)


def _text(name: str, value: object, max_len: int) -> None:
    if not isinstance(value, str):
        raise MalformedTransaction(f"{name} must be text, got {type(value).__name__}", field=name, value=value)
    if not 1 <= len(value) <= max_len or not value.isprintable():
        raise MalformedTransaction(
            f"{name} {value!r} must be 1-{max_len} printable characters", field=name, value=value
        )


def check_symbol(symbol: object) -> str:
    if not isinstance(symbol, str) or _SYMBOL.fullmatch(symbol) is None:
        raise InvalidSymbol(symbol)
    return symbol


def check_chain_id(chain_id: object) -> str:
    if not isinstance(chain_id, str) or _CHAIN_ID.fullmatch(chain_id) is None:
        raise MalformedTransaction(
            f"chain id {chain_id!r} must be 1-{MAX_CHAIN_ID_LEN} characters of A-Z a-z 0-9 . _ -",
            field="chain_id",
            value=chain_id,
        )
    return chain_id


def _array(name: str, wire: object, length: int, error: type[Exception] = MalformedTransaction) -> list[Any]:
    if not isinstance(wire, list) or len(wire) != length:
        got = f"array of {len(wire)}" if isinstance(wire, list) else type(wire).__name__
        raise error(f"{name} must be an array of {length} fields, got {got}")
    return wire


# -- payloads -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transfer:
    """Move ``amount`` base units of ``token`` from the sender to ``to``."""

    KIND: ClassVar[TxKind] = TxKind.TRANSFER
    to: Address
    token: str
    amount: int

    def __post_init__(self) -> None:
        _bytes("to", self.to, ADDRESS_LEN)
        check_symbol(self.token)
        _uint("amount", self.amount, 1)

    def to_wire(self) -> list[Any]:
        return [self.to, self.token, self.amount]

    @classmethod
    def from_wire(cls, wire: object) -> "Transfer":
        return cls(*_array("transfer payload", wire, 3))


@dataclass(frozen=True, slots=True)
class TokenCreate:
    """Create token ``symbol``; the sender becomes its issuer and receives ``initial_supply``."""

    KIND: ClassVar[TxKind] = TxKind.TOKEN_CREATE
    symbol: str
    name: str
    decimals: int
    initial_supply: int

    def __post_init__(self) -> None:
        check_symbol(self.symbol)
        _text("name", self.name, MAX_NAME_LEN)
        _uint("decimals", self.decimals, 0, MAX_DECIMALS)
        _uint("initial_supply", self.initial_supply)

    def to_wire(self) -> list[Any]:
        return [self.symbol, self.name, self.decimals, self.initial_supply]

    @classmethod
    def from_wire(cls, wire: object) -> "TokenCreate":
        return cls(*_array("token create payload", wire, 4))


@dataclass(frozen=True, slots=True)
class TokenMint:
    """Mint ``amount`` of ``symbol`` to ``to``; only the token's issuer may."""

    KIND: ClassVar[TxKind] = TxKind.TOKEN_MINT
    symbol: str
    to: Address
    amount: int

    def __post_init__(self) -> None:
        check_symbol(self.symbol)
        _bytes("to", self.to, ADDRESS_LEN)
        _uint("amount", self.amount, 1)

    def to_wire(self) -> list[Any]:
        return [self.symbol, self.to, self.amount]

    @classmethod
    def from_wire(cls, wire: object) -> "TokenMint":
        return cls(*_array("token mint payload", wire, 3))


# -- pool payloads (issue #3) -----------------------------------------------------

MAX_PATH_LEN = 5  # tokens in a multi-hop path: at most 4 hops
MAX_BATCH_OPS = 16


def pool_id(token_a: str, token_b: str) -> str:
    """The id of the one pool of an unordered pair: the two symbols sorted, joined by ``/``."""
    if token_a == token_b:
        raise IdenticalTokens(token_a)
    first, second = sorted((token_a, token_b))
    return f"{first}/{second}"


def _pair(token_a: object, token_b: object) -> None:
    check_symbol(token_a)
    check_symbol(token_b)
    if token_a == token_b:
        raise IdenticalTokens(token_a)  # type: ignore[arg-type]


def _deadline(value: object) -> None:
    _uint("deadline", value, 1, MAX_UINT64)


@dataclass(frozen=True, slots=True)
class PoolCreate:
    """Create the pool of ``token_a``/``token_b`` with the sender's first deposit."""

    KIND: ClassVar[TxKind] = TxKind.POOL_CREATE
    token_a: str
    token_b: str
    amount_a: int
    amount_b: int
    min_shares: int

    def __post_init__(self) -> None:
        _pair(self.token_a, self.token_b)
        _uint("amount_a", self.amount_a, 1)
        _uint("amount_b", self.amount_b, 1)
        _uint("min_shares", self.min_shares)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)

    def to_wire(self) -> list[Any]:
        return [self.token_a, self.token_b, self.amount_a, self.amount_b, self.min_shares]

    @classmethod
    def from_wire(cls, wire: object) -> "PoolCreate":
        return cls(*_array("pool create payload", wire, 5))


@dataclass(frozen=True, slots=True)
class PoolAdd:
    """Deposit up to ``amount_a`` and ``amount_b`` at the pool's ratio; at least ``min_shares`` or fail."""

    KIND: ClassVar[TxKind] = TxKind.POOL_ADD
    token_a: str
    token_b: str
    amount_a: int
    amount_b: int
    min_shares: int

    def __post_init__(self) -> None:
        _pair(self.token_a, self.token_b)
        _uint("amount_a", self.amount_a, 1)
        _uint("amount_b", self.amount_b, 1)
        _uint("min_shares", self.min_shares)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)

    def to_wire(self) -> list[Any]:
        return [self.token_a, self.token_b, self.amount_a, self.amount_b, self.min_shares]

    @classmethod
    def from_wire(cls, wire: object) -> "PoolAdd":
        return cls(*_array("pool add payload", wire, 5))


@dataclass(frozen=True, slots=True)
class PoolRemove:
    """Burn ``shares`` for a pro-rata withdrawal of at least ``min_a`` and ``min_b``."""

    KIND: ClassVar[TxKind] = TxKind.POOL_REMOVE
    token_a: str
    token_b: str
    shares: int
    min_a: int
    min_b: int

    def __post_init__(self) -> None:
        _pair(self.token_a, self.token_b)
        _uint("shares", self.shares, 1)
        _uint("min_a", self.min_a)
        _uint("min_b", self.min_b)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)

    def to_wire(self) -> list[Any]:
        return [self.token_a, self.token_b, self.shares, self.min_a, self.min_b]

    @classmethod
    def from_wire(cls, wire: object) -> "PoolRemove":
        return cls(*_array("pool remove payload", wire, 5))


@dataclass(frozen=True, slots=True)
class Swap:
    """Sell exactly ``amount_in`` of ``token_in`` for at least ``min_out`` of ``token_out``, by block ``deadline``."""

    KIND: ClassVar[TxKind] = TxKind.SWAP
    token_in: str
    token_out: str
    amount_in: int
    min_out: int
    deadline: int

    def __post_init__(self) -> None:
        _pair(self.token_in, self.token_out)
        _uint("amount_in", self.amount_in, 1)
        _uint("min_out", self.min_out)
        _deadline(self.deadline)

    @property
    def path(self) -> tuple[str, ...]:
        return (self.token_in, self.token_out)

    def to_wire(self) -> list[Any]:
        return [self.token_in, self.token_out, self.amount_in, self.min_out, self.deadline]

    @classmethod
    def from_wire(cls, wire: object) -> "Swap":
        return cls(*_array("swap payload", wire, 5))


@dataclass(frozen=True, slots=True)
class SwapRoute:
    """Multi-hop exact-in swap along ``path`` (token symbols; each adjacent pair is a pool)."""

    KIND: ClassVar[TxKind] = TxKind.SWAP_ROUTE
    path: tuple[str, ...]
    amount_in: int
    min_out: int
    deadline: int

    def __post_init__(self) -> None:
        if not isinstance(self.path, (list, tuple)) or not 2 <= len(self.path) <= MAX_PATH_LEN:
            raise MalformedTransaction(
                f"path must list 2-{MAX_PATH_LEN} token symbols, got {self.path!r}", field="path", value=self.path
            )
        path = tuple(self.path)
        for a, b in zip(path, path[1:]):
            _pair(a, b)
        if len(set(path)) != len(path):
            raise MalformedTransaction(f"path {'>'.join(path)} visits a token twice", field="path", value=path)
        object.__setattr__(self, "path", path)
        _uint("amount_in", self.amount_in, 1)
        _uint("min_out", self.min_out)
        _deadline(self.deadline)

    def to_wire(self) -> list[Any]:
        return [list(self.path), self.amount_in, self.min_out, self.deadline]

    @classmethod
    def from_wire(cls, wire: object) -> "SwapRoute":
        return cls(*_array("swap route payload", wire, 4))


@dataclass(frozen=True, slots=True)
class FlashBorrow:
    """Batch operation: borrow ``amount`` of ``token`` from the pool of ``token_a``/``token_b``.

    The batch must give back ``ceil(amount·1000/997)`` with FlashRepay
    operations before it ends; meanwhile the pool accepts no other operation.
    """

    token_a: str
    token_b: str
    token: str
    amount: int

    def __post_init__(self) -> None:
        _pair(self.token_a, self.token_b)
        if self.token not in (self.token_a, self.token_b):
            raise MalformedTransaction(
                f"flash token {self.token!r} is not in the pair {self.token_a}/{self.token_b}", field="token"
            )
        _uint("amount", self.amount, 1)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)

    def to_wire(self) -> list[Any]:
        return [self.token_a, self.token_b, self.token, self.amount]

    @classmethod
    def from_wire(cls, wire: object) -> "FlashBorrow":
        return cls(*_array("flash borrow op", wire, 4))


@dataclass(frozen=True, slots=True)
class FlashRepay:
    """Batch operation: pay ``amount`` of ``token`` back to the pool toward an outstanding flash loan."""

    token_a: str
    token_b: str
    token: str
    amount: int

    def __post_init__(self) -> None:
        _pair(self.token_a, self.token_b)
        if self.token not in (self.token_a, self.token_b):
            raise MalformedTransaction(
                f"flash token {self.token!r} is not in the pair {self.token_a}/{self.token_b}", field="token"
            )
        _uint("amount", self.amount, 1)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)

    def to_wire(self) -> list[Any]:
        return [self.token_a, self.token_b, self.token, self.amount]

    @classmethod
    def from_wire(cls, wire: object) -> "FlashRepay":
        return cls(*_array("flash repay op", wire, 4))


BATCH_OP_TYPES: dict[BatchOpKind, type] = {
    BatchOpKind.TRANSFER: Transfer,
    BatchOpKind.POOL_ADD: PoolAdd,
    BatchOpKind.POOL_REMOVE: PoolRemove,
    BatchOpKind.SWAP: Swap,
    BatchOpKind.SWAP_ROUTE: SwapRoute,
    BatchOpKind.FLASH_BORROW: FlashBorrow,
    BatchOpKind.FLASH_REPAY: FlashRepay,
}
_BATCH_OP_KIND = {t: k for k, t in BATCH_OP_TYPES.items()}

BatchOp = Union[Transfer, PoolAdd, PoolRemove, Swap, SwapRoute, FlashBorrow, FlashRepay]


@dataclass(frozen=True, slots=True)
class Batch:
    """An atomic list of operations: all succeed (and every flash loan is repaid) or none happen.

    Wire: ``[[[op_kind, op_payload], ...]]``.  Swaps inside carry their own deadline.
    """

    KIND: ClassVar[TxKind] = TxKind.BATCH
    ops: tuple[BatchOp, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.ops, (list, tuple)) or not 1 <= len(self.ops) <= MAX_BATCH_OPS:
            raise MalformedTransaction(f"a batch holds 1-{MAX_BATCH_OPS} operations", field="ops")
        for i, op in enumerate(self.ops):
            if type(op) not in _BATCH_OP_KIND:
                raise MalformedTransaction(f"batch operation {i} is a {type(op).__name__}", field="ops")
        object.__setattr__(self, "ops", tuple(self.ops))

    def to_wire(self) -> list[Any]:
        return [[[int(_BATCH_OP_KIND[type(op)]), op.to_wire()] for op in self.ops]]

    @classmethod
    def from_wire(cls, wire: object) -> "Batch":
        (ops_wire,) = _array("batch payload", wire, 1)
        if not isinstance(ops_wire, list):
            raise MalformedTransaction("batch ops must be an array", field="ops")
        ops = []
        for i, item in enumerate(ops_wire):
            kind, payload = _array(f"batch operation {i}", item, 2)
            try:
                op_kind = BatchOpKind(kind) if _is_int(kind) else None
            except ValueError:
                op_kind = None
            if op_kind is None:
                raise MalformedTransaction(f"batch operation {i} has unknown kind {kind!r}", field="ops", value=kind)
            ops.append(BATCH_OP_TYPES[op_kind].from_wire(payload))
        return cls(tuple(ops))


@dataclass(frozen=True, slots=True)
class RewardsClaim:
    """Pay the sender the liquidity-mining rewards accrued on its shares of a pool."""

    KIND: ClassVar[TxKind] = TxKind.REWARDS_CLAIM
    token_a: str
    token_b: str

    def __post_init__(self) -> None:
        _pair(self.token_a, self.token_b)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)

    def to_wire(self) -> list[Any]:
        return [self.token_a, self.token_b]

    @classmethod
    def from_wire(cls, wire: object) -> "RewardsClaim":
        return cls(*_array("rewards claim payload", wire, 2))


@dataclass(frozen=True, slots=True)
class SetRewardRate:
    """Set a pool's liquidity-mining rate in QNX base units per block; only ``params.reward_authority`` may."""

    KIND: ClassVar[TxKind] = TxKind.SET_REWARD_RATE
    token_a: str
    token_b: str
    rate: int

    def __post_init__(self) -> None:
        _pair(self.token_a, self.token_b)
        _uint("rate", self.rate)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)

    def to_wire(self) -> list[Any]:
        return [self.token_a, self.token_b, self.rate]

    @classmethod
    def from_wire(cls, wire: object) -> "SetRewardRate":
        return cls(*_array("set reward rate payload", wire, 3))


Payload = Union[
    Transfer, TokenCreate, TokenMint, PoolCreate, PoolAdd, PoolRemove, Swap, SwapRoute, Batch, RewardsClaim,
    SetRewardRate,
]
PAYLOAD_TYPES: dict[TxKind, type] = {
    TxKind.TRANSFER: Transfer,
    TxKind.TOKEN_CREATE: TokenCreate,
    TxKind.TOKEN_MINT: TokenMint,
    TxKind.POOL_CREATE: PoolCreate,
    TxKind.POOL_ADD: PoolAdd,
    TxKind.POOL_REMOVE: PoolRemove,
    TxKind.SWAP: Swap,
    TxKind.SWAP_ROUTE: SwapRoute,
    TxKind.BATCH: Batch,
    TxKind.REWARDS_CLAIM: RewardsClaim,
    TxKind.SET_REWARD_RATE: SetRewardRate,
}


def _tx_kind(value: object) -> TxKind:
    if not _is_int(value):
        raise UnknownTxKind(value)
    try:
        return TxKind(value)
    except ValueError:
        raise UnknownTxKind(value) from None


# -- transactions -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transaction:
    chain_id: str
    kind: TxKind
    sender_pubkey: bytes
    nonce: int
    fee: int
    payload: Payload
    _sender: Address = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_chain_id(self.chain_id)
        kind = _tx_kind(self.kind)
        object.__setattr__(self, "kind", kind)
        _bytes("sender_pubkey", self.sender_pubkey, PUBKEY_LEN)
        _uint("nonce", self.nonce, 0, MAX_UINT64)
        _uint("fee", self.fee)
        expected = PAYLOAD_TYPES[kind]
        if type(self.payload) is not expected:
            raise MalformedTransaction(
                f"kind {kind.name} needs a {expected.__name__} payload, got {type(self.payload).__name__}",
                field="payload",
                value=type(self.payload).__name__,
            )
        object.__setattr__(self, "_sender", address_of(self.sender_pubkey))

    @property
    def sender(self) -> Address:
        return self._sender

    def to_wire(self) -> list[Any]:
        return [
            TX_VERSION,
            self.chain_id,
            int(self.kind),
            self.sender_pubkey,
            self.nonce,
            self.fee,
            self.payload.to_wire(),
        ]

    @classmethod
    def from_wire(cls, wire: object) -> "Transaction":
        version, chain_id, kind, sender_pubkey, nonce, fee, payload = _array("transaction", wire, 7)
        if version != TX_VERSION or not _is_int(version):
            raise MalformedTransaction(f"unsupported transaction version {version!r}", field="version", value=version)
        kind = _tx_kind(kind)
        return cls(chain_id, kind, sender_pubkey, nonce, fee, PAYLOAD_TYPES[kind].from_wire(payload))

    def signing_digest(self) -> Hash:
        return domain_digest(DOMAIN_TX, encode(self.to_wire()))

    def sign(self, key: PrivateKey) -> "SignedTransaction":
        if key.public_key != self.sender_pubkey:
            raise InvalidKey("the signing key does not match the transaction's sender_pubkey")
        return SignedTransaction(self, key.sign(self.signing_digest()))


class _VerifiedHashes:
    """A bounded set of hashes of transactions whose signature verified."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._recent: dict[bytes, None] = {}
        self._older: dict[bytes, None] = {}

    def seen(self, tx_hash: bytes) -> bool:
        return tx_hash in self._recent or tx_hash in self._older

    def add(self, tx_hash: bytes) -> None:
        # Two generations: when the recent one fills, it becomes the older one.
        if len(self._recent) >= self._capacity:
            self._older, self._recent = self._recent, {}
        self._recent[tx_hash] = None


_VERIFIED = _VerifiedHashes(capacity=200_000)


@dataclass(frozen=True, slots=True)
class SignedTransaction:
    tx: Transaction
    signature: bytes
    _encoded: bytes = field(init=False, repr=False, compare=False)
    _hash: Hash = field(init=False, repr=False, compare=False)
    _sig_ok: list[bool] = field(init=False, repr=False, compare=False)  # one-slot cache

    def __post_init__(self) -> None:
        if not isinstance(self.tx, Transaction):
            raise MalformedTransaction(f"tx must be a Transaction, got {type(self.tx).__name__}", field="tx")
        _bytes("signature", self.signature, SIGNATURE_LEN)
        encoded = encode([self.tx.to_wire(), self.signature])
        object.__setattr__(self, "_encoded", encoded)
        object.__setattr__(self, "_hash", sha256(encoded))
        object.__setattr__(self, "_sig_ok", [])

    def to_wire(self) -> list[Any]:
        return [self.tx.to_wire(), self.signature]

    @classmethod
    def from_wire(cls, wire: object) -> "SignedTransaction":
        tx_wire, signature = _array("signed transaction", wire, 2)
        return cls(Transaction.from_wire(tx_wire), signature)

    def encode(self) -> bytes:
        return self._encoded

    @property
    def size(self) -> int:
        return len(self._encoded)

    @property
    def hash(self) -> Hash:
        return self._hash

    def verify_signature(self) -> bool:
        """Ed25519 check of the signature over ``tx.signing_digest()``.

        Cached per object and, for valid signatures, process-wide by tx hash:
        the hash covers the body and the signature, so a hit means the very
        same bytes verified before (in the mempool, usually) and the answer
        cannot differ.  This is what keeps a validator from verifying every
        transaction twice.
        """
        if not self._sig_ok:
            ok = _VERIFIED.seen(self._hash) or verify(self.tx.sender_pubkey, self.tx.signing_digest(), self.signature)
            if ok:
                _VERIFIED.add(self._hash)
            self._sig_ok.append(ok)
        return self._sig_ok[0]

    @classmethod
    def decode(cls, data: bytes, *, max_bytes: int = MAX_TX_BYTES_LIMIT) -> "SignedTransaction":
        """Decode untrusted bytes; raises TxTooLarge, DecodeError or a MalformedTransaction subclass."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise MalformedTransaction(f"expected bytes, got {type(data).__name__}")
        if len(data) > max_bytes:
            raise TxTooLarge(len(data), max_bytes)
        return cls.from_wire(decode(data, max_bytes=max_bytes))


# -- blocks ---------------------------------------------------------------------


def _header_field(name: str, check: Any, *args: Any) -> None:
    try:
        check(name, *args)
    except MalformedTransaction as exc:
        raise MalformedBlock(f"header {exc}") from None


@dataclass(frozen=True, slots=True)
class BlockHeader:
    chain_id: str
    height: int
    time_ms: int
    prev_hash: bytes
    tx_root: bytes
    app_hash: bytes
    validators_hash: bytes
    proposer: Address
    last_commit_hash: bytes
    _hash: Hash = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            check_chain_id(self.chain_id)
        except MalformedTransaction as exc:
            raise MalformedBlock(f"header {exc}") from None
        _header_field("height", _uint, self.height, 1, MAX_UINT64)
        _header_field("time_ms", _uint, self.time_ms, 0, MAX_UINT64)
        for name in ("prev_hash", "tx_root", "app_hash", "validators_hash", "last_commit_hash"):
            _header_field(name, _bytes, getattr(self, name), HASH_LEN)
        _header_field("proposer", _bytes, self.proposer, ADDRESS_LEN)
        object.__setattr__(self, "_hash", sha256(encode(self.to_wire())))

    @property
    def hash(self) -> Hash:
        return self._hash

    def to_wire(self) -> list[Any]:
        return [
            HEADER_VERSION,
            self.chain_id,
            self.height,
            self.time_ms,
            self.prev_hash,
            self.tx_root,
            self.app_hash,
            self.validators_hash,
            self.proposer,
            self.last_commit_hash,
        ]

    @classmethod
    def from_wire(cls, wire: object) -> "BlockHeader":
        version, *fields = _array("block header", wire, 10, MalformedBlock)
        if version != HEADER_VERSION or not _is_int(version):
            raise MalformedBlock(f"unsupported block header version {version!r}")
        return cls(*fields)

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> "BlockHeader":
        return cls.from_wire(decode(data, max_bytes=4096))


@dataclass(frozen=True, slots=True)
class Block:
    """A header, its transactions, and the opaque commit certificate of the previous block.

    ``last_commit`` is produced and interpreted by consensus/ only; state/
    checks that ``header.last_commit_hash == sha256(last_commit)``.
    """

    header: BlockHeader
    txs: tuple[SignedTransaction, ...]
    last_commit: bytes
    _encoded: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.header, BlockHeader):
            raise MalformedBlock(f"header must be a BlockHeader, got {type(self.header).__name__}")
        txs = tuple(self.txs)
        for i, stx in enumerate(txs):
            if not isinstance(stx, SignedTransaction):
                raise MalformedBlock(f"tx {i} is a {type(stx).__name__}, not a SignedTransaction")
        object.__setattr__(self, "txs", txs)
        if not isinstance(self.last_commit, bytes):
            raise MalformedBlock(f"last_commit must be bytes, got {type(self.last_commit).__name__}")
        object.__setattr__(self, "_encoded", encode(self.to_wire()))

    @property
    def hash(self) -> Hash:
        return self.header.hash

    @property
    def height(self) -> int:
        return self.header.height

    @property
    def size(self) -> int:
        return len(self._encoded)

    def to_wire(self) -> list[Any]:
        return [BLOCK_VERSION, self.header.to_wire(), [stx.to_wire() for stx in self.txs], self.last_commit]

    def encode(self) -> bytes:
        return self._encoded

    @classmethod
    def from_wire(cls, wire: object) -> "Block":
        version, header, txs, last_commit = _array("block", wire, 4, MalformedBlock)
        if version != BLOCK_VERSION or not _is_int(version):
            raise MalformedBlock(f"unsupported block version {version!r}")
        if not isinstance(txs, list):
            raise MalformedBlock(f"block txs must be an array, got {type(txs).__name__}")
        stxs = []
        for i, tx_wire in enumerate(txs):
            try:
                stxs.append(SignedTransaction.from_wire(tx_wire))
            except MalformedTransaction as exc:
                raise MalformedBlock(f"tx {i}: {exc}") from exc
        return cls(BlockHeader.from_wire(header), tuple(stxs), last_commit)

    @classmethod
    def decode(cls, data: bytes, *, max_bytes: int = DEFAULT_MAX_BYTES) -> "Block":
        return cls.from_wire(decode(data, max_bytes=max_bytes))


# -- receipts ---------------------------------------------------------------------


class ReceiptStatus(StrEnum):
    OK = "ok"
    FAILED = "failed"


_STATUS_TO_WIRE = {ReceiptStatus.OK: 1, ReceiptStatus.FAILED: 0}
_STATUS_FROM_WIRE = {v: k for k, v in _STATUS_TO_WIRE.items()}


@dataclass(frozen=True, slots=True)
class Receipt:
    """Outcome of an included transaction.  ``reason`` is ``""`` when ok, else ``"<code>: <detail>"``."""

    tx_hash: Hash
    height: int
    index: int
    status: ReceiptStatus
    reason: str
    gas_used: int
    fee: int

    def __post_init__(self) -> None:
        try:
            _bytes("tx_hash", self.tx_hash, HASH_LEN)
            _uint("height", self.height, 1, MAX_UINT64)
            _uint("index", self.index, 0, MAX_UINT64)
            _uint("gas_used", self.gas_used, 0, MAX_UINT64)
            _uint("fee", self.fee)
            if not isinstance(self.reason, str) or len(self.reason) > MAX_REASON_LEN:
                raise MalformedTransaction(f"reason must be text of at most {MAX_REASON_LEN} characters")
            object.__setattr__(self, "status", ReceiptStatus(self.status))
        except (MalformedTransaction, ValueError) as exc:
            raise MalformedBlock(f"receipt {exc}") from None

    @property
    def ok(self) -> bool:
        return self.status is ReceiptStatus.OK

    def to_wire(self) -> list[Any]:
        return [
            RECEIPT_VERSION,
            self.tx_hash,
            self.height,
            self.index,
            _STATUS_TO_WIRE[self.status],
            self.reason,
            self.gas_used,
            self.fee,
        ]

    @classmethod
    def from_wire(cls, wire: object) -> "Receipt":
        version, tx_hash, height, index, status, reason, gas_used, fee = _array("receipt", wire, 8, MalformedBlock)
        if version != RECEIPT_VERSION or not _is_int(version):
            raise MalformedBlock(f"unsupported receipt version {version!r}")
        if not _is_int(status) or status not in _STATUS_FROM_WIRE:
            raise MalformedBlock(f"unknown receipt status {status!r}")
        return cls(tx_hash, height, index, _STATUS_FROM_WIRE[status], reason, gas_used, fee)

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @classmethod
    def decode(cls, data: bytes) -> "Receipt":
        return cls.from_wire(decode(data, max_bytes=4096))


def tx_root(txs: Sequence[SignedTransaction]) -> Hash:
    """Merkle root over the transactions' hashes (RFC 6962 tree, see state.merkle)."""
    return Hash(merkle_root([stx.hash for stx in txs]))
