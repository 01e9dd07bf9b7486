"""The last step of ``qenexd snapshot restore``: swap the new store in, crash-safely.

The swap is a few renames (the old store aside, the new one in, the WAL
aside) and two small files (the restore note, the init marker).  Renames are
atomic one by one but not together: a crash between two of them would leave
the home with no state directory, or with two.  So the whole plan is first
written to ``data/restore-journal.json`` (fsynced), and every step is done
so that doing it again is harmless.  The journal is written only once the new
store is complete and verified, so an interrupted swap is always finished,
never rolled back: by the next ``qenexd snapshot restore`` or the next node
start (``node.homecheck``), whichever comes first.  When the home no longer
matches the journal (the new store and the old one both gone), that is one
line naming what is missing, and the journal is kept.

A store that is a symlink (``data/state`` -> another disk) is swapped at its
target: the new store is built beside the target and renamed onto it, the
old one kept beside it, and the symlink itself is never touched.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from node.config import Home
from node.errors import NodeError
from state.keyfile import write_private_file

JOURNAL_VERSION = 1


class RestoreSwapError(NodeError):
    """An interrupted restore cannot be finished: the home is not what its journal describes."""


@dataclass(frozen=True, slots=True)
class SwapPlan:
    build: str  # the directory holding the new store ("state" inside it)
    store: str  # where the store lives: data/state, or its symlink's target
    store_aside: str | None  # where the old store goes (None: there was none)
    wal_aside: str | None  # where the WAL goes (None: kept, or nothing to keep)
    wal_drop_empty: bool  # an empty WAL file: removed
    note: dict[str, Any]  # data/restored.json
    marker: dict[str, Any]  # data/initialised.json, written if missing


def journal_file(home: Home) -> Path:
    return home.data_dir / "restore-journal.json"


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def store_location(home: Home) -> Path:
    """Where the store's directory really is: ``data/state``, or the target of that symlink."""
    if home.state_dir.is_symlink():
        return Path(os.path.realpath(home.state_dir))
    return home.state_dir


def swap(home: Home, plan: SwapPlan) -> None:
    """Write the journal, then carry the plan out."""
    write_private_file(journal_file(home), (json.dumps({"version": JOURNAL_VERSION, **asdict(plan)}, indent=1,
                                                       sort_keys=True) + "\n").encode())
    fsync_dir(home.data_dir)
    _carry_out(home, plan)


def finish_interrupted(home: Home) -> dict[str, Any] | None:
    """Finish a swap a crash interrupted; its restore note, or None when there was none."""
    path = journal_file(home)
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or doc.pop("version", None) != JOURNAL_VERSION:
            raise ValueError("unsupported version")
        plan = SwapPlan(**doc)
    except (OSError, ValueError, TypeError) as exc:
        raise RestoreSwapError(f"restore journal {path} is unreadable ({exc}); an interrupted restore left the "
                               "home as it describes: inspect it, or remove it and restore again") from None
    _carry_out(home, plan)
    return plan.note


def _carry_out(home: Home, plan: SwapPlan) -> None:
    new = Path(plan.build) / "state"
    store = Path(plan.store)
    if new.exists():  # the new store is not in place yet
        if store.exists():
            if plan.store_aside is None:
                raise RestoreSwapError(f"restore journal {journal_file(home)}: {store} appeared after the restore "
                                       f"began; the restored store is still at {new}")
            aside = Path(plan.store_aside)
            if aside.exists():
                raise RestoreSwapError(f"restore journal {journal_file(home)}: both {store} and {aside} exist; "
                                       f"the restored store is still at {new}")
            os.rename(store, aside)
            fsync_dir(store.parent)
        os.rename(new, store)
        fsync_dir(store.parent)
    elif not (store / "CURRENT").is_file():
        raise RestoreSwapError(
            f"restore journal {journal_file(home)}: neither the restored store {new} nor a store at {store} "
            f"exists (the old one: {plan.store_aside or 'none'}); restore again")
    wal = home.wal_file
    if plan.wal_aside is not None and wal.exists():
        aside = Path(plan.wal_aside)
        if aside.exists():
            raise RestoreSwapError(f"restore journal {journal_file(home)}: both {wal} and {aside} exist")
        os.rename(wal, aside)
    elif plan.wal_drop_empty and wal.exists() and wal.stat().st_size == 0:
        wal.unlink()
    fsync_dir(home.data_dir)
    write_restore_note(home, plan.note)
    if not home.init_marker.exists():
        write_private_file(home.init_marker, (json.dumps(plan.marker, indent=1) + "\n").encode())
    shutil.rmtree(plan.build, ignore_errors=True)
    journal_file(home).unlink(missing_ok=True)
    fsync_dir(home.data_dir)


def write_restore_note(home: Home, note: dict[str, Any]) -> None:
    write_private_file(home.restore_note, (json.dumps(note, indent=1, sort_keys=True) + "\n").encode())


__all__ = ["RestoreSwapError", "SwapPlan", "finish_interrupted", "fsync_dir", "journal_file", "store_location",
           "swap", "write_restore_note"]
