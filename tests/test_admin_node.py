"""The admin API inside a running node (in-process, real sockets): status, a queued transaction flushed,
a peer banned and unbanned through the p2p service, shutdown through the signal path, the audit log verified."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import aiohttp
from click.testing import CliRunner

from cli.main import cli
from node.admin_auth import OTP_HEADER, totp_now
from node.audit import verify_log
from node.config import AdminSection, Home
from node.genesis_tools import write_single_node_home
from node.runtime import Node
from p2p.identity import peer_id_from_seed
from state.crypto import PrivateKey
from state.keyfile import load_keyfile
from state.payloads import Transfer, TxKind
from state.transactions import Transaction
from tests.ports import free_port_range

TOKEN = "node-admin-token-" + "q" * 32


async def _until(predicate, what, timeout=30.0):
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} within {timeout} s"
        await asyncio.sleep(0.05)


async def test_a_running_node_serves_the_admin_api_and_stops_through_it(tmp_path):
    base = free_port_range(3)
    home = Home(tmp_path / "home")
    info = write_single_node_home(home, chain_id="qenex-admin-1", name="solo", p2p_port=base, rpc_port=base + 1)
    home.write_config(replace(home.load_config(), admin=AdminSection(port=base + 2, token=TOKEN)))
    enrolled = CliRunner().invoke(cli, ["admin", "enroll", "--home", str(home.root), "--json"])
    secret = json.loads(enrolled.output)["secret"]
    funded = load_keyfile(info["funded_key"], None)
    url = f"http://127.0.0.1:{base + 2}/"
    wall = [time.time()]

    node = Node(home)
    runner = asyncio.create_task(node.run_until_signalled())
    async with aiohttp.ClientSession() as session:
        async def call(method, params=(), otp=False):
            headers = {"Authorization": f"Bearer {TOKEN}"}
            if otp:
                wall[0] += 30  # a fresh step per state change (the node's verifier reads this clock)
                headers[OTP_HEADER] = totp_now(secret, wall[0])
            try:
                async with session.post(url, json={"jsonrpc": "2.0", "id": 1, "method": method,
                                                   "params": list(params)}, headers=headers) as r:
                    return await r.json()
            except aiohttp.ClientConnectionError:
                return None

        try:
            status = await _until(lambda: call("admin_status"), "the admin API answering")
            node._admin.api.totp._clock = lambda: wall[0]
            assert status["result"]["name"] == "solo" and status["result"]["totp_enrolled"]

            future_nonce = Transaction("qenex-admin-1", TxKind.TRANSFER, funded.public_key, 5,
                                       node.app.params.min_fee(TxKind.TRANSFER),
                                       Transfer(to=PrivateKey.generate().address, token="QNX", amount=1)).sign(funded)
            node.submit_raw_tx(future_nonce.encode())
            assert node.mempool.queued_count == 1
            flushed = await call("admin_flush_mempool", otp=True)
            assert flushed["result"] == {"pending_dropped": 0, "queued_dropped": 1}
            assert node.mempool.queued_count == 0

            peer = peer_id_from_seed(PrivateKey.generate().seed)
            assert (await call("admin_ban", [peer], otp=True))["result"] == {"banned": peer}

            async def banned():
                return peer in (await call("admin_peers"))["result"]["banned"]

            await _until(banned, "the ban in admin_peers")
            assert (await call("admin_unban", [peer], otp=True))["result"] == {"unbanned": peer}
            await _until(lambda: _not(banned), "the ban lifted")
            assert (await call("admin_ban", ["not a peer id"], otp=True))["error"]["code"] == -32602

            assert (await call("admin_shutdown", otp=True))["result"] == {"stopping": True}
            await asyncio.wait_for(runner, 30)
        finally:
            if not runner.done():
                node._stop.set()
                await asyncio.wait_for(runner, 30)

    report = verify_log(home.audit_file, funded.public_key)
    assert report.ok and report.entries >= 8
    actions = [json.loads(line)["action"] for line in home.audit_file.read_text().splitlines()]
    assert actions[-1] == "admin_shutdown" and "admin_flush_mempool" in actions and "admin_unban" in actions


async def _not(predicate):
    return not await predicate()
