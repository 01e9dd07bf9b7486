"""qenexd's peer-to-peer layer: py-libp2p (Noise, yamux, gossipsub v1.1)
running in its own trio thread behind an asyncio interface.

Imports nothing from the rest of the project.
"""

from p2p.config import P2PConfig
from p2p.errors import (
    FrameTooLarge,
    InvalidConfig,
    InvalidPeerAddress,
    InvalidPeerId,
    ListenFailed,
    NotConnected,
    P2PError,
    RejectMessage,
    RequestFailed,
    RequestTooLarge,
    ServiceNotRunning,
)
from p2p.host import parse_peer_address
from p2p.identity import peer_id_from_public_key, peer_id_from_seed
from p2p.service import P2PService

__all__ = [
    "FrameTooLarge",
    "InvalidConfig",
    "InvalidPeerAddress",
    "InvalidPeerId",
    "ListenFailed",
    "NotConnected",
    "P2PConfig",
    "P2PError",
    "P2PService",
    "RejectMessage",
    "RequestFailed",
    "RequestTooLarge",
    "ServiceNotRunning",
    "parse_peer_address",
    "peer_id_from_public_key",
    "peer_id_from_seed",
]
