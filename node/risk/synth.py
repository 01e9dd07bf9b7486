"""Seeded synthetic transaction histories with labelled fraud patterns.

A small economy runs for ``blocks`` blocks.  Each seed also draws its own
behaviour mix (how many merchants, payroll and exchange accounts, traders,
whether a high-rate cluster of genesis accounts pays itself) and its own fee
distribution, and every transaction, fraudulent or not, draws its fee from
that one distribution: the fee says nothing about the label, so a model
cannot learn to lean on it.

Normal behaviour:

* households: genesis-funded, half active from the start and half joining
  later with no history at all; lognormal balances, pay a few regular
  counterparties small shares of their balance (0.0003 % to 10 %) at Poisson-like times,
  sometimes someone new, sometimes a large purchase (20-60 % of balance),
  sometimes a tiny test payment (to a friend, or to a new counterparty
  that the real payment then follows), and rarely move nearly everything to a new
  address of their own (a legitimate "drain": the one takeover signal alone
  is not proof);
* merchants: receive from many (legitimate fan-in) and pay suppliers;
* payroll accounts: pay many known receivers in bursts (fan-out, velocity);
* an exchange hot wallet: deposits from many, withdrawals every block to
  many, a third of them to never-seen addresses, each a small share;
* a load cluster: genesis-funded accounts paying each other several times a
  block from their first block on, small shares or token amounts down to
  one base unit (a benchmark's traffic);
* traders: swap on pools, sometimes back and forth, at small price impact;
* micropayment streams: a service funds a fresh account that pays it back
  in many tiny payments, several per block (one counterparty, unlike dust).

Fraud patterns (label 1), injected at random heights:

* ``drain``  — an established account empties its balance to a fresh
  address.  Plain (one transfer of 90-100 %), or with a second takeover
  signal: split into two or three rapid parts (one block, or one a block),
  fanned out to two or three fresh addresses in one block, after quick
  probes to fresh addresses (in the same block or up to three blocks
  before), after a spree of payments to known merchants and exchanges
  (``drain:burst``), after a quiet spell of at least five times the
  account's habitual gap between sends (as feature ``idle_vs_habit``
  measures it), or to a thief address that collects several victims.  An
  owner moving everything to a new wallet of their own
  (``normal:move_all``: an established household picked at a random
  height, as a thief picks a victim, about 9 per 1,500 blocks of 200
  accounts against about 15 plain drains; half of them after a small test
  payment to that wallet, in the same block or a few blocks before) looks
  exactly like a plain drain, so a lone drain is ambiguous (about three in
  four of those without a test payment are fraud: flagged for review) and
  the second signal is what makes it a refusal;
* ``burst``  — a taken-over account fires 10-40 transfers within 1-3 blocks
  to mostly new receivers;
* ``mule``   — a fresh account collects from many senders (fan-in) and
  forwards almost all of it within a few blocks, split over fresh addresses;
* ``wash``   — an account swaps back and forth on one pool at high price
  impact, or two accounts bounce the same amount between them;
* ``dust``   — a fresh account sends tiny amounts to many existing accounts.

Features are computed exactly as the node does: per block, every row sees
the history committed before that block plus the sender's earlier
transactions in the block as pending ones (which never-seen addresses they
pay and what they move, to new receivers and in all, as the node's hook
remembers of the transactions it admitted); an address paid earlier in the
block is still unfunded (the hook reads committed accounts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from node.risk.features import NEW_COUNTERPARTY_FEATURE, N_FEATURES, UNSEEN_FEATURE, Pending, extract
from node.risk.history import HistoryStore, TxEvent
from node.risk.policy import DORMANT_TIMES

PATTERNS = ("normal", "drain", "burst", "mule", "wash", "dust")
DORMANT = DORMANT_TIMES  # a dormant drain's victim was quiet for at least this many times its habit
MOVE_ALL_RATE = 0.006  # owners moving everything, per block and 200 regular accounts (about 9 per 1500 blocks)
FRAUD_PATTERNS = PATTERNS[1:]
POOLS = ("QNX/USD", "QNX/ETH")


@dataclass
class Dataset:
    x: np.ndarray  # (n, N_FEATURES) float32 features
    y: np.ndarray  # (n,) 0/1 labels
    pattern: np.ndarray  # (n,) pattern names (str)
    amount: np.ndarray  # (n,) amount in whole units: input of the rule baseline
    kind: np.ndarray | None = None  # (n,) finer sub-kind ("drain:plain", "normal:exchange", ...)

    def __len__(self) -> int:
        return len(self.y)

    def subset(self, mask: np.ndarray) -> "Dataset":
        return Dataset(self.x[mask], self.y[mask], self.pattern[mask], self.amount[mask],
                       None if self.kind is None else self.kind[mask])


def concat(parts: list[Dataset]) -> Dataset:
    kinds = [p.kind if p.kind is not None else np.array([""] * len(p)) for p in parts]
    return Dataset(np.vstack([p.x for p in parts]), np.concatenate([p.y for p in parts]),
                   np.concatenate([p.pattern for p in parts]), np.concatenate([p.amount for p in parts]),
                   np.concatenate(kinds))


def _addr(tag: str, i: int) -> bytes:
    return hashlib.sha256(f"{tag}:{i}".encode()).digest()[:20]


@dataclass
class _Planned:
    sender: bytes
    receiver: bytes
    amount: float  # > 0: whole units; < 0: that share of the sender's balance at the time
    token: str = "QNX"
    pattern: str = "normal"
    kind: str = "normal"
    swap: str = ""  # "pool:dir" for swaps
    impact: float = 0.0


def generate(seed: int, *, accounts: int = 200, blocks: int = 1500, fraud_rate: float = 0.006) -> Dataset:
    """A labelled history.  Same arguments, same dataset (bit for bit)."""
    rng = np.random.default_rng(seed)
    store = HistoryStore()
    balances: dict[tuple[bytes, str], float] = {}
    funded: set[bytes] = set()  # addresses the chain knows (genesis or received something)
    fresh_counter = iter(range(10**9))

    def new_address() -> bytes:
        return _addr(f"fresh{seed}", next(fresh_counter))

    # The seed's behaviour mix and fee distribution.
    n_merchants = max(3, int(accounts * rng.uniform(0.03, 0.08)))
    n_payroll = max(1, int(accounts * rng.uniform(0.01, 0.04)))
    n_traders = max(4, int(accounts * rng.uniform(0.05, 0.15)))
    n_exchange = int(rng.integers(0, 3))
    n_cluster = int(rng.choice([0, 0, 10, 20, 40]))
    fee_levels = np.array([1.0, 1.5, 2.0, 5.0, 10.0])
    fee_probs = rng.dirichlet(np.array([6.0, 1.0, 1.0, 0.5, 0.5]))
    households = [_addr(f"h{seed}", i) for i in range(accounts)]
    merchants = [_addr(f"m{seed}", i) for i in range(n_merchants)]
    payroll = [_addr(f"p{seed}", i) for i in range(n_payroll)]
    traders = [_addr(f"t{seed}", i) for i in range(n_traders)]
    exchanges = [_addr(f"x{seed}", i) for i in range(n_exchange)]
    cluster = [_addr(f"c{seed}", i) for i in range(n_cluster)]
    regular = households + merchants + payroll + traders  # the Poisson-rate actors
    everyone = regular + exchanges + cluster
    for a in everyone:
        balances[(a, "QNX")] = float(10 ** rng.uniform(2, 6.5))
        balances[(a, "USD")] = float(10 ** rng.uniform(1, 4)) if rng.random() < 0.3 else 0.0
        funded.add(a)
    for a in exchanges:
        balances[(a, "QNX")] = float(10 ** rng.uniform(6, 7.5))
    friends = {a: [int(i) for i in rng.choice(len(regular), size=int(rng.integers(2, 8)), replace=False)]
               for a in regular}
    rate = np.array([float(rng.uniform(0.005, 0.05)) for _ in households] + [0.2] * n_merchants
                    + [0.01] * n_payroll + [0.08] * n_traders)
    share = {a: float(10 ** rng.uniform(-2.5, -1)) for a in everyone}
    for a in households:  # some hold far more than they spend (a 1,000,000 QNX wallet paying 12 QNX)
        share[a] = float(10 ** rng.uniform(-5.5, -1))
    # Half the households are genesis-funded newcomers that only start later:
    # a first transaction with no history at all is ordinary (every account
    # on a fresh chain starts that way).
    starts = np.array([1 if rng.random() < 0.5 else int(rng.integers(1, blocks)) for _ in regular])
    cluster_start = int(rng.integers(1, max(2, blocks // 2)))
    cluster_end = cluster_start + int(rng.integers(100, 300))  # a benchmark run, not forever
    is_trader = np.zeros(len(regular), bool)
    is_trader[len(households) + n_merchants + n_payroll:] = True
    is_payroll = np.zeros(len(regular), bool)
    is_payroll[len(households) + n_merchants: len(households) + n_merchants + n_payroll] = True
    last_sent: dict[bytes, int] = {}
    sends: dict[bytes, int] = {}
    pending: list[tuple[int, _Planned]] = []  # (height, planned) injected by fraud scenarios
    thieves: list[bytes] = []  # thief addresses that collect several victims

    rows: list[np.ndarray] = []
    ys: list[int] = []
    pats: list[str] = []
    kinds: list[str] = []
    amounts: list[float] = []
    base_fee = 0.001

    def established(h: int) -> list[bytes]:
        return [a for a in households if sends.get(a, 0) >= 3 and balances[(a, "QNX")] > 1]

    def quiet(a: bytes, h: int) -> float:
        """(1 + blocks since the last send) / (1 + the mean gap between sends): feature idle_vs_habit, unlogged."""
        acc = store.get(a)
        if acc is None or acc.sent < 2 or not acc.sent_heights:
            return 0.0
        last = acc.sent_heights[-1]
        habit = max(last - acc.first_height, 1) / (acc.sent - 1)
        return (1.0 + max(h - last, 0)) / (1.0 + habit)

    def plan_drain(h: int) -> None:
        pool = established(h)
        if not pool:
            return
        variant = str(rng.choice(["plain", "plain", "split", "fanout", "probe", "burst", "dormant", "collector"]))
        if variant == "dormant":
            # one of the accounts quiet for at least DORMANT times their habit, if any
            candidates = [a for a in pool if quiet(a, h) >= DORMANT]
            if candidates:
                victim = candidates[int(rng.integers(0, len(candidates)))]
            else:
                variant, victim = "plain", pool[int(rng.integers(0, len(pool)))]
        else:
            victim = pool[int(rng.integers(0, len(pool)))]
        if variant == "collector":
            if not thieves or rng.random() < 0.3:
                thieves.append(new_address())
            thief = thieves[int(rng.integers(0, len(thieves)))]
        else:
            thief = new_address()
        kind = f"drain:{variant}"
        if variant == "split":
            parts = int(rng.integers(2, 4))
            for k in range(parts):
                frac = float(rng.uniform(0.6, 0.85)) if k < parts - 1 else float(rng.uniform(0.9, 1.0))
                pending.append((h + int(rng.integers(0, 2)) * k, _Planned(victim, thief, -frac, pattern="drain", kind=kind)))
        elif variant == "fanout":
            parts = int(rng.integers(2, 4))  # most of the balance to one fresh address, the rest to others, one block
            for k in range(parts):
                frac = float(rng.uniform(0.6, 0.85)) if k == 0 else 1.0 / (parts - k) * float(rng.uniform(0.95, 1.0))
                pending.append((h, _Planned(victim, new_address(), -frac, pattern="drain", kind=kind)))
        elif variant == "probe":
            for _ in range(int(rng.integers(2, 5))):
                # the thief's quick test sends: a short burst from the taken-over key
                pending.append((h, _Planned(victim, new_address(), float(10 ** rng.uniform(-3, 0)), pattern="burst",
                                            kind="burst:probe")))
            later = 0 if rng.random() < 0.5 else int(rng.integers(1, 4))  # once they commit, or at once
            pending.append((h + later, _Planned(victim, thief, -float(rng.uniform(0.9, 1.0)), pattern="drain",
                                                kind=kind)))
        elif variant == "burst":
            # a spree of purchases from the stolen key at known merchants and exchanges, then the rest
            shops = merchants + exchanges
            for _ in range(int(rng.integers(3, 7))):
                pending.append((h, _Planned(victim, shops[int(rng.integers(0, len(shops)))],
                                            -float(rng.uniform(0.01, 0.08)), pattern="burst", kind="burst:spree")))
            pending.append((h + int(rng.integers(0, 2)), _Planned(victim, thief, -float(rng.uniform(0.9, 1.0)),
                                                                  pattern="drain", kind=kind)))
        else:
            pending.append((h, _Planned(victim, thief, -float(rng.uniform(0.9, 1.0)), pattern="drain", kind=kind)))

    def plan_move_all(h: int) -> None:
        # An owner moving everything to a new wallet of its own, chosen as a thief chooses a victim
        # (any established household, at any time): nothing but a second signal tells the two apart.
        pool = established(h)
        if not pool:
            return
        owner, wallet = pool[int(rng.integers(0, len(pool)))], new_address()
        later = 0
        if rng.random() < 0.5:  # a small test payment to the new wallet first, then everything
            later = int(rng.integers(0, 6))
            pending.append((h, _Planned(owner, wallet, float(10 ** rng.uniform(-4, 0)), kind="normal:test")))
        pending.append((h + later, _Planned(owner, wallet, -float(rng.uniform(0.9, 1.0)), kind="normal:move_all")))

    def plan_fraud(h: int) -> None:
        # drains are one or a few rows each, the others tens: draw drains more often
        kind = FRAUD_PATTERNS[int(rng.choice(len(FRAUD_PATTERNS), p=[0.6, 0.1, 0.1, 0.1, 0.1]))]
        if kind == "drain":
            plan_drain(h)
        elif kind == "burst":
            victim = regular[int(rng.integers(0, len(regular)))]
            n = int(rng.integers(10, 40))
            span = int(rng.integers(1, 4))
            for _ in range(n):
                to = new_address() if rng.random() < 0.8 else everyone[int(rng.integers(0, len(everyone)))]
                pending.append((h + int(rng.integers(0, span)), _Planned(victim, to, -0.02, pattern="burst", kind="burst")))
        elif kind == "mule":
            mule = new_address()
            senders = [regular[int(i)] for i in rng.choice(len(regular), size=int(rng.integers(4, 12)), replace=False)]
            for k, s in enumerate(senders):
                pending.append((h + k // 3, _Planned(s, mule, -float(rng.uniform(0.05, 0.3)), pattern="mule_in",
                                                     kind="normal:mule_victim")))
            out_h = h + len(senders) // 3 + int(rng.integers(1, 4))
            n_out = int(rng.integers(3, 8))
            for k in range(n_out):  # equal parts of ~95 % of what came in
                pending.append((out_h + k // 3, _Planned(mule, new_address(), -0.95 / (n_out - k), pattern="mule",
                                                         kind="mule")))
        elif kind == "wash":
            if rng.random() < 0.6:
                w = traders[int(rng.integers(0, len(traders)))] if rng.random() < 0.5 else new_address()
                if balances.get((w, "QNX"), 0.0) < 1:
                    balances[(w, "QNX")] = float(10 ** rng.uniform(3, 5))
                    funded.add(w)
                pool = POOLS[int(rng.integers(0, len(POOLS)))]
                for k in range(int(rng.integers(4, 12))):
                    d = k % 2
                    pending.append((h + k, _Planned(w, _addr("pool", POOLS.index(pool)), -0.5, pattern="wash",
                                                    kind="wash:pool", swap=f"{pool}:{d}",
                                                    impact=float(rng.uniform(0.05, 0.3)))))
            else:
                a, b = new_address(), new_address()
                amt = float(10 ** rng.uniform(2, 4))
                balances[(a, "QNX")] = amt * 1.2
                balances[(b, "QNX")] = amt * 0.2
                funded.update((a, b))
                for k in range(int(rng.integers(4, 10))):
                    s, r = (a, b) if k % 2 == 0 else (b, a)
                    pending.append((h + k, _Planned(s, r, amt, pattern="wash", kind="wash:bounce")))
        else:  # dust
            prober = new_address()
            balances[(prober, "QNX")] = float(rng.uniform(1, 10))
            funded.add(prober)
            for k in range(int(rng.integers(10, 30))):
                target = everyone[int(rng.integers(0, len(everyone)))]
                pending.append((h + k // 8, _Planned(prober, target, float(10 ** rng.uniform(-6, -3)), pattern="dust",
                                                     kind="dust")))

    streams: list[tuple[bytes, bytes, int, int]] = []  # (streamer, payee, first, last height)

    for h in range(1, blocks + 1):
        planned: list[_Planned] = []
        # Micropayment streams (legitimate): a service funds a fresh account,
        # which then pays it back in many tiny payments, several per block.
        if rng.random() < 0.015:
            payee = (payroll + merchants)[int(rng.integers(0, len(payroll) + len(merchants)))]
            streamer = new_address()
            planned.append(_Planned(payee, streamer, float(10 ** rng.uniform(-12, 1)), kind="normal:stream"))
            streams.append((streamer, payee, h + 1, h + int(rng.integers(5, 60))))
        for streamer, payee, first, last in streams:
            if first <= h <= last:
                for _ in range(int(rng.integers(0, 3))):
                    planned.append(_Planned(streamer, payee, float(10 ** rng.uniform(-18, -13)), kind="normal:stream"))
        streams[:] = [st for st in streams if st[3] >= h]
        # The exchange: deposits arrive through the households' purchases
        # below (it is a merchant to them); withdrawals every block.
        for x in exchanges:
            for _ in range(int(rng.poisson(2.0))):
                to = new_address() if rng.random() < 0.33 else regular[int(rng.integers(0, len(regular)))]
                planned.append(_Planned(x, to, balances[(x, "QNX")] * float(10 ** rng.uniform(-5, -2.5)),
                                        kind="normal:exchange"))
        if cluster and cluster_start <= h <= cluster_end:
            for c in cluster:
                for _ in range(int(rng.integers(0, 4))):
                    to = cluster[int(rng.integers(0, len(cluster)))]
                    if to != c:
                        # a benchmark's amounts: a small share, or a token amount (down to one base unit)
                        amount = (balances[(c, "QNX")] * float(10 ** rng.uniform(-8, -2)) if rng.random() < 0.6
                                  else float(10 ** rng.uniform(-18, -6)))
                        planned.append(_Planned(c, to, amount, kind="normal:cluster"))
        active = (h >= starts) & (rng.random(len(regular)) < np.where(h > starts, rate, 0.5))
        for i in np.flatnonzero(active):
            a = regular[i]
            bal = balances[(a, "QNX")]
            if is_trader[i] and rng.random() < 0.6:
                pool = POOLS[int(rng.integers(0, len(POOLS)))]
                d = int(rng.integers(0, 2))
                planned.append(_Planned(a, _addr("pool", POOLS.index(pool)), bal * share[a] * rng.uniform(0.5, 2),
                                        kind="normal:trade", swap=f"{pool}:{d}", impact=float(10 ** rng.uniform(-4, -1.7))))
                continue
            if is_payroll[i]:
                for f in friends[a] + [int(j) for j in rng.choice(len(regular), size=int(rng.integers(5, 20)))]:
                    planned.append(_Planned(a, regular[f], bal * 0.005 * rng.uniform(0.5, 1.5), kind="normal:payroll"))
                continue
            roll = rng.random()
            if roll < 0.75:
                to = regular[int(rng.choice(friends[a]))]
            elif roll < 0.97:
                r2 = rng.random()
                if exchanges and r2 < 0.2:
                    to = exchanges[int(rng.integers(0, len(exchanges)))]
                else:
                    to = merchants[int(rng.integers(0, len(merchants)))] if r2 < 0.6 else new_address()
            else:
                to = new_address()
            amount = bal * share[a] * float(rng.lognormal(0, 0.6))
            kind = "normal:payment"
            if roll > 0.985:
                amount = bal * float(rng.uniform(0.2, 0.6))  # a large purchase: legitimate
                kind = "normal:purchase"
            elif roll < 0.02:
                amount = float(10 ** rng.uniform(-18, -2))  # a test payment before a real one: legitimate
                kind = "normal:test"
                if rng.random() < 0.5:  # to a new counterparty, and the real payment follows
                    to = new_address()
                    pending.append((h + int(rng.integers(1, 4)), _Planned(
                        a, to, bal * share[a] * float(rng.lognormal(0, 0.6)), kind="normal:after_test")))
            token = "USD" if balances[(a, "USD")] > 0 and rng.random() < 0.2 and kind == "normal:payment" else "QNX"
            if token == "USD":
                amount = balances[(a, "USD")] * share[a] * float(rng.lognormal(0, 0.6))
            planned.append(_Planned(a, to, amount, token=token, kind=kind))
        if rng.random() < fraud_rate * len(regular) / 20:
            plan_fraud(h)
        if rng.random() < MOVE_ALL_RATE * len(regular) / 200:
            plan_move_all(h)
        planned += [p for ph, p in pending if ph == h]
        pending[:] = [(ph, p) for ph, p in pending if ph > h]

        block_events: list[TxEvent] = []
        in_block: dict[bytes, int] = {}
        in_block_unseen: dict[bytes, int] = {}  # of those, paying a never-seen address
        in_block_unseen_to: dict[bytes, set[bytes]] = {}  # which never-seen addresses
        in_block_out: dict[tuple[bytes, str], float] = {}  # and what they moved of each token
        in_block_new_out: dict[tuple[bytes, str], float] = {}  # of it, to receivers the sender never paid
        received_in_block: list[bytes] = []
        fee_mults = fee_levels[rng.choice(len(fee_levels), size=len(planned), p=fee_probs)] if planned else []
        for p, fee_mult in zip(planned, fee_mults):
            bal = balances.get((p.sender, p.token), 0.0)
            amount = p.amount if p.amount >= 0 else -p.amount * bal
            amount = min(amount, bal)
            if amount <= 0:
                continue
            fee = base_fee * float(fee_mult) * float(rng.uniform(0.9, 1.1))
            ev = TxEvent(
                sender=p.sender, receiver=p.receiver, token=p.token, amount=amount, fee=fee, height=h,
                is_swap=bool(p.swap), trade_key=p.swap,
                reverse_key=(p.swap[:-1] + str(1 - int(p.swap[-1]))) if p.swap else "",
                pool_impact=p.impact, receiver_funded=bool(p.swap) or p.receiver in funded,
            )
            key = (p.sender, p.token)
            known = Pending(in_block_unseen.get(p.sender, 0), in_block_out.get(key, 0.0),
                            in_block_new_out.get(key, 0.0), frozenset(in_block_unseen_to.get(p.sender, ())))
            row = extract(ev, balances.get(key, 0.0) + known.outflow, in_block.get(p.sender, 0), store, known)
            rows.append(row)
            if row[UNSEEN_FEATURE]:
                in_block_unseen[p.sender] = in_block_unseen.get(p.sender, 0) + 1
                in_block_unseen_to.setdefault(p.sender, set()).add(p.receiver)
            in_block_out[key] = known.outflow + amount
            if row[NEW_COUNTERPARTY_FEATURE]:
                in_block_new_out[key] = known.new_outflow + amount
            fraud = p.pattern not in ("normal", "mule_in")
            ys.append(int(fraud))
            pats.append(p.pattern if fraud else "normal")
            kinds.append(p.kind)
            amounts.append(amount)
            in_block[p.sender] = in_block.get(p.sender, 0) + 1
            balances[(p.sender, p.token)] = bal - amount
            if not p.swap:
                balances[(p.receiver, p.token)] = balances.get((p.receiver, p.token), 0.0) + amount
                received_in_block.append(p.receiver)  # funded once the block commits
            sends[p.sender] = sends.get(p.sender, 0) + 1
            last_sent[p.sender] = h
            block_events.append(ev)
        for ev in block_events:
            store.observe(ev)
        store.touch_height(h)
        funded.update(received_in_block)
    x = np.vstack(rows).astype(np.float32) if rows else np.zeros((0, N_FEATURES), np.float32)
    return Dataset(x, np.array(ys, dtype=np.int8), np.array(pats), np.array(amounts, dtype=np.float64),
                   np.array(kinds))
