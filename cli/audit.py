"""``qenexd audit``: verify and export a home's signed, hash-chained audit log (node.audit)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.common import CLIError, emit, handle_errors, json_option
from node.audit import export_entries, verify_log
from node.config import Home
from cli.signer import public_key_hex
from node.remote_signer import SignerHome
from state.keyfile import load_keyfile

EXIT_BROKEN = 1
EXIT_TORN = 2

home_required = click.option("--home", required=True, type=click.Path(file_okay=False, exists=True, path_type=Path),
                             help="A node home, or a remote signer home (`qenexd signer init`).")


def log_and_key(home: Path) -> tuple[Path, bytes]:
    """The audit log of a node or signer home and the public key its entries are signed with."""
    signer = SignerHome(home)
    if signer.config_file.exists():
        return signer.audit_file, load_keyfile(signer.identity_key_file, None).public_key
    node = Home(home)
    if not node.node_key_file.exists():
        raise CLIError(f"{home} is neither a node home (no {node.node_key_file}) nor a signer home "
                       f"(no {signer.config_file})")
    return node.audit_file, load_keyfile(node.node_key_file, None).public_key


@click.group()
def audit() -> None:
    """The tamper-evident audit log of admin calls and signer refusals."""


def log_path(home: Path) -> Path:
    signer = SignerHome(home)
    return signer.audit_file if signer.config_file.exists() else Home(home).audit_file


@audit.command()
@home_required
@click.option("--public-key", "public_key_text", help="0x-hex key the entries are signed with: verify without "
              "reading the home's private key file (e.g. on another machine holding a copy of the log).")
@click.option("--expect-seq", type=click.IntRange(min=1), help="An anchor kept elsewhere: this seq ...")
@click.option("--expect-head", help="... must still have this line hash (a head printed by an earlier verify).")
@json_option
@handle_errors
def verify(home: Path, public_key_text: str | None, expect_seq: int | None, expect_head: str | None,
           as_json: bool) -> None:
    """Check every entry's chain link and signature; exit 1 at the first broken entry or a missed anchor,
    2 on a torn tail."""
    if (expect_seq is None) != (expect_head is None):
        raise CLIError("--expect-seq and --expect-head go together")
    if public_key_text is not None:
        path, public_key = log_path(home), public_key_hex(public_key_text)
    else:
        path, public_key = log_and_key(home)
    anchor = None if expect_seq is None or expect_head is None else (expect_seq, expect_head)
    report = verify_log(path, public_key, anchor)
    out = {"file": str(path), "ok": report.ok, "entries": report.entries, "head": report.head,
           "broken_line": report.broken_line, "broken_seq": report.broken_seq, "reason": report.reason,
           "torn_tail_bytes": report.torn_tail, "anchor_fault": report.anchor_fault or None,
           "summary": report.describe()}
    if report.ok:
        emit(out, as_json, lambda d: f"{d['file']}: {d['summary']}")
        return
    if as_json:
        emit(out, True)
    else:
        click.echo(f"{path}: {report.describe()}", err=True)
    sys.exit(EXIT_TORN if report.torn_tail and report.broken_line is None else EXIT_BROKEN)


@audit.command()
@home_required
@handle_errors
def export(home: Path) -> None:
    """Print every entry as one JSON line (unverified: run `qenexd audit verify` for that)."""
    path = log_path(home)
    for entry in export_entries(path):
        click.echo(json.dumps(entry, sort_keys=True) if isinstance(entry, dict) else json.dumps({"unreadable": entry}))
