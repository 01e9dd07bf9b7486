"""Gossipsub v1.1 with its holes closed.

As shipped, ``Pubsub.stream_handler`` catches only StreamError, ParseError
and IncompleteReadError around ``continuously_read_stream``; the
``rpc_pb2.RPC.ParseFromString`` there raises protobuf's ``DecodeError`` on a
length-prefixed garbage frame, which escapes the handler, the SwarmConn
nursery and the host, and ends ``trio.run``. Likewise a well-formed RPC whose
message carries a garbage ``key`` makes ``signature_validator`` re-raise from
``push_msg``, which runs as a ``manager.run_task`` of the pubsub service, so
it cancels the whole service. Both are closed here by subclassing: every
entry point that consumes peer input catches, reports the fault (the caller
penalises the peer), resets the stream and drops the peer's pubsub state.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import trio
from libp2p.abc import IHost, INetStream
from libp2p.peer.id import ID
from libp2p.pubsub.gossipsub import PROTOCOL_ID_V11, GossipSub
from libp2p.pubsub.pb import rpc_pb2
from libp2p.pubsub.pubsub import Pubsub

logger = logging.getLogger("qenex.p2p")

GOSSIP_PROTOCOLS = (PROTOCOL_ID_V11,)

# (peer, reason, exception) -> None; runs in the trio thread.
FaultReporter = Callable[[ID, str, BaseException], None]


class GuardedPubsub(Pubsub):
    def __init__(self, host: IHost, router: GossipSub, on_fault: FaultReporter, **kwargs: object) -> None:
        self._on_fault = on_fault
        super().__init__(host, router, **kwargs)  # type: ignore[arg-type]

    async def stream_handler(self, stream: INetStream) -> None:
        peer_id = stream.muxed_conn.peer_id
        try:
            await super().stream_handler(stream)
        except Exception as exc:
            self._on_fault(peer_id, "malformed gossip stream", exc)
            await _reset_quietly(stream)
            try:
                self._handle_dead_peer(peer_id)
            except Exception:
                logger.exception("pubsub cleanup after fault from %s failed", peer_id)

    async def push_msg(self, msg_forwarder: ID, msg: rpc_pb2.Message) -> None:
        if msg_forwarder == self.my_id:
            # Our own publish: errors are ours and reach the caller.
            await super().push_msg(msg_forwarder, msg)
            return
        try:
            await super().push_msg(msg_forwarder, msg)
        except Exception as exc:
            self._on_fault(msg_forwarder, "malformed gossip message", exc)

    async def _replay_recent_messages(self, peer_id: ID, topic: str) -> None:
        try:
            await super()._replay_recent_messages(peer_id, topic)
        except Exception:
            logger.exception("gossip replay to %s on %r failed", peer_id, topic)


class GuardedGossipSub(GossipSub):
    """Tasks spawned from a peer's subscription announcement are guarded too."""

    async def flush_pending_messages(self, peer_id: ID) -> None:
        try:
            await super().flush_pending_messages(peer_id)
        except Exception:
            logger.exception("gossip flush to %s failed", peer_id)

    async def on_peer_subscribed(self, peer_id: ID, topic: str) -> None:
        try:
            await super().on_peer_subscribed(peer_id, topic)
        except Exception:
            logger.exception("gossip graft of %s on %r failed", peer_id, topic)


def build_gossip(
    host: IHost, heartbeat_s: float, on_fault: FaultReporter
) -> tuple[GuardedPubsub, GuardedGossipSub]:
    router = GuardedGossipSub(
        protocols=list(GOSSIP_PROTOCOLS),  # v1.1 only: v1.2 IDONTWANT doubles CPU
        degree=6,
        degree_low=4,
        degree_high=12,
        heartbeat_initial_delay=0.1,
        heartbeat_interval=heartbeat_s,  # type: ignore[arg-type]  # default 120 s
        adaptive_gossip_enabled=False,  # would stretch the heartbeat to 30-60 s
        spam_protection_enabled=False,  # 10 msg/s/topic cap, own publishes included
        eclipse_protection_enabled=False,  # IP diversity; all peers share 127.0.0.1 in testnets
        do_px=False,
    )
    pubsub = GuardedPubsub(
        host,
        router,
        on_fault,
        strict_signing=True,
        # max_inbound_rpc_size keeps the library default (1 MiB), the size
        # senders split their RPC batches to; our per-message bound is the
        # topic validator installed by the engine.
    )
    return pubsub, router


async def _reset_quietly(stream: INetStream) -> None:
    with trio.CancelScope(shield=True):
        try:
            await stream.reset()
        except Exception:
            logger.debug("stream reset failed", exc_info=True)
