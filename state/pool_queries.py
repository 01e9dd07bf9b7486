"""Read-only pool queries on committed state: pools, positions, price history, TWAP, swap quotes.

The public surface other packages use (the JSON-RPC methods, the risk hook's
price-impact feature and price predictor) is ``Application``'s pool methods,
which delegate here.  Everything is exact integer arithmetic; prices come
out as decimal strings (``amm.decimal_ratio``, 40 significant digits) or as
exact numerator/denominator pairs.

Observation semantics (see state.pools): a stored observation at height
``k`` is the pool at the end of block ``k`` (time ``t_k``, the cumulatives
then, the reserves block ``k`` left), written only by blocks that created the
pool or changed its reserves.  Between two stored observations the reserves
are constant, so the pool at the end of any block ``h`` is the last stored
observation ``k ≤ h`` carried forward: ``cum_h = cum_k + price_k·(t_h − t_k)``
(``Observation.at``, with ``t_h`` from block ``h``'s header).  The TWAP of
token0 in token1 over ``(t_a, t_b]`` is ``(cum0_b − cum0_a) / (t_b − t_a) /
2^256``, and equals ``Σ_{a<j≤b} (reserve1/reserve0 after block j−1)·(t_j −
t_{j−1}) / (t_b − t_a)`` up to the floor of each fixed-point price (< 2^-256
relative).  Each query reads O(log n) keys plus what it returns.
"""

from __future__ import annotations

from dataclasses import dataclass

from state import amm, keys
from state.abc import KVStore
from state.blocks import BlockHeader
from state.errors import PoolQueryError, StateInvariantBroken
from state.ledger import Ledger, _stored
from state.pools import Observation, Pool, Pools, observation_from

