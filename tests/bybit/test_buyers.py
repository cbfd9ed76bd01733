"""Simulated buyers end to end: a merchant posts ads and chats through pybit; buyers pay through the bank.

A dedicated fast sandbox (``--speed 60``: the 15-minute payment window lasts 15 s).  Every ad is posted
right after setting a one-profile mix, so which profile takes which ad is known; the conversations then run
side by side.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from sandbox.bybit.buyers import parse_requisites
from tests.support import Sandbox

AMOUNT = Decimal("15000.00")
QUESTION = "Здравствуйте! Оплатите, пожалуйста, с карты Т-Банка и пришлите PDF-чек с почты банка. Да или нет?"


@pytest.fixture(scope="module")
def box():
    sandbox = Sandbox(seed=21, speed=60.0)
    yield sandbox
    sandbox.close()


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


class Merchant:
    """One merchant account driven through pybit, as the real scripts do."""

    def __init__(self, box: Sandbox) -> None:
        from pybit.unified_trading import HTTP

        acc = box.control("POST", "/sandbox/bybit/accounts", json={"count": 1})["accounts"][0]
        self.uid = acc["uid"]
        self.sbp = next(m["id"] for m in acc["payment_methods"] if m["payment_type"] == "382")
        self.http = HTTP(api_key=acc["api_key"], api_secret=acc["api_secret"], max_retries=3, retry_delay=0)
        self.http.endpoint = box.url

    def post_ad(self) -> str:
        resp = self.http.post_new_ad(
            tokenId="USDT", currencyId="RUB", side="1", priceType="0", premium="", price="80.50",
            minAmount=str(AMOUNT), maxAmount=str(AMOUNT), remark="Только Т-Банк. Чек PDF с почты банка.",
            tradingPreferenceSet={}, paymentIds=[self.sbp], quantity="200", paymentPeriod="15", itemType="ORIGIN")
        return resp["result"]["itemId"]

    def say(self, order_id: str, text: str) -> None:
        self.http.send_chat_message(message=text, contentType="str", orderId=order_id, msgUuid=uuid.uuid4().hex)

    def buyer_texts_via_api(self, order_id: str) -> list[str]:
        """The buyer's text messages as the merchant reads them (pybit; rate-limited, so not for polling)."""
        result = self.http.get_chat_messages(orderId=order_id, size="30")["result"]
        messages = result["result"] if isinstance(result, dict) else result
        return [m["message"] for m in messages if m["userId"] not in (self.uid, "0") and m["msgType"] == 1]


def buyer_texts(box: Sandbox, order_id: str) -> list[str]:
    """Polling goes through the control API: the venue's per-UID read limit would throttle pybit polls."""
    messages = box.control("GET", f"/sandbox/bybit/orders/{order_id}/messages")["messages"]
    order = box.control("GET", f"/sandbox/bybit/orders/{order_id}")
    return [m["message"] for m in messages if m["userId"] == order["buyer_uid"] and m["msgType"] == 1]


def order_status(box: Sandbox, order_id: str) -> int:
    return int(box.control("GET", f"/sandbox/bybit/orders/{order_id}")["status"])


def buyers(box: Sandbox) -> dict[str, dict]:
    return {b["item_id"]: b for b in box.control("GET", "/sandbox/bybit/buyers")["buyers"]}


def actions(box: Sandbox, item_id: str) -> list[str]:
    return [a["action"] for a in buyers(box)[item_id]["actions"]]


def requisites(chats: list[tuple[Merchant, str]], wallet: str, email: str) -> None:
    """The four messages of the chat script (recipient, amount, e-mail, warning), sent to every chat in turn:
    interleaving keeps each merchant under the venue's 5 writes/s per UID."""
    script = (f"Переводите строго на Сбербанк по номеру {wallet}",
              "Сумма к оплате: 15\u00a0000,00 ₽",
              f"Чек PDF отправьте с официальной почты банка (noreply@tbank.ru) на {email}",
              "Не спрашивайте ФИО получателя, реквизиты верные. После оплаты нажмите «Оплачено».")
    for text in script:
        for merchant, order_id in chats:
            merchant.say(order_id, text)


