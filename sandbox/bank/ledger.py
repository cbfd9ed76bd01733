"""The simulated bank: a ledger of transfers with the genuine receipt of each, and the bank's mail.

Simulated buyers (``world.bank``) call this Python API; the ledger is the ground truth the tests audit
against (``world.record("bank_payment", ...)``): who really paid what to which wallet.  Fraudsters use the
same API to get a genuine receipt and then tamper with it (``forged_pdf``), screenshot it
(``receipt_image``) or mail it themselves (``send_mail``).
"""

from __future__ import annotations

import hashlib
import random
import string
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sandbox.bank import mail, render

# bank_key -> the short name T-Bank prints in "Банк получателя".
BANK_NAMES = {
    "tbank": "Т-Банк",
    "sberbank": "Сбербанк",
    "alfabank": "Альфа-Банк",
    "ozonbank": "Озон Банк",
    "yandexbank": "Яндекс Банк",
    "vtb": "ВТБ",
    "psb": "ПСБ",
    "mts": "МТС-Банк",
    "raiffeisen": "Райффайзенбанк",
    "gazprombank": "Газпромбанк",
    "rshb": "Россельхозбанк",
    "sovcombank": "Совкомбанк",
    "otpbank": "ОТП Банк",
    "pochtabank": "Почта Банк",
    "rosbank": "Росбанк",
}
# A few T-Bank card BINs: a card wallet starting with one of these is paid as "Клиенту Т-Банка".
TBANK_BINS = ("553691", "521324", "437772", "437773", "220070", "518901", "548387")
FIRST_NAMES = ("Иван", "Алексей", "Мария", "Ольга", "Дмитрий", "Сергей", "Анна", "Елена", "Павел", "Наталья",
               "Андрей", "Татьяна", "Михаил", "Юлия", "Никита", "Ксения")
CARD_FEE_RATE = Decimal("0.015")
ID_ALPHABET = string.digits + "ABCDEFGHJKLMNPQRSTUVWXYZ"


@dataclass
class Payment:
    id: str
    amount: Decimal
    wallet: str
    bank_key: str | None
    transfer_type: str  # by_phone | to_tbank_client | to_card
    status: str
    created_at: datetime
    receipt_number: str
    operation_id: str | None
    sbp_id: str | None
    payer_name: str
    fee: Decimal
    recipient_name: str | None
    recipient_bank: str | None
    card_mask: str | None
    source_account: str | None
    order_ref: str | None = None
    pdf: bytes = field(default=b"", repr=False)
    sha256: str = ""

    @property
    def total(self) -> Decimal:
        return self.amount + self.fee

    def printable(self, **overrides: Any) -> dict[str, Any]:
        """The values the receipt shows; ``overrides`` replace any of them (forgeries)."""
        fields = {
            "amount": self.amount, "fee": self.fee, "total": self.total, "status": self.status,
            "transfer_type": self.transfer_type, "created_at": self.created_at, "payer_name": self.payer_name,
            "wallet": self.wallet, "recipient_name": self.recipient_name, "recipient_bank": self.recipient_bank,
            "card_mask": self.card_mask, "source_account": self.source_account, "operation_id": self.operation_id,
            "sbp_id": self.sbp_id, "receipt_number": self.receipt_number,
        }
        if "amount" in overrides and "total" not in overrides:
            # A forger edits both lines; a lone edited Сумма would be caught by the Итого cross-check.
            overrides["total"] = Decimal(overrides["amount"]) + Decimal(overrides.get("fee", self.fee))
        if "wallet" in overrides:
            wallet = str(overrides["wallet"])
            if self.transfer_type == "to_tbank_client" and "card_mask" not in overrides:
                overrides["card_mask"] = f"*{wallet[-4:]}"
            elif self.transfer_type == "to_card" and "card_mask" not in overrides:
                overrides["card_mask"] = f"{wallet[:6]}******{wallet[-4:]}"
        fields.update(overrides)
        return fields

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "amount": str(self.amount), "fee": str(self.fee), "total": str(self.total),
            "wallet": self.wallet, "bank_key": self.bank_key, "transfer_type": self.transfer_type,
            "status": self.status, "created_at": self.created_at.isoformat(), "receipt_number": self.receipt_number,
            "operation_id": self.operation_id, "sbp_id": self.sbp_id, "payer_name": self.payer_name,
            "recipient_name": self.recipient_name, "recipient_bank": self.recipient_bank,
            "card_mask": self.card_mask, "source_account": self.source_account, "order_ref": self.order_ref,
            "sha256": self.sha256,
        }


def transfer_type_for(wallet: str, bank_key: str | None) -> str:
    if len(wallet) == 11 and wallet.startswith("7"):
        return "by_phone"
    if bank_key == "tbank" or wallet.startswith(TBANK_BINS):
        return "to_tbank_client"
    return "to_card"


