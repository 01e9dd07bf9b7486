"""The seams of state/: the key-value store the application runs on.

Two implementations live in ``state.kv``: ``MemoryKV`` (the test twin) and
``LevelDBKV`` (plyvel).  The application needs exactly these operations, and
an atomic batch is the only way it writes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Iterator, Mapping


class KVReader(ABC):
    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value under ``key``, or None."""


class KVStore(KVReader):
    @abstractmethod
    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with ``prefix``, in ascending key order."""

    @abstractmethod
    def iterate_range(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) with ``start <= key < stop``, ascending (descending with ``reverse``)."""

    @abstractmethod
    def write_batch(self, puts: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        """Apply all of ``puts`` atomically (None deletes); ``sync`` waits for the disk."""

    @abstractmethod
    def close(self) -> None:
        """Release the store; further use raises StoreClosed."""

    def __enter__(self) -> "KVStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
