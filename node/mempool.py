"""The mempool: pending transactions per sender, eviction, reaping by fee per gas, recheck.

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
its kind, or / gas limit of a contract transaction, compared exactly); among
equal prices the most recent goes first.
The tails sit in a lazily cleaned min-heap, so admission costs O(log n) per
eviction and at most ``MAX_EVICTIONS`` evictions; a newcomer that would need
more, or that no cheaper tail makes room for, is refused MempoolFull (by
``precheck``, before its signature is checked, when that is already clear).
Eviction happens only in ``insert``: a transaction refused before it never
costs anyone their place.

Queued (future-nonce) transactions, geth's pending/queued split: a nonce
above the sender's next pending one, that its pending run could reach
(below its committed nonce + ``max_per_account``), is held in a queued area, bounded per sender (``max_queued_per_account``)
and in all (``max_queued``).  A queued transaction is never reaped, never
counted by ``len()`` or the pending caps, and never relayed by us until it
is promoted (geth does not broadcast queued transactions either; gossipsub
still relays the frame a peer's queued transaction arrived in).  It is
promoted into its sender's run, in nonce order, as soon as the gap fills:
when the missing nonce is inserted and after a block commits; promotion
rechecks what pending admission checks (per-account limit, summed outflows
against the committed balance, room without evicting anyone); one whose
balance no longer holds is dropped, one without room (or over the
per-account limit) stays queued and is tried again after the next commit.  When
the queued area is full, a newcomer evicts the cheapest queued transaction
(fee per gas, the oldest first among equals) if it pays strictly more per
gas, else it is refused MempoolFull; a queued transaction still unpromoted
``queued_max_blocks`` committed blocks after it arrived is dropped (age).

Replacement: a transaction with the nonce of a pending or queued one of
the same sender replaces it if it pays at least ``replace_bump_percent``
percent more per gas (and strictly more); else it is refused TxRejected
``replacement_underpriced``.  The old one leaves every index and count.

``refuse_early`` is the one refusal that needs no decoding: the raw length
can never fit, or both the pending area (count, or bytes with this length)
and the queued area are full.  Then fee priority is given up for
cheapness: at saturation even a higher-paying transaction is refused
before it is decoded (while only the pending area is full, eviction by fee
still works: deciding it needs the fee, hence a decode).
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
from state.execution import check_stateless
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
    price: Fraction  # fee per gas of its kind (a contract tx's: per gas of its limit): eviction and reaping compare it
    flags: dict[str, object] = field(default_factory=dict)
    height: int = 0  # the committed height when it entered (queued entries age by it)


@dataclass(slots=True)
class _Account:
    base_nonce: int
    txs: list[_Entry] = field(default_factory=list)  # nonces base_nonce, base_nonce+1, ...
    spent: dict[str, int] = field(default_factory=dict)

    def add_spend(self, outflows: dict[str, int], sign: int) -> None:
        for token, amount in outflows.items():
            self.spent[token] = self.spent.get(token, 0) + sign * amount


class _Balances:
    """One account's committed balances, each read when first asked (``get(token, 0)``)."""

    __slots__ = ("_app", "_address", "_read")

    def __init__(self, app: Application, address: bytes) -> None:
        self._app = app
        self._address = address
        self._read: dict[str, int] = {}

    def get(self, token: str, default: int = 0) -> int:
        amount = self._read.get(token)
        if amount is None:
            amount = self._read[token] = self._app.balance(self._address, token)
        return amount or default


