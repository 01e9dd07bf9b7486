"""``qenexd audit``: verify and export a home's signed, hash-chained audit log (node.audit)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.common import CLIError, emit, handle_errors, json_option
from node.audit import export_entries, verify_log
from node.config import Home
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


@audit.command()
@home_required
@json_option
@handle_errors
def verify(home: Path, as_json: bool) -> None:
    """Check every entry's chain link and signature; exit 1 at the first broken entry, 2 on a torn tail."""
    path, public_key = log_and_key(home)
    report = verify_log(path, public_key)
    out = {"file": str(path), "ok": report.ok, "entries": report.entries, "head": report.head,
           "broken_line": report.broken_line, "broken_seq": report.broken_seq, "reason": report.reason,
           "torn_tail_bytes": report.torn_tail, "summary": report.describe()}
    if report.ok:
        emit(out, as_json, lambda d: f"{d['file']}: {d['summary']}")
        return
    if as_json:
        emit(out, True)
    else:
        click.echo(f"{path}: {report.describe()}", err=True)
    sys.exit(EXIT_BROKEN if report.broken_line is not None else EXIT_TORN)


@audit.command()
@home_required
@handle_errors
def export(home: Path) -> None:
    """Print every entry as one JSON line (unverified: run `qenexd audit verify` for that)."""
    path, _ = log_and_key(home)
    for entry in export_entries(path):
        click.echo(json.dumps(entry, sort_keys=True) if isinstance(entry, dict) else json.dumps({"unreadable": entry}))
