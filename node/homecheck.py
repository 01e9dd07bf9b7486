"""A node home's durable state, created once by ``init`` and checked at every start.

``init_home_state`` (``qenexd init``, ``qenexd testnet init``) is the only
place a state store is created: it builds the LevelDB store with the genesis
state, an empty sign-state record, and last the marker
``data/initialised.json``.  ``open_home_state`` (node start) refuses, with
one line and before anything in the home is written, when

* the store is missing or has lost its ``CURRENT`` file (LevelDB would
  otherwise build a fresh chain at height 0 and produce a different block 1);
* the WAL is damaged before its end (the file is moved aside, the one
  change made), cannot be replayed, or opens a height above the store's
  next one (the state directory is older than the WAL: it would re-decide
  heights it already finalized);
* the sign-state record is missing from a home that had one, belongs to
  another key or chain, or shows a signature above the store's next height
  (the state was rolled back under a validator that already voted there) —
  unless ``qenexd snapshot restore`` rolled it back on purpose: its note
  ``data/restored.json`` names the record's height at the restore and the
  restored height, and while the record still shows exactly that height
  (the validator has signed nothing since) and the store is at or above the
  restored height, the start goes on with a warning.  The record is kept, and
  the note's ``sign_floor`` (the highest height this validator may have
  signed at whose WAL the restore moved aside) is set on the guard
  (``SignGuard.floor``): the validator signs nothing at or below it and
  follows the chain by sync until it passes it.  A record that was missing at
  the restore and copied in before the first start is adopted then: the
  note is updated with its height, which joins the floor.

A swap that ``qenexd snapshot restore`` began and a crash interrupted
(``node.restore_swap``'s journal) is finished first, with a warning.

A home made before the marker existed (store present, no marker) is opened
and given its marker and sign-state record, with a warning.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from consensus.verify import CertificateVerifier
from node.config import Home
from node.errors import ConfigError, StartRefused, WalCorrupted
from node.restore_swap import RestoreSwapError, finish_interrupted, write_restore_note
from node.signguard import SignGuard, SignGuardError
from node.wal import move_aside, read_records, record_to_event
from state.app import Application
from state.crypto import address_to_text
from state.errors import GenesisMismatch, StateError, StoreNotFound
from state.genesis import Genesis
from state.keyfile import write_private_file
from state.kv import LevelDBKV

log = logging.getLogger("qenex.home")

MARKER_VERSION = 1


@dataclass
class HomeState:
    kv: LevelDBKV
    app: Application
    sign_guard: SignGuard
    warnings: list[str]


def init_home_state(home: Home, genesis: Genesis, validator: bytes) -> None:
    """Create the store (with genesis), the sign-state record and the marker."""
    if home.state_dir.exists() or home.init_marker.exists():
        raise ConfigError(
            f"{home.data_dir} already holds a state store; move it away to initialise a new chain there"
        )
    home.data_dir.mkdir(parents=True, exist_ok=True)
    kv = LevelDBKV(home.state_dir, create_if_missing=True)
    try:
        Application(kv, genesis)
    finally:
        kv.close()
    SignGuard.create(home.sign_state_file, genesis.chain_id, validator)
    _write_marker(home, genesis)


def marker_doc(genesis: Genesis) -> dict[str, Any]:
    """The init marker's content (a restore into a home without a store writes it too)."""
    return {"version": MARKER_VERSION, "chain_id": genesis.chain_id, "genesis_hash": "0x" + genesis.hash.hex(),
            "note": "written by qenexd init: this home has a state store; a start never creates one"}


def _write_marker(home: Home, genesis: Genesis) -> None:
    write_private_file(home.init_marker, (json.dumps(marker_doc(genesis), indent=1) + "\n").encode())


def read_sign_height(home: Home) -> int | None:
    """The height in the home's sign-state record (None without a readable one), for the restore note."""
    try:
        height = json.loads(home.sign_state_file.read_text()).get("height")
    except (OSError, ValueError, AttributeError):
        return None
    return height if isinstance(height, int) and not isinstance(height, bool) else None


def read_restore_note(home: Home) -> dict[str, Any] | None:
    try:
        note = json.loads(home.restore_note.read_text())
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _adopt_copied_record(home: Home, note: dict[str, Any] | None, signed: int, store_height: int) -> None:
    """A record that was missing at the restore, copied in before the first start (the store is still at
    the restored height, so nothing ran since): the note takes its height, and the floor with it."""
    if note is None or "sign_state_height" not in note or note["sign_state_height"] is not None:
        return
    if _int(note.get("height")) != store_height:
        return
    floor = max(_int(note.get("sign_floor")) or 0, signed)
    write_restore_note(home, {**note, "sign_state_height": signed, "sign_floor": floor})


