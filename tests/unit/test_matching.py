"""Receipts match an order on amount + recipient + time, never on amount alone."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from orchestrator.matching import Candidate, match_receipt, recipient_matches

T0 = datetime.fromisoformat("2026-11-21T10:00:00+00:00")
C1 = Candidate(1, Decimal("15000"), "79001234567", T0)
C2 = Candidate(2, Decimal("15000"), "79007654321", T0)
C3 = Candidate(3, Decimal("2500.50"), "2200123456789012", T0)


def fields(**kw):
    base = {"amount": "15000.00", "recipient_phone": "79001234567", "recipient_card": None,
            "date": "2026-11-21T13:05:00+03:00"}
    base.update(kw)
    return base


def test_unique_match():
    assert match_receipt(fields(), [C1, C2, C3]).order_id == 1


def test_amount_alone_never_matches():
    assert match_receipt(fields(recipient_phone=None), [C1]).reason == "no_recipient"
    assert match_receipt(fields(recipient_phone="79990000000"), [C1, C2]).reason == "no_candidate"


def test_same_amount_same_wallet_is_ambiguous():
    twin = Candidate(9, Decimal("15000"), "79001234567", T0)
    assert match_receipt(fields(), [C1, twin]).reason == "ambiguous"


def test_receipt_older_than_acceptance_does_not_match():
    assert match_receipt(fields(date="2026-11-21T12:50:00+03:00"), [C1]).reason == "no_candidate"


def test_kopecks_are_exact():
    assert match_receipt(fields(amount="2500.50", recipient_phone=None, recipient_card="220012******9012"),
                         [C3]).order_id == 3
    assert match_receipt(fields(amount="2500.5", recipient_phone=None, recipient_card="220012******9012"),
                         [C3]).order_id == 3
    assert match_receipt(fields(amount="2500.00", recipient_phone=None, recipient_card="220012******9012"),
                         [C3]).reason == "no_candidate"


def test_card_masks():
    assert recipient_matches({"recipient_card": "*9012"}, "2200123456789012")
    assert not recipient_matches({"recipient_card": "*9013"}, "2200123456789012")
    assert not recipient_matches({"recipient_card": "220013******9012"}, "2200123456789012")
    assert recipient_matches({"recipient_phone": "89001234567"}, "79001234567")
