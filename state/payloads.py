"""Transaction payloads: what each kind of transaction asks the chain to do.

A payload sits inside a versioned transaction whose ``kind`` fixes its
layout, so it carries no version of its own.  Its wire form is the array of
the fields named in its ``WIRE`` tuple, in that order: ``WIRE`` is part of the
consensus encoding, declared once per payload, and ``WireStruct`` derives
``to_wire``/``from_wire`` from it.  The dataclass field order is not part of
the encoding, so reordering a class body never changes bytes
(``check_wire_fields`` ties the two together at import).

Also here: the field checks every struct of the data model uses
(``check_uint``, ``check_bytes``, ...), since payloads are their first users.
Objects validate their fields on construction, so a decoded payload is a
valid payload.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from enum import IntEnum
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Mapping, Self, Union

from state.amounts import MAX_AMOUNT, MAX_DECIMALS
from state.codec import decode, encode
from state.crypto import ADDRESS_LEN, Address, domain_digest
from state.errors import (
    AmountOutOfRange,
    DecodeError,
    IdenticalTokens,
    InvalidSymbol,
    MalformedTransaction,
    UnknownTxKind,
    WrongLength,
)

__all__ = [
    "MAX_UINT64",
    "MAX_CHAIN_ID_LEN",
    "MAX_NAME_LEN",
    "MAX_PATH_LEN",
    "MAX_BATCH_OPS",
    "TxKind",
    "BatchOpKind",
    "is_int",
    "check_uint",
    "check_bytes",
    "check_text",
    "check_symbol",
    "check_chain_id",
    "check_tx_kind",
    "wire_array",
    "FieldCodec",
    "WireStruct",
    "check_wire_fields",
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
    "Batch",
    "RewardsClaim",
    "SetRewardRate",
    "ValidatorCreate",
    "ValidatorEdit",
    "Stake",
    "Unstake",
    "Redelegate",
    "Unjail",
    "StakingRewardsWithdraw",
    "STAKING_KINDS",
    "CONTRACT_KINDS",
    "MAX_CODE_BYTES_LIMIT",
    "MAX_ARGS_BYTES",
    "MAX_ATTACHED",
    "MAX_GAS_LIMIT",
    "ContractDeploy",
    "ContractCall",
    "check_args",
    "MAX_COMMISSION_BPS",
    "pool_id",
    "BATCH_OP_TYPES",
    "PAYLOAD_TYPES",
    "Payload",
]

MAX_UINT64 = 2**64 - 1
MAX_CHAIN_ID_LEN = 64
MAX_NAME_LEN = 64
MAX_PATH_LEN = 5  # tokens in a multi-hop path: at most 4 hops
MAX_BATCH_OPS = 16

_SYMBOL = re.compile(r"[A-Z0-9]{1,12}")
_CHAIN_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class TxKind(IntEnum):
    TRANSFER = 1
    TOKEN_CREATE = 2
    TOKEN_MINT = 3
    STAKE = 4
    UNSTAKE = 5
    POOL_CREATE = 10
    POOL_ADD = 11
    POOL_REMOVE = 12
    SWAP = 13
    SWAP_ROUTE = 14
    BATCH = 15
    REWARDS_CLAIM = 16
    SET_REWARD_RATE = 17
    # staking (issue 10): only on a chain whose genesis has a staking section
    VALIDATOR_CREATE = 30
    VALIDATOR_EDIT = 31
    REDELEGATE = 32
    UNJAIL = 33
    STAKING_REWARDS_WITHDRAW = 34
    # contracts (issue 11): only on a chain whose genesis has a contracts section
    CONTRACT_DEPLOY = 40
    CONTRACT_CALL = 41


STAKING_KINDS = frozenset({
    TxKind.STAKE, TxKind.UNSTAKE, TxKind.VALIDATOR_CREATE, TxKind.VALIDATOR_EDIT, TxKind.REDELEGATE,
    TxKind.UNJAIL, TxKind.STAKING_REWARDS_WITHDRAW,
})

CONTRACT_KINDS = frozenset({TxKind.CONTRACT_DEPLOY, TxKind.CONTRACT_CALL})


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


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_uint(name: str, value: object, low: int = 0, high: int = MAX_AMOUNT) -> None:
    if not is_int(value):
        raise MalformedTransaction(f"{name} must be an integer, got {type(value).__name__}", field=name, value=value)
    if not low <= value <= high:  # type: ignore[operator]
        raise AmountOutOfRange(name, value, low, high)


def check_bytes(name: str, value: object, length: int) -> None:
    if not isinstance(value, bytes):
        raise MalformedTransaction(f"{name} must be bytes, got {type(value).__name__}", field=name, value=value)
    if len(value) != length:
        raise WrongLength(name, len(value), length)


def check_text(name: str, value: object, max_len: int) -> None:
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


def check_tx_kind(value: object) -> TxKind:
    if not is_int(value):
        raise UnknownTxKind(value)
    try:
        return TxKind(value)
    except ValueError:
        raise UnknownTxKind(value) from None


def wire_array(name: str, wire: object, length: int, error: type[Exception] = MalformedTransaction) -> list[Any]:
    if not isinstance(wire, list) or len(wire) != length:
        got = f"array of {len(wire)}" if isinstance(wire, list) else type(wire).__name__
        raise error(f"{name} must be an array of {length} fields, got {got}")
    return wire


# -- the wire form, declared once --------------------------------------------------


@dataclass(frozen=True, slots=True)
class FieldCodec:
    """A field whose wire form is not its value: how it is written, and how it is read back."""

    to_wire: Callable[[Any], Any]
    from_wire: Callable[[Any], Any]


class WireStruct:
    """Base of every payload: the wire form is ``[getattr(self, name) for name in WIRE]``.

    ``WIRE`` (a literal tuple in each class) is the consensus order of the
    fields; ``WIRE_NAME`` names the struct in decode errors ("transfer
    payload"); ``WIRE_CODECS`` converts the few fields whose wire form is not
    their value.  ``from_wire`` checks the array length and builds the object
    by field name, so its own checks run as on any construction.
    """

    __slots__ = ()
    WIRE: ClassVar[tuple[str, ...]]
    WIRE_NAME: ClassVar[str]
    WIRE_CODECS: ClassVar[Mapping[str, FieldCodec]] = MappingProxyType({})

    def to_wire(self) -> list[Any]:
        codecs = self.WIRE_CODECS
        if not codecs:
            return [getattr(self, name) for name in self.WIRE]
        return [codecs[name].to_wire(getattr(self, name)) if name in codecs else getattr(self, name)
                for name in self.WIRE]

    @classmethod
    def from_wire(cls, wire: object) -> Self:
        names = cls.WIRE
        values = wire_array(cls.WIRE_NAME, wire, len(names))
        codecs = cls.WIRE_CODECS
        if codecs:
            values = [codecs[name].from_wire(value) if name in codecs else value for name, value in zip(names, values)]
        return cls(**dict(zip(names, values)))


def check_wire_fields(cls: type) -> None:
    """Raise TypeError unless ``cls.WIRE`` names every dataclass field of ``cls`` exactly once."""
    fields = [f.name for f in dataclasses.fields(cls)]
    wire = list(getattr(cls, "WIRE", ()))
    problems = []
    if duplicated := sorted({name for name in wire if wire.count(name) > 1}):
        problems.append(f"lists {', '.join(duplicated)} twice")
    if missing := [name for name in fields if name not in wire]:
        problems.append(f"leaves out {', '.join(missing)}")
    if extra := [name for name in wire if name not in fields]:
        problems.append(f"names {', '.join(extra)}, which are not fields")
    if stray := sorted(set(getattr(cls, "WIRE_CODECS", {})) - set(wire)):
        problems.append(f"has codecs for {', '.join(stray)}, which are not in WIRE")
    if not isinstance(getattr(cls, "WIRE_NAME", None), str):
        problems.append("has no WIRE_NAME")
    if problems:
        raise TypeError(f"{cls.__name__}.WIRE {'; '.join(problems)}")


# -- account and token payloads ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transfer(WireStruct):
    """Move ``amount`` base units of ``token`` from the sender to ``to``."""

    KIND: ClassVar[TxKind] = TxKind.TRANSFER
    WIRE: ClassVar[tuple[str, ...]] = ("to", "token", "amount")
    WIRE_NAME: ClassVar[str] = "transfer payload"
    to: Address
    token: str
    amount: int

    def __post_init__(self) -> None:
        check_bytes("to", self.to, ADDRESS_LEN)
        check_symbol(self.token)
        check_uint("amount", self.amount, 1)


@dataclass(frozen=True, slots=True)
class TokenCreate(WireStruct):
    """Create token ``symbol``; the sender becomes its issuer and receives ``initial_supply``."""

    KIND: ClassVar[TxKind] = TxKind.TOKEN_CREATE
    WIRE: ClassVar[tuple[str, ...]] = ("symbol", "name", "decimals", "initial_supply")
    WIRE_NAME: ClassVar[str] = "token create payload"
    symbol: str
    name: str
    decimals: int
    initial_supply: int

    def __post_init__(self) -> None:
        check_symbol(self.symbol)
        check_text("name", self.name, MAX_NAME_LEN)
        check_uint("decimals", self.decimals, 0, MAX_DECIMALS)
        check_uint("initial_supply", self.initial_supply)


@dataclass(frozen=True, slots=True)
class TokenMint(WireStruct):
    """Mint ``amount`` of ``symbol`` to ``to``; only the token's issuer may."""

    KIND: ClassVar[TxKind] = TxKind.TOKEN_MINT
    WIRE: ClassVar[tuple[str, ...]] = ("symbol", "to", "amount")
    WIRE_NAME: ClassVar[str] = "token mint payload"
    symbol: str
    to: Address
    amount: int

    def __post_init__(self) -> None:
        check_symbol(self.symbol)
        check_bytes("to", self.to, ADDRESS_LEN)
        check_uint("amount", self.amount, 1)


# -- pool payloads (issue #3) -----------------------------------------------------


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
    check_uint("deadline", value, 1, MAX_UINT64)


@dataclass(frozen=True, slots=True)
class PoolCreate(WireStruct):
    """Create the pool of ``token_a``/``token_b`` with the sender's first deposit."""

    KIND: ClassVar[TxKind] = TxKind.POOL_CREATE
    WIRE: ClassVar[tuple[str, ...]] = ("token_a", "token_b", "amount_a", "amount_b", "min_shares")
    WIRE_NAME: ClassVar[str] = "pool create payload"
    token_a: str
    token_b: str
    amount_a: int
    amount_b: int
    min_shares: int

    def __post_init__(self) -> None:
        _pair(self.token_a, self.token_b)
        check_uint("amount_a", self.amount_a, 1)
        check_uint("amount_b", self.amount_b, 1)
        check_uint("min_shares", self.min_shares)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)


