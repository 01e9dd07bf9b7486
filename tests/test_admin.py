"""The admin API (node/admin.py) on a real loopback socket: token, TOTP (one use, across restarts),
403 for non-loopback, 429 after failures, every refusal in the audit log; enrolment and the CLI."""

from __future__ import annotations

import asyncio
import json
import os
from unittest import mock

import aiohttp
import pyotp
import pytest
from aiohttp.test_utils import make_mocked_request
from click.testing import CliRunner

from cli.main import cli
from node.admin import (NOT_AVAILABLE, NOT_ENROLLED, NOT_LOCAL, RATE_LIMITED, UNAUTHORIZED, AdminAPI, AdminContext,
                        AdminServer, is_loopback, make_admin_app)
from node.admin_auth import (FREE_FAILURES, OTP_HEADER, FailureLimiter, TotpVerifier, enroll, token_matches,
                             totp_now)
from node.audit import AuditLog, verify_log
from node.config import ConfigError, Home, NodeConfig
from node.genesis_tools import write_single_node_home
from state.testing import dev_key
from tests.ports import free_port_range

TOKEN = "admin-token-" + "x" * 40
KEY = dev_key("admin-node")
T0 = 1_800_000_000.0  # wall clock for TOTP, fixed by the test
PEER = "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"


class Clocks:
    def __init__(self) -> None:
        self.wall = T0
        self.mono = 1000.0


class FakeNode:
    """What the admin methods reach, recorded."""

    def __init__(self) -> None:
        self.banned: list[str] = []
        self.flushed = 0
        self.stopped = 0

    def context(self, snapshot=None) -> AdminContext:
        return AdminContext(
            status=lambda: {"height": 7},
            peers=lambda: {"connected": [], "banned": list(self.banned)},
            ban=self.banned.append,
            unban=lambda peer: peer in self.banned and (self.banned.remove(peer) or True),
            flush_mempool=self._flush,
            request_stop=self._stop,
            snapshot=snapshot,
        )

    def _flush(self):
        self.flushed += 1
        return {"pending_dropped": 0, "queued_dropped": 0}

    def _stop(self):
        self.stopped += 1


@pytest.fixture
def setup(tmp_path):
    clocks = Clocks()
    secret, _ = enroll(tmp_path / "config" / "admin_totp.json", name="n0")
    totp = TotpVerifier(tmp_path / "config" / "admin_totp.json", tmp_path / "data" / "admin_totp_used.json",
                        clock=lambda: clocks.wall)
    (tmp_path / "data").mkdir(exist_ok=True)
    audit = AuditLog(tmp_path / "data" / "audit.log", KEY)
    node = FakeNode()
    api = AdminAPI(node.context(), TOKEN, totp, audit, FailureLimiter(clock=lambda: clocks.mono))
    return api, node, secret, clocks, tmp_path


def _call(method, params=()):
    return {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}


class Client:
    def __init__(self, session, url):
        self.session, self.url = session, url

    async def post(self, method, params=(), token=TOKEN, otp=None, body=None):
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if otp is not None:
            headers[OTP_HEADER] = otp
        data = body if body is not None else json.dumps(_call(method, params))
        async with self.session.post(self.url, data=data, headers=headers) as r:
            return r.status, await r.json()


