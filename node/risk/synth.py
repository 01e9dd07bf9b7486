"""Seeded synthetic transaction histories with labelled fraud patterns.

A small economy runs for ``blocks`` blocks.  Normal behaviour:

* households: genesis-funded, half active from the start and half joining
  later with no history at all; lognormal balances, pay a few regular counterparties small
  shares of their balance at Poisson-like times, sometimes someone new,
  sometimes a large purchase (30-70 % of balance), sometimes a tiny test
  payment;
* merchants: receive from many (legitimate fan-in) and pay suppliers;
* payroll/exchange accounts: pay many known receivers in bursts (legitimate
  fan-out and velocity);
* traders: swap on pools, sometimes back and forth, at small price impact;
* micropayment streams: a service funds a fresh account that pays it back
  in many tiny payments, several per block (one counterparty, unlike dust).

Fraud patterns (label 1), injected at random heights:

* ``drain``   — an established account empties its balance to a fresh
  address: one transfer of 85-100 %, or two or three of 60-100 % of what is
  left, often with a high fee;
* ``burst``   — a taken-over account fires 10-40 transfers within 1-3 blocks
  to mostly new receivers;
* ``mule``    — a fresh account collects from many senders (fan-in) and
  forwards almost all of it within a few blocks, split over fresh
  addresses (fan-out);
* ``wash``    — an account swaps back and forth on one pool at high price
  impact, or two accounts bounce the same amount between them;
* ``dust``    — a fresh account sends tiny amounts to many existing accounts.

Features are computed exactly as the node does: per block, every row sees
the history committed before that block plus the sender's earlier
transactions in the block as pending ones.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from node.risk.features import N_FEATURES, extract
from node.risk.history import HistoryStore, TxEvent

PATTERNS = ("normal", "drain", "burst", "mule", "wash", "dust")
POOLS = ("QNX/USD", "QNX/ETH")


@dataclass
class Dataset:
    x: np.ndarray  # (n, 20) float32 features
    y: np.ndarray  # (n,) 0/1 labels
    pattern: np.ndarray  # (n,) pattern names (str)
    amount: np.ndarray  # (n,) amount in whole units: input of the rule baseline

    def __len__(self) -> int:
        return len(self.y)


def _addr(tag: str, i: int) -> bytes:
    return hashlib.sha256(f"{tag}:{i}".encode()).digest()[:20]


@dataclass
class _Planned:
    sender: bytes
    receiver: bytes
    amount: float
    token: str = "QNX"
    fee_mult: float = 1.0
    pattern: str = "normal"
    swap: str = ""  # "pool:dir" for swaps
    impact: float = 0.0


def generate(seed: int, *, accounts: int = 200, blocks: int = 1500, fraud_rate: float = 0.004) -> Dataset:
    """A labelled history.  Same arguments, same dataset (bit for bit)."""
    rng = np.random.default_rng(seed)
    store = HistoryStore()
    balances: dict[tuple[bytes, str], float] = {}
    fresh = iter(range(10**9))

    def new_address() -> bytes:
        return _addr(f"fresh{seed}", next(fresh))

    n_merchants = max(3, accounts // 20)
    n_payroll = max(2, accounts // 40)
    n_traders = max(4, accounts // 10)
    households = [_addr(f"h{seed}", i) for i in range(accounts)]
    merchants = [_addr(f"m{seed}", i) for i in range(n_merchants)]
    payroll = [_addr(f"p{seed}", i) for i in range(n_payroll)]
    traders = [_addr(f"t{seed}", i) for i in range(n_traders)]
    everyone = households + merchants + payroll + traders
    for a in everyone:
        balances[(a, "QNX")] = float(10 ** rng.uniform(2, 6.5))
        balances[(a, "USD")] = float(10 ** rng.uniform(1, 4)) if rng.random() < 0.3 else 0.0
    friends = {a: list(rng.choice(len(everyone), size=int(rng.integers(2, 8)), replace=False)) for a in everyone}
    rate = {a: float(rng.uniform(0.005, 0.05)) for a in households}
    rate.update({a: 0.2 for a in merchants})
    rate.update({a: 0.01 for a in payroll})
    rate.update({a: 0.08 for a in traders})
    share = {a: float(10 ** rng.uniform(-2.5, -1)) for a in everyone}
    # Half the households are genesis-funded newcomers that only start later:
    # a first transaction with no history at all is ordinary (every account
    # on a fresh chain starts that way).
    starts = {a: (1 if rng.random() < 0.5 else int(rng.integers(1, blocks))) for a in everyone}
    pending: list[tuple[int, _Planned]] = []  # (height, planned) injected by fraud scenarios

    rows: list[np.ndarray] = []
    ys: list[int] = []
    pats: list[str] = []
    amounts: list[float] = []
    base_fee = 0.001

    def plan_fraud(h: int) -> None:
        kind = PATTERNS[1 + int(rng.integers(0, 5))]
        if kind == "drain":
            victim = households[int(rng.integers(0, len(households)))]
            thief = new_address()
            parts = int(rng.choice([1, 1, 2, 3]))
            fee = float(rng.choice([1.0, 3.0, 10.0]))
            for k in range(parts):
                frac = float(rng.uniform(0.85, 1.0)) if parts == 1 else float(rng.uniform(0.6, 1.0))
                pending.append((h + k, _Planned(victim, thief, -frac, fee_mult=fee, pattern="drain")))
        elif kind == "burst":
            victim = everyone[int(rng.integers(0, len(everyone)))]
            n = int(rng.integers(10, 40))
            span = int(rng.integers(1, 4))
            for k in range(n):
                to = new_address() if rng.random() < 0.8 else everyone[int(rng.integers(0, len(everyone)))]
                pending.append((h + int(rng.integers(0, span)), _Planned(victim, to, -0.02, pattern="burst")))
        elif kind == "mule":
            mule = new_address()
            senders = [everyone[int(i)] for i in rng.choice(len(everyone), size=int(rng.integers(4, 12)), replace=False)]
            for k, s in enumerate(senders):
                pending.append((h + k // 3, _Planned(s, mule, -float(rng.uniform(0.05, 0.3)), pattern="mule_in")))
            out_h = h + len(senders) // 3 + int(rng.integers(1, 4))
            n_out = int(rng.integers(3, 8))
            for k in range(n_out):  # equal parts of ~95 % of what came in
                pending.append((out_h + k // 3, _Planned(mule, new_address(), -0.95 / (n_out - k), pattern="mule")))
        elif kind == "wash":
            if rng.random() < 0.6:
                w = traders[int(rng.integers(0, len(traders)))] if rng.random() < 0.5 else new_address()
                if (w, "QNX") not in balances or balances[(w, "QNX")] < 1:
                    balances[(w, "QNX")] = float(10 ** rng.uniform(3, 5))
                pool = POOLS[int(rng.integers(0, len(POOLS)))]
                for k in range(int(rng.integers(4, 12))):
                    d = k % 2
                    pending.append((h + k, _Planned(w, _addr("pool", POOLS.index(pool)), -0.5, pattern="wash",
                                                    swap=f"{pool}:{d}", impact=float(rng.uniform(0.05, 0.3)))))
            else:
                a, b = new_address(), new_address()
                amt = float(10 ** rng.uniform(2, 4))
                balances[(a, "QNX")] = amt * 1.2
                balances[(b, "QNX")] = amt * 0.2
                for k in range(int(rng.integers(4, 10))):
                    s, r = (a, b) if k % 2 == 0 else (b, a)
                    pending.append((h + k, _Planned(s, r, amt, pattern="wash")))
        else:  # dust
            prober = new_address()
            balances[(prober, "QNX")] = float(rng.uniform(1, 10))
            for k in range(int(rng.integers(10, 30))):
                target = everyone[int(rng.integers(0, len(everyone)))]
                pending.append((h + k // 8, _Planned(prober, target, float(10 ** rng.uniform(-6, -3)), pattern="dust")))

    streams: list[tuple[bytes, bytes, int, int]] = []  # (streamer, payee, first, last height)

    for h in range(1, blocks + 1):
        planned: list[_Planned] = []
        # Micropayment streams (legitimate): a service funds a fresh account,
        # which then pays it back in many tiny payments, several per block.
        if rng.random() < 0.015:
            payee = (payroll + merchants)[int(rng.integers(0, len(payroll) + len(merchants)))]
            streamer = new_address()
            planned.append(_Planned(payee, streamer, float(10 ** rng.uniform(-12, 1))))
            streams.append((streamer, payee, h + 1, h + int(rng.integers(5, 60))))
        for streamer, payee, first, last in streams:
            if first <= h <= last:
                for _ in range(int(rng.integers(0, 3))):
                    tiny = float(10 ** rng.uniform(-18, -13))
                    planned.append(_Planned(streamer, payee, tiny, fee_mult=float(rng.choice([1, 1, 2]))))
        streams[:] = [st for st in streams if st[3] >= h]
        for a in everyone:
            if h < starts[a] or rng.random() >= (rate[a] if h > starts[a] else 0.5):
                continue
            bal = balances[(a, "QNX")]
            if a in traders and rng.random() < 0.6:
                pool = POOLS[int(rng.integers(0, len(POOLS)))]
                d = int(rng.integers(0, 2))
                planned.append(_Planned(a, _addr("pool", POOLS.index(pool)), bal * share[a] * rng.uniform(0.5, 2),
                                        swap=f"{pool}:{d}", impact=float(10 ** rng.uniform(-4, -1.7))))
                continue
            if a in payroll:
                for f in friends[a] + list(rng.choice(len(everyone), size=int(rng.integers(5, 20)))):
                    planned.append(_Planned(a, everyone[int(f)], bal * 0.005 * rng.uniform(0.5, 1.5)))
                continue
            roll = rng.random()
            if roll < 0.75:
                to = everyone[int(rng.choice(friends[a]))]
            elif roll < 0.97:
                to = merchants[int(rng.integers(0, len(merchants)))] if rng.random() < 0.5 else new_address()
            else:
                to = new_address()
            amount = bal * share[a] * float(rng.lognormal(0, 0.6))
            if roll > 0.985:
                amount = bal * float(rng.uniform(0.3, 0.7))  # a large purchase: legitimate
            elif roll < 0.02:
                amount = float(10 ** rng.uniform(-18, -2))  # a test payment before a real one: legitimate
            token = "USD" if balances[(a, "USD")] > 0 and rng.random() < 0.2 else "QNX"
            if token == "USD":
                amount = balances[(a, "USD")] * share[a] * float(rng.lognormal(0, 0.6))
            planned.append(_Planned(a, to, amount, token=token, fee_mult=float(rng.choice([1, 1, 1, 2]))))
        if rng.random() < fraud_rate * len(everyone) / 20:
            plan_fraud(h)
        planned += [p for ph, p in pending if ph == h]
        pending[:] = [(ph, p) for ph, p in pending if ph > h]

        block_events: list[TxEvent] = []
        in_block: dict[bytes, int] = {}
        for p in planned:
            bal = balances.get((p.sender, p.token), 0.0)
            amount = p.amount if p.amount >= 0 else -p.amount * bal
            amount = min(amount, bal)
            if amount <= 0:
                continue
            fee = base_fee * p.fee_mult * float(rng.uniform(0.9, 1.1))
            ev = TxEvent(
                sender=p.sender, receiver=p.receiver, token=p.token, amount=amount, fee=fee, height=h,
                is_swap=bool(p.swap), trade_key=p.swap,
                reverse_key=(p.swap[:-1] + str(1 - int(p.swap[-1]))) if p.swap else "",
                pool_impact=p.impact,
            )
            rows.append(extract(ev, bal, in_block.get(p.sender, 0), store))
            fraud = p.pattern not in ("normal", "mule_in")
            ys.append(int(fraud))
            pats.append(p.pattern if fraud else "normal")
            amounts.append(amount)
            in_block[p.sender] = in_block.get(p.sender, 0) + 1
            balances[(p.sender, p.token)] = bal - amount
            if not p.swap:
                balances[(p.receiver, p.token)] = balances.get((p.receiver, p.token), 0.0) + amount
            block_events.append(ev)
        for ev in block_events:
            store.observe(ev)
        store.touch_height(h)
    x = np.vstack(rows).astype(np.float32) if rows else np.zeros((0, N_FEATURES), np.float32)
    return Dataset(x, np.array(ys, dtype=np.int8), np.array(pats), np.array(amounts, dtype=np.float64))
