"""``qenexd signer``: the remote signer process and its slashing protection."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import click

from cli.common import PASSWORD_ENV, CLIError, emit, handle_errors, json_option
from node.remote_signer import SignerHome
from node.signguard import SignGuardError, export_interchange, import_interchange
from state.crypto import PrivateKey, address_of, address_to_text
from state.keyfile import load_keyfile, save_keyfile

signer_home_option = click.option("--home", required=True, type=click.Path(file_okay=False, path_type=Path),
                                  help="The signer's home directory.")


@click.group()
def signer() -> None:
    """A separate signer process holding the validator key (remote signing)."""


def public_key_hex(text: str) -> bytes:
    """A 0x-hex (or bare hex) 32-byte Ed25519 public key from the command line."""
    try:
        raw = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        raise CLIError(f"{text!r} is not hex") from None
    if len(raw) != 32:
        raise CLIError(f"{text!r} is not a 32-byte public key")
    return raw


@signer.command("init")
@signer_home_option
@click.option("--chain-id", required=True)
@click.option("--listen", required=True, help="unix:/path/to.sock or tcp://127.0.0.1:PORT")
@click.option("--node-public-key", "node_keys", multiple=True, required=True,
              help="0x-hex node key allowed to connect (the node's config/node_key.json); repeatable.")
@click.option("--validator-key", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="Key file to hold (e.g. a node home's config/node_key.json); default: a new key.")
@click.option("--force", is_flag=True, help="Overwrite an existing signer config and identity.")
@json_option
@handle_errors
def init(home: Path, chain_id: str, listen: str, node_keys: tuple[str, ...], validator_key: Path | None,
         force: bool, as_json: bool) -> None:
    """Create a signer home: config, validator key, connection identity, an empty protection record."""
    sh = SignerHome(home)
    if sh.config_file.exists() and not force:
        raise CLIError(f"{sh.config_file} already exists (use --force to overwrite)")
    home.mkdir(parents=True, exist_ok=True)
    keys = [public_key_hex(k) for k in node_keys]
    if validator_key is not None:
        key = load_keyfile(validator_key, os.environ.get(PASSWORD_ENV))
    elif sh.validator_key_file.exists():
        key = load_keyfile(sh.validator_key_file, os.environ.get(PASSWORD_ENV))
    else:
        key = PrivateKey.generate()
    if not sh.validator_key_file.exists():
        save_keyfile(sh.validator_key_file, key, None)
    elif load_keyfile(sh.validator_key_file, os.environ.get(PASSWORD_ENV)).public_key != key.public_key:
        raise CLIError(f"{sh.validator_key_file} holds another key; refusing to replace a validator key")
    if sh.identity_key_file.exists() and sh.audit_file.exists():
        raise CLIError(f"{sh.audit_file} is signed with the current identity key: move it aside before "
                       "replacing the identity (a new key could not verify it)")
    identity = PrivateKey.generate()
    save_keyfile(sh.identity_key_file, identity, None)
    sh.write_config(chain_id, listen, keys)
    sh.open_guard(chain_id, key.address, create=True)
    emit({
        "home": str(home),
        "validator": address_to_text(key.address),
        "node_config": {"mode": "remote", "address": listen, "public_key": "0x" + identity.public_key.hex(),
                        "validator_public_key": "0x" + key.public_key.hex()},
    }, as_json)


@signer.command("start")
@signer_home_option
@handle_errors
def start(home: Path) -> None:
    """Serve sign requests until SIGINT/SIGTERM."""
    server = SignerHome(home).build_server(os.environ.get(PASSWORD_ENV))
    where = server.bind()

    def on_signal(signum: int, frame: object) -> None:
        server.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    click.echo(f"signer for {address_to_text(server.service.guard.validator)} listening on {where}", err=True)
    sys.stderr.flush()
    server.serve_forever()


def _guard(home: Path, *, create: bool = False):  # type: ignore[no-untyped-def]
    sh = SignerHome(home)
    config = sh.load_config()
    key = load_keyfile(sh.validator_key_file, os.environ.get(PASSWORD_ENV))
    return sh.open_guard(config["chain_id"], address_of(key.public_key), create=create)


@signer.command("export-protection")
@signer_home_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), help="File to write; default stdout.")
@handle_errors
def export_protection(home: Path, out: Path | None) -> None:
    """Write the slashing-protection record as interchange JSON."""
    text = json.dumps(export_interchange(_guard(home)), indent=1) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.write_text(text, encoding="utf-8")


@signer.command("import-protection")
@signer_home_option
@click.argument("source", type=click.Path(dir_okay=False, exists=True, path_type=Path))
@json_option
@handle_errors
def import_protection(home: Path, source: Path, as_json: bool) -> None:
    """Merge an interchange file into the record (it never lowers it)."""
    try:
        doc = json.loads(source.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise SignGuardError(f"{source} is not JSON: {exc}") from None
    with SignerHome(home).lock():  # not under a running signer, which holds the record
        state = import_interchange(_guard(home, create=True), doc)  # restoring a lost record starts here
    emit({"height": state.height, "view": state.view, "phase": state.phase.name.lower(),
          "block_hash": "0x" + state.block_hash.hex()}, as_json)
