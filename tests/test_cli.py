"""The qenexd CLI without a running node: keys, testnet init, init, errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import platformdirs
import pytest
from click.testing import CliRunner

from cli.main import cli
from node.config import Home, default_home
from state.crypto import address_from_text
from state.genesis import Genesis


def run(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def test_keys_new_list_show_with_encryption(tmp_path):
    home = str(tmp_path)
    env = {"QENEX_PASSWORD": "correct horse"}
    created = run("keys", "new", "carol", "--home", home, "--json", env=env)
    assert created.exit_code == 0, created.output
    info = json.loads(created.output)
    assert info["encrypted"] is True
    address_from_text(info["address"])  # valid bech32
    keyfile = json.loads((tmp_path / "keyring" / "carol.json").read_text())
    assert "seed" not in keyfile  # encrypted at rest

    listed = run("keys", "list", "--home", home, "--json")
    assert [k["name"] for k in json.loads(listed.output)] == ["carol"]
    shown = run("keys", "show", "carol", "--home", home, "--json", env=env)
    assert json.loads(shown.output)["address"] == info["address"]

    wrong = run("keys", "show", "carol", "--home", home, env={"QENEX_PASSWORD": "wrong"})
    assert wrong.exit_code != 0
    assert "Error:" in wrong.output and len(wrong.output.strip().splitlines()) == 1

    again = run("keys", "new", "carol", "--home", home, env=env)
    assert again.exit_code != 0 and "already exists" in again.output


def test_testnet_init_writes_the_manifest_other_work_relies_on(tmp_path):
    result = run("testnet", "init", "--validators", "4", "--dir", str(tmp_path / "a"), "--base-port", "31000", "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "a" / "testnet.json").read_text())
    assert manifest["chain_id"]
    assert len(manifest["nodes"]) == 4
    for node in manifest["nodes"]:
        assert set(node) >= {"name", "home", "rpc", "p2p", "metrics"}
        assert node["rpc"].startswith("http://127.0.0.1:")
        assert node["p2p"].startswith("/ip4/127.0.0.1/tcp/") and "/p2p/" in node["p2p"]
        home = Home(tmp_path / "a" / node["home"])
        assert home.config_file.exists() and home.genesis_file.exists() and home.node_key_file.exists()
        metrics = home.load_config().metrics  # on, on loopback, at the port the manifest names
        assert node["metrics"] == f"http://127.0.0.1:{metrics.port}/metrics" and metrics.host == "127.0.0.1"
    for name in ("alice", "bob", "charlie"):
        account = manifest["accounts"][name]
        assert (tmp_path / "a" / account["keyfile"]).exists()
        address_from_text(account["address"])
    genesis = Genesis.from_json(Home(tmp_path / "a" / "node0").genesis_file.read_text())
    assert len(genesis.validators) == 4

    # a second testnet with another base port shares no port with the first
    run("testnet", "init", "--dir", str(tmp_path / "b"), "--base-port", "32000")
    ports = lambda m: {int(n["rpc"].rsplit(":", 1)[1].strip("/")) for n in m["nodes"]} | {
        int(n["p2p"].split("/")[4]) for n in m["nodes"]} | {
        int(n["metrics"].rsplit(":", 1)[1].split("/")[0]) for n in m["nodes"]}
    assert len(ports(manifest)) == 12  # p2p, RPC and metrics: no two nodes, no two services share a port
    other = json.loads((tmp_path / "b" / "testnet.json").read_text())
    assert not ports(manifest) & ports(other)

    again = run("testnet", "init", "--dir", str(tmp_path / "a"))
    assert again.exit_code != 0 and "already exists" in again.output


def test_init_single_node_home(tmp_path):
    result = run("init", "--home", str(tmp_path / "solo"), "--json")
    assert result.exit_code == 0, result.output
    home = Home(tmp_path / "solo")
    assert home.load_config().name == "node0"
    assert run("init", "--home", str(tmp_path / "solo")).exit_code != 0


def test_errors_are_one_line_and_nonzero(tmp_path):
    dead = "http://127.0.0.1:9/"  # discard port: nothing listens
    for args in (
        ["query", "status", "--rpc", dead],
        ["query", "account", "qnx1notanaddress", "--rpc", dead],
        ["tx", "transfer", "--from", "nobody", "--to", "x", "--amount", "1", "--home", str(tmp_path), "--rpc", dead],
        ["start", "--home", str(tmp_path / "missing")],
        ["testnet", "start", "--dir", str(tmp_path / "missing")],
    ):
        result = run(*args)
        assert result.exit_code != 0, args
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("Error:"), (args, result.output)


def test_keys_list_flags_unencrypted_and_readable_keys_and_short_passwords_are_refused(tmp_path):
    import os

    home = str(tmp_path)
    short = run("keys", "new", "weak", "--home", home, env={"QENEX_PASSWORD": "a"})
    assert short.exit_code != 0 and "at least 8 characters" in short.output
    assert not (tmp_path / "keyring" / "weak.json").exists()
    assert run("keys", "new", "dev", "--unencrypted", "--home", home).exit_code == 0
    assert run("keys", "new", "safe", "--home", home, env={"QENEX_PASSWORD": "correct horse"}).exit_code == 0
    os.chmod(tmp_path / "keyring" / "safe.json", 0o644)
    listed = {r["name"]: r for r in json.loads(run("keys", "list", "--home", home, "--json").output)}
    assert listed["dev"]["encrypted"] is False and "UNENCRYPTED" in listed["dev"]["warnings"][0]
    assert listed["safe"]["mode"] == "0644" and "readable by group/others" in listed["safe"]["warnings"][0]
    human = run("keys", "list", "--home", home).output
    assert "UNENCRYPTED" in human and "mode 0644" in human


def test_without_home_the_keyring_lives_in_the_platform_data_dir(tmp_path, monkeypatch):
    if not sys.platform.startswith("linux"):
        pytest.skip("XDG_DATA_HOME is the Linux convention")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    assert default_home() == tmp_path / "data" / "qenexd" == Path(platformdirs.user_data_dir("qenexd", appauthor=False))
    created = run("keys", "new", "dev", "--unencrypted", "--json")
    assert created.exit_code == 0, created.output
    assert json.loads(created.output)["keyfile"] == str(tmp_path / "data" / "qenexd" / "keyring" / "dev.json")