@dataclass(frozen=True, slots=True)
class PoolAdd(WireStruct):
    """Deposit up to ``amount_a`` and ``amount_b`` at the pool's ratio; at least ``min_shares`` or fail."""

    KIND: ClassVar[TxKind] = TxKind.POOL_ADD
    WIRE: ClassVar[tuple[str, ...]] = ("token_a", "token_b", "amount_a", "amount_b", "min_shares")
    WIRE_NAME: ClassVar[str] = "pool add payload"
    token_a: str
    token_b: str
    amount_a: int
    amount_b: int
    min_shares: int

    def __post_init__(self) -> None:
        _pair(self.token_a, self.token_b)
        check_uint("amount_a", self.amount_a, 1)
        check_uint("amount_b", self.amount_b, 1)
        check_uint("min_shares", self.min_shares)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)


@dataclass(frozen=True, slots=True)
class PoolRemove(WireStruct):
    """Burn ``shares`` for a pro-rata withdrawal of at least ``min_a`` and ``min_b``."""

    KIND: ClassVar[TxKind] = TxKind.POOL_REMOVE
    WIRE: ClassVar[tuple[str, ...]] = ("token_a", "token_b", "shares", "min_a", "min_b")
    WIRE_NAME: ClassVar[str] = "pool remove payload"
    token_a: str
    token_b: str
    shares: int
    min_a: int
    min_b: int

    def __post_init__(self) -> None:
        _pair(self.token_a, self.token_b)
        check_uint("shares", self.shares, 1)
        check_uint("min_a", self.min_a)
        check_uint("min_b", self.min_b)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)


