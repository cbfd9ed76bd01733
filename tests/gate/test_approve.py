"""gate_approve: multipart attachments[], stored file = ground truth, 6/7, "already" confirmed by re-read."""

from __future__ import annotations

import base64
import hashlib
from decimal import Decimal

import requests

PDF = b"%PDF-1.4\n% itrader test receipt\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


def _accepted(gate, cookies, **kw):
    [made] = gate.generate(1, **kw)
    gate.accept(cookies, made["id"])
    return made


def test_approve_from_path_stores_the_file_and_credits_usdt(gate, cookies, account, tmp_path):
    made = _accepted(gate, cookies)
    receipt = tmp_path / f"{made['id']}_receipt.pdf"
    receipt.write_bytes(PDF)
    res = gate.run("gate_approve", {"cookies": cookies, "id": made["id"], "path": str(receipt)})
    assert res.code == 0
    data = res.data
    assert data["approved"] is True and data["already_approved"] is False and data["needs_review"] is False
    assert data["payout"]["status"] == 7 and data["payout"]["approved_at"] and data["payout"]["attachments"] == 1
    sha = hashlib.sha256(PDF).hexdigest()
    assert data["attachment"] == {"filename": receipt.name, "sha256": sha, "size": len(PDF)}
    [event] = gate.events("gate_approve", made["id"])
    assert event["attachment_sha256"] == sha and event["filename"] == receipt.name
    assert event["account"] == account["login"] and event["wallet"] == made["wallet"]
    assert Decimal(event["amount_rub"]) == Decimal(made["amount_rub"]) and event["status"] == 7 and event["after_expiry"] is False
    truth = gate.truth(made["id"])
    assert truth["attachments"][0]["sha256"] == sha and truth["attachments"][0]["mime_type"] == "application/pdf"
    me = gate.run("gate_me", {"cookies": cookies}).data
    assert Decimal(me["balances"]["usdt"]) >= Decimal(made["amount_usdt"])


def test_approve_from_base64(gate, cookies):
    made = _accepted(gate, cookies)
    res = gate.run("gate_approve", {"cookies": cookies, "id": made["id"], "filename": "receipt.pdf",
                                    "content_base64": base64.b64encode(PDF).decode()})
    assert res.code == 0 and res.data["payout"]["status"] == 7


def test_double_approve_is_already_approved_after_reread(gate, cookies, account):
    made = _accepted(gate, cookies)
    payload = {"cookies": cookies, "id": made["id"], "filename": "r.pdf",
               "content_base64": base64.b64encode(PDF).decode()}
    assert gate.run("gate_approve", payload).code == 0
    res = gate.run("gate_approve", payload)
    assert res.code == 0 and res.data["already_approved"] is True and res.data["confirmed"] is True
    assert len(gate.events("gate_approve", made["id"])) == 1


def test_approve_of_someone_elses_payout_is_refused(gate, cookies):
    other = gate.login(gate.account())
    made = _accepted(gate, other)
    res = gate.run("gate_approve", {"cookies": cookies, "id": made["id"], "filename": "r.pdf",
                                    "content_base64": base64.b64encode(PDF).decode()})
    assert res.code == 1 and res.error["code"] == "incorrect_status"
    assert gate.truth(made["id"])["status"] == 5 and not gate.events("gate_approve", made["id"])


def test_approve_of_a_status_4_payout_is_refused(gate, cookies):
    [made] = gate.generate(1)
    res = gate.run("gate_approve", {"cookies": cookies, "id": made["id"], "filename": "r.pdf",
                                    "content_base64": base64.b64encode(PDF).decode()})
    assert res.code == 1 and res.error["code"] == "incorrect_status" and res.error["details"]["status"] == 4
    assert gate.truth(made["id"])["status"] == 4


def test_status_6_counts_as_approved_but_needs_review(gate, cookies):
    gate.config(post_approve_status=6)
    made = _accepted(gate, cookies)
    res = gate.run("gate_approve", {"cookies": cookies, "id": made["id"], "filename": "r.pdf",
                                    "content_base64": base64.b64encode(PDF).decode()})
    assert res.code == 0 and res.data["payout"]["status"] == 6 and res.data["needs_review"] is True


def test_approve_after_expired_at_gives_6(gate, cookies):
    made = _accepted(gate, cookies)
    gate.sb.control("POST", f"/sandbox/gate/payouts/{made['id']}/expire", json={"seconds": -1})
    res = gate.run("gate_approve", {"cookies": cookies, "id": made["id"], "filename": "r.pdf",
                                    "content_base64": base64.b64encode(PDF).decode()})
    assert res.code == 0 and res.data["payout"]["status"] == 6 and res.data["needs_review"] is True
    [event] = gate.events("gate_approve", made["id"])
    assert event["after_expiry"] is True and event["status"] == 6


def test_payout_past_its_grace_leaves_5_and_cannot_be_approved(gate, cookies):
    made = _accepted(gate, cookies)
    gate.sb.control("POST", f"/sandbox/gate/payouts/{made['id']}/expire", json={"seconds": -3600})
    [event] = gate.events("gate_expired", made["id"])
    assert event["status"] == 4
    res = gate.run("gate_approve", {"cookies": cookies, "id": made["id"], "filename": "r.pdf",
                                    "content_base64": base64.b64encode(PDF).decode()})
    assert res.code == 1 and res.error["code"] == "incorrect_status"


def test_attachment_input_errors(gate, cookies, tmp_path):
    b64 = base64.b64encode(PDF).decode()
    cases = [
        {"id": 1, "path": str(tmp_path / "missing.pdf")},
        {"id": 1, "path": str(tmp_path), "content_base64": b64, "filename": "r.pdf"},
        {"id": 1},
        {"id": 1, "content_base64": b64},
        {"id": 1, "content_base64": "***not base64***", "filename": "r.pdf"},
        {"id": 1, "content_base64": b64, "filename": "../etc/passwd"},
    ]
    empty = tmp_path / "empty.pdf"
    empty.write_bytes(b"")
    cases.append({"id": 1, "path": str(empty)})
    for case in cases:
        res = gate.run("gate_approve", {"cookies": cookies, **case})
        assert res.code == 2, case


def test_panel_requires_exactly_one_multipart_file(sandbox, gate, cookies):
    """Sandbox conformance: JSON body, no file, two files -> refused and nothing approved."""
    made = _accepted(gate, cookies)
    jar = {c["name"]: c["value"] for c in cookies}
    url = f"{sandbox.url}/api/v1/payments/payouts/{made['id']}/approve"
    attempts = [
        {"json": {"attachments": ["x"]}},
        {"data": {"note": "no file"}, "files": {"other": ("r.pdf", PDF)}},
        {"files": [("attachments[]", ("a.pdf", PDF)), ("attachments[]", ("b.pdf", PDF))]},
    ]
    for kwargs in attempts:
        resp = requests.post(url, cookies=jar, timeout=5, **kwargs)
        assert resp.status_code == 422 and resp.json()["success"] is False
    assert gate.truth(made["id"])["status"] == 5
