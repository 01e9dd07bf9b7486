"""JSON-RPC methods of the risk hook (issue #4).

* ``qenex_riskScore(raw)`` — score a signed transaction (0x-hex) without
  submitting it: ``{hash, decision, score, mlp, anomaly, model_version,
  thresholds, top_features, features}``.  -32021 when no model is loaded
  (fallback policy in force), -32602 for an undecodable transaction.
* ``qenex_riskModel()`` — the loaded model's version, thresholds, feature
  names, training metadata and held-out metrics (or the fallback policy).
* ``qenex_predictPrice(pool)`` — probability that the pool's next price
  move is up, with the market model's version and the 15 indicator values
  (node.risk.market).  -32022 no market model configured, -32023 fewer
  than 21 observations, -32004 unknown pool.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from node.jsonrpc import RPCError, invalid_params
from node.rpc import parse_hex
from node.rpc_pools import parse_pool
from node.risk.features import FEATURE_NAMES
from node.risk import market
from state.errors import StateError
from state.transactions import SignedTransaction

if TYPE_CHECKING:
    from node.runtime import Node

NO_RISK_MODEL = -32021


def risk_methods(node: "Node") -> dict[str, Callable[..., Any]]:
    def risk_score(raw: Any) -> dict[str, Any]:
        data = parse_hex(raw, "raw")
        assert node.app is not None
        limit = node.app.params.max_tx_bytes
        if len(data) > limit:
            raise invalid_params(f"raw: transaction of {len(data)} bytes exceeds the limit of {limit}")
        try:
            stx = SignedTransaction.decode(data, max_bytes=limit)
        except StateError as exc:
            raise invalid_params(f"raw: malformed transaction: {exc}") from None
        except RecursionError:  # nesting deeper than the codec's checks can walk
            raise invalid_params("raw: malformed transaction: nested too deep") from None
        if node.risk.model is None:
            raise RPCError(NO_RISK_MODEL, f"no risk model is loaded (fallback policy {node.risk.fallback!r})")
        assessment, row = node.risk.explain(stx)
        out = {"hash": "0x" + stx.hash.hex()}
        out.update(assessment.to_json())
        out["thresholds"] = {"review": node.risk.review, "reject": node.risk.reject}
        out["scored"] = row is not None  # False: a kind the model does not score (admitted)
        out["features"] = {name: round(float(v), 6) for name, v in zip(FEATURE_NAMES, row)} if row is not None else None
        return out

    def risk_model() -> dict[str, Any]:
        model = node.risk.model
        if model is None:
            return {"loaded": False, "fallback": node.risk.fallback}
        return {
            "loaded": True,
            "version": model.version,
            "thresholds": {"review": node.risk.review, "reject": node.risk.reject},
            "feature_names": list(FEATURE_NAMES),
            "schema_hash": model.meta.get("schema_hash"),
            "training": model.meta.get("training"),
            "metrics": model.meta.get("metrics"),
            "feedback_updates": len(model.meta.get("feedback", [])),
        }

    predict = market.rpc_methods(node)["qenex_predictPrice"]

    def predict_price(pool: Any) -> dict[str, Any]:
        return predict(parse_pool(pool))  # validated here: the predictor reads the store by this id

    return {"qenex_riskScore": risk_score, "qenex_riskModel": risk_model, "qenex_predictPrice": predict_price}
