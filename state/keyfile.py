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
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import nacl.exceptions
import nacl.pwhash
import nacl.secret
import nacl.utils

from state.crypto import SEED_LEN, PrivateKey, address_to_text
from state.errors import InvalidKey, KeyfileError

KEYFILE_VERSION = 1
KDF = "argon2id"
CIPHER = "xsalsa20poly1305"
UNENCRYPTED_WARNING = (
    "UNENCRYPTED DEV KEY: anyone who can read this file controls the account. Never use it for real funds."
)

# Moderate by default (about a second); tests and scripted tools may pass lower limits.
OPSLIMIT_MODERATE = nacl.pwhash.argon2id.OPSLIMIT_MODERATE
MEMLIMIT_MODERATE = nacl.pwhash.argon2id.MEMLIMIT_MODERATE
OPSLIMIT_INTERACTIVE = nacl.pwhash.argon2id.OPSLIMIT_INTERACTIVE
MEMLIMIT_INTERACTIVE = nacl.pwhash.argon2id.MEMLIMIT_INTERACTIVE
# A file may not ask for more than this: a hostile file must not exhaust memory.
_OPS_RANGE = (nacl.pwhash.argon2id.OPSLIMIT_MIN, nacl.pwhash.argon2id.OPSLIMIT_SENSITIVE)
_MEM_RANGE = (nacl.pwhash.argon2id.MEMLIMIT_MIN, nacl.pwhash.argon2id.MEMLIMIT_SENSITIVE)


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
    if isinstance(value, bool) or not isinstance(value, int) or not bounds[0] <= value <= bounds[1]:
        raise KeyfileError(f"{path}: {name} {value!r} is outside [{bounds[0]}, {bounds[1]}]")
    return value


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
    if not isinstance(password, str) or not password:
        raise KeyfileError("an empty password is not allowed; pass None for an unencrypted dev key")
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
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
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
