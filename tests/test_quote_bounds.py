"""Bounded swap-path search (issue 7, finding 4, quote half).

30 self-issued tokens with a pool on every pair (435 pools) made one
``qenex_quoteSwap(max_hops=4)`` enumerate ~20,000 paths (1.05 s on the event
loop).  The search is now a layered best-amount search with a neighbour cap
and a step budget, max_hops is at most 3, and on small graphs it still finds
what the exhaustive search found.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.jsonrpc import RPCError
from node.rpc_pools import pool_methods
from state.app import Application
from state.errors import PoolQueryError
from state.genesis import GenesisToken, Params
from state.kv import MemoryKV
from state.payloads import PoolCreate
from state.pool_queries import MAX_HOPS, MAX_QUOTE_STEPS, PoolQueries
from state.testing import Chain, dev_key, make_genesis
from tests.rpc_fixtures import rpc_context

ALICE, VAL = dev_key("mesh-alice"), dev_key("mesh-val")
MESH = tuple(f"T{i:02d}" for i in range(30))


class FakePool:
    def __init__(self, a: str, b: str, ra: int, rb: int) -> None:
        self.token0, self.token1, self.r0, self.r1 = a, b, ra, rb

    def reserves_for(self, token: str) -> tuple[int, int]:
        return (self.r0, self.r1) if token == self.token0 else (self.r1, self.r0)


class CountingPools:
    def __init__(self, pools: dict[str, FakePool]) -> None:
        self.by_id, self.reads = pools, 0

    def ids(self) -> list[str]:
        return sorted(self.by_id)

    def get(self, pid: str) -> FakePool | None:
        self.reads += 1
        return self.by_id.get(pid)


def queries(pools: dict[str, FakePool]) -> PoolQueries:
    q = PoolQueries(MemoryKV(), 0)
    q.pools = CountingPools(pools)  # type: ignore[assignment]
    return q


def exhaustive(q: PoolQueries, t_in: str, t_out: str, amount: int, hops: int) -> tuple[int, int] | None:
    """(amount out, -hops) of the best simple path, by enumerating every one (the old search)."""
    graph: dict[str, list[str]] = {}
    for pid in q.pools.ids():
        a, b = pid.split("/")
        graph.setdefault(a, []).append(b)
        graph.setdefault(b, []).append(a)
    best = None

    def walk(path: tuple[str, ...]) -> None:
        nonlocal best
        if path[-1] == t_out:
            try:
                quote = q._quote_path(path, amount)
            except Exception:
                return
            best = max(best or (-1, 0), (quote.amount_out, -(len(path) - 1)))
            return
        if len(path) <= hops:
            for nxt in sorted(graph.get(path[-1], [])):
                if nxt not in path:
                    walk(path + (nxt,))

    walk((t_in,))
    return best


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_layered_search_finds_what_the_exhaustive_search_found(data):
    n = data.draw(st.integers(3, 7), label="tokens")
    tokens = [f"T{i}" for i in range(n)]
    pools = {}
    for a, b in itertools.combinations(tokens, 2):
        if data.draw(st.booleans()):
            pools[f"{a}/{b}"] = FakePool(a, b, data.draw(st.integers(0, 10**9)), data.draw(st.integers(0, 10**9)))
    q = queries(pools)
    amount = data.draw(st.integers(1, 10**8), label="amount")
    hops = data.draw(st.integers(1, MAX_HOPS), label="hops")
    want = exhaustive(q, tokens[0], tokens[-1], amount, hops)
    try:
        quote = q.quote(tokens[0], tokens[-1], amount, max_hops=hops)
        got = (quote.amount_out, -(len(quote.path) - 1))
        assert len(set(quote.path)) == len(quote.path)
    except PoolQueryError:
        got = None
    assert got == want


def test_a_full_mesh_costs_a_bounded_number_of_pool_reads():
    pools = {f"{a}/{b}": FakePool(a, b, 10**24 + i, 10**24 + 7 * i)
             for i, (a, b) in enumerate(itertools.combinations(MESH, 2))}
    assert len(pools) == 435
    q = queries(pools)
    quote = q.quote(MESH[0], MESH[-1], 10**18, max_hops=3)
    assert quote.amount_out > 0
    assert q.pools.reads <= MAX_QUOTE_STEPS + MAX_HOPS  # the old search read ~2,400 (3 hops), ~80,000 (4 hops)
    with pytest.raises(PoolQueryError, match="max_hops 4"):
        q.quote(MESH[0], MESH[-1], 10**18, max_hops=4)


def test_quote_rpc_refuses_more_than_three_hops_on_a_real_mesh():
    """The attack on an Application: 30 tokens, 435 pools, then quotes."""
    tokens = tuple(GenesisToken(s, s, 18, ALICE.address) for s in MESH)
    genesis = make_genesis(validators=(VAL,), funded=(ALICE,), tokens=tokens,
                           extra_balances={ALICE.address: {s: 10**30 for s in MESH}}, params=Params())
    chain = Chain(Application(MemoryKV(), genesis), VAL)
    pairs = list(itertools.combinations(MESH, 2))
    for start in range(0, len(pairs), 100):
        _, result = chain.block([chain.tx(ALICE, PoolCreate(a, b, 10**21, 10**21 + i, 0))
                                 for i, (a, b) in enumerate(pairs[start:start + 100])])
        assert all(r.ok for r in result.receipts)
    methods = pool_methods(rpc_context(chain.app))
    with pytest.raises(RPCError) as info:
        methods["qenex_quoteSwap"](MESH[0], MESH[-1], str(10**18), None, 4)
    assert info.value.code == -32602 and "max_hops" in info.value.message
    with pytest.raises(RPCError) as info:
        methods["qenex_quoteSwap"](MESH[0], MESH[-1], str(10**18), list(MESH[:5]))
    assert info.value.code == -32602 and "path" in info.value.message
    quote = methods["qenex_quoteSwap"](MESH[0], MESH[-1], str(10**18), None, 3)
    assert int(quote["amount_out"]) > 0 and 2 <= len(quote["path"]) <= 4
