"""Signers: slashing protection checked before signing, the remote signer and its connection."""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import tempfile
import threading
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import CliRunner

from cli.main import cli
from consensus.messages import (
    PreparedCertificate,
    ViewChange,
    VoteKind,
    new_view_digest,
    proposal_digest,
    proposal_digest_of,
    vote_digest,
)
from consensus.signing import Phase, SignRequest
from node.remote_signer import (
    MAX_CONNECTIONS,
    MAX_PREAUTH,
    MAX_REQUEST_BYTES,
    MAX_VIEW_CHANGE_HASHES,
    PROTOCOL_VERSION,
    FileBackend,
    RemoteSigner,
    SignerAddress,
    SignerError,
    SignerHome,
    SignerServer,
    SignerService,
)
from node.secret_conn import SecretConnection, SecretConnectionError
from node.signer import LocalSigner
from node.signguard import SignGuard, SignGuardError, export_interchange, import_interchange
from state import transactions as T
from state.codec import encode
from state.crypto import DOMAIN_PROPOSAL, DOMAIN_TX, DOMAIN_VOTE, domain_digest, sha256, verify
from state.keyfile import save_keyfile
from state.testing import TEST_CHAIN_ID as CHAIN
from state.payloads import Transfer, TxKind
from state.testing import dev_key

VALIDATOR = dev_key("signer-validator")
NODE = dev_key("signer-node")
STRANGER = dev_key("signer-stranger")
IDENTITY = dev_key("signer-identity")
X, Y = b"\x0a" * 32, b"\x0b" * 32


def prepare(block_hash: bytes, height: int = 5, view: int = 0) -> SignRequest:
    return SignRequest(height, view, Phase.PREPARE, block_hash,
                       vote_digest(CHAIN, VoteKind.PREPARE, height, view, block_hash))


