"""The risk hook's admin methods, a table the node's admin API (``node.admin``) serves.

The server, its loopback, token and TOTP checks and the audit log are
``node.admin``'s; ``RISK_STATE_CHANGING`` names the methods that need a TOTP
code there.

Methods (JSON-RPC 2.0):

* ``risk_feedback(label, hash=None, raw=None, steps=30)`` — ``label`` 1
  (fraud) or 0 (legitimate) for a transaction this node scored (by
  ``hash``) or for a signed transaction (``raw``, 0x-hex); SGD steps on its
  features, saved as a new model version that becomes current.  Returns
  ``{version, previous_version, score_before, score_after}``.
* ``risk_versions()`` — kept versions and the current one.
* ``risk_rollback()`` — make the previous version current.
* ``risk_restore(version)`` — make ``version`` current.

Errors: -32032 no model / unknown transaction / bad version.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from node.jsonrpc import RPCError, invalid_params
from node.risk.errors import RiskModelError
from node.rpc_params import hex0x, parse_hex
from state.errors import StateError
from state.transactions import SignedTransaction

if TYPE_CHECKING:
    from node.risk.hook import RiskHook

# A transaction this node holds (pending or committed) by hash, or None
# (node.rpc_context.RpcContext.known_tx): all the admin API reads of the node.
FindTx = Callable[[bytes], "SignedTransaction | None"]

log = logging.getLogger("qenex.risk.admin")

RISK_ADMIN_ERROR = -32032
RISK_STATE_CHANGING = frozenset({"risk_feedback", "risk_rollback", "risk_restore"})


def risk_admin_methods(hook: "RiskHook", find_tx: FindTx) -> dict[str, Callable[..., Any]]:
    def locate(hash: Any, raw: Any) -> SignedTransaction:
        if raw is not None:
            try:
                return SignedTransaction.decode(parse_hex(raw, "raw"))
            except StateError as exc:
                raise invalid_params(f"raw: {exc}") from None
        if hash is None:
            raise invalid_params("give the transaction as hash or raw")
        stx = find_tx(parse_hex(hash, "hash"))
        if stx is None:
            raise RPCError(RISK_ADMIN_ERROR, f"transaction {hash} is not known here: send it as raw")
        return stx

    async def feedback(label: Any, hash: Any = None, raw: Any = None, steps: Any = 30) -> dict[str, Any]:
        if label not in (0, 1) or isinstance(label, bool):
            raise invalid_params("label must be 1 (fraud) or 0 (legitimate)")
        if not isinstance(steps, int) or isinstance(steps, bool) or not 1 <= steps <= 500:
            raise invalid_params("steps must be an integer in [1, 500]")
        if hook.model is None:
            raise RPCError(RISK_ADMIN_ERROR, "no risk model is loaded: nothing to update")
        stx = locate(hash, raw)
        row = hook.features(stx)
        if row is None:
            raise RPCError(RISK_ADMIN_ERROR, f"a {stx.tx.kind.name.lower()} transaction is not scored by the model")
        before = float(hook.model.score(row[None, :])[0])
        previous = hook.model.version
        # Training and the model save run in a worker thread: the loop keeps
        # scoring (with the current model) and committing meanwhile.
        try:
            updated, version = await asyncio.get_running_loop().run_in_executor(
                None, functools.partial(hook.train_feedback, row[None, :], np.array([label]), steps=steps))
        except (RiskModelError, OSError) as exc:
            raise RPCError(RISK_ADMIN_ERROR, f"could not save the updated model: {exc}") from None
        hook.model = updated
        log.info("risk model updated from feedback: version %d -> %d", previous, version)
        after = float(hook.model.score(row[None, :])[0])
        return {"version": version, "previous_version": previous, "hash": hex0x(stx.hash),
                "score_before": round(before, 6), "score_after": round(after, 6)}

    def versions() -> dict[str, Any]:
        if hook.store is None:
            raise RPCError(RISK_ADMIN_ERROR, "no risk model directory is configured")
        return {"versions": hook.store.versions(), "current": hook.model.version if hook.model else None}

    def rollback() -> dict[str, Any]:
        try:
            return {"current": hook.rollback()}
        except (RiskModelError, ValueError) as exc:
            raise RPCError(RISK_ADMIN_ERROR, str(exc)) from None

    def restore(version: Any) -> dict[str, Any]:
        if not isinstance(version, int) or isinstance(version, bool):
            raise invalid_params("version must be an integer")
        try:
            return {"current": hook.switch_to(version)}
        except (RiskModelError, ValueError) as exc:
            raise RPCError(RISK_ADMIN_ERROR, str(exc)) from None

    return {"risk_feedback": feedback, "risk_versions": versions, "risk_rollback": rollback,
            "risk_restore": restore}
