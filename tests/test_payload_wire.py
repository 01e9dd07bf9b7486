"""Payload wire forms: each payload declares its field order once (``WIRE``), and that order is the encoding.

The dataclass field order is not part of the consensus encoding: a class body
reordered by a refactor must not change a byte, and a change to ``WIRE``
itself must fail here, loudly, against the literal table below.
"""

from __future__ import annotations

import ast
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from state.codec import encode
from state.errors import MalformedTransaction
from state.payloads import (
    BATCH_OP_TYPES,
    PAYLOAD_TYPES,
    Batch,
    ContractCall,
    ContractDeploy,
    FieldCodec,
    FlashBorrow,
    FlashRepay,
    PoolAdd,
    PoolCreate,
    PoolRemove,
    RewardsClaim,
    SetRewardRate,
    Swap,
    SwapRoute,
    TokenCreate,
    TokenMint,
    Transfer,
    Redelegate,
    Stake,
    StakingRewardsWithdraw,
    Unjail,
    Unstake,
    ValidatorCreate,
    ValidatorEdit,
    WireStruct,
    check_wire_fields,
)

ROOT = Path(__file__).resolve().parents[1]
TO = b"\x01" * 20

# The consensus encoding of every payload: (name in errors, wire field order).
# Changing a row changes the bytes of every transaction of that kind.
WIRE_TABLE: dict[type, tuple[str, tuple[str, ...]]] = {
    Transfer: ("transfer payload", ("to", "token", "amount")),
    TokenCreate: ("token create payload", ("symbol", "name", "decimals", "initial_supply")),
    TokenMint: ("token mint payload", ("symbol", "to", "amount")),
    PoolCreate: ("pool create payload", ("token_a", "token_b", "amount_a", "amount_b", "min_shares")),
    PoolAdd: ("pool add payload", ("token_a", "token_b", "amount_a", "amount_b", "min_shares")),
    PoolRemove: ("pool remove payload", ("token_a", "token_b", "shares", "min_a", "min_b")),
    Swap: ("swap payload", ("token_in", "token_out", "amount_in", "min_out", "deadline")),
    SwapRoute: ("swap route payload", ("path", "amount_in", "min_out", "deadline")),
    FlashBorrow: ("flash borrow op", ("token_a", "token_b", "token", "amount")),
    FlashRepay: ("flash repay op", ("token_a", "token_b", "token", "amount")),
    Batch: ("batch payload", ("ops",)),
    RewardsClaim: ("rewards claim payload", ("token_a", "token_b")),
    SetRewardRate: ("set reward rate payload", ("token_a", "token_b", "rate")),
    ValidatorCreate: ("validator create payload", ("pubkey", "moniker", "commission_bps", "self_bond", "proof")),
    ValidatorEdit: ("validator edit payload", ("moniker", "commission_bps")),
    Stake: ("stake payload", ("validator", "amount")),
    Unstake: ("unstake payload", ("validator", "amount")),
    Redelegate: ("redelegate payload", ("source", "destination", "amount")),
    Unjail: ("unjail payload", ()),
    StakingRewardsWithdraw: ("staking rewards withdraw payload", ()),
    ContractDeploy: ("contract deploy payload", ("code", "init_args", "attached", "gas_limit")),
    ContractCall: ("contract call payload", ("contract", "method", "args", "attached", "gas_limit")),
}

