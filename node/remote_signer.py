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

Wire requests are JSON inside the encrypted frames (protocol version 2;
a request of another version is refused, not guessed at)::

    {"op": "sign", "v": 2, "chain_id", "height", "view", "phase", "block_hash",
     + "block_sha"      (proposal: sha256 of the block)
     | "view_changes"   (new view: [sha256(view change) ...], at most MAX_VALIDATORS)
     | "prepared"       (view change: null or [view, block_hash] of its certificate)}
    -> {"ok": true, "signature": "0x.."} | {"ok": false, "refused": bool, "error": ".."}
    {"op": "public_key", "v": 2} -> {"ok": true, "public_key": "0x.."}

No digest is sent: the signer recomputes it from these fields with the
``consensus.messages`` functions (``consensus.signing.derive_digest``) and
signs only that, so a node key can obtain signatures of consensus messages
for the slots the record allows and nothing else (never a transaction: those
are signed in another domain).

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

import fcntl
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

from consensus.signing import DigestMismatch, Phase, SignRequest, check_digest, derive_digest
from node.audit import AUDIT_FILE_NAME, AuditLog
from node.errors import NodeError
from node.secret_conn import SecretConnection, SecretConnectionError, UnknownPeer
from node.signer import audit_refusal
from node.signguard import SignGuard, SignGuardError, SignRefused
from state.crypto import Address, PrivateKey, address_of, verify
from state.keyfile import load_keyfile, write_private_file
from state.validators import MAX_VALIDATORS

log = logging.getLogger("qenex.remote_signer")

SIGNER_CONFIG_VERSION = 1
PROTOCOL_VERSION = 2  # 2: the digest's inputs are sent, not the digest
MAX_VIEW_CHANGE_HASHES = MAX_VALIDATORS  # a NEW-VIEW carries at most one view change per validator
# A sign request is a few hundred bytes, a NEW-VIEW's adds 70 per view-change hash.
MAX_REQUEST_BYTES = 1024 + 72 * MAX_VIEW_CHANGE_HASHES
AUTH_FRAME_BYTES = 256  # the handshake's frames (96 bytes) before the peer is known
HANDSHAKE_TIMEOUT_S = 2.0  # a connection not authenticated by then is dropped
IDLE_TIMEOUT_S = 300.0
MAX_CONNECTIONS = 4  # authenticated node connections (the oldest gives way to a new one)
MAX_PREAUTH = 4  # connections still in the handshake (the oldest is dropped for a new one)
LOCK_FILE_NAME = "LOCK"
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

    def _audit_mismatch(self, peer: str, doc: dict[str, Any], exc: Exception) -> None:
        """An audit entry for a request refused before it became a SignRequest; never raises."""
        if self.audit is None:
            return
        params = {name: doc[name] for name in ("height", "view", "phase")
                  if isinstance(doc.get(name), (int, str)) and len(str(doc[name])) <= 32}
        try:
            self.audit.append(peer, "sign_refused", params, {"result": "refused", "reason": str(exc)[:200]})
        except Exception as failure:  # the refusal stands whatever the log does
            log.error("could not audit a sign refusal: %s", failure)

    def handle(self, data: bytes, peer: str = "unknown") -> bytes:
        """One request from ``peer`` (the node's connection key, hex: the audit log's actor)."""
        try:
            doc = json.loads(data)
            if not isinstance(doc, dict):
                raise ValueError("not an object")
            if doc.get("v") != PROTOCOL_VERSION:
                raise ValueError(f"protocol version {doc.get('v')!r} is not {PROTOCOL_VERSION} "
                                 "(upgrade the node and the signer together)")
            op = doc.get("op")
            if op == "public_key":
                return _answer(ok=True, public_key="0x" + self.backend.public_key.hex())
            if op != "sign":
                raise ValueError(f"unknown op {op!r}")
            request = self._request(doc)
        except DigestMismatch as exc:
            self.refusals += 1
            log.error("refused to sign a request whose inputs do not give its slot: %s", exc)
            self._audit_mismatch(peer, doc, exc)
            return _answer(ok=False, refused=True, error=f"refused: {exc}")
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
        """The request ``doc`` describes, its digest recomputed here (none is read from the wire)."""
        if doc.get("chain_id") != self.guard.chain_id:
            raise ValueError(f"chain {doc.get('chain_id')!r} is not {self.guard.chain_id!r}")
        height, view = _uint(doc["height"], "height"), _uint(doc["view"], "view")
        phase = Phase[str(doc["phase"]).upper()]
        if phase == Phase.NONE:
            raise ValueError("phase none is not signable")
        known = {"op", "v", "chain_id", "height", "view", "phase", "block_hash", "block_sha", "view_changes",
                 "prepared"}
        if set(doc) - known:
            raise ValueError(f"unknown fields {sorted(set(doc) - known)!r:.80}")
        block_sha = None if doc.get("block_sha") is None else _unhex(doc["block_sha"], 32)
        view_changes = None
        if doc.get("view_changes") is not None:
            hashes = doc["view_changes"]
            if not isinstance(hashes, list) or not 1 <= len(hashes) <= MAX_VIEW_CHANGE_HASHES:
                raise ValueError(f"view_changes must be a list of 1 to {MAX_VIEW_CHANGE_HASHES} hashes")
            view_changes = tuple(_unhex(h, 32) for h in hashes)
        prepared = None
        if doc.get("prepared") is not None:
            summary = doc["prepared"]
            if not isinstance(summary, list) or len(summary) != 2:
                raise ValueError("prepared must be null or [view, block_hash]")
            prepared = (_uint(summary[0], "prepared view"), _unhex(summary[1], 32))
        partial = SignRequest(height, view, phase, _unhex(doc["block_hash"], 32), b"", block_sha, view_changes,
                              prepared)
        digest = derive_digest(self.guard.chain_id, partial)  # DigestMismatch: fields that do not fit the phase
        return SignRequest(height, view, phase, partial.block_hash, digest, block_sha, view_changes, prepared)


