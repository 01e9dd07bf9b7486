"""Every read ``qenex_*`` JSON-RPC method as a typed ``Call``: its name and its params, nothing sent.

A ``Call[T]`` is what ``Client.request`` / ``AsyncClient.request`` send and
``T`` (``node.client_types``) is what they return; ``Client.batch`` takes a
list of them.  The clients expose each of these as a method of the same name
(``client.account(addr)`` is ``client.request(rpc_calls.account(addr))``).

Optional trailing params are left out when not given, so a call works on a
node that predates them: ``height`` is passed only when it is not ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, Mapping, Sequence, TypeVar

from node.client_types import (
    Account,
    Block,
    Contract,
    ContractCallResult,
    ContractState,
    Epoch,
    EvidencePage,
    Mempool,
    Params,
    Pool,
    PoolHistory,
    PoolList,
    Position,
    PricePrediction,
    Proof,
    Quote,
    RiskModel,
    RiskScore,
    SendResult,
    Staking,
    StakingValidators,
    Status,
    Token,
    TxRecord,
    Twap,
    Validators,
)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Call(Generic[T]):
    """One JSON-RPC call: ``method`` with positional ``params`` (or named ones, a mapping); answers a ``T``."""

    method: str
    params: tuple[Any, ...] | Mapping[str, Any] = ()

    def request(self, request_id: int) -> dict[str, Any]:
        params = dict(self.params) if isinstance(self.params, Mapping) else list(self.params)
        return {"jsonrpc": "2.0", "id": request_id, "method": self.method, "params": params}


def _trailing(*params: Any) -> tuple[Any, ...]:
    """``params`` without its trailing ``None``s (optional params not given)."""
    out = list(params)
    while out and out[-1] is None:
        out.pop()
    return tuple(out)


def _height(height: int | None) -> int | None:
    if height is not None and (isinstance(height, bool) or not isinstance(height, int) or height < 0):
        raise ValueError(f"height must be a block height (an integer >= 0) or None, got {height!r}")
    return height


def status() -> Call[Status]:
    """Chain id, head height and hashes, peers, validator, mempool size, syncing, consensus state."""
    return Call("qenex_status")


def account(address: str, height: int | None = None) -> Call[Account]:
    """Nonce, pending nonce, queued count and balances (base units) of ``address`` (at ``height``)."""
    return Call("qenex_getAccount", _trailing(address, _height(height)))


def block(height: int | str = "latest", full: bool = False) -> Call[Block]:
    """The block at ``height`` (or ``"latest"``): header fields and tx hashes, whole txs with ``full``."""
    return Call("qenex_getBlock", (height, full))


def transaction(tx_hash: str) -> Call[TxRecord]:
    """A transaction with its receipt (``status``, ``reason``, ``fee``, ``gas_used``, ``height``), or pending/queued."""
    return Call("qenex_getTransaction", (tx_hash,))


def receipt(tx_hash: str) -> Call[TxRecord]:
    """The same record as ``transaction``: the node answers both in one (its receipt fields once committed)."""
    return transaction(tx_hash)


def proof(tx_hash: str) -> Call[Proof]:
    """The RFC 6962 Merkle inclusion proof of a committed transaction."""
    return Call("qenex_getTransactionProof", (tx_hash,))


def validators(height: int | None = None) -> Call[Validators]:
    """The validator set (of the next height, or of ``height``) with powers and proposer priorities."""
    return Call("qenex_getValidators", _trailing(_height(height)))


def mempool(limit: int = 100) -> Call[Mempool]:
    """Pending count and bytes, the first ``limit`` pending txs in arrival order, queued count and bytes."""
    return Call("qenex_getMempool", (limit,))


def token(symbol: str, height: int | None = None) -> Call[Token]:
    """Name, decimals, issuer and total supply of token ``symbol`` (at ``height``)."""
    return Call("qenex_getToken", _trailing(symbol, _height(height)))


def params() -> Call[Params]:
    """Chain parameters: gas per kind, minimum gas price, limits."""
    return Call("qenex_getParams")


def pool(pool_id: str, height: int | None = None) -> Call[Pool]:
    """Reserves, shares, prices, cumulatives and rewards of pool ``"AAA/BBB"`` (at ``height``)."""
    return Call("qenex_getPool", _trailing(pool_id, _height(height)))


def pools() -> Call[PoolList]:
    """Every pool."""
    return Call("qenex_listPools")


def quote(token_in: str, token_out: str, amount_in: int | str, path: Sequence[str] | None = None,
          max_hops: int | None = None) -> Call[Quote]:
    """An exact-in swap quote: output, per-hop amounts and fees, price impact, best path (or ``path``)."""
    return Call("qenex_quoteSwap",
                _trailing(token_in, token_out, str(amount_in), None if path is None else list(path), max_hops))


def twap(pool_id: str, from_height: int | None = None, to_height: int | None = None,
         window_seconds: int | None = None) -> Call[Twap]:
    """Time-weighted average prices between two heights, or over the last ``window_seconds``."""
    return Call("qenex_getTwap", _trailing(pool_id, from_height, to_height, window_seconds))


def history(pool_id: str, from_height: int | None = None, to_height: int | None = None,
            limit: int | None = None) -> Call[PoolHistory]:
    """Per-block observations (time, reserves, prices, cumulatives) of a pool."""
    return Call("qenex_getPoolHistory", _trailing(pool_id, from_height, to_height, limit))


def position(address: str, pool_id: str) -> Call[Position]:
    """LP shares, redeemable amounts and pending rewards of ``address`` in a pool."""
    return Call("qenex_getLiquidityPosition", (address, pool_id))


def risk_score(raw: str) -> Call[RiskScore]:
    """Score a signed transaction (0x-hex) without submitting it (-32021 when the node has no model)."""
    return Call("qenex_riskScore", (raw,))


def risk_model() -> Call[RiskModel]:
    """The loaded risk model's version, thresholds, features and metrics (or the fallback policy)."""
    return Call("qenex_riskModel")