def test_parse_requisites_forms():
    assert parse_requisites("Сбербанк +7 (912) 345-67-89") == {"wallet": "79123456789", "bank_key": "sberbank"}
    assert parse_requisites("Т-Банк, карта 2200 7012 3456 7890")["wallet"] == "2200701234567890"
    assert parse_requisites("Итого 1\u202f234,5 руб")["amount"] == Decimal("1234.50")
    assert parse_requisites("15000 RUB")["amount"] == Decimal("15000.00")
    found = parse_requisites("чек с noreply@tbank.ru на pay@merchant.example")
    assert found == {"email": "pay@merchant.example"}  # the bank's own address is neither bank nor e-mail
    assert parse_requisites("Получатель: Альфа-Банк 89001234567, платите с Т-Банка")["bank_key"] == "alfabank"


def test_buyers_disabled_by_default_and_control_validation(box):
    state = box.control("GET", "/sandbox/bybit/buyers")
    assert state["enabled"] is False and state["buyers"] == []
    import requests

    bad = requests.post(f"{box.url}/sandbox/bybit/buyers", json={"mix": {"no_such_profile": 1}}, timeout=5)
    assert bad.status_code == 400 and "no_such_profile" in bad.json()["error"]


def test_profiles_cooperative_refuser_silent_canceller(box):
    profiles = ("cooperative", "refuser", "silent", "canceller")
    ads: dict[str, tuple[Merchant, str]] = {}
    for profile in profiles:
        box.control("POST", "/sandbox/bybit/buyers", json={"mix": {profile: 1}, "enabled": True})
        merchant = Merchant(box)
        item_id = merchant.post_ad()
        ads[profile] = (merchant, item_id)
        wait_for(lambda item_id=item_id: item_id in buyers(box), what=f"a buyer for the {profile} ad")
    box.control("POST", "/sandbox/bybit/buyers", json={"enabled": False})
    state = buyers(box)
    assert {p: state[item]["profile"] for p, (_, item) in ads.items()} == {p: p for p in profiles}

    orders = {p: wait_for(lambda item=item: buyers(box)[item]["order_id"], what=f"{p} order")
              for p, (_, item) in ads.items()}
    for profile, (merchant, _) in ads.items():
        merchant.say(orders[profile], QUESTION)

    # Yes from the cooperative buyer and the canceller, no from the refuser, nothing from the silent one.
    for profile in ("cooperative", "canceller"):
        merchant, item = ads[profile]
        texts = wait_for(lambda o=orders[profile]: buyer_texts(box, o), what=f"{profile} answer")
        assert texts[0] in ("да", "Да, из Т-Банка", "yes")
        assert merchant.buyer_texts_via_api(orders[profile]) == texts
    assert wait_for(lambda: buyer_texts(box, orders["refuser"]), what="refusal")[0] in ("нет", "no, sorry")

    requisites([(ads["cooperative"][0], orders["cooperative"])], "+7 (912) 345-67-89", "receipts@merchant.example")
    requisites([(ads["canceller"][0], orders["canceller"])], "79001112233", "receipts@merchant.example")

    # Cooperative: pays the exact amount to the wallet at the named bank, in its own name, then marks paid.
    item = ads["cooperative"][1]
    wait_for(lambda: order_status(box, orders["cooperative"]) == 20, what="cooperative marks paid")
    payments = [p for p in box.control("GET", "/sandbox/bank/payments")["payments"]
                if p["order_ref"] == orders["cooperative"]]
    assert len(payments) == 1
    payment = payments[0]
    coop = buyers(box)[item]
    assert Decimal(payment["amount"]) == AMOUNT and payment["wallet"] == "79123456789"
    assert payment["bank_key"] == "sberbank" and payment["status"] == "Успешно"
    assert payment["payer_name"] == coop["real_name"]
    assert actions(box, item)[-3:] == ["paid", "bank_mailed_receipt", "marked_paid"]

    # Canceller: cancels without paying.
    item = ads["canceller"][1]
    wait_for(lambda: order_status(box, orders["canceller"]) == 40, what="canceller cancels")
    assert "cancelled_order" in actions(box, item)
    assert not [p for p in box.control("GET", "/sandbox/bank/payments")["payments"]
                if p["order_ref"] == orders["canceller"]]

    # Silent: never answers; the payment window (15 simulated minutes = 15 s here) lapses.
    item = ads["silent"][1]
    wait_for(lambda: order_status(box, orders["silent"]) == 40, timeout=40, what="silent order lapses")
    assert buyer_texts(box, orders["silent"]) == []
    wait_for(lambda: "order_closed" in actions(box, item), what="silent buyer notices the lapse")

    truth = box.control("GET", "/sandbox/truth?kind=buyer_action")["events"]
    assert {e["profile"] for e in truth} == set(profiles)
    assert any(e["action"] == "paid" and e["order_id"] == orders["cooperative"] for e in truth)
    view = box.control("GET", "/sandbox/bybit/buyers")
    assert {view["by_order"][orders[p]] for p in profiles} == set(profiles)


