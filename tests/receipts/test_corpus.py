"""The receipt corpus (>= 200 generated receipts): field accuracy, verdicts, and no fraud ever `valid`.

PDF text layer: every field right and every genuine receipt valid (or manual_review for the documented
missing-bank-line case).  Images (OCR, in a pool of 2 processes): never valid; clean ones read amount,
status, date and recipient right or land in manual review.  The accuracy table is printed and written to
var/test-logs/receipts_accuracy.md.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from decimal import Decimal
from typing import Any

import pytest

from itrader.receipts.ops import analyse
from tests.receipts import corpus
from tests.support import LOG_DIR

ALL_FIELDS = (
    "amount", "total", "fee", "status", "transfer_type", "date", "sender_name", "recipient_name", "recipient_phone",
    "recipient_card", "recipient_bank", "receipt_number", "operation_id", "sbp_id", "source_account")


def _run(item: corpus.Item) -> dict[str, Any]:
    return analyse(item.data, expected=item.expected)


@pytest.fixture(scope="module")
def results():
    items = corpus.build()
    assert len(items) >= 200
    ocr_items = [i for i in items if i.source_kind != "pdf"]
    with ProcessPoolExecutor(max_workers=2) as pool:
        ocr_out = list(pool.map(_run, ocr_items))
    pdf_out = [_run(i) for i in items if i.source_kind == "pdf"]
    out = iter(pdf_out)
    ocr_iter = iter(ocr_out)
    pairs = [(i, next(ocr_iter) if i.source_kind != "pdf" else next(out)) for i in items]
    write_table(pairs)
    return pairs


def field_hits(item: corpus.Item, res: dict[str, Any], names=ALL_FIELDS) -> tuple[int, int]:
    hits = sum(1 for n in names if res["fields"][n] == item.truth[n])
    return hits, len(names)


def write_table(pairs) -> None:
    rows: dict[tuple[str, str], dict[str, Any]] = defaultdict(lambda: {"n": 0, "hit": 0, "tot": 0, "key": 0,
                                                                        "key_tot": 0, "verdicts": Counter()})
    for item, res in pairs:
        row = rows[(res["source"], item.variant)]
        row["n"] += 1
        h, t = field_hits(item, res)
        row["hit"] += h
        row["tot"] += t
        h, t = field_hits(item, res, corpus.KEY_FIELDS)
        row["key"] += h
        row["key_tot"] += t
        row["verdicts"][res["verdict"]] += 1
    lines = ["| source | variant | n | all fields right | amount/status/date/recipient right | verdicts |",
             "|---|---|---|---|---|---|"]
    for (source, variant), row in sorted(rows.items()):
        verdicts = ", ".join(f"{k} {v}" for k, v in sorted(row["verdicts"].items()))
        lines.append(f"| {source} | {variant} | {row['n']} | {100 * row['hit'] / row['tot']:.1f} % | "
                     f"{100 * row['key'] / row['key_tot']:.1f} % | {verdicts} |")
    text = "\n".join(lines)
    print("\n" + text)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / "receipts_accuracy.md").write_text(text + "\n")


def test_pdf_text_layer_reads_every_field_of_every_genuine_receipt(results):
    genuine = [(i, r) for i, r in results if i.variant == "genuine"]
    assert len(genuine) >= 150
    for item, res in genuine:
        assert res["source"] == "pdf_text"
        wrong = {n: (res["fields"][n], item.truth[n]) for n in ALL_FIELDS if res["fields"][n] != item.truth[n]}
        assert not wrong, wrong
        if item.truth["transfer_type"] == "by_phone" and item.truth["recipient_bank"] is None:
            assert (res["verdict"], res["reasons"]) == ("manual_review", ["bank_missing"])
        else:
            assert (res["verdict"], res["reasons"]) == ("valid", []), res["reasons"]
    # The corpus really exercises what broke earlier parsers.
    assert {i.truth["transfer_type"] for i, _ in genuine} == {"by_phone", "to_tbank_client", "to_card"}
    assert any(not i.truth["amount"].endswith(".00") for i, _ in genuine)
    assert any(Decimal(i.truth["amount"]) >= 1_000_000 for i, _ in genuine)  # two thin spaces
    assert any(i.truth["transfer_type"] == "by_phone" and i.truth["recipient_bank"] is None for i, _ in genuine)


def test_no_fraud_variant_is_ever_valid(results):
    frauds = [(i, r) for i, r in results if i.fraud]
    assert len({i.variant for i, _ in frauds}) >= 10
    for item, res in frauds:
        assert res["verdict"] != "valid", (item.variant, res["reasons"])
    by_variant = defaultdict(set)
    for item, res in frauds:
        by_variant[item.variant].update(res["reasons"])
    # Each fraud is caught for the right reason, not by accident.
    assert "pdf_edited" in by_variant["forged_amount"] and "pdf_edited" in by_variant["forged_status"]
    assert "status_not_success" in by_variant["status_pending"] | by_variant["img_status_pending"]
    assert "wallet_mismatch" in by_variant["wrong_wallet"] and "wallet_mismatch" in by_variant["img_someone_else"]
    assert "amount_mismatch" in by_variant["wrong_amount"]
    assert "date_too_early" in by_variant["reused_old"] and "date_too_early" in by_variant["too_early"]
    assert "bank_mismatch" in by_variant["wrong_bank"]
    invalid = {i.variant for i, r in frauds if r["verdict"] == "invalid"}
    assert {"status_pending", "wrong_wallet", "wrong_amount", "reused_old", "wrong_bank", "too_early"} <= invalid


def test_ocr_is_never_valid_and_clean_images_are_read_or_reviewed(results):
    ocr = [(i, r) for i, r in results if i.source_kind != "pdf"]
    assert len(ocr) >= 40
    for _item, res in ocr:
        assert res["source"] == "ocr" and res["verdict"] != "valid" and "ocr_source" in res["reasons"]
    for item, res in ocr:
        if item.fraud:
            continue  # genuine pictures, degraded ones included: never rejected on a misread
        for name in ("amount", "status", "date", "recipient_phone", "recipient_card"):
            if res["fields"][name] != item.truth[name]:
                # A misread may only ever send the receipt to a human, never reject or accept it.
                assert res["verdict"] == "manual_review", (item.variant, name, res["fields"][name], res["reasons"])
        assert res["verdict"] == "manual_review", (item.variant, res["reasons"], res["fields"])


def test_clean_images_read_the_key_fields(results):
    clean = [(i, r) for i, r in results if i.variant in ("img_clean", "img_phone_jpeg70", "img_jpeg85")]
    hits = sum(field_hits(i, r, corpus.KEY_FIELDS)[0] for i, r in clean)
    total = sum(field_hits(i, r, corpus.KEY_FIELDS)[1] for i, r in clean)
    # Measured 100 % on this corpus; a drop below 95 % means the OCR pipeline regressed.
    assert hits / total >= 0.95, f"{hits}/{total}"


def test_omp_thread_limit_is_set_for_tesseract():
    import itrader.receipts.extract  # noqa: F401 - sets the default on import

    assert os.environ.get("OMP_THREAD_LIMIT") == "1"
