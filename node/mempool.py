"""The mempool: admission against pending state, fee-ordered reaping, recheck.

Admission order (DESIGN.md): decode → size and chain id → signature (both in
``check_tx_stateless``; valid signatures are cached by tx hash in state.transactions,
so block execution does not verify them again) → nonce and balance against
pending state → insert. A sender's pending transactions must form a gap-free
nonce run starting at its committed nonce; their summed outflows per token
must fit in its committed balance. Pending inflows are ignored on purpose: a
transaction is admitted only if it stays executable whatever order the others
land in.

When the pool is full (count or bytes), a valid newcomer evicts the cheapest
*tails*: only a sender's highest pending nonce may go, so no run gets a gap,
and only a tail paying strictly less per gas than the newcomer (fee / gas of
its kind, compared exactly); among equal prices the most recent goes first.
The tails sit in a lazily cleaned min-heap, so admission costs O(log n) per
eviction and at most ``MAX_EVICTIONS`` evictions; a newcomer that would need
more, or that no cheaper tail makes room for, is refused MempoolFull before
its signature is checked when that is already clear.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterable, Iterator

from node.config import MempoolSection
from node.errors import AccountLimitReached, AlreadyKnown, MempoolFull, TxRejected
from state import errors as state_errors
from state.app import Application
from state.blocks import Block
from state.crypto import address_to_text
from state.transactions import SignedTransaction

log = logging.getLogger("qenex.mempool")

# Most entries one admission may evict: a max-size newcomer displaces at most this many small ones.
MAX_EVICTIONS = 64


@dataclass(slots=True)
class _Entry:
    stx: SignedTransaction
    size: int
    seq: int
    outflows: dict[str, int]
    price: Fraction  # fee per gas of its kind: what eviction compares
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
        # Min-heap of (price, -seq, sender) for each sender's last pending entry; items whose entry is no
        # longer its sender's tail are skipped when popped and dropped when the heap is rebuilt.
        self._tails: list[tuple[Fraction, int, bytes]] = []

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

    def entries(self, limit: int | None = None) -> Iterator[tuple[SignedTransaction, int]]:
        """Pending transactions in arrival order, the first ``limit`` of them: O(limit), no sort
        (``_by_hash`` is filled in arrival order and entries only ever leave it)."""
        for entry in itertools.islice(self._by_hash.values(), limit):
            yield entry.stx, entry.size

    # -- the eviction index --------------------------------------------------

    def _price(self, stx: SignedTransaction) -> Fraction:
        return Fraction(stx.tx.fee, max(self._app.params.gas_for(stx.tx.kind), 1))

    def _push_tail(self, sender: bytes) -> None:
        account = self._accounts.get(sender)
        if account is None or not account.txs:
            return
        tail = account.txs[-1]
        heapq.heappush(self._tails, (tail.price, -tail.seq, sender))
        if len(self._tails) > 2 * len(self._accounts) + 64:
            self._tails = [(a.txs[-1].price, -a.txs[-1].seq, s) for s, a in self._accounts.items() if a.txs]
            heapq.heapify(self._tails)

    def _is_tail(self, item: tuple[Fraction, int, bytes], planned: dict[bytes, int]) -> bool:
        """Is ``item`` its sender's last entry once the ``planned`` evictions are done?"""
        account = self._accounts.get(item[2])
        skip = planned.get(item[2], 0)
        return account is not None and len(account.txs) > skip and account.txs[-1 - skip].seq == -item[1]

    def _full(self, size: int) -> tuple[int, int]:
        """How many entries and bytes must go before an entry of ``size`` fits (<= 0: none)."""
        return len(self._by_hash) + 1 - self._config.max_txs, self._bytes + size - self._config.max_bytes

    def _refuse_full(self, why: str) -> MempoolFull:
        return MempoolFull(
            f"mempool is full ({len(self._by_hash)} txs, {self._bytes} bytes) and {why}",
            txs=len(self._by_hash),
            bytes=self._bytes,
        )

    def _cheapest_tail(self) -> tuple[Fraction, int, bytes] | None:
        while self._tails and not self._is_tail(self._tails[0], {}):
            heapq.heappop(self._tails)
        return self._tails[0] if self._tails else None

    def _evict_for(self, sender: bytes, price: Fraction, size: int) -> None:
        """Make room for ``sender``'s entry of ``size`` at ``price`` by evicting cheaper tails, or raise
        MempoolFull having changed nothing."""
        count, nbytes = self._full(size)
        if size > self._config.max_bytes:
            raise self._refuse_full(f"a {size}-byte transaction can never fit in {self._config.max_bytes} bytes")
        planned: dict[bytes, int] = {}
        victims: list[_Entry] = []
        popped: list[tuple[Fraction, int, bytes]] = []
        why = ""
        while count > 0 or nbytes > 0:
            if len(victims) >= MAX_EVICTIONS:
                why = f"admitting it would evict more than {MAX_EVICTIONS} transactions"
                break
            if not self._tails:
                why = "no other sender's transaction can be evicted"
                break
            item = heapq.heappop(self._tails)
            if not self._is_tail(item, planned):
                continue  # stale
            popped.append(item)
            if item[2] == sender:
                continue  # its own tail is this run's predecessor: never evicted for it
            if item[0] >= price:
                why = f"its fee per gas {_show(price)} is not above the lowest pending {_show(item[0])}"
                break
            account = self._accounts[item[2]]
            victim = account.txs[-1 - planned.get(item[2], 0)]
            victims.append(victim)
            planned[item[2]] = planned.get(item[2], 0) + 1
            count, nbytes = count - 1, nbytes - victim.size
            if len(account.txs) > planned[item[2]]:
                nxt = account.txs[-1 - planned[item[2]]]
                heapq.heappush(self._tails, (nxt.price, -nxt.seq, item[2]))  # its tail once this one goes
        else:
            for item in popped:
                if item[2] == sender:
                    heapq.heappush(self._tails, item)
            for victim in victims:
                self._evict(victim)
            return
        for item in popped:
            heapq.heappush(self._tails, item)
        raise self._refuse_full(why)

    def _evict(self, entry: _Entry) -> None:
        sender = entry.stx.tx.sender
        account = self._accounts[sender]
        if account.txs[-1] is not entry:
            raise AssertionError("only a sender's last pending transaction is evicted")
        account.txs.pop()
        account.add_spend(entry.outflows, -1)
        del self._by_hash[entry.stx.hash]
        self._bytes -= entry.size
        if not account.txs:
            del self._accounts[sender]
        log.debug("evicted 0x%s (nonce %d, fee %d) for a higher-paying transaction",
                  entry.stx.hash.hex(), entry.stx.tx.nonce, entry.stx.tx.fee)

    # -- admission --------------------------------------------------------

    def add(self, stx: SignedTransaction, size: int,
            screen: Callable[[SignedTransaction], None] | None = None) -> bytes:
        """Admit ``stx`` (``size`` = its encoded length) or raise a MempoolError.

        ``screen`` (the risk hook) runs after every validity check and before
        any eviction, only when admitting ``stx`` would evict others: a
        transaction it refuses (by raising) never costs anyone their place.
        """
        tx_hash = stx.hash
        if tx_hash in self._by_hash:
            raise AlreadyKnown(f"transaction 0x{tx_hash.hex()} is already in the mempool", hash="0x" + tx_hash.hex())
        price = self._price(stx)
        full = max(self._full(size)) > 0
        if full:
            # Refuse before paying for the signature when nothing pending is cheaper.
            cheapest = self._cheapest_tail()
            if cheapest is None or cheapest[0] >= price:
                shown = "nothing" if cheapest is None else _show(cheapest[0])
                raise self._refuse_full(f"its fee per gas {_show(price)} is not above the lowest pending {shown}")
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

        if full:
            if screen is not None:
                screen(stx)
            self._evict_for(sender, price, size)
        entry = _Entry(stx=stx, size=size, seq=next(self._seq), outflows=outflows, price=price)
        account.txs.append(entry)
        account.add_spend(outflows, +1)
        self._accounts[sender] = account
        self._by_hash[tx_hash] = entry
        self._bytes += size
        self._push_tail(sender)
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
        self._push_tail(entry.stx.tx.sender)

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
        elif account.txs[-1] is not old[-1]:
            self._push_tail(sender)
        return dropped

    def remove_many(self, hashes: Iterable[bytes]) -> None:
        for tx_hash in hashes:
            entry = self._by_hash.get(tx_hash)
            if entry is not None:
                sender = entry.stx.tx.sender
                self._drop(tx_hash)
                self._recheck(sender)


def _show(price: Fraction) -> str:
    """A fee per gas for an error message: exact when whole, else to 6 significant digits."""
    return str(price.numerator) if price.denominator == 1 else f"{float(price):.6g}"