def restore_floor(home: Home) -> int:
    """The height at or below which a restored validator signs nothing (0: no such restore)."""
    note = read_restore_note(home)
    if note is None:
        return 0
    floor = _int(note.get("sign_floor"))
    if floor is None:  # a note written before the floor: what it promised, the record's height
        floor = _int(note.get("sign_state_height"))
    return floor or 0


def _restore_allows(home: Home, signed: int, store_height: int) -> str | None:
    """The warning under which a deliberate restore lets a start go on with ``signed`` above the store."""
    note = read_restore_note(home)
    if note is None:
        return None
    restored, at_restore = note.get("height"), note.get("sign_state_height")
    if not isinstance(restored, int) or at_restore != signed or store_height < restored:
        return None
    return (f"{home.root} was restored from a snapshot to height {restored} ({home.restore_note}); its sign-state "
            f"record is kept at height {signed}: this validator signs nothing at or below it and follows the chain "
            "by sync until it passes it")


def _read_marker(home: Home) -> dict[str, Any] | None:
    if not home.init_marker.exists():
        return None
    try:
        doc = json.loads(home.init_marker.read_text())
        if not isinstance(doc, dict) or doc.get("version") != MARKER_VERSION:
            raise ValueError(f"unsupported marker {doc!r:.80}")
    except (OSError, ValueError) as exc:
        raise StartRefused(f"init marker {home.init_marker} is unreadable: {exc}") from None
    return doc


def open_home_state(home: Home, genesis: Genesis, validator: bytes) -> HomeState:
    """Open the store and check it against the WAL and the sign-state record (see the module doc)."""
    warnings: list[str] = []
    try:
        finished = finish_interrupted(home)
    except (RestoreSwapError, OSError) as exc:
        raise StartRefused(f"{home.root}: an interrupted restore cannot be finished: {exc}") from None
    if finished is not None:
        warnings.append(f"finished the restore of {home.root} to height {finished.get('height')} that a crash "
                        f"interrupted ({home.restore_note})")
    marker = _read_marker(home)
    if marker is not None and marker.get("genesis_hash") != "0x" + genesis.hash.hex():
        raise StartRefused(
            f"{home.init_marker} was written for genesis {marker.get('genesis_hash')}, "
            f"not this home's genesis 0x{genesis.hash.hex()}"
        )
    # The checks read the store's height from a probe copy (table files hard
    # linked, the small rest copied): LevelDB rewrites CURRENT, the manifest
    # and its logs on every open, and a refused start must change nothing.
    store_height = _probe_height(home, genesis, marker)
    _check_wal(home, store_height)
    guard, guard_warnings = _open_sign_guard(home, genesis, validator, store_height, legacy=marker is None)
    warnings += guard_warnings
    kv = _open_store(home, home.state_dir, marker)
    try:
        app = _open_app(home, kv, genesis)
        if marker is None:
            _write_marker(home, genesis)
            warnings.append(f"{home.root} predates the init marker: wrote {home.init_marker}")
    except BaseException:
        kv.close()
        raise
    return HomeState(kv, app, guard, warnings)


def _probe_height(home: Home, genesis: Genesis, marker: dict[str, Any] | None) -> int:
    with probe_application(home, genesis, marker) as app:
        return app.height