def send_transaction(raw: str) -> Call[SendResult]:
    """Submit a signed transaction (0x-hex); for batches of submissions (``Client.submit`` sends one)."""
    return Call("qenex_sendTransaction", (raw,))


def predict_price(pool_id: str) -> Call[PricePrediction]:
    """Probability that a pool's next price move is up, with the market model's indicators."""
    return Call("qenex_predictPrice", (pool_id,))


def staking(address: str, height: int | None = None) -> Call[Staking]:
    """``address``'s delegations, unbonding entries (with maturity heights), redelegations, pending rewards."""
    return Call("qenex_getStaking", _trailing(address, _height(height)))


def staking_validators(height: int | None = None) -> Call[StakingValidators]:
    """Every staking validator record: stake, self-bond, commission, jailed, power."""
    return Call("qenex_getStakingValidators", _trailing(_height(height)))


def evidence(from_height: int = 0, after: str | None = None, limit: int = 100) -> Call[EvidencePage]:
    """Equivocations the chain applied (slashed and tombstoned), by infraction height, one page."""
    return Call("qenex_getEvidence", (from_height, after, limit))


def epoch() -> Call[Epoch]:
    """The next block's epoch, its first and last height, and the height the next set signs from."""
    return Call("qenex_getEpoch")


def contract(address: str, height: int | None = None) -> Call[Contract]:
    """A contract's record: code hash and size, deployer, creation height, storage size, methods, balances."""
    return Call("qenex_getContract", _trailing(address, _height(height)))


def contract_state(address: str, key_prefix: str | None = None, limit: int = 100, start_after: str | None = None,
                   height: int | None = None) -> Call[ContractState]:
    """One page of a contract's storage (0x-hex keys and values, key order); ``next`` continues it."""
    return Call("qenex_getContractState", _trailing(address, key_prefix, limit, start_after, _height(height)))


def call_contract(contract: str, method: str, args: Any = None, height: int | None = None) -> Call[ContractCallResult]:
    """Run ``method`` read-only with JSON ``args`` (node.contract_values); its output, result and gas used."""
    return Call("qenex_callContract", _trailing(contract, method, args, _height(height)))


READS = (status, account, block, transaction, receipt, proof, validators, mempool, token, params, pool, pools,
         quote, twap, history, position, risk_score, risk_model, predict_price, staking, staking_validators, evidence,
         epoch, contract, contract_state, call_contract)
