"""Functional tests of the example contracts (examples/contracts/*.wat) through the real Application.

Every call is a signed transaction in a committed block of a single-validator
chain (state.testing.Chain); reads go through the application's
ContractQueries.  Contract transactions carry their minimum fee (gas_limit *
min_gas_price), so the fee charged is exactly gas_used * min_gas_price and
the rest is refunded; the proposer (unfunded at genesis, no staking) receives
every fee, which the tests total and compare.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import pytest
import wasmtime

from state.amounts import QNX
from state.app import Application
from state.codec import decode, encode
from state.contracts import (
    GAS_EVENT,
    GAS_EVENT_BYTE,
    GAS_HOST_CALL,
    GAS_INSTANCE,
    GAS_INSTANCE_CODE_BYTE,
    GAS_PER_BYTE,
    GAS_STORAGE_BYTE,
    GAS_STORAGE_GROWTH,
    GAS_STORAGE_READ,
    GAS_STORAGE_WRITE,
    call_intrinsic_gas,
    contract_address,
)
from state.crypto import address_to_text
from state.errors import HostCallFailed
from state.genesis import ContractParams, Params
from state.kv import MemoryKV
from state.payloads import ContractCall, ContractDeploy
from state.testing import ONE_QNX, STUB_VERIFIER, Chain, dev_key, make_genesis
from state.transactions import Event, Receipt, ReceiptStatus

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "contracts"
PARAMS = Params(contracts=ContractParams())
PRICE = PARAMS.min_gas_price
VALIDATOR, ALICE, BOB, CAROL, DAVE = (dev_key(f"contracts-examples {n}") for n in
                                      ("validator", "alice", "bob", "carol", "dave"))
ZERO_ADDRESS = bytes(20)
CALL_GAS = 1_000_000
DEPLOY_GAS = 5_000_000
OK, FAILED = ReceiptStatus.OK, ReceiptStatus.FAILED


@functools.cache
def code(name: str) -> bytes:
    return bytes(wasmtime.wat2wasm((EXAMPLES / f"{name}.wat").read_text()))


def u64(value: int) -> bytes:
    return value.to_bytes(8, "little")


def u128(value: int) -> bytes:
    return value.to_bytes(16, "little")


def aborted(contract: bytes, message: str) -> str:
    return f"aborted: contract {address_to_text(contract)} aborted: {message}"


class Env:
    """A fresh single-validator chain with contracts on, and four funded users."""

    def __init__(self, *, extra_balances: dict[bytes, dict[str, int]] | None = None) -> None:
        genesis = make_genesis(validators=[VALIDATOR], funded=[ALICE, BOB, CAROL, DAVE], params=PARAMS,
                               extra_balances=extra_balances)
        self.app = Application(MemoryKV(), genesis, commit_verifier=STUB_VERIFIER)
        self.chain = Chain(self.app, VALIDATOR)
        self.fees = 0

    def block(self, *txs: Any) -> tuple[Receipt, ...]:
        _, result = self.chain.block(list(txs))
        assert len(result.receipts) == len(txs)
        for receipt in result.receipts:
            assert receipt.fee == receipt.gas_used * PRICE  # the minimum fee: charged for exactly the gas used
        self.fees += sum(r.fee for r in result.receipts)
        return result.receipts

    def deploy_tx(self, key: Any, name: str, args: list[Any], attached: tuple = (),
                  gas_limit: int = DEPLOY_GAS) -> tuple[bytes, Any]:
        stx = self.chain.tx(key, ContractDeploy(code(name), encode(args), attached, gas_limit))
        return contract_address(key.address, stx.tx.nonce), stx

    def deploy(self, key: Any, name: str, args: list[Any], attached: tuple = (),
               gas_limit: int = DEPLOY_GAS) -> tuple[bytes, Receipt]:
        address, stx = self.deploy_tx(key, name, args, attached, gas_limit)
        (receipt,) = self.block(stx)
        return address, receipt

    def call_tx(self, key: Any, contract: bytes, method: str, args: list[Any] | None = None,
                attached: tuple = (), gas_limit: int = CALL_GAS) -> Any:
        return self.chain.tx(key, ContractCall(contract, method, encode(args or []), attached, gas_limit))

    def call(self, key: Any, contract: bytes, method: str, args: list[Any] | None = None,
             attached: tuple = (), gas_limit: int = CALL_GAS) -> Receipt:
        before = self.qnx(key)
        (receipt,) = self.block(self.call_tx(key, contract, method, args, attached, gas_limit))
        if receipt.status is FAILED:  # every effect reverted, the attached QNX included: only the fee is gone
            assert self.qnx(key) == before - receipt.fee
            assert receipt.events == () and receipt.output == b""
        return receipt

    def raw_query(self, contract: bytes, method: str, args: list[Any] | None = None, **kw: Any) -> bytes:
        queries = self.app.contracts()
        assert queries is not None
        return queries.call(contract, method, encode(args or []), gas_limit=10**7, **kw).output

    def query(self, contract: bytes, method: str, args: list[Any] | None = None) -> Any:
        return decode(self.raw_query(contract, method, args))

    def storage(self, contract: bytes) -> list[tuple[bytes, bytes]]:
        entries, more = self.app.contracts().storage(contract)  # type: ignore[union-attr]
        assert more is None
        return entries

    def info(self, contract: bytes) -> Any:
        return self.app.contracts().info(contract)  # type: ignore[union-attr]

    def qnx(self, who: Any) -> int:
        address = getattr(who, "address", who)
        return self.app.account(address).balances.get(QNX, 0)

    def snapshot(self, contract: bytes) -> tuple[Any, ...]:
        """Everything a failed call must leave as it was: the contract's storage, record and balances."""
        info = self.info(contract)
        return self.storage(contract), info.storage_entries, info.storage_bytes, info.balances

    def check_fees(self) -> None:
        """The proposer, unfunded at genesis, holds exactly the fees of every receipt."""
        assert self.qnx(VALIDATOR) == self.fees