MAX_HOPS = 3
# The best-path search is bounded whatever the pool graph looks like (pools
# are cheap to create, and a mesh of 30 tokens has 435 of them): at most
# MAX_NEIGHBOURS pools per token are followed (the direct pool always, then
# the others in symbol order) and at most MAX_QUOTE_STEPS hops are evaluated;
# the search keeps the best path found within those bounds.  Deterministic:
# every iteration is in sorted order.
MAX_NEIGHBOURS = 16
MAX_QUOTE_STEPS = 512


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
    def __init__(self, store: KVStore, head_height: int) -> None:
        self.pools = Pools(Ledger(store))
        self.store = store
        self.head = head_height

    def _time(self, height: int) -> int:
        """The time of committed block ``height`` (from its header)."""
        key = keys.block_key(height)
        raw = self.store.get(key)
        if raw is None:
            raise StateInvariantBroken(f"block {height} is missing below the head {self.head}")
        return BlockHeader.from_wire(_stored(key, raw, 5)[1]).time_ms

    def _stored_at_or_before(self, pid: str, height: int) -> Observation | None:
        """The last stored observation of ``pid`` at or before ``height``: one reverse seek."""
        stop = keys.observation_key(pid, height + 1)
        for key, raw in self.store.iterate_range(keys.observation_prefix(pid), stop, reverse=True):
            return observation_from(key, raw)
        return None

    def stored_observations(self, pid: str, from_height: int, to_height: int) -> list[Observation]:
        """The observations stored in [from_height, to_height]: the blocks that created or changed the pool."""
        if from_height > to_height:
            return []
        start, stop = keys.observation_key(pid, from_height), keys.observation_key(pid, to_height + 1)
        return [observation_from(k, v) for k, v in self.store.iterate_range(start, stop)]

    def observation(self, pid: str, height: int) -> Observation | None:
        """The pool at the end of block ``height`` (exact, carried from the last stored observation);
        None outside [creation, head]."""
        pool = self.pools.get(pid)
        if pool is None or not pool.created_height <= height <= self.head:
            return None
        last = self._stored_at_or_before(pid, height)
        if last is None:
            raise StateInvariantBroken(f"pool {pid} has no observation at or before {height} (created {pool.created_height})")
        return last if last.height == height else last.at(height, self._time(height))

    def _pool(self, pid: str) -> Pool:
        pool = self.pools.get(pid)
        if pool is None:
            raise PoolQueryError(f"pool {pid} does not exist")
        return pool

    def history(self, pid: str, from_height: int, to_height: int) -> list[Observation]:
        """The pool at the end of every block in [from_height, to_height] (clipped to its life and the head)."""
        pool = self._pool(pid)
        start, end = max(from_height, pool.created_height), min(to_height, self.head)
        if start > end:
            return []
        current = self.observation(pid, start)
        assert current is not None
        out = [current]
        changes = iter(self.stored_observations(pid, start + 1, end))
        change = next(changes, None)
        for height in range(start + 1, end + 1):
            if change is not None and change.height == height:
                current, change = change, next(changes, None)
            else:
                current = current.at(height, self._time(height))
            out.append(current)
        return out

    def twap(self, pid: str, from_height: int, to_height: int) -> Twap:
        pool = self._pool(pid)
        if not pool.created_height <= from_height < to_height <= self.head:
            raise PoolQueryError(
                f"heights must satisfy {pool.created_height} (pool creation) <= from_height {from_height}"
                f" < to_height {to_height} <= {self.head} (head)"
            )
        a, b = self.observation(pid, from_height), self.observation(pid, to_height)
        assert a is not None and b is not None
        return Twap(pid, a.height, b.height, a.time_ms, b.time_ms, b.cumulative0 - a.cumulative0,
                    b.cumulative1 - a.cumulative1)

    def twap_window(self, pid: str, window_ms: int) -> Twap:
        """TWAP over the last ``window_ms`` before the head block's time.

        Starts at the latest block at or before ``head_time − window_ms`` (so
        the window covered is at least the one asked for), or at the pool's
        creation when its history is shorter; the result says which heights
        and times it spans.  A binary search over block headers.
        """
        pool = self._pool(pid)
        if window_ms <= 0:
            raise PoolQueryError(f"window {window_ms} ms must be positive")
        if self.head <= pool.created_height:
            raise PoolQueryError(f"pool {pid} was created at the head height {self.head}: no interval yet")
        target = self._time(self.head) - window_ms
        lo, hi = pool.created_height, self.head - 1  # find the largest height with time <= target
        start = lo
        if self._time(lo) <= target:
            while lo < hi:
                mid = (lo + hi + 1) // 2
                if self._time(mid) <= target:
                    lo = mid
                else:
                    hi = mid - 1
            start = lo
        return self.twap(pid, start, self.head)

    # -- quotes -----------------------------------------------------------

    def _best_path(self, token_in: str, token_out: str, amount_in: int, max_hops: int) -> tuple[str, ...] | None:
        """The path of at most ``max_hops`` pools with the largest output (then the fewest hops).

        Layer by layer (Bellman-Ford over hop counts): each token keeps the
        best amount that reached it and the path that did, and only a path
        that improves on every earlier amount at its token is extended.
        Output is monotonic in input, so this finds the best walk; a path
        never revisits a token (no pool is used twice).
        """
        graph: dict[str, list[str]] = {}
        for pid in self.pools.ids():
            a, b = pid.split("/")
            graph.setdefault(a, []).append(b)
            graph.setdefault(b, []).append(a)
        pools: dict[str, Pool | None] = {}

        def reserves(a: str, b: str) -> tuple[int, int] | None:
            pid = f"{min(a, b)}/{max(a, b)}"
            if pid not in pools:
                pools[pid] = self.pools.get(pid)
            pool = pools[pid]
            return None if pool is None else pool.reserves_for(a)

        def neighbours(token: str) -> list[str]:
            others = sorted(t for t in graph.get(token, []) if t != token_out)
            direct = [token_out] if token_out in graph.get(token, []) else []
            return direct + others[: MAX_NEIGHBOURS - len(direct)]

        best: tuple[int, int, tuple[str, ...]] | None = None  # (amount out, -hops, path)
        reached: dict[str, int] = {token_in: amount_in}
        frontier: list[tuple[str, int, tuple[str, ...]]] = [(token_in, amount_in, (token_in,))]
        steps = 0
        for hop in range(1, max_hops + 1):
            improved: dict[str, tuple[int, tuple[str, ...]]] = {}
            for token, amount, path in frontier:
                for nxt in neighbours(token):
                    if nxt in path:
                        continue
                    if nxt != token_out and hop == max_hops:
                        continue  # could not reach token_out within max_hops anyway
                    if steps >= MAX_QUOTE_STEPS:
                        return None if best is None else best[2]
                    steps += 1
                    r = reserves(token, nxt)
                    if r is None:
                        continue
                    try:
                        out = amm.amount_out(amount, r[0], r[1])
                    except Exception:  # an ExecutionFailed from amm: a drained pool
                        continue
                    if nxt == token_out:
                        candidate = (out, -hop, path + (nxt,))
                        if best is None or candidate[:2] > best[:2]:
                            best = candidate
                    elif out > reached.get(nxt, 0) and out > improved.get(nxt, (0, ()))[0]:
                        improved[nxt] = (out, path + (nxt,))
            for token, (amount, _) in improved.items():
                reached[token] = max(reached.get(token, 0), amount)
            frontier = [(token, amount, path) for token, (amount, path) in sorted(improved.items())]
            if not frontier:
                break
        return None if best is None else best[2]

    def quote(self, token_in: str, token_out: str, amount_in: int, *, path: tuple[str, ...] | None = None,
              max_hops: int = MAX_HOPS) -> Quote:
        """Exact-in quote along ``path``, or along the best path of at most ``max_hops`` pools."""
        if amount_in <= 0:
            raise PoolQueryError(f"amount_in {amount_in} must be positive")
        if token_in == token_out:
            raise PoolQueryError(f"token_in and token_out are both {token_in}")
        if not 1 <= max_hops <= MAX_HOPS:
            raise PoolQueryError(f"max_hops {max_hops} is outside [1, {MAX_HOPS}]")
        if path is not None:
            if not 2 <= len(path) <= MAX_HOPS + 1:
                raise PoolQueryError(f"path of {len(path)} tokens is outside [2, {MAX_HOPS + 1}]")
            try:
                return self._quote_path(path, amount_in)
            except Exception as exc:  # an ExecutionFailed from amm (a drained pool) or an unknown pool
                raise PoolQueryError(f"path {'>'.join(path)}: {exc}") from None
        found = self._best_path(token_in, token_out, amount_in, max_hops)
        if found is None:
            raise PoolQueryError(f"no pool path from {token_in} to {token_out} within {max_hops} hops")
        return self._quote_path(found, amount_in)

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
