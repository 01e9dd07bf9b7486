"""The driver signing through the remote signer: a dead signer means no vote, never a crash."""

from __future__ import annotations

import shutil
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest

from consensus import events as ce
from consensus.messages import Proposal, ViewChange, Vote, VoteKind
from node.remote_signer import FileBackend, RemoteSigner, SignerAddress, SignerServer, SignerService
from node.signguard import SignGuard
from state.crypto import verify
from state.keyfile import save_keyfile
from state.kv import MemoryKV
from state.testing import dev_key
from tests.test_node_driver import CHAIN, KEYS, VSET, Harness, _block1, key_of

NODE = dev_key("driver-node-identity")
IDENTITY = dev_key("driver-signer-identity")


@pytest.fixture
def sockdir():
    path = Path(tempfile.mkdtemp(prefix="qsigd", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def signer_process_twin(root: Path, key):
    """The signer's server in a thread (the process itself is tested in test_signer_process)."""
    key_file = root / "validator_key.json"
    if not key_file.exists():
        save_keyfile(key_file, key, None)
    state = root / "sign_state.json"
    guard = (SignGuard.load if state.exists() else SignGuard.create)(state, CHAIN, key.address)
    server = SignerServer(SignerService(FileBackend(key_file), guard), IDENTITY, [NODE.public_key],
                          SignerAddress.parse(f"unix:{root}/s.sock"))
    server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop()
        thread.join(5)


async def test_votes_go_through_the_remote_signer_and_stop_while_it_is_down(sockdir, tmp_path):
    primary = key_of(VSET.proposer_for(0).address)
    me = next(k for k in KEYS if k is not primary)
    others = [k for k in KEYS if k is not me]
    remote = RemoteSigner(SignerAddress.parse(f"unix:{sockdir}/s.sock"), IDENTITY.public_key, NODE,
                          me.public_key, CHAIN, timeout_s=2.0, retry_s=0.0)
    h = Harness(remote, MemoryKV(), tmp_path / "wal")
    raw, block_hash = _block1(primary)
    try:
        with signer_process_twin(sockdir, me) as server:
            h.driver.start()
            await h.settle()
            h.driver.inbox.put_nowait(ce.MessageReceived(Proposal.create(primary, CHAIN, 1, 0, raw, block_hash), "p"))
            await h.settle()
            assert h.votes(1) == [("PREPARE", block_hash)]
            ours = next(m for m in h.sent if isinstance(m, Vote))
            assert ours.validator == me.address and verify(me.public_key, ours.digest(CHAIN), ours.signature)
            assert server.service.signed == 1
        # the signer is gone: the others' votes still commit the block, we send nothing
        for k in others:
            h.driver.inbox.put_nowait(ce.MessageReceived(Vote.create(k, CHAIN, VoteKind.PREPARE, 1, 0, block_hash), "p"))
        await h.settle()
        assert h.votes(1) == [("PREPARE", block_hash)], "a COMMIT left without a signer"
        assert remote.failures >= 1
        for k in others:
            h.driver.inbox.put_nowait(ce.MessageReceived(Vote.create(k, CHAIN, VoteKind.COMMIT, 1, 0, block_hash), "p"))
        await h.settle()
        assert h.driver.app.height == 1, "the validator stopped following the chain"
        assert all(not t.done() for t in h.driver._tasks), "the driver crashed"
        # the signer is back (its record reloaded from disk): signing resumes
        with signer_process_twin(sockdir, me) as server:
            assert server.service.guard.state.height == 1
            h.driver.inbox.put_nowait(ce.TimeoutElapsed(2, 0))
            await h.settle()
            changes = [m for m in h.sent if isinstance(m, ViewChange) and m.height == 2]
            assert [(vc.new_view, vc.validator) for vc in changes] == [(1, me.address)]
            assert server.service.guard.state.height == 2
    finally:
        await h.driver.stop()
        h.driver.wal.close()
        remote.close()
