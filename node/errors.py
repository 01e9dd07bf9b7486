"""Exception root of node/."""

from __future__ import annotations


class NodeError(Exception):
    """Root of every error raised by node/."""


class ConfigError(NodeError):
    """A config file, genesis file or home directory is missing or invalid."""


class MempoolError(NodeError):
    """A transaction was refused admission to the mempool.

    ``code`` is the JSON-RPC error code the server returns for it; ``data``
    carries machine-readable details (the offending values).
    """

    code = -32000

    def __init__(self, message: str, **data: object) -> None:
        super().__init__(message)
        self.data = data


class MempoolFull(MempoolError):
    code = -32001


class AccountLimitReached(MempoolError):
    code = -32002


class AlreadyKnown(MempoolError):
    code = -32003


class TxRejected(MempoolError):
    """Invalid for this chain or this state (signature, chain id, nonce, balance ...)."""

    code = -32010


class WalError(NodeError):
    """The consensus write-ahead log is unreadable beyond its last valid record."""


class WalCorrupted(WalError):
    """A WAL record before the end is damaged: later records cannot be trusted to be all there.

    ``offset`` is the byte where the damage starts; ``moved_to`` is where the
    file was moved aside (it is never deleted), or None before that.
    """

    def __init__(self, path: object, offset: int, reason: str, moved_to: object = None) -> None:
        where = f"; moved aside to {moved_to}" if moved_to is not None else ""
        super().__init__(f"WAL {path} is corrupted at byte {offset}: {reason}{where}")
        self.path = path
        self.offset = offset
        self.reason = reason
        self.moved_to = moved_to


class StartRefused(NodeError):
    """The home's state is inconsistent in a way that starting would make worse; nothing was changed."""
