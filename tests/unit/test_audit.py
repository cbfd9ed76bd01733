"""The auditor finds every violation kind from ground truth alone."""

from __future__ import annotations

from sandbox.audit import audit
from sandbox.world import World


def world_with(*events):
    w = World(seed=1)
    for kind, data in events:
        w.record(kind, **data)
    return w


PAY = ("bank_payment", dict(payment_id="p1", amount="15000.00", wallet="79001234567", status="Успешно",
                            order_ref="O1", sha256="aaa"))
APPROVE = ("gate_approve", dict(payout_id=1, wallet="79001234567", amount_rub="15000", attachment_sha256="aaa"))
RELEASE = ("bybit_release", dict(order_id="O1", amount="15000", quantity="190.5"))


def kinds(w):
    return sorted(v["kind"] for v in audit(w)["violations"])


def test_clean_flow_has_no_violation_and_counts_usdt():
    w = world_with(PAY, APPROVE, RELEASE)
    assert kinds(w) == []
    assert audit(w)["released_usdt"] == "190.5"


def test_release_without_any_payment():
    assert kinds(world_with(RELEASE)) == ["release_without_payment"]


def test_release_with_payment_but_no_approve_backing_it():
    assert kinds(world_with(PAY, RELEASE)) == ["release_without_payment"]


def test_approve_with_forged_or_wrong_receipt():
    forged = ("gate_approve", dict(APPROVE[1], attachment_sha256="zzz"))
    assert kinds(world_with(PAY, forged)) == ["approve_without_genuine_receipt"]
    wrong_wallet = ("gate_approve", dict(APPROVE[1], wallet="79990000000"))
    assert kinds(world_with(PAY, wrong_wallet)) == ["approve_without_genuine_receipt"]
    other_bank = ("bank_payment", dict(PAY[1], bank_key="vtb"))
    assert kinds(world_with(other_bank, ("gate_approve", dict(APPROVE[1], bank_key="sberbank")))) == \
        ["approve_without_genuine_receipt"]
    card = "2200123456789012"
    card_pay = ("bank_payment", dict(PAY[1], wallet=card, bank_key="vtb"))
    assert kinds(world_with(card_pay, ("gate_approve", dict(APPROVE[1], wallet=card, bank_key="sberbank")))) == []
    pending = ("bank_payment", dict(PAY[1], status="В обработке"))
    assert kinds(world_with(pending, APPROVE)) == ["approve_without_genuine_receipt"]


def test_release_before_approve_and_doubles():
    assert kinds(world_with(PAY, RELEASE, APPROVE)) == ["release_before_approve"]
    two = world_with(PAY, APPROVE, APPROVE, RELEASE, RELEASE)
    assert kinds(two) == ["double_approve", "double_release", "receipt_used_twice"]