SAMPLES: dict[type, WireStruct] = {
    Transfer: Transfer(TO, "QNX", 5),
    TokenCreate: TokenCreate("AAA", "Alpha", 6, 100),
    TokenMint: TokenMint("AAA", TO, 7),
    PoolCreate: PoolCreate("AAA", "BBB", 10, 20, 3),
    PoolAdd: PoolAdd("AAA", "BBB", 10, 20, 3),
    PoolRemove: PoolRemove("AAA", "BBB", 10, 1, 2),
    Swap: Swap("AAA", "BBB", 10, 4, 99),
    SwapRoute: SwapRoute(("AAA", "BBB", "CCC"), 10, 4, 99),
    FlashBorrow: FlashBorrow("AAA", "BBB", "AAA", 1000),
    FlashRepay: FlashRepay("AAA", "BBB", "AAA", 1004),
    Batch: Batch((FlashBorrow("AAA", "BBB", "AAA", 1000), Swap("AAA", "BBB", 10, 4, 99),
                  SwapRoute(("BBB", "AAA"), 3, 1, 99), FlashRepay("AAA", "BBB", "AAA", 1004))),
    RewardsClaim: RewardsClaim("AAA", "BBB"),
    SetRewardRate: SetRewardRate("AAA", "BBB", 12),
    ValidatorCreate: ValidatorCreate(b"\x07" * 32, "val", 500, 10**18, b"\x08" * 64),
    ValidatorEdit: ValidatorEdit("val", 600),
    Stake: Stake(TO, 9),
    Unstake: Unstake(TO, 9),
    Redelegate: Redelegate(TO, b"\x02" * 20, 9),
    Unjail: Unjail(),
    StakingRewardsWithdraw: StakingRewardsWithdraw(),
    ContractDeploy: ContractDeploy(b"\0asm\x01\0\0\0", b"\x90", (("AAA", 5), ("QNX", 7)), 1_000_000),
    ContractCall: ContractCall(TO, "transfer", b"\x92\x01\x02", (("QNX", 3),), 200_000),
}

ALL_PAYLOADS = sorted({*PAYLOAD_TYPES.values(), *BATCH_OP_TYPES.values()}, key=lambda cls: cls.__name__)


def test_the_tables_cover_every_payload_and_batch_operation():
    assert set(WIRE_TABLE) == set(ALL_PAYLOADS) == set(SAMPLES)


@pytest.mark.parametrize("cls", ALL_PAYLOADS, ids=lambda cls: cls.__name__)
def test_wire_order_and_error_name_equal_the_literal_table(cls):
    name, wire = WIRE_TABLE[cls]
    assert cls.WIRE == wire
    assert cls.WIRE_NAME == name


@pytest.mark.parametrize("cls", ALL_PAYLOADS, ids=lambda cls: cls.__name__)
def test_wire_names_every_dataclass_field_exactly_once(cls):
    fields = [f.name for f in dataclasses.fields(cls)]
    assert len(set(cls.WIRE)) == len(cls.WIRE), f"{cls.__name__}.WIRE lists a field twice"
    assert sorted(cls.WIRE) == sorted(fields), f"{cls.__name__}.WIRE {cls.WIRE} vs fields {fields}"
    assert set(cls.WIRE_CODECS) <= set(cls.WIRE)
    check_wire_fields(cls)  # the import-time check agrees


@pytest.mark.parametrize("cls", ALL_PAYLOADS, ids=lambda cls: cls.__name__)
def test_wire_is_the_fields_in_wire_order_and_round_trips(cls):
    sample = SAMPLES[cls]
    wire = sample.to_wire()
    plain = [getattr(sample, name) for name in cls.WIRE]
    expected = [cls.WIRE_CODECS[n].to_wire(v) if n in cls.WIRE_CODECS else v for n, v in zip(cls.WIRE, plain)]
    assert wire == expected
    assert cls.from_wire(wire) == sample
    assert cls.from_wire(wire).to_wire() == wire


@pytest.mark.parametrize("cls", ALL_PAYLOADS, ids=lambda cls: cls.__name__)
def test_a_wrong_arity_names_the_payload(cls):
    name, wire = WIRE_TABLE[cls]
    good = SAMPLES[cls].to_wire()
    shorter = [(good[:-1], f"array of {len(wire) - 1}")] if wire else []  # a field-less payload has none
    for bad, got in (*shorter, (good + [1], f"array of {len(wire) + 1}"), (tuple(good), "tuple"), (None, "NoneType")):
        with pytest.raises(MalformedTransaction) as err:
            cls.from_wire(bad)
        assert str(err.value) == f"{name} must be an array of {len(wire)} fields, got {got}"


