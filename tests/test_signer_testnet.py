"""Acceptance: a 4-validator testnet where node3 signs through ``qenexd signer start``.

It finalizes normally; killing the signer stops node3's votes while the
others finalize and node3 keeps following; restarting the signer resumes
them.  Checked in the commit certificates every node stored (read from their
stores once the nodes are stopped): node3's validator signs some while its
signer runs, none of the heights finalized while it is down, and some again
after the restart.  (node3 keeps its node key as its connection identity and peer id; the
validator key it votes with lives in the signer's home, and the node never
signs a consensus message with a local key in remote mode.)
"""

from __future__ import annotations

import json
from dataclasses import replace
import shutil
import tempfile
from pathlib import Path

import pytest

from consensus.messages import CommitCertificate
from node.config import Home, NodeConfig, SignerSection
from state.crypto import PrivateKey
from state.keyfile import load_keyfile
from state.kv import LevelDBKV
from state import keys
from tests.localnet import running_localnet, wait_until
from tests.test_signer_process import start_signer, stop

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REMOTE = 3


def test_a_validator_on_a_remote_signer_votes_stops_and_resumes(tmp_path):
    sock_dir = Path(tempfile.mkdtemp(prefix="qsigt", dir="/tmp"))
    signer_home = sock_dir / "signer"
    state: dict[str, object] = {}

    def configure(net) -> None:
        home = net.home(REMOTE)
        node_key: PrivateKey = load_keyfile(home / "config" / "node_key.json", None)
        out = net.cli("signer", "init", "--home", str(signer_home), "--chain-id", net.chain_id,
                      "--listen", f"unix:{sock_dir}/signer.sock", "--node-public-key", "0x" + node_key.public_key.hex(),
                      "--validator-key", str(home / "config" / "node_key.json"), "--json")
        assert out.returncode == 0, out.stderr
        section = json.loads(out.stdout)["node_config"]
        toml = home / "config" / "node.toml"
        config = NodeConfig.from_toml(toml.read_text())
        toml.write_text(replace(config, signer=SignerSection(**section, timeout_ms=1000)).to_toml())
        state["signer"] = start_signer(signer_home)

    def signed_height() -> int:
        return json.loads((signer_home / "sign_state.json").read_text())["height"]

    try:
        with running_localnet(tmp_path, configure=configure) as net:
            local_record = net.home(REMOTE) / "data" / "sign_state.json"
            local_before = local_record.read_bytes()
            validator = load_keyfile(net.home(REMOTE) / "config" / "node_key.json", None).address
            wait_until(lambda: signed_height() >= 2, 30, "the remote signer signing")
            proc = state["signer"]
            stop(proc)  # SIGKILL the signer
            frozen = signed_height()
            top = max(net.height(i) for i in range(4))
            net.wait_height(top + 3, timeout=90)  # the other three finalize; node3 follows
            assert net.procs[REMOTE].poll() is None, net.log_tail(REMOTE)
            assert signed_height() == frozen, "something signed while the signer was dead"
            assert "remote signer at" in net.log_tail(REMOTE, 400)
            down_until = [net.height(i) for i in range(4)]  # each node's heights finalized while it was down
            state["signer"] = start_signer(signer_home)
            wait_until(lambda: signed_height() > frozen + 1, 60, "votes resuming after the signer restart")
            net.wait_height(max(down_until) + 3, timeout=90)
            assert local_record.read_bytes() == local_before, "node3 signed with its local key"
            net.stop_all()  # the stores are LevelDB: one process each
            signed_by_node3 = [_heights_signed_by(Home(net.home(i)), validator) for i in range(4)]
        every = set().union(*signed_by_node3)
        assert any(h <= frozen for h in every), f"node3 signed no certificate before the kill: {sorted(every)}"
        while_down = {h for i, mine in enumerate(signed_by_node3) for h in mine if frozen < h <= down_until[i]}
        assert not while_down, f"node3's signature in certificates finalized while its signer was down: {while_down}"
        assert any(h > max(down_until) for h in every), f"node3 signed nothing after the restart: {sorted(every)}"
    finally:
        proc = state.get("signer")
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(10)
        shutil.rmtree(sock_dir, ignore_errors=True)


def _heights_signed_by(home: Home, validator: bytes) -> set[int]:
    """Heights whose commit certificate, as this node stored it, holds ``validator``'s signature."""
    kv = LevelDBKV(home.state_dir)
    try:
        out = set()
        height = 1
        while (raw := kv.get(keys.commit_cert_key(height))) is not None:
            if validator in {address for address, _ in CommitCertificate.decode(raw).signatures}:
                out.add(height)
            height += 1
        return out
    finally:
        kv.close()
