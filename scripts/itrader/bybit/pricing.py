"""The ad price rule: which market page and which ad on it set our SELL price, as configurable data.

The production rule is the tiered one (small = amount <= 50 000 RUB; night = 01:00-07:00 Moscow time; page
4/2/5/3 for small-day/small-night/large-day/large-night; the price of the second-to-last ad on the page).  It is
expressed here in the shape of the later rule engine (name, priority, Moscow time window that may wrap past
midnight, amount range, page, ad index, percentage adjustment), so the tiered rule is simply the default rule
set and an operator can replace it without code changes.

Two bugs of the earlier implementations are designed out: Moscow time is always derived from UTC (never the
server's local clock), and nothing falls back silently to a constant rate: no matching rule, or a page too
short for the rule's index, is an error.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from itrader.errors import InputError, ScriptError

MOSCOW = timezone(timedelta(hours=3), "MSK")  # Moscow has had no DST since 2014
SMALL_LIMIT_RUB = Decimal("50000")
PRICE_STEP = Decimal("0.01")


@dataclass(frozen=True)
class Rule:
    """One pricing rule.

    Matching: the Moscow time of day lies in ``[time_start, time_end)`` (a window with start > end wraps past
    midnight; no window, or start == end, means all day) and ``min_amount < amount <= max_amount`` (either bound
    optional; the half-open range makes "small = up to and including 50 000" and "large = above 50 000" meet
    exactly).  Among matching enabled rules the highest ``priority`` wins; ties go to the earlier rule.

    Price: ``items[ad_index].price * (1 + price_adjustment / 100)`` on market page ``page_number`` (of
    ``page_size`` ads).  A negative ``ad_index`` counts from the end of the page, so -2 is "second-to-last".
    """

    name: str
    page_number: int
    ad_index: int
    priority: int = 0
    time_start: str | None = None
    time_end: str | None = None
    min_amount: Decimal | None = None
    max_amount: Decimal | None = None
    price_adjustment: Decimal = Decimal("0")
    page_size: int = 10
    enabled: bool = True

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "priority": self.priority, "time_start": self.time_start, "time_end": self.time_end,
            "min_amount": self.min_amount, "max_amount": self.max_amount, "page_number": self.page_number,
            "page_size": self.page_size, "ad_index": self.ad_index, "price_adjustment": self.price_adjustment,
            "enabled": self.enabled,
        }


def _tier(name: str, night: bool, small: bool, page: int) -> Rule:
    return Rule(
        name=name, page_number=page, ad_index=-2, priority=10,
        time_start="01:00" if night else "07:00", time_end="07:00" if night else "01:00",
        min_amount=None if small else SMALL_LIMIT_RUB, max_amount=SMALL_LIMIT_RUB if small else None,
    )


TIERED_RULES: tuple[Rule, ...] = (
    _tier("small_day", night=False, small=True, page=4),
    _tier("small_night", night=True, small=True, page=2),
    _tier("large_day", night=False, small=False, page=5),
    _tier("large_night", night=True, small=False, page=3),
)


def _minutes(hhmm: str) -> int:
    hours, _, mins = hhmm.partition(":")
    value = int(hours) * 60 + int(mins)
    if not (0 <= int(hours) <= 24 and 0 <= int(mins) < 60 and value <= 24 * 60):
        raise InputError("invalid_rules", f"time {hhmm!r} is not HH:MM")
    return value


def _decimal(value: Any, what: str) -> Decimal | None:
    if value is None:
        return None
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        raise InputError("invalid_rules", f"{what} is not a number") from None
    if not out.is_finite():
        raise InputError("invalid_rules", f"{what} is not a finite number")
    return out


def parse_rules(raw: list[dict[str, Any]]) -> list[Rule]:
    """Rules from the request (already schema-checked); semantic checks the schema cannot express."""
    rules: list[Rule] = []
    for i, item in enumerate(raw):
        rule = Rule(
            name=str(item.get("name") or f"rule_{i}"),
            page_number=int(item["page_number"]),
            ad_index=int(item.get("ad_index", 0)),
            priority=int(item.get("priority", 0)),
            time_start=item.get("time_start"),
            time_end=item.get("time_end"),
            min_amount=_decimal(item.get("min_amount"), f"rules[{i}].min_amount"),
            max_amount=_decimal(item.get("max_amount"), f"rules[{i}].max_amount"),
            price_adjustment=_decimal(item.get("price_adjustment", 0), f"rules[{i}].price_adjustment") or Decimal(0),
            page_size=int(item.get("page_size", 10)),
            enabled=bool(item.get("enabled", True)),
        )
        if (rule.time_start is None) != (rule.time_end is None):
            raise InputError("invalid_rules", f"rules[{i}]: give both time_start and time_end, or neither")
        for hhmm in (rule.time_start, rule.time_end):
            if hhmm is not None:
                _minutes(hhmm)
        if rule.min_amount is not None and rule.max_amount is not None and rule.min_amount >= rule.max_amount:
            raise InputError("invalid_rules", f"rules[{i}]: min_amount must be below max_amount")
        rules.append(rule)
    return rules


def parse_at(value: str | None) -> datetime:
    """The pricing instant as an aware UTC datetime (now, or an ISO time for "as of" pricing in tests)."""
    if value is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InputError("invalid_at", "at must be an ISO 8601 time, e.g. 2026-01-01T12:00:00Z") from None
    if at.tzinfo is None:
        raise InputError("invalid_at", "at needs a timezone (Z or +HH:MM); local server time is never assumed")
    return at.astimezone(UTC)


def moscow(at: datetime) -> datetime:
    """Moscow wall-clock time for an aware instant (UTC+3, computed from UTC, never from the local zone)."""
    if at.tzinfo is None:
        raise ValueError("naive datetime")
    return at.astimezone(MOSCOW)


def in_window(rule: Rule, msk: datetime) -> bool:
    if rule.time_start is None or rule.time_end is None:
        return True
    start, end, now = _minutes(rule.time_start), _minutes(rule.time_end), msk.hour * 60 + msk.minute
    if start == end:
        return True
    if start < end:
        return start <= now < end
    return now >= start or now < end  # wraps past midnight


def in_amount(rule: Rule, amount: Decimal) -> bool:
    if rule.min_amount is not None and not amount > rule.min_amount:
        return False
    return not (rule.max_amount is not None and amount > rule.max_amount)


def select_rule(rules: list[Rule] | tuple[Rule, ...], amount: Decimal, at: datetime) -> Rule:
    msk = moscow(at)
    best: Rule | None = None
    for rule in rules:
        if rule.enabled and in_window(rule, msk) and in_amount(rule, amount) and (
            best is None or rule.priority > best.priority
        ):
            best = rule
    if best is None:
        raise InputError("no_matching_rule",
                         f"no enabled pricing rule matches {amount} RUB at {msk:%H:%M} Moscow time")
    return best


def pick_price(rule: Rule, items: list[dict[str, Any]]) -> tuple[Decimal, Decimal, int]:
    """(ad price, raw market price, resolved index) for a rule applied to one market page."""
    n = len(items)
    need = -rule.ad_index if rule.ad_index < 0 else rule.ad_index + 1
    if n < need:
        raise ScriptError(
            "not_enough_ads",
            f"market page {rule.page_number} has {n} ads; rule {rule.name!r} needs at least {need}",
            retryable=True,
            details={"rule": rule.name, "page": rule.page_number, "items": n},
        )
    index = rule.ad_index % n if rule.ad_index < 0 else rule.ad_index
    try:
        raw = Decimal(str(items[index].get("price")))
    except (InvalidOperation, TypeError):
        raise ScriptError("venue_bad_response", f"ad #{index} on page {rule.page_number} has no valid price",
                          retryable=True) from None
    if not raw.is_finite() or raw <= 0:
        raise ScriptError("venue_bad_response", f"ad #{index} on page {rule.page_number} has a non-positive price",
                          retryable=True)
    price = raw * (1 + rule.price_adjustment / 100)
    return price.quantize(PRICE_STEP, rounding=ROUND_HALF_UP), raw, index
