"""Read-only pool queries on committed state: pools, positions, price history, TWAP, swap quotes.

The public surface other packages use (the JSON-RPC methods, the risk hook's
price-impact feature and price predictor) is ``Application``'s pool methods,
which delegate here.  Everything is exact integer arithmetic; prices come
out as decimal strings (``amm.decimal_ratio``, 40 significant digits) or as
exact numerator/denominator pairs.

Observation semantics (see state.pools): the observation at height ``h``
holds the block time ``t_h``, the cumulative prices at ``t_h`` and the
reserves that held during ``(t_{h-1}, t_h]`` (for the pool's creation
height: the reserves right after creation, with zero cumulatives).  So the
TWAP of token0 in token1 over ``(t_a, t_b]`` is
``(cum0_b − cum0_a) / (t_b − t_a) / 2^256``, and equals
``Σ_{a<k≤b} (reserve1_k / reserve0_k)·(t_k − t_{k−1}) / (t_b − t_a)`` up to
the floor of each fixed-point step (< 2^-256 relative).
"""

from __future__ import annotations

from dataclasses import dataclass

from state import amm, keys
from state.abc import KVReader
from state.errors import PoolQueryError
from state.ledger import Ledger
from state.pools import Observation, Pool, Pools, observation_from

MAX_HOPS = 3


@dataclass(frozen=True, slots=True)
class Twap:
    pool_id: str
    from_height: int
    to_height: int
    from_time_ms: int
    to_time_ms: int
    cumulative0_delta: int  # fixed point, amm.PRICE_SHIFT fractional bits, times ms
    cumulative1_delta: int

    @property
    def elapsed_ms(self) -> int:
        return self.to_time_ms - self.from_time_ms

    @property
    def price0(self) -> str:
        """Time-weighted average price of token0 in token1, 40 significant digits."""
        return amm.decimal_ratio(self.cumulative0_delta, self.elapsed_ms << amm.PRICE_SHIFT)

    @property
    def price1(self) -> str:
        """Time-weighted average price of token1 in token0."""
        return amm.decimal_ratio(self.cumulative1_delta, self.elapsed_ms << amm.PRICE_SHIFT)


@dataclass(frozen=True, slots=True)
class Quote:
    path: tuple[str, ...]
    pools: tuple[str, ...]
    amount_in: int
    amounts: tuple[int, ...]  # amount entering each hop, then the final output
    fees: tuple[int, ...]  # LP fee of each hop, in that hop's input token (in·3/1000, rounded up)
    price_impact_bps: int  # vs. the spot prices, the LP fee excluded

    @property
    def amount_out(self) -> int:
        return self.amounts[-1]


