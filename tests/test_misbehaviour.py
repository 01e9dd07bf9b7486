"""The test-only equivocating validator (node.misbehaviour): where it is refused, and what it signs."""

from __future__ import annotations

import dataclasses

import pytest

from consensus.messages import Evidence, Vote, VoteKind
from node.config import ConfigError, ConsensusSection
from node.misbehaviour import double_signer
from state.crypto import sha256
from state.testing import dev_key, make_genesis
from state.validators import ValidatorSet

KEY = dev_key("misbehaving")
GENESIS = make_genesis(validators=[KEY])
TEST_GENESIS = dataclasses.replace(GENESIS, test_chain=True)


def test_off_unless_configured_and_refused_off_a_test_chain_or_with_a_remote_signer():
    assert double_signer(ConsensusSection(), GENESIS, signer_mode="local", key=KEY) is None
    on = ConsensusSection(double_sign_from_height=5)
    with pytest.raises(ConfigError, match="test-only.*not marked as a test chain"):
        double_signer(on, GENESIS, signer_mode="local", key=KEY)
    with pytest.raises(ConfigError, match="signer.mode"):
        double_signer(on, TEST_GENESIS, signer_mode="remote", key=KEY)
    assert double_signer(on, TEST_GENESIS, signer_mode="local", key=KEY) is not None


def test_it_doubles_only_its_own_commits_from_the_height_and_the_pair_is_evidence():
    signer = double_signer(ConsensusSection(double_sign_from_height=5), TEST_GENESIS, signer_mode="local", key=KEY)
    chain = TEST_GENESIS.chain_id
    vote = Vote.create(KEY, chain, VoteKind.COMMIT, 5, 1, bytes(sha256(b"block")))
    twin = signer.conflicting(vote)
    assert (twin.kind, twin.height, twin.view, twin.validator) == (vote.kind, 5, 1, vote.validator)
    assert twin.block_hash != vote.block_hash
    Evidence.of(vote, twin).verify(chain, ValidatorSet([(KEY.public_key, 10)]))
    assert signer.conflicting(Vote.create(KEY, chain, VoteKind.COMMIT, 4, 0, vote.block_hash)) is None
    assert signer.conflicting(Vote.create(KEY, chain, VoteKind.PREPARE, 6, 0, vote.block_hash)) is None
    other = dev_key("someone-else")
    assert signer.conflicting(Vote.create(other, chain, VoteKind.COMMIT, 6, 0, vote.block_hash)) is None
    assert signer.sent == 1


def test_a_test_clock_offset_is_read_from_the_environment_and_refused_off_a_test_chain():
    from node.misbehaviour import CLOCK_OFFSET_ENV, test_clock_offset

    assert test_clock_offset({}, GENESIS) == 0 and test_clock_offset({CLOCK_OFFSET_ENV: ""}, GENESIS) == 0
    assert test_clock_offset({CLOCK_OFFSET_ENV: "-20000"}, TEST_GENESIS) == -20000
    with pytest.raises(ConfigError, match="test-only.*not marked as a test chain"):
        test_clock_offset({CLOCK_OFFSET_ENV: "5000"}, GENESIS)
    with pytest.raises(ConfigError, match="not an integer"):
        test_clock_offset({CLOCK_OFFSET_ENV: "5s"}, TEST_GENESIS)


def test_the_node_clock_carries_the_offset():
    import time

    from node import blocks

    try:
        blocks.set_test_clock_offset(60_000)
        assert blocks.now_ms() - time.time_ns() // 1_000_000 >= 59_000
    finally:
        blocks.set_test_clock_offset(0)
    assert abs(blocks.now_ms() - time.time_ns() // 1_000_000) < 1_000


def test_the_connection_gate_is_test_only_and_its_file_is_read_whole_or_not_at_all(tmp_path):
    import json

    from node.misbehaviour import GATE_ENV, read_gate, test_gate_enabled

    assert not test_gate_enabled({}, TEST_GENESIS)
    assert test_gate_enabled({GATE_ENV: "1"}, TEST_GENESIS)
    with pytest.raises(ConfigError, match="test-only.*not marked as a test chain"):
        test_gate_enabled({GATE_ENV: "1"}, GENESIS)
    path = tmp_path / "gate.json"
    assert read_gate(path) is None  # absent: keep what the gate had
    path.write_text(json.dumps({"blocked": ["12D3KooWA", "12D3KooWB"]}))
    assert read_gate(path) == {"12D3KooWA", "12D3KooWB"}
    for bad in ('{"blocked": ["12D3KooWA", 7]}', '{"blocked": "x"}', '{"blocked": ["a"', "[]"):
        path.write_text(bad)
        assert read_gate(path) is None, bad
    path.write_text(json.dumps({"blocked": ["x" * 70_000]}))
    assert read_gate(path) is None  # over 64 KiB: refused before it is parsed
