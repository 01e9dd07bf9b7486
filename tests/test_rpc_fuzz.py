"""Hypothesis fuzzing of every JSON-RPC method's params on an Application-backed node (issue 7, finding 8).

A 5,000-request fuzz found HTTP 500s and -32603s (``qenex_getBlock("²")``,
``qenex_getBlock("9"*5000)``, unencodable symbols, deep nesting).  Here every
method gets random JSON of every type, deep, big and unicode (lone
surrogates included), positional and named, alone and in batches, through
the same dispatcher the node serves; every answer must be a JSON-RPC result
or a specific error, never -32603.
"""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.rpc_fixtures import bare_node
from node.jsonrpc import INTERNAL_ERROR, MAX_JSON_DEPTH, Dispatcher, json_depth_exceeds
from node.rpc import RPC_COSTS, build_methods
from node.runtime import Node
from state.crypto import address_to_text
from state.payloads import PoolCreate, Swap
from state.testing import transfer
from tests.test_pools_app import ALICE, BOB, E18, run, with_pool

pytestmark = pytest.mark.timeout(120)


def _node() -> Node:
    chain = with_pool(5 * E18, 10 * E18)
    assert run(chain, BOB, Swap("AAA", "BBB", E18, 0, 1000)).ok
    assert run(chain, ALICE, PoolCreate("BBB", "CCC", 10 * E18, 10 * E18, 0)).ok
    for _ in range(3):
        chain.block()
    return bare_node(chain.app, "fuzz")


NODE = _node()
METHODS = build_methods(NODE.rpc_context())
DISPATCHER = Dispatcher(METHODS, costs=RPC_COSTS)
APP = NODE.app
HEAD = APP.get_block(APP.height)
GOOD_TX = transfer(ALICE, APP.account(ALICE.address).nonce, BOB.address, 1, chain_id=APP.chain_id)

# Values a handler may half-accept: each is a near miss of some parameter.
NEAR_MISSES = [
    "latest", "earliest", "²", "٣", "9" * 5000, "9" * 21, str(2**64), str(2**64 - 1), "0", "-1", "1.5", " 1", "1e3",
    "AAA", "BBB", "CCC", "QNX", "aaa", "AAA/BBB", "BBB/AAA", "AAA/AAA", "AAA/BBB/CCC", "AAA/", "/", "\ud800",
    "A\udfffA", "AAA\x00", "ＡＡＡ", "0x", "0x" + "ab" * 32, "0x" + "zz" * 32, "0x" + "ab" * 31 + "\ud800x",
    "0x" + HEAD.hash.hex(), "0x" + GOOD_TX.hash.hex(), "0x" + GOOD_TX.encode().hex(),
    "0x" + (b"\x91" * 600 + b"\x90").hex(), "0x" + (b"\x91" * 1100 + b"\x90").hex(),
    "0x" + (b"\xdc\xff\xff" + b"\xc0" * 100).hex(), "0x" + ("ff" * 20_000),
    address_to_text(ALICE.address), address_to_text(ALICE.address).upper(), "qnx1", "qnx1" + "q" * 5000,
    0, 1, -1, 2**63, 2**64, 2**128, 2**200, -(2**70), 10**4000, 3, 4, 9, 10_000, 10_001, True, False, None,
    1.5, 1e308, -0.0, [], {}, [1, 2], ["AAA", "BBB"], ["AAA", "BBB", "CCC"], ["AAA", "CCC", "BBB", "AAA"],
    ["AAA"] * 6, {"a": 1},
]

text = st.text(st.characters(codec=None, exclude_categories=()), max_size=40)  # lone surrogates included
scalars = st.none() | st.booleans() | st.integers() | st.integers(-(2**300), 2**300) | \
    st.floats(allow_nan=False, allow_infinity=False) | text | st.sampled_from(NEAR_MISSES)
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=3),
                      max_leaves=12)


@st.composite
def deep(draw, most: int) -> object:
    value: object = draw(scalars)
    for _ in range(draw(st.integers(20, most))):
        value = [value] if draw(st.booleans()) else {"k": value}
    return value


