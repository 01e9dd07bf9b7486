"""JSON-RPC 2.0 framing: batches, notifications, and the spec's error codes."""

import json

import pytest

from node.jsonrpc import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    Dispatcher,
    RPCError,
    make_app,
)


def _dispatcher() -> Dispatcher:
    def add(a: int, b: int) -> int:
        return a + b

    def boom() -> None:
        raise ZeroDivisionError("bug")

    def refuse() -> None:
        raise RPCError(-32010, "nope", {"why": "because"})

    async def echo(value: str = "x") -> str:
        return value

    return Dispatcher({"add": add, "boom": boom, "refuse": refuse, "echo": echo}, max_batch=3)


async def _call(payload) -> object:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return await _dispatcher().handle_payload(body)


async def test_positional_and_named_params():
    assert await _call({"jsonrpc": "2.0", "id": 1, "method": "add", "params": [2, 3]}) == {
        "jsonrpc": "2.0", "id": 1, "result": 5}
    r = await _call({"jsonrpc": "2.0", "id": "a", "method": "add", "params": {"a": 1, "b": 1}})
    assert r["result"] == 2 and r["id"] == "a"
    r = await _call({"jsonrpc": "2.0", "id": 2, "method": "echo"})
    assert r["result"] == "x"


@pytest.mark.parametrize(
    "payload, code",
    [
        (b"{not json", PARSE_ERROR),
        (b"\xff\xfe", PARSE_ERROR),
        ({"jsonrpc": "1.0", "id": 1, "method": "add"}, INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": 1, "method": 5}, INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": {"x": 1}, "method": "add"}, INVALID_REQUEST),
        ({"jsonrpc": "2.0", "id": 1, "method": "add", "params": "oops"}, INVALID_REQUEST),
        ([], INVALID_REQUEST),
        ([1, 2, 3, 4], INVALID_REQUEST),  # over max_batch
        ({"jsonrpc": "2.0", "id": 1, "method": "nope"}, METHOD_NOT_FOUND),
        ({"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1]}, INVALID_PARAMS),
        ({"jsonrpc": "2.0", "id": 1, "method": "add", "params": {"a": 1, "c": 2}}, INVALID_PARAMS),
        ({"jsonrpc": "2.0", "id": 1, "method": "boom"}, INTERNAL_ERROR),
        ({"jsonrpc": "2.0", "id": 1, "method": "refuse"}, -32010),
    ],
)
async def test_errors_carry_spec_codes(payload, code):
    response = await _call(payload)
    assert response["error"]["code"] == code
    assert response["error"]["message"]


async def test_method_error_keeps_its_data():
    response = await _call({"jsonrpc": "2.0", "id": 9, "method": "refuse"})
    assert response == {"jsonrpc": "2.0", "id": 9, "error": {"code": -32010, "message": "nope", "data": {"why": "because"}}}


async def test_batch_mixes_results_errors_and_notifications():
    response = await _call(
        [
            {"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 2]},
            {"jsonrpc": "2.0", "method": "add", "params": [1, 2]},  # notification: no reply
            {"jsonrpc": "2.0", "id": 3, "method": "nope"},
        ]
    )
    assert [r["id"] for r in response] == [1, 3]
    assert response[0]["result"] == 3
    assert response[1]["error"]["code"] == METHOD_NOT_FOUND


async def test_batch_of_only_notifications_returns_nothing():
    assert await _call([{"jsonrpc": "2.0", "method": "add", "params": [1, 2]}]) is None


async def test_http_server_rejects_oversize_body_and_keeps_serving(aiohttp_unused_port=None):
    from aiohttp.test_utils import TestClient, TestServer

    app = make_app(_dispatcher(), max_request_bytes=200)
    async with TestClient(TestServer(app, host="127.0.0.1")) as client:
        big = {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": ["y" * 1000]}
        r = await client.post("/", json=big)
        assert r.status == 413
        r = await client.post("/", json={"jsonrpc": "2.0", "id": 1, "method": "add", "params": [1, 2]})
        assert (await r.json())["result"] == 3
        r = await client.post("/", data=b"garbage")
        assert (await r.json())["error"]["code"] == PARSE_ERROR