class PoolQueries:
    def __init__(self, store: KVReader, head_height: int) -> None:
        self.pools = Pools(Ledger(store))
        self.store = store
        self.head = head_height

    def observation(self, pid: str, height: int) -> Observation | None:
        key = keys.observation_key(pid, height)
        raw = self.store.get(key)
        return None if raw is None else observation_from(key, raw)

    def _pool(self, pid: str) -> Pool:
        pool = self.pools.get(pid)
        if pool is None:
            raise PoolQueryError(f"pool {pid} does not exist")
        return pool

    def history(self, pid: str, from_height: int, to_height: int) -> list[Observation]:
        pool = self._pool(pid)
        start, end = max(from_height, pool.created_height), min(to_height, self.head)
        out = []
        for height in range(start, end + 1):
            obs = self.observation(pid, height)
            if obs is not None:
                out.append(obs)
        return out

    def twap(self, pid: str, from_height: int, to_height: int) -> Twap:
        pool = self._pool(pid)
        if not pool.created_height <= from_height < to_height <= self.head:
            raise PoolQueryError(
                f"heights must satisfy {pool.created_height} (pool creation) <= from_height {from_height}"
                f" < to_height {to_height} <= {self.head} (head)"
            )
        a, b = self.observation(pid, from_height), self.observation(pid, to_height)
        if a is None or b is None:
            raise PoolQueryError(f"pool {pid} has no observation at height {from_height if a is None else to_height}")
        return Twap(pid, a.height, b.height, a.time_ms, b.time_ms, b.cumulative0 - a.cumulative0,
                    b.cumulative1 - a.cumulative1)

    def twap_window(self, pid: str, window_ms: int) -> Twap:
        """TWAP over the last ``window_ms`` before the head block's time.

        Starts at the latest observation at or before ``head_time − window_ms``
        (so the window covered is at least the one asked for), or at the
        pool's creation when its history is shorter; the result says which
        heights and times it spans.
        """
        pool = self._pool(pid)
        if window_ms <= 0:
            raise PoolQueryError(f"window {window_ms} ms must be positive")
        if self.head <= pool.created_height:
            raise PoolQueryError(f"pool {pid} was created at the head height {self.head}: no interval yet")
        end = self.observation(pid, self.head)
        assert end is not None
        target = end.time_ms - window_ms
        lo, hi = pool.created_height, self.head - 1  # find the largest height with time <= target
        first = self.observation(pid, lo)
        assert first is not None
        start = lo
        if first.time_ms <= target:
            while lo < hi:
                mid = (lo + hi + 1) // 2
                obs = self.observation(pid, mid)
                assert obs is not None
                if obs.time_ms <= target:
                    lo = mid
                else:
                    hi = mid - 1
            start = lo
        return self.twap(pid, start, self.head)

    # -- quotes -----------------------------------------------------------

    def _paths(self, token_in: str, token_out: str, max_hops: int) -> list[tuple[str, ...]]:
        graph: dict[str, list[str]] = {}
        for pid in self.pools.ids():
            a, b = pid.split("/")
            graph.setdefault(a, []).append(b)
            graph.setdefault(b, []).append(a)
        paths: list[tuple[str, ...]] = []

        def walk(path: tuple[str, ...]) -> None:
            if path[-1] == token_out:
                paths.append(path)
                return
            if len(path) > max_hops:
                return
            for nxt in sorted(graph.get(path[-1], [])):
                if nxt not in path:
                    walk(path + (nxt,))

        walk((token_in,))
        return paths

    def quote(self, token_in: str, token_out: str, amount_in: int, *, path: tuple[str, ...] | None = None,
              max_hops: int = MAX_HOPS) -> Quote:
        """Exact-in quote along ``path``, or along the best path of at most ``max_hops`` pools."""
        if amount_in <= 0:
            raise PoolQueryError(f"amount_in {amount_in} must be positive")
        if token_in == token_out:
            raise PoolQueryError(f"token_in and token_out are both {token_in}")
        candidates = [path] if path is not None else self._paths(token_in, token_out, max_hops)
        best: Quote | None = None
        last_error = f"no pool path from {token_in} to {token_out} within {max_hops} hops"
        for candidate in candidates:
            try:
                quote = self._quote_path(candidate, amount_in)
            except Exception as exc:  # an ExecutionFailed from amm (a drained pool) or an unknown pool
                last_error = f"path {'>'.join(candidate)}: {exc}"
                continue
            if best is None or (quote.amount_out, -len(quote.path)) > (best.amount_out, -len(best.path)):
                best = quote
        if best is None:
            raise PoolQueryError(last_error)
        return best

    def _quote_path(self, path: tuple[str, ...], amount_in: int) -> Quote:
        amounts = [amount_in]
        fees = []
        pools = []
        ideal_num, ideal_den = amount_in, 1  # output at spot prices after the LP fee
        for token_in, token_out in zip(path, path[1:]):
            pid = f"{min(token_in, token_out)}/{max(token_in, token_out)}"
            pool = self.pools.get(pid)
            if pool is None:
                raise PoolQueryError(f"pool {pid} does not exist")
            reserve_in, reserve_out = pool.reserves_for(token_in)
            amount = amounts[-1]
            amounts.append(amm.amount_out(amount, reserve_in, reserve_out))
            fees.append(-(-amount * (amm.FEE_DENOMINATOR - amm.FEE_NUMERATOR) // amm.FEE_DENOMINATOR))
            pools.append(pid)
            ideal_num *= amm.FEE_NUMERATOR * reserve_out
            ideal_den *= amm.FEE_DENOMINATOR * reserve_in
        out = amounts[-1]
        # impact = 1 − out / ideal = (ideal_num − out·ideal_den) / ideal_num, rounded up
        impact = -(-(ideal_num - out * ideal_den) * amm.BPS // ideal_num)
        return Quote(tuple(path), tuple(pools), amount_in, tuple(amounts), tuple(fees), max(impact, 0))
