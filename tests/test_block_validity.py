"""A block's last_commit is part of its validity (issue 9, acceptance 4).

The application checks ``last_commit`` against the parent's validator set
through the commit verifier consensus/ implements, so every path that
accepts a block refuses a forged or missing one with the specific error: a
proposal (``BlockExecutor.validate``, the verdict the engine gets), a
certified commit of bytes we never validated (``commit_certified``) and a
synced block whose own certificate is genuine (``apply_synced``).
"""

from __future__ import annotations

import dataclasses

import pytest

from consensus.messages import CommitCertificate, Vote, VoteKind
from consensus.verify import CertificateVerifier
from node.blocks import BlockExecutor
from state import keys
from state.app import Application
from state.crypto import PrivateKey, sha256
from state.errors import InvalidLastCommit, StateInvariantBroken
from state.kv import MemoryKV
from state.testing import TEST_CHAIN_ID as CHAIN
from state.testing import dev_key, make_genesis, transfer
from state.blocks import Block

KEYS = [dev_key(f"validity-{i}") for i in range(4)]
OUTSIDER = dev_key("validity-outsider")
ALICE = dev_key("validity-alice")
GENESIS = make_genesis(validators=KEYS, funded=[ALICE])


def certify(block: Block, signers: list[PrivateKey], view: int = 0) -> bytes:
    votes = [Vote.create(k, CHAIN, VoteKind.COMMIT, block.height, view, block.hash) for k in signers]
    return CommitCertificate.from_votes(block.height, view, block.hash, votes).encode()


def node() -> BlockExecutor:
    return BlockExecutor(Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier()))


def chain_of_one() -> tuple[BlockExecutor, Block, bytes]:
    """A node at height 1, its block and the block's genuine certificate."""
    blocks = node()
    block = blocks.build([transfer(ALICE, 0, KEYS[0].address, 5)], proposer=KEYS[0].address,
                         time_ms=GENESIS.genesis_time_ms + 1000)
    cert = certify(block, KEYS[:3])
    assert blocks.commit_certified(1, block.hash, block.encode(), cert) is not None
    return blocks, block, cert


def forgeries(parent: Block, genuine: bytes) -> dict[str, tuple[bytes, str]]:
    """last_commit values that must be refused, with the words of their error."""
    other = dataclasses.replace(parent.header, time_ms=parent.header.time_ms + 1)
    return {
        "missing": (b"", "last_commit (the previous block's commit certificate) is empty"),
        "garbage": (b"\x93\x01\x02\x03", "not a commit certificate"),
        "too few signers": (certify(parent, KEYS[:2]), "power"),
        "outsider signatures": (certify(parent, [KEYS[0], KEYS[1], OUTSIDER]), "not a validator"),
        "another block's certificate": (certify(Block(other, parent.txs, parent.last_commit), KEYS[:3]),
                                        "the certificate is for"),
    }


def block_with_last_commit(blocks: BlockExecutor, last_commit: bytes) -> Block:
    """Block 2 on ``blocks``' head carrying ``last_commit`` (built around the verifier, as a forger would)."""
    app = blocks.app
    block, _ = app.build_block([transfer(ALICE, 1, KEYS[1].address, 7)], proposer=KEYS[1].address,
                               time_ms=app.last_time_ms + 1000, last_commit=last_commit or b"x")
    if not last_commit:  # build_block refuses an empty one: splice it in as a forger would
        block = Block(dataclasses.replace(block.header, last_commit_hash=sha256(b"")), block.txs, b"")
    return block


@pytest.mark.parametrize("case", ["missing", "garbage", "too few signers", "outsider signatures",
                                  "another block's certificate"])
def test_a_proposal_with_a_forged_or_missing_last_commit_is_invalid(case: str) -> None:
    blocks, parent, genuine = chain_of_one()
    bad, words = forgeries(parent, genuine)[case]
    block = block_with_last_commit(blocks, bad)
    problem = blocks.validate(block.encode(), block.hash, 2)
    assert problem is not None and words in problem and "last_commit" in problem
    with pytest.raises(InvalidLastCommit):
        blocks.app.execute_block(block)
    # The genuine certificate passes the same path.
    good = block_with_last_commit(blocks, genuine)
    assert blocks.validate(good.encode(), good.hash, 2) is None


def test_a_certified_block_with_a_forged_last_commit_is_not_committed() -> None:
    """Certified by a quorum but invalid: more than 1/3 is Byzantine or our
    state is wrong; the block is refused with the specific error and the
    node stops rather than commit it."""
    blocks, parent, _ = chain_of_one()
    block = block_with_last_commit(blocks, certify(parent, KEYS[:2]))
    with pytest.raises(InvalidLastCommit, match="last_commit does not certify the parent block"):
        blocks.commit_certified(2, block.hash, block.encode(), certify(block, KEYS[:3]))
    assert blocks.app.height == 1


def test_a_synced_block_with_a_genuine_certificate_but_a_forged_last_commit_stops_the_node() -> None:
    """Certified by a quorum yet invalid, as on the commit path: the peer that
    served the certified chain is not at fault (no penalty for it, and no
    walking through every honest peer); the node refuses the block and stops."""
    blocks, parent, genuine = chain_of_one()
    for name, (bad, words) in forgeries(parent, genuine).items():
        block = block_with_last_commit(blocks, bad)
        with pytest.raises(InvalidLastCommit) as refused:
            blocks.apply_synced(block, certify(block, KEYS[:3]))
        assert words in str(refused.value) and "last_commit" in str(refused.value), name
        assert blocks.app.height == 1
    good = block_with_last_commit(blocks, genuine)
    assert blocks.apply_synced(good, certify(good, KEYS[1:])) is None
    assert blocks.app.height == 2


def test_an_unreadable_validator_set_is_our_fault_not_the_proposals() -> None:
    blocks, parent, genuine = chain_of_one()
    good = block_with_last_commit(blocks, genuine)
    blocks.app._vsets.clear()
    blocks.app._kv.write_batch({keys.validator_set_key(1): b"\x91\x07"})  # damaged under a running node
    with pytest.raises(StateInvariantBroken, match="validator set of height 1 is unreadable"):
        blocks.validate(good.encode(), good.hash, 2)
    with pytest.raises(StateInvariantBroken, match="validator set of height 1"):
        Application(blocks.app._kv, GENESIS, commit_verifier=CertificateVerifier())  # and found at open


def test_a_synced_block_whose_own_certificate_is_forged_is_a_ban() -> None:
    blocks, parent, genuine = chain_of_one()
    block = block_with_last_commit(blocks, genuine)
    refused = blocks.apply_synced(block, certify(block, [KEYS[0], OUTSIDER, dev_key("x")]))
    assert refused is not None and refused.ban and "certificate does not verify" in refused.reason
    assert blocks.app.height == 1


def test_an_application_without_a_verifier_fails_closed() -> None:
    blocks, parent, genuine = chain_of_one()
    bare = Application(blocks.app._kv, GENESIS)  # same store, no verifier
    block = block_with_last_commit(blocks, genuine)
    with pytest.raises(StateInvariantBroken, match="without a commit verifier"):
        bare.execute_block(block)
