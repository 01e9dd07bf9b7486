"""The risk history on disk: the node's own LevelDB, apart from consensus state.

``HOME/data/risk-history/`` holds one key per account (``a`` + address →
msgpack of node.risk.history.account_to_wire) and one meta key (``m`` →
format, the height the history is complete up to, the recent fees).  The
node writes the accounts a block touched and the new height in one batch
right after the block commits (``flush``), so the history and its height
never disagree; at start-up ``load`` reads it back in one scan instead of
replaying blocks, and the hook replays only the blocks committed after the
stored height (none after a clean stop, a few after a crash).

Nothing here is consensus state: the directory can be deleted at any time
(the next start rebuilds it from recent blocks), and it is written with
``sync=False`` — a crash loses at most the last batches, which the height
in the same batch makes the next start replay.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import msgpack

from node.risk.history import HistoryStore, account_from_wire, account_to_wire

log = logging.getLogger("qenex.risk")

FORMAT = 1
ACCOUNT = b"a"
META = b"m"


class HistoryDBError(Exception):
    """The stored history cannot be used (damaged, another format); the hook rebuilds it."""


class HistoryDB:
    def __init__(self, path: Path) -> None:
        from state.kv import LevelDBKV  # plyvel only when a node persists its history

        self.path = Path(path)
        os.makedirs(self.path.parent, exist_ok=True)
        self.kv = LevelDBKV(self.path, create_if_missing=True)

    def close(self) -> None:
        self.kv.close()

    def stored_height(self) -> int | None:
        raw = self.kv.get(META)
        if raw is None:
            return None
        meta = self._meta(raw)
        return int(meta["height"])

    @staticmethod
    def _meta(raw: bytes) -> dict[str, Any]:
        try:
            meta = msgpack.unpackb(raw, raw=False)
        except Exception as exc:
            raise HistoryDBError(f"risk history meta is not msgpack: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT or type(meta.get("height")) is not int:
            raise HistoryDBError(f"risk history meta has format {meta.get('format') if isinstance(meta, dict) else None!r}, "
                                 f"expected {FORMAT}")
        return meta

    def load(self, store: HistoryStore) -> int:
        """Fill ``store`` from disk; returns the stored height (0 if empty)."""
        raw = self.kv.get(META)
        if raw is None:
            return 0
        meta = self._meta(raw)
        accounts = {}
        try:
            for key, value in self.kv.iterate(ACCOUNT):
                if len(key) != 21:
                    raise ValueError(f"account key of {len(key)} bytes")
                accounts[key[1:]] = account_from_wire(msgpack.unpackb(value, raw=False))
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise HistoryDBError(f"risk history account record is damaged: {exc}") from None
        # Recency order matters (counterparty maps are ordered; eviction by last activity).
        store.accounts = dict(sorted(accounts.items(), key=lambda kv: (kv[1].last_active, kv[0])))
        store.fees.clear()
        store.fees.extend(float(f) for f in meta.get("fees", []))
        store._fee_median = None
        store.height = meta["height"]
        store.dirty.clear()
        store.evicted.clear()
        return store.height

    def flush(self, store: HistoryStore) -> int:
        """Write what changed since the last flush and the height, in one batch; returns the records written."""
        puts: dict[bytes, bytes | None] = {}
        pack = msgpack.packb
        for address in store.dirty:
            acc = store.accounts.get(address)
            if acc is not None:
                puts[ACCOUNT + address] = pack(account_to_wire(acc), use_bin_type=True)
        for address in store.evicted:
            puts[ACCOUNT + address] = None
        puts[META] = pack({"format": FORMAT, "height": store.height, "fees": list(store.fees)}, use_bin_type=True)
        self.kv.write_batch(puts, sync=False)
        store.dirty.clear()
        store.evicted.clear()
        return len(puts)

    def clear(self) -> None:
        keys: dict[bytes, bytes | None] = {k: None for k, _ in self.kv.iterate(b"")}
        if keys:
            self.kv.write_batch(keys, sync=False)
