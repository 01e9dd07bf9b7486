"""The risk hook's admin methods through the one admin API (node/admin.py): feedback needs the token and a
TOTP code, trains a new version, rollback and restore switch versions; read-only risk_versions needs the token."""

from __future__ import annotations

import aiohttp

from node.admin import UNAUTHORIZED, AdminAPI, AdminServer
from node.admin_auth import OTP_HEADER, FailureLimiter, TotpVerifier, enroll, totp_now
from node.audit import AuditLog, verify_log
from node.risk.store import ModelStore
from state.testing import dev_key
from tests.ports import free_port_range
from tests.test_admin import FakeNode
from tests.test_risk_node import _ctx, _drain, _node, model_dir  # noqa: F401 (model_dir is a fixture)

TOKEN = "risk-admin-token-" + "k" * 32
T0 = 1_800_000_000


async def test_feedback_needs_token_and_totp_trains_a_version_and_rolls_back(model_dir, tmp_path):  # noqa: F811
    node = _node(model_dir, tmp_path)
    wall = [float(T0)]
    secret, _ = enroll(tmp_path / "totp.json", name="risk")
    totp = TotpVerifier(tmp_path / "totp.json", tmp_path / "used.json", clock=lambda: wall[0])
    audit = AuditLog(tmp_path / "audit.log", dev_key("risk-admin"))
    context = FakeNode().context()
    rpc = _ctx(node)
    api = AdminAPI(type(context)(**{**{f: getattr(context, f) for f in context.__slots__},
                                    "risk": node.risk, "find_tx": rpc.known_tx}),
                   TOKEN, totp, audit, FailureLimiter())
    drain, similar = _drain(share=0.99), _drain(share=0.97)
    before_similar = node.risk.assess([similar])[0].score
    port = free_port_range(1)
    server = AdminServer(api)
    await server.start("127.0.0.1", port)
    url = f"http://127.0.0.1:{port}/"
    auth = {"Authorization": f"Bearer {TOKEN}"}

    async def call(session, method, params, otp=None, headers=auth):
        h = dict(headers)
        if otp:
            h[OTP_HEADER] = otp
        async with session.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method, "params": params},
                                headers=h) as r:
            return r.status, await r.json()

    feedback = {"label": 0, "raw": "0x" + drain.encode().hex()}
    try:
        async with aiohttp.ClientSession() as s:
            assert (await call(s, "risk_feedback", feedback, headers={}))[0] == 401
            status, body = await call(s, "risk_feedback", feedback)  # the token alone is not enough
            assert status == 401 and body["error"]["code"] == UNAUTHORIZED
            assert ModelStore(tmp_path / "models").versions() == [1]
            status, body = await call(s, "risk_feedback", feedback, otp=totp_now(secret, wall[0]))
            out = body["result"]
            assert out["version"] == 2 and out["previous_version"] == 1
            assert out["score_after"] < out["score_before"] - 0.2
            assert (await call(s, "risk_versions", []))[1]["result"] == {"versions": [1, 2], "current": 2}
            after_similar = node.risk.assess([similar])[0].score
            wall[0] += 30
            assert (await call(s, "risk_rollback", [], otp=totp_now(secret, wall[0])))[1]["result"] == {"current": 1}
            wall[0] += 30
            assert (await call(s, "risk_restore", [2], otp=totp_now(secret, wall[0])))[1]["result"] == {"current": 2}
            wall[0] += 30
            assert (await call(s, "risk_rollback", [], otp=totp_now(secret, wall[0])))[1]["result"] == {"current": 1}
    finally:
        await server.stop()
    assert after_similar < before_similar - 0.2  # a similar transaction moved too
    assert node.risk.model.version == 1 and ModelStore(tmp_path / "models").current_version() == 1
    entries = [line for line in audit.path.read_text().splitlines()]
    assert len(entries) == 7 and '"raw":"<' in entries[2]  # the raw transaction is summarised by its length
    assert verify_log(audit.path, audit.public_key).ok
