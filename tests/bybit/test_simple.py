"""Every Bybit script once, happy path, as a real subprocess against the sandbox venue."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import Result, run_script, validate_envelope

AD = {"side": "sell", "currency": "RUB", "price": "81.50", "quantity": "130", "min_amount": "10000",
      "max_amount": "10000", "payment_methods": ["sbp"], "remarks": "Оплата только с Т-Банка."}


def call(sandbox: Any, name: str, payload: Any) -> Result:
    result = run_script(name, payload, env=sandbox.env)
    assert result.envelope is not None, result.stderr[-2000:]
    validate_envelope(name, result.envelope)
    assert "Traceback" not in result.stdout
    return result


@pytest.fixture(scope="module")
def flow(sandbox: Any) -> dict[str, Any]:
    acc = sandbox.control("POST", "/sandbox/bybit/accounts", json={"count": 1})["accounts"][0]
    cred = {"api_key": acc["api_key"], "api_secret": acc["api_secret"]}
    created = call(sandbox, "bybit_create_ad", {**cred, "ad_params": AD})
    assert created.code == 0, created.stdout
    ad_id = created.data["ad_id"]
    order = sandbox.control("POST", "/sandbox/bybit/orders", json={"item_id": ad_id})
    return {"acc": acc, "cred": cred, "ad_id": ad_id, "order_id": order["order_id"], "created": created.data}


def test_create_ad(flow: dict[str, Any]) -> None:
    data = flow["created"]
    assert data["status"] == "online" and data["need_security_risk"] is False
    sbp = next(m["id"] for m in flow["acc"]["payment_methods"] if m["payment_type"] == "382")
    assert data["sent"]["payment_ids"] == [sbp]


def test_account_info(sandbox: Any, flow: dict[str, Any]) -> None:
    data = call(sandbox, "bybit_account_info", flow["cred"]).data
    assert data["user_id"] == flow["acc"]["uid"]


def test_payment_methods(sandbox: Any, flow: dict[str, Any]) -> None:
    data = call(sandbox, "bybit_payment_methods", flow["cred"]).data
    assert sorted(m["kind"] for m in data["methods"]) == ["sbp", "tinkoff"]


def test_get_rates(sandbox: Any) -> None:
    data = call(sandbox, "bybit_get_rates", {"amount_rub": 10000, "testnet": True}).data
    assert data["testnet"] is True and data["amount_rub"] == "10000"
    assert data["pricing"]["rule"] in ("small_day", "small_night")


def test_list_ads(sandbox: Any, flow: dict[str, Any]) -> None:
    data = call(sandbox, "bybit_list_ads", flow["cred"]).data
    assert flow["ad_id"] in [a["ad_id"] for a in data["items"]]


def test_get_ad(sandbox: Any, flow: dict[str, Any]) -> None:
    data = call(sandbox, "bybit_get_ad", {**flow["cred"], "ad_id": flow["ad_id"]}).data
    assert data["price"] == "81.5" and data["max_amount"] == "10000"


def test_update_ad(sandbox: Any, flow: dict[str, Any]) -> None:
    data = call(sandbox, "bybit_update_ad", {**flow["cred"], "ad_id": flow["ad_id"],
                                             "changes": {"remarks": "Только Т-Банк."}}).data
    assert data["action"] == "modify" and data["sent"]["remark"] == "Только Т-Банк."


def test_list_orders(sandbox: Any, flow: dict[str, Any]) -> None:
    data = call(sandbox, "bybit_list_orders", {**flow["cred"], "pending": True}).data
    assert flow["order_id"] in [o["order_id"] for o in data["items"]]


def test_get_order(sandbox: Any, flow: dict[str, Any]) -> None:
    data = call(sandbox, "bybit_get_order", {**flow["cred"], "order_id": flow["order_id"]}).data
    assert data["status"] == 10 and data["item_id"] == flow["ad_id"] and data["amount"] == "10000"


def test_counterparty_info(sandbox: Any, flow: dict[str, Any]) -> None:
    data = call(sandbox, "bybit_counterparty_info", {**flow["cred"], "order_id": flow["order_id"]}).data
    assert data["user_id"] and data["user_id"] != flow["acc"]["uid"]


def test_send_and_get_chat(sandbox: Any, flow: dict[str, Any]) -> None:
    sent = call(sandbox, "bybit_send_chat", {**flow["cred"], "order_id": flow["order_id"], "text": "Здравствуйте"})
    assert sent.data["content_type"] == "str"
    data = call(sandbox, "bybit_get_chat", {**flow["cred"], "order_id": flow["order_id"]}).data
    ours = [m for m in data["messages"] if m["is_ours"]]
    assert any(m["message"] == "Здравствуйте" and m["msg_uuid"] == sent.data["msg_uuid"] for m in ours)


def test_release_order(sandbox: Any, flow: dict[str, Any]) -> None:
    sandbox.control("POST", f"/sandbox/bybit/orders/{flow['order_id']}/pay")
    data = call(sandbox, "bybit_release_order", {**flow["cred"], "order_id": flow["order_id"]}).data
    assert data["released"] is True
    assert sandbox.control("GET", f"/sandbox/bybit/orders/{flow['order_id']}")["status"] == 50


def test_cancel_ad(sandbox: Any, flow: dict[str, Any]) -> None:
    data = call(sandbox, "bybit_cancel_ad", {**flow["cred"], "ad_id": flow["ad_id"]}).data
    assert data == {"ad_id": flow["ad_id"], "cancelled": True}
