"""Homes of nodes that follow a chain (issue 10, "full nodes and joining"), without running them:
``qenexd init --genesis FILE --peer MULTIADDR`` and ``qenexd testnet init --full-nodes M``, their
refusals (one line, non-zero, nothing written), the testnet port layout for N + M nodes, and what
a full node given another chain's genesis (under the same chain id) does with its peers."""

from __future__ import annotations

import asyncio
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
from node.sync import STATUS_PROTOCOL, STATUS_REQUEST_V2, BlockSync, parse_status
from p2p import peer_id_from_public_key
from state.app import Application
from state.codec import encode
from state.crypto import address_from_text
from state.genesis import Genesis
from state.keyfile import load_keyfile
from state.kv import MemoryKV
from state.testing import dev_key, make_genesis

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
    (("--genesis", "{good}", "--peer", PEER.replace("/tcp/", "/udp/")), "must be exactly /ip4/HOST/tcp/PORT/p2p"),
    (("--genesis", "{good}", "--peer", PEER.replace("/ip4/127.0.0.1/", "/dns4/localhost/")), "must be exactly"),
    (("--genesis", "{good}", "--peer", PEER.replace("127.0.0.1", "0.0.0.0")), "a host that can be dialled"),
    (("--genesis", "{good}", "--peer", PEER.replace("/tcp/26656/", "/tcp/0/")), "a port in 1..65535"),
    (("--genesis", "{dupkeys}", "--peer", PEER), "repeats the key 'chain_id'"),
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
    (tmp_path / "dupkeys.json").write_text(chain.read_text().replace("{", '{"chain_id": "other-1", ', 1))
    files = {"missing": tmp_path / "nope.json", "dir": tmp_path / "dir", "garbage": tmp_path / "garbage.json",
             "incomplete": tmp_path / "incomplete.json", "binary": tmp_path / "binary.json", "good": chain,
             "dupkeys": tmp_path / "dupkeys.json"}
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


class _StatusPeers:
    """Two peers: "same" answers status with a real BlockSync on our genesis, "other" is five blocks
    ahead on another genesis under the same chain id (answering the version asked)."""

    def __init__(self, ours: Application, theirs: Genesis) -> None:
        self.same = BlockSync(ours, self, asyncio.Queue())
        self.theirs = theirs
        self.penalties: list[tuple[str, str, int]] = []
        self.block_requests: list[str] = []

    def connected_peers(self) -> list[str]:
        return ["other", "same"]

    async def request(self, peer: str, protocol: str, data: bytes, timeout: float = 5.0,
                      max_response_bytes: int | None = None) -> bytes:
        if protocol != STATUS_PROTOCOL:
            self.block_requests.append(peer)
            raise ConnectionError("no blocks here")
        if peer == "same":
            return await self.same.serve_status(peer, data)
        if data == STATUS_REQUEST_V2:
            return encode([2, self.theirs.chain_id, 5, bytes(32), self.theirs.hash])
        return encode([1, self.theirs.chain_id, 5, bytes(32)])

    def penalize(self, peer: str, reason: str, points: int = 10) -> None:
        self.penalties.append((peer, reason, points))

    def ban(self, peer: str, reason: str) -> None:
        self.penalties.append((peer, reason, 100))


async def test_a_peer_on_another_genesis_of_the_same_chain_id_is_named_not_synced_from(caplog) -> None:
    """A full node given the wrong genesis.json (same chain id, another chain) says so in one line
    and never asks such a peer for blocks (it used to fetch them and ban every honest peer for
    certificates its genesis set never signed).  A v1 status (an older peer) is still understood."""
    ours = make_genesis(validators=[dev_key("g-a")])
    theirs = make_genesis(validators=[dev_key("g-b")])
    assert ours.chain_id == theirs.chain_id and ours.hash != theirs.hash
    app = Application(MemoryKV(), ours)
    peers = _StatusPeers(Application(MemoryKV(), ours), theirs)
    with caplog.at_level("ERROR", logger="qenex.sync"):
        await BlockSync(app, peers, asyncio.Queue())._sync_round()
    assert [(p, n) for p, _, n in peers.penalties] == [("other", 100)]
    assert "another genesis" in peers.penalties[0][1] and peers.block_requests == []
    [line] = [r.getMessage() for r in caplog.records if r.name == "qenex.sync"]
    assert "is on another chain named" in line and "genesis.json is the wrong file" in line
    assert "0x" + ours.hash.hex()[:16] in line and "0x" + theirs.hash.hex()[:16] in line
    # Our own server: v2 when asked, v1 otherwise (what an older peer asks and understands).
    v2 = await peers.same.serve_status("x", STATUS_REQUEST_V2)
    assert parse_status(v2) == (ours.chain_id, 0, app.last_block_hash, ours.hash)
    v1 = await peers.same.serve_status("x", b"\x01")
    assert v1 == encode([1, ours.chain_id, 0, app.last_block_hash]) and parse_status(v1)[3] is None


def test_force_over_a_home_whose_store_was_moved_away_keeps_its_node_key(tmp_path: Path, chain: Path) -> None:
    import shutil

    home = Home(tmp_path / "full")
    assert run("init", "--home", str(home.root), "--genesis", str(chain), "--peer", PEER).exit_code == 0
    key_before = load_keyfile(home.node_key_file, None).public_key
    shutil.move(str(home.data_dir), str(tmp_path / "data-aside"))  # as the refusal above advises
    again = run("init", "--home", str(home.root), "--genesis", str(chain), "--peer", PEER, "--force", "--json")
    assert again.exit_code == 0, again.output
    assert load_keyfile(home.node_key_file, None).public_key == key_before
    assert json.loads(again.output)["pubkey"] == "0x" + key_before.hex()


class _LiarPeers(_StatusPeers):
    """"other" is on our genesis and claims height 1,000, then serves no block."""

    def __init__(self, ours: Application) -> None:
        super().__init__(ours, ours.genesis)

    async def request(self, peer: str, protocol: str, data: bytes, timeout: float = 5.0,
                      max_response_bytes: int | None = None) -> bytes:
        if protocol == STATUS_PROTOCOL and peer == "other":
            return encode([2, self.theirs.chain_id, 1000, bytes(32), self.theirs.hash])
        return await super().request(peer, protocol, data, timeout, max_response_bytes)


async def test_a_peer_that_claims_a_far_height_and_serves_nothing_stops_holding_us_behind() -> None:
    """caught_up lifts the allowlist's grace (refusals unpenalised): one liar claiming a far height
    must not keep it down, so its claim stops counting once it has wasted a round."""
    ours = make_genesis(validators=[dev_key("g-a")])
    app = Application(MemoryKV(), ours)
    sync = BlockSync(app, _LiarPeers(Application(MemoryKV(), ours)), asyncio.Queue())
    await sync._sync_round()
    assert not sync.caught_up  # an honest peer might really be that far ahead: the first round believes it
    await sync._sync_round()
    assert sync.caught_up  # it served nothing: its claim no longer counts
