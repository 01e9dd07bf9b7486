"""An RpcContext for tests: an Application and only the parts a test gives.

What a test leaves out is inert: no mempool (nothing pending), no flags, no
peers, not a validator, not syncing, no consensus engine or validator set, a
risk hook without a model, no market model, and submission refused.
"""

from __future__ import annotations

from typing import Any, Callable

from node.errors import TxRejected
from node.mempool import Mempool
from node.risk.hook import RiskHook
from node.rpc_context import RpcContext


def _no_submissions(raw: bytes) -> bytes:
    raise TxRejected("this test context takes no submissions", reason="test")


def rpc_context(
    app: Any,
    *,
    mempool: Mempool | None = None,
    flagged: dict[bytes, dict[str, Any]] | None = None,
    risk: RiskHook | None = None,
    market_model: Any = None,
    submit_raw_tx: Callable[[bytes], bytes] = _no_submissions,
    name: str = "test",
) -> RpcContext:
    flags = {} if flagged is None else flagged
    if risk is None:
        risk = RiskHook(None, None, review=0.5, reject=0.9)
    return RpcContext(
        app=app,
        node_name=name,
        submit_raw_tx=submit_raw_tx,
        pending_nonce=mempool.pending_nonce if mempool is not None else (lambda address: None),
        pending_tx=mempool.get if mempool is not None else (lambda tx_hash: None),
        pending_entries=mempool.entries if mempool is not None else (lambda limit: iter(())),
        mempool_size=(lambda: (len(mempool), mempool.size_bytes)) if mempool is not None else (lambda: (0, 0)),
        flagged_risk=flags.get,
        peer_count=lambda: 0,
        peer_id=lambda: None,
        validator_address=lambda: None,
        syncing=lambda: False,
        consensus_state=lambda: None,
        validator_set=lambda: None,
        risk=risk,
        market_model=market_model,
    )


def bare_node(app: Any, name: str, *, node_key: Any = None) -> Any:
    """A Node with just what the RPC methods read (no p2p, driver or sync), over ``app``."""
    import collections

    from node.admission import Admission
    from node.config import MempoolSection, NodeConfig
    from node.metrics import NodeMetrics
    from node.runtime import Node
    from state.testing import dev_key

    node = Node.__new__(Node)
    node.metrics = NodeMetrics(process=False)
    node.app = app
    node.mempool = Mempool(app, MempoolSection())
    node.risk = RiskHook(None, None, review=0.5, reject=0.9)
    node.risk.attach(app)
    node.market_model = None
    node.flagged, node._gossip_out = {}, collections.deque()
    node.admission = Admission(app, node.mempool, node.risk, flagged=node.flagged, relay=node._gossip_out.append)
    node.p2p = node.driver = node.sync = node.ws_hub = None
    node.config = NodeConfig(name=name)
    node.node_key = node_key or dev_key(f"{name}-node")
    return node
