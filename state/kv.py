"""Key-value stores: LevelDB through plyvel, and an in-memory twin for tests."""

from __future__ import annotations

import os
from typing import Iterator, Mapping

from state.abc import KVStore
from state.errors import StoreClosed, StoreError, StoreNotFound


def _text(exc: BaseException) -> str:
    """plyvel puts LevelDB's status in bytes: show it as text."""
    arg = exc.args[0] if exc.args else exc
    return arg.decode("utf-8", "replace") if isinstance(arg, bytes) else str(arg)


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
            self._db = plyvel.DB(self.path, create_if_missing=create_if_missing, paranoid_checks=True)
        except (plyvel.Error, OSError) as exc:
            raise StoreError(f"cannot open LevelDB at {self.path}: {_text(exc)}") from exc
        self._closed = False

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
        import plyvel

        db = self._live()
        it = db.iterator(prefix=prefix, verify_checksums=True) if prefix else db.iterator(verify_checksums=True)
        try:
            with it:
                yield from it
        except plyvel.Error as exc:
            raise StoreError(f"LevelDB read from {self.path} failed: {_text(exc)}") from exc

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
            self._db.close()
