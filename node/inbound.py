"""What the node accepts from peers, where it is decoded, and what a bad
frame costs the peer that sent it.

* Consensus frames come only from validators: ``validator_peer_ids`` gives
  the p2p layer the allowlist (a validator's node key is its consensus key,
  so its peer id follows from the public key in the validator set).
* A frame up to ``INLINE_DECODE_BYTES`` (votes, certificates) is decoded on
  the loop; a larger one (proposals, view changes) in one worker thread, at
  most ``MAX_DECODING_BYTES`` in flight; more is dropped and counted.
* Tx batches are checked statelessly (codec, size, shape, chain id,
  signature: ``node/txcheck.py``, the functions admission runs too) in the
  p2p thread by ``TxBatchValidator`` before gossipsub delivers or relays them.  A batch over ``MAX_TX_BATCH_FRAME`` is penalised,
  not banned: senders measure the encoded frame (``tx_batch_frame_bytes``)
  against that same constant, but a peer of another version may not.
* Input over a decode limit (``DecodeLimitExceeded``: too large for its type,
  too many objects, too deep) is never sent by an honest peer and bans at
  once; other garbage costs ``PENALTY_GARBAGE``, so four bad frames inside
  the score's decay (1 point/s) ban the peer.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

from consensus import events as ce
from consensus.messages import Message, decode_message
from p2p import RejectMessage, peer_id_from_public_key
from state.app import Application
from state.codec import decode
from node.txcheck import check_envelope, check_signature, decode_tx
from state.errors import BadSignature, DecodeLimitExceeded, StateError, TxTooLarge, WrongChainId
from state.genesis import MAX_TX_BYTES_CEILING

log = logging.getLogger("qenex.node")

INLINE_DECODE_BYTES = 64 * 1024
MAX_DECODING_BYTES = 32 * 1024 * 1024
PENALTY_GARBAGE = 25

TX_BATCH_VERSION = 1
# The one limit on an encoded batch frame: senders fill batches up to it
# (counting every byte of framing), receivers decode at most it.
MAX_TX_BATCH_FRAME = 256 * 1024 + 1024
# Any tx genesis allows fits a batch on its own, with room to spare.
assert MAX_TX_BYTES_CEILING * 2 <= MAX_TX_BATCH_FRAME
# [1, [tx, ...]]: the txs are bin, so objects = 3 + count; a signed tx is
# over 100 bytes, so a batch cannot hold more than frame // 100 of them.
MAX_TX_BATCH_OBJECTS = 3 + MAX_TX_BATCH_FRAME // 100


class Penalizer(Protocol):
    def penalize(self, peer_id: str, reason: str, points: int = 10) -> None: ...

    def ban(self, peer_id: str, reason: str) -> None: ...


def over_limit(exc: BaseException | None) -> bool:
    """True if ``exc`` is, or was caused by, a DecodeLimitExceeded."""
    seen = 0
    while exc is not None and seen < 16:
        if isinstance(exc, DecodeLimitExceeded):
            return True
        exc = exc.__cause__ or exc.__context__
        seen += 1
    return False


def punish(net: Penalizer, peer: str, what: str, exc: BaseException) -> None:
    if over_limit(exc):
        net.ban(peer, f"{what} over a decode limit: {exc}")
    else:
        net.penalize(peer, f"{what}: {exc}", PENALTY_GARBAGE)


def validator_peer_ids(public_keys: Iterable[bytes]) -> frozenset[str]:
    return frozenset(peer_id_from_public_key(bytes(pk)) for pk in public_keys)


def consensus_peer_keys(app: Application, candidates: Iterable[bytes] = ()) -> frozenset[bytes]:
    """Whose consensus streams a node at ``app.height`` accepts (the p2p direct allowlist): the
    members of the set deciding the next height and of the set of the height just committed (their
    late COMMIT votes and relays), and ``candidates`` (``staking_candidate_keys``).

    The sets are the application's, so the list follows set changes at commit.  With the
    candidates, a validator registered and bonded before an epoch's last block is on the list of
    every node that has reached that block before it signs anything: a peer one block behind the
    boundary does not refuse the newcomer's first votes."""
    keys: set[bytes] = set(candidates)
    for height in (app.height + 1, app.height):
        vset = app.validator_set(height) if height >= 1 else None
        if vset is not None:
            keys.update(bytes(v.pubkey) for v in vset)
    return frozenset(keys)


def staking_candidate_keys(app: Application) -> frozenset[bytes]:
    """Consensus keys of the validators the next epoch's set would hold as of the head (the
    epoch ranking run on the head's state: not jailed or tombstoned, self-bond met, at least 1
    power, the top max_validators by stake), so a direct stream from one of them is accepted
    before its epoch starts.  Reads at most max_candidates records; the runtime calls it only
    when a block may have changed them.  Empty on a chain without staking."""
    staking = app.staking()
    if staking is None:
        return frozenset()
    return frozenset(bytes(v.pubkey) for v in staking.ranked())


