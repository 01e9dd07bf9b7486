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


# -- damage before the end (issue 7, finding 6) ---------------------------------


def _three_records(path):
    wal = WriteAheadLog(path)
    wal.start_height(["height", 1, b"vset"])
    wal.append(["msg", b"\x01" * 40, "peer"], sync=True)  # think: our own fsynced vote
    wal.append(["timeout", 1, 0], sync=True)
    wal.close()
    return path.read_bytes()


def _frame_offsets(data):
    import struct

    offsets, offset = [], 0
    while offset < len(data):
        offsets.append(offset)
        offset += 8 + struct.unpack_from(">I", data, offset)[0]
    return offsets


@pytest.mark.parametrize("where", ["payload", "length", "crc"])
def test_a_flipped_bit_mid_log_stops_with_the_file_moved_aside(tmp_path, where):
    from node.errors import WalCorrupted

    path = tmp_path / "wal"
    data = bytearray(_three_records(path))
    second = _frame_offsets(bytes(data))[1]
    data[second + {"payload": 12, "length": 1, "crc": 5}[where]] ^= 0x04
    path.write_bytes(bytes(data))
    # read-only reader: refuses, changes nothing (the old code returned one record)
    with pytest.raises(WalCorrupted, match=f"byte {second}"):
        read_records(path)
    assert path.read_bytes() == bytes(data)
    # the opener moves it aside (never deletes) and says where, in one line
    with pytest.raises(WalCorrupted) as err:
        WriteAheadLog(path)
    assert "\n" not in str(err.value) and "moved aside" in str(err.value)
    assert not path.exists()
    assert err.value.moved_to.read_bytes() == bytes(data)
    fresh = WriteAheadLog(path)  # a restart begins afresh
    assert fresh.recovered() == []
    fresh.close()


def test_damaged_final_record_and_junk_are_still_repaired(tmp_path):
    path = tmp_path / "wal"
    data = _three_records(path)
    last = _frame_offsets(data)[2]
    for tail in (data[: last + 5], data[:-3], data + b"\x00" * 100, data + b"\xffjunk" * 7,
                 data[:last] + bytes(len(data) - last)):  # zeros where the last record was going
        path.write_bytes(tail)
        wal = WriteAheadLog(path)
        assert wal.recovered()[:2] == [["height", 1, b"vset"], ["msg", b"\x01" * 40, "peer"]]
        wal.close()


def test_two_wholly_damaged_frames_before_a_good_one_are_corruption(tmp_path):
    from node.errors import WalCorrupted

    path = tmp_path / "wal"
    data = _three_records(path)
    second, third = _frame_offsets(data)[1:]
    path.write_bytes(data[:second] + b"\xee" * (third - second) + data[third:])
    with pytest.raises(WalCorrupted, match="whole record"):
        read_records(path)


async def test_an_unreplayable_record_is_one_line_and_moved_aside(tmp_path):
    from node.errors import WalError
    from tests.test_node_driver import Harness, KEYS
    from state.kv import MemoryKV

    path = tmp_path / "wal"
    wal = WriteAheadLog(path)
    wal.start_height(["height", 1, b"not a validator set"])  # checksummed, decodes, cannot be replayed
    wal.close()
    h = Harness(KEYS[0], MemoryKV(), path)
    with pytest.raises(WalError) as err:
        h.driver.start()
    message = str(err.value)
    assert "cannot be replayed" in message and "\n" not in message and "moved aside" in message
    assert not path.exists() and (tmp_path / "wal.corrupt-1").exists()


def test_a_torn_multi_megabyte_record_is_repaired_not_refused(tmp_path):
    """Its random bytes hold many length fields that fit the file; none may
    pass for a whole record (an early scan ran out of budget and refused)."""
    import random

    path = tmp_path / "wal"
    wal = WriteAheadLog(path)
    wal.start_height(["height", 1, b"vset"])
    wal.append(["msg", random.Random(7).randbytes(4 * 1024 * 1024), "peer"])
    wal.close()
    data = path.read_bytes()
    path.write_bytes(data[:-1000])
    wal = WriteAheadLog(path)
    assert wal.recovered() == [["height", 1, b"vset"]]
    wal.close()
