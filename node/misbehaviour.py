"""Test-only misbehaviour: a validator that equivocates on purpose (CometBFT e2e's "misbehaviors").

``[consensus] double_sign_from_height = H`` makes the validator follow every COMMIT vote it
sends at heights >= H with a second, conflicting COMMIT for another block hash, signed with its
own key past slashing protection (node.signguard would refuse it, which is the point of that
guard).  Honest validators that receive both report them as evidence, a proposer includes it,
and the chain slashes and tombstones the offender (state.slashing), which is what the end-to-end
tests prove.  The conflicting hash names no block, so it can never gather a quorum: safety is
untouched, only the offender's stake is at risk.

Refused unless the genesis marks the chain as a test chain (``test_chain``), and unless the
node signs with its own key (a remote signer holds the key elsewhere); logged at CRITICAL level
at start-up, so nobody runs it by accident.
"""

from __future__ import annotations

import logging
import os

from consensus.messages import Vote, VoteKind
from node.config import ConsensusSection, ConfigError
from state.crypto import PrivateKey, sha256
from state.genesis import Genesis

log = logging.getLogger("qenex.misbehaviour")

DOMAIN = b"QENEX/misbehaviour/double-sign/"


class DoubleSigner:
    def __init__(self, key: PrivateKey, chain_id: str, from_height: int) -> None:
        self.key = key
        self.chain_id = chain_id
        self.from_height = from_height
        self.sent = 0

    def conflicting(self, vote: Vote) -> Vote | None:
        """The conflicting twin of our own COMMIT ``vote``, or None when ``vote`` is not one to double."""
        if vote.kind != VoteKind.COMMIT or vote.height < self.from_height or vote.validator != self.key.address:
            return None
        self.sent += 1
        return Vote.create(self.key, self.chain_id, vote.kind, vote.height, vote.view,
                           bytes(sha256(DOMAIN + vote.block_hash)))


def _require_test_chain(setting: str, genesis: Genesis) -> None:
    """Every test-only behaviour's gate: refused unless the genesis marks the chain as a test chain."""
    if not genesis.test_chain:
        raise ConfigError(f"{setting} is test-only: the genesis of {genesis.chain_id!r} is not marked as a test "
                          f"chain (\"test_chain\": true)")


def double_signer(config: ConsensusSection, genesis: Genesis, *, signer_mode: str,
                  key: PrivateKey) -> DoubleSigner | None:
    """The configured misbehaviour, None when off; ConfigError where it is not allowed."""
    height = config.double_sign_from_height
    if not height:
        return None
    _require_test_chain("consensus.double_sign_from_height", genesis)
    if signer_mode != "local":
        raise ConfigError("consensus.double_sign_from_height needs the validator key in the node (signer.mode = "
                          f"\"local\"), not {signer_mode!r}")
    log.critical("TEST-ONLY MISBEHAVIOUR: this validator signs a conflicting COMMIT after each of its own from "
                 "height %d (consensus.double_sign_from_height); it will be slashed and tombstoned", height)
    return DoubleSigner(key, genesis.chain_id, height)


CLOCK_OFFSET_ENV = "QENEX_TEST_CLOCK_OFFSET_MS"


def test_clock_offset(environ: "dict[str, str] | os._Environ[str]", genesis: Genesis) -> int:
    """The test-only skew of this node's clock (milliseconds, may be negative), 0 when unset; refused
    off a test chain, logged at CRITICAL level when set."""
    raw = environ.get(CLOCK_OFFSET_ENV, "").strip()
    if not raw:
        return 0
    try:
        offset = int(raw)
    except ValueError:
        raise ConfigError(f"{CLOCK_OFFSET_ENV}={raw!r} is not an integer number of milliseconds") from None
    if abs(offset) > 10**12:
        raise ConfigError(f"{CLOCK_OFFSET_ENV}={offset} is beyond 10^12 ms")
    if offset:
        _require_test_chain(CLOCK_OFFSET_ENV, genesis)
        log.critical("TEST-ONLY CLOCK SKEW: this node's clock runs %+d ms off the system's (%s)", offset,
                     CLOCK_OFFSET_ENV)
    return offset


GATE_ENV = "QENEX_TEST_GATE"
GATE_FILE = "test-gate.json"  # in the home's data directory: {"blocked": [peer id, ...]}
GATE_POLL_S = 0.25
MAX_GATE_BYTES = 64 * 1024


def test_gate_enabled(environ: "dict[str, str] | os._Environ[str]", genesis: Genesis) -> bool:
    """Whether this node runs the test-only connection gate (end-to-end partitions on loopback):
    ``QENEX_TEST_GATE=1``, refused off a test chain, logged at CRITICAL level."""
    if environ.get(GATE_ENV, "").strip() not in ("1", "true", "yes"):
        return False
    _require_test_chain(GATE_ENV, genesis)
    log.critical("TEST-ONLY CONNECTION GATE: peers listed in data/%s are disconnected and refused (%s)",
                 GATE_FILE, GATE_ENV)
    return True


def read_gate(path: "os.PathLike[str] | str") -> frozenset[str] | None:
    """The peer ids the gate file blocks; None when it is absent or unreadable (the gate then
    keeps what it had: a half-written file never opens a partition by accident)."""
    import json

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_GATE_BYTES + 1)
        if len(raw) > MAX_GATE_BYTES:
            return None
        doc = json.loads(raw)
    except (OSError, ValueError):
        return None
    blocked = doc.get("blocked") if isinstance(doc, dict) else None
    if not isinstance(blocked, list) or not all(isinstance(p, str) for p in blocked):
        return None
    return frozenset(blocked)


__all__ = ["DoubleSigner", "double_signer", "test_clock_offset", "CLOCK_OFFSET_ENV", "test_gate_enabled",
           "read_gate", "GATE_ENV", "GATE_FILE"]
