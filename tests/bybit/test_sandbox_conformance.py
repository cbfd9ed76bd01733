"""Raw-HTTP conformance of the sandbox Bybit P2P REST venue against the reference (signing, envelopes, typing,
venue error codes, rate limits, chat, upload), plus one smoke run of pybit 5.17 itself.

Requests are built and signed by hand (requests + hmac) so the tests control every byte; each test makes its
own account through the control API so per-UID limits and state never leak between tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
from decimal import Decimal
from typing import Any

import pytest
import requests

P = "/v5/p2p/"


class Raw:
    """A hand-rolled signed client: sends exactly the bytes it is given."""

    def __init__(self, url: str, key: str, secret: str) -> None:
        self.url, self.key, self.secret = url, key, secret
        self.http = requests.Session()

    def sig(self, ts: str, rw: str, payload: bytes) -> str:
        return hmac.new(self.secret.encode(), f"{ts}{self.key}{rw}".encode() + payload, hashlib.sha256).hexdigest()

    def send(self, path: str, body: Any = None, *, raw: bytes | None = None, signed: bytes | None = None,
             ts: int | None = None, rw: str | None = "5000", key: str | None = None,
             content_type: str = "application/json", headers: dict[str, str] | None = None) -> requests.Response:
        data = raw if raw is not None else json.dumps({} if body is None else body).encode()
        stamp = str(ts if ts is not None else int(time.time() * 1000))
        hdrs = {"Content-Type": content_type, "X-BAPI-API-KEY": key or self.key, "X-BAPI-TIMESTAMP": stamp,
                "X-BAPI-SIGN": self.sig(stamp, rw or "5000", data if signed is None else signed),
                "X-BAPI-SIGN-TYPE": "2"}
        if rw is not None:
            hdrs["X-BAPI-RECV-WINDOW"] = rw
        hdrs.update(headers or {})
        return self.http.post(self.url + P + path, data=data, headers=hdrs, timeout=10)

    def call(self, path: str, body: Any = None, **kw: Any) -> dict[str, Any]:
        resp = self.send(path, body, **kw)
        assert resp.status_code == 200, resp.text
        return resp.json()

    def ok(self, path: str, body: Any = None, **kw: Any) -> Any:
        env = self.call(path, body, **kw)
        assert env["ret_code"] == 0, env
        return env["result"]


def new_account(sandbox, **kw: Any) -> dict[str, Any]:
    body = {"count": 1, "balance": "5000", **kw}
    return sandbox.control("POST", "/sandbox/bybit/accounts", json=body)["accounts"][0]


@pytest.fixture
def acct(sandbox) -> dict[str, Any]:
    return new_account(sandbox)


@pytest.fixture
def raw(sandbox, acct) -> Raw:
    return Raw(sandbox.url, acct["api_key"], acct["api_secret"])


def method_id(acct: dict[str, Any], ptype: str) -> str:
    return next(m["id"] for m in acct["payment_methods"] if m["payment_type"] == ptype)


def ad_body(acct: dict[str, Any], **over: Any) -> dict[str, Any]:
    body = {"tokenId": "USDT", "currencyId": "RUB", "side": "1", "priceType": "0", "premium": "",
            "price": "95.5", "minAmount": "9550", "maxAmount": "9550", "remark": "Только Т-Банк. Напишите +",
            "tradingPreferenceSet": {}, "paymentIds": [method_id(acct, "382")], "quantity": "101",
            "paymentPeriod": "15", "itemType": "ORIGIN"}
    body.update(over)
    return body


def update_body(ad: dict[str, Any], **over: Any) -> dict[str, Any]:
    body = {"id": ad["id"], "priceType": str(ad["priceType"]), "premium": ad["premium"], "price": ad["price"],
            "minAmount": ad["minAmount"], "maxAmount": ad["maxAmount"], "remark": ad["remark"],
            "tradingPreferenceSet": {}, "paymentIds": [t["id"] for t in ad["paymentTerms"]],
            "actionType": "MODIFY", "quantity": ad["quantity"], "paymentPeriod": str(ad["paymentPeriod"])}
    body.update(over)
    return body


@pytest.fixture
def limits(sandbox):
    """Temporarily changed global limits, always restored (other tests share this sandbox)."""
    def set_(**kw: Any) -> None:
        sandbox.control("POST", "/sandbox/bybit/limits", json={**kw, "reset": True})
    yield set_
    sandbox.control("POST", "/sandbox/bybit/limits", json={"reads_per_s": 10, "writes_per_s": 5, "ip_per_5s": 600,
                                                           "ip_ban_s": 0, "edit_budget": 10, "edit_window_s": 300,
                                                           "reset": True})


# -- signing ----------------------------------------------------------------------------------------------------
def test_raw_body_with_extra_spaces_verifies_when_signed_as_sent(raw):
    body = b'{  "page" :   "1",\n  "size":"10"   }'
    assert raw.call("item/personal/list", raw=body)["ret_code"] == 0


def test_body_signed_over_other_bytes_fails_10004(raw):
    sent = b'{"page": "1", "size": "10"}'
    signed = b'{"page":"1","size":"10"}'  # same JSON, different bytes
    env = raw.call("item/personal/list", raw=sent, signed=signed)
    assert env["ret_code"] == 10004 and env["ret_msg"] == "error sign!" and env["result"] == {}


def test_key_order_is_irrelevant_to_the_server(raw):
    assert raw.call("item/personal/list", raw=b'{"size": "10", "page": "1"}')["ret_code"] == 0
    assert raw.call("item/personal/list", raw=b'{"page": "1", "size": "10"}')["ret_code"] == 0


def test_ascii_escaped_and_utf8_bodies_both_verify_when_signed_as_sent(raw, acct):
    body = ad_body(acct, quantity="102")
    escaped = json.dumps(body).encode()
    utf8 = json.dumps(body, ensure_ascii=False).encode()
    assert escaped != utf8
    first = raw.ok("item/create", raw=escaped)
    second = raw.ok("item/create", raw=utf8, headers={"Content-Type": "application/json; charset=utf-8"})
    for res in (first, second):
        info = raw.ok("item/info", {"itemId": res["itemId"]})
        assert info["remark"] == body["remark"]
    # Signed over the escaped form but sent as UTF-8: the bytes differ, so the signature does.
    assert raw.call("item/create", raw=utf8, signed=escaped)["ret_code"] == 10004


def test_empty_body_is_signed_as_empty_string(raw):
    assert raw.call("user/personal/info", raw=b"")["ret_code"] == 0


def test_recv_window_edges(raw):
    now = int(time.time() * 1000)
    assert raw.call("user/personal/info", ts=now - 5000 + 300)["ret_code"] == 0
    late = raw.call("user/personal/info", ts=now - 5000 - 500)
    assert late["ret_code"] == 10002
    assert "req_timestamp[" in late["ret_msg"] and "recv_window[5000]" in late["ret_msg"]
    assert raw.call("user/personal/info", ts=int(time.time() * 1000) + 1500)["ret_code"] == 10002
    # No X-BAPI-RECV-WINDOW header: the default 5000 applies (and the signature uses "5000").
    assert raw.call("user/personal/info", rw=None, ts=int(time.time() * 1000) - 4000)["ret_code"] == 0
    assert raw.call("user/personal/info", rw=None, ts=int(time.time() * 1000) - 6000)["ret_code"] == 10002
    # A wider window admits an older timestamp.
    assert raw.call("user/personal/info", rw="20000", ts=int(time.time() * 1000) - 15000)["ret_code"] == 0


def test_unknown_key_bad_sign_and_missing_headers(sandbox, raw):
    env = raw.call("user/personal/info", key="nosuchkey123")
    assert env["ret_code"] == 10003 and env["result"] == {}
    bad = Raw(sandbox.url, raw.key, raw.secret + "x")
    assert bad.call("user/personal/info")["ret_code"] == 10004
    resp = requests.post(sandbox.url + P + "user/personal/info", data=b"{}",
                         headers={"Content-Type": "application/json"}, timeout=10)
    assert resp.status_code == 401
    assert int(resp.headers["X-Bapi-Limit-Reset-Timestamp"]) > int(time.time() * 1000) - 100
    assert requests.post(sandbox.url + P + "no/such/path", data=b"{}", timeout=10).status_code == 404


def test_account_without_p2p_permission_gets_912000014(sandbox):
    acct = new_account(sandbox, p2p=False)
    env = Raw(sandbox.url, acct["api_key"], acct["api_secret"]).call("user/personal/info")
    assert env["ret_code"] == 912000014 and env["ret_msg"] == "permission denied"
    assert env["result"] == {} and env["ext_info"] == {"fiat_error_config": ""}
    sandbox.control("PATCH", f"/sandbox/bybit/accounts/{acct['uid']}", json={"p2p": True})
    assert Raw(sandbox.url, acct["api_key"], acct["api_secret"]).call("user/personal/info")["ret_code"] == 0


# -- envelopes and typing ---------------------------------------------------------------------------------------
def test_envelope_shapes(raw, acct):
    env = raw.call("user/personal/info")
    assert set(env) == {"ret_code", "ret_msg", "result", "ext_code", "ext_info", "time_now"}
    assert env["ret_msg"] == "SUCCESS" and env["ext_code"] == "" and env["ext_info"] == {}
    assert re.fullmatch(r"\d{10}\.\d{6}", env["time_now"])
    info = env["result"]
    assert info["userId"] == acct["uid"] and info["accountId"] == acct["account_id"]
    for name in ("nickName", "realName", "realNameEn", "userType", "isOnline", "lastLogoutTime", "kycLevel",
                 "authStatus", "vipLevel", "accountCreateDays", "registerTime", "totalFinishCount",
                 "recentRate", "averageReleaseTime", "goodAppraiseRate", "blocked", "userCurPrivilege",
                 "openApiSwitch", "userCancelCountLimit", "recentTradeAmount"):
        assert name in info, name
    created = raw.call("item/create", ad_body(acct))
    assert created["ext_map"] == {} and created["ret_code"] == 0
    assert set(created["result"]) == {"itemId", "securityRiskToken", "riskTokenType", "riskVersion",
                                      "needSecurityRisk"}
    assert re.fullmatch(r"\d{19}", created["result"]["itemId"])
    assert created["result"]["needSecurityRisk"] is False


def test_payment_list_is_an_array_with_the_balance_entry(raw, acct):
    methods = raw.ok("user/payment/list")
    assert isinstance(methods, list)
    by_type = {m["paymentType"]: m for m in methods}
    assert by_type[377]["id"] == "-1"
    assert by_type[382]["id"] == method_id(acct, "382") and re.fullmatch(r"\d{19}", by_type[382]["id"])
    assert by_type[75]["paymentConfigVo"]["paymentName"] == "Tinkoff"
    for key in ("realName", "bankName", "accountNo", "mobile", "qrcode", "online", "paymentExt1", "visible"):
        assert key in by_type[382]


@pytest.mark.parametrize("path,body", [
    ("item/online", {"tokenId": "USDT", "currencyId": "RUB", "side": "1", "page": 1, "size": "10"}),
    ("item/online", {"tokenId": "USDT", "currencyId": "RUB", "side": 1}),
    ("item/personal/list", {"page": "1", "size": 10}),
    ("item/info", {"itemId": 1900000000000000001}),
    ("order/pay", {"orderId": 1900000000000000001, "paymentType": "382", "paymentId": "1"}),
    ("order/info", {"orderId": 1900000000000000001}),
    ("order/message/listpage", {"orderId": "1900000000000000001", "size": 30}),
    ("order/message/send", {"orderId": 1, "message": "hi", "contentType": "str", "msgUuid": "u"}),
    ("user/order/personal/info", {"originalUid": 123, "orderId": "1"}),
    # The order lists want INTEGERS: strings are the error here.
    ("order/simplifyList", {"page": "1", "size": "10"}),
    ("order/pending/simplifyList", {"page": 1, "size": 10, "status": "10"}),
])
def test_wrong_json_types_are_10001(raw, path, body):
    env = raw.call(path, body)
    assert env["ret_code"] == 10001 and env["result"] == {}, env


def test_numbers_in_create_and_update_are_10001(raw, acct, limits):
    limits(writes_per_s=1000)
    for field, value in (("price", 95.5), ("quantity", 101), ("paymentPeriod", 15), ("side", 1),
                         ("minAmount", 9550), ("paymentIds", [int(method_id(acct, "382"))])):
        body = ad_body(acct, **{field: value})
        assert raw.call("item/create", raw=json.dumps(body).encode())["ret_code"] == 10001, field
    ad = raw.ok("item/info", {"itemId": raw.ok("item/create", ad_body(acct))["itemId"]})
    assert raw.call("item/update", update_body(ad, tradingPreferenceSet={"isKyc": 1}))["ret_code"] == 10001
    assert raw.call("item/update", update_body(ad, price=96))["ret_code"] == 10001
    assert raw.call("item/update", update_body(ad))["ret_code"] == 0


def test_order_lists_accept_ints(raw):
    res = raw.ok("order/simplifyList", {"page": 1, "size": 30, "status": 50, "side": 1})
    assert res == {"count": 0, "items": []}
    assert raw.ok("order/pending/simplifyList", {"page": 1, "size": 10}) == {"count": 0, "items": []}
    assert raw.call("order/simplifyList", {"page": 1, "size": 31})["ret_code"] == 10001


def test_online_list_shape(raw):
    res = raw.ok("item/online", {"tokenId": "USDT", "currencyId": "RUB", "side": "1", "page": "1", "size": "5"})
    assert set(res) == {"count", "items"} and isinstance(res["items"], list) and len(res["items"]) <= 5
    assert raw.call("item/online", {"tokenId": "USDT", "currencyId": "RUB", "side": "1",
                                    "size": "301"})["ret_code"] == 10001


# -- ads --------------------------------------------------------------------------------------------------------
def test_payment_ids_must_be_own_method_ids(sandbox, raw, acct, limits):
    limits(writes_per_s=1000)
    other = new_account(sandbox)
    for ids in (["382"], ["75"], ["-1"], ["1900000000000000000"], [method_id(other, "382")]):
        env = raw.call("item/create", ad_body(acct, paymentIds=ids))
        assert env["ret_code"] == 912300013, ids
    too_many = [method_id(acct, "382")] * 6
    assert raw.call("item/create", ad_body(acct, paymentIds=too_many))["ret_code"] == 10001
    assert raw.call("item/create", ad_body(acct, remark="x" * 901))["ret_code"] == 10001
    assert raw.call("item/create", ad_body(acct, remark="я" * 900))["ret_code"] == 0


def test_min_max_total_912120023(raw, acct):
    assert raw.call("item/create", ad_body(acct, minAmount="9600", maxAmount="9550"))["ret_code"] == 912120023
    # quantity * price = 100 * 95.5 = 9550 < maxAmount 9551
    env = raw.call("item/create", ad_body(acct, quantity="100", maxAmount="9551", minAmount="9551"))
    assert env["ret_code"] == 912120023
    assert raw.call("item/create", ad_body(acct, quantity="100"))["ret_code"] == 0


def test_funding_balance_912120024_and_freeze(sandbox, raw, acct):
    env = raw.call("item/create", ad_body(acct, quantity="5000.0001", maxAmount="9550"))
    assert env["ret_code"] == 912120024
    raw.ok("item/create", ad_body(acct, quantity="4000"))
    state = sandbox.control("GET", f"/sandbox/bybit/accounts/{acct['uid']}")
    assert Decimal(state["balance"]) == 1000 and Decimal(state["frozen"]) == 4000
    assert raw.call("item/create", ad_body(acct, quantity="1000.5"))["ret_code"] == 912120024


def test_ad_object_lists_update_activate_cancel(sandbox, raw, acct, limits):
    limits(writes_per_s=1000)
    item_id = raw.ok("item/create", ad_body(acct))["itemId"]
    ad = raw.ok("item/info", {"itemId": item_id})
    assert ad["status"] == 10 and ad["side"] == 1 and ad["priceType"] == 0 and ad["paymentPeriod"] == 15
    assert ad["userId"] == acct["uid"] and ad["payments"] == ["382"]
    assert ad["paymentTerms"][0]["id"] == method_id(acct, "382")
    for key in ("lastQuantity", "quantity", "frozenQuantity", "executedQuantity", "price", "minAmount"):
        assert isinstance(ad[key], str), key
    assert Decimal(ad["quantity"]) == Decimal(ad["lastQuantity"]) + Decimal(ad["frozenQuantity"]) + Decimal(
        ad["executedQuantity"])
    for key in ("symbolInfo", "tradingPreferenceSet", "version", "hiddenReason", "createDate", "updateDate",
                "orderNum", "finishNum", "recentExecuteRate", "fee", "isOnline", "tokenName", "accountId"):
        assert key in ad, key
    listed = raw.ok("item/personal/list", {"status": "2"})
    assert listed["count"] == 1 and listed["items"][0]["id"] == item_id and listed["hiddenFlag"] is False
    assert raw.ok("item/personal/list", {"status": "1"})["count"] == 0
    changed = update_body(ad, price="96", maxAmount="9600", minAmount="9600",
                          paymentIds=[method_id(acct, "75")])
    raw.ok("item/update", changed)
    ad2 = raw.ok("item/info", {"itemId": item_id})
    assert ad2["price"] == "96" and ad2["payments"] == ["75"]
    sandbox.control("PATCH", f"/sandbox/bybit/ads/{item_id}", json={"status": 20})
    assert raw.ok("item/info", {"itemId": item_id})["status"] == 20
    raw.ok("item/update", update_body(ad2, actionType="ACTIVE"))
    assert raw.ok("item/info", {"itemId": item_id})["status"] == 10
    assert raw.call("item/cancel", {"itemId": item_id})["result"] is None
    assert raw.ok("item/personal/list", {})["count"] == 0
    assert raw.call("item/cancel", {"itemId": item_id})["ret_code"] == 912000004
    state = sandbox.control("GET", f"/sandbox/bybit/accounts/{acct['uid']}")
    assert Decimal(state["balance"]) == 5000 and Decimal(state["frozen"]) == 0


def test_need_security_risk_settable(sandbox, raw, acct):
    sandbox.control("PATCH", f"/sandbox/bybit/accounts/{acct['uid']}", json={"need_security_risk": True})
    res = raw.ok("item/create", ad_body(acct))
    assert res["needSecurityRisk"] is True
    assert raw.ok("item/info", {"itemId": res["itemId"]})["status"] == 20


def test_edit_budget_10_per_ad(raw, acct, limits):
    limits(writes_per_s=1000, reads_per_s=1000)
    ad = raw.ok("item/info", {"itemId": raw.ok("item/create", ad_body(acct))["itemId"]})
    for i in range(10):
        env = raw.call("item/update", update_body(ad, remark=f"edit {i}"))
        assert env["ret_code"] == 0, (i, env)
    env = raw.call("item/update", update_body(ad, remark="one too many"))
    assert env["ret_code"] == 10006 and env["ret_msg"] == "Too many visits!"
    assert raw.ok("item/info", {"itemId": ad["id"]})["remark"] == "edit 9"


# -- orders, chat, upload ---------------------------------------------------------------------------------------
def open_order(sandbox, item_id: str) -> dict[str, Any]:
    return sandbox.control("POST", "/sandbox/bybit/orders", json={"item_id": item_id, "buyer_nick": "ivan_b"})


def test_order_lifecycle_release_once(sandbox, raw, acct):
    item_id = raw.ok("item/create", ad_body(acct))["itemId"]
    order = open_order(sandbox, item_id)
    oid = order["order_id"]
    assert order["status"] == 10 and order["quantity"] == "100" and order["amount"] == "9550"
    ad = raw.ok("item/info", {"itemId": item_id})
    assert (ad["lastQuantity"], ad["frozenQuantity"], ad["executedQuantity"]) == ("1", "100", "0")
    pending = raw.ok("order/pending/simplifyList", {"page": 1, "size": 10})
    assert pending["count"] == 1
    item = pending["items"][0]
    assert item["id"] == oid and item["status"] == 10 and item["side"] == 1 and item["userId"] == acct["uid"]
    assert 0 < int(item["transferLastSeconds"]) <= 900 and item["targetNickName"] == "ivan_b"
    detail = raw.ok("order/info", {"orderId": oid})
    assert detail["itemId"] == item_id and detail["userId"] == acct["uid"] and detail["transferDate"] == "0"
    assert detail["paymentTermList"][0]["id"] == method_id(acct, "382")
    assert detail["orderSource"] == "P2P" and detail["quantity"] == "100"
    cp = raw.ok("user/order/personal/info", {"originalUid": order["buyer_uid"], "orderId": oid})
    assert cp["userId"] == order["buyer_uid"] and cp["nickName"] == "ivan_b"
    env = raw.call("order/finish", {"orderId": oid})
    assert env["ret_code"] == 912000004 and "status 10" in env["ret_msg"]
    sandbox.control("POST", f"/sandbox/bybit/orders/{oid}/pay")
    detail = raw.ok("order/info", {"orderId": oid})
    assert detail["status"] == 20 and detail["transferDate"] != "0"
    assert raw.ok("order/finish", {"orderId": oid}) is None
    again = raw.call("order/finish", {"orderId": oid})
    assert again["ret_code"] == 912000004 and "status 50" in again["ret_msg"]
    assert raw.ok("order/info", {"orderId": oid})["status"] == 50
    releases = [e for e in sandbox.control("GET", "/sandbox/truth?kind=bybit_release")["events"]
                if e["order_id"] == oid]
    assert len(releases) == 1
    assert releases[0]["quantity"] == "100" and releases[0]["amount"] == "9550" and releases[0]["price"] == "95.5"
    buyer = sandbox.control("GET", f"/sandbox/bybit/accounts/{order['buyer_uid']}")
    assert Decimal(buyer["balance"]) == 100
    ad = raw.ok("item/info", {"itemId": item_id})
    assert (ad["lastQuantity"], ad["frozenQuantity"], ad["executedQuantity"], ad["status"]) == ("1", "0", "100", 30)
    assert raw.ok("order/simplifyList", {"page": 1, "size": 10, "status": 50})["count"] == 1


def test_cancel_returns_quantity_and_appeal(sandbox, raw, acct):
    item_id = raw.ok("item/create", ad_body(acct, quantity="250", maxAmount="9550"))["itemId"]
    oid = open_order(sandbox, item_id)["order_id"]
    sandbox.control("POST", f"/sandbox/bybit/orders/{oid}/cancel")
    assert raw.ok("order/info", {"orderId": oid})["status"] == 40
    assert raw.ok("item/info", {"itemId": item_id})["lastQuantity"] == "250"
    oid2 = open_order(sandbox, item_id)["order_id"]
    sandbox.control("POST", f"/sandbox/bybit/orders/{oid2}/pay")
    sandbox.control("POST", f"/sandbox/bybit/orders/{oid2}/appeal")
    assert raw.ok("order/info", {"orderId": oid2})["status"] == 30
    assert raw.call("order/finish", {"orderId": oid2})["ret_code"] == 912000004
    assert raw.ok("order/pending/simplifyList", {"page": 1, "size": 10, "status": 30})["count"] == 1


def test_chat_nesting_order_and_send_rules(sandbox, raw, acct):
    item_id = raw.ok("item/create", ad_body(acct))["itemId"]
    oid = open_order(sandbox, item_id)["order_id"]
    sandbox.control("POST", f"/sandbox/bybit/orders/{oid}/messages", json={"text": "+"})
    raw.ok("order/message/send", {"message": "Реквизиты: СБП", "contentType": "str", "orderId": oid,
                                  "msgUuid": "c0ffee"})
    res = raw.ok("order/message/listpage", {"orderId": oid, "size": "30"})
    assert list(res) == ["result"] and isinstance(res["result"], list)
    msgs = res["result"]
    assert msgs[0]["message"] == "Реквизиты: СБП" and msgs[0]["userId"] == acct["uid"]
    assert msgs[0]["msgUuid"] == "c0ffee" and msgs[0]["msgType"] == 1 and msgs[0]["roleType"] == "user"
    assert msgs[1]["message"] == "+" and msgs[1]["userId"] != acct["uid"]
    assert msgs[2]["message"] == ad_body(acct)["remark"] and msgs[2]["userId"] == acct["uid"]  # remark echo
    assert all(m["msgType"] == 0 and m["roleType"] == "sys" for m in msgs[3:]) and len(msgs) == 5
    for key in ("id", "accountId", "message", "msgType", "msgCode", "createDate", "isRead", "read",
                "contentType", "roleType", "userId", "orderId", "msgUuid", "nickName", "fileName",
                "onlyForCustomer"):
        assert key in msgs[0], key
    page2 = raw.ok("order/message/listpage", {"orderId": oid, "size": "2", "currentPage": "2"})["result"]
    assert [m["id"] for m in page2] == [m["id"] for m in msgs[2:4]]
    base = {"message": "x", "contentType": "str", "orderId": oid, "msgUuid": "u1"}
    assert raw.call("order/message/send", {k: v for k, v in base.items() if k != "msgUuid"})["ret_code"] == 10001
    assert raw.call("order/message/send", {**base, "contentType": "STR"})["ret_code"] == 10001
    assert raw.call("order/message/listpage", {"orderId": oid, "size": "31"})["ret_code"] == 10001
    stranger = new_account(sandbox)
    env = Raw(sandbox.url, stranger["api_key"], stranger["api_secret"]).call(
        "order/message/listpage", {"orderId": oid, "size": "30"})
    assert env["ret_code"] == 912000004


def multipart(name: str, data: bytes, part_type: str = "image/png") -> bytes:
    return b"".join([b"--boundary-for-file\r\n",
                     f'Content-Disposition: form-data; name="upload_file"; filename="{name}"\r\n'.encode(),
                     f"Content-Type: {part_type}\r\n\r\n".encode(), data, b"\r\n--boundary-for-file--\r\n"])


def test_upload_reply_shape_and_download(sandbox, raw, acct):
    pdf = b"%PDF-1.4\n1 0 obj<<>>endobj\n%%EOF\n" + bytes(range(256))
    body = multipart("receipt.pdf", pdf)  # labelled image/png like pybit does
    ctype = "multipart/form-data; boundary=boundary-for-file"
    env = raw.send("oss/upload_file", raw=body, content_type=ctype).json()
    assert set(env) == {"result", "token", "ret_code", "ret_msg"}
    assert env["ret_code"] == 0 and env["ret_msg"] == "成功" and env["token"] is None
    url = env["result"]["url"]
    assert re.fullmatch(r"/fiat/p2p/oss/showObj/otc/9001/[0-9a-f]+\.pdf\?e=\d+&token=[0-9a-f]+", url)
    assert env["result"]["uploadId"] is None and env["result"]["type"]
    assert requests.get(sandbox.url + url, timeout=10).content == pdf
    assert requests.get(sandbox.url + url.split("?")[0], timeout=10).status_code == 404
    # Signed over other bytes -> 10004, like any JSON request.
    assert raw.send("oss/upload_file", raw=body, signed=body + b" ", content_type=ctype).json()["ret_code"] == 10004
    bad = raw.send("oss/upload_file", raw=multipart("x.exe", b"MZ"), content_type=ctype).json()
    assert bad["ret_code"] == 10001
    # The url goes into the chat as a pdf message.
    oid = open_order(sandbox, raw.ok("item/create", ad_body(acct))["itemId"])["order_id"]
    raw.ok("order/message/send", {"message": url, "contentType": "pdf", "orderId": oid, "msgUuid": "f1"})
    top = raw.ok("order/message/listpage", {"orderId": oid, "size": "1"})["result"][0]
    assert top["msgType"] == 7 and top["contentType"] == "pdf" and top["fileName"] == "receipt.pdf"


# -- limits and faults ------------------------------------------------------------------------------------------
def test_every_reply_carries_limit_headers(raw):
    for resp in (raw.send("user/personal/info"), raw.send("item/info", {"itemId": "1"}),
                 raw.send("user/personal/info", key="unknown-key")):
        now = int(time.time() * 1000)
        assert resp.headers["X-Bapi-Limit"] == "10"
        assert int(resp.headers["X-Bapi-Limit-Status"]) >= 0
        assert int(resp.headers["X-Bapi-Limit-Reset-Timestamp"]) > now - 1000
    write = raw.send("item/cancel", {"itemId": "1"})
    assert write.headers["X-Bapi-Limit"] == "5"


def test_uid_read_limit_10006_with_future_reset(raw):
    seen = None
    ok = 0
    for _ in range(40):
        resp = raw.send("user/personal/info")
        code = resp.json()["ret_code"]
        if code == 10006:
            seen = resp
            break
        assert code == 0
        ok += 1
    assert seen is not None and ok >= 10
    assert seen.json()["ret_msg"] == "Too many visits!" and seen.json()["result"] == {}
    assert seen.headers["X-Bapi-Limit-Status"] == "0" and seen.headers["X-Bapi-Limit"] == "10"
    assert int(seen.headers["X-Bapi-Limit-Reset-Timestamp"]) > int(time.time() * 1000)


def test_uid_write_limit_is_5(raw):
    codes = [raw.call("item/cancel", {"itemId": "1"})["ret_code"] for _ in range(12)]
    assert 10006 in codes and codes.index(10006) >= 5


def test_ip_limit_gives_http_403(raw, limits):
    limits(ip_per_5s=8)
    statuses = [raw.send("user/personal/info").status_code for _ in range(12)]
    assert statuses[:8] == [200] * 8 and 403 in statuses
    resp = raw.send("user/personal/info")
    assert resp.status_code == 403 and "access too frequent" in resp.text


def test_bybit_code_fault(sandbox, raw):
    sandbox.control("POST", "/sandbox/faults", json={"kind": "bybit_code", "path": "/v5/p2p/user/payment/list",
                                                    "code": 10016, "remaining": 1})
    env = raw.call("user/payment/list")
    assert env["ret_code"] == 10016 and env["result"] == {}
    assert raw.call("user/payment/list")["ret_code"] == 0


# -- pybit itself -----------------------------------------------------------------------------------------------
def test_pybit_smoke(sandbox, acct):
    from pybit.unified_trading import HTTP

    session = HTTP(api_key=acct["api_key"], api_secret=acct["api_secret"], max_retries=1, retry_delay=0)
    session.endpoint = sandbox.url
    assert session.get_account_information()["result"]["userId"] == acct["uid"]
    created = session.post_new_ad(**ad_body(acct))
    assert created["ret_code"] == 0 and created["ext_map"] == {}
    item_id = created["result"]["itemId"]
    ads = session.get_ads_list(status="2")["result"]
    assert [a["id"] for a in ads["items"]] == [item_id]
    assert session.remove_ad(itemId=item_id)["result"] is None
    up = session.upload_chat_file(upload_file=b"%PDF-1.4 tiny", filename="r.pdf")
    assert up["ret_msg"] == "成功" and up["result"]["url"].startswith("/fiat/p2p/oss/showObj/otc/9001/")
    assert ".pdf?e=" in up["result"]["url"]
    from pybit.exceptions import InvalidRequestError

    bad = HTTP(api_key=acct["api_key"], api_secret="wrong", max_retries=1, retry_delay=0)
    bad.endpoint = sandbox.url
    with pytest.raises(InvalidRequestError) as info:
        bad.get_account_information()
    assert info.value.status_code == 10004
