"""End-to-end: four validator processes on 127.0.0.1 (issue #2 acceptance).

One testnet serves the transfer, agreement, rejection and garbage-frame
tests, and then has its primary killed and restarted.  Every process is stopped by
PID in the fixtures' finally blocks.
"""

from __future__ import annotations

import json
import signal

import msgpack
import pytest

from node.rpc_client import RPCClientError
from state.amounts import QNX_DECIMALS
from state.crypto import address_from_text
from state.genesis import Params
from state.keyfile import load_keyfile
from state.payloads import Transfer, TxKind
from state.transactions import SignedTransaction, Transaction
from tests.localnet import LocalNet, running_localnet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    with running_localnet(tmp_path_factory.mktemp("testnet")) as network:
        yield network


TRANSFER_FEE = Params().min_fee(TxKind.TRANSFER)  # testnet init writes the default params


def _sign_transfer(net: LocalNet, sender: str, to: str, amount: int, *, nonce: int | None = None,
                   chain_id: str | None = None, fee: int = TRANSFER_FEE) -> SignedTransaction:
    key = load_keyfile(net.account_key(sender), None)
    if nonce is None:
        nonce = int(net.rpc(0).call("qenex_getAccount", net.address(sender))["pending_nonce"])
    tx = Transaction(chain_id or net.chain_id, TxKind.TRANSFER, key.public_key, nonce, fee,
                     Transfer(to=address_from_text(net.address(to)), token="QNX", amount=amount))
    return tx.sign(key)


def _send(net: LocalNet, raw: bytes, node: int = 0):
    return net.rpc(node).call("qenex_sendTransaction", "0x" + raw.hex())