@st.composite
def big(draw) -> object:
    n = draw(st.integers(1000, 20_000))
    return draw(st.sampled_from(["9" * n, "A" * n, "0x" + "00" * n, [1] * n, {str(i): i for i in range(n // 10)}]))


PARAM_NAMES = ["address", "height", "full", "hash", "raw", "limit", "symbol", "pool", "token_in", "token_out",
               "amount_in", "path", "max_hops", "from_height", "to_height", "window_seconds", "x", "\ud800", ""]


def params_nested(most: int) -> st.SearchStrategy[object]:
    """Params whose ``deep`` values have at most ``most`` wrappers around a scalar."""
    param_value = values | deep(most) | big()
    return st.none() | st.lists(param_value, max_size=6) | st.dictionaries(st.sampled_from(PARAM_NAMES) | text,
                                                                           param_value, max_size=5)


# A request nests a deep value in its params container, in the request object,
# and a near miss may be a list itself: 3 levels around the wrappers, so 29 of
# them reach the JSON depth limit of 32 exactly and handlers see the value.  A
# batch adds its array: 28 there (29 was a parse error of the whole batch).
params = params_nested(29)
batch_params = params_nested(28)


def check(response: object, expect_id: object = None) -> None:
    assert isinstance(response, dict) and response["jsonrpc"] == "2.0", response
    json.dumps(response)  # it serialises (ensure_ascii escapes any lone surrogate)
    if "error" in response:
        error = response["error"]
        assert isinstance(error["code"], int) and error["code"] != INTERNAL_ERROR, error
        assert isinstance(error["message"], str) and len(error["message"]) < 2000, error
    else:
        assert "result" in response


async def answer(body: bytes) -> object:
    return await DISPATCHER.handle_payload(body)


@pytest.fixture(autouse=True)
def no_internal_errors(caplog):
    caplog.set_level(logging.ERROR, logger="qenex.rpc")
    yield
    assert not [r for r in caplog.records if r.name.startswith("qenex.rpc")], "an internal error was logged"


FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                       HealthCheck.function_scoped_fixture])


@pytest.mark.parametrize("method", sorted(METHODS))
@FUZZ
@given(p=params)
def test_every_method_answers_random_params_with_a_result_or_a_specific_error(method, p):
    request = {"jsonrpc": "2.0", "id": 1, "method": method}
    if p is not None:
        request["params"] = p
    response = asyncio.run(answer(json.dumps(request).encode()))
    check(response)
    assert response["id"] == 1


@FUZZ
@given(batch=st.lists(st.fixed_dictionaries({"jsonrpc": st.just("2.0"), "id": st.integers(0, 10**6) | text,
                                             "method": st.sampled_from(sorted(METHODS)), "params": batch_params}),
                      min_size=1, max_size=30))
def test_batches_of_random_calls(batch):
    body = json.dumps(batch).encode()
    responses = asyncio.run(answer(body))
    if json_depth_exceeds(body, MAX_JSON_DEPTH):
        # refused whole by the depth scan before it is parsed (a request's params can nest that deep)
        assert responses["error"]["code"] == -32700 and "deeper than" in responses["error"]["message"]
        return
    assert isinstance(responses, list) and len(responses) == len(batch)
    for r in responses:
        check(r)


@FUZZ
@given(body=st.binary(max_size=300) | st.builds(lambda v: json.dumps(v).encode(), values)
       | st.builds(lambda n, c: c * n, st.integers(1, 5000), st.sampled_from([b"[", b"{", b'{"a":', b"[{}", b"\xff"])))
def test_garbage_bodies(body):
    response = asyncio.run(answer(body))
    if isinstance(response, list):
        for r in response:
            check(r)
    elif response is not None:
        check(response)


@pytest.mark.parametrize(
    "method, args, code",
    [
        ("qenex_getBlock", ["²"], -32602),
        ("qenex_getBlock", ["9" * 5000], -32602),
        ("qenex_getBlock", [2**64], -32602),
        ("qenex_getBlock", [2**64 - 1], -32004),
        ("qenex_getBlock", ["latest", "yes"], -32602),
        ("qenex_getToken", ["\ud800"], -32602),
        ("qenex_getToken", ["A\udfffA"], -32602),
        ("qenex_getAccount", ["qnx1\ud800"], -32602),
        ("qenex_getPool", ["AAA/\ud800"], -32602),
        ("qenex_predictPrice", ["\ud800/AAA"], -32602),
        ("qenex_predictPrice", [["AAA/BBB"]], -32602),
        ("qenex_sendTransaction", ["0x" + (b"\x91" * 600 + b"\x90").hex()], -32010),
        ("qenex_riskScore", ["0x" + (b"\x91" * 600 + b"\x90").hex()], -32602),
        ("qenex_getTransaction", ["0x" + "ab" * 31 + "\ud800x"], -32602),
        ("qenex_quoteSwap", ["AAA", "CCC", "1", None, 4], -32602),
        ("qenex_getBlock", [[[[[[[[[[[[[[[[[[[[[[[[[[[[[["deep"]]]]]]]]]]]]]]]]]]]]]]]]]]]]]], -32602),
    ],
)
def test_inputs_the_audit_found_get_specific_errors(method, args, code):
    response = asyncio.run(answer(json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": args}).encode()))
    check(response)
    assert response["error"]["code"] == code, response


def test_json_nested_past_the_limit_is_a_parse_error_not_a_500():
    for depth in (33, 1000, 100_000):
        for opener, closer in ((b"[", b"]"), (b'{"a":', b"}")):
            response = asyncio.run(answer(opener * depth + b"1" + closer * depth))
            assert response["error"]["code"] == -32700 and "deeper than 32" in response["error"]["message"]
    shallow = b"[" * 32 + b"1" + b"]" * 32  # at the limit: parsed, a batch of one invalid request
    assert [r["error"]["code"] for r in asyncio.run(answer(shallow))] == [-32600]
    strings = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "qenex_status", "x": "[" * 5000}).encode()
    assert "result" in asyncio.run(answer(strings))  # brackets inside strings do not count


def test_a_batch_of_expensive_calls_spends_a_bounded_budget():
    quote = {"jsonrpc": "2.0", "method": "qenex_quoteSwap", "params": ["AAA", "CCC", "1000"]}
    batch = [dict(quote, id=i) for i in range(100)]
    responses = asyncio.run(answer(json.dumps(batch).encode()))
    answered = [r for r in responses if "result" in r]
    refused = [r for r in responses if "error" in r]
    assert len(answered) == DISPATCHER.max_batch_cost // RPC_COSTS["qenex_quoteSwap"]
    assert all(r["error"]["code"] == -32005 for r in refused) and len(answered) + len(refused) == 100
