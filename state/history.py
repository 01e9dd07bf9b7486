"""State at past heights: a changelog of the values each block overwrote.

Every block's commit batch also records, for each state key the block
changed, the value the key held *before* the block (``U + escape(key) +
height``; a marker when it was absent) and one index record of the keys it
changed (``W + height``).  None of it is hashed: the app hash and every state
key stay as they were.  The value of key ``k`` at height ``h`` is the stored
"before" value of the first changelog entry of ``k`` above ``h`` (one seek),
else the current value.

``oldest`` (``M history_oldest``) is the lowest height whose state can be
read: the changelog holds every block above it.  A store from before the
changelog gets the head it is first committed on (nothing below it can be
rebuilt).  With a retention window of ``W`` blocks (0 keeps everything) the
commit of block ``h`` deletes, in its own batch, the changelog of the heights
up to ``h - W`` through their index records, at most ``PRUNE_MAX_HEIGHTS``
heights and about ``PRUNE_MAX_KEYS`` entries per block: one height per block
in steady state, and a smaller window is caught up gradually, never in one
pass over the store.

Reads at a past height go through ``StateAt``, a read-only store over the
live one, and the same typed decoding as current reads (``StateView``).
"""

from __future__ import annotations

import heapq
from typing import Iterable, Iterator, Mapping

from state import keys
from state.abc import KVStore
from state.crypto import ADDRESS_LEN
from state.errors import InvalidKey, StateInvariantBroken
from state.ledger import Account, Ledger, TokenInfo, read_account, read_tokens
from state.pools import Pool, Pools, Position

_INDEX_VERSION = b"\x01"
_TERMINATOR = b"\x00\x00"  # ends every escaped key (keys.escape_key)
DEFAULT_HISTORY_BLOCKS = 10_000
# Pruning work per committed block: index records read, and changelog entries deleted
# (the last height pruned may take it past this by at most one block's writes).
PRUNE_MAX_HEIGHTS = 64
PRUNE_MAX_KEYS = 20_000

_ABSENT = b"\x00"
_PRESENT = b"\x01"


def _after(prefix: bytes) -> bytes:
    """The least byte string above every string that starts with ``prefix`` (non-empty, not all 0xFF)."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        raise StateInvariantBroken(f"no key sorts after every key starting 0x{prefix.hex()}")
    return stripped[:-1] + bytes([stripped[-1] + 1])


def _entries_of(key: bytes) -> bytes:
    return keys.CHANGELOG + keys.escape_key(key)


def _key_of_entry(entry: bytes) -> bytes:
    """The state key of a changelog entry's key (``U + escape(key) + height(8)``)."""
    body = entry[len(keys.CHANGELOG):-8]
    if len(entry) < len(keys.CHANGELOG) + 10 or not body.endswith(_TERMINATOR):
        raise StateInvariantBroken(f"malformed changelog key 0x{entry.hex()}")
    return body[:-2].replace(b"\x00\xff", b"\x00")


def _before(entry: bytes, raw: bytes) -> bytes | None:
    if raw == _ABSENT:
        return None
    if raw[:1] != _PRESENT:
        raise StateInvariantBroken(f"malformed changelog value under 0x{entry.hex()}")
    return raw[1:]


def record(batch: dict[bytes, bytes | None], height: int, changes: Iterable[tuple[bytes, bytes | None]]) -> int:
    """Add block ``height``'s changelog to its commit ``batch``: (state key, value before the block).

    The index record is a version byte and the escaped keys end to end: each ends with the
    only 0x00 0x00 it holds (``keys.escape_key``), so pruning splits it in one pass."""
    suffix = keys.encode_height(height)
    escaped = []
    for key, before in changes:
        esc = keys.escape_key(key)
        batch[keys.CHANGELOG + esc + suffix] = _ABSENT if before is None else _PRESENT + before
        escaped.append(esc)
    if escaped:
        batch[keys.changelog_index_key(height)] = _INDEX_VERSION + b"".join(escaped)
    return len(escaped)


def _indexed_entries(index_key: bytes, raw: bytes, height: int) -> list[bytes]:
    """The changelog entry keys an index record names."""
    bodies = raw[1:].split(_TERMINATOR)
    if raw[:1] != _INDEX_VERSION or bodies[-1] != b"" or not all(b and b[0] for b in bodies[:-1]):
        raise StateInvariantBroken(f"malformed changelog index under 0x{index_key.hex()}")
    suffix = _TERMINATOR + keys.encode_height(height)
    return [keys.CHANGELOG + body + suffix for body in bodies[:-1]]


def prune(kv: KVStore, batch: dict[bytes, bytes | None], oldest: int, target: int, *,
          max_heights: int, max_keys: int) -> int:
    """Delete (into ``batch``) the changelog of heights oldest + 1, oldest + 2, ... up to ``target``,
    within the per-block budget; return the new oldest readable height."""
    heights = deleted = 0
    while oldest < target and heights < max_heights and deleted < max_keys:
        height = oldest + 1
        index_key = keys.changelog_index_key(height)
        raw = kv.get(index_key)
        if raw is not None:
            entries = _indexed_entries(index_key, raw, height)
            batch.update(dict.fromkeys(entries))
            batch[index_key] = None
            deleted += len(entries)
        oldest = height
        heights += 1
    return oldest


