"""PBFT consensus as a pure state machine: ``Engine.handle(event) -> actions``.

Blocks are opaque bytes here; the node driver builds, validates and applies
them.  This package imports only ``state``'s codec, crypto and errors.
"""

from consensus.engine import Engine, EngineState, Step
from consensus.errors import ConsensusError, InvalidCertificate, InvalidMessage
from consensus.events import (
    Broadcast,
    BuildProposal,
    CommitBlock,
    HeightStarted,
    MessageReceived,
    PenalizePeer,
    ProposalBuilt,
    ProposalValidated,
    RebroadcastDue,
    Redeliver,
    ReportEvidence,
    RequestSync,
    ScheduleTimeout,
    TimeoutConfig,
    TimeoutElapsed,
    ValidateProposal,
)
from consensus.messages import (
    CommitCertificate,
    Evidence,
    NewView,
    PreparedCertificate,
    Proposal,
    ViewChange,
    Vote,
    VoteKind,
    decode_message,
)

__all__ = [
    "Engine", "EngineState", "Step", "TimeoutConfig",
    "HeightStarted", "MessageReceived", "ProposalBuilt", "ProposalValidated", "TimeoutElapsed", "RebroadcastDue",
    "Broadcast", "BuildProposal", "ValidateProposal", "ScheduleTimeout", "CommitBlock", "ReportEvidence",
    "RequestSync", "PenalizePeer", "Redeliver",
    "Proposal", "Vote", "VoteKind", "PreparedCertificate", "ViewChange", "NewView", "CommitCertificate",
    "Evidence", "decode_message",
    "ConsensusError", "InvalidMessage", "InvalidCertificate",
]