@dataclass(frozen=True, slots=True)
class Swap(WireStruct):
    """Sell exactly ``amount_in`` of ``token_in`` for at least ``min_out`` of ``token_out``, by block ``deadline``."""

    KIND: ClassVar[TxKind] = TxKind.SWAP
    WIRE: ClassVar[tuple[str, ...]] = ("token_in", "token_out", "amount_in", "min_out", "deadline")
    WIRE_NAME: ClassVar[str] = "swap payload"
    token_in: str
    token_out: str
    amount_in: int
    min_out: int
    deadline: int

    def __post_init__(self) -> None:
        _pair(self.token_in, self.token_out)
        check_uint("amount_in", self.amount_in, 1)
        check_uint("min_out", self.min_out)
        _deadline(self.deadline)

    @property
    def path(self) -> tuple[str, ...]:
        return (self.token_in, self.token_out)


@dataclass(frozen=True, slots=True)
class SwapRoute(WireStruct):
    """Multi-hop exact-in swap along ``path`` (token symbols; each adjacent pair is a pool)."""

    KIND: ClassVar[TxKind] = TxKind.SWAP_ROUTE
    WIRE: ClassVar[tuple[str, ...]] = ("path", "amount_in", "min_out", "deadline")
    WIRE_NAME: ClassVar[str] = "swap route payload"
    # The path is a tuple here and an array on the wire; reading hands the
    # array to the constructor, whose check names a wrong one.
    WIRE_CODECS: ClassVar[Mapping[str, FieldCodec]] = MappingProxyType(
        {"path": FieldCodec(to_wire=list, from_wire=lambda value: value)}
    )
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
        check_uint("amount_in", self.amount_in, 1)
        check_uint("min_out", self.min_out)
        _deadline(self.deadline)


