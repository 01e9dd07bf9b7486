"""The genesis document: chain id, start time, validators, tokens, balances, params.

Lists are kept sorted (validators and accounts by address, tokens by symbol,
balances by symbol), so the genesis hash does not depend on the order of a
JSON file.  The native token QNX (18 decimals) always exists; it is not
listed among ``tokens`` and its supply is the sum of the genesis balances.

JSON form: amounts are decimal strings of base units (plain integers are
accepted on input), bytes are 0x-hex, addresses are qnx1 text.  Floats are
refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping

from state.amounts import MAX_AMOUNT, MAX_DECIMALS, QNX, QNX_DECIMALS
from state.codec import decode, encode
from state.crypto import (
    ADDRESS_LEN,
    PUBKEY_LEN,
    Address,
    Hash,
    address_from_text,
    address_of,
    address_to_text,
    domain_digest,
)
from state.errors import ContractsDisabled, InvalidKey, MalformedGenesis, MalformedTransaction, StakingDisabled
from state.payloads import (
    CONTRACT_KINDS,
    MAX_CODE_BYTES_LIMIT,
    MAX_GAS_LIMIT,
    MAX_COMMISSION_BPS,
    MAX_NAME_LEN,
    MAX_UINT64,
    STAKING_KINDS,
    TxKind,
    check_chain_id,
    check_symbol,
)

GENESIS_VERSION = 1
GENESIS_VERSION_TEST_CHAIN = 2  # version 1's fields, then the test-chain flag (true): written only when set
PARAMS_VERSION = 2
PARAMS_VERSION_STAKING = 3  # version 2's fields, then the staking params
PARAMS_VERSION_CONTRACTS = 4  # version 2's fields, then the staking params (or nil), then the contract params
CONTRACT_PARAMS_VERSION = 1
DOMAIN_GENESIS = b"QENEX/genesis/v1"
# Native token's issuer: no key hashes to it, so QNX can never be minted.
NATIVE_ISSUER = Address(bytes(ADDRESS_LEN))
NATIVE_NAME = "QENEX"

# Fees price spam and state growth.  At the default min_gas_price of 1e9 base units (1e-9 QNX) per gas a
# transfer (1,000 gas) costs 1e-6 QNX, so filling a 5,000-transaction mempool costs 5e-3 QNX and every
# block of spam pays its way.  A kind that creates a permanent record (a token, a pool) also pays
# STATE_BYTE_GAS per byte of key and value it can store: a token creation stores at most ~180 bytes
# (record and issuer balance; budget 250), a pool creation ~830 (record, first observation, pool
# account and its two balances, LP position, index entry; budget 1,000).  So a token costs 2.55e-3 QNX
# and a pool 1.006e-2 QNX: 30 tokens with a pool on every pair (435 pools) cost 4.45 QNX, not 2.8e-11.
DEFAULT_MIN_GAS_PRICE = 10**9
STATE_BYTE_GAS = 10_000
TOKEN_CREATE_STORED_BYTES = 250
POOL_CREATE_STORED_BYTES = 1_000

DEFAULT_GAS: Mapping[TxKind, int] = MappingProxyType(
    {
        TxKind.TRANSFER: 1000,
        TxKind.TOKEN_CREATE: 50_000 + STATE_BYTE_GAS * TOKEN_CREATE_STORED_BYTES,
        TxKind.TOKEN_MINT: 2000,
        TxKind.POOL_CREATE: 60_000 + STATE_BYTE_GAS * POOL_CREATE_STORED_BYTES,
        TxKind.POOL_ADD: 8000,
        TxKind.POOL_REMOVE: 8000,
        TxKind.SWAP: 5000,
        TxKind.SWAP_ROUTE: 10_000,
        TxKind.BATCH: 30_000,
        TxKind.REWARDS_CLAIM: 3000,
        TxKind.SET_REWARD_RATE: 3000,
    }
)
# Staking kinds (issue 10) are priced in params.staking.gas, so a chain without staking keeps the
# genesis encoding it always had.  A validator record, its self-delegation, indexes and key index are
# about 400 bytes; a delegation with its index entry ~150; an unbonding entry with its queue entry ~120.
DEFAULT_STAKING_GAS: Mapping[TxKind, int] = MappingProxyType(
    {
        TxKind.STAKE: 20_000 + STATE_BYTE_GAS * 150,
        TxKind.UNSTAKE: 20_000 + STATE_BYTE_GAS * 120,
        TxKind.VALIDATOR_CREATE: 100_000 + STATE_BYTE_GAS * 400,
        TxKind.VALIDATOR_EDIT: 10_000,
        TxKind.REDELEGATE: 30_000 + STATE_BYTE_GAS * 200,
        TxKind.UNJAIL: 10_000,
        TxKind.STAKING_REWARDS_WITHDRAW: 20_000,
    }
)
# Voting power is bonded stake in whole QNX (Cosmos's PowerReduction, here 10^18 base units).
POWER_REDUCTION = 10**QNX_DECIMALS
STAKING_PARAMS_VERSION = 1
# Nobody may set pool reward rates unless genesis names an authority.
NO_AUTHORITY = Address(bytes(ADDRESS_LEN))
# Hard ceiling for max_block_bytes: a block must fit the codec's input limit with room for the commit.
MAX_BLOCK_BYTES_LIMIT = 7 * 1024 * 1024


def _bad(message: str) -> MalformedGenesis:
    return MalformedGenesis(message)


def _int(name: str, value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _bad(f"{name} {value!r} must be an integer in [{low}, {high}]")
    return value


def _name(what: str, value: object) -> str:
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_NAME_LEN or not value.isprintable():
        raise _bad(f"{what} {value!r} must be 1-{MAX_NAME_LEN} printable characters")
    return value


def _symbol(value: object) -> str:
    try:
        return check_symbol(value)
    except MalformedTransaction as exc:
        raise _bad(str(exc)) from None


def _bytes(name: str, value: object, length: int) -> bytes:
    if not isinstance(value, bytes) or len(value) != length:
        raise _bad(f"{name} must be {length} bytes, got {value!r}")
    return value


# The largest max_tx_bytes genesis may set: well below the p2p tx batch frame
# (node/inbound.py, 257 KiB), so every valid tx gossips in a batch of its own.
MAX_TX_BYTES_CEILING = 64 * 1024


# The downtime window's bits are kept in state (state.slashing, 1024 per record): bounded, so a reset
# touches at most 98 records.
MAX_SIGNED_BLOCKS_WINDOW = 100_000


@dataclass(frozen=True, slots=True)
class StakingParams:
    """Staking, epochs' validator sets, rewards (state.staking), and the slashing parameters part 2 applies.

    Amounts are QNX base units; fractions are basis points (1/10,000); durations are blocks.
    """

    max_validators: int = 100
    min_self_bond: int = POWER_REDUCTION  # 1 QNX
    unbonding_blocks: int = 1000
    max_commission_bps: int = 5000  # the chain's ceiling on any validator's commission
    max_commission_change_bps: int = 100  # the most a commission may move, once per epoch
    max_unbonding_entries: int = 7  # per delegator, in flight at once
    max_delegations: int = 16  # validators one delegator may stake with at once
    max_candidates: int = 300  # validators holding stake that the epoch ranking reads
    block_issuance: int = 0  # QNX minted per block for the signers of the previous commit
    # Part 2 (evidence, slashing, downtime): fixed here so the genesis format does not change then.
    slash_double_sign_bps: int = 500
    slash_downtime_bps: int = 1
    signed_blocks_window: int = 100
    min_signed_per_window_bps: int = 5000
    downtime_jail_blocks: int = 600
    max_evidence_age: int = 900  # with the default epoch_length (100): + epoch_length <= unbonding_blocks
    gas: Mapping[TxKind, int] = field(default_factory=lambda: DEFAULT_STAKING_GAS)

    _INTS = (
        ("max_validators", 1, 10_000), ("min_self_bond", 1, MAX_AMOUNT), ("unbonding_blocks", 1, MAX_UINT64),
        ("max_commission_bps", 0, MAX_COMMISSION_BPS), ("max_commission_change_bps", 0, MAX_COMMISSION_BPS),
        ("max_unbonding_entries", 1, 1000), ("max_delegations", 1, 1000), ("max_candidates", 1, 100_000),
        ("block_issuance", 0, MAX_AMOUNT), ("slash_double_sign_bps", 0, 10_000), ("slash_downtime_bps", 0, 10_000),
        ("signed_blocks_window", 1, MAX_SIGNED_BLOCKS_WINDOW), ("min_signed_per_window_bps", 0, 10_000),
        ("downtime_jail_blocks", 0, MAX_UINT64), ("max_evidence_age", 1, MAX_UINT64),
    )

    def __post_init__(self) -> None:
        for name, low, high in self._INTS:
            _int(f"staking.{name}", getattr(self, name), low, high)
        if self.max_candidates < self.max_validators:
            raise _bad(f"staking.max_candidates {self.max_candidates} is below max_validators {self.max_validators}")
        if self.max_evidence_age > self.unbonding_blocks:
            # Evidence must be usable while the stake it slashes is still bonded or unbonding.
            raise _bad(f"staking.max_evidence_age {self.max_evidence_age} exceeds unbonding_blocks "
                       f"{self.unbonding_blocks}")
        if not isinstance(self.gas, Mapping):
            raise _bad("staking.gas must be a mapping of kind to gas")
        gas: dict[TxKind, int] = {}
        for kind, amount in self.gas.items():
            try:
                kind = TxKind(kind)
            except ValueError:
                raise _bad(f"staking.gas names unknown transaction kind {kind!r}") from None
            if kind not in STAKING_KINDS:
                raise _bad(f"staking.gas names {kind.name.lower()}, which is not a staking kind")
            gas[kind] = _int(f"gas for {kind.name.lower()}", amount, 0, MAX_UINT64)
        missing = sorted(k.name.lower() for k in STAKING_KINDS if k not in gas)
        if missing:
            raise _bad(f"staking.gas is missing for kinds {', '.join(missing)}")
        object.__setattr__(self, "gas", MappingProxyType(dict(sorted(gas.items()))))

    def to_wire(self) -> list[Any]:
        return [STAKING_PARAMS_VERSION, *(getattr(self, name) for name, _, _ in self._INTS),
                [[int(k), v] for k, v in sorted(self.gas.items())]]

    @classmethod
    def from_wire(cls, wire: object) -> "StakingParams":
        n = len(cls._INTS)
        if not isinstance(wire, list) or len(wire) != n + 2 or wire[0] != STAKING_PARAMS_VERSION:
            raise _bad(f"staking params must be a version-{STAKING_PARAMS_VERSION} array of {n + 2} fields")
        gas = wire[-1]
        if not isinstance(gas, list) or not all(isinstance(g, list) and len(g) == 2 for g in gas):
            raise _bad("staking gas must be an array of [kind, gas] pairs")
        values = dict(zip((name for name, _, _ in cls._INTS), wire[1:-1]))
        return cls(**values, gas={k: v for k, v in gas})

    def to_json_obj(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, _, _ in self._INTS:
            value = getattr(self, name)
            out[name] = str(value) if name in ("min_self_bond", "block_issuance") else value
        out["gas"] = {k.name.lower(): v for k, v in sorted(self.gas.items())}
        return out

    @classmethod
    def from_json_obj(cls, obj: object) -> "StakingParams":
        fields = _object("params.staking", obj, {name for name, _, _ in cls._INTS} | {"gas"})
        kwargs: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "gas":
                gas_obj = _object("params.staking.gas", value, {k.name.lower() for k in STAKING_KINDS})
                kwargs["gas"] = {**DEFAULT_STAKING_GAS, **{TxKind[k.upper()]: v for k, v in gas_obj.items()}}
            elif key in ("min_self_bond", "block_issuance"):
                kwargs[key] = _amount(f"params.staking.{key}", value)
            else:
                kwargs[key] = value
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class ContractParams:
    """WebAssembly contracts (state.contracts, state.vm): the bounds every deploy and call runs within.

    Gas is fuel (one unit per executed wasm operator) plus the host API's
    schedule (state.contracts); a transaction's own ``gas_limit`` caps it.
    """

    max_code_bytes: int = 12 * 1024
    max_memory_pages: int = 16  # 64 KiB each: 1 MiB of linear memory per instance
    max_table_elements: int = 1024
    max_call_depth: int = 8  # frames on the stack, the transaction's own included
    max_calls_per_tx: int = 32  # instances one transaction may create, its own included
    max_tx_gas: int = 50_000_000
    max_block_gas: int = 200_000_000  # the sum of the gas limits of a block's contract transactions

    _INTS = (
        ("max_code_bytes", 8, MAX_CODE_BYTES_LIMIT), ("max_memory_pages", 1, 1024),
        ("max_table_elements", 0, 100_000), ("max_call_depth", 1, 64), ("max_calls_per_tx", 1, 1024),
        ("max_tx_gas", 1, MAX_GAS_LIMIT), ("max_block_gas", 1, MAX_GAS_LIMIT),
    )

    def __post_init__(self) -> None:
        for name, low, high in self._INTS:
            _int(f"contracts.{name}", getattr(self, name), low, high)
        if self.max_block_gas < self.max_tx_gas:
            raise _bad(f"contracts.max_block_gas {self.max_block_gas} is below max_tx_gas {self.max_tx_gas}")

    def to_wire(self) -> list[Any]:
        return [CONTRACT_PARAMS_VERSION, *(getattr(self, name) for name, _, _ in self._INTS)]

    @classmethod
    def from_wire(cls, wire: object) -> "ContractParams":
        n = len(cls._INTS)
        if not isinstance(wire, list) or len(wire) != n + 1 or wire[0] != CONTRACT_PARAMS_VERSION:
            raise _bad(f"contract params must be a version-{CONTRACT_PARAMS_VERSION} array of {n + 1} fields")
        return cls(**dict(zip((name for name, _, _ in cls._INTS), wire[1:])))

    def to_json_obj(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name, _, _ in self._INTS}

    @classmethod
    def from_json_obj(cls, obj: object) -> "ContractParams":
        return cls(**_object("params.contracts", obj, {name for name, _, _ in cls._INTS}))


@dataclass(frozen=True, slots=True)
class Params:
    """Consensus-critical parameters, fixed at genesis."""

    max_block_txs: int = 5000
    max_block_bytes: int = 4 * 1024 * 1024
    max_tx_bytes: int = 16 * 1024
    min_gas_price: int = DEFAULT_MIN_GAS_PRICE
    gas: Mapping[TxKind, int] = field(default_factory=lambda: DEFAULT_GAS)
    epoch_length: int = 100
    max_clock_drift_ms: int = 10_000
    # Liquidity mining (issue #3): who may set pool reward rates, and each pool's
    # rate (QNX base units per block, keyed by pool id "AAA/BBB") from genesis on.
    reward_authority: bytes = NO_AUTHORITY
    pool_reward_rates: Mapping[str, int] = field(default_factory=dict)
    # Staking (issue 10): None keeps the genesis set fixed and refuses staking transactions (and the
    # params' encoding is the version-2 one every earlier chain hashed).
    staking: StakingParams | None = None
    # Contracts (issue 11): None refuses contract transactions (and keeps the earlier encodings).
    contracts: ContractParams | None = None

    def __post_init__(self) -> None:
        _int("max_block_txs", self.max_block_txs, 1, 100_000)
        _int("max_block_bytes", self.max_block_bytes, 1024, MAX_BLOCK_BYTES_LIMIT)
        _int("max_tx_bytes", self.max_tx_bytes, 256, min(self.max_block_bytes // 2, MAX_TX_BYTES_CEILING))
        _int("min_gas_price", self.min_gas_price, 0, MAX_AMOUNT)
        _int("epoch_length", self.epoch_length, 1, MAX_UINT64)
        _int("max_clock_drift_ms", self.max_clock_drift_ms, 0, MAX_UINT64)
        if isinstance(self.staking, StakingParams):
            if self.staking.unbonding_blocks <= self.epoch_length:
                # Unstaked power leaves the set only at the epoch's end: a shorter unbonding would pay
                # the stake back while it still votes, and it could equivocate with nothing at risk.
                raise _bad(f"staking.unbonding_blocks {self.staking.unbonding_blocks} must exceed epoch_length "
                           f"{self.epoch_length}")
            if self.staking.max_evidence_age + self.epoch_length > self.staking.unbonding_blocks:
                # Stake unstaked at an epoch's first height votes to its end; evidence of that epoch
                # must land before that stake matures, so it is still there to slash.
                raise _bad(f"staking.max_evidence_age {self.staking.max_evidence_age} + epoch_length "
                           f"{self.epoch_length} exceeds unbonding_blocks {self.staking.unbonding_blocks}")
        if not isinstance(self.gas, Mapping):
            raise _bad(f"gas must be a mapping of kind to gas, got {type(self.gas).__name__}")
        gas: dict[TxKind, int] = {}
        for kind, amount in self.gas.items():
            try:
                kind = TxKind(kind)
            except ValueError:
                raise _bad(f"gas names unknown transaction kind {kind!r}") from None
            if kind in STAKING_KINDS:
                raise _bad(f"gas for {kind.name.lower()} belongs in params.staking.gas")
            if kind in CONTRACT_KINDS:
                raise _bad(f"{kind.name.lower()} has no fixed gas: its transactions carry their own gas_limit")
            gas[kind] = _int(f"gas for {kind.name.lower()}", amount, 0, MAX_UINT64)
        missing = sorted(k.name.lower() for k in TxKind if k not in gas and k not in STAKING_KINDS
                         and k not in CONTRACT_KINDS)
        if missing:
            raise _bad(f"gas is missing for kinds {', '.join(missing)}")
        object.__setattr__(self, "gas", MappingProxyType(dict(sorted(gas.items()))))
        _bytes("reward_authority", self.reward_authority, ADDRESS_LEN)
        if not isinstance(self.pool_reward_rates, Mapping):
            raise _bad("pool_reward_rates must be a mapping of pool id to rate")
        rates: dict[str, int] = {}
        for pid, rate in self.pool_reward_rates.items():
            parts = pid.split("/") if isinstance(pid, str) else []
            if len(parts) != 2 or parts[0] >= parts[1]:
                raise _bad(f"pool id {pid!r} must be two different symbols in sorted order, joined by '/'")
            _symbol(parts[0])
            _symbol(parts[1])
            rates[pid] = _int(f"reward rate of pool {pid}", rate, 0, MAX_AMOUNT)
        object.__setattr__(self, "pool_reward_rates", MappingProxyType(dict(sorted(rates.items()))))
        if self.staking is not None and not isinstance(self.staking, StakingParams):
            raise _bad(f"params.staking must be StakingParams, got {type(self.staking).__name__}")
        if self.contracts is not None and not isinstance(self.contracts, ContractParams):
            raise _bad(f"params.contracts must be ContractParams, got {type(self.contracts).__name__}")

    def gas_for(self, kind: TxKind) -> int:
        """The kind's gas; a staking kind on a chain without staking has none (StakingDisabled).

        A contract kind has no fixed gas (ContractsDisabled without contracts, else ValueError): its
        transactions carry their own limit, which ``tx_gas_limit`` reads."""
        if kind in CONTRACT_KINDS:
            if self.contracts is None:
                raise ContractsDisabled(kind.name.lower())
            raise ValueError(f"{kind.name.lower()} carries its own gas_limit; use Params.tx_gas_limit")
        if kind in STAKING_KINDS:
            if self.staking is None:
                raise StakingDisabled(kind.name.lower())
            return self.staking.gas[kind]
        return self.gas[kind]

    def min_fee(self, kind: TxKind) -> int:
        """Smallest fee a transaction of ``kind`` may carry: gas(kind) * min_gas_price."""
        return self.gas_for(kind) * self.min_gas_price

    def tx_gas_limit(self, kind: TxKind, payload: object) -> int:
        """The gas a transaction may use: its kind's fixed gas, or a contract transaction's own gas_limit."""
        if kind in CONTRACT_KINDS:
            if self.contracts is None:
                raise ContractsDisabled(kind.name.lower())
            return payload.gas_limit  # type: ignore[attr-defined,no-any-return]
        return self.gas_for(kind)

    def min_tx_fee(self, kind: TxKind, payload: object) -> int:
        """Smallest fee of a transaction: its gas limit * min_gas_price."""
        return self.tx_gas_limit(kind, payload) * self.min_gas_price

    def to_wire(self) -> list[Any]:
        wire = self._wire_v2()
        if self.contracts is not None:
            staking = None if self.staking is None else self.staking.to_wire()
            return [PARAMS_VERSION_CONTRACTS, *wire[1:], staking, self.contracts.to_wire()]
        if self.staking is None:
            return wire
        return [PARAMS_VERSION_STAKING, *wire[1:], self.staking.to_wire()]

    def _wire_v2(self) -> list[Any]:
        return [
            PARAMS_VERSION,
            self.max_block_txs,
            self.max_block_bytes,
            self.max_tx_bytes,
            self.min_gas_price,
            [[int(k), v] for k, v in sorted(self.gas.items())],
            self.epoch_length,
            self.max_clock_drift_ms,
            self.reward_authority,
            [[pid, rate] for pid, rate in self.pool_reward_rates.items()],
        ]

    @classmethod
    def from_wire(cls, wire: object) -> "Params":
        staking = contracts = None
        if isinstance(wire, list) and len(wire) == 12 and wire[0] == PARAMS_VERSION_CONTRACTS:
            staking = None if wire[10] is None else StakingParams.from_wire(wire[10])
            contracts = ContractParams.from_wire(wire[11])
            wire = [PARAMS_VERSION, *wire[1:10]]
        elif isinstance(wire, list) and len(wire) == 11 and wire[0] == PARAMS_VERSION_STAKING:
            staking = StakingParams.from_wire(wire[10])
            wire = [PARAMS_VERSION, *wire[1:10]]
        if not isinstance(wire, list) or len(wire) != 10 or wire[0] != PARAMS_VERSION:
            raise _bad(f"params must be a version-{PARAMS_VERSION} array of 10 fields "
                       f"(or version {PARAMS_VERSION_STAKING} of 11 with staking, "
                       f"or version {PARAMS_VERSION_CONTRACTS} of 12 with contracts)")
        _, txs, block_bytes, tx_bytes, price, gas, epoch, drift, authority, rates = wire
        if not isinstance(gas, list) or not all(isinstance(g, list) and len(g) == 2 for g in gas):
            raise _bad("params gas must be an array of [kind, gas] pairs")
        if not isinstance(rates, list) or not all(isinstance(r, list) and len(r) == 2 for r in rates):
            raise _bad("params pool_reward_rates must be an array of [pool id, rate] pairs")
        return cls(txs, block_bytes, tx_bytes, price, {k: v for k, v in gas}, epoch, drift, authority,
                   {p: r for p, r in rates}, staking, contracts)

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "max_block_txs": self.max_block_txs,
            "max_block_bytes": self.max_block_bytes,
            "max_tx_bytes": self.max_tx_bytes,
            "min_gas_price": str(self.min_gas_price),
            "gas": {k.name.lower(): v for k, v in sorted(self.gas.items())},
            "epoch_length": self.epoch_length,
            "max_clock_drift_ms": self.max_clock_drift_ms,
            "reward_authority": address_to_text(self.reward_authority),
            "pool_reward_rates": {pid: str(rate) for pid, rate in self.pool_reward_rates.items()},
            **({"staking": self.staking.to_json_obj()} if self.staking is not None else {}),
            **({"contracts": self.contracts.to_json_obj()} if self.contracts is not None else {}),
        }

    @classmethod
    def from_json_obj(cls, obj: object) -> "Params":
        fields = _object("params", obj, set(cls.__dataclass_fields__))
        kwargs: dict[str, Any] = {}
        for key, value in fields.items():
            if key == "gas":
                gas_obj = _object("params.gas", value, {k.name.lower() for k in TxKind
                                                        if k not in STAKING_KINDS and k not in CONTRACT_KINDS})
                kwargs["gas"] = {**DEFAULT_GAS, **{TxKind[k.upper()]: v for k, v in gas_obj.items()}}
            elif key == "min_gas_price":
                kwargs[key] = _amount("params.min_gas_price", value)
            elif key == "reward_authority":
                kwargs[key] = _address(value)
            elif key == "pool_reward_rates":
                rates = _object("params.pool_reward_rates", value, None)
                kwargs[key] = {pid: _amount(f"reward rate of pool {pid}", r) for pid, r in rates.items()}
            elif key == "staking":
                kwargs[key] = None if value is None else StakingParams.from_json_obj(value)
            elif key == "contracts":
                kwargs[key] = None if value is None else ContractParams.from_json_obj(value)
            else:
                kwargs[key] = value
        return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class GenesisValidator:
    name: str
    pubkey: bytes
    power: int

    def __post_init__(self) -> None:
        _name("validator name", self.name)
        _bytes("validator pubkey", self.pubkey, PUBKEY_LEN)
        _int(f"power of validator {self.name}", self.power, 1, MAX_UINT64)

    @property
    def address(self) -> Address:
        return address_of(self.pubkey)


@dataclass(frozen=True, slots=True)
class GenesisToken:
    symbol: str
    name: str
    decimals: int
    issuer: Address

    def __post_init__(self) -> None:
        _symbol(self.symbol)
        _name(f"name of token {self.symbol}", self.name)
        _int(f"decimals of token {self.symbol}", self.decimals, 0, MAX_DECIMALS)
        _bytes(f"issuer of token {self.symbol}", self.issuer, ADDRESS_LEN)


@dataclass(frozen=True, slots=True)
class GenesisAccount:
    address: Address
    balances: Mapping[str, int]

    def __post_init__(self) -> None:
        _bytes("account address", self.address, ADDRESS_LEN)
        if not isinstance(self.balances, Mapping):
            raise _bad("account balances must be a mapping of symbol to amount")
        for symbol, amount in self.balances.items():
            _symbol(symbol)
            _int(f"balance of {symbol}", amount, 0, MAX_AMOUNT)
        object.__setattr__(self, "balances", MappingProxyType(dict(sorted(self.balances.items()))))


@dataclass(frozen=True, slots=True)
class Genesis:
    chain_id: str
    genesis_time_ms: int
    validators: tuple[GenesisValidator, ...]
    tokens: tuple[GenesisToken, ...] = ()
    accounts: tuple[GenesisAccount, ...] = ()
    params: Params = field(default_factory=Params)
    # Marks a chain made for tests: only on one may a node run test-only behaviour (a validator
    # configured to equivocate, node.misbehaviour).  Part of the genesis hash.
    test_chain: bool = False
    # The hash, computed once: a genesis with thousands of accounts takes milliseconds to encode, and
    # every sync status answer carries it.
    _hash: Hash | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        try:
            check_chain_id(self.chain_id)
        except MalformedTransaction as exc:
            raise _bad(str(exc)) from None
        if not isinstance(self.test_chain, bool):
            raise _bad(f"test_chain must be true or false, got {self.test_chain!r}")
        _int("genesis_time_ms", self.genesis_time_ms, 0, MAX_UINT64)
        if not isinstance(self.params, Params):
            raise _bad(f"params must be Params, got {type(self.params).__name__}")
        validators = _sorted_unique("validator", self.validators, GenesisValidator, lambda v: v.address)
        if not validators:
            raise _bad("genesis needs at least one validator")
        _int("total validator power", sum(v.power for v in validators), 1, MAX_UINT64)
        tokens = _sorted_unique("token", self.tokens, GenesisToken, lambda t: t.symbol)
        if any(t.symbol == QNX for t in tokens):
            raise _bad(f"{QNX} is the native token and must not be listed among tokens")
        accounts = _sorted_unique("account", self.accounts, GenesisAccount, lambda a: a.address)
        known = {QNX} | {t.symbol for t in tokens}
        supplies: dict[str, int] = {}
        for account in accounts:
            for symbol, amount in account.balances.items():
                if symbol not in known:
                    raise _bad(f"account {address_to_text(account.address)} holds undeclared token {symbol}")
                supplies[symbol] = supplies.get(symbol, 0) + amount
        staking = self.params.staking
        if staking is not None:
            for v in validators:
                if v.power * POWER_REDUCTION < staking.min_self_bond:
                    raise _bad(f"validator {v.name}'s self-bond of {v.power} QNX (its power) is below "
                               f"min_self_bond {staking.min_self_bond}")
            if len(validators) > staking.max_validators:
                raise _bad(f"genesis has {len(validators)} validators, above max_validators {staking.max_validators}")
            supplies[QNX] = supplies.get(QNX, 0) + sum(v.power for v in validators) * POWER_REDUCTION
        for symbol, supply in sorted(supplies.items()):
            if supply > MAX_AMOUNT:
                raise _bad(f"genesis supply of {symbol} is {supply}, above the maximum {MAX_AMOUNT}")
        object.__setattr__(self, "validators", validators)
        object.__setattr__(self, "tokens", tokens)
        object.__setattr__(self, "accounts", accounts)

    # -- derived -------------------------------------------------------------

    def supply(self, symbol: str) -> int:
        """Genesis balances, plus (QNX, with staking) the validators' self-bonds: power × 10^18 each."""
        total = sum(a.balances.get(symbol, 0) for a in self.accounts)
        if symbol == QNX and self.params.staking is not None:
            total += self.bonded_at_genesis()
        return total

    def bonded_at_genesis(self) -> int:
        """QNX bonded by the genesis validators (their power in whole QNX), 0 without staking."""
        if self.params.staking is None:
            return 0
        return sum(v.power for v in self.validators) * POWER_REDUCTION

    @property
    def hash(self) -> Hash:
        if self._hash is None:
            object.__setattr__(self, "_hash", domain_digest(DOMAIN_GENESIS, self.encode()))
        return self._hash  # type: ignore[return-value]

    # -- canonical bytes -------------------------------------------------------

    def to_wire(self) -> list[Any]:
        wire = [
            GENESIS_VERSION_TEST_CHAIN if self.test_chain else GENESIS_VERSION,
            self.chain_id,
            self.genesis_time_ms,
            [[v.name, v.pubkey, v.power] for v in self.validators],
            [[t.symbol, t.name, t.decimals, t.issuer] for t in self.tokens],
            [[a.address, [[s, n] for s, n in a.balances.items()]] for a in self.accounts],
            self.params.to_wire(),
        ]
        return wire + [True] if self.test_chain else wire

    def encode(self) -> bytes:
        return encode(self.to_wire())

    @classmethod
    def from_wire(cls, wire: object) -> "Genesis":
        shapes = {GENESIS_VERSION: 7, GENESIS_VERSION_TEST_CHAIN: 8}
        if not isinstance(wire, list) or not wire or shapes.get(wire[0]) != len(wire) or isinstance(wire[0], bool):
            raise _bad(f"genesis must be a version-{GENESIS_VERSION} array of 7 fields "
                       f"(or version {GENESIS_VERSION_TEST_CHAIN} of 8)")
        if len(wire) == 8 and wire[7] is not True:
            raise _bad("a version-2 genesis carries test_chain = true")
        _, chain_id, time_ms, validators, tokens, accounts, params = wire[:7]
        try:
            return cls(
                chain_id,
                time_ms,
                tuple(GenesisValidator(*v) for v in validators),
                tuple(GenesisToken(*t) for t in tokens),
                tuple(GenesisAccount(a, {s: n for s, n in balances}) for a, balances in accounts),
                Params.from_wire(params),
                test_chain=len(wire) == 8,
            )
        except (TypeError, ValueError) as exc:
            raise _bad(f"genesis has the wrong shape: {exc}") from None

    @classmethod
    def decode(cls, data: bytes) -> "Genesis":
        return cls.from_wire(decode(data))

    # -- JSON ---------------------------------------------------------------

    def to_json(self) -> str:
        obj = {
            "chain_id": self.chain_id,
            "genesis_time_ms": self.genesis_time_ms,
            "validators": [
                {"name": v.name, "pubkey": "0x" + v.pubkey.hex(), "power": v.power} for v in self.validators
            ],
            "tokens": [
                {"symbol": t.symbol, "name": t.name, "decimals": t.decimals, "issuer": address_to_text(t.issuer)}
                for t in self.tokens
            ],
            "accounts": [
                {"address": address_to_text(a.address), "balances": {s: str(n) for s, n in a.balances.items()}}
                for a in self.accounts
            ],
            "params": self.params.to_json_obj(),
        }
        if self.test_chain:
            obj["test_chain"] = True
        return json.dumps(obj, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "Genesis":
        try:
            obj = json.loads(text, parse_float=_no_float, parse_constant=_no_float, object_pairs_hook=_unique_keys)
        except (json.JSONDecodeError, RecursionError) as exc:
            raise _bad(f"genesis is not valid JSON: {exc}") from None
        top = _object("genesis", obj, {"chain_id", "genesis_time_ms", "validators", "tokens", "accounts", "params",
                                       "test_chain"})
        for required in ("chain_id", "genesis_time_ms", "validators"):
            if required not in top:
                raise _bad(f"genesis is missing {required!r}")
        validators = tuple(
            GenesisValidator(v["name"], _hex("validator pubkey", v["pubkey"]), v["power"])
            for v in (
                _object("validator", x, {"name", "pubkey", "power"}, required=True)
                for x in _list("validators", top["validators"])
            )
        )
        tokens = tuple(
            GenesisToken(t["symbol"], t["name"], t["decimals"], _address(t["issuer"]))
            for t in (
                _object("token", x, {"symbol", "name", "decimals", "issuer"}, required=True)
                for x in _list("tokens", top.get("tokens", []))
            )
        )
        accounts = []
        for x in _list("accounts", top.get("accounts", [])):
            a = _object("account", x, {"address", "balances"}, required=True)
            balances = _object("balances", a["balances"], None)
            accounts.append(
                GenesisAccount(_address(a["address"]), {s: _amount(f"balance of {s}", n) for s, n in balances.items()})
            )
        params = Params.from_json_obj(top["params"]) if "params" in top else Params()
        return cls(top["chain_id"], top["genesis_time_ms"], validators, tokens, tuple(accounts), params,
                   test_chain=top.get("test_chain", False))


# -- helpers ----------------------------------------------------------------------


def _sorted_unique(what: str, items: Iterable[Any], kind: type, key: Callable[[Any], Any]) -> tuple[Any, ...]:
    items = tuple(items)
    for item in items:
        if not isinstance(item, kind):
            raise _bad(f"{what} entries must be {kind.__name__}, got {type(item).__name__}")
    ordered = tuple(sorted(items, key=key))
    for a, b in zip(ordered, ordered[1:], strict=False):
        if key(a) == key(b):
            shown = address_to_text(key(a)) if isinstance(key(a), bytes) else key(a)
            raise _bad(f"duplicate {what} {shown}")
    return ordered


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object whose keys are all distinct (json's default keeps the last of a repeated key,
    so two readers of one file could see two genesis documents)."""
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _bad(f"genesis repeats the key {key!r} in one object")
        out[key] = value
    return out


def _no_float(text: str) -> Any:
    raise _bad(f"floats are not allowed in genesis ({text}); write amounts as decimal strings")


def _object(what: str, obj: object, allowed: set[str] | None, *, required: bool = False) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise _bad(f"{what} must be a JSON object, got {type(obj).__name__}")
    if allowed is not None:
        unknown = sorted(set(obj) - allowed)
        if unknown:
            raise _bad(f"{what} has unknown fields {unknown}")
        missing = sorted(allowed - set(obj)) if required else []
        if missing:
            raise _bad(f"{what} is missing fields {missing}")
    return obj


def _list(what: str, obj: object) -> list[Any]:
    if not isinstance(obj, list):
        raise _bad(f"{what} must be a JSON array, got {type(obj).__name__}")
    return obj


def _amount(what: str, value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 40:
        return int(value)
    raise _bad(f"{what} {value!r} must be a decimal string of base units")


def _hex(what: str, value: object) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise _bad(f"{what} {value!r} must be 0x-prefixed hex")
    try:
        return bytes.fromhex(value[2:])
    except ValueError:
        raise _bad(f"{what} {value!r} is not valid hex") from None


def _address(value: object) -> Address:
    if not isinstance(value, str):
        raise _bad(f"address {value!r} must be qnx1 text")
    try:
        return address_from_text(value)
    except InvalidKey as exc:
        raise _bad(str(exc)) from None


__all__ = [
    "DEFAULT_GAS",
    "NATIVE_ISSUER",
    "NATIVE_NAME",
    "QNX",
    "QNX_DECIMALS",
    "Params",
    "StakingParams",
    "ContractParams",
    "DEFAULT_STAKING_GAS",
    "POWER_REDUCTION",
    "Genesis",
    "GenesisValidator",
    "GenesisToken",
    "GenesisAccount",
]
