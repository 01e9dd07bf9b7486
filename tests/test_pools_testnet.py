"""End-to-end pools on a 4-validator testnet (issue #3 acceptance 4, and a few of 5 through the CLI and RPC).

Create two tokens, a pool, add liquidity and swap, all from the CLI; every
node reports the same pool state and history; the TWAP over a window of
seconds equals an independent computation from the per-block reserves (the
pool at the end of each block; stored only for blocks that changed it) and the
block headers' times.
"""

from __future__ import annotations

import json
import re
from fractions import Fraction

import pytest

from node.rpc_client import RPCClientError
from tests.localnet import LocalNet, running_localnet


pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

POOL = "AAA/BBB"


def _never_reject(network: LocalNet) -> None:
    """Each node's risk hook told never to reject.

    The hook is local admission policy (DESIGN.md), trained on transfers; this
    test is about pool state, so a model's opinion of a fresh dev account's
    token or pool transactions must not decide whether it runs.
    """
    for i in range(network.n):
        for config in (network.home(i) / "config").glob("*.toml"):
            config.write_text(re.sub(r"(?m)^reject_threshold = .*$", "reject_threshold = 1.0", config.read_text()))


def _cli_json(net, *args):
    result = net.cli(*args, "--json")
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def _tx(net, *args, node=0):
    return _cli_json(net, "tx", *args, "--from", str(net.account_key("alice")), "--rpc", net.url(node), "--wait")


def test_pools_on_a_running_testnet(tmp_path):
    with running_localnet(tmp_path, configure=_never_reject) as net:
        for symbol in ("AAA", "BBB"):
            out = _tx(net, "token", "create", "--symbol", symbol, "--name", f"{symbol} token", "--supply", "1000000")
            assert out["status"] == "ok"
        assert _tx(net, "pool", "create", "--pool", "BBB/AAA", "--amount-a", "2000", "--amount-b", "1000")["status"] == "ok"
        assert _tx(net, "pool", "add", "--pool", POOL, "--amount-a", "10", "--amount-b", "20", node=1)["status"] == "ok"
        swaps = [("AAA", "BBB", "5"), ("BBB", "AAA", "3.25"), ("AAA", "BBB", "1")]
        for i, (token_in, token_out, amount) in enumerate(swaps):
            out = _tx(net, "swap", "--in", token_in, "--out", token_out, "--amount", amount, node=i % 4)
            assert out["status"] == "ok" and int(out["quoted_out"]) > 0

        # bad inputs through the CLI: a specific error, nothing changes but the fee
        before = net.rpc(0).call("qenex_getPool", POOL)
        for args, reason in (
            (("swap", "--in", "AAA", "--out", "BBB", "--amount", "1", "--min-out", "1000000"), "slippage"),
            (("swap", "--in", "AAA", "--out", "BBB", "--amount", "1", "--deadline", "1"), "deadline_expired"),
            (("pool", "remove", "--pool", POOL, "--shares", str(10**30)), "insufficient_shares"),
        ):
            result = net.cli("tx", *args, "--from", str(net.account_key("alice")), "--rpc", net.url(0), "--wait")
            assert result.returncode != 0 and reason in result.stderr + result.stdout, (args, result.stderr)
        result = net.cli("tx", "swap", "--in", "AAA", "--out", "QNX", "--amount", "1", "--from",
                         str(net.account_key("alice")), "--rpc", net.url(0))
        assert result.returncode != 0 and "no pool path" in result.stderr + result.stdout
        after = net.rpc(0).call("qenex_getPool", POOL)
        assert (after["reserve0"], after["reserve1"], after["total_shares"]) == (
            before["reserve0"], before["reserve1"], before["total_shares"])
        for method, params, name in (
            ("qenex_getPool", ["AAA/AAA"], "pool"),
            ("qenex_quoteSwap", ["AAA", "BBB", "0"], "amount_in"),
            ("qenex_getTwap", [POOL, None, None, -5], "window_seconds"),
            ("qenex_getLiquidityPosition", ["qnx1bad", POOL], "address"),
        ):
            with pytest.raises(RPCClientError) as info:
                net.rpc(0).call(method, *params)
            assert info.value.code == -32602 and name in str(info.value)
        with pytest.raises(RPCClientError) as info:
            net.rpc(0).call("qenex_getPool", "AAA/CCC")
        assert "does not exist" in str(info.value)

        # let a few blocks pass so the oracle has a history, then compare every node at one height
        head = max(net.height(i) for i in range(4)) + 4
        net.wait_height(head)
        histories = [net.rpc(i).call("qenex_getPoolHistory", POOL, None, head, 1000) for i in range(4)]
        assert all(h["observations"] == histories[0]["observations"] for h in histories[1:])
        assert histories[0]["observations"][-1]["height"] == head
        pools = [_cli_json(net, "query", "pool", POOL, "--rpc", net.url(i)) for i in range(4)]
        stable = ("reserve0", "reserve1", "total_shares", "fee_bps", "reward_rate", "created_height")
        assert all({k: p[k] for k in stable} == {k: pools[0][k] for k in stable} for p in pools[1:])

        # TWAP over a window, recomputed from the recorded block prices and the headers' times
        client = net.rpc(2)
        twap = client.call("qenex_getTwap", POOL, None, None, 2)
        assert twap["elapsed_ms"] >= 2000
        observations = client.call("qenex_getPoolHistory", POOL, twap["from_height"], twap["to_height"])["observations"]
        assert [o["height"] for o in observations] == list(range(twap["from_height"], twap["to_height"] + 1))
        times = {h: client.call("qenex_getBlock", h)["time_ms"] for h in range(twap["from_height"], twap["to_height"] + 1)}
        # an observation is the pool at the end of its block: those reserves price the time until the next block
        assert all(o["time_ms"] == times[o["height"]] for o in observations)
        weighted0 = weighted1 = Fraction(0)
        for prev, obs in zip(observations, observations[1:]):
            dt = times[obs["height"]] - times[prev["height"]]
            weighted0 += Fraction(int(prev["reserve1"]), int(prev["reserve0"])) * dt
            weighted1 += Fraction(int(prev["reserve0"]), int(prev["reserve1"])) * dt
        elapsed = times[twap["to_height"]] - times[twap["from_height"]]
        assert elapsed == twap["elapsed_ms"]
        for reported, exact in ((twap["price0"], weighted0 / elapsed), (twap["price1"], weighted1 / elapsed)):
            assert abs(Fraction(reported) - exact) / exact < Fraction(1, 10**38)
        assert len(twap["price0"].replace(".", "").lstrip("0")) >= 38

        # the CLI's views agree with the RPC
        quote = _cli_json(net, "query", "quote", "--in", "AAA", "--out", "BBB", "--amount", str(10**18), "--rpc",
                          net.url(3))
        assert quote["path"] == ["AAA", "BBB"] and int(quote["amount_out"]) > 0 and quote["price_impact_bps"] >= 0
        position = net.rpc(1).call("qenex_getLiquidityPosition", net.address("alice"), POOL)
        assert int(position["shares"]) > 0
        listed = _cli_json(net, "query", "pools", "--rpc", net.url(1))
        assert [p["id"] for p in listed["pools"]] == [POOL]
