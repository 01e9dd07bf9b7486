"""A tamper-evident audit log: append-only JSON lines, hash-chained and signed.

One file per home (a node's ``data/audit.log``, a remote signer's
``audit.log``).  Every line is one entry, written in canonical JSON (keys
sorted, no spaces, ASCII) so its bytes are a function of its content::

    {"action": "admin_ban", "actor": "127.0.0.1", "outcome": {...}, "params": {...},
     "prev_hash": "0x<sha256 of the previous line>", "seq": 7, "sig": "0x<ed25519>", "time_ms": ...}

* ``seq`` counts from 1 with no gap; ``prev_hash`` is SHA-256 of the previous
  line's bytes (without its newline); the first entry's is SHA-256 of
  ``GENESIS_DOMAIN`` + the signing public key, which binds the log to its key.
* ``sig`` is the home key's Ed25519 signature over
  ``domain_digest(SIGN_DOMAIN, canonical bytes of the entry without sig)``:
  the audit domain differs from every consensus domain, so an audit signature
  can never be replayed as a vote.
* Entries never carry a secret: callers pass a params *summary* (the admin API
  takes its token and TOTP code from headers, which are never logged).

Each append is written with one ``write`` and fsynced before ``append``
returns.  Editing, deleting or reordering an entry breaks the chain or a
signature at that entry, and ``verify`` names it (seq and line).  What a
hash chain cannot show: an entry cut off at the *end* of the log on a line
boundary.  ``verify`` prints the last seq and head hash so an operator can
anchor them elsewhere.

A torn final line (no newline: a crash inside an append) is reported by
``verify`` as a torn tail (its own status, not "tampered").  Opening the log
for appending cuts the torn bytes off and appends an ``audit_torn_tail``
entry recording how many bytes were cut and their SHA-256, so the repair is
itself in the chain.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from node.errors import NodeError
from state.crypto import PrivateKey, domain_digest, verify

SIGN_DOMAIN = b"QENEX/audit/v1"
GENESIS_DOMAIN = b"QENEX/audit-genesis/v1"
# An entry's params summary and outcome are bounded by the callers; a line over this is not ours.
MAX_LINE_BYTES = 16 * 1024
AUDIT_FILE_NAME = "audit.log"
FIELDS = ("action", "actor", "outcome", "params", "prev_hash", "seq", "sig", "time_ms")


class AuditError(NodeError):
    """The audit log cannot be opened or written."""


def canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("ascii")


def genesis_hash(public_key: bytes) -> str:
    return "0x" + hashlib.sha256(GENESIS_DOMAIN + public_key).hexdigest()


def line_hash(line: bytes) -> str:
    return "0x" + hashlib.sha256(line).hexdigest()


def _signing_digest(entry: dict[str, Any]) -> bytes:
    return domain_digest(SIGN_DOMAIN, canonical({k: v for k, v in entry.items() if k != "sig"}))


class AuditLog:
    """Appends signed, chained entries to one file; safe to call from several threads."""

    def __init__(self, path: Path, key: PrivateKey, *, clock_ms: Any = None) -> None:
        self.path = Path(path)
        self._key = key
        self._clock_ms = clock_ms or (lambda: time.time_ns() // 1_000_000)
        self._lock = threading.Lock()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.seq, self.head = self._open_tail()

    def _open_tail(self) -> tuple[int, str]:
        """The last entry's seq and line hash; cuts a torn final line off (and records that)."""
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return 0, genesis_hash(self._key.public_key)
        with open(self.path, "rb") as f:
            start = max(0, size - 2 * MAX_LINE_BYTES - 2)
            f.seek(start)
            tail = f.read()
        torn = b""
        if tail and not tail.endswith(b"\n"):
            cut = tail.rfind(b"\n") + 1  # 0 when the whole tail is one torn line
            if cut == 0 and start > 0:
                raise AuditError(f"audit log {self.path}: its last {len(tail)} bytes hold no line end; "
                                 "not an audit log written by qenexd (inspect it with `qenexd audit verify`)")
            torn, tail = tail[cut:], tail[:cut]
        lines = tail.split(b"\n")[:-1] if tail else []
        if start > 0:
            lines = lines[1:]  # the first piece may be the end of a longer line
        if not lines and (start > 0 or (size - len(torn)) > 0):
            raise AuditError(f"audit log {self.path}: no whole entry near its end")
        if lines:
            last = lines[-1]
            try:
                doc = json.loads(last)
                seq = doc["seq"]
                if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
                    raise ValueError(f"seq {seq!r}")
            except (ValueError, KeyError, TypeError) as exc:
                raise AuditError(f"audit log {self.path}: its last line is not an audit entry ({exc}); "
                                 "run `qenexd audit verify` and move the file aside to start a new log") from None
            state = (seq, line_hash(last))
        else:
            state = (0, genesis_hash(self._key.public_key))
        if torn:
            with open(self.path, "r+b") as f:
                f.truncate(size - len(torn))
                f.flush()
                os.fsync(f.fileno())
            self.seq, self.head = state
            self.append("audit", "audit_torn_tail", {"bytes_cut": len(torn),
                                                     "sha256": "0x" + hashlib.sha256(torn).hexdigest()},
                        {"status": "repaired"})
            return self.seq, self.head
        return state

    @property
    def public_key(self) -> bytes:
        return self._key.public_key

    def append(self, actor: str, action: str, params: dict[str, Any], outcome: dict[str, Any]) -> int:
        """Write one entry and fsync it; returns its seq.  Raises AuditError if it could not be written."""
        with self._lock:
            entry: dict[str, Any] = {"seq": self.seq + 1, "time_ms": int(self._clock_ms()), "actor": actor,
                                     "action": action, "params": params, "outcome": outcome,
                                     "prev_hash": self.head}
            entry["sig"] = "0x" + self._key.sign(_signing_digest(entry)).hex()
            line = canonical(entry)
            if len(line) > MAX_LINE_BYTES:
                raise AuditError(f"audit entry for {action} is {len(line)} bytes, over {MAX_LINE_BYTES}")
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
            try:
                fd = os.open(self.path, flags, 0o600)
                try:
                    os.write(fd, line + b"\n")  # one write: O_APPEND keeps it whole at the end
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                raise AuditError(f"cannot append to audit log {self.path}: {exc}") from exc
            self.seq, self.head = entry["seq"], line_hash(line)
            return self.seq


