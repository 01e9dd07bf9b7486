"""The ``qenex_*`` JSON-RPC methods.

Conventions (DESIGN.md): amounts are decimal strings of base units; hashes
and bytes are 0x-hex; addresses are bech32 ``qnx1...`` text.  Every parameter
is validated at the boundary (``node.rpc_params``), and a bad one is -32602
with a message naming it.

The tables read and submit through an ``RpcContext`` (``node.rpc_context``),
which the runtime assembles; ``build_methods`` joins this module's methods
with the pool (``node.rpc_pools``), risk (``node.rpc_risk``), staking
(``node.rpc_staking``) and contract (``node.rpc_contracts``) tables.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import enum
from typing import Any, Callable, Sequence

from consensus.errors import ConsensusError
from consensus.messages import CommitCertificate
from node.contract_values import event_to_json, output_to_json
from node.errors import MempoolError
from node.jsonrpc import NOT_FOUND, RPCError, charge, invalid_params
from node.rpc_context import RpcContext
from node.rpc_params import (
    hex0x,
    parse_address,
    parse_bool,
    parse_hex,
    parse_height,
    parse_int,
    parse_symbol,
    state_at,
)
from node.rpc_contracts import contract_methods
from node.rpc_pools import pool_methods
from node.rpc_staking import staking_fields, staking_methods
from node.rpc_risk import risk_methods
from state.contracts import contract_address
from state.crypto import address_to_text
from state.errors import StateError
from state.blocks import EMPTY_COMMIT, Block
from state.payloads import CONTRACT_KINDS, TxKind
from state.transactions import Receipt, SignedTransaction

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
    # contracts (node.rpc_contracts): a query compiles the code if it is not cached (up to 42 ms for
    # 12 KiB, in a worker thread, not on the loop) and runs it up to [rpc] contract_query_gas; a record
    # is two reads and a balance scan (the methods are stored with it); a state page also pays one unit
    # per 50 entries it lists
    "qenex_callContract": 20,
    "qenex_getContract": 2,
    "qenex_getContractState": 2,
}


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


# Integer payload fields that are counts, heights or gas (a number, as a receipt's gas_used),
# not amounts; every other integer is an amount and goes out as a decimal string (JSON numbers
# lose precision past 2**53, and amounts reach 2**128 - 1).
_PLAIN_INT_FIELDS = frozenset({"decimals", "deadline", "deadline_height", "gas_limit"})
# Bytes fields that are never addresses, whatever their length (a contract's 20 bytes of
# arguments are not an account): always 0x-hex.
_HEX_FIELDS = frozenset({"code", "init_args", "args"})


def _json_value(name: str, value: Any) -> Any:
    if isinstance(value, bytes):
        return address_to_text(value) if len(value) == 20 and name not in _HEX_FIELDS else hex0x(value)
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


def render_block(block: Block, with_txs: bool, receipts: Sequence[Receipt] | None = None) -> dict[str, Any]:
    """qenex_getBlock's answer: a pure function of the block (and, with ``with_txs``, of its
    ``receipts`` in block order, merged into each transaction as ``qenex_getTransaction`` does;
    safe in a worker thread)."""
    out = header_to_json(block)
    out["last_commit"] = last_commit_to_json(block.last_commit)
    if with_txs and receipts is not None and len(receipts) == len(block.txs):
        out["txs"] = [{**tx_to_json(stx), **receipt_to_json(receipt, stx)} for stx, receipt in zip(block.txs, receipts)]
    else:
        out["txs"] = [tx_to_json(stx) if with_txs else hex0x(stx.hash) for stx in block.txs]
    out["evidence"] = [hex0x(item) for item in block.evidence]
    return out


def last_commit_to_json(last_commit: bytes) -> dict[str, Any] | None:
    """The previous block's commit certificate that a block carries: its height, view and signers
    (consensus addresses, in the certificate's order), or None for block 1, which has none.  The
    certificate was verified against the set of its height when the block was; who signed it is
    who shares the block's rewards on a staking chain.  None too for bytes that are no certificate,
    which only an application without a commit verifier (a test's) stores."""
    if last_commit == EMPTY_COMMIT:
        return None
    try:
        cert = CommitCertificate.decode(last_commit)
    except (ConsensusError, StateError):
        return None
    return {"height": cert.height, "view": cert.view, "block_hash": hex0x(cert.block_hash),
            "signers": [address_to_text(address) for address, _ in cert.signatures]}


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
        "evidence_hash": hex0x(h.evidence_hash),
        "num_txs": len(block.txs),
    }


def receipt_to_json(receipt: Receipt, stx: SignedTransaction | None = None) -> dict[str, Any]:
    """A receipt's fields.  A contract transaction's (``stx`` given) also carries ``max_fee`` (the fee
    it offered, gas_limit x its price; ``fee`` is what was charged for the gas used), ``events``
    ``[{contract, topic (text, or null if not printable UTF-8), topic_hex, data}]``, ``output``
    (0x-hex msgpack) and, when there is one, its ``result`` decoded (node.contract_values); a
    successful deploy names its ``contract_address``."""
    out: dict[str, Any] = {
        "status": str(receipt.status),
        "reason": receipt.reason,
        "gas_used": receipt.gas_used,
        "fee": str(receipt.fee),
    }
    contract_kind = stx is not None and stx.tx.kind in CONTRACT_KINDS
    if contract_kind or receipt.events or receipt.output:
        if stx is not None and contract_kind:
            out["max_fee"] = str(stx.tx.fee)
            if stx.tx.kind is TxKind.CONTRACT_DEPLOY and receipt.ok:
                out["contract_address"] = address_to_text(contract_address(stx.tx.sender, stx.tx.nonce))
        out["events"] = [event_to_json(e) for e in receipt.events]
        out["output"] = hex0x(receipt.output)
        if receipt.output:
            out["result"] = output_to_json(receipt.output)
    return out


def build_methods(ctx: RpcContext) -> dict[str, Callable[..., Any]]:
    """Every ``qenex_*`` method, over what ``ctx`` lets them read and submit."""
    app = ctx.app

    def status() -> dict[str, Any]:
        validator = ctx.validator_address()
        return {
            "chain_id": app.chain_id,
            "node": ctx.node_name,
            "height": app.height,
            "latest_block_hash": hex0x(app.last_block_hash),
            "latest_block_time_ms": app.last_time_ms,  # genesis time at height 0
            "app_hash": hex0x(app.app_hash),
            "peers": ctx.peer_count(),
            "peer_id": ctx.peer_id(),
            "validator": address_to_text(validator) if validator is not None else None,
            "mempool_size": ctx.mempool_size()[0],
            "syncing": ctx.syncing(),
            "consensus": ctx.consensus_state(),
        }

    def get_account(address: str, height: Any = None) -> dict[str, Any]:
        raw = parse_address(address)
        view = state_at(app, height)
        account = view.account(raw)
        if height is None or height == "latest":
            pending = ctx.pending_nonce(raw)
            pending_nonce, queued = account.nonce if pending is None else pending, ctx.queued_for(raw)
        else:  # a height asked for is answered the same on every node, whatever its head and mempool
            pending_nonce, queued = None, None
        return {
            "address": address_to_text(raw),
            "height": view.height,
            "nonce": account.nonce,
            "pending_nonce": pending_nonce,
            "queued": queued,  # future-nonce transactions waiting for a gap to fill
            "balances": {symbol: str(amount) for symbol, amount in sorted(account.balances.items())},
        }

    rendered: collections.OrderedDict[tuple[bytes, bool], dict[str, Any]] = collections.OrderedDict()
    render_lock = asyncio.Lock()

    async def get_block(height: Any = "latest", full: Any = False) -> dict[str, Any]:
        number = app.height if height == "latest" else parse_height(height)
        with_txs = parse_bool(full, "full")
        block = app.get_block(number) if 1 <= number <= app.height else None
        if block is None:
            raise RPCError(NOT_FOUND, f"no block at height {number} (head is {app.height})")
        # A committed block never changes: its answer is rendered once (a full
        # block of 5,000 batches takes seconds of bech32), in a worker thread
        # when large, one render at a time, and the batch pays for its size.
        charge(len(block.txs) // (FULL_BLOCK_TXS_PER_UNIT if with_txs else HASHES_PER_UNIT))
        key = (block.hash, with_txs)
        if key not in rendered:
            async with render_lock:
                if key not in rendered:
                    receipts = app.block_receipts(number) if with_txs else None  # read here: the store is the loop's
                    if len(block.txs) > RENDER_INLINE_TXS:
                        out = await asyncio.to_thread(render_block, block, with_txs, receipts)
                    else:
                        out = render_block(block, with_txs, receipts)
                    rendered[key] = out
                    while len(rendered) > RENDERED_BLOCKS_KEPT:
                        rendered.popitem(last=False)
        rendered.move_to_end(key)
        return rendered[key]

    def get_transaction(hash: Any) -> dict[str, Any]:
        tx_hash = parse_hex(hash, "hash", length=32)
        loc = app.get_tx(tx_hash)
        if loc is not None:
            out = tx_to_json(loc.stx)
            out.update(receipt_to_json(loc.receipt, loc.stx))
            out.update({"height": loc.height, "index": loc.index, "committed": True})
        elif (stx := ctx.pending_tx(tx_hash)) is not None:
            out = tx_to_json(stx)
            out.update({"status": "pending", "committed": False, "height": None})
        elif (stx := ctx.queued_tx(tx_hash)) is not None:
            out = tx_to_json(stx)
            out.update({"status": "queued", "committed": False, "height": None})
        else:
            raise RPCError(NOT_FOUND, f"transaction {hash} not found")
        if (flag := ctx.flagged_risk(tx_hash)) is not None:
            out["risk"] = flag
        return out

    def send_transaction(raw: Any) -> dict[str, Any]:
        data = parse_hex(raw, "raw")
        try:
            tx_hash = ctx.submit_raw_tx(data)
        except MempoolError as exc:
            raise RPCError(exc.code, str(exc), exc.data or None) from None
        return {"hash": hex0x(tx_hash)}

    def get_validators(height: Any = None) -> dict[str, Any]:
        """The set that signs ``height`` (default and "latest": the next block's).  Sets are kept
        for every height (sync and evidence need them), so the state's retention window does
        not apply; height 0 has no block to sign."""
        number = app.height + 1
        vset = ctx.validator_set()
        if height is not None and height != "latest":
            number = parse_height(height)
            if number == 0:
                raise invalid_params("height 0 is the genesis state and no block is signed at it: "
                                     "the genesis validators sign height 1")
            if number > app.height + 1:
                raise RPCError(NOT_FOUND, f"height {number} is above the next height {app.height + 1}: "
                                          f"its validator set is not known yet",
                               {"height": number, "head": app.height})
            vset = app.validator_set(number)
        validators = []
        staked = staking_fields(app, number) if vset is not None else {}
        if vset is not None:
            for v, priority in zip(vset.validators, vset.priorities):
                validators.append(
                    {
                        "address": address_to_text(v.address),
                        "pubkey": hex0x(v.pubkey),
                        "power": str(v.power),
                        "proposer_priority": str(priority),
                        **staked.get(bytes(v.address), {}),
                    }
                )
        return {
            "height": number,
            "total_power": str(vset.total_power) if vset else "0",
            "validators": validators,
        }

    def get_mempool(limit: Any = 100) -> dict[str, Any]:
        count = parse_int(limit, "limit", 0, MEMPOOL_LIST_MAX)
        txs = []
        for stx, _size in ctx.pending_entries(count):  # arrival order, O(limit)
            entry = {"hash": hex0x(stx.hash), "sender": address_to_text(stx.tx.sender), "nonce": stx.tx.nonce,
                     "fee": str(stx.tx.fee), "kind": stx.tx.kind.name.lower()}
            if (flag := ctx.flagged_risk(stx.hash)) is not None:
                entry["risk"] = flag
            txs.append(entry)
        size, size_bytes = ctx.mempool_size()
        queued, queued_bytes = ctx.queued_size()
        # size, bytes and txs are the pending area; queued ones are counted, not listed
        return {"size": size, "bytes": size_bytes, "txs": txs, "queued": queued, "queued_bytes": queued_bytes}

    def get_transaction_proof(hash: Any) -> dict[str, Any]:
        tx_hash = parse_hex(hash, "hash", length=32)
        proof = app.get_tx_proof(tx_hash)
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

    def get_token(symbol: Any, height: Any = None) -> dict[str, Any]:
        name = parse_symbol(symbol, "symbol")
        view = state_at(app, height)
        info = view.token(name)
        if info is None:
            raise RPCError(NOT_FOUND, f"no token {name!r}" + ("" if view.height == app.height else
                                                               f" at height {view.height}"))
        return {
            "height": view.height,
            "symbol": info.symbol,
            "name": info.name,
            "decimals": info.decimals,
            "issuer": address_to_text(info.issuer),
            "total_supply": str(info.supply),
        }

    def get_params() -> dict[str, Any]:
        return app.params.to_json_obj()

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
    for extra in (pool_methods(ctx), risk_methods(ctx), staking_methods(ctx), contract_methods(ctx)):
        clash = methods.keys() & extra.keys()
        if clash:
            raise RuntimeError(f"RPC methods registered twice: {sorted(clash)}")
        methods.update(extra)
    return methods