def read_oldest(kv: KVStore) -> int | None:
    raw = kv.get(keys.META_HISTORY_OLDEST)
    return None if raw is None else keys.decode_height(raw)


class StateAt(KVStore):
    """The state keys as they were at the end of block ``height``, read through the changelog.

    Read-only, and only for state keys (blocks, receipts and the other
    chain-index records above ``height`` are not versioned).  ``get`` is one
    seek plus at most one read; a scan visits the keys live in its range and
    every key the changelog holds there, one seek each, lazily: a caller that
    stops early pays only for the keys before the point where it stopped.
    """

    def __init__(self, kv: KVStore, height: int) -> None:
        self._kv = kv
        self.height = height

    @staticmethod
    def _state_only(key: bytes) -> None:
        if not keys.is_state_key(key):
            raise StateInvariantBroken(f"a past-height view reads state keys only, not 0x{key.hex()}")

    def get(self, key: bytes) -> bytes | None:
        self._state_only(key)
        entries = _entries_of(key)
        first = next(self._kv.iterate_range(entries + keys.encode_height(self.height + 1), _after(entries)), None)
        if first is None:
            return self._kv.get(key)
        return _before(*first)

    def _changed_keys(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[bytes]:
        """Every state key in [start, stop) with a changelog entry, in order (descending if ``reverse``),
        lazily: one seek per key, made when the caller asks for the next key.

        Escaping keeps key order and no escaped key prefixes another (``keys.escape_key``), so the
        entries of the keys below ``k`` all sort below ``U + escape(k)`` and those above it all sort
        at or above the least string past every entry of ``k``."""
        low, high = _entries_of(start), _entries_of(stop)
        while True:
            first = next(self._kv.iterate_range(low, high, reverse=reverse), None)
            if first is None:
                return
            key = _key_of_entry(first[0])
            yield key
            if reverse:
                high = _entries_of(key)
            else:
                low = _after(_entries_of(key))

    def iterate_range(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """The pairs live at ``height`` in [start, stop), in key order (descending if ``reverse``).

        Lazy in both directions: the keys live now and the keys the changelog holds are each read
        in order and merged as the caller takes pairs, and each key is read at ``height`` (``get``)
        only when reached, so a caller that stops after ``n`` pairs pays for the keys it passed to
        reach them (those absent at ``height`` included), not for every key the range ever had."""
        self._state_only(start)
        if stop > _after(start[:1]):  # one state prefix at a time: the changelog keeps nothing else
            raise StateInvariantBroken(f"a past-height scan stays within one state prefix, not up to 0x{stop.hex()}")
        live = (k for k, _ in self._kv.iterate_range(start, stop, reverse=reverse))
        previous = None
        for key in heapq.merge(live, self._changed_keys(start, stop, reverse=reverse), reverse=reverse):
            if key == previous:  # live now and changed since: one key, read once
                continue
            previous = key
            value = self.get(key)
            if value is not None:
                yield key, value

    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        self._state_only(prefix)
        return self.iterate_range(prefix, _after(prefix))

    def write_batch(self, puts: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        raise StateInvariantBroken(f"the state at height {self.height} is read-only")

    def close(self) -> None:
        """The live store belongs to the application: nothing to release."""


class StateView:
    """Typed reads of the committed state at one height (the head's store, or a ``StateAt``)."""

    def __init__(self, store: KVStore, height: int) -> None:
        self.store = store
        self.height = height

    def account(self, address: bytes) -> Account:
        """Nonce and non-zero balances of ``address`` (zero nonce and {} if unknown)."""
        if not isinstance(address, bytes) or len(address) != ADDRESS_LEN:
            raise InvalidKey(f"address must be {ADDRESS_LEN} bytes, got {address!r}")
        return read_account(self.store, address)

    def token(self, symbol: str) -> TokenInfo | None:
        return Ledger(self.store).token(symbol)

    def tokens(self) -> list[TokenInfo]:
        return read_tokens(self.store)

    def pool(self, pool_id: str) -> Pool | None:
        """The pool record (reserves, shares, reward rate and index, cumulative prices), or None."""
        return Pools(Ledger(self.store)).get(pool_id)

    def pools(self) -> list[Pool]:
        """Every pool, in id order."""
        store = Pools(Ledger(self.store))
        return [p for p in (store.get(pid) for pid in store.ids()) if p is not None]

    def pool_position(self, address: bytes, pool_id: str) -> Position:
        """``address``'s shares of a pool; ``.pending(pool.reward_index)`` is its claimable reward."""
        return Pools(Ledger(self.store)).position(address, pool_id)
