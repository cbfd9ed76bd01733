"""The receipt corpus: generated at test time by the sandbox bank (no binary fixtures in the repo).

Every item is (variant, file bytes, what the payout expects, ground truth fields, is_fraud).  Used by the
corpus test (accuracy table) and by the bench.
"""

from __future__ import annotations

import io
import itertools
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

from sandbox.bank.ledger import Bank, Payment
from sandbox.bank.render import MSK
from sandbox.world import World

PAYERS = ("Иванов Иван Иванович", "Смирнова Ольга Петровна", "Кузнецов Пётр Алексеевич", "Попова Анна Сергеевна")
BANKS = ("sberbank", "alfabank", "vtb", "ozonbank", "yandexbank", "psb", "mts", "raiffeisen", "gazprombank", "tbank")
FIXED_EPOCH = 1_790_000_000.0  # 2026-09-21, a past date: receipts are never "in the future"
KEY_FIELDS = ("amount", "status", "date", "recipient_phone", "recipient_card")


@dataclass
class Item:
    variant: str
    source_kind: str  # "pdf" | "image" | "scan"
    data: bytes
    expected: dict[str, Any]
    truth: dict[str, Any]
    fraud: bool


def truth_of(p: Payment, **overrides: Any) -> dict[str, Any]:
    t = {
        "amount": format(p.amount, "f"), "total": format(p.total, "f"), "fee": format(p.fee, "f"),
        "status": p.status, "transfer_type": p.transfer_type,
        "date": p.created_at.astimezone(MSK).strftime("%Y-%m-%dT%H:%M:%S+03:00"),
        "sender_name": p.payer_name, "recipient_name": p.recipient_name,
        "recipient_phone": p.wallet if p.transfer_type == "by_phone" else None,
        "recipient_card": p.card_mask, "recipient_bank": p.recipient_bank, "receipt_number": p.receipt_number,
        "operation_id": p.operation_id, "sbp_id": p.sbp_id, "source_account": p.source_account,
    }
    t.update(overrides)
    return t


def expected_of(p: Payment, **overrides: Any) -> dict[str, Any]:
    e = {"amount": format(p.amount, "f"), "wallet": p.wallet,
         "not_before": (p.created_at - timedelta(minutes=5)).isoformat()}
    if p.bank_key:
        e["bank"] = p.bank_key
    e.update(overrides)
    return e


def _amount(rng, i: int) -> Decimal:
    kind = i % 5
    if kind == 0:
        return Decimal(rng.randrange(1, 200)) * 500  # round thousands
    if kind == 1:
        return Decimal(rng.randrange(100, 99999)) + Decimal(rng.randrange(1, 100)) / 100  # kopecks
    if kind == 2:
        return Decimal(rng.randrange(1000, 3_000_000))  # big: two thin spaces
    if kind == 3:
        return Decimal(rng.randrange(1, 999)) + Decimal("0.50")  # below a thousand
    return Decimal(rng.randrange(5000, 60000))


def _wallet(rng, kind: int) -> tuple[str, str | None]:
    if kind == 0:
        return "79" + "".join(str(rng.randrange(10)) for _ in range(9)), rng.choice(BANKS)
    if kind == 1:
        return rng.choice(("553691", "437772", "220070")) + "".join(str(rng.randrange(10)) for _ in range(10)), "tbank"
    return rng.choice(("427638", "220220", "546938")) + "".join(str(rng.randrange(10)) for _ in range(10)), \
        rng.choice(("sberbank", "alfabank", "vtb", None))


def scan_pdf(image: bytes) -> bytes:
    """An image-only PDF (no text layer), like a scanned or printed-to-image receipt."""
    from PIL import Image

    out = io.BytesIO()
    with Image.open(io.BytesIO(image)) as img:
        img.convert("RGB").save(out, format="PDF", resolution=150)
    return out.getvalue()


