"""Building, validating and committing blocks: the one path for proposals,
certified commits and block sync.

Every block a node accepts goes through ``_execute`` (``Application.execute_block``,
which checks the header, the ``last_commit`` against the parent's validator
set through the application's commit verifier, every transaction and the app
hash) and then ``_commit`` (``Application.commit_block``).  What differs per
path is only where the bytes come from and who is blamed when they are bad:

* ``validate``: a proposal's bytes; the verdict goes back to the engine.
* ``commit_certified``: the engine decided; commit the result we validated,
  or execute the bytes it holds if they are the certified block, else sync.
* ``apply_synced``: a fetched block and its certificate; the certificate is
  checked through the same verifier against the set of the block's height.

Results are cached by block hash between validation and commit, so a block
is executed once.  The driver owns the clock: it passes ``now_ms`` where a
proposal's timeliness is judged (never for committed blocks).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Iterable

from state.app import Application, BlockResult
from state.errors import InvalidCommit, StateError, StateInvariantBroken
from state.blocks import Block
from state.transactions import SignedTransaction
from state.validators import ValidatorSet

log = logging.getLogger("qenex.blocks")

MAX_CACHED_RESULTS = 64  # candidate blocks of one height (the engine caps candidates per view)


# TEST ONLY: added to this node's wall clock (node.runtime sets it from QENEX_TEST_CLOCK_OFFSET_MS, on a
# test chain only), so end-to-end runs can skew one node's clock within and beyond max_clock_drift_ms.
_TEST_CLOCK_OFFSET_MS = 0


def set_test_clock_offset(offset_ms: int) -> None:
    global _TEST_CLOCK_OFFSET_MS
    _TEST_CLOCK_OFFSET_MS = offset_ms


def now_ms() -> int:
    """This node's clock: the times it proposes and judges proposals' timeliness by."""
    return time.time_ns() // 1_000_000 + _TEST_CLOCK_OFFSET_MS


@dataclass(frozen=True, slots=True)
class SyncRefused:
    """Why a synced block was not applied, and whether that is a ban-worthy lie."""

    reason: str
    ban: bool


class BlockExecutor:
    def __init__(self, app: Application) -> None:
        self.app = app
        self._results: dict[bytes, tuple[Block, BlockResult]] = {}

    # -- the validator set ------------------------------------------------------

    def validator_set_for(self, height: int) -> ValidatorSet:
        """The set that signs ``height`` (the application's; heights 1..head + 1)."""
        vset = self.app.validator_set(height)
        if vset is None:
            raise LookupError(f"no validator set for height {height}: the head is {self.app.height}")
        return vset

    @property
    def last_commit(self) -> bytes:
        """The certificate of the last committed block (a proposal's ``last_commit``)."""
        return self.app.get_commit_cert(self.app.height) or b""

    # -- the one path -----------------------------------------------------------

    def _execute(self, block: Block, now: int | None) -> BlockResult:
        cached = self._results.get(block.hash)
        if cached is not None and cached[0] == block:
            return cached[1]
        result = self.app.execute_block(block, now_ms=now)
        if len(self._results) >= MAX_CACHED_RESULTS:
            del self._results[next(iter(self._results))]
        self._results[block.hash] = (block, result)
        return result

    def _commit(self, block: Block, result: BlockResult, cert_bytes: bytes) -> None:
        self.app.commit_block(block, result, cert_bytes)
        self._results.clear()  # results of the old head are stale

    # -- proposals --------------------------------------------------------------

    def build(self, txs: Iterable[SignedTransaction], *, proposer: bytes, time_ms: int | None = None,
              last_commit: bytes | None = None, evidence: Iterable[bytes] = ()) -> Block:
        """The proposer's block on the committed head (``time_ms`` defaults to
        ``max(now, last block time + 1)``; ``last_commit`` to the stored certificate of the
        head, and a caller holding one with more signatures passes that); its result is kept
        for the commit."""
        when = max(now_ms(), self.app.last_time_ms + 1) if time_ms is None else time_ms
        block, result = self.app.build_block(txs, proposer=proposer, time_ms=when,
                                             last_commit=self.last_commit if last_commit is None else last_commit,
                                             evidence=evidence)
        self._results[block.hash] = (block, result)
        return block

    def validate(self, raw: bytes, block_hash: bytes, height: int, *, now: int | None = None) -> str | None:
        """Why the proposal ``raw`` (claimed to be ``block_hash`` at ``height``) is
        invalid, or None.  ``now`` (our clock) refuses a block timed too far ahead."""
        cached = self._results.get(block_hash)
        if cached is not None:
            return None if cached[0].encode() == raw else "block bytes do not match the block of that hash"
        try:
            block = Block.decode(raw)
        except StateError as exc:
            return f"undecodable block: {exc}"
        if block.hash != block_hash:
            return "block hash does not match its header"
        if block.header.height != height:
            return f"block height {block.header.height} is not {height}"
        try:
            self._execute(block, now)
        except StateInvariantBroken:
            raise  # our own store is wrong (e.g. an unreadable validator set): stop, do not blame the proposal
        except StateError as exc:
            return str(exc)
        return None

    # -- commits ----------------------------------------------------------------

    def commit_certified(self, height: int, block_hash: bytes, raw: bytes, cert_bytes: bytes) -> Block | None:
        """Commit the block the engine decided.  None when we cannot (no bytes, or
        bytes that are not the certified block): the caller fetches it by sync.

        A certified block that does not execute here means our own state is
        wrong: InvalidBlock propagates and the node stops."""
        cached = self._results.get(block_hash)
        if cached is not None:
            block, result = cached
        elif not raw:
            log.info("block %d is certified but we never validated it; syncing it", height)
            return None
        else:
            # Bytes we never validated may be a Byzantine primary's substitute:
            # apply them only if they are the certified block.
            try:
                block = Block.decode(raw)
            except StateError as exc:
                log.warning("certified block %d: our bytes do not decode (%s); syncing it", height, exc)
                return None
            if block.hash != block_hash or block.header.height != height:
                log.warning("certified block %d: our bytes are another block; syncing it", height)
                return None
            result = self._execute(block, None)
        self._commit(block, result, cert_bytes)
        return block

    def apply_synced(self, block: Block, cert_bytes: bytes) -> SyncRefused | None:
        """Verify a fetched block's certificate and apply the block; a SyncRefused
        says why not (a ban: no honest peer serves a certificate our set rejects).

        A block whose certificate verifies but that does not execute here (its
        last_commit included) was committed by more than 2/3 of power: either
        more than 1/3 is Byzantine or our own state is wrong.  The peer that
        served it is not at fault; InvalidBlock propagates and the node stops,
        as a certified commit that does not execute does."""
        height = block.header.height
        try:
            self.app.verify_commit(height, block.hash, cert_bytes)
        except InvalidCommit as exc:
            # No honest peer serves a certificate our validator set rejects at the
            # height we asked for: a ban, so a slow liar cannot outpace the decay.
            return SyncRefused(f"synced block {height}: certificate does not verify: {exc}", ban=True)
        result = self._execute(block, None)
        self._commit(block, result, cert_bytes)
        return None



__all__ = ["BlockExecutor", "SyncRefused", "now_ms"]
