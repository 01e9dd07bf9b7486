"""Consensus messages: canonical round trips, tampering, certificates."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import state.codec as codec
from consensus.errors import InvalidCertificate, InvalidMessage
from consensus.messages import (
    CommitCertificate,
    Evidence,
    MessageType,
    NewView,
    PreparedCertificate,
    Proposal,
    ViewChange,
    Vote,
    VoteKind,
    decode_message,
)
from state.validators import ValidatorSet
from state.crypto import PrivateKey, sha256

CHAIN = "qenex-test"
KEYS = [PrivateKey(bytes([i + 1]) * 32) for i in range(4)]
VSET = ValidatorSet([(k.public_key, 1) for k in KEYS])
BLOCK = b"a block"
HASH = bytes(sha256(BLOCK))

# -- strategies ------------------------------------------------------------------

heights = st.integers(min_value=0, max_value=2**63 - 1)
views = st.integers(min_value=0, max_value=2**32 - 1)
hashes = st.binary(min_size=32, max_size=32)
addresses = st.binary(min_size=20, max_size=20)
signatures = st.binary(min_size=64, max_size=64)
blocks = st.binary(min_size=1, max_size=64)


@st.composite
def votes(draw: Any, kind: VoteKind | None = None, height: int | None = None, view: int | None = None,
          block_hash: bytes | None = None) -> Vote:
    return Vote(
        kind=draw(st.sampled_from(VoteKind)) if kind is None else kind,
        height=draw(heights) if height is None else height,
        view=draw(views) if view is None else view,
        block_hash=draw(hashes) if block_hash is None else block_hash,
        validator=draw(addresses),
        signature=draw(signatures),
    )


@st.composite
def proposals(draw: Any, height: int | None = None, view: int | None = None) -> Proposal:
    return Proposal(draw(heights) if height is None else height, draw(views) if view is None else view,
                    draw(blocks), draw(hashes), draw(addresses), draw(signatures))


@st.composite
def prepared_certificates(draw: Any, height: int, max_view: int) -> PreparedCertificate:
    view = draw(st.integers(min_value=0, max_value=max_view))
    block_hash = draw(hashes)
    prepares = draw(st.lists(votes(VoteKind.PREPARE, height, view, block_hash), min_size=1, max_size=4,
                             unique_by=lambda v: v.validator))
    return PreparedCertificate(height, view, draw(blocks | st.just(b"")), block_hash,
                               tuple(sorted(prepares, key=lambda v: v.validator)))


@st.composite
def view_changes(draw: Any, height: int | None = None, new_view: int | None = None) -> ViewChange:
    height = draw(heights) if height is None else height
    new_view = draw(st.integers(min_value=1, max_value=2**32 - 1)) if new_view is None else new_view
    prepared = draw(st.none() | prepared_certificates(height, new_view - 1))
    return ViewChange(height, new_view, prepared, draw(addresses), draw(signatures))


@st.composite
def new_views(draw: Any) -> NewView:
    height = draw(heights)
    view = draw(st.integers(min_value=1, max_value=2**32 - 1))
    changes = draw(st.lists(view_changes(height, view), min_size=1, max_size=3, unique_by=lambda vc: vc.validator))
    return NewView(height, view, tuple(sorted(changes, key=lambda vc: vc.validator)),
                   draw(proposals(height, view)), draw(signatures))


@st.composite
def commit_certificates(draw: Any) -> CommitCertificate:
    pairs = draw(st.lists(st.tuples(addresses, signatures), min_size=1, max_size=5, unique_by=lambda p: p[0]))
    return CommitCertificate(draw(heights), draw(views), draw(hashes), tuple(sorted(pairs)))


@st.composite
def evidences(draw: Any) -> Evidence:
    a = draw(votes())
    other = draw(hashes.filter(lambda h: h != a.block_hash))
    b = Vote(a.kind, a.height, a.view, other, a.validator, draw(signatures))
    return Evidence.of(a, b)


messages = st.one_of(
    proposals(), votes(), view_changes(), new_views(), commit_certificates(), evidences(),
    st.builds(lambda c: c, prepared_certificates(7, 5)),
)


# -- round trips and tampering ------------------------------------------------------


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages)
def test_every_message_round_trips(message: Any) -> None:
    data = message.encode()
    assert decode_message(data) == message
    assert decode_message(data).encode() == data


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages, st.data())
def test_tampered_bytes_never_decode_to_the_same_message(message: Any, data: Any) -> None:
    encoded = bytearray(message.encode())
    index = data.draw(st.integers(min_value=0, max_value=len(encoded) - 1))
    encoded[index] ^= data.draw(st.integers(min_value=1, max_value=255))
    try:
        decoded = decode_message(bytes(encoded))
    except InvalidMessage:
        return
    assert decoded != message


@settings(max_examples=50, deadline=None)
@given(messages, st.binary(min_size=1, max_size=4))
def test_trailing_bytes_are_refused(message: Any, tail: bytes) -> None:
    with pytest.raises(InvalidMessage, match="trailing"):
        decode_message(message.encode() + tail)


def _vote(kind: VoteKind = VoteKind.PREPARE, key: PrivateKey = KEYS[0], view: int = 0, block_hash: bytes = HASH) -> Vote:
    return Vote.create(key, CHAIN, kind, 1, view, block_hash)


def _wire(message: Any) -> list[Any]:
    return message.to_wire()


def _replace(wire: list[Any], index: int, value: Any) -> list[Any]:
    out = list(wire)
    out[index] = value
    return out


def _prepared() -> PreparedCertificate:
    prepares = sorted((_vote(key=k) for k in KEYS[:3]), key=lambda v: v.validator)
    return PreparedCertificate(1, 0, BLOCK, HASH, tuple(prepares))


_VOTE = _wire(_vote())
_CERT = _wire(_prepared())
_VC = _wire(ViewChange.create(KEYS[0], CHAIN, 1, 1, _prepared()))
_COMMIT = _wire(CommitCertificate.from_votes(1, 0, HASH, [_vote(VoteKind.COMMIT, k) for k in KEYS[:3]]))


@pytest.mark.parametrize("wire, fragment", [
    ([], "not an array"),
    (_replace(_VOTE, 0, 99), "unknown message type"),
    (_replace(_VOTE, 1, 2), "unsupported version"),
    (_replace(_VOTE, 1, True), "unsupported version"),
    (_VOTE + [0], "fields"),
    (_replace(_VOTE, 2, 3), "vote kind"),
    (_replace(_VOTE, 3, -1), "height"),
    (_replace(_VOTE, 3, True), "height"),
    (_replace(_VOTE, 4, 2**32), "view"),
    (_replace(_VOTE, 5, b"\0" * 31), "block hash"),
    (_replace(_VOTE, 6, "not bytes"), "validator"),
    (_replace(_VOTE, 7, b"\0" * 65), "signature"),
    (_replace(_wire(Proposal.create(KEYS[0], CHAIN, 1, 0, BLOCK, HASH)), 4, b""), "block is not"),
    (_replace(_CERT, 6, []), "prepares"),
    (_replace(_CERT, 6, _CERT[6][::-1]), "ascending"),
    (_replace(_CERT, 6, [_CERT[6][0], _CERT[6][0]]), "ascending"),
    (_replace(_CERT, 6, [_wire(_vote(VoteKind.COMMIT))]), "something else"),
    (_replace(_CERT, 6, [[MessageType.PROPOSAL.value] + _VOTE[1:]]), "expected a VOTE"),
    (_replace(_VC, 3, 0), "new view"),
    (_replace(_VC, 2, 2), "certificate for"),
    (_replace(_COMMIT, 5, _COMMIT[5][::-1]), "ascending"),
    (_replace(_COMMIT, 5, [[b"\0" * 20]]), "[address, signature]"),
    (_wire(Evidence(_vote(), _vote())), "two different hashes"),
    (_wire(Evidence(_vote(), _vote(key=KEYS[1], block_hash=b"\xff" * 32))), "one validator"),
])
def test_malformed_messages_are_refused(wire: list[Any], fragment: str) -> None:
    with pytest.raises(InvalidMessage, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        decode_message(codec.encode(wire))


def test_non_canonical_encodings_are_refused() -> None:
    data = _vote().encode()
    # [2, 1, kind, height=1, ...]: fixarray, then positive fixints.
    assert data[:5] == bytes([0x98, 2, 1, 1, 1])
    wide_height = data[:4] + b"\xcc\x01" + data[5:]  # height as uint8: same value, not minimal
    with pytest.raises(InvalidMessage, match="non-canonical"):
        decode_message(wide_height)
    array16 = b"\xdc\x00\x08" + data[1:]  # array16 header for 8 items
    with pytest.raises(InvalidMessage, match="non-canonical"):
        decode_message(array16)
    with pytest.raises(InvalidMessage):
        decode_message(b"")
    with pytest.raises(InvalidMessage):
        decode_message(codec.encode({"type": 2}))


# -- signatures and certificates ------------------------------------------------------


def test_signatures_bind_chain_kind_and_content() -> None:
    vote = _vote()
    member = VSET.get(vote.validator)
    assert member is not None
    from state.crypto import verify
    assert verify(member.pubkey, vote.digest(CHAIN), vote.signature)
    assert not verify(member.pubkey, vote.digest("other-chain"), vote.signature)
    as_commit = Vote(VoteKind.COMMIT, vote.height, vote.view, vote.block_hash, vote.validator, vote.signature)
    assert not verify(member.pubkey, as_commit.digest(CHAIN), vote.signature)
    proposal = Proposal.create(KEYS[0], CHAIN, 1, 0, BLOCK, HASH)
    swapped = Proposal(1, 0, b"other bytes", HASH, proposal.proposer, proposal.signature)
    assert not verify(member.pubkey, swapped.digest(CHAIN), proposal.signature)
    # A vote signature is no proposal signature (different domains).
    assert vote.digest(CHAIN) != Proposal(1, 0, BLOCK, HASH, vote.validator, vote.signature).digest(CHAIN)


def _commit_cert(signers: list[PrivateKey], chain: str = CHAIN) -> CommitCertificate:
    return CommitCertificate.from_votes(1, 0, HASH, [Vote.create(k, chain, VoteKind.COMMIT, 1, 0, HASH) for k in signers])


def test_commit_certificate_verifies_with_a_quorum() -> None:
    cert = _commit_cert(KEYS[:3])
    cert.verify(CHAIN, VSET)
    assert CommitCertificate.decode(cert.encode()) == cert
    _commit_cert(KEYS).verify(CHAIN, VSET)


@pytest.mark.parametrize("cert, fragment", [
    (_commit_cert(KEYS[:2]), "needs 3 of 4"),
    (_commit_cert(KEYS[:3], chain="other-chain"), "bad signature"),
    (_commit_cert([*KEYS[:2], PrivateKey(b"\x55" * 32)]), "not a validator"),
    (CommitCertificate(1, 0, HASH, _commit_cert(KEYS[:2]).signatures * 2), "twice"),
    (CommitCertificate(1, 1, HASH, _commit_cert(KEYS[:3]).signatures), "bad signature"),  # another view
    (CommitCertificate(1, 0, b"\1" * 32, _commit_cert(KEYS[:3]).signatures), "bad signature"),
    (CommitCertificate.from_votes(1, 0, HASH, [_vote(VoteKind.PREPARE, k) for k in KEYS[:3]]), "bad signature"),
])
def test_commit_certificate_rejections(cert: CommitCertificate, fragment: str) -> None:
    with pytest.raises(InvalidCertificate, match=fragment):
        cert.verify(CHAIN, VSET)


def test_commit_certificate_decode_refuses_other_messages() -> None:
    with pytest.raises(InvalidMessage, match="expected a commit certificate"):
        CommitCertificate.decode(_vote().encode())


def test_prepared_certificate_verification() -> None:
    _prepared().verify(CHAIN, VSET)
    short = PreparedCertificate(1, 0, BLOCK, HASH, _prepared().prepares[:2])
    with pytest.raises(InvalidCertificate, match="needs 3"):
        short.verify(CHAIN, VSET)
    mixed = PreparedCertificate(1, 0, BLOCK, HASH, (*_prepared().prepares[:2], _vote(VoteKind.COMMIT, KEYS[3])))
    with pytest.raises(InvalidCertificate, match="holds a vote"):
        mixed.verify(CHAIN, VSET)


@example(kind=VoteKind.COMMIT, view=0)
@settings(max_examples=20, deadline=None)
@given(st.sampled_from(VoteKind), st.integers(min_value=0, max_value=5))
def test_evidence_verifies_only_real_equivocation(kind: VoteKind, view: int) -> None:
    a = Vote.create(KEYS[1], CHAIN, kind, 1, view, HASH)
    b = Vote.create(KEYS[1], CHAIN, kind, 1, view, b"\2" * 32)
    evidence = Evidence.of(b, a)
    evidence.verify(CHAIN, VSET)
    assert decode_message(evidence.encode()) == evidence
    forged = Evidence.of(a, Vote(kind, 1, view, b"\2" * 32, a.validator, bytes(64)))
    with pytest.raises(InvalidMessage, match="bad signature"):
        forged.verify(CHAIN, VSET)


def test_a_new_view_with_large_blocks_stays_within_the_message_limit() -> None:
    from consensus.messages import MAX_BLOCK_BYTES, MAX_MESSAGE_BYTES

    big = b"\x01" * (MAX_BLOCK_BYTES - 1024)
    big_hash = bytes(sha256(big))
    prepares = tuple(sorted((_vote(key=k, block_hash=big_hash) for k in KEYS), key=lambda v: v.validator))
    cert = PreparedCertificate(1, 0, big, big_hash, prepares)
    changes = tuple(sorted((ViewChange.create(k, CHAIN, 1, 1, cert) for k in KEYS), key=lambda vc: vc.validator))
    assert decode_message(changes[0].encode()) == changes[0]  # one view change: one block
    proposal = Proposal.create(KEYS[0], CHAIN, 1, 1, big, big_hash)
    stripped = NewView.create(KEYS[0], CHAIN, tuple(vc.without_block() for vc in changes), proposal)
    assert len(stripped.encode()) <= MAX_MESSAGE_BYTES
    assert decode_message(stripped.encode()) == stripped
    # Stripping keeps every view change's signature valid.
    from consensus.verify import check_view_change
    for vc in stripped.view_changes:
        check_view_change(CHAIN, VSET, vc)
    with pytest.raises(InvalidMessage, match="exceeds the limit"):
        decode_message(NewView.create(KEYS[0], CHAIN, changes, proposal).encode())