@contextlib.contextmanager
def probe_application(home: Home, genesis: Genesis, marker: dict[str, Any] | None = None) -> Iterator[Application]:
    """The application over a probe copy of the home's store: reads it as it
    is, changing nothing in it (``qenexd snapshot restore`` reads its blocks
    this way too).  Raises StartRefused with the specific reason."""
    if not (home.state_dir / "CURRENT").is_file():
        _open_store(home, home.state_dir, marker)  # raises the specific refusal, touching nothing
    # Beside the real store (data/state may be a symlink or a mount on another
    # filesystem than data/), so its table files hard-link.  Table files are
    # never copied: a copy of a large store costs its size in time and disk on
    # every start.  Any failure here (no hard links, a full disk) is a
    # one-line refusal, changing nothing.
    real = Path(os.path.realpath(home.state_dir))
    try:
        probe = Path(tempfile.mkdtemp(prefix=".state-probe-", dir=real.parent))
    except OSError as exc:
        raise StartRefused(f"cannot create the start-up probe beside state store {real}: {exc}") from None
    try:
        try:
            for entry in sorted(real.iterdir()):
                target = probe / entry.name
                if entry.name == "LOCK" or not entry.is_file():
                    continue
                if entry.suffix in (".ldb", ".sst"):  # never written after creation: a link is enough
                    try:
                        os.link(entry, target)
                    except OSError as exc:
                        raise StartRefused(
                            f"cannot hard-link table file {entry} into the start-up probe {probe} ({exc}); "
                            "the store must be on a filesystem with hard links"
                        ) from None
                    continue
                shutil.copy2(entry, target)  # CURRENT, the manifest, LevelDB's own log: small
        except OSError as exc:
            raise StartRefused(f"cannot build the start-up probe of state store {real} in {probe}: {exc}") from None
        kv = _open_store(home, probe, marker)
        try:
            yield _open_app(home, kv, genesis)
        finally:
            kv.close()
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def _open_store(home: Home, path: Path, marker: dict[str, Any] | None) -> LevelDBKV:
    try:
        return LevelDBKV(path)
    except StoreNotFound:
        if marker is None and not home.state_dir.exists():
            raise StartRefused(f"{home.root} has no state store: run `qenexd init --home {home.root}` first") from None
        what = "does not exist" if not home.state_dir.exists() else "has no CURRENT file (damaged or not a store)"
        raise StartRefused(
            f"state store {home.state_dir} {what}; refusing to create a fresh one over a home initialised "
            f"with a store ({home.init_marker}): restore data/state from a backup or resync into a new home"
        ) from None
    except StateError as exc:
        raise StartRefused(f"state store {home.state_dir} cannot be opened: {str(exc).replace(str(path), str(home.state_dir))}") from None


def _open_app(home: Home, kv: LevelDBKV, genesis: Genesis) -> Application:
    try:
        return Application(kv, genesis, initialise=False, commit_verifier=CertificateVerifier())
    except StoreNotFound:
        raise StartRefused(
            f"state store {home.state_dir} is empty (no genesis record); a start never initialises a store"
        ) from None
    except GenesisMismatch as exc:
        raise StartRefused(f"state store {home.state_dir}: {exc}") from None
    except StateError as exc:
        raise StartRefused(f"state store {home.state_dir} is unreadable: {exc}") from None


def _check_wal(home: Home, store_height: int) -> None:
    path = home.wal_file
    try:
        records, _ = read_records(path)  # read only: a torn tail is cut later, by the WAL's own open
    except WalCorrupted as exc:
        moved = move_aside(path)
        raise StartRefused(f"{exc}; moved aside to {moved} (a restart begins this height afresh)") from None
    if not records:
        return
    first = records[0]
    if first[0] != "height" or len(first) < 2 or isinstance(first[1], bool) or not isinstance(first[1], int):
        moved = move_aside(path)
        raise StartRefused(f"WAL {path} does not start with a height record; moved aside to {moved}")
    wal_height = first[1]
    if wal_height > store_height + 1:
        raise StartRefused(
            f"WAL {path} is at height {wal_height} but the state store is at {store_height}: the state is "
            "older than the WAL (restored from an older copy?); starting would re-decide finalized heights"
        )
    if wal_height == store_height + 1:
        for index, record in enumerate(records):
            try:
                record_to_event(record)
            except Exception as exc:
                moved = move_aside(path)
                raise StartRefused(
                    f"WAL {path} record {index} cannot be replayed ({type(exc).__name__}: {str(exc)[:200]}); "
                    f"moved aside to {moved}"
                ) from None


def _open_sign_guard(home: Home, genesis: Genesis, validator: bytes, store_height: int,
                     *, legacy: bool) -> tuple[SignGuard, list[str]]:
    path = home.sign_state_file
    if not path.exists() and legacy:
        guard = SignGuard.create(path, genesis.chain_id, validator)
        return guard, [f"{home.root} had no sign-state record: created {path}"]
    try:
        guard = SignGuard.load(path, genesis.chain_id, validator)
    except SignGuardError as exc:
        raise StartRefused(f"{exc}; it keeps this validator from double signing: restore it") from None
    signed = guard.state.height
    _adopt_copied_record(home, read_restore_note(home), signed, store_height)
    guard.floor = restore_floor(home)
    if signed > store_height + 1:
        allowed = _restore_allows(home, signed, store_height)
        if allowed is not None:
            return guard, [allowed]
        raise StartRefused(
            f"sign-state record {path} shows {guard.state.phase.name} signed at height {signed} by "
            f"{address_to_text(validator)} but the state store is at {store_height}: the state was rolled back; "
            "starting could sign conflicting votes at heights already voted on"
        )
    return guard, []
