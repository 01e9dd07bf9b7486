"""The node side of the risk hook: chain types → features → decisions.

``RiskHook`` owns the incremental history (fed by ``observe_block`` on each
commit and persisted right after it in the node's own LevelDB,
node.risk.history_db), the loaded model and the admission policy.  It is local policy
only: nothing here is consulted when a block is validated or executed.

Only transfers and swaps (single- and multi-hop) are scored: the model is
trained on them.  Other kinds (token create/mint, pool deposits and
withdrawals, rewards, batches, staking, and contract deploys and calls) are
admitted unscored and left out of the history.  For contracts that is a
decision, not an oversight: a call's effect (what the code transfers) is
known only once it runs, and scoring its attached tokens as a transfer to
the contract would feed the model rows unlike any it was trained on (every
contract is a "new counterparty" once), refusing ordinary calls as drains.
The cost: tokens attached to a contract are not screened.

Fallback policy when no model is configured (``[risk] model_dir = ""``):

* ``fallback = "admit"`` (default): every transaction is admitted unscored;
  ``qenex_riskScore`` answers error -32021.
* ``fallback = "rules"``: the rule baseline — a transfer of more than 90 %
  of the sender's balance to a receiver it never paid is admitted and
  flagged for review; nothing is refused.

With a model, the rules of node.risk.policy sit on top of it: an account
drain (90 % of the balance moved by this transaction and the pending ones, to
a new receiver) is flagged for review whatever the model scores, and a
drain with a second takeover signal (a fresh address paid besides this one,
an earlier part of a split, a burst, a collecting receiver, a long quiet
spell) is refused.  The decision is the stricter of the model's and the
rules'; the assessment's ``rule`` names the rule that matched, and when it
raised the model's decision its evidence (features with their values,
``contribution`` None) leads ``top_features``.  A screen whose verdict on an account drain flips with
one block of the sender's age (the live test saw 0.77 and 0.45 for the same
drain) is not one a fraud team can rely on; rules plus a model is how they
run.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from node.risk import policy
from node.risk.features import (FEATURE_NAMES, NEW_COUNTERPARTY_FEATURE, NO_PENDING, UNSEEN_FEATURE, Pending,
                                extract)
from node.risk.history import HistoryStore, TxEvent
from node.risk.history_db import HistoryDB, HistoryDBError
from node.risk.model import RiskModel
from node.risk.store import ModelStore
from state.amounts import QNX, QNX_DECIMALS
from state.blocks import Block
from state.payloads import Transfer
from state.transactions import SignedTransaction

log = logging.getLogger("qenex.risk")

FEATURE_CACHE = 16_384  # feature rows by transaction hash: more than the mempool holds (about 4 MiB)
# What the hook remembers of the transactions it admitted and that are not
# committed yet (features pending_to_unseen, drained_share,
# prior_new_outflow_share, fresh_others_10): per sender, nonce -> (pays a
# never-seen address, pays a receiver the sender never paid, token, amount,
# receiver), at most
# PENDING_PER_SENDER nonces for each of at most PENDING_SENDERS senders
# (least recently scored dropped first).
PENDING_PER_SENDER = 64
PENDING_SENDERS = 20_000
ACCOUNT_CACHE = 20_000  # committed accounts read at the current height (cleared when it moves)
FUNDED_POINT_READS = 16  # up to this many tokens besides QNX, a receiver's balances are point reads
REPLAY_BLOCKS = 5_000  # most blocks replayed at start-up (no stored history, or behind it)
RISK_HISTORY_DIR = "risk-history"  # under HOME/data
FALLBACKS = ("admit", "rules")
_BALANCE_SHARE = FEATURE_NAMES.index("balance_share")
_NEW_COUNTERPARTY = NEW_COUNTERPARTY_FEATURE


def _is_drain(row: np.ndarray) -> bool:
    """The ``rules`` fallback: more than 90 % of the sender's balance to a receiver it never paid."""
    return bool(row[_BALANCE_SHARE] > 0.9 and row[_NEW_COUNTERPARTY] == 1.0)


