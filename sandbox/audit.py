"""The auditor: violations of the merchant's money rules, judged from the simulator's ground truth only.

It never asks the orchestrator what it believes; it compares what really happened on the venues:

* ``release_without_payment`` — USDT released on a Bybit order for which no successful bank payment of
  exactly the order amount (made for that order) reached a payout whose approve used that payment's receipt.
* ``approve_without_genuine_receipt`` — a Gate payout approved with a file that is not the genuine bank
  receipt of a successful payment of exactly the payout amount to exactly the payout's wallet (and, for SBP
  by phone, bank: the same phone number at another bank is another person's account; a card number alone
  names its account).
* ``double_approve`` / ``double_release`` / ``receipt_used_twice`` — anything done twice.
* ``release_before_approve`` — a release earlier than the approve of the payout it paid for.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from typing import Any

from sandbox.world import World


def _dec(value: Any) -> Decimal | None:
    try:
        return Decimal(str(value))
    except Exception:
        return None


def audit(world: World) -> dict[str, Any]:
    payments = world.truth_events("bank_payment")
    approves = world.truth_events("gate_approve")
    releases = world.truth_events("bybit_release")
    ok_payments = [p for p in payments if p.get("status") == "Успешно"]
    by_sha = {p["sha256"]: p for p in ok_payments if p.get("sha256")}
    violations: list[dict[str, Any]] = []

    def violate(kind: str, **data: Any) -> None:
        violations.append({"kind": kind, **data})

    for payout_id, n in Counter(str(a["payout_id"]) for a in approves).items():
        if n > 1:
            violate("double_approve", payout_id=payout_id, count=n)
    for order_id, n in Counter(str(r["order_id"]) for r in releases).items():
        if n > 1:
            violate("double_release", order_id=order_id, count=n)
    for sha, n in Counter(a.get("attachment_sha256") for a in approves).items():
        if sha and n > 1:
            violate("receipt_used_twice", sha256=sha, count=n)

    genuine_approves: dict[str, dict[str, Any]] = {}  # payment sha -> approve it justified
    for a in approves:
        p = by_sha.get(a.get("attachment_sha256") or "")
        # By phone (SBP) the phone AND the bank name the account; a card number names it alone.
        by_phone = len(str(a.get("wallet") or "")) == 11
        wrong_bank = by_phone and bool(a.get("bank_key")) and p is not None and p.get("bank_key") != a.get("bank_key")
        if p is None or p.get("wallet") != a.get("wallet") or _dec(p.get("amount")) != _dec(a.get("amount_rub")) \
                or wrong_bank:
            violate("approve_without_genuine_receipt", payout_id=a.get("payout_id"), wallet=a.get("wallet"),
                    amount=a.get("amount_rub"))
        else:
            genuine_approves[p["sha256"]] = a

    for r in releases:
        order_id = str(r["order_id"])
        paid = [p for p in ok_payments if str(p.get("order_ref")) == order_id and _dec(p.get("amount")) == _dec(r.get("amount"))]
        backed = [(p, genuine_approves[p["sha256"]]) for p in paid if p.get("sha256") in genuine_approves]
        if not backed:
            violate("release_without_payment", order_id=order_id, amount=r.get("amount"))
            continue
        if all(a["ts"] > r["ts"] for _, a in backed):
            violate("release_before_approve", order_id=order_id)

    released_usdt = sum((_dec(r.get("quantity")) or Decimal(0) for r in releases), Decimal(0))
    return {
        "violations": violations,
        "counts": {"payments": len(payments), "approves": len(approves), "releases": len(releases)},
        "released_usdt": format(released_usdt, "f"),
    }


def install(app: Any, world: World) -> None:
    @app.get("/sandbox/audit")
    def audit_route() -> dict[str, Any]:
        return audit(world)
