"""Review findings on gossip batches, the inbound cap, the start-up probe and
the sign guard: each test performs the reviewer's attack (or the honest case
that went wrong) against the fixed code."""

from __future__ import annotations

import asyncio
import collections
import errno
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest

from node.admission import Admission
from node.config import Home, MempoolSection, RiskSection
from node.errors import StartRefused
from node.genesis_tools import write_single_node_home
from node.homecheck import open_home_state
from node.inbound import (
    MAX_TX_BATCH_FRAME,
    PENALTY_GARBAGE,
    TxBatchValidator,
    tx_batch_frame_bytes,
    tx_batch_item_bytes,
)
from node.mempool import Mempool
from node.risk.hook import RiskHook
from node.runtime import TX_TOPIC, Node, take_tx_batch
from node.signguard import MAX_DIGESTS, MAX_VOTE_DIGESTS, Phase, SignGuard, SignRequest, SignState, advance, check
from p2p import RejectMessage
from state.app import Application
from state.codec import encode
from state.crypto import sha256
from state.errors import MalformedGenesis
from state.genesis import MAX_TX_BYTES_CEILING, Genesis, Params
from state.keyfile import load_keyfile
from state.kv import LevelDBKV, MemoryKV
from state.payloads import Batch, Transfer
from state.testing import TEST_CHAIN_ID, ONE_QNX, dev_key, make_genesis, signed, transfer
from state.transactions import SignedTransaction

SENDER = dev_key("hardening-sender")
RECIPIENTS = [dev_key(f"hardening-r{i}").address for i in range(13)]


def batch_tx(nonce: int, recipients: int = 13) -> bytes:
    return signed(SENDER, nonce, Batch(tuple(Transfer(a, "QNX", 1 + nonce) for a in RECIPIENTS[:recipients]))).encode()


# -- 1. an honest node's own gossip batch is accepted by every receiver -----------------------


def test_honest_batch_of_517_byte_txs_is_accepted_not_banned() -> None:
    """The reviewer's case: 490 valid txs of 517 bytes made a frame 7 bytes
    over the limit (3 bytes of framing each, uncounted), and every peer
    banned the sender.  The batcher now measures the encoded frame."""
    queue = collections.deque(batch_tx(n) for n in range(600))
    assert {len(raw) for raw in list(queue)[:10]} == {517}
    check = TxBatchValidator(TEST_CHAIN_ID, Params().max_tx_bytes, ban_points=100)
    sent = 0
    while queue:
        batch = take_tx_batch(queue, MempoolSection().gossip_batch_txs)
        frame = encode([1, batch])
        assert len(frame) == tx_batch_frame_bytes(len(batch), sum(map(tx_batch_item_bytes, batch)))
        assert len(frame) <= MAX_TX_BATCH_FRAME
        check(frame)  # raises RejectMessage on the old batcher's first batch
        sent += len(batch)
    assert sent == 600


@pytest.mark.parametrize("sizes", [[100] * 3000, [255, 256] * 600, [65_535, 65_536, 200] * 3, [16, 17000] * 40])
def test_the_frame_size_is_computed_exactly_across_msgpack_header_widths(sizes) -> None:
    queue = collections.deque(bytes(n) for n in sizes)
    while queue:
        batch = take_tx_batch(queue, 10_000)
        assert batch
        items = sum(map(tx_batch_item_bytes, batch))
        assert len(encode([1, batch])) == tx_batch_frame_bytes(len(batch), items) <= MAX_TX_BATCH_FRAME
        if queue:  # full: the next tx would not have fitted
            assert tx_batch_frame_bytes(len(batch) + 1, items + tx_batch_item_bytes(queue[0])) > MAX_TX_BATCH_FRAME


