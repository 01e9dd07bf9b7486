"""What the JSON-RPC method tables may read and submit: a narrow context.

The method tables (``node.rpc``, ``node.rpc_pools``, ``node.rpc_risk``,
``node.rpc_staking``, ``node.rpc_contracts``) and
the risk admin server receive an ``RpcContext``, never the ``Node``: the
composition root (``Node.rpc_context`` in ``node.runtime``) assembles one
from its parts, so no RPC module imports the runtime and each of them can be
built in a test from an Application and a few functions.

Everything that changes while the node runs (peers, sync, the consensus
engine, the validator set in force) is a function, read at call time; the
Application is read-only here (queries at the committed head).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable

if TYPE_CHECKING:
    from state.validators import ValidatorSet
    from node.risk.hook import RiskHook
    from node.risk.market import MarketModel
    from state.app import Application
    from state.transactions import SignedTransaction


@dataclass(frozen=True, slots=True)
class RpcContext:
    app: "Application"
    node_name: str
    # Submission: decode and admit a raw transaction, returning its hash;
    # raises MempoolError (its code and data become the JSON-RPC error).
    submit_raw_tx: Callable[[bytes], bytes]
    # Mempool readers.
    pending_nonce: Callable[[bytes], int | None]
    pending_tx: Callable[[bytes], "SignedTransaction | None"]
    pending_entries: Callable[[int], Iterable[tuple["SignedTransaction", int]]]  # arrival order, at most n
    mempool_size: Callable[[], tuple[int, int]]  # (transactions, bytes)
    # The risk hook's review flags by transaction hash (None: not flagged).
    flagged_risk: Callable[[bytes], dict[str, Any] | None]
    # Status providers.
    peer_count: Callable[[], int]
    peer_id: Callable[[], str | None]
    validator_address: Callable[[], bytes | None]  # None: this node does not validate
    syncing: Callable[[], bool]
    consensus_state: Callable[[], dict[str, Any] | None]
    validator_set: Callable[[], "ValidatorSet | None"]  # the set of the height being decided
    # Local policy the risk methods explain.
    risk: "RiskHook"
    market_model: "MarketModel | None"
    # The mempool's queued (future-nonce) area: by hash, count per address, (transactions, bytes).
    queued_tx: Callable[[bytes], "SignedTransaction | None"] = lambda _h: None
    queued_for: Callable[[bytes], int] = lambda _a: 0
    queued_size: Callable[[], tuple[int, int]] = lambda: (0, 0)
    # The gas a read-only contract query may burn (``[rpc] contract_query_gas``; node.rpc_contracts).
    contract_query_gas: int = 10_000_000

    def known_tx(self, tx_hash: bytes) -> "SignedTransaction | None":
        """A transaction this node holds, pending, queued or committed."""
        stx = self.pending_tx(tx_hash) or self.queued_tx(tx_hash)
        if stx is None:
            loc = self.app.get_tx(tx_hash)
            stx = loc.stx if loc is not None else None
        return stx
