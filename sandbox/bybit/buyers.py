"""Simulated Bybit P2P buyers: they take our merchants' SELL ads, chat, pay through the sandbox bank, or cheat.

Why: the orchestrator's hardest decisions (is this receipt real? may we release?) only get exercised when the
counterparty behaves like real buyers do, honest or not.  Each buyer follows one *profile*; the profile of
every order and everything each buyer did is ground truth (``world.record("buyer_action", ...)`` and
``GET /sandbox/bybit/buyers``) that tests and the demo audit compare the orchestrator's decisions against.

Determinism: profiles are drawn from ``Random("buyers:<seed>")`` and each buyer has its own
``Random("buyer:<seed>:<n>")``, so the same seed and the same merchant behaviour give the same buyers.  All
think times are simulated seconds passed through ``world.dur`` (``--speed 60`` makes them 60x shorter).

Off by default (other tests must not get surprise orders).  Turn on with
``POST /sandbox/bybit/buyers {"enabled": true, "mix": {"cooperative": 6, "refuser": 1}}`` or with
``world.options["buyers"]`` (the same dict, or a string ``"cooperative:6,refuser:1"``; ``enabled`` defaults to
true there).  ``enabled: false`` stops new arrivals only; buyers already in a deal play it out.  ``GET /sandbox/bybit/buyers`` lists every buyer: profile, ad, order, phase and its actions.

Chat contract (what the merchant, i.e. our orchestrator, must write for a buyer to understand it)
-----------------------------------------------------------------------------------------------------
Only the seller's own user text messages count (system messages and the echo of the ad remark are ignored).

1. The question: the first seller message containing a question mark.  The buyer answers by profile:
   yes (``да`` / ``Да, из Т-Банка`` / ``yes``), no (``нет`` / ``no, sorry``) or unclear (``а что за банк?`` /
   ``which bank do you mean?``).  After an unclear answer the buyer waits for a *new* seller message with a
   question mark and then says yes.
2. The requisites: every seller text message after the buyer's yes is scanned, and the buyer acts once all
   four are known (a later message overrides an earlier value):
   - wallet: an 11-digit phone ``7XXXXXXXXXX`` (also ``+7 (XXX) XXX-XX-XX``, ``8XXXXXXXXXX``) or a card
     number of 16-19 digits (spaces or dashes between groups allowed);
   - recipient bank: a label such as ``Сбербанк``, ``Т-Банк``, ``Тинькофф``, ``Альфа-Банк``, ``ВТБ``,
     ``Озон Банк``, ``Яндекс Банк`` (see ``BANK_ALIASES``; mapped to the Gate bank keys ``tbank``,
     ``sberbank``, ``alfabank``, ``ozonbank``, ``yandexbank``, ``vtb``, ``raiffeisen``, ``gazprombank``,
     ``psb``, ``mts``).  When a message names several banks, the one nearest to the wallet wins;
   - amount: digits with optional space / thin-space / NBSP thousands groups and optional ``,kk`` / ``.kk``,
     followed by ``₽``, ``RUB`` or ``руб``;
   - receipt e-mail: any address except the bank's own (tbank.ru / tinkoff.ru).
3. Then the profile acts (below).  Nothing else the merchant writes changes a buyer's behaviour.

Profiles
--------
cooperative       yes; pays exactly (bank transfer from its own name), the bank mails the genuine receipt to
                  the e-mail from the chat, then marks the order paid.
chat_receipt      as cooperative, and also posts the genuine PDF in the order chat.
unclear_then_yes  unclear first, yes after the question is repeated, then as cooperative.
refuser           says no.
silent            never answers; the order lapses at the payment deadline (status 40).
canceller         yes, then cancels the order once the requisites arrive, without paying.
appealer          as cooperative, then appeals the order a while after marking it paid.
fraud_edited_pdf  pays 10-50 % less; posts a forged PDF showing the full amount in the chat and mails it from
                  noreply@tbank.ru with a broken DKIM signature; marks paid.
fraud_reuse       pays nothing; re-sends the genuine receipt of an earlier payment by mail (bad DKIM) and in
                  the chat; marks paid.
fraud_wrong_wallet pays the right amount to another phone at the right bank; genuine receipt mailed; marks paid.
fraud_wrong_bank  pays the right wallet at another bank; genuine receipt mailed; marks paid.
fraud_pending     the transfer stays "В обработке"; the bank mails that receipt; marks paid.
fraud_lookalike   pays nothing; mails a forged PDF from noreply@tbank-ru.com with a *valid* DKIM signature of
                  that look-alike domain; marks paid.
fraud_screenshot  pays nothing; posts a screenshot of someone else's genuine receipt in the chat; marks paid.
mark_paid_only    marks paid without paying anything.

Fraudsters who need a genuine receipt to abuse take the most recent successful payment of another order from
the bank's ledger; when there is none yet they make a small genuine transfer to their own phone first (a real
fraud pattern: a cheap genuine template).  Nothing is ever faked outside the bank: when ``world.bank`` is
missing, buyers that must pay wait for it.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

# -- profiles ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Profile:
    name: str
    answer: str  # "yes" | "no" | "unclear_then_yes" | "silent"
    act: str  # what happens once the requisites are known (a BuyersSim._act_<act> method)


PROFILES: dict[str, Profile] = {p.name: p for p in (
    Profile("cooperative", "yes", "pay"),
    Profile("chat_receipt", "yes", "pay_and_post"),
    Profile("unclear_then_yes", "unclear_then_yes", "pay"),
    Profile("refuser", "no", "none"),
    Profile("silent", "silent", "none"),
    Profile("canceller", "yes", "cancel"),
    Profile("appealer", "yes", "pay_then_appeal"),
    Profile("fraud_edited_pdf", "yes", "edited_pdf"),
    Profile("fraud_reuse", "yes", "reuse"),
    Profile("fraud_wrong_wallet", "yes", "wrong_wallet"),
    Profile("fraud_wrong_bank", "yes", "wrong_bank"),
    Profile("fraud_pending", "yes", "pending"),
    Profile("fraud_lookalike", "yes", "lookalike"),
    Profile("fraud_screenshot", "yes", "screenshot"),
    Profile("mark_paid_only", "yes", "mark_paid_only"),
)}

ANSWERS = {
    "yes": {"ru": ("да", "Да, из Т-Банка"), "en": ("yes",)},
    "no": {"ru": ("нет",), "en": ("no, sorry",)},
    "unclear": {"ru": ("а что за банк?",), "en": ("which bank do you mean?",)},
}

# Simulated-second think times (min, max); world.dur turns them into real seconds.
THINK = {"open": (5, 40), "answer": (5, 30), "pay": (30, 120), "cancel": (20, 60), "appeal": (60, 240)}

FIRST = ("Иван", "Пётр", "Алексей", "Дмитрий", "Сергей", "Андрей", "Мария", "Ольга", "Анна", "Елена", "Наталья",
         "Ксения", "Павел", "Михаил", "Юлия", "Артём")
LAST = ("Смирнов", "Иванов", "Кузнецов", "Попов", "Васильев", "Петров", "Соколов", "Михайлов", "Новиков",
        "Фёдоров", "Морозов", "Волков", "Алексеев", "Лебедев")
NICKS = ("buyer", "usdt_fan", "crypto", "trader", "hodl", "p2p_user", "moneyman", "fastpay")

# -- requisites parsing -----------------------------------------------------------------------------------

BANK_ALIASES: dict[str, tuple[str, ...]] = {
    "tbank": ("т-банк", "т банк", "тбанк", "тинькофф", "тинькоф", "tinkoff", "t-bank", "tbank"),
    "sberbank": ("сбербанк", "сбер", "sberbank", "sber"),
    "alfabank": ("альфа-банк", "альфабанк", "альфа банк", "альфа", "alfa-bank", "alfabank", "alfa"),
    "ozonbank": ("озон банк", "озон", "ozon"),
    "yandexbank": ("яндекс банк", "яндекс", "yandex"),
    "vtb": ("втб", "vtb"),
    "raiffeisen": ("райффайзен", "райфайзен", "райф", "raiffeisen", "raif"),
    "gazprombank": ("газпромбанк", "газпром", "gazprombank", "gazprom"),
    "psb": ("псб", "промсвязьбанк", "psb"),
    "mts": ("мтс", "mts"),
}
_BANK_RE = re.compile(
    r"(?<![0-9a-zа-яё])(" + "|".join(sorted((re.escape(a) for v in BANK_ALIASES.values() for a in v),
                                             key=len, reverse=True)) + r")",
    re.IGNORECASE)
_ALIAS_TO_KEY = {a: key for key, aliases in BANK_ALIASES.items() for a in aliases}
_CARD_RE = re.compile(r"(?<![\d+])\d{4}(?:[ \-]?\d{4}){3}(?:[ \-]?\d{1,3})?(?![\d])")
_PHONE_RE = re.compile(r"(?<![\d])(?:\+7|7|8)[ \-]*\(?\d{3}\)?[ \-]*\d{3}[ \-]*\d{2}[ \-]*\d{2}(?!\d)")
_SPACES = " \u00a0\u202f\u2009"
_AMOUNT_RE = re.compile(
    r"(?<![\d.,])(\d{1,3}(?:[" + _SPACES + r"]\d{3})+|\d+)(?:[.,](\d{1,2}))?[" + _SPACES + r"]*(?:₽|rub\b|руб)",
    re.IGNORECASE)
_EMAIL_RE = re.compile(r"[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,}")
BANK_MAIL_DOMAINS = ("tbank.ru", "tinkoff.ru")


def parse_requisites(text: str) -> dict[str, Any]:
    """The requisites found in one merchant message: any of wallet, bank_key, amount (Decimal), email."""
    found: dict[str, Any] = {}
    wallet_span: tuple[int, int] | None = None
    rest = text
    card = _CARD_RE.search(text)
    if card:
        digits = re.sub(r"\D", "", card.group(0))
        if 16 <= len(digits) <= 19:
            found["wallet"], wallet_span = digits, card.span()
            rest = text[:card.start()] + " " * (card.end() - card.start()) + text[card.end():]
    if "wallet" not in found:
        phone = _PHONE_RE.search(rest)
        if phone:
            digits = re.sub(r"\D", "", phone.group(0))
            if len(digits) == 11:
                found["wallet"], wallet_span = "7" + digits[1:], phone.span()
                rest = text[:phone.start()] + " " * (phone.end() - phone.start()) + text[phone.end():]
    # Bank names inside e-mail addresses (noreply@tbank.ru) are not the recipient's bank.
    no_mail = _EMAIL_RE.sub(lambda m: " " * len(m.group(0)), text)
    banks = [(m.start(), _ALIAS_TO_KEY[m.group(1).lower()]) for m in _BANK_RE.finditer(no_mail)]
    if banks:
        anchor = wallet_span[0] if wallet_span else 0
        found["bank_key"] = min(banks, key=lambda b: (abs(b[0] - anchor), b[0]))[1]
    amount = _AMOUNT_RE.search(rest)
    if amount:
        whole = re.sub(r"\D", "", amount.group(1))
        found["amount"] = Decimal(f"{whole}.{(amount.group(2) or '0').ljust(2, '0')}")
    for email in _EMAIL_RE.findall(text):
        if not email.lower().endswith(BANK_MAIL_DOMAINS):
            found["email"] = email
            break
    return found


# -- buyers -----------------------------------------------------------------------------------------------

@dataclass
class Buyer:
    n: int
    uid: str
    nick: str
    real_name: str
    profile: Profile
    lang: str
    item_id: str
    rng: random.Random
    phone: str  # the buyer's own phone (fraudsters' cheap genuine transfers go here)
    order_id: str | None = None
    phase: str = "arriving"  # arriving, question, requisites, acting, appeal, done
    due: float = 0.0
    seen: int = 0  # messages already read
    pending_reply: tuple[str, str] | None = None  # (text, kind) said when ``due`` comes
    unclear_sent: bool = False
    yes_at: int | None = None  # message index of our "yes"
    requisites: dict[str, Any] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        return {"buyer_uid": self.uid, "nick": self.nick, "real_name": self.real_name,
                "profile": self.profile.name, "lang": self.lang, "item_id": self.item_id,
                "order_id": self.order_id, "phase": self.phase,
                "requisites": {k: str(v) for k, v in self.requisites.items()}, "actions": list(self.actions)}


def parse_mix(value: Any) -> dict[str, int]:
    """``{"cooperative": 6, "refuser": 1}`` or ``"cooperative:6,refuser:1"`` -> validated weights."""
    if isinstance(value, str):
        mix: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in value.split(","))):
            name, _, weight = part.partition(":")
            mix[name.strip()] = weight.strip() or "1"
        value = mix
    if not isinstance(value, dict) or not value:
        raise ValueError("mix must be a non-empty object of profile -> weight")
    out: dict[str, int] = {}
    for name, weight in value.items():
        if name not in PROFILES:
            raise ValueError(f"unknown profile {name!r}; known: {', '.join(PROFILES)}")
        w = int(weight)
        if w < 0:
            raise ValueError("weights must be >= 0")
        if w:
            out[name] = w
    if not out:
        raise ValueError("at least one profile needs a positive weight")
    return out


class BuyersSim:
    """``world.bybit_buyers``: assigns one buyer per new online sell ad and lets every buyer act on ticks."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.rng = random.Random(f"buyers:{world.seed}")
        self.enabled = False
        self.mix: dict[str, int] = {"cooperative": 1}
        self.buyers: list[Buyer] = []
        self.by_item: dict[str, Buyer] = {}
        self.by_order: dict[str, Buyer] = {}
        option = world.options.get("buyers")
        if option:
            if isinstance(option, dict):
                self.configure(option.get("mix", self.mix), option.get("enabled", True))
            else:
                self.configure(option, True)

    def configure(self, mix: Any = None, enabled: bool | None = None) -> None:
        with self.world.lock:
            if mix is not None:
                self.mix = parse_mix(mix)
            if enabled is not None:
                self.enabled = bool(enabled)

    def profile_of(self, order_id: str) -> str | None:
        with self.world.lock:
            buyer = self.by_order.get(order_id)
            return buyer.profile.name if buyer else None

    def view(self) -> dict[str, Any]:
        with self.world.lock:
            return {"enabled": self.enabled, "mix": dict(self.mix), "buyers": [b.view() for b in self.buyers],
                    "by_order": {oid: b.profile.name for oid, b in self.by_order.items()}}

    # -- helpers --------------------------------------------------------------------------------------------
    def _record(self, buyer: Buyer, action: str, **details: Any) -> None:
        entry = {"action": action, "ts": round(self.world.now(), 3), **details}
        buyer.actions.append(entry)
        self.world.record("buyer_action", buyer=buyer.uid, profile=buyer.profile.name, order_id=buyer.order_id,
                          item_id=buyer.item_id, action=action, **details)

    def _think(self, buyer: Buyer, kind: str, now: float) -> float:
        low, high = THINK[kind]
        return now + self.world.dur(buyer.rng.uniform(low, high))

    def _say(self, buyer: Buyer, text: str) -> None:
        self.world.bybit.post_message(buyer.order_id, buyer.uid, text)
        self._record(buyer, "said", text=text)

    def _draw_profile(self) -> Profile:
        names = sorted(self.mix)
        return PROFILES[self.rng.choices(names, weights=[self.mix[n] for n in names])[0]]

    # -- the tick ------------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        venue = getattr(self.world, "bybit", None)
        if venue is None:
            return
        if self.enabled:  # "enabled" governs new arrivals; buyers already in a deal always play it out
            for ad in venue.online_sell_ads():
                if ad.id not in self.by_item:
                    self._arrive(ad, now)
        for buyer in self.buyers:
            if buyer.phase == "done" or now < buyer.due:
                continue
            try:
                self._step(buyer, now)
            except Exception as exc:  # a venue refusal ends this buyer, never the sandbox's tick loop
                self._record(buyer, "error", error=f"{type(exc).__name__}: {exc}", phase=buyer.phase)
                buyer.phase = "done"

    def _arrive(self, ad: Any, now: float) -> None:
        n = len(self.buyers)
        rng = random.Random(f"buyer:{self.world.seed}:{n}")
        profile = self._draw_profile()
        real_name = f"{rng.choice(LAST)} {rng.choice(FIRST)}"
        nick = f"{rng.choice(NICKS)}{rng.randrange(100, 99999)}"
        uid = self.world.bybit.create_buyer(nick, real_name)
        buyer = Buyer(n=n, uid=uid, nick=nick, real_name=real_name, profile=profile,
                      lang="ru" if rng.random() < 0.8 else "en", item_id=ad.id, rng=rng,
                      phone=f"79{rng.randrange(10**8, 10**9)}")
        buyer.due = self._think(buyer, "open", now)
        self.buyers.append(buyer)
        self.by_item[ad.id] = buyer
        self._record(buyer, "arrived", nick=nick, real_name=real_name)

    def _step(self, buyer: Buyer, now: float) -> None:
        venue = self.world.bybit
        if buyer.phase == "arriving":
            ad = venue.ad(buyer.item_id)
            amount = min(ad.max_amount, (ad.last_quantity * ad.price).quantize(Decimal("0.01"), ROUND_DOWN))
            try:
                order = venue.open_order(buyer.uid, buyer.item_id, amount)
            except Exception as exc:
                self._record(buyer, "open_refused", error=str(exc))
                buyer.phase = "done"
                return
            buyer.order_id = order.id
            self.by_order[order.id] = buyer
            self._record(buyer, "opened_order", amount=str(order.amount), quantity=str(order.quantity),
                         price=str(order.price))
            buyer.seen = len(venue.messages(order.id))
            buyer.phase = "silent" if buyer.profile.answer == "silent" else "question"
            return
        order = venue.order(buyer.order_id)
        if order.status in (40, 50) and buyer.phase != "done":
            self._record(buyer, "order_closed", status=order.status, phase=buyer.phase)
            buyer.phase = "done"
            return
        if buyer.phase == "silent":
            return
        if buyer.phase == "question":
            self._question(buyer, order, now)
        elif buyer.phase == "requisites":
            self._requisites(buyer, order, now)
        elif buyer.phase == "acting":
            self._act(buyer, order, now)
        elif buyer.phase == "appeal":
            if order.status == 20:
                venue.appeal(order.id, buyer.uid)
                self._record(buyer, "appealed")
            else:
                self._record(buyer, "appeal_skipped", status=order.status)
            buyer.phase = "done"

    def _merchant_texts(self, buyer: Buyer, order: Any, start: int) -> list[tuple[int, str]]:
        venue = self.world.bybit
        remark = venue.ad(order.item_id).remark
        out = []
        for i, msg in enumerate(venue.messages(order.id)):
            if i < start or msg.get("userId") != order.seller_uid or msg.get("msgType") == 0:
                continue
            if msg.get("roleType") == "sys" or msg.get("contentType") != "str" or msg.get("message") == remark:
                continue
            out.append((i, msg.get("message") or ""))
        return out

    def _question(self, buyer: Buyer, order: Any, now: float) -> None:
        if buyer.pending_reply is not None:
            text, kind = buyer.pending_reply
            buyer.pending_reply = None
            self._say(buyer, text)
            if kind == "yes":
                buyer.yes_at = len(self.world.bybit.messages(order.id)) - 1
                buyer.phase = "requisites"
            elif kind == "no":
                buyer.phase = "done"
            else:
                buyer.unclear_sent = True
                buyer.seen = len(self.world.bybit.messages(order.id))
            return
        texts = self._merchant_texts(buyer, order, buyer.seen)
        buyer.seen = len(self.world.bybit.messages(order.id))
        if not any("?" in text for _, text in texts):
            return
        kind = buyer.profile.answer
        if kind == "unclear_then_yes":  # unclear the first time, yes once the question is repeated
            kind = "yes" if buyer.unclear_sent else "unclear"
        text = buyer.rng.choice(ANSWERS[kind][buyer.lang])
        buyer.pending_reply = (text, kind)
        buyer.due = self._think(buyer, "answer", now)

    def _requisites(self, buyer: Buyer, order: Any, now: float) -> None:
        start = (buyer.yes_at or 0) + 1
        for _, text in self._merchant_texts(buyer, order, max(start, buyer.seen)):
            found = parse_requisites(text)
            if "wallet" in found:
                buyer.requisites["wallet"] = found["wallet"]
                if "bank_key" in found:
                    buyer.requisites["bank_key"] = found["bank_key"]
            elif "bank_key" in found and "bank_key" not in buyer.requisites:
                buyer.requisites["bank_key"] = found["bank_key"]
            for key in ("amount", "email"):
                if key in found:
                    buyer.requisites[key] = found[key]
        buyer.seen = len(self.world.bybit.messages(order.id))
        if all(k in buyer.requisites for k in ("wallet", "bank_key", "amount", "email")):
            self._record(buyer, "got_requisites", **{k: str(v) for k, v in buyer.requisites.items()})
            buyer.phase = "acting"
            buyer.due = self._think(buyer, "cancel" if buyer.profile.act == "cancel" else "pay", now)

    # -- acting ----------------------------------------------------------------------------------------------
    def _act(self, buyer: Buyer, order: Any, now: float) -> None:
        if order.status != 10:
            self._record(buyer, "too_late", status=order.status)
            buyer.phase = "done"
            return
        act = buyer.profile.act
        if act == "none":
            buyer.phase = "done"
            return
        if act == "cancel":
            self.world.bybit.cancel_order(order.id, buyer.uid, "changed my mind")
            self._record(buyer, "cancelled_order")
            buyer.phase = "done"
            return
        if act == "mark_paid_only":
            self._mark_paid(buyer, order)
            return
        bank = getattr(self.world, "bank", None)
        if bank is None:  # never fake a payment: wait for the bank venue
            buyer.due = now + self.world.dur(10)
            return
        getattr(self, f"_act_{act}")(buyer, order, bank)

    def _mark_paid(self, buyer: Buyer, order: Any) -> None:
        self.world.bybit.mark_paid(order.id, buyer.uid)
        self._record(buyer, "marked_paid")
        buyer.phase = "done"

    def _transfer(self, buyer: Buyer, order: Any, bank: Any, *, amount: Decimal, wallet: str, bank_key: str,
                  status: str = "Успешно", own: bool = False) -> Any:
        payment = bank.transfer(payer_name=buyer.real_name, amount=amount, wallet=wallet, bank_key=bank_key,
                                order_ref=None if own else order.id, status=status)
        self._record(buyer, "paid", payment_id=payment.id, amount=str(payment.amount), wallet=payment.wallet,
                     bank_key=bank_key, status=status, receipt_number=payment.receipt_number, sha256=payment.sha256,
                     own_template=own)
        return payment

    def _mail_genuine(self, buyer: Buyer, bank: Any, payment: Any) -> None:
        result = bank.mail_receipt(payment, to_addr=buyer.requisites["email"])
        self._record(buyer, "bank_mailed_receipt", payment_id=payment.id, to=buyer.requisites["email"],
                     delivered=bool(result.get("delivered")))

    def _post_file(self, buyer: Buyer, order: Any, data: bytes, filename: str, content_type: str, **details: Any) -> None:
        self.world.bybit.post_message(order.id, buyer.uid, file_bytes=data, filename=filename,
                                      content_type=content_type)
        self._record(buyer, "posted_file", filename=filename, content_type=content_type, **details)

    def _send_mail(self, buyer: Buyer, bank: Any, *, from_addr: str, pdf: bytes, dkim: str, **details: Any) -> None:
        to_addr = buyer.requisites["email"]
        result = bank.send_mail(from_addr=from_addr, to_addr=to_addr, pdf=pdf,
                                filename=f"receipt_{buyer.rng.randrange(10**6, 10**7)}.pdf", dkim=dkim)
        self._record(buyer, "sent_mail", from_addr=from_addr, to=to_addr, dkim=dkim,
                     delivered=bool(result.get("delivered")), **details)

    def _exact(self, buyer: Buyer, order: Any, bank: Any, *, status: str = "Успешно", wallet: str | None = None,
               bank_key: str | None = None) -> Any:
        req = buyer.requisites
        return self._transfer(buyer, order, bank, amount=req["amount"], wallet=wallet or req["wallet"],
                              bank_key=bank_key or req["bank_key"], status=status)

    def _act_pay(self, buyer: Buyer, order: Any, bank: Any) -> None:
        payment = self._exact(buyer, order, bank)
        self._mail_genuine(buyer, bank, payment)
        self._mark_paid(buyer, order)

    def _act_pay_and_post(self, buyer: Buyer, order: Any, bank: Any) -> None:
        payment = self._exact(buyer, order, bank)
        self._mail_genuine(buyer, bank, payment)
        self._post_file(buyer, order, payment.pdf, f"receipt_{payment.receipt_number}.pdf", "pdf",
                        payment_id=payment.id, genuine=True)
        self._mark_paid(buyer, order)

    def _act_pay_then_appeal(self, buyer: Buyer, order: Any, bank: Any) -> None:
        self._act_pay(buyer, order, bank)
        buyer.phase = "appeal"
        buyer.due = self._think(buyer, "appeal", self.world.now())

    def _act_edited_pdf(self, buyer: Buyer, order: Any, bank: Any) -> None:
        full = buyer.requisites["amount"]
        cut = Decimal(str(round(buyer.rng.uniform(0.10, 0.50), 2)))
        paid = max(Decimal("1.00"), (full * (1 - cut)).quantize(Decimal("0.01"), ROUND_DOWN))
        payment = self._transfer(buyer, order, bank, amount=paid, wallet=buyer.requisites["wallet"],
                                 bank_key=buyer.requisites["bank_key"])
        forged = bank.forged_pdf(payment, amount=full)
        self._post_file(buyer, order, forged, f"receipt_{payment.receipt_number}.pdf", "pdf",
                        payment_id=payment.id, genuine=False, shows_amount=str(full))
        self._send_mail(buyer, bank, from_addr="noreply@tbank.ru", pdf=forged, dkim="bad",
                        payment_id=payment.id, genuine=False, shows_amount=str(full))
        self._mark_paid(buyer, order)

    def _template(self, buyer: Buyer, order: Any, bank: Any) -> Any:
        """A genuine successful payment of another order to abuse, or a cheap genuine one of our own."""
        for payment in reversed(bank.payments()):
            if payment.status == "Успешно" and payment.order_ref and payment.order_ref != order.id:
                self._record(buyer, "took_receipt", payment_id=payment.id, of_order=payment.order_ref)
                return payment
        return self._transfer(buyer, order, bank, amount=Decimal(buyer.rng.choice((100, 150, 200, 500))),
                              wallet=buyer.phone, bank_key="tbank", own=True)

    def _act_reuse(self, buyer: Buyer, order: Any, bank: Any) -> None:
        old = self._template(buyer, order, bank)
        self._send_mail(buyer, bank, from_addr="noreply@tbank.ru", pdf=old.pdf, dkim="bad", payment_id=old.id,
                        genuine=True, reused=True)
        self._post_file(buyer, order, old.pdf, f"receipt_{old.receipt_number}.pdf", "pdf", payment_id=old.id,
                        genuine=True, reused=True)
        self._mark_paid(buyer, order)

    def _act_wrong_wallet(self, buyer: Buyer, order: Any, bank: Any) -> None:
        right = buyer.requisites["wallet"]
        other = right
        while other == right:
            other = f"79{buyer.rng.randrange(10**8, 10**9)}"
        payment = self._exact(buyer, order, bank, wallet=other)
        self._mail_genuine(buyer, bank, payment)
        self._mark_paid(buyer, order)

    def _act_wrong_bank(self, buyer: Buyer, order: Any, bank: Any) -> None:
        others = sorted(k for k in BANK_ALIASES if k != buyer.requisites["bank_key"])
        payment = self._exact(buyer, order, bank, bank_key=buyer.rng.choice(others))
        self._mail_genuine(buyer, bank, payment)
        self._mark_paid(buyer, order)

    def _act_pending(self, buyer: Buyer, order: Any, bank: Any) -> None:
        payment = self._exact(buyer, order, bank, status="В обработке")
        self._mail_genuine(buyer, bank, payment)
        self._mark_paid(buyer, order)

    def _act_lookalike(self, buyer: Buyer, order: Any, bank: Any) -> None:
        template = self._template(buyer, order, bank)
        req = buyer.requisites
        overrides: dict[str, Any] = {"amount": req["amount"], "wallet": req["wallet"]}
        if template.transfer_type == "by_phone" and len(req["wallet"]) == 11:
            from sandbox.bank.ledger import BANK_NAMES  # the label the bank prints for this bank key

            overrides["recipient_bank"] = BANK_NAMES.get(req["bank_key"])
        forged = bank.forged_pdf(template, **overrides)
        self._send_mail(buyer, bank, from_addr="noreply@tbank-ru.com", pdf=forged, dkim="good",
                        payment_id=template.id, genuine=False, shows_amount=str(req["amount"]))
        self._mark_paid(buyer, order)

    def _act_screenshot(self, buyer: Buyer, order: Any, bank: Any) -> None:
        template = self._template(buyer, order, bank)
        data, mime = bank.receipt_image(template)
        ext = "jpg" if "jpeg" in mime else "png"
        self._post_file(buyer, order, data, f"screenshot_{buyer.rng.randrange(1000, 9999)}.{ext}", "pic",
                        payment_id=template.id, genuine=False)
        self._mark_paid(buyer, order)


def install(app: FastAPI, world: Any) -> None:
    sim = BuyersSim(world)
    world.bybit_buyers = sim
    world.on_tick(sim.tick)

    @app.get("/sandbox/bybit/buyers")
    def list_buyers() -> dict[str, Any]:
        """Ground truth: every buyer, its profile, its order and what it did."""
        return sim.view()

    @app.post("/sandbox/bybit/buyers")
    async def configure_buyers(request: Request) -> JSONResponse:
        """``{"mix": {"cooperative": 6, "refuser": 1}, "enabled": true}``; either key may be omitted."""
        try:
            body = await request.json()
            if not isinstance(body, dict):
                raise ValueError("body must be an object")
            sim.configure(body.get("mix"), body.get("enabled"))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(sim.view())
