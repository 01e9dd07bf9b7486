"""Key files: an Ed25519 seed encrypted at rest, or a plainly marked dev key.

Encrypted (version 1)::

    {"version": 1, "encrypted": true, "address": "qnx1...", "pubkey": "0x...",
     "crypto": {"kdf": "argon2id", "opslimit": 3, "memlimit": 268435456, "salt": "0x...",
                "cipher": "xsalsa20poly1305", "nonce": "0x...", "ciphertext": "0x..."}}

The key is Argon2id(password, salt) from libsodium (``nacl.pwhash``) and the
seed is sealed with ``nacl.secret.SecretBox`` (XSalsa20-Poly1305), so a
wrong password and a corrupted file both fail authentication.  After
decryption the seed must reproduce the recorded pubkey and address.

Unencrypted dev files carry ``"encrypted": false``, a warning, and the seed
in the clear; they exist for local testnets only.

Hygiene: every file is written through ``write_private_file`` (a fresh
temp name opened O_CREAT|O_EXCL|O_NOFOLLOW with mode 0600, fsynced, renamed
over the target, directory fsynced), so a stale or planted temp file cannot
lend the key its permissions.  A file asking for Argon2id limits below
libsodium's INTERACTIVE ones is refused on load (it would make a stolen file
cheap to brute-force); new passwords need ``MIN_PASSWORD_LEN`` characters;
``keyfile_warnings`` names an unencrypted or group/world-readable file so
callers can say so at start-up and in ``keys list``.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from state.crypto import SEED_LEN, PrivateKey, address_to_text
from state.errors import InvalidKey, KeyfileError, WeakPassword

KEYFILE_VERSION = 1
KDF = "argon2id"
CIPHER = "xsalsa20poly1305"
UNENCRYPTED_WARNING = (
    "UNENCRYPTED DEV KEY: anyone who can read this file controls the account. Never use it for real funds."
)

# Moderate by default (about a second); tests and scripted tools may pass the INTERACTIVE minimum.
OPSLIMIT_MODERATE = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
MEMLIMIT_MODERATE = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
OPSLIMIT_INTERACTIVE = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
MEMLIMIT_INTERACTIVE = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
# A file may not ask for more than SENSITIVE (a hostile file must not exhaust
# memory) nor less than INTERACTIVE (a weak KDF makes a stolen file cheap to
# brute-force): the same range for writing and for loading.
_OPS_RANGE = (OPSLIMIT_INTERACTIVE, nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE)
_MEM_RANGE = (MEMLIMIT_INTERACTIVE, nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE)
MIN_PASSWORD_LEN = 8


def _derive(password: str, salt: bytes, opslimit: int, memlimit: int) -> bytes:
    return nacl.pwhash.argon2id.kdf(
        nacl.secret.SecretBox.KEY_SIZE, password.encode("utf-8"), salt, opslimit=opslimit, memlimit=memlimit
    )


def _hex(data: bytes) -> str:
    return "0x" + data.hex()


def _unhex(path: Path, name: str, value: object) -> bytes:
    if not isinstance(value, str):
        raise KeyfileError(f"{path}: field {name!r} must be a hex string")
    text = value[2:] if value.startswith("0x") else value
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise KeyfileError(f"{path}: field {name!r} is not valid hex") from None


def _limit(path: Path, name: str, value: object, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise KeyfileError(f"{path}: {name} {value!r} is not an integer")
    if value < bounds[0]:
        raise KeyfileError(
            f"{path}: {name} {value} is below the minimum {bounds[0]} (Argon2id INTERACTIVE): "
            "a key file with weak KDF limits is refused"
        )
    if value > bounds[1]:
        raise KeyfileError(f"{path}: {name} {value} is above the maximum {bounds[1]}")
    return value


def check_new_password(password: str) -> None:
    """The rule for the password of a new key; raises WeakPassword."""
    if not isinstance(password, str) or not password:
        raise WeakPassword("an empty password is not allowed; pass None for an unencrypted dev key")
    if len(password) < MIN_PASSWORD_LEN:
        raise WeakPassword(
            f"a key password must have at least {MIN_PASSWORD_LEN} characters, got {len(password)}"
        )


def write_private_file(path: str | os.PathLike[str], data: bytes) -> None:
    """Atomically replace ``path`` with ``data``, readable by the owner only (0600).

    The temp file has a fresh random name and is opened O_EXCL|O_NOFOLLOW, so
    neither a stale temp file nor a planted symlink decides its mode or where
    the bytes go; it is fsynced before the rename and the directory after.
    Raises OSError.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{nacl.utils.random(8).hex()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask did
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def keyfile_warnings(path: str | os.PathLike[str]) -> list[str]:
    """Why using the key file at ``path`` is risky: unencrypted, or readable by others."""
    path = Path(path)
    warnings: list[str] = []
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError):
        return warnings  # load_keyfile reports the real problem
    if isinstance(doc, dict) and doc.get("encrypted") is False:
        warnings.append(f"key file {path} is UNENCRYPTED: anyone who can read it controls the key")
    if mode & 0o077:
        warnings.append(
            f"key file {path} has mode {mode:04o}: readable by group/others; run chmod 600 {path}"
        )
    return warnings


