"""Admission: the one way a transaction enters the mempool, for RPC submissions and gossip batches alike.

The steps, in order (DESIGN.md), each run over the whole batch before the
next (a gossip frame is a batch; an RPC submission is a batch of one):

0. a full pool's refusal that needs only the raw length
   (pending and queued both full, or it can never fit)      ``Mempool.refuse_early``
1. decode, bounded: the length before anything is decoded   ``txcheck.decode_tx``
2. chain id and size                                        ``txcheck.check_envelope``
3. the pool's free refusals: already pending, or full with
   nothing pending cheaper (before paying for a signature)  ``Mempool.precheck``
4. signature                                                ``txcheck.check_signature``
5. what block inclusion checks without state (the kind
   exists on this chain, a contract's gas limit, the
   minimum fee: state.execution.check_stateless), nonce,
   per-account limit and balance against
   pending state; a batch's earlier candidates count as
   pending (a sender's run arrives in one batch); a future
   nonce is a queued candidate, a pending or queued nonce
   a replacement                                            ``Mempool.check`` + ``Draft``
6. risk: every survivor in one scoring pass                 ``RiskHook.assess``
7. insert, evicting cheaper tails to make room; queued
   ones that now continue their sender's run are promoted   ``Mempool.insert``
8. relay: queue the bytes for our own gossip (policy); a
   queued transaction is not relayed until it is promoted,
   and a promoted one is relayed whatever the source
   unless it came in this same batch (gossipsub relays the
   frame)

Risk comes before the insert: a transaction the hook refuses never enters
the pool, never evicts anything and is not flagged; a "review" is flagged
once it is in.  The hook scores a candidate from committed state and its own
nonce (pending = nonce - committed nonce), so scored before the insert it
gets the features it got when it was scored after.  A hook that raises
admits the batch unscored, with a log line: local policy never halts the node.

The two sources differ only in their ``SourcePolicy``, which is data: what a
refusal of each kind costs the peer that sent it, and whether an admitted
transaction is queued for our own gossip.  ``submit`` (RPC) raises the
refusal itself.  Gossip-admitted transactions are not queued: gossipsub
relays the frame the p2p thread's ``TxBatchValidator`` accepted, and that
validator runs the same stateless functions (``node/txcheck.py``).

Room for issue 12 stays inside this module and the mempool: the future-nonce
queue is another verdict of ``Mempool.check``; the "mempool full" refusal
before decoding is step 0; fee-prioritised gossip
intake orders a batch's candidates before step 7; batched signature
verification replaces step 4's loop over the batch.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import MappingProxyType
from typing import Any

from node.errors import MempoolError, TxRejected
from node.inbound import PENALTY_GARBAGE, Penalizer, decode_tx_batch, punish
from node.mempool import Candidate, Draft, Mempool
from node.risk.errors import RiskRejected
from node.risk.hook import Assessment, RiskHook
from node.txcheck import check_envelope, check_signature, decode_tx
from state.app import Application
from state.errors import StateError, TxTooLarge
from state.transactions import SignedTransaction

log = logging.getLogger("qenex.admission")

MAX_FLAGGED = 10_000  # risk flags kept for qenex_getMempool / qenex_getTransaction (1-2 KiB each; the oldest go)


@dataclass(frozen=True, slots=True)
class SourcePolicy:
    """What distinguishes one source of transactions from another: nothing but this data."""

    name: str
    # Points charged to the sending peer per refusal kind (``refusal_kind``); a kind not listed costs nothing.
    penalties: Mapping[str, int]
    # Queue an admitted transaction's bytes for our own gossip.
    relay: bool


RPC = SourcePolicy("rpc", penalties=MappingProxyType({}), relay=True)
# A forged signature or another chain's transaction is the sender's fault (the
# p2p validator checks both, so only a peer that skipped it gets here);
# malformed bytes cost a point; fee, nonce, balance, duplicate, a full pool
# and the risk hook's verdict are normal under gossip and cost nothing.
GOSSIP = SourcePolicy(
    "gossip",
    penalties=MappingProxyType(
        {"malformed": 1, "too_large": 1, "WrongChainId": PENALTY_GARBAGE, "BadSignature": PENALTY_GARBAGE}
    ),
    relay=False,
)


def refusal_kind(exc: MempoolError) -> str:
    """A stable name for why a transaction was refused: a TxRejected's ``reason``, else the error's class."""
    reason = exc.data.get("reason") if isinstance(exc, TxRejected) else None
    return reason if isinstance(reason, str) else type(exc).__name__


@dataclass(frozen=True, slots=True)
class Outcome:
    """What admission did with one transaction of a batch."""

    tx_hash: bytes | None  # None if it did not decode
    refusal: MempoolError | None = None
    assessment: Assessment | None = None  # None if refused before scoring, or the hook failed

    @property
    def admitted(self) -> bool:
        return self.refusal is None

    @property
    def kind(self) -> str:
        return "admitted" if self.refusal is None else refusal_kind(self.refusal)


@dataclass(slots=True)
class _Item:
    """One transaction on its way through the steps."""

    raw: object
    stx: SignedTransaction | None = None
    candidate: Candidate | None = None
    assessment: Assessment | None = None
    refusal: MempoolError | None = None


class Admission:
    """Runs the steps for every transaction that enters ``mempool``.

    ``flagged`` is the map of risk flags the RPC shows (written only here,
    bounded by MAX_FLAGGED); ``relay`` queues bytes for our own gossip;
    ``net`` (None: nobody to penalise) is charged for peers' refusals.
    """

    def __init__(self, app: Application, mempool: Mempool, risk: RiskHook | None, *,
                 flagged: dict[bytes, dict[str, Any]], relay: Callable[[bytes], None],
                 net: Penalizer | None = None) -> None:
        self._app = app
        self._mempool = mempool
        self._risk = risk
        self._flagged = flagged
        self._relay = relay
        self._net = net

    # -- the two sources -------------------------------------------------------

    def submit(self, raw: bytes) -> bytes:
        """Admit a locally submitted transaction; returns its hash or raises the MempoolError that refused it
        (TxRejected with its reason, RiskRejected with score and reasons, MempoolFull, ...)."""
        (outcome,) = self.admit([raw], RPC)
        if outcome.refusal is not None:
            raise outcome.refusal
        assert outcome.tx_hash is not None
        return outcome.tx_hash

    def on_gossip_batch(self, peer: str, data: bytes) -> list[Outcome]:
        """Admit a gossip frame ``[1, [tx, ...]]`` from ``peer``, penalising it for what is its fault."""
        try:
            txs = decode_tx_batch(data)  # the p2p thread's validator checked it; cheap to redo
        except Exception as exc:
            if self._net is not None:
                punish(self._net, peer, "bad tx batch", exc)
            return []
        return self.admit(txs, GOSSIP, peer)

    # -- the pipeline ----------------------------------------------------------

    def admit(self, raws: Sequence[object], policy: SourcePolicy, peer: str | None = None) -> list[Outcome]:
        """Run every step over the batch ``raws``, in order; one Outcome per transaction."""
        items = [_Item(raw) for raw in raws]
        steps: tuple[Callable[[_Item], None], ...] = (
            self._refuse_early,
            self._decode,
            self._check_envelope,
            self._precheck_pool,
            self._check_signature,
            partial(self._check_pending, draft=self._mempool.draft()),
        )
        for step in steps:
            for item in items:
                if item.refusal is None:
                    try:
                        step(item)
                    except MempoolError as exc:
                        item.refusal = exc
        self._assess([item for item in items if item.refusal is None])
        for item in items:
            if item.refusal is None:
                self._insert(item, policy)
        batch = {item.stx.hash for item in items if item.stx is not None}
        for stx in self._mempool.take_promoted():
            if stx.hash not in batch or policy.relay:
                self._relay(stx.encode())
        for item in items:
            if item.refusal is not None:
                self._charge(policy, peer, item.refusal)
        return [Outcome(item.stx.hash if item.stx is not None else None, item.refusal, item.assessment)
                for item in items]

    def _refuse_early(self, item: _Item) -> None:
        if isinstance(item.raw, (bytes, bytearray, memoryview)):
            self._mempool.refuse_early(len(item.raw))

    def _decode(self, item: _Item) -> None:
        try:
            item.stx = decode_tx(item.raw, self._app.params.max_tx_bytes)
        except TxTooLarge as exc:
            raise TxRejected(str(exc), reason="too_large") from exc
        except StateError as exc:
            raise TxRejected(f"malformed transaction: {exc}", reason="malformed") from exc

    def _check_envelope(self, item: _Item) -> None:
        assert item.stx is not None
        try:
            check_envelope(item.stx, chain_id=self._app.chain_id, max_tx_bytes=self._app.params.max_tx_bytes)
        except StateError as exc:
            raise TxRejected(str(exc), reason=type(exc).__name__) from exc

    def _precheck_pool(self, item: _Item) -> None:
        assert item.stx is not None
        self._mempool.precheck(item.stx, item.stx.size)

    def _check_signature(self, item: _Item) -> None:
        assert item.stx is not None
        try:
            check_signature(item.stx)
        except StateError as exc:
            raise TxRejected(str(exc), reason=type(exc).__name__) from exc

    def _check_pending(self, item: _Item, *, draft: Draft) -> None:
        assert item.stx is not None
        item.candidate = self._mempool.check(item.stx, item.stx.size, draft)

    def _assess(self, items: list[_Item]) -> None:
        """One scoring pass over the batch's candidates; a reject becomes the item's refusal."""
        if not items or self._risk is None:
            return
        stxs = [item.stx for item in items]
        try:
            assessments = self._risk.assess(stxs)  # type: ignore[arg-type]  (every survivor decoded)
            if len(assessments) != len(items):
                raise RuntimeError(f"the risk hook returned {len(assessments)} assessments for {len(items)} txs")
        except Exception:
            log.exception("risk scoring failed; admitting unscored")  # local policy must not halt the node
            return
        for item, assessment in zip(items, assessments):
            item.assessment = assessment
            if assessment.decision == "reject":
                assert item.candidate is not None
                item.refusal = self._rejection(assessment, self._mempool.needs_room(item.candidate.size))

    def _insert(self, item: _Item, policy: SourcePolicy) -> None:
        assert item.candidate is not None
        try:
            self._mempool.insert(item.candidate)
        except MempoolError as exc:
            item.refusal = exc
            return
        if item.assessment is not None and item.assessment.decision == "review":
            self._flag(item.assessment)
        if policy.relay and item.candidate.stx.hash in self._mempool:  # pending, not queued
            self._relay(item.candidate.stx.encode())

    # -- what refusals and reviews leave behind -----------------------------------

    def _rejection(self, a: Assessment, would_evict: bool) -> RiskRejected:
        reasons = ", ".join(f["feature"] for f in a.top_features) or "overall score"
        threshold = self._risk.reject if self._risk is not None else None
        note = "; it may not evict pending transactions" if would_evict else ""
        score = a.score or 0.0
        if a.rule is not None and (threshold is None or score <= threshold):  # a written rule, not the score
            why = f"rule {a.rule} (score {score:.3f} <= {threshold}; "
        else:
            why = f"score {score:.3f} > {threshold} ("
        extra = {} if a.rule is None else {"rule": a.rule}
        return RiskRejected(
            f"transaction 0x{a.tx_hash.hex()} refused by the risk hook: {why}model v{a.model_version}; "
            f"top features: {reasons}){note}",
            score=round(score, 6),
            threshold=threshold,
            model_version=a.model_version,
            top_features=a.top_features,
            **extra,
        )

    def _flag(self, a: Assessment) -> None:
        self._flagged[a.tx_hash] = a.to_json()
        while len(self._flagged) > MAX_FLAGGED:
            del self._flagged[next(iter(self._flagged))]

    def _charge(self, policy: SourcePolicy, peer: str | None, exc: MempoolError) -> None:
        kind = refusal_kind(exc)
        points = policy.penalties.get(kind, 0)
        if points and peer is not None and self._net is not None:
            self._net.penalize(peer, f"{kind} tx in batch: {exc}", points=points)
