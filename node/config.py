"""Node configuration (TOML) and the home directory layout.

A node's home holds everything it owns::

    HOME/config/node.toml       this file's schema
    HOME/config/genesis.json    the chain's genesis
    HOME/config/node_key.json   the validator / libp2p identity key
    HOME/data/state/            LevelDB state store (created by init only)
    HOME/data/initialised.json  marker written by init: this home has a store
    HOME/data/sign_state.json   what this validator signed last (node.signguard)
    HOME/data/consensus.wal     consensus write-ahead log
    HOME/data/audit.log         signed, hash-chained audit log (node.audit)
    HOME/config/admin_totp.json the admin API's TOTP secret (``qenexd admin enroll``; node.admin_auth)
    HOME/data/admin_totp_used.json  the last TOTP time step accepted (no replay across restarts)
    HOME/data/restored.json     written by ``qenexd snapshot restore`` (node.snapshot, node.homecheck)
    HOME/snapshots/             snapshots the node takes every ``[snapshot] interval_blocks``
    HOME/keyring/NAME.json      user keys (``qenexd keys``)

Files that may hold secrets (node.toml with the admin token, keys, the sign
state) are written 0600 through ``state.keyfile.write_private_file``.
"""

from __future__ import annotations

import stat
import tomllib
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import platformdirs
import tomli_w

from node.errors import ConfigError
from state.keyfile import write_private_file

# The admin token guards the admin API (node.admin); a short one is guessable.
MIN_ADMIN_TOKEN_LEN = 32


def default_home() -> Path:
    """The node home when ``--home`` is not given: the platform's user data directory
    (platformdirs: ``$XDG_DATA_HOME/qenexd`` or ``~/.local/share/qenexd`` on Linux,
    ``~/Library/Application Support/qenexd`` on macOS, ``%LOCALAPPDATA%\\qenexd`` on Windows)."""
    return Path(platformdirs.user_data_dir("qenexd", appauthor=False))


@dataclass(frozen=True, slots=True)
class P2PSection:
    listen_host: str = "127.0.0.1"
    listen_port: int = 26656
    bootstrap: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RPCSection:
    listen_host: str = "127.0.0.1"
    listen_port: int = 26657
    max_request_bytes: int = 1024 * 1024
    max_batch: int = 100
    # Concurrent connections (lowered to fit the descriptor limit, node.rpc_server)
    # and the deadline for each request's headers, and then for its answer.
    max_connections: int = 256
    request_timeout_ms: int = 10_000
    # WebSocket subscriptions on GET /ws (node.ws); 0 turns /ws off.  Each
    # client holds one connection (at most half the connection cap).
    ws_max_clients: int = 128
    ws_max_subscriptions: int = 32
    # The most gas one qenex_callContract may burn (node.rpc_contracts): contract code runs on the
    # event loop, so this bounds how long a query holds it (10,000,000 is a few tens of ms).
    contract_query_gas: int = 10_000_000


@dataclass(frozen=True, slots=True)
class ConsensusSection:
    timeout_base_ms: int = 2000
    timeout_increment_ms: int = 1000
    timeout_max_ms: int = 30000
    # A proposer with pending transactions waits at least this long after the
    # previous commit (lets a batch form); with none, up to the empty interval.
    min_block_interval_ms: int = 100
    empty_block_interval_ms: int = 1000
    rebroadcast_ms: int = 1000
    # TEST ONLY (node.misbehaviour): from this height on (0 = never), every COMMIT vote this
    # validator sends is followed by a conflicting one for another block, signed with its key past
    # slashing protection, so that tests can prove evidence and slashing on live processes.  A node
    # refuses to start with it unless the genesis marks the chain as a test chain.
    double_sign_from_height: int = 0


@dataclass(frozen=True, slots=True)
class MempoolSection:
    # Pending transactions: a bound in time as much as in memory (10,000 is 5 s of the 2,000/s target,
    # 12-15 s of what this machine finalizes); past it admission refuses -32001 instead of letting
    # finality grow without bound (50,000 held 45,000 at twice the sustainable rate, finality 33 s).
    # CometBFT's default is 5,000, geth's 4,096 pending + 1,024 queued.
    max_txs: int = 10_000
    max_bytes: int = 64 * 1024 * 1024
    max_per_account: int = 1000
    # The queued (future-nonce) area, beside the pending runs (node/mempool.py): at most this many
    # transactions in all, this many per sender (each a nonce its pending run could reach: below its
    # committed nonce + max_per_account); one not promoted within ``queued_max_blocks`` committed
    # blocks is dropped.
    max_queued: int = 5_000
    max_queued_per_account: int = 64
    queued_max_blocks: int = 600
    # A transaction replacing a pending or queued one (same sender, same nonce) pays at least this
    # many percent more per gas.
    replace_bump_percent: int = 10
    gossip_batch_txs: int = 500
    gossip_interval_ms: int = 50


