"""Block sync: a node that is behind fetches blocks with their commit
certificates from peers, and the driver verifies and applies them.

Two request/response protocols:

* ``/qenex/status/1`` → ``[1, chain_id, height, last_block_hash]``, or, asked with
  ``b"\x02"``, ``[2, chain_id, height, last_block_hash, genesis_hash]``: a node
  whose genesis is another chain's under the same chain id (a testnet made
  again with the same id, a wrong file given to ``qenexd init --genesis``)
  says so in one line instead of banning every honest peer for blocks whose
  certificates its genesis set never signed.  A v1 answer is still accepted.
* ``/qenex/blocks/1`` ``[1, from_height, max_count]`` →
  ``[1, [[block_bytes, commit_cert_bytes], ...]]``

Everything a peer sends is decoded canonically, within limits per message
(a status is a few hundred bytes), and checked; a peer that answers garbage
or with a block its certificate does not sign is penalised, and one over a
decode limit is banned (``node.inbound.punish``). Blocks responses are
decoded, once, in a worker thread, and must hold the consecutive heights
asked for, each with a certificate for that block; the driver gets the
decoded blocks and certificates, so a hostile response never costs the event
loop. Application happens on the driver's inbox (``SyncedBlock``), never
here, so a synced block and a consensus commit can never race.

A peer's claimed height only orders peers that have not yet wasted a round:
one whose answer did not move our height goes to the back, and the next peer
is asked in the same round, so a liar cannot stall sync.

Serving reads the stored block bytes (no transaction is decoded) off the
loop, one request per peer at a time and ``MAX_SERVING`` in all.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Protocol

from consensus.messages import MAX_COMMIT_CERTIFICATE_BYTES, CommitCertificate
from node.inbound import PENALTY_GARBAGE, punish
from state.app import Application
from state.blocks import Block
from state.codec import decode, encode
from state.genesis import MAX_BLOCK_BYTES_LIMIT

log = logging.getLogger("qenex.sync")

STATUS_PROTOCOL = "/qenex/status/1"
BLOCKS_PROTOCOL = "/qenex/blocks/1"
MAX_BLOCKS_PER_REQUEST = 64
# A response always has room for one block of the largest size any genesis
# allows, with the largest certificate the consensus codec accepts; both
# decode limits below and the p2p frame limit (node.runtime) derive from it.
MAX_SYNC_BLOCK_BYTES = MAX_BLOCK_BYTES_LIMIT
MAX_CERT_BYTES = MAX_COMMIT_CERTIFICATE_BYTES
# msgpack headers: the outer [1, [...]] at most 5 bytes, each [bin, bin] pair at most 11.
RESPONSE_FRAMING_BYTES = 16 + 16 * MAX_BLOCKS_PER_REQUEST
MAX_RESPONSE_BYTES = MAX_SYNC_BLOCK_BYTES + MAX_CERT_BYTES + RESPONSE_FRAMING_BYTES
# [2, chain_id (<= 64 chars), height, hash, genesis hash]: about 145 bytes.
MAX_STATUS_BYTES = 256
STATUS_REQUEST_V2 = b"\x02"
MAX_BLOCKS_REQUEST_BYTES = 64
# [1, [[block, cert], ...]] with at most MAX_BLOCKS_PER_REQUEST pairs.
MAX_BLOCKS_RESPONSE_OBJECTS = 3 + 3 * MAX_BLOCKS_PER_REQUEST
# Blocks requests served at once (one per peer): each holds up to a response in memory.
MAX_SERVING = 4
# How long a round waits for the driver to apply what one peer served.
APPLY_WAIT_S = 5.0


class PeerNetwork(Protocol):
    def connected_peers(self) -> list[str]: ...

    async def request(
        self, peer_id: str, protocol: str, data: bytes, timeout: float = 5.0, max_response_bytes: int | None = None
    ) -> bytes: ...

    def penalize(self, peer_id: str, reason: str, points: int = 10) -> None: ...

    def ban(self, peer_id: str, reason: str) -> None: ...


@dataclass(frozen=True, slots=True)
class SyncedBlock:
    """Driver inbox item: a block fetched from ``peer`` with its certificate,
    decoded (in the sync worker) and checked to name each other's height and hash."""

    block: Block
    cert: CommitCertificate
    cert_bytes: bytes
    peer: str


class BadSyncResponse(Exception):
    pass


class SyncBusy(Exception):
    """A blocks request refused unread: this peer's previous one, or MAX_SERVING in all, are being served."""


