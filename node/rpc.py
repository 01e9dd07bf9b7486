"""The ``qenex_*`` JSON-RPC methods.

Conventions (DESIGN.md): amounts are decimal strings of base units; hashes
and bytes are 0x-hex; addresses are bech32 ``qnx1...`` text.  Every parameter
is validated here, at the boundary, and a bad one is -32602 with a message
naming it.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
from typing import TYPE_CHECKING, Any, Callable

from node.errors import MempoolError
from node.jsonrpc import RPCError, brief, charge, invalid_params
from state.blocks import Block
from state.crypto import address_from_text, address_to_text
from state.errors import StateError
from state.payloads import check_symbol
from state.transactions import SignedTransaction

if TYPE_CHECKING:
    from node.runtime import Node

NOT_FOUND = -32004
MAX_HEIGHT = 2**64 - 1  # heights are u64 in the store's keys
MAX_ADDRESS_CHARS = 90  # bech32's own limit

# Work units per call in a batch (node.jsonrpc.Dispatcher.max_batch_cost, 200
# by default): a batch may hold 100 cheap reads but only 10 path searches.
# qenex_getBlock: answers kept (a full block is rendered once), blocks rendered
# inline below this many transactions, and the extra batch units an answer costs.
RENDERED_BLOCKS_KEPT = 64
RENDER_INLINE_TXS = 200
FULL_BLOCK_TXS_PER_UNIT = 50
HASHES_PER_UNIT = 1_000
MEMPOOL_LIST_MAX = 1_000

RPC_COSTS = {
    "qenex_quoteSwap": 20,
    "qenex_listPools": 20,
    "qenex_getPoolHistory": 10,
    "qenex_riskScore": 10,
    "qenex_predictPrice": 10,
    "qenex_sendTransaction": 2,
    "qenex_getMempool": 5,
    "qenex_getBlock": 2,
}


def hex0x(data: bytes) -> str:
    return "0x" + data.hex()


def parse_hex(value: Any, name: str, *, length: int | None = None) -> bytes:
    if not isinstance(value, str):
        raise invalid_params(f"{name} must be a 0x-hex string, got {type(value).__name__}")
    text = value[2:] if value.startswith(("0x", "0X")) else value
    if length is not None and len(text) != 2 * length:
        raise invalid_params(f"{name} must be {length} bytes (0x + {2 * length} hex digits), got {len(text)} characters")
    if not text.isascii():
        raise invalid_params(f"{name} is not valid hex: {brief(value)}")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise invalid_params(f"{name} is not valid hex: {brief(value)}") from None


def parse_address(value: Any, name: str = "address") -> bytes:
    if not isinstance(value, str):
        raise invalid_params(f"{name} must be a qnx1... address string, got {type(value).__name__}")
    if len(value) > MAX_ADDRESS_CHARS or not value.isascii():
        raise invalid_params(f"{name} {brief(value)} is not a qnx1... address")
    try:
        return address_from_text(value)
    except StateError as exc:
        raise invalid_params(f"{name}: {exc}") from None


def parse_height(value: Any, name: str = "height") -> int:
    """A block height: an integer or a decimal string of ASCII digits, in [0, 2**64 - 1]."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 20:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_HEIGHT:
        raise invalid_params(f'{name} must be an integer in [0, 2**64 - 1] or "latest", got {brief(value)}')
    return value


def parse_bool(value: Any, name: str) -> bool:
    if not isinstance(value, bool):
        raise invalid_params(f"{name} must be true or false, got {brief(value)}")
    return value


def tx_to_json(stx: SignedTransaction) -> dict[str, Any]:
    tx = stx.tx
    return {
        "hash": hex0x(stx.hash),
        "chain_id": tx.chain_id,
        "kind": tx.kind.name.lower(),
        "sender": address_to_text(tx.sender),
        "nonce": tx.nonce,
        "fee": str(tx.fee),
        "payload": payload_to_json(tx.payload),
    }


# Integer payload fields that are counts or heights, not amounts; every other
# integer is an amount and goes out as a decimal string (JSON numbers lose
# precision past 2**53, and amounts reach 2**128 - 1).
_PLAIN_INT_FIELDS = frozenset({"decimals", "deadline", "deadline_height"})


