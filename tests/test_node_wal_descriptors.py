"""The consensus WAL keeps finalizing when the process is out of descriptors (issue 7, finding 1).

Idle RPC connections used to exhaust the descriptors, and the next height's
``open`` of the WAL's temporary file raised OSError(24), killing the driver.
"""

import contextlib
import errno
import os
import resource

import pytest

from node.wal import WriteAheadLog, read_records


@contextlib.contextmanager
def descriptors_exhausted():
    """Lower the soft RLIMIT_NOFILE just above what is open and fill it (restored after)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    highest = max(int(fd) for fd in os.listdir("/proc/self/fd"))
    resource.setrlimit(resource.RLIMIT_NOFILE, (highest + 16, hard))
    held = []
    try:
        while True:
            try:
                held.append(os.open("/dev/null", os.O_RDONLY))
            except OSError as exc:
                assert exc.errno == errno.EMFILE
                break
        yield
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_height_changes_need_no_new_descriptor(tmp_path):
    path = tmp_path / "consensus.wal"
    wal = WriteAheadLog(path)
    wal.start_height(["height", 1, b"vset"])
    with descriptors_exhausted():
        with pytest.raises(OSError):  # the process really is out of descriptors
            open(tmp_path / "probe", "wb")
        for height in (2, 3, 4):  # the spare, then the in-place fallback twice
            wal.start_height(["height", height, b"vset"])
            wal.append(["timeout", height, 0], sync=True)
    assert read_records(path)[0] == [["height", 4, b"vset"], ["timeout", 4, 0]]
    wal.start_height(["height", 5, b"vset"])  # descriptors back: the atomic rename path again
    wal.close()
    again = WriteAheadLog(path)
    assert again.recovered() == [["height", 5, b"vset"]]
    again.close()
    assert not (tmp_path / "consensus.tmp").exists()