@dataclass(frozen=True, slots=True)
class RiskSection:
    """The mempool risk hook (node.risk); local admission policy, never block validity.

    ``model_dir``: a model version directory (``qenexd risk train --out``),
    relative to the home's config dir unless absolute; "" = no model, and
    ``fallback`` decides: "admit" (admit unscored) or "rules" (flag a
    transfer of > 90 % of the balance to a new receiver for review).
    ``admin_host``/``admin_port``/``admin_token``: the old place of the admin
    server's settings, still read when ``[admin]`` sets neither port nor token
    (``NodeConfig.admin_settings``); setting both places is refused.
    ``market_model``: the pool price predictor's .npz (``qenexd risk
    market-train``), same path rule; "" = qenex_predictPrice answers -32022.
    """

    model_dir: str = ""
    market_model: str = ""
    review_threshold: float = 0.5
    reject_threshold: float = 0.9
    fallback: str = "admit"
    admin_host: str = "127.0.0.1"
    admin_port: int = 0
    admin_token: str = ""


@dataclass(frozen=True, slots=True)
class AdminSection:
    """The admin API (node.admin): loopback ``host``/``port`` (0 = off), and a bearer ``token``
    of at least 32 printable characters; state-changing calls also need a TOTP code."""

    host: str = "127.0.0.1"
    port: int = 0
    token: str = ""


@dataclass(frozen=True, slots=True)
class MetricsSection:
    """Prometheus endpoint (node.metrics): ``port`` 0 = off.  A host other
    than loopback exposes the node's internals; refused unless
    ``allow_non_loopback`` says so."""

    host: str = "127.0.0.1"
    port: int = 0
    allow_non_loopback: bool = False


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


@dataclass(frozen=True, slots=True)
class LogSection:
    """Logging (node.logs).  ``level`` "" = the top-level ``log_level``;
    ``levels`` per logger name (``"qenex.p2p" = "debug"``); ``file``
    relative to the home ("" = no file), rotated at ``max_bytes`` keeping
    ``backups`` old files."""

    format: str = "text"
    level: str = ""
    file: str = "logs/qenexd.log"
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5
    levels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class SignerSection:
    """Where the validator key lives: "local" (the node key in this home) or "remote" (``qenexd signer start``)."""

    mode: str = "local"
    address: str = ""  # unix:/path/to.sock or tcp://127.0.0.1:PORT
    public_key: str = ""  # 0x-hex Ed25519 key the signer authenticates with
    validator_public_key: str = ""  # 0x-hex validator key the signer holds (its signatures are checked)
    timeout_ms: int = 2000
    retry_ms: int = 1000


@dataclass(frozen=True, slots=True)
class StateSection:
    """The state store.  ``history_blocks``: how many blocks back the state can be
    queried (``qenex_getAccount`` etc. with a height; state.history); 0 = archive,
    every height kept.  Lowering it prunes the older history gradually."""

    history_blocks: int = 10_000


@dataclass(frozen=True, slots=True)
class SnapshotSection:
    """Periodic state snapshots (node.snapshot) into ``HOME/snapshots/``:
    one every ``interval_blocks`` committed blocks (0 = off), the last
    ``keep`` kept."""

    interval_blocks: int = 0
    keep: int = 3


@dataclass(frozen=True, slots=True)
class NodeConfig:
    name: str = "node"
    log_level: str = "INFO"
    p2p: P2PSection = field(default_factory=P2PSection)
    rpc: RPCSection = field(default_factory=RPCSection)
    consensus: ConsensusSection = field(default_factory=ConsensusSection)
    mempool: MempoolSection = field(default_factory=MempoolSection)
    risk: RiskSection = field(default_factory=RiskSection)
    admin: AdminSection = field(default_factory=AdminSection)
    metrics: MetricsSection = field(default_factory=MetricsSection)
    log: LogSection = field(default_factory=LogSection)
    signer: SignerSection = field(default_factory=SignerSection)
    state: StateSection = field(default_factory=StateSection)
    snapshot: SnapshotSection = field(default_factory=SnapshotSection)

    def to_toml(self) -> str:
        data = asdict(self)
        data["p2p"]["bootstrap"] = list(self.p2p.bootstrap)
        data["log"]["levels"] = dict(self.log.levels)
        return tomli_w.dumps(data)

    @classmethod
    def from_toml(cls, text: str, *, source: str = "<config>") -> "NodeConfig":
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: invalid TOML: {exc}") from exc
        config = _build(cls, data, source)
        _check_risk(config.risk, source)
        _check_admin(config, source)
        _check_metrics(config.metrics, source)
        _check_log(config, source)
        _check_signer(config.signer, source)
        if config.state.history_blocks >= 2**63:
            raise ConfigError(f"{source}: state.history_blocks must be below 2**63 (0 = keep every height)")
        if config.rpc.contract_query_gas < 1:
            raise ConfigError(f"{source}: rpc.contract_query_gas must be at least 1, got {config.rpc.contract_query_gas}")
        if config.snapshot.keep < 1:
            raise ConfigError(f"{source}: snapshot.keep must be at least 1, got {config.snapshot.keep}")
        return config

    @property
    def uses_legacy_admin_keys(self) -> bool:
        return bool(self.risk.admin_port or self.risk.admin_token)

    def admin_settings(self) -> AdminSection:
        """Where the admin API listens and its token: ``[admin]``, or the old ``[risk] admin_*`` keys."""
        if self.uses_legacy_admin_keys and not (self.admin.port or self.admin.token):
            return AdminSection(host=self.risk.admin_host, port=self.risk.admin_port, token=self.risk.admin_token)
        return self.admin