# -- the gas schedule, as state.contracts charges it --------------------------------------------


def gas_instance(name: str) -> int:
    return GAS_INSTANCE + GAS_INSTANCE_CODE_BYTE * len(code(name))


def gas_host(copied: int = 0) -> int:
    return GAS_HOST_CALL + GAS_PER_BYTE * copied


def gas_get(key_len: int, value_len: int | None) -> int:
    return GAS_HOST_CALL + GAS_STORAGE_READ + GAS_PER_BYTE * (key_len + (value_len or 0))


def gas_set(key_len: int, value_len: int, *, new: bool) -> int:
    size = key_len + value_len
    return (GAS_HOST_CALL + GAS_STORAGE_READ + GAS_STORAGE_WRITE + (GAS_STORAGE_BYTE + GAS_PER_BYTE) * size
            + (GAS_STORAGE_GROWTH * size if new else 0))


def gas_emit(topic_len: int, data_len: int) -> int:
    return GAS_HOST_CALL + GAS_EVENT + (GAS_EVENT_BYTE + GAS_PER_BYTE) * (topic_len + data_len)


# -- counter ---------------------------------------------------------------------------------------


def test_counter_init_increment_get_events_and_storage() -> None:
    env = Env()
    counter, receipt = env.deploy(ALICE, "counter", [])
    assert (receipt.status, receipt.events, receipt.output) == (OK, (), b"")
    assert env.storage(counter) == [(b"n", u64(0))]
    info = env.info(counter)
    assert (info.methods, info.deployer, info.created_height, info.code_size) == (
        ("get", "increment", "init"), ALICE.address, 1, len(code("counter")))
    assert (info.storage_entries, info.storage_bytes, info.balances) == (1, 9, {})
    assert env.query(counter, "get") == 0

    receipt = env.call(BOB, counter, "increment")  # no argument: by 1
    assert (receipt.status, decode(receipt.output)) == (OK, 1)
    assert receipt.events == (Event(counter, b"incremented", u64(1)),)
    receipt = env.call(BOB, counter, "increment", [41])
    assert (receipt.status, decode(receipt.output)) == (OK, 42)
    assert receipt.events == (Event(counter, b"incremented", u64(42)),)

    assert env.query(counter, "get") == 42
    assert env.storage(counter) == [(b"n", u64(42))]
    info = env.info(counter)
    assert (info.storage_entries, info.storage_bytes) == (1, 9)  # overwritten in place
    env.check_fees()


