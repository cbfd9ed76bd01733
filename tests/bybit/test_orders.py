"""Orders driven from the buyer side through the sandbox control API: listing (pending and all), details,
chat (text, files by path and base64, ownership and system flags) and release (only from 20, never twice)."""

from __future__ import annotations

import base64
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support import Result, run_script, validate_envelope

PDF = b"%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
PNG = base64.b64decode("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def call(sandbox: Any, name: str, payload: Any) -> Result:
    result = run_script(name, payload, env=sandbox.env)
    assert result.envelope is not None, result.stderr[-2000:]
    validate_envelope(name, result.envelope)
    return result


@pytest.fixture()
def deal(sandbox: Any) -> dict[str, Any]:
    acc = sandbox.control("POST", "/sandbox/bybit/accounts", json={"count": 1})["accounts"][0]
    cred = {"api_key": acc["api_key"], "api_secret": acc["api_secret"]}
    ad = {"price": "80", "quantity": "150", "min_amount": "8000", "max_amount": "8000", "payment_methods": ["sbp"],
          "remarks": "Напишите + в чат."}
    ad_id = call(sandbox, "bybit_create_ad", {**cred, "ad_params": ad}).data["ad_id"]
    order = sandbox.control("POST", "/sandbox/bybit/orders", json={"item_id": ad_id})
    return {"acc": acc, "cred": cred, "ad_id": ad_id, "order_id": order["order_id"], "buyer": order["buyer_uid"]}


def test_lists_and_details(sandbox: Any, deal: dict[str, Any]) -> None:
    cred, oid = deal["cred"], deal["order_id"]
    pending = call(sandbox, "bybit_list_orders", {**cred, "pending": True}).data
    assert [o["order_id"] for o in pending["items"]] == [oid] and pending["count"] == 1
    item = pending["items"][0]
    assert (item["side"], item["status"], item["amount"], item["price"]) == ("sell", 10, "8000", "80")
    assert item["target_user_id"] == deal["buyer"] and item["user_id"] == deal["acc"]["uid"]
    by_status = call(sandbox, "bybit_list_orders", {**cred, "status": 10, "side": "sell"}).data
    assert oid in [o["order_id"] for o in by_status["items"]]
    assert call(sandbox, "bybit_list_orders", {**cred, "status": 50}).data["items"] == []

    detail = call(sandbox, "bybit_get_order", {**cred, "order_id": oid}).data
    assert detail["item_id"] == deal["ad_id"] and detail["quantity"] == "100"
    assert detail["payment_terms"][0]["kind"] == "sbp" and detail["transfer_last_seconds"] > 0

    sandbox.control("POST", f"/sandbox/bybit/orders/{oid}/cancel")
    assert call(sandbox, "bybit_list_orders", {**cred, "pending": True}).data["items"] == []
    assert call(sandbox, "bybit_get_order", {**cred, "order_id": oid}).data["status_name"] == "cancelled"


def test_chat_text_and_files(sandbox: Any, deal: dict[str, Any], tmp_path: Path) -> None:
    cred, oid = deal["cred"], deal["order_id"]
    sandbox.control("POST", f"/sandbox/bybit/orders/{oid}/messages", json={"text": "+"})
    text = call(sandbox, "bybit_send_chat", {**cred, "order_id": oid, "text": "Реквизиты: Т-Банк"}).data
    pdf = tmp_path / "receipt.pdf"
    pdf.write_bytes(PDF)
    by_path = call(sandbox, "bybit_send_chat", {**cred, "order_id": oid, "path": str(pdf)}).data
    assert by_path["content_type"] == "pdf" and by_path["file_name"] == "receipt.pdf"
    assert by_path["url"].startswith("/") and by_path["size_bytes"] == len(PDF)
    # A file send is two writes (upload + send); Bybit allows 5 writes/s per account, so pace like a client.
    time.sleep(1.1)
    by_b64 = call(sandbox, "bybit_send_chat", {**cred, "order_id": oid, "filename": "shot.png",
                                               "content_base64": base64.b64encode(PNG).decode()}).data
    assert by_b64["content_type"] == "pic" and by_b64["msg_uuid"] != by_path["msg_uuid"] != text["msg_uuid"]

    chat = call(sandbox, "bybit_get_chat", {**cred, "order_id": oid}).data
    msgs = chat["messages"]
    assert chat["own_user_id"] == deal["acc"]["uid"]
    assert [m["created_at"] for m in msgs] == sorted(m["created_at"] for m in msgs)
    assert any(m["is_system"] and not m["is_ours"] for m in msgs)
    buyer = [m for m in msgs if m["user_id"] == deal["buyer"]]
    assert buyer and all(not m["is_ours"] for m in buyer) and buyer[0]["message"] == "+"
    ours = {m["msg_uuid"]: m for m in msgs if m["is_ours"]}
    assert ours[text["msg_uuid"]]["message"] == "Реквизиты: Т-Банк"
    assert ours[by_path["msg_uuid"]]["content_type"] == "pdf" and ours[by_path["msg_uuid"]]["message"] == by_path["url"]
    assert ours[by_b64["msg_uuid"]]["content_type"] == "pic"
    # Knowing our own user id saves the order lookup and gives the same flags.
    again = call(sandbox, "bybit_get_chat", {**cred, "order_id": oid, "own_user_id": deal["acc"]["uid"]}).data
    assert [m["is_ours"] for m in again["messages"]] == [m["is_ours"] for m in msgs]


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({}, "invalid_request"),
        ({"text": "a", "path": "/etc/hostname"}, "invalid_request"),
        ({"content_base64": "!!notbase64!!", "filename": "a.pdf"}, "invalid_request"),
        ({"content_base64": "JVBERg==", "filename": "a.exe"}, "invalid_request"),
        ({"content_base64": "JVBERg=="}, "invalid_request"),
        ({"path": "/nonexistent/receipt.pdf"}, "file_unreadable"),
    ],
)
def test_send_chat_bad_input(sandbox: Any, deal: dict[str, Any], extra: dict, code: str) -> None:
    result = call(sandbox, "bybit_send_chat", {**deal["cred"], "order_id": deal["order_id"], **extra})
    assert result.code == 2 and result.error["code"] == code


