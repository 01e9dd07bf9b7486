"""The risk hook's fixed-length feature vector (schema 4: 35 numbers).

One row per transaction, computed from the transaction (a ``TxEvent``), the
sender's committed balance of the token, how many of the sender's
transactions are already pending (and, of those, which never-seen
addresses they pay and how much of the token they move, to new receivers
and in all: ``Pending``), and the incremental ``HistoryStore``.
``height`` is the height the transaction would land at (head + 1).  What a
takeover, a mule or wash trading looks like *whatever the fee*: the share of
the balance, the counterparty's novelty, the receiver's age and fan-in, the
velocity against the sender's own baseline, the amount against its history,
the quiet time before it, round trips.

==  =======================  ==========================================================
 #  name                     meaning
==  =======================  ==========================================================
 0  amount_log               log10(1 + amount in whole units)
 1  balance_share            amount / committed balance of that token, clipped to [0, 1]
 2  amount_vs_mean           log10 of amount over the sender's mean past amount, [-5, 5]; 0 if none
 3  amount_zscore            z-score of log amount against the sender's past, [-5, 5]; 0 if < 3 sends
 4  amount_vs_max            log10 of amount over the sender's largest past amount, [-5, 5]; 0 if none
 5  sender_age_log           log10(1 + blocks since the sender first appeared); 0 if new
 6  sender_sent_log          log10(1 + transactions the sender has sent)
 7  velocity_10              log10(1 + sends in the last 10 blocks + pending ones)
 8  velocity_100             log10(1 + sends in the last 100 blocks + pending ones)
 9  velocity_vs_baseline     log10 of (1 + sends in the last 10 blocks + pending) over
                             (1 + what the sender's lifetime rate predicts for 10 blocks), [-3, 3]
10  burstiness               (σ-μ)/(σ+μ) of the gaps between recent sends, [-1, 1]; 0 if < 3
11  idle_log                 log10(1 + blocks since the sender's last send); 0 if never sent
12  idle_vs_habit            log10 of (1 + blocks since the last send) over (1 + the sender's mean
                             gap between sends), [-3, 3]; 0 if < 2 sends
13  new_counterparty         1 if the sender never sent to this receiver before
14  new_receivers_recent     share of the sender's recent sends that went to a first-time receiver
15  fanout_100               log10(1 + distinct receivers the sender paid in the last 100 blocks)
16  receiver_fanin_100       log10(1 + distinct senders that paid the receiver in the last 100 blocks)
17  receiver_is_new          1 if the receiver has no history here
18  receiver_unfunded        1 if the receiver has no history and no committed account (never seen)
19  receiver_age_log         log10(1 + blocks since the receiver first appeared); 0 if new
20  round_trip               1 if the receiver paid the sender in the last 100 blocks, or (swaps)
                             the sender made the opposite trade on this pool in the last 100 blocks
21  passthrough              (amount + what the sender sent in the last 20 blocks) / what it received
                             in the last 20 blocks, [0, 2]; 0 if it received nothing
22  token_native             1 if the token is QNX
23  is_swap                  1 for swaps (pool trades)
24  pool_price_impact        swaps: amount_in / (committed reserve_in + amount_in) of the first hop's
                             pool (Application.pool); 0 for transfers and unknown pools
25  fee_vs_median            log10 of the fee over the median fee of recent committed txs, [-3, 3]
26  pending_log              log10(1 + the sender's transactions already pending)
27  pending_vs_peak          log10 of (1 + pending) over the most the sender ever sent in one block
                             (at least 1), [-3, 3]: a payroll run is its habit, a takeover burst is not
28  pending_to_unseen        log10(1 + the sender's pending transactions that pay a never-seen address
                             (feature 18 of their own rows)): a takeover's quick probes and bursts go
                             to fresh addresses before they commit; payroll and exchange runs do not
29  drained_share            (amount + what the sender's pending transactions move of this token) /
                             committed balance, clipped to [0, 1]: a drain split over several
                             transactions, or fanned out to several addresses, before any commits
30  balance_log              log10(1 + the sender's committed balance of the token, whole units): a
                             dust prober holds little; a benchmark's genesis-funded sender holds a lot
31  prior_new_outflow_share  what the sender's pending transactions and its sends of the last 100
                             blocks moved of the token to receivers it had never paid (pending ones:
                             feature 13 of their own rows), over what it held 100 blocks ago
                             (committed balance + its sends of the token in the window; inflows left
                             out), [0, 1]: how much of the balance already left for new receivers
                             before this transaction: the earlier legs of a split or a fan-out, even
                             once they have committed
32  fresh_others_10          log10(1 + distinct addresses other than this receiver that the sender paid
                             in the last 10 blocks while they had no history, or pays in pending
                             transactions while never seen): probes and fan-out legs, committed or not;
                             an owner's test payment to the wallet it then fills is not counted
33  receiver_senders_log     log10(1 + distinct senders that ever paid the receiver, up to 256 kept)
34  receiver_sent_log        log10(1 + transactions the receiver ever sent): an address that collects
                             from several senders and never pays anyone is a collector
==  =======================  ==========================================================

The schema hash (names + version) is stored in every model file; a node
refuses a model trained on another schema.
"""

