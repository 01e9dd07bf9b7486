"""The admin API's credentials: bearer token, TOTP second factor, and a per-source failure limiter.

* Token: ``[admin] token``, at least 32 printable characters, compared in
  constant time.
* TOTP (RFC 6238 through ``pyotp``: SHA-1, 30 s step, 6 digits, a window of
  one step either side).  The secret is created by ``qenexd admin enroll``
  and kept in ``HOME/config/admin_totp.json``, mode 0600, **not encrypted**
  (the node reads it unattended, as it reads its node key).  A code is
  accepted once: the time step it matched is recorded (fsynced, 0600, in
  ``HOME/data/admin_totp_used.json``) before the call runs, and a code for
  that step or an earlier one is refused, across restarts too.  The secret
  is read per state-changing call (after the token was checked), so an
  enrolment takes effect without a restart.
* ``FailureLimiter``: each source address may fail ``FREE_FAILURES`` times;
  every later failure blocks it for ``BASE_BLOCK_S * 2**(n - FREE_FAILURES)``
  seconds (capped at ``MAX_BLOCK_S``), during which it is answered 429 before
  its credentials are looked at.  A success clears the source; a source quiet
  for ``FORGET_S`` is forgotten.  The table holds at most ``MAX_SOURCES``;
  when it is full, new sources share one overflow entry, so cycling through
  127.0.0.0/8 source addresses buys no extra guesses.
"""

from __future__ import annotations

import base64
import hmac
import json
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyotp

from node.config import MIN_ADMIN_TOKEN_LEN
from node.errors import NodeError
from state.keyfile import write_private_file

OTP_HEADER = "X-Qenex-Otp"  # where a state-changing admin call carries its code (never logged)
TOTP_VERSION = 1
TOTP_STEP_S = 30
TOTP_DIGITS = 6
TOTP_WINDOW = 1  # steps accepted either side of now
TOTP_ISSUER = "qenexd"
SECRET_BYTES = 20  # 160 bits, RFC 4226's recommendation

FREE_FAILURES = 5
BASE_BLOCK_S = 1.0
MAX_BLOCK_S = 300.0
FORGET_S = 900.0
MAX_SOURCES = 1024
OVERFLOW_SOURCE = "*overflow*"


class AdminAuthError(NodeError):
    """The TOTP secret or its replay record is missing, unreadable or cannot be written."""


class NotEnrolled(AdminAuthError):
    pass


