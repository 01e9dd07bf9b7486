"""``qenexd snapshot create|verify|restore``: state snapshots of a stopped node (node/snapshot.py)."""

from __future__ import annotations

from pathlib import Path

import click

from cli.common import handle_errors, home_option, json_option, emit
from node.config import Home
from node.snapshot import create_from_home, restore_snapshot, verify_snapshot


@click.group()
def snapshot() -> None:
    """Snapshots of the state store: create, verify, restore (point-in-time with --height)."""


@snapshot.command()
@home_option
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Snapshot file to write (default HOME/snapshots/snapshot-<height>.qsnap).")
@json_option
@handle_errors
def create(home: Path, out: Path | None, as_json: bool) -> None:
    """Snapshot the store of a stopped node (a running one: `qenexd admin snapshot`)."""
    manifest, path = create_from_home(Home(home), out)
    emit({"path": str(path), **manifest.to_json_obj()}, as_json)


@snapshot.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for the scratch stores (default: the system temp dir).")
@json_option
@handle_errors
def verify(file: Path, workdir: Path | None, as_json: bool) -> None:
    """Check a snapshot: footer, manifest, content SHA-256, records, and a replay of
    its blocks from its genesis that must give every record and the app hash."""
    manifest = verify_snapshot(file, workdir=workdir)
    emit({"path": str(file), "verified": ["manifest", "content_sha256", "records", "head",
                                          f"replay of blocks 1..{manifest.height} from genesis"],
          **manifest.to_json_obj()}, as_json)


@snapshot.command()
@home_option
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--height", type=click.IntRange(0), default=None,
              help="Roll forward to this height with verified blocks (default: the snapshot's height).")
@click.option("--force", is_flag=True, help="Replace a store that holds blocks (the old one is kept aside).")
@click.option("--blocks-from", "blocks_from", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="A stopped node home to take blocks above the snapshot from (default: this home's own store).")
@json_option
@handle_errors
def restore(home: Path, file: Path, height: int | None, force: bool, blocks_from: Path | None,
            as_json: bool) -> None:
    """Restore a stopped node's store from a snapshot; the sign-state record is kept."""
    note = restore_snapshot(Home(home), file, height=height, force=force,
                            blocks_from=Home(blocks_from) if blocks_from is not None else None)
    emit(note, as_json)