def test_counter_increment_gas_is_the_schedule_plus_fuel() -> None:
    env = Env()
    counter, _ = env.deploy(ALICE, "counter", [])
    first = env.call(ALICE, counter, "increment")
    second = env.call(BOB, counter, "increment")
    with_arg = env.call(ALICE, counter, "increment", [5])
    assert first.status is second.status is with_arg.status is OK
    assert first.gas_used == second.gas_used  # same work, same gas, whoever calls

    host = (gas_host()                  # arg_count
            + gas_get(1, 8)              # the count
            + gas_set(1, 8, new=False)   # overwritten: no growth
            + gas_emit(11, 8)            # "incremented"
            + gas_host())                # result_u64
    base = call_intrinsic_gas(encode([])) + gas_instance("counter") + host
    assert first.gas_used - base == 64  # fuel: the wasm operators executed, stack-budget wrappers included (wasmtime is pinned)
    base_arg = call_intrinsic_gas(encode([5])) + gas_instance("counter") + host + gas_host()  # + arg_u64
    assert with_arg.gas_used - base_arg == 67
    assert (first.gas_used, with_arg.gas_used) == (120_545, 125_578)
    env.check_fees()


def test_counter_failed_increment_reverts_its_write_but_charges_the_fee() -> None:
    env = Env()
    counter, _ = env.deploy(ALICE, "counter", [])
    done = env.call(ALICE, counter, "increment")
    assert done.status is OK
    before = env.snapshot(counter)

    # A little short of the same work: it runs out at its last host call (result_u64), after its storage
    # write and its event, and both are dropped; the receipt's gas_used is the whole limit, all charged.
    # (Not one unit short: wasmtime checks fuel at calls and loop heads, so the few operators after the
    # last host call may overrun by what they cost.)
    limit = done.gas_used - 100
    receipt = env.call(BOB, counter, "increment", gas_limit=limit)
    assert (receipt.status, receipt.reason) == (FAILED, f"out_of_gas: ran out of gas (limit {limit})")
    assert receipt.gas_used == limit and receipt.fee == limit * PRICE
    assert env.snapshot(counter) == before
    assert env.query(counter, "get") == 1

    # A refused host call (an argument that is not an integer).
    receipt = env.call(BOB, counter, "increment", ["seven"])
    assert receipt.status is FAILED
    assert receipt.reason == "host_call_failed: host call arg_u64 failed: argument 0 is not an integer in [0, 2^64)"
    assert 0 < receipt.gas_used < CALL_GAS and receipt.fee == receipt.gas_used * PRICE
    assert env.snapshot(counter) == before
    env.check_fees()


# -- escrow ------------------------------------------------------------------------------------------


def deploy_escrow(env: Env, deadline: int) -> bytes:
    # the arbiter as qnx1 text, the beneficiary as 20 bytes: init takes both forms
    escrow, receipt = env.deploy(ALICE, "escrow", [address_to_text(CAROL.address), BOB.address, deadline])
    assert receipt.status is OK, receipt.reason
    return escrow