def test_release_only_from_20_and_never_twice(sandbox: Any, deal: dict[str, Any]) -> None:
    cred, oid = deal["cred"], deal["order_id"]
    early = call(sandbox, "bybit_release_order", {**cred, "order_id": oid})
    assert early.code == 1 and early.error["code"] == "order_not_releasable" and early.error["details"]["status"] == 10
    assert sandbox.control("GET", f"/sandbox/bybit/orders/{oid}")["status"] == 10

    sandbox.control("POST", f"/sandbox/bybit/orders/{oid}/pay")
    assert call(sandbox, "bybit_get_order", {**cred, "order_id": oid}).data["status"] == 20
    done = call(sandbox, "bybit_release_order", {**cred, "order_id": oid})
    assert done.code == 0 and done.data == {"order_id": oid, "released": True, "previous_status": 20}
    assert sandbox.control("GET", f"/sandbox/bybit/orders/{oid}")["status"] == 50

    twice = call(sandbox, "bybit_release_order", {**cred, "order_id": oid})
    assert twice.code == 1 and twice.error["code"] == "order_already_released"
    releases = [e for e in sandbox.control("GET", "/sandbox/truth")["events"]
                if e.get("order_id") == oid and "release" in e["kind"]]
    assert len(releases) == 1, releases


def test_release_of_a_cancelled_or_appealed_order_is_refused(sandbox: Any, deal: dict[str, Any]) -> None:
    cred, oid = deal["cred"], deal["order_id"]
    sandbox.control("POST", f"/sandbox/bybit/orders/{oid}/pay")
    sandbox.control("POST", f"/sandbox/bybit/orders/{oid}/appeal")
    result = call(sandbox, "bybit_release_order", {**cred, "order_id": oid})
    assert result.code == 1 and result.error["code"] == "order_not_releasable"
    assert result.error["details"]["status"] == 30
