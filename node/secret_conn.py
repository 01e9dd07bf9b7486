"""An authenticated, encrypted connection between the node and its signer.

Modelled on CometBFT's SecretConnection (privval), with PyNaCl:

1. Each side sends a fresh X25519 public key (32 bytes, raw).
2. Both compute the X25519 shared secret and derive, with BLAKE2b keyed by
   it over the two ephemeral keys in sorted order, one XSalsa20-Poly1305 key
   per direction and a 32-byte challenge.
3. Each side sends, encrypted, its long-term Ed25519 public key and its
   signature of the challenge.  The peer checks the signature and that the
   key is one it knows; an unknown key is refused before anything else is
   read.  Signing the challenge binds both ephemeral keys, so a man in the
   middle cannot relay the authentication.

After the handshake every frame is ``len(4, big-endian) || box``, the box
sealed with a per-direction counter nonce (never reused: a new connection
has new keys).  Frames larger than ``max_frame`` are refused before they are
read, and every read runs under the socket's timeout.  Blocking sockets: the
node's signer is called synchronously by the engine, and the signer process
serves one connection per thread.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Collection

import nacl.bindings
import nacl.encoding
import nacl.exceptions
import nacl.hash
import nacl.public
import nacl.secret

from node.errors import NodeError
from state.crypto import PrivateKey, verify

MAX_FRAME = 64 * 1024
_PERSON = b"qenex-signer-v1"  # at most 16 bytes (BLAKE2b personalisation)
_HEADER = struct.Struct(">I")


class SecretConnectionError(NodeError):
    """The peer is unknown, misbehaved, timed out or went away."""


class UnknownPeer(SecretConnectionError):
    """The peer authenticated with a key we do not know."""


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = []
    while n:
        try:
            chunk = sock.recv(n)
        except socket.timeout:
            raise SecretConnectionError("timed out reading from the peer") from None
        except OSError as exc:
            raise SecretConnectionError(f"connection failed: {exc}") from None
        if not chunk:
            raise SecretConnectionError("the peer closed the connection")
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


def _send_all(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except socket.timeout:
        raise SecretConnectionError("timed out writing to the peer") from None
    except OSError as exc:
        raise SecretConnectionError(f"connection failed: {exc}") from None


def _kdf(shared: bytes, lo: bytes, hi: bytes, label: bytes) -> bytes:
    return nacl.hash.blake2b(label + lo + hi, key=shared, person=_PERSON, digest_size=32,
                             encoder=nacl.encoding.RawEncoder)


class SecretConnection:
    def __init__(self, sock: socket.socket, send_key: bytes, recv_key: bytes, peer_key: bytes,
                 max_frame: int) -> None:
        self.sock = sock
        self._send_box = nacl.secret.SecretBox(send_key)
        self._recv_box = nacl.secret.SecretBox(recv_key)
        self._send_nonce = 0
        self._recv_nonce = 0
        self.peer_key = peer_key  # the peer's long-term Ed25519 public key
        self.max_frame = max_frame

    @classmethod
    def handshake(cls, sock: socket.socket, identity: PrivateKey, known_peers: Collection[bytes],
                  *, max_frame: int = MAX_FRAME) -> "SecretConnection":
        """Authenticate both ways on ``sock`` (already under a timeout); raise UnknownPeer or SecretConnectionError."""
        eph = nacl.public.PrivateKey.generate()
        ours = bytes(eph.public_key)
        _send_all(sock, ours)
        theirs = _recv_exact(sock, 32)
        if theirs == ours:
            raise SecretConnectionError("the peer reflected our ephemeral key")
        try:
            shared = nacl.bindings.crypto_scalarmult(bytes(eph), theirs)
        except nacl.exceptions.CryptoError:
            raise SecretConnectionError("the peer sent a low-order ephemeral key") from None
        lo, hi = sorted((ours, theirs))
        lo_to_hi, hi_to_lo = _kdf(shared, lo, hi, b"lo->hi"), _kdf(shared, lo, hi, b"hi->lo")
        challenge = _kdf(shared, lo, hi, b"challenge")
        send_key, recv_key = (lo_to_hi, hi_to_lo) if ours == lo else (hi_to_lo, lo_to_hi)
        conn = cls(sock, send_key, recv_key, b"", max_frame)
        conn.send(identity.public_key + identity.sign(b"QENEX/signer-auth/v1" + challenge))
        auth = conn.recv()
        if len(auth) != 96:
            raise SecretConnectionError(f"authentication frame of {len(auth)} bytes, expected 96")
        peer_key, signature = auth[:32], auth[32:]
        if not verify(peer_key, b"QENEX/signer-auth/v1" + challenge, signature):
            raise SecretConnectionError("the peer's authentication signature does not verify")
        if peer_key not in known_peers:
            raise UnknownPeer(f"unknown peer key {peer_key.hex()}")
        conn.peer_key = peer_key
        return conn

    def send(self, data: bytes) -> None:
        if len(data) > self.max_frame:
            raise SecretConnectionError(f"frame of {len(data)} bytes exceeds {self.max_frame}")
        box = self._send_box.encrypt(data, self._send_nonce.to_bytes(24, "big")).ciphertext
        self._send_nonce += 1
        _send_all(self.sock, _HEADER.pack(len(box)) + box)

    def recv(self) -> bytes:
        (size,) = _HEADER.unpack(_recv_exact(self.sock, 4))
        if size > self.max_frame + nacl.secret.SecretBox.MACBYTES or size < nacl.secret.SecretBox.MACBYTES:
            raise SecretConnectionError(f"frame of {size} bytes refused (limit {self.max_frame})")
        box = _recv_exact(self.sock, size)
        try:
            data = self._recv_box.decrypt(box, self._recv_nonce.to_bytes(24, "big"))
        except nacl.exceptions.CryptoError:
            raise SecretConnectionError("a frame failed authentication (tampered or garbage)") from None
        self._recv_nonce += 1
        return data

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