def _check_flash(token_a: str, token_b: str, token: str, amount: int) -> None:
    _pair(token_a, token_b)
    if token not in (token_a, token_b):
        raise MalformedTransaction(f"flash token {token!r} is not in the pair {token_a}/{token_b}", field="token")
    check_uint("amount", amount, 1)


@dataclass(frozen=True, slots=True)
class FlashBorrow(WireStruct):
    """Batch operation: borrow ``amount`` of ``token`` from the pool of ``token_a``/``token_b``.

    The batch must give back ``ceil(amount·1000/997)`` with FlashRepay
    operations before it ends; meanwhile the pool accepts no other operation.
    """

    WIRE: ClassVar[tuple[str, ...]] = ("token_a", "token_b", "token", "amount")
    WIRE_NAME: ClassVar[str] = "flash borrow op"
    token_a: str
    token_b: str
    token: str
    amount: int

    def __post_init__(self) -> None:
        _check_flash(self.token_a, self.token_b, self.token, self.amount)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)


@dataclass(frozen=True, slots=True)
class FlashRepay(WireStruct):
    """Batch operation: pay ``amount`` of ``token`` back to the pool toward an outstanding flash loan."""

    WIRE: ClassVar[tuple[str, ...]] = ("token_a", "token_b", "token", "amount")
    WIRE_NAME: ClassVar[str] = "flash repay op"
    token_a: str
    token_b: str
    token: str
    amount: int

    def __post_init__(self) -> None:
        _check_flash(self.token_a, self.token_b, self.token, self.amount)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)


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


