"""bybit_account_info, bybit_payment_methods (kinds by the mapping rules, Balance skipped) and
bybit_counterparty_info, compared with what the sandbox venue holds."""

from __future__ import annotations

from typing import Any

from tests.support import Result, run_script, validate_envelope


def call(sandbox: Any, name: str, payload: Any, env: dict[str, str] | None = None) -> Result:
    result = run_script(name, payload, env={**sandbox.env, **(env or {})})
    assert result.envelope is not None, result.stderr[-2000:]
    validate_envelope(name, result.envelope)
    return result


def test_account_info_matches_the_venue(sandbox: Any) -> None:
    acc = sandbox.control("POST", "/sandbox/bybit/accounts",
                          json={"count": 1, "nick": "h2merchant", "real_name": "Petrov Petr"})["accounts"][0]
    data = call(sandbox, "bybit_account_info", {"api_key": acc["api_key"], "api_secret": acc["api_secret"]}).data
    assert data["user_id"] == acc["uid"] and data["account_id"] == acc["account_id"]
    assert data["nick_name"] == "h2merchant" and data["real_name"] == "Petrov Petr"
    assert isinstance(data["total_finish_count"], int) and data["register_time"].endswith("Z")


def test_credentials_from_the_environment(sandbox: Any) -> None:
    acc = sandbox.control("POST", "/sandbox/bybit/accounts", json={"count": 1})["accounts"][0]
    result = call(sandbox, "bybit_account_info", {},
                  env={"BYBIT_API_KEY": acc["api_key"], "BYBIT_API_SECRET": acc["api_secret"]})
    assert result.code == 0 and result.data["user_id"] == acc["uid"]
    assert acc["api_secret"] not in result.stdout + result.stderr
    assert acc["api_key"] not in result.stdout + result.stderr


def test_payment_methods_are_classified_and_balance_skipped(sandbox: Any) -> None:
    acc = sandbox.control("POST", "/sandbox/bybit/accounts",
                          json={"count": 1, "methods": ["75", "382", "14"]})["accounts"][0]
    data = call(sandbox, "bybit_payment_methods", {"api_key": acc["api_key"], "api_secret": acc["api_secret"]}).data
    by_type = {m["payment_type"]: m for m in data["methods"]}
    assert "-1" not in [m["id"] for m in data["methods"]] and "377" not in by_type
    assert by_type["75"]["kind"] == "tinkoff" and by_type["382"]["kind"] == "sbp"
    assert by_type["14"]["kind"] in ("other", "sbp", "tinkoff")
    venue_ids = {m["id"] for m in acc["payment_methods"] if m["id"] != "-1"}
    assert {m["id"] for m in data["methods"]} == venue_ids and data["count"] == len(venue_ids)


def test_counterparty_info_is_the_buyer(sandbox: Any) -> None:
    acc = sandbox.control("POST", "/sandbox/bybit/accounts", json={"count": 1})["accounts"][0]
    cred = {"api_key": acc["api_key"], "api_secret": acc["api_secret"]}
    ad = {"price": "80", "quantity": "100", "min_amount": "1000", "max_amount": "1000", "payment_methods": ["sbp"]}
    ad_id = call(sandbox, "bybit_create_ad", {**cred, "ad_params": ad}).data["ad_id"]
    order = sandbox.control("POST", "/sandbox/bybit/orders", json={"item_id": ad_id, "buyer_nick": "h2buyer"})
    data = call(sandbox, "bybit_counterparty_info", {**cred, "order_id": order["order_id"]}).data
    assert data["user_id"] == order["buyer_uid"] == data["original_uid"] and data["nick_name"] == "h2buyer"
    explicit = call(sandbox, "bybit_counterparty_info",
                    {**cred, "order_id": order["order_id"], "original_uid": order["buyer_uid"]}).data
    assert explicit["user_id"] == order["buyer_uid"]
