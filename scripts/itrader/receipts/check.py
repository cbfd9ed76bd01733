"""Checking parsed receipt fields against what the payout expects, and the verdict.

Verdicts: ``valid`` (every check passed on a born-digital text layer), ``invalid`` (a definite mismatch:
wrong status, amount, recipient, bank or date) and ``manual_review`` (anything uncertain).

Decision: **OCR is never ``valid``.**  Screenshots are trivial to fake and OCR misreads amounts in known
ways, so the best an OCR result can earn is ``manual_review``; it is ``invalid`` only on a definite failure
of a field OCR reads reliably (status, recipient phone/card, bank - measured exact even on degraded
images).  An OCR amount or date mismatch is ``manual_review``: a misread must not reject a genuine payment.

Reason codes are stable; callers branch on them.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from itrader.receipts.banks import bank_key

SUCCESS_STATUS = "успешно"
# Failures that make a receipt definitely unusable for this payout.
HARD = frozenset({"not_a_receipt", "status_not_success", "amount_mismatch", "wallet_mismatch", "bank_mismatch",
                  "date_too_early", "date_in_future", "total_mismatch"})
# Failures OCR may cause itself; on an OCR source they only send the receipt to review.
# The small grey date is the first thing OCR loses or misreads on degraded pictures (measured), so a date
# failure on OCR sends the receipt to a human instead of rejecting it.
OCR_SOFT = frozenset({"amount_mismatch", "total_mismatch", "not_a_receipt", "date_too_early", "date_in_future"})
FUTURE_TOLERANCE = timedelta(minutes=10)


def parse_when(value: str) -> datetime:
    """ISO 8601; a value without an offset is taken as UTC (payout timestamps are UTC)."""
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _digits(value: str | None) -> str:
    return "".join(ch for ch in (value or "") if ch.isdigit())


def wallet_check(fields: dict[str, Any], wallet: str) -> tuple[bool | None, str | None]:
    """Phone: last 10 digits equal. Card: the visible digits of the printed mask equal the wallet's.

    ``wallet`` may be a phone, a full card number or a mask (``553691******1234``, ``*1234``).
    """
    wallet = wallet.strip()
    wdigits = _digits(wallet)
    is_card = "*" in wallet or len(wdigits) >= 13
    if not is_card:
        if len(wdigits) < 10:
            return None, "wallet_unreadable"
        phone = fields.get("recipient_phone")
        if phone is None:
            # A card receipt for a phone payout is a wrong recipient; a by-phone one with no phone is unread.
            return (False, "wallet_mismatch") if fields.get("recipient_card") else (None, "wallet_unreadable")
        return (phone[-10:] == wdigits[-10:]), (None if phone[-10:] == wdigits[-10:] else "wallet_mismatch")
    card = fields.get("recipient_card")
    if not card:
        return (False, "wallet_mismatch") if fields.get("recipient_phone") else (None, "wallet_unreadable")
    head, _, tail = card.partition("*")
    tail = tail.lstrip("*")
    head, tail = _digits(head), _digits(tail)
    if len(tail) < 4:
        return None, "wallet_unreadable"
    w_head, _, w_tail = wallet.partition("*")
    w_tail = _digits(w_tail.lstrip("*")) if "*" in wallet else wdigits
    w_head = _digits(w_head) if "*" in wallet else wdigits
    ok = w_tail.endswith(tail[-4:]) and (not head or not w_head or w_head.startswith(head[:6]) or head.startswith(w_head[:6]))
    return ok, None if ok else "wallet_mismatch"


def bank_check(fields: dict[str, Any], expected_bank: str) -> tuple[bool | None, str | None]:
    want = bank_key(expected_bank) or expected_bank.strip().lower()
    kind = fields.get("transfer_type")
    if kind == "to_card":
        return None, None  # a plain card transfer names no bank: the card mask is the check
    if kind == "to_tbank_client":
        return (want == "tbank"), (None if want == "tbank" else "bank_mismatch")
    if kind == "by_phone":
        if not fields.get("recipient_bank"):
            return None, "bank_missing"  # happens on real receipts; a human must confirm the bank
        got = fields.get("recipient_bank_key")
        if got is None:
            return None, "bank_unknown"
        return (got == want), (None if got == want else "bank_mismatch")
    return None, "transfer_type_unknown"


def evaluate(fields: dict[str, Any], *, source: str, expected: dict[str, Any] | None,
             ambiguous: dict[str, list[Decimal]], document: dict[str, Any], labels_found: int,
             now: datetime | None = None) -> tuple[dict[str, Any] | None, str, list[str]]:
    """(checks, verdict, reasons) for one parsed receipt."""
    reasons: list[str] = []
    ocr = source == "ocr"
    if labels_found < 3 or (fields.get("amount") is None and "amount" not in ambiguous and fields.get("total") is None):
        reasons.append("not_a_receipt")
    status = fields.get("status")
    status_ok: bool | None = None
    if status is None:
        reasons.append("status_unreadable")
    else:
        status_ok = status.strip().lower().replace("ё", "е") == SUCCESS_STATUS
        if not status_ok:
            reasons.append("status_not_success")
    amount, total, fee = fields.get("amount"), fields.get("total"), fields.get("fee")
    if amount is None:
        reasons.append("amount_ambiguous" if "amount" in ambiguous else "amount_unreadable")
    elif ambiguous:
        reasons.append("amount_inferred")  # one of Сумма/Итого was chosen by the sum rule, not read
    if amount is not None and total is not None and fee is not None:
        if total != amount + fee:
            reasons.append("total_mismatch")
    elif amount is not None:
        reasons.append("total_unreadable")
    if not fields.get("receipt_number"):
        reasons.append("receipt_number_missing")
    if document.get("edited"):
        reasons.append("pdf_edited")
    if ocr:
        reasons.append("ocr_source")
    checks: dict[str, Any] | None = None
    if expected:
        checks = {"status_ok": status_ok, "amount_match": None, "total_ok": None, "wallet_match": None,
                  "bank_match": None, "date_ok": None}
        if "total_mismatch" not in reasons and "total_unreadable" not in reasons and amount is not None:
            checks["total_ok"] = True
        elif "total_mismatch" in reasons:
            checks["total_ok"] = False
        if expected.get("amount") is not None:
            want = Decimal(str(expected["amount"]))
            if amount is not None:
                checks["amount_match"] = amount == want
                if amount != want:
                    reasons.append("amount_mismatch")
            elif want not in ambiguous.get("amount", []) and ambiguous.get("amount"):
                checks["amount_match"] = False
                reasons.append("amount_mismatch")
        else:
            reasons.append("amount_not_expected")
        if expected.get("wallet"):
            checks["wallet_match"], why = wallet_check(fields, str(expected["wallet"]))
            if why:
                reasons.append(why)
        else:
            reasons.append("wallet_not_expected")
        if expected.get("bank"):
            checks["bank_match"], why = bank_check(fields, str(expected["bank"]))
            if why:
                reasons.append(why)
        elif fields.get("transfer_type") == "by_phone":
            reasons.append("bank_not_expected")
        when = parse_when(fields["date"]) if fields.get("date") else None
        if when is None:
            reasons.append("date_unreadable")
        else:
            now = now or datetime.now(UTC)
            ok = True
            if expected.get("not_before") and when < parse_when(str(expected["not_before"])):
                ok = False
                reasons.append("date_too_early")
            if when > now + FUTURE_TOLERANCE:
                ok = False
                reasons.append("date_in_future")
            checks["date_ok"] = ok
            if not expected.get("not_before"):
                reasons.append("not_before_not_expected")
    else:
        reasons.append("no_expectation")
    hard = [r for r in reasons if r in HARD and not (ocr and r in OCR_SOFT)]
    if hard:
        verdict = "invalid"
    elif reasons:
        verdict = "manual_review"
    else:
        verdict = "valid"
    return checks, verdict, reasons