def token_matches(header: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``; a configured token below the minimum length never matches."""
    if len(token) < MIN_ADMIN_TOKEN_LEN or not header or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer "):].strip().encode(), token.encode())


# -- enrolment ---------------------------------------------------------------------


def new_secret() -> str:
    return pyotp.random_base32(length=32)  # 32 base32 characters = 160 bits


def enroll(secret_file: Path, *, name: str, force: bool = False) -> tuple[str, str]:
    """Create the TOTP secret (0600); returns (secret, otpauth URI).  Refuses an existing one without force."""
    if secret_file.exists() and not force:
        raise AdminAuthError(f"{secret_file} already exists: this home is enrolled (use --force to replace the "
                             "secret; codes from the old one stop working)")
    secret = new_secret()
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    doc = {"version": TOTP_VERSION, "secret": secret, "digits": TOTP_DIGITS, "period": TOTP_STEP_S,
           "algorithm": "SHA1", "name": name}
    write_private_file(secret_file, (json.dumps(doc, indent=1) + "\n").encode())
    uri = pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_S).provisioning_uri(
        name=name, issuer_name=TOTP_ISSUER)
    return secret, uri


def load_secret(secret_file: Path) -> str:
    try:
        doc = json.loads(secret_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise NotEnrolled(f"no TOTP secret at {secret_file}: run `qenexd admin enroll --home "
                          f"{secret_file.parent.parent}`") from None
    except (OSError, ValueError) as exc:
        raise AdminAuthError(f"{secret_file} is unreadable: {exc}") from None
    secret = doc.get("secret") if isinstance(doc, dict) else None
    if doc.get("version") != TOTP_VERSION or not isinstance(secret, str):
        raise AdminAuthError(f"{secret_file}: unsupported format")
    try:
        if len(base64.b32decode(secret, casefold=True)) < 16:
            raise ValueError("shorter than 128 bits")
    except ValueError as exc:
        raise AdminAuthError(f"{secret_file}: the secret is not usable base32 ({exc})") from None
    return secret


# -- verification with replay protection --------------------------------------------


@dataclass(frozen=True, slots=True)
class TotpVerdict:
    ok: bool
    reason: str = ""  # why not: "malformed", "wrong", "replayed"
    step: int | None = None


class TotpVerifier:
    """Checks a code against the secret file and the last accepted step (persisted before it answers yes)."""

    def __init__(self, secret_file: Path, used_file: Path, clock: Callable[[], float] = time.time) -> None:
        self.secret_file = secret_file
        self.used_file = used_file
        self._clock = clock
        self._last_step: int | None = None

    @property
    def enrolled(self) -> bool:
        return self.secret_file.exists()

    def last_step(self) -> int:
        if self._last_step is None:
            try:
                doc = json.loads(self.used_file.read_text(encoding="utf-8"))
                step = doc["last_step"]
                if isinstance(step, bool) or not isinstance(step, int):
                    raise ValueError(f"last_step {step!r}")
            except FileNotFoundError:
                step = -1
            except (OSError, ValueError, KeyError, TypeError) as exc:
                # Refuse rather than forget: a lost record would let a used code in again.
                raise AdminAuthError(f"{self.used_file} is unreadable ({exc}): refusing TOTP codes until it is "
                                     "fixed (delete it only if no code of the last minute can be replayed)") from None
            self._last_step = step
        return self._last_step

    def check(self, code: str | None) -> TotpVerdict:
        """Raises NotEnrolled / AdminAuthError when it cannot decide."""
        if not isinstance(code, str) or len(code) != TOTP_DIGITS or not code.isascii() or not code.isdigit():
            return TotpVerdict(False, "malformed")
        totp = pyotp.TOTP(load_secret(self.secret_file), digits=TOTP_DIGITS, interval=TOTP_STEP_S)
        now_step = int(self._clock()) // TOTP_STEP_S
        matched = None
        for step in range(now_step - TOTP_WINDOW, now_step + TOTP_WINDOW + 1):
            if hmac.compare_digest(totp.generate_otp(step), code):
                matched = step  # keep looking: every step is compared, so timing says nothing
        if matched is None:
            return TotpVerdict(False, "wrong")
        if matched <= self.last_step():
            return TotpVerdict(False, "replayed", matched)
        try:
            write_private_file(self.used_file, (json.dumps({"last_step": matched}) + "\n").encode())
        except OSError as exc:
            raise AdminAuthError(f"cannot record the used TOTP step in {self.used_file}: {exc}") from None
        self._last_step = matched
        return TotpVerdict(True, step=matched)


def totp_now(secret: str, at: float | None = None) -> str:
    """The current code for ``secret`` (tests and tooling)."""
    return pyotp.TOTP(secret, digits=TOTP_DIGITS, interval=TOTP_STEP_S).at(time.time() if at is None else at)


# -- failures per source ---------------------------------------------------------------


@dataclass(slots=True)
class _Source:
    failures: int = 0
    blocked_until: float = 0.0
    last: float = 0.0
    suppressed: int = 0  # 429s not written to the audit log one by one
    reported_until: float = -1.0  # the block window whose first 429 was written


class FailureLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic, *, max_sources: int = MAX_SOURCES) -> None:
        self._clock = clock
        self._max = max_sources
        self._sources: OrderedDict[str, _Source] = OrderedDict()  # least recently failed first

    def __len__(self) -> int:
        return len(self._sources)

    def _key(self, source: str) -> str:
        return source if source in self._sources or len(self._sources) < self._max else OVERFLOW_SOURCE

    def blocked_for(self, source: str) -> float:
        """Seconds ``source`` must still wait (0: it may try)."""
        entry = self._sources.get(self._key(source))
        if entry is None:
            return 0.0
        return max(0.0, entry.blocked_until - self._clock())

    def note_blocked(self, source: str) -> int | None:
        """Count a 429.  The first 429 of each block window is to be written to the audit log: returns how
        many earlier ones were not written (their count goes in that entry); None for the others."""
        entry = self._sources[self._key(source)]
        if entry.reported_until == entry.blocked_until:
            entry.suppressed += 1
            return None
        entry.reported_until = entry.blocked_until
        count, entry.suppressed = entry.suppressed, 0
        return count

    def failed(self, source: str) -> float:
        """Record a failure; returns the block it earned (0 while free failures remain)."""
        now = self._clock()
        self._forget(now)
        if source not in self._sources and len(self._sources) >= self._max:
            source = OVERFLOW_SOURCE
            if source not in self._sources:  # the table is full of others: make room for the shared entry
                self._sources.popitem(last=False)
        entry = self._sources.pop(source, None) or _Source()
        entry.failures += 1
        entry.last = now
        block = 0.0
        if entry.failures > FREE_FAILURES:
            block = min(MAX_BLOCK_S, BASE_BLOCK_S * 2 ** (entry.failures - FREE_FAILURES - 1))
            entry.blocked_until = now + block
        self._sources[source] = entry
        return block

    def succeeded(self, source: str) -> None:
        if source in self._sources:
            del self._sources[source]

    def _forget(self, now: float) -> None:
        while self._sources:
            key, entry = next(iter(self._sources.items()))
            if now - entry.last < FORGET_S or now < entry.blocked_until:
                break
            del self._sources[key]
