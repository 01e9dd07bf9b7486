"""``qenexd keys``: the local keyring (encrypted key files under HOME/keyring)."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click

from cli.common import PASSWORD_ENV, CLIError, emit, handle_errors, home_option, json_option, keyring_dir, resolve_key
from state.crypto import PrivateKey, address_to_text
from state.keyfile import check_new_password, keyfile_warnings, save_keyfile

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@click.group()
def keys() -> None:
    """Create and inspect keys in the keyring."""


@keys.command("new")
@click.argument("name")
@home_option
@click.option("--unencrypted", is_flag=True, help="Store the key unencrypted (development only).")
@json_option
@handle_errors
def new(name: str, home: Path, unencrypted: bool, as_json: bool) -> None:
    """Generate a key NAME; its password comes from QENEX_PASSWORD or a prompt."""
    if not _NAME.match(name):
        raise CLIError(f"key name {name!r} must be 1-64 characters of letters, digits, '_', '.', '-'")
    path = keyring_dir(home) / f"{name}.json"
    if path.exists():
        raise CLIError(f"key {name!r} already exists at {path}")
    password = None
    if not unencrypted:
        password = os.environ.get(PASSWORD_ENV) or click.prompt(
            "Password for the new key", hide_input=True, confirmation_prompt=True, err=True
        )
        if not password:
            raise CLIError("an empty password is not allowed; use --unencrypted for a dev key")
        check_new_password(password)  # before generating anything: a WeakPassword is one line
    key = PrivateKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_keyfile(path, key, password)
    emit({"name": name, "address": address_to_text(key.address), "keyfile": str(path),
          "encrypted": not unencrypted}, as_json)


def _describe(path: Path) -> dict[str, object]:
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        return {"name": path.stem, "address": "?", "encrypted": None, "keyfile": str(path),
                "warnings": [f"unreadable: {exc}"]}
    if not isinstance(info, dict):
        info = {}
    return {"name": path.stem, "address": info.get("address", "?"), "encrypted": info.get("encrypted") is True,
            "mode": f"{path.stat().st_mode & 0o777:04o}", "keyfile": str(path), "warnings": keyfile_warnings(path)}


def _flags(row: dict[str, object]) -> str:
    flags = []
    if row["encrypted"] is not True:
        flags.append("UNENCRYPTED")
    if any("readable by group/others" in w for w in row["warnings"]):  # type: ignore[union-attr]
        flags.append(f"mode {row.get('mode')} (readable by others)")
    if any(w.startswith("unreadable") for w in row["warnings"]):  # type: ignore[union-attr]
        flags.append("UNREADABLE")
    return ("\t" + ", ".join(flags)) if flags else ""


@keys.command("list")
@home_option
@json_option
@handle_errors
def list_keys(home: Path, as_json: bool) -> None:
    """List the keys in the keyring."""
    directory = keyring_dir(home)
    entries = [_describe(p) for p in sorted(directory.glob("*.json"))] if directory.is_dir() else []
    emit(entries, as_json,
         lambda rows: "\n".join(f"{r['name']}\t{r['address']}{_flags(r)}" for r in rows) or "(no keys)")


@keys.command("show")
@click.argument("name_or_keyfile")
@home_option
@json_option
@handle_errors
def show(name_or_keyfile: str, home: Path, as_json: bool) -> None:
    """Show a key's address and public key (decrypts to check the password)."""
    key = resolve_key(name_or_keyfile, home)
    emit({"address": address_to_text(key.address), "pubkey": "0x" + key.public_key.hex()}, as_json)
