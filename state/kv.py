"""Key-value stores: LevelDB through plyvel, and an in-memory twin for tests."""

from __future__ import annotations

import os
import re
from typing import Iterator, Mapping

from state.abc import KVStore
from state.errors import StoreClosed, StoreError, StoreNotFound


# One line of LevelDB's "leveldb.sstables" property: " 9:1305['k0' @ 101 : 1 .. 'k99' @ 200 : 1]".
_SSTABLE = re.compile(r"^\s*(\d+):(\d+)\['(.*)' @ \d+ : \d+ \.\. '.*' @ \d+ : \d+\]$")
_TABLE_MAGIC = (0xDB4775248B80FB57).to_bytes(8, "little")
# LevelDB's bloom filter, 10 bits per key (about 1% false positives): a read of a key that is not
# there (a sender's nonce before its first transaction, a fresh receiver's balance) skips the table
# files instead of reading an index block from each level; tables written before get none.
BLOOM_FILTER_BITS = 10


def _unescape(text: str) -> bytes:
    """LevelDB's EscapeString: printable ASCII as is, other bytes as \\xNN."""
    return re.sub(r"\\x([0-9a-f]{2})", lambda m: chr(int(m[1], 16)), text).encode("latin-1")


def _text(exc: BaseException) -> str:
    """plyvel puts LevelDB's status in bytes: show it as one line of text
    (it can quote bytes of a damaged file, newlines included)."""
    arg = exc.args[0] if exc.args else exc
    text = arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _check_batch(puts: Mapping[bytes, bytes | None]) -> None:
    for key, value in puts.items():
        if not isinstance(key, bytes) or not key:
            raise StoreError(f"keys must be non-empty bytes, got {key!r}")
        if value is not None and not isinstance(value, bytes):
            raise StoreError(f"value for key 0x{key.hex()} must be bytes or None, got {type(value).__name__}")


