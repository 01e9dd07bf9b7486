"""Shared helpers for the contract tests: a chain with contracts, WAT compilation, deploy and call."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import wasmtime

from state.app import Application
from state.codec import decode, encode
from state.contracts import contract_address
from state.crypto import PrivateKey
from state.genesis import ContractParams, Params
from state.kv import MemoryKV
from state.payloads import ContractCall, ContractDeploy
from state.testing import STUB_VERIFIER, Chain, dev_key, make_genesis
from state.transactions import Receipt

ALICE = dev_key("contracts-alice")
BOB = dev_key("contracts-bob")
VALIDATOR = dev_key("contracts-validator")

# Host imports most test modules need, spelled once.
IMPORTS = """
  (import "qenex" "args_len" (func $args_len (result i32)))
  (import "qenex" "args_read" (func $args_read (param i32)))
  (import "qenex" "arg_u64" (func $arg_u64 (param i32) (result i64)))
  (import "qenex" "arg_address" (func $arg_address (param i32 i32)))
  (import "qenex" "result_set" (func $result_set (param i32 i32)))
  (import "qenex" "result_u64" (func $result_u64 (param i64)))
  (import "qenex" "storage_get" (func $storage_get (param i32 i32 i32 i32) (result i32)))
  (import "qenex" "storage_set" (func $storage_set (param i32 i32 i32 i32)))
  (import "qenex" "storage_remove" (func $storage_remove (param i32 i32)))
  (import "qenex" "caller" (func $caller (param i32)))
  (import "qenex" "self_address" (func $self_address (param i32)))
  (import "qenex" "block_height" (func $block_height (result i64)))
  (import "qenex" "attached_u64" (func $attached_u64 (param i32 i32) (result i64)))
  (import "qenex" "transfer_u64" (func $transfer_u64 (param i32 i32 i32 i64)))
  (import "qenex" "emit" (func $emit (param i32 i32 i32 i32)))
  (import "qenex" "abort" (func $abort (param i32 i32)))
  (import "qenex" "call" (func $call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "qenex" "call_result_read" (func $call_result_read (param i32)))
"""


def wat(body: str, *, imports: bool = True, memory: str = '(memory (export "memory") 1)') -> bytes:
    """A module of ``body`` with the common imports and an exported one-page memory."""
    return bytes(wasmtime.wat2wasm(f"(module {IMPORTS if imports else ''} {memory} {body})"))


@dataclass
class ContractChain:
    app: Application
    chain: Chain
    params: Params
    deployed: list[bytes] = field(default_factory=list)

    def deploy(self, code: bytes, init_args: Any = (), *, key: PrivateKey = ALICE, attached=(),
               gas_limit: int = 20_000_000) -> tuple[bytes, Receipt]:
        nonce = self.chain.nonces.get(key.address, self.app.account(key.address).nonce)
        stx = self.chain.tx(key, ContractDeploy(code, encode(list(init_args)), tuple(attached), gas_limit))
        _, result = self.chain.block([stx])
        address = contract_address(key.address, nonce)
        if result.receipts[0].ok:
            self.deployed.append(address)
        return address, result.receipts[0]

    def call(self, contract: bytes, method: str, args: Any = (), *, key: PrivateKey = ALICE, attached=(),
             gas_limit: int = 5_000_000, raw_args: bytes | None = None) -> Receipt:
        payload = ContractCall(contract, method, raw_args if raw_args is not None else encode(list(args)),
                               tuple(attached), gas_limit)
        _, result = self.chain.block([self.chain.tx(key, payload)])
        return result.receipts[0]

    def query(self, contract: bytes, method: str, args: Any = (), *, gas_limit: int = 10_000_000) -> Any:
        out = self.app.contracts().call(contract, method, encode(list(args)), gas_limit=gas_limit).output
        return decode(out) if out else None

    def storage(self, contract: bytes) -> dict[bytes, bytes]:
        items, _ = self.app.contracts().storage(contract, limit=1000)
        return dict(items)

    def balance(self, address: bytes, symbol: str = "QNX") -> int:
        return self.app.account(address).balances.get(symbol, 0)


def contract_chain(contracts: ContractParams | None = None, **params: Any) -> ContractChain:
    p = Params(contracts=contracts or ContractParams(), **params)
    app = Application(MemoryKV(), make_genesis(validators=[VALIDATOR], funded=[ALICE, BOB], params=p),
                      commit_verifier=STUB_VERIFIER)
    return ContractChain(app, Chain(app, VALIDATOR), p)
