"""The two money gates, as pure functions over recorded facts.

*Approve gate* — may we close the Gate payout with this receipt?  *Release gate* — may we release the USDT?
Both return every failed check as a stable reason code (logged as an event, shown in ``itrader review``),
never just a boolean.  The LLM is not an input to either.  Keeping them pure makes the safety rules testable
exhaustively, independent of venues and database.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal

Route = Literal["proceed", "wait", "manual_review", "reject"]


@dataclass(frozen=True)
class ReceiptFacts:
    """What we know about the receipt that is to justify the approve."""

    verdict: str  # ocr_receipt verdict: valid | invalid | manual_review
    reasons: tuple[str, ...]
    source: str  # "mail" | "chat"
    extraction: str  # "pdf_text" | "ocr"
    dkim: str  # "pass" | "fail" | "none"
    sender_allowlisted: bool
    already_used: bool  # by another order (receipt number / operation id / sha256)
    amount: Decimal | None
    checks: dict[str, bool] = field(default_factory=dict)


@dataclass(frozen=True)
class Policy:
    per_order_cap_rub: Decimal
    daily_cap_rub: Decimal
    release_delay: timedelta
    trust_chat_receipts: bool = False  # chat attachments/OCR go to manual review unless an operator opts in


@dataclass(frozen=True)
class Decision:
    route: Route
    reasons: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return self.route == "proceed"


REQUIRED_CHECKS = ("status_ok", "amount_match", "wallet_match", "bank_match", "date_ok")


def approve_gate(receipt: ReceiptFacts, *, order_amount: Decimal, released_today: Decimal, policy: Policy,
                 operator_confirmed: bool = False) -> Decision:
    """Every condition for closing a payout on Gate with this receipt.

    ``operator_confirmed`` lets a human vouch for the receipt's *channel* (a chat PDF, an OCR read) after
    review; it never overrides a receipt that is invalid, reused, or for the wrong amount/recipient.
    """
    hard: list[str] = []
    soft: list[str] = []
    if receipt.verdict == "invalid":
        hard.append("receipt_invalid")
    if receipt.already_used:
        hard.append("receipt_reused")
    failed = [name for name in REQUIRED_CHECKS if receipt.checks.get(name) is False]
    hard += [f"check_failed:{name}" for name in failed]
    missing = [name for name in REQUIRED_CHECKS if name not in receipt.checks]
    if receipt.amount is not None and receipt.amount != order_amount:
        hard.append("amount_mismatch")
    if hard:
        return Decision("reject", (*hard, *receipt.reasons))

    if receipt.verdict != "valid":
        soft.append("receipt_not_valid")
    soft += [f"check_missing:{name}" for name in missing]
    if receipt.source != "mail":
        soft.append("not_from_bank_mail")
    if receipt.source == "mail" and not receipt.sender_allowlisted:
        soft.append("sender_not_allowlisted")
    if receipt.source == "mail" and receipt.dkim != "pass":
        soft.append(f"dkim_{receipt.dkim}")
    if receipt.extraction != "pdf_text":
        soft.append("ocr_only")
    if order_amount > policy.per_order_cap_rub:
        soft.append("over_per_order_cap")
    if released_today + order_amount > policy.daily_cap_rub:
        soft.append("over_daily_cap")
    channel_only = {"not_from_bank_mail", "ocr_only", "sender_not_allowlisted", "dkim_none", "dkim_fail"}
    if soft and operator_confirmed and set(soft) <= channel_only | {"receipt_not_valid"} and \
            receipt.verdict == "manual_review":
        soft = []
    return Decision("manual_review", tuple(soft)) if soft else Decision("proceed", ())


def release_gate(*, gate_approved: bool, approved_at: datetime | None, now: datetime, bybit_status: int | None,
                 order_amount: Decimal, released_today: Decimal, policy: Policy, approved_receipt_ok: bool) -> Decision:
    """Every condition for ``order/finish``: approve confirmed first, the delay passed, the order still at 20."""
    if not gate_approved or approved_at is None:
        return Decision("reject", ("gate_not_approved",))
    if not approved_receipt_ok:
        return Decision("reject", ("approve_without_verified_receipt",))
    if now < approved_at + policy.release_delay:
        return Decision("wait", ("release_delay",))
    if order_amount > policy.per_order_cap_rub:
        return Decision("manual_review", ("over_per_order_cap",))
    if released_today + order_amount > policy.daily_cap_rub:
        return Decision("manual_review", ("over_daily_cap",))
    if bybit_status == 50:
        return Decision("reject", ("already_released",))
    if bybit_status != 20:
        return Decision("manual_review", (f"bybit_status_{bybit_status}",))
    return Decision("proceed", ())
