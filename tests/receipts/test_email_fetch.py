"""email_fetch_receipts against a real dovecot, fed by the sandbox bank over real IMAP."""

from __future__ import annotations

import base64
import hashlib
import json
import os

import requests

from tests.support import run_script, validate_envelope

SCRIPT = "email_fetch_receipts"
MERCHANT = "receipts@merchant.test"


def pay(sandbox, amount="15000", wallet="79001234567", bank_key="sberbank", status="Успешно"):
    return sandbox.control("POST", "/sandbox/bank/transfer", json={
        "payer_name": "Иванов Иван Иванович", "amount": amount, "wallet": wallet, "bank_key": bank_key,
        "order_ref": "t-email", "status": status})


def receipt_pdf(sandbox, payment_id: str) -> bytes:
    resp = requests.get(f"{sandbox.url}/sandbox/bank/receipts/{payment_id}.pdf", timeout=10)
    resp.raise_for_status()
    return resp.content


def fetch(inbox, bank_mail, tmp_path, env=None, **extra):
    request = inbox.fetch_request(save_dir=str(tmp_path / "saved"),
                                  dkim_dns_override=json.loads(bank_mail.read_text()), **extra)
    result = run_script(SCRIPT, request, env=env)
    assert result.envelope is not None, result.stderr[-2000:]
    validate_envelope(SCRIPT, result.envelope)
    assert inbox.mailbox.password not in result.stdout + result.stderr
    return result


def send(sandbox, *, from_addr, dkim, pdf=b"%PDF-1.4 fake", filename="receipt.pdf", content_type="application/pdf",
         to_addr=MERCHANT):
    return sandbox.control("POST", "/sandbox/bank/send_mail", json={
        "from_addr": from_addr, "to_addr": to_addr, "content_base64": base64.b64encode(pdf).decode(),
        "filename": filename, "dkim": dkim, "content_type": content_type})


def test_bank_mail_round_trip_is_byte_exact_and_marked_seen_once(sandbox, inbox, bank_mail, tmp_path):
    payment = pay(sandbox, amount="1234.50")
    delivered = sandbox.control("POST", f"/sandbox/bank/receipts/{payment['id']}/mail", json={"to_addr": MERCHANT})
    assert delivered["delivered"] is True
    (uid,) = inbox.unseen()
    data = fetch(inbox, bank_mail, tmp_path).data
    assert data["pending"] == 1
    (msg,) = data["messages"]
    assert msg["uid"] == uid
    assert (msg["from"], msg["dkim"], msg["dkim_domain"]) == ("noreply@tbank.ru", "pass", "tbank.ru")
    assert msg["allowlisted"] is True and msg["trusted"] is True
    assert msg["message_id"] == delivered["message_id"]
    (att,) = msg["attachments"]
    assert att["accepted"] and att["reason"] is None and att["content_type"] == "application/pdf"
    genuine = receipt_pdf(sandbox, payment["id"])
    with open(att["saved_path"], "rb") as fh:
        assert fh.read() == genuine
    assert att["sha256"] == payment["sha256"] == hashlib.sha256(genuine).hexdigest()
    assert msg["marked_seen"] is True and inbox.seen(uid)
    # UNSEEN search: the same mail is not reported twice.
    again = fetch(inbox, bank_mail, tmp_path).data
    assert again["messages"] == [] and again["pending"] == 0


def test_mark_seen_false_leaves_mail_unseen(sandbox, inbox, bank_mail, tmp_path):
    payment = pay(sandbox)
    sandbox.control("POST", f"/sandbox/bank/receipts/{payment['id']}/mail", json={"to_addr": MERCHANT})
    future = fetch(inbox, bank_mail, tmp_path, since="2999-01-01").data
    assert future["messages"] == [] and future["searched"].startswith("UNSEEN SINCE")
    (msg,) = fetch(inbox, bank_mail, tmp_path, mark_seen=False).data["messages"]
    assert msg["marked_seen"] is False and msg["attachments"][0]["accepted"]
    assert inbox.unseen() == [msg["uid"]]


def test_save_failure_keeps_mail_unseen_until_a_retry_succeeds(sandbox, inbox, bank_mail, tmp_path):
    payment = pay(sandbox, wallet="5536911234567890", bank_key="tbank")
    sandbox.control("POST", f"/sandbox/bank/receipts/{payment['id']}/mail", json={"to_addr": MERCHANT})
    # A directory squatting on the content-addressed target makes the final rename fail.
    blocker = tmp_path / "saved" / f"{payment['sha256']}.pdf"
    blocker.mkdir(parents=True)
    (msg,) = fetch(inbox, bank_mail, tmp_path).data["messages"]
    assert msg["error"].startswith("save_failed") and msg["marked_seen"] is False
    assert msg["attachments"][0]["reason"] == "save_failed" and msg["attachments"][0]["saved_path"] is None
    assert inbox.unseen() == [msg["uid"]]
    assert not [p for p in os.listdir(tmp_path / "saved") if p.startswith(".part-")]  # no temp file left
    blocker.rmdir()
    (retry,) = fetch(inbox, bank_mail, tmp_path).data["messages"]
    assert retry["uid"] == msg["uid"] and retry["marked_seen"] and retry["attachments"][0]["accepted"]
    assert inbox.unseen() == []


