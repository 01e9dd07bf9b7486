"""Exception root of state/: every error carries the values that caused it."""

from __future__ import annotations


class StateError(Exception):
    """Root of every error raised by state/."""


class EncodeError(StateError):
    """A value cannot be put in canonical form."""


class DecodeError(StateError):
    """Bytes are malformed, non-canonical or of the wrong shape."""


class InvalidKey(StateError):
    """A key, signature or address is malformed."""


class KeyfileError(StateError):
    """A key file cannot be read, parsed or decrypted."""