def _ops_to_wire(ops: tuple[BatchOp, ...]) -> list[Any]:
    return [[int(_BATCH_OP_KIND[type(op)]), op.to_wire()] for op in ops]


def _ops_from_wire(ops_wire: object) -> tuple[BatchOp, ...]:
    if not isinstance(ops_wire, list):
        raise MalformedTransaction("batch ops must be an array", field="ops")
    ops = []
    for i, item in enumerate(ops_wire):
        kind, payload = wire_array(f"batch operation {i}", item, 2)
        try:
            op_kind = BatchOpKind(kind) if is_int(kind) else None
        except ValueError:
            op_kind = None
        if op_kind is None:
            raise MalformedTransaction(f"batch operation {i} has unknown kind {kind!r}", field="ops", value=kind)
        ops.append(BATCH_OP_TYPES[op_kind].from_wire(payload))
    return tuple(ops)


@dataclass(frozen=True, slots=True)
class Batch(WireStruct):
    """An atomic list of operations: all succeed (and every flash loan is repaid) or none happen.

    Wire: ``[[[op_kind, op_payload], ...]]``.  Swaps inside carry their own deadline.
    """

    KIND: ClassVar[TxKind] = TxKind.BATCH
    WIRE: ClassVar[tuple[str, ...]] = ("ops",)
    WIRE_NAME: ClassVar[str] = "batch payload"
    WIRE_CODECS: ClassVar[Mapping[str, FieldCodec]] = MappingProxyType(
        {"ops": FieldCodec(to_wire=_ops_to_wire, from_wire=_ops_from_wire)}
    )
    ops: tuple[BatchOp, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.ops, (list, tuple)) or not 1 <= len(self.ops) <= MAX_BATCH_OPS:
            raise MalformedTransaction(f"a batch holds 1-{MAX_BATCH_OPS} operations", field="ops")
        for i, op in enumerate(self.ops):
            if type(op) not in _BATCH_OP_KIND:
                raise MalformedTransaction(f"batch operation {i} is a {type(op).__name__}", field="ops")
        object.__setattr__(self, "ops", tuple(self.ops))


@dataclass(frozen=True, slots=True)
class RewardsClaim(WireStruct):
    """Pay the sender the liquidity-mining rewards accrued on its shares of a pool."""

    KIND: ClassVar[TxKind] = TxKind.REWARDS_CLAIM
    WIRE: ClassVar[tuple[str, ...]] = ("token_a", "token_b")
    WIRE_NAME: ClassVar[str] = "rewards claim payload"
    token_a: str
    token_b: str

    def __post_init__(self) -> None:
        _pair(self.token_a, self.token_b)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)


@dataclass(frozen=True, slots=True)
class SetRewardRate(WireStruct):
    """Set a pool's liquidity-mining rate in QNX base units per block; only ``params.reward_authority`` may."""

    KIND: ClassVar[TxKind] = TxKind.SET_REWARD_RATE
    WIRE: ClassVar[tuple[str, ...]] = ("token_a", "token_b", "rate")
    WIRE_NAME: ClassVar[str] = "set reward rate payload"
    token_a: str
    token_b: str
    rate: int

    def __post_init__(self) -> None:
        _pair(self.token_a, self.token_b)
        check_uint("rate", self.rate)

    @property
    def pool(self) -> str:
        return pool_id(self.token_a, self.token_b)


# -- staking payloads (issue 10; state.staking) ------------------------------------