class MemoryKV(KVStore):
    """A dict with the KVStore contract; iteration sorts on every call (fine for tests)."""

    def __init__(self) -> None:
        self._data: dict[bytes, bytes] | None = {}

    def _live(self) -> dict[bytes, bytes]:
        if self._data is None:
            raise StoreClosed("the in-memory store is closed")
        return self._data

    def get(self, key: bytes) -> bytes | None:
        return self._live().get(key)

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        data = self._live()
        for key in sorted(k for k in data if k.startswith(prefix)):
            yield key, data[key]

    def iterate_range(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        data = self._live()
        for key in sorted((k for k in data if start <= k < stop), reverse=reverse):
            yield key, data[key]

    def write_batch(self, puts: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        data = self._live()
        _check_batch(puts)  # validate everything first: all or nothing
        for key, value in puts.items():
            if value is None:
                data.pop(key, None)
            else:
                data[key] = value

    def close(self) -> None:
        self._data = None

    def __len__(self) -> int:
        return len(self._live())


def _scan(source, prefix: bytes, path: str) -> Iterator[tuple[bytes, bytes]]:  # type: ignore[no-untyped-def]
    """Keys of a plyvel DB or snapshot under ``prefix`` in order, checksums verified.

    plyvel's ordinary iterator ends quietly when LevelDB's iterator turns
    invalid on an error (it reads the status only while valid), and a
    block LevelDB cannot read is skipped: a scan would silently miss keys.
    The raw iterator checks the status after every step, so a damaged
    block raises StoreError instead.
    """
    import plyvel

    it = source.raw_iterator(verify_checksums=True)
    try:
        if prefix:
            it.seek(prefix)
        else:
            it.seek_to_first()
        while it.valid():
            key = it.key()
            if not key.startswith(prefix):
                break
            yield key, it.value()
            it.next()
    except plyvel.Error as exc:
        raise StoreError(f"LevelDB read from {path} failed: {_text(exc)}") from exc
    except RuntimeError as exc:  # plyvel: the database was closed under the scan
        raise StoreClosed(f"LevelDB at {path} was closed during a scan: {exc}") from exc
    finally:
        it.close()


class LevelDBSnapshot:
    """A point-in-time read view of a LevelDBKV (``LevelDBKV.snapshot``)."""

    def __init__(self, snap, path: str) -> None:  # type: ignore[no-untyped-def]
        self._snap = snap
        self.path = path

    def get(self, key: bytes) -> bytes | None:
        import plyvel

        try:
            return self._snap.get(key, verify_checksums=True)
        except plyvel.Error as exc:
            raise StoreError(f"LevelDB read from {self.path} failed: {_text(exc)}") from exc
        except RuntimeError as exc:
            raise StoreClosed(f"LevelDB at {self.path} was closed under a snapshot: {exc}") from exc

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        return _scan(self._snap, prefix, self.path)

    def close(self) -> None:
        try:
            self._snap.close()
        except RuntimeError:
            pass  # the database is closed already, which released the snapshot

    def __enter__(self) -> "LevelDBSnapshot":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LevelDBKV(KVStore):
    """LevelDB via plyvel.  One process owns the directory (LevelDB's LOCK file).

    Opening never creates a database unless ``create_if_missing`` says so
    (only ``qenexd init`` does): a store whose ``CURRENT`` file is gone must
    not silently become a fresh, empty chain.  That check runs before LevelDB
    is called, because a failed LevelDB open still creates the directory, a
    LOCK file and a new LOG.  ``paranoid_checks`` makes LevelDB refuse a
    damaged log or manifest instead of skipping what it cannot read.
    """

    def __init__(self, path: str | os.PathLike[str], *, create_if_missing: bool = False) -> None:
        import plyvel  # imported here so MemoryKV users need no LevelDB

        self.path = os.fspath(path)
        if not create_if_missing and not os.path.isfile(os.path.join(self.path, "CURRENT")):
            what = "does not exist" if not os.path.exists(self.path) else "has no CURRENT file (damaged or not a store)"
            raise StoreNotFound(f"LevelDB store {self.path} {what}; refusing to create a fresh one", path=self.path)
        try:
            self._db = plyvel.DB(self.path, create_if_missing=create_if_missing, paranoid_checks=True,
                                 bloom_filter_bits=BLOOM_FILTER_BITS)
        except (plyvel.Error, OSError) as exc:
            raise StoreError(f"cannot open LevelDB at {self.path}: {_text(exc)}") from exc
        self._closed = False
        try:
            self._verify_tables()
        except BaseException:
            self._db.close()
            raise

    def _verify_tables(self) -> None:
        """Refuse a store whose table files LevelDB could not open.

        LevelDB checks at open only that the tables its manifest lists exist;
        a table it later fails to open (truncated, bad footer or index) makes
        an iterator end early *without an error* (plyvel sees no status), so
        a scan would silently miss keys.  Each table must have the size the
        manifest recorded and a footer magic, and is opened once (a read of
        its smallest key, checksums verified).
        """
        import plyvel

        listing = (self._db.get_property(b"leveldb.sstables") or b"").decode("latin-1")
        for line in listing.splitlines():
            match = _SSTABLE.match(line)
            if match is None:
                continue
            number, size = int(match[1]), int(match[2])
            name = next((f"{number:06d}.{ext}" for ext in ("ldb", "sst")
                         if os.path.exists(os.path.join(self.path, f"{number:06d}.{ext}"))), f"{number:06d}.ldb")
            table = os.path.join(self.path, name)
            try:
                actual = os.path.getsize(table)
                with open(table, "rb") as handle:
                    handle.seek(max(0, size - len(_TABLE_MAGIC)))
                    magic = handle.read(len(_TABLE_MAGIC))
            except OSError as exc:
                raise StoreError(f"LevelDB at {self.path}: table {name} is unreadable: {exc}") from exc
            if actual != size:
                raise StoreError(f"LevelDB at {self.path}: table {name} is {actual} bytes, its manifest says {size}")
            if magic != _TABLE_MAGIC:
                raise StoreError(f"LevelDB at {self.path}: table {name} has no table footer (corrupted)")
            try:
                self._db.get(_unescape(match[3]), verify_checksums=True)
            except plyvel.Error as exc:
                raise StoreError(f"LevelDB at {self.path}: table {name} cannot be read: {_text(exc)}") from exc

    def _live(self):  # type: ignore[no-untyped-def]
        if self._closed:
            raise StoreClosed(f"LevelDB at {self.path} is closed")
        return self._db

    def get(self, key: bytes) -> bytes | None:
        import plyvel

        try:
            return self._live().get(key, verify_checksums=True)
        except plyvel.Error as exc:
            raise StoreError(f"LevelDB read from {self.path} failed: {_text(exc)}") from exc

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Keys in order, checksums verified (see ``_scan``)."""
        return _scan(self._live(), prefix, self.path)

    def snapshot(self) -> "LevelDBSnapshot":
        """A consistent read view of the store as it is now (a LevelDB
        snapshot): writes made later, block commits included, do not show
        in it.  Taking one is cheap; reading it may happen in another thread
        while the store is written.  Close it when done (it pins old tables)."""
        return LevelDBSnapshot(self._live().snapshot(), self.path)

    def iterate_range(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        with self._live().iterator(start=start, stop=stop, reverse=reverse) as it:
            yield from it

    def write_batch(self, puts: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        _check_batch(puts)
        import plyvel

        db = self._live()
        try:
            # transaction=True: if anything raises inside the block nothing is written.
            with db.write_batch(transaction=True, sync=sync) as batch:
                for key, value in puts.items():
                    if value is None:
                        batch.delete(key)
                    else:
                        batch.put(key, value)
        except plyvel.Error as exc:
            raise StoreError(f"LevelDB write to {self.path} failed: {_text(exc)}") from exc

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                # Flush the memtable to a table file (a range no key sorts into
                # compacts nothing else): after a clean close no data lives only
                # in the .log, so a lost .log loses nothing.
                self._db.compact_range(start=b"\x00", stop=b"\x00")
            finally:
                self._db.close()