def _json_value(name: str, value: Any) -> Any:
    if isinstance(value, bytes):
        return address_to_text(value) if len(value) == 20 else hex0x(value)
    if dataclasses.is_dataclass(value):
        return {"op": type(value).__name__, **payload_to_json(value)}
    if isinstance(value, (list, tuple)):
        return [_json_value(name, item) for item in value]
    if isinstance(value, enum.Enum):
        return value.name.lower()
    if isinstance(value, int) and not isinstance(value, bool):
        return value if name in _PLAIN_INT_FIELDS else str(value)
    return value


def payload_to_json(payload: Any) -> dict[str, Any]:
    """A transaction payload (batch operations included) as JSON."""
    return {f.name: _json_value(f.name, getattr(payload, f.name)) for f in dataclasses.fields(payload)}


def render_block(block: Block, with_txs: bool) -> dict[str, Any]:
    """qenex_getBlock's answer: a pure function of the block (safe in a worker thread)."""
    out = header_to_json(block)
    out["txs"] = [tx_to_json(stx) if with_txs else hex0x(stx.hash) for stx in block.txs]
    return out


def header_to_json(block: Block) -> dict[str, Any]:
    h = block.header
    return {
        "hash": hex0x(block.hash),
        "chain_id": h.chain_id,
        "height": h.height,
        "time_ms": h.time_ms,
        "prev_hash": hex0x(h.prev_hash),
        "tx_root": hex0x(h.tx_root),
        "app_hash": hex0x(h.app_hash),
        "validators_hash": hex0x(h.validators_hash),
        "proposer": address_to_text(h.proposer),
        "last_commit_hash": hex0x(h.last_commit_hash),
        "num_txs": len(block.txs),
    }


def receipt_to_json(receipt: Any) -> dict[str, Any]:
    return {
        "status": str(receipt.status),
        "reason": receipt.reason,
        "gas_used": receipt.gas_used,
        "fee": str(receipt.fee),
    }


