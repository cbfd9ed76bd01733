"""The ad price rule on fixed market pages: rule selection (Moscow time from UTC, night and amount edges,
windows that wrap past midnight, priorities) and the price pick (second-to-last, adjustment, short pages)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from itrader.bybit import pricing
from itrader.errors import InputError, ScriptError

TIERED = pricing.TIERED_RULES


def utc_for_msk(hhmm: str, day: int = 15) -> datetime:
    """The UTC instant at which Moscow wall clock shows hhmm on 2026-06-<day>."""
    h, m = map(int, hhmm.split(":"))
    return datetime(2026, 6, day, h, m, tzinfo=pricing.MOSCOW).astimezone(UTC)


def page(*prices: str) -> list[dict]:
    return [{"id": str(i), "price": p} for i, p in enumerate(prices)]


@pytest.mark.parametrize(
    ("msk", "night"),
    [("00:59", False), ("01:00", True), ("03:30", True), ("06:59", True), ("07:00", False), ("12:00", False),
     ("23:59", False), ("00:00", False)],
)
def test_night_edges_small(msk: str, night: bool) -> None:
    rule = pricing.select_rule(TIERED, Decimal("10000"), utc_for_msk(msk))
    assert rule.name == ("small_night" if night else "small_day")
    assert rule.page_number == (2 if night else 4)


@pytest.mark.parametrize(
    ("amount", "small"), [("1", True), ("50000", True), ("50000.00", True), ("50000.01", False), ("50000.001", False),
                          ("1000000", False)],
)
def test_amount_edges(amount: str, small: bool) -> None:
    day = pricing.select_rule(TIERED, Decimal(amount), utc_for_msk("12:00"))
    night = pricing.select_rule(TIERED, Decimal(amount), utc_for_msk("02:00"))
    assert (day.page_number, night.page_number) == ((4, 2) if small else (5, 3))


def test_moscow_time_is_computed_from_utc_not_local_zone() -> None:
    # 22:30 UTC is 01:30 the next day in Moscow: night, whatever zone the instant is expressed in.
    at = datetime(2026, 1, 1, 22, 30, tzinfo=UTC)
    assert pricing.moscow(at).strftime("%Y-%m-%d %H:%M") == "2026-01-02 01:30"
    same_instant_elsewhere = at.astimezone(timezone(timedelta(hours=-7)))
    assert pricing.select_rule(TIERED, Decimal(100), same_instant_elsewhere).name == "small_night"
    assert pricing.parse_at("2026-01-01T22:30:00Z") == at
    assert pricing.parse_at("2026-01-02T01:30:00+03:00") == at


def test_at_without_zone_is_refused() -> None:
    with pytest.raises(InputError) as exc:
        pricing.parse_at("2026-01-01T22:30:00")
    assert exc.value.code == "invalid_at"


def test_second_to_last_price() -> None:
    rule = pricing.select_rule(TIERED, Decimal("10000"), utc_for_msk("12:00"))
    price, raw, index = pricing.pick_price(rule, page("80.10", "80.20", "80.35", "80.40"))
    assert (price, raw, index) == (Decimal("80.35"), Decimal("80.35"), 2)
    price, _, index = pricing.pick_price(rule, page("79.00", "79.50"))
    assert (price, index) == (Decimal("79.00"), 0)


@pytest.mark.parametrize("n", [0, 1])
def test_fewer_than_two_items_is_an_error(n: int) -> None:
    rule = pricing.select_rule(TIERED, Decimal("10000"), utc_for_msk("12:00"))
    with pytest.raises(ScriptError) as exc:
        pricing.pick_price(rule, page(*["80.00"] * n))
    assert exc.value.code == "not_enough_ads" and exc.value.retryable


def test_rule_engine_shape_with_adjustment_and_priority() -> None:
    rules = pricing.parse_rules([
        {"name": "default", "priority": 0, "page_number": 2, "ad_index": 0, "price_adjustment": "2"},
        {"name": "office", "priority": 10, "time_start": "09:00", "time_end": "18:00", "page_number": 1,
         "ad_index": 0, "price_adjustment": "2.5"},
        {"name": "disabled", "priority": 99, "page_number": 9, "ad_index": 0, "enabled": False},
    ])
    assert pricing.select_rule(rules, Decimal(1), utc_for_msk("09:00")).name == "office"
    assert pricing.select_rule(rules, Decimal(1), utc_for_msk("17:59")).name == "office"
    assert pricing.select_rule(rules, Decimal(1), utc_for_msk("18:00")).name == "default"
    office = rules[1]
    price, raw, _ = pricing.pick_price(office, page("80.00", "81.00"))
    assert raw == Decimal("80.00") and price == Decimal("82.00")  # 80 * 1.025
    price, _, _ = pricing.pick_price(rules[0], page("79.99"))
    assert price == Decimal("81.59")  # 79.99 * 1.02 = 81.5898 -> 81.59


def test_window_wrapping_midnight() -> None:
    rules = pricing.parse_rules([
        {"name": "late", "time_start": "22:00", "time_end": "02:00", "page_number": 3, "ad_index": 1},
        {"name": "rest", "time_start": "02:00", "time_end": "22:00", "page_number": 1, "ad_index": 0},
    ])
    for hhmm, name in [("21:59", "rest"), ("22:00", "late"), ("23:59", "late"), ("00:00", "late"),
                       ("01:59", "late"), ("02:00", "rest")]:
        assert pricing.select_rule(rules, Decimal(5), utc_for_msk(hhmm)).name == name, hhmm


def test_amount_ranges_are_half_open() -> None:
    rules = pricing.parse_rules([
        {"name": "small", "max_amount": "20000", "page_number": 1, "ad_index": 0},
        {"name": "mid", "min_amount": "20000", "max_amount": "100000", "page_number": 2, "ad_index": 0},
        {"name": "big", "min_amount": "100000", "page_number": 3, "ad_index": 0},
    ])
    at = utc_for_msk("12:00")
    got = [pricing.select_rule(rules, Decimal(a), at).name for a in ("20000", "20000.01", "100000", "100000.5")]
    assert got == ["small", "mid", "mid", "big"]


def test_no_matching_rule_is_an_error_not_a_fallback() -> None:
    rules = pricing.parse_rules([{"name": "day", "time_start": "07:00", "time_end": "19:00", "page_number": 1,
                                  "ad_index": 0}])
    with pytest.raises(InputError) as exc:
        pricing.select_rule(rules, Decimal(1), utc_for_msk("20:00"))
    assert exc.value.code == "no_matching_rule"


def test_positive_index_beyond_page() -> None:
    rule = pricing.parse_rules([{"name": "third", "page_number": 1, "ad_index": 2}])[0]
    with pytest.raises(ScriptError):
        pricing.pick_price(rule, page("1.00", "2.00"))
    assert pricing.pick_price(rule, page("1.00", "2.00", "3.00"))[0] == Decimal("3.00")


@pytest.mark.parametrize("bad", [
    {"name": "x", "page_number": 1, "ad_index": 0, "time_start": "01:00"},
    {"name": "x", "page_number": 1, "ad_index": 0, "min_amount": "10", "max_amount": "10"},
])
def test_inconsistent_rules_are_refused(bad: dict) -> None:
    with pytest.raises(InputError):
        pricing.parse_rules([bad])


def test_bad_market_price_is_not_used() -> None:
    rule = pricing.parse_rules([{"name": "first", "page_number": 1, "ad_index": 0}])[0]
    with pytest.raises(ScriptError) as exc:
        pricing.pick_price(rule, [{"price": "abc"}])
    assert exc.value.code == "venue_bad_response"
