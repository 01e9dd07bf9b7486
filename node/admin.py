"""The node's one admin API: JSON-RPC 2.0 on a loopback aiohttp server, token + TOTP, audited.

Every request, in this order (each refusal is a JSON-RPC error body):

1. a source address still blocked by its failures (``node.admin_auth.FailureLimiter``)
   gets **429** (-32033) before its credentials are read;
2. a source that is not a loopback address gets **403** (-32031), whatever it
   sends (the bind is loopback too; this catches relays and misconfiguration);
3. ``Authorization: Bearer <[admin] token>`` missing or wrong: **401** (-32030);
4. one call per request (a TOTP code is good for one action, so batches are
   refused, -32600); a state-changing method also needs ``X-Qenex-Otp:
   <6 digits>``: missing, malformed, wrong or already used: **401** (-32030);
   no secret enrolled yet: **401** (-32034, "run qenexd admin enroll").

Failures in 2, 3 and 4 count against the source.  Every request is one
entry in the audit log (``node.audit``): actor (source address), action
(method), a params summary (never the token or the code: they travel in
headers), outcome.  The exception: of the 429s one source earns in one block
window, the first is written and the rest are counted into the next 429
entry (``suppressed``), so a flood costs one fsync per window, not per request.

Methods (read-only: token only; state-changing: token and TOTP):

* read-only: ``admin_status()``, ``admin_peers()``, ``risk_versions()``;
* state-changing: ``admin_ban(peer)``, ``admin_unban(peer)``,
  ``admin_flush_mempool()``, ``admin_snapshot(...)`` (``Node.admin_snapshot``;
  -32035 when this build has none), ``admin_shutdown()`` (answers, then stops
  the node through the signal path), ``risk_feedback``, ``risk_rollback``,
  ``risk_restore`` (``node.risk.admin``).
"""

from __future__ import annotations

import inspect
import ipaddress
import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from aiohttp import web

from node.admin_auth import OTP_HEADER, TOTP_DIGITS, AdminAuthError, FailureLimiter, NotEnrolled, TotpVerifier, token_matches
from node.audit import AuditError, AuditLog
from node.config import MIN_ADMIN_TOKEN_LEN
from node.errors import ConfigError
from node.jsonrpc import (INTERNAL_ERROR, INVALID_REQUEST, MAX_JSON_DEPTH, PARSE_ERROR, Dispatcher, RPCError, brief,
                          invalid_params, json_depth_exceeds)
from node.risk.admin import RISK_STATE_CHANGING, FindTx, risk_admin_methods

if TYPE_CHECKING:
    from node.risk.hook import RiskHook

log = logging.getLogger("qenex.admin")

UNAUTHORIZED = -32030
NOT_LOCAL = -32031
RATE_LIMITED = -32033
NOT_ENROLLED = -32034
NOT_AVAILABLE = -32035
ADMIN_ERROR = -32036

MAX_ADMIN_REQUEST = 256 * 1024
MAX_PEER_ID_CHARS = 128
_BASE58 = re.compile(r"[1-9A-HJ-NP-Za-km-z]+")
SUMMARY_ITEMS = 8  # params kept in an audit entry's summary
SUMMARY_STRING = 128  # longer strings are kept as their length


@dataclass(frozen=True, slots=True)
class AdminContext:
    """What the admin methods may read and do: functions the composition root (``Node``) provides."""

    status: Callable[[], dict[str, Any]]
    peers: Callable[[], dict[str, Any]]
    ban: Callable[[str], None]  # raises ValueError for a malformed peer id
    unban: Callable[[str], bool]
    flush_mempool: Callable[[], dict[str, Any]]
    request_stop: Callable[[], None]
    snapshot: Callable[..., Any] | None = None  # Node.admin_snapshot when the build has one
    risk: "RiskHook | None" = None
    find_tx: FindTx | None = None


def is_loopback(remote: str | None) -> bool:
    if not remote:
        return False
    try:
        return ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


def _peer_param(peer: Any) -> str:
    if not isinstance(peer, str) or not 0 < len(peer) <= MAX_PEER_ID_CHARS or not _BASE58.fullmatch(peer):
        raise invalid_params(f"peer must be a base58 libp2p peer id, got {brief(peer)}")
    return peer


class _Shutdown:
    """Set by admin_shutdown; the handler stops the node once the answer is sent."""

    def __init__(self) -> None:
        self.requested = False


