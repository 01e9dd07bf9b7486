"""The contract commands of the CLI (cli/contracts.py) against a live in-process node, and contracts in
``qenexd init`` / ``qenexd testnet init`` (on by default, ``--no-contracts`` to go without)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import wasmtime
from click.testing import CliRunner

from cli.main import cli
from node.genesis_tools import RISK_ENV
from state.crypto import address_to_text
from state.genesis import ContractParams, Genesis, GenesisToken, Params
from state.keyfile import save_keyfile
from tests.client_fixtures import ALICE, BOB, live_node

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
COUNTER_WAT = ROOT / "examples/contracts/counter.wat"
BOB_TEXT = address_to_text(BOB.address)
TOKENS = (GenesisToken("GOLD", "Gold", 6, ALICE.address),)


@pytest.fixture(scope="module")
def node():
    with live_node(tokens=TOKENS, params=Params(contracts=ContractParams())) as n:
        yield n


@pytest.fixture(scope="module")
def key(tmp_path_factory):
    path = tmp_path_factory.mktemp("keys") / "alice.json"
    save_keyfile(path, ALICE, None)
    return str(path)


def qenexd(node, *args: str):
    return CliRunner().invoke(cli, [*args, "--rpc", node.url], catch_exceptions=False)


def ok_json(node, *args: str) -> dict:
    result = qenexd(node, *args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def one_error_line(result) -> str:
    lines = result.output.strip().splitlines()
    assert result.exit_code != 0 and lines[-1].startswith("Error: "), result.output
    return lines[-1]


def deploy(node, key, *args: str) -> dict:
    out = ok_json(node, "tx", "contract", "deploy", "--from", key, *args, "--wait")
    assert out["status"] == "ok", out
    return out


@pytest.fixture(scope="module")
def counter(node, key) -> str:
    return deploy(node, key, "--wat", str(COUNTER_WAT))["contract_address"]


def test_deploy_prints_the_contract_and_its_receipt(node, key, tmp_path):
    human = qenexd(node, "tx", "contract", "deploy", "--from", key, "--wat", str(COUNTER_WAT), "--wait")
    assert human.exit_code == 0, human.output
    lines = dict(line.split(None, 1) for line in human.stdout.strip().splitlines() if not line.startswith("warning"))
    assert lines["status"].startswith("ok at height") and lines["contract"].startswith("qnx1")
    assert " of " in lines["gas"] and "QNX (of at most" in lines["fee"] and "refunded" in lines["fee"]
    shown = ok_json(node, "query", "contract", lines["contract"])
    assert shown["methods"] == ["get", "increment", "init"] and shown["deployer"] == address_to_text(ALICE.address)
    # a binary module, init arguments, an attached token, and a gas limit of its own
    wasm = tmp_path / "counter.wasm"
    wasm.write_bytes(bytes(wasmtime.wat2wasm(COUNTER_WAT.read_text())))
    out = deploy(node, key, "--wasm", str(wasm), "--init", "[]", "--attach", "2.5", "GOLD", "--attach", "1", "QNX",
                 "--gas-limit", "3000000")
    assert out["gas_limit"] == 3_000_000 and out["gas_used"] < 3_000_000 and out["events"] == [] and out["output"] == "0x"
    assert int(out["fee"]) < int(out["max_fee"]) == 3_000_000 * 10**9
    balances = ok_json(node, "query", "contract", out["contract_address"])["balances"]
    assert balances == {"GOLD": str(2_500_000), "QNX": str(10**18)}
    assert "2.5 GOLD" in qenexd(node, "query", "contract", out["contract_address"]).output


def test_deploy_without_wait_names_the_address_it_will_have(node, key):
    result = qenexd(node, "tx", "contract", "deploy", "--from", key, "--wat", str(COUNTER_WAT), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["status"] == "pending" and out["contract_address"].startswith("qnx1")
    from node.client import Client

    with Client(node.url) as client:
        assert client.wait_final(out["hash"])["contract_address"] == out["contract_address"]
    assert ok_json(node, "query", "contract", out["contract_address"])["address"] == out["contract_address"]
    human = qenexd(node, "tx", "contract", "deploy", "--from", key, "--wat", str(COUNTER_WAT))
    assert human.exit_code == 0 and "once the deploy succeeds" in human.output


def test_call_prints_events_output_and_fee(node, key, counter):
    out = ok_json(node, "tx", "contract", "call", counter, "increment", "--args", "[3]", "--from", key, "--wait")
    assert out["status"] == "ok" and out["result"] == 3 and out["output"] == "0x03"
    assert out["events"] == [{"contract": counter, "topic": "incremented", "topic_hex": "0x" + b"incremented".hex(),
                              "data": "0x" + (3).to_bytes(8, "little").hex()}]
    assert out["gas_limit"] == 2_000_000 and 0 < out["gas_used"] < 2_000_000 and int(out["fee"]) < int(out["max_fee"])
    human = qenexd(node, "tx", "contract", "call", counter, "increment", "--from", key, "--wait")
    assert human.exit_code == 0, human.output
    assert "output    0x04 = 4" in human.output and "incremented  data 0x0400000000000000" in human.output


def test_queries(node, key, counter):
    got = ok_json(node, "query", "call", counter, "get")
    assert got["output"] == "0x" + bytes([got["result"]]).hex() and got["gas_used"] > 0
    human = qenexd(node, "query", "call", counter, "get")
    assert human.exit_code == 0 and human.output.startswith("result ") and "of at most 10,000,000" in human.output
    before = ok_json(node, "query", "call", counter, "get", "--height", str(got["height"] - 1))
    assert before["height"] == got["height"] - 1
    state = ok_json(node, "query", "contract-state", counter)
    assert state["entries"][0]["key"] == "0x6e" and state["next"] is None
    assert "0x6e ('n')  0x" in qenexd(node, "query", "contract-state", counter).output
    assert ok_json(node, "query", "contract-state", counter, "--prefix", "ff")["entries"] == []
    assert ok_json(node, "query", "contract-state", counter, "--start-after", "0x6e")["entries"] == []
    shown = qenexd(node, "query", "contract", counter).output
    assert "storage   1 entries, 9 bytes" in shown and "methods   get, increment, init" in shown


def test_a_failed_call_prints_its_receipt_then_one_error_line(node, key, counter):
    result = qenexd(node, "tx", "contract", "call", counter, "increment", "--args", '["x"]', "--from", key, "--wait",
                    "--json")
    error = one_error_line(result)
    assert "failed at height" in error and "host_call_failed" in error
    printed = json.loads(result.stdout[:result.stdout.rindex("}") + 1])
    assert printed["status"] == "failed" and printed["gas_used"] > 0 and "arg_u64" in printed["reason"]


BAD_WAT = '(module (memory (export "memory") 1) (func (export "f") (i32.add)))'  # parses, does not validate
NO_MEMORY = '(module (func (export "f")))'


@pytest.mark.parametrize("args, text", [
    (["--wat", "/nonexistent/x.wat"], "cannot read it"),
    (["--wasm", "/nonexistent/x.wasm"], "cannot read it"),
    ([], "exactly one of --wasm FILE and --wat FILE"),
    (["--wat", str(COUNTER_WAT), "--wasm", str(COUNTER_WAT)], "exactly one of"),
    (["--wat", str(ROOT / "README.md")], "invalid WebAssembly text: expected `(` (line 1, column 1)"),
    (["--wat", "@BAD"], "the chain would refuse this code: module does not validate"),
    (["--wat", "@NOMEM"], "must export its memory"),
    (["--wasm", str(COUNTER_WAT)], "not a WebAssembly binary module"),
    (["--wat", str(COUNTER_WAT), "--init", "[1,"], "--init: not valid JSON"),
    (["--wat", str(COUNTER_WAT), "--init", "[0.5]"], "--init[0]: 0.5 is not an integer"),
    (["--wat", str(COUNTER_WAT), "--gas-limit", "10000000000"], "exceeds the chain's max_tx_gas 50,000,000"),
    (["--wat", str(COUNTER_WAT), "--gas-limit", "1000"], "below the transaction's intrinsic gas"),
    (["--wat", str(COUNTER_WAT), "--attach", "1", "NOPE"], "-32004"),
    (["--wat", str(COUNTER_WAT), "--attach", "1.0000001", "GOLD"], "--attach 1.0000001 GOLD"),
    (["--wat", str(COUNTER_WAT), "--attach", "1", "QNX", "--attach", "2", "QNX"], "attached twice"),
])
def test_deploy_errors_are_one_line_and_cost_nothing(node, key, tmp_path, args, text):
    files = {"@BAD": BAD_WAT, "@NOMEM": NO_MEMORY}
    for i, arg in enumerate(args):
        if arg in files:
            path = tmp_path / "bad.wat"
            path.write_text(files[arg])
            args = [*args[:i], str(path), *args[i + 1:]]
    before = ok_json(node, "query", "account", address_to_text(ALICE.address))
    error = one_error_line(qenexd(node, "tx", "contract", "deploy", "--from", key, *args))
    assert text in error, error
    after = ok_json(node, "query", "account", address_to_text(ALICE.address))
    assert after["pending_nonce"] == before["pending_nonce"]  # nothing was sent


def test_call_and_query_errors_are_one_line(node, key, counter):
    nobody = BOB_TEXT
    for args, text in (
        (["tx", "contract", "call", nobody, "get", "--from", key], "[-32041]"),
        (["tx", "contract", "call", "qnx1typo", "get", "--from", key], "CONTRACT"),
        (["tx", "contract", "call", counter, "nope", "--from", key], "has no method 'nope' to call (its methods: get, "
                                                                     "increment)"),
        (["tx", "contract", "call", counter, "init", "--from", key], "has no method 'init'"),
        (["tx", "contract", "call", counter, "get", "--args", "{", "--from", key], "--args: not valid JSON"),
        (["tx", "contract", "call", counter, "get", "--gas-limit", "100", "--from", key], "intrinsic gas"),
        (["query", "call", nobody, "get"], "[-32041]"),
        (["query", "call", counter, "nope"], "[-32042]"),
        (["query", "call", counter, "get", "--args", "[1e3]"], "is not an integer"),
        (["query", "call", counter, "get", "--args", '["0xabc"]'], "not hex bytes"),
        (["query", "contract", nobody], "[-32041]"),
        (["query", "contract", "qnx1nope"], "[-32602]"),
        (["query", "contract-state", counter, "--prefix", "xyz"], "--prefix 'xyz' is not hex"),
        (["query", "contract-state", counter, "--limit", "5000"], "5000"),
    ):
        error = one_error_line(qenexd(node, *args))
        assert text in error, (args, error)


def test_every_contract_command_has_help():
    for args in (["tx", "contract"], ["tx", "contract", "deploy"], ["tx", "contract", "call"], ["query", "contract"],
                 ["query", "contract-state"], ["query", "call"]):
        result = CliRunner().invoke(cli, [*args, "--help"])
        assert result.exit_code == 0 and "Usage:" in result.output, args


def test_a_chain_without_contracts_refuses_in_one_line(key):
    with live_node() as plain:
        for args, text in (
            (["tx", "contract", "deploy", "--from", key, "--wat", str(COUNTER_WAT)], "has no contracts"),
            (["tx", "contract", "call", BOB_TEXT, "get", "--from", key], "has no contracts"),
            (["query", "contract", BOB_TEXT], "[-32040]"),
            (["query", "call", BOB_TEXT, "get"], "[-32040]"),
        ):
            assert text in one_error_line(qenexd(plain, *args)), args


# -- init and testnet init --------------------------------------------------------------------


def _genesis(path: Path) -> Genesis:
    return Genesis.from_json(path.read_text())


def test_init_enables_contracts_unless_told_not_to(tmp_path):
    runner = CliRunner()
    on = runner.invoke(cli, ["init", "--home", str(tmp_path / "on"), "--p2p-port", "0", "--rpc-port", "0"])
    assert on.exit_code == 0, on.output
    assert _genesis(tmp_path / "on/config/genesis.json").params.contracts == ContractParams()
    off = runner.invoke(cli, ["init", "--home", str(tmp_path / "off"), "--no-contracts", "--p2p-port", "0",
                              "--rpc-port", "0"])
    assert off.exit_code == 0, off.output
    params = _genesis(tmp_path / "off/config/genesis.json").params
    assert params.contracts is None and params.staking is not None
    joined = runner.invoke(cli, ["init", "--home", str(tmp_path / "full"), "--no-contracts", "--genesis",
                                 str(tmp_path / "on/config/genesis.json")])
    assert joined.exit_code != 0 and "--no-contracts is for a new chain" in joined.output


def test_testnet_init_enables_contracts_unless_told_not_to(tmp_path, monkeypatch):
    monkeypatch.setenv(RISK_ENV, "off")
    runner = CliRunner()
    on = runner.invoke(cli, ["testnet", "init", "-n", "1", "--dir", str(tmp_path / "on"), "--base-port", "41000"])
    assert on.exit_code == 0, on.output
    assert _genesis(tmp_path / "on/node0/config/genesis.json").params.contracts == ContractParams()
    off = runner.invoke(cli, ["testnet", "init", "-n", "1", "--dir", str(tmp_path / "off"), "--base-port", "41100",
                              "--no-contracts"])
    assert off.exit_code == 0, off.output
    assert _genesis(tmp_path / "off/node0/config/genesis.json").params.contracts is None


def test_query_tx_shows_a_contract_receipt(node, key, counter):
    out = ok_json(node, "tx", "contract", "call", counter, "increment", "--args", "[1]", "--attach", "0.5", "QNX",
                  "--from", key, "--wait")
    shown = qenexd(node, "query", "tx", out["hash"]).output
    assert "kind         contract_call" in shown and "max fee      0.002 QNX" in shown
    assert f"incremented  data 0x{out['events'][0]['data'][2:]}  from {counter}" in shown
    assert "attached   0.5 QNX" in shown and f"output       {out['output']} = {out['result']}" in shown
    deployed = qenexd(node, "query", "tx", ok_json(node, "tx", "contract", "deploy", "--from", key, "--wat",
                                                    str(COUNTER_WAT), "--wait")["hash"]).output
    assert "contract     qnx1" in deployed and "... (435 bytes)" in deployed  # the code, shortened


def test_watch_events_of_one_contract(node, key, counter):
    """``watch events --contract`` while calls keep landing (it subscribes on its first read, so one call
    before that would be missed: they keep coming until it has printed)."""
    import threading

    from node import txbuild
    from node.client import Client
    from node.contract_values import args_from_json

    stop = threading.Event()

    def keep_calling() -> None:
        with Client(node.url) as client:
            while not stop.wait(0.1):
                payload = txbuild.contract_call(counter, "increment", args_from_json([1]), gas_limit=500_000)
                client.submit(client.sign(ALICE, payload))

    thread = threading.Thread(target=keep_calling, daemon=True)
    thread.start()
    try:
        out = qenexd(node, "watch", "events", "--contract", counter, "--kind", "contract", "--count", "1")
        calls = qenexd(node, "watch", "events", "--contract", counter, "--kind", "contract_call", "--count", "1",
                       "--json")
    finally:
        stop.set()
        thread.join(10)
    assert out.exit_code == 0, out.output
    assert out.output.startswith("height ") and f"contract {counter}  incremented  data 0x" in out.output
    event = json.loads(calls.output)["events"][0]
    assert event["kind"] == "contract_call" and event["contract"] == counter and event["payload"]["method"] == "increment"
    bad = qenexd(node, "watch", "events", "--contract", "qnx1nope")
    assert bad.exit_code == 1 and "contract" in one_error_line(bad)
