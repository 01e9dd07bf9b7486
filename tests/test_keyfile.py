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


# -- hygiene (issue 7, finding 9) ------------------------------------------------------


def test_a_stale_world_readable_temp_file_does_not_make_the_key_readable(tmp_path):
    import os
    import stat

    path = tmp_path / "k.json"
    stale = tmp_path / ".k.json.tmp"  # the old fixed temp name, left 0644 by someone
    stale.write_text("stale")
    os.chmod(stale, 0o644)
    (tmp_path / "elsewhere").write_text("")
    os.symlink(tmp_path / "elsewhere", tmp_path / ".k.json.link.tmp")
    save_keyfile(path, KEY, None)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert (tmp_path / "elsewhere").read_text() == "" and stale.read_text() == "stale"
    assert load_keyfile(path, None) == KEY


def test_a_planted_symlink_at_the_temp_name_is_not_followed(tmp_path, monkeypatch):
    import os

    import state.keyfile as keyfile

    victim = tmp_path / "victim"
    victim.write_text("precious")
    monkeypatch.setattr(keyfile.nacl.utils, "random", lambda n: b"\x00" * n)  # a predictable temp name
    os.symlink(victim, tmp_path / f".k.json.{'00' * 8}.tmp")
    with pytest.raises(KeyfileError, match="cannot write"):
        save_keyfile(tmp_path / "k.json", KEY, None)
    assert victim.read_text() == "precious"


@pytest.mark.parametrize("field, value", [("opslimit", 1), ("memlimit", 8192)])
def test_weak_kdf_limits_are_refused_on_load(encrypted, field, value):
    doc = json.loads(encrypted.read_text())
    doc["crypto"][field] = value
    encrypted.write_text(json.dumps(doc))
    with pytest.raises(KeyfileError, match=f"{field} {value} is below the minimum"):
        load_keyfile(encrypted, "correct horse")


def test_a_short_password_is_refused_for_a_new_key(tmp_path):
    from state.errors import WeakPassword

    with pytest.raises(WeakPassword, match="at least 8 characters, got 1"):
        save_keyfile(tmp_path / "k.json", KEY, "a", **FAST)
    assert not (tmp_path / "k.json").exists()


def test_warnings_name_unencrypted_and_readable_keys(tmp_path, encrypted):
    import os

    from state.keyfile import keyfile_warnings

    assert keyfile_warnings(encrypted) == []
    dev = tmp_path / "dev.json"
    save_keyfile(dev, KEY, None)
    assert [w for w in keyfile_warnings(dev) if "UNENCRYPTED" in w]
    os.chmod(encrypted, 0o644)
    assert [w for w in keyfile_warnings(encrypted) if "mode 0644" in w]
