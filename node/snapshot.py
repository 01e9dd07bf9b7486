"""State snapshots: write, verify and restore a node's LevelDB store at one height.

A snapshot is every record of the state store (state keys, blocks,
receipts, indexes, certificates, validator sets, meta) read from one LevelDB
snapshot (``LevelDBKV.snapshot``: a consistent point-in-time view, never a
copy of live files), so it holds exactly one committed height.  The file::

    "QNXSNAP\\x01"                                  8 bytes, format version 1
    record*    u16 key length (1..1024) | key | u32 value length (0..64 MiB) | value
               keys strictly increasing (LevelDB order)
    00 00      end of records (a zero key length)
    manifest   canonical JSON (sorted keys, no spaces), at most 64 KiB
    u32        manifest length
    "QNXSNAPE"                                      8 bytes

The *content* is everything before the manifest (header, records, end);
the manifest names ``format``, ``chain_id``, ``genesis_hash``, ``height``,
``block_hash``, ``app_hash``, ``key_count``, ``content_bytes``,
``content_sha256`` and ``created_ms`` (wall clock, informational).  Integers
are big-endian.  A file is written to a temp file beside the target, fsynced,
renamed and the directory fsynced: a crash leaves the old file or the new one.

``verify_snapshot`` checks, in order: the footer and manifest (a cut file
has no footer: ``SnapshotTruncated``), the content's length and SHA-256
(``SnapshotCorrupt``), every record's bounds and order, that the records'
genesis, chain id and head (height, block hash, app hash) are the manifest's,
and then recomputes the app hash the only way it can be: the app hash is a
hash chain over each block's writes (``app_hash_h = H(app_hash_{h-1}, h,
writes_h)``), not a digest of the state, so the stored blocks 1..S are
re-executed from the snapshot's genesis in a scratch store, each block's
certificate checked against the validator set the replay derived
(``BlockExecutor.apply_synced``), and every record of the result compared
with the snapshot's.  A snapshot that passes is exactly the store an honest
node holds at S given that genesis; ``restore`` adds that the genesis is the
home's.  Replay costs about as much as syncing S blocks.

``restore_snapshot`` never changes the home before the new store is
complete and verified: it is built in ``data/.state-restore-*`` beside the
store, then swapped in by renames.  Its rules are in its docstring and the
README's *Snapshots* section.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import struct
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from consensus.verify import CertificateVerifier
from node.blocks import BlockExecutor
from node.config import Home
from node.errors import ConfigError, NodeError, StartRefused, WalCorrupted
from node.homecheck import marker_doc, probe_application, read_sign_height, restore_floor
from node.restore_swap import RestoreSwapError, SwapPlan, finish_interrupted, fsync_dir, store_location, swap
from node.wal import height_of_log, read_records
from state import keys
from state.app import Application
from state.codec import decode
from state.errors import StateError, StoreError, StoreNotFound
from state.genesis import Genesis
from state.history import DEFAULT_HISTORY_BLOCKS
from state.kv import LevelDBKV

FORMAT_VERSION = 1
MAGIC = b"QNXSNAP\x01"
FOOTER_MAGIC = b"QNXSNAPE"
MAX_KEY_BYTES = 1024
MAX_VALUE_BYTES = 64 * 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024
_TRAILER = struct.Struct(">I")  # manifest length, before FOOTER_MAGIC
_KEY_LEN = struct.Struct(">H")
_VALUE_LEN = struct.Struct(">I")
_END = _KEY_LEN.pack(0)
_BATCH_BYTES = 4 * 1024 * 1024  # records per LevelDB write batch while loading
_ABORT_EVERY = 1024  # records between checks of the abort flag
SUFFIX = ".qsnap"
RESTORE_PREFIX = ".state-restore-"

_MANIFEST_FIELDS: dict[str, type] = {
    "format": int, "chain_id": str, "genesis_hash": str, "height": int, "block_hash": str, "app_hash": str,
    "key_count": int, "content_bytes": int, "content_sha256": str, "created_ms": int,
}


class SnapshotError(NodeError):
    """Root of the snapshot errors; each message names the file and what is wrong."""


class SnapshotTruncated(SnapshotError):
    """The file ends early (or is not a snapshot at all): no footer, or shorter than its manifest says."""


class SnapshotCorrupt(SnapshotError):
    """The content does not hash to the manifest's, a record is malformed, or replay disagrees."""


