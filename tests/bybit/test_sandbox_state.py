"""In-process tests of the sandbox Bybit venue state model: funds invariants under random operation sequences,
payment timeouts and countdown (driven through ``tick(now)`` with explicit clocks, no sleeping), the exact
recv_window edges of the authenticator, and the Python API the simulated buyers use."""

from __future__ import annotations

import hashlib
import hmac
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sandbox.bybit.auth import HttpRefusal, authenticate
from sandbox.bybit.state import BybitVenue, VenueError
from sandbox.world import World


def make(speed: float = 1.0) -> tuple[World, BybitVenue]:
    world = World(seed=3, speed=speed)
    return world, BybitVenue(world)


def seller_ad(venue: BybitVenue, quantity: str = "101", amount: str = "9550", balance: str = "1000"):
    acc = venue.create_account(balance=Decimal(balance))
    sbp = next(m.id for m in acc.methods if m.payment_type == "382")
    ad = venue.create_ad(acc.uid, side=1, token="USDT", currency="RUB", price_type=0, price=Decimal("95.5"),
                         premium="", min_amount=Decimal(amount), max_amount=Decimal(amount),
                         quantity=Decimal(quantity), payment_period=15, remark="Только Т-Банк", payment_ids=[sbp])
    return acc, ad


def test_payment_timeout_cancels_and_returns_quantity():
    world, venue = make(speed=60)
    acc, ad = seller_ad(venue)
    buyer = venue.create_buyer("anna", "Anna K")
    order = venue.open_order(buyer, ad.id, Decimal("9550"))
    assert order.payment_deadline == pytest.approx(order.created_at + 15.0)  # 15 min at speed 60
    assert venue.transfer_last_seconds(order, order.created_at) == 15
    assert venue.transfer_last_seconds(order, order.created_at + 10.5) == 5
    venue.tick(order.payment_deadline - 0.01)
    assert order.status == 10
    venue.tick(order.payment_deadline)
    assert order.status == 40 and order.cancel_reason == "payment timeout"
    assert venue.transfer_last_seconds(order) == 0
    assert ad.last_quantity == Decimal("101") and ad.frozen_quantity == 0
    assert [e["order_id"] for e in world.truth_events("bybit_order_cancelled")] == [order.id]
    assert venue.messages(order.id)[-1]["roleType"] == "sys"


def test_paid_orders_do_not_time_out_and_release_once():
    world, venue = make()
    acc, ad = seller_ad(venue)
    buyer = venue.create_buyer("anna", "Anna K")
    order = venue.open_order(buyer, ad.id, Decimal("9550"))
    with pytest.raises(VenueError) as err:
        venue.mark_paid(order.id, acc.uid)  # only the buyer pays
    assert err.value.code == 912000004
    venue.mark_paid(order.id, buyer)
    venue.tick(order.payment_deadline + 3600)
    assert order.status == 20 and order.payment_type == "382"
    with pytest.raises(VenueError):
        venue.release(order.id, buyer)  # the buyer cannot release
    venue.release(order.id, acc.uid)
    with pytest.raises(VenueError) as err:
        venue.release(order.id, acc.uid)
    assert err.value.code == 912000004 and "status 50" in err.value.msg
    assert len(world.truth_events("bybit_release")) == 1
    assert venue.account(buyer).balance == Decimal("100.0000")
    assert acc.balance == Decimal("899") and acc.frozen == Decimal("1")
    assert ad.status == 30


def test_open_order_refusals():
    _, venue = make()
    acc, ad = seller_ad(venue)
    buyer = venue.create_buyer("b", "B B")
    for who, amount in ((acc.uid, "9550"), (buyer, "9549"), (buyer, "9551")):
        with pytest.raises(VenueError):
            venue.open_order(who, ad.id, Decimal(amount))
    venue.remove_ad(acc.uid, ad.id)
    with pytest.raises(VenueError):
        venue.open_order(buyer, ad.id, Decimal("9550"))
    assert venue.online_sell_ads() == []


def test_cancel_on_removed_ad_returns_usdt_to_balance():
    _, venue = make()
    acc, ad = seller_ad(venue)
    buyer = venue.create_buyer("b", "B B")
    order = venue.open_order(buyer, ad.id, Decimal("9550"))
    assert venue.online_sell_ads() == []  # 1 USDT left cannot cover minAmount
    venue.remove_ad(acc.uid, ad.id)
    assert acc.balance == Decimal("900") and acc.frozen == Decimal("100")
    venue.cancel_order(order.id, buyer)
    assert acc.balance == Decimal("1000") and acc.frozen == 0
    assert ad.quantity == ad.last_quantity + ad.frozen_quantity + ad.executed_quantity


