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
    signs = OCR_CURRENCY if ocr else PDF_CURRENCY
    text = re.sub(r"\s*(руб\.?|rub)$", "", text, flags=re.IGNORECASE)
    # Digit groups "15 000" (+ ",50") then an optional separate or glued currency sign.
    grouped = re.fullmatch(r"(\d{1,3}(?: \d{3})+)(?:[,.](\d{2}))? ?([" + re.escape(signs) + r"])?", text)
    if grouped:
        return [_money(grouped.group(1), grouped.group(2))]
    plain = re.fullmatch(r"(\d+)(?:[,.](\d{2}))?(?: ?([" + re.escape(signs) + r"]))?", text)
    if not plain:
        return []
    digits, kop, sign = plain.groups()
    if ocr and sign is None and kop is None and len(digits) > 1 and digits[-1] in "28":
        # A digit glued to the number may be a mangled ₽: "150002" is 150002 or 15000 ₽. Never guess.
        return [_money(digits, None), _money(digits[:-1], None)]
    return [_money(digits, kop)]


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
    token = value.split()[0]
    return token.translate(LOOKALIKES).upper() if ocr else token


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
    date = DATE_RE.search("\n".join(lines))
    if date:
        d, m, y, hh, mm, ss = date.groups()
        fields["date"] = f"{y}-{m}-{d}T{hh}:{mm}:{ss or '00'}+03:00"
    number = NUMBER_RE.search("\n".join(lines))
    if number:
        fields["receipt_number"] = re.sub(r"[ ]", "", number.group(1))
    fields["status"] = raw.get("status")
    kind = _key(raw.get("transfer_type") or "")
    fields["transfer_type"] = next((code for word, code in TYPE_CODES if word in kind), None) if kind else None
    fields["sender_name"] = raw.get("sender_name")
    fields["recipient_name"] = raw.get("recipient_name")
    fields["recipient_phone"] = _phone(raw.get("recipient_phone"))
    card = raw.get("recipient_card")
    fields["recipient_card"] = re.sub(r"\s", "", card) if card else None
    fields["recipient_bank"] = raw.get("recipient_bank")
    fields["recipient_bank_key"] = bank_key(raw.get("recipient_bank"))
    fields["operation_id"] = _id(raw.get("operation_id") or raw.get("operation_number"), ocr=ocr)
    sbp = re.sub(r"\D", "", raw.get("sbp_id") or "")
    fields["sbp_id"] = sbp or None
    account = raw.get("source_account")
    fields["source_account"] = re.sub(r"\s", "", account) if account else None
    return Parsed(fields=fields, labels_found=found, ambiguous=ambiguous, raw=raw)


def looks_like_receipt(text: str) -> bool:
    """The text-layer sanity test of the pipeline: long enough and carrying Итого or Сумма."""
    low = _key(text)
    return len(text.strip()) >= 20 and ("итого" in low or "сумма" in low)
