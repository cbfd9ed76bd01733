"""bybit_create_ad (and bybit_update_ad): the old bridge's input, kinds resolved to own method ids, every
venue rejection checked before sending, venue answers mapped, and the ad checked in the venue's ground truth."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support import Result, run_script, validate_envelope

REMARK = "Оплата только с Т-Банка или по СБП без комиссии. Чек PDF с почты банка обязателен. Напишите +."


def ad_params(**over: Any) -> dict[str, Any]:
    base = {"side": "sell", "currency": "RUB", "price": "81.25", "quantity": "125.5", "min_amount": "10000",
            "max_amount": "10000", "payment_methods": ["sbp"], "remarks": REMARK}
    return {**base, **over}


def call(sandbox: Any, name: str, payload: Any) -> Result:
    result = run_script(name, payload, env=sandbox.env)
    assert result.envelope is not None, result.stderr[-2000:]
    validate_envelope(name, result.envelope)
    return result


def new_account(sandbox: Any, **kw: Any) -> tuple[dict[str, Any], dict[str, str]]:
    acc = sandbox.control("POST", "/sandbox/bybit/accounts", json={"count": 1, **kw})["accounts"][0]
    return acc, {"api_key": acc["api_key"], "api_secret": acc["api_secret"]}


def venue_ads(sandbox: Any, uid: str) -> list[dict[str, Any]]:
    reply = sandbox.control("GET", "/sandbox/bybit/ads", params={"uid": uid})
    return reply["ads"] if isinstance(reply, dict) else reply


def method_id(acc: dict[str, Any], ptype: str) -> str:
    return next(m["id"] for m in acc["payment_methods"] if m["payment_type"] == ptype)


@pytest.fixture(scope="module")
def account(sandbox: Any) -> tuple[dict[str, Any], dict[str, str]]:
    return new_account(sandbox)


@pytest.mark.parametrize(("entry", "ptype"), [("sbp", "382"), ("tinkoff", "75"), ("own", "75")])
def test_create_resolves_payment_methods(sandbox: Any, account: Any, entry: str, ptype: str) -> None:
    acc, cred = account
    wanted = method_id(acc, ptype) if entry == "own" else entry
    result = call(sandbox, "bybit_create_ad", {**cred, "ad_params": ad_params(payment_methods=[wanted])})
    assert result.code == 0, result.stdout
    data = result.data
    assert data["sent"]["payment_ids"] == [method_id(acc, ptype)]
    ad = next(a for a in venue_ads(sandbox, acc["uid"]) if a["id"] == data["ad_id"])
    assert ad["price"] == "81.25" and ad["min_amount"] == "10000" and ad["max_amount"] == "10000"
    assert ad["payment_ids"] == [method_id(acc, ptype)] and ad["remark"] == REMARK
    assert data["status"] == "online" and data["created_time"].endswith("Z")


def test_numbers_as_json_numbers_are_sent_as_decimal_strings(sandbox: Any) -> None:
    acc, cred = new_account(sandbox)
    payload = {**cred, "payment_period": 30, "ad_params": ad_params(price=81.35, quantity=130, min_amount=500,
                                                                     max_amount=10000.5)}
    data = call(sandbox, "bybit_create_ad", payload).data
    assert data["sent"]["price"] == "81.35" and data["sent"]["max_amount"] == "10000.5"
    ad = next(a for a in venue_ads(sandbox, acc["uid"]) if a["id"] == data["ad_id"])
    assert ad["price"] == "81.35" and ad["payment_period"] == 30


@pytest.mark.parametrize(
    ("params", "code"),
    [
        ({"min_amount": "20000", "max_amount": "10000"}, "invalid_ad_params"),
        ({"quantity": "100", "price": "81", "max_amount": "8100.01", "min_amount": "100"}, "invalid_ad_params"),
        ({"remarks": "x" * 901}, "schema_violation"),
        ({"payment_methods": ["1", "2", "3", "4", "5", "6"]}, "schema_violation"),
        ({"payment_methods": []}, "schema_violation"),
        ({"payment_methods": ["qiwi"]}, "schema_violation"),
        ({"price": "81,5"}, "schema_violation"),
        ({"price": "0"}, "invalid_ad_params"),
        ({"side": "sideways"}, "schema_violation"),
    ],
)
def test_validation_before_sending(sandbox: Any, account: Any, params: dict, code: str) -> None:
    acc, cred = account
    before = len(venue_ads(sandbox, acc["uid"]))
    result = call(sandbox, "bybit_create_ad", {**cred, "ad_params": ad_params(**params)})
    assert result.code == 2 and result.error["code"] == code, result.stdout
    assert len(venue_ads(sandbox, acc["uid"])) == before


def test_floating_price_needs_premium(sandbox: Any, account: Any) -> None:
    _, cred = account
    result = call(sandbox, "bybit_create_ad", {**cred, "price_type": "1", "ad_params": ad_params()})
    assert result.code == 2 and result.error["code"] == "invalid_ad_params"


def test_remark_of_exactly_900_is_accepted(sandbox: Any, account: Any) -> None:
    _, cred = account
    result = call(sandbox, "bybit_create_ad", {**cred, "ad_params": ad_params(remarks="я" * 900)})
    assert result.code == 0, result.stdout


@pytest.mark.parametrize(
    ("account_kw", "params", "code", "venue_code"),
    [
        ({}, {"payment_methods": ["1234567"]}, "invalid_payment_method", 912300013),
        ({"balance": "10"}, {}, "insufficient_balance", 912120024),
        ({"methods": ["382"]}, {"payment_methods": ["tinkoff"]}, "payment_method_not_found", None),
        ({"p2p": False}, {}, "permission_denied", 912000014),
    ],
)
def test_venue_rejections(sandbox: Any, account_kw: dict, params: dict, code: str, venue_code: int | None) -> None:
    _, cred = new_account(sandbox, **account_kw)
    result = call(sandbox, "bybit_create_ad", {**cred, "ad_params": ad_params(**params)})
    assert result.code == 1
    assert result.error["code"] == code and result.error["venue_code"] == venue_code
    assert result.error["retryable"] is False


def test_security_risk_is_surfaced(sandbox: Any) -> None:
    _, cred = new_account(sandbox, need_security_risk=True)
    data = call(sandbox, "bybit_create_ad", {**cred, "ad_params": ad_params()}).data
    assert data["need_security_risk"] is True and data["status"] == "security_check_required"


def test_update_is_a_full_replacement(sandbox: Any) -> None:
    acc, cred = new_account(sandbox)
    ad_id = call(sandbox, "bybit_create_ad", {**cred, "payment_period": 30, "ad_params": ad_params()}).data["ad_id"]
    result = call(sandbox, "bybit_update_ad", {**cred, "ad_id": ad_id, "changes": {"price": "82.10"}})
    assert result.code == 0, result.stdout
    ad = next(a for a in venue_ads(sandbox, acc["uid"]) if a["id"] == ad_id)
    # Only the price changed; every other term survived the full replacement.
    assert ad["price"] == "82.1" or ad["price"] == "82.10"
    assert (ad["min_amount"], ad["max_amount"], ad["remark"], ad["payment_period"]) == ("10000", "10000", REMARK, 30)
    assert ad["payment_ids"] == [method_id(acc, "382")]
    got = call(sandbox, "bybit_get_ad", {**cred, "ad_id": ad_id}).data
    assert got["price"] in ("82.1", "82.10") and got["quantity"] == "125.5"

    result = call(sandbox, "bybit_update_ad", {**cred, "ad_id": ad_id,
                                               "changes": {"payment_methods": ["tinkoff"], "max_amount": "10300"}})
    assert result.code == 0
    got = call(sandbox, "bybit_get_ad", {**cred, "ad_id": ad_id}).data
    assert got["payment_ids"] == [method_id(acc, "75")] and got["max_amount"] == "10300"

    bad = call(sandbox, "bybit_update_ad", {**cred, "ad_id": ad_id, "changes": {"max_amount": "1000000"}})
    assert bad.code == 2 and bad.error["code"] == "invalid_ad_params"


def test_activate_relists_an_offline_ad(sandbox: Any) -> None:
    acc, cred = new_account(sandbox)
    ad_id = call(sandbox, "bybit_create_ad", {**cred, "ad_params": ad_params()}).data["ad_id"]
    sandbox.control("PATCH", f"/sandbox/bybit/ads/{ad_id}", json={"status": 20})
    assert call(sandbox, "bybit_get_ad", {**cred, "ad_id": ad_id}).data["status_name"] == "offline"
    data = call(sandbox, "bybit_update_ad", {**cred, "ad_id": ad_id, "action": "activate"}).data
    assert data["action"] == "active" and data["previous_status"] == 20
    assert call(sandbox, "bybit_get_ad", {**cred, "ad_id": ad_id}).data["status_name"] == "online"
    listed = call(sandbox, "bybit_list_ads", {**cred, "status": "available"}).data
    assert [a["ad_id"] for a in listed["items"]] == [ad_id] and listed["online_count"] == 1