def admin_methods(ctx: AdminContext, shutdown: _Shutdown) -> tuple[dict[str, Callable[..., Any]], frozenset[str]]:
    """The method table and the names that change state (those need a TOTP code)."""

    def ban(peer: Any) -> dict[str, Any]:
        peer = _peer_param(peer)
        try:
            ctx.ban(peer)
        except ValueError as exc:
            raise invalid_params(str(exc)) from None
        return {"banned": peer}

    def unban(peer: Any) -> dict[str, Any]:
        peer = _peer_param(peer)
        try:
            was = ctx.unban(peer)
        except ValueError as exc:
            raise invalid_params(str(exc)) from None
        if not was:
            raise RPCError(ADMIN_ERROR, f"peer {peer} is not banned")
        return {"unbanned": peer}

    async def snapshot(**params: Any) -> Any:
        if ctx.snapshot is None:
            raise RPCError(NOT_AVAILABLE, "admin_snapshot is not available: this node has no snapshot support "
                           "(Node.admin_snapshot)")
        result = ctx.snapshot(**params)
        return await result if inspect.isawaitable(result) else result

    def stop() -> dict[str, Any]:
        shutdown.requested = True
        return {"stopping": True}

    methods: dict[str, Callable[..., Any]] = {
        "admin_status": ctx.status,
        "admin_peers": ctx.peers,
        "admin_ban": ban,
        "admin_unban": unban,
        "admin_flush_mempool": ctx.flush_mempool,
        "admin_snapshot": snapshot,
        "admin_shutdown": stop,
    }
    changing = {"admin_ban", "admin_unban", "admin_flush_mempool", "admin_snapshot", "admin_shutdown"}
    if ctx.risk is not None and ctx.find_tx is not None:
        methods.update(risk_admin_methods(ctx.risk, ctx.find_tx))
        changing |= RISK_STATE_CHANGING
    return methods, frozenset(changing)


def _brief_value(key: str, value: Any) -> Any:
    if isinstance(value, str):
        return f"<{len(value)} chars>" if key == "raw" or len(value) > SUMMARY_STRING else value
    if value is None or isinstance(value, bool) or (isinstance(value, int) and abs(value) < 2**63):
        return value
    return f"<{type(value).__name__}>"


def summarize(params: Any) -> dict[str, Any]:
    """What the audit log keeps of a call's params: at most 8 scalars (strings up to SUMMARY_STRING
    characters), a raw transaction only by its length, anything nested by its type."""
    if isinstance(params, dict):
        return {str(k)[:40]: _brief_value(str(k), v) for k, v in list(params.items())[:SUMMARY_ITEMS]}
    if isinstance(params, list):
        return {"args": [_brief_value("", v) for v in params[:SUMMARY_ITEMS]]} if params else {}
    return {} if params is None else {"params": f"<{type(params).__name__}>"}


def _refusal(status: int, code: int, message: str, request_id: Any = None) -> web.Response:
    body = {"jsonrpc": "2.0", "id": request_id, "error": {"code": code, "message": message}}
    return web.json_response(body, status=status)