MAX_COMMISSION_BPS = 10_000  # 100%: the hard ceiling; params.staking.max_commission_bps is the chain's


DOMAIN_KEY_PROOF = b"QENEX/consensus-key-proof/v1"


def key_proof_digest(chain_id: str, operator: bytes) -> bytes:
    """What a consensus key signs to be registered for ``operator`` on ``chain_id``."""
    return bytes(domain_digest(DOMAIN_KEY_PROOF, encode([chain_id, bytes(operator)])))


@dataclass(frozen=True, slots=True)
class ValidatorCreate(WireStruct):
    """Register the sender as the operator of a validator signing with ``pubkey``, self-bonding ``self_bond``.

    ``proof``: the consensus key's signature of ``key_proof_digest(chain_id, operator)``, so only
    whoever holds that key can register it, and only for the operator it names (nobody can take
    a key they have seen, nor sign for one they hold under someone else's name)."""

    KIND: ClassVar[TxKind] = TxKind.VALIDATOR_CREATE
    WIRE: ClassVar[tuple[str, ...]] = ("pubkey", "moniker", "commission_bps", "self_bond", "proof")
    WIRE_NAME: ClassVar[str] = "validator create payload"
    pubkey: bytes
    moniker: str
    commission_bps: int
    self_bond: int
    proof: bytes

    def __post_init__(self) -> None:
        check_bytes("pubkey", self.pubkey, 32)
        check_bytes("proof", self.proof, 64)
        check_text("moniker", self.moniker, MAX_NAME_LEN)
        check_uint("commission_bps", self.commission_bps, 0, MAX_COMMISSION_BPS)
        check_uint("self_bond", self.self_bond, 1)


@dataclass(frozen=True, slots=True)
class ValidatorEdit(WireStruct):
    """The sender's validator gets ``moniker`` and ``commission_bps`` (a change is bounded per epoch)."""

    KIND: ClassVar[TxKind] = TxKind.VALIDATOR_EDIT
    WIRE: ClassVar[tuple[str, ...]] = ("moniker", "commission_bps")
    WIRE_NAME: ClassVar[str] = "validator edit payload"
    moniker: str
    commission_bps: int

    def __post_init__(self) -> None:
        check_text("moniker", self.moniker, MAX_NAME_LEN)
        check_uint("commission_bps", self.commission_bps, 0, MAX_COMMISSION_BPS)


@dataclass(frozen=True, slots=True)
class Stake(WireStruct):
    """Delegate ``amount`` QNX base units to the validator operated by ``validator``."""

    KIND: ClassVar[TxKind] = TxKind.STAKE
    WIRE: ClassVar[tuple[str, ...]] = ("validator", "amount")
    WIRE_NAME: ClassVar[str] = "stake payload"
    validator: Address
    amount: int

    def __post_init__(self) -> None:
        check_bytes("validator", self.validator, ADDRESS_LEN)
        check_uint("amount", self.amount, 1)


@dataclass(frozen=True, slots=True)
class Unstake(WireStruct):
    """Start unbonding ``amount`` QNX base units of the sender's stake with ``validator``."""

    KIND: ClassVar[TxKind] = TxKind.UNSTAKE
    WIRE: ClassVar[tuple[str, ...]] = ("validator", "amount")
    WIRE_NAME: ClassVar[str] = "unstake payload"
    validator: Address
    amount: int

    def __post_init__(self) -> None:
        check_bytes("validator", self.validator, ADDRESS_LEN)
        check_uint("amount", self.amount, 1)


