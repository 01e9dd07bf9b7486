"""End to end: a validator of a live 4-validator testnet takes periodic snapshots,
is stopped, snapshotted, restored in place to an earlier height H (rolled
forward from its own blocks), restarted, and catches up with the others on
the same blocks."""

from __future__ import annotations

import dataclasses
import json
import signal
from pathlib import Path

import pytest

from node.admin_auth import totp_now
from node.config import Home, SnapshotSection
from tests.localnet import LocalNet, running_localnet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]
VICTIM = 3


def _snapshot_every_5_blocks(net: LocalNet) -> None:
    home = Home(net.home(VICTIM))
    config = home.load_config()
    home.write_config(dataclasses.replace(config, snapshot=SnapshotSection(interval_blocks=5, keep=10)))


def _auto_snapshots(home: Home) -> dict[int, Path]:
    if not home.snapshots_dir.exists():
        return {}
    return {int(p.name[9:21]): p for p in home.snapshots_dir.glob("snapshot-*.qsnap")}


def test_a_validator_restored_to_an_earlier_height_rejoins_on_the_same_chain(tmp_path):
    with running_localnet(tmp_path / "net", configure=_snapshot_every_5_blocks) as net:
        home = Home(net.home(VICTIM))
        wait_until(lambda: len(_auto_snapshots(home)) >= 2, 120, "two periodic snapshots on the victim")

        in_use = net.cli("snapshot", "create", "--home", str(net.home(0)))
        assert in_use.returncode == 1 and "qenexd admin snapshot" in in_use.stderr
        assert len(in_use.stderr.strip().splitlines()) == 1
        enrolled = net.cli("admin", "enroll", "--home", str(net.home(0)), "--json")
        assert enrolled.returncode == 0, enrolled.stderr
        live = net.cli("admin", "snapshot", "--home", str(net.home(0)), "--json",
                       "--otp", totp_now(json.loads(enrolled.stdout)["secret"]),
                       "--params", json.dumps({"out_path": "live.qsnap"}))
        assert live.returncode == 0, live.stderr
        live_doc = json.loads(live.stdout)
        assert live_doc["path"] == str(Home(net.home(0)).snapshots_dir / "live.qsnap")
        checked = net.cli("snapshot", "verify", live_doc["path"], "--json")
        assert checked.returncode == 0, checked.stderr
        assert json.loads(checked.stdout)["app_hash"] == net.rpc(0).call("qenex_getBlock",
                                                                         live_doc["height"])["app_hash"]

        net.kill(VICTIM, signal.SIGTERM)
        created = net.cli("snapshot", "create", "--home", str(home.root), "--out", str(tmp_path / "stopped.qsnap"),
                          "--json")
        assert created.returncode == 0, created.stderr
        stopped_at = json.loads(created.stdout)["height"]
        verified = net.cli("snapshot", "verify", str(tmp_path / "stopped.qsnap"), "--json")
        assert verified.returncode == 0, verified.stderr

        autos = _auto_snapshots(home)
        base = min(autos)
        assert base < stopped_at
        target = base + 2
        assert target <= stopped_at
        restored = net.cli("snapshot", "restore", "--home", str(home.root), str(autos[base]),
                           "--height", str(target), "--force", "--json")
        assert restored.returncode == 0, restored.stderr
        note = json.loads(restored.stdout)
        reference = net.rpc(0).call("qenex_getBlock", target)
        assert (note["height"], note["block_hash"], note["app_hash"]) == (target, reference["hash"],
                                                                          reference["app_hash"])
        assert note["sign_state_height"] is not None and note["sign_state_height"] > target
        # Its WAL was of stopped_at + 1: kept only when restored to exactly stopped_at; otherwise
        # the heights it reached are off limits until it passes them (SignGuard.floor).
        assert note["wal_kept"] == (target == stopped_at)
        if not note["wal_kept"]:
            assert note["sign_floor"] >= max(note["sign_state_height"], stopped_at + 1)

        net.start(VICTIM)
        goal = net.height(0) + 3
        net.wait_height(goal, timeout=180)
        for h in (target, target + 1, stopped_at, stopped_at + 1, goal):
            hashes = {net.rpc(i).call("qenex_getBlock", h)["hash"] for i in range(net.n)}
            assert len(hashes) == 1, f"block {h} differs across nodes: {hashes}"
        assert "restored from a snapshot" in (home.root / "node.log").read_text()
        # It votes again once past the floor (never at or below it: the guard refuses those).
        wait_until(lambda: json.loads(home.sign_state_file.read_text())["height"] > note["sign_floor"], 120,
                   "the restored validator signing above its floor")
