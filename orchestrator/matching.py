"""Which order does a receipt belong to?  Amount AND recipient AND time, never amount alone.

A receipt names its recipient by phone (by-phone SBP transfers) or by a card mask; the order knows the
payout's wallet.  Only a single candidate that agrees on all of amount, recipient and time is a match: two
candidates (the same amount to the same wallet) are ambiguous and go to an operator, not to a coin toss.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

CLOCK_SKEW = timedelta(minutes=2)


@dataclass(frozen=True)
class Candidate:
    order_id: int
    amount: Decimal
    wallet: str
    accepted_at: datetime


@dataclass(frozen=True)
class Match:
    order_id: int | None
    reason: str  # matched | no_recipient | no_amount | no_candidate | ambiguous


def digits(text: str | None) -> str:
    return re.sub(r"\D", "", text or "")


def recipient_matches(fields: dict[str, Any], wallet: str) -> bool:
    """Phone: the last 10 digits agree.  Card: every printed digit agrees with the wallet at its position."""
    phone = digits(fields.get("recipient_phone"))
    if phone:
        return len(phone) >= 10 and len(digits(wallet)) >= 10 and phone[-10:] == digits(wallet)[-10:]
    card = (fields.get("recipient_card") or "").replace(" ", "")
    if not card:
        return False
    wallet_digits = digits(wallet)
    masked = card.lstrip("*")
    if card.startswith("*"):  # "*1234": a T-Bank client card, last four only
        return len(masked) >= 4 and wallet_digits.endswith(masked)
    if len(card) != len(wallet_digits):
        return False
    return all(c == "*" or c == w for c, w in zip(card, wallet_digits, strict=True))


def match_receipt(fields: dict[str, Any], candidates: list[Candidate]) -> Match:
    if not (fields.get("recipient_phone") or fields.get("recipient_card")):
        return Match(None, "no_recipient")
    try:
        amount = Decimal(str(fields.get("amount")))
    except (InvalidOperation, ValueError):
        return Match(None, "no_amount")
    when = fields.get("date")
    receipt_time = datetime.fromisoformat(when) if when else None
    hits = [
        c for c in candidates
        if c.amount == amount
        and recipient_matches(fields, c.wallet)
        and (receipt_time is None or receipt_time >= c.accepted_at - CLOCK_SKEW)
    ]
    if not hits:
        return Match(None, "no_candidate")
    if len(hits) > 1:
        return Match(None, "ambiguous")
    return Match(hits[0].order_id, "matched")