def _check_admin(config: NodeConfig, source: str) -> None:
    admin = config.admin
    if (admin.port or admin.token) and config.uses_legacy_admin_keys:
        raise ConfigError(f"{source}: the admin API is configured twice ([admin] and the old [risk] admin_port/"
                          f"admin_token): keep [admin] port/token and remove the [risk] admin_* keys")
    _check_admin_token(admin.token, "admin.token", source)
    if admin.port > 65535:
        raise ConfigError(f"{source}: admin.port must be in 0..65535 (0 = off), got {admin.port}")
    if admin.port and admin.host not in LOOPBACK_HOSTS:
        raise ConfigError(f"{source}: admin.host must be a loopback address, got {admin.host!r}")


def _check_admin_token(token: str, name: str, source: str) -> None:
    if token and (len(token) < MIN_ADMIN_TOKEN_LEN or not all(33 <= ord(c) <= 126 for c in token)):
        raise ConfigError(
            f"{source}: {name} must be at least {MIN_ADMIN_TOKEN_LEN} printable ASCII characters "
            f"without spaces (e.g. `python -c 'import secrets; print(secrets.token_hex(32))'`), "
            f"got {len(token)} characters"
        )


def _check_metrics(metrics: MetricsSection, source: str) -> None:
    if metrics.port > 65535:
        raise ConfigError(f"{source}: metrics.port must be in 0..65535 (0 = off), got {metrics.port}")
    if metrics.port and metrics.host not in LOOPBACK_HOSTS and not metrics.allow_non_loopback:
        raise ConfigError(
            f"{source}: metrics.host {metrics.host!r} is not a loopback address; metrics expose the node's "
            f"internals: set metrics.allow_non_loopback = true to serve them there anyway"
        )


