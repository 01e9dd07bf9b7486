"""Block sync against hostile peers: a liar cannot stall a lagging node, a
response is decoded once (in the worker), serving costs no decoding and is
limited per peer, and the largest legal block can be synced."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

import node.sync as sync_mod
from consensus.verify import CertificateVerifier
from consensus.messages import CommitCertificate, Vote, VoteKind
from state.validators import MAX_VALIDATORS
from node import runtime
from node.inbound import over_limit
from node.sync import (
    MAX_RESPONSE_BYTES,
    MAX_SERVING,
    BadSyncResponse,
    BlockSync,
    SyncBusy,
    check_blocks,
)
from state.app import Application
from state.blocks import Block, BlockHeader
from state.codec import decode, encode
from state.genesis import MAX_BLOCK_BYTES_LIMIT
from state.kv import MemoryKV
from state.payloads import Transfer
from state.testing import TEST_CHAIN_ID as CHAIN
from state.testing import Chain, dev_key, make_genesis
from state.transactions import SignedTransaction
from tests.test_node_driver import GENESIS, KEYS, VSET, Harness, key_of

pytestmark = pytest.mark.timeout(60)


def certify(height: int, block_hash: bytes, keys=KEYS[:3]) -> CommitCertificate:
    return CommitCertificate.from_votes(
        height, 0, block_hash, [Vote.create(k, CHAIN, VoteKind.COMMIT, height, 0, block_hash) for k in keys])


def certified_chain(n: int, offset_ms: int = 0) -> Application:
    """An app holding blocks 1..n, each with a certificate from 3 of the 4 validators; block times
    are shifted by ``offset_ms`` (two chains made in the same millisecond are otherwise the same)."""
    app = Application(MemoryKV(), GENESIS, commit_verifier=CertificateVerifier())
    vset, last_commit, now = VSET, b"", int(time.time() * 1000) - 60_000 + offset_ms
    for height in range(1, n + 1):
        proposer = key_of(vset.proposer_for(0).address)
        block, result = app.build_block([], proposer=proposer.address, time_ms=now + height * 1000,
                                        last_commit=last_commit)
        last_commit = certify(height, block.hash).encode()
        app.commit_block(block, result, last_commit)
        vset = vset.increment(1)
    return app


class Peers:
    """A fake network: "honest" serves from a real store; "liar" claims a huge
    height and answers whatever ``lie`` returns for a blocks request."""

    def __init__(self, serving: Application, lie, honest_count: int | None = None) -> None:
        self.requests: list[str] = []
        self.penalties: list[tuple[str, str]] = []
        self.bans: list[tuple[str, str]] = []
        self.serving = serving
        self.server = BlockSync(serving, self, asyncio.Queue())
        self.lie = lie
        self.honest_count = honest_count

    def connected_peers(self) -> list[str]:
        return ["honest", "liar"]

    async def request(self, peer, protocol, data, timeout=5.0, max_response_bytes=None) -> bytes:
        if protocol.endswith("status/1"):
            return encode([1, CHAIN, 10**9 if peer == "liar" else self.serving.height, bytes(32)])
        self.requests.append(peer)
        if peer == "liar":
            return self.lie(decode(data))
        if self.honest_count is not None:  # a peer that serves fewer blocks per answer
            _, start, _ = decode(data)
            data = encode([1, start, self.honest_count])
        return await self.server.serve_blocks(peer, data)

    def penalize(self, peer, reason, points=10) -> None:
        self.penalties.append((peer, reason))

    def ban(self, peer, reason) -> None:
        self.bans.append((peer, reason))


async def lagging_node(tmp_path: Path, peers: Peers) -> tuple[Harness, BlockSync]:
    me = next(k for k in KEYS if k is not key_of(VSET.proposer_for(0).address))
    h = Harness(me, MemoryKV(), tmp_path / "wal")
    h.driver.hooks.ban = lambda peer, reason: peers.bans.append((peer, "driver: " + reason))
    h.driver.start()
    return h, BlockSync(h.driver.app, peers, h.driver.inbox)


async def stop(h: Harness) -> None:
    await h.driver.stop()
    h.driver.wal.close()


# -- finding 1: one lying peer must not stall sync --------------------------------


async def test_a_liar_serving_a_block_of_another_height_is_penalised_and_the_next_peer_serves(tmp_path):
    serving = certified_chain(1)
    other = certified_chain(2)  # a decodable block 2 and its genuine-looking certificate: not what we asked for
    junk = [other.get_block(2).encode(), other.get_commit_cert(2)]
    peers = Peers(serving, lambda req: encode([1, [junk]]))
    h, sync = await lagging_node(tmp_path, peers)
    try:
        await sync._sync_round()  # one round
        assert h.driver.app.height == 1
        assert peers.requests == ["liar", "honest"]
        assert [p for p, _ in peers.penalties] == ["liar"] and "not 1" in peers.penalties[0][1]
    finally:
        await stop(h)


async def test_a_peer_whose_answer_made_no_progress_is_asked_after_the_others(tmp_path):
    serving = certified_chain(3)
    peers = Peers(serving, lambda req: encode([1, []]), honest_count=1)
    h, sync = await lagging_node(tmp_path, peers)
    try:
        for _ in range(3):
            await sync._sync_round()
        assert h.driver.app.height == 3
        # Its claimed height no longer puts the liar first once it wasted a round.
        assert peers.requests == ["liar", "honest", "honest", "honest"]
    finally:
        await stop(h)


async def test_a_certificate_at_the_right_height_that_does_not_verify_bans(tmp_path):
    serving = certified_chain(1)
    block = serving.get_block(1)
    forged = certify(1, block.hash, keys=[dev_key(f"outsider-{i}") for i in range(3)])
    peers = Peers(serving, lambda req: encode([1, [[block.encode(), forged.encode()]]]))
    h, sync = await lagging_node(tmp_path, peers)
    try:
        await sync._sync_round()
        assert [p for p, _ in peers.bans] == ["liar"] and "does not verify" in peers.bans[0][1]
        assert h.driver.app.height == 1 and peers.requests == ["liar", "honest"]  # and honest served in the same round
    finally:
        await stop(h)


def test_a_response_must_hold_consecutive_blocks_from_the_start_with_their_own_certificates():
    chain = certified_chain(3)
    pairs = [[chain.get_block(h).encode(), chain.get_commit_cert(h)] for h in (1, 2, 3)]
    assert [b.height for b, _, _ in check_blocks(encode([1, pairs]), 1)] == [1, 2, 3]
    other = certified_chain(2, offset_ms=7)  # same heights, other blocks (other times)
    for bad, start, why in (
        (pairs[1:], 1, "is block 2, not 1"),
        ([pairs[0], pairs[2]], 1, "is block 3, not 2"),
        ([pairs[0], [other.get_block(2).encode(), other.get_commit_cert(2)]], 1, "does not follow"),
        ([[pairs[0][0], pairs[1][1]]], 1, "signs block 2"),
        ([[pairs[1][0], other.get_commit_cert(2)]], 2, "not block 2"),
    ):
        with pytest.raises(BadSyncResponse, match=why):
            check_blocks(encode([1, bad]), start)


# -- finding 2: a response is decoded once, in the worker -------------------------


async def test_a_synced_block_is_decoded_once_and_not_on_the_loop(tmp_path, monkeypatch):
    serving = certified_chain(2)
    peers = Peers(serving, lambda req: encode([1, []]))
    h, sync = await lagging_node(tmp_path, peers)
    loop_thread = threading.get_ident()
    decodes: list[bool] = []  # one entry per block decode: True if on the event loop's thread
    real = Block.decode.__func__

    def counting(cls, data, *, max_bytes=sync_mod.MAX_SYNC_BLOCK_BYTES):
        decodes.append(threading.get_ident() == loop_thread)
        return real(cls, data, max_bytes=max_bytes)

    monkeypatch.setattr(Block, "decode", classmethod(counting))
    try:
        await sync._sync_round()
        assert h.driver.app.height == 2
        assert decodes == [False, False]
    finally:
        await stop(h)


# -- finding 3: serving reads stored bytes, off the loop, one request per peer ------


def full_blocks_app() -> tuple[Application, list[int]]:
    validator = dev_key("validator-0")
    senders = [dev_key(f"s{i}") for i in range(20)]
    app = Application(MemoryKV(), make_genesis(validators=[validator], funded=senders), commit_verifier=CertificateVerifier())
    chain = Chain(app, validator)
    sizes = [0, 1, 15, 16, 20]  # around msgpack's fixarray / array16 boundary
    for n in sizes:
        chain.block([chain.tx(senders[i], Transfer(validator.address, "QNX", 1)) for i in range(n)])
    return app, sizes


async def test_serving_blocks_decodes_no_transaction_and_sends_the_canonical_bytes(monkeypatch):
    app, sizes = full_blocks_app()
    expected = encode([1, [[app.get_block(h).encode(), app.get_commit_cert(h)] for h in range(1, len(sizes) + 1)]])

    def refuse(*args, **kwargs):
        raise AssertionError("serve_blocks decoded a stored transaction")

    monkeypatch.setattr(SignedTransaction, "decode", classmethod(refuse))
    monkeypatch.setattr(SignedTransaction, "from_wire", classmethod(refuse))
    server = BlockSync(app, None, asyncio.Queue())  # type: ignore[arg-type]  # serving needs no network
    served = await server.serve_blocks("anyone", encode([1, 1, 64]))
    assert served == expected
    assert [app.get_block_bytes(h) for h in range(1, len(sizes) + 1)] == [decode(expected)[1][i][0]
                                                                          for i in range(len(sizes))]
    assert app.get_block_bytes(0) is None and app.get_block_bytes(len(sizes) + 1) is None


async def test_one_blocks_request_per_peer_at_a_time_and_a_small_total():
    app = certified_chain(1)
    sync = BlockSync(app, None, asyncio.Queue())  # type: ignore[arg-type]
    release = threading.Event()
    real = sync._blocks_response
    sync._blocks_response = lambda start, end: (release.wait(10), real(start, end))[1]  # type: ignore[method-assign]
    req = encode([1, 1, 64])
    first = [asyncio.create_task(sync.serve_blocks(f"p{i}", req)) for i in range(MAX_SERVING)]
    await asyncio.sleep(0.05)  # all of them are now in their worker thread
    try:
        with pytest.raises(SyncBusy):
            await sync.serve_blocks("p0", req)  # the same peer again
        with pytest.raises(SyncBusy):
            await sync.serve_blocks("another", req)  # over the total
    finally:
        release.set()
    answers = await asyncio.gather(*first)
    assert all(len(decode(a)[1]) == 1 for a in answers)
    assert len(decode(await sync.serve_blocks("p0", req))[1]) == 1  # and served again once done


# -- finding 4: the largest legal block can be synced ------------------------------


def test_the_largest_block_genesis_allows_fits_a_response_and_a_frame():
    cert_max = 128 + MAX_VALIDATORS * 96
    assert MAX_RESPONSE_BYTES >= MAX_BLOCK_BYTES_LIMIT + cert_max
    assert runtime.MAX_FRAME_BYTES >= MAX_RESPONSE_BYTES
    header = BlockHeader(CHAIN, 5, 0, bytes(32), bytes(32), bytes(32), bytes(32), bytes(20), bytes(32))
    size = len(Block(header, (), b"").encode())
    block = Block(header, (), b"\x00" * (MAX_BLOCK_BYTES_LIMIT - size - 8))
    assert 6.5 * 2**20 < block.size <= MAX_BLOCK_BYTES_LIMIT
    cert = certify(5, block.hash)
    response = encode([1, [[block.encode(), cert.encode()]]])
    assert len(response) <= MAX_RESPONSE_BYTES
    [(decoded, decoded_cert, raw_cert)] = check_blocks(response, 5)
    assert decoded == block and decoded_cert == cert and raw_cert == cert.encode()
    # Over the chain's own limit is over a decode limit: such a server is banned.
    with pytest.raises(Exception) as info:
        check_blocks(response, 5, max_block_bytes=4 * 1024 * 1024)
    assert over_limit(info.value)