def test_an_oversize_batch_is_penalised_not_banned() -> None:
    """A peer of another version may fill batches differently: garbage points, not a ban."""
    raw = batch_tx(0)
    frame = encode([1, [raw] * (MAX_TX_BATCH_FRAME // len(raw) + 1)])
    assert len(frame) > MAX_TX_BATCH_FRAME
    with pytest.raises(RejectMessage, match="exceeds the frame limit") as info:
        TxBatchValidator(TEST_CHAIN_ID, Params().max_tx_bytes, ban_points=100)(frame)
    assert info.value.points == PENALTY_GARBAGE


def test_genesis_caps_max_tx_bytes_well_below_the_batch_frame() -> None:
    assert 2 * MAX_TX_BYTES_CEILING <= MAX_TX_BATCH_FRAME
    Params(max_tx_bytes=MAX_TX_BYTES_CEILING)
    with pytest.raises(MalformedGenesis, match="max_tx_bytes"):
        Params(max_tx_bytes=MAX_TX_BYTES_CEILING + 1)  # the old bound was half a 4 MiB block
    with pytest.raises(MalformedGenesis, match="max_tx_bytes"):
        Params(max_tx_bytes=MAX_TX_BATCH_FRAME)


# -- 3. bad signatures stop at the first honest node and cost the sender ---------------------


def forged(stx: SignedTransaction) -> bytes:
    return SignedTransaction(stx.tx, bytes(64)).encode()


def test_the_gossip_validator_refuses_a_bad_signature_with_a_penalty() -> None:
    good = transfer(SENDER, 0, RECIPIENTS[0], 1)
    bad = forged(transfer(SENDER, 1, RECIPIENTS[0], 2))
    check = TxBatchValidator(TEST_CHAIN_ID, Params().max_tx_bytes, ban_points=100)
    check(encode([1, [good.encode()]]))
    with pytest.raises(RejectMessage, match="tx 1 of the batch .* bad signature") as info:
        check(encode([1, [good.encode(), bad]]))  # the old validator let it through, to be relayed
    assert info.value.points == PENALTY_GARBAGE


class Net:
    def __init__(self) -> None:
        self.penalties: list[tuple[str, str, int]] = []

    def penalize(self, peer: str, reason: str, points: int = 10) -> None:
        self.penalties.append((peer, reason, points))

    def ban(self, peer: str, reason: str) -> None:
        raise AssertionError(f"banned {peer}: {reason}")


def gossip_node() -> tuple[Node, Net]:
    app = Application(MemoryKV(), make_genesis(funded=[SENDER], balance=1_000_000 * ONE_QNX))
    node = Node.__new__(Node)
    node.app, node.mempool, node.flagged = app, Mempool(app, MempoolSection()), {}
    node.risk = RiskHook(None, None, review=0.5, reject=0.9, fallback="admit")
    node.risk.attach(app)
    node._gossip_out, node.p2p = collections.deque(), Net()
    node.admission = Admission(app, node.mempool, node.risk, flagged=node.flagged, relay=node._gossip_out.append,
                               net=node.p2p)
    node.config = SimpleNamespace(risk=RiskSection())
    return node, node.p2p  # type: ignore[return-value]


def test_the_loop_penalises_forged_and_foreign_txs_but_not_gossip_races() -> None:
    node, net = gossip_node()
    ok = transfer(SENDER, 0, RECIPIENTS[0], 1)
    node._on_gossip(TX_TOPIC, "honest", encode([1, [ok.encode(), ok.encode(),  # already known
                                                   transfer(SENDER, 0, RECIPIENTS[1], 1).encode()]]))  # nonce taken
    assert ok.hash in node.mempool and net.penalties == []
    node._on_gossip(TX_TOPIC, "forger", encode([1, [forged(transfer(SENDER, 1, RECIPIENTS[0], 2))]]))
    foreign = transfer(SENDER, 1, RECIPIENTS[0], 2, chain_id="other-chain")
    node._on_gossip(TX_TOPIC, "foreign", encode([1, [foreign.encode()]]))
    assert [(p, n) for p, _, n in net.penalties] == [("forger", PENALTY_GARBAGE), ("foreign", PENALTY_GARBAGE)]
    assert "BadSignature" in net.penalties[0][1] or "signature" in net.penalties[0][1]
    assert len(node.mempool) == 1


# -- 4. the start-up probe never copies the store's tables ------------------------------------


@pytest.fixture
def big_home(tmp_path) -> Home:
    home = Home(tmp_path / "home")
    write_single_node_home(home, chain_id=TEST_CHAIN_ID, name="n0", p2p_port=0, rpc_port=0)
    kv = LevelDBKV(home.state_dir)
    for i in range(64):
        kv.write_batch({b"\xffpad" + i.to_bytes(4, "big"): os.urandom(16 * 1024)}, sync=False)
    kv._db.compact_range()
    kv.close()
    assert any(p.suffix in (".ldb", ".sst") for p in home.state_dir.iterdir())
    return home


def _open(home: Home):
    genesis = Genesis.from_json(home.genesis_file.read_text())
    return open_home_state(home, genesis, load_keyfile(home.node_key_file, None).address)


@pytest.fixture
def copies(monkeypatch) -> list[str]:
    copied: list[str] = []
    real = shutil.copy2

    def spy(src, dst, *args, **kwargs):
        copied.append(str(src))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copy2", spy)
    return copied


def test_state_on_another_filesystem_is_probed_beside_it_without_copying_tables(big_home, copies) -> None:
    elsewhere = Path("/dev/shm") / f"qenex-hardening-{os.getpid()}"
    shutil.rmtree(elsewhere, ignore_errors=True)
    shutil.move(str(big_home.state_dir), str(elsewhere))
    try:
        os.symlink(elsewhere, big_home.state_dir)
        assert os.stat(elsewhere).st_dev != os.stat(big_home.data_dir).st_dev
        _open(big_home).kv.close()
        assert not [c for c in copies if c.endswith((".ldb", ".sst"))], copies  # the old probe copied them all
        assert not [p for p in elsewhere.parent.iterdir() if p.name.startswith(".state-probe-")]
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_when_hard_links_fail_the_start_is_refused_in_one_line_and_nothing_is_copied(big_home, copies,
                                                                                     monkeypatch) -> None:
    def no_links(src, dst, *args, **kwargs):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    with pytest.raises(StartRefused, match="cannot hard-link table file") as err:
        _open(big_home)
    assert "\n" not in str(err.value)
    assert not [c for c in copies if c.endswith((".ldb", ".sst"))]


def test_a_full_disk_while_probing_is_a_one_line_refusal(big_home, monkeypatch) -> None:
    def full(src, dst, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copy2", full)
    with pytest.raises(StartRefused, match="No space left") as err:
        _open(big_home)
    assert "\n" not in str(err.value)
    assert not [p for p in big_home.data_dir.iterdir() if p.name.startswith(".state-probe-")]


# -- 5. the sign guard keeps our votes however many views a height takes ---------------------


def request(phase: Phase, view: int, tag: bytes = b"") -> SignRequest:
    block = bytes(sha256(b"block" + tag))
    return SignRequest(7, view, phase, block, bytes(sha256(b"%d/%d/" % (phase, view) + tag)))


def test_our_commit_of_the_decided_view_is_re_sendable_after_many_view_changes() -> None:
    commit = request(Phase.COMMIT, 0)
    state = SignState()
    for r in (request(Phase.PROPOSAL, 0), request(Phase.PREPARE, 0), commit):
        assert check(state, r) is None
        state = advance(state, r)
    for view in range(1, MAX_DIGESTS + 50):  # the old record kept the last 256 digests of any kind
        vc = request(Phase.VIEW_CHANGE, view, b"vc")
        assert check(state, vc) is None
        state = advance(state, vc)
    assert check(state, commit) is None, "an exact re-send of our decided COMMIT was refused"
    assert len(state.signed) <= MAX_DIGESTS


def test_the_vote_record_stays_bounded_and_survives_a_restart(tmp_path) -> None:
    state = SignState()
    for view in range(MAX_VOTE_DIGESTS // 2 + 10):
        for phase in (Phase.PREPARE, Phase.COMMIT):
            state = advance(state, request(phase, view))
    assert len(state.votes) == MAX_VOTE_DIGESTS
    me = dev_key("hardening-guard")
    guard = SignGuard(tmp_path / "sign_state.json", TEST_CHAIN_ID, me.address, state)
    guard._persist()
    assert SignGuard.load(guard.path, TEST_CHAIN_ID, me.address).state == state
