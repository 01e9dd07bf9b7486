"""Contracts on live processes (issue 11, acceptance 1).

A 4-validator local testnet with contracts on.  From the CLI: the three
example contracts are deployed (`tx contract deploy --wat`) and exercised
(`tx contract call`, `query call`, `query contract`, `query contract-state`):
the counter is incremented, the escrow holds alice's deposit and releases it
to bob at the arbiter's word, the token moves between accounts through a
transfer and an allowance.  A hostile contract's loop, unbounded recursion,
trap, oversized write and event flood each end in their failed receipt with
its storage untouched, code importing WASI is refused before it is sent, and
the chain keeps finalizing.  Then every node is asked for every block (hash
and app hash), every contract's storage and every contract transaction's
receipt with its events: all four must agree, byte for byte.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from state.genesis import ContractParams, Params
from tests.localnet import LocalNet, running_localnet
from tests.test_contracts_hostile import HOSTILE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "contracts"


def _ok(result) -> dict:
    assert result.returncode == 0, f"qenexd {' '.join(result.args[1:])} failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout)


def _deploy(net: LocalNet, name: str, init: list, node: int = 0) -> tuple[str, dict]:
    out = _ok(net.cli("tx", "contract", "deploy", "--wat", str(EXAMPLES / f"{name}.wat"), "--init", json.dumps(init),
                      "--from", str(net.account_key("alice")), "--rpc", net.url(node), "--wait", "--json"))
    assert out["status"] == "ok", out
    return out["contract_address"], out


def _call(net: LocalNet, contract: str, method: str, args: list, *, who: str = "alice", node: int = 0,
          attach: tuple[str, str] | None = None, fails: bool = False) -> dict:
    """``tx contract call ... --wait --json``: the receipt; a failed one exits 1 after printing it."""
    extra = ["--attach", *attach] if attach else []
    result = net.cli("tx", "contract", "call", contract, method, "--args", json.dumps(args), *extra,
                     "--from", str(net.account_key(who)), "--rpc", net.url(node), "--wait", "--json")
    if not fails:
        out = _ok(result)
        assert out["status"] == "ok", out
        return out
    assert result.returncode == 1 and "failed at height" in result.stderr, (result.stdout, result.stderr)
    out = json.loads(result.stdout)
    assert out["status"] == "failed", out
    return out


def _query(net: LocalNet, contract: str, method: str, args: list, node: int = 0):
    return _ok(net.cli("query", "call", contract, method, "--args", json.dumps(args), "--rpc", net.url(node),
                       "--json"))["result"]


def test_three_example_contracts_on_four_validators(tmp_path):
    params = Params(contracts=ContractParams())
    with running_localnet(tmp_path, params=params) as net:
        alice, bob, charlie = net.address("alice"), net.address("bob"), net.address("charlie")
        txs: list[str] = []

        # -- counter, submitted through different nodes
        counter, out = _deploy(net, "counter", [])
        txs.append(out["hash"])
        for node, args in ((1, [5]), (2, []), (3, [10])):
            out = _call(net, counter, "increment", args, node=node)
            assert out["events"][0]["topic"] == "incremented"
            txs.append(out["hash"])
        assert _query(net, counter, "get", []) == 16

        # -- token: init supply to alice, transfer to bob, allowance for charlie
        token, out = _deploy(net, "token", [1_000_000])
        txs.append(out["hash"])
        out = _call(net, token, "transfer", [bob, 2_500])
        assert out["events"][0]["topic"] == "transfer"
        txs.append(out["hash"])
        txs.append(_call(net, token, "approve", [charlie, 1_000], who="bob")["hash"])
        out = _call(net, token, "transfer_from", [bob, charlie, 600], who="charlie", node=2)
        txs.append(out["hash"])
        out = _call(net, token, "transfer_from", [bob, charlie, 600], who="charlie", node=3, fails=True)
        assert "insufficient allowance" in out["reason"], out
        txs.append(out["hash"])
        assert [_query(net, token, "balance_of", [a], node=i) for i, a in enumerate((alice, bob, charlie))] == \
            [997_500, 1_900, 600]
        assert _query(net, token, "allowance", [bob, charlie]) == 400

        # -- escrow: alice deposits 3 QNX for bob, charlie arbitrates
        height = net.rpc(0).call("qenex_status")["height"]
        escrow, out = _deploy(net, "escrow", [charlie, bob, height + 1000])
        txs.append(out["hash"])
        out = _call(net, escrow, "deposit", [], attach=("3", "QNX"))
        txs.append(out["hash"])
        bob_before = int(net.rpc(0).call("qenex_getAccount", bob)["balances"].get("QNX", "0"))
        out = _call(net, escrow, "release", [], who="bob", node=1, fails=True)  # only the arbiter may
        assert out["reason"].startswith("aborted:"), out
        txs.append(out["hash"])
        bob_fee = int(out["fee"])
        out = _call(net, escrow, "release", [], who="charlie", node=2)
        txs.append(out["hash"])
        bob_after = int(net.rpc(3).call("qenex_getAccount", bob)["balances"].get("QNX", "0"))
        assert bob_after == bob_before - bob_fee + 3 * 10**18

        info = _ok(net.cli("query", "contract", escrow, "--rpc", net.url(1), "--json"))
        assert info["deployer"] == alice and info.get("balances", {}).get("QNX", "0") == "0"
        state = _ok(net.cli("query", "contract-state", token, "--rpc", net.url(2), "--json"))
        assert len(state["entries"]) >= 4

        # -- hostile contracts: each fails with its reason, state unchanged but fee and nonce, blocks go on
        hostile_wasm = tmp_path / "hostile.wasm"
        hostile_wasm.write_bytes(HOSTILE)
        out = _ok(net.cli("tx", "contract", "deploy", "--wasm", str(hostile_wasm), "--from",
                          str(net.account_key("alice")), "--rpc", net.url(0), "--wait", "--json"))
        hostile = out["contract_address"]
        txs.append(out["hash"])
        for method, reason in (("loop", "out_of_gas:"), ("recurse", "call_depth_exceeded:"),
                               ("write_then_trap", "trap:"), ("too_big_value", "host_call_failed:"),
                               ("many_events", "host_call_failed:")):
            out = _call(net, hostile, method, [], node=1, fails=True)
            assert out["reason"].startswith(reason), out
            txs.append(out["hash"])
        assert _ok(net.cli("query", "contract-state", hostile, "--rpc", net.url(2), "--json"))["entries"] == []
        bad = net.cli("tx", "contract", "deploy", "--wat", str(EXAMPLES / "counter.wat"), "--wasm", str(hostile_wasm),
                      "--from", str(net.account_key("alice")), "--rpc", net.url(0), "--json")
        assert bad.returncode != 0
        wasi = tmp_path / "wasi.wat"
        wasi.write_text('(module (import "wasi_snapshot_preview1" "fd_write" (func (param i32 i32 i32 i32) '
                        '(result i32))) (memory (export "memory") 1) (func (export "f")))')
        refused = net.cli("tx", "contract", "deploy", "--wat", str(wasi), "--from", str(net.account_key("alice")),
                          "--rpc", net.url(0), "--json")
        assert refused.returncode != 0 and "wasi_snapshot_preview1.fd_write" in refused.stderr
        before = net.height(0)
        net.wait_height(before + 3, timeout=60)  # the chain keeps finalizing

        # -- every node agrees on every block, every contract's storage and every receipt
        top = min(net.height(i) for i in range(4))
        for h in range(1, top + 1):
            blocks = [net.rpc(i).call("qenex_getBlock", h) for i in range(4)]
            assert len({(b["hash"], b["app_hash"]) for b in blocks}) == 1, f"nodes disagree at height {h}"
        for contract in (counter, token, escrow, hostile):  # at one height all have (nodes may be a block apart)
            views = [net.rpc(i).call("qenex_getContractState", contract, None, 1000, None, top) for i in range(4)]
            assert all(v == views[0] for v in views), (contract, views)
            infos = [net.rpc(i).call("qenex_getContract", contract, top) for i in range(4)]
            assert all(v == infos[0] for v in infos), (contract, infos)
        for tx_hash in txs:
            # the whole answer but the risk flag (local policy): status, reason, gas, fee, events, output
            receipts = [{k: v for k, v in net.rpc(i).call("qenex_getTransaction", tx_hash).items() if k != "risk"}
                        for i in range(4)]
            assert all(r == receipts[0] for r in receipts), tx_hash
            assert receipts[0]["committed"] and "gas_used" in receipts[0]
