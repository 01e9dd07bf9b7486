"""Key files: round trips, wrong passwords and corruption give clear KeyfileErrors."""

from __future__ import annotations

import json
import os
import stat

import pytest

from state.errors import KeyfileError
from state.keyfile import MEMLIMIT_INTERACTIVE, OPSLIMIT_INTERACTIVE, load_keyfile, save_keyfile
from state.testing import dev_key

FAST = {"opslimit": OPSLIMIT_INTERACTIVE, "memlimit": MEMLIMIT_INTERACTIVE}
KEY = dev_key("keyfile")


@pytest.fixture
def encrypted(tmp_path):
    path = tmp_path / "key.json"
    save_keyfile(path, KEY, "correct horse", **FAST)
    return path


def test_encrypted_round_trip(encrypted):
    assert load_keyfile(encrypted, "correct horse") == KEY
    doc = json.loads(encrypted.read_text())
    assert doc["encrypted"] is True and doc["version"] == 1
    assert KEY.seed.hex() not in encrypted.read_text()
    assert doc["pubkey"] == "0x" + KEY.public_key.hex()
    assert doc["address"].startswith("qnx1")


def test_key_files_are_private(encrypted):
    assert stat.S_IMODE(os.stat(encrypted).st_mode) == 0o600


def test_wrong_password(encrypted):
    with pytest.raises(KeyfileError, match="wrong password"):
        load_keyfile(encrypted, "wrong horse")


def test_missing_password(encrypted):
    with pytest.raises(KeyfileError, match="password is required"):
        load_keyfile(encrypted, None)


@pytest.mark.parametrize("field", ["ciphertext", "nonce", "salt"])
def test_corrupted_crypto_fields(encrypted, field):
    doc = json.loads(encrypted.read_text())
    value = bytes.fromhex(doc["crypto"][field][2:])
    doc["crypto"][field] = "0x" + (bytes([value[0] ^ 1]) + value[1:]).hex()
    encrypted.write_text(json.dumps(doc))
    with pytest.raises(KeyfileError, match="wrong password or corrupted"):
        load_keyfile(encrypted, "correct horse")


def test_swapped_pubkey_is_detected(encrypted):
    doc = json.loads(encrypted.read_text())
    doc["pubkey"] = "0x" + dev_key("other").public_key.hex()
    encrypted.write_text(json.dumps(doc))
    with pytest.raises(KeyfileError, match="does not match its pubkey"):
        load_keyfile(encrypted, "correct horse")


def test_hostile_kdf_limits_are_refused(encrypted):
    doc = json.loads(encrypted.read_text())
    doc["crypto"]["memlimit"] = 2**40
    encrypted.write_text(json.dumps(doc))
    with pytest.raises(KeyfileError, match="memlimit"):
        load_keyfile(encrypted, "correct horse")


@pytest.mark.parametrize("text", ["", "{not json", "[]", '{"version": 9}', '{"version": 1, "encrypted": "yes"}'])
def test_garbage_files(tmp_path, text):
    path = tmp_path / "bad.json"
    path.write_text(text)
    with pytest.raises(KeyfileError):
        load_keyfile(path, "pw")


def test_missing_file(tmp_path):
    with pytest.raises(KeyfileError, match="does not exist"):
        load_keyfile(tmp_path / "nope.json", None)


def test_unencrypted_dev_key(tmp_path):
    path = tmp_path / "dev.json"
    save_keyfile(path, KEY, None)
    doc = json.loads(path.read_text())
    assert doc["encrypted"] is False and "UNENCRYPTED DEV KEY" in doc["warning"]
    assert load_keyfile(path, None) == KEY
    assert load_keyfile(path, "ignored") == KEY


def test_truncated_dev_seed(tmp_path):
    path = tmp_path / "dev.json"
    save_keyfile(path, KEY, None)
    doc = json.loads(path.read_text())
    doc["seed"] = doc["seed"][:-2]
    path.write_text(json.dumps(doc))
    with pytest.raises(KeyfileError, match="invalid seed"):
        load_keyfile(path, None)


def test_empty_password_is_refused(tmp_path):
    with pytest.raises(KeyfileError, match="empty password"):
        save_keyfile(tmp_path / "k.json", KEY, "", **FAST)


def test_overwrite_guard(tmp_path):
    path = tmp_path / "k.json"
    save_keyfile(path, KEY, None)
    with pytest.raises(KeyfileError, match="already exists"):
        save_keyfile(path, dev_key("other"), None, overwrite=False)
    save_keyfile(path, dev_key("other"), None)
    assert load_keyfile(path, None) == dev_key("other")
    assert [p.name for p in tmp_path.iterdir()] == ["k.json"]  # no temp file left behind
