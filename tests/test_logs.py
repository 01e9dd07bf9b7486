"""node.logs: [log] config, JSON and text lines with height/view/peer,
per-logger levels, rotation, and a running node whose log holds no secret."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.request
from dataclasses import replace

import pytest

from node.config import ConfigError, Home, LogSection, MetricsSection, NodeConfig, RiskSection
from node.genesis_tools import write_single_node_home
from node.logs import configure_logging, log_file, remove_handlers
from node.runtime import Node
from state.crypto import PrivateKey
from state.keyfile import load_keyfile, save_keyfile
from state.payloads import Transfer, TxKind
from state.transactions import Transaction
from tests.localnet import free_port_range


@pytest.fixture
def clean_logging():
    touched = ["qenex.p2p", "qenex.consensus"]
    yield
    remove_handlers()
    for name in touched:
        logging.getLogger(name).setLevel(logging.NOTSET)
    logging.getLogger().setLevel(logging.WARNING)


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- config ---------------------------------------------------------------------------

def test_log_section_parses_and_round_trips():
    config = NodeConfig.from_toml('[log]\nformat = "json"\nlevel = "debug"\nmax_bytes = 65536\nbackups = 2\n'
                                  '[log.levels]\n"qenex.p2p" = "warning"\n"qenex.consensus" = "DEBUG"\n')
    assert config.log.format == "json" and config.log.level == "debug"
    assert config.log.levels == (("qenex.consensus", "DEBUG"), ("qenex.p2p", "warning"))
    assert NodeConfig.from_toml(config.to_toml()) == config


@pytest.mark.parametrize("text, message", [
    ('[log]\nformat = "xml"\n', 'log.format must be "text" or "json", got \'xml\''),
    ('[log]\nlevel = "loud"\n', "log.level must be one of DEBUG"),
    ('log_level = "chatty"\n', "log_level must be one of"),
    ('[log.levels]\n"qenex.p2p" = "verbose"\n', "log.levels.'qenex.p2p' must be one of"),
    ('[log]\nlevels = ["qenex.p2p"]\n', "log.levels must be a table"),
    ('[log.levels]\n"qenex.p2p" = 10\n', "log.levels must be a table"),
    ("[log]\nmax_bytes = 100\n", "log.max_bytes must be at least 4096"),
    ("[log]\nbackups = 0\n", "log.backups must be in 1..100"),
    ('[log]\ncolour = "yes"\n', "unknown key(s) ['log.colour']"),
])
def test_bad_log_config_is_refused_specifically(text, message):
    with pytest.raises(ConfigError) as info:
        NodeConfig.from_toml(text)
    assert message in str(info.value)


# -- formatting ---------------------------------------------------------------------------

def test_json_lines_carry_node_height_view_peer_and_extras(tmp_path, clean_logging):
    config = replace(NodeConfig(name="n7"), log=LogSection(format="json", file="logs/q.log"))
    home = Home(tmp_path)
    context = configure_logging(config, home)
    context.context = lambda: (12, 3)
    logging.getLogger("qenex.consensus").info("prepared %s", "abc", extra={"peer": "12D3Koo", "votes": 3})
    logging.getLogger("qenex.node").warning("plain")
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        logging.getLogger("qenex.node").exception("failed")
    first, second, third = _lines(log_file(config, home))
    assert first["msg"] == "prepared abc" and first["logger"] == "qenex.consensus" and first["level"] == "INFO"
    assert (first["node"], first["height"], first["view"], first["peer"], first["votes"]) == ("n7", 12, 3, "12D3Koo", 3)
    assert first["ts"].endswith("Z")
    assert second["height"] == 12 and "peer" not in second
    assert "RuntimeError: boom" in third["exc"]


def test_text_lines_carry_the_context_too(tmp_path, clean_logging):
    config = replace(NodeConfig(name="n1"), log=LogSection(format="text", file="t.log"))
    context = configure_logging(config, Home(tmp_path))
    context.context = lambda: (5, 0)
    logging.getLogger("qenex.p2p").info("dialled", extra={"peer": "12D3Koo"})
    line = (tmp_path / "t.log").read_text().strip()
    assert " n1 INFO qenex.p2p: dialled [height=5 view=0 peer=12D3Koo]" in line


def test_per_logger_levels_and_a_second_configure_replaces_the_handlers(tmp_path, clean_logging):
    config = replace(NodeConfig(), log=LogSection(format="json", file="l.log", level="INFO",
                                                  levels=(("qenex.p2p", "DEBUG"), ("qenex.consensus", "ERROR"))))
    configure_logging(config, Home(tmp_path))
    configure_logging(config, Home(tmp_path))  # not two handlers writing every line twice
    logging.getLogger("qenex.p2p.engine").debug("p2p debug")
    logging.getLogger("qenex.consensus").warning("consensus warning")
    logging.getLogger("qenex.node").debug("node debug")
    logging.getLogger("qenex.node").info("node info")
    assert [line["msg"] for line in _lines(tmp_path / "l.log")] == ["p2p debug", "node info"]


def test_the_file_rotates_within_its_bounds(tmp_path, clean_logging):
    config = replace(NodeConfig(), log=LogSection(format="json", file="r.log", max_bytes=4096, backups=2))
    configure_logging(config, Home(tmp_path))
    for i in range(400):
        logging.getLogger("qenex.node").info("line %d %s", i, "x" * 60)
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["r.log", "r.log.1", "r.log.2"]
    assert all((tmp_path / f).stat().st_size <= 4096 + 200 for f in files)


# -- a running node -------------------------------------------------------------------------

async def test_a_running_node_logs_json_with_context_and_no_secret(tmp_path, clean_logging):
    base = free_port_range(4)
    home = Home(tmp_path / "home")
    info = write_single_node_home(home, chain_id="qenex-logs-1", name="solo", p2p_port=base, rpc_port=base + 1)
    token = "T0ken" + "s3cr3t" * 6
    config = replace(home.load_config(), log_level="DEBUG",
                     log=LogSection(format="json"),
                     metrics=MetricsSection(port=base + 2),
                     risk=RiskSection(admin_port=base + 3, admin_token=token))
    home.write_config(config)
    password = "correct horse battery staple 42"
    user_key = PrivateKey.generate()
    save_keyfile(home.keyring_dir / "user.json", user_key, password)
    funded = load_keyfile(info["funded_key"], None)

    context = configure_logging(config, home)
    node = Node(home, config)
    node.log_context = context
    try:
        await node.start()
        signer = load_keyfile(home.keyring_dir / "user.json", password)
        tx = Transaction("qenex-logs-1", TxKind.TRANSFER, funded.public_key, 0, node.app.params.min_fee(TxKind.TRANSFER),
                         Transfer(to=signer.address, token="QNX", amount=10**18)).sign(funded)
        node.submit_raw_tx(tx.encode())
        deadline = time.monotonic() + 30
        while node.app.height < 3:  # a single validator commits on its own timer; nothing else to await
            assert time.monotonic() < deadline, "no blocks within 30 s"
            await asyncio.sleep(0.05)
        body = await asyncio.to_thread(
            lambda: urllib.request.urlopen(f"http://127.0.0.1:{base + 2}/metrics", timeout=5).read().decode())
        assert 'qenex_mempool_admissions_total{source="rpc"} 1.0' in body
    finally:
        await node.stop()

    path = log_file(config, home)
    text = path.read_text()
    lines = _lines(path)
    committed = [line for line in lines if line["msg"].startswith("committed height=")]
    assert committed and all(line["node"] == "solo" and "height" in line and "view" in line for line in committed)
    assert any(line["logger"].startswith("qenex.p2p") for line in lines)
    for secret in (token, password, funded.seed.hex(), user_key.seed.hex(), node.node_key.seed.hex(),
                   funded.seed.hex().upper()):
        assert secret not in text
