"""The risk history on disk: the node's own LevelDB, apart from consensus state.

``HOME/data/risk-history/`` holds one key per account (``a`` + address →
its last active height as 8 big-endian bytes, then the msgpack of
node.risk.history.account_to_wire) and one meta key (``m`` →
format, the height the history is complete up to, the recent fees).  The
node writes the accounts a block touched and the new height in one batch
right after the block commits (``flush``), so the history and its height
never disagree; at start-up ``load`` reads it back in one scan instead of
replaying blocks (each record stays encoded until the account is first
used: node.risk.history.StoredAccount), and the hook replays only the
blocks committed after the stored height (none after a clean stop, a few
after a crash).

Nothing here is consensus state: the directory can be deleted at any time
(the next start rebuilds it from recent blocks), and it is written with
``sync=False`` — a crash loses at most the last batches, which the height
in the same batch makes the next start replay.
"""

from __future__ import annotations

import gc
import logging
import os
from pathlib import Path
from typing import Any

import msgpack

from node.risk.history import AccountHistory, HistoryStore, StoredAccount, account_to_wire

log = logging.getLogger("qenex.risk")

FORMAT = 2  # 2: recent sends carry their token, fresh receivers (feature schema 4)
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
        """Fill ``store`` from disk (records still encoded: StoredAccount); returns the stored height (0 if empty)."""
        raw = self.kv.get(META)
        if raw is None:
            return 0
        meta = self._meta(raw)
        # Up to 50,000 accounts in one burst: the cyclic collector would walk the growing heap again and
        # again meanwhile; none of these is garbage.
        collecting = gc.isenabled()
        gc.disable()
        try:
            accounts = []
            for key, value in self.kv.iterate(ACCOUNT):
                if len(key) != 21 or len(value) < 9:
                    raise HistoryDBError(f"risk history account record is damaged: key of {len(key)} bytes, "
                                         f"value of {len(value)}")
                accounts.append((int.from_bytes(value[:8], "big"), key[1:], value[8:]))
            # Recency order matters (counterparty maps are ordered; eviction by last activity).
            accounts.sort(key=lambda t: (t[0], t[1]))
            store.accounts = {address: StoredAccount(last, record) for last, address, record in accounts}
        finally:
            if collecting:
                gc.enable()
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
            if isinstance(acc, AccountHistory):  # dirty ones are decoded: they were just written
                puts[ACCOUNT + address] = acc.last_active.to_bytes(8, "big") + pack(account_to_wire(acc),
                                                                                      use_bin_type=True)
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
