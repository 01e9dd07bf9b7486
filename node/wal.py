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
        """Replace the whole log with one record that opens a new height."""
        tmp = self._path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(_frame(record))
            f.flush()
            os.fsync(f.fileno())
        self._file.close()
        os.replace(tmp, self._path)
        dir_fd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        self._file = open(self._path, "r+b")
        self._file.seek(0, os.SEEK_END)

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()

    def __iter__(self) -> Iterator[list[Any]]:
        return iter(self._recovered)
