"""The mempool: pending transactions per sender, eviction, fee-ordered reaping, recheck.

Admission (``node/admission.py``) runs the steps in order and puts the risk
hook between the two halves the pool offers: ``check`` (pure: duplicate,
minimum fee, nonce and balance against pending state; returns a
``Candidate``) and ``insert`` (makes room, adds).  ``precheck`` holds the
refusals that cost nothing, run before the signature is verified.  A
sender's pending transactions must form a gap-free nonce run starting at its
committed nonce; their summed outflows per token must fit in its committed
balance. Pending inflows are ignored on purpose: a transaction is admitted
only if it stays executable whatever order the others land in.  A batch is
checked through a ``Draft``, so a sender's run arriving in one gossip batch
is checked as if its earlier transactions were pending already.

When the pool is full (count or bytes), a valid newcomer evicts the cheapest
*tails*: only a sender's highest pending nonce may go, so no run gets a gap,
and only a tail paying strictly less per gas than the newcomer (fee / gas of
its kind, compared exactly); among equal prices the most recent goes first.
The tails sit in a lazily cleaned min-heap, so admission costs O(log n) per
eviction and at most ``MAX_EVICTIONS`` evictions; a newcomer that would need
more, or that no cheaper tail makes room for, is refused MempoolFull (by
``precheck``, before its signature is checked, when that is already clear).
Eviction happens only in ``insert``: a transaction refused before it never
costs anyone their place.
"""

from __future__ import annotations

import heapq
import itertools
import logging
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Iterable, Iterator

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

    # -- admission: check (pure), then insert --------------------------------

    def needs_room(self, size: int) -> bool:
        """Would an entry of ``size`` bytes have to evict others to fit?"""
        return max(self._full(size)) > 0

    def precheck(self, stx: SignedTransaction, size: int) -> None:
        """The refusals that cost nothing, run before the signature is verified: an already pending
        transaction (AlreadyKnown), and a full pool with nothing pending cheaper (MempoolFull)."""
        if stx.hash in self._by_hash:
            raise _known(stx.hash)
        if self.needs_room(size):
            price = self._price(stx)
            cheapest = self._cheapest_tail()
            if cheapest is None or cheapest[0] >= price:
                shown = "nothing" if cheapest is None else _show(cheapest[0])
                raise self._refuse_full(f"its fee per gas {_show(price)} is not above the lowest pending {shown}")

    def draft(self) -> "Draft":
        """An overlay for checking a batch: each candidate checked through it is pending for the next."""
        return Draft()

    def check(self, stx: SignedTransaction, size: int, draft: "Draft | None" = None) -> Candidate:
        """Check ``stx`` (``size`` = its encoded length, its signature already verified) against pending
        state, as if the candidates already checked through ``draft`` were pending too; raise a
        MempoolError, or return the Candidate that ``insert`` takes.  Changes nothing in the pool.

        Duplicate, minimum fee, nonce (the sender's next), per-account limit, then the summed pending
        outflows per token against the committed balance.  Room is made by ``insert``.
        """
        tx_hash = stx.hash
        if tx_hash in self._by_hash or (draft is not None and tx_hash in draft.hashes):
            raise _known(tx_hash)
        minimum = self._app.params.min_fee(stx.tx.kind)
        if stx.tx.fee < minimum:
            exc = state_errors.FeeTooLow(stx.tx.fee, minimum)
            raise TxRejected(str(exc), reason=type(exc).__name__) from exc

        sender = stx.tx.sender
        account = self._accounts.get(sender)
        committed = self._app.account(sender)
        base = account.base_nonce if account is not None else committed.nonce
        count = len(account.txs) if account is not None else 0
        spent = dict(account.spent) if account is not None else {}
        if draft is not None:
            count += draft.add_pending(sender, spent)
        expected = base + count
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
        if count >= self._config.max_per_account:
            raise AccountLimitReached(
                f"{address_to_text(sender)} already has {count} pending transactions "
                f"(limit {self._config.max_per_account})",
                limit=self._config.max_per_account,
            )
        try:
            outflows = self._app.tx_outflows(stx)
        except state_errors.StateError as exc:
            raise TxRejected(str(exc), reason=type(exc).__name__) from exc
        for token, amount in sorted(outflows.items()):
            have = committed.balances.get(token, 0)
            need = spent.get(token, 0) + amount
            if need > have:
                raise TxRejected(
                    f"insufficient {token} balance for {address_to_text(sender)}: "
                    f"has {have}, pending transactions need {need}",
                    reason="insufficient_balance",
                    token=token,
                    balance=str(have),
                    needed=str(need),
                )
        candidate = Candidate(stx=stx, size=size, price=self._price(stx), outflows=outflows, height=self._app.height,
                              pending_before=count, spent_before=spent)
        if draft is not None:
            draft.record(candidate)
        return candidate

    def _still_holds(self, c: Candidate) -> bool:
        """Is what ``check`` read for ``c`` still so?  Then its verdict stands (same committed state, same
        pending run of its sender, not pending itself) and ``insert`` need not repeat it."""
        account = self._accounts.get(c.stx.tx.sender)
        count, spent = (len(account.txs), account.spent) if account is not None else (0, {})
        return (self._app.height == c.height and c.stx.hash not in self._by_hash
                and count == c.pending_before and spent == c.spent_before)

    def insert(self, candidate: Candidate) -> bytes:
        """Make room (evicting cheaper tails, never the sender's own) and add a checked transaction.

        If the pool moved since ``check`` in a way its verdict depended on (a batch's earlier candidate
        was refused or evicted, a block committed), the check runs again and raises what it finds.  A
        refusal (MempoolFull included) changes nothing.
        """
        c = candidate if self._still_holds(candidate) else self.check(candidate.stx, candidate.size)
        sender = c.stx.tx.sender
        if self.needs_room(c.size):
            self._evict_for(sender, c.price, c.size)
        account = self._accounts.get(sender)
        if account is None:
            account = self._accounts[sender] = _Account(base_nonce=c.stx.tx.nonce)  # nothing pending before it
        entry = _Entry(stx=c.stx, size=c.size, seq=next(self._seq), outflows=c.outflows, price=c.price)
        account.txs.append(entry)
        account.add_spend(c.outflows, +1)
        self._by_hash[c.stx.hash] = entry
        self._bytes += c.size
        self._push_tail(sender)
        return c.stx.hash

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


