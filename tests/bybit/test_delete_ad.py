"""bybit_cancel_ad: the ad leaves the market and the venue's ground truth; removing twice is a venue error."""

from __future__ import annotations

from typing import Any

from tests.support import Result, run_script, validate_envelope

AD = {"side": "sell", "price": "80.50", "quantity": "200", "min_amount": "5000", "max_amount": "15000",
      "payment_methods": ["tinkoff"], "remarks": "test"}


def call(sandbox: Any, name: str, payload: Any) -> Result:
    result = run_script(name, payload, env=sandbox.env)
    assert result.envelope is not None, result.stderr[-2000:]
    validate_envelope(name, result.envelope)
    return result


def test_cancel_removes_the_ad_and_unfreezes_funds(sandbox: Any) -> None:
    acc = sandbox.control("POST", "/sandbox/bybit/accounts", json={"count": 1, "balance": "1000"})["accounts"][0]
    cred = {"api_key": acc["api_key"], "api_secret": acc["api_secret"]}
    ad_id = call(sandbox, "bybit_create_ad", {**cred, "ad_params": AD}).data["ad_id"]
    assert sandbox.control("GET", f"/sandbox/bybit/accounts/{acc['uid']}")["frozen"] == "200"

    result = call(sandbox, "bybit_cancel_ad", {**cred, "ad_id": ad_id})
    assert result.code == 0 and result.data == {"ad_id": ad_id, "cancelled": True}
    state = sandbox.control("GET", f"/sandbox/bybit/accounts/{acc['uid']}")
    assert state["frozen"] == "0" and state["balance"] == "1000"
    listed = call(sandbox, "bybit_list_ads", {**cred, "status": "available"}).data
    assert ad_id not in [a["ad_id"] for a in listed["items"]]

    again = call(sandbox, "bybit_cancel_ad", {**cred, "ad_id": ad_id})
    assert again.code == 1 and again.error["venue_code"] is not None and again.error["retryable"] is False


def test_cancel_someone_elses_or_unknown_ad_fails(sandbox: Any) -> None:
    owner, other = sandbox.control("POST", "/sandbox/bybit/accounts", json={"count": 2})["accounts"]
    ad_id = call(sandbox, "bybit_create_ad", {"api_key": owner["api_key"], "api_secret": owner["api_secret"],
                                              "ad_params": AD}).data["ad_id"]
    cred = {"api_key": other["api_key"], "api_secret": other["api_secret"]}
    for target in (ad_id, "1999999999999999999"):
        result = call(sandbox, "bybit_cancel_ad", {**cred, "ad_id": target})
        assert result.code == 1 and result.error["code"] == "venue_error"
    # The owner's ad is untouched.
    ads = sandbox.control("GET", "/sandbox/bybit/ads", params={"uid": owner["uid"]})
    ads = ads["ads"] if isinstance(ads, dict) else ads
    assert next(a for a in ads if a["id"] == ad_id)["status"] == 10


def test_cancel_needs_an_id(sandbox: Any) -> None:
    result = call(sandbox, "bybit_cancel_ad", {"api_key": "k" * 8, "api_secret": "s" * 8})
    assert result.code == 2 and result.error["code"] == "schema_violation"