def _reordered(cls: type) -> type:
    """A twin of ``cls`` whose dataclass fields are declared in reverse order, with the same WIRE."""
    fields = [(f.name, f.type) for f in reversed(dataclasses.fields(cls))]
    namespace: dict[str, Any] = {
        "WIRE": cls.WIRE, "WIRE_NAME": cls.WIRE_NAME, "WIRE_CODECS": cls.WIRE_CODECS,
        "__post_init__": cls.__post_init__,  # reads fields by name, so it checks the twin the same way
        "__annotations__": {"WIRE": ClassVar, "WIRE_NAME": ClassVar, "WIRE_CODECS": ClassVar},
    }
    return dataclasses.make_dataclass(f"Reordered{cls.__name__}", fields, bases=(WireStruct,), namespace=namespace,
                                      frozen=True, slots=True)


@pytest.mark.parametrize("cls", [cls for cls in ALL_PAYLOADS if len(cls.WIRE) > 1], ids=lambda cls: cls.__name__)
def test_a_reordered_dataclass_encodes_to_the_same_bytes(cls):
    sample = SAMPLES[cls]
    twin_cls = _reordered(cls)
    values = {name: getattr(sample, name) for name in cls.WIRE}
    twin = twin_cls(**values)
    # The twin's positional order really differs, so only WIRE can make the bytes agree.
    assert [f.name for f in dataclasses.fields(twin_cls)] != list(cls.WIRE)
    assert encode(twin.to_wire()) == encode(sample.to_wire())
    back = twin_cls.from_wire(sample.to_wire())
    assert {name: getattr(back, name) for name in cls.WIRE} == values


def test_a_reordered_transfer_written_out_by_hand_keeps_its_bytes():
    @dataclass(frozen=True, slots=True)
    class ShuffledTransfer(WireStruct):
        WIRE: ClassVar[tuple[str, ...]] = ("to", "token", "amount")
        WIRE_NAME: ClassVar[str] = "transfer payload"
        amount: int
        token: str
        to: bytes

    check_wire_fields(ShuffledTransfer)
    shuffled = ShuffledTransfer(amount=5, token="QNX", to=TO)
    assert encode(shuffled.to_wire()) == encode(Transfer(TO, "QNX", 5).to_wire())
    assert shuffled.to_wire() == [TO, "QNX", 5]
    assert ShuffledTransfer.from_wire([TO, "QNX", 5]) == shuffled
    with pytest.raises(MalformedTransaction, match="^transfer payload must be an array of 3 fields, got array of 2$"):
        ShuffledTransfer.from_wire([TO, "QNX"])


def _payload_class(wire: tuple[str, ...], codecs: dict[str, FieldCodec] | None = None, name: str = "test payload"):
    @dataclass(frozen=True, slots=True)
    class Probe(WireStruct):
        a: int
        b: int

    Probe.WIRE = wire  # type: ignore[misc]
    Probe.WIRE_NAME = name  # type: ignore[misc]
    if codecs is not None:
        Probe.WIRE_CODECS = codecs  # type: ignore[misc]
    return Probe


@pytest.mark.parametrize(
    "wire, codecs, problem",
    [
        (("a",), None, "leaves out b"),
        (("a", "b", "b"), None, "lists b twice"),
        (("a", "b", "c"), None, "names c, which are not fields"),
        (("a", "b"), {"c": FieldCodec(list, list)}, "has codecs for c, which are not in WIRE"),
    ],
)
def test_a_wire_that_disagrees_with_the_fields_is_refused(wire, codecs, problem):
    with pytest.raises(TypeError, match=f"Probe.WIRE .*{problem}"):
        check_wire_fields(_payload_class(wire, codecs))


def test_a_payload_without_an_error_name_is_refused():
    cls = _payload_class(("a", "b"))
    del cls.WIRE_NAME
    with pytest.raises(TypeError, match="has no WIRE_NAME"):
        check_wire_fields(cls)


def _project_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("state"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("state")}
    return names


def test_the_data_model_modules_depend_one_way():
    """payloads <- transactions <- blocks, and the old catch-all module is gone."""
    assert not (ROOT / "state" / "types.py").exists()
    assert not _project_imports(ROOT / "state" / "payloads.py") & {"state.transactions", "state.blocks"}
    assert "state.blocks" not in _project_imports(ROOT / "state" / "transactions.py")
    assert "state.payloads" in _project_imports(ROOT / "state" / "transactions.py")
    assert "state.transactions" in _project_imports(ROOT / "state" / "blocks.py")