class Bank:
    """``world.bank``. Thread-safe through ``world.lock`` (buyers call it from tick functions)."""

    def __init__(self, world: Any) -> None:
        self.world = world
        # Its own RNG: bank draws never shift the sequence other venues see from world.rng.
        self.rng = random.Random(world.seed * 7919 + 17)
        self.keys = mail.KeyRing()
        self.mailbox: mail.Mailbox | None = None
        self._payments: dict[str, Payment] = {}
        self._seq = 0
        self._receipts: set[str] = set()

    # -- ids ----------------------------------------------------------------------------------------------
    def _receipt_number(self) -> str:
        while True:
            mid = self.rng.randrange(10, 1000)
            number = "1-{}-{:03d}-{:03d}-{:03d}".format(mid, *(self.rng.randrange(1000) for _ in range(3)))
            if number not in self._receipts:
                self._receipts.add(number)
                return number

    def _operation_id(self) -> str:
        return "A" + "".join(self.rng.choice(ID_ALPHABET) for _ in range(26))

    @staticmethod
    def _source_account(payer_name: str) -> str:
        h = int(hashlib.sha256(payer_name.encode()).hexdigest(), 16)
        return f"40817810{h % 10**4:04d}****{(h >> 20) % 10**4:04d}"

    def _recipient_name(self, wallet: str) -> str:
        h = int(hashlib.sha256(wallet.encode()).hexdigest(), 16)
        return f"{FIRST_NAMES[h % len(FIRST_NAMES)]} {'АБВГДЕКЛМНОПРСТ'[(h >> 8) % 15]}."

    # -- the API other helpers call -------------------------------------------------------------------------
    def transfer(self, *, payer_name: str, amount: Decimal, wallet: str, bank_key: str | None,
                 order_ref: str | None, status: str = "Успешно") -> Payment:
        """Move money and issue the genuine receipt; the ledger entry is ground truth."""
        amount = Decimal(str(amount)).quantize(Decimal("0.01"))
        if amount <= 0:
            raise ValueError("amount must be positive")
        wallet = "".join(ch for ch in str(wallet) if ch.isdigit())
        if len(wallet) == 10 and wallet.startswith("9"):
            wallet = "7" + wallet  # a mobile number written without the country code
        elif len(wallet) == 11 and wallet.startswith("8"):
            wallet = "7" + wallet[1:]
        if len(wallet) not in (11, 16, 18, 19):
            raise ValueError("wallet must be an 11-digit phone (7XXXXXXXXXX) or a card number")
        kind = transfer_type_for(wallet, bank_key)
        with self.world.lock:
            self._seq += 1
            pid = f"pay{self.world.seed:x}{self._seq:06d}"
            fee = (amount * CARD_FEE_RATE).quantize(Decimal("0.01")) if kind == "to_card" else Decimal("0.00")
            by_phone = kind == "by_phone"
            # Real by-phone receipts sometimes lack the recipient bank line (one to VTB had none).
            bank_line = BANK_NAMES.get(bank_key or "") if by_phone and self.rng.random() >= 0.1 else None
            if kind == "to_tbank_client":
                card_mask = f"*{wallet[-4:]}"
            elif kind == "to_card":
                card_mask = f"{wallet[:6]}******{wallet[-4:]}"
            else:
                card_mask = None
            payment = Payment(
                id=pid, amount=amount, wallet=wallet, bank_key=bank_key, transfer_type=kind, status=status,
                created_at=datetime.fromtimestamp(self.world.now(), UTC).replace(microsecond=0),
                receipt_number=self._receipt_number(),
                operation_id=self._operation_id() if by_phone else None,
                sbp_id=f"{self.rng.randrange(10000, 100000)}" if by_phone else None,
                payer_name=payer_name, fee=fee,
                recipient_name=self._recipient_name(wallet) if kind != "to_card" else None,
                recipient_bank=bank_line, card_mask=card_mask,
                source_account=self._source_account(payer_name) if by_phone else None,
                order_ref=order_ref,
            )
            payment.pdf = render.render_pdf(payment.printable())
            payment.sha256 = hashlib.sha256(payment.pdf).hexdigest()
            self._payments[pid] = payment
            self.world.record(
                "bank_payment", payment_id=pid, payer_name=payer_name, amount=str(amount), wallet=wallet,
                bank_key=bank_key, transfer_type=kind, status=status, order_ref=order_ref,
                receipt_number=payment.receipt_number, operation_id=payment.operation_id, sha256=payment.sha256,
            )
            return payment

    def payments(self) -> list[Payment]:
        with self.world.lock:
            return list(self._payments.values())

    def get(self, payment_id: str) -> Payment | None:
        with self.world.lock:
            return self._payments.get(payment_id)

    def receipt_image(self, payment: Payment, *, scale: float = 1.0, jpeg_quality: int | None = None) -> tuple[bytes, str]:
        return render.render_image(payment.printable(), scale=scale, jpeg_quality=jpeg_quality)

    def forged_pdf(self, payment: Payment, *, clean: bool = False, **overrides: Any) -> bytes:
        """The genuine layout with edited fields (amount=, status=, wallet=, receipt_number=, ...).

        By default it carries the traces an editing tool leaves (a second revision with a foreign producer);
        ``clean=True`` is the careful forger whose file is indistinguishable from a genuine one by content.
        """
        if "amount" in overrides:
            overrides["amount"] = Decimal(str(overrides["amount"])).quantize(Decimal("0.01"))
        if "wallet" in overrides:
            overrides["wallet"] = "".join(ch for ch in str(overrides["wallet"]) if ch.isdigit())
        pdf = render.render_pdf(payment.printable(**overrides))
        if clean:
            return pdf
        return render.append_edit_revision(pdf, producer="PDF Editor 4.2", mod_time=datetime.now(UTC))

    # -- mail -----------------------------------------------------------------------------------------------
    def configure_mailbox(self, mailbox: mail.Mailbox | None) -> None:
        with self.world.lock:
            self.mailbox = mailbox

    def _deliver(self, to_addr: str, raw: bytes) -> dict[str, Any]:
        mailbox = self.mailbox
        if mailbox is None or to_addr.strip().lower() != mailbox.address.lower():
            # Mail to any other address leaves the simulated world: nobody we know reads it.
            return {"delivered": False, "reason": "not_our_mailbox"}
        return mail.deliver(mailbox, raw)

    def mail_receipt(self, payment: Payment, to_addr: str) -> dict[str, Any]:
        """The bank e-mails the genuine PDF, DKIM-signed for tbank.ru, from its no-reply address."""
        raw = mail.build_message(
            from_addr=mail.BANK_SENDER, from_name="Т-Банк", to_addr=to_addr,
            subject=f"Квитанция по операции № {payment.receipt_number}",
            body="Здравствуйте! Квитанция по вашей операции во вложении.\n\nТ-Банк\n",
            pdf=payment.pdf, filename=f"receipt_{payment.receipt_number}.pdf", domain=mail.BANK_DOMAIN)
        raw = mail.sign(raw, self.keys.bank)
        result = self._deliver(to_addr, raw)
        result.update(payment_id=payment.id, from_addr=mail.BANK_SENDER, to_addr=to_addr, dkim="good",
                      message_id=_message_id(raw))
        self.world.record("bank_mail", **result)
        return result

    def send_mail(self, *, from_addr: str, to_addr: str, pdf: bytes, filename: str, dkim: str,
                  content_type: str = "application/pdf") -> dict[str, Any]:
        """Mail that is NOT from the bank. dkim: "none" unsigned, "bad" signed with a key nobody published
        (for the From domain, with the bank's selector when it is a bank domain), "altered" validly signed
        then changed in transit (only for non-bank domains' own keys), "good" validly signed with the From
        domain's own published key (look-alike domains; refused for the bank's domains)."""
        domain = from_addr.rsplit("@", 1)[-1].lower()
        if dkim not in ("none", "bad", "altered", "good"):
            raise ValueError("dkim must be none, bad, altered or good")
        if dkim in ("good", "altered") and domain in mail.BANK_DOMAINS:
            raise ValueError("nobody but the bank can sign for its domain")
        raw = mail.build_message(from_addr=from_addr, from_name=None, to_addr=to_addr,
                                 subject="Квитанция об оплате", body="Чек во вложении.\n", pdf=pdf,
                                 filename=filename, domain=domain, content_type=content_type)
        if dkim == "bad":
            selector = mail.BANK_SELECTOR if domain in mail.BANK_DOMAINS else "mail"
            raw = mail.sign(raw, mail.generate_key(domain, selector))
        elif dkim in ("good", "altered"):
            raw = mail.sign(raw, self.keys.for_domain(domain))
            if dkim == "altered":
                raw += b"forwarded and edited\r\n"  # any body change after signing breaks the body hash
        result = self._deliver(to_addr, raw)
        result.update(from_addr=from_addr, to_addr=to_addr, dkim=dkim, message_id=_message_id(raw),
                      sha256=hashlib.sha256(pdf).hexdigest())
        self.world.record("bank_mail", **result)
        return result


def _message_id(raw: bytes) -> str | None:
    import email
    from email import policy

    return email.message_from_bytes(raw, policy=policy.default).get("Message-ID")
