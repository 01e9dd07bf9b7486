"""node.client against a live in-process node: every read, every transaction kind, batches, waiting.

The error paths (an unreachable, garbled, oversized or half-answering
node) are in tests/test_client_errors.py; subscriptions in
tests/test_client_ws.py.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from node import rpc_calls, txbuild
from node.client import AsyncClient, Client, RPCClientError, TxTimeout
from state.crypto import address_to_text
from state.genesis import GenesisToken, Params
from state.merkle import verify_merkle_proof
from tests.client_fixtures import ALICE, BOB, live_node

pytestmark = pytest.mark.timeout(120)

E18 = 10**18
ROOT = Path(__file__).resolve().parents[1]
TOKENS = tuple(GenesisToken(s, f"{s} token", 18, ALICE.address) for s in ("AAA", "BBB", "CCC"))
BOB_TEXT = address_to_text(BOB.address)
ALICE_TEXT = address_to_text(ALICE.address)


@pytest.fixture(scope="module")
def node():
    with live_node(tokens=TOKENS, params=Params(reward_authority=ALICE.address)) as n:
        yield n


@pytest.fixture()
def client(node):
    with Client.connect(node.url) as c:
        yield c


def send(client: Client, payload, **kw) -> dict:
    record = client.send_and_wait(client.sign(ALICE, payload, **kw), timeout=30)
    assert record["committed"] is True and record["height"] >= 1
    return record


def test_every_transaction_kind_is_built_signed_and_final(client):
    head = client.status()["height"]
    assert send(client, txbuild.transfer(BOB_TEXT, client.units("QNX", "12.5")))["status"] == "ok"
    assert send(client, txbuild.token_create("GOLD", "Gold", 0, 1000))["status"] == "ok"
    assert send(client, txbuild.token_mint("GOLD", BOB.address, 5))["status"] == "ok"
    assert client.token("GOLD")["total_supply"] == "1005" and client.decimals("GOLD") == 0
    assert send(client, txbuild.pool_create("BBB/AAA", 2000 * E18, 1000 * E18))["status"] == "ok"
    assert send(client, txbuild.pool_create("BBB/CCC", 1000 * E18, 1000 * E18))["status"] == "ok"
    assert send(client, txbuild.pool_add("AAA/BBB", 10 * E18, 20 * E18))["status"] == "ok"
    deadline = client.status()["height"] + 100
    assert send(client, txbuild.swap(["AAA", "BBB"], E18, 1, deadline))["status"] == "ok"
    route = txbuild.swap(["AAA", "BBB", "CCC"], E18, 1, deadline)
    assert type(route).__name__ == "SwapRoute" and send(client, route)["status"] == "ok"
    shares = int(client.position(ALICE_TEXT, "AAA/BBB")["shares"])
    assert send(client, txbuild.pool_remove("AAA/BBB", shares // 10))["status"] == "ok"
    flash = txbuild.batch([txbuild.flash_borrow("AAA/BBB", "AAA", 1000), txbuild.flash_repay("AAA/BBB", "AAA", 1004)])
    assert send(client, flash)["status"] == "ok"
    assert send(client, txbuild.set_reward_rate("AAA/BBB", 10**15))["status"] == "ok"
    claimed = send(client, txbuild.rewards_claim("AAA/BBB"))
    assert claimed["status"] == "ok" and claimed["kind"] == "rewards_claim"
    # the pool reads, on the pools just made
    pool = client.pool("AAA/BBB")
    assert pool["id"] == "AAA/BBB"
    assert client.quote("AAA", "CCC", E18)["path"] == ["AAA", "BBB", "CCC"]
    assert client.quote("AAA", "BBB", E18, ["AAA", "BBB"], 1)["path"] == ["AAA", "BBB"]
    assert client.twap("AAA/BBB", window_seconds=1)["pool"] == "AAA/BBB"
    assert client.history("AAA/BBB", limit=5)["observations"]
    assert int(client.position(ALICE_TEXT, "AAA/BBB")["shares"]) > 0
    with pytest.raises(RPCClientError) as short:
        client.predict_price("AAA/BBB")
    assert short.value.code == -32022  # this node has no market model
    # a failing transaction is final too: its receipt says why, and wait_final hands it back
    too_late = send(client, txbuild.swap(["AAA", "BBB"], E18, 1, head + 1))
    assert too_late["status"] == "failed" and "deadline" in too_late["reason"]


def test_fee_and_nonce_override_and_the_one_signing_path(client):
    params = client.params()
    stx = client.sign(ALICE, txbuild.transfer(BOB_TEXT, 1), fee=10**12 + 1)
    assert stx.tx.fee == 10**12 + 1 and stx.tx.chain_id == client.status()["chain_id"]
    assert stx.tx.nonce == client.account(ALICE_TEXT)["pending_nonce"]
    default = client.sign(ALICE, txbuild.transfer(BOB_TEXT, 1))
    assert default.tx.fee == int(params["gas"]["transfer"]) * int(params["min_gas_price"])
    assert client.sign(ALICE, txbuild.transfer(BOB_TEXT, 1), nonce=7).tx.nonce == 7
    assert default.verify_signature()


def test_reads_of_the_chain(client, node):
    record = send(client, txbuild.transfer(BOB_TEXT, 3))
    tx_hash = record["hash"]
    status = client.status()
    assert status["height"] == node.app.height and status["chain_id"] == node.app.chain_id
    block = client.block(record["height"], True)
    assert block["height"] == record["height"] and block["txs"][record["index"]]["hash"] == tx_hash
    assert client.block()["height"] == status["height"]
    assert client.receipt(tx_hash) == client.transaction(tx_hash)
    proof = client.proof(tx_hash)
    assert verify_merkle_proof(bytes.fromhex(proof["tx_root"][2:]), bytes.fromhex(tx_hash[2:]), proof["index"],
                               proof["tree_size"], [bytes.fromhex(p[2:]) for p in proof["proof"]])
    vset = client.validators()
    assert vset["height"] == status["height"] + 1 and len(vset["validators"]) == 1
    assert client.mempool()["size"] == 0
    assert client.token("AAA")["decimals"] == 18
    assert client.account(BOB_TEXT)["address"] == BOB_TEXT
    assert client.risk_model() == {"loaded": False, "fallback": "admit"}
    with pytest.raises(RPCClientError) as no_model:
        client.risk_score("0x" + client.sign(ALICE, txbuild.transfer(BOB_TEXT, 1)).encode().hex())
    assert no_model.value.code == -32021 and "no risk model" in no_model.value.message


def test_refusals_carry_code_message_and_data(client):
    broke = client.sign(ALICE, txbuild.transfer(BOB_TEXT, 10**30))
    with pytest.raises(RPCClientError) as refused:
        client.submit(broke)
    assert refused.value.code == -32010 and refused.value.data["reason"] == "insufficient_balance"
    with pytest.raises(RPCClientError) as missing:
        client.token("NOPE")
    assert missing.value.code == -32004 and "NOPE" in str(missing.value)
    with pytest.raises(RPCClientError) as bad:
        client.account("qnx1nope")
    assert bad.value.code == -32602
    with pytest.raises(RPCClientError) as unknown:
        client.call("qenex_noSuchMethod")
    assert unknown.value.code == -32601


def test_batch_answers_in_order_with_errors_in_place(client):
    answers = client.batch([rpc_calls.status(), rpc_calls.token("NOPE"), rpc_calls.account(BOB_TEXT),
                            ("qenex_getToken", ["QNX"])])
    assert answers[0]["chain_id"] and answers[2]["address"] == BOB_TEXT and answers[3]["symbol"] == "QNX"
    assert isinstance(answers[1], RPCClientError) and answers[1].code == -32004
    assert client.batch([]) == []
    with pytest.raises(RPCClientError) as whole:  # over the node's 100 calls: refused as a whole
        client.batch([rpc_calls.status()] * 101)
    assert whole.value.code == -32600


def test_wait_final_gives_up_with_tx_timeout(client):
    unknown = "0x" + "ab" * 32
    with pytest.raises(TxTimeout) as waited:
        client.wait_final(unknown, timeout=0.3, poll=0.05)
    assert waited.value.tx_hash == unknown and "not finalized" in str(waited.value)


def test_height_is_sent_only_when_given():
    assert rpc_calls.account("qnx1x").params == ("qnx1x",)
    assert rpc_calls.account("qnx1x", height=5).params == ("qnx1x", 5)
    assert rpc_calls.validators().params == () and rpc_calls.validators(0).params == (0,)
    assert rpc_calls.token("AAA", 9).params == ("AAA", 9) and rpc_calls.pool("AAA/BBB").params == ("AAA/BBB",)
    assert rpc_calls.twap("AAA/BBB", None, None, 60).params == ("AAA/BBB", None, None, 60)
    for bad in (-1, "7", True, 1.5):
        with pytest.raises(ValueError, match="height"):
            rpc_calls.account("qnx1x", height=bad)  # type: ignore[arg-type]


def test_bad_urls_and_bad_inputs_are_refused_before_sending():
    for url in ("127.0.0.1:1", "ftp://x/", "http://", "http://h:99999/"):
        with pytest.raises(Exception, match="node URL"):
            Client(url)
    with pytest.raises(txbuild.TxBuildError, match="to"):
        txbuild.transfer("qnx1typo", 1)
    with pytest.raises(txbuild.TxBuildError, match="AAA/BBB"):
        txbuild.pool_add("AAABBB", 1, 1)
    with pytest.raises(txbuild.TxBuildError, match="base units"):
        txbuild.units("1.5", "--fee")
    with pytest.raises(txbuild.TxBuildError, match="unknown op"):
        txbuild.batch_ops_from_json({"ops": [{"op": "steal"}]}, 10)
    with pytest.raises(txbuild.TxBuildError, match="missing 'amount'"):
        txbuild.batch_ops_from_json([{"op": "flash_borrow", "pool": "AAA/BBB", "token": "AAA"}], 10)


async def test_async_client_reads_signs_sends_and_batches(node):
    async with AsyncClient.connect(node.url) as client:
        status = await client.status()
        assert status["chain_id"] == node.app.chain_id
        stx = await client.sign(ALICE, txbuild.transfer(BOB_TEXT, await client.units("QNX", "0.5")))
        record = await client.send_and_wait(stx, timeout=30)
        assert record["status"] == "ok" and record["hash"] == "0x" + stx.hash.hex()
        answers = await client.batch([rpc_calls.transaction(record["hash"]), rpc_calls.token("NOPE")])
        assert answers[0]["height"] == record["height"] and isinstance(answers[1], RPCClientError)
        with pytest.raises(RPCClientError) as refused:
            await client.submit(stx)  # already committed: its nonce is spent
        assert refused.value.code == -32010
        with pytest.raises(TxTimeout):
            await client.wait_final("0x" + "cd" * 32, timeout=0.2, poll=0.05)


def test_the_readme_example_runs(node, tmp_path, monkeypatch):
    """The README's "Python client" example, as written, against a live node in a testnet-like directory."""
    import json

    from state.keyfile import save_keyfile

    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Python client"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "http://127.0.0.1:26601/" in code
    (tmp_path / "testnet" / "keys").mkdir(parents=True)
    save_keyfile(tmp_path / "testnet" / "keys" / "alice.json", ALICE, None)
    (tmp_path / "testnet" / "testnet.json").write_text(json.dumps({"accounts": {
        "alice": {"address": ALICE_TEXT, "keyfile": "keys/alice.json"}, "bob": {"address": BOB_TEXT}}}))
    monkeypatch.chdir(tmp_path)
    printed: list[str] = []
    before = int(Client(node.url).account(BOB_TEXT)["balances"]["QNX"])
    exec(compile(code.replace("http://127.0.0.1:26601/", node.url), "README.md", "exec"),
         {"print": lambda *a: printed.append(" ".join(map(str, a)))})
    assert len(printed) == 2 and printed[-1].startswith("ok "), printed
    assert int(Client(node.url).account(BOB_TEXT)["balances"]["QNX"]) == before + 125 * 10**17