def test_escrow_deposit_and_release_by_the_arbiter() -> None:
    env = Env()
    escrow = deploy_escrow(env, deadline=10)
    assert env.storage(escrow) == [(b"c", CAROL.address + BOB.address + u64(10))]
    assert env.query(escrow, "status") == [0, 0, None, 10]

    alice0 = env.qnx(ALICE)
    receipt = env.call(ALICE, escrow, "deposit", attached=((QNX, 100 * ONE_QNX),))
    assert receipt.status is OK, receipt.reason
    assert receipt.events == (Event(escrow, b"deposited", ALICE.address + u128(100 * ONE_QNX) + u128(100 * ONE_QNX)),)
    assert env.qnx(ALICE) == alice0 - 100 * ONE_QNX - receipt.fee
    assert env.info(escrow).balances == {QNX: 100 * ONE_QNX}
    # the same depositor adds to it
    receipt2 = env.call(ALICE, escrow, "deposit", attached=((QNX, 5),))
    assert receipt2.status is OK, receipt2.reason
    held = 100 * ONE_QNX + 5  # above 2^64: status carries it as the chain's big-integer ext
    assert receipt2.events == (Event(escrow, b"deposited", ALICE.address + u128(5) + u128(held)),)
    assert env.qnx(ALICE) == alice0 - held - receipt.fee - receipt2.fee
    assert env.query(escrow, "status") == [1, held, ALICE.address, 10]
    assert env.storage(escrow)[1] == (b"s", bytes([1]) + ALICE.address + u128(held))

    bob0, carol0 = env.qnx(BOB), env.qnx(CAROL)
    receipt = env.call(CAROL, escrow, "release")
    assert receipt.status is OK, receipt.reason
    assert receipt.events == (Event(escrow, b"released", BOB.address + u128(held)),)
    assert env.qnx(BOB) == bob0 + held  # to the base unit
    assert env.qnx(CAROL) == carol0 - receipt.fee
    assert env.info(escrow).balances == {}
    assert env.query(escrow, "status") == [2, held, ALICE.address, 10]
    env.check_fees()


def test_escrow_release_by_anyone_but_the_arbiter_fails_and_changes_nothing() -> None:
    env = Env()
    escrow = deploy_escrow(env, deadline=10)
    assert env.call(ALICE, escrow, "deposit", attached=((QNX, 7 * ONE_QNX),)).status is OK
    before = env.snapshot(escrow)
    wallets = [env.qnx(k) for k in (ALICE, BOB, CAROL, DAVE)]
    for intruder in (BOB, ALICE, DAVE):  # the beneficiary, the depositor, a stranger
        receipt = env.call(intruder, escrow, "release")
        assert (receipt.status, receipt.reason) == (FAILED, aborted(escrow, "release: only the arbiter may release"))
        assert 0 < receipt.gas_used < CALL_GAS
        wallets[(ALICE, BOB, CAROL, DAVE).index(intruder)] -= receipt.fee
    assert [env.qnx(k) for k in (ALICE, BOB, CAROL, DAVE)] == wallets
    assert env.snapshot(escrow) == before
    assert env.query(escrow, "status") == [1, 7 * ONE_QNX, ALICE.address, 10]
    env.check_fees()


def test_escrow_refund_only_after_the_deadline() -> None:
    env = Env()
    escrow = deploy_escrow(env, deadline=4)  # deployed at height 1
    assert env.call(ALICE, escrow, "deposit", attached=((QNX, 3 * ONE_QNX),)).status is OK  # height 2
    for height in (3, 4):  # before the deadline, and at it: not yet passed
        before = env.snapshot(escrow)
        receipt = env.call(DAVE, escrow, "refund")
        assert env.app.height == height
        assert (receipt.status, receipt.reason) == (FAILED, aborted(escrow, "refund: the deadline has not passed"))
        assert env.snapshot(escrow) == before
    alice0, dave0 = env.qnx(ALICE), env.qnx(DAVE)
    receipt = env.call(DAVE, escrow, "refund")  # height 5: anyone may refund, the depositor is paid
    assert env.app.height == 5
    assert receipt.status is OK, receipt.reason
    assert receipt.events == (Event(escrow, b"refunded", ALICE.address + u128(3 * ONE_QNX)),)
    assert env.qnx(ALICE) == alice0 + 3 * ONE_QNX
    assert env.qnx(DAVE) == dave0 - receipt.fee
    assert env.info(escrow).balances == {}
    assert env.query(escrow, "status") == [3, 3 * ONE_QNX, ALICE.address, 4]

    # settled once: a second refund, a release and a deposit all fail
    before = env.snapshot(escrow)
    for key, method, message in ((DAVE, "refund", "refund: already settled"),
                                 (CAROL, "release", "release: already settled")):
        receipt = env.call(key, escrow, method)
        assert (receipt.status, receipt.reason) == (FAILED, aborted(escrow, message))
    receipt = env.call(ALICE, escrow, "deposit", attached=((QNX, ONE_QNX),))
    assert (receipt.status, receipt.reason) == (FAILED, aborted(escrow, "deposit: the deadline has passed"))
    assert env.snapshot(escrow) == before
    env.check_fees()


