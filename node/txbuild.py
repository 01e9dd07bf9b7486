"""Build the payload of every transaction kind, and the one way to sign one.

Amounts here are integers of base units (a client converts whole units with
the token's decimals, ``Client.units``); addresses are bech32 text or 20 raw
bytes; a pool is its pair, ``"AAA/BBB"`` (either order).  Payload objects
check their own fields on construction (``state.payloads``), so a bad value
is refused here, before anything is signed or sent, with the error naming
the field.

``sign`` is the only place a client turns a payload into a signed
transaction; ``Client.sign`` and ``AsyncClient.sign`` fill in the chain id,
nonce and fee from the node and call it.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from node.contract_values import EMPTY_ARGS
from node.errors import NodeError
from state.contracts import deploy_intrinsic_gas
from state.crypto import PrivateKey, address_from_text
from state.payloads import (
    CONTRACT_KINDS,
    Batch,
    BatchOp,
    ContractCall,
    ContractDeploy,
    FlashBorrow,
    FlashRepay,
    Payload,
    PoolAdd,
    PoolCreate,
    PoolRemove,
    Redelegate,
    RewardsClaim,
    SetRewardRate,
    Stake,
    StakingRewardsWithdraw,
    Swap,
    SwapRoute,
    TokenCreate,
    TokenMint,
    Transfer,
    TxKind,
    Unjail,
    Unstake,
    ValidatorCreate,
    key_proof_digest,
    ValidatorEdit,
)
from state.transactions import SignedTransaction, Transaction

__all__ = [
    "TxBuildError", "address", "pair", "units", "transfer", "token_create", "token_mint", "pool_create", "pool_add",
    "pool_remove", "swap", "flash_borrow", "flash_repay", "batch", "batch_ops_from_json", "rewards_claim",
    "set_reward_rate", "validator_create", "validator_edit", "stake", "unstake", "redelegate", "unjail",
    "staking_rewards_withdraw", "min_fee", "sign", "contract_deploy", "contract_call", "attached", "max_tx_gas",
    "default_deploy_gas", "default_call_gas", "DEPLOY_GAS_HEADROOM", "CALL_GAS_DEFAULT",
]


class TxBuildError(NodeError):
    """An input a transaction cannot be built from (the message names it)."""


def address(value: str | bytes, what: str = "address") -> bytes:
    """20 address bytes from bech32 text (``qnx1...``) or raw bytes."""
    if isinstance(value, bytes):
        if len(value) != 20:
            raise TxBuildError(f"{what}: an address is 20 bytes, got {len(value)}")
        return value
    try:
        return address_from_text(value)
    except Exception as exc:  # bech32 reports several error types; all mean "not an address"
        raise TxBuildError(f"{what}: {exc}") from None


def pair(pool: str) -> tuple[str, str]:
    """``"AAA/BBB"`` -> ``("AAA", "BBB")`` (the order given)."""
    parts = pool.split("/") if isinstance(pool, str) else []
    if len(parts) != 2 or not all(parts):
        raise TxBuildError(f'pool must look like "AAA/BBB", got {pool!r}')
    return parts[0], parts[1]


def units(value: Any, what: str) -> int:
    """A whole number of base units from an int or a string of digits (no sign, no point)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    text = value if isinstance(value, str) else ""
    if not text.isascii() or not text.isdigit():
        raise TxBuildError(f"{what} must be a whole number of base units, got {value!r}")
    return int(text)


def transfer(to: str | bytes, amount: int, token: str = "QNX") -> Transfer:
    return Transfer(to=address(to, "to"), token=token, amount=amount)


def token_create(symbol: str, name: str, decimals: int, initial_supply: int = 0) -> TokenCreate:
    return TokenCreate(symbol=symbol, name=name, decimals=decimals, initial_supply=initial_supply)


def token_mint(symbol: str, to: str | bytes, amount: int) -> TokenMint:
    return TokenMint(symbol=symbol, to=address(to, "to"), amount=amount)


def pool_create(pool: str, amount_a: int, amount_b: int, min_shares: int = 0) -> PoolCreate:
    a, b = pair(pool)
    return PoolCreate(a, b, amount_a, amount_b, min_shares)


def pool_add(pool: str, amount_a: int, amount_b: int, min_shares: int = 0) -> PoolAdd:
    a, b = pair(pool)
    return PoolAdd(a, b, amount_a, amount_b, min_shares)


def pool_remove(pool: str, shares: int, min_a: int = 0, min_b: int = 0) -> PoolRemove:
    a, b = pair(pool)
    return PoolRemove(a, b, shares, min_a, min_b)


