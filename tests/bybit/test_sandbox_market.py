"""The sandbox's keyless market list (``POST /fiat/otc/item/online``) over raw HTTP, as a browser would call it.

A dedicated sandbox: these tests move the mid and inject faults, which would disturb other tests' rates.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
import requests

from tests.support import Sandbox

BROWSER_HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Origin": "https://www.bybit.com",
    "Referer": "https://www.bybit.com/",
    "Content-Type": "application/json;charset=UTF-8",
}


@pytest.fixture(scope="module")
def box():
    sandbox = Sandbox(seed=11, speed=1.0)
    sandbox.control("POST", "/sandbox/bybit/market", json={"frozen": True})
    yield sandbox
    sandbox.close()


def body(side: str = "1", page: int = 1, size: int = 10, payment: list[str] | None = None, **extra) -> dict:
    """The body the earlier rate fetcher sent (reference §11), with page/size as strings."""
    data = {"userId": 123456, "tokenId": "USDT", "currencyId": "RUB",
            "payment": ["382", "75"] if payment is None else payment, "side": side, "size": str(size),
            "page": str(page), "amount": "", "vaMaker": False, "bulkMaker": False, "canTrade": False,
            "verificationFilter": 0, "sortType": "TRADE_PRICE", "paymentPeriod": [], "itemRegion": 1}
    data.update(extra)
    return data


def post(box: Sandbox, data: dict, path: str = "/fiat/otc/item/online") -> requests.Response:
    return requests.post(f"{box.url}{path}", json=data, headers=BROWSER_HEADERS, timeout=10)


def result(box: Sandbox, data: dict) -> dict:
    resp = post(box, data)
    assert resp.status_code == 200
    env = resp.json()
    assert env["ret_code"] == 0, env
    return env["result"]


def test_envelope_and_item_fields(box):
    resp = post(box, body())
    env = resp.json()
    assert set(env) >= {"ret_code", "ret_msg", "result", "ext_code", "ext_info", "time_now"}
    assert env["ret_msg"] == "SUCCESS"
    sec, micro = env["time_now"].split(".")
    assert sec.isdigit() and len(micro) == 6
    res = env["result"]
    assert isinstance(res["count"], int) and res["count"] >= 60
    assert len(res["items"]) == 10
    item = res["items"][0]
    for key in ("id", "price", "nickName", "minAmount", "maxAmount", "lastQuantity", "payments",
                "recentOrderNum", "recentExecuteRate", "isOnline", "authTag", "userType", "userId"):
        assert key in item, key
    assert isinstance(item["price"], str) and Decimal(item["price"]) > 0
    assert len(item["id"]) == 19 and item["id"].isdigit()
    assert item["side"] == 1 and item["status"] == 10 and isinstance(item["paymentPeriod"], int)
    assert all(isinstance(p, str) for p in item["payments"])
    assert isinstance(item["isOnline"], bool) and isinstance(item["authTag"], list)
    assert Decimal(item["minAmount"]) <= Decimal(item["maxAmount"]) <= Decimal(item["lastQuantity"]) * Decimal(item["price"])


def test_payment_filter(box):
    sbp_tinkoff = result(box, body(size=300))
    assert all({"382", "75"} & set(it["payments"]) for it in sbp_tinkoff["items"])
    sbp_only = result(box, body(payment=["382"], size=300))
    assert all("382" in it["payments"] for it in sbp_only["items"])
    unfiltered = result(box, body(payment=[], size=300))
    assert unfiltered["count"] > sbp_tinkoff["count"] > sbp_only["count"] > 0
    assert any(not ({"382", "75"} & set(it["payments"])) for it in unfiltered["items"])


def test_pages_one_to_six_exist_and_do_not_overlap(box):
    seen: list[str] = []
    prices: list[Decimal] = []
    for page in range(1, 7):
        items = result(box, body(page=page))["items"]
        assert len(items) == 10, page
        seen += [it["id"] for it in items]
        prices += [Decimal(it["price"]) for it in items]
    assert len(set(seen)) == 60
    assert prices == sorted(prices)  # sellers: cheapest first, across page boundaries
    full = result(box, body(size=60))["items"]
    assert [it["id"] for it in full] == seen


def test_side_semantics(box):
    sellers = result(box, body(side="1", size=50))["items"]
    buyers = result(box, body(side="0", size=50))["items"]
    assert {it["side"] for it in sellers} == {1} and {it["side"] for it in buyers} == {0}
    sell_prices = [Decimal(it["price"]) for it in sellers]
    buy_prices = [Decimal(it["price"]) for it in buyers]
    assert sell_prices == sorted(sell_prices)
    assert buy_prices == sorted(buy_prices, reverse=True)
    assert buy_prices[0] < sell_prices[0]  # the best bid sits below the best ask
    assert not {it["id"] for it in sellers} & {it["id"] for it in buyers}


def test_paging_past_the_end_and_other_currency(box):
    res = result(box, body(page=999))
    assert res["count"] > 0 and res["items"] == []
    assert result(box, body(currencyId="EUR")) == {"count": 0, "items": []}


def test_amount_filter(box):
    items = result(box, body(size=100, amount="150000"))["items"]
    assert items
    assert all(Decimal(it["minAmount"]) <= 150000 <= Decimal(it["maxAmount"]) for it in items)


def test_web_path_alias_and_int_paging_tolerated(box):
    a = post(box, body(page=2), path="/x-api/fiat/otc/item/online").json()["result"]
    data = body()
    data["page"], data["size"] = 2, 10
    b = result(box, data)
    assert [it["id"] for it in a["items"]] == [it["id"] for it in b["items"]]


def test_bad_parameters(box):
    assert post(box, body(side="2")).json()["ret_code"] == 10001
    assert post(box, body(size=0)).json()["ret_code"] == 10001
    resp = requests.post(f"{box.url}/fiat/otc/item/online", data=b"not json", headers=BROWSER_HEADERS, timeout=10)
    assert resp.status_code == 200 and resp.json()["ret_code"] == 10001


def test_mid_control_moves_prices(box):
    before = Decimal(result(box, body(size=1))["items"][0]["price"])
    box.control("POST", "/sandbox/bybit/market", json={"mid": "90.00"})
    try:
        after = Decimal(result(box, body(size=1))["items"][0]["price"])
        assert after > before * Decimal("1.08")
        state = box.control("GET", "/sandbox/bybit/market")
        assert state["mid"] == "90.00" and state["frozen"] is True
    finally:
        box.control("POST", "/sandbox/bybit/market", json={"mid": "80.00"})
    assert Decimal(result(box, body(size=1))["items"][0]["price"]) == before
    bad = requests.post(f"{box.url}/sandbox/bybit/market", json={"mid": "-1"}, timeout=10)
    assert bad.status_code == 400


def test_same_seed_same_book(box):
    reference = post(box, body(size=30)).json()["result"]["items"]
    for seed, same in ((11, True), (12, False)):
        other = Sandbox(seed=seed, speed=1.0)
        try:
            other.control("POST", "/sandbox/bybit/market", json={"frozen": True})
            items = post(other, body(size=30)).json()["result"]["items"]
        finally:
            other.close()
        # Both books frozen at drift step 0: the same seed gives the same ads at the same prices.
        assert ([(it["id"], it["price"]) for it in items] == [(it["id"], it["price"]) for it in reference]) is same


def test_faults_make_the_market_unreadable(box):
    box.control("POST", "/sandbox/faults", json={"kind": "http_status", "path": "/fiat/otc/item/online",
                                                 "status": 503, "remaining": 1})
    assert post(box, body()).status_code == 503
    box.control("POST", "/sandbox/faults", json={"kind": "cloudflare", "path": "/fiat/otc/item/online"})
    resp = post(box, body())
    assert resp.status_code == 403 and "Just a moment" in resp.text
    box.control("POST", "/sandbox/faults", json={"kind": "bybit_code", "path": "/fiat/otc/item/online",
                                                 "code": 10016})
    env = post(box, body()).json()
    assert env["ret_code"] == 10016 and env["result"] == {}
    assert result(box, body())["items"]  # each fault was used up; the market reads again
