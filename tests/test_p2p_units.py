"""Pure unit tests of p2p's building blocks: no loop, no socket, no sleep."""

from __future__ import annotations

import struct

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.crypto.serialization import deserialize_public_key
from libp2p.peer.id import ID

from p2p import InvalidConfig, InvalidPeerAddress, InvalidPeerId, P2PConfig, peer_id_from_seed
from p2p.errors import FrameTooLarge, TruncatedFrame
from p2p.framing import FrameDecoder, encode_frame
from p2p.host import parse_peer_address, security_options
from p2p.identity import key_pair_from_seed, parse_peer_id
from p2p.scoring import PeerScores

SEED = bytes(range(32))


# identity ------------------------------------------------------------------


def test_peer_id_is_deterministic_and_matches_the_nacl_key() -> None:
    assert peer_id_from_seed(SEED) == peer_id_from_seed(bytes(SEED))
    assert peer_id_from_seed(SEED) != peer_id_from_seed(b"\x01" * 32)
    # The libp2p key is the node's PyNaCl key: the public key embedded in the
    # peer id is the SigningKey's verify key.
    embedded = ID.from_base58(peer_id_from_seed(SEED)).extract_public_key()
    assert embedded is not None
    assert embedded.to_bytes() == bytes(nacl.signing.SigningKey(SEED).verify_key)
    assert key_pair_from_seed(SEED).public_key.to_bytes() == embedded.to_bytes()
    assert deserialize_public_key(embedded.serialize()).to_bytes() == embedded.to_bytes()


def test_peer_id_is_a_known_value() -> None:
    # Pinned so a library upgrade that changed the derivation (and with it
    # every testnet's bootstrap addresses) fails loudly.
    assert peer_id_from_seed(SEED) == "12D3KooWA4Xop1JaT3MHxwYMkCepYsv4iPVopMXwCz5iHYdBfeSB"


@pytest.mark.parametrize("seed", [b"", b"\x00" * 31, b"\x00" * 33, "x" * 32])
def test_seed_must_be_32_bytes(seed: object) -> None:
    with pytest.raises(InvalidConfig):
        peer_id_from_seed(seed)  # type: ignore[arg-type]
    with pytest.raises(InvalidConfig):
        P2PConfig(identity_seed=seed)  # type: ignore[arg-type]


def test_parse_peer_id() -> None:
    pid = peer_id_from_seed(SEED)
    assert parse_peer_id(pid).to_base58() == pid
    for bad in ["", "zzz", "0OIl", pid + "x"]:
        with pytest.raises(InvalidPeerId):
            parse_peer_id(bad)


def test_parse_bootstrap_address() -> None:
    pid = peer_id_from_seed(SEED)
    info = parse_peer_address(f"/ip4/127.0.0.1/tcp/26656/p2p/{pid}")
    assert info.peer_id.to_base58() == pid
    assert str(info.addrs[0]) == "/ip4/127.0.0.1/tcp/26656"
    for bad in ["/ip4/127.0.0.1/tcp/26656", "garbage", f"/p2p/{pid}"]:
        with pytest.raises(InvalidPeerAddress):
            parse_peer_address(bad)


def test_config_validation() -> None:
    P2PConfig(identity_seed=SEED)
    with pytest.raises(InvalidConfig):
        P2PConfig(identity_seed=SEED, max_gossip_bytes=1024 * 1024)  # libp2p drops ~1 MiB
    with pytest.raises(InvalidConfig):
        P2PConfig(identity_seed=SEED, listen_port=70000)
    with pytest.raises(InvalidConfig):
        P2PConfig(identity_seed=SEED, redial_interval_s=0)
    with pytest.raises(InvalidConfig):
        P2PConfig(identity_seed=SEED, topics=("",))


def test_only_noise_is_offered() -> None:
    options = security_options(key_pair_from_seed(SEED))
    assert list(options) == ["/noise"]


# framing -------------------------------------------------------------------


def test_frame_layout() -> None:
    assert encode_frame(b"abc", 10) == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"", 10) == b"\x00\x00\x00\x00"
    with pytest.raises(FrameTooLarge) as info:
        encode_frame(b"x" * 11, 10)
    assert (info.value.size, info.value.limit) == (11, 10)


def test_decoder_rejects_oversize_header_before_the_body() -> None:
    decoder = FrameDecoder(limit=100)
    with pytest.raises(FrameTooLarge) as info:
        decoder.feed(struct.pack(">I", 0xFFFFFFFF))
    assert info.value.size == 0xFFFFFFFF


def test_decoder_truncation() -> None:
    decoder = FrameDecoder(limit=100)
    assert decoder.feed(b"\x00\x00") == []
    assert decoder.pending
    with pytest.raises(TruncatedFrame):
        decoder.finish()
    decoder = FrameDecoder(limit=100)
    assert decoder.feed(b"\x00\x00\x00\x05ab") == []
    with pytest.raises(TruncatedFrame) as info:
        decoder.finish()
    assert (info.value.have, info.value.want) == (2, 5)
    FrameDecoder(limit=100).finish()  # clean end: nothing started


@settings(max_examples=200, deadline=None)
@given(
    payloads=st.lists(st.binary(max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=1, max_value=64), min_size=1, max_size=50),
)
def test_decoder_reassembles_any_split(payloads: list[bytes], cuts: list[int]) -> None:
    stream = b"".join(encode_frame(p, 300) for p in payloads)
    decoder = FrameDecoder(limit=300)
    out: list[bytes] = []
    pos, i = 0, 0
    while pos < len(stream):
        step = cuts[i % len(cuts)]
        out += decoder.feed(stream[pos : pos + step])
        pos += step
        i += 1
    assert out == payloads
    assert not decoder.pending
    decoder.finish()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_decoder_on_garbage_only_raises_its_own_errors(garbage: bytes) -> None:
    decoder = FrameDecoder(limit=64)
    try:
        decoder.feed(garbage)
        decoder.finish()
    except (FrameTooLarge, TruncatedFrame):
        pass


# scoring -------------------------------------------------------------------


def test_penalties_accumulate_to_a_ban_that_expires() -> None:
    scores = PeerScores(threshold=100, ban_seconds=60, decay_per_s=0)
    for _ in range(9):
        assert not scores.penalize("p", 10, now=0).banned
    verdict = scores.penalize("p", 10, now=0)
    assert verdict.banned and verdict.score == 100
    assert scores.is_banned("p", now=59)
    assert scores.banned(now=1) == ["p"]
    assert not scores.penalize("p", 50, now=1).banned  # already banned: no second ban
    assert scores.expire(now=59) == []
    assert scores.expire(now=60) == ["p"]
    assert not scores.is_banned("p", now=60)
    assert scores.score("p", now=60) == 0  # ban resets the score


def test_scores_decay() -> None:
    scores = PeerScores(threshold=100, ban_seconds=60, decay_per_s=1.0)
    scores.penalize("p", 50, now=0)
    assert scores.score("p", now=20) == 30
    assert not scores.penalize("p", 60, now=20).banned  # 30 + 60 < 100
    assert scores.penalize("p", 10, now=20).banned
    assert scores.score("q", now=0) == 0
    with pytest.raises(ValueError):
        scores.penalize("p", -1, now=0)