def test_dkim_verdicts_for_bank_spoofed_and_look_alike_mail(sandbox, inbox, bank_mail, tmp_path):
    payment = pay(sandbox)
    genuine = receipt_pdf(sandbox, payment["id"])
    forged = requests.post(f"{sandbox.url}/sandbox/bank/receipts/{payment['id']}/forged.pdf",
                           json={"amount": "90000"}, timeout=10).content
    send(sandbox, from_addr="noreply@tbank.ru", dkim="none", pdf=genuine)
    send(sandbox, from_addr="noreply@tbank.ru", dkim="bad", pdf=forged)
    send(sandbox, from_addr="noreply@tinkoff.ru", dkim="bad", pdf=forged)
    send(sandbox, from_addr="noreply@tbank-ru.com", dkim="good", pdf=forged)
    send(sandbox, from_addr="noreply@tbank-ru.com", dkim="altered", pdf=forged)
    # Records published after the look-alike domain got its key.
    bank_mail.write_text(json.dumps(sandbox.control("GET", "/sandbox/bank/dkim")))
    got = {(m["from"], m["dkim"], m["allowlisted"], m["trusted"])
           for m in fetch(inbox, bank_mail, tmp_path).data["messages"]}
    assert got == {
        ("noreply@tbank.ru", "none", True, False),
        ("noreply@tbank.ru", "fail", True, False),
        ("noreply@tinkoff.ru", "fail", True, False),
        ("noreply@tbank-ru.com", "pass", False, False),
        ("noreply@tbank-ru.com", "fail", False, False),
    }


def test_dkim_records_from_env_file_and_unknown_key_fails(sandbox, inbox, bank_mail, tmp_path):
    payment = pay(sandbox)
    sandbox.control("POST", f"/sandbox/bank/receipts/{payment['id']}/mail", json={"to_addr": MERCHANT})
    request = inbox.fetch_request(save_dir=str(tmp_path / "a"), mark_seen=False)
    ok = run_script(SCRIPT, request, env={"ITRADER_DKIM_DNS_FILE": str(bank_mail)}).data["messages"]
    assert [m["dkim"] for m in ok] == ["pass"]
    # Without the bank's key (empty override) the same signature cannot verify: never a pass.
    empty = run_script(SCRIPT, {**request, "dkim_dns_override": {}}).data["messages"]
    assert [m["dkim"] for m in empty] == ["fail"] and not empty[0]["trusted"]


def test_other_types_and_oversize_attachments_are_listed_not_saved(sandbox, inbox, bank_mail, tmp_path):
    send(sandbox, from_addr="noreply@tbank.ru", dkim="none", pdf=b"MZ\x90\x00 not a receipt", filename="x.exe",
         content_type="application/octet-stream")
    send(sandbox, from_addr="noreply@tbank.ru", dkim="none", pdf=b"just text", filename="r.pdf")  # lies about type
    payment = pay(sandbox)
    sandbox.control("POST", f"/sandbox/bank/receipts/{payment['id']}/mail", json={"to_addr": MERCHANT})
    messages = fetch(inbox, bank_mail, tmp_path, max_attachment_bytes=1000).data["messages"]
    reasons = sorted(a["reason"] for m in messages for a in m["attachments"])
    assert reasons == ["too_large", "unsupported_type", "unsupported_type"]
    assert all(a["saved_path"] is None for m in messages for a in m["attachments"])
    assert not (tmp_path / "saved").exists() or os.listdir(tmp_path / "saved") == []
    assert all(m["marked_seen"] for m in messages)  # reported once: nothing left to retry


def test_mail_to_another_address_never_arrives(sandbox, inbox):
    payment = pay(sandbox)
    answer = sandbox.control("POST", f"/sandbox/bank/receipts/{payment['id']}/mail",
                             json={"to_addr": "someone-else@merchant.test"})
    assert answer["delivered"] is False and answer["reason"] == "not_our_mailbox"
    assert inbox.unseen() == []


def test_wrong_password_is_auth_failed_and_never_echoed(inbox, tmp_path):
    request = inbox.fetch_request(save_dir=str(tmp_path), password="definitely-wrong-pw")
    result = run_script(SCRIPT, request)
    assert result.code == 1 and result.error["code"] == "auth_failed"
    assert "definitely-wrong-pw" not in result.stdout + result.stderr


def test_bad_input_exits_2_without_touching_imap():
    result = run_script(SCRIPT, {"host": "127.0.0.1", "username": "u", "password": "p-secret"})
    assert result.code == 2 and result.error["code"] == "schema_violation"
    assert "p-secret" not in result.stdout + result.stderr