@dataclass(frozen=True, slots=True)
class Redelegate(WireStruct):
    """Move ``amount`` of the sender's bonded stake from ``source`` to ``destination`` without unbonding."""

    KIND: ClassVar[TxKind] = TxKind.REDELEGATE
    WIRE: ClassVar[tuple[str, ...]] = ("source", "destination", "amount")
    WIRE_NAME: ClassVar[str] = "redelegate payload"
    source: Address
    destination: Address
    amount: int

    def __post_init__(self) -> None:
        check_bytes("source", self.source, ADDRESS_LEN)
        check_bytes("destination", self.destination, ADDRESS_LEN)
        if self.source == self.destination:
            raise MalformedTransaction("redelegation source and destination are the same validator",
                                       field="destination", value=self.destination)
        check_uint("amount", self.amount, 1)


@dataclass(frozen=True, slots=True)
class Unjail(WireStruct):
    """The sender's jailed validator becomes eligible again (from the next epoch)."""

    KIND: ClassVar[TxKind] = TxKind.UNJAIL
    WIRE: ClassVar[tuple[str, ...]] = ()
    WIRE_NAME: ClassVar[str] = "unjail payload"


@dataclass(frozen=True, slots=True)
class StakingRewardsWithdraw(WireStruct):
    """Pay the sender its staking rewards from every delegation, and its commission if it operates a validator."""

    KIND: ClassVar[TxKind] = TxKind.STAKING_REWARDS_WITHDRAW
    WIRE: ClassVar[tuple[str, ...]] = ()
    WIRE_NAME: ClassVar[str] = "staking rewards withdraw payload"


# -- contract payloads (issue 11; state.contracts) ---------------------------------

MAX_CODE_BYTES_LIMIT = 64 * 1024  # the hard ceiling; params.contracts.max_code_bytes is the chain's
MAX_ARGS_BYTES = 8 * 1024
MAX_ATTACHED = 4
MAX_GAS_LIMIT = 2**63 - 1  # fuel is an i64 in wasmtime
_METHOD = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


def check_args(name: str, value: object) -> bytes:
    """Arguments are one canonical msgpack value of at most MAX_ARGS_BYTES (the chain's codec)."""
    if not isinstance(value, bytes):
        raise MalformedTransaction(f"{name} must be bytes, got {type(value).__name__}", field=name, value=value)
    if not 1 <= len(value) <= MAX_ARGS_BYTES:
        raise MalformedTransaction(f"{name} must be 1-{MAX_ARGS_BYTES} bytes of msgpack, got {len(value)}",
                                   field=name, value=len(value))
    try:
        decode(value, max_bytes=MAX_ARGS_BYTES, max_objects=MAX_ARGS_BYTES)
    except DecodeError as exc:
        raise MalformedTransaction(f"{name} are not canonical msgpack: {exc}", field=name) from None
    return value


def _attached_to_wire(attached: tuple[tuple[str, int], ...]) -> list[Any]:
    return [[symbol, amount] for symbol, amount in attached]


def _attached_from_wire(wire: object) -> object:
    if not isinstance(wire, list) or not all(isinstance(item, list) and len(item) == 2 for item in wire):
        raise MalformedTransaction("attached must be an array of [symbol, amount] pairs", field="attached")
    return tuple((symbol, amount) for symbol, amount in wire)


def _check_attached(value: object) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, (list, tuple)) or len(value) > MAX_ATTACHED:
        raise MalformedTransaction(f"attached must list at most {MAX_ATTACHED} [symbol, amount] pairs",
                                   field="attached")
    pairs = []
    for item in value:
        if not isinstance(item, (list, tuple)) or len(item) != 2:
            raise MalformedTransaction("attached must list [symbol, amount] pairs", field="attached")
        symbol, amount = item
        check_symbol(symbol)
        check_uint(f"attached {symbol}", amount, 1)
        pairs.append((symbol, amount))
    symbols = [s for s, _ in pairs]
    if symbols != sorted(set(symbols)):
        raise MalformedTransaction("attached tokens must be listed once each, sorted by symbol", field="attached")
    return tuple(pairs)


_ATTACHED_CODEC = FieldCodec(to_wire=_attached_to_wire, from_wire=_attached_from_wire)