def test_escrow_settles_once_after_release() -> None:
    env = Env()
    escrow = deploy_escrow(env, deadline=5)
    assert env.call(ALICE, escrow, "deposit", attached=((QNX, ONE_QNX),)).status is OK
    assert env.call(CAROL, escrow, "release").status is OK
    before = env.snapshot(escrow)
    for key, method, attached, message in (
            (CAROL, "release", (), "release: already settled"),
            (ALICE, "deposit", ((QNX, ONE_QNX),), "deposit: already settled"),  # the attached QNX goes back
            (DAVE, "refund", (), "refund: already settled")):
        receipt = env.call(key, escrow, method, attached=attached)
        assert (receipt.status, receipt.reason) == (FAILED, aborted(escrow, message))
    while env.app.height < 5:
        env.block()
    receipt = env.call(DAVE, escrow, "refund")  # past the deadline now: still settled
    assert (env.app.height, receipt.reason) == (7, aborted(escrow, "refund: already settled"))
    assert env.snapshot(escrow) == before
    assert env.query(escrow, "status") == [2, ONE_QNX, ALICE.address, 5]
    env.check_fees()


def test_escrow_deposit_rules() -> None:
    env = Env()
    escrow = deploy_escrow(env, deadline=6)
    receipt = env.call(ALICE, escrow, "deposit")
    assert (receipt.status, receipt.reason) == (FAILED, aborted(escrow, "deposit: attach the QNX to hold"))
    assert env.call(ALICE, escrow, "deposit", attached=((QNX, 2),)).status is OK
    before = env.snapshot(escrow)
    receipt = env.call(BOB, escrow, "deposit", attached=((QNX, ONE_QNX),))  # bob's QNX comes back
    assert receipt.reason == aborted(escrow, "deposit: only the depositor may add to the escrow")
    assert env.snapshot(escrow) == before
    while env.app.height < 6:
        env.block()
    receipt = env.call(ALICE, escrow, "deposit", attached=((QNX, 1),))  # height 7 > 6
    assert receipt.reason == aborted(escrow, "deposit: the deadline has passed")
    assert env.snapshot(escrow) == before
    assert env.query(escrow, "status") == [1, 2, ALICE.address, 6]
    env.check_fees()


def test_escrow_with_nothing_held() -> None:
    env = Env()
    escrow = deploy_escrow(env, deadline=2)
    receipt = env.call(CAROL, escrow, "release")
    assert receipt.reason == aborted(escrow, "release: nothing held")
    receipt = env.call(DAVE, escrow, "refund")  # height 3 > 2
    assert receipt.reason == aborted(escrow, "refund: nothing held")
    assert env.storage(escrow) == [(b"c", CAROL.address + BOB.address + u64(2))]
    assert env.query(escrow, "status") == [0, 0, None, 2]


def test_escrow_refuses_attached_qnx_outside_deposit() -> None:
    env = Env()
    escrow = deploy_escrow(env, deadline=3)
    assert env.call(ALICE, escrow, "deposit", attached=((QNX, 9),)).status is OK
    before = env.snapshot(escrow)
    receipt = env.call(CAROL, escrow, "release", attached=((QNX, ONE_QNX),))
    assert receipt.reason == aborted(escrow, "release: attach no QNX")
    env.block(), env.block()
    receipt = env.call(DAVE, escrow, "refund", attached=((QNX, ONE_QNX),))
    assert receipt.reason == aborted(escrow, "refund: attach no QNX")
    assert env.snapshot(escrow) == before  # the contract still holds exactly the 9 deposited
    assert env.info(escrow).balances == {QNX: 9}


