"""The bank venue: ``world.bank`` for in-process callers (simulated buyers) and the ``/sandbox/bank/`` control API.

Delivery to the merchant's mailbox is configured at runtime (``POST /sandbox/bank/mailbox``), never via argv,
because the mailbox password must not show up in a process list.  The extra POST endpoints (transfer, mail,
forged, send_mail) let out-of-process tests drive the same Python API the buyers use.
"""

from __future__ import annotations

import base64
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sandbox.bank.ledger import Bank, Payment
from sandbox.bank.mail import Mailbox


def _bad(message: str, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def install(app: FastAPI, world: Any) -> None:
    bank = Bank(world)
    world.bank = bank

    def find(payment_id: str) -> Payment | None:
        return bank.get(payment_id)

    @app.post("/sandbox/bank/mailbox")
    async def set_mailbox(request: Request) -> JSONResponse:
        body = await request.json()
        if body is None or body == {}:
            bank.configure_mailbox(None)
            return JSONResponse({"ok": True, "mailbox": None})
        try:
            box = Mailbox(host=str(body["host"]), port=int(body["port"]), user=str(body["user"]),
                          password=str(body["password"]), address=str(body["address"]),
                          folder=str(body.get("folder", "INBOX")), ssl=bool(body.get("ssl", False)))
        except (KeyError, TypeError, ValueError):
            return _bad("fields: host, port, user, password, address (folder, ssl optional)")
        bank.configure_mailbox(box)
        return JSONResponse({"ok": True, "mailbox": box.public()})

    @app.get("/sandbox/bank/dkim")
    def dkim_records() -> dict[str, Any]:
        return {"records": bank.keys.records(), "bank_selector": bank.keys.bank.selector,
                "bank_domain": bank.keys.bank.domain}

    @app.get("/sandbox/bank/payments")
    def list_payments() -> dict[str, Any]:
        return {"payments": [p.to_dict() for p in bank.payments()]}

    @app.get("/sandbox/bank/receipts/{payment_id}.pdf")
    def receipt_pdf(payment_id: str) -> Response:
        payment = find(payment_id)
        if payment is None:
            return _bad("unknown payment", 404)
        return Response(payment.pdf, media_type="application/pdf")

    @app.get("/sandbox/bank/receipts/{payment_id}.img")
    def receipt_img(payment_id: str, scale: float = 1.0, jpeg_quality: int | None = None) -> Response:
        payment = find(payment_id)
        if payment is None:
            return _bad("unknown payment", 404)
        if not 0.2 <= scale <= 4.0 or (jpeg_quality is not None and not 1 <= jpeg_quality <= 100):
            return _bad("scale 0.2..4, jpeg_quality 1..100")
        data, mime = bank.receipt_image(payment, scale=scale, jpeg_quality=jpeg_quality)
        return Response(data, media_type=mime)

    @app.post("/sandbox/bank/transfer")
    async def do_transfer(request: Request) -> JSONResponse:
        body = await request.json()
        try:
            payment = bank.transfer(payer_name=str(body["payer_name"]), amount=Decimal(str(body["amount"])),
                                    wallet=str(body["wallet"]), bank_key=body.get("bank_key"),
                                    order_ref=body.get("order_ref"), status=str(body.get("status", "Успешно")))
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            return _bad(f"transfer refused: {exc}")
        return JSONResponse(payment.to_dict())

    @app.post("/sandbox/bank/receipts/{payment_id}/mail")
    async def do_mail(payment_id: str, request: Request) -> JSONResponse:
        payment = find(payment_id)
        if payment is None:
            return _bad("unknown payment", 404)
        body = await request.json()
        return JSONResponse(bank.mail_receipt(payment, str(body["to_addr"])))

    @app.post("/sandbox/bank/receipts/{payment_id}/forged.pdf")
    async def do_forge(payment_id: str, request: Request) -> Response:
        payment = find(payment_id)
        if payment is None:
            return _bad("unknown payment", 404)
        body = await request.json()
        try:
            pdf = bank.forged_pdf(payment, **body)
        except (TypeError, ValueError, InvalidOperation) as exc:
            return _bad(f"cannot forge: {exc}")
        return Response(pdf, media_type="application/pdf")

    @app.post("/sandbox/bank/send_mail")
    async def do_send(request: Request) -> JSONResponse:
        body = await request.json()
        try:
            result = bank.send_mail(from_addr=str(body["from_addr"]), to_addr=str(body["to_addr"]),
                                    pdf=base64.b64decode(body["content_base64"]), filename=str(body["filename"]),
                                    dkim=str(body.get("dkim", "none")),
                                    content_type=str(body.get("content_type", "application/pdf")))
        except (KeyError, TypeError, ValueError) as exc:
            return _bad(f"send refused: {exc}")
        return JSONResponse(result)