class AdminAPI:
    """The request handler: limiter, loopback, token, TOTP, dispatch, audit."""

    def __init__(self, ctx: AdminContext, token: str, totp: TotpVerifier, audit: AuditLog,
                 limiter: FailureLimiter | None = None) -> None:
        if len(token) < MIN_ADMIN_TOKEN_LEN:
            raise ConfigError(f"admin token must be at least {MIN_ADMIN_TOKEN_LEN} characters, got {len(token)}")
        self._ctx = ctx
        self._token = token
        self.totp = totp
        self.audit = audit
        self.limiter = limiter if limiter is not None else FailureLimiter()  # (an empty one is falsy)
        self._shutdown = _Shutdown()
        methods, self.state_changing = admin_methods(ctx, self._shutdown)
        self._dispatcher = Dispatcher(methods, max_batch=1, max_in_flight=4)

    def _record(self, actor: str, action: str, params: dict[str, Any], outcome: dict[str, Any]) -> None:
        try:
            self.audit.append(actor, action, params, outcome)
        except AuditError as exc:
            log.error("%s", exc)

    def _refuse(self, actor: str, action: str, params: dict[str, Any], status: int, code: int, message: str,
                *, fail: bool = True, request_id: Any = None) -> web.Response:
        if fail:
            self.limiter.failed(actor)
        self._record(actor, action, params, {"status": status, "code": code, "result": "refused",
                                             "reason": message[:200]})
        log.warning("admin %s from %s refused (%d): %s", action, actor, status, message)
        return _refusal(status, code, message, request_id)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        actor = request.remote or "unknown"
        wait = self.limiter.blocked_for(actor)
        if wait > 0:
            suppressed = self.limiter.note_blocked(actor)
            if suppressed is not None:
                self._record(actor, "http", {"suppressed_before": suppressed},
                             {"status": 429, "code": RATE_LIMITED, "result": "refused",
                              "reason": f"blocked for {wait:.0f} s more"})
            return _refusal(429, RATE_LIMITED, f"too many failed attempts from {actor}: retry in {wait:.0f} s")
        if not is_loopback(request.remote):
            return self._refuse(actor, "http", {}, 403, NOT_LOCAL,
                                f"the admin API only serves local clients, not {request.remote}")
        if not token_matches(request.headers.get("Authorization"), self._token):
            return self._refuse(actor, "http", {}, 401, UNAUTHORIZED,
                                "missing or wrong admin token (Authorization: Bearer <token>)")
        if request.method != "POST" or request.path != "/":
            return self._refuse(actor, "http", {"request": f"{request.method} {request.path[:80]}"}, 404,
                                INVALID_REQUEST, "the admin API is JSON-RPC by POST /", fail=False)
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._refuse(actor, "http", {}, 413, INVALID_REQUEST,
                                f"request body over {MAX_ADMIN_REQUEST} bytes", fail=False)
        try:
            if json_depth_exceeds(body, MAX_JSON_DEPTH):
                raise ValueError(f"nested deeper than {MAX_JSON_DEPTH}")
            call = json.loads(body)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            return self._refuse(actor, "http", {}, 200, PARSE_ERROR, f"parse error: {str(exc)[:100]}", fail=False)
        if not isinstance(call, dict):
            return self._refuse(actor, "http", {}, 200, INVALID_REQUEST,
                                "the admin API takes one JSON-RPC call per request (no batches)", fail=False)
        method, request_id = call.get("method"), call.get("id")
        action = method[:64] if isinstance(method, str) else "http"
        params = summarize(call.get("params"))
        if method in self.state_changing:
            refused = self._check_totp(actor, action, params, request.headers.get(OTP_HEADER), request_id)
            if refused is not None:
                return refused
        self.limiter.succeeded(actor)
        answer = await self._dispatcher.handle_one(call)
        error = (answer or {}).get("error")
        outcome = ({"status": 200, "result": "ok"} if error is None else
                   {"status": 200, "code": error["code"], "result": "error", "reason": str(error["message"])[:200]})
        if error is not None and error["code"] == INTERNAL_ERROR:
            outcome["reason"] = "internal error"
        self._record(actor, action, params, outcome)
        if answer is None:
            return web.Response(status=204)
        response = web.Response(text=json.dumps(answer), content_type="application/json")
        if self._shutdown.requested and error is None:
            await response.prepare(request)
            await response.write_eof()
            log.warning("admin_shutdown from %s: stopping the node", actor)
            self._ctx.request_stop()
        return response

    def _check_totp(self, actor: str, action: str, params: dict[str, Any], code: str | None,
                    request_id: Any) -> web.Response | None:
        if code is None:
            return self._refuse(actor, action, params, 401, UNAUTHORIZED,
                                f"{action} changes state: send a TOTP code in the {OTP_HEADER} header",
                                request_id=request_id)
        try:
            verdict = self.totp.check(code.strip())
        except NotEnrolled as exc:
            return self._refuse(actor, action, params, 401, NOT_ENROLLED, str(exc), fail=False, request_id=request_id)
        except AdminAuthError as exc:
            log.error("%s", exc)
            return self._refuse(actor, action, params, 500, INTERNAL_ERROR, "the TOTP record is unusable: see the "
                                "node log", fail=False, request_id=request_id)
        if verdict.ok:
            params["totp_step"] = verdict.step  # which step was spent (not the code)
            return None
        why = {"malformed": f"the TOTP code must be {TOTP_DIGITS} digits", "wrong": "wrong TOTP code",
               "replayed": "this TOTP code was already used: wait for the next one"}[verdict.reason]
        return self._refuse(actor, action, params, 401, UNAUTHORIZED, why, request_id=request_id)


def make_admin_app(api: AdminAPI) -> web.Application:
    app = web.Application(client_max_size=MAX_ADMIN_REQUEST)
    app.router.add_route("*", "/{tail:.*}", api.handle)  # every request is checked and audited
    return app


class AdminServer:
    def __init__(self, api: AdminAPI) -> None:
        self.api = api
        self._runner: web.AppRunner | None = None

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(make_admin_app(self.api), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, host, port).start()
        log.info("admin json-rpc on http://%s:%d/ (token; TOTP for state changes; audit log %s)", host, port,
                 self.api.audit.path)

    async def stop(self) -> None:
        if self._runner:
            await self._runner.cleanup()
