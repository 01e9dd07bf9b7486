"""The evidence pool: proofs of equivocation kept until they can be used.

Like CometBFT's ``evidence/pool.go``: every piece of evidence is verified
against the validator set of its own height before it is kept (the
application keeps past sets readable for this), kept at most once per
(validator, height), bounded in number, and dropped once it is older than
``max_age_heights`` (the chain's ``max_evidence_age``).  ``pending`` lists
what a proposer offers its next block, in a deterministic order (the
application keeps what it may apply, state.slashing); after each commit
``prune`` drops what the chain applied or can no longer apply.  Evidence
new to the pool is relayed to the other validators (node.driver), so the
next proposer has it whoever saw the equivocation.  Nothing here is
consensus state: a pool is a node's own memory.
"""

from __future__ import annotations

import logging
from typing import Callable

from consensus.errors import ConsensusError
from consensus.messages import Evidence
from state.crypto import address_to_text
from state.validators import ValidatorSet

log = logging.getLogger("qenex.evidence")

MAX_EVIDENCE = 10_000
MAX_AGE_HEIGHTS = 100_000  # CometBFT's default max_age_num_blocks


class EvidencePool:
    def __init__(
        self,
        chain_id: str,
        validator_set_at: Callable[[int], ValidatorSet | None],
        *,
        max_items: int = MAX_EVIDENCE,
        max_age_heights: int = MAX_AGE_HEIGHTS,
    ) -> None:
        self._chain_id = chain_id
        self._set_at = validator_set_at
        self._max_items = max_items
        self._max_age = max_age_heights
        self._items: dict[tuple[int, bytes], Evidence] = {}  # (height, validator): one per pair
        self.refused = 0  # evidence that did not verify, or arrived while full or expired

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items

    def add(self, evidence: Evidence, current_height: int) -> str:
        """Keep ``evidence`` if it is new, fresh and verifies against its height's set.

        Returns "added", "known" (held already), "stale" (too old, from the future, no set known:
        an honest peer may send it) or "invalid" (it does not verify: no honest peer sends it)."""
        key = (evidence.height, evidence.validator)
        if key in self._items:
            return "known"
        if evidence.height + self._max_age < current_height or evidence.height > current_height:
            self.refused += 1
            return "stale"
        vset = self._set_at(evidence.height)
        if vset is None:
            self.refused += 1
            return "stale"
        try:
            evidence.verify(self._chain_id, vset)
        except ConsensusError as exc:
            log.warning("evidence against %s at height %d refused: %s",
                        address_to_text(evidence.validator), evidence.height, exc)
            self.refused += 1
            return "invalid"
        if len(self._items) >= self._max_items:
            # Full: the oldest evidence goes (it is the nearest to expiry), so a
            # chronic equivocator cannot shut out fresh evidence until it ages.
            oldest = min(self._items)
            if oldest >= key:
                self.refused += 1
                return "stale"
            del self._items[oldest]
        log.warning("equivocation by %s at height %d", address_to_text(evidence.validator), evidence.height)
        self._items[key] = evidence
        return "added"

    def prune(self, current_height: int, done: Callable[[int, bytes], bool] | None = None) -> int:
        """Drop evidence older than ``max_age_heights``, and what ``done(height, validator)``
        says the chain applied or will never apply; returns how many went."""
        cutoff = current_height - self._max_age
        stale = [key for key in self._items if key[0] < cutoff or (done is not None and done(*key))]
        for key in stale:
            del self._items[key]
        return len(stale)

    def pending(self, limit: int | None = None) -> list[Evidence]:
        """Kept evidence in (height, validator) order, at most ``limit``."""
        ordered = [self._items[key] for key in sorted(self._items)]
        return ordered if limit is None else ordered[:limit]
