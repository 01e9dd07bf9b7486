"""The seams of state/: the key-value store the application runs on, and the
commit verifier it checks certificates with.

Two store implementations live in ``state.kv``: ``MemoryKV`` (the test twin)
and ``LevelDBKV`` (plyvel).  The application needs exactly these operations,
and an atomic batch is the only way it writes.

A commit certificate is opaque to state/ (its format and signatures belong
to consensus/), yet whether a block's ``last_commit`` certifies its parent is
part of the block's validity, and so is each evidence item a block carries
(a proof of equivocation: its format is consensus/'s too).
``CommitVerifier`` is that seam: consensus/
implements it (``consensus.verify.CertificateVerifier``), the node hands it to
the application, and state/ still imports nothing outside itself.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Callable, Iterator, Mapping, NamedTuple

if TYPE_CHECKING:
    from state.validators import ValidatorSet


class KVReader(ABC):
    @abstractmethod
    def get(self, key: bytes) -> bytes | None:
        """The value under ``key``, or None."""


class KVStore(KVReader):
    @abstractmethod
    def iterate(self, prefix: bytes = b"") -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) whose key starts with ``prefix``, in ascending key order."""

    @abstractmethod
    def iterate_range(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value) with ``start <= key < stop``, ascending (descending with ``reverse``)."""

    @abstractmethod
    def write_batch(self, puts: Mapping[bytes, bytes | None], sync: bool = True) -> None:
        """Apply all of ``puts`` atomically (None deletes); ``sync`` waits for the disk."""

    @abstractmethod
    def close(self) -> None:
        """Release the store; further use raises StoreClosed."""

    def __enter__(self) -> "KVStore":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Infraction(NamedTuple):
    """What a verified evidence item proves: ``validator`` (a consensus address)
    signed two conflicting votes at ``height``."""

    height: int
    validator: bytes


class CommitVerifier(ABC):
    @abstractmethod
    def verify_commit(
        self, chain_id: str, validators: "ValidatorSet", height: int, block_hash: bytes, commit: bytes
    ) -> None:
        """Return if ``commit`` proves that more than 2/3 of ``validators``' power
        committed block ``block_hash`` at ``height`` on ``chain_id``; otherwise
        raise ``state.errors.InvalidCommit`` with the specific reason.  The cost
        must be bounded by the size of ``commit`` and of the set."""

    def commit_signers(self, commit: bytes) -> tuple[bytes, ...]:
        """The validator addresses whose signatures ``commit`` carries, in its order, for a
        certificate ``verify_commit`` accepted (staking credits the block's rewards to them).
        The default, for a verifier that cannot tell, is (): the application then credits every
        member of the set that signed the parent."""
        return ()

    def verify_evidence(
        self, chain_id: str, evidence: bytes, validators_at: "Callable[[int], ValidatorSet | None]"
    ) -> Infraction:
        """Return the infraction ``evidence`` proves, checked against the set that
        signed its own height (``validators_at(height)``, None when unknown); otherwise
        raise ``state.errors.InvalidEvidence`` with the specific reason.  The cost must be
        bounded by the size of ``evidence``.  The default, for a verifier that cannot
        check evidence, refuses every item (a block carrying any is invalid)."""
        from state.errors import InvalidEvidence

        raise InvalidEvidence("this node's verifier cannot check evidence")