def parse_status(data: bytes) -> tuple[str, int, bytes, bytes | None]:
    """(chain id, height, last block hash, genesis hash or None from a v1 answer)."""
    msg = decode(data, max_bytes=MAX_STATUS_BYTES, max_objects=6, max_depth=1)
    if not (isinstance(msg, list) and ((len(msg) == 4 and msg[0] == 1) or (len(msg) == 5 and msg[0] == 2))):
        raise BadSyncResponse("status response is not [1, chain_id, height, hash] or [2, ..., genesis_hash]")
    chain_id, height, block_hash = msg[1:4]
    genesis_hash = msg[4] if len(msg) == 5 else None
    if not isinstance(chain_id, str) or not isinstance(height, int) or height < 0 or not isinstance(block_hash, bytes):
        raise BadSyncResponse("status response has fields of the wrong type")
    if genesis_hash is not None and not (isinstance(genesis_hash, bytes) and len(genesis_hash) == 32):
        raise BadSyncResponse("status response's genesis hash is not 32 bytes")
    return chain_id, height, block_hash, genesis_hash


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


def check_blocks(
    data: bytes, start: int, max_block_bytes: int = MAX_SYNC_BLOCK_BYTES
) -> list[tuple[Block, CommitCertificate, bytes]]:
    """parse_blocks, then decode every block and certificate (within the
    codec's limits) and require block ``i`` to be at height ``start + i``,
    chained to block ``i - 1``, with a certificate for exactly that height and
    hash. Stateless and thread-safe: runs in a worker thread. The driver
    still verifies each certificate's signatures before applying its block."""
    out: list[tuple[Block, CommitCertificate, bytes]] = []
    for i, (raw, cert_raw) in enumerate(parse_blocks(data)):
        block = Block.decode(raw, max_bytes=max_block_bytes)
        cert = CommitCertificate.decode(cert_raw)
        want = start + i
        if block.header.height != want:
            raise BadSyncResponse(f"blocks response item {i} is block {block.header.height}, not {want}")
        if out and block.header.prev_hash != out[-1][0].hash:
            raise BadSyncResponse(f"block {want} does not follow block {want - 1} of the same response")
        if cert.height != want or cert.block_hash != block.hash:
            raise BadSyncResponse(
                f"certificate of item {i} signs block {cert.height} 0x{cert.block_hash.hex()[:16]}, "
                f"not block {want} 0x{block.hash.hex()[:16]}"
            )
        out.append((block, cert, cert_raw))
    return out


