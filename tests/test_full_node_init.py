"""Homes of nodes that follow a chain (issue 10, "full nodes and joining"), without running them:
``qenexd init --genesis FILE --peer MULTIADDR`` and ``qenexd testnet init --full-nodes M``, their
refusals (one line, non-zero, nothing written), and the testnet port layout for N + M nodes."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from node.config import Home
from node import genesis_tools
from node.genesis_tools import PORTS_PER_NODE, RISK_ENV, write_testnet
from node.homecheck import open_home_state
from node.signguard import SignGuard
from p2p import peer_id_from_public_key
from state.crypto import address_from_text
from state.genesis import Genesis
from state.keyfile import load_keyfile

PEER = "/ip4/127.0.0.1/tcp/26656/p2p/12D3KooWLRPJAA5o6gMMsXo1M2aYbPXwhZYUNCCqaBJZt7xGAsiJ"


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def chain(tmp_path: Path) -> Path:
    """The genesis file of an existing single-validator chain."""
    assert run("init", "--home", str(tmp_path / "origin"), "--json").exit_code == 0
    return Home(tmp_path / "origin").genesis_file


def test_init_with_genesis_and_peers_makes_a_home_that_follows_the_chain(tmp_path: Path, chain: Path) -> None:
    other = PEER.replace("26656", "26658")
    result = run("init", "--home", str(tmp_path / "full"), "--genesis", str(chain), "--peer", PEER,
                 "--peer", other, "--peer", PEER, "--name", "watcher", "--p2p-port", "27000",
                 "--rpc-port", "27001", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.output)
    home = Home(tmp_path / "full")
    genesis = Genesis.from_json(chain.read_text())
    assert home.genesis_file.read_text() == chain.read_text()  # copied as given
    assert (info["chain_id"], info["genesis_hash"], info["role"]) == (genesis.chain_id, "0x" + genesis.hash.hex(),
                                                                      "full")
    config = home.load_config()
    assert config.name == "watcher" and config.p2p.bootstrap == (PEER, other)  # duplicates dropped
    assert (config.p2p.listen_port, config.rpc.listen_port) == (27000, 27001)
    assert info["rpc"] == "http://127.0.0.1:27001/"
    key = load_keyfile(home.node_key_file, None)
    assert info["pubkey"] == "0x" + key.public_key.hex() and address_from_text(info["address"]) == key.address
    assert info["p2p"].endswith("/p2p/" + peer_id_from_public_key(key.public_key))
    assert key.public_key not in {v.pubkey for v in genesis.validators}  # a fresh key: in no set
    # A start opens it (the store holds this genesis; a sign-state record for the node key is
    # there, ready for the day the key joins the set).
    opened = open_home_state(home, genesis, key.address)
    try:
        assert opened.app.height == 0 and opened.app.chain_id == genesis.chain_id
        assert key.public_key not in {pk for pk, _ in opened.app.validators()}
        assert opened.sign_guard.state.height == 0
    finally:
        opened.kv.close()
    assert SignGuard.load(home.sign_state_file, genesis.chain_id, key.address).validator == key.address


@pytest.mark.parametrize("args, message", [
    (("--genesis", "{missing}", "--peer", PEER), "does not exist"),
    (("--genesis", "{dir}", "--peer", PEER), "is not a regular file"),
    (("--genesis", "{garbage}", "--peer", PEER), "is not a valid genesis: genesis is not valid JSON"),
    (("--genesis", "{incomplete}", "--peer", PEER), "is not a valid genesis: genesis is missing 'genesis_time_ms'"),
    (("--genesis", "{binary}", "--peer", PEER), "is not UTF-8 text"),
    (("--genesis", "{good}",), "needs at least one --peer"),
    (("--genesis", "{good}", "--peer", "garbage"), "--peer 'garbage' is not a multiaddr"),
    (("--genesis", "{good}", "--peer", "/ip4/127.0.0.1/tcp/26656"), "is not a multiaddr"),
    (("--genesis", "{good}", "--peer", PEER.replace("/tcp/", "/udp/")), "names no TCP port"),
    (("--genesis", "{good}", "--peer", PEER, "--peer", PEER.rsplit("/", 1)[0] + "/Qmbad"), "is not a multiaddr"),
    (("--genesis", "{good}", "--peer", PEER, "--chain-id", "another-1"), "is not the chain of"),
    (("--peer", PEER), "--peer needs --genesis"),
])
def test_bad_input_is_one_line_nonzero_and_writes_nothing(tmp_path: Path, chain: Path, args: tuple[str, ...],
                                                           message: str) -> None:
    (tmp_path / "dir").mkdir()
    (tmp_path / "garbage.json").write_text("{not json")
    (tmp_path / "incomplete.json").write_text('{"chain_id": "x-1"}')
    (tmp_path / "binary.json").write_bytes(b"\xff\xfe\x00{")
    files = {"missing": tmp_path / "nope.json", "dir": tmp_path / "dir", "garbage": tmp_path / "garbage.json",
             "incomplete": tmp_path / "incomplete.json", "binary": tmp_path / "binary.json", "good": chain}
    target = tmp_path / "full"
    result = run("init", "--home", str(target), *(a.format(**files) for a in args))
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], result.output
    assert not target.exists(), "a refused init wrote into the home"


def test_init_with_genesis_refuses_a_home_that_has_a_store(tmp_path: Path, chain: Path) -> None:
    first = run("init", "--home", str(tmp_path / "full"), "--genesis", str(chain), "--peer", PEER)
    assert first.exit_code == 0, first.output
    key_before = Home(tmp_path / "full").node_key_file.read_bytes()
    again = run("init", "--home", str(tmp_path / "full"), "--genesis", str(chain), "--peer", PEER, "--force")
    assert again.exit_code != 0 and "already holds a state store" in again.output
    assert Home(tmp_path / "full").node_key_file.read_bytes() == key_before


def test_testnet_full_nodes_follow_the_validators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RISK_ENV, "off")
    result = run("testnet", "init", "-n", "4", "--full-nodes", "2", "--dir", str(tmp_path), "--base-port", "33000",
                 "--json")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "testnet.json").read_text())
    assert [(n["name"], n["role"]) for n in manifest["nodes"]] == [
        ("node0", "validator"), ("node1", "validator"), ("node2", "validator"), ("node3", "validator"),
        ("full0", "full"), ("full1", "full")]
    genesis = Genesis.from_json(Home(tmp_path / "node0").genesis_file.read_text())
    set_keys = {"0x" + v.pubkey.hex() for v in genesis.validators}
    validator_addrs = [n["p2p"] for n in manifest["nodes"][:4]]
    for node in manifest["nodes"]:
        home = Home(tmp_path / node["home"])
        assert home.genesis_file.read_text() == Home(tmp_path / "node0").genesis_file.read_text()
        key = load_keyfile(home.node_key_file, None)
        assert node["pubkey"] == "0x" + key.public_key.hex()
        assert (node["pubkey"] in set_keys) == (node["role"] == "validator")
        bootstrap = home.load_config().p2p.bootstrap
        assert set(bootstrap) == set(validator_addrs) - {node["p2p"]}  # everyone dials the validators only
    funded = {a.address for a in genesis.accounts}
    assert all(address_from_text(n["address"]) not in funded for n in manifest["nodes"][4:])  # operators pay


def _ports(manifest: dict) -> list[int]:
    out = []
    for n in manifest["nodes"]:
        out += [int(n["p2p"].split("/")[4]), int(n["rpc"].rsplit(":", 1)[1].strip("/")),
                int(n["metrics"].rsplit(":", 1)[1].split("/")[0]), int(n["admin"].rsplit(":", 1)[1].strip("/"))]
    return out


def test_testnet_ports_never_collide_and_keep_the_validators_layout() -> None:
    for validators, full in itertools.product(range(1, 9), range(0, 6)):
        nodes = validators + full
        ports = [p for node in genesis_tools.testnet_ports(40000, nodes) for p in node]
        assert len(set(ports)) == len(ports) == PORTS_PER_NODE * nodes, (validators, full)
        assert set(ports) == set(range(40000, 40000 + PORTS_PER_NODE * nodes))  # consecutive, from the base
    # The documented layout with N = all nodes; with no full nodes, exactly the old one.
    assert genesis_tools.testnet_ports(26600, 4) == [(26600 + 2 * i, 26601 + 2 * i, 26608 + i, 26612 + i) for i in range(4)]
    assert genesis_tools.testnet_ports(100, 5)[4] == (108, 109, 114, 119)


def test_a_written_testnet_with_full_nodes_uses_each_port_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(RISK_ENV, "off")
    manifest = write_testnet(tmp_path / "a", validators=3, chain_id="x-1", base_port=34000, full_nodes=2)
    ports = _ports(manifest)
    assert len(set(ports)) == len(ports) == 20 and min(ports) == 34000 and max(ports) == 34019
    for node in manifest["nodes"]:  # each home's config listens where the manifest says
        config = Home(tmp_path / "a" / node["home"]).load_config()
        assert node["p2p"].split("/")[4] == str(config.p2p.listen_port)
        assert node["admin"] == f"http://127.0.0.1:{config.admin.port}/"
    with pytest.raises(ValueError, match="over 65535"):
        write_testnet(tmp_path / "b", validators=4, chain_id="x-1", base_port=65000, full_nodes=200)