@dataclass(frozen=True, slots=True)
class Candidate:
    """A transaction that passed ``Mempool.check``, with what ``insert`` needs and what the check read."""

    stx: SignedTransaction
    size: int
    price: Fraction
    outflows: dict[str, int]
    height: int  # the committed height the check read
    pending_before: int  # the sender's pending transactions it follows (a batch's earlier ones included)
    spent_before: dict[str, int]  # and their summed outflows (a spurious mismatch only costs a re-check)


class Draft:
    """The candidates of one batch checked so far, pending for the checks after them: a sender's nonce
    run arrives in one gossip batch.  Only ``Mempool.check`` reads and fills it; the pool never sees it."""

    __slots__ = ("hashes", "_runs")

    def __init__(self) -> None:
        self.hashes: set[bytes] = set()
        self._runs: dict[bytes, tuple[int, dict[str, int]]] = {}

    def add_pending(self, sender: bytes, spent: dict[str, int]) -> int:
        """Add ``sender``'s drafted outflows into ``spent``; return how many candidates of it are drafted."""
        count, outflows = self._runs.get(sender, (0, {}))
        for token, amount in outflows.items():
            spent[token] = spent.get(token, 0) + amount
        return count

    def record(self, c: Candidate) -> None:
        count, outflows = self._runs.get(c.stx.tx.sender, (0, {}))
        merged = dict(outflows)
        for token, amount in c.outflows.items():
            merged[token] = merged.get(token, 0) + amount
        self._runs[c.stx.tx.sender] = (count + 1, merged)
        self.hashes.add(c.stx.hash)


def _known(tx_hash: bytes) -> AlreadyKnown:
    return AlreadyKnown(f"transaction 0x{tx_hash.hex()} is already in the mempool", hash="0x" + tx_hash.hex())


def _show(price: Fraction) -> str:
    """A fee per gas for an error message: exact when whole, else to 6 significant digits."""
    return str(price.numerator) if price.denominator == 1 else f"{float(price):.6g}"
