"""JSON-RPC methods of the liquidity pools (issue #3).

All read committed state through the context's Application
(``RpcContext.app``, its pool methods).  Conventions: amounts, shares and
raw fixed-point accumulators are decimal strings of integers; prices are
exact decimal strings with 40 significant digits computed on integers
(``state.amm.decimal_ratio``); a pool is named ``"AAA/BBB"`` (either order
is accepted; results use the sorted id).  Every bad parameter is -32602 with
a message naming it (``node.rpc_params``); an unknown pool or an
unanswerable range is -32004.

| method | params | result |
|---|---|---|
| ``qenex_getPool`` | pool, height? (integer or "latest") | pool object (below) at that height |
| ``qenex_listPools`` | — | ``{height, pools: [pool object]}`` |
| ``qenex_quoteSwap`` | token_in, token_out, amount_in, path? (2-4 symbols), max_hops? (1-3, default 3) | ``{amount_in, amount_out, path, pools, amounts, fees, fee, price_impact_bps, spot_price, execution_price}`` |
| ``qenex_getTwap`` | pool, from_height?, to_height?, window_seconds? | ``{pool, from_height, to_height, from_time_ms, to_time_ms, elapsed_ms, price0, price1, cumulative0_delta, cumulative1_delta}`` |
| ``qenex_getLiquidityPosition`` | address, pool | ``{address, pool, shares, share_of_pool, amount0, amount1, pending_rewards}`` |
| ``qenex_getPoolHistory`` | pool, from_height?, to_height?, limit? (≤ 1000) | ``{pool, observations: [{height, time_ms, reserve0, reserve1, price0, price1, cumulative0, cumulative1}]}`` |

Pool object: ``{id, token0, token1, account, reserve0, reserve1, total_shares,
locked_shares, fee_bps, price0, price1, cumulative0, cumulative1, price_shift,
last_update_ms, reward_rate, reward_index, reward_index_shift, created_height,
height}``.  ``price0`` is token0's spot price in token1 (reserve1/reserve0),
``price1`` the inverse; ``cumulative*`` are Σ price·ms in fixed point with
``price_shift`` fractional bits.  An observation at height h is the pool at
the end of block h: the block time t_h, the cumulatives at t_h and the
reserves block h left, which held during (t_h, t_{h+1}]; the node stores one
only for blocks that changed the pool and carries it forward exactly
(state/pool_queries.py).
"""

from __future__ import annotations

from typing import Any, Callable

from node.jsonrpc import NOT_FOUND, RPCError, invalid_params
from node.rpc_context import RpcContext
from node.rpc_params import (
    MAX_HEIGHT,
    parse_address,
    parse_amount_units,
    parse_int,
    parse_pool,
    parse_symbol,
    state_at,
)
from state import amm
from state.crypto import address_to_text
from state.errors import PoolQueryError
from state.pool_queries import MAX_HOPS, Twap
from state.pools import Observation, Pool

MAX_HISTORY = 1000


def _ratio(num: int, den: int) -> str | None:
    return amm.decimal_ratio(num, den) if num and den else None


def pool_to_json(pool: Pool, height: int) -> dict[str, Any]:
    return {
        "id": pool.id,
        "token0": pool.token0,
        "token1": pool.token1,
        "account": address_to_text(pool.account),
        "reserve0": str(pool.reserve0),
        "reserve1": str(pool.reserve1),
        "total_shares": str(pool.total_shares),
        "locked_shares": str(amm.MINIMUM_LIQUIDITY),
        "fee_bps": (amm.FEE_DENOMINATOR - amm.FEE_NUMERATOR) * amm.BPS // amm.FEE_DENOMINATOR,
        "price0": _ratio(pool.reserve1, pool.reserve0),
        "price1": _ratio(pool.reserve0, pool.reserve1),
        "cumulative0": str(pool.cumulative0),
        "cumulative1": str(pool.cumulative1),
        "price_shift": amm.PRICE_SHIFT,
        "last_update_ms": pool.last_time_ms,
        "reward_rate": str(pool.reward_rate),
        "reward_index": str(pool.reward_index),
        "reward_index_shift": amm.REWARD_SHIFT,
        "created_height": pool.created_height,
        "height": height,
    }


def observation_to_json(obs: Observation) -> dict[str, Any]:
    return {
        "height": obs.height,
        "time_ms": obs.time_ms,
        "reserve0": str(obs.reserve0),
        "reserve1": str(obs.reserve1),
        "price0": _ratio(obs.reserve1, obs.reserve0),
        "price1": _ratio(obs.reserve0, obs.reserve1),
        "cumulative0": str(obs.cumulative0),
        "cumulative1": str(obs.cumulative1),
    }


def twap_to_json(twap: Twap) -> dict[str, Any]:
    return {
        "pool": twap.pool_id,
        "from_height": twap.from_height,
        "to_height": twap.to_height,
        "from_time_ms": twap.from_time_ms,
        "to_time_ms": twap.to_time_ms,
        "elapsed_ms": twap.elapsed_ms,
        "price0": twap.price0,
        "price1": twap.price1,
        "cumulative0_delta": str(twap.cumulative0_delta),
        "cumulative1_delta": str(twap.cumulative1_delta),
        "price_shift": amm.PRICE_SHIFT,
    }


