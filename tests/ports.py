"""Ports for the tests' listeners on 127.0.0.1, below the kernel's ephemeral range.

A client socket takes its own port from the ephemeral range.  When it draws
the very port it dials and nothing listens there yet (a node still starting,
a peer restarting), Linux connects the socket to itself (TCP simultaneous
open): the client reads its own request back (``BadStatusLine: POST /
HTTP/1.1``), and while that socket lives the port cannot be listened on.
Ports below the range are never drawn, so a test that dials a port before
(or after) anything listens on it picks one here, not with ``bind(0)``.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path


def _ephemeral_ports_start() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _ports_free(base: int, count: int) -> bool:
    for port in range(base, base + count):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port_range(count: int) -> int:
    """A base port with ``count`` consecutive free ports, all below the ephemeral range."""
    low, high = 20000, _ephemeral_ports_start() - count
    for _ in range(200):
        base = random.randrange(low, high) if high > low else random.randrange(20000, 60000 - count)
        if _ports_free(base, count):
            return base
    raise RuntimeError("no free port range found")


def free_port() -> int:
    return free_port_range(1)