def test_escrow_init_refusals() -> None:
    env = Env()
    for deadline, attached, message in (
            (None, (), "init: the deadline must be after the current height"),  # the deploy's own height
            (0, (), "init: the deadline must be after the current height"),
            (50, ((QNX, ONE_QNX),), "init: attach no QNX")):
        alice0 = env.qnx(ALICE)
        deadline = env.app.height + 1 if deadline is None else deadline
        escrow, receipt = env.deploy(ALICE, "escrow", [CAROL.address, BOB.address, deadline], attached)
        assert (receipt.status, receipt.reason) == (FAILED, aborted(escrow, message))
        assert env.qnx(ALICE) == alice0 - receipt.fee  # the attached QNX is back
        assert env.info(escrow) is None  # no record, no storage
    escrow, receipt = env.deploy(ALICE, "escrow", [CAROL.address, "qnx1notanaddress", 50])
    assert receipt.status is FAILED and receipt.reason.startswith("host_call_failed: host call arg_address failed: ")
    escrow, receipt = env.deploy(ALICE, "escrow", [CAROL.address, BOB.address])
    assert receipt.reason == "host_call_failed: host call arg_u64 failed: argument 2 is missing (2 given)"
    assert env.info(escrow) is None
    env.check_fees()


def test_escrow_status_is_canonical_msgpack_across_integer_widths() -> None:
    env = Env(extra_balances={ALICE.address: {QNX: 2**127 + ONE_QNX}})
    deadlines = [2**40, 127, 200, 1_000, 70_000, 2**32 - 1, 2**33]  # fixint, uint 8/16/32/64
    txs = [env.deploy_tx(ALICE, "escrow", [CAROL.address, BOB.address, d]) for d in deadlines]
    assert all(r.status is OK for r in env.block(*(stx for _, stx in txs)))
    for (escrow, _), deadline in zip(txs, deadlines):
        assert env.query(escrow, "status") == [0, 0, None, deadline]
    escrow = txs[0][0]
    held = 0
    # below 2^64 a msgpack int of each width; above it the chain's ext type 1 of 9 to 16 big-endian bytes
    for target in (1, 127, 128, 255, 256, 65_535, 65_536, 2**32 - 1, 2**32, 2**64 - 1, 2**64, 2**72 - 1, 2**72,
                   2**100 + 12345, 2**120 - 1, 2**120, 2**127):
        receipt = env.call(ALICE, escrow, "deposit", attached=((QNX, target - held),))
        assert receipt.status is OK, receipt.reason
        held = target
        assert env.raw_query(escrow, "status") == encode([1, held, ALICE.address, 2**40])
    assert env.info(escrow).balances == {QNX: 2**127}


def test_escrow_out_of_gas_after_the_payout_reverts_the_payout() -> None:
    """release moves the QNX, then writes its state and emits: running out of gas at the very end
    must undo the transfer.  Two identical chains: one learns the gas of the release, the other
    gives it a little less."""
    def setup() -> tuple[Env, bytes]:
        env = Env()
        escrow = deploy_escrow(env, deadline=10)
        assert env.call(ALICE, escrow, "deposit", attached=((QNX, 4 * ONE_QNX),)).status is OK
        return env, escrow

    env, escrow = setup()
    done = env.call(CAROL, escrow, "release")
    assert done.status is OK

    env, escrow = setup()
    before, bob0, carol0 = env.snapshot(escrow), env.qnx(BOB), env.qnx(CAROL)
    short = done.gas_used - 100  # runs out at its last host call (emit), after the payout
    receipt = env.call(CAROL, escrow, "release", gas_limit=short)
    assert (receipt.status, receipt.reason) == (FAILED, f"out_of_gas: ran out of gas (limit {short})")
    assert receipt.gas_used == short and receipt.fee == short * PRICE
    assert env.qnx(BOB) == bob0  # the payout is undone
    assert env.qnx(CAROL) == carol0 - receipt.fee
    assert env.snapshot(escrow) == before
    assert env.query(escrow, "status") == [1, 4 * ONE_QNX, ALICE.address, 10]
    env.check_fees()


# -- token -------------------------------------------------------------------------------------------

SUPPLY = 1_000_000