def pool_methods(ctx: RpcContext) -> dict[str, Callable[..., Any]]:
    app = ctx.app

    def require_pool(pid: str) -> Pool:
        pool = app.pool(pid)
        if pool is None:
            raise RPCError(NOT_FOUND, f"pool {pid} does not exist")
        return pool

    def get_pool(pool: Any, height: Any = None) -> dict[str, Any]:
        pid = parse_pool(pool)
        view = state_at(app, height)
        found = view.pool(pid)
        if found is None:
            raise RPCError(NOT_FOUND, f"pool {pid} does not exist" + ("" if view.height == app.height else
                                                                       f" at height {view.height}"))
        return pool_to_json(found, view.height)

    def list_pools() -> dict[str, Any]:
        return {"height": app.height, "pools": [pool_to_json(p, app.height) for p in app.pools()]}

    def quote_swap(token_in: Any, token_out: Any, amount_in: Any, path: Any = None, max_hops: Any = 3) -> dict[str, Any]:
        t_in, t_out = parse_symbol(token_in, "token_in"), parse_symbol(token_out, "token_out")
        if t_in == t_out:
            raise invalid_params(f"token_in and token_out are both {t_in}")
        amount = parse_amount_units(amount_in, "amount_in")
        hops = parse_int(max_hops, "max_hops", 1, MAX_HOPS)
        route = None
        if path is not None:
            if not isinstance(path, list) or not 2 <= len(path) <= MAX_HOPS + 1:
                raise invalid_params(f"path must be a list of 2-{MAX_HOPS + 1} token symbols")
            route = tuple(parse_symbol(s, "path") for s in path)
            if route[0] != t_in or route[-1] != t_out or len(set(route)) != len(route):
                raise invalid_params(f"path must run from {t_in} to {t_out} without revisiting a token")
        try:
            q = app.quote_swap(t_in, t_out, amount, path=route, max_hops=hops)
        except PoolQueryError as exc:
            raise RPCError(NOT_FOUND, str(exc)) from None
        spot_num, spot_den = 1, 1
        for token_a, token_b, pid in zip(q.path, q.path[1:], q.pools):
            pool = require_pool(pid)
            r_in, r_out = pool.reserves_for(token_a)
            spot_num, spot_den = spot_num * r_out, spot_den * r_in
        return {
            "amount_in": str(q.amount_in),
            "amount_out": str(q.amount_out),
            "path": list(q.path),
            "pools": list(q.pools),
            "amounts": [str(x) for x in q.amounts],
            "fees": [str(x) for x in q.fees],
            "fee": str(q.fees[0]),
            "price_impact_bps": q.price_impact_bps,
            "spot_price": amm.decimal_ratio(spot_num, spot_den),
            "execution_price": _ratio(q.amount_out, q.amount_in) or "0",
            "height": app.height,
        }

    def get_twap(pool: Any, from_height: Any = None, to_height: Any = None, window_seconds: Any = None) -> dict[str, Any]:
        pid = parse_pool(pool)
        require_pool(pid)
        try:
            if window_seconds is not None:
                if from_height is not None or to_height is not None:
                    raise invalid_params("give either window_seconds or from_height/to_height, not both")
                seconds = parse_int(window_seconds, "window_seconds", 1, 10**12)
                twap = app.pool_twap_window(pid, seconds * 1000)
            else:
                if from_height is None:
                    raise invalid_params("from_height (with to_height) or window_seconds is required")
                start = parse_int(from_height, "from_height", 0, MAX_HEIGHT)
                end = app.height if to_height is None else parse_int(to_height, "to_height", 0, MAX_HEIGHT)
                twap = app.pool_twap(pid, start, end)
        except PoolQueryError as exc:
            raise RPCError(NOT_FOUND, str(exc)) from None
        return twap_to_json(twap)

    def get_liquidity_position(address: Any, pool: Any) -> dict[str, Any]:
        owner = parse_address(address)
        pid = parse_pool(pool)
        p = require_pool(pid)
        pos = app.pool_position(owner, pid)
        amount0 = pos.shares * p.reserve0 // p.total_shares
        amount1 = pos.shares * p.reserve1 // p.total_shares
        return {
            "address": address_to_text(owner),
            "pool": pid,
            "shares": str(pos.shares),
            "share_of_pool": amm.decimal_ratio(pos.shares, p.total_shares),
            "amount0": str(amount0),
            "amount1": str(amount1),
            "pending_rewards": str(pos.pending(p.reward_index)),
        }

    def get_pool_history(pool: Any, from_height: Any = None, to_height: Any = None, limit: Any = MAX_HISTORY) -> dict[str, Any]:
        pid = parse_pool(pool)
        p = require_pool(pid)
        count = parse_int(limit, "limit", 1, MAX_HISTORY)
        end = app.height if to_height is None else parse_int(to_height, "to_height", 0, MAX_HEIGHT)
        start = max(end - count + 1, p.created_height) if from_height is None else parse_int(
            from_height, "from_height", 0, MAX_HEIGHT
        )
        if start > end:
            raise invalid_params(f"from_height {start} is above to_height {end}")
        end = min(end, start + count - 1)
        observations = app.pool_history(pid, start, end)
        return {"pool": pid, "height": app.height, "observations": [observation_to_json(o) for o in observations]}

    return {
        "qenex_getPool": get_pool,
        "qenex_listPools": list_pools,
        "qenex_quoteSwap": quote_swap,
        "qenex_getTwap": get_twap,
        "qenex_getLiquidityPosition": get_liquidity_position,
        "qenex_getPoolHistory": get_pool_history,
    }
