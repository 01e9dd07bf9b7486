"""Snapshot create, verify and restore on a single-validator home (node/snapshot.py).

    python bench/snapshot.py --blocks 500 --txs 20

Commits ``--blocks`` blocks of ``--txs`` transfers each (real Ed25519
certificates) into a fresh home's LevelDB store, then times ``create``
(LevelDB snapshot streamed to a file), ``verify`` (content hash, records, and
the replay of every block from genesis) and ``restore`` into a second home
of the same chain (verify, plus the swap).  Prints the file size, key count
and seconds for each.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from consensus.messages import CommitCertificate, Vote, VoteKind  # noqa: E402
from consensus.verify import CertificateVerifier  # noqa: E402
from node.config import Home  # noqa: E402
from node.genesis_tools import write_single_node_home  # noqa: E402
from node.homecheck import init_home_state  # noqa: E402
from node.snapshot import create_from_home, restore_snapshot, verify_snapshot  # noqa: E402
from state.app import Application  # noqa: E402
from state.crypto import PrivateKey  # noqa: E402
from state.genesis import Genesis  # noqa: E402
from state.keyfile import load_keyfile  # noqa: E402
from state.kv import LevelDBKV  # noqa: E402
from state.testing import transfer  # noqa: E402


def build_home(root: Path, blocks: int, txs: int) -> Home:
    home = Home(root)
    write_single_node_home(home, chain_id="qenex-bench-1", name="n0", p2p_port=0, rpc_port=0)
    genesis = Genesis.from_json(home.genesis_file.read_text())
    key = load_keyfile(home.node_key_file, None)
    kv = LevelDBKV(home.state_dir)
    app = Application(kv, genesis, initialise=False, commit_verifier=CertificateVerifier())
    nonce = 0
    for _ in range(blocks):
        batch = []
        for _ in range(txs):
            batch.append(transfer(key, nonce, PrivateKey.generate().address, 10**12, chain_id=genesis.chain_id))
            nonce += 1
        block, result = app.build_block(batch, proposer=key.address, time_ms=app.last_time_ms + 1000,
                                        last_commit=app.get_commit_cert(app.height) or b"")
        vote = Vote.create(key, genesis.chain_id, VoteKind.COMMIT, block.header.height, 0, block.hash)
        app.commit_block(block, result, CommitCertificate.from_votes(block.header.height, 0, block.hash,
                                                                     [vote]).encode())
    kv.close()
    return home


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--blocks", type=int, default=500)
    parser.add_argument("--txs", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qenex-bench-snapshot-"))
    try:
        home = build_home(work / "home", args.blocks, args.txs)
        t0 = time.perf_counter()
        manifest, path = create_from_home(home, work / "s.qsnap")
        t1 = time.perf_counter()
        verify_snapshot(path)
        t2 = time.perf_counter()
        twin = Home(work / "twin")
        shutil.copytree(home.config_dir, twin.config_dir)
        genesis = Genesis.from_json(home.genesis_file.read_text())
        init_home_state(twin, genesis, load_keyfile(home.node_key_file, None).address)
        t3 = time.perf_counter()
        restore_snapshot(twin, path)
        t4 = time.perf_counter()
        print(f"height {manifest.height}, {args.blocks * args.txs} transfers, {manifest.key_count} keys, "
              f"{path.stat().st_size / 2**20:.1f} MiB")
        print(f"create {t1 - t0:.2f} s, verify (with replay) {t2 - t1:.2f} s, restore {t4 - t3:.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
