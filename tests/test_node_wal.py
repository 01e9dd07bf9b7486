"""The consensus WAL: records survive reopen; a torn tail is dropped, not fatal."""

import pytest

from node.errors import WalError
from node.wal import WriteAheadLog, read_records


def test_records_survive_reopen(tmp_path):
    path = tmp_path / "wal"
    wal = WriteAheadLog(path)
    wal.start_height(["height", 5, b"vset"])
    wal.append(["msg", b"\x01\x02", "peer"])
    wal.append(["timeout", 5, 0], sync=True)
    wal.close()
    again = WriteAheadLog(path)
    assert again.recovered() == [["height", 5, b"vset"], ["msg", b"\x01\x02", "peer"], ["timeout", 5, 0]]
    again.close()


def test_torn_tail_is_truncated_and_log_stays_appendable(tmp_path):
    path = tmp_path / "wal"
    wal = WriteAheadLog(path)
    wal.start_height(["height", 1, b""])
    wal.append(["timeout", 1, 0])
    wal.close()
    whole = path.stat().st_size
    with open(path, "ab") as f:
        f.write(b"\x00\x00\x00\x10\x00\x00")  # a crash mid-header
    wal = WriteAheadLog(path)
    assert wal.recovered() == [["height", 1, b""], ["timeout", 1, 0]]
    assert path.stat().st_size == whole
    wal.append(["timeout", 1, 1])
    wal.close()
    assert read_records(path)[0][-1] == ["timeout", 1, 1]


def test_corrupted_record_ends_the_log(tmp_path):
    path = tmp_path / "wal"
    wal = WriteAheadLog(path)
    wal.start_height(["height", 1, b""])
    wal.append(["timeout", 1, 0])
    wal.close()
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF  # flip a payload bit of the last record: its CRC no longer matches
    path.write_bytes(bytes(data))
    assert read_records(path)[0] == [["height", 1, b""]]


def test_start_height_replaces_the_log(tmp_path):
    path = tmp_path / "wal"
    wal = WriteAheadLog(path)
    wal.start_height(["height", 1, b""])
    wal.append(["timeout", 1, 0])
    wal.start_height(["height", 2, b""])
    wal.close()
    assert read_records(path)[0] == [["height", 2, b""]]


def test_record_that_passes_crc_but_is_not_canonical_is_an_error(tmp_path):
    import struct
    import zlib

    payload = b"\xcc\x01"  # non-canonical msgpack for 1
    path = tmp_path / "wal"
    path.write_bytes(struct.pack(">II", len(payload), zlib.crc32(payload)) + payload)
    with pytest.raises(WalError):
        read_records(path)