# -- verification --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifyReport:
    entries: int  # whole entries verified
    head: str  # hash of the last verified line (the genesis hash for an empty log)
    broken_line: int | None = None  # 1-based line of the first broken entry
    broken_seq: int | None = None  # its seq when it had one
    reason: str = ""
    torn_tail: int = 0  # bytes of an unterminated final line (a crash during an append)

    @property
    def ok(self) -> bool:
        return self.broken_line is None and not self.torn_tail

    def describe(self) -> str:
        if self.broken_line is not None:
            seq = f"seq {self.broken_seq}" if self.broken_seq is not None else "no readable seq"
            return (f"BROKEN at line {self.broken_line} ({seq}): {self.reason}; "
                    f"{self.entries} entries before it verify")
        if self.torn_tail:
            return (f"TORN TAIL: {self.entries} entries verify, then {self.torn_tail} bytes of an unfinished "
                    "line (a crash during an append; the node cuts it and records that at its next start)")
        return f"ok: {self.entries} entries verify, head {self.head}"


def read_lines(path: Path) -> Iterator[tuple[int, bytes, bool]]:
    """(1-based line number, bytes without newline, terminated) for each line of the file."""
    with open(path, "rb") as f:
        number = 0
        for raw in f:
            number += 1
            terminated = raw.endswith(b"\n")
            yield number, raw[:-1] if terminated else raw, terminated


def verify_log(path: Path, public_key: bytes) -> VerifyReport:
    """Check every entry's form, seq, chain link and signature, in order; stops at the first broken one."""
    head = genesis_hash(public_key)
    entries = 0
    if not path.exists():
        return VerifyReport(0, head)
    for number, line, terminated in read_lines(path):
        if not terminated:
            return VerifyReport(entries, head, torn_tail=len(line)) if line else VerifyReport(entries, head)
        seq: int | None = None
        try:
            doc = json.loads(line)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            raw_seq = doc.get("seq")
            seq = raw_seq if isinstance(raw_seq, int) and not isinstance(raw_seq, bool) else None
        except ValueError as exc:
            return VerifyReport(entries, head, number, None, f"not JSON ({str(exc)[:80]})")
        reason = _entry_fault(doc, line, entries + 1, head, public_key)
        if reason:
            return VerifyReport(entries, head, number, seq, reason)
        entries += 1
        head = line_hash(line)
    return VerifyReport(entries, head)


def _entry_fault(doc: dict[str, Any], line: bytes, want_seq: int, want_prev: str, public_key: bytes) -> str:
    if tuple(sorted(doc)) != FIELDS:
        return f"fields {sorted(doc)} are not {list(FIELDS)}"
    if canonical(doc) != line:
        return "not in canonical form (the line was re-written)"
    if doc["seq"] != want_seq:
        return f"seq {doc['seq']!r} where {want_seq} was due (an entry was deleted, inserted or moved)"
    if doc["prev_hash"] != want_prev:
        return "prev_hash does not match the previous line (an entry before it was edited, deleted or moved)"
    try:
        signature = bytes.fromhex(str(doc["sig"]).removeprefix("0x"))
    except ValueError:
        return "sig is not hex"
    if not verify(public_key, _signing_digest(doc), signature):
        return "signature does not verify with the home's key (the entry was edited)"
    return ""


def export_entries(path: Path) -> Iterator[dict[str, Any] | str]:
    """Each line's entry (a dict), or the raw text of a line that is not JSON."""
    if not path.exists():
        return
    for _, line, _ in read_lines(path):
        try:
            yield json.loads(line)
        except ValueError:
            yield line.decode("utf-8", "replace")