from __future__ import annotations

import hashlib
import json
import math
from bisect import bisect_right
from itertools import compress, islice
from operator import mul, sub
from dataclasses import dataclass

import numpy as np

from node.risk.history import AccountHistory, HistoryStore, TxEvent

FEATURE_SCHEMA_VERSION = 4
FEATURE_NAMES: tuple[str, ...] = (
    "amount_log",
    "balance_share",
    "amount_vs_mean",
    "amount_zscore",
    "amount_vs_max",
    "sender_age_log",
    "sender_sent_log",
    "velocity_10",
    "velocity_100",
    "velocity_vs_baseline",
    "burstiness",
    "idle_log",
    "idle_vs_habit",
    "new_counterparty",
    "new_receivers_recent",
    "fanout_100",
    "receiver_fanin_100",
    "receiver_is_new",
    "receiver_unfunded",
    "receiver_age_log",
    "round_trip",
    "passthrough",
    "token_native",
    "is_swap",
    "pool_price_impact",
    "fee_vs_median",
    "pending_log",
    "pending_vs_peak",
    "pending_to_unseen",
    "drained_share",
    "balance_log",
    "prior_new_outflow_share",
    "fresh_others_10",
    "receiver_senders_log",
    "receiver_sent_log",
)
N_FEATURES = len(FEATURE_NAMES)
FEE_FEATURE = FEATURE_NAMES.index("fee_vs_median")
assert N_FEATURES == 35
UNSEEN_FEATURE = FEATURE_NAMES.index("receiver_unfunded")
NEW_COUNTERPARTY_FEATURE = FEATURE_NAMES.index("new_counterparty")
WINDOW = 100  # blocks: the outflow window of feature 31
FRESH_WINDOW = 10  # blocks: the fresh-receiver window of feature 32


def schema_hash() -> str:
    text = json.dumps({"version": FEATURE_SCHEMA_VERSION, "names": FEATURE_NAMES})
    return hashlib.sha256(text.encode()).hexdigest()


def _clip(x: float, lo: float, hi: float) -> float:
    return lo if x < lo else hi if x > hi else x


def _log1p10(x: float) -> float:
    return math.log10(1.0 + max(x, 0.0))


def _burstiness(heights: list[int]) -> float:
    if len(heights) < 3:
        return 0.0
    gaps = list(map(sub, heights[1:], heights[:-1]))  # integers: the sums below are exact
    n = len(gaps)
    mu = sum(gaps) / n
    sigma = math.sqrt(max(sum(map(mul, gaps, gaps)) / n - mu * mu, 0.0))
    return 0.0 if sigma + mu == 0 else (sigma - mu) / (sigma + mu)


def _recent_distinct(table: dict[bytes, int], since: int, memo: dict[str, tuple[int, int, object, int]],
                     which: str) -> int:
    """How many entries of ``table`` (counterparty -> last height, in recency order) are at ``since``
    or later.  Memoised per table in ``memo``, which HistoryStore.observe clears when it changes the
    table; (since, size, newest entry) is checked too, for a table changed by other code."""
    if not table:
        return 0
    newest = next(reversed(table.items()))
    seen = memo.get(which)
    if seen is not None and seen[0] == since and seen[1] == len(table) and seen[2] == newest:
        return seen[3]
    count = 0
    for h in reversed(table.values()):  # insertion order = recency
        if h < since:
            break
        count += 1
    memo[which] = (since, len(table), newest, count)
    return count


@dataclass(frozen=True, slots=True)
class Pending:
    """What is known of the sender's pending transactions beyond their count.

    ``unseen``: how many pay a never-seen address (at most the count);
    ``outflow``: how much of the scored transaction's token they move, in
    whole units; ``new_outflow``: the part of it paid to receivers the
    sender had never paid (their own feature 13); ``unseen_receivers``:
    the never-seen addresses they pay.
    """

    unseen: int = 0
    outflow: float = 0.0
    new_outflow: float = 0.0
    unseen_receivers: frozenset[bytes] = frozenset()


NO_PENDING = Pending()


