"""The admin JSON-RPC server of the risk hook: a separate aiohttp server.

Bound to a loopback address from ``[risk] admin_host``/``admin_port``, and
every request needs ``Authorization: Bearer <[risk] admin_token>``.  Both
checks run in the handler, so a request relayed from elsewhere (a proxy, a
misconfigured bind) is still refused by its remote address.

Methods (JSON-RPC 2.0, POST /):

* ``risk_feedback(label, hash=None, raw=None, steps=30)`` — ``label`` 1
  (fraud) or 0 (legitimate) for a transaction this node scored (by
  ``hash``) or for a signed transaction (``raw``, 0x-hex); SGD steps on its
  features, saved as a new model version that becomes current.  Returns
  ``{version, previous_version, score_before, score_after}``.
* ``risk_versions()`` — kept versions and the current one.
* ``risk_rollback()`` — make the previous version current.
* ``risk_restore(version)`` — make ``version`` current.

Errors: -32030 unauthorized (no or wrong token, HTTP 401), -32031 not a local
address (HTTP 403), -32032 no model / unknown transaction / bad version.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import logging
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from aiohttp import web

from node.config import MIN_ADMIN_TOKEN_LEN
from node.errors import ConfigError
from node.jsonrpc import Dispatcher, RPCError, invalid_params
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

UNAUTHORIZED = -32030
NOT_LOCAL = -32031
RISK_ADMIN_ERROR = -32032
MAX_ADMIN_REQUEST = 256 * 1024


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


def authorized(header: str | None, token: str) -> bool:
    # A token below the config rule's length never authorizes, however the config was built.
    if len(token) < MIN_ADMIN_TOKEN_LEN or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())


def admin_methods(hook: "RiskHook", find_tx: FindTx) -> dict[str, Callable[..., Any]]:
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


def _refusal(status: int, code: int, message: str) -> web.Response:
    body = {"jsonrpc": "2.0", "id": None, "error": {"code": code, "message": message}}
    return web.json_response(body, status=status)


def make_admin_handler(dispatcher: Dispatcher, token: str) -> Callable[[web.Request], Any]:
    async def handle(request: web.Request) -> web.StreamResponse:
        if not is_loopback(request.remote):
            log.warning("risk admin request from non-local address %s refused", request.remote)
            return _refusal(403, NOT_LOCAL, f"the risk admin API only serves local clients, not {request.remote}")
        if not authorized(request.headers.get("Authorization"), token):
            return _refusal(401, UNAUTHORIZED, "missing or wrong admin token (Authorization: Bearer <token>)")
        body = await request.read()
        result = await dispatcher.handle_payload(body)
        if result is None:
            return web.Response(status=204)
        return web.Response(text=json.dumps(result), content_type="application/json")

    return handle


def make_admin_app(hook: "RiskHook", find_tx: FindTx, token: str) -> web.Application:
    dispatcher = Dispatcher(admin_methods(hook, find_tx), max_batch=10)
    app = web.Application(client_max_size=MAX_ADMIN_REQUEST)
    app.router.add_post("/", make_admin_handler(dispatcher, token))
    return app


class AdminServer:
    def __init__(self, hook: "RiskHook", find_tx: FindTx, token: str) -> None:
        self._hook, self._find_tx, self._token = hook, find_tx, token
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        token = self._token
        if len(token) < MIN_ADMIN_TOKEN_LEN:
            raise ConfigError(f"risk.admin_token must be at least {MIN_ADMIN_TOKEN_LEN} characters, got {len(token)}")
        self._runner = web.AppRunner(make_admin_app(self._hook, self._find_tx, token), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        log.info("risk admin json-rpc on http://%s:%d/ (token required)", host, port)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
