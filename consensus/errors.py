"""Exception root of consensus/: each error carries the values that caused it."""

from __future__ import annotations


class ConsensusError(Exception):
    """Root of every error raised by consensus/."""


class InvalidMessage(ConsensusError):
    """A consensus message is malformed, badly signed or breaks the protocol.

    Raised by the decoders and by verification against a validator set; the
    sender of such a message is at fault and gets penalised.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class InvalidCertificate(InvalidMessage):
    """A prepared or commit certificate does not prove what it claims."""
