"""The node process: composes state, consensus, p2p, mempool, sync and RPC
on one asyncio loop, and shuts them down in a fixed order.

Start-up: open the store → load genesis → p2p → consensus driver (WAL replay)
→ block sync → RPC.  Shutdown (SIGINT/SIGTERM only set an event): RPC → sync
→ driver → p2p → WAL → store, each bounded by a grace timeout.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
import os
import resource
import signal
import threading
from pathlib import Path
from typing import Any

from node.config import Home, NodeConfig
from node.driver import ConsensusDriver, DriverHooks
from node.admin import ADMIN_ERROR, AdminAPI, AdminContext, AdminServer
from node.admin_auth import TotpVerifier
from node.admission import Admission, refusal_kind
from node.audit import AuditLog
from node.errors import ConfigError, MempoolError
from node.homecheck import open_home_state
from node.inbound import (
    MAX_TX_BATCH_FRAME,
    ConsensusInbound,
    TxBatchValidator,
    consensus_peer_keys,
    staking_candidate_keys,
    tx_batch_frame_bytes,
    tx_batch_item_bytes,
    validator_peer_ids,
)
from node.jsonrpc import Dispatcher, RPCError, invalid_params, make_app
from node.logs import ContextFilter, configure_logging
from node.blocks import set_test_clock_offset
from node.misbehaviour import (GATE_FILE, GATE_POLL_S, double_signer, read_gate, test_clock_offset,
                               test_gate_enabled)
from node.mempool import Mempool
from node.metrics import MetricsServer, MetricsSource, NodeMetrics
from node.risk.hook import RISK_HISTORY_DIR, RiskHook
from node.risk.market import load_market_model
from node.rpc import RPC_COSTS, build_methods
from node.rpc_context import RpcContext
from node.rpc_server import RPCServer, connection_cap
from node.sync import BLOCKS_PROTOCOL, MAX_RESPONSE_BYTES, STATUS_PROTOCOL, BlockSync
from node.remote_signer import RemoteSigner, SignerAddress
from node.signer import ConsensusSigner, node_signer
from node.signguard import SignGuard
from node.snapshot import SnapshotError, SnapshotRefused, default_snapshot_path, prune_snapshots, write_snapshot
from node.wal import WriteAheadLog
from node.ws import SubscriptionHub, WsLimits, tx_status
from p2p import P2PConfig, P2PService
from p2p.errors import InvalidPeerId, ServiceNotRunning
from state.app import Application
from state.blocks import Block
from state.codec import encode
from state.crypto import address_of, address_to_text
from state.errors import StateError
from state.genesis import Genesis
from state.payloads import STAKING_KINDS
from state.staking import is_epoch_end
from state.keyfile import keyfile_warnings, load_keyfile
from state.kv import LevelDBKV

log = logging.getLogger("qenex.node")

TX_TOPIC = "qenex/txs/1"
# A frame holds the largest consensus message or sync response (the largest block genesis allows, its certificate).
MAX_FRAME_BYTES = max(8 * 1024 * 1024, MAX_RESPONSE_BYTES)
SHUTDOWN_GRACE_S = 5.0
MAX_NOFILE = 1 << 16  # the soft descriptor limit asked for at start-up (up to the hard limit)


def raise_descriptor_limit(target: int = MAX_NOFILE) -> int:
    """Raise RLIMIT_NOFILE's soft limit toward ``target`` (never above the
    hard limit); returns the soft limit in force.  Many systems start
    processes at 1024, which a few hundred sockets and LevelDB's tables use up."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the descriptor limit from %d to %d: %s", soft, want, exc)
    return soft


