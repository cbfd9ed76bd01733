"""Turn the text of a T-Bank receipt (PDF text layer or OCR) into fields.

Parsing is by label, because the same receipt comes out in different shapes depending on the extractor:
``Сумма 15 000 ₽`` (pdfplumber), ``15 000 iСумма`` (pypdf, value before the label) or label and value on
separate lines.  Amounts are read as digit groups with comma kopecks and never as integers: an earlier
parser silently dropped kopecks.  OCR text gets extra normalisation (``Ne`` -> ``№``, Cyrillic look-alikes
in ids) and amounts whose ``₽`` was glued on as a digit are reported as ambiguous instead of guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from itrader.receipts.banks import bank_key

# Longest first, so "телефон получателя" wins over "получатель".  Keys are normalised (lower case, ё -> е).
LABELS: dict[str, str] = {
    "идентификатор операции": "operation_id",
    "телефон получателя": "recipient_phone",
    "карта получателя": "recipient_card",
    "банк получателя": "recipient_bank",
    "номер операции": "operation_number",
    "счет списания": "source_account",
    "отправитель": "sender_name",
    "получатель": "recipient_name",
    "комиссия": "fee",
    "перевод": "transfer_type",
    "статус": "status",
    "итого": "total",
    "сумма": "amount",
    "сбп": "sbp_id",
}
_LABEL_ORDER = sorted(LABELS, key=len, reverse=True)
SPACES = re.compile(r"[\u00a0\u2009\u202f\u2007\u2002-\u2008\t]")
DATE_RE = re.compile(r"(\d{2})\.(\d{2})\.(\d{4})[ ,]+(\d{2}):(\d{2})(?::(\d{2}))?")
NUMBER_RE = re.compile(r"Квитанция\s*(?:№|N[eoº°2]?|Ne|Мо|Nº)?\s*:?\s*([0-9][0-9 -]{8,}[0-9])", re.IGNORECASE)
LOOKALIKES = str.maketrans("АВЕКМНОРСТХаеосрх", "ABEKMHOPCTXaeocpx")
TO_CYRILLIC = str.maketrans("ABEKMHOPCTXaeocpx", "АВЕКМНОРСТХаеосрх")
OCR_ID_FIXES = str.maketrans({"}": "J", "]": "J", ")": None, "(": None, "|": None})
# What a ₽ sign becomes: "i" in some PDF text layers; 2 / P / Р / 8 / ? in OCR.
PDF_CURRENCY = "₽i"
OCR_CURRENCY = "₽iPР28?рPp"
TYPE_CODES = (("телефон", "by_phone"), ("клиенту", "to_tbank_client"), ("на карту", "to_card"), ("карт", "to_card"))

FIELD_NAMES = ("amount", "total", "fee", "status", "transfer_type", "date", "sender_name", "recipient_name",
               "recipient_phone", "recipient_card", "recipient_bank", "recipient_bank_key", "receipt_number",
               "operation_id", "sbp_id", "source_account")


@dataclass
class Parsed:
    fields: dict[str, Any]
    labels_found: int
    # Field -> every reading OCR allows when one is not certain (e.g. "150002" = 150002 or 15000 + glued ₽).
    ambiguous: dict[str, list[Decimal]] = field(default_factory=dict)
    raw: dict[str, str] = field(default_factory=dict)


def normalise(text: str, *, ocr: bool) -> str:
    text = SPACES.sub(" ", text).replace("\r", "")
    if ocr:
        text = re.sub(r"\bN[eo°º]\b", "№", text)
        text = text.replace("—", "-").replace("–", "-")
    return "\n".join(re.sub(r" {2,}", " ", line).strip() for line in text.split("\n"))


def _key(line: str) -> str:
    return line.lower().replace("ё", "е")


def _match_label(line: str) -> tuple[str | None, str]:
    """(field, value) when the line carries a known label at its start or (reversed) at its end."""
    low = _key(line)
    for label in _LABEL_ORDER:
        if low == label:
            return LABELS[label], ""
        if low.startswith(label + " ") or low.startswith(label + ":"):
            return LABELS[label], line[len(label):].lstrip(" :")
        if low.startswith(label) and not ("а" <= low[len(label)] <= "я"):
            # Value glued to the label by the extractor ("операцииA123..."), but not a longer word.
            return LABELS[label], line[len(label):]
    for label in _LABEL_ORDER:
        if low.endswith(label) and len(low) > len(label):
            before = line[: len(line) - len(label)].rstrip()
            # "... решает получатель" is prose, not a reversed pair: a reversed value is short.
            if before and len(before.split()) <= 6:
                return LABELS[label], before
    return None, ""


def parse_amount(value: str | None, *, ocr: bool) -> list[Decimal]:
    """Every plausible reading of a money value; one reading = certain, none = unreadable."""
    if not value:
        return []
    text = value.strip()
    if _key(text).startswith("без комисс"):
        return [Decimal("0.00")]
    text = re.sub(r"\s*(руб\.?|rub)$", "", text, flags=re.IGNORECASE)
    if ocr:
        return _ocr_amount(text)
    # Text layer: digit groups "15 000" (+ ",50"), then an optional ₽ (or the "i" some extractors give).
    grouped = re.fullmatch(r"(\d{1,3}(?: \d{3})*|\d+)(?:,(\d{2}))? ?([₽i])?", text)
    return [_money(grouped.group(1), grouped.group(2))] if grouped else []


def _ocr_amount(text: str) -> list[Decimal]:
    """OCR drops thin spaces ("2135 336") and mangles ₽ into 2 / P / Р / 8 / ? / @ / "2?", separate or glued.

    A short trailing token after a space is never a digit group, so it is the sign.  A glued trailing digit
    is the sign only when the grouping proves it ("15 0002"); otherwise ("150002") both readings are kept and
    the caller must treat the amount as ambiguous.
    """
    tokens = text.split(" ")
    sign = False
    if len(tokens) > 1 and re.fullmatch(r"[₽iPРрpР2?8@BВ]{1,2}", tokens[-1]):
        tokens, sign = tokens[:-1], True
    body = " ".join(tokens)
    m = re.fullmatch(r"(\d[\d ]*?)(?:[,.](\d{2})(\d?))?([^\d\s]{0,2})", body)
    if not m:
        return []
    digits, kop, _glued_after_kop, tail = m.groups()
    if tail and not re.fullmatch(r"[₽iPРрp?@BВ]{1,2}", tail):
        return []
    if kop is not None or sign or tail:
        return [_money(digits, kop)]
    groups = digits.split(" ")
    if digits[-1] not in "28":
        return [_money(digits, None)]
    if len(groups) > 1 and len(groups[-1]) == 4:
        return [_money(digits[:-1], None)]  # "15 0002": the fourth digit of a group is the glued sign
    if len(groups) > 1 and len(groups[-1]) == 3:
        return [_money(digits, None)]  # complete groups, the sign was simply lost
    return [_money(digits, None), _money(digits[:-1], None)]


def _money(whole: str, kop: str | None) -> Decimal:
    return Decimal(whole.replace(" ", "") + "." + (kop or "00"))


def _phone(value: str | None) -> str | None:
    if not value:
        return None
    digits = re.sub(r"\D", "", value)
    if len(digits) == 11 and digits[0] in "78":
        return "7" + digits[1:]
    if len(digits) == 10:
        return "7" + digits
    return None


def _id(value: str | None, *, ocr: bool) -> str | None:
    if not value:
        return None
    if not ocr:
        return value.split()[0]
    token = value.translate(OCR_ID_FIXES).split()[0]
    return token.translate(LOOKALIKES).upper()


def _name(value: str | None, *, ocr: bool) -> str | None:
    """OCR sometimes reads a Cyrillic initial as its Latin twin ("Юлия P."): map back inside Cyrillic names."""
    if not value or not ocr or not re.search(r"[а-яА-ЯёЁ]", value):
        return value
    return value.translate(TO_CYRILLIC)


def parse_text(text: str, *, ocr: bool = False) -> Parsed:
    lines = [line for line in normalise(text, ocr=ocr).split("\n") if line]
    raw: dict[str, str] = {}
    found = 0
    pending: str | None = None
    for line in lines:
        name, value = _match_label(line)
        if name is None:
            if pending and pending not in raw and not DATE_RE.search(line) and not NUMBER_RE.search(line):
                raw[pending] = line  # label on its own line: the value is the next non-label line
            pending = None
            continue
        found += 1
        if value:
            raw.setdefault(name, value)
            pending = None
        else:
            pending = name
    fields: dict[str, Any] = dict.fromkeys(FIELD_NAMES)
    ambiguous: dict[str, list[Decimal]] = {}
    for money in ("amount", "total", "fee"):
        readings = parse_amount(raw.get(money), ocr=ocr)
        if len(readings) == 1:
            fields[money] = readings[0]
        elif len(readings) > 1:
            ambiguous[money] = readings
    _resolve_by_sum(fields, ambiguous)
    for date in DATE_RE.finditer("\n".join(lines)):
        d, m, y, hh, mm, ss = date.groups()
        iso = f"{y}-{m}-{d}T{hh}:{mm}:{ss or '00'}+03:00"
        try:
            datetime.fromisoformat(iso)  # OCR can produce month 19 or hour 27: that is no date at all
        except ValueError:
            continue
        fields["date"] = iso
        break
    number = NUMBER_RE.search("\n".join(lines))
    if number:
        fields["receipt_number"] = re.sub(r"[ ]", "", number.group(1))
    fields["status"] = raw.get("status")
    kind = _key(raw.get("transfer_type") or "")
    fields["transfer_type"] = next((code for word, code in TYPE_CODES if word in kind), None) if kind else None
    fields["sender_name"] = _name(raw.get("sender_name"), ocr=ocr)
    fields["recipient_name"] = _name(raw.get("recipient_name"), ocr=ocr)
    fields["recipient_phone"] = _phone(raw.get("recipient_phone"))
    card = raw.get("recipient_card")
    if card and ocr:
        card = re.sub(r"[+×xх#]", "*", card)  # OCR reads some mask asterisks as + or x
    fields["recipient_card"] = re.sub(r"\s", "", card) if card else None
    fields["recipient_bank"] = raw.get("recipient_bank")
    fields["recipient_bank_key"] = bank_key(raw.get("recipient_bank"))
    fields["operation_id"] = _id(raw.get("operation_id") or raw.get("operation_number"), ocr=ocr)
    sbp = re.sub(r"\D", "", raw.get("sbp_id") or "")
    fields["sbp_id"] = sbp or None
    account = raw.get("source_account")
    fields["source_account"] = re.sub(r"\s", "", account) if account else None
    return Parsed(fields=fields, labels_found=found, ambiguous=ambiguous, raw=raw)


def _resolve_by_sum(fields: dict[str, Any], ambiguous: dict[str, list[Decimal]]) -> None:
    """Итого = Сумма + Комиссия: two certain readings pick the one consistent reading of the third.

    This is how the reference pipeline disambiguates OCR's glued ₽ (the bold Итого line reads cleanly).  The
    resolved field stays listed in ``ambiguous`` so the verdict knows it was inferred.
    """
    amount, total, fee = fields["amount"], fields["total"], fields["fee"]
    if amount is None and total is not None and fee is not None and "amount" in ambiguous:
        fits = [c for c in ambiguous["amount"] if c + fee == total]
        if len(fits) == 1:
            fields["amount"] = fits[0]
    elif total is None and amount is not None and fee is not None and "total" in ambiguous:
        fits = [c for c in ambiguous["total"] if c == amount + fee]
        if len(fits) == 1:
            fields["total"] = fits[0]


def looks_like_receipt(text: str) -> bool:
    """The text-layer sanity test of the pipeline: long enough and carrying Итого or Сумма."""
    low = _key(text)
    return len(text.strip()) >= 20 and ("итого" in low or "сумма" in low)
