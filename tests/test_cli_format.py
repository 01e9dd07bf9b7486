"""cli/format: exact amounts with separators and symbols, readable heights, times and ages."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli import format as fmt
from state.amounts import MAX_AMOUNT, parse_amount


@pytest.mark.parametrize("units, decimals, text", [
    (0, 18, "0 QNX"),
    (1, 18, "0.000000000000000001 QNX"),
    (0, 0, "0 QNX"),
    (1, 0, "1 QNX"),
    (2**128 - 1, 0, "340,282,366,920,938,463,463,374,607,431,768,211,455 QNX"),
    (2**128 - 1, 18, "340,282,366,920,938,463,463.374607431768211455 QNX"),
    (1_000_012_500_000_000_000_000_000, 18, "1,000,012.5 QNX"),
    ("1000000", 6, "1 QNX"),
    (999, 0, "999 QNX"),
    (1000, 0, "1,000 QNX"),
    (123_456_789, 3, "123,456.789 QNX"),
])
def test_amounts_are_exact(units, decimals, text):
    assert fmt.amount(units, decimals, "QNX") == text


def test_amount_without_symbol_or_decimals():
    assert fmt.amount(1_500_000, 6) == "1.5"
    assert fmt.amount(1_234_567, None, "GOLD") == "1,234,567 base units of GOLD"


@given(st.integers(0, MAX_AMOUNT), st.integers(0, 36))
def test_an_amount_reads_back_to_the_same_units(units, decimals):
    text = fmt.amount(units, decimals, "X")
    assert text.endswith(" X") and "e" not in text
    assert parse_amount(text[:-2].replace(",", ""), decimals) == units


def test_group_digits_and_heights():
    assert [fmt.group_digits(d) for d in ("0", "12", "123", "1234", "-1234567")] == ["0", "12", "123", "1,234",
                                                                                    "-1,234,567"]
    assert fmt.height(1_234_567) == "1,234,567" and fmt.height(None) == "-"


def test_times_are_utc_iso_with_their_age():
    t = 1_764_668_183_120  # 2025-12-02T09:36:23.120Z
    assert fmt.timestamp(t) == "2025-12-02T09:36:23.120Z"
    assert fmt.timestamp(t, t + 5_000) == "2025-12-02T09:36:23.120Z (5 s ago)"
    assert fmt.timestamp(t, t - 61_000).endswith("(in 1 min 1 s)")
    assert [fmt.age(ms) for ms in (0, 250, 1_000, 59_999, 60_000, 3_605_000, 3_665_000, 90_061_000)] == [
        "0 ms", "250 ms", "1 s", "59 s", "1 min", "1 h", "1 h 1 min", "1 d 1 h"]


def test_status_summary_says_what_the_node_is():
    status = {"chain_id": "c", "node": "node0", "height": 1204, "latest_block_hash": "0xab",
              "latest_block_time_ms": 1_000_000, "app_hash": "0x", "peers": 3, "peer_id": None,
              "validator": "qnx1v", "mempool_size": 12_345, "syncing": False,
              "consensus": {"height": 1205, "view": 0, "step": "propose"}}
    text = fmt.render_status(status, 1_002_000)
    assert "node0 on chain c" in text and "1,204 (last block 1970-01-01T00:16:40.000Z (2 s ago))" in text
    assert "yes, qnx1v" in text and "12,345 pending" in text and "syncing     no" in text
    observer = fmt.render_status({**status, "validator": None, "syncing": True, "consensus": None}, 1_002_000)
    assert "no (observer)" in observer and "syncing     yes" in observer and "consensus" not in observer


def test_account_renders_each_balance_with_its_decimals():
    text = fmt.render_account({"address": "qnx1a", "nonce": 2, "pending_nonce": 3, "queued": 0,
                               "balances": {"GOLD": "5250000", "QNX": "1000012500000000000000000", "ODD": "7"}},
                              {"GOLD": 6, "QNX": 18}.get)
    assert "5.25 GOLD" in text and "1,000,012.5 QNX" in text and "7 base units of ODD" in text
    assert "2 (next 3)" in text


def test_an_account_at_a_past_height_has_no_pending_nonce_and_shows_no_none():
    account = {"address": "qnx1a", "height": 7, "nonce": 3, "pending_nonce": None, "queued": None, "balances": {}}
    shown = fmt.render_account(account, lambda s: 18)
    assert "None" not in shown and "3 (next: n/a at a past height)" in shown and "height    7" in shown
    assert "3 (next 4)" in fmt.render_account({**account, "pending_nonce": 4, "queued": 0}, lambda s: 18)


def test_a_record_without_index_or_risk_values_shows_no_none():
    record = {"hash": "0xab", "status": "ok", "committed": True, "height": 3, "kind": "transfer", "sender": "s",
              "nonce": 0, "fee": "1", "risk": {}}
    shown = fmt.render_tx(record, lambda s: 18)
    assert "None" not in shown and "ok at height 3" in shown and "risk    - (score -)" in shown
    assert "ok at height 3, index 2" in fmt.render_tx({**record, "index": 2}, lambda s: 18)


def test_the_plain_renderer_shows_null_as_a_dash():
    from cli.common import render

    assert render({"to_height": None, "twap": "1.5"}) == "to_height: -\ntwap: 1.5"


def test_printable_escapes_what_would_drive_a_terminal():
    from cli.common import printable

    assert printable("a\x1b[2Jb\nc\u202ed") == "a\\x1b[2Jb\nc\\u202ed"
    assert printable("a\nb", one_line=True) == "a\\nb"
    assert printable("x" * 20, 5) == "xxxxx... (15 more characters)"
    assert printable("1,000.5 QNX") == "1,000.5 QNX"