def swap(path: Sequence[str], amount_in: int, min_out: int, deadline: int) -> Swap | SwapRoute:
    """A one-pool swap for a two-token path, a multi-hop route for a longer one."""
    route = tuple(path)
    if len(route) == 2:
        return Swap(route[0], route[1], amount_in, min_out, deadline)
    return SwapRoute(route, amount_in, min_out, deadline)


def flash_borrow(pool: str, token: str, amount: int) -> FlashBorrow:
    a, b = pair(pool)
    return FlashBorrow(a, b, token, amount)


def flash_repay(pool: str, token: str, amount: int) -> FlashRepay:
    a, b = pair(pool)
    return FlashRepay(a, b, token, amount)


def batch(ops: Sequence[BatchOp]) -> Batch:
    return Batch(tuple(ops))


def rewards_claim(pool: str) -> RewardsClaim:
    a, b = pair(pool)
    return RewardsClaim(a, b)


def set_reward_rate(pool: str, rate: int) -> SetRewardRate:
    a, b = pair(pool)
    return SetRewardRate(a, b, rate)


def batch_ops_from_json(spec: Any, default_deadline: int) -> tuple[BatchOp, ...]:
    """Batch operations from their JSON form (amounts are base units, as decimal strings or integers).

    ``{"ops": [{"op": "flash_borrow", "pool": "AAA/BBB", "token": "AAA", "amount": "1000"}, ...]}``;
    ops: transfer {to, token, amount}; swap {token_in, token_out, amount_in, min_out?, deadline?};
    route {path, amount_in, min_out?, deadline?}; add {pool, amount_a, amount_b, min_shares?};
    remove {pool, shares, min_a?, min_b?}; flash_borrow / flash_repay {pool, token, amount}.
    """
    ops_spec = spec.get("ops") if isinstance(spec, dict) else spec
    if not isinstance(ops_spec, list):
        raise TxBuildError('a batch must be {"ops": [...]} or a list of operations')
    return tuple(_batch_op(i, op, default_deadline) for i, op in enumerate(ops_spec))


def _batch_op(i: int, op: Any, default_deadline: int) -> BatchOp:
    if not isinstance(op, dict) or "op" not in op:
        raise TxBuildError(f'operation {i} must be an object with an "op" field')
    name = op["op"]

    def get(field: str, default: Any = None) -> Any:
        if field not in op and default is None:
            raise TxBuildError(f"operation {i} ({name}) is missing {field!r}")
        return op.get(field, default)

    def amount(field: str, default: Any = None) -> int:
        return units(get(field, default), f"operation {i} {field}")

    def deadline() -> int:
        value = get("deadline", default_deadline)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TxBuildError(f"operation {i} deadline must be a block height, got {value!r}")
        return value

    if name == "transfer":
        return Transfer(address(get("to"), f"operation {i} to"), get("token"), amount("amount"))
    if name == "swap":
        return Swap(get("token_in"), get("token_out"), amount("amount_in"), amount("min_out", 0), deadline())
    if name == "route":
        path = get("path")
        if not isinstance(path, list):
            raise TxBuildError(f"operation {i} path must be a list of token symbols, got {path!r}")
        return SwapRoute(tuple(path), amount("amount_in"), amount("min_out", 0), deadline())
    if name == "add":
        return pool_add(get("pool"), amount("amount_a"), amount("amount_b"), amount("min_shares", 0))
    if name == "remove":
        return pool_remove(get("pool"), amount("shares"), amount("min_a", 0), amount("min_b", 0))
    if name == "flash_borrow":
        return flash_borrow(get("pool"), get("token"), amount("amount"))
    if name == "flash_repay":
        return flash_repay(get("pool"), get("token"), amount("amount"))
    raise TxBuildError(f"operation {i} has unknown op {name!r}")


def validator_create(consensus_key: PrivateKey, operator: bytes, chain_id: str, moniker: str, commission_bps: int,
                     self_bond: int) -> ValidatorCreate:
    """Register ``operator`` (the transaction's signer) as the operator of a validator voting with
    ``consensus_key``, which signs the proof that it agrees (state.payloads.key_proof_digest)."""
    proof = consensus_key.sign(key_proof_digest(chain_id, operator))
    return ValidatorCreate(consensus_key.public_key, moniker, commission_bps, self_bond, proof)


def validator_edit(moniker: str, commission_bps: int) -> ValidatorEdit:
    return ValidatorEdit(moniker, commission_bps)


def stake(validator: str | bytes, amount: int) -> Stake:
    """Delegate ``amount`` base units of QNX to the validator operated by ``validator``."""
    return Stake(address(validator, "validator"), amount)