def test_buyer_messages_and_files():
    _, venue = make()
    acc, ad = seller_ad(venue)
    buyer = venue.create_buyer("b", "B B")
    order = venue.open_order(buyer, ad.id, Decimal("9550"))
    venue.post_message(order.id, buyer, "+")
    msg = venue.post_message(order.id, buyer, file_bytes=b"%PDF-1.4 x", filename="check.pdf", content_type="pdf")
    assert msg["contentType"] == "pdf" and msg["msgType"] == 7 and msg["fileName"] == "check.pdf"
    assert venue.file_bytes(msg["message"]) == b"%PDF-1.4 x"
    assert venue.file_bytes("http://127.0.0.1:1" + msg["message"]) == b"%PDF-1.4 x"
    texts = [m["message"] for m in venue.messages(order.id)]
    assert texts[2:] == ["Только Т-Банк", "+", msg["message"]]  # oldest first, after two system notices
    assert {m["msgType"] for m in venue.messages(order.id)[:2]} == {0}
    with pytest.raises(VenueError):
        venue.post_message(order.id, venue.create_buyer("c", "C C"), "hi")  # not a party


def test_auth_window_edges_exact():
    _, venue = make()
    acc = venue.create_account()
    now = 1_800_000_000_000

    def headers(ts: int, rw: str = "5000", body: bytes = b"{}") -> dict[str, str]:
        sig = hmac.new(acc.api_secret.encode(), f"{ts}{acc.api_key}{rw}".encode() + body,
                       hashlib.sha256).hexdigest()
        return {"x-bapi-api-key": acc.api_key, "x-bapi-timestamp": str(ts), "x-bapi-sign": sig,
                "x-bapi-recv-window": rw}

    assert authenticate(venue, headers(now - 5000), b"{}", now_ms=now) is acc
    assert authenticate(venue, headers(now + 999), b"{}", now_ms=now) is acc
    for ts in (now - 5001, now + 1000):
        with pytest.raises(VenueError) as err:
            authenticate(venue, headers(ts), b"{}", now_ms=now)
        assert err.value.code == 10002
    with pytest.raises(HttpRefusal):
        authenticate(venue, {"x-bapi-api-key": acc.api_key}, b"{}", now_ms=now)


# Creates and opens are listed twice so most sequences have live orders for the other operations to act on.
OPS = st.lists(st.tuples(st.sampled_from(["create", "open", "create", "open", "pay", "cancel", "release", "remove",
                                          "appeal", "update", "tick"]),
                         st.integers(0, 3), st.integers(1, 400)), min_size=12, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(OPS)
def test_funds_invariants_hold_under_random_operations(ops):
    _, venue = make(speed=1000)
    sellers = [venue.create_account(balance=Decimal("3000")) for _ in range(2)]
    buyers = [venue.create_buyer(f"b{i}", f"B {i}") for i in range(2)]
    total = sum(a.balance + a.frozen for a in venue.accounts.values())
    clock = 0.0
    for op, pick, n in ops:
        ads, orders = venue.ads(), venue.orders()
        try:
            if op == "create":
                acc = sellers[pick % 2]
                pid = acc.methods[1 + pick % 2].id
                price = Decimal("90") + pick
                qty = Decimal(n) / 4
                amount = (qty * price / 2).quantize(Decimal("0.01"))
                venue.create_ad(acc.uid, side=1, token="USDT", currency="RUB", price_type=0, price=price,
                                premium="", min_amount=amount, max_amount=amount, quantity=qty, payment_period=15,
                                remark="r", payment_ids=[pid])
            elif op == "open" and ads:
                ad = ads[pick % len(ads)]
                venue.open_order(buyers[n % 2], ad.id, ad.max_amount)
            elif orders:
                order = orders[pick % len(orders)]
                if op == "pay":
                    venue.mark_paid(order.id, order.buyer_uid)
                elif op == "cancel":
                    venue.cancel_order(order.id, order.buyer_uid)
                elif op == "release":
                    venue.release(order.id, order.seller_uid)
                elif op == "appeal":
                    venue.appeal(order.id, order.buyer_uid)
            if op == "remove" and ads:
                ad = ads[pick % len(ads)]
                venue.remove_ad(ad.uid, ad.id)
            elif op == "update" and ads:
                ad = ads[pick % len(ads)]
                venue.update_ad(ad.uid, ad.id, "MODIFY", price_type=0, price=ad.price, premium="",
                                min_amount=ad.min_amount, max_amount=ad.max_amount,
                                quantity=ad.quantity + Decimal(n - 200) / 10, payment_period=15, remark="u",
                                payment_ids=ad.payment_ids, trading_preferences={})
            elif op == "tick":
                clock += n
                venue.tick(max(o.payment_deadline for o in orders) + 1 if orders and n > 200 else clock)
        except VenueError:
            pass
        for ad in venue.ads():
            assert ad.quantity == ad.last_quantity + ad.frozen_quantity + ad.executed_quantity
            assert min(ad.last_quantity, ad.frozen_quantity, ad.executed_quantity) >= 0
            open_qty = sum(o.quantity for o in venue.orders() if o.item_id == ad.id and o.status in (10, 20, 30))
            assert ad.frozen_quantity == open_qty
        for acc in sellers:
            live = sum(a.last_quantity + a.frozen_quantity for a in venue.ads() if a.uid == acc.uid and not a.removed)
            gone = sum(a.frozen_quantity for a in venue.ads() if a.uid == acc.uid and a.removed)
            assert acc.frozen == live + gone and acc.balance >= 0
        assert sum(a.balance + a.frozen for a in venue.accounts.values()) == total