class SnapshotMismatch(SnapshotError):
    """A good snapshot of another chain (chain id or genesis) than the home's."""


class SnapshotRefused(SnapshotError):
    """A request that cannot be met: a non-empty home without --force, a height out of range, a store in use."""


class StoreInUse(SnapshotRefused):
    """A node's store is open in a running node (its LevelDB LOCK is held)."""


class SnapshotAborted(SnapshotError):
    """The node stopped while a snapshot was being written (the temp file is removed)."""


@dataclass(frozen=True, slots=True)
class Manifest:
    format: int
    chain_id: str
    genesis_hash: bytes
    height: int
    block_hash: bytes
    app_hash: bytes
    key_count: int
    content_bytes: int
    content_sha256: bytes
    created_ms: int

    def to_json_obj(self) -> dict[str, Any]:
        return {
            "format": self.format, "chain_id": self.chain_id, "genesis_hash": "0x" + self.genesis_hash.hex(),
            "height": self.height, "block_hash": "0x" + self.block_hash.hex(), "app_hash": "0x" + self.app_hash.hex(),
            "key_count": self.key_count, "content_bytes": self.content_bytes,
            "content_sha256": self.content_sha256.hex(), "created_ms": self.created_ms,
        }

    def encode(self) -> bytes:
        return json.dumps(self.to_json_obj(), sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def parse(cls, raw: bytes, where: str) -> "Manifest":
        try:
            doc = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise SnapshotCorrupt(f"{where}: the manifest is not JSON: {exc}") from None
        if not isinstance(doc, dict) or set(doc) != set(_MANIFEST_FIELDS):
            got = sorted(doc) if isinstance(doc, dict) else type(doc).__name__
            raise SnapshotCorrupt(f"{where}: the manifest's fields are {got}, expected {sorted(_MANIFEST_FIELDS)}")
        for name, kind in _MANIFEST_FIELDS.items():
            if not isinstance(doc[name], kind) or isinstance(doc[name], bool):
                raise SnapshotCorrupt(f"{where}: manifest {name} must be {kind.__name__}, got {doc[name]!r:.80}")
        if doc["format"] != FORMAT_VERSION:
            raise SnapshotCorrupt(f"{where}: snapshot format {doc['format']} is not the supported {FORMAT_VERSION}")

        def hex32(name: str, prefix: str) -> bytes:
            text = doc[name]
            try:
                value = bytes.fromhex(text[len(prefix):]) if text.startswith(prefix) else b""
            except ValueError:
                value = b""
            if len(value) != 32:
                raise SnapshotCorrupt(f"{where}: manifest {name} {text!r:.80} is not a {prefix}hex 32-byte hash")
            return value

        for name in ("height", "key_count", "content_bytes"):
            if doc[name] < 0:
                raise SnapshotCorrupt(f"{where}: manifest {name} is negative: {doc[name]}")
        return cls(doc["format"], doc["chain_id"], hex32("genesis_hash", "0x"), doc["height"],
                   hex32("block_hash", "0x"), hex32("app_hash", "0x"), doc["key_count"], doc["content_bytes"],
                   hex32("content_sha256", ""), doc["created_ms"])


# -- writing -------------------------------------------------------------------


def _head_of(source: Any, where: str) -> tuple[int, bytes, bytes, bytes, str]:
    """(height, block hash, app hash, genesis hash, chain id) from a store's own records."""
    raw_head, genesis_hash, raw_genesis = (source.get(k) for k in (keys.META_HEAD, keys.META_GENESIS_HASH,
                                                                   keys.META_GENESIS))
    if raw_head is None or genesis_hash is None or raw_genesis is None:
        raise SnapshotError(f"{where} holds no initialised chain (head or genesis record missing)")
    try:
        _, height, block_hash, app_hash, _ = decode(raw_head)
        genesis = Genesis.decode(raw_genesis)
    except (StateError, ValueError, TypeError) as exc:
        raise SnapshotCorrupt(f"{where}: the head or genesis record is unreadable: {exc}") from None
    if genesis.hash != genesis_hash:
        raise SnapshotCorrupt(f"{where}: the genesis record does not hash to the stored genesis hash")
    return height, bytes(block_hash), bytes(app_hash), bytes(genesis_hash), genesis.chain_id


def write_snapshot(source: Any, out: Path, *, abort: threading.Event | None = None,
                   overwrite: bool = False) -> Manifest:
    """Stream every record of ``source`` (a ``LevelDBSnapshot``, or any store with
    ``get``/``iterate``) to ``out``; returns its manifest.  Safe to run in a worker
    thread on a snapshot of a live store.  ``abort`` set stops it (SnapshotAborted)."""
    where = str(getattr(source, "path", "the store"))
    height, block_hash, app_hash, genesis_hash, chain_id = _head_of(source, where)
    out = Path(out)
    if out.exists() and not overwrite:
        raise SnapshotRefused(f"{out} already exists; choose another --out or remove it")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        count = 0
        size = 0
        with os.fdopen(fd, "wb", buffering=1024 * 1024) as handle:
            def put(chunk: bytes) -> None:
                nonlocal size
                digest.update(chunk)
                handle.write(chunk)
                size += len(chunk)

            put(MAGIC)
            for key, value in source.iterate():
                if len(key) > MAX_KEY_BYTES or len(value) > MAX_VALUE_BYTES:
                    raise SnapshotError(
                        f"record 0x{key[:64].hex()} is {len(key)}+{len(value)} bytes, over the format's bounds "
                        f"({MAX_KEY_BYTES} key, {MAX_VALUE_BYTES} value bytes)")
                put(_KEY_LEN.pack(len(key)) + key + _VALUE_LEN.pack(len(value)))
                put(value)
                count += 1
                if abort is not None and count % _ABORT_EVERY == 0 and abort.is_set():
                    raise SnapshotAborted(f"snapshot to {out} aborted after {count} records: the node is stopping")
            put(_END)
            manifest = Manifest(FORMAT_VERSION, chain_id, genesis_hash, height, block_hash, app_hash, count, size,
                                digest.digest(), time.time_ns() // 1_000_000)
            raw = manifest.encode()
            handle.write(raw + _TRAILER.pack(len(raw)) + FOOTER_MAGIC)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
        fsync_dir(out.parent)
        return manifest
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def default_snapshot_path(home: Home, height: int) -> Path:
    return home.snapshots_dir / f"snapshot-{height:012d}{SUFFIX}"


def prune_snapshots(directory: Path, keep: int) -> list[Path]:
    """Delete all but the ``keep`` highest auto-named snapshots in ``directory``; returns what was deleted."""
    found = sorted(p for p in directory.glob(f"snapshot-*{SUFFIX}") if p.name[9:-len(SUFFIX)].isdigit())
    doomed = found[:-keep] if keep > 0 else found
    for path in doomed:
        path.unlink(missing_ok=True)
    return doomed


def _open_stopped_store(path: Path, what: str, hint: str) -> LevelDBKV:
    """Open a node's store that must not be in use: a held LevelDB LOCK is one specific line."""
    try:
        return LevelDBKV(path)
    except StoreNotFound as exc:
        raise SnapshotRefused(f"{what}: {exc}") from None
    except StoreError as exc:
        text = str(exc)
        if "lock" in text.lower():
            raise StoreInUse(f"{what} {path} is in use by a running node (its LevelDB LOCK is held): {hint}") from None
        raise SnapshotRefused(f"{what} {path} cannot be opened: {text}") from None


def _home_genesis(home: Home) -> Genesis:
    try:
        return Genesis.from_json(home.genesis_file.read_text())
    except FileNotFoundError:
        raise SnapshotRefused(f"{home.root} has no genesis at {home.genesis_file}") from None
    except (OSError, StateError) as exc:
        raise SnapshotRefused(f"{home.genesis_file}: {exc}") from None


def create_from_home(home: Home, out: Path | None = None) -> tuple[Manifest, Path]:
    """``qenexd snapshot create``: snapshot the store of a stopped node's home."""
    genesis = _home_genesis(home)
    kv = _open_stopped_store(home.state_dir, "state store", "use `qenexd admin snapshot` on the running node")
    try:
        stored = kv.get(keys.META_GENESIS_HASH)
        if stored != genesis.hash:
            raise SnapshotMismatch(f"state store {home.state_dir} is not of this home's genesis 0x{genesis.hash.hex()}")
        with kv.snapshot() as snap:
            height = _head_of(snap, str(home.state_dir))[0]
            target = Path(out) if out is not None else default_snapshot_path(home, height)
            manifest = write_snapshot(snap, target, overwrite=out is None)
    finally:
        kv.close()
    return manifest, target


# -- reading -------------------------------------------------------------------


class SnapshotReader:
    """A snapshot file's manifest (read from its footer) and its records, checked as they stream."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self._size = self.path.stat().st_size
        except OSError as exc:
            raise SnapshotRefused(f"cannot read snapshot {self.path}: {exc}") from None
        self.manifest = self._read_manifest()

    def _read_manifest(self) -> Manifest:
        tail = _TRAILER.size + len(FOOTER_MAGIC)
        if self._size < len(MAGIC) + len(_END) + tail:
            raise SnapshotTruncated(f"snapshot {self.path} is {self._size} bytes: truncated or not a snapshot")
        with open(self.path, "rb") as handle:
            if handle.read(len(MAGIC)) != MAGIC:
                raise SnapshotCorrupt(f"{self.path} does not start with the snapshot header {MAGIC!r}")
            handle.seek(self._size - tail)
            trailer = handle.read(tail)
            if trailer[_TRAILER.size:] != FOOTER_MAGIC:
                raise SnapshotTruncated(f"snapshot {self.path} has no footer: truncated (or appended to)")
            (length,) = _TRAILER.unpack(trailer[:_TRAILER.size])
            if length > MAX_MANIFEST_BYTES or length > self._size - tail - len(MAGIC):
                raise SnapshotCorrupt(f"snapshot {self.path}: manifest length {length} is out of bounds")
            handle.seek(self._size - tail - length)
            manifest = Manifest.parse(handle.read(length), str(self.path))
        if manifest.content_bytes + length + tail != self._size:
            raise SnapshotTruncated(
                f"snapshot {self.path} is {self._size} bytes; its manifest says {manifest.content_bytes + length + tail}")
        return manifest

    def check_content_hash(self) -> None:
        digest = hashlib.sha256()
        left = self.manifest.content_bytes
        with open(self.path, "rb") as handle:
            while left:
                chunk = handle.read(min(left, 1024 * 1024))
                if not chunk:
                    raise SnapshotTruncated(f"snapshot {self.path} ended while its content was being read")
                digest.update(chunk)
                left -= len(chunk)
        if digest.digest() != self.manifest.content_sha256:
            raise SnapshotCorrupt(
                f"snapshot {self.path}: content SHA-256 {digest.hexdigest()} is not the manifest's "
                f"{self.manifest.content_sha256.hex()} (damaged or tampered)")

    def records(self) -> Iterator[tuple[bytes, bytes]]:
        """Every record in order; call ``check_content_hash`` first (this checks structure only)."""
        end = self.manifest.content_bytes
        count = 0
        last = b""
        with open(self.path, "rb") as handle:
            handle.seek(len(MAGIC))

            def take(n: int, what: str) -> bytes:
                if handle.tell() + n > end:
                    raise SnapshotCorrupt(f"snapshot {self.path}: {what} of record {count} runs past the content")
                return handle.read(n)

            while True:
                (klen,) = _KEY_LEN.unpack(take(_KEY_LEN.size, "key length"))
                if klen == 0:
                    break
                if klen > MAX_KEY_BYTES:
                    raise SnapshotCorrupt(f"snapshot {self.path}: record {count} key length {klen} > {MAX_KEY_BYTES}")
                key = take(klen, "key")
                (vlen,) = _VALUE_LEN.unpack(take(_VALUE_LEN.size, "value length"))
                if vlen > MAX_VALUE_BYTES:
                    raise SnapshotCorrupt(f"snapshot {self.path}: record {count} value length {vlen} > {MAX_VALUE_BYTES}")
                value = take(vlen, "value")
                if key <= last:
                    raise SnapshotCorrupt(f"snapshot {self.path}: record {count} key 0x{key.hex()[:64]} is out of order")
                last = key
                count += 1
                if count > self.manifest.key_count:
                    raise SnapshotCorrupt(f"snapshot {self.path} holds more than the manifest's "
                                          f"{self.manifest.key_count} records")
                yield key, value
            if handle.tell() != end:
                raise SnapshotCorrupt(f"snapshot {self.path}: {end - handle.tell()} bytes after the end of records")
        if count != self.manifest.key_count:
            raise SnapshotCorrupt(f"snapshot {self.path} holds {count} records, its manifest says "
                                  f"{self.manifest.key_count}")


def read_manifest(path: Path) -> Manifest:
    return SnapshotReader(path).manifest


# -- verification and restore ----------------------------------------------------------


def _load(reader: SnapshotReader, directory: Path) -> LevelDBKV:
    """A new LevelDB store at ``directory`` holding the snapshot's records."""
    kv = LevelDBKV(directory, create_if_missing=True)
    try:
        batch: dict[bytes, bytes | None] = {}
        pending = 0
        for key, value in reader.records():
            batch[key] = value
            pending += len(key) + len(value)
            if pending >= _BATCH_BYTES:
                kv.write_batch(batch, sync=False)
                batch, pending = {}, 0
        kv.write_batch(batch, sync=True)  # also makes the earlier unsynced batches durable (one log)
    except BaseException:
        kv.close()
        raise
    return kv


def _check_head(reader: SnapshotReader, kv: LevelDBKV) -> Genesis:
    """The records' genesis, chain id and head are the manifest's; returns that genesis."""
    m, where = reader.manifest, str(reader.path)
    height, block_hash, app_hash, genesis_hash, chain_id = _head_of(kv, where)
    for name, mine, theirs in (("chain id", m.chain_id, chain_id), ("genesis hash", m.genesis_hash, genesis_hash),
                               ("height", m.height, height), ("block hash", m.block_hash, block_hash),
                               ("app hash", m.app_hash, app_hash)):
        if mine != theirs:
            shown = (lambda v: "0x" + v.hex()) if isinstance(mine, bytes) else repr
            raise SnapshotCorrupt(f"snapshot {where}: the manifest's {name} {shown(mine)} is not the records' "
                                  f"{shown(theirs)}")
    return Genesis.decode(kv.get(keys.META_GENESIS) or b"")


def _is_history(key: bytes) -> bool:
    """A record of the node-local past-height index (state.history), not of the state itself: its extent
    depends on the source node's ``history_blocks`` window and age, so replay cannot reproduce it."""
    return key.startswith((keys.CHANGELOG, keys.CHANGELOG_INDEX)) or key == keys.META_HISTORY_OLDEST


def _write_chunked(kv: LevelDBKV, puts: Iterator[tuple[bytes, bytes | None]], chunk: int = 10_000) -> None:
    batch: dict[bytes, bytes | None] = {}
    for k, v in puts:
        batch[k] = v
        if len(batch) >= chunk:
            kv.write_batch(batch, sync=False)
            batch = {}
    kv.write_batch(batch, sync=True)  # also makes the earlier unsynced batches durable


def _replay_check(reader: SnapshotReader, kv: LevelDBKV, genesis: Genesis, scratch: Path, *,
                  adopt_history: bool = False, history_blocks: int = DEFAULT_HISTORY_BLOCKS) -> None:
    """Re-execute blocks 1..S from genesis in a scratch store and compare every state record with ``kv``.

    The past-height index is not compared (it is node-local, see ``_is_history``); with
    ``adopt_history`` (restore) the snapshot's index is replaced by the replay's, so what the restored
    node answers about past heights was recomputed here, never taken on trust from the file, and kept
    for the restored home's own ``history_blocks`` window."""
    where = str(reader.path)
    source = Application(kv, genesis, initialise=False, commit_verifier=CertificateVerifier())
    replay_kv = LevelDBKV(scratch, create_if_missing=True)
    try:
        replay = BlockExecutor(Application(replay_kv, genesis, commit_verifier=CertificateVerifier(),
                                           history_blocks=history_blocks))
        for height in range(1, reader.manifest.height + 1):
            _apply(replay, source, height, where)
        mine = (r for r in kv.iterate() if not _is_history(r[0]))
        theirs = (r for r in replay_kv.iterate() if not _is_history(r[0]))
        while True:
            a, b = next(mine, None), next(theirs, None)
            if a is None and b is None:
                break
            if a != b:
                key = min(x[0] for x in (a, b) if x is not None)
                raise SnapshotCorrupt(
                    f"snapshot {where}: record 0x{key.hex()[:80]} is not what replaying blocks 1..{reader.manifest.height} "
                    "from its genesis gives (tampered state)")
        if adopt_history:
            # plyvel iterates a snapshot of the store, so deleting as it goes is safe
            _write_chunked(kv, ((k, None) for k, _ in kv.iterate() if _is_history(k)))
            _write_chunked(kv, ((k, v) for k, v in replay_kv.iterate() if _is_history(k)))
    finally:
        replay_kv.close()
        shutil.rmtree(scratch, ignore_errors=True)


def _apply(target: BlockExecutor, source: Application, height: int, where: str) -> None:
    """Apply ``source``'s block ``height`` with its stored certificate on ``target``, fully verified."""
    try:
        block = source.get_block(height)
        cert = source.get_commit_cert(height)
        if block is None or not cert:
            raise SnapshotCorrupt(f"{where}: block {height} or its certificate is missing")
        refused = target.apply_synced(block, cert)
    except StateError as exc:
        raise SnapshotCorrupt(f"{where}: block {height} does not replay: {exc}") from None
    if refused is not None:
        raise SnapshotCorrupt(f"{where}: {refused.reason}")
    if target.app.app_hash != block.header.app_hash:  # execute_block checked it; kept explicit for the report
        raise SnapshotCorrupt(f"{where}: block {height} replayed to app hash 0x{target.app.app_hash.hex()}, "
                              f"its header says 0x{block.header.app_hash.hex()}")


def verify_snapshot(path: Path, *, workdir: Path | None = None) -> Manifest:
    """Every check of the module doc; raises the specific SnapshotError, returns the manifest."""
    reader = SnapshotReader(path)
    reader.check_content_hash()
    scratch = Path(tempfile.mkdtemp(prefix=".snapshot-verify-", dir=workdir))
    try:
        kv = _load(reader, scratch / "records")
        try:
            genesis = _check_head(reader, kv)
            _replay_check(reader, kv, genesis, scratch / "replay")
        finally:
            kv.close()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return reader.manifest


RESTORE_NOTE_VERSION = 1


def _free_name(path: Path, tag: str) -> Path:
    """``NAME.TAG-N`` beside ``path``, the first N not taken."""
    for n in range(1, 10_000):
        target = path.with_name(f"{path.name}.{tag}-{n}")
        if not target.exists() and not target.is_symlink():
            return target
    raise SnapshotRefused(f"cannot move {path} aside: 9999 earlier copies exist")


def _history_window(home: Home) -> int:
    """The home's ``[state] history_blocks``: the restored store keeps the window its node will."""
    if not home.config_file.exists():
        return DEFAULT_HISTORY_BLOCKS
    try:
        return home.load_config().state.history_blocks
    except ConfigError as exc:
        raise SnapshotRefused(f"{home.config_file}: {exc}") from None


def _wal_height(home: Home) -> int | None:
    """The height the home's WAL is for (None: empty, missing or unreadable)."""
    try:
        records, _ = read_records(home.wal_file)
    except (WalCorrupted, OSError):
        return None
    return height_of_log(records)


def restore_snapshot(home: Home, path: Path, *, height: int | None = None, force: bool = False,
                     blocks_from: Home | None = None) -> dict[str, Any]:
    """Replace ``home``'s state store with the snapshot, optionally rolled forward to ``height``.

    Rules (all checked before the home is changed; any failure leaves it as it was):

    * the snapshot passes ``verify_snapshot`` and is of the home's chain id and genesis;
    * a home whose store holds blocks, or whose WAL holds records, needs ``force``;
    * ``height`` (default: the snapshot's S) may not be below S; above it, blocks
      S+1..height come from the home's own store (read before it is replaced) or
      ``blocks_from``'s, whose block S must be the snapshot's; each is applied as
      block sync applies one: its certificate verified against the validator set
      of its height, executed, its header's app hash recomputed;
    * the stores read must not be in use (their LevelDB LOCK is taken).

    The restored store keeps the home's ``[state] history_blocks`` window.  A
    swap a crash interrupted is finished first (``node.restore_swap``).  Then,
    under a journal (``node.restore_swap``): the old store is renamed
    ``state.pre-restore-N`` beside it (kept, never deleted; beside the target
    when ``data/state`` is a symlink, which stays), the new one renamed into its
    place, and ``data/restored.json`` written.  The WAL is kept when it is for
    exactly the restored height + 1 (it is the node's own log of the next
    height, so its locks and votes replay at start); any other WAL describes a
    height the store no longer has and is renamed ``consensus.wal.pre-restore-N``.
    The sign-state record is never touched (nor created: the note warns when
    there is none).  The note's ``sign_floor`` is the highest height this
    validator may have signed at whose WAL is gone (its record's height, the
    moved WAL's): the node signs nothing at or below it (``SignGuard.floor``),
    and the start-up check accepts a record above the store only as the note
    describes (``node.homecheck``).
    """
    try:
        finish_interrupted(home)
    except (RestoreSwapError, OSError) as exc:
        raise SnapshotRefused(f"{home.root}: an interrupted restore cannot be finished: {exc}") from None
    genesis = _home_genesis(home)
    window = _history_window(home)
    reader = SnapshotReader(path)
    m = reader.manifest
    if m.chain_id != genesis.chain_id or m.genesis_hash != genesis.hash:
        raise SnapshotMismatch(
            f"snapshot {path} is of chain {m.chain_id!r} (genesis 0x{m.genesis_hash.hex()[:16]}), this home of "
            f"{genesis.chain_id!r} (genesis 0x{genesis.hash.hex()[:16]})")
    target = m.height if height is None else height
    if target < m.height:
        raise SnapshotRefused(f"--height {target} is below the snapshot's height {m.height}: a store cannot be "
                              "rolled back; restore an older snapshot")
    if blocks_from is not None and _home_genesis(blocks_from).hash != genesis.hash:
        raise SnapshotMismatch(f"--blocks-from {blocks_from.root} is a home of another genesis than {home.root}")
    store = store_location(home)  # data/state, or where that symlink points: the swap happens there
    if home.state_dir.is_symlink() and not store.parent.is_dir():
        raise SnapshotRefused(f"state store {home.state_dir} is a symlink to {store}, whose directory "
                              f"{store.parent} does not exist; fix the link or remove it")
    data_created = not home.data_dir.exists()
    build: Path | None = None
    with contextlib.ExitStack() as probes:
        # The home's stores are read through probe copies (node.homecheck): a refused
        # restore changes nothing in them, LevelDB's own files included.
        own_app: Application | None = None
        unreadable = ""
        if home.state_dir.exists():
            try:
                own_app = probes.enter_context(probe_application(home, genesis))
            except StartRefused as exc:  # damaged or half gone: --force replaces it (kept aside)
                unreadable = str(exc)
        own_height = own_app.height if own_app is not None else 0
        wal_records = home.wal_file.exists() and home.wal_file.stat().st_size > 0
        if (own_height or wal_records or unreadable) and not force:
            what = (f"its store is at height {own_height}" if own_height else
                    "its consensus WAL holds records" if wal_records else f"its store is unreadable: {unreadable}")
            raise SnapshotRefused(f"{home.root} is not empty ({what}); pass --force to replace its store "
                                  "(the old one is kept as data/state.pre-restore-N)")
        source_app: Application | None = None
        if target > m.height:
            if blocks_from is not None:
                try:
                    source_app = probes.enter_context(probe_application(blocks_from, genesis))
                except StartRefused as exc:
                    raise SnapshotRefused(f"--blocks-from {blocks_from.root}: {exc}") from None
                source_name = str(blocks_from.state_dir)
            elif own_app is not None:
                source_app, source_name = own_app, str(home.state_dir)
            else:
                raise SnapshotRefused(f"--height {target} is above the snapshot's {m.height} and {home.root} has no "
                                      f"readable store to take blocks from; pass --blocks-from HOME {unreadable}".rstrip())
            if source_app.height < target:
                raise SnapshotRefused(f"--height {target}: {source_name} holds blocks only up to "
                                      f"{source_app.height} (snapshot at {m.height})")
            at_s = source_app.get_block(m.height) if m.height else None
            if at_s is not None and at_s.hash != m.block_hash:
                raise SnapshotMismatch(f"{source_name}'s block {m.height} is 0x{at_s.hash.hex()[:16]}, not the "
                                       f"snapshot's 0x{m.block_hash.hex()[:16]}: another fork or chain")
        try:
            reader.check_content_hash()
            home.data_dir.mkdir(parents=True, exist_ok=True)
            build_parent = store.parent if home.state_dir.is_symlink() else Path(os.path.realpath(home.data_dir))
            build = Path(tempfile.mkdtemp(prefix=RESTORE_PREFIX, dir=build_parent))
            kv = _load(reader, build / "state")
            try:
                if _check_head(reader, kv).hash != genesis.hash:  # the manifest said so; the records must too
                    raise SnapshotMismatch(f"snapshot {path}: its genesis record is not this home's genesis")
                _replay_check(reader, kv, genesis, build / "replay", adopt_history=True, history_blocks=window)
                restored = BlockExecutor(Application(kv, genesis, initialise=False,
                                                     commit_verifier=CertificateVerifier(), history_blocks=window))
                for h in range(m.height + 1, target + 1):
                    assert source_app is not None
                    _apply(restored, source_app, h, f"{source_name} block {h}")
                result = {"height": restored.app.height, "block_hash": "0x" + restored.app.last_block_hash.hex(),
                          "app_hash": "0x" + restored.app.app_hash.hex()}
            finally:
                kv.close()
            probes.close()
            if (home.state_dir / "CURRENT").is_file():
                # Last check: no node runs on the store (LevelDB refuses a held LOCK before it writes anything;
                # a store that fails later in its open is not in use, and is being replaced).
                try:
                    _open_stopped_store(home.state_dir, "state store", "stop the node before restoring").close()
                except StoreInUse:
                    raise
                except SnapshotRefused:
                    pass
        except BaseException:
            if build is not None:
                shutil.rmtree(build, ignore_errors=True)
            if data_created:
                shutil.rmtree(home.data_dir, ignore_errors=True)
            raise

    # What the validator may have signed that the restored node cannot replay: with the WAL of
    # exactly the next height kept, its locks replay; otherwise every height the record or the
    # moved WAL reached is off limits (node.signguard's floor).
    wal_height = _wal_height(home) if wal_records else None
    wal_kept = wal_height == target + 1
    sign_height = read_sign_height(home)
    if wal_kept:
        floor = max(restore_floor(home), sign_height if sign_height is not None and sign_height > target + 1 else 0)
    else:
        reached = wal_height if wal_height is not None else (own_height + 1 if own_height else 0)
        floor = max(restore_floor(home), sign_height or 0, reached)
    replaced = _free_name(store, "pre-restore") if store.exists() else None
    wal_moved = _free_name(home.wal_file, "pre-restore") if wal_records and not wal_kept else None
    note = {
        "version": RESTORE_NOTE_VERSION,
        "restored_ms": time.time_ns() // 1_000_000,
        "snapshot": str(Path(path).resolve()),
        "snapshot_height": m.height,
        **result,
        "sign_state_height": sign_height,
        "sign_floor": floor,
        "replaced_store": str(replaced) if replaced else None,
        "wal_kept": wal_kept,
        "wal_moved_to": str(wal_moved) if wal_moved else None,
    }
    if not home.sign_state_file.exists():
        note["warning"] = (f"{home.sign_state_file} does not exist and a restore never creates one: copy this "
                           "validator's record there (or run `qenexd init` for a new validator) before starting")
    swap(home, SwapPlan(build=str(build), store=str(store), store_aside=str(replaced) if replaced else None,
                        wal_aside=str(wal_moved) if wal_moved else None,
                        wal_drop_empty=home.wal_file.exists() and not wal_records, note=note,
                        marker=marker_doc(genesis)))
    return note


__all__ = [
    "Manifest", "SnapshotAborted", "SnapshotCorrupt", "SnapshotError", "SnapshotMismatch", "SnapshotReader",
    "SnapshotRefused", "SnapshotTruncated", "create_from_home", "default_snapshot_path", "prune_snapshots",
    "read_manifest", "restore_snapshot", "verify_snapshot", "write_snapshot",
]
