"""Construction of the libp2p host: Noise only, yamux only, TCP only."""

from __future__ import annotations

import ipaddress
import logging
import socket

import libp2p.transport.tcp.tcp as libp2p_tcp
import multiaddr
from libp2p import new_host
from libp2p.abc import IHost
from libp2p.crypto.keys import KeyPair
from libp2p.crypto.x25519 import create_new_key_pair as new_x25519_key_pair
from libp2p.custom_types import TProtocol
from libp2p.network.config import RetryConfig
from libp2p.peer.id import ID
from libp2p.peer.peerinfo import PeerInfo, info_from_p2p_addr
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_PROTOCOL_ID
from libp2p.security.noise.transport import Transport as NoiseTransport
from libp2p.stream_muxer.yamux.yamux import PROTOCOL_ID as YAMUX_PROTOCOL_ID
from libp2p.stream_muxer.yamux.yamux import Yamux

from p2p.errors import InvalidConfig, InvalidPeerAddress

# Our redial loop retries every redial_interval_s; libp2p's own backoff would
# only delay noticing that a peer is back.
DIAL_RETRY = RetryConfig(max_retries=0)


def _exclusive_listen_flags(sock: object) -> None:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # type: ignore[attr-defined]
    except OSError:
        pass


def _forbid_port_sharing() -> None:
    """libp2p's TCP transport sets SO_REUSEPORT on its listening sockets (for
    hole punching, which we do not use). With it a second node, or any
    process of the same user, binding "our" port succeeds silently and the
    kernel splits incoming connections between them. Keep SO_REUSEADDR (fast
    restart on the same port) and drop SO_REUSEPORT, so a taken port is an
    error at start(). The hook is a module global the transport calls at
    bind time; fail loudly if a library upgrade removes it."""
    if not callable(getattr(libp2p_tcp, "_set_reuse_flags", None)):
        raise RuntimeError("libp2p.transport.tcp.tcp._set_reuse_flags is gone: re-check port sharing")
    libp2p_tcp._set_reuse_flags = _exclusive_listen_flags  # type: ignore[assignment]


_forbid_port_sharing()


def _route_library_logs() -> None:
    """``import libp2p`` detaches its "libp2p" logger (no handlers, no
    propagation) unless LIBP2P_DEBUG is set, so its warnings reach stderr
    through logging.lastResort, bypassing the node's logging setup. Let them
    propagate (still at WARNING) so the node's configuration decides."""
    library = logging.getLogger("libp2p")
    if library.handlers:  # LIBP2P_DEBUG set: the developer asked for its own output
        return
    library.propagate = True
    # Some modules pin their own logger at INFO (the auto-connector logs its
    # state every few seconds); hold them to the library's WARNING too.
    for name, candidate in list(logging.root.manager.loggerDict.items()):
        if name.startswith("libp2p.") and isinstance(candidate, logging.Logger):
            if logging.NOTSET < candidate.level < logging.WARNING:
                candidate.setLevel(logging.WARNING)


_route_library_logs()


def security_options(key_pair: KeyPair) -> dict[TProtocol, NoiseTransport]:
    """Noise only: the library default also offers /plaintext/2.0.0, secio, TLS."""
    noise_key = new_x25519_key_pair().private_key
    return {NOISE_PROTOCOL_ID: NoiseTransport(key_pair, noise_privkey=noise_key)}


def muxer_options() -> dict[TProtocol, type[Yamux]]:
    return {TProtocol(YAMUX_PROTOCOL_ID): Yamux}


def listen_multiaddr(listen_host: str, listen_port: int) -> multiaddr.Multiaddr:
    try:
        ip = ipaddress.ip_address(listen_host)
    except ValueError as exc:
        raise InvalidConfig("listen_host", listen_host, "must be an IP address") from exc
    family = "ip4" if ip.version == 4 else "ip6"
    return multiaddr.Multiaddr(f"/{family}/{ip}/tcp/{listen_port}")


def build_host(key_pair: KeyPair, listen_addr: multiaddr.Multiaddr) -> IHost:
    host = new_host(
        key_pair=key_pair,
        sec_opt=security_options(key_pair),
        muxer_opt=muxer_options(),
        listen_addrs=[listen_addr],
        enable_mDNS=False,
        enable_upnp=False,
        enable_quic=False,
        enable_tcp=True,
        # Peers' observations of our address would add unbound addresses to
        # get_addrs(); we advertise exactly what the config binds.
        disable_identify_address_discovery=True,
    )
    host.get_network().retry_config = DIAL_RETRY  # type: ignore[attr-defined]
    return host


def parse_peer_address(address: str) -> PeerInfo:
    """A bootstrap multiaddr ending in /p2p/<peer id>."""
    try:
        info = info_from_p2p_addr(multiaddr.Multiaddr(address))
    except Exception as exc:  # multiaddr raises several unrelated types
        raise InvalidPeerAddress(address, str(exc)) from exc
    if not info.addrs or not str(info.addrs[0]):
        raise InvalidPeerAddress(address, "no transport address before /p2p/")
    return info


def full_address(addr: multiaddr.Multiaddr, peer_id: ID) -> str:
    return str(addr.encapsulate(multiaddr.Multiaddr(f"/p2p/{peer_id.to_base58()}")))