def test_other_profiles_and_fraud_ground_truth(box):
    profiles = ("chat_receipt", "unclear_then_yes", "appealer", "fraud_edited_pdf", "fraud_reuse",
                "fraud_wrong_wallet", "fraud_wrong_bank", "fraud_pending", "fraud_lookalike", "fraud_screenshot",
                "mark_paid_only")
    ads: dict[str, tuple[Merchant, str]] = {}
    for profile in profiles:
        box.control("POST", "/sandbox/bybit/buyers", json={"mix": {profile: 1}, "enabled": True})
        merchant = Merchant(box)
        ads[profile] = (merchant, merchant.post_ad())
        wait_for(lambda item=ads[profile][1]: item in buyers(box), what=f"a buyer for the {profile} ad")
    box.control("POST", "/sandbox/bybit/buyers", json={"enabled": False})
    orders = {p: wait_for(lambda item=item: buyers(box)[item]["order_id"], what=f"{p} order")
              for p, (_, item) in ads.items()}
    for profile, (merchant, _) in ads.items():
        merchant.say(orders[profile], QUESTION)
    unclear = wait_for(lambda: buyer_texts(box, orders["unclear_then_yes"]), what="unclear answer")
    assert unclear[0] in ("а что за банк?", "which bank do you mean?")
    time.sleep(0.5)
    assert buyer_texts(box, orders["unclear_then_yes"]) == unclear  # no yes before the question is repeated
    ads["unclear_then_yes"][0].say(orders["unclear_then_yes"], "У нас фиксированный порядок. " + QUESTION)
    for profile in ads:
        wait_for(lambda o=orders[profile]: any(t in ("да", "Да, из Т-Банка", "yes") for t in buyer_texts(box, o)),
                 what=f"{profile} says yes")
    requisites([(m, orders[p]) for p, (m, _) in ads.items()], "+7 (912) 345-67-89", "receipts@merchant.example")
    expected = {p: 20 for p in profiles} | {"appealer": 30}
    wait_for(lambda: all(order_status(box, orders[p]) == s for p, s in expected.items()), timeout=40,
             what="every buyer acted")

    ledger = box.control("GET", "/sandbox/bank/payments")["payments"]
    paid = {p: [x for x in ledger if x["order_ref"] == orders[p]] for p in profiles}
    for profile in ("chat_receipt", "unclear_then_yes", "appealer"):
        (pay,) = paid[profile]
        assert (Decimal(pay["amount"]), pay["wallet"], pay["bank_key"], pay["status"]) == (
            AMOUNT, "79123456789", "sberbank", "Успешно")
    (short,) = paid["fraud_edited_pdf"]
    assert AMOUNT * Decimal("0.5") <= Decimal(short["amount"]) <= AMOUNT * Decimal("0.9")
    (wrong_wallet,) = paid["fraud_wrong_wallet"]
    assert wrong_wallet["wallet"] != "79123456789" and Decimal(wrong_wallet["amount"]) == AMOUNT
    (wrong_bank,) = paid["fraud_wrong_bank"]
    assert wrong_bank["wallet"] == "79123456789" and wrong_bank["bank_key"] != "sberbank"
    (pending,) = paid["fraud_pending"]
    assert pending["status"] == "В обработке"
    for profile in ("fraud_reuse", "fraud_lookalike", "fraud_screenshot", "mark_paid_only"):
        assert paid[profile] == [], profile  # no money moved for this order

    view = buyers(box)

    def did(profile: str, action: str) -> list[dict]:
        return [a for a in view[ads[profile][1]]["actions"] if a["action"] == action]

    assert did("fraud_edited_pdf", "sent_mail")[0]["dkim"] == "bad"
    assert did("fraud_edited_pdf", "posted_file")[0]["shows_amount"] == str(AMOUNT)
    assert did("fraud_reuse", "sent_mail")[0]["from_addr"] == "noreply@tbank.ru"
    lookalike = did("fraud_lookalike", "sent_mail")[0]
    assert (lookalike["from_addr"], lookalike["dkim"]) == ("noreply@tbank-ru.com", "good")
    assert did("fraud_screenshot", "posted_file")[0]["content_type"] == "pic"
    assert did("appealer", "appealed")
    chat = box.control("GET", f"/sandbox/bybit/orders/{orders['chat_receipt']}/messages")["messages"]
    assert any(m["msgType"] == 7 and m["contentType"] == "pdf" for m in chat)
