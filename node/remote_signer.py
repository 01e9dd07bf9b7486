"""The remote signer: a separate process holds the validator key and its slashing protection.

``qenexd signer start --home DIR`` listens on a Unix socket or a loopback TCP
address; the node connects as a client (``RemoteSigner``).  Both ends
authenticate with long-term Ed25519 keys they know in advance (the signer
its list of node keys, the node the signer's key) and encrypt every frame
(``node.secret_conn``).  The signer keeps its own fsynced sign-state record
(``node.signguard``) and checks every request against it *before* its
backend signs; a refusal is logged and answered, never signed.

The node never falls back to a local key: a signer that cannot be reached
answers "no signature", the engine does not vote, and the node keeps
following the chain (``consensus.signing``).  Reconnects are attempted at
most once per ``retry_s`` so an absent signer costs the event loop nothing.

Signer home::

    DIR/signer.json          chain id, listen address, known node public keys
    DIR/validator_key.json   the validator key (state.keyfile format)
    DIR/identity_key.json    the signer's connection key (not the validator key)
    DIR/sign_state.json      slashing protection (node.signguard format)
    DIR/audit.log            refused requests (node.audit), signed with the identity key

Wire requests are JSON inside the encrypted frames::

    {"op": "sign", "chain_id", "height", "view", "phase", "block_hash", "digest"}
    -> {"ok": true, "signature": "0x.."} | {"ok": false, "refused": bool, "error": ".."}
    {"op": "public_key"} -> {"ok": true, "public_key": "0x.."}

Signing backends
----------------

The service signs through a ``SigningBackend`` (``public_key``, ``sign``).
``FileBackend`` reads a key file.  A PKCS#11 backend (an HSM, a YubiHSM, a
SoftHSM for tests) plugs in at the same place with python-pkcs11::

    lib = pkcs11.lib(module_path)                       # e.g. libsofthsm2.so
    token = lib.get_token(token_label=label)
    session = token.open(user_pin=pin)                  # kept open by the backend
    key = session.get_key(pkcs11.ObjectClass.PRIVATE_KEY, pkcs11.KeyType.EC_EDWARDS, label=key_label)
    signature = key.sign(digest, mechanism=pkcs11.Mechanism.EDDSA)  # 64 bytes, RFC 8032

``public_key`` comes from the matching public-key object's ``EC_POINT``
(DER-wrapped 32 bytes).  The token must support CKM_EDDSA over Ed25519
(PKCS#11 3.0); the slashing-protection record stays on the signer host, not
in the token, and is checked before ``sign`` is called, exactly as for the
file backend.  ``SignerService`` takes any backend; only
``load_backend``'s choice by ``signer.json``'s ``backend`` field would grow.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from consensus.messages import VoteKind, vote_digest
from consensus.signing import Phase, SignRequest
from node.audit import AUDIT_FILE_NAME, AuditLog
from node.errors import NodeError
from node.secret_conn import SecretConnection, SecretConnectionError, UnknownPeer
from node.signer import audit_refusal
from node.signguard import SignGuard, SignGuardError, SignRefused
from state.crypto import Address, PrivateKey, address_of, verify
from state.keyfile import load_keyfile, write_private_file

log = logging.getLogger("qenex.remote_signer")

SIGNER_CONFIG_VERSION = 1
MAX_REQUEST_BYTES = 4096  # a sign request is a few hundred bytes
HANDSHAKE_TIMEOUT_S = 5.0
IDLE_TIMEOUT_S = 300.0
MAX_CONNECTIONS = 4
LOOPBACK_NAMES = ("localhost",)


class SignerError(NodeError):
    """The signer home, its config or a signer address is unusable."""


# -- addresses -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignerAddress:
    family: int
    target: Any  # a path (AF_UNIX) or (host, port)

    @classmethod
    def parse(cls, text: str) -> "SignerAddress":
        """``unix:/path/to.sock`` or ``tcp://127.0.0.1:PORT`` (loopback only)."""
        if text.startswith("unix:"):
            path = text[len("unix:"):]
            if not path:
                raise SignerError(f"signer address {text!r} names no socket path")
            return cls(socket.AF_UNIX, path)
        if text.startswith("tcp://"):
            host, sep, port = text[len("tcp://"):].rpartition(":")
            host = host.strip("[]")
            if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
                raise SignerError(f"signer address {text!r} is not tcp://HOST:PORT")
            if host not in LOOPBACK_NAMES:
                try:
                    loopback = ipaddress.ip_address(host).is_loopback
                except ValueError:
                    loopback = False
                if not loopback:
                    raise SignerError(f"signer address {text!r} is not a loopback address")
            return cls(socket.AF_INET6 if ":" in host else socket.AF_INET, (host, int(port)))
        raise SignerError(f"signer address {text!r} must start with unix: or tcp://")

    def connect(self, timeout: float) -> socket.socket:
        sock = socket.socket(self.family, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(self.target)
        except OSError:
            sock.close()
            raise
        return sock


# -- backends --------------------------------------------------------------------


class SigningBackend(Protocol):
    """Where the validator key lives (a file, an HSM through PKCS#11)."""

    @property
    def public_key(self) -> bytes: ...

    def sign(self, digest: bytes) -> bytes: ...


class FileBackend:
    """A ``state.keyfile`` key file (unencrypted, or with a password)."""

    def __init__(self, path: Path, password: str | None = None) -> None:
        self._key = load_keyfile(path, password)

    @property
    def public_key(self) -> bytes:
        return self._key.public_key

    def sign(self, digest: bytes) -> bytes:
        return self._key.sign(digest)


# -- the service (no sockets) -----------------------------------------------------


class SignerService:
    """Checks each request against the record, then signs through the backend."""

    def __init__(self, backend: SigningBackend, guard: SignGuard, audit: AuditLog | None = None) -> None:
        if address_of(backend.public_key) != guard.validator:
            raise SignerError("the sign-state record belongs to another key than the backend's")
        self.backend = backend
        self.guard = guard
        self.audit = audit
        self.refusals = 0
        self.signed = 0
        self._lock = threading.Lock()  # one check-record-sign at a time

    def handle(self, data: bytes, peer: str = "unknown") -> bytes:
        """One request from ``peer`` (the node's connection key, hex: the audit log's actor)."""
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            op = doc.get("op")
            if op == "public_key":
                return _answer(ok=True, public_key="0x" + self.backend.public_key.hex())
            if op != "sign":
                raise ValueError(f"unknown op {op!r}")
            request = self._request(doc)
        except (ValueError, TypeError, KeyError) as exc:
            return _answer(ok=False, refused=False, error=f"malformed request: {exc}")
        with self._lock:
            try:
                self.guard.approve(request)  # fsynced before the signature exists
            except SignRefused as exc:
                self.refusals += 1
                log.error("refused to sign: %s", exc)
                audit_refusal(self.audit, peer, request, exc)
                return _answer(ok=False, refused=True, error=str(exc))
            except SignGuardError as exc:
                log.critical("cannot record what we sign, so not signing: %s", exc)
                audit_refusal(self.audit, peer, request, exc, "sign_record_failed")
                return _answer(ok=False, refused=True, error=f"cannot record: {exc}")
            signature = self.backend.sign(request.digest)
            self.signed += 1
        return _answer(ok=True, signature="0x" + signature.hex())

    def _request(self, doc: dict[str, Any]) -> SignRequest:
        if doc.get("chain_id") != self.guard.chain_id:
            raise ValueError(f"chain {doc.get('chain_id')!r} is not {self.guard.chain_id!r}")
        height, view = doc["height"], doc["view"]
        for name, value in (("height", height), ("view", view)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        phase = Phase[str(doc["phase"]).upper()]
        if phase == Phase.NONE:
            raise ValueError("phase none is not signable")
        block_hash, digest = _unhex(doc["block_hash"], 32), _unhex(doc["digest"], 32)
        if phase in (Phase.PREPARE, Phase.COMMIT):
            # A vote's digest is derived from its fields: check, so that a
            # vote's slot cannot be misdescribed to the record.  (A proposal's
            # and a view change's digests cover the block / certificate, which
            # are not sent: there the record binds the described slot.)
            kind = VoteKind.PREPARE if phase == Phase.PREPARE else VoteKind.COMMIT
            if vote_digest(self.guard.chain_id, kind, height, view, block_hash) != digest:
                raise ValueError("the digest is not that of the described vote")
        return SignRequest(height, view, phase, block_hash, digest)


def _answer(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def _unhex(value: Any, length: int) -> bytes:
    if not isinstance(value, str) or not value.startswith("0x"):
        raise ValueError(f"expected 0x-hex, got {value!r:.40}")
    raw = bytes.fromhex(value[2:])
    if len(raw) != length:
        raise ValueError(f"expected {length} bytes, got {len(raw)}")
    return raw


# -- the server -------------------------------------------------------------------


class SignerServer:
    """Accepts authenticated node connections and serves sign requests (one thread each)."""

    def __init__(self, service: SignerService, identity: PrivateKey, known_nodes: list[bytes],
                 address: SignerAddress) -> None:
        self.service = service
        self.identity = identity
        self.known_nodes = frozenset(known_nodes)
        self.address = address
        self.rejected = 0
        self._sock: socket.socket | None = None
        self._stop = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def bind(self) -> str:
        """Bind and listen; returns the address text (the real port for tcp port 0)."""
        sock = socket.socket(self.address.family, socket.SOCK_STREAM)
        if self.address.family == socket.AF_UNIX:
            path = Path(self.address.target)
            if path.is_socket():
                path.unlink()  # a stale socket of an earlier run
            old = os.umask(0o177)
            try:
                sock.bind(str(path))
            finally:
                os.umask(old)
            text = f"unix:{path}"
        else:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(self.address.target)
            host, port = sock.getsockname()[:2]
            text = f"tcp://{host}:{port}"
        sock.listen(8)
        sock.settimeout(0.2)  # so serve_forever notices stop()
        self._sock = sock
        return text

    def serve_forever(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except socket.timeout:
                continue
            except OSError:
                if self._stop.is_set():
                    break
                raise
            if not self._slots.acquire(blocking=False):
                log.warning("refusing a connection: %d already open", MAX_CONNECTIONS)
                conn.close()
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True, name="signer-conn").start()

    def stop(self) -> None:
        """Stop accepting and end every open connection (as a killed signer would)."""
        self._stop.set()
        if self._sock is not None:
            try:
                self._sock.shutdown(socket.SHUT_RDWR)  # wakes accept() at once on Linux
            except OSError:
                pass
            self._sock.close()
        with self._open_lock:
            for sock in list(self._open):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _serve(self, sock: socket.socket) -> None:
        with self._open_lock:
            self._open.add(sock)
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                conn = SecretConnection.handshake(sock, self.identity, self.known_nodes,
                                                  max_frame=MAX_REQUEST_BYTES)
            except UnknownPeer as exc:
                self.rejected += 1
                log.error("refused a node: %s", exc)
                return
            except SecretConnectionError as exc:
                self.rejected += 1
                log.warning("handshake failed: %s", exc)
                return
            sock.settimeout(IDLE_TIMEOUT_S)  # frames above MAX_REQUEST_BYTES are refused unread
            log.info("node %s connected", conn.peer_key.hex()[:16])
            while not self._stop.is_set():
                try:
                    data = conn.recv()
                except SecretConnectionError as exc:
                    log.info("node connection ended: %s", exc)
                    return
                conn.send(self.service.handle(data, "0x" + conn.peer_key.hex()))
        except SecretConnectionError as exc:
            log.info("node connection ended: %s", exc)
        finally:
            with self._open_lock:
                self._open.discard(sock)
            sock.close()
            self._slots.release()


# -- the node's client --------------------------------------------------------------


class RemoteSigner:
    """The node's signer when the key lives in ``qenexd signer start``; never falls back to a local key."""

    def __init__(self, address: SignerAddress, signer_key: bytes, identity: PrivateKey,
                 validator_public_key: bytes, chain_id: str, *, timeout_s: float = 2.0,
                 retry_s: float = 1.0) -> None:
        self.address_of_signer = address
        self.signer_key = signer_key
        self.identity = identity
        self._public_key = validator_public_key
        self.chain_id = chain_id
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._conn: SecretConnection | None = None
        self._retry_at = 0.0
        self._down_logged = False
        self.refusals = 0
        self.failures = 0

    @property
    def address(self) -> Address:
        return address_of(self._public_key)

    @property
    def public_key(self) -> bytes:
        return self._public_key

    def sign_request(self, request: SignRequest) -> bytes | None:
        if self._conn is None and time.monotonic() < self._retry_at:
            self.failures += 1
            return None  # down: tried recently
        doc = {"op": "sign", "chain_id": self.chain_id, "height": request.height, "view": request.view,
               "phase": request.phase.name.lower(), "block_hash": "0x" + request.block_hash.hex(),
               "digest": "0x" + request.digest.hex()}
        try:
            answer = self._call(doc)
        except (SecretConnectionError, OSError, ValueError) as exc:
            self._down(exc)
            return None
        if not answer.get("ok"):
            self.refusals += 1
            log.error("the remote signer refused %s: %s", request.describe(), answer.get("error"))
            return None
        try:
            signature = _unhex(answer.get("signature"), 64)
        except ValueError as exc:
            self._down(exc)
            return None
        if not verify(self._public_key, request.digest, signature):
            self._down(SignerError("the remote signer's signature does not verify against the validator key"))
            return None
        return signature

    def _call(self, doc: dict[str, Any]) -> dict[str, Any]:
        if self._conn is None:
            sock = self.address_of_signer.connect(self.timeout_s)
            try:
                self._conn = SecretConnection.handshake(sock, self.identity, (self.signer_key,))
            except BaseException:
                sock.close()
                raise
            if self._down_logged:
                log.warning("remote signer reachable again: voting resumes")
            self._down_logged = False
        self._conn.send(json.dumps(doc).encode())
        answer = json.loads(self._conn.recv())
        if not isinstance(answer, dict):
            raise ValueError("the signer's answer is not an object")
        return answer

    def _down(self, exc: BaseException) -> None:
        self.failures += 1
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._retry_at = time.monotonic() + self.retry_s
        if not self._down_logged:
            log.error("remote signer at %s unavailable (%s): not voting until it is back; "
                      "there is no local key to fall back to", self.address_of_signer.target, exc)
            self._down_logged = True

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


# -- the signer home ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SignerHome:
    root: Path

    @property
    def config_file(self) -> Path:
        return self.root / "signer.json"

    @property
    def validator_key_file(self) -> Path:
        return self.root / "validator_key.json"

    @property
    def identity_key_file(self) -> Path:
        return self.root / "identity_key.json"

    @property
    def sign_state_file(self) -> Path:
        return self.root / "sign_state.json"

    @property
    def audit_file(self) -> Path:
        return self.root / AUDIT_FILE_NAME

    def write_config(self, chain_id: str, listen: str, node_keys: list[bytes]) -> None:
        SignerAddress.parse(listen)
        doc = {"version": SIGNER_CONFIG_VERSION, "chain_id": chain_id, "listen": listen,
               "node_public_keys": ["0x" + k.hex() for k in node_keys], "backend": "file"}
        write_private_file(self.config_file, (json.dumps(doc, indent=1) + "\n").encode())

    def load_config(self) -> dict[str, Any]:
        try:
            doc = json.loads(self.config_file.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise SignerError(f"{self.config_file} does not exist (run `qenexd signer init`)") from None
        except (OSError, ValueError) as exc:
            raise SignerError(f"{self.config_file} is unreadable: {exc}") from None
        if not isinstance(doc, dict) or doc.get("version") != SIGNER_CONFIG_VERSION:
            raise SignerError(f"{self.config_file}: unsupported version")
        try:
            if not isinstance(doc["chain_id"], str):
                raise ValueError("chain_id must be a string")
            SignerAddress.parse(doc["listen"])
            doc["node_public_keys"] = [_unhex(k, 32) for k in doc["node_public_keys"]]
            if doc.get("backend", "file") != "file":
                raise ValueError(f"backend {doc.get('backend')!r} is not available (only \"file\")")
        except (KeyError, TypeError, ValueError) as exc:
            raise SignerError(f"{self.config_file} is malformed: {exc}") from None
        if not doc["node_public_keys"]:
            raise SignerError(f"{self.config_file} names no node public key: no node could connect")
        return doc

    def open_guard(self, chain_id: str, validator: bytes) -> SignGuard:
        if self.sign_state_file.exists():
            return SignGuard.load(self.sign_state_file, chain_id, validator)
        return SignGuard.create(self.sign_state_file, chain_id, validator)

    def build_server(self, password: str | None = None) -> SignerServer:
        config = self.load_config()
        backend = FileBackend(self.validator_key_file, password)
        guard = self.open_guard(config["chain_id"], address_of(backend.public_key))
        identity = load_keyfile(self.identity_key_file, None)
        # The audit log is signed with the signer's identity key, not the validator key.
        audit = AuditLog(self.audit_file, identity)
        return SignerServer(SignerService(backend, guard, audit), identity, config["node_public_keys"],
                            SignerAddress.parse(config["listen"]))
