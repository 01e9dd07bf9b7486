"""Internal RPC errors cannot flood the log, and the JSON depth scan is exact (issue 7, finding 3).

Each deep-nested transaction used to log a ~3,000-line traceback: 100
requests grew the log by 14 MiB.
"""

from __future__ import annotations

import asyncio
import json
import logging

from hypothesis import given, settings
from hypothesis import strategies as st

from node.jsonrpc import INTERNAL_ERROR, Dispatcher, ErrorLog, json_depth_exceeds


def _recurse(n: int) -> None:
    _recurse(n + 1)


def test_a_thousand_internal_errors_log_a_bounded_amount(caplog):
    now = [0.0]
    dispatcher = Dispatcher({"boom": lambda: _recurse(0)},
                            errors=ErrorLog(logging.getLogger("qenex.rpc.test"), clock=lambda: now[0]))
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "boom"}).encode()
    with caplog.at_level(logging.ERROR, logger="qenex.rpc.test"):
        for i in range(1000):
            now[0] = i * 0.01  # 100 requests a second for 10 s
            assert asyncio.run(dispatcher.handle_payload(body))["error"]["code"] == INTERNAL_ERROR
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) <= 10 * 11  # at most 10 lines a second
    assert sum("Traceback" in line for line in lines) == 1  # one capped traceback per minute
    assert all(len(line) < 5000 for line in lines)
    assert "RecursionError" in lines[0] and any("90 more suppressed" in line for line in lines)


def _depth(value: object) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


json_values = st.recursive(st.none() | st.integers() | st.text(alphabet='[]{}"\\ab,:'),
                           lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text('[]{}"\\'), inner,
                                                                                          max_size=3),
                           max_leaves=40)


@settings(max_examples=300, deadline=None)
@given(value=json_values, limit=st.integers(0, 12))
def test_depth_scan_agrees_with_the_parsed_depth(value, limit):
    body = json.dumps(value).encode()
    assert json_depth_exceeds(body, limit) == (_depth(value) > limit)