def request_doc(chain_id: str, request: SignRequest) -> dict[str, Any]:
    """The wire form of ``request`` (protocol 2): the digest's inputs, never the digest."""
    doc: dict[str, Any] = {"op": "sign", "v": PROTOCOL_VERSION, "chain_id": chain_id, "height": request.height,
                           "view": request.view, "phase": request.phase.name.lower(),
                           "block_hash": "0x" + request.block_hash.hex()}
    if request.block_sha is not None:
        doc["block_sha"] = "0x" + request.block_sha.hex()
    if request.view_changes is not None:
        doc["view_changes"] = ["0x" + h.hex() for h in request.view_changes]
    if request.phase == Phase.VIEW_CHANGE:
        doc["prepared"] = None if request.prepared is None else [request.prepared[0],
                                                                 "0x" + request.prepared[1].hex()]
    return doc


def _uint(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r:.40}")
    return value


def _socket_is_live(path: Path) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False  # refused: nobody listens, the file is stale
    finally:
        probe.close()
    return True


def _drop(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)  # its thread's read fails at once and it cleans up
    except OSError:
        pass


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
        self._preauth: list[socket.socket] = []  # oldest first
        self._authed: list[socket.socket] = []  # oldest first
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        self.home_lock: Any = None  # SignerHome.lock(): held until stop()

    def bind(self) -> str:
        """Bind and listen; returns the address text (the real port for tcp port 0)."""
        sock = socket.socket(self.address.family, socket.SOCK_STREAM)
        if self.address.family == socket.AF_UNIX:
            path = Path(self.address.target)
            if path.is_socket():
                if _socket_is_live(path):
                    raise SignerError(f"a signer is already listening on {path}: refusing to start a second one")
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
            with self._open_lock:
                if len(self._preauth) >= MAX_PREAUTH:
                    log.warning("%d connections still in the handshake: dropping the oldest", MAX_PREAUTH)
                    _drop(self._preauth.pop(0))
                self._preauth.append(conn)
                self._open.add(conn)
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
                _drop(sock)
        if self.home_lock is not None:
            self.home_lock.close()  # releases the flock
            self.home_lock = None

    def _serve(self, sock: socket.socket) -> None:
        try:
            sock.settimeout(HANDSHAKE_TIMEOUT_S)
            try:
                conn = SecretConnection.handshake(sock, self.identity, self.known_nodes,
                                                  max_frame=AUTH_FRAME_BYTES)
            except UnknownPeer as exc:
                self.rejected += 1
                log.error("refused a node: %s", exc)
                return
            except SecretConnectionError as exc:
                self.rejected += 1
                log.warning("handshake failed: %s", exc)
                return
            with self._open_lock:
                if sock not in self._preauth:
                    return  # dropped for a newer connection while it authenticated
                self._preauth.remove(sock)
                if len(self._authed) >= MAX_CONNECTIONS:
                    log.warning("%d node connections open: dropping the oldest", MAX_CONNECTIONS)
                    _drop(self._authed.pop(0))
                self._authed.append(sock)
            conn.max_frame = MAX_REQUEST_BYTES  # known node: frames above this are refused unread
            sock.settimeout(IDLE_TIMEOUT_S)
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
                for group in (self._preauth, self._authed):
                    if sock in group:
                        group.remove(sock)
            sock.close()


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
        try:
            check_digest(self.chain_id, request)
        except DigestMismatch as exc:
            self.refusals += 1
            log.error("not sending a malformed sign request to the remote signer: %s", exc)
            return None
        doc = request_doc(self.chain_id, request)
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
                self._conn = SecretConnection.handshake(sock, self.identity, (self.signer_key,),
                                                        max_frame=MAX_REQUEST_BYTES)
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

    @property
    def lock_file(self) -> Path:
        return self.root / LOCK_FILE_NAME

    def open_guard(self, chain_id: str, validator: bytes, *, create: bool = False) -> SignGuard:
        """The home's record; only ``create`` (``signer init``, ``import-protection``) makes a missing one."""
        if self.sign_state_file.exists():
            return SignGuard.load(self.sign_state_file, chain_id, validator)
        if not create:
            raise SignerError(f"{self.sign_state_file} is missing: refusing to sign without the slashing-protection "
                              f"record (restore it, or `qenexd signer import-protection --home {self.root} FILE`)")
        return SignGuard.create(self.sign_state_file, chain_id, validator)

    def lock(self) -> Any:
        """An exclusive flock on HOME/LOCK, held while the returned file stays open (one signer per home)."""
        handle = open(self.lock_file, "a+b")  # noqa: SIM115 (kept open for the process's life)
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise SignerError(f"another signer is running on {self.root} ({self.lock_file} is locked)") from None
        return handle

    def build_server(self, password: str | None = None) -> SignerServer:
        """The home's server; it holds the home's lock until ``stop()``."""
        config = self.load_config()
        home_lock = self.lock()
        try:
            backend = FileBackend(self.validator_key_file, password)
            guard = self.open_guard(config["chain_id"], address_of(backend.public_key))
            identity = load_keyfile(self.identity_key_file, None)
            # The audit log is signed with the signer's identity key, not the validator key.
            audit = AuditLog(self.audit_file, identity)
            server = SignerServer(SignerService(backend, guard, audit), identity, config["node_public_keys"],
                                  SignerAddress.parse(config["listen"]))
        except BaseException:
            home_lock.close()
            raise
        server.home_lock = home_lock
        return server
