"""The trio side of the service: one libp2p host with gossipsub, direct
links, request/response, peer scores and the redial loop.

Everything here runs in the p2p trio thread. The asyncio facade
(``p2p.service``) reaches it only through ``p2p.bridge``; the only state it
reads directly is the immutable ``connected`` snapshot.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import trio
from libp2p.abc import IHost, INetConn, INetStream, INetwork, INotifee
from libp2p.rcmgr import Direction
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo
from libp2p.pubsub.pb import rpc_pb2
from libp2p.tools.anyio_service import background_trio_service
from multiaddr import Multiaddr

from p2p.config import P2PConfig
from p2p.direct import DIRECT_PROTOCOL, DirectLinks
from p2p.errors import ListenFailed, RejectMessage
from p2p.gossip import GuardedPubsub, build_gossip
from p2p.host import build_host, full_address, listen_multiaddr, parse_peer_address
from p2p.identity import key_pair_from_seed
from p2p.reqresp import AppHandler, RequestServer, send_request
from p2p.scoring import PeerScores
from p2p.stats import Stats
from p2p.streams import PENALTY_MALFORMED, PENALTY_OVERSIZE, PENALTY_UNAUTHORISED, guard

logger = logging.getLogger("qenex.p2p")

DIAL_TIMEOUT_S = 5.0
SENDER_NAME_CACHE = 1024

# (data) -> None; raises RejectMessage (or anything) to drop the message.
GossipValidator = Callable[[bytes], None]


@dataclass(frozen=True, slots=True)
class AppSink:
    """Where the engine hands traffic to the application (trio thread;
    the callables must not block)."""

    gossip: Callable[[str, str, bytes], None]
    direct: Callable[[str, list[bytes]], None]  # frames in arrival order
    request: AppHandler


@dataclass(frozen=True, slots=True)
class Started:
    peer_id: str
    listen_addrs: list[str]


class _ConnectionWatcher(INotifee):
    def __init__(self, engine: Libp2pEngine) -> None:
        self._engine = engine

    # Exceptions here would escape into the swarm's notify nursery.

    async def connected(self, network: INetwork, conn: INetConn) -> None:
        try:
            self._engine.on_connected(conn)
        except Exception:
            logger.exception("connection bookkeeping failed")

    async def disconnected(self, network: INetwork, conn: INetConn) -> None:
        try:
            self._engine.on_disconnected(conn)
        except Exception:
            logger.exception("disconnection bookkeeping failed")

    async def opened_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def closed_stream(self, network: INetwork, stream: INetStream) -> None:
        pass

    async def listen(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass

    async def listen_close(self, network: INetwork, multiaddr: Multiaddr) -> None:
        pass


class Libp2pEngine:
    """The libp2p host and everything running on it in the trio thread (see the module docstring).

    Not to be confused with ``consensus.engine.Engine``, the PBFT state machine.
    """

    def __init__(
        self,
        config: P2PConfig,
        sink: AppSink,
        stats: Stats,
        gossip_validators: dict[str, GossipValidator] | None = None,
    ) -> None:
        self._config = config
        self._sink = sink
        self._stats = stats
        self._gossip_validators = dict(gossip_validators or {})
        self._bootstrap: list[PeerInfo] = [parse_peer_address(a) for a in config.bootstrap]
        self._bootstrap_ids: frozenset[str] = frozenset(info.peer_id.to_base58() for info in self._bootstrap)
        # Live inbound connections in arrival order (dict order), for the cap.
        self._inbound: dict[INetConn, None] = {}
        self._scores = PeerScores(config.ban_threshold, config.ban_seconds, config.score_decay_per_s)
        self._dialing: set[ID] = set()
        self._sender_names: dict[bytes, str] = {}
        self._nursery: trio.Nursery | None = None
        self._host: IHost | None = None
        self._pubsub: GuardedPubsub | None = None
        self._links: DirectLinks | None = None
        self.peer_id: ID | None = None
        # Read from the asyncio thread: always replaced, never mutated.
        self.connected: frozenset[str] = frozenset()
        self.banned: frozenset[str] = frozenset()
        # Written from the asyncio thread (set_direct_peers): None = anyone; whether a stream from a
        # peer outside it costs the peer points.
        self.direct_allowed: frozenset[str] | None = None
        self.direct_refusals_penalized = True

    # lifecycle -------------------------------------------------------------

    async def run(
        self,
        request_protocols: tuple[str, ...],
        stop_requested: trio.Event,
        *,
        task_status: Any = trio.TASK_STATUS_IGNORED,
    ) -> None:
        config = self._config
        key_pair = key_pair_from_seed(config.identity_seed)
        listen_addr = listen_multiaddr(config.listen_host, config.listen_port)
        host = build_host(key_pair, listen_addr)
        self._host = host
        self.peer_id = host.get_id()

        pubsub, router = build_gossip(host, config.gossip_heartbeat_s, self._on_gossip_fault)
        self._pubsub = pubsub
        links = DirectLinks(host, config, self._stats, self._sink.direct, self.report_fault, self._direct_allowed,
                            lambda: self.direct_refusals_penalized)
        self._links = links
        host.set_stream_handler(DIRECT_PROTOCOL, links.handle_inbound)
        server = RequestServer(config, self._stats, self._sink.request, self.report_fault)
        for protocol in request_protocols:
            host.set_stream_handler(protocol, server.handle)  # type: ignore[arg-type]
        self._guard_all_handlers(host)
        self._disable_leaky_inbound_limiter(host)
        host.get_network().register_notifee(_ConnectionWatcher(self))

        async with host.run([listen_addr]):
            bound = host.get_transport_addrs()
            if not bound:
                raise ListenFailed(str(listen_addr))
            async with background_trio_service(pubsub), background_trio_service(router):
                await pubsub.wait_until_ready()
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    links.attach(nursery)
                    for topic in config.topics:
                        pubsub.set_topic_validator(topic, self._validate_gossip, False)
                        subscription = await pubsub.subscribe(topic)
                        nursery.start_soon(self._read_topic, topic, subscription)
                    nursery.start_soon(self._redial_loop)
                    addrs = [full_address(a, self.peer_id) for a in bound]
                    logger.info("p2p %s listening on %s", self.peer_id, ", ".join(addrs))
                    task_status.started(Started(self.peer_id.to_base58(), addrs))
                    await stop_requested.wait()
                    # Frames queued just before stop() still go out.
                    await links.drain(self._config.stop_grace_s / 2)
                    links.attach(None)
                    self._nursery = None
                    nursery.cancel_scope.cancel()
        self.connected = frozenset()
        logger.info("p2p %s stopped", self.peer_id)

    def _guard_all_handlers(self, host: IHost) -> None:
        """Every protocol handler, ours and the library's (identify, ping,
        meshsub), and the swarm-level negotiation handler are wrapped: the
        multistream negotiation decodes a peer's protocol name with a bare
        ``bytes.decode()``, so invalid UTF-8 there raises out of the host."""
        handlers = host.get_mux().handlers  # type: ignore[attr-defined]
        for protocol, handler in list(handlers.items()):
            if protocol is not None and handler is not None:
                handlers[protocol] = guard(str(protocol), handler, self.report_fault)
        network = host.get_network()
        swarm_handler = host._swarm_stream_handler  # type: ignore[attr-defined]
        network.set_stream_handler(guard("inbound", swarm_handler, self.report_fault))

    @staticmethod
    def _disable_leaky_inbound_limiter(host: IHost) -> None:
        """The swarm's own inbound cap (a trio.CapacityLimiter of 250 slots)
        holds each slot until the swarm stops, not until the connection
        closes (the handler awaits ``manager.wait_finished()`` while holding
        it), so a node that has accepted 250 connections in its life refuses
        every later one. Our cap counts live connections (``on_connected``);
        open theirs wide. Fail loudly if a library upgrade renames it."""
        limiter = getattr(host.get_network(), "_inbound_limiter", None)
        if not isinstance(limiter, trio.CapacityLimiter):
            raise RuntimeError("libp2p swarm._inbound_limiter is gone: re-check the inbound connection cap")
        limiter.total_tokens = 1_000_000

    def _direct_allowed(self, peer_id: ID) -> bool:
        allowed = self.direct_allowed
        return allowed is None or peer_id.to_base58() in allowed

    # connections -----------------------------------------------------------

    def _refresh_connected(self, leaving: INetConn | None = None) -> None:
        network = self._host.get_network() if self._host else None
        if network is None:
            return
        live = set()
        for peer_id, conns in network.get_connections_map().items():
            if any(c is not leaving and not c.is_closed for c in conns):
                live.add(peer_id.to_base58())
        # A banned peer's connection lives until our disconnect completes.
        self.connected = frozenset(live - self.banned)

    def _inbound_count(self) -> int:
        network = self._host.get_network() if self._host else None
        if network is None:
            return 0
        return sum(
            1
            for conns in network.get_connections_map().values()
            for c in conns
            if not c.is_closed and getattr(c, "direction", None) == Direction.INBOUND
        )

    def _protected(self, peer: str) -> bool:
        """Validators (the direct allowlist) and bootstrap peers are never
        kept out by the inbound cap: strangers holding every slot must not
        lock consensus out."""
        allowed = self.direct_allowed
        return peer in self._bootstrap_ids or (allowed is not None and peer in allowed)

    def _oldest_stranger(self, besides: INetConn) -> INetConn | None:
        for conn in list(self._inbound):
            if conn.is_closed:
                self._inbound.pop(conn, None)
            elif conn is not besides and not self._protected(conn.muxed_conn.peer_id.to_base58()):
                return conn
        return None

    def on_connected(self, conn: INetConn) -> None:
        peer_id = conn.muxed_conn.peer_id
        if self._scores.is_banned(peer_id.to_base58(), trio.current_time()):
            logger.info("refusing banned peer %s", peer_id, extra={"peer": str(peer_id)})
            self._spawn(self._disconnect, peer_id)
            return
        if getattr(conn, "direction", None) == Direction.INBOUND:
            self._inbound[conn] = None
            live = self._inbound_count()
            cap = self._config.max_inbound_connections
            if live > cap:
                if not self._protected(peer_id.to_base58()):
                    self._stats.add("inbound_connections_refused")
                    logger.warning("closing inbound connection from %s: %d inbound connections, cap %d",
                                   peer_id, live, cap)
                    self._inbound.pop(conn, None)
                    self._spawn(self._close_conn, conn)
                    return
                # Make room: the oldest stranger goes (with none left, the
                # protected peers, a bounded set, may exceed the cap).
                victim = self._oldest_stranger(besides=conn)
                if victim is not None:
                    self._inbound.pop(victim, None)
                    self._stats.add("inbound_strangers_evicted")
                    logger.warning("closing inbound connection from stranger %s to admit protected peer %s (cap %d)",
                                   victim.muxed_conn.peer_id, peer_id, cap)
                    self._spawn(self._close_conn, victim)
        self._refresh_connected()
        logger.debug("connected to %s", peer_id, extra={"peer": str(peer_id)})

    def on_disconnected(self, conn: INetConn) -> None:
        peer_id = conn.muxed_conn.peer_id
        self._inbound.pop(conn, None)
        self._refresh_connected(leaving=conn)
        if peer_id.to_base58() not in self.connected and self._links is not None:
            self._links.drop_peer(peer_id)
            logger.info("disconnected from %s", peer_id, extra={"peer": str(peer_id)})

    def _spawn(self, fn: Callable[..., Any], *args: Any) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(fn, *args)

    async def _close_conn(self, conn: INetConn) -> None:
        try:
            await conn.close()
        except Exception:
            logger.debug("closing a connection over the cap failed", exc_info=True)

    async def _disconnect(self, peer_id: ID) -> None:
        try:
            await self._host.disconnect(peer_id)  # type: ignore[union-attr]
        except Exception:
            logger.exception("disconnecting %s failed", peer_id)

    async def _redial_loop(self) -> None:
        """Dial every bootstrap peer that is not connected, every
        redial_interval_s, forever; libp2p itself never redials."""
        while True:
            try:
                self._redial_tick()
            except Exception:
                logger.exception("redial tick failed")
            await trio.sleep(self._config.redial_interval_s)

    def _redial_tick(self) -> None:
        now = trio.current_time()
        for peer in self._scores.expire(now):
            logger.info("ban on %s expired", peer, extra={"peer": str(peer)})
            if self._pubsub is not None:
                self._pubsub.remove_from_blacklist(ID.from_base58(peer))
        self.banned = frozenset(self._scores.banned(now))
        self._refresh_connected()
        for info in self._bootstrap:
            peer = info.peer_id.to_base58()
            if info.peer_id == self.peer_id or info.peer_id in self._dialing:
                continue
            if peer in self.connected or peer in self.banned:
                continue
            self._dialing.add(info.peer_id)
            self._spawn(self._dial, info)

    async def _dial(self, info: PeerInfo) -> None:
        try:
            # A failed dial leaves the peer in a 60 s negative cache.
            self._host.get_network().unblock_peer(info.peer_id)  # type: ignore[union-attr]
            self._stats.add("dials")
            with trio.fail_after(DIAL_TIMEOUT_S):
                await self._host.connect(info)  # type: ignore[union-attr]
            self._refresh_connected()
        except Exception as exc:
            self._stats.add("dial_failures")
            logger.debug("dial %s failed: %r", info.peer_id, exc, extra={"peer": str(info.peer_id)})
        finally:
            self._dialing.discard(info.peer_id)

    # faults and scores -------------------------------------------------------

    def report_fault(self, peer_id: ID, reason: str, points: int, exc: BaseException | None) -> None:
        self._stats.add("stream_faults")
        if exc is not None:
            logger.warning("peer %s: %s", peer_id, reason, exc_info=exc, extra={"peer": str(peer_id)})
        self.penalize(peer_id, reason, points)

    def _on_gossip_fault(self, peer_id: ID, reason: str, exc: BaseException) -> None:
        self.report_fault(peer_id, f"{reason}: {type(exc).__name__}", PENALTY_MALFORMED, exc)

    def penalize(self, peer_id: ID, reason: str, points: int) -> None:
        if peer_id == self.peer_id:
            return
        peer = peer_id.to_base58()
        verdict = self._scores.penalize(peer, points, trio.current_time())
        self._stats.add("penalties")
        logger.warning("penalised %s by %d for %s (score %.0f)", peer, points, reason, verdict.score,
                       extra={"peer": str(peer)})
        if not verdict.banned:
            return
        self._stats.add("bans")
        self.banned = frozenset(self._scores.banned(trio.current_time()))
        self.connected = self.connected - {peer}
        logger.warning("banning %s for %.0fs", peer, self._config.ban_seconds, extra={"peer": str(peer)})
        if self._links is not None:
            self._links.drop_peer(peer_id)
        if self._pubsub is not None and self._nursery is not None:
            self._pubsub.add_to_blacklist(peer_id)
        self._spawn(self._disconnect, peer_id)

    def unban(self, peer_id: ID) -> None:
        peer = peer_id.to_base58()
        if not self._scores.lift(peer):
            return
        self.banned = frozenset(self._scores.banned(trio.current_time()))
        if self._pubsub is not None:
            self._pubsub.remove_from_blacklist(peer_id)
        logger.warning("ban on %s lifted by the operator", peer, extra={"peer": str(peer)})

    # gossip ------------------------------------------------------------------

    def _validate_gossip(self, forwarder: ID, msg: rpc_pb2.Message) -> bool:
        """Runs before a message is delivered to us or relayed to anyone:
        a message it refuses goes no further than this node."""
        try:
            if len(msg.data) > self._config.max_gossip_bytes:
                reason = f"gossip message of {len(msg.data)} bytes over {self._config.max_gossip_bytes}"
                points = PENALTY_OVERSIZE
            else:
                checks = [self._gossip_validators[t] for t in msg.topicIDs if t in self._gossip_validators]
                if not checks:
                    return True
                try:
                    for check in checks:
                        check(msg.data)
                    return True
                except RejectMessage as exc:
                    reason, points = exc.reason, exc.points
                except Exception as exc:
                    reason, points = f"gossip validator refused it: {type(exc).__name__}: {exc}", PENALTY_MALFORMED
            self._stats.add("gossip_rejected")
            if forwarder != self.peer_id:
                self.penalize(forwarder, reason, points)
            return False
        except Exception:
            logger.exception("gossip validator failed")
            return False

    async def _read_topic(self, topic: str, subscription: Any) -> None:
        own = self.peer_id.to_bytes()  # type: ignore[union-attr]
        while True:
            try:
                msg = await subscription.get()
            except (trio.EndOfChannel, trio.ClosedResourceError):
                return
            if msg.from_id == own:
                self._stats.add("gossip_self_filtered")
                continue
            self._stats.add("gossip_in")
            self._stats.add("gossip_bytes_in", len(msg.data))
            try:
                self._sink.gossip(topic, self._sender_name(msg.from_id), msg.data)
            except Exception:
                logger.exception("gossip delivery failed")

    def _sender_name(self, from_id: bytes) -> str:
        name = self._sender_names.get(from_id)
        if name is None:
            if len(self._sender_names) >= SENDER_NAME_CACHE:
                self._sender_names.clear()
            name = self._sender_names[from_id] = ID(from_id).to_base58()
        return name

    async def publish(self, topic: str, data: bytes) -> None:
        await self._pubsub.publish(topic, data)  # type: ignore[union-attr]
        self._stats.add("gossip_out")
        self._stats.add("gossip_bytes_out", len(data))  # published once; gossipsub's relaying is not counted

    # direct and request/response -----------------------------------------------

    def send_direct(self, peer_id: ID, frame: bytes) -> None:
        if self._links is not None:
            self._links.enqueue(peer_id, frame)

    def broadcast_direct(self, frame: bytes) -> int:
        if self._links is None:
            return 0
        peers = [ID.from_base58(p) for p in self.connected]
        for peer_id in peers:
            self._links.enqueue(peer_id, frame)
        return len(peers)

    async def request(self, peer_id: ID, protocol: str, data: bytes, timeout_s: float, limit: int) -> bytes:
        self._stats.add("requests_out")
        try:
            return await send_request(
                self._host,  # type: ignore[arg-type]
                peer_id,
                protocol,
                data,
                timeout_s,
                limit,
                self.report_fault,
            )
        except Exception:
            self._stats.add("requests_failed")
            raise
