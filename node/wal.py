"""Consensus write-ahead log.

The driver appends every input it feeds the engine, so a restart replays the
same inputs through the same ``handle`` and the engine (deterministic, with
deterministic Ed25519 signatures) reaches the same state and re-derives the
same votes: a restarted validator never signs something conflicting with what
it signed before the crash.  Records carrying our own signed messages are
fsynced before the message leaves the process.

Record framing: ``u32 length | u32 crc32 | payload`` where the payload is a
canonical-encoded ``[kind, ...]`` array.

Damage is told apart by what follows it.  A crash mid-append can only tear
the final record (a short header or payload, or garbage/zeros where it was
going to be), so bytes that hold no whole, checksummed record after the
first bad one are a torn tail: the file is truncated to its last whole
record.  If a whole record does follow the damage (a flipped bit, a lost
sector in the middle), dropping the rest would silently lose fsynced inputs,
possibly our own votes: ``WalCorrupted`` is raised instead and the opener
moves the file aside (renamed, never deleted).  A record that passes its
checksum but does not decode is corruption too, wherever it is.
The log only needs the current height: ``start_height`` rewrites it.

Record payloads are the engine's inputs in a stable wire form
(``event_to_record`` / ``record_to_event``, below).
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from consensus import events as ce
from consensus.messages import decode_message
from node.errors import WalCorrupted
from state.codec import decode, encode
from state.errors import DecodeError
from state.validators import ValidatorSet

log = logging.getLogger("qenex.wal")

# -- records: the engine's inputs ---------------------------------------------

# WAL record kinds: the engine's inputs, in a stable wire form.
_W_HEIGHT = "height"
_W_MSG = "msg"
_W_BUILT = "built"
_W_VALID = "valid"
_W_TIMEOUT = "timeout"


def event_to_record(event: Any) -> list[Any] | None:
    if isinstance(event, ce.HeightStarted):
        return [_W_HEIGHT, event.height, event.validator_set.encode()]
    if isinstance(event, ce.MessageReceived):
        return [_W_MSG, event.message.encode(), event.from_peer]
    if isinstance(event, ce.ProposalBuilt):
        return [_W_BUILT, event.height, event.view, event.block, event.block_hash]
    if isinstance(event, ce.ProposalValidated):
        return [_W_VALID, event.height, event.view, event.block_hash, event.valid, event.reason, event.block_digest]
    if isinstance(event, ce.TimeoutElapsed):
        return [_W_TIMEOUT, event.height, event.view]
    return None  # RebroadcastDue and the like carry no state worth replaying


def record_to_event(record: list[Any]) -> Any:
    kind = record[0]
    if kind == _W_HEIGHT:
        return ce.HeightStarted(record[1], ValidatorSet.decode(record[2]))
    if kind == _W_MSG:
        return ce.MessageReceived(decode_message(record[1]), record[2])
    if kind == _W_BUILT:
        return ce.ProposalBuilt(record[1], record[2], record[3], record[4])
    if kind == _W_VALID:
        # A record written before verdicts named their bytes matches no request
        # (b""): the engine re-asks on the first RebroadcastDue.
        digest = record[6] if len(record) > 6 else b""
        return ce.ProposalValidated(record[1], record[2], record[3], record[4], record[5], block_digest=digest)
    if kind == _W_TIMEOUT:
        return ce.TimeoutElapsed(record[1], record[2])
    raise ValueError(f"unknown WAL record kind {kind!r}")


def height_of_log(records: list[list[Any]]) -> int | None:
    """The height a recovered log is for (its first record starts it), or None."""
    if records and records[0] and records[0][0] == _W_HEIGHT and len(records[0]) > 1:
        height = records[0][1]
        return height if isinstance(height, int) else None
    return None


# -- framing -------------------------------------------------------------------

_HEADER = struct.Struct(">II")
MAX_RECORD = 16 * 1024 * 1024


def _frame(record: list[Any]) -> bytes:
    payload = encode(record)
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


# Looking for a whole record after damage costs at most this many checksummed
# bytes; past it the damage is reported as corruption (the safe answer).
_SCAN_BUDGET_BYTES = 256 * 1024 * 1024
_SECOND_DAMAGE_BUDGET_BYTES = 64 * 1024 * 1024
_ARRAY_MARKERS = np.array([0x90 + n for n in range(1, 16)] + [0xDC, 0xDD], dtype=np.uint8)


_CHUNK = 1 << 20  # offsets examined per vectorised step (bounded memory)


def _u32_at(raw: np.ndarray, at: np.ndarray) -> np.ndarray:
    """Big-endian u32 at each offset in ``at`` (each must have 4 bytes after it)."""
    return ((raw[at].astype(np.int64) << 24) | (raw[at + 1].astype(np.int64) << 16)
            | (raw[at + 2].astype(np.int64) << 8) | raw[at + 3].astype(np.int64))


def _whole_record_after(data: bytes, start: int) -> int | None:
    """Offset of a whole, checksummed frame beginning after ``start``, if any.

    Vectorised over every offset: a candidate's length must fit the file,
    its payload must start like an array, and what follows it must be the
    end of the file, a short (torn) header, or another plausible header.
    Only the few survivors get their CRC checked, so the bytes of a torn
    multi-MiB record cost milliseconds; the other candidates come last.  Returns ``-1`` when the CRC budget
    ran out before an answer (treated as "yes": corruption is the safe call).
    """
    n = len(data)
    last = n - _HEADER.size - 1  # a frame needs its header and at least one payload byte
    raw = np.frombuffer(data, dtype=np.uint8)
    spent = 0
    others: list[np.ndarray] = []
    for first in range(start + 1, last + 1, _CHUNK):
        offsets = np.arange(first, min(first + _CHUNK, last + 1), dtype=np.int64)
        lengths = _u32_at(raw, offsets)
        ends = offsets + _HEADER.size + lengths
        keep = (lengths >= 1) & (lengths <= MAX_RECORD) & (ends <= n)
        offsets, lengths, ends = offsets[keep], lengths[keep], ends[keep]
        keep = np.isin(raw[offsets + _HEADER.size], _ARRAY_MARKERS)
        offsets, lengths, ends = offsets[keep], lengths[keep], ends[keep]
        followed = ends + _HEADER.size >= n  # the end, or a torn header / empty payload after it
        inner = ~followed
        if inner.any():
            nxt = ends[inner]
            nxt_len = _u32_at(raw, nxt)
            followed[inner] = ((nxt_len >= 1) & (nxt_len <= MAX_RECORD)
                               & np.isin(raw[nxt + _HEADER.size], _ARRAY_MARKERS))
        for offset, length in zip(offsets[followed].tolist(), lengths[followed].tolist()):
            spent += length
            if spent > _SCAN_BUDGET_BYTES:
                return -1
            if _checksummed(data, offset, length):
                return offset
        others.append(np.stack([lengths[~followed], offsets[~followed]]))
    # A whole record followed by a second damage (its next header is hit too):
    # shortest first, within a smaller budget.  Running out here means the
    # bytes look like one torn record, the common case, so it is not refused.
    spent = 0
    if others:
        rest = np.concatenate(others, axis=1)
        for length, offset in rest[:, np.argsort(rest[0], kind="stable")].T.tolist():
            spent += length
            if spent > _SECOND_DAMAGE_BUDGET_BYTES:
                log.warning("wal: stopped looking for whole records after damage at byte %d", start)
                return None
            if _checksummed(data, offset, length):
                return offset
    return None


def _checksummed(data: bytes, offset: int, length: int) -> bool:
    body = offset + _HEADER.size
    return zlib.crc32(data[body:body + length]) == _HEADER.unpack_from(data, offset)[1]


def read_records(path: Path) -> tuple[list[list[Any]], int]:
    """All whole records of ``path`` and the byte offset where they end.

    Raises WalCorrupted (and changes nothing) if damage is followed by a
    whole record, or a checksummed record does not decode.
    """
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    records: list[list[Any]] = []
    offset = 0
    while offset < len(data):
        problem = None
        if offset + _HEADER.size > len(data):
            problem = "short header"
        else:
            length, crc = _HEADER.unpack_from(data, offset)
            start = offset + _HEADER.size
            end = start + length
            if length == 0:
                problem = "zero length"  # never written (a payload is at least one byte): zeros of a torn tail
            elif length > MAX_RECORD:
                problem = f"length {length} exceeds {MAX_RECORD}"
            elif end > len(data):
                problem = f"length {length} runs past the end of the file"
            elif zlib.crc32(data[start:end]) != crc:
                problem = "checksum mismatch"
        if problem is not None:
            after = _whole_record_after(data, offset)
            if after is not None:
                found = "a whole record" if after < 0 else f"a whole record at byte {after}"
                raise WalCorrupted(path, offset, f"{problem}, and {found} follows")
            break
        payload = data[start:end]
        try:
            record = decode(payload, max_bytes=MAX_RECORD)
        except DecodeError as exc:
            raise WalCorrupted(path, offset, f"record passed its checksum but does not decode: {exc}") from None
        if not isinstance(record, list) or not record:
            raise WalCorrupted(path, offset, "record is not a non-empty array")
        records.append(record)
        offset = end
    if offset != len(data):
        log.warning("wal %s: ignoring %d torn bytes at the end", path, len(data) - offset)
    return records, offset


def move_aside(path: Path) -> Path:
    """Rename a damaged log to ``NAME.corrupt-N`` (the first N not taken); never deletes."""
    for n in range(1, 10_000):
        target = path.with_name(f"{path.name}.corrupt-{n}")
        if not target.exists() and not target.is_symlink():
            os.rename(path, target)
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
            return target
    raise OSError(f"cannot move {path} aside: 9999 earlier copies exist")


class WriteAheadLog:
    def __init__(self, path: Path) -> None:
        self._path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            records, end = read_records(path)
        except WalCorrupted as exc:
            # Stop with the damaged file kept for inspection; a restart then
            # begins this height afresh (the sign guard keeps us from signing
            # anything that conflicts with what the lost records held).
            raise WalCorrupted(path, exc.offset, exc.reason, moved_to=move_aside(path)) from None
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

    def quarantine(self) -> Path:
        """Close and move the log aside (a record that cannot be replayed); returns the new path."""
        self.close()
        return move_aside(self._path)

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