@dataclass(frozen=True, slots=True)
class Assessment:
    tx_hash: bytes
    decision: str  # "admit" | "review" | "reject"
    score: float | None
    model_version: int | None
    top_features: list[dict[str, Any]] = field(default_factory=list)
    mlp: float | None = None
    anomaly: float | None = None
    # The node.risk.policy rule that matched ("drain", "drain+probe", ...), None when none did.
    rule: str | None = None

    def to_json(self) -> dict[str, Any]:
        out = {
            "decision": self.decision,
            "score": None if self.score is None else round(self.score, 6),
            "model_version": self.model_version,
            "top_features": self.top_features,
            "mlp": None if self.mlp is None else round(self.mlp, 6),
            "anomaly": None if self.anomaly is None else round(self.anomaly, 6),
        }
        if self.rule is not None:
            out["rule"] = self.rule
        return out


def pool_pseudo_address(pool: str) -> bytes:
    """The receiver a swap is recorded against in the history (not a chain address)."""
    return hashlib.sha256(b"QENEX-RISK/pool/" + pool.encode()).digest()[:20]


class RiskHook:
    def __init__(self, store: ModelStore | None, model: RiskModel | None, *, review: float, reject: float,
                 fallback: str = "admit") -> None:
        self.store = store
        self.model = model
        self.review = review
        self.reject = reject
        # Told (decisions, seconds) after every assess (node.metrics); None: nobody listens.
        self.observer: Callable[[list[str], float], None] | None = None
        self.fallback = fallback
        self.history = HistoryStore()
        self.history_db: HistoryDB | None = None
        self.startup: dict[str, Any] = {}  # how attach recovered the history (loaded, replayed, seconds)
        self._app: Any = None
        self._decimals: dict[str, int] = {"QNX": QNX_DECIMALS}
        self._tokens: tuple[int, list[str]] = (-1, [])  # (height, symbols other than QNX): see _funded
        self._features: OrderedDict[bytes, np.ndarray] = OrderedDict()
        # sender -> nonce -> (pays a never-seen address, pays a receiver it never paid, token, whole units, receiver)
        self._pending: OrderedDict[bytes, dict[int, tuple[bool, bool, str, float, bytes]]] = OrderedDict()
        self._accounts: dict[bytes, Any] = {}
        self._accounts_height = -1

    @classmethod
    def from_config(cls, section: Any, base: Path) -> "RiskHook":
        """Load the model the ``[risk]`` section names; raises RiskModelError if it is unusable."""
        store = model = None
        if section.model_dir:
            directory = Path(section.model_dir)
            store = ModelStore(directory if directory.is_absolute() else base / directory)
            model = store.load()
        return cls(store, model, review=section.review_threshold, reject=section.reject_threshold,
                   fallback=section.fallback)

    # -- chain → events ------------------------------------------------------

    def attach(self, app: Any, history_path: Path | None = None) -> None:
        """Bind to the application and recover the history.

        With ``history_path`` (the node: ``HOME/data/risk-history``) the
        stored history is loaded and only blocks committed after its height
        are replayed (at most REPLAY_BLOCKS); a damaged or foreign store, or
        one ahead of the chain (restored state), is cleared and rebuilt from
        the last REPLAY_BLOCKS blocks.  Without it (tests, tools) the history
        is rebuilt from those blocks as before.  Local policy: a store that
        cannot be opened at all is logged and the node runs without it.
        """
        import time

        started = time.perf_counter()
        self._app = app
        loaded_height = 0
        if history_path is not None:
            try:
                self.history_db = HistoryDB(history_path)
            except Exception as exc:
                log.warning("risk history store %s cannot be opened (%s): history kept in memory only",
                            history_path, exc)
            if self.history_db is not None:
                try:
                    stored = self.history_db.stored_height()
                    if stored is not None and stored > app.height:
                        raise HistoryDBError(f"it is at height {stored}, ahead of the chain at {app.height}")
                    loaded_height = self.history_db.load(self.history)
                except Exception as exc:
                    log.warning("risk history store %s is unusable (%s): rebuilding it from recent blocks",
                                history_path, exc)
                    self.history = HistoryStore()
                    loaded_height = 0
                    self.history_db.clear()
        first = max(loaded_height + 1, app.height - REPLAY_BLOCKS + 1, 1)
        replayed = 0
        for height in range(first, app.height + 1):
            block = app.get_block(height)
            if block is not None:
                self._fold(block)
                replayed += 1
        if self.history_db is not None and replayed:
            self.history_db.flush(self.history)
        self.startup = {"loaded_height": loaded_height, "accounts": len(self.history.accounts),
                        "replayed_blocks": replayed, "seconds": round(time.perf_counter() - started, 4)}
        log.info("risk history: %d accounts loaded to height %d, %d blocks replayed, %.3f s",
                 len(self.history.accounts), loaded_height, replayed, self.startup["seconds"])

    def close(self) -> None:
        if self.history_db is not None:
            self.history_db.close()
            self.history_db = None

    def _decimals_of(self, token: str) -> int:
        if token not in self._decimals:
            info = self._app.token(token) if self._app is not None else None
            self._decimals[token] = info.decimals if info is not None else QNX_DECIMALS
        return self._decimals[token]

    def _pool_impact(self, pool: str, token_in: str, amount_in: int) -> float:
        # Committed reserves from Application.pool (issue #3); an unknown pool
        # (or an application without pools) gives 0, as features.py documents.
        getter = getattr(self._app, "pool", None)
        if getter is None:
            return 0.0
        try:
            reserve_in, _ = getter(pool).reserves_for(token_in)
            return amount_in / (reserve_in + amount_in) if reserve_in + amount_in else 0.0
        except Exception:
            return 0.0

    def _cached(self, key: Any, read: Callable[[], Any]) -> Any:
        """``read()`` once per height and key: a sender's run, a popular receiver, a gossip batch."""
        app = self._app
        if self._accounts_height != app.height or len(self._accounts) >= ACCOUNT_CACHE:
            self._accounts.clear()
            self._accounts_height = app.height
        value = self._accounts.get(key)
        if value is None:
            value = self._accounts[key] = read()
        return value

    def _sender_state(self, address: bytes, token: str) -> tuple[int, int]:
        """The committed (nonce, balance of ``token``) of a sender: two point reads, not the account's
        balance scan (the account read was a third of a feature row's cost)."""
        return self._cached((address, token), lambda: (self._app.nonce(address), self._app.balance(address, token)))

    def _funded(self, address: bytes) -> bool:
        """Does the chain know ``address`` (a nonce, or a balance of any token)?  Point reads of the
        nonce and of each token's balance while the chain has few tokens: a LevelDB prefix scan of the
        account costs 10-15 µs, most of a never-seen receiver's extra cost."""
        def read() -> bool:
            app = self._app
            if app.nonce(address) or app.balance(address, QNX):
                return True
            if self._tokens[0] != app.height:  # the chain's other tokens, read once per height
                self._tokens = (app.height, [t.symbol for t in app.tokens() if t.symbol != QNX])
            others = self._tokens[1]
            if len(others) > FUNDED_POINT_READS:
                account = app.account(address)
                return bool(account.balances)
            return any(app.balance(address, symbol) for symbol in others)
        return self._cached(("funded", address), read)

    def event(self, stx: SignedTransaction, height: int, *, receiver_funded: bool = False) -> TxEvent | None:
        """The history event of a value-moving transaction (transfer, swap); None for other kinds."""
        tx = stx.tx
        p = tx.payload
        fee = tx.fee / 10**QNX_DECIMALS
        path = getattr(p, "path", None)
        if isinstance(p, Transfer):
            return TxEvent(tx.sender, p.to, p.token, p.amount / 10 ** self._decimals_of(p.token), fee, height,
                           receiver_funded=receiver_funded)
        if path is not None and hasattr(p, "amount_in"):
            token_in, token_out = path[0], path[1]
            pool = "/".join(sorted((token_in, token_out)))
            direction = 0 if token_in < token_out else 1
            return TxEvent(
                tx.sender, pool_pseudo_address(pool), token_in, p.amount_in / 10 ** self._decimals_of(token_in), fee,
                height, is_swap=True, trade_key=f"{pool}:{direction}", reverse_key=f"{pool}:{1 - direction}",
                pool_impact=self._pool_impact(pool, token_in, p.amount_in),
                receiver_funded=True,  # a pool is never a never-seen address (as node.risk.synth has it)
            )
        # Token create/mint, pool deposits and withdrawals, rewards, batches, staking, contracts:
        # the model was trained on transfers and swaps only, so these are
        # neither scored nor folded into the history (the module docstring says why for contracts).
        return None

    def features(self, stx: SignedTransaction, *, cache: bool = True) -> np.ndarray | None:
        """The feature row of a transfer or swap (cached by hash); None for unscored kinds.

        ``cache=False`` (score queries): computed afresh and not kept, so a
        query made before the sender's earlier transactions were admitted
        does not stand in for the row admission computes later.
        """
        cached = self._features.get(stx.hash) if cache else None
        if cached is not None:
            return cached
        assert self._app is not None
        height = self._app.height + 1
        payload = stx.tx.payload
        funded = False
        if isinstance(payload, Transfer) and self.history.get(payload.to) is None:
            # never in the history: is it at least an account the chain knows (genesis-funded, say)?
            funded = self._funded(payload.to)
        ev = self.event(stx, height, receiver_funded=funded)
        if ev is None:
            return None
        nonce, units = self._sender_state(stx.tx.sender, ev.token)
        balance = units / 10 ** self._decimals_of(ev.token)
        pending = max(0, stx.tx.nonce - nonce)
        known = self._pending_summary(stx.tx.sender, nonce, stx.tx.nonce, ev.token) if pending else NO_PENDING
        row = extract(ev, balance, pending, self.history, known)
        if cache:
            self._features[stx.hash] = row
            if len(self._features) > FEATURE_CACHE:
                self._features.popitem(last=False)
        return row

    def _pending_summary(self, sender: bytes, committed: int, nonce: int, token: str) -> Pending:
        """Of ``sender``'s admitted, uncommitted nonces in [committed, nonce): how many pay a never-seen
        address and which, how much of ``token`` they move, and how much of it to receivers it never paid."""
        known = self._pending.get(sender)
        if not known:
            return NO_PENDING
        unseen, outflow, new_outflow = 0, 0.0, 0.0
        receivers: set[bytes] = set()
        for n, (to_unseen, to_new, moved_token, amount, receiver) in known.items():
            if committed <= n < nonce:
                if to_unseen:
                    unseen += 1
                    receivers.add(receiver)
                if moved_token == token:
                    outflow += amount
                    if to_new:
                        new_outflow += amount
        return Pending(unseen, outflow, new_outflow, frozenset(receivers))

    def _moved(self, stx: SignedTransaction) -> tuple[str, float, bytes]:
        """(token, whole units, receiver) of what a scored transaction takes from its sender."""
        p = stx.tx.payload
        if isinstance(p, Transfer):
            return p.token, p.amount / 10 ** self._decimals_of(p.token), p.to
        token = p.path[0]  # a swap (features() scores nothing else)
        pool = "/".join(sorted((p.path[0], p.path[1])))
        return token, p.amount_in / 10 ** self._decimals_of(token), pool_pseudo_address(pool)

    def _remember_pending(self, stx: SignedTransaction, row: np.ndarray) -> None:
        sender = stx.tx.sender
        known = self._pending.pop(sender, None) or {}
        self._pending[sender] = known  # most recently scored last
        known[stx.tx.nonce] = (bool(row[UNSEEN_FEATURE]), bool(row[NEW_COUNTERPARTY_FEATURE]), *self._moved(stx))
        if len(known) > PENDING_PER_SENDER:
            del known[min(known)]
        if len(self._pending) > PENDING_SENDERS:
            self._pending.popitem(last=False)

    def _forget_pending(self, stx: SignedTransaction) -> None:
        known = self._pending.get(stx.tx.sender)
        if known is not None:
            known.pop(stx.tx.nonce, None)

    def _fold(self, block: Block) -> bool:
        height = block.header.height
        for stx in block.txs:  # committed: no longer pending
            known = self._pending.get(stx.tx.sender)
            if known:
                for n in [n for n in known if n <= stx.tx.nonce]:
                    del known[n]
                if not known:
                    del self._pending[stx.tx.sender]
        if height <= self.history.height:
            return False  # replayed commit: already folded in
        fresh = self._fresh_receivers(block)
        for stx in block.txs:
            p = stx.tx.payload
            ev = self.event(stx, height, receiver_funded=not (isinstance(p, Transfer) and p.to in fresh))
            if ev is not None:
                self.history.observe(ev)
        self.history.touch_height(height)
        return True

    def _fresh_receivers(self, block: Block) -> set[bytes]:
        """The block's transfer receivers that were never-seen addresses before it: no history here, and
        their committed account now holds exactly what the block paid them and has sent nothing.

        (Right after the commit that is "had no account before the block"; when an older block is
        replayed at start-up the account has usually moved on since, and the receiver counts as funded.)
        """
        paid: dict[bytes, dict[str, int]] = {}
        for stx in block.txs:
            p = stx.tx.payload
            if isinstance(p, Transfer) and self.history.get(p.to) is None:
                tokens = paid.setdefault(p.to, {})
                tokens[p.token] = tokens.get(p.token, 0) + p.amount
        fresh = set()
        for address, tokens in paid.items():
            account = self._app.account(address)
            if account.nonce == 0 and account.balances == {t: a for t, a in tokens.items() if a}:
                fresh.add(address)
        return fresh

    def observe_block(self, block: Block) -> None:
        """Fold a committed block into the history and persist what it changed (right after the commit)."""
        if self._fold(block) and self.history_db is not None:
            self.history_db.flush(self.history)

    # -- decisions -----------------------------------------------------------

    def assess(self, stxs: Sequence[SignedTransaction], *, admitting: bool = True) -> list[Assessment]:
        """Score a batch in one forward pass; decide admit / review / reject for each.

        ``admitting`` (admission's call): the ones not refused are remembered
        as pending for their sender's later nonces (pending_to_unseen); a
        score query (``explain``) passes False and leaves no trace.
        """
        started = time.perf_counter() if self.observer is not None else 0.0
        rows = []
        for stx in stxs:  # one at a time: a sender's run in one batch sees its earlier members as pending
            row = self.features(stx, cache=admitting)
            rows.append(row)
            if admitting and row is not None:
                self._remember_pending(stx, row)
        out = self._assess(stxs, rows)
        if admitting:
            for stx, a in zip(stxs, out):
                if a.decision == "reject":
                    self._forget_pending(stx)
        if self.observer is not None:
            self.observer([a.decision for a in out], time.perf_counter() - started)
        return out

    def _assess(self, stxs: Sequence[SignedTransaction], rows: list[np.ndarray | None]) -> list[Assessment]:
        scored = [i for i, row in enumerate(rows) if row is not None]
        out: list[Assessment] = [None] * len(stxs)  # type: ignore[list-item]
        for i, row in enumerate(rows):
            if row is None:
                out[i] = Assessment(stxs[i].hash, "admit", None, None)  # unscored kinds: admitted
        if not scored:
            return out
        if self.model is None:
            for i in scored:
                out[i] = self._fallback(stxs[i], rows[i])  # type: ignore[arg-type]
            return out
        if len(scored) == 1:  # an RPC submission: the single-row path (no batch arrays)
            parts = [self.model.score_one(rows[scored[0]])]  # type: ignore[arg-type]
        else:
            combined, p, a = self.model.score_parts(np.vstack([rows[i] for i in scored]))
            parts = list(zip(combined.tolist(), p.tolist(), a.tolist()))
        for i, (score, p_i, a_i) in zip(scored, parts):
            model_decision = "reject" if score > self.reject else "review" if score > self.review else "admit"
            hit = policy.check(rows[i])  # type: ignore[arg-type]  (None unless a drain: most rows, one test)
            decision = policy.stricter(model_decision, hit)
            top = (self.model.top_features(rows[i], parts=(p_i, a_i))  # type: ignore[arg-type]
                   if decision != "admit" else [])
            if hit is not None and decision != model_decision:
                top = [dict(e) for e in hit.evidence] + top  # the rule decided: its evidence first
            out[i] = Assessment(stxs[i].hash, decision, score, self.model.version, top, p_i, a_i,
                                rule=None if hit is None else hit.name)
        return out

    def explain(self, stx: SignedTransaction) -> tuple[Assessment, np.ndarray | None]:
        assessment = self.assess([stx], admitting=False)[0]
        row = self.features(stx, cache=False)
        if self.model is not None and row is not None and not assessment.top_features:
            assessment = Assessment(assessment.tx_hash, assessment.decision, assessment.score,
                                    assessment.model_version, self.model.top_features(row),
                                    assessment.mlp, assessment.anomaly, assessment.rule)
        return assessment, row

    def _fallback(self, stx: SignedTransaction, row: np.ndarray) -> Assessment:
        if self.fallback == "rules" and _is_drain(row):
            top = [{"feature": "balance_share", "value": round(float(row[_BALANCE_SHARE]), 4), "contribution": None},
                   {"feature": "new_counterparty", "value": 1.0, "contribution": None}]
            return Assessment(stx.hash, "review", None, None, top)
        return Assessment(stx.hash, "admit", None, None)

    # -- online learning -----------------------------------------------------

    def train_feedback(self, rows: np.ndarray, labels: np.ndarray, *, steps: int = 30,
                       lr: float = 0.05) -> tuple[RiskModel, int]:
        """SGD steps on labelled rows, saved as a new version; returns (model, version) without switching.

        Reads the current model and writes files only: safe to run in a
        worker thread while the loop keeps scoring with the current model.
        """
        if self.model is None or self.store is None:
            raise ValueError("no risk model is loaded: nothing to update")
        base = self.model
        updated = copy.deepcopy(base)
        xs = updated.standardise(np.atleast_2d(rows))
        y = np.asarray(labels, dtype=np.float32)
        for _ in range(steps):
            updated.mlp.sgd_step(xs, y, lr)
        updated.weights_changed()
        feedback_log = list(updated.meta.get("feedback", []))[-99:]
        feedback_log.append({"samples": int(len(y)), "positives": int(y.sum()), "steps": steps, "lr": lr,
                             "from_version": base.version})
        updated.meta["feedback"] = feedback_log
        version = self.store.save_new(updated, parent=base.version)
        return updated, version

    def feedback(self, rows: np.ndarray, labels: np.ndarray, *, steps: int = 30, lr: float = 0.05) -> int:
        """train_feedback, then switch to the new version.  Returns the version."""
        previous = self.model.version if self.model is not None else None
        updated, version = self.train_feedback(rows, labels, steps=steps, lr=lr)
        self.model = updated
        log.info("risk model updated from feedback: version %s -> %d", previous, version)
        return version

    def switch_to(self, version: int) -> int:
        if self.store is None:
            raise ValueError("no risk model directory is configured")
        model = self.store.load(version)
        self.store.set_current(version)
        self.model = model
        return version

    def rollback(self) -> int:
        if self.store is None:
            raise ValueError("no risk model directory is configured")
        version = self.store.rollback()
        self.model = self.store.load(version)
        return version


__all__ = ["RiskHook", "Assessment", "FEATURE_NAMES", "FALLBACKS", "RISK_HISTORY_DIR", "pool_pseudo_address"]