def build_methods(node: "Node") -> dict[str, Callable[..., Any]]:
    def app():  # type: ignore[no-untyped-def]
        assert node.app is not None
        return node.app

    def status() -> dict[str, Any]:
        a = app()
        return {
            "chain_id": a.chain_id,
            "node": node.config.name,
            "height": a.height,
            "latest_block_hash": hex0x(a.last_block_hash),
            "latest_block_time_ms": a.last_time_ms,  # genesis time at height 0
            "app_hash": hex0x(a.app_hash),
            "peers": len(node.p2p.connected_peers()) if node.p2p else 0,
            "peer_id": node.p2p.peer_id if node.p2p else None,
            "validator": address_to_text(node.node_key.address) if node.is_validator else None,
            "mempool_size": len(node.mempool) if node.mempool is not None else 0,
            "syncing": bool(node.sync and node.sync.syncing),
            "consensus": node.driver.engine_state() if node.driver else None,
        }

    def get_account(address: str) -> dict[str, Any]:
        raw = parse_address(address)
        a = app()
        account = a.account(raw)
        pending = node.mempool.pending_nonce(raw) if node.mempool is not None else None
        return {
            "address": address_to_text(raw),
            "nonce": account.nonce,
            "pending_nonce": account.nonce if pending is None else pending,
            "balances": {symbol: str(amount) for symbol, amount in sorted(account.balances.items())},
        }

    rendered: collections.OrderedDict[tuple[bytes, bool], dict[str, Any]] = collections.OrderedDict()
    render_lock = asyncio.Lock()

    async def get_block(height: Any = "latest", full: Any = False) -> dict[str, Any]:
        a = app()
        number = a.height if height == "latest" else parse_height(height)
        with_txs = parse_bool(full, "full")
        block = a.get_block(number) if 1 <= number <= a.height else None
        if block is None:
            raise RPCError(NOT_FOUND, f"no block at height {number} (head is {a.height})")
        # A committed block never changes: its answer is rendered once (a full
        # block of 5,000 batches takes seconds of bech32), in a worker thread
        # when large, one render at a time, and the batch pays for its size.
        charge(len(block.txs) // (FULL_BLOCK_TXS_PER_UNIT if with_txs else HASHES_PER_UNIT))
        key = (block.hash, with_txs)
        if key not in rendered:
            async with render_lock:
                if key not in rendered:
                    if len(block.txs) > RENDER_INLINE_TXS:
                        out = await asyncio.to_thread(render_block, block, with_txs)
                    else:
                        out = render_block(block, with_txs)
                    rendered[key] = out
                    while len(rendered) > RENDERED_BLOCKS_KEPT:
                        rendered.popitem(last=False)
        rendered.move_to_end(key)
        return rendered[key]

    def get_transaction(hash: Any) -> dict[str, Any]:
        tx_hash = parse_hex(hash, "hash", length=32)
        a = app()
        loc = a.get_tx(tx_hash)
        if loc is not None:
            out = tx_to_json(loc.stx)
            out.update(receipt_to_json(loc.receipt))
            out.update({"height": loc.height, "index": loc.index, "committed": True})
        elif node.mempool is not None and (stx := node.mempool.get(tx_hash)) is not None:
            out = tx_to_json(stx)
            out.update({"status": "pending", "committed": False, "height": None})
        else:
            raise RPCError(NOT_FOUND, f"transaction {hash} not found")
        if tx_hash in node.flagged:
            out["risk"] = node.flagged[tx_hash]
        return out

    def send_transaction(raw: Any) -> dict[str, Any]:
        data = parse_hex(raw, "raw")
        try:
            tx_hash = node.submit_raw_tx(data)
        except MempoolError as exc:
            raise RPCError(exc.code, str(exc), exc.data or None) from None
        return {"hash": hex0x(tx_hash)}

    def get_validators() -> dict[str, Any]:
        a = app()
        vset = node.driver.validator_set if node.driver else None
        validators = []
        if vset is not None:
            for v, priority in zip(vset.validators, vset.priorities):
                validators.append(
                    {
                        "address": address_to_text(v.address),
                        "pubkey": hex0x(v.pubkey),
                        "power": str(v.power),
                        "proposer_priority": str(priority),
                    }
                )
        return {
            "height": a.height + 1,
            "total_power": str(vset.total_power) if vset else "0",
            "validators": validators,
        }

    def get_mempool(limit: Any = 100) -> dict[str, Any]:
        if not isinstance(limit, int) or isinstance(limit, bool) or not 0 <= limit <= MEMPOOL_LIST_MAX:
            raise invalid_params(f"limit must be an integer in [0, {MEMPOOL_LIST_MAX}], got {brief(limit)}")
        assert node.mempool is not None
        txs = []
        for stx, _size in node.mempool.entries(limit):  # arrival order, O(limit)
            entry = {"hash": hex0x(stx.hash), "sender": address_to_text(stx.tx.sender), "nonce": stx.tx.nonce,
                     "fee": str(stx.tx.fee), "kind": stx.tx.kind.name.lower()}
            if stx.hash in node.flagged:
                entry["risk"] = node.flagged[stx.hash]
            txs.append(entry)
        return {"size": len(node.mempool), "bytes": node.mempool.size_bytes, "txs": txs}

    def get_transaction_proof(hash: Any) -> dict[str, Any]:
        tx_hash = parse_hex(hash, "hash", length=32)
        proof = app().get_tx_proof(tx_hash)
        if proof is None:
            raise RPCError(NOT_FOUND, f"transaction {hash} is not in a committed block")
        return {
            "hash": hex0x(tx_hash),
            "height": proof.height,
            "index": proof.index,
            "tree_size": proof.tree_size,
            "tx_root": hex0x(proof.tx_root),
            "proof": [hex0x(p) for p in proof.proof],
        }

    def get_token(symbol: Any) -> dict[str, Any]:
        try:
            check_symbol(symbol)
        except StateError:
            raise invalid_params(f"symbol {brief(symbol)} is not a token symbol (1-12 characters of A-Z and 0-9)") from None
        info = app().token(symbol)
        if info is None:
            raise RPCError(NOT_FOUND, f"no token {symbol!r}")
        return {
            "symbol": info.symbol,
            "name": info.name,
            "decimals": info.decimals,
            "issuer": address_to_text(info.issuer),
            "total_supply": str(info.supply),
        }

    def get_params() -> dict[str, Any]:
        return app().params.to_json_obj()

    methods = {
        "qenex_status": status,
        "qenex_getToken": get_token,
        "qenex_getParams": get_params,
        "qenex_getAccount": get_account,
        "qenex_getBlock": get_block,
        "qenex_getTransaction": get_transaction,
        "qenex_sendTransaction": send_transaction,
        "qenex_getValidators": get_validators,
        "qenex_getMempool": get_mempool,
        "qenex_getTransactionProof": get_transaction_proof,
    }
    # Feature areas register their own methods (each in its own module).
    from node.rpc_pools import pool_methods
    from node.rpc_risk import risk_methods

    for extra in (pool_methods(node), risk_methods(node)):
        clash = methods.keys() & extra.keys()
        if clash:
            raise RuntimeError(f"RPC methods registered twice: {sorted(clash)}")
        methods.update(extra)
    return methods
