"""JSON-RPC methods of the risk hook (issue #4) and of the pool price predictor.

* ``qenex_riskScore(raw)`` — score a signed transaction (0x-hex) without
  submitting it: ``{hash, decision, score, mlp, anomaly, model_version,
  thresholds, top_features, features}``.  -32021 when no model is loaded
  (fallback policy in force), -32602 for an undecodable transaction.
* ``qenex_riskModel()`` — the loaded model's version, thresholds, feature
  names, training metadata and held-out metrics (or the fallback policy).
* ``qenex_predictPrice(pool)`` — probability that the pool's next price
  move is up, with the market model's version and the 15 indicator values
  (the model is ``node.risk.market``; this is only its RPC).  -32022 no
  market model configured, -32023 fewer than 21 observations, -32004
  unknown pool.
"""

from __future__ import annotations

from typing import Any, Callable

from node.jsonrpc import NOT_FOUND, RPCError, invalid_params
from node.risk.features import FEATURE_NAMES
from node.risk.market import INDICATORS, MIN_OBSERVATIONS, indicators, pool_series
from node.rpc_context import RpcContext
from node.rpc_params import hex0x, parse_hex, parse_pool
from state.errors import PoolQueryError, StateError
from state.transactions import SignedTransaction

NO_RISK_MODEL = -32021
NO_MARKET_MODEL = -32022
POOL_HISTORY_TOO_SHORT = -32023


def risk_methods(ctx: RpcContext) -> dict[str, Callable[..., Any]]:
    hook = ctx.risk

    def risk_score(raw: Any) -> dict[str, Any]:
        data = parse_hex(raw, "raw")
        limit = ctx.app.params.max_tx_bytes
        if len(data) > limit:
            raise invalid_params(f"raw: transaction of {len(data)} bytes exceeds the limit of {limit}")
        try:
            stx = SignedTransaction.decode(data, max_bytes=limit)
        except StateError as exc:
            raise invalid_params(f"raw: malformed transaction: {exc}") from None
        except RecursionError:  # nesting deeper than the codec's checks can walk
            raise invalid_params("raw: malformed transaction: nested too deep") from None
        if hook.model is None:
            raise RPCError(NO_RISK_MODEL, f"no risk model is loaded (fallback policy {hook.fallback!r})")
        assessment, row = hook.explain(stx)
        out = {"hash": hex0x(stx.hash)}
        out.update(assessment.to_json())
        out["thresholds"] = {"review": hook.review, "reject": hook.reject}
        out["scored"] = row is not None  # False: a kind the model does not score (admitted)
        out["features"] = {name: round(float(v), 6) for name, v in zip(FEATURE_NAMES, row)} if row is not None else None
        return out

    def risk_model() -> dict[str, Any]:
        model = hook.model
        if model is None:
            return {"loaded": False, "fallback": hook.fallback}
        return {
            "loaded": True,
            "version": model.version,
            "thresholds": {"review": hook.review, "reject": hook.reject},
            "feature_names": list(FEATURE_NAMES),
            "schema_hash": model.meta.get("schema_hash"),
            "training": model.meta.get("training"),
            "metrics": model.meta.get("metrics"),
            "feedback_updates": len(model.meta.get("feedback", [])),
        }

    def predict_price(pool: Any) -> dict[str, Any]:
        pid = parse_pool(pool)  # validated first: the predictor reads the store by this id
        model = ctx.market_model
        if model is None:
            raise RPCError(NO_MARKET_MODEL, "no market model is loaded ([risk] market_model)")
        try:
            prices, volumes = pool_series(ctx.app, pid)
        except PoolQueryError as exc:
            raise RPCError(NOT_FOUND, str(exc)) from None
        if len(prices) < MIN_OBSERVATIONS:
            raise RPCError(POOL_HISTORY_TOO_SHORT,
                           f"pool {pid} has {len(prices)} observations; the predictor needs {MIN_OBSERVATIONS}")
        x = indicators(prices, volumes)
        p = float(model.predict(x)[0])
        return {"pool": pid, "height": ctx.app.height, "price": float(prices[-1]), "probability_up": round(p, 6),
                "model_version": model.version,
                "indicators": {n: round(float(v), 6) for n, v in zip(INDICATORS, x)}}

    return {"qenex_riskScore": risk_score, "qenex_riskModel": risk_model, "qenex_predictPrice": predict_price}