def build(seed: int = 11, n_pdf: int = 180, n_images: int = 36) -> list[Item]:
    world = World(seed=seed)
    # A fixed clock: receipt dates are part of what OCR reads, so the same seed must give the same pictures.
    ticks = itertools.count()
    world.now = lambda: FIXED_EPOCH + next(ticks) * 97.0  # type: ignore[method-assign]
    bank = Bank(world)
    rng = world.rng
    items: list[Item] = []
    payments: list[Payment] = []
    for i in range(n_pdf):
        wallet, bank_key = _wallet(rng, i % 3)
        p = bank.transfer(payer_name=PAYERS[i % len(PAYERS)], amount=_amount(rng, i), wallet=wallet,
                          bank_key=bank_key, order_ref=f"c{i}")
        payments.append(p)
        items.append(Item("genuine", "pdf", p.pdf, expected_of(p), truth_of(p), False))
    # -- PDF fraud variants -----------------------------------------------------------------------------------
    for i, p in enumerate(payments[:60]):
        twist = i % 10
        if twist == 0:  # paid less, edited the amount to what the payout asks (editor traces left)
            asked = p.amount * 3
            pdf = bank.forged_pdf(p, amount=asked)
            items.append(Item("forged_amount", "pdf", pdf, expected_of(p, amount=format(asked, "f")),
                              truth_of(p, amount=format(asked, "f"), total=format(asked + p.fee, "f")), True))
        elif twist == 1:  # a pending payment edited to "Успешно"
            pend = bank.transfer(payer_name=p.payer_name, amount=p.amount, wallet=p.wallet, bank_key=p.bank_key,
                                 order_ref="pending", status="В обработке")
            items.append(Item("forged_status", "pdf", bank.forged_pdf(pend, status="Успешно"),
                              expected_of(pend), truth_of(pend, status="Успешно"), True))
        elif twist == 2:  # genuine pending payment
            pend = bank.transfer(payer_name=p.payer_name, amount=p.amount, wallet=p.wallet, bank_key=p.bank_key,
                                 order_ref="pending", status="В обработке")
            items.append(Item("status_pending", "pdf", pend.pdf, expected_of(pend), truth_of(pend), True))
        elif twist == 3:  # real payment, wrong recipient
            other = "79990000000" if p.transfer_type == "by_phone" else "4276380000009999"
            items.append(Item("wrong_wallet", "pdf", p.pdf, expected_of(p, wallet=other), truth_of(p), True))
        elif twist == 4:  # real payment, smaller amount
            items.append(Item("wrong_amount", "pdf", p.pdf, expected_of(p, amount=format(p.amount + 1, "f")),
                              truth_of(p), True))
        elif twist == 5:  # receipt replayed for a later order
            later = (p.created_at + timedelta(hours=2)).isoformat()
            items.append(Item("reused_old", "pdf", p.pdf, expected_of(p, not_before=later), truth_of(p), True))
        elif twist == 6:  # the right phone, the wrong bank (or a T-Bank card for a payout at another bank)
            wrong = "vtb" if (p.bank_key or "") != "vtb" else "sberbank"
            if p.transfer_type == "to_card":
                continue
            items.append(Item("wrong_bank", "pdf", p.pdf, expected_of(p, bank=wrong), truth_of(p), True))
        elif twist == 7:  # another payment's receipt with its receipt number edited
            items.append(Item("forged_number", "pdf", bank.forged_pdf(p, receipt_number="1-99-123-456-789"),
                              expected_of(p), truth_of(p, receipt_number="1-99-123-456-789"), True))
        elif twist == 8:  # edited recipient wallet
            if p.transfer_type != "by_phone":
                continue
            target = "79161234567"
            items.append(Item("forged_wallet", "pdf", bank.forged_pdf(p, wallet=target),
                              expected_of(p, wallet=target), truth_of(p, recipient_phone=target), True))
        else:  # a payment made before the payout existed
            early = (p.created_at + timedelta(minutes=30)).isoformat()
            items.append(Item("too_early", "pdf", p.pdf, expected_of(p, not_before=early), truth_of(p), True))
    # -- images -----------------------------------------------------------------------------------------------
    shots = (("img_clean", 1.0, None), ("img_phone_jpeg70", 1.5, 70), ("img_degraded", 0.6, 55),
             ("img_jpeg85", 1.0, 85))
    picks = payments[:n_images]
    for j, p in enumerate(picks):
        variant, scale, quality = shots[j % len(shots)]
        data, _ = bank.receipt_image(p, scale=scale, jpeg_quality=quality)
        items.append(Item(variant, "image", data, expected_of(p), truth_of(p), False))
    for p in picks[:3]:  # someone else's screenshot: another payer's payment
        data, _ = bank.receipt_image(p)
        other = "79995554433" if p.transfer_type == "by_phone" else "4276381111112222"
        items.append(Item("img_someone_else", "image", data, expected_of(p, wallet=other), truth_of(p), True))
    for p in picks[-2:]:
        pend = bank.transfer(payer_name=p.payer_name, amount=p.amount, wallet=p.wallet, bank_key=p.bank_key,
                             order_ref="pending-img", status="В обработке")
        data, _ = bank.receipt_image(pend)
        items.append(Item("img_status_pending", "image", data, expected_of(pend), truth_of(pend), True))
    for p in picks[:2]:
        img, _ = bank.receipt_image(p)
        items.append(Item("scan_pdf", "scan", scan_pdf(img), expected_of(p), truth_of(p), False))
    return items