def _check_log(config: NodeConfig, source: str) -> None:
    section = config.log
    if section.format not in LOG_FORMATS:
        raise ConfigError(f'{source}: log.format must be "text" or "json", got {section.format!r}')
    for name, level in (("log_level", config.log_level), ("log.level", section.level or "INFO"),
                        *((f"log.levels.{k!r}", v) for k, v in section.levels)):
        if level.upper() not in LOG_LEVELS:
            raise ConfigError(f"{source}: {name} must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    if section.max_bytes < 4096:
        raise ConfigError(f"{source}: log.max_bytes must be at least 4096, got {section.max_bytes}")
    if not 1 <= section.backups <= 100:
        raise ConfigError(f"{source}: log.backups must be in 1..100, got {section.backups}")


def _check_risk(risk: RiskSection, source: str) -> None:
    if risk.fallback not in ("admit", "rules"):
        raise ConfigError(f'{source}: risk.fallback must be "admit" or "rules", got {risk.fallback!r}')
    for name in ("review_threshold", "reject_threshold"):
        value = getattr(risk, name)
        if not 0.0 <= value <= 1.0:
            raise ConfigError(f"{source}: risk.{name} must be in [0, 1], got {value}")
    if risk.review_threshold > risk.reject_threshold:
        raise ConfigError(
            f"{source}: risk.review_threshold {risk.review_threshold} is above "
            f"risk.reject_threshold {risk.reject_threshold}"
        )
    _check_admin_token(risk.admin_token, "risk.admin_token", source)
    if risk.admin_port and risk.admin_host not in ("127.0.0.1", "::1", "localhost"):
        raise ConfigError(f"{source}: risk.admin_host must be a loopback address, got {risk.admin_host!r}")


def _check_signer(signer: SignerSection, source: str) -> None:
    if signer.mode not in ("local", "remote"):
        raise ConfigError(f'{source}: signer.mode must be "local" or "remote", got {signer.mode!r}')
    if signer.mode == "local":
        return
    if not signer.address.startswith(("unix:", "tcp://")):
        raise ConfigError(f"{source}: signer.address must be unix:/path or tcp://127.0.0.1:PORT, "
                          f"got {signer.address!r}")
    for name in ("public_key", "validator_public_key"):
        value = getattr(signer, name)
        try:
            ok = value.startswith("0x") and len(bytes.fromhex(value[2:])) == 32
        except ValueError:
            ok = False
        if not ok:
            raise ConfigError(f"{source}: signer.{name} must be a 0x-hex 32-byte Ed25519 key, got {value!r}")
    if signer.timeout_ms <= 0:
        raise ConfigError(f"{source}: signer.timeout_ms must be positive")


_SECTIONS = {
    "p2p": P2PSection,
    "rpc": RPCSection,
    "consensus": ConsensusSection,
    "mempool": MempoolSection,
    "risk": RiskSection,
    "admin": AdminSection,
    "metrics": MetricsSection,
    "log": LogSection,
    "signer": SignerSection,
    "state": StateSection,
    "snapshot": SnapshotSection,
}

LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _build(cls: type, data: dict[str, Any], source: str, prefix: str = "") -> Any:
    known = {f.name: f for f in fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{source}: unknown key(s) {sorted(prefix + k for k in unknown)}")
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name in _SECTIONS and cls is NodeConfig:
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: [{name}] must be a table")
            kwargs[name] = _build(_SECTIONS[name], value, source, prefix=f"{name}.")
            continue
        default = getattr(cls(), name)
        if cls is LogSection and name == "levels":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise ConfigError(f'{source}: log.levels must be a table of logger = "level"')
            kwargs[name] = tuple(sorted(value.items()))
            continue
        if isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ConfigError(f"{source}: {prefix}{name} must be a list of strings")
            value = tuple(value)
        elif isinstance(default, bool) != isinstance(value, bool) or not isinstance(value, type(default)):
            raise ConfigError(
                f"{source}: {prefix}{name} must be {type(default).__name__}, got {type(value).__name__}"
            )
        elif isinstance(default, int) and value < 0:
            raise ConfigError(f"{source}: {prefix}{name} must not be negative, got {value}")
        kwargs[name] = value
    return cls(**kwargs)


@dataclass(frozen=True, slots=True)
class Home:
    """Paths inside a node home directory."""

    root: Path

    @property
    def config_dir(self) -> Path:
        return self.root / "config"

    @property
    def config_file(self) -> Path:
        return self.config_dir / "node.toml"

    @property
    def genesis_file(self) -> Path:
        return self.config_dir / "genesis.json"

    @property
    def node_key_file(self) -> Path:
        return self.config_dir / "node_key.json"

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def state_dir(self) -> Path:
        return self.data_dir / "state"

    @property
    def wal_file(self) -> Path:
        return self.data_dir / "consensus.wal"

    @property
    def init_marker(self) -> Path:
        return self.data_dir / "initialised.json"

    @property
    def sign_state_file(self) -> Path:
        return self.data_dir / "sign_state.json"

    @property
    def audit_file(self) -> Path:
        return self.data_dir / "audit.log"

    @property
    def admin_totp_file(self) -> Path:
        return self.config_dir / "admin_totp.json"

    @property
    def admin_totp_used_file(self) -> Path:
        return self.data_dir / "admin_totp_used.json"

    @property
    def restore_note(self) -> Path:
        return self.data_dir / "restored.json"

    @property
    def snapshots_dir(self) -> Path:
        return self.root / "snapshots"

    @property
    def keyring_dir(self) -> Path:
        return self.root / "keyring"

    def load_config(self) -> NodeConfig:
        if not self.config_file.exists():
            raise ConfigError(f"no config at {self.config_file}: run `qenexd init --home {self.root}` first")
        return NodeConfig.from_toml(self.config_file.read_text(), source=str(self.config_file))

    def write_config(self, config: NodeConfig) -> None:
        self.config_dir.mkdir(parents=True, exist_ok=True)
        write_private_file(self.config_file, config.to_toml().encode("utf-8"))  # it may hold the admin token

    def config_warnings(self, config: NodeConfig) -> list[str]:
        """Why the config file is exposed: a secret in a file others can read."""
        try:
            mode = stat.S_IMODE(self.config_file.stat().st_mode)
        except OSError:
            return []
        if config.admin_settings().token and mode & 0o077:
            return [f"{self.config_file} holds the admin token and has mode {mode:04o}: "
                    f"readable by group/others; run chmod 600 {self.config_file}"]
        return []


def with_ports(config: NodeConfig, *, p2p_port: int, rpc_port: int) -> NodeConfig:
    return replace(
        config,
        p2p=replace(config.p2p, listen_port=p2p_port),
        rpc=replace(config.rpc, listen_port=rpc_port),
    )
