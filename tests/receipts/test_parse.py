"""Parser, amount reading, bank aliases and wallet checks on text (no files, no OCR: fast)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from itrader.receipts.banks import bank_key
from itrader.receipts.check import evaluate, wallet_check
from itrader.receipts.parse import parse_amount, parse_text

PDFPLUMBER = """21.03.2025 14:07:31
Итого 67 200 ₽
Перевод По номеру телефона
Статус Успешно
Сумма 67 200 ₽
Комиссия Без комиссии
Отправитель Иванов Иван Иванович
Телефон получателя +7 (912) 345-67-89
Получатель Ольга С.
Банк получателя ПСБ
Счёт списания 408178105555****1234
Идентификатор операции A5080114512345670000020011700501
СБП 12345
Квитанция № 1-12-345-678-901"""

# pypdf on some generators: ₽ comes out as "i", values before their labels, the sender glued to its label.
PYPDF_REVERSED = """21.03.2025 14:07:31
67 200 iИтого
По номеру телефонаПеревод
УспешноСтатус
67 200 iСумма
Без комиссииКомиссия
Иванов Иван ИвановичОтправитель
+7 (912) 345-67-89Телефон получателя
Квитанция № 1-12-345-678-901"""

# Labels and values on separate lines.
SEPARATE_LINES = """21.03.2025 14:07:31
Итого
2,50 ₽
Перевод
Клиенту Т-Банка
Статус
Успешно
Сумма
2,50 ₽
Комиссия
Без комиссии
Карта получателя
*4321
Квитанция № 1-123-345-678-901"""


def test_pdfplumber_layout_gives_every_field():
    f = parse_text(PDFPLUMBER).fields
    assert f["amount"] == f["total"] == Decimal("67200.00") and f["fee"] == Decimal("0.00")
    assert (f["status"], f["transfer_type"], f["date"]) == ("Успешно", "by_phone", "2025-03-21T14:07:31+03:00")
    assert (f["recipient_phone"], f["recipient_bank"], f["recipient_bank_key"]) == ("79123456789", "ПСБ", "psb")
    assert f["source_account"] == "408178105555****1234"  # "Счёт" spelling
    assert (f["receipt_number"], f["sbp_id"]) == ("1-12-345-678-901", "12345")
    assert f["operation_id"] == "A5080114512345670000020011700501"
    assert f["sender_name"] == "Иванов Иван Иванович" and f["recipient_name"] == "Ольга С."


def test_reversed_label_order_and_i_for_rouble():
    f = parse_text(PYPDF_REVERSED).fields
    assert f["amount"] == f["total"] == Decimal("67200.00")
    assert (f["status"], f["transfer_type"], f["sender_name"]) == ("Успешно", "by_phone", "Иванов Иван Иванович")
    assert f["recipient_phone"] == "79123456789"


def test_labels_and_values_on_separate_lines_with_kopecks():
    f = parse_text(SEPARATE_LINES).fields
    assert f["amount"] == Decimal("2.50") and f["total"] == Decimal("2.50")
    assert (f["transfer_type"], f["recipient_card"], f["status"]) == ("to_tbank_client", "*4321", "Успешно")
    assert f["receipt_number"] == "1-123-345-678-901"


def test_separators_thin_space_nbsp_and_narrow_nbsp():
    text = PDFPLUMBER.replace("Сумма 67 200 ₽", "Сумма 1\u2009067\u202f200,05\u00a0₽")
    assert parse_text(text).fields["amount"] == Decimal("1067200.05")


@pytest.mark.parametrize("value,ocr,readings", [
    ("15 000 ₽", False, ["15000.00"]),
    ("2,50 ₽", False, ["2.50"]),
    ("67 200 i", False, ["67200.00"]),
    ("Без комиссии", False, ["0.00"]),
    ("15 000 P", True, ["15000.00"]),
    ("15 0002", True, ["15000.00"]),
    ("150002", True, ["150002.00", "15000.00"]),  # glued ₽ or a real 2: never guessed
    ("2135 336 2", True, ["2135336.00"]),  # dropped thin space, separate mangled ₽
    ("264,50 2?", True, ["264.50"]),
    ("225,012", True, ["225.01"]),
    ("15 000 P", False, []),  # a text layer never mangles ₽: anything odd is unreadable
    ("1O 000 ₽", False, []),
])
def test_amount_readings(value, ocr, readings):
    assert [format(d, "f") for d in parse_amount(value, ocr=ocr)] == readings


def test_ocr_normalisation_of_number_sign_and_id_lookalikes():
    text = PDFPLUMBER.replace("№", "Ne").replace("A5080", "А5080")  # Cyrillic А
    f = parse_text(text, ocr=True).fields
    assert f["receipt_number"] == "1-12-345-678-901" and f["operation_id"].startswith("A5080")


def test_ocr_ambiguous_amount_is_resolved_only_by_the_sum_rule():
    text = PDFPLUMBER.replace("Сумма 67 200 ₽", "Сумма 672002")
    parsed = parse_text(text, ocr=True)
    assert parsed.fields["amount"] == Decimal("67200.00") and "amount" in parsed.ambiguous
    no_total = parse_text(text.replace("Итого 67 200 ₽", "Итого ???"), ocr=True)
    assert no_total.fields["amount"] is None


def test_garbled_ocr_date_is_dropped_not_crashing():
    assert parse_text(PDFPLUMBER.replace("21.03.2025", "21.19.2025"), ocr=True).fields["date"] is None


@pytest.mark.parametrize("name,key", [("ПСБ", "psb"), ("МТС-Банк", "mts"), ("Т-Банк", "tbank"), ("Тинькофф", "tbank"),
                                      ("Сбербанк", "sberbank"), ("ПАО Сбербанк", "sberbank"), ("Альфа-Банк", "alfabank"),
                                      ("Озон Банк", "ozonbank"), ("Яндекс Банк", "yandexbank"), ("ВТБ", "vtb"),
                                      ("sberbank", "sberbank"), ("Неизвестный банк", None), ("", None)])
def test_bank_alias_table(name, key):
    assert bank_key(name) == key


@pytest.mark.parametrize("fields,wallet,ok", [
    ({"recipient_phone": "79123456789"}, "79123456789", True),
    ({"recipient_phone": "79123456789"}, "+7 912 345-67-89", True),
    ({"recipient_phone": "79123456789"}, "89123456789", True),
    ({"recipient_phone": "79123456780"}, "79123456789", False),
    ({"recipient_card": "*4321"}, "5536911234564321", True),
    ({"recipient_card": "*4321"}, "5536911234560000", False),
    ({"recipient_card": "220220******7890"}, "2202201234567890", True),
    ({"recipient_card": "220220******7890"}, "4276381234567890", False),  # same last 4, other BIN
    ({"recipient_card": "220220******7890"}, "220220******7890", True),
    ({"recipient_card": "*7890"}, "79123456789", False),  # card receipt for a phone payout
    ({"recipient_phone": "79123456789"}, "2202201234567890", False),
])
def test_wallet_matching(fields, wallet, ok):
    assert wallet_check({"recipient_phone": None, "recipient_card": None, **fields}, wallet)[0] is ok


def _eval(text, expected, ocr=False, document=None):
    parsed = parse_text(text, ocr=ocr)
    return evaluate(parsed.fields, source="ocr" if ocr else "pdf_text", expected=expected,
                    ambiguous=parsed.ambiguous, document=document or {}, labels_found=parsed.labels_found)


EXPECTED = {"amount": "67200", "wallet": "79123456789", "bank": "psb", "not_before": "2025-03-21T11:00:00Z"}


def test_verdicts():
    assert _eval(PDFPLUMBER, EXPECTED)[1:] == ("valid", [])
    checks, verdict, reasons = _eval(PDFPLUMBER, {**EXPECTED, "amount": "67200.01"})
    assert (checks["amount_match"], verdict, reasons) == (False, "invalid", ["amount_mismatch"])
    assert _eval(PDFPLUMBER, {**EXPECTED, "bank": "vtb"})[1:] == ("invalid", ["bank_mismatch"])
    assert _eval(PDFPLUMBER, {**EXPECTED, "not_before": "2025-03-21T11:08:00Z"})[1:] == ("invalid", ["date_too_early"])
    assert _eval(PDFPLUMBER.replace("Успешно", "В обработке"), EXPECTED)[1:] == ("invalid", ["status_not_success"])
    assert _eval(PDFPLUMBER.replace("Банк получателя ПСБ\n", ""), EXPECTED)[1:] == ("manual_review", ["bank_missing"])
    assert _eval(PDFPLUMBER.replace("Итого 67 200", "Итого 68 200"), EXPECTED)[1:] == ("invalid", ["total_mismatch"])
    assert _eval(PDFPLUMBER, EXPECTED, document={"edited": True})[1:] == ("manual_review", ["pdf_edited"])
    assert _eval(PDFPLUMBER, EXPECTED, ocr=True)[1:] == ("manual_review", ["ocr_source"])
    assert _eval(PDFPLUMBER, None)[1:] == ("manual_review", ["no_expectation"])
    # OCR misreading an amount must not reject a possibly genuine payment.
    assert _eval(PDFPLUMBER, {**EXPECTED, "amount": "67201"}, ocr=True)[1] == "manual_review"
    assert _eval("hello world\nnothing here", EXPECTED)[1] == "invalid"
