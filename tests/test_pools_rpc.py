"""The pool JSON-RPC methods on an Application, without a network: results and -32602 for every bad param."""

from __future__ import annotations

import pytest

from node.jsonrpc import RPCError
from node.rpc_pools import pool_methods
from state.crypto import address_to_text
from state.payloads import PoolCreate, Swap
from tests.rpc_fixtures import rpc_context
from tests.test_pools_app import ALICE, BOB, E18, run, with_pool


@pytest.fixture(scope="module")
def rpc():
    chain = with_pool(5 * E18, 10 * E18)
    assert run(chain, BOB, Swap("AAA", "BBB", E18, 0, 1000)).ok
    assert run(chain, ALICE, PoolCreate("BBB", "CCC", 10 * E18, 10 * E18, 0)).ok
    for _ in range(3):
        chain.block()
    return pool_methods(rpc_context(chain.app)), chain.app


def test_pool_views(rpc):
    methods, app = rpc
    pool = methods["qenex_getPool"]("BBB/AAA")
    assert pool["id"] == "AAA/BBB" and pool["reserve0"] == str(6 * E18) and pool["fee_bps"] == 30
    assert len(pool["price0"].replace(".", "")) >= 38
    assert [p["id"] for p in methods["qenex_listPools"]()["pools"]] == ["AAA/BBB", "BBB/CCC"]
    quote = methods["qenex_quoteSwap"]("AAA", "CCC", str(E18))
    assert quote["path"] == ["AAA", "BBB", "CCC"] and int(quote["amount_out"]) > 0 and quote["price_impact_bps"] > 0
    position = methods["qenex_getLiquidityPosition"](address_to_text(ALICE.address), "AAA/BBB")
    assert int(position["shares"]) > 0 and int(position["pending_rewards"]) > 0
    history = methods["qenex_getPoolHistory"]("AAA/BBB")
    assert history["observations"][-1]["height"] == app.height
    twap = methods["qenex_getTwap"]("AAA/BBB", window_seconds=2)
    assert twap["to_height"] == app.height and twap["elapsed_ms"] >= 2000
    assert methods["qenex_getTwap"]("AAA/BBB", app.height - 2, app.height)["from_height"] == app.height - 2


@pytest.mark.parametrize(
    "method, args, name",
    [
        ("qenex_getPool", ["AAA"], "pool"),
        ("qenex_getPool", ["AAA/AAA"], "pool"),
        ("qenex_getPool", ["aaa/BBB"], "pool"),
        ("qenex_getPool", [7], "pool"),
        ("qenex_quoteSwap", ["AAA", "AAA", "1"], "token_in"),
        ("qenex_quoteSwap", ["AAA", "BBB", "0"], "amount_in"),
        ("qenex_quoteSwap", ["AAA", "BBB", "1.5"], "amount_in"),
        ("qenex_quoteSwap", ["AAA", "BBB", str(2**128)], "amount_in"),
        ("qenex_quoteSwap", ["AAA", "BBB", "1", ["AAA", "CCC"]], "path"),
        ("qenex_quoteSwap", ["AAA", "BBB", "1", None, 9], "max_hops"),
        ("qenex_getTwap", ["AAA/BBB"], "from_height"),
        ("qenex_getTwap", ["AAA/BBB", None, None, 0], "window_seconds"),
        ("qenex_getTwap", ["AAA/BBB", 1, 2, 5], "window_seconds"),
        ("qenex_getLiquidityPosition", ["nope", "AAA/BBB"], "address"),
        ("qenex_getPoolHistory", ["AAA/BBB", None, None, 0], "limit"),
        ("qenex_getPoolHistory", ["AAA/BBB", 9, 3], "from_height"),
    ],
)
def test_bad_params_are_invalid_params_naming_the_param(rpc, method, args, name):
    methods, _ = rpc
    with pytest.raises(RPCError) as info:
        methods[method](*args)
    assert info.value.code == -32602 and name in info.value.message


@pytest.mark.parametrize("method, args", [("qenex_getPool", ["AAA/CCC"]), ("qenex_quoteSwap", ["AAA", "DDD", "1"]),
                                          ("qenex_getTwap", ["AAA/BBB", 0, 1])])
def test_unknown_pools_and_ranges_are_not_found(rpc, method, args):
    methods, _ = rpc
    with pytest.raises(RPCError) as info:
        methods[method](*args)
    assert info.value.code == -32004


def test_batch_transactions_render_as_json_with_amounts_as_strings():
    import json

    from node.rpc import tx_to_json
    from state.payloads import Batch, FlashBorrow, FlashRepay, Transfer, TxKind
    from state.testing import dev_key
    from state.transactions import Transaction

    key = dev_key("json")
    ops = (FlashBorrow("AAA", "BBB", "AAA", 1000), FlashRepay("AAA", "BBB", "AAA", 1004),
           Transfer(key.address, "QNX", 2**100))
    stx = Transaction("c", TxKind.BATCH, key.public_key, 0, 30000, Batch(ops)).sign(key)
    out = json.loads(json.dumps(tx_to_json(stx)))
    rendered = out["payload"]["ops"]
    assert [op["op"] for op in rendered] == ["FlashBorrow", "FlashRepay", "Transfer"]
    assert rendered[1]["amount"] == "1004" and rendered[2]["amount"] == str(2**100)
    assert rendered[2]["to"].startswith("qnx1")
    assert "KIND" not in rendered[2] and "KIND" not in out["payload"]
