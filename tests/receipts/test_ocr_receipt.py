"""ocr_receipt as a real executable: the contract envelope, inputs, --serve, on receipts from the sandbox bank."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta

import requests

from tests.support import ServeWorker, run_script, validate_envelope

SCRIPT = "ocr_receipt"


def _pay(sandbox, **kw):
    body = {"payer_name": "Сидоров Сидор Сидорович", "amount": "48500.50", "wallet": "79261234567",
            "bank_key": "alfabank", "order_ref": "t-ocr", **kw}
    return sandbox.control("POST", "/sandbox/bank/transfer", json=body)


def _get(sandbox, path: str, **params) -> bytes:
    resp = requests.get(f"{sandbox.url}{path}", params=params, timeout=30)
    resp.raise_for_status()
    return resp.content


def _expected(p):
    created = datetime.fromisoformat(p["created_at"])
    return {"amount": p["amount"], "wallet": p["wallet"], "bank": p["bank_key"],
            "not_before": (created - timedelta(minutes=1)).astimezone(UTC).isoformat()}


def test_genuine_pdf_by_path_is_valid(sandbox, tmp_path):
    p = _pay(sandbox, wallet="2202205555554444", bank_key="sberbank")  # to card: fee, no bank line
    path = tmp_path / "r.pdf"
    path.write_bytes(_get(sandbox, f"/sandbox/bank/receipts/{p['id']}.pdf"))
    result = run_script(SCRIPT, {"path": str(path), "expected": _expected(p)})
    validate_envelope(SCRIPT, result.envelope)
    data = result.data
    assert (data["source"], data["verdict"], data["reasons"]) == ("pdf_text", "valid", [])
    assert data["sha256"] == p["sha256"] and data["fields"]["receipt_number"] == p["receipt_number"]
    f = data["fields"]
    assert (f["amount"], f["fee"], f["total"]) == (p["amount"], p["fee"], p["total"])
    assert f["transfer_type"] == "to_card" and f["recipient_card"] == "220220******4444"
    assert all(data["checks"][k] is True for k in ("status_ok", "amount_match", "total_ok", "wallet_match", "date_ok"))
    assert data["checks"]["bank_match"] is None  # card transfers name no bank


def test_amount_as_json_number_keeps_kopecks(sandbox, tmp_path):
    p = _pay(sandbox)
    path = tmp_path / "r.pdf"
    path.write_bytes(_get(sandbox, f"/sandbox/bank/receipts/{p['id']}.pdf"))
    raw = json.dumps({"path": str(path), "expected": {**_expected(p), "amount": "__A__"}}).replace('"__A__"', "48500.50")
    ok = run_script(SCRIPT, raw).data
    assert ok["checks"]["amount_match"] is True
    raw = raw.replace("48500.50", "48500.51")
    assert run_script(SCRIPT, raw).data["checks"]["amount_match"] is False


def test_screenshot_as_base64_goes_through_ocr_and_is_never_valid(sandbox):
    p = _pay(sandbox)
    png = _get(sandbox, f"/sandbox/bank/receipts/{p['id']}.img")
    result = run_script(SCRIPT, {"content_base64": base64.b64encode(png).decode(), "filename": "shot.png",
                                 "expected": _expected(p)})
    validate_envelope(SCRIPT, result.envelope)
    data = result.data
    assert (data["source"], data["file_type"], data["verdict"]) == ("ocr", "image", "manual_review")
    assert "ocr_source" in data["reasons"]
    assert data["fields"]["status"] == "Успешно" and data["fields"]["recipient_phone"] == p["wallet"]


def test_forged_pdf_from_the_sandbox_is_flagged(sandbox, tmp_path):
    p = _pay(sandbox, amount="1000", wallet="5536914444333322", bank_key="tbank")  # no random bank line
    forged = requests.post(f"{sandbox.url}/sandbox/bank/receipts/{p['id']}/forged.pdf", json={"amount": "48500.50"},
                           timeout=10).content
    data = run_script(SCRIPT, {"content_base64": base64.b64encode(forged).decode(),
                               "expected": {**_expected(p), "amount": "48500.50"}}).data
    assert data["verdict"] == "manual_review" and data["reasons"] == ["pdf_edited"]
    assert data["document"]["revisions"] == 2


def test_serve_mode_answers_line_by_line(sandbox, tmp_path):
    p = _pay(sandbox, wallet="5536914444333322", bank_key="tbank")
    path = tmp_path / "r.pdf"
    path.write_bytes(_get(sandbox, f"/sandbox/bank/receipts/{p['id']}.pdf"))
    worker = ServeWorker(SCRIPT)
    try:
        first = worker.call({"path": str(path), "expected": _expected(p)})
        second = worker.call({"path": str(tmp_path / "missing.pdf")})
        third = worker.call({"path": str(path)})
    finally:
        assert worker.close() == 0
    assert first["success"] and first["data"]["verdict"] == "valid"
    assert not second["success"] and second["error"]["code"] == "file_not_found"
    assert third["data"]["verdict"] == "manual_review" and third["data"]["reasons"] == ["no_expectation"]


def test_bad_inputs_exit_2(tmp_path):
    (tmp_path / "x.txt").write_text("not a receipt")
    cases = [
        ({"path": "/a", "content_base64": "AAAA"}, "schema_violation"),
        ({}, "schema_violation"),
        ({"content_base64": "!!!not base64!!!"}, "invalid_base64"),
        ({"path": str(tmp_path / "x.txt")}, "unsupported_file"),
        ({"path": str(tmp_path / "nope.pdf")}, "file_not_found"),
        ({"path": str(tmp_path)}, "file_not_found"),
        ({"path": "/a", "expected": {"amount": "12,5"}}, "schema_violation"),
        ({"path": "/a", "extra": 1}, "schema_violation"),
    ]
    for payload, code in cases:
        result = run_script(SCRIPT, payload)
        assert (result.code, result.error["code"]) == (2, code), payload
        validate_envelope(SCRIPT, result.envelope)
    assert run_script(SCRIPT, "not json").error["code"] == "invalid_json"


def test_schema_flag_prints_both_schemas():
    result = run_script(SCRIPT, "", args=["--schema"])
    assert result.code == 0 and set(result.envelope) == {"contract_version", "input", "output"}
