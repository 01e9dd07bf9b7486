"""Consensus write-ahead log.

The driver appends every input it feeds the engine, so a restart replays the
same inputs through the same ``handle`` and the engine (deterministic, with
deterministic Ed25519 signatures) reaches the same state and re-derives the
same votes: a restarted validator never signs something conflicting with what
it signed before the crash.  Records carrying our own signed messages are
fsynced before the message leaves the process.

Record framing: ``u32 length | u32 crc32 | payload`` where the payload is a
canonical-encoded ``[kind, ...]`` array.  A torn record at the end (a crash
mid-write) ends the log; the file is truncated to its last whole record.
The log only needs the current height: ``start_height`` rewrites it.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

from node.errors import WalError
from state.codec import decode, encode
from state.errors import DecodeError

log = logging.getLogger("qenex.wal")

_HEADER = struct.Struct(">II")
MAX_RECORD = 16 * 1024 * 1024


def _frame(record: list[Any]) -> bytes:
    payload = encode(record)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_records(path: Path) -> tuple[list[list[Any]], int]:
    """All whole records of ``path`` and the byte offset where they end."""
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    records: list[list[Any]] = []
    offset = 0
    while offset + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, offset)
        start = offset + _HEADER.size
        end = start + length
        if length > MAX_RECORD or end > len(data):
            break
        payload = data[start:end]
        if zlib.crc32(payload) != crc:
            break
        try:
            record = decode(payload, max_bytes=MAX_RECORD)
        except DecodeError as exc:
            raise WalError(f"{path}: record at byte {offset} passed its checksum but does not decode: {exc}") from exc
        if not isinstance(record, list) or not record:
            raise WalError(f"{path}: record at byte {offset} is not a non-empty array")
        records.append(record)
        offset = end
    if offset != len(data):
        log.warning("wal %s: ignoring %d torn bytes at the end", path, len(data) - offset)
    return records, offset


class WriteAheadLog:
    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        records, end = read_records(path)
        self._recovered = records
        self._file = open(path, "r+b" if path.exists() else "w+b")
        self._file.truncate(end)
        self._file.seek(end)
        # Descriptors for the next height change, held from now on: a process
        # out of descriptors (EMFILE, whatever exhausted them) still finalizes.
        self._tmp = path.with_suffix(".tmp")
        self._dir_fd = os.open(path.parent, os.O_RDONLY)
        self._spare = self._open_spare()

    def _open_spare(self) -> Any:
        try:
            return open(self._tmp, "w+b")
        except OSError as exc:
            log.warning("wal %s: cannot open %s ahead of the next height (%s); will retry", self._path, self._tmp, exc)
            return None

    def recovered(self) -> list[list[Any]]:
        """The records found on open (empty for a new log)."""
        return list(self._recovered)

    def append(self, record: list[Any], *, sync: bool = False) -> None:
        self._file.write(_frame(record))
        self._file.flush()
        if sync:
            os.fsync(self._file.fileno())

    def sync(self) -> None:
        self._file.flush()
        os.fsync(self._file.fileno())

    def start_height(self, record: list[Any]) -> None:
        """Replace the whole log with one record that opens a new height.

        The record goes to the temporary file opened ahead of time, which is
        fsynced and renamed over the log (atomic), so a height change opens
        no file.  Only if the spare could not be opened, now or at the last
        change (descriptors exhausted twice running), is the log rewritten in
        place through its own descriptor, rather than halting the node.
        """
        framed = _frame(record)
        spare = self._spare or self._open_spare()
        self._spare = None
        if spare is None:
            log.warning("wal %s: no descriptor for a new file; rewriting the log in place", self._path)
            self._file.seek(0)
            self._file.truncate()
            self._file.write(framed)
            self._file.flush()
            os.fsync(self._file.fileno())
            return
        spare.write(framed)
        spare.flush()
        os.fsync(spare.fileno())
        os.replace(self._tmp, self._path)
        os.fsync(self._dir_fd)
        self._file.close()
        self._file = spare
        self._spare = self._open_spare()

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._spare is not None:
            self._spare.close()
            self._spare = None
            self._tmp.unlink(missing_ok=True)
        if self._dir_fd >= 0:
            os.close(self._dir_fd)
            self._dir_fd = -1

    def __iter__(self) -> Iterator[list[Any]]:
        return iter(self._recovered)