class ConsensusInbound:
    """Decodes consensus frames (off the loop when large) and hands the
    messages to ``deliver``; penalises the sender of anything else."""

    def __init__(self, net: Penalizer, deliver: Callable[[ce.MessageReceived], None]) -> None:
        self._net = net
        self._deliver = deliver
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="qenex-decode")
        self._decoding_bytes = 0
        self.dropped_busy = 0
        self.decoded_off_loop = 0

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    def on_frame(self, peer: str, data: bytes) -> None:
        if len(data) <= INLINE_DECODE_BYTES:
            try:
                message = decode_message(data)
            except Exception as exc:  # every decode failure is the peer's fault
                punish(self._net, peer, "undecodable consensus message", exc)
                return
            self._deliver(ce.MessageReceived(message, peer))
            return
        if self._decoding_bytes + len(data) > MAX_DECODING_BYTES:
            # Consensus retransmits; a flood of large frames must not queue.
            self.dropped_busy += 1
            log.warning("dropped a %d-byte consensus frame from %s: %d bytes already decoding",
                        len(data), peer, self._decoding_bytes)
            return
        self._decoding_bytes += len(data)
        future = asyncio.get_running_loop().run_in_executor(self._executor, decode_message, data)
        future.add_done_callback(lambda f: self._decoded(peer, len(data), f))

    def _decoded(self, peer: str, size: int, future: asyncio.Future[Message]) -> None:
        self._decoding_bytes -= size
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            punish(self._net, peer, "undecodable consensus message", exc)
            return
        self.decoded_off_loop += 1
        self._deliver(ce.MessageReceived(future.result(), peer))


def _bin_header_bytes(length: int) -> int:
    """msgpack bin 8/16/32 header size for a ``length``-byte string."""
    return 2 if length < 1 << 8 else 3 if length < 1 << 16 else 5


def _array_header_bytes(count: int) -> int:
    return 1 if count < 16 else 3 if count < 1 << 16 else 5


TX_BATCH_FRAME_BASE = 2  # fixarray(2) + the version as a positive fixint


def tx_batch_item_bytes(raw: bytes) -> int:
    """What one tx adds to the encoded batch frame: its bytes and its bin header."""
    return _bin_header_bytes(len(raw)) + len(raw)


def tx_batch_frame_bytes(count: int, items_bytes: int) -> int:
    """Exact length of ``encode([1, txs])`` for ``count`` txs whose
    ``tx_batch_item_bytes`` sum to ``items_bytes``."""
    return TX_BATCH_FRAME_BASE + _array_header_bytes(count) + items_bytes


class TxBatchTooLarge(ValueError):
    """A batch frame over MAX_TX_BATCH_FRAME: penalised, not banned (a peer
    of another version may measure batches differently)."""

    def __init__(self, size: int) -> None:
        super().__init__(f"tx batch of {size} bytes exceeds the frame limit of {MAX_TX_BATCH_FRAME}")
        self.size = size


def decode_tx_batch(data: bytes) -> list[Any]:
    """The txs of a gossip batch ``[1, [tx_bytes, ...]]``; TxBatchTooLarge, DecodeError or ValueError otherwise."""
    if len(data) > MAX_TX_BATCH_FRAME:
        raise TxBatchTooLarge(len(data))
    msg = decode(data, max_bytes=MAX_TX_BATCH_FRAME, max_objects=MAX_TX_BATCH_OBJECTS, max_depth=2)
    if not (isinstance(msg, list) and len(msg) == 2 and msg[0] == TX_BATCH_VERSION and isinstance(msg[1], list)):
        raise ValueError("tx batch is not [1, [tx, ...]]")
    return msg[1]


class TxBatchValidator:
    """Stateless check of a tx batch, run in the p2p thread before gossipsub
    delivers or relays it: garbage stops at the first honest node."""

    def __init__(self, chain_id: str, max_tx_bytes: int, ban_points: int) -> None:
        self._chain_id = chain_id
        self._max_tx_bytes = max_tx_bytes
        self._ban_points = ban_points

    def __call__(self, data: bytes) -> None:
        try:
            txs = decode_tx_batch(data)
        except DecodeLimitExceeded as exc:
            raise RejectMessage(f"tx batch over a decode limit: {exc}", self._ban_points) from exc
        except (StateError, ValueError) as exc:
            raise RejectMessage(f"bad tx batch: {exc}", PENALTY_GARBAGE) from exc
        for i, raw in enumerate(txs):
            # The same checks, in the same order, as admission's stateless steps (node/txcheck.py).
            try:
                stx = decode_tx(raw, self._max_tx_bytes)
                check_envelope(stx, chain_id=self._chain_id, max_tx_bytes=self._max_tx_bytes)
                # A valid signature lands in the process-wide verified cache: admission does not verify it again.
                check_signature(stx)
            except TxTooLarge as exc:
                raise RejectMessage(f"tx {i} of the batch is too large: {exc}", PENALTY_GARBAGE) from exc
            except WrongChainId as exc:
                raise RejectMessage(f"tx {i} of the batch is for chain {exc.got!r}", PENALTY_GARBAGE) from exc
            except BadSignature as exc:
                raise RejectMessage(f"tx {i} of the batch (0x{exc.tx_hash.hex()}) has a bad signature",
                                    PENALTY_GARBAGE) from exc
            except StateError as exc:
                points = self._ban_points if over_limit(exc) else PENALTY_GARBAGE
                raise RejectMessage(f"tx {i} of the batch is malformed: {exc}", points) from exc