class BlockSync:
    def __init__(self, app: Application, network: PeerNetwork, inbox: asyncio.Queue[Any]) -> None:
        self._app = app
        self._net = network
        self._inbox = inbox
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._serving: set[str] = set()
        # Peer -> answers in a row that did not move our height: such a peer
        # is asked after every peer with fewer, whatever height it claims.
        self._wasted: dict[str, int] = {}
        self.best_peer_height = 0
        self.syncing = False
        # The last round heard from a peer on our chain and none was more than a block ahead (one
        # block is consensus's own skew): until then the runtime does not hold it against a peer that
        # its consensus allowlist lags (node.runtime._update_direct_peers).
        self.caught_up = False

    # -- serving ----------------------------------------------------------

    async def serve_status(self, peer: str, data: bytes) -> bytes:
        if data == STATUS_REQUEST_V2:
            return encode([2, self._app.chain_id, self._app.height, self._app.last_block_hash,
                           self._app.genesis.hash])
        return encode([1, self._app.chain_id, self._app.height, self._app.last_block_hash])

    async def serve_blocks(self, peer: str, data: bytes) -> bytes:
        req = decode(data, max_bytes=MAX_BLOCKS_REQUEST_BYTES, max_objects=4, max_depth=1)
        if not (isinstance(req, list) and len(req) == 3 and req[0] == 1):
            raise BadSyncResponse("blocks request is not [1, from, count]")
        start, count = req[1], req[2]
        if not (isinstance(start, int) and isinstance(count, int) and start >= 1 and count >= 1):
            raise BadSyncResponse(f"bad blocks request range {start!r}, {count!r}")
        if peer in self._serving or len(self._serving) >= MAX_SERVING:
            raise SyncBusy(f"blocks request from {peer} refused: {len(self._serving)} being served")
        end = min(start + min(count, MAX_BLOCKS_PER_REQUEST), self._app.height + 1)
        self._serving.add(peer)
        try:
            # Stored blocks below the head never change, so a worker may read them.
            return await asyncio.to_thread(self._blocks_response, start, end)
        finally:
            self._serving.discard(peer)

    def _blocks_response(self, start: int, end: int) -> bytes:
        out: list[list[bytes]] = []
        size = 0
        for height in range(start, end):
            raw = self._app.get_block_bytes(height)
            cert = self._app.get_commit_cert(height)
            if raw is None or cert is None:
                break
            size += len(raw) + len(cert)
            if out and size > MAX_RESPONSE_BYTES - RESPONSE_FRAMING_BYTES:
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
        answered = 0
        connected = self._net.connected_peers()
        self._wasted = {p: n for p, n in self._wasted.items() if p in connected}  # forget peers that left
        for peer in connected:
            try:
                # The p2p layer refuses (and penalises) a longer answer at its header.
                data = await self._net.request(
                    peer, STATUS_PROTOCOL, STATUS_REQUEST_V2, timeout=2.0, max_response_bytes=MAX_STATUS_BYTES
                )
            except Exception as exc:  # unreachable, slow or gone: not a fault by itself
                log.debug("status from %s failed: %s", peer, exc, extra={"peer": peer})
                continue
            try:
                chain_id, height, _, genesis_hash = parse_status(data)
            except Exception as exc:
                log.info("bad status reply from %s: %s", peer, exc, extra={"peer": peer})
                punish(self._net, peer, "bad status reply", exc)
                continue
            if chain_id != self._app.chain_id:
                self._net.penalize(peer, f"peer is on chain {chain_id!r}", points=100)
                continue
            if genesis_hash is not None and genesis_hash != self._app.genesis.hash:
                # Not the peer's fault, but it can never serve us: one clear line, then it goes.
                log.error("peer %s is on another chain named %r: its genesis is 0x%s, ours 0x%s; if this node "
                          "should follow it, this home's genesis.json is the wrong file", peer, chain_id,
                          genesis_hash.hex()[:16], self._app.genesis.hash.hex()[:16], extra={"peer": peer})
                self._net.penalize(peer, f"peer is on another genesis (0x{genesis_hash.hex()[:16]}) of chain "
                                         f"{chain_id!r}", points=100)
                continue
            answered += 1
            if height > self._app.height:
                ahead.append((height, peer))
        # A claim counts only from a peer that has not wasted a round (claimed blocks it then did not
        # serve): one liar claiming a far height must not hold us "behind", and refusals unpenalised,
        # for ever.
        self.caught_up = answered > 0 and all(height <= self._app.height + 1 or self._wasted.get(peer, 0)
                                              for height, peer in ahead)
        if not ahead:
            self.syncing = False
            return
        self.syncing = True
        # Peers that have not wasted a round first, then the highest claim; a
        # peer that serves nothing usable is penalised and the next one is
        # tried in this same round, so one liar cannot stall us.
        for height, peer in sorted(ahead, key=lambda hp: (self._wasted.get(hp[1], 0), -hp[0], hp[1])):
            before = self._app.height
            if height <= before:
                continue
            self.best_peer_height = max(self.best_peer_height, height)
            if await self._fetch_from(peer, height, before + 1):
                self._wasted.pop(peer, None)
                self._wake.set()  # keep going until caught up
                return
            self._wasted[peer] = self._wasted.get(peer, 0) + 1

    async def _fetch_from(self, peer: str, height: int, start: int) -> bool:
        """Ask ``peer`` for blocks from ``start`` and hand them to the driver;
        True if our height moved past ``start - 1`` while we waited."""
        log.info("behind: at %d, peer %s at %d; fetching from %d", start - 1, peer[-8:], height, start,
                 extra={"peer": peer})
        try:
            data = await self._net.request(
                peer, BLOCKS_PROTOCOL, encode([1, start, MAX_BLOCKS_PER_REQUEST]), timeout=10.0,
                max_response_bytes=MAX_RESPONSE_BYTES,
            )
        except Exception as exc:
            self._net.penalize(peer, f"blocks request failed: {exc}")
            return False
        try:
            # One request at a time, so at most one response decodes off the loop.
            fetched = await asyncio.to_thread(check_blocks, data, start, self._app.params.max_block_bytes)
        except Exception as exc:
            punish(self._net, peer, f"bad blocks response from {start}", exc)
            return False
        if not fetched:
            self._net.penalize(peer, f"claimed height {height} but served no block from {start}", PENALTY_GARBAGE)
            return False
        for block, cert, cert_bytes in fetched:
            await self._inbox.put(SyncedBlock(block, cert, cert_bytes, peer))
        # Let the driver apply them (it bans a peer whose certificate does not
        # verify). The driver handles each inbox item without yielding, so once
        # the inbox is empty ours are done with: applied or refused.
        target = start + len(fetched) - 1
        for _ in range(int(APPLY_WAIT_S / 0.01)):
            await asyncio.sleep(0.01)
            if self._app.height >= target or self._inbox.empty():
                break
        return self._app.height >= start