@dataclass(frozen=True, slots=True)
class ContractDeploy(WireStruct):
    """Deploy WebAssembly ``code``; its ``init`` export (if any) runs with ``init_args``.

    The contract's address is derived from the sender and this transaction's
    nonce (state.contracts.contract_address); ``attached`` tokens move from
    the sender to it before ``init`` runs.  ``gas_limit`` caps the gas; the
    fee prices it (fee >= gas_limit * min_gas_price) and the unused part is
    refunded."""

    KIND: ClassVar[TxKind] = TxKind.CONTRACT_DEPLOY
    WIRE: ClassVar[tuple[str, ...]] = ("code", "init_args", "attached", "gas_limit")
    WIRE_NAME: ClassVar[str] = "contract deploy payload"
    WIRE_CODECS: ClassVar[Mapping[str, FieldCodec]] = MappingProxyType({"attached": _ATTACHED_CODEC})
    code: bytes
    init_args: bytes
    attached: tuple[tuple[str, int], ...]
    gas_limit: int

    def __post_init__(self) -> None:
        if not isinstance(self.code, bytes) or not 8 <= len(self.code) <= MAX_CODE_BYTES_LIMIT:
            raise MalformedTransaction(f"code must be 8-{MAX_CODE_BYTES_LIMIT} bytes of WebAssembly", field="code")
        check_args("init_args", self.init_args)
        object.__setattr__(self, "attached", _check_attached(self.attached))
        check_uint("gas_limit", self.gas_limit, 1, MAX_GAS_LIMIT)


@dataclass(frozen=True, slots=True)
class ContractCall(WireStruct):
    """Call ``method`` of ``contract`` with ``args``, moving ``attached`` tokens to it first."""

    KIND: ClassVar[TxKind] = TxKind.CONTRACT_CALL
    WIRE: ClassVar[tuple[str, ...]] = ("contract", "method", "args", "attached", "gas_limit")
    WIRE_NAME: ClassVar[str] = "contract call payload"
    WIRE_CODECS: ClassVar[Mapping[str, FieldCodec]] = MappingProxyType({"attached": _ATTACHED_CODEC})
    contract: Address
    method: str
    args: bytes
    attached: tuple[tuple[str, int], ...]
    gas_limit: int

    def __post_init__(self) -> None:
        check_bytes("contract", self.contract, ADDRESS_LEN)
        if not isinstance(self.method, str) or _METHOD.fullmatch(self.method) is None:
            raise MalformedTransaction(f"method {self.method!r} is not 1-64 characters of A-Z a-z 0-9 _ "
                                       "starting with a letter or _", field="method", value=self.method)
        check_args("args", self.args)
        object.__setattr__(self, "attached", _check_attached(self.attached))
        check_uint("gas_limit", self.gas_limit, 1, MAX_GAS_LIMIT)


Payload = Union[
    Transfer, TokenCreate, TokenMint, PoolCreate, PoolAdd, PoolRemove, Swap, SwapRoute, Batch, RewardsClaim,
    SetRewardRate, ValidatorCreate, ValidatorEdit, Stake, Unstake, Redelegate, Unjail, StakingRewardsWithdraw,
    ContractDeploy, ContractCall,
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
    TxKind.STAKE: Stake,
    TxKind.UNSTAKE: Unstake,
    TxKind.VALIDATOR_CREATE: ValidatorCreate,
    TxKind.VALIDATOR_EDIT: ValidatorEdit,
    TxKind.REDELEGATE: Redelegate,
    TxKind.UNJAIL: Unjail,
    TxKind.STAKING_REWARDS_WITHDRAW: StakingRewardsWithdraw,
    TxKind.CONTRACT_DEPLOY: ContractDeploy,
    TxKind.CONTRACT_CALL: ContractCall,
}

for _payload_type in (*PAYLOAD_TYPES.values(), FlashBorrow, FlashRepay):
    check_wire_fields(_payload_type)
