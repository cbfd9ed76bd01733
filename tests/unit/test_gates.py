"""The approve and release gates: every unsafe combination is refused or sent to a human."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from orchestrator.gates import Policy, ReceiptFacts, approve_gate, release_gate

POLICY = Policy(per_order_cap_rub=Decimal("300000"), daily_cap_rub=Decimal("1000000"),
                release_delay=timedelta(seconds=120))
ALL_OK = {"status_ok": True, "amount_match": True, "wallet_match": True, "bank_match": True, "date_ok": True}


def receipt(**kw):
    base = dict(verdict="valid", reasons=(), source="mail", extraction="pdf_text", dkim="pass",
                sender_allowlisted=True, already_used=False, amount=Decimal("15000"), checks=dict(ALL_OK))
    base.update(kw)
    return ReceiptFacts(**base)


def approve(r, amount="15000", today="0", **kw):
    return approve_gate(r, order_amount=Decimal(amount), released_today=Decimal(today), policy=POLICY, **kw)


def test_the_only_proceed_is_a_valid_unused_bank_mail_pdf_within_caps():
    assert approve(receipt()).route == "proceed"


def test_any_single_weakness_blocks_proceed():
    weak = [dict(verdict="manual_review"), dict(verdict="invalid"), dict(source="chat"), dict(extraction="ocr"),
            dict(dkim="fail"), dict(dkim="none"), dict(sender_allowlisted=False), dict(already_used=True),
            dict(amount=Decimal("14999.99"))] + [dict(checks={**ALL_OK, k: False}) for k in ALL_OK] + \
        [dict(checks={k: v for k, v in ALL_OK.items() if k != m}) for m in ALL_OK]
    for change in weak:
        assert approve(receipt(**change)).route != "proceed", change
    assert approve(receipt(amount=Decimal("300000.01")), amount="300000.01").route == "manual_review"
    assert approve(receipt(), today="990000").route == "manual_review"


def test_fraud_signals_are_rejected_even_when_an_operator_confirms():
    for change in (dict(verdict="invalid"), dict(already_used=True), dict(checks={**ALL_OK, "wallet_match": False})):
        assert approve(receipt(**change), operator_confirmed=True).route == "reject"


def test_operator_can_vouch_for_the_channel_of_a_review_receipt():
    r = receipt(source="chat", dkim="none", verdict="manual_review")
    assert approve(r).route == "manual_review"
    assert approve(r, operator_confirmed=True).route == "proceed"


def test_release_gate_combinations():
    now = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
    for approved, ago, status, receipt_ok in itertools.product((True, False), (0, 119, 121), (10, 20, 30, 40, 50, None),
                                                               (True, False)):
        d = release_gate(gate_approved=approved, approved_at=now - timedelta(seconds=ago) if approved else None,
                         now=now, bybit_status=status, order_amount=Decimal("15000"), released_today=Decimal("0"),
                         policy=POLICY, approved_receipt_ok=receipt_ok)
        expected = approved and receipt_ok and ago >= 120 and status == 20
        assert (d.route == "proceed") == expected, (approved, ago, status, receipt_ok, d)
