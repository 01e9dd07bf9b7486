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