def deploy_token(env: Env) -> bytes:
    token, receipt = env.deploy(ALICE, "token", [SUPPLY])
    assert receipt.status is OK, receipt.reason
    assert receipt.events == (Event(token, b"transfer", ZERO_ADDRESS + ALICE.address + u64(SUPPLY)),)
    return token


def balances(env: Env, token: bytes) -> dict[bytes, int]:
    """Every balance in the token's storage; they must sum to the supply."""
    out = {key[1:]: int.from_bytes(value, "little") for key, value in env.storage(token) if key[:1] == b"b"}
    assert sum(out.values()) == env.query(token, "total_supply") == SUPPLY
    return out


def test_token_init_and_queries() -> None:
    env = Env()
    token = deploy_token(env)
    assert env.storage(token) == [(b"b" + ALICE.address, u64(SUPPLY)), (b"s", u64(SUPPLY))]
    assert env.query(token, "total_supply") == SUPPLY
    assert env.query(token, "balance_of", [ALICE.address]) == SUPPLY
    assert env.query(token, "balance_of", [address_to_text(ALICE.address)]) == SUPPLY
    assert env.query(token, "balance_of", [BOB.address]) == 0
    assert env.query(token, "allowance", [ALICE.address, BOB.address]) == 0
    assert env.info(token).methods == ("allowance", "approve", "balance_of", "init", "total_supply", "transfer",
                                       "transfer_from")


def test_token_transfer() -> None:
    env = Env()
    token = deploy_token(env)
    receipt = env.call(ALICE, token, "transfer", [BOB.address, 300])
    assert (receipt.status, receipt.output) == (OK, b"")
    assert receipt.events == (Event(token, b"transfer", ALICE.address + BOB.address + u64(300)),)
    receipt = env.call(BOB, token, "transfer", [address_to_text(CAROL.address), 100])  # qnx1 text works too
    assert receipt.events == (Event(token, b"transfer", BOB.address + CAROL.address + u64(100)),)
    receipt = env.call(CAROL, token, "transfer", [CAROL.address, 100])  # to oneself: no change
    assert receipt.events == (Event(token, b"transfer", CAROL.address + CAROL.address + u64(100)),)
    receipt = env.call(CAROL, token, "transfer", [DAVE.address, 0])  # zero is a transfer too
    assert receipt.status is OK
    assert balances(env, token) == {ALICE.address: SUPPLY - 300, BOB.address: 200, CAROL.address: 100,
                                    DAVE.address: 0}
    assert [env.query(token, "balance_of", [k.address]) for k in (ALICE, BOB, CAROL, DAVE)] == [
        SUPPLY - 300, 200, 100, 0]
    env.check_fees()


def test_token_insufficient_balance_aborts_and_changes_nothing() -> None:
    env = Env()
    token = deploy_token(env)
    assert env.call(ALICE, token, "transfer", [BOB.address, 300]).status is OK
    before = env.snapshot(token)
    for key, amount in ((BOB, 301), (CAROL, 1), (ALICE, SUPPLY)):
        receipt = env.call(key, token, "transfer", [DAVE.address, amount])
        assert (receipt.status, receipt.reason) == (FAILED, aborted(token, "transfer: insufficient balance"))
    assert env.snapshot(token) == before
    assert env.call(BOB, token, "transfer", [DAVE.address, 300]).status is OK  # exactly all of it
    assert balances(env, token) == {ALICE.address: SUPPLY - 300, BOB.address: 0, DAVE.address: 300}
    env.check_fees()


