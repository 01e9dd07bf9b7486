"""Block sync: a node that is behind fetches blocks with their commit
certificates from peers, and the driver verifies and applies them.

Two request/response protocols:

* ``/qenex/status/1`` → ``[1, chain_id, height, last_block_hash]``
* ``/qenex/blocks/1`` ``[1, from_height, max_count]`` →
  ``[1, [[block_bytes, commit_cert_bytes], ...]]``

Everything a peer sends is decoded canonically, within limits per message
(a status is a few hundred bytes), and checked; a peer that answers garbage
or with a block its certificate does not sign is penalised, and one over a
decode limit is banned (``node.inbound.punish``). Blocks responses are
decoded, and each block and certificate checked to decode, in a worker
thread, so a hostile response never costs the event loop.
Application happens on the driver's inbox (``SyncedBlock``), never here, so a
synced block and a consensus commit can never race.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from consensus.messages import CommitCertificate
from node.inbound import punish
from state.app import Application
from state.codec import decode, encode
from state.types import Block

log = logging.getLogger("qenex.sync")

STATUS_PROTOCOL = "/qenex/status/1"
BLOCKS_PROTOCOL = "/qenex/blocks/1"
MAX_BLOCKS_PER_REQUEST = 64
MAX_RESPONSE_BYTES = 6 * 1024 * 1024
# [1, chain_id (<= 64 chars), height, hash]: about 110 bytes.
MAX_STATUS_BYTES = 256
MAX_BLOCKS_REQUEST_BYTES = 64
# [1, [[block, cert], ...]] with at most MAX_BLOCKS_PER_REQUEST pairs.
MAX_BLOCKS_RESPONSE_OBJECTS = 3 + 3 * MAX_BLOCKS_PER_REQUEST


class PeerNetwork(Protocol):
    def connected_peers(self) -> list[str]: ...

    async def request(
        self, peer_id: str, protocol: str, data: bytes, timeout: float = 5.0, max_response_bytes: int | None = None
    ) -> bytes: ...

    def penalize(self, peer_id: str, reason: str, points: int = 10) -> None: ...

    def ban(self, peer_id: str, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SyncedBlock:
    """Driver inbox item: a block fetched from ``peer`` with its certificate."""

    block: bytes
    cert: bytes
    peer: str


class BadSyncResponse(Exception):
    pass


def parse_status(data: bytes) -> tuple[str, int, bytes]:
    msg = decode(data, max_bytes=MAX_STATUS_BYTES, max_objects=5, max_depth=1)
    if not (isinstance(msg, list) and len(msg) == 4 and msg[0] == 1):
        raise BadSyncResponse("status response is not [1, chain_id, height, hash]")
    _, chain_id, height, block_hash = msg
    if not isinstance(chain_id, str) or not isinstance(height, int) or height < 0 or not isinstance(block_hash, bytes):
        raise BadSyncResponse("status response has fields of the wrong type")
    return chain_id, height, block_hash


def parse_blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    msg = decode(data, max_bytes=MAX_RESPONSE_BYTES, max_objects=MAX_BLOCKS_RESPONSE_OBJECTS, max_depth=3)
    if not (isinstance(msg, list) and len(msg) == 2 and msg[0] == 1 and isinstance(msg[1], list)):
        raise BadSyncResponse("blocks response is not [1, [...]]")
    pairs = []
    for item in msg[1][:MAX_BLOCKS_PER_REQUEST]:
        if not (isinstance(item, list) and len(item) == 2 and all(isinstance(x, bytes) for x in item)):
            raise BadSyncResponse("blocks response item is not [block, cert]")
        pairs.append((item[0], item[1]))
    return pairs


def check_blocks(data: bytes) -> list[tuple[bytes, bytes]]:
    """parse_blocks, and every block and certificate decodes (within the
    codec's limits). Stateless and thread-safe: runs in a worker thread. The
    driver still verifies each certificate before applying its block."""
    pairs = parse_blocks(data)
    for block, cert in pairs:
        Block.decode(block, max_bytes=MAX_RESPONSE_BYTES)
        CommitCertificate.decode(cert)
    return pairs


class BlockSync:
    def __init__(self, app: Application, network: PeerNetwork, inbox: asyncio.Queue[Any]) -> None:
        self._app = app
        self._net = network
        self._inbox = inbox
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.best_peer_height = 0
        self.syncing = False

    # -- serving ----------------------------------------------------------

    async def serve_status(self, peer: str, data: bytes) -> bytes:
        return encode([1, self._app.chain_id, self._app.height, self._app.last_block_hash])

    async def serve_blocks(self, peer: str, data: bytes) -> bytes:
        req = decode(data, max_bytes=MAX_BLOCKS_REQUEST_BYTES, max_objects=4, max_depth=1)
        if not (isinstance(req, list) and len(req) == 3 and req[0] == 1):
            raise BadSyncResponse("blocks request is not [1, from, count]")
        start, count = req[1], req[2]
        if not (isinstance(start, int) and isinstance(count, int) and start >= 1 and count >= 1):
            raise BadSyncResponse(f"bad blocks request range {start!r}, {count!r}")
        out: list[list[bytes]] = []
        size = 0
        for height in range(start, min(start + min(count, MAX_BLOCKS_PER_REQUEST), self._app.height + 1)):
            block = self._app.get_block(height)
            cert = self._app.get_commit_cert(height)
            if block is None or cert is None:
                break
            raw = block.encode()
            size += len(raw) + len(cert)
            if out and size > MAX_RESPONSE_BYTES - 64 * 1024:
                break
            out.append([raw, cert])
        return encode([1, out])

    # -- fetching ---------------------------------------------------------

    def request(self, height: int) -> None:
        self.best_peer_height = max(self.best_peer_height, height)
        self._wake.set()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="block-sync")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=2.0)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            try:
                await self._sync_round()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("sync round failed")

    async def _sync_round(self) -> None:
        ahead: list[tuple[int, str]] = []
        for peer in self._net.connected_peers():
            try:
                # The p2p layer refuses (and penalises) a longer answer at its header.
                data = await self._net.request(
                    peer, STATUS_PROTOCOL, b"\x01", timeout=2.0, max_response_bytes=MAX_STATUS_BYTES
                )
            except Exception as exc:  # unreachable, slow or gone: not a fault by itself
                log.debug("status from %s failed: %s", peer, exc)
                continue
            try:
                chain_id, height, _ = parse_status(data)
            except Exception as exc:
                log.info("bad status reply from %s: %s", peer, exc)
                punish(self._net, peer, "bad status reply", exc)
                continue
            if chain_id != self._app.chain_id:
                self._net.penalize(peer, f"peer is on chain {chain_id!r}", points=100)
                continue
            if height > self._app.height:
                ahead.append((height, peer))
        if not ahead:
            self.syncing = False
            return
        self.syncing = True
        # Highest first; a peer that claims blocks it then does not serve is
        # penalised and the next one is tried, so one liar cannot stall us.
        for height, peer in sorted(ahead, key=lambda hp: (-hp[0], hp[1])):
            start = self._app.height + 1
            if height < start:
                continue
            self.best_peer_height = max(self.best_peer_height, height)
            log.info("behind: at %d, peer %s at %d; fetching from %d", start - 1, peer[-8:], height, start)
            try:
                data = await self._net.request(
                    peer, BLOCKS_PROTOCOL, encode([1, start, MAX_BLOCKS_PER_REQUEST]), timeout=10.0,
                    max_response_bytes=MAX_RESPONSE_BYTES,
                )
            except Exception as exc:
                self._net.penalize(peer, f"blocks request failed: {exc}")
                continue
            try:
                # One request at a time, so at most one response decodes off the loop.
                pairs = await asyncio.to_thread(check_blocks, data)
            except Exception as exc:
                punish(self._net, peer, "bad blocks response", exc)
                continue
            if not pairs:
                self._net.penalize(peer, f"claimed height {height} but served no block from {start}", points=25)
                continue
            for block, cert in pairs:
                await self._inbox.put(SyncedBlock(block, cert, peer))
            # Let the driver apply them before asking again.
            target = start + len(pairs) - 1
            for _ in range(500):
                if self._app.height >= target:
                    break
                await asyncio.sleep(0.01)
            self._wake.set()  # keep going until caught up
            return