@pytest.fixture
def sockdir():
    # AF_UNIX paths are limited to ~107 bytes: pytest's tmp_path can be longer.
    path = Path(tempfile.mkdtemp(prefix="qsig", dir="/tmp"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@contextmanager
def running_signer(root: Path, known=(NODE.public_key,), key=VALIDATOR, identity=IDENTITY):
    key_file = root / "validator_key.json"
    if not key_file.exists():
        save_keyfile(key_file, key, None)
    state = root / "sign_state.json"
    guard = (SignGuard.load if state.exists() else SignGuard.create)(state, CHAIN, key.address)
    server = SignerServer(SignerService(FileBackend(key_file), guard), identity, list(known),
                          SignerAddress.parse(f"unix:{root}/s.sock"))
    where = server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, where
    finally:
        server.stop()
        thread.join(5)
        assert not thread.is_alive()


def client(where: str, identity=NODE, signer_key=IDENTITY.public_key) -> RemoteSigner:
    return RemoteSigner(SignerAddress.parse(where), signer_key, identity, VALIDATOR.public_key, CHAIN,
                        timeout_s=2.0, retry_s=0.0)


# -- local ---------------------------------------------------------------------------


def test_local_signer_refuses_equivocation_before_signing_and_allows_identical_re_signs(tmp_path):
    guard = SignGuard.create(tmp_path / "s.json", CHAIN, VALIDATOR.address)
    signer = LocalSigner(VALIDATOR, guard)
    first = signer.sign_request(prepare(X))
    assert first is not None and verify(VALIDATOR.public_key, prepare(X).digest, first)
    before = (tmp_path / "s.json").read_bytes()
    assert signer.sign_request(prepare(Y)) is None  # same slot, another block
    assert signer.refusals == 1
    assert (tmp_path / "s.json").read_bytes() == before  # a refusal changes nothing
    assert signer.sign_request(prepare(X)) == first  # deterministic re-sign (a WAL replay)
    # the record survives a restart: a new signer over the reloaded record refuses too
    again = LocalSigner(VALIDATOR, SignGuard.load(tmp_path / "s.json", CHAIN, VALIDATOR.address))
    assert again.sign_request(prepare(Y)) is None
    assert again.sign_request(prepare(X, height=4)) is None  # backwards
    assert again.sign_request(prepare(X)) == first


def test_local_signer_needs_the_record_of_its_own_key(tmp_path):
    guard = SignGuard.create(tmp_path / "s.json", CHAIN, STRANGER.address)
    with pytest.raises(SignGuardError):
        LocalSigner(VALIDATOR, guard)


# -- interchange ------------------------------------------------------------------------


def test_interchange_round_trip_moves_protection_with_the_key(tmp_path):
    old = SignGuard.create(tmp_path / "old.json", CHAIN, VALIDATOR.address)
    LocalSigner(VALIDATOR, old).sign_request(prepare(X))
    doc = json.loads(json.dumps(export_interchange(old)))
    new = SignGuard.create(tmp_path / "new.json", CHAIN, VALIDATOR.address)
    import_interchange(new, doc)
    assert new.state == old.state
    moved = LocalSigner(VALIDATOR, SignGuard.load(tmp_path / "new.json", CHAIN, VALIDATOR.address))
    assert moved.sign_request(prepare(Y)) is None
    assert moved.sign_request(prepare(X)) is not None  # the exact re-send still passes


def test_an_import_never_lowers_the_record_and_bad_documents_change_nothing(tmp_path):
    backup = SignGuard.create(tmp_path / "backup.json", CHAIN, VALIDATOR.address)
    LocalSigner(VALIDATOR, backup).sign_request(prepare(X, height=3))
    old_doc = export_interchange(backup)
    live = SignGuard.create(tmp_path / "live.json", CHAIN, VALIDATOR.address)
    LocalSigner(VALIDATOR, live).sign_request(prepare(X, height=7))
    import_interchange(live, old_doc)  # a restore from an older backup
    assert live.state.height == 7
    before = (tmp_path / "live.json").read_bytes()
    for bad in ({"format": "x"}, {**old_doc, "chain_id": "other"},
                {**old_doc, "validator": "qnx1wrong"}, {**old_doc, "record": {"height": -1}},
                {**old_doc, "version": 9}):
        with pytest.raises(SignGuardError):
            import_interchange(live, bad)
    assert (tmp_path / "live.json").read_bytes() == before


def test_an_import_that_proves_a_double_sign_is_refused(tmp_path):
    a = SignGuard.create(tmp_path / "a.json", CHAIN, VALIDATOR.address)
    b = SignGuard.create(tmp_path / "b.json", CHAIN, VALIDATOR.address)
    LocalSigner(VALIDATOR, a).sign_request(prepare(X))
    LocalSigner(VALIDATOR, b).sign_request(prepare(Y))
    with pytest.raises(SignGuardError, match="signed both"):
        import_interchange(a, export_interchange(b))


# -- remote --------------------------------------------------------------------------------


def test_remote_signer_signs_refuses_equivocation_and_re_signs(sockdir):
    with running_signer(sockdir) as (server, where):
        remote = client(where)
        assert remote.address == VALIDATOR.address
        first = remote.sign_request(prepare(X))
        assert first is not None and verify(VALIDATOR.public_key, prepare(X).digest, first)
        assert remote.sign_request(prepare(Y)) is None
        assert remote.refusals == 1 and server.service.refusals == 1
        assert remote.sign_request(prepare(X)) == first
        commit = SignRequest(5, 0, Phase.COMMIT, X, vote_digest(CHAIN, VoteKind.COMMIT, 5, 0, X))
        assert remote.sign_request(commit) is not None
        remote.close()
    # the signer's record survives its restart
    with running_signer(sockdir) as (server, where):
        remote = client(where)
        assert remote.sign_request(prepare(Y, height=5, view=0)) is None
        assert remote.sign_request(prepare(X)) == first
        remote.close()


def test_the_signer_checks_a_vote_digest_against_the_described_slot(sockdir):
    with running_signer(sockdir) as (server, where):
        remote = client(where)
        lie = SignRequest(9, 0, Phase.PREPARE, Y, prepare(X, height=5).digest)
        assert remote.sign_request(lie) is None
        assert server.service.guard.state.height == 0  # nothing recorded
        remote.close()


def _raw_node_conn(where: str) -> SecretConnection:
    """An authenticated node connection that bypasses RemoteSigner's own checks (a hostile node key)."""
    return SecretConnection.handshake(_raw(where), NODE, (IDENTITY.public_key,), max_frame=MAX_REQUEST_BYTES)


def _ask(conn: SecretConnection, doc: dict) -> dict:
    conn.send(json.dumps(doc).encode())
    return json.loads(conn.recv())


def test_the_signer_re_derives_every_digest_and_never_signs_a_raw_one(sockdir):
    """Review 16 (signer_oracle): a PROPOSAL/VIEW_CHANGE label carried any digest (a conflicting COMMIT, a tx)."""
    evil = vote_digest(CHAIN, VoteKind.COMMIT, 5, 0, Y)
    thief_tx = T.Transaction(CHAIN, TxKind.TRANSFER, VALIDATOR.public_key, 0, 1,
                             Transfer(dev_key("thief").address, "QNX", 10**18))
    tx_digest = bytes(thief_tx.signing_digest())
    with running_signer(sockdir) as (server, where):
        conn = _raw_node_conn(where)
        base = {"op": "sign", "v": PROTOCOL_VERSION, "chain_id": CHAIN, "height": 5, "block_hash": "0x" + X.hex()}
        # protocol 1 (a raw digest) is refused, however it is labelled
        for digest in (evil, tx_digest):
            answer = _ask(conn, {**base, "v": 1, "view": 1, "phase": "proposal", "digest": "0x" + digest.hex()})
            assert answer["ok"] is False and "protocol version" in answer["error"]
            answer = _ask(conn, {**base, "view": 1, "phase": "proposal", "digest": "0x" + digest.hex()})
            assert answer["ok"] is False and "unknown fields" in answer["error"]
        # a PROPOSAL label: the signature is of the proposal digest the fields derive, never of ``evil``
        answer = _ask(conn, {**base, "view": 1, "phase": "proposal", "block_sha": "0x" + evil.hex()})
        sig = bytes.fromhex(answer["signature"][2:])
        assert verify(VALIDATOR.public_key, proposal_digest_of(CHAIN, 5, 1, X, evil), sig)
        assert not verify(VALIDATOR.public_key, evil, sig) and not verify(VALIDATOR.public_key, tx_digest, sig)
        # a VIEW_CHANGE whose block hash is not its prepared summary's hash is refused, recording nothing
        before = server.service.guard.state
        answer = _ask(conn, {**base, "view": 2, "phase": "view_change", "prepared": None})
        assert answer["ok"] is False and answer["refused"] and "prepared summary" in answer["error"]
        # fields of another phase are refused
        answer = _ask(conn, {**base, "view": 2, "phase": "commit", "block_sha": "0x" + X.hex()})
        assert answer["ok"] is False and "carries block_sha" in answer["error"]
        assert server.service.guard.state == before
        conn.close()
    # the cap on a NEW-VIEW's view-change hashes is checked before any is decoded
    service = server.service
    over = {"op": "sign", "v": PROTOCOL_VERSION, "chain_id": CHAIN, "height": 6, "view": 1, "phase": "proposal",
            "block_hash": "0x" + X.hex(), "view_changes": ["0x" + X.hex()] * (MAX_VIEW_CHANGE_HASHES + 1)}
    answer = json.loads(service.handle(json.dumps(over).encode()))
    assert answer["ok"] is False and f"1 to {MAX_VIEW_CHANGE_HASHES} hashes" in answer["error"]


def test_every_message_type_signs_through_the_remote_signer_as_its_message_verifies(sockdir):
    """The requests the engine builds (SignRequest.vote/proposal/new_view/view_change) re-derive on the signer."""
    block = b"a block"
    block_hash = bytes(sha256(block))
    with running_signer(sockdir) as (server, where):
        remote = client(where)
        vc_prepared = PreparedCertificate(5, 0, b"", block_hash, ())
        vc = SignRequest.view_change(CHAIN, 5, 1, vc_prepared)
        sig_vc = remote.sign_request(vc)
        assert sig_vc is not None
        change = ViewChange(5, 1, vc_prepared, VALIDATOR.address, sig_vc)
        assert verify(VALIDATOR.public_key, change.digest(CHAIN), sig_vc)
        proposal = remote.sign_request(SignRequest.proposal(CHAIN, 5, 1, block_hash, block))
        assert verify(VALIDATOR.public_key, proposal_digest(CHAIN, 5, 1, block_hash, block), proposal)
        nv = remote.sign_request(SignRequest.new_view(CHAIN, 5, 1, block_hash, (change,)))
        assert verify(VALIDATOR.public_key, new_view_digest(CHAIN, 5, 1, block_hash, (change,)), nv)
        for kind in (VoteKind.PREPARE, VoteKind.COMMIT):
            sig = remote.sign_request(SignRequest.vote(CHAIN, kind, 5, 1, block_hash))
            assert verify(VALIDATOR.public_key, vote_digest(CHAIN, kind, 5, 1, block_hash), sig)
        # a request whose digest its fields do not derive is not even sent
        lie = SignRequest(5, 1, Phase.PROPOSAL, block_hash, vote_digest(CHAIN, VoteKind.COMMIT, 5, 1, Y),
                          block_sha=bytes(sha256(block)))
        assert remote.sign_request(lie) is None and server.service.signed == 5
        remote.close()


def test_consensus_digests_and_transaction_digests_are_in_distinct_domains():
    """No consensus sign request can yield a transaction signature: different domain tags, length-prefixed."""
    assert len({DOMAIN_TX, DOMAIN_VOTE, DOMAIN_PROPOSAL}) == 3
    payload = b"same payload"
    assert len({bytes(domain_digest(d, payload)) for d in (DOMAIN_TX, DOMAIN_VOTE, DOMAIN_PROPOSAL)}) == 3
    # the tag is length-prefixed: moving bytes between tag and payload changes the digest
    assert domain_digest(DOMAIN_VOTE, b"x" + payload) != domain_digest(DOMAIN_VOTE + b"x", payload)
    tx = T.Transaction(CHAIN, TxKind.TRANSFER, VALIDATOR.public_key, 0, 1, Transfer(NODE.address, "QNX", 1))
    assert bytes(tx.signing_digest()) == bytes(domain_digest(DOMAIN_TX, encode(tx.to_wire())))


def test_the_local_signer_refuses_a_request_whose_digest_its_fields_do_not_derive(tmp_path):
    guard = SignGuard.create(tmp_path / "ss.json", CHAIN, VALIDATOR.address)
    signer = LocalSigner(VALIDATOR, guard)
    lie = SignRequest(5, 1, Phase.VIEW_CHANGE, Y, vote_digest(CHAIN, VoteKind.COMMIT, 5, 0, Y))
    assert signer.sign_request(lie) is None and signer.refusals == 1 and guard.state.height == 0
    assert signer.sign_request(SignRequest.view_change(CHAIN, 5, 1, None)) is not None


def test_unknown_node_key_is_refused_by_the_signer(sockdir):
    with running_signer(sockdir) as (server, where):
        stranger = client(where, identity=STRANGER)
        assert stranger.sign_request(prepare(X)) is None
        assert server.service.signed == 0 and server.service.guard.state.height == 0
        assert server.rejected == 1


def test_unknown_signer_key_is_refused_by_the_node(sockdir):
    with running_signer(sockdir, identity=STRANGER) as (server, where):
        remote = client(where)  # expects IDENTITY
        assert remote.sign_request(prepare(X)) is None
        assert remote.failures == 1
        assert server.service.signed == 0


def _raw(where: str) -> socket.socket:
    sock = SignerAddress.parse(where).connect(2.0)
    return sock


def _closed(sock: socket.socket) -> bool:
    try:
        while True:
            if not sock.recv(4096):
                return True
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False


def test_garbage_tampered_and_oversize_frames_are_refused(sockdir):
    with running_signer(sockdir) as (server, where):
        # garbage in the handshake
        sock = _raw(where)
        sock.sendall(os.urandom(32) + struct.pack(">I", 200) + os.urandom(200))
        assert _closed(sock)
        sock.close()
        # an authenticated node sending an oversize frame header: refused unread
        sock = _raw(where)
        conn = SecretConnection.handshake(sock, NODE, (IDENTITY.public_key,))
        sock.sendall(struct.pack(">I", 10**6))
        assert _closed(sock)
        sock.close()
        # a frame that fails authentication (a flipped byte)
        sock = _raw(where)
        conn = SecretConnection.handshake(sock, NODE, (IDENTITY.public_key,))
        box = conn._send_box.encrypt(b'{"op": "public_key"}', (0).to_bytes(24, "big")).ciphertext
        sock.sendall(struct.pack(">I", len(box)) + box[:-1] + bytes([box[-1] ^ 1]))
        assert _closed(sock)
        sock.close()
        # a well-framed malformed request gets an error answer and records nothing
        sock = _raw(where)
        conn = SecretConnection.handshake(sock, NODE, (IDENTITY.public_key,))
        for junk in (b"not json", b"[]", json.dumps({"op": "sign", "height": True}).encode()):
            conn.send(junk)
            answer = json.loads(conn.recv())
            assert answer["ok"] is False and answer["refused"] is False
        conn.send(b'{"op": "public_key", "v": 2}')
        assert json.loads(conn.recv())["public_key"] == "0x" + VALIDATOR.public_key.hex()
        conn.close()
        assert server.service.guard.state.height == 0
        # our own side refuses to read an oversize frame too
        with pytest.raises(SecretConnectionError, match="frame of"):
            conn.send(b"x" * (conn.max_frame + 1))


def test_an_absent_signer_means_no_signature_quickly(sockdir):
    remote = client(f"unix:{sockdir}/absent.sock")
    remote.retry_s = 60.0
    assert remote.sign_request(prepare(X)) is None
    assert remote.sign_request(prepare(X)) is None  # not retried within retry_s
    assert remote.failures == 2


def test_signer_addresses_are_unix_or_loopback_tcp():
    assert SignerAddress.parse("tcp://127.0.0.1:9").target == ("127.0.0.1", 9)
    assert SignerAddress.parse("unix:/tmp/x.sock").family == socket.AF_UNIX
    for bad in ("tcp://10.0.0.1:9", "tcp://example.com:9", "udp://127.0.0.1:9", "unix:", "tcp://127.0.0.1:x"):
        with pytest.raises(SignerError):
            SignerAddress.parse(bad)


@contextmanager
def tcp_signer(root: Path):
    key_file = root / "k.json"
    save_keyfile(key_file, VALIDATOR, None)
    guard = SignGuard.create(root / "s.json", CHAIN, VALIDATOR.address)
    server = SignerServer(SignerService(FileBackend(key_file), guard), IDENTITY, [NODE.public_key],
                          SignerAddress.parse("tcp://127.0.0.1:0"))
    where = server.bind()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, where
    finally:
        server.stop()
        thread.join(5)


def test_remote_signer_over_loopback_tcp(sockdir):
    with tcp_signer(sockdir) as (server, where):
        remote = client(where)
        assert remote.sign_request(prepare(X)) is not None
        remote.close()


def test_idle_unauthenticated_connections_never_keep_the_node_out(sockdir):
    """Review 16 (signer_slots): four idle TCP connections held every slot, so the node could not reconnect."""
    with tcp_signer(sockdir) as (server, where):
        host, port = where[len("tcp://"):].rsplit(":", 1)
        idle = [socket.create_connection((host, int(port))) for _ in range(MAX_PREAUTH + MAX_CONNECTIONS + 2)]
        try:
            remote = client(where)
            assert remote.sign_request(prepare(X)) is not None  # the oldest idle connection gave way
            # more known-node connections than slots: the oldest gives way, the newest is served
            others = [client(where) for _ in range(MAX_CONNECTIONS)]
            assert all(o.sign_request(prepare(X)) is not None for o in others)
            for o in others + [remote]:
                o.close()
        finally:
            for sock in idle:
                sock.close()


def _signer_home(root: Path) -> SignerHome:
    result = CliRunner().invoke(cli, ["signer", "init", "--home", str(root), "--chain-id", CHAIN, "--listen",
                                      f"unix:{root}/s.sock", "--node-public-key", NODE.public_key.hex(), "--json"])
    assert result.exit_code == 0, result.output
    return SignerHome(root)


def test_one_signer_per_home_and_a_live_socket_is_never_taken_over(sockdir):
    """Review 16 (two_signers): a second `signer start` unlinked the live socket and signed with its own record."""
    home = _signer_home(sockdir / "h")
    first = home.build_server()
    try:
        with pytest.raises(SignerError, match="another signer is running"):
            home.build_server()
        result = CliRunner().invoke(cli, ["signer", "start", "--home", str(home.root)])
        assert result.exit_code != 0 and "another signer is running" in result.output
        with pytest.raises(SignerError, match="another signer is running"):
            home.lock()
        first.bind()
    finally:
        first.stop()
    # a second server (another home's copy) on the same live socket path refuses to bind
    with running_signer(sockdir) as (server, where):
        copy = SignerServer(server.service, IDENTITY, [NODE.public_key], SignerAddress.parse(where))
        with pytest.raises(SignerError, match="already listening"):
            copy.bind()
        assert client(where).sign_request(prepare(X)) is not None  # the first still serves
    # stopped: the home's lock is free and a stale socket file is replaced
    second = home.build_server()
    try:
        assert second.bind() == f"unix:{home.root}/s.sock"
    finally:
        second.stop()


def test_start_refuses_a_home_without_its_sign_state_and_import_restores_it(sockdir):
    """Review 16 (signer_missing_state): `signer start` silently created an empty record."""
    home = _signer_home(sockdir / "h")
    exported = sockdir / "protection.json"
    assert CliRunner().invoke(cli, ["signer", "export-protection", "--home", str(home.root), "--out",
                                    str(exported)]).exit_code == 0
    home.sign_state_file.unlink()
    with pytest.raises(SignerError, match="import-protection"):
        home.build_server()
    result = CliRunner().invoke(cli, ["signer", "start", "--home", str(home.root)])
    assert result.exit_code != 0 and "import-protection" in result.output and not home.sign_state_file.exists()
    assert len(result.output.strip().splitlines()) == 1
    assert CliRunner().invoke(cli, ["signer", "import-protection", "--home", str(home.root),
                                    str(exported)]).exit_code == 0
    home.build_server().stop()


def test_a_request_whose_inputs_do_not_give_its_slot_is_audited(tmp_path):
    """Every signer refusal is in the audit log, including one refused before it is a SignRequest."""
    from node.audit import AuditLog, export_entries, verify_log

    key_file = tmp_path / "validator_key.json"
    save_keyfile(key_file, VALIDATOR, None)
    guard = SignGuard.create(tmp_path / "sign_state.json", CHAIN, VALIDATOR.address)
    audit = AuditLog(tmp_path / "audit.log", IDENTITY)
    service = SignerService(FileBackend(key_file), guard, audit)
    bad = {"op": "sign", "v": PROTOCOL_VERSION, "chain_id": CHAIN, "height": 5, "view": 2, "phase": "view_change",
           "block_hash": "0x" + X.hex(), "prepared": None}
    answer = json.loads(service.handle(json.dumps(bad).encode(), peer="node-a"))
    assert answer["ok"] is False and answer["refused"] and "prepared summary" in answer["error"]
    assert service.refusals == 1
    entries = [e for e in export_entries(tmp_path / "audit.log") if isinstance(e, dict)]
    assert [(e["actor"], e["action"], e["params"]) for e in entries] == [
        ("node-a", "sign_refused", {"height": 5, "view": 2, "phase": "view_change"})]
    assert verify_log(tmp_path / "audit.log", IDENTITY.public_key).ok
