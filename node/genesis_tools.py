"""Create node homes: a single-validator chain, or an N-validator local testnet.

``write_testnet`` lays out::

    DIR/testnet.json            chain id, nodes {name, home, role, rpc, p2p, metrics, admin, address,
                                pubkey}, dev accounts
    DIR/nodeI/config/...        one home per validator (see node.config.Home)
    DIR/fullJ/config/...        one home per full node (``full_nodes``): not in genesis's set
    DIR/nodeI/config/risk/      its copy of the testnet's risk model (seeded, trained at init)
    DIR/nodeI/config/market.npz its copy of the pool price predictor (likewise)
    DIR/keys/NAME.json          UNENCRYPTED dev account keys (alice, bob, charlie)
    DIR/accounts.json           with ``accounts=N``: N more genesis-funded dev accounts for load
                                generators (format below; ``load_dev_accounts`` reads it)

``accounts.json`` (``DEV_ACCOUNTS_FORMAT``), DEV-ONLY: the keys are derived
from a public seed, so anyone can spend these accounts on any chain that
funds them::

    {"format": "qenex-dev-accounts/1", "warning": "...",
     "seed": "qenex-dev-accounts", "derivation": "ed25519 seed = sha256(utf8(seed + '/' + str(index)))",
     "token": "QNX", "balance": "<base units, a decimal string>",
     "accounts": [{"index": 0, "address": "qnx1...", "secret": "<64 hex: the ed25519 seed>"}, ...]}

Paths inside testnet.json are relative to DIR.  Node i listens on
``base_port + 2*i`` (p2p) and ``base_port + 2*i + 1`` (RPC), and serves
Prometheus metrics on ``base_port + 2*N + i`` (N nodes: the validators, then
the full nodes; ``testnet_ports``) and its admin API on ``base_port + 3*N + i``
(token in its node.toml; state changes also need ``qenexd admin enroll --home
DIR/nodeI``), all on 127.0.0.1: a testnet takes 4*N consecutive ports.  With
``full_nodes=M`` the nodes after the validators are ``DIR/full0`` ... (``"role":
"full"`` in testnet.json, beside ``"validator"``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import secrets
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from node.config import AdminSection, Home, MetricsSection, NodeConfig, P2PSection, RiskSection, RPCSection
from node.homecheck import init_home_state
from p2p import InvalidPeerAddress, parse_peer_address, peer_id_from_seed
from state.amounts import QNX_DECIMALS
from state.crypto import PrivateKey, address_to_text
from state.errors import StateError
from state.genesis import ContractParams, Genesis, GenesisAccount, GenesisValidator, Params, StakingParams
from state.keyfile import load_keyfile, save_keyfile

DEV_ACCOUNTS = ("alice", "bob", "charlie")
DEV_BALANCE = 1_000_000 * 10**QNX_DECIMALS
# ``testnet init --accounts N``: N funded accounts for load generators (bench/load.py)
DEV_ACCOUNTS_FILE = "accounts.json"
DEV_ACCOUNTS_FORMAT = "qenex-dev-accounts/1"
DEV_ACCOUNTS_SEED = "qenex-dev-accounts"  # public: these keys are for local testnets only
LOAD_BALANCE = 100_000 * 10**QNX_DECIMALS
MAX_LOAD_ACCOUNTS = 10_000  # genesis stays a few MB
VALIDATOR_BALANCE = 10_000 * 10**QNX_DECIMALS
DEFAULT_POWER = 100
RISK_MODEL_DIR = "risk"  # under each node's config dir
MARKET_MODEL = "market.npz"  # likewise
RISK_SEED = 0
# QENEX_TESTNET_RISK=off at init: nodes without a risk model (fallback
# "admit"), e.g. for bench/load.py, whose funding fan-out of dust amounts to
# fresh accounts is the dust-probing pattern the model refuses.
RISK_ENV = "QENEX_TESTNET_RISK"


@functools.cache
def _trained_risk_models() -> Path:
    """The testnet's risk and market models (seeded; about 15 s to train).

    Trained once per machine and code version: the seed and the code fix the
    result, so the trained files are kept in a cache directory keyed by a
    hash of node/risk's sources and the seed (under the system temp dir,
    ``qenexd-risk-<uid>/``) and copied to every node of every testnet.  A
    clean clone trains them at its first ``testnet init``.
    """

    from node.risk.market import train_market  # numpy work: only when a testnet is made
    from node.risk.train import train_to_store

    sources = Path(__file__).resolve().parent / "risk"
    digest = hashlib.sha256(str(RISK_SEED).encode())
    for path in sorted(sources.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    cache = Path(tempfile.gettempdir()) / f"qenexd-risk-{os.getuid()}" / digest.hexdigest()[:20]
    if (cache / MARKET_MODEL).is_file() and (cache / RISK_MODEL_DIR / "CURRENT").is_file():
        return cache
    cache.parent.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="train-", dir=cache.parent))
    try:
        train_to_store(directory / RISK_MODEL_DIR, seed=RISK_SEED, evaluate_held_out=False)
        train_market(directory / MARKET_MODEL, seed=RISK_SEED)
        try:
            directory.rename(cache)  # atomic: another process may have won the race, then use its copy
        except OSError:
            shutil.rmtree(directory, ignore_errors=True)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return cache


def dev_account_key(index: int, seed: str = DEV_ACCOUNTS_SEED) -> PrivateKey:
    """Dev account ``index`` of ``seed``: ed25519 seed sha256(utf8(f"{seed}/{index}")).  DEV ONLY."""
    return PrivateKey(hashlib.sha256(f"{seed}/{index}".encode()).digest())


def dev_accounts_document(keys: list[PrivateKey], seed: str, balance: int) -> dict[str, Any]:
    return {
        "format": DEV_ACCOUNTS_FORMAT,
        "warning": "DEV ONLY: these keys are derived from a public seed; never fund them on a real chain",
        "seed": seed,
        "derivation": "ed25519 seed = sha256(utf8(seed + '/' + str(index)))",
        "token": "QNX",
        "balance": str(balance),
        "accounts": [{"index": i, "address": address_to_text(k.address), "secret": k.seed.hex()}
                     for i, k in enumerate(keys)],
    }


def load_dev_accounts(directory: Path) -> list[PrivateKey]:
    """The funded dev accounts of the testnet in ``directory`` (its accounts.json), in index order.

    Raises ValueError naming the file and the entry when it is missing, of
    another format, or an entry's secret does not give its address.
    """
    path = Path(directory) / DEV_ACCOUNTS_FILE
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(f"{path} does not exist: create the testnet with `qenexd testnet init --accounts N`") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not readable JSON: {exc}") from None
    if (not isinstance(doc, dict) or doc.get("format") != DEV_ACCOUNTS_FORMAT
            or not isinstance(doc.get("accounts"), list)):
        raise ValueError(f"{path} is not a {DEV_ACCOUNTS_FORMAT} file")
    keys = []
    for i, entry in enumerate(doc["accounts"]):
        try:
            key = PrivateKey(bytes.fromhex(entry["secret"]))
            ok = entry["index"] == i and address_to_text(key.address) == entry["address"]
        except (TypeError, KeyError, ValueError) as exc:
            raise ValueError(f"{path}: account entry {i} is malformed ({exc})") from None
        if not ok:
            raise ValueError(f"{path}: account entry {i}'s secret does not give its address {entry.get('address')!r}")
        keys.append(key)
    return keys


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _multiaddr(host: str, port: int, seed: bytes) -> str:
    return f"/ip4/{host}/tcp/{port}/p2p/{peer_id_from_seed(seed)}"


def _write_home(home: Home, config: NodeConfig, genesis: Genesis, node_key: PrivateKey,
                genesis_text: str | None = None) -> None:
    # The store first: it refuses a home that already has one, before anything is overwritten.
    init_home_state(home, genesis, node_key.address)
    home.write_config(config)  # 0600: it may hold the admin token
    home.genesis_file.write_text(genesis.to_json() if genesis_text is None else genesis_text)
    # Unencrypted: the node starts unattended.  It says so in the file, and
    # the node warns about it at every start.
    save_keyfile(home.node_key_file, node_key, None)
    home.keyring_dir.mkdir(parents=True, exist_ok=True)


def default_params(*, contracts: bool = True) -> Params:
    """What ``qenexd init`` and ``qenexd testnet init`` write: the default Params with staking (issue 10)
    and, unless ``contracts`` is False (``--no-contracts``), WebAssembly contracts (issue 11) on."""
    return Params(staking=StakingParams(), contracts=ContractParams() if contracts else None)


def write_single_node_home(home: Home, *, chain_id: str, name: str, p2p_port: int, rpc_port: int,
                           contracts: bool = True) -> dict[str, Any]:
    """A one-validator chain whose validator key also holds the funds (contracts on unless ``contracts``
    is False)."""
    key = PrivateKey.generate()
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time_ms=_now_ms(),
        validators=(GenesisValidator(name=name, pubkey=key.public_key, power=DEFAULT_POWER),),
        tokens=(),
        accounts=(GenesisAccount(address=key.address, balances={"QNX": DEV_BALANCE}),),
        params=default_params(contracts=contracts),
    )
    config = NodeConfig(
        name=name,
        p2p=P2PSection(listen_port=p2p_port),
        rpc=RPCSection(listen_port=rpc_port),
    )
    _write_home(home, config, genesis, key)
    save_keyfile(home.keyring_dir / "validator.json", key, None)
    return {
        "home": str(home.root),
        "chain_id": chain_id,
        "validator": address_to_text(key.address),
        "rpc": f"http://127.0.0.1:{rpc_port}/",
        "funded_key": str(home.keyring_dir / "validator.json"),
        "warning": "the validator key and keyring/validator.json are UNENCRYPTED dev keys (mode 0600)",
    }


# A genesis file read by ``qenexd init --genesis``: far above the few MB of a testnet's 10,000 load accounts.
MAX_GENESIS_FILE_BYTES = 64 * 1024 * 1024


def read_genesis_file(path: Path) -> tuple[Genesis, str]:
    """The genesis in ``path`` and its text, validated as a start would (``Genesis.from_json``);
    ValueError naming the file and what is wrong with it."""
    try:
        size = path.stat().st_size
        if not path.is_file():
            raise ValueError(f"genesis file {path} is not a regular file")
        if size > MAX_GENESIS_FILE_BYTES:
            raise ValueError(f"genesis file {path} is {size} bytes, over the {MAX_GENESIS_FILE_BYTES}-byte limit")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"genesis file {path} does not exist") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"genesis file {path} is not UTF-8 text: {exc}") from None
    except OSError as exc:
        raise ValueError(f"genesis file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        return Genesis.from_json(text), text
    except StateError as exc:
        raise ValueError(f"genesis file {path} is not a valid genesis: {exc}") from None


def check_peer_addresses(peers: list[str] | tuple[str, ...], own_peer_id: str | None = None) -> tuple[str, ...]:
    """The bootstrap peers as given, each a multiaddr ending in /p2p/<peer id> (what the p2p layer
    dials), duplicates dropped; ValueError naming the first bad one."""
    out: list[str] = []
    for address in peers:
        try:
            info = parse_peer_address(address)
        except InvalidPeerAddress as exc:
            raise ValueError(f"--peer {address!r} is not a multiaddr like /ip4/HOST/tcp/PORT/p2p/PEER_ID: "
                             f"{str(exc).split(': ', 1)[-1]}") from None
        parts = address.split("/")
        # Exactly /ip4|ip6/HOST/tcp/PORT/p2p/ID: what the p2p layer dials (no DNS, websockets or UDP).
        if len(parts) != 7 or parts[0] or parts[1] not in ("ip4", "ip6") or parts[3] != "tcp" or parts[5] != "p2p":
            raise ValueError(f"--peer {address!r} must be exactly /ip4/HOST/tcp/PORT/p2p/PEER_ID (or /ip6/...): "
                             "the p2p layer dials TCP to an IP address only")
        if parts[2] in ("0.0.0.0", "::") or not parts[4].isdigit() or not 1 <= int(parts[4]) <= 65535:
            raise ValueError(f"--peer {address!r} needs a host that can be dialled and a port in 1..65535")
        if own_peer_id is not None and info.peer_id.to_base58() == own_peer_id:
            raise ValueError(f"--peer {address!r} is this node itself")
        if address not in out:
            out.append(address)
    return tuple(out)


def write_full_node_home(home: Home, *, genesis_file: Path, peers: list[str] | tuple[str, ...], name: str,
                         p2p_port: int, rpc_port: int, chain_id: str | None = None) -> dict[str, Any]:
    """A home that follows an existing chain: ``genesis_file`` copied in (validated), ``peers`` as
    its p2p bootstrap, a fresh node key that is in no validator set, RPC on.

    Everything is checked before anything is written, so bad input leaves no half-made home.  The
    node syncs from its peers and signs nothing until the application's set holds its key; its
    operator registers it with ``qenexd tx validator create --consensus-key HOME/config/node_key.json``
    (that key signs the proof of its registration).

    A home that already holds a node key keeps it (a ``--force`` over a validator's home must not
    throw its key away); only a home without one gets a fresh key."""
    genesis, text = read_genesis_file(genesis_file)
    if chain_id is not None and chain_id != genesis.chain_id:
        raise ValueError(f"--chain-id {chain_id!r} is not the chain of {genesis_file} ({genesis.chain_id!r}); "
                         "leave --chain-id out: a full node takes the chain id from the genesis")
    if not peers:
        raise ValueError("a node following a chain needs at least one --peer to sync from "
                         "(a validator's /ip4/HOST/tcp/PORT/p2p/PEER_ID)")
    key = PrivateKey.generate()
    if home.node_key_file.exists():
        try:
            key = load_keyfile(home.node_key_file, None)
        except StateError as exc:
            raise ValueError(f"{home.node_key_file} exists and cannot be read ({exc}); move it away to make a "
                             "new key, or restore it") from None
    bootstrap = check_peer_addresses(peers, own_peer_id=peer_id_from_seed(key.seed))
    config = NodeConfig(
        name=name,
        p2p=P2PSection(listen_port=p2p_port, bootstrap=bootstrap),
        rpc=RPCSection(listen_port=rpc_port),
    )
    _write_home(home, config, genesis, key, genesis_text=text)
    return {
        "home": str(home.root),
        "chain_id": genesis.chain_id,
        "genesis_hash": "0x" + genesis.hash.hex(),
        "role": "full",
        "address": address_to_text(key.address),
        "pubkey": "0x" + key.public_key.hex(),
        "p2p": _multiaddr(config.p2p.listen_host, p2p_port, key.seed),
        "peers": list(bootstrap),
        "rpc": f"http://127.0.0.1:{rpc_port}/",
        "next": f"qenexd start --home {home.root}; to validate: qenexd tx validator create --from OPERATOR "
                f"--consensus-key {home.node_key_file} --moniker {name} --self-bond AMOUNT",
    }


PORTS_PER_NODE = 4  # p2p, RPC, metrics, admin


def testnet_ports(base_port: int, nodes: int) -> list[tuple[int, int, int, int]]:
    """(p2p, rpc, metrics, admin) for each of ``nodes`` nodes (validators first, then full nodes):
    the first two interleaved as before, then metrics, then admin; 4 * nodes consecutive ports."""
    return [(base_port + 2 * i, base_port + 2 * i + 1, base_port + 2 * nodes + i,
             base_port + 3 * nodes + i) for i in range(nodes)]


def write_testnet(
    directory: Path,
    *,
    validators: int,
    chain_id: str,
    base_port: int,
    host: str = "127.0.0.1",
    powers: list[int] | None = None,
    consensus_overrides: dict[str, int] | None = None,
    accounts: int = 0,
    params: Params | None = None,
    full_nodes: int = 0,
    test_chain: bool = True,
    contracts: bool = True,
) -> dict[str, Any]:
    """``params`` default: ``default_params`` (staking on, and contracts unless ``contracts`` is False;
    ``params`` given, it is used as is).  ``full_nodes``: that many
    more nodes (``fullJ``, after the validators in ``nodes`` with ``"role": "full"``) whose keys are in
    no validator set and unfunded: they bootstrap to every validator, sync and serve RPC, and sign
    once a ``validator create`` (``--consensus-key``: their home's node_key.json) puts them in the set.  A local
    testnet's genesis is marked ``test_chain`` (its dev accounts' keys are public): test-only
    behaviour such as node.misbehaviour is allowed on it and on no other chain."""
    if validators < 1:
        raise ValueError("a testnet needs at least one validator")
    if full_nodes < 0:
        raise ValueError(f"--full-nodes {full_nodes} is negative")
    last_port = base_port + PORTS_PER_NODE * (validators + full_nodes) - 1
    if last_port > 65535:
        raise ValueError(f"{validators + full_nodes} nodes from base port {base_port} need ports up to {last_port}, "
                         "over 65535: lower --base-port")
    if not 0 <= accounts <= MAX_LOAD_ACCOUNTS:
        raise ValueError(f"--accounts {accounts} is outside [0, {MAX_LOAD_ACCOUNTS}]")
    powers = powers or [DEFAULT_POWER] * validators
    if len(powers) != validators:
        raise ValueError(f"{len(powers)} powers given for {validators} validators")
    directory.mkdir(parents=True, exist_ok=True)
    node_keys = [PrivateKey.generate() for _ in range(validators)]
    account_keys = {name: PrivateKey.generate() for name in DEV_ACCOUNTS}

    load_keys = [dev_account_key(i) for i in range(accounts)]
    funded = [GenesisAccount(address=k.address, balances={"QNX": DEV_BALANCE}) for k in account_keys.values()]
    funded += [GenesisAccount(address=k.address, balances={"QNX": VALIDATOR_BALANCE}) for k in node_keys]
    funded += [GenesisAccount(address=k.address, balances={"QNX": LOAD_BALANCE}) for k in load_keys]
    genesis = Genesis(
        chain_id=chain_id,
        genesis_time_ms=_now_ms(),
        validators=tuple(
            GenesisValidator(name=f"node{i}", pubkey=k.public_key, power=powers[i]) for i, k in enumerate(node_keys)
        ),
        tokens=(),
        accounts=tuple(funded),
        params=params if params is not None else default_params(contracts=contracts),
        test_chain=test_chain,
    )

    with_risk = os.environ.get(RISK_ENV, "on").lower() not in ("off", "0", "no")
    model_src = _trained_risk_models() if with_risk else None
    full_keys = [PrivateKey.generate() for _ in range(full_nodes)]
    ports = testnet_ports(base_port, validators + full_nodes)
    addrs = [_multiaddr(host, p2p, k.seed) for (p2p, *_), k in zip(ports, node_keys + full_keys)]
    validator_addrs = addrs[:validators]
    nodes = []
    for i, key in enumerate(node_keys + full_keys):
        full = i >= validators
        name = f"full{i - validators}" if full else f"node{i}"
        p2p_port, rpc_port, metrics_port, admin_port = ports[i]
        config = NodeConfig(
            name=name,
            # Validators dial each other; a full node dials every validator (there is no peer
            # discovery, and once it validates it must reach each of them directly).
            p2p=P2PSection(listen_host=host, listen_port=p2p_port,
                           bootstrap=tuple(a for j, a in enumerate(validator_addrs) if j != i)),
            rpc=RPCSection(listen_host=host, listen_port=rpc_port),
            metrics=MetricsSection(host=host, port=metrics_port),
            risk=RiskSection(model_dir=RISK_MODEL_DIR, market_model=MARKET_MODEL) if with_risk else RiskSection(),
            admin=AdminSection(host=host, port=admin_port, token=secrets.token_hex(32)),
        )
        if consensus_overrides:
            config = replace(config, consensus=replace(config.consensus, **consensus_overrides))
        _write_home(Home(directory / name), config, genesis, key)
        if model_src is not None:
            shutil.copytree(model_src, Home(directory / name).config_dir, dirs_exist_ok=True)
        nodes.append({"name": name, "home": name, "role": "full" if full else "validator",
                      "rpc": f"http://{host}:{rpc_port}/", "p2p": addrs[i],
                      "metrics": f"http://{host}:{metrics_port}/metrics", "admin": f"http://{host}:{admin_port}/",
                      "address": address_to_text(key.address), "pubkey": "0x" + key.public_key.hex()})

    keys_dir = directory / "keys"
    keys_dir.mkdir(exist_ok=True)
    account_info = {}
    for name, key in account_keys.items():
        save_keyfile(keys_dir / f"{name}.json", key, None)
        account_info[name] = {"address": address_to_text(key.address), "keyfile": f"keys/{name}.json"}

    manifest = {
        "chain_id": chain_id,
        "nodes": nodes,
        "accounts": account_info,
        "note": "Dev account key files under keys/ are UNENCRYPTED: for local testing only.",
    }
    if load_keys:
        path = directory / DEV_ACCOUNTS_FILE
        path.write_text(json.dumps(dev_accounts_document(load_keys, DEV_ACCOUNTS_SEED, LOAD_BALANCE), indent=1) + "\n")
        path.chmod(0o600)
        manifest["load_accounts"] = {"file": DEV_ACCOUNTS_FILE, "count": len(load_keys),
                                     "balance": str(LOAD_BALANCE)}
    (directory / "testnet.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest
