"""State at past heights (state.history): answers against an independent replay, pruning bounds,
old stores, the RPC's height rules and the [state] setting."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from node.config import NodeConfig
from node.errors import ConfigError
from node.jsonrpc import HEIGHT_PRUNED, INVALID_PARAMS, NOT_FOUND, RPCError
from node.rpc import build_methods
from state import history, keys
from state.amounts import QNX
from state.app import Application
from state.crypto import address_to_text
from state.errors import HeightAboveHead, HeightPruned, StateInvariantBroken
from state.kv import LevelDBKV, MemoryKV
from state.payloads import PoolAdd, PoolCreate, Swap, TokenCreate, TokenMint, Transfer
from state.pools import pool_account
from state.testing import ONE_QNX, STUB_VERIFIER, Chain, dev_key, make_genesis, stub_cert
from tests.rpc_fixtures import rpc_context

VALIDATOR = dev_key("hist-validator")
USERS = [dev_key(f"hist-user-{i}") for i in range(4)]
SYMBOLS = ["AAA", "BBB", "CCC"]
GENESIS = make_genesis(validators=(VALIDATOR,), funded=USERS, balance=1_000 * ONE_QNX)
POOL_IDS = [f"{QNX}/{s}" if QNX < s else f"{s}/{QNX}" for s in SYMBOLS]
ADDRESSES = [u.address for u in USERS] + [VALIDATOR.address] + [pool_account(p) for p in POOL_IDS]


def new_app(kv: Any = None, *, history_blocks: int = history.DEFAULT_HISTORY_BLOCKS) -> Application:
    return Application(MemoryKV() if kv is None else kv, GENESIS, commit_verifier=STUB_VERIFIER,
                       history_blocks=history_blocks)


def answers(view: Any) -> dict[str, Any]:
    """Everything the height-taking queries read, from a StateView (or an Application at its head)."""
    return {
        "accounts": [view.account(a) for a in ADDRESSES],
        "tokens": view.tokens(),
        "token": [view.token(s) for s in SYMBOLS],
        "pools": view.pools(),
        "pool": [view.pool(p) for p in POOL_IDS],
        "positions": [view.pool_position(u.address, p) for u in USERS for p in POOL_IDS],
    }


# One operation: (kind, user, other user, symbol index, amount).
OPS = st.tuples(st.sampled_from(["transfer", "transfer_token", "create", "mint", "pool", "add", "swap"]),
                st.integers(0, 3), st.integers(0, 3), st.integers(0, 2), st.integers(1, 10**6))


def payload(op: tuple[str, int, int, int, int]) -> Any:
    kind, _, other, s, amount = op
    sym, to = SYMBOLS[s], USERS[other].address
    if kind == "transfer":
        return Transfer(to, QNX, amount)
    if kind == "transfer_token":
        return Transfer(to, sym, amount)
    if kind == "create":
        return TokenCreate(sym, f"{sym} token", 6, 10**9)
    if kind == "mint":
        return TokenMint(sym, to, amount)
    if kind == "pool":
        return PoolCreate(QNX, sym, 10**7 + amount, 10**7, 0)
    if kind == "add":
        return PoolAdd(QNX, sym, 10**6 + amount, 10**6, 0)
    return Swap(QNX, sym, amount, 0, 10**6) if amount % 2 else Swap(sym, QNX, amount, 0, 10**6)


def run_chain(app: Application, blocks: list[list[tuple[str, int, int, int, int]]],
              windows: dict[int, int] | None = None) -> dict[int, dict[str, Any]]:
    """Build and commit ``blocks`` on ``app``; replay each on an independent Application (no history
    read) and return its answers at its head after every block (and at genesis)."""
    replica = new_app(history_blocks=0)
    chain = Chain(app, VALIDATOR)
    expected = {0: answers(replica)}
    for ops in blocks:
        if windows and app.height in windows:
            app.set_history_blocks(windows[app.height])
        block, _ = chain.block([chain.tx(USERS[op[1]], payload(op)) for op in ops])
        replica.apply_block(block, stub_cert(block.height, block.hash))
        assert replica.app_hash == app.app_hash
        expected[replica.height] = answers(replica)
    return expected


def check_history(app: Application, expected: dict[int, dict[str, Any]]) -> None:
    for height, want in expected.items():
        if height < app.oldest_height:
            with pytest.raises(HeightPruned, match=f"oldest available height is {app.oldest_height}"):
                app.at(height)
        else:
            assert answers(app.at(height)) == want, f"state at height {height} (head {app.height})"
    with pytest.raises(HeightAboveHead):
        app.at(app.height + 1)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blocks=st.lists(st.lists(OPS, max_size=6), min_size=1, max_size=12),
       window=st.sampled_from([0, 1, 2, 3, 5, 50]), later=st.none() | st.tuples(st.integers(1, 11), st.integers(0, 4)))
def test_past_heights_match_an_independent_replay(blocks: list[Any], window: int, later: Any) -> None:
    app = new_app(history_blocks=window)
    windows = dict([later]) if later else {}
    expected = run_chain(app, blocks, windows=windows)
    check_history(app, expected)
    # The oldest height follows the window block by block (these short backlogs fit one block's budget).
    oldest, current = 0, window
    for height in range(1, len(blocks) + 1):
        current = windows.get(height - 1, current)
        if current:
            oldest = max(oldest, height - current)
    assert (app.history_blocks, app.oldest_height) == (current, oldest)


@settings(max_examples=200, deadline=None)
@given(steps=st.lists(st.dictionaries(st.sampled_from([b"b", b"b\x00", b"b\x00\xff", b"b\xff", b"b\x00\x00",
                                                          b"ba", b"b\x01", b"bb\x00"]),
                                       st.none() | st.binary(max_size=3), max_size=4), max_size=8),
       probe=st.sampled_from([b"b", b"b\x00", b"b\xff", b"ba"]))
def test_changelog_reads_keys_with_any_bytes(steps: list[dict[bytes, bytes | None]], probe: bytes) -> None:
    """Keys holding 0x00 and 0xFF, and keys that extend one another: every past value and scan is exact."""
    kv, state, snapshots = MemoryKV(), {}, [{}]
    for height, writes in enumerate(steps, start=1):
        batch: dict[bytes, bytes | None] = dict(writes)
        history.record(batch, height, [(k, state.get(k)) for k in sorted(writes)])
        kv.write_batch(batch)
        state = {k: v for k, v in {**state, **writes}.items() if v is not None}
        snapshots.append(dict(state))
    for height, snap in enumerate(snapshots):
        view = history.StateAt(kv, height)
        for key in (b"b", b"b\x00", b"b\x00\xff", b"b\xff", b"b\x00\x00", b"ba", b"b\x01", b"bb\x00"):
            assert view.get(key) == snap.get(key)
        assert list(view.iterate(probe)) == sorted((k, v) for k, v in snap.items() if k.startswith(probe))
        assert list(view.iterate_range(b"b\x00", b"ba", reverse=True)) == sorted(
            ((k, v) for k, v in snap.items() if b"b\x00" <= k < b"ba"), reverse=True)


class ReadCountingKV(MemoryKV):
    """Counts the pairs its scans hand out and its point reads."""

    def __init__(self) -> None:
        super().__init__()
        self.pairs = self.gets = 0

    def iterate_range(self, start: bytes, stop: bytes, *, reverse: bool = False) -> Any:
        for pair in super().iterate_range(start, stop, reverse=reverse):
            self.pairs += 1
            yield pair

    def get(self, key: bytes) -> bytes | None:
        self.gets += 1
        return super().get(key)


def test_a_past_scan_reads_only_what_its_caller_takes() -> None:
    """Taking the first pair of a past-height scan over a large range reads a few records, not the range
    (a page of qenex_getContractState at a past height must not pay for every key the contract ever had)."""
    n = 3_000
    kv, names = ReadCountingKV(), [b"b%05d" % i for i in range(n)]
    first = {k: b"v1" for k in names}
    history.record(first, 1, [(k, None) for k in names])
    kv.write_batch(first)
    second: dict[bytes, bytes | None] = {k: (b"v2" if i % 2 == 0 else None) for i, k in enumerate(names)}
    history.record(second, 2, [(k, b"v1") for k in names])  # every key overwritten or deleted at 2
    kv.write_batch(second)
    cases = [(1, False, (names[0], b"v1")), (1, True, (names[-1], b"v1")),
             (2, False, (names[0], b"v2")), (2, True, (names[-2], b"v2"))]  # names[-1] is gone at 2
    for height, reverse, expected in cases:
        view = history.StateAt(kv, height)
        kv.pairs = kv.gets = 0
        scan = view.iterate_range(b"b", b"c", reverse=reverse)
        assert next(scan) == expected
        assert kv.pairs + kv.gets <= 12, (height, reverse, kv.pairs, kv.gets)
        scan.close()
    # and the whole scan is still exact (the changelog-only keys merged in, each key read once)
    assert list(history.StateAt(kv, 1).iterate(b"b")) == [(k, b"v1") for k in names]
    assert list(history.StateAt(kv, 2).iterate_range(b"b", b"c", reverse=True)) == \
        [(k, b"v2") for k in reversed(names[::2])]


def test_escaped_keys_keep_order_and_never_prefix_each_other() -> None:
    samples = [b"", b"\x00", b"\x00\x00", b"\x00\xff", b"\xff", b"a", b"a\x00", b"a\x00b", b"ab", b"\xff\x00"]
    for x in samples:
        for y in samples:
            ex, ey = keys.escape_key(x), keys.escape_key(y)
            assert (x < y) == (ex < ey)
            assert x == y or not ey.startswith(ex)


class CountingKV(MemoryKV):
    """Records what each write batch deletes from the changelog."""

    def __init__(self) -> None:
        super().__init__()
        self.deleted: list[tuple[int, int]] = []  # per batch: (changelog entries, index records)

    def write_batch(self, puts: Any, sync: bool = True) -> None:
        gone = [k for k, v in puts.items() if v is None]
        self.deleted.append((sum(k[:1] == keys.CHANGELOG for k in gone),
                             sum(k[:1] == keys.CHANGELOG_INDEX for k in gone)))
        super().write_batch(puts, sync)


def changelog_sizes(kv: MemoryKV) -> tuple[int, list[int]]:
    entries = sum(1 for _ in kv.iterate(keys.CHANGELOG))
    indexed = [keys.decode_height(k[1:]) for k, _ in kv.iterate(keys.CHANGELOG_INDEX)]
    return entries, indexed


def test_pruning_keeps_the_window_and_deletes_a_bounded_amount_per_block(monkeypatch: pytest.MonkeyPatch) -> None:
    kv = CountingKV()
    app = new_app(kv, history_blocks=0)  # archive first
    chain = Chain(app, VALIDATOR)
    for i in range(30):
        chain.block([chain.tx(USERS[i % 4], Transfer(USERS[(i + 1) % 4].address, QNX, 1 + i))])
    entries, indexed = changelog_sizes(kv)
    assert app.oldest_height == 0 and indexed == list(range(1, 31))
    per_height = entries // 30
    assert per_height * 30 == entries  # every block changed the same number of keys (fee, nonce, balances)

    # The window shrinks to 2: pruned at most 4 heights (or 2 heights' worth of keys) per block.
    monkeypatch.setattr(history, "PRUNE_MAX_HEIGHTS", 4)
    monkeypatch.setattr(history, "PRUNE_MAX_KEYS", 10_000)
    app.set_history_blocks(2)
    oldest = [app.oldest_height]
    while app.oldest_height < app.height - 2:
        kv.deleted.clear()
        chain.block([])
        (gone_entries, gone_index), = kv.deleted
        assert gone_index <= 4 and gone_entries <= 4 * per_height
        assert app.oldest_height - oldest[-1] <= 4
        oldest.append(app.oldest_height)
    assert len(oldest) > 5  # gradually, over several blocks
    monkeypatch.setattr(history, "PRUNE_MAX_KEYS", 2 * per_height)
    for i in range(5):  # steady state: exactly one height per block
        chain.block([chain.tx(USERS[i % 4], Transfer(USERS[(i + 2) % 4].address, QNX, 7))])
        assert app.oldest_height == app.height - 2
    entries, indexed = changelog_sizes(kv)
    assert indexed == [app.height - 1, app.height]  # empty blocks change nothing and index nothing
    assert entries == sum(len(history._indexed_entries(keys.changelog_index_key(h), kv.get(keys.changelog_index_key(h)), h))
                          for h in indexed)
    assert keys.decode_height(kv.get(keys.META_HISTORY_OLDEST)) == app.oldest_height


def test_key_budget_spreads_a_large_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    kv = CountingKV()
    app = new_app(kv, history_blocks=0)
    chain = Chain(app, VALIDATOR)
    for i in range(12):
        chain.block([chain.tx(USERS[j], Transfer(USERS[(j + 1) % 4].address, QNX, 1 + i)) for j in range(4)])
    widest = max(len(history._indexed_entries(k, v, keys.decode_height(k[1:])))
                 for k, v in kv.iterate(keys.CHANGELOG_INDEX))
    monkeypatch.setattr(history, "PRUNE_MAX_KEYS", 5)
    app.set_history_blocks(1)
    while app.oldest_height < app.height - 1:
        kv.deleted.clear()
        chain.block([])
        (gone_entries, _), = kv.deleted
        assert gone_entries < 5 + widest  # the budget, overshot by at most one height's keys


def test_a_store_without_a_changelog_answers_from_its_first_recorded_height(tmp_path: Any) -> None:
    kv = LevelDBKV(tmp_path / "state", create_if_missing=True)
    app = new_app(kv)
    blocks = [[("transfer", 0, 1, 0, 5), ("create", 2, 0, 0, 1)], [("mint", 2, 3, 0, 9)], [("transfer", 1, 2, 0, 3)]]
    expected = run_chain(app, blocks)
    check_history(app, expected)  # LevelDB's iterators answer like MemoryKV's
    # Make it a store written before the changelog existed.
    old = [k for k, _ in kv.iterate(keys.CHANGELOG)] + [k for k, _ in kv.iterate(keys.CHANGELOG_INDEX)]
    kv.write_batch({**dict.fromkeys(old), keys.META_HISTORY_OLDEST: None})
    app = new_app(kv)
    assert app.oldest_height == 3
    with pytest.raises(HeightPruned, match="the oldest available height is 3"):
        app.at(2)
    more = run_chain_from(app, [[("transfer", 3, 0, 0, 4)], [("transfer_token", 3, 1, 0, 2)]])
    assert app.oldest_height == 3
    for height, want in more.items():
        assert answers(app.at(height)) == want
    kv.close()
    reopened = new_app(LevelDBKV(tmp_path / "state"))
    assert reopened.oldest_height == 3 and answers(reopened.at(4)) == more[4]


def run_chain_from(app: Application, blocks: list[Any]) -> dict[int, dict[str, Any]]:
    """Commit ``blocks`` on ``app``; the answers at its head before and after each one."""
    chain = Chain(app, VALIDATOR)
    expected = {app.height: answers(app)}
    for ops in blocks:
        chain.block([chain.tx(USERS[op[1]], payload(op)) for op in ops])
        expected[app.height] = answers(app)
    return expected


def test_a_past_view_is_read_only_and_state_only() -> None:
    app = new_app()
    Chain(app, VALIDATOR).block([])
    view = history.StateAt(MemoryKV(), 0)
    with pytest.raises(StateInvariantBroken):
        view.get(keys.block_key(1))
    with pytest.raises(StateInvariantBroken):
        list(view.iterate())
    with pytest.raises(StateInvariantBroken):
        view.write_batch({keys.account_key(bytes(20)): b"x"})
    with pytest.raises(StateInvariantBroken):
        app.set_history_blocks(-1)


# -- RPC ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rpc() -> tuple[Application, dict[str, Any], dict[int, dict[str, Any]]]:
    app = new_app(history_blocks=3)
    blocks = [[("create", 0, 0, 0, 1)], [("transfer_token", 0, 1, 0, 500)], [("pool", 0, 0, 0, 1)],
              [("transfer", 1, 2, 0, 77)], [("swap", 2, 0, 0, 1001)], [], [("transfer", 3, 0, 0, 1)]]
    expected = run_chain(app, blocks)
    return app, build_methods(rpc_context(app)), expected


def error_of(call: Any, *args: Any) -> RPCError:
    with pytest.raises(RPCError) as info:
        call(*args)
    return info.value


def test_rpc_answers_at_past_heights(rpc: Any) -> None:
    app, methods, expected = rpc
    assert app.height == 7 and app.oldest_height == 4
    bob = USERS[1].address
    for height in (4, "5", 6, 7, "latest", None):
        number = app.height if height in ("latest", None) else int(height)
        account = methods["qenex_getAccount"](address_to_text(bob), height)
        want = expected[number]["accounts"][1]
        assert account["height"] == number and account["nonce"] == want.nonce
        assert account["balances"] == {s: str(v) for s, v in want.balances.items()}
        assert methods["qenex_getToken"]("AAA", height)["total_supply"] == str(expected[number]["token"][0].supply)
        pool = methods["qenex_getPool"](POOL_IDS[0], height)
        assert (pool["height"], pool["reserve0"]) == (number, str(expected[number]["pool"][0].reserve0))
    assert methods["qenex_getAccount"](address_to_text(bob), 4)["pending_nonce"] is None
    assert methods["qenex_getAccount"](address_to_text(bob), 7)["pending_nonce"] is None  # asked for: no mempool
    assert methods["qenex_getAccount"](address_to_text(bob))["pending_nonce"] == expected[7]["accounts"][1].nonce


def test_rpc_height_errors(rpc: Any) -> None:
    app, methods, _ = rpc
    who = address_to_text(USERS[0].address)
    for call, args in ((methods["qenex_getAccount"], (who,)), (methods["qenex_getToken"], ("AAA",)),
                       (methods["qenex_getPool"], (POOL_IDS[0],))):
        future = error_of(call, *args, 8)
        assert future.code == NOT_FOUND and "above the head 7" in future.message
        for height in (3, 0, "0"):
            pruned = error_of(call, *args, height)
            assert pruned.code == HEIGHT_PRUNED and "oldest available height is 4" in pruned.message
            assert pruned.data == {"height": int(height), "oldest_height": 4, "head": 7}
        for bad in (-1, "-1", 1.5, True, "7a", "", [7], 2**64, "x" * 30):
            assert error_of(call, *args, bad).code == INVALID_PARAMS
    absent = error_of(methods["qenex_getPool"], POOL_IDS[1], 5)
    assert absent.code == NOT_FOUND and "at height 5" in absent.message


def test_rpc_validators_at_heights(rpc: Any) -> None:
    app, methods, _ = rpc
    genesis_set = methods["qenex_getValidators"](1)
    assert genesis_set["height"] == 1 and [v["address"] for v in genesis_set["validators"]] == [
        address_to_text(VALIDATOR.address)]
    for height in (1, 2, "7", 8):  # sets are kept at every height, window or not
        got = methods["qenex_getValidators"](height)
        vset = app.validator_set(int(height))
        assert got["height"] == int(height)
        assert [v["proposer_priority"] for v in got["validators"]] == [str(p) for p in vset.priorities]
    assert methods["qenex_getValidators"]("latest")["height"] == 8
    assert error_of(methods["qenex_getValidators"], 9).code == NOT_FOUND
    assert error_of(methods["qenex_getValidators"], 0).code == INVALID_PARAMS
    assert error_of(methods["qenex_getValidators"], -3).code == INVALID_PARAMS


def test_state_history_blocks_setting() -> None:
    assert NodeConfig().state.history_blocks == 10_000
    config = NodeConfig.from_toml("[state]\nhistory_blocks = 0\n")
    assert config.state.history_blocks == 0
    assert NodeConfig.from_toml(config.to_toml()) == config
    for bad in ("-1", '"10"', "true", str(2**63)):
        with pytest.raises(ConfigError, match="history_blocks"):
            NodeConfig.from_toml(f"[state]\nhistory_blocks = {bad}\n")
