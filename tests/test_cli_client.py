"""The CLI's tx, query, status and risk score commands against a live in-process node (through node.client)."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from click.testing import CliRunner

from cli.main import cli
from state.crypto import address_to_text
from state.genesis import GenesisToken, Params
from state.keyfile import save_keyfile
from tests.client_fixtures import ALICE, BOB, live_node

pytestmark = pytest.mark.timeout(120)

BOB_TEXT = address_to_text(BOB.address)
TOKENS = tuple(GenesisToken(s, f"{s} token", 18, ALICE.address) for s in ("AAA", "BBB"))


@pytest.fixture(scope="module")
def node():
    with live_node(tokens=TOKENS, params=Params(reward_authority=ALICE.address)) as n:
        yield n


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "alice.json"
    save_keyfile(path, ALICE, None)
    return str(path)


def qenexd(node, *args: str):
    return CliRunner().invoke(cli, [*args, "--rpc", node.url], catch_exceptions=False)


def tx(node, key, *args: str) -> dict:
    result = qenexd(node, "tx", *args, "--from", key, "--wait", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "ok", out
    return out


def test_status_summary_and_its_json(node):
    human = qenexd(node, "status")
    assert human.exit_code == 0, human.output
    assert "client-test on chain qenex-test" in human.output and "validator   no (observer)" in human.output
    assert "last block" in human.output and " ago)" in human.output and "pending" in human.output
    as_json = json.loads(qenexd(node, "query", "status", "--json").output)
    assert set(as_json) >= {"chain_id", "height", "latest_block_hash", "peers", "validator", "mempool_size", "syncing"}


def test_transfer_then_readable_account_block_and_tx(node, key):
    result = qenexd(node, "tx", "transfer", "--from", key, "--to", BOB_TEXT, "--amount", "12.5", "--wait")
    assert result.exit_code == 0, result.output
    line = result.stdout.strip().splitlines()[-1]
    tx_hash, status, *_, height = line.split()
    assert status == "ok" and tx_hash.startswith("0x")
    account = qenexd(node, "query", "account", BOB_TEXT).output
    assert "1,012.5 QNX" in account  # 1,000 at genesis
    block = qenexd(node, "query", "block", height.replace(",", "")).output
    assert tx_hash in block and "Z (" in block
    shown = qenexd(node, "query", "tx", tx_hash, "--proof").output
    assert "ok at height" in shown and "12.5 QNX" in shown and "verified against tx_root" in shown
    as_json = json.loads(qenexd(node, "query", "account", BOB_TEXT, "--json").output)
    assert as_json["balances"]["QNX"] == str(1012 * 10**18 + 5 * 10**17)


def test_every_tx_command(node, key, tmp_path):
    tx(node, key, "token", "create", "--symbol", "GOLD", "--name", "Gold", "--decimals", "6", "--supply", "1000")
    tx(node, key, "token", "mint", "--symbol", "GOLD", "--to", BOB_TEXT, "--amount", "5.25")
    assert "1,005.25 GOLD" in qenexd(node, "query", "token", "GOLD").output
    tx(node, key, "pool", "create", "--pool", "BBB/AAA", "--amount-a", "2000", "--amount-b", "1000")
    tx(node, key, "pool", "add", "--pool", "AAA/BBB", "--amount-a", "10", "--amount-b", "20")
    swapped = tx(node, key, "swap", "--in", "AAA", "--out", "BBB", "--amount", "5", "--slippage-bps", "100")
    assert swapped["path"] == ["AAA", "BBB"] and int(swapped["min_out"]) < int(swapped["quoted_out"])
    tx(node, key, "pool", "remove", "--pool", "AAA/BBB", "--shares", "1000000")
    flash = tmp_path / "flash.json"
    flash.write_text(json.dumps({"ops": [{"op": "flash_borrow", "pool": "AAA/BBB", "token": "AAA", "amount": "1000"},
                                         {"op": "flash_repay", "pool": "AAA/BBB", "token": "AAA", "amount": "1004"}]}))
    tx(node, key, "batch", "--file", str(flash))
    tx(node, key, "rewards", "set-rate", "--pool", "AAA/BBB", "--rate", "0.001")
    tx(node, key, "rewards", "claim", "--pool", "AAA/BBB")
    pool = qenexd(node, "query", "pool", "AAA/BBB").output
    assert "AAA/BBB (fee 30 bps)" in pool and " AAA / " in pool and "0.001 QNX per block" in pool
    quote = qenexd(node, "query", "quote", "--in", "AAA", "--out", "BBB", "--amount", str(10**18)).output
    assert "1 AAA" in quote and "AAA > BBB" in quote
    assert "AAA/BBB" in qenexd(node, "query", "pools").output
    failed = qenexd(node, "tx", "swap", "--from", key, "--in", "AAA", "--out", "BBB", "--amount", "1",
                    "--deadline", "1", "--wait")
    assert failed.exit_code != 0 and "deadline" in failed.output


def test_errors_are_one_clear_line(node, key):
    for args, text in (
        (("tx", "transfer", "--from", key, "--to", "qnx1typo", "--amount", "1"), "--to"),
        (("tx", "transfer", "--from", key, "--to", BOB_TEXT, "--amount", "1", "--fee", "1.5"), "--fee"),
        (("tx", "transfer", "--from", key, "--to", BOB_TEXT, "--amount", "1", "--token", "NOPE"), "NOPE"),
        (("tx", "pool", "add", "--from", key, "--pool", "AAABBB", "--amount-a", "1", "--amount-b", "1"), "AAA/BBB"),
        (("risk", "score", "--from", key, "--to", BOB_TEXT, "--amount", "1"), "-32021"),
        (("query", "token", "NOPE"), "-32004"),
    ):
        result = qenexd(node, *args)
        lines = result.output.strip().splitlines()
        assert result.exit_code != 0 and lines[-1].startswith("Error:") and text in lines[-1], (args, result.output)


class _Recorder(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        _Recorder.seen.append(body)
        height = body["params"][-1]
        if body["method"] == "qenex_getValidators":
            result = {"height": height, "total_power": "10", "validators": []}
        elif height == 404:
            out = {"jsonrpc": "2.0", "id": body["id"], "error": {
                "code": -32602, "message": f"invalid params for {body['method']}: too many positional arguments"}}
            return self._send(out)
        else:
            result = {"address": body["params"][0], "nonce": 0, "pending_nonce": 0, "queued": 0, "balances": {}}
        self._send({"jsonrpc": "2.0", "id": body["id"], "result": result})

    def _send(self, out: dict) -> None:
        raw = json.dumps(out).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


def test_height_is_passed_as_the_trailing_param_and_an_old_node_says_so():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    try:
        run = lambda *a: CliRunner().invoke(cli, [*a, "--rpc", url, "--json"], catch_exceptions=False)  # noqa: E731
        assert run("query", "account", BOB_TEXT, "--height", "7").exit_code == 0
        assert run("query", "account", BOB_TEXT).exit_code == 0
        assert json.loads(run("query", "validators", "--height", "3").output)["height"] == 3
        assert [b["params"] for b in _Recorder.seen] == [[BOB_TEXT, 7], [BOB_TEXT], [3]]
        old = run("query", "account", BOB_TEXT, "--height", "404")
        assert old.exit_code != 0 and "does not answer reads at a past height" in old.output
        assert run("query", "account", BOB_TEXT, "--height", "-1").exit_code != 0  # refused by the CLI
        assert len(_Recorder.seen) == 4
    finally:
        server.shutdown()
        thread.join(5)
