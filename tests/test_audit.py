"""The audit log (node/audit.py): chain and signatures, tamper detection at the right entry, torn tails,
signer refusals in the node's and the remote signer's own logs, and `qenexd audit verify|export`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cli.main import cli
from consensus.messages import VoteKind, vote_digest
from consensus.signing import Phase, SignRequest
from node.audit import AuditError, AuditLog, canonical, verify_log
from node.config import Home
from node.genesis_tools import write_single_node_home
from node.remote_signer import FileBackend, SignerHome, SignerService
from node.signer import LocalSigner
from node.signguard import SignGuard
from state.keyfile import load_keyfile, save_keyfile
from state.testing import TEST_CHAIN_ID as CHAIN
from state.testing import dev_key

KEY = dev_key("audit-node")
OTHER = dev_key("audit-other")


def _log(tmp_path, n=5, key=KEY):
    log = AuditLog(tmp_path / "audit.log", key, clock_ms=lambda: 1_700_000_000_000)
    for i in range(n):
        log.append("127.0.0.1", "admin_ban", {"peer": f"peer{i}"}, {"status": 200, "result": "ok"})
    return log


def _lines(path):
    return path.read_bytes().split(b"\n")[:-1]


def _write(path, lines):
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def _tampered(tmp_path, edit):
    """Five entries, ``edit(lines)`` applied to the file, then verified."""
    log = _log(tmp_path)
    lines = _lines(log.path)
    edit(lines)
    _write(log.path, lines)
    return verify_log(log.path, KEY.public_key)


def test_entries_chain_and_verify(tmp_path):
    log = _log(tmp_path)
    report = verify_log(log.path, KEY.public_key)
    assert report.ok and report.entries == 5 and report.head == log.head
    first, second = (json.loads(line) for line in _lines(log.path)[:2])
    assert [first["seq"], second["seq"]] == [1, 2]
    assert sorted(first) == ["action", "actor", "outcome", "params", "prev_hash", "seq", "sig", "time_ms"]
    # Another key's verification fails at the first entry (the genesis hash binds the key too).
    assert verify_log(log.path, OTHER.public_key).broken_line == 1
    # Reopening continues the chain where it stopped.
    again = AuditLog(log.path, KEY)
    assert (again.seq, again.head) == (5, log.head)
    again.append("127.0.0.1", "admin_status", {}, {"status": 200, "result": "ok"})
    assert verify_log(log.path, KEY.public_key).entries == 6


def test_an_edited_entry_is_found_at_its_line(tmp_path):
    def edit(lines):
        doc = json.loads(lines[2])
        doc["params"]["peer"] = "someone-else"
        lines[2] = canonical(doc)  # canonical, same seq and prev_hash: only the signature can tell

    report = _tampered(tmp_path, edit)
    assert (report.broken_line, report.broken_seq, report.entries) == (3, 3, 2)
    assert "signature" in report.reason


def test_a_re_signed_edit_breaks_the_next_entrys_link(tmp_path):
    # Whoever holds the key can re-sign an edited entry; the next entry's prev_hash still names the old bytes.
    log = _log(tmp_path)
    lines = _lines(log.path)
    forged = AuditLog(tmp_path / "forge.log", KEY)
    forged.seq, forged.head = 2, json.loads(lines[2])["prev_hash"]
    forged._clock_ms = lambda: json.loads(lines[2])["time_ms"]
    forged.append("127.0.0.1", "admin_ban", {"peer": "forged"}, {"status": 200, "result": "ok"})
    lines[2] = _lines(forged.path)[0]
    _write(log.path, lines)
    report = verify_log(log.path, KEY.public_key)
    assert (report.broken_line, report.broken_seq) == (4, 4) and "prev_hash" in report.reason


def test_a_deleted_entry_is_found_where_it_was(tmp_path):
    report = _tampered(tmp_path, lambda lines: lines.pop(1))
    assert (report.broken_line, report.broken_seq, report.entries) == (2, 3, 1)
    assert "seq 3" in report.reason


def test_reordered_entries_are_found_at_the_first_moved_one(tmp_path):
    def swap(lines):
        lines[1], lines[3] = lines[3], lines[1]

    report = _tampered(tmp_path, swap)
    assert (report.broken_line, report.broken_seq) == (2, 4)


def test_a_rewritten_but_equivalent_line_is_refused(tmp_path):
    def reformat(lines):
        lines[0] = json.dumps(json.loads(lines[0]), indent=1).replace("\n", " ").encode()

    report = _tampered(tmp_path, reformat)
    assert report.broken_line == 1 and "canonical" in report.reason


def test_a_torn_tail_is_reported_then_cut_and_recorded_at_the_next_open(tmp_path):
    log = _log(tmp_path, n=3)
    with open(log.path, "ab") as f:
        f.write(b'{"action":"admin_ban","actor":"127.0')  # a crash inside an append
    report = verify_log(log.path, KEY.public_key)
    assert not report.ok and report.broken_line is None and report.torn_tail == 36 and report.entries == 3
    reopened = AuditLog(log.path, KEY)
    assert reopened.seq == 4
    entries = [json.loads(line) for line in _lines(log.path)]
    assert entries[-1]["action"] == "audit_torn_tail" and entries[-1]["params"]["bytes_cut"] == 36
    assert verify_log(log.path, KEY.public_key).ok


def test_a_log_whose_last_line_is_not_an_entry_refuses_to_open(tmp_path):
    log = _log(tmp_path, n=2)
    with open(log.path, "ab") as f:
        f.write(b"garbage\n")
    with pytest.raises(AuditError, match="last line is not an audit entry"):
        AuditLog(log.path, KEY)


def test_appends_are_0600(tmp_path):
    log = _log(tmp_path, n=1)
    assert log.path.stat().st_mode & 0o777 == 0o600


def _prepare(block_hash, height=5, view=0):
    return SignRequest(height, view, Phase.PREPARE, block_hash,
                       vote_digest(CHAIN, VoteKind.PREPARE, height, view, block_hash))


def test_the_local_signer_audits_an_equivocation_it_refused(tmp_path):
    audit = AuditLog(tmp_path / "audit.log", KEY)
    signer = LocalSigner(KEY, SignGuard.create(tmp_path / "sign_state.json", CHAIN, KEY.address), audit=audit)
    assert signer.sign_request(_prepare(b"\x0a" * 32)) is not None
    assert audit.seq == 0  # a signature is not an audit event
    assert signer.sign_request(_prepare(b"\x0b" * 32)) is None
    entry = json.loads(_lines(audit.path)[0])
    assert entry["action"] == "sign_refused" and entry["actor"] == "consensus"
    assert entry["params"] == {"height": 5, "view": 0, "phase": "prepare", "block_hash": "0x" + "0b" * 32}
    assert verify_log(audit.path, KEY.public_key).ok


def test_the_remote_signer_audits_refusals_in_its_own_log_with_its_own_key(tmp_path):
    validator, identity = dev_key("audit-validator"), dev_key("audit-identity")
    home = SignerHome(tmp_path / "signer")
    home.root.mkdir()
    save_keyfile(home.validator_key_file, validator, None)
    save_keyfile(home.identity_key_file, identity, None)
    home.write_config(CHAIN, "tcp://127.0.0.1:0", [KEY.public_key])
    home.open_guard(CHAIN, validator.address)
    server = home.build_server()  # opens HOME/audit.log with the identity key
    service: SignerService = server.service
    assert isinstance(server.service.backend, FileBackend)

    def ask(block_hash):
        request = _prepare(block_hash)
        return json.loads(service.handle(json.dumps(
            {"op": "sign", "chain_id": CHAIN, "height": 5, "view": 0, "phase": "prepare",
             "block_hash": "0x" + block_hash.hex(), "digest": "0x" + request.digest.hex()}).encode(), "0xnodekey"))

    assert ask(b"\x0a" * 32)["ok"]
    refused = ask(b"\x0b" * 32)
    assert refused["refused"]
    entry = json.loads(_lines(home.audit_file)[0])
    assert entry["action"] == "sign_refused" and entry["actor"] == "0xnodekey"
    assert verify_log(home.audit_file, identity.public_key).ok
    assert not verify_log(home.audit_file, validator.public_key).ok  # signed with the identity key, not the validator's
    result = CliRunner().invoke(cli, ["audit", "verify", "--home", str(home.root)])
    assert result.exit_code == 0 and "1 entries verify" in result.output


def test_cli_verify_and_export_on_a_node_home(tmp_path):
    home = Home(tmp_path / "node")
    write_single_node_home(home, chain_id="audit-1", name="n0", p2p_port=0, rpc_port=0)
    key = load_keyfile(home.node_key_file, None)
    log = AuditLog(home.audit_file, key)
    for i in range(3):
        log.append("127.0.0.1", "admin_status", {}, {"status": 200, "result": "ok", "i": i})
    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "verify", "--home", str(home.root), "--json"])
    assert ok.exit_code == 0 and json.loads(ok.output)["entries"] == 3
    exported = runner.invoke(cli, ["audit", "export", "--home", str(home.root)])
    assert exported.exit_code == 0
    assert [json.loads(line)["seq"] for line in exported.output.splitlines()] == [1, 2, 3]

    lines = _lines(home.audit_file)
    del lines[0]
    _write(home.audit_file, lines)
    broken = runner.invoke(cli, ["audit", "verify", "--home", str(home.root)])
    assert broken.exit_code == 1 and "line 1 (seq 2)" in broken.output
    _write(home.audit_file, [])
    with open(home.audit_file, "ab") as f:
        f.write(b'{"seq":')
    torn = runner.invoke(cli, ["audit", "verify", "--home", str(home.root)])
    assert torn.exit_code == 2 and "TORN TAIL" in torn.output
    assert runner.invoke(cli, ["audit", "verify", "--home", str(tmp_path)]).exit_code == 1  # not a home