class Node:
    ws_hub: SubscriptionHub | None = None  # WebSocket subscribers (node.ws), made at start when /ws is on

    def __init__(self, home: Home, config: NodeConfig | None = None) -> None:
        self.home = home
        self.config = config or home.load_config()
        if not home.genesis_file.exists():
            raise ConfigError(f"no genesis at {home.genesis_file}")
        try:
            self.genesis = Genesis.from_json(home.genesis_file.read_text())
        except StateError as exc:
            raise ConfigError(f"{home.genesis_file}: {exc}") from exc
        try:
            self.node_key = load_keyfile(home.node_key_file, None)
        except StateError as exc:
            raise ConfigError(f"{home.node_key_file}: {exc}") from exc
        # Loads the risk model now, so a corrupt or mismatched file stops the
        # node before it opens anything (RiskModelError is a ConfigError).
        self.risk = RiskHook.from_config(self.config.risk, home.config_dir)
        self.market_model = load_market_model(self.config.risk.market_model, home.config_dir)
        # Test-only equivocation (node.misbehaviour): refused here unless the genesis is a test chain's.
        self.double_signer = double_signer(self.config.consensus, self.genesis, signer_mode=self.config.signer.mode,
                                           key=self.node_key)
        set_test_clock_offset(test_clock_offset(os.environ, self.genesis))
        self._gate = test_gate_enabled(os.environ, self.genesis)
        self._gate_task: asyncio.Task[None] | None = None
        self._admin: AdminServer | None = None
        self.audit: AuditLog | None = None  # opened at start (node.audit): admin calls and signer refusals
        self.kv: LevelDBKV | None = None
        self.app: Application | None = None
        self.mempool: Mempool | None = None
        self.admission: Admission | None = None
        self.p2p: P2PService | None = None
        self.driver: ConsensusDriver | None = None
        self.sync: BlockSync | None = None
        self.consensus_inbound: ConsensusInbound | None = None
        self._validator_keys: frozenset[bytes] = frozenset()
        self._candidate_keys: frozenset[bytes] = frozenset()  # staking candidates, refreshed when they may change
        self._penalizing_refusals = False
        self._was_validator = False  # our key in the set of the next height, as of the last commit (logged on change)
        self.flagged: dict[bytes, dict[str, Any]] = {}  # risk reviews, written by admission, shown by the RPC
        self._rpc_server: RPCServer | None = None
        self._gossip_out: collections.deque[bytes] = collections.deque()
        self._gossip_task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self.fatal: BaseException | None = None
        self.metrics = NodeMetrics(self._metrics_source())
        self._metrics_server: MetricsServer | None = None
        self.risk.observer = self.metrics.observe_risk
        self.log_context: ContextFilter | None = None  # set by run_node when it configured logging
        self._snapshot_tasks: set[asyncio.Task[dict[str, Any]]] = set()
        self._periodic_snapshot: asyncio.Task[dict[str, Any]] | None = None
        self._snapshot_abort = threading.Event()  # set at shutdown: a worker stops writing

    # -- lifecycle --------------------------------------------------------

    @property
    def is_validator(self) -> bool:
        return any(v[0] == self.validator_public_key for v in self.app.validators()) if self.app else False

    @property
    def validator_public_key(self) -> bytes:
        """The key we validate with: the node key, or the remote signer's validator key."""
        if self.config.signer.mode == "remote":
            return bytes.fromhex(self.config.signer.validator_public_key[2:])
        return self.node_key.public_key

    def _make_signer(self, sign_guard: SignGuard) -> ConsensusSigner:
        section = self.config.signer
        remote = None
        if section.mode == "remote":
            log.info("signing through the remote signer at %s", section.address)
            remote = RemoteSigner(SignerAddress.parse(section.address), bytes.fromhex(section.public_key[2:]),
                                  self.node_key, self.validator_public_key, self.app.chain_id,
                                  timeout_s=section.timeout_ms / 1000, retry_s=section.retry_ms / 1000)
        return node_signer(remote, self.node_key, sign_guard, audit=self.audit,
                           validator_set=self.app.validator_set)

    async def start(self) -> None:
        # Checks first, writing nothing: a missing or rolled-back store, a WAL
        # or sign record ahead of it, refuse to start (StartRefused, one line).
        opened = open_home_state(self.home, self.genesis, address_of(self.validator_public_key))
        self.kv, self.app = opened.kv, opened.app
        self.app.set_history_blocks(self.config.state.history_blocks)
        self.audit = AuditLog(self.home.audit_file, self.node_key)
        self.metrics.time_store_writes(self.kv)
        for warning in (opened.warnings + keyfile_warnings(self.home.node_key_file)
                        + self.home.config_warnings(self.config)):
            log.warning("%s", warning)
        self.mempool = Mempool(self.app, self.config.mempool)
        # The risk history lives in the node's own LevelDB beside the state
        # (not consensus state); attach loads it and replays only newer blocks.
        self.risk.attach(self.app, history_path=self.home.data_dir / RISK_HISTORY_DIR)
        # Made whether or not our key is in the set: the engine signs only at heights whose set holds it
        # (MemberSigner refuses the rest), so a full node registered with `validator create` proposes and
        # votes from the first height of the epoch that includes it, without a restart.
        signer = self._make_signer(opened.sign_guard)
        self._was_validator = self.is_validator

        p2p_config = P2PConfig(
            identity_seed=self.node_key.seed,
            listen_host=self.config.p2p.listen_host,
            listen_port=self.config.p2p.listen_port,
            bootstrap=tuple(self.config.p2p.bootstrap),
            topics=(TX_TOPIC,),
            max_frame_bytes=MAX_FRAME_BYTES,
        )
        self.p2p = P2PService(
            p2p_config,
            on_gossip=self._on_gossip,
            on_direct=self._on_direct,
            request_handlers={},
            gossip_validators={
                TX_TOPIC: TxBatchValidator(self.app.chain_id, self.app.params.max_tx_bytes, p2p_config.ban_threshold)
            },
        )
        self.admission = Admission(self.app, self.mempool, self.risk, flagged=self.flagged,
                                   relay=self._gossip_out.append, net=self.p2p)
        self._update_direct_peers()
        self.driver = ConsensusDriver(
            app=self.app,
            mempool=self.mempool,
            wal=WriteAheadLog(self.home.wal_file),
            config=self.config.consensus,
            signer=signer,
            double_signer=self.double_signer,
            # The signer checks slashing protection before it signs (node/signer.py).
            hooks=DriverHooks(
                broadcast=self.p2p.broadcast_direct,
                penalize=lambda peer, reason: self.p2p.penalize(peer, reason) if self.p2p else None,
                ban=lambda peer, reason: self.p2p.ban(peer, reason) if self.p2p else None,
                request_sync=lambda height: self.sync.request(height) if self.sync else None,
                on_commit=self._on_commit,
                on_fatal=self._on_fatal,
            ),
        )
        if self.log_context is not None:
            driver = self.driver
            self.log_context.context = lambda: (driver.height, getattr(driver.engine.state, "view", None)
                                                if driver.engine else None)
        self.consensus_inbound = ConsensusInbound(self.p2p, self.driver.inbox.put_nowait)
        self.sync = BlockSync(self.app, self.p2p, self.driver.inbox)
        self.p2p.request_handlers[STATUS_PROTOCOL] = self.sync.serve_status
        self.p2p.request_handlers[BLOCKS_PROTOCOL] = self.sync.serve_blocks
        await self.p2p.start()
        log.info(
            "node %s (%s) at height %d, p2p %s",
            self.config.name,
            "validator" if self._was_validator else "full node (not in the validator set: signs nothing)",
            self.app.height,
            ", ".join(self.p2p.listen_addrs),
        )
        self.driver.start()
        self.sync.start()
        self._gossip_task = asyncio.create_task(self._gossip_loop(), name="tx-gossip")
        if self._gate:
            self._gate_task = asyncio.create_task(self._gate_loop(), name="test-gate")

        rpc = self.config.rpc
        rpc_context = self.rpc_context()
        dispatcher = Dispatcher(build_methods(rpc_context), max_batch=rpc.max_batch, costs=RPC_COSTS,
                                observe=self.metrics.observe_rpc)
        soft_limit, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        cap = connection_cap(rpc.max_connections, soft_limit)
        ws_clients = min(rpc.ws_max_clients, cap // 2)
        if ws_clients:
            self.ws_hub = SubscriptionHub(
                receipts=self.app.block_receipts, lookup_tx=functools.partial(tx_status, rpc_context),
                limits=WsLimits(max_clients=ws_clients, max_subscriptions=max(1, rpc.ws_max_subscriptions),
                                idle_s=rpc.request_timeout_ms / 1000))
            self.ws_hub.start()
        self._rpc_server = RPCServer(
            make_app(dispatcher, max_request_bytes=rpc.max_request_bytes,
                     websocket=self.ws_hub.handle if self.ws_hub else None),
            rpc.listen_host, rpc.listen_port, max_connections=cap, request_timeout_s=rpc.request_timeout_ms / 1000,
        )
        await self._rpc_server.start()
        log.info("json-rpc on http://%s:%d/ (at most %d connections, %d descriptors; %s)", rpc.listen_host,
                 rpc.listen_port, cap, soft_limit,
                 f"ws://{rpc.listen_host}:{rpc.listen_port}/ws for {ws_clients} clients" if ws_clients else "no /ws")
        if self.config.metrics.port:
            self._metrics_server = MetricsServer(self.metrics)
            await self._metrics_server.start(self.config.metrics.host, self.config.metrics.port)
        admin = self.config.admin_settings()
        if self.config.uses_legacy_admin_keys:
            log.warning("%s: [risk] admin_host/admin_port/admin_token are deprecated: move them to [admin] "
                        "host/port/token", self.home.config_file)
        if admin.port and admin.token:
            totp = TotpVerifier(self.home.admin_totp_file, self.home.admin_totp_used_file)
            self._admin = AdminServer(AdminAPI(self.admin_context(rpc_context), admin.token, totp, self.audit))
            await self._admin.start(admin.host, admin.port)
            if not totp.enrolled:
                log.warning("admin API: no TOTP secret yet, so state-changing calls are refused: run "
                            "`qenexd admin enroll --home %s`", self.home.root)
        risk = self.config.risk
        log.info(
            "risk hook: %s",
            f"model v{self.risk.model.version} (review > {risk.review_threshold}, reject > {risk.reject_threshold})"
            if self.risk.model else f"no model, fallback {risk.fallback!r}",
        )

    async def stop(self) -> None:
        async def step(name: str, coro: Any) -> None:
            try:
                await asyncio.wait_for(coro, SHUTDOWN_GRACE_S)
            except Exception:
                log.warning("shutdown step %s did not finish cleanly", name, exc_info=True)

        if self.ws_hub:
            await step("ws", self.ws_hub.stop())
        if self._rpc_server:
            await step("rpc", self._rpc_server.stop())
        if self._admin:
            await step("admin", self._admin.stop())
        if self._metrics_server:
            await step("metrics", self._metrics_server.stop())
        if self._gossip_task:
            self._gossip_task.cancel()
        if self._gate_task:
            self._gate_task.cancel()
        if self.sync:
            await step("sync", self.sync.stop())
        if self.driver:
            await step("driver", self.driver.stop())
            self.driver.wal.close()
        if self.p2p:
            await step("p2p", self.p2p.stop())
        if self.consensus_inbound:
            self.consensus_inbound.close()
        if self._snapshot_tasks:  # a worker reads the store: it must end before the store closes
            self._snapshot_abort.set()
            await step("snapshots", asyncio.wait(set(self._snapshot_tasks)))
        self.risk.close()
        if self.kv:
            self.kv.close()
        if self.app is not None:  # a refused start said so in its one line
            log.info("node %s stopped at height %d", self.config.name, self.app.height)

    async def run_until_signalled(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            # Inside the try: a start that fails after p2p or the driver came
            # up still shuts down what did, in order.
            await self.start()
            await self._stop.wait()
        finally:
            await self.stop()

    # -- RPC and metrics wiring -------------------------------------------

    def _metrics_source(self) -> MetricsSource:
        """What a scrape reads; parts that start later are looked up at scrape time."""
        return MetricsSource(
            consensus_state=lambda: self.driver.engine_state() if self.driver else None,
            mempool_size=lambda: (len(self.mempool), self.mempool.size_bytes) if self.mempool else (0, 0),
            p2p_stats=lambda: self.p2p.stats() if self.p2p and self.p2p.running else {},
            syncing=lambda: bool(self.sync and self.sync.syncing),
            committed_height=lambda: self.app.height if self.app else 0,
        )

    def rpc_context(self) -> RpcContext:
        """What the RPC method tables may read and submit, over this node's parts.

        Parts that change while the node runs are read at call time.
        """
        assert self.app is not None and self.mempool is not None
        mempool = self.mempool
        return RpcContext(
            app=self.app,
            node_name=self.config.name,
            submit_raw_tx=lambda raw: self.submit_raw_tx(raw),
            pending_nonce=mempool.pending_nonce,
            pending_tx=mempool.get,
            pending_entries=mempool.entries,
            mempool_size=lambda: (len(mempool), mempool.size_bytes),
            queued_tx=mempool.get_queued,
            queued_for=mempool.queued_for,
            queued_size=lambda: (mempool.queued_count, mempool.queued_bytes),
            flagged_risk=lambda tx_hash: self.flagged.get(tx_hash),
            peer_count=lambda: len(self.p2p.connected_peers()) if self.p2p else 0,
            peer_id=lambda: self.p2p.peer_id if self.p2p else None,
            validator_address=lambda: address_of(self.validator_public_key) if self.is_validator else None,
            syncing=lambda: bool(self.sync and self.sync.syncing),
            consensus_state=lambda: self.driver.engine_state() if self.driver else None,
            validator_set=lambda: self.app.validator_set(self.app.height + 1) if self.app else None,
            risk=self.risk,
            market_model=self.market_model,
            contract_query_gas=self.config.rpc.contract_query_gas,
        )

    def admin_context(self, rpc_context: RpcContext) -> AdminContext:
        """What the admin API (node/admin.py) may read and do on this node."""
        return AdminContext(
            status=self._admin_status,
            peers=lambda: {"connected": self.p2p.connected_peers() if self.p2p else [],
                           "banned": self.p2p.banned_peers() if self.p2p else []},
            ban=lambda peer: self._p2p_call("ban", peer, "banned by the operator (admin_ban)"),
            unban=lambda peer: self._p2p_call("unban", peer),
            flush_mempool=self._flush_mempool,
            request_stop=self._stop.set,  # the signal path: run_until_signalled then stops in order
            snapshot=self.admin_snapshot,
            risk=self.risk,
            find_tx=rpc_context.known_tx,
        )

    def _admin_status(self) -> dict[str, Any]:
        assert self.app is not None and self.mempool is not None
        return {"name": self.config.name, "chain_id": self.app.chain_id, "height": self.app.height,
                "validator": self.is_validator, "peers": len(self.p2p.connected_peers()) if self.p2p else 0,
                "mempool": {"pending": len(self.mempool), "queued": self.mempool.queued_count},
                "syncing": bool(self.sync and self.sync.syncing),
                "risk_model": self.risk.model.version if self.risk.model else None,
                "totp_enrolled": self.home.admin_totp_file.exists(),
                "audit_seq": self.audit.seq if self.audit else 0}

    def _p2p_call(self, what: str, peer: str, *args: str) -> Any:
        if self.p2p is None:
            raise ValueError("the p2p service is not running")
        try:
            return getattr(self.p2p, what)(peer, *args)
        except (InvalidPeerId, ServiceNotRunning) as exc:
            raise ValueError(str(exc)) from None

    def _flush_mempool(self) -> dict[str, Any]:
        assert self.mempool is not None
        pending, queued = self.mempool.flush()
        for tx_hash in pending:
            self.flagged.pop(tx_hash, None)
        self._gossip_out.clear()
        log.warning("mempool flushed by the operator: %d pending, %d queued dropped", len(pending), len(queued))
        return {"pending_dropped": len(pending), "queued_dropped": len(queued)}

    # -- snapshots ----------------------------------------------------------

    async def admin_snapshot(self, out_path: str | None = None, **unknown: Any) -> dict[str, Any]:
        """Snapshot the state at the committed head into ``out_path`` (a plain
        file name under HOME/snapshots/; default snapshot-<height>.qsnap there,
        replaced if present; a named file is never overwritten) and return its
        manifest with ``path``.  The LevelDB snapshot is taken here, between two
        commits; the file is written in a worker thread, so the loop and later
        commits go on meanwhile.  Errors are JSON-RPC errors (the admin API's)."""
        if unknown:
            raise invalid_params(f"admin_snapshot takes only out_path, got {sorted(unknown)}")
        if out_path is not None and (not isinstance(out_path, str) or not out_path or "\x00" in out_path):
            raise invalid_params("out_path must be a non-empty path")
        try:
            return await self._start_snapshot(out_path)
        except SnapshotRefused as exc:
            raise invalid_params(str(exc)) from None
        except (SnapshotError, StateError, OSError) as exc:
            raise RPCError(ADMIN_ERROR, f"snapshot failed: {exc}") from None

    def _start_snapshot(self, out_path: str | None) -> asyncio.Task[dict[str, Any]]:
        assert self.kv is not None and self.app is not None, "the node is not started"
        if out_path is None:
            target, overwrite = default_snapshot_path(self.home, self.app.height), True
        else:
            # A file name under HOME/snapshots/ only: an admin call must not write where the node user can
            # (a config file, another home's store).
            name = Path(out_path)
            if name.is_absolute() or len(name.parts) != 1 or name.name in (".", ".."):
                raise SnapshotRefused(f"out_path must be a plain file name under {self.home.snapshots_dir}, "
                                      f"got {out_path!r}")
            target, overwrite = self.home.snapshots_dir / name, False
        view = self.kv.snapshot()

        def work() -> dict[str, Any]:
            try:
                manifest = write_snapshot(view, target, abort=self._snapshot_abort, overwrite=overwrite)
            finally:
                view.close()
            return {"path": str(target), **manifest.to_json_obj()}

        task = asyncio.get_running_loop().create_task(asyncio.to_thread(work), name="snapshot")
        self._snapshot_tasks.add(task)
        task.add_done_callback(self._snapshot_tasks.discard)
        return task

    def _maybe_periodic_snapshot(self, height: int) -> None:
        section = self.config.snapshot
        if not section.interval_blocks or height % section.interval_blocks:
            return
        if self._periodic_snapshot is not None and not self._periodic_snapshot.done():
            log.warning("snapshot at height %d skipped: the previous one is still being written", height)
            return
        try:
            task = self._start_snapshot(None)
        except Exception as exc:  # a snapshot never stops commits
            log.warning("snapshot at height %d not started: %s", height, exc)
            return
        self._periodic_snapshot = task

        def finished(done: asyncio.Task[dict[str, Any]]) -> None:
            if done.cancelled():
                return
            exc = done.exception()
            if exc is not None:
                log.warning("snapshot at height %d failed: %s", height, exc)
                return
            pruned = prune_snapshots(self.home.snapshots_dir, section.keep)
            log.info("snapshot at height %d written to %s (%d keys)%s", height, done.result()["path"],
                     done.result()["key_count"], f"; removed {len(pruned)} older" if pruned else "")

        task.add_done_callback(finished)

    # -- transactions -----------------------------------------------------

    def submit_raw_tx(self, raw: bytes) -> bytes:
        """Admit a locally submitted transaction (node/admission.py) and queue it for gossip; raises the
        MempoolError that refused it."""
        assert self.admission is not None
        try:
            tx_hash = self.admission.submit(raw)
        except MempoolError as exc:
            self.metrics.observe_admission("rpc", refusal_kind(exc))
            raise
        self.metrics.observe_admission("rpc", None)
        if self.ws_hub is not None:
            self.ws_hub.on_admitted(tx_hash)
        return tx_hash

    async def _gossip_loop(self) -> None:
        interval = self.config.mempool.gossip_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            if self.mempool is not None:  # queued transactions a commit promoted: relayed once pending
                self._gossip_out.extend(stx.encode() for stx in self.mempool.take_promoted())
            while self._gossip_out and self.p2p:
                batch = take_tx_batch(self._gossip_out, self.config.mempool.gossip_batch_txs)
                if not batch:
                    continue
                try:
                    await self.p2p.publish(TX_TOPIC, encode([1, batch]))
                except Exception:
                    log.warning("tx gossip publish failed", exc_info=True)

    async def _gate_loop(self) -> None:
        """TEST ONLY (node.misbehaviour): keep the peers the gate file lists banned (disconnected and
        refused, both ways once every node of a partition gates the others), and lift the bans of
        those it no longer lists."""
        path = self.home.data_dir / GATE_FILE
        gated: frozenset[str] = frozenset()
        while True:
            blocked = read_gate(path)
            if blocked is not None and self.p2p is not None:
                banned = set(self.p2p.banned_peers())
                try:
                    for peer in sorted(blocked - banned):
                        self.p2p.ban(peer, "test-only connection gate")
                    for peer in sorted((gated - blocked) & banned):
                        self.p2p.unban(peer)
                except Exception as exc:  # a bad peer id in the file: say so, keep polling
                    log.error("test gate: %s", exc)
                if blocked != gated:
                    log.warning("test gate: %d peer(s) blocked", len(blocked))
                gated = blocked
            await asyncio.sleep(GATE_POLL_S)

    def _on_gossip(self, topic: str, peer: str, data: bytes) -> None:
        if topic == TX_TOPIC and self.admission is not None:
            hub = self.ws_hub
            for outcome in self.admission.on_gossip_batch(peer, data):
                self.metrics.observe_admission("gossip", None if outcome.admitted else outcome.kind)
                if hub is not None and outcome.admitted and outcome.tx_hash is not None:
                    hub.on_admitted(outcome.tx_hash)

    def _on_direct(self, peer: str, data: bytes) -> None:
        if self.consensus_inbound:
            self.consensus_inbound.on_frame(peer, data)

    def _update_direct_peers(self, block: Block | None = None) -> None:
        """Consensus streams only from the validators' nodes and staking candidates
        (node.inbound.consensus_peer_keys).  Until a sync round finds no peer more than a block ahead
        (``BlockSync.caught_up``), a refused stream is not penalised: a node behind cannot know who
        joined the set at heights it has not reached, and those validators send it their votes like
        any connected peer."""
        if self.app is None or self.p2p is None:
            return
        if block is None or self._may_change_candidates(block):
            self._candidate_keys = staking_candidate_keys(self.app)
        keys = consensus_peer_keys(self.app, self._candidate_keys)
        caught_up = bool(self.sync and self.sync.caught_up)
        if (keys, caught_up) != (self._validator_keys, self._penalizing_refusals):
            self._validator_keys, self._penalizing_refusals = keys, caught_up
            self.p2p.set_direct_peers(validator_peer_ids(keys), penalize_others=caught_up)

    def _may_change_candidates(self, block: Block) -> bool:
        """Whether ``block`` can change who is a staking candidate: a staking transaction, or an
        epoch's end (and so the application's own set changes, jailing included, around it)."""
        assert self.app is not None
        params = self.app.params
        return params.staking is not None and (is_epoch_end(block.header.height, params.epoch_length)
                                               or any(stx.tx.kind in STAKING_KINDS for stx in block.txs))

    def _log_membership(self, height: int) -> None:
        """Say when the set that signs the next height gains or loses our key (an epoch boundary)."""
        member = self.is_validator
        if member != self._was_validator:
            self._was_validator = member
            (log.info if member else log.warning)(
                "from height %d this node %s the validator set (%s)", height + 1,
                "is in" if member else "is no longer in", address_to_text(address_of(self.validator_public_key)))

    def _on_fatal(self, exc: BaseException) -> None:
        """The consensus driver broke an invariant: stop the node, don't limp on."""
        self.fatal = exc
        self._stop.set()

    def _on_commit(self, block: Block) -> None:
        self._update_direct_peers(block)
        self._log_membership(block.header.height)
        self._maybe_periodic_snapshot(block.header.height)
        self.metrics.observe_commit(time_ms=block.header.time_ms, size=block.size, txs=len(block.txs))
        if self.ws_hub is not None:
            self.ws_hub.on_commit(block)
        try:
            self.risk.observe_block(block)
        except Exception:  # local policy: a history bug must never stop commits
            log.exception("risk history update failed at height %d", block.header.height)
        log.info(
            "committed height=%d txs=%d hash=%s app=%s",
            block.header.height,
            len(block.txs),
            block.hash.hex()[:16],
            block.header.app_hash.hex()[:16],
        )


def take_tx_batch(queue: collections.deque[bytes], max_txs: int) -> list[bytes]:
    """Pop the next gossip batch off ``queue``: at most ``max_txs`` txs whose
    encoded frame, framing included, is at most MAX_TX_BATCH_FRAME (what
    every receiver accepts).  A tx too large for a frame of its own cannot
    occur (genesis caps max_tx_bytes far below it) and is dropped, not sent."""
    batch: list[bytes] = []
    items = 0
    while queue and len(batch) < max_txs:
        item = tx_batch_item_bytes(queue[0])
        if tx_batch_frame_bytes(len(batch) + 1, items + item) > MAX_TX_BATCH_FRAME:
            if batch:
                break
            dropped = queue.popleft()
            log.error("not gossiping a %d-byte tx: over the %d-byte batch frame", len(dropped), MAX_TX_BATCH_FRAME)
            continue
        batch.append(queue.popleft())
        items += item
    return batch


def run_node(home: Home, config: NodeConfig | None = None) -> None:
    config = config or home.load_config()
    log_context = configure_logging(config, home)
    limit = raise_descriptor_limit()
    log.debug("descriptor limit %d", limit)  # also in the json-rpc line once started
    node = Node(home, config)
    node.log_context = log_context
    asyncio.run(node.run_until_signalled())
    if node.fatal is not None:
        raise SystemExit(f"node {config.name} halted: consensus driver failed: {node.fatal!r}")