def unstake(validator: str | bytes, amount: int) -> Unstake:
    return Unstake(address(validator, "validator"), amount)


def redelegate(source: str | bytes, destination: str | bytes, amount: int) -> Redelegate:
    return Redelegate(address(source, "source"), address(destination, "destination"), amount)


def unjail() -> Unjail:
    return Unjail()


def staking_rewards_withdraw() -> StakingRewardsWithdraw:
    return StakingRewardsWithdraw()


def min_fee(params: Mapping[str, Any], kind: TxKind, payload: Payload | None = None) -> int:
    """The transaction's gas at the minimum gas price, from ``qenex_getParams``'s answer: the kind's
    gas (staking kinds' under ``staking.gas``), or a contract transaction's own ``gas_limit`` (its
    ``payload`` is needed then) on a chain whose params have a ``contracts`` section."""
    name = kind.name.lower()
    if kind in CONTRACT_KINDS:
        max_tx_gas(params, name)  # a chain without contracts refuses the kind: say so before signing
        gas_limit = getattr(payload, "gas_limit", None)
        if gas_limit is None:
            raise TxBuildError(f"the minimum fee of a {name} transaction is its gas_limit x min_gas_price: "
                               "give its payload")
        return int(gas_limit) * int(params["min_gas_price"])
    gas = params["gas"].get(name)
    if gas is None:
        staking = params.get("staking") or {}
        if name not in staking.get("gas", {}):
            raise TxBuildError(f"the node's params price no {name} transaction (a chain without staking?)")
        gas = staking["gas"][name]
    return int(gas) * int(params["min_gas_price"])


# -- contracts (issue 11) ------------------------------------------------------------------

# Default gas limits: a deploy's intrinsic gas (validating and storing its code) plus room for its
# init; a call's is a flat amount.  Both are capped by the chain's max_tx_gas.  The fee is the gas
# limit x the price, and the unused part is refunded, so a generous default costs nothing.
DEPLOY_GAS_HEADROOM = 5_000_000
CALL_GAS_DEFAULT = 2_000_000


def max_tx_gas(params: Mapping[str, Any], what: str = "a contract transaction") -> int:
    """The chain's ``contracts.max_tx_gas`` from ``qenex_getParams``'s answer; TxBuildError without contracts."""
    contracts = params.get("contracts")
    if not isinstance(contracts, Mapping):
        raise TxBuildError(f"the node's chain has no contracts (its params have no contracts section): "
                           f"it refuses {what}")
    return int(contracts["max_tx_gas"])


def default_deploy_gas(params: Mapping[str, Any], code: bytes, init_args: bytes) -> int:
    return min(deploy_intrinsic_gas(code, init_args) + DEPLOY_GAS_HEADROOM, max_tx_gas(params))


def default_call_gas(params: Mapping[str, Any]) -> int:
    return min(CALL_GAS_DEFAULT, max_tx_gas(params))


def attached(pairs: Iterable[tuple[str, int]]) -> tuple[tuple[str, int], ...]:
    """Tokens to attach as the payload takes them: (symbol, base units) sorted by symbol, each once."""
    out = sorted((symbol, amount) for symbol, amount in pairs)
    symbols = [symbol for symbol, _ in out]
    if len(set(symbols)) != len(symbols):
        raise TxBuildError(f"a token is attached twice: {', '.join(symbols)} (attach each token once)")
    return tuple(out)


def contract_deploy(code: bytes, init_args: bytes = EMPTY_ARGS, attach: Iterable[tuple[str, int]] = (), *,
                    gas_limit: int) -> ContractDeploy:
    """Deploy WebAssembly ``code`` (its ``init`` runs with ``init_args``, canonical msgpack; see
    node.contract_values.args_from_json); its address is ``contract_address(sender, nonce)``."""
    return ContractDeploy(bytes(code), init_args, attached(attach), gas_limit)


def contract_call(contract: str | bytes, method: str, args: bytes = EMPTY_ARGS,
                  attach: Iterable[tuple[str, int]] = (), *, gas_limit: int) -> ContractCall:
    return ContractCall(address(contract, "contract"), method, args, attached(attach), gas_limit)


def sign(key: PrivateKey, payload: Payload, *, chain_id: str, nonce: int, fee: int) -> SignedTransaction:
    """``payload`` as a transaction of its kind from ``key``, signed."""
    kind: TxKind = payload.KIND  # type: ignore[union-attr]
    return Transaction(chain_id, kind, key.public_key, nonce, fee, payload).sign(key)