def keyfile_document(
    key: PrivateKey,
    password: str | None,
    *,
    opslimit: int = OPSLIMIT_MODERATE,
    memlimit: int = MEMLIMIT_MODERATE,
) -> dict[str, Any]:
    """The JSON object ``save_keyfile`` writes."""
    doc: dict[str, Any] = {
        "version": KEYFILE_VERSION,
        "encrypted": password is not None,
        "address": address_to_text(key.address),
        "pubkey": _hex(key.public_key),
    }
    if password is None:
        doc["warning"] = UNENCRYPTED_WARNING
        doc["seed"] = _hex(key.seed)
        return doc
    check_new_password(password)
    _limit(Path("<new>"), "opslimit", opslimit, _OPS_RANGE)
    _limit(Path("<new>"), "memlimit", memlimit, _MEM_RANGE)
    salt = nacl.utils.random(nacl.pwhash.argon2id.SALTBYTES)
    nonce = nacl.utils.random(nacl.secret.SecretBox.NONCE_SIZE)
    box = nacl.secret.SecretBox(_derive(password, salt, opslimit, memlimit))
    ciphertext = box.encrypt(key.seed, nonce).ciphertext
    doc["crypto"] = {
        "kdf": KDF,
        "opslimit": opslimit,
        "memlimit": memlimit,
        "salt": _hex(salt),
        "cipher": CIPHER,
        "nonce": _hex(nonce),
        "ciphertext": _hex(ciphertext),
    }
    return doc


def save_keyfile(
    path: str | os.PathLike[str],
    key: PrivateKey,
    password: str | None,
    *,
    opslimit: int = OPSLIMIT_MODERATE,
    memlimit: int = MEMLIMIT_MODERATE,
    overwrite: bool = True,
) -> None:
    """Write ``key`` to ``path`` (mode 0600, atomically); ``password=None`` writes an unencrypted dev key."""
    path = Path(path)
    if not overwrite and path.exists():
        raise KeyfileError(f"{path} already exists; refusing to overwrite a key file")
    text = json.dumps(keyfile_document(key, password, opslimit=opslimit, memlimit=memlimit), indent=2) + "\n"
    try:
        write_private_file(path, text.encode("utf-8"))
    except OSError as exc:
        raise KeyfileError(f"cannot write key file {path}: {exc}") from exc


def load_keyfile(path: str | os.PathLike[str], password: str | None) -> PrivateKey:
    """Read a key file.  Raises KeyfileError with a clear message for every failure.

    ``password`` is required for an encrypted file and ignored for a dev file.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise KeyfileError(f"key file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise KeyfileError(f"cannot read key file {path}: {exc}") from exc
    except ValueError as exc:
        raise KeyfileError(f"key file {path} is not valid JSON (corrupted?): {exc}") from None
    if not isinstance(doc, dict):
        raise KeyfileError(f"key file {path} is not a JSON object")
    if doc.get("version") != KEYFILE_VERSION:
        raise KeyfileError(f"key file {path} has unsupported version {doc.get('version')!r}")
    encrypted = doc.get("encrypted")
    if encrypted is False:
        seed = _unhex(path, "seed", doc.get("seed"))
    elif encrypted is True:
        if password is None:
            raise KeyfileError(f"key file {path} is encrypted; a password is required")
        seed = _decrypt(path, doc.get("crypto"), password)
    else:
        raise KeyfileError(f"key file {path}: field 'encrypted' must be true or false")
    try:
        key = PrivateKey(seed)
    except InvalidKey as exc:
        raise KeyfileError(f"key file {path} holds an invalid seed: {exc}") from None
    if "pubkey" in doc and _unhex(path, "pubkey", doc["pubkey"]) != key.public_key:
        raise KeyfileError(f"key file {path} is corrupted: its seed does not match its pubkey")
    if "address" in doc and doc["address"] != address_to_text(key.address):
        raise KeyfileError(f"key file {path} is corrupted: its seed does not match its address {doc['address']}")
    return key


def _decrypt(path: Path, crypto: object, password: str) -> bytes:
    if not isinstance(crypto, dict):
        raise KeyfileError(f"key file {path} is missing its 'crypto' section")
    if crypto.get("kdf") != KDF or crypto.get("cipher") != CIPHER:
        raise KeyfileError(f"key file {path} uses kdf {crypto.get('kdf')!r} / cipher {crypto.get('cipher')!r}")
    opslimit = _limit(path, "opslimit", crypto.get("opslimit"), _OPS_RANGE)
    memlimit = _limit(path, "memlimit", crypto.get("memlimit"), _MEM_RANGE)
    salt = _unhex(path, "salt", crypto.get("salt"))
    nonce = _unhex(path, "nonce", crypto.get("nonce"))
    ciphertext = _unhex(path, "ciphertext", crypto.get("ciphertext"))
    if len(salt) != nacl.pwhash.argon2id.SALTBYTES or len(nonce) != nacl.secret.SecretBox.NONCE_SIZE:
        raise KeyfileError(f"key file {path} is corrupted: bad salt or nonce length")
    box = nacl.secret.SecretBox(_derive(password, salt, opslimit, memlimit))
    try:
        seed = box.decrypt(ciphertext, nonce)
    except (nacl.exceptions.CryptoError, ValueError, TypeError):
        raise KeyfileError(f"cannot decrypt key file {path}: wrong password or corrupted file") from None
    if len(seed) != SEED_LEN:
        raise KeyfileError(f"key file {path} is corrupted: decrypted seed is {len(seed)} bytes")
    return seed