def test_token_approve_and_transfer_from_until_the_allowance_is_spent() -> None:
    env = Env()
    token = deploy_token(env)
    receipt = env.call(ALICE, token, "approve", [CAROL.address, 5])
    assert receipt.events == (Event(token, b"approval", ALICE.address + CAROL.address + u64(5)),)
    receipt = env.call(ALICE, token, "approve", [address_to_text(CAROL.address), 500])  # overwrites
    assert receipt.events == (Event(token, b"approval", ALICE.address + CAROL.address + u64(500)),)
    assert env.query(token, "allowance", [ALICE.address, CAROL.address]) == 500
    assert env.query(token, "allowance", [CAROL.address, ALICE.address]) == 0  # directed

    receipt = env.call(CAROL, token, "transfer_from", [ALICE.address, DAVE.address, 200])
    assert (receipt.status, receipt.output) == (OK, b"")
    assert receipt.events == (Event(token, b"transfer", ALICE.address + DAVE.address + u64(200)),)
    assert env.query(token, "allowance", [ALICE.address, CAROL.address]) == 300
    before = env.snapshot(token)
    receipt = env.call(CAROL, token, "transfer_from", [ALICE.address, CAROL.address, 301])
    assert receipt.reason == aborted(token, "transfer_from: insufficient allowance")
    receipt = env.call(BOB, token, "transfer_from", [ALICE.address, BOB.address, 1])  # bob has no allowance
    assert receipt.reason == aborted(token, "transfer_from: insufficient allowance")
    assert env.snapshot(token) == before
    assert env.call(CAROL, token, "transfer_from", [ALICE.address, CAROL.address, 300]).status is OK
    assert env.query(token, "allowance", [ALICE.address, CAROL.address]) == 0
    receipt = env.call(CAROL, token, "transfer_from", [ALICE.address, CAROL.address, 1])
    assert receipt.reason == aborted(token, "transfer_from: insufficient allowance")
    assert balances(env, token) == {ALICE.address: SUPPLY - 500, CAROL.address: 300, DAVE.address: 200}
    assert env.storage(token)[0] == (b"a" + ALICE.address + CAROL.address, u64(0))
    env.check_fees()


def test_token_transfer_from_beyond_the_balance_reverts_the_allowance_it_spent() -> None:
    """transfer_from lowers the allowance before it moves the balance: the abort must undo that write."""
    env = Env()
    token = deploy_token(env)
    assert env.call(ALICE, token, "transfer", [BOB.address, 50]).status is OK
    assert env.call(BOB, token, "approve", [CAROL.address, 1_000]).status is OK
    before, carol0 = env.snapshot(token), env.qnx(CAROL)
    receipt = env.call(CAROL, token, "transfer_from", [BOB.address, CAROL.address, 51])
    assert (receipt.status, receipt.reason) == (FAILED, aborted(token, "transfer_from: insufficient balance"))
    assert receipt.fee > 0 and receipt.gas_used > call_intrinsic_gas(encode([BOB.address, CAROL.address, 51]))
    assert env.qnx(CAROL) == carol0 - receipt.fee
    assert env.snapshot(token) == before
    assert env.query(token, "allowance", [BOB.address, CAROL.address]) == 1_000
    assert env.call(CAROL, token, "transfer_from", [BOB.address, CAROL.address, 50]).status is OK
    assert env.query(token, "allowance", [BOB.address, CAROL.address]) == 950
    assert balances(env, token) == {ALICE.address: SUPPLY - 50, BOB.address: 0, CAROL.address: 50}
    env.check_fees()


def test_token_transfer_gas() -> None:
    env = Env()
    token = deploy_token(env)
    args = [BOB.address, 7]
    new_holder = env.call(ALICE, token, "transfer", args)
    again = env.call(ALICE, token, "transfer", args)
    assert new_holder.status is again.status is OK
    host = (gas_host(20) + gas_host(20) + gas_host()  # caller, arg_address, arg_u64
            + gas_get(21, 8) + gas_set(21, 8, new=False)  # the payer's balance
            + gas_emit(8, 48))
    base = call_intrinsic_gas(encode(args)) + gas_instance("token") + host
    # the receiver's balance: absent (and created, 29 bytes of growth), then present
    assert new_holder.gas_used - base - gas_get(21, None) - gas_set(21, 8, new=True) == 208  # fuel
    assert again.gas_used - base - gas_get(21, 8) - gas_set(21, 8, new=False) == 209
    assert (new_holder.gas_used, again.gas_used) == (249_860, 220_885)


def test_token_queries_cannot_write() -> None:
    env = Env()
    token = deploy_token(env)
    with pytest.raises(HostCallFailed, match="a query is read-only"):
        env.raw_query(token, "transfer", [BOB.address, 1], caller=ALICE.address)
    assert balances(env, token) == {ALICE.address: SUPPLY}
