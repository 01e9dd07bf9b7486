"""Node config: TOML round trip and specific errors for bad files."""

import pytest

from node.config import NodeConfig, P2PSection
from node.errors import ConfigError


def test_round_trip():
    config = NodeConfig(name="n1", p2p=P2PSection(listen_port=1234, bootstrap=("/ip4/127.0.0.1/tcp/1/p2p/x",)))
    assert NodeConfig.from_toml(config.to_toml()) == config


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("name = [", "invalid TOML"),
        ("colour = 'red'", "unknown key"),
        ("[rpc]\nlisten_port = 'x'", "rpc.listen_port must be int"),
        ("[rpc]\nlisten_port = -1", "must not be negative"),
        ("[p2p]\nbootstrap = [1]", "list of strings"),
        ("[mempool]\nfoo = 1", "mempool.foo"),
        ("rpc = 3", "must be a table"),
    ],
)
def test_bad_config_is_a_specific_error(text, fragment):
    with pytest.raises(ConfigError, match=fragment):
        NodeConfig.from_toml(text)


@pytest.mark.parametrize("token", ["a", "x" * 31, "has spaces " * 4])
def test_a_weak_admin_token_is_refused_at_load(token):
    with pytest.raises(ConfigError, match="admin_token must be at least 32"):
        NodeConfig.from_toml(f'[risk]\nadmin_token = "{token}"')
    assert NodeConfig.from_toml(f'[risk]\nadmin_token = "{"k" * 32}"').risk.admin_token == "k" * 32


def test_node_toml_is_written_0600_and_a_readable_one_is_flagged(tmp_path):
    import os
    import stat
    from dataclasses import replace

    from node.config import Home, RiskSection

    home = Home(tmp_path)
    config = replace(NodeConfig(), risk=RiskSection(admin_token="t" * 64))
    home.config_dir.mkdir()
    home.config_file.write_text("")
    os.chmod(home.config_file, 0o644)  # a stale world-readable file is replaced, not reused
    home.write_config(config)
    assert stat.S_IMODE(home.config_file.stat().st_mode) == 0o600
    assert home.load_config() == config and home.config_warnings(config) == []
    os.chmod(home.config_file, 0o644)
    assert "readable by group/others" in home.config_warnings(config)[0]
