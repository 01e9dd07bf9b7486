"""The mempool: admission against pending state, fee-ordered reaping, recheck.

Admission order (DESIGN.md): decode → size and chain id → signature (both in
``check_tx_stateless``; valid signatures are cached by tx hash in state.types,
so block execution does not verify them again) → nonce and balance against
pending state → insert. A sender's pending transactions must form a gap-free
nonce run starting at its committed nonce; their summed outflows per token
must fit in its committed balance. Pending inflows are ignored on purpose: a
transaction is admitted only if it stays executable whatever order the others
land in.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass, field
from typing import Iterable, Iterator

from node.config import MempoolSection
from node.errors import AccountLimitReached, AlreadyKnown, MempoolFull, TxRejected
from state import errors as state_errors
from state.app import Application
from state.crypto import address_to_text
from state.types import Block, SignedTransaction

log = logging.getLogger("qenex.mempool")


@dataclass(slots=True)
class _Entry:
    stx: SignedTransaction
    size: int
    seq: int
    outflows: dict[str, int]
    flags: dict[str, object] = field(default_factory=dict)


@dataclass(slots=True)
class _Account:
    base_nonce: int
    txs: list[_Entry] = field(default_factory=list)  # nonces base_nonce, base_nonce+1, ...
    spent: dict[str, int] = field(default_factory=dict)

    def add_spend(self, outflows: dict[str, int], sign: int) -> None:
        for token, amount in outflows.items():
            self.spent[token] = self.spent.get(token, 0) + sign * amount


class Mempool:
    def __init__(self, app: Application, config: MempoolSection) -> None:
        self._app = app
        self._config = config
        self._accounts: dict[bytes, _Account] = {}
        self._by_hash: dict[bytes, _Entry] = {}
        self._bytes = 0
        self._seq = itertools.count()

    # -- inspection -------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, tx_hash: bytes) -> SignedTransaction | None:
        entry = self._by_hash.get(tx_hash)
        return entry.stx if entry else None

    def pending_nonce(self, address: bytes) -> int | None:
        account = self._accounts.get(address)
        return account.base_nonce + len(account.txs) if account else None

    def entries(self) -> Iterator[tuple[SignedTransaction, int]]:
        for entry in sorted(self._by_hash.values(), key=lambda e: e.seq):
            yield entry.stx, entry.size

    # -- admission --------------------------------------------------------

    def add(self, stx: SignedTransaction, size: int) -> bytes:
        """Admit ``stx`` (``size`` = its encoded length) or raise a MempoolError."""
        tx_hash = stx.hash
        if tx_hash in self._by_hash:
            raise AlreadyKnown(f"transaction 0x{tx_hash.hex()} is already in the mempool", hash="0x" + tx_hash.hex())
        if len(self._by_hash) >= self._config.max_txs or self._bytes + size > self._config.max_bytes:
            raise MempoolFull(
                f"mempool is full ({len(self._by_hash)} txs, {self._bytes} bytes)",
                txs=len(self._by_hash),
                bytes=self._bytes,
            )
        try:
            self._app.check_tx_stateless(stx)
        except state_errors.StateError as exc:
            raise TxRejected(str(exc), reason=type(exc).__name__) from exc

        sender = stx.tx.sender
        account = self._accounts.get(sender)
        committed = self._app.account(sender)
        if account is None:
            account = _Account(base_nonce=committed.nonce)
        expected = account.base_nonce + len(account.txs)
        if stx.tx.nonce != expected:
            if stx.tx.nonce < committed.nonce:
                why = "replayed"
            elif stx.tx.nonce < expected:
                why = "already pending"
            else:
                why = "skips ahead"
            raise TxRejected(
                f"nonce {stx.tx.nonce} is not the next nonce {expected} for {address_to_text(sender)} ({why})",
                reason="bad_nonce",
                got=stx.tx.nonce,
                expected=expected,
            )
        if len(account.txs) >= self._config.max_per_account:
            raise AccountLimitReached(
                f"{address_to_text(sender)} already has {len(account.txs)} pending transactions "
                f"(limit {self._config.max_per_account})",
                limit=self._config.max_per_account,
            )
        try:
            outflows = self._app.tx_outflows(stx)
        except state_errors.StateError as exc:
            raise TxRejected(str(exc), reason=type(exc).__name__) from exc
        for token, amount in sorted(outflows.items()):
            have = committed.balances.get(token, 0)
            need = account.spent.get(token, 0) + amount
            if need > have:
                raise TxRejected(
                    f"insufficient {token} balance for {address_to_text(sender)}: "
                    f"has {have}, pending transactions need {need}",
                    reason="insufficient_balance",
                    token=token,
                    balance=str(have),
                    needed=str(need),
                )

        entry = _Entry(stx=stx, size=size, seq=next(self._seq), outflows=outflows)
        account.txs.append(entry)
        account.add_spend(outflows, +1)
        self._accounts[sender] = account
        self._by_hash[tx_hash] = entry
        self._bytes += size
        return tx_hash

    # -- block production -------------------------------------------------

    def reap(self, max_txs: int, max_bytes: int) -> list[SignedTransaction]:
        """Executable transactions ordered by fee (highest first), then nonce."""
        heads: list[tuple[int, int, bytes, int]] = []
        for sender, account in self._accounts.items():
            if account.txs:
                first = account.txs[0]
                heads.append((-first.stx.tx.fee, first.seq, sender, 0))
        heapq.heapify(heads)
        picked: list[SignedTransaction] = []
        used = 0
        while heads and len(picked) < max_txs:
            _, _, sender, index = heapq.heappop(heads)
            entry = self._accounts[sender].txs[index]
            if used + entry.size > max_bytes:
                continue  # the rest of this sender's run depends on it
            picked.append(entry.stx)
            used += entry.size
            nxt = index + 1
            txs = self._accounts[sender].txs
            if nxt < len(txs):
                heapq.heappush(heads, (-txs[nxt].stx.tx.fee, txs[nxt].seq, sender, nxt))
        return picked

    def update(self, block: Block) -> int:
        """Remove what ``block`` committed, then recheck every touched sender.

        Returns how many transactions were dropped as no longer executable.
        Inflows never make a pending transaction invalid, so only the senders
        (whose nonce and balances moved) need a recheck; the recheck also
        removes their committed transactions (nonces now below the account's).
        """
        committed = {stx.hash for stx in block.txs}
        return sum(self._recheck(sender, committed) for sender in sorted({stx.tx.sender for stx in block.txs}))

    def _drop(self, tx_hash: bytes) -> None:
        entry = self._by_hash.pop(tx_hash, None)
        if entry is None:
            return
        self._bytes -= entry.size
        account = self._accounts[entry.stx.tx.sender]
        account.txs.remove(entry)
        account.add_spend(entry.outflows, -1)

    def _recheck(self, sender: bytes, committed: frozenset[bytes] | set[bytes] = frozenset()) -> int:
        """Rebuild ``sender``'s run against committed state; returns how many
        pending transactions were dropped (committed ones are not counted)."""
        account = self._accounts.get(sender)
        if account is None:
            return 0
        state = self._app.account(sender)
        old = account.txs
        account.txs = []
        account.spent = {}
        account.base_nonce = state.nonce
        dropped = 0
        for entry in old:
            fits = entry.stx.tx.nonce == account.base_nonce + len(account.txs) and all(
                account.spent.get(t, 0) + a <= state.balances.get(t, 0) for t, a in entry.outflows.items()
            )
            if fits:
                account.txs.append(entry)
                account.add_spend(entry.outflows, +1)
            else:
                del self._by_hash[entry.stx.hash]
                self._bytes -= entry.size
                dropped += entry.stx.hash not in committed
        if not account.txs:
            del self._accounts[sender]
        return dropped

    def remove_many(self, hashes: Iterable[bytes]) -> None:
        for tx_hash in hashes:
            entry = self._by_hash.get(tx_hash)
            if entry is not None:
                sender = entry.stx.tx.sender
                self._drop(tx_hash)
                self._recheck(sender)