class _Committed:
    """A sender's committed nonce and balances by point reads: ``Application.account`` scans every
    balance the address holds, and the pool asks for one or two tokens (a third of a check's cost)."""

    __slots__ = ("nonce", "balances")

    def __init__(self, app: Application, address: bytes) -> None:
        self.nonce = app.nonce(address)
        self.balances = _Balances(app, address)


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
        # The queued area: sender -> nonce -> entry; by hash in arrival order (so by height, for ageing).
        self._queued: dict[bytes, dict[int, _Entry]] = {}
        self._queued_by_hash: dict[bytes, _Entry] = {}
        self._queued_bytes = 0
        # Min-heap of (price, seq, hash) over queued entries, for eviction; stale items are skipped.
        self._qheap: list[tuple[Fraction, int, bytes]] = []
        # Promoted transactions not yet handed to the relay (``take_promoted``); at most max_queued, the newest.
        self._promoted: list[SignedTransaction] = []
        # Senders whose next queued nonce waited for room or for their run to shrink: retried after a commit.
        self._waiting: set[bytes] = set()

    # -- inspection -------------------------------------------------------

    def __len__(self) -> int:
        return len(self._by_hash)

    def __contains__(self, tx_hash: bytes) -> bool:
        return tx_hash in self._by_hash

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def get(self, tx_hash: bytes) -> SignedTransaction | None:
        """A pending transaction (queued ones: ``get_queued``)."""
        entry = self._by_hash.get(tx_hash)
        return entry.stx if entry else None

    def get_queued(self, tx_hash: bytes) -> SignedTransaction | None:
        entry = self._queued_by_hash.get(tx_hash)
        return entry.stx if entry else None

    @property
    def queued_count(self) -> int:
        return len(self._queued_by_hash)

    @property
    def queued_bytes(self) -> int:
        return self._queued_bytes

    def queued_for(self, address: bytes) -> int:
        """How many queued transactions ``address`` has."""
        return len(self._queued.get(address, ()))

    def queued_entries(self) -> Iterator[tuple[SignedTransaction, int]]:
        """Queued transactions in arrival order."""
        for entry in self._queued_by_hash.values():
            yield entry.stx, entry.size

    def take_promoted(self) -> list[SignedTransaction]:
        """The transactions promoted from queued to pending since the last call (for our own relay)."""
        out, self._promoted = self._promoted, []
        return out

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
        """Fee per gas: over its kind's gas, or over a contract transaction's own gas limit (what the
        block reserves for it; state.genesis.Params.tx_gas_limit).  A kind this chain does not have
        (staking or contracts off) is refused here, as it is by ``check``."""
        try:
            gas = self._app.params.tx_gas_limit(stx.tx.kind, stx.tx.payload)
        except state_errors.InvalidTransaction as exc:
            raise TxRejected(str(exc), reason=type(exc).__name__) from exc
        return Fraction(stx.tx.fee, max(gas, 1))

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

    def refuse_early(self, raw_len: int) -> None:
        """The refusal that needs only the raw length, run before anything is decoded: MempoolFull if
        ``raw_len`` bytes can never fit, or if both the pending area (count, or bytes with ``raw_len``)
        and the queued area are full."""
        if raw_len > self._config.max_bytes:
            raise self._refuse_full(f"a {raw_len}-byte transaction can never fit in {self._config.max_bytes} bytes")
        if self.needs_room(raw_len) and len(self._queued_by_hash) >= self._config.max_queued:
            raise self._refuse_full(f"its {self._config.max_queued} queued slots are taken too "
                                    "(refused before decoding)")

    def _next_nonce(self, sender: bytes) -> int:
        account = self._accounts.get(sender)
        return account.base_nonce + len(account.txs) if account is not None else self._app.nonce(sender)

    def precheck(self, stx: SignedTransaction, size: int) -> None:
        """The refusals that cost nothing, run before the signature is verified: an already pending or
        queued transaction (AlreadyKnown), and a full pool with nothing pending cheaper (MempoolFull)
        for a transaction that would be the sender's next pending one."""
        if stx.hash in self._by_hash or stx.hash in self._queued_by_hash:
            raise _known(stx.hash)
        if self.needs_room(size) and stx.tx.nonce == self._next_nonce(stx.tx.sender):
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

        Duplicate, the stateless checks of block inclusion (kind on this chain, a contract's gas limit,
        minimum fee), nonce (the sender's next), per-account limit, then the summed pending outflows
        per token against the committed balance.  Room is made by ``insert``.
        """
        tx_hash = stx.hash
        if tx_hash in self._by_hash or tx_hash in self._queued_by_hash or (
                draft is not None and tx_hash in draft.hashes):
            raise _known(tx_hash)
        try:
            # What block inclusion checks without state: the kind exists on this chain, a contract
            # transaction's gas limit is within [intrinsic gas, max_tx_gas], the fee is at least its
            # gas (limit) x min_gas_price (the chain id, size and signature again: already checked, the
            # signature's verdict is cached).
            check_stateless(stx, chain_id=self._app.chain_id, params=self._app.params)
        except state_errors.InvalidTransaction as exc:
            raise TxRejected(str(exc), reason=type(exc).__name__) from exc

        sender = stx.tx.sender
        account = self._accounts.get(sender)
        committed = _Committed(self._app, sender)
        base = account.base_nonce if account is not None else committed.nonce
        count = len(account.txs) if account is not None else 0
        spent = dict(account.spent) if account is not None else {}
        if draft is not None:
            count += draft.add_pending(sender, spent)
        expected = base + count
        nonce = stx.tx.nonce
        if nonce != expected:
            in_pool = account is not None and max(base, committed.nonce) <= nonce < base + len(account.txs)
            if in_pool:
                assert account is not None
                return self._check_replacement(stx, size, account.txs[nonce - base], committed.balances,
                                               spent, draft)
            queued = self._queued.get(sender, {}).get(nonce) if nonce > expected else None
            if queued is not None:
                return self._check_replacement(stx, size, queued, committed.balances, {}, draft)
            if expected < nonce < base + self._config.max_per_account:
                return self._check_queued(stx, size, committed.balances, expected, draft)
            if nonce < committed.nonce:
                why = "replayed"
            elif nonce < expected:
                why = "already pending"
            else:
                why = f"skips ahead: its pending run can reach at most nonce {base + self._config.max_per_account - 1}"
            raise TxRejected(
                f"nonce {nonce} is not the next nonce {expected} for {address_to_text(sender)} ({why})",
                reason="bad_nonce",
                got=nonce,
                expected=expected,
            )
        if count >= self._config.max_per_account:
            raise AccountLimitReached(
                f"{address_to_text(sender)} already has {count} pending transactions "
                f"(limit {self._config.max_per_account})",
                limit=self._config.max_per_account,
            )
        outflows = self._outflows(stx)
        self._check_balance(sender, committed.balances, spent, outflows)
        candidate = Candidate(stx=stx, size=size, price=self._price(stx), outflows=outflows, height=self._app.height,
                              pending_before=count, spent_before=spent)
        if draft is not None:
            draft.record(candidate)
        return candidate

    def _outflows(self, stx: SignedTransaction) -> dict[str, int]:
        try:
            return self._app.tx_outflows(stx)
        except state_errors.StateError as exc:
            raise TxRejected(str(exc), reason=type(exc).__name__) from exc

    @staticmethod
    def _check_balance(sender: bytes, balances: "_Balances", spent: dict[str, int],
                       outflows: dict[str, int]) -> None:
        for token, amount in sorted(outflows.items()):
            have = balances.get(token, 0)
            need = spent.get(token, 0) + amount
            if need > have:
                raise TxRejected(
                    f"insufficient {token} balance for {address_to_text(sender)}: "
                    f"has {have}, pending transactions need {need}",
                    reason="insufficient_balance", token=token, balance=str(have), needed=str(need))

    def _check_queued(self, stx: SignedTransaction, size: int, balances: "_Balances", expected: int,
                      draft: "Draft | None") -> Candidate:
        """A future nonce: room in its sender's queue, and its own outflows within the committed balance
        (the run before it is rechecked when it is promoted)."""
        sender = stx.tx.sender
        held = len(self._queued.get(sender, ()))
        if held >= self._config.max_queued_per_account:
            raise AccountLimitReached(
                f"{address_to_text(sender)} already has {held} queued transactions "
                f"(limit {self._config.max_queued_per_account}); its next nonce is {expected}",
                limit=self._config.max_queued_per_account, queued=True)
        outflows = self._outflows(stx)
        self._check_balance(sender, balances, {}, outflows)
        c = Candidate(stx=stx, size=size, price=self._price(stx), outflows=outflows, height=self._app.height,
                      pending_before=-1, spent_before={}, queued=True)
        if draft is not None:
            draft.hashes.add(stx.hash)
        return c

    def _check_replacement(self, stx: SignedTransaction, size: int, old: _Entry, balances: "_Balances",
                           spent: dict[str, int], draft: "Draft | None") -> Candidate:
        """Same sender, same nonce as ``old`` (pending, or queued with ``spent`` empty): it must pay at
        least ``replace_bump_percent`` more per gas, and the run with it instead of ``old`` must fit."""
        price = self._price(stx)
        bump = self._config.replace_bump_percent
        needed = old.price * (100 + bump) / 100
        if price < needed or price <= old.price:
            raise TxRejected(
                f"replacement of 0x{old.stx.hash.hex()} (nonce {old.stx.tx.nonce}) pays {_show(price)} per gas; "
                f"it must pay at least {bump}% more than {_show(old.price)}, and more",
                reason="replacement_underpriced", fee=str(stx.tx.fee), old_fee=str(old.stx.tx.fee),
                bump_percent=bump)
        outflows = self._outflows(stx)
        rest = dict(spent)  # the pending run (a batch's drafted candidates included) without ``old``
        if old.stx.hash in self._by_hash:
            for token, amount in old.outflows.items():
                rest[token] = rest.get(token, 0) - amount
        self._check_balance(stx.tx.sender, balances, rest, outflows)
        c = Candidate(stx=stx, size=size, price=price, outflows=outflows, height=self._app.height,
                      pending_before=-1, spent_before={}, replaces=old.stx.hash)
        if draft is not None:
            draft.hashes.add(stx.hash)
        return c

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
        simple = not candidate.queued and candidate.replaces is None
        c = candidate if simple and self._still_holds(candidate) else self.check(candidate.stx, candidate.size)
        if c.replaces is not None:
            return self._replace(c)
        if c.queued:
            return self._enqueue(c)
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
        self._promote(sender, account)
        self._push_tail(sender)
        return c.stx.hash

    # -- the queued area ---------------------------------------------------

    def _enqueue(self, c: Candidate) -> bytes:
        if len(self._queued_by_hash) >= self._config.max_queued:
            victim = self._cheapest_queued()
            if victim is None or victim.price >= c.price:
                shown = "nothing" if victim is None else _show(victim.price)
                raise MempoolFull(
                    f"the queued area is full ({len(self._queued_by_hash)} txs) and its fee per gas "
                    f"{_show(c.price)} is not above the lowest queued {shown}",
                    queued=len(self._queued_by_hash))
            self._unqueue(victim)
            log.debug("evicted queued 0x%s for a higher-paying one", victim.stx.hash.hex())
        return self._store_queued(c)

    def _store_queued(self, c: Candidate) -> bytes:
        entry = _Entry(stx=c.stx, size=c.size, seq=next(self._seq), outflows=c.outflows, price=c.price,
                       height=self._app.height)
        self._queued.setdefault(c.stx.tx.sender, {})[c.stx.tx.nonce] = entry
        self._queued_by_hash[c.stx.hash] = entry
        self._queued_bytes += c.size
        self._push_queued(entry)
        return c.stx.hash

    def _push_queued(self, entry: _Entry) -> None:
        heapq.heappush(self._qheap, (entry.price, entry.seq, entry.stx.hash))
        if len(self._qheap) > 2 * len(self._queued_by_hash) + 64:
            self._qheap = [(e.price, e.seq, h) for h, e in self._queued_by_hash.items()]
            heapq.heapify(self._qheap)

    def _cheapest_queued(self) -> _Entry | None:
        """The queued entry eviction takes first: lowest fee per gas, the oldest among equals."""
        while self._qheap:
            price, seq, tx_hash = self._qheap[0]
            entry = self._queued_by_hash.get(tx_hash)
            if entry is not None and entry.seq == seq:
                return entry
            heapq.heappop(self._qheap)
        return None

    def _unqueue(self, entry: _Entry) -> None:
        sender, nonce = entry.stx.tx.sender, entry.stx.tx.nonce
        del self._queued_by_hash[entry.stx.hash]
        self._queued_bytes -= entry.size
        run = self._queued[sender]
        del run[nonce]
        if not run:
            del self._queued[sender]

    def _promote(self, sender: bytes, account: "_Account | None" = None) -> int:
        """Move ``sender``'s queued transactions that continue its pending run into it, in nonce order,
        checked as pending admission checks them; returns how many moved."""
        run = self._queued.get(sender)
        if not run:
            return 0
        account = account if account is not None else self._accounts.get(sender)
        state = _Committed(self._app, sender)
        moved = 0
        while True:
            base = account.base_nonce if account is not None else state.nonce
            nxt = base + (len(account.txs) if account is not None else 0)
            entry = run.get(nxt) if sender in self._queued else None
            if entry is None:
                break
            if (account is not None and len(account.txs) >= self._config.max_per_account) or \
                    self.needs_room(entry.size):
                self._waiting.add(sender)  # promotion evicts nobody: it waits for room, retried after a commit
                break
            spent = account.spent if account is not None else {}
            if any(spent.get(t, 0) + a > state.balances.get(t, 0) for t, a in entry.outflows.items()):
                self._unqueue(entry)  # not executable after its predecessors
                log.debug("dropped queued 0x%s: balance no longer covers it", entry.stx.hash.hex())
                break
            self._unqueue(entry)
            if account is None:
                account = self._accounts[sender] = _Account(base_nonce=nxt)
            entry.seq = next(self._seq)
            account.txs.append(entry)
            account.add_spend(entry.outflows, +1)
            self._by_hash[entry.stx.hash] = entry
            self._bytes += entry.size
            self._promoted.append(entry.stx)
            moved += 1
        if len(self._promoted) > self._config.max_queued:  # nobody drains it (no relay): keep the newest
            del self._promoted[:len(self._promoted) - self._config.max_queued]
        if moved:
            self._push_tail(sender)
        return moved

    def _settle_queued(self, sender: bytes) -> None:
        """After a commit: drop ``sender``'s queued nonces now below its committed nonce, then promote."""
        run = self._queued.get(sender)
        if not run:
            return
        committed = self._app.nonce(sender)
        for nonce in sorted(n for n in run if n < committed):
            self._unqueue(run[nonce])
        self._promote(sender)

    def _expire_queued(self) -> int:
        """Drop queued entries older than ``queued_max_blocks`` (arrival order is height order)."""
        dropped = 0
        limit = self._app.height - self._config.queued_max_blocks
        while self._queued_by_hash:
            entry = next(iter(self._queued_by_hash.values()))
            if entry.height > limit:
                break
            self._unqueue(entry)
            dropped += 1
        return dropped

    def _replace(self, c: Candidate) -> bytes:
        assert c.replaces is not None
        sender = c.stx.tx.sender
        queued = self._queued_by_hash.get(c.replaces)
        if queued is not None:
            self._unqueue(queued)
            return self._store_queued(c)
        old = self._by_hash[c.replaces]
        if self._bytes - old.size + c.size > self._config.max_bytes:
            raise self._refuse_full(f"the replacement of 0x{old.stx.hash.hex()} is {c.size - old.size} bytes larger")
        account = self._accounts[sender]
        index = account.txs.index(old)
        entry = _Entry(stx=c.stx, size=c.size, seq=next(self._seq), outflows=c.outflows, price=c.price,
                       height=self._app.height)
        account.txs[index] = entry
        account.add_spend(old.outflows, -1)
        account.add_spend(c.outflows, +1)
        del self._by_hash[old.stx.hash]
        self._by_hash[c.stx.hash] = entry
        self._bytes += c.size - old.size
        self._push_tail(sender)
        log.debug("replaced 0x%s (nonce %d) by 0x%s", old.stx.hash.hex(), old.stx.tx.nonce, c.stx.hash.hex())
        return c.stx.hash

    # -- block production -------------------------------------------------

    def reap(self, max_txs: int, max_bytes: int) -> list[SignedTransaction]:
        """Executable transactions ordered by fee per gas (highest first; the price eviction compares),
        then nonce.  Per gas, not per transaction: a contract transaction's fee prices its own gas
        limit, so by fee alone a large gas limit at the minimum price would go before everything."""
        heads: list[tuple[Fraction, int, bytes, int]] = []
        for sender, account in self._accounts.items():
            if account.txs:
                first = account.txs[0]
                heads.append((-first.price, first.seq, sender, 0))
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
                heapq.heappush(heads, (-txs[nxt].price, txs[nxt].seq, sender, nxt))
        return picked

    def update(self, block: Block) -> int:
        """Remove what ``block`` committed, then recheck every touched sender.

        Returns how many transactions were dropped as no longer executable.
        Inflows never make a pending transaction invalid, so only the senders
        (whose nonce and balances moved) need a recheck; the recheck also
        removes their committed transactions (nonces now below the account's).
        """
        committed = {stx.hash for stx in block.txs}
        senders = sorted({stx.tx.sender for stx in block.txs})
        dropped = sum(self._recheck(sender, committed) for sender in senders)
        self._expire_queued()
        waiting, self._waiting = self._waiting, set()
        for sender in sorted(waiting.union(senders)):
            self._settle_queued(sender)
        return dropped

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
        state = _Committed(self._app, sender)
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

    def flush(self) -> tuple[list[bytes], list[bytes]]:
        """Drop every pending and queued transaction (an operator's ``admin_flush_mempool``);
        returns the (pending, queued) hashes dropped."""
        pending, queued = list(self._by_hash), list(self._queued_by_hash)
        self._accounts.clear()
        self._by_hash.clear()
        self._bytes = 0
        self._tails.clear()
        self._queued.clear()
        self._queued_by_hash.clear()
        self._queued_bytes = 0
        self._qheap.clear()
        self._promoted.clear()
        self._waiting.clear()
        return pending, queued

    def remove_many(self, hashes: Iterable[bytes]) -> None:
        for tx_hash in hashes:
            queued = self._queued_by_hash.get(tx_hash)
            if queued is not None:
                self._unqueue(queued)
                continue
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
    queued: bool = False  # a future nonce: goes to the queued area
    replaces: bytes | None = None  # the hash of the pending or queued transaction it replaces


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
