"""The CLI against a hostile node (tests/hostile_node.py): a malformed answer is one clear error line and
exit status 1, never a traceback; a node's text cannot drive the terminal; a resent submission the node
already has does not fail ``--wait``; state at a past height shows no "None"."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from cli.main import cli
from state.crypto import address_to_text
from state.keyfile import save_keyfile
from tests.client_fixtures import ALICE, BOB
from tests.hostile_node import Exchange, hostile_node, rpc_error, rpc_result

pytestmark = pytest.mark.timeout(60)

BOB_TEXT = address_to_text(BOB.address)
STATUS = {"chain_id": "qenex-test", "node": "n1", "height": 9, "latest_block_hash": "0xab", "latest_block_time_ms": 0,
          "peers": 0, "validator": None, "syncing": False, "mempool_size": 0, "consensus": None}
ACCOUNT = {"address": BOB_TEXT, "height": 9, "nonce": 3, "pending_nonce": 3, "queued": 0, "balances": {"QNX": "1"}}
BLOCK = {"height": 9, "time_ms": 0, "hash": "0xab", "proposer": "qnx1p", "num_txs": 0, "app_hash": "0x01",
         "prev_hash": "0x02", "txs": []}


def qenexd(url: str, *args: str):
    return CliRunner().invoke(cli, [*args, "--rpc", url], catch_exceptions=False)


def _answering(result: Any):
    """Every call answered ``result`` (each call of a batch too)."""
    return lambda ex: ex.reply([rpc_result(r, result) for r in ex.request] if isinstance(ex.request, list)
                               else rpc_result(ex.request, result))


MALFORMED = [
    (("status",), _answering({"chain_id": "x"}), "malformed answer: no field 'height'"),
    (("status",), _answering([1, 2]), "answered qenex_status with list"),
    (("status",), lambda ex: ex.reply(b"[" * 100_000 + b"]" * 100_000), "nested too deeply"),
    (("status",), _answering({**STATUS, "height": "nine"}), "malformed answer: ValueError"),
    (("status",), _answering({**STATUS, "consensus": [1]}), "malformed answer: AttributeError"),
    (("query", "account", BOB_TEXT), _answering({**ACCOUNT, "balances": [1]}), "malformed answer"),
    (("query", "account", BOB_TEXT), _answering({**ACCOUNT, "balances": {"QNX": "lots"}}), "malformed answer"),
    (("query", "account", BOB_TEXT),
     lambda ex: ex.reply(b'{"jsonrpc": "2.0", "id": 1, "result": {"balances": {"QNX": ' + b"9" * 5000 + b"}}}"),
     "did not answer JSON"),
    (("query", "account", BOB_TEXT), _answering({"address": BOB_TEXT}), "malformed answer: no field 'balances'"),
    (("query", "account", BOB_TEXT), lambda ex: ex.reply({"jsonrpc": "2.0", "id": ex.request["id"], "error": "x"}),
     "malformed error"),
    (("query", "account", BOB_TEXT, "--json"), lambda ex: ex.reply(b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
     "nested too deeply"),
    (("query", "block"), _answering({**BLOCK, "txs": [{"hash": "0x1"}]}), "malformed answer: no field 'kind'"),
    (("query", "block"), _answering({**BLOCK, "time_ms": 10**30}), "malformed answer"),
    (("query", "block"), _answering({**BLOCK, "time_ms": "noon"}), "malformed answer"),
    (("query", "block", "3"), _answering("a block"), "answered qenex_getBlock with str"),
    (("query", "tx", "0xab"), _answering({"hash": "0xab", "kind": "transfer", "sender": "s", "nonce": 0, "fee": "1",
                                          "payload": [1], "status": "ok"}), "malformed answer"),
    (("query", "validators"), _answering({"height": 1, "total_power": 10, "validators": [{}]}), "malformed answer"),
    (("query", "pools"), _answering({"pools": [{"token0": "A"}]}), "malformed answer"),
    (("query", "quote", "--in", "A", "--out", "B", "--amount", "1"), _answering({"path": []}), "malformed answer"),
]


@pytest.mark.parametrize("args, answer, text", MALFORMED, ids=[f"{' '.join(a[:2])}-{i}" for i, (a, _, _) in
                                                               enumerate(MALFORMED)])
def test_a_malformed_answer_is_one_clear_line_and_exit_status_1(args, answer, text):
    with hostile_node(answer) as url:
        result = qenexd(url, *args)
    lines = result.output.strip().splitlines()
    assert result.exit_code == 1, result.output
    assert len(lines) == 1 and lines[0].startswith("Error: ") and text in lines[0], result.output
    assert url in lines[0] and "Traceback" not in result.output


def test_a_node_s_text_cannot_drive_the_terminal():
    evil = "\x1b]0;owned\x07\x1b[2J"
    with hostile_node(_answering({**STATUS, "node": evil, "latest_block_hash": "0x\u202eab"})) as url:
        shown = qenexd(url, "status")
    assert shown.exit_code == 0 and "\x1b" not in shown.output and "\u202e" not in shown.output
    assert "\\x1b]0;owned\\x07" in shown.output and "\\u202e" in shown.output
    with hostile_node(lambda ex: ex.reply(rpc_error(ex.request, -32010, f"no\n{evil}", {"why": evil}))) as url:
        refused = qenexd(url, "query", "account", BOB_TEXT)
    assert refused.exit_code == 1 and "\x1b" not in refused.output
    assert len(refused.output.strip().splitlines()) == 1 and "rejected by node [-32010]: no\\n" in refused.output
    with hostile_node(lambda ex: ex.reply(rpc_error(ex.request, -32010, "x" * 100_000))) as url:
        long = qenexd(url, "query", "account", BOB_TEXT)
    assert long.exit_code == 1 and len(long.output) < 1200 and "more characters" in long.output


def test_a_wait_on_a_submission_the_node_already_has_succeeds(tmp_path):
    """A resend (or a second run of the same command) answered -32003 still follows the transaction."""
    key = tmp_path / "alice.json"
    save_keyfile(key, ALICE, None)
    sent: list[str] = []

    def node(ex: Exchange) -> None:
        calls = ex.request if isinstance(ex.request, list) else [ex.request]
        answers = []
        for call in calls:
            method = call["method"]
            if method == "qenex_status":
                answers.append(rpc_result(call, STATUS))
            elif method == "qenex_getAccount":
                answers.append(rpc_result(call, {**ACCOUNT, "address": address_to_text(ALICE.address)}))
            elif method == "qenex_getParams":
                answers.append(rpc_result(call, {"gas": {"transfer": 21_000}, "min_gas_price": "1"}))
            elif method == "qenex_getToken":
                answers.append(rpc_result(call, {"symbol": "QNX", "decimals": 18}))
            elif method == "qenex_sendTransaction":
                sent.append(call["params"][0])
                answers.append(rpc_error(call, -32003, "transaction is already in the mempool"))
            elif method == "qenex_getTransaction":
                answers.append(rpc_result(call, {"hash": call["params"][0], "committed": True, "status": "ok",
                                                 "height": 10, "index": 0}))
        ex.reply(answers if isinstance(ex.request, list) else answers[0])

    with hostile_node(node) as url:
        result = qenexd(url, "tx", "transfer", "--from", str(key), "--to", BOB_TEXT, "--amount", "1", "--wait",
                        "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    from state.crypto import sha256

    assert len(sent) == 1 and out["hash"] == "0x" + sha256(bytes.fromhex(sent[0][2:])).hex()
    assert out["status"] == "ok" and out["height"] == 10


def test_an_account_at_a_past_height_shows_no_none():
    past = {**ACCOUNT, "height": 7, "pending_nonce": None, "queued": None}
    with hostile_node(_answering(past)) as url:
        shown = qenexd(url, "query", "account", BOB_TEXT, "--height", "7")
    assert shown.exit_code == 0, shown.output
    assert "None" not in shown.output and "n/a at a past height" in shown.output
    assert "nonce     3 (next: n/a at a past height)" in shown.output and "height    7" in shown.output
