"""Peer scores: a pure bookkeeping object, time passed in by the caller.

Penalties add up and decay linearly; a peer reaching the threshold is banned
until ``now + ban_seconds`` and its score is reset.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class PenaltyApplied:
    peer_id: str
    score: float
    banned: bool  # True only on the penalty that crossed the threshold


class PeerScores:
    def __init__(self, threshold: int, ban_seconds: float, decay_per_s: float) -> None:
        self._threshold = threshold
        self._ban_seconds = ban_seconds
        self._decay_per_s = decay_per_s
        self._scores: dict[str, tuple[float, float]] = {}  # peer -> (score, at)
        self._banned_until: dict[str, float] = {}

    def score(self, peer_id: str, now: float) -> float:
        entry = self._scores.get(peer_id)
        if entry is None:
            return 0.0
        score, at = entry
        return max(0.0, score - self._decay_per_s * max(0.0, now - at))

    def penalize(self, peer_id: str, points: int, now: float) -> PenaltyApplied:
        if points < 0:
            raise ValueError(f"penalty points {points} must be >= 0")
        if self.is_banned(peer_id, now):
            return PenaltyApplied(peer_id, float(self._threshold), banned=False)
        score = self.score(peer_id, now) + points
        if score >= self._threshold:
            self._scores.pop(peer_id, None)
            self._banned_until[peer_id] = now + self._ban_seconds
            return PenaltyApplied(peer_id, score, banned=True)
        self._scores[peer_id] = (score, now)
        return PenaltyApplied(peer_id, score, banned=False)

    def is_banned(self, peer_id: str, now: float) -> bool:
        until = self._banned_until.get(peer_id)
        return until is not None and now < until

    def expire(self, now: float) -> list[str]:
        """Lift bans that have run out; returns the peers unbanned."""
        lifted = [p for p, until in self._banned_until.items() if now >= until]
        for peer_id in lifted:
            del self._banned_until[peer_id]
        stale = [p for p in self._scores if self.score(p, now) == 0.0]
        for peer_id in stale:
            del self._scores[peer_id]
        return lifted

    def lift(self, peer_id: str) -> bool:
        """End a ban now (an operator's unban) and clear the score; True if the peer was banned."""
        self._scores.pop(peer_id, None)
        return self._banned_until.pop(peer_id, None) is not None

    def banned(self, now: float) -> list[str]:
        return [p for p, until in self._banned_until.items() if now < until]
