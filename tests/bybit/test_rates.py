"""bybit_get_rates: the keyless market list, the tiered ad price (checked against the sandbox book read
independently over raw HTTP), configurable rules, and failures that must never fall back to a made-up rate."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import requests

from tests.support import Result, run_script, validate_envelope

NAME = "bybit_get_rates"


def rates(sandbox: Any, payload: Any) -> Result:
    result = run_script(NAME, payload, env=sandbox.env)
    assert result.envelope is not None, result.stderr[-2000:]
    validate_envelope(NAME, result.envelope)
    return result


def market_page(sandbox: Any, side: str, page: int, size: int = 10) -> list[dict[str, Any]]:
    body = {"tokenId": "USDT", "currencyId": "RUB", "payment": ["382", "75"], "side": side, "size": str(size),
            "page": str(page), "amount": "", "sortType": "TRADE_PRICE"}
    reply = requests.post(f"{sandbox.url}/fiat/otc/item/online", json=body, timeout=10).json()
    assert reply["ret_code"] == 0
    return reply["result"]["items"]


@pytest.fixture(scope="module", autouse=True)
def frozen_market(sandbox: Any):
    """Stop the drift so the script's read and the test's own read see the same book."""
    sandbox.control("POST", "/sandbox/bybit/market", json={"frozen": True})
    yield
    sandbox.control("POST", "/sandbox/bybit/market", json={"frozen": False})
    sandbox.control("DELETE", "/sandbox/faults")


@pytest.mark.parametrize(
    ("amount", "at", "rule", "page", "msk"),
    [
        (10000, "2026-06-15T09:00:00Z", "small_day", 4, "2026-06-15T12:00:00+03:00"),
        (50000, "2026-06-14T22:00:00Z", "small_night", 2, "2026-06-15T01:00:00+03:00"),
        ("50000.01", "2026-06-15T03:59:00Z", "large_night", 3, "2026-06-15T06:59:00+03:00"),
        (120000, "2026-06-15T04:00:00Z", "large_day", 5, "2026-06-15T07:00:00+03:00"),
    ],
)
def test_tiered_rule_picks_second_to_last_on_the_right_page(sandbox: Any, amount: Any, at: str, rule: str,
                                                            page: int, msk: str) -> None:
    result = rates(sandbox, {"amount_rub": amount, "at": at})
    assert result.code == 0, result.stdout
    data = result.data
    expected_page = market_page(sandbox, "1", page)
    assert len(expected_page) >= 2
    p = data["pricing"]
    assert (p["rule"], p["page"], p["ad_index"], p["moscow_time"]) == (rule, page, -2, msk)
    assert p["item_index"] == len(expected_page) - 2
    assert p["raw_price"] == expected_page[-2]["price"] == data["ad_price"]
    assert p["reference_ad_id"] == expected_page[-2]["id"]
    assert p["page_prices"] == [i["price"] for i in expected_page]
    assert p["market_side"] == "1" and p["rules_source"] == "default_tiered"
    assert data["amount_rub"] == str(amount) and data["timestamp"] == at


def test_rates_follow_the_sellers_and_buyers_books(sandbox: Any) -> None:
    data = rates(sandbox, {"amount_rub": 10000, "testnet": False}).data
    sellers, buyers = market_page(sandbox, "1", 1), market_page(sandbox, "0", 1)
    assert data["sell_rate"] == min((Decimal(i["price"]) for i in sellers), default=None).to_eng_string()
    assert Decimal(data["buy_rate"]) == max(Decimal(i["price"]) for i in buyers)
    assert Decimal(data["spread"]) == Decimal(data["sell_rate"]) - Decimal(data["buy_rate"])
    # Our SELL price comes from the sellers' book, which sits above the best seller.
    assert Decimal(data["ad_price"]) >= Decimal(data["sell_rate"])


def test_rules_input_overrides_the_tiered_rule(sandbox: Any) -> None:
    rules = [
        {"name": "fallback", "priority": 0, "page_number": 2, "ad_index": 0, "price_adjustment": "2"},
        {"name": "evening", "priority": 5, "time_start": "18:00", "time_end": "23:00", "page_number": 1,
         "ad_index": 1, "price_adjustment": "3"},
        {"name": "night", "priority": 5, "time_start": "23:00", "time_end": "07:00", "min_amount": "1000",
         "page_number": 1, "ad_index": 2, "price_adjustment": "4"},
    ]
    first = market_page(sandbox, "1", 1)
    data = rates(sandbox, {"amount_rub": 5000, "at": "2026-06-15T21:30:00Z", "rules": rules}).data  # 00:30 MSK
    assert data["pricing"]["rule"] == "night" and data["pricing"]["rules_source"] == "request"
    raw = Decimal(first[2]["price"])
    assert data["pricing"]["raw_price"] == first[2]["price"]
    assert Decimal(data["ad_price"]) == (raw * Decimal("1.04")).quantize(Decimal("0.01"))
    # The same time with an amount outside the night rule's range falls to the lower-priority rule.
    data = rates(sandbox, {"amount_rub": 999, "at": "2026-06-15T21:30:00Z", "rules": rules}).data
    assert data["pricing"]["rule"] == "fallback" and data["pricing"]["page"] == 2


def test_page_with_too_few_ads_is_an_error(sandbox: Any) -> None:
    rules = [{"name": "far", "page_number": 100, "page_size": 10, "ad_index": -2}]
    result = rates(sandbox, {"amount_rub": 10000, "rules": rules})
    assert result.code == 1
    assert result.error["code"] == "not_enough_ads" and result.error["retryable"] is True


def test_no_matching_rule_is_bad_input(sandbox: Any) -> None:
    rules = [{"name": "day", "time_start": "09:00", "time_end": "18:00", "page_number": 1, "ad_index": 0}]
    result = rates(sandbox, {"amount_rub": 10000, "rules": rules, "at": "2026-06-15T20:00:00Z"})
    assert result.code == 2 and result.error["code"] == "no_matching_rule"


@pytest.mark.parametrize(
    ("fault", "code", "venue_code"),
    [
        ({"kind": "http_status", "status": 502}, "venue_unavailable", 502),
        ({"kind": "http_status", "status": 403}, "ip_rate_limited_or_forbidden", 403),
        ({"kind": "bybit_code", "code": 10016}, "venue_server_error", 10016),
    ],
)
def test_unreadable_market_fails_retryable_without_fallback(sandbox: Any, fault: dict, code: str,
                                                           venue_code: int) -> None:
    sandbox.control("POST", "/sandbox/faults", json={**fault, "path": "/fiat/otc/item/online", "remaining": 1})
    result = rates(sandbox, {"amount_rub": 10000})
    assert result.code == 1
    assert result.error["code"] == code and result.error["retryable"] is True
    assert result.error["venue_code"] == venue_code
    assert "ad_price" not in result.stdout


def test_market_host_unreachable(sandbox: Any) -> None:
    from tests.support import free_port

    result = run_script(NAME, {"amount_rub": 10000},
                        env={**sandbox.env, "ITRADER_BYBIT_MARKET_URL": f"http://127.0.0.1:{free_port()}"})
    validate_envelope(NAME, result.envelope)
    assert result.code == 1 and result.error["code"] == "network_error" and result.error["retryable"]


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        ({}, "schema_violation"),
        ({"amount_rub": "ten"}, "schema_violation"),
        ({"amount_rub": 0}, "invalid_amount"),
        ({"amount_rub": 1.5e300}, "invalid_amount"),
        ({"amount_rub": "10000.001"}, "invalid_amount"),
        ({"amount_rub": 100, "at": "2026-06-15T09:00:00"}, "invalid_at"),
        ({"amount_rub": 100, "rules": [{"name": "x", "page_number": 1, "ad_index": 0, "time_start": "25:00",
                                        "time_end": "01:00"}]}, "schema_violation"),
        ({"amount_rub": 100, "api_key": "x"}, "schema_violation"),
    ],
)
def test_bad_input_exits_2(sandbox: Any, payload: dict, code: str) -> None:
    result = rates(sandbox, payload)
    assert result.code == 2 and result.error["code"] == code


def test_market_timeout(sandbox: Any) -> None:
    sandbox.control("POST", "/sandbox/faults", json={"kind": "timeout", "delay_s": 3, "path": "/fiat/otc/item/online"})
    result = rates(sandbox, {"amount_rub": 10000, "timeout_s": 0.5})
    assert result.code == 1 and result.error["code"] == "timeout" and result.error["retryable"] is True


def test_serve_mode_reuses_the_connection_and_survives_a_failure(sandbox: Any) -> None:
    from tests.support import ServeWorker

    worker = ServeWorker(NAME, env=sandbox.env)
    try:
        first = worker.call({"amount_rub": 10000, "at": "2026-06-15T09:00:00Z"})
        sandbox.control("POST", "/sandbox/faults", json={"kind": "http_status", "status": 503,
                                                         "path": "/fiat/otc/item/online"})
        failed = worker.call({"amount_rub": 10000, "at": "2026-06-15T09:00:00Z"})
        again = worker.call({"amount_rub": 10000, "at": "2026-06-15T09:00:00Z"})
    finally:
        assert worker.close() == 0
    for envelope in (first, failed, again):
        validate_envelope(NAME, envelope)
    assert failed["error"]["code"] == "venue_unavailable"
    assert first["data"]["ad_price"] == again["data"]["ad_price"]