async def _serve(api, scenario):
    port = free_port_range(1)
    server = AdminServer(api)
    await server.start("127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as session:
            return await scenario(Client(session, f"http://127.0.0.1:{port}/"))
    finally:
        await server.stop()


def _entries(api):
    return [json.loads(line) for line in api.audit.path.read_text().splitlines()]


async def test_token_then_totp_each_refusal_audited(setup):
    api, node, secret, clocks, _ = setup
    code = totp_now(secret, clocks.wall)

    async def scenario(c):
        out = {}
        out["no_token"] = await c.post("admin_status", token=None)
        out["wrong_token"] = await c.post("admin_status", token="y" * 52)
        out["status"] = await c.post("admin_status")
        out["no_otp"] = await c.post("admin_ban", [PEER])
        out["wrong_otp"] = await c.post("admin_ban", [PEER], otp=f"{(int(code) + 1) % 10**6:06d}")
        out["bad_otp"] = await c.post("admin_ban", [PEER], otp="12ab56")
        out["ban"] = await c.post("admin_ban", [PEER], otp=code)
        out["replay"] = await c.post("admin_ban", [PEER], otp=code)
        return out

    out = await _serve(api, scenario)
    for name in ("no_token", "wrong_token", "no_otp", "wrong_otp", "bad_otp", "replay"):
        status, body = out[name]
        assert status == 401 and body["error"]["code"] == UNAUTHORIZED, name
    assert "already used" in out["replay"][1]["error"]["message"]
    assert out["status"] == (200, {"jsonrpc": "2.0", "id": 1, "result": {"height": 7}})
    assert out["ban"][1]["result"] == {"banned": PEER}
    assert node.banned == [PEER]  # once: the replay did nothing

    entries = _entries(api)
    assert [(e["action"], e["outcome"]["status"]) for e in entries] == [
        ("http", 401), ("http", 401), ("admin_status", 200), ("admin_ban", 401), ("admin_ban", 401),
        ("admin_ban", 401), ("admin_ban", 200), ("admin_ban", 401)]
    assert all(e["actor"] == "127.0.0.1" for e in entries)
    assert entries[6]["params"]["totp_step"] == int(clocks.wall) // 30
    text = api.audit.path.read_text()
    assert TOKEN not in text and code not in text.replace(str(int(clocks.wall) // 30), "")
    assert verify_log(api.audit.path, KEY.public_key).ok


async def test_a_used_code_stays_used_after_a_restart_and_the_window_is_one_step(setup):
    api, node, secret, clocks, tmp_path = setup
    code = totp_now(secret, clocks.wall)
    assert (await _serve(api, lambda c: c.post("admin_flush_mempool", otp=code)))[0] == 200
    # A restarted node: fresh verifier and limiter over the same files.
    restarted = AdminAPI(node.context(), TOKEN, TotpVerifier(api.totp.secret_file, api.totp.used_file,
                                                             clock=lambda: clocks.wall),
                         AuditLog(api.audit.path, KEY), FailureLimiter(clock=lambda: clocks.mono))
    status, body = await _serve(restarted, lambda c: c.post("admin_flush_mempool", otp=code))
    assert status == 401 and "already used" in body["error"]["message"]
    # The previous step's code is still inside the window, but it is older than the step spent: refused too.
    clocks.wall += 30
    previous = totp_now(secret, clocks.wall - 30)
    assert (await _serve(restarted, lambda c: c.post("admin_flush_mempool", otp=previous)))[0] == 401
    # Two steps ahead of the clock is outside the window.
    ahead = totp_now(secret, clocks.wall + 60)
    assert (await _serve(restarted, lambda c: c.post("admin_flush_mempool", otp=ahead)))[0] == 401
    fresh = totp_now(secret, clocks.wall + 30)  # one step ahead: inside the window
    assert (await _serve(restarted, lambda c: c.post("admin_flush_mempool", otp=fresh)))[0] == 200
    assert node.flushed == 2


async def test_brute_force_is_answered_429_without_checking_credentials(setup):
    api, node, secret, clocks, _ = setup

    async def scenario(c):
        statuses = [(await c.post("admin_status", token="z" * 40))[0] for _ in range(FREE_FAILURES + 1)]
        # Blocked now: even the right token (and a right code) gets 429, and nothing runs.
        blocked = [await c.post("admin_flush_mempool", otp=totp_now(secret, clocks.wall)) for _ in range(3)]
        clocks.mono += 1.5  # past the first block (1 s)
        after = await c.post("admin_status")
        return statuses, blocked, after

    statuses, blocked, after = await _serve(api, scenario)
    assert statuses == [401] * FREE_FAILURES + [401]
    assert all(s == 429 and b["error"]["code"] == RATE_LIMITED for s, b in blocked)
    assert node.flushed == 0
    assert after[0] == 200, after
    entries = _entries(api)
    limited = [e for e in entries if e["outcome"]["status"] == 429]
    assert len(limited) == 1 and limited[0]["params"] == {"suppressed_before": 0}  # 3 answered, 1 written
    assert [e["outcome"]["status"] for e in entries].count(401) == FREE_FAILURES + 1
    assert verify_log(api.audit.path, KEY.public_key).ok


def test_backoff_doubles_and_the_table_is_bounded():
    now = [0.0]
    limiter = FailureLimiter(clock=lambda: now[0], max_sources=4)
    blocks = [limiter.failed("127.0.0.2") for _ in range(FREE_FAILURES + 4)]
    assert blocks == [0.0] * FREE_FAILURES + [1.0, 2.0, 4.0, 8.0]
    for i in range(100):
        limiter.failed(f"127.1.0.{i}")
    assert len(limiter) <= 4
    # Sources beyond the table share one overflow entry: their failures add up, so they are blocked together.
    assert limiter.blocked_for("127.9.9.9") > 0
    limiter.succeeded("127.0.0.2")
    assert limiter.blocked_for("127.0.0.2") == limiter.blocked_for("127.200.0.1")  # now counted as overflow


def test_a_non_loopback_address_is_refused_403_and_audited(setup):
    api, node, secret, clocks, _ = setup
    app = make_admin_app(api)
    handler = next(iter(app.router.routes())).handler
    transport = mock.Mock()
    transport.get_extra_info.side_effect = lambda name, default=None: (
        ("203.0.113.7", 40000) if name == "peername" else default)
    request = make_mocked_request("POST", "/", headers={"Authorization": f"Bearer {TOKEN}",
                                                        OTP_HEADER: totp_now(secret, clocks.wall)},
                                  transport=transport, app=app)
    response = asyncio.run(handler(request))
    assert response.status == 403 and json.loads(response.body)["error"]["code"] == NOT_LOCAL
    entry = _entries(api)[-1]
    assert entry["actor"] == "203.0.113.7" and entry["outcome"]["status"] == 403
    assert is_loopback("::1") and not is_loopback("10.0.0.1") and not is_loopback(None)
    assert token_matches(f"Bearer {TOKEN}", TOKEN) and not token_matches("Bearer a", "a")


async def test_not_enrolled_snapshot_unavailable_unban_batches_and_shutdown(setup):
    api, node, secret, clocks, tmp_path = setup
    code = iter(totp_now(secret, clocks.wall + 30 * k) for k in range(-1, 2))

    async def scenario(c):
        out = {"snapshot": await c.post("admin_snapshot", otp=next(code)),
               "unban": await c.post("admin_unban", [PEER], otp=next(code)),
               "bad_peer": await c.post("admin_status", body=json.dumps([_call("admin_status")])),
               "bad_json": await c.post("admin_status", body="{"),
               "shutdown": await c.post("admin_shutdown", otp=next(code))}
        os.unlink(api.totp.secret_file)
        out["unenrolled"] = await c.post("admin_flush_mempool", otp="123456")
        return out

    out = await _serve(api, scenario)
    assert out["snapshot"][1]["error"]["code"] == NOT_AVAILABLE
    assert "not banned" in out["unban"][1]["error"]["message"]
    assert "no batches" in out["bad_peer"][1]["error"]["message"]
    assert out["bad_json"][1]["error"]["code"] == -32700
    assert out["shutdown"] == (200, {"jsonrpc": "2.0", "id": 1, "result": {"stopping": True}})
    assert node.stopped == 1  # after the answer was sent
    assert out["unenrolled"][0] == 401 and out["unenrolled"][1]["error"]["code"] == NOT_ENROLLED
    assert "qenexd admin enroll" in out["unenrolled"][1]["error"]["message"]


async def test_snapshot_reaches_the_nodes_hook_when_it_exists(setup):
    api, node, secret, clocks, _ = setup
    calls = []
    hooked = AdminAPI(node.context(snapshot=lambda **kw: calls.append(kw) or {"height": 7}), TOKEN, api.totp,
                      api.audit, FailureLimiter(clock=lambda: clocks.mono))
    out = await _serve(hooked, lambda c: c.session.post(
        c.url, json={"jsonrpc": "2.0", "id": 1, "method": "admin_snapshot", "params": {"dir": "/x"}},
        headers={"Authorization": f"Bearer {TOKEN}", OTP_HEADER: totp_now(secret, clocks.wall)}))
    assert out.status == 200 and calls == [{"dir": "/x"}]


def test_enroll_prints_the_secret_once_and_refuses_again_without_force(tmp_path):
    home = Home(tmp_path / "n")
    write_single_node_home(home, chain_id="admin-1", name="n0", p2p_port=0, rpc_port=0)
    runner = CliRunner()
    first = runner.invoke(cli, ["admin", "enroll", "--home", str(home.root), "--json"])
    assert first.exit_code == 0, first.output
    out = json.loads(first.output)
    assert pyotp.parse_uri(out["otpauth_uri"]).secret == out["secret"]
    assert out["otpauth_uri"].startswith("otpauth://totp/qenexd:n0?")
    assert home.admin_totp_file.stat().st_mode & 0o777 == 0o600
    again = runner.invoke(cli, ["admin", "enroll", "--home", str(home.root)])
    assert again.exit_code == 1 and "already exists" in again.output and out["secret"] not in again.output
    forced = runner.invoke(cli, ["admin", "enroll", "--home", str(home.root), "--force", "--json"])
    assert forced.exit_code == 0 and json.loads(forced.output)["secret"] != out["secret"]
    assert runner.invoke(cli, ["admin", "enroll", "--home", str(tmp_path / "nothing")]).exit_code == 1


def test_admin_config_and_the_old_risk_keys():
    config = NodeConfig.from_toml(f'[admin]\nport = 26700\ntoken = "{TOKEN}"')
    assert config.admin_settings().token == TOKEN and not config.uses_legacy_admin_keys
    legacy = NodeConfig.from_toml(f'[risk]\nadmin_port = 26701\nadmin_token = "{TOKEN}"')
    assert legacy.admin_settings().port == 26701 and legacy.uses_legacy_admin_keys
    with pytest.raises(ConfigError, match="configured twice"):
        NodeConfig.from_toml(f'[admin]\ntoken = "{TOKEN}"\n[risk]\nadmin_token = "{TOKEN}"')
    with pytest.raises(ConfigError, match="admin.token must be at least 32"):
        NodeConfig.from_toml('[admin]\ntoken = "short"')
    with pytest.raises(ConfigError, match="admin.host must be a loopback"):
        NodeConfig.from_toml(f'[admin]\nhost = "0.0.0.0"\nport = 1\ntoken = "{TOKEN}"')


def test_cli_reads_url_and_token_from_the_home_and_sends_the_code(tmp_path):
    from dataclasses import replace

    from node.config import AdminSection

    home = Home(tmp_path / "n")
    write_single_node_home(home, chain_id="admin-2", name="n0", p2p_port=0, rpc_port=0)
    home.write_config(replace(home.load_config(), admin=AdminSection(port=26799, token=TOKEN)))
    seen = []

    def fake(url, token, method, params, otp=None):
        seen.append((url, token, method, params, otp))
        return {"ok": True}

    with mock.patch("cli.admin.admin_call", fake):
        result = CliRunner().invoke(cli, ["admin", "ban", PEER, "--home", str(home.root), "--otp", "123456"])
        assert result.exit_code == 0, result.output
        assert CliRunner().invoke(cli, ["admin", "ban", PEER, "--home", str(home.root)]).exit_code == 2  # --otp
    assert seen == [("http://127.0.0.1:26799/", TOKEN, "admin_ban", [PEER], "123456")]


def test_mempool_flush_drops_pending_and_queued_and_the_pool_keeps_working():
    from node.config import MempoolSection
    from node.mempool import Mempool
    from state.app import Application
    from state.kv import MemoryKV
    from state.testing import ONE_QNX, make_genesis, transfer

    alice, bob = dev_key("flush-alice"), dev_key("flush-bob")
    app = Application(MemoryKV(), make_genesis(funded=[alice, bob]))
    pool = Mempool(app, MempoolSection())
    for stx in (transfer(alice, 0, bob.address, ONE_QNX), transfer(alice, 1, bob.address, ONE_QNX),
                transfer(alice, 5, bob.address, ONE_QNX)):
        pool.insert(pool.check(stx, len(stx.encode())))
    assert (len(pool), pool.queued_count) == (2, 1)
    pending, queued = pool.flush()
    assert (len(pending), len(queued)) == (2, 1)
    assert (len(pool), pool.size_bytes, pool.queued_count, pool.queued_bytes) == (0, 0, 0, 0)
    assert pool.reap(100, 10**6) == [] and pool.pending_nonce(alice.address) is None
    again = transfer(alice, 0, bob.address, ONE_QNX)
    pool.insert(pool.check(again, len(again.encode())))
    assert [s.hash for s in pool.reap(100, 10**6)] == [again.hash]


def test_the_old_risk_feedback_command_calls_the_admin_api_with_the_code():
    seen = []
    with mock.patch("cli.risk.admin_call", lambda *a: seen.append(a) or {"version": 2}):
        runner = CliRunner()
        ok = runner.invoke(cli, ["risk", "feedback", "--admin", "http://127.0.0.1:1/", "--token", TOKEN,
                                 "--otp", "654321", "--hash", "0x" + "ab" * 32, "--label", "legit"])
        assert ok.exit_code == 0, ok.output
        assert runner.invoke(cli, ["risk", "feedback", "--token", TOKEN, "--hash", "0x00",
                                   "--label", "fraud"]).exit_code == 2  # --otp is required now
    assert seen == [("http://127.0.0.1:1/", TOKEN, "risk_feedback",
                     {"label": 0, "steps": 30, "hash": "0x" + "ab" * 32}, "654321")]