def extract(ev: TxEvent, balance: float, pending: int, store: HistoryStore,
            known: Pending = NO_PENDING) -> np.ndarray:
    """The feature row of ``ev`` (float32, length N_FEATURES).

    Admission's hot path (one call per scored transaction): each history
    deque is walked once, newest first, and only as far back as a window
    needs.
    """
    s: AccountHistory | None = store.get(ev.sender)
    r: AccountHistory | None = store.get(ev.receiver)
    h = ev.height
    amount = ev.amount
    log10 = math.log10
    la = log10(1.0 + amount)
    f = [0.0] * N_FEATURES
    f[0] = la
    f[1] = _clip(amount / balance, 0.0, 1.0) if balance > 0 else 1.0
    recent10 = pending
    window_out = window_new = 0.0
    fresh: set[bytes] = set(known.unseen_receivers)
    if s is not None:
        sent = s.sent
        age = h - s.first_height
        heights = s.sent_heights  # non-decreasing, like every deque of the history
        if sent:
            f[2] = _clip(log10((1.0 + amount) / (1.0 + s.amount_sum / sent)), -5, 5)
            f[4] = _clip(log10((1.0 + amount) / (1.0 + s.max_amount)), -5, 5)
            if sent >= 3:
                mu = s.log_sum / sent
                var = max(s.log_sq / sent - mu * mu, 0.0)
                f[3] = _clip((la - mu) / math.sqrt(var + 0.01), -5, 5)
            n = len(heights)
            n10 = n - bisect_right(heights, h - 10)
            n100 = n - bisect_right(heights, h - 100)
            recent10 = n10 + pending
            f[7] = _log1p10(recent10)
            f[8] = _log1p10(n100 + pending)
            tail = list(islice(reversed(heights), 20))
            tail.reverse()
            tail.append(h)
            f[10] = _burstiness(tail)
            last = heights[-1]
            idle = max(h - last, 0)
            f[11] = _log1p10(idle)
            if sent >= 2:
                habit = max(last - s.first_height, 1) / (sent - 1)
                f[12] = _clip(log10((1.0 + idle) / (1.0 + habit)), -3, 3)
            flags = s.new_flags
            f[14] = sum(flags) / len(flags) if flags else 0.0
            f[15] = _log1p10(_recent_distinct(s.sent_to, h - 100, s.distinct_memo, "sent_to"))
        else:
            f[7] = f[8] = _log1p10(pending)
        f[5] = _log1p10(age)
        f[6] = _log1p10(sent)
        expected = 10.0 * sent / max(age, 10)
        f[9] = _clip(log10((1.0 + recent10) / (1.0 + expected)), -3, 3)
        f[13] = 0.0 if ev.receiver in s.sent_to else 1.0
        if ev.is_swap:
            f[20] = 1.0 if s.trades.get(ev.reverse_key, -10**9) > h - 100 else 0.0
        else:
            f[20] = 1.0 if s.received_from.get(ev.receiver, -10**9) > h - 100 else 0.0
        # What it received in the last 20 blocks; what it sent in the last 20 (every token) and, of
        # this token, in the last WINDOW (to new receivers too): each deque is in height order, so a
        # window is a bisect and a sum in C (a loop only for a sender of several tokens).
        inflow = sum(islice(s.received_amounts, bisect_right(s.received_heights, h - 20), None))
        amounts = s.sent_amounts
        cut = bisect_right(heights, h - WINDOW)
        out20 = amount + sum(islice(amounts, bisect_right(heights, h - 20), None))
        tokens = s.sent_tokens
        token = ev.token
        if tokens.count(token) == len(tokens):  # every recent send in this token
            window_out = sum(islice(amounts, cut, None))
            window_new = sum(compress(islice(amounts, cut, None), islice(s.new_flags, cut, None)))
        else:
            for a, t, new in zip(islice(amounts, cut, None), islice(tokens, cut, None), islice(s.new_flags, cut, None)):
                if t == token:
                    window_out += a
                    if new:
                        window_new += a
        f[21] = _clip(out20 / inflow, 0.0, 2.0) if inflow > 0 else 0.0
        since = h - FRESH_WINDOW
        for hh, receiver in reversed(s.fresh_sent):
            if hh <= since:
                break
            fresh.add(receiver)
    else:
        f[7] = f[8] = _log1p10(pending)
        f[9] = _clip(log10(1.0 + pending), -3, 3)
        f[13] = 1.0
    if r is not None:
        f[16] = _log1p10(_recent_distinct(r.received_from, h - 100, r.distinct_memo, "received_from"))
        f[19] = _log1p10(h - r.first_height)
        f[33] = _log1p10(len(r.received_from))
        f[34] = _log1p10(r.sent)
    else:
        f[17] = 1.0
        f[18] = 0.0 if ev.receiver_funded else 1.0
    f[22] = 1.0 if ev.token == "QNX" else 0.0
    f[23] = 1.0 if ev.is_swap else 0.0
    f[24] = _clip(ev.pool_impact, 0.0, 1.0)
    median = store.fee_median()
    # Relative only: real fees are ~1e-14 QNX, so no absolute epsilon here.
    f[25] = _clip(log10(max(ev.fee, median * 1e-3) / median), -3, 3) if median > 0 else 0.0
    f[26] = _log1p10(pending)
    peak = s.peak_block_sends if s is not None else 0
    f[27] = _clip(log10((1.0 + pending) / max(peak, 1)), -3, 3)
    f[28] = _log1p10(min(known.unseen, pending))
    drained = amount + known.outflow
    f[29] = _clip(drained / balance, 0.0, 1.0) if balance > 0 else 1.0
    f[30] = _log1p10(balance)
    held = balance + window_out
    f[31] = _clip((known.new_outflow + window_new) / held, 0.0, 1.0) if held > 0 else 0.0
    fresh.discard(ev.receiver)
    f[32] = _log1p10(len(fresh))
    return np.array(f, dtype=np.float32)