def test_cli_transfer_finalizes_and_every_node_agrees_for_20_heights(net):
    bob = net.address("bob")
    before = int(net.rpc(1).call("qenex_getAccount", bob)["balances"]["QNX"])
    result = net.cli_process(  # the real `python -m cli.main`, once; other CLI calls run in-process
        "tx", "transfer", "--from", str(net.account_key("alice")), "--to", bob, "--amount", "12.5",
        "--rpc", net.url(0), "--wait", "--json",
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["status"] == "ok" and isinstance(out["height"], int) and out["hash"].startswith("0x")

    expected = before + 125 * 10 ** (QNX_DECIMALS - 1)
    for i in range(net.n):  # every node reports the same balance once it has the block
        wait_until(lambda: int(net.rpc(i).call("qenex_getAccount", bob)["balances"]["QNX"]) == expected,
                   30, f"bob's balance on node{i}")

    top = max(20, out["height"])
    net.wait_height(top, timeout=120)
    for height in range(1, top + 1):
        blocks = [net.rpc(i).call("qenex_getBlock", height) for i in range(net.n)]
        assert len({b["hash"] for b in blocks}) == 1, f"nodes disagree on the block at {height}"
        assert len({b["app_hash"] for b in blocks}) == 1, f"nodes disagree on the app hash at {height}"
    accounts = [net.rpc(i).call("qenex_getAccount", net.address("alice"), top) for i in range(net.n)]
    assert len({json.dumps(a, sort_keys=True) for a in accounts}) == 1
    # state at past heights (state/history.py): bob before and after the transfer, the same on every node
    for height, balance in ((out["height"] - 1, before), (out["height"], expected)):
        answers = [net.rpc(i).call("qenex_getAccount", bob, height) for i in range(net.n)]
        assert {int(a["balances"]["QNX"]) for a in answers} == {balance}, f"bob at height {height}"

    proof = net.cli("query", "tx", out["hash"], "--proof", "--json", "--rpc", net.url(2))
    assert proof.returncode == 0, proof.stderr
    assert json.loads(proof.stdout)["proof"]["verified"] is True


def test_every_node_serves_metrics_and_the_series_move(net):
    """testnet init turned metrics on for every node; two scrapes apart, the chain and the counters moved."""
    def rpc_calls(samples, method):
        return samples.get(("qenex_rpc_requests_total", frozenset({("method", method), ("outcome", "ok")})), 0)

    before = [net.scrape(i) for i in range(net.n)]
    for i in range(net.n):
        net.rpc(i).call("qenex_getValidators")
    net.wait_height(max(int(b[("qenex_chain_height", frozenset())]) for b in before) + 2)
    for i, b in enumerate(before):
        a = net.scrape(i)
        assert a[("qenex_chain_height", frozenset())] > b[("qenex_chain_height", frozenset())], i
        assert a[("qenex_blocks_committed_total", frozenset())] > b[("qenex_blocks_committed_total", frozenset())]
        assert rpc_calls(a, "qenex_getValidators") == rpc_calls(b, "qenex_getValidators") + 1, i
        assert a[("qenex_p2p_peers", frozenset())] == net.n - 1
        out = ("qenex_p2p_messages_total", frozenset({("kind", "direct"), ("direction", "out")}))
        assert a[out] > b[out]
        assert a[("qenex_block_interval_seconds_count", frozenset())] >= 1
        assert a[("qenex_store_write_batch_seconds_count", frozenset())] > b[("qenex_store_write_batch_seconds_count", frozenset())]
        assert a[("process_resident_memory_bytes", frozenset())] > 0
        assert ("qenex_consensus_view", frozenset()) in a and ("qenex_mempool_bytes", frozenset()) in a
    assert json.loads((net.dir / "testnet.json").read_text())["nodes"][0]["metrics"].endswith("/metrics")


def test_every_node_streams_heads_and_a_transfer_to_finality_over_websocket(net):
    """A real WebSocket client (node.client) on each node: newHeads follow the chain with the same block
    hashes everywhere, and a tx subscription on a node that did not receive the transfer reports it final."""
    import asyncio

    from node.client import AsyncClient

    async def heads(i: int, n: int) -> list[dict]:
        async with AsyncClient(net.url(i)) as client, client.subscribe("newHeads") as stream:
            return [(await asyncio.wait_for(stream.__anext__(), 30)).result for _ in range(n)]

    async def finality(i: int, tx_hash: str) -> list[dict]:
        async with AsyncClient(net.url(i)) as client, client.subscribe("tx", {"hash": tx_hash}) as watch:
            notes = [(await asyncio.wait_for(watch.__anext__(), 30)).result]
            _send(net, stx.encode(), node=0)  # subscribed first on node i, then sent through node 0
            while not notes[-1]["final"]:
                notes.append((await asyncio.wait_for(watch.__anext__(), 60)).result)
            return notes

    async def main() -> tuple[list[list[dict]], list[dict]]:
        streams = asyncio.gather(*(heads(i, 3) for i in range(net.n)))
        return await streams, await finality(net.n - 1, "0x" + stx.hash.hex())

    stx = _sign_transfer(net, "alice", "charlie", 7)
    seen, notes = asyncio.run(main())
    for stream in seen:
        assert [h["height"] for h in stream] == list(range(stream[0]["height"], stream[0]["height"] + 3))
    for head in (h for stream in seen for h in stream):
        assert head["hash"] == net.rpc(0).call("qenex_getBlock", head["height"])["hash"]
    assert notes[0]["status"] == "unknown" and notes[-1]["status"] == "ok" and notes[-1]["final"] is True
    assert notes[-1]["height"] == net.rpc(0).call("qenex_getTransaction", "0x" + stx.hash.hex())["height"]


def _oversize_amount_tx(net: LocalNet) -> bytes:
    """A transfer whose amount (2**128) does not fit: hand-packed, since our encoder refuses it."""
    key = load_keyfile(net.account_key("alice"), None)
    big = msgpack.ExtType(1, (2**128).to_bytes(17, "big"))
    wire = [1, net.chain_id, 1, key.public_key, 0, TRANSFER_FEE, [address_from_text(net.address("bob")), "QNX", big]]
    return msgpack.packb([wire, b"\x00" * 64], use_bin_type=True)


def test_bad_transactions_are_rejected_specifically_and_change_nothing(net):
    alice, bob = "alice", "bob"
    state_before = [net.rpc(i).call("qenex_getAccount", net.address(alice)) for i in range(net.n)]
    committed_nonce = state_before[0]["nonce"]
    balance = int(state_before[0]["balances"]["QNX"])
    good = _sign_transfer(net, alice, bob, 1)
    tampered = bytearray(good.encode())
    tampered[-1] ^= 0x01

    cases = {
        "bad signature": (bytes(tampered), "signature"),
        "wrong chain id": (_sign_transfer(net, alice, bob, 1, chain_id="other-chain").encode(), "chain"),
        # a near-future nonce is queued (node/mempool.py); one beyond what its run could reach is refused
        "skipped nonce": (_sign_transfer(net, alice, bob, 1, nonce=committed_nonce + 5000).encode(), "nonce"),
        "insufficient balance": (_sign_transfer(net, alice, bob, balance * 2).encode(), "insufficient"),
        "amount over 2^128-1": (_oversize_amount_tx(net), "exceeds 2**128 - 1"),
        "malformed bytes": (b"\xde\xad\xbe\xef", "malformed"),
        "oversized": (b"\x00" * (64 * 1024), "exceeds"),
    }
    for name, (raw, fragment) in cases.items():
        with pytest.raises(RPCClientError) as err:
            _send(net, raw)
        assert fragment in str(err.value).lower(), f"{name}: {err.value}"
        assert err.value.code == -32010, f"{name}: code {err.value.code}"

    # replayed nonce: a committed transaction sent again
    first = _sign_transfer(net, alice, bob, 1)
    tx_hash = _send(net, first.encode())["hash"]
    net.rpc(0).wait_for_tx(tx_hash, timeout=30)
    with pytest.raises(RPCClientError) as err:
        _send(net, first.encode(), node=1)
    assert "nonce" in str(err.value) and "replayed" in str(err.value)

    # nothing else changed: alice paid exactly one transfer of 1 plus its fee
    after = net.rpc(3).call("qenex_getAccount", net.address(alice))
    assert after["nonce"] == committed_nonce + 1
    assert int(after["balances"]["QNX"]) == balance - 1 - TRANSFER_FEE
    assert net.rpc(0).call("qenex_status")["height"] > 0  # still serving


def test_garbage_network_frames_do_not_stop_a_live_node(net):
    from tests.p2p_attack import send_garbage_to

    victim = 1
    start = net.height(victim)
    report = send_garbage_to(net.manifest["nodes"][victim]["p2p"], timeout=30)
    assert report["attempts"] >= 3, report
    assert net.procs[victim].poll() is None, "the victim process died"
    net.wait_height(start + 5, nodes=[victim], timeout=60)
    status = net.rpc(victim).call("qenex_status")
    assert status["peers"] >= 2


# Last in the module: it kills and restarts a validator of the shared testnet
# (a testnet of its own would cost another start), and counts view-change
# commits from its own start, whatever the tests before it caused.
def test_stopped_primary_forces_a_view_change_and_restarted_node_catches_up(net):
    before = [net.rpc(i).call("qenex_status") for i in range(net.n)]
    # Kill whichever validator is the primary of the height being decided now.
    status = net.rpc(0).call("qenex_status")
    addresses = [s["validator"] for s in before]
    victim = addresses.index(status["consensus"]["primary"])
    net.kill(victim, signal.SIGKILL)
    alive = [i for i in range(net.n) if i != victim]
    h0 = max(net.height(i) for i in alive)
    net.wait_height(h0 + 8, nodes=alive, timeout=120)
    statuses = [net.rpc(i).call("qenex_status") for i in alive]
    assert all(s["consensus"]["view_change_commits"] > before[i]["consensus"]["view_change_commits"]
               for i, s in zip(alive, statuses)), (before, statuses)

    net.start(victim)
    target = max(net.height(i) for i in alive) + 2
    net.wait_height(target, timeout=120)
    for height in range(1, target + 1):
        blocks = [net.rpc(i).call("qenex_getBlock", height) for i in range(net.n)]
        assert len({b["hash"] for b in blocks}) == 1, f"disagreement on the block at {height}"
        assert len({b["app_hash"] for b in blocks}) == 1, f"disagreement on the app hash at {height}"
