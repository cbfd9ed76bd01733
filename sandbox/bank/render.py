"""How the simulated bank draws its receipts: a born-digital PDF (reportlab) and a phone screenshot (Pillow).

The layout follows the T-Bank receipt as our parser sees it in real files (see the receipts reference §2/§3):
date first, a bold ``Итого`` line, then label/value rows, the receipt number and a footer.  Amounts are
written the way the real text layer carries them (thin space thousands separator, NBSP before ``₽``,
comma kopecks), because those characters are exactly what broke earlier parsers.
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from functools import cache
from typing import Any

FONT_DIR = "/usr/share/fonts/truetype/dejavu"
FONT_REGULAR = f"{FONT_DIR}/DejaVuSans.ttf"
FONT_BOLD = f"{FONT_DIR}/DejaVuSans-Bold.ttf"
MSK = timezone(timedelta(hours=3), "MSK")

TYPE_LABELS = {
    "by_phone": "По номеру телефона",
    "to_tbank_client": "Клиенту Т-Банка",
    "to_card": "На карту",
}


def format_rub(amount: Decimal) -> str:
    """``15000`` -> ``15\u2009000\u00a0₽``; ``2.5`` -> ``2,50\u00a0₽`` (kopecks only when there are any)."""
    q = Decimal(amount).quantize(Decimal("0.01"))
    whole, frac = divmod(abs(q), 1)
    groups = f"{int(whole):,}".replace(",", "\u2009")
    text = groups if frac == 0 else f"{groups},{int(frac * 100):02d}"
    return ("-" if q < 0 else "") + text + "\u00a0₽"


def format_phone(digits: str) -> str:
    """``79001234567`` -> ``+7 (900) 123-45-67``."""
    d = digits[-10:]
    return f"+7 ({d[0:3]}) {d[3:6]}-{d[6:8]}-{d[8:10]}"


def msk_time(ts: datetime) -> str:
    return ts.astimezone(MSK).strftime("%d.%m.%Y %H:%M:%S")


def receipt_rows(fields: dict[str, Any]) -> tuple[str, list[tuple[str, str]], str, list[str]]:
    """(date line, [(label, value)...], receipt number line, footer lines) in rendering order.

    ``fields`` is the printable view of a payment (see ``Bank.printable``); a None value drops the row,
    which is how a missing ``Банк получателя`` line looks on real receipts.
    """
    fee = fields["fee"]
    rows: list[tuple[str, str]] = [
        ("Итого", format_rub(fields["total"])),
        ("Перевод", TYPE_LABELS[fields["transfer_type"]]),
        ("Статус", fields["status"]),
        ("Сумма", format_rub(fields["amount"])),
        ("Комиссия", "Без комиссии" if fee == 0 else format_rub(fee)),
        ("Отправитель", fields["payer_name"]),
    ]
    kind = fields["transfer_type"]
    if kind == "by_phone":
        rows += [
            ("Телефон получателя", format_phone(fields["wallet"])),
            ("Получатель", fields["recipient_name"]),
            ("Банк получателя", fields.get("recipient_bank")),
            ("Счет списания", fields["source_account"]),
            ("Идентификатор операции", fields["operation_id"]),
            ("СБП", fields["sbp_id"]),
        ]
    elif kind == "to_tbank_client":
        rows += [("Карта получателя", fields["card_mask"]), ("Получатель", fields["recipient_name"])]
    else:
        rows += [("Карта получателя", fields["card_mask"])]
    rows = [(label, value) for label, value in rows if value]
    footer = [
        "Вопросы о зачислении перевода решает получатель.",
        "Служба поддержки: help@tbank.ru",
    ]
    return msk_time(fields["created_at"]), rows, f"Квитанция № {fields['receipt_number']}", footer


@cache
def _register_fonts() -> None:
    from reportlab.pdfbase import pdfmetrics
    from reportlab.pdfbase.ttfonts import TTFont

    pdfmetrics.registerFont(TTFont("DejaVuSans", FONT_REGULAR))
    pdfmetrics.registerFont(TTFont("DejaVuSans-Bold", FONT_BOLD))


def render_pdf(fields: dict[str, Any], *, producer: str = "tbank-receipts", creator: str = "T-Bank") -> bytes:
    """A one-page born-digital receipt with a real text layer (DejaVu Sans embedded with a ToUnicode map)."""
    from reportlab.lib.colors import HexColor
    from reportlab.pdfgen import canvas

    _register_fonts()
    date_line, rows, number_line, footer = receipt_rows(fields)
    width, height = 360.0, 520.0
    buf = io.BytesIO()
    c = canvas.Canvas(buf, pagesize=(width, height), pageCompression=1)
    c.setTitle("Квитанция")
    c.setAuthor("T-Bank")
    c.setCreator(creator)
    c.setProducer(producer)
    left, right = 24.0, width - 24.0
    # Logo: drawn shapes only, so the text layer holds nothing but the receipt itself.
    c.setFillColor(HexColor("#FFDD2D"))
    c.roundRect(left, height - 56, 30, 30, 6, stroke=0, fill=1)
    c.setFillColor(HexColor("#333333"))
    c.rect(left + 8, height - 36, 14, 4, stroke=0, fill=1)
    c.rect(left + 13, height - 50, 4, 16, stroke=0, fill=1)
    y = height - 80
    c.setFillColor(HexColor("#9299A2"))
    c.setFont("DejaVuSans", 8)
    c.drawString(left, y, date_line)
    y -= 26
    label, value = rows[0]
    c.setFillColor(HexColor("#000000"))
    c.setFont("DejaVuSans-Bold", 14)
    c.drawString(left, y, label)
    c.drawRightString(right, y, value)
    y -= 14
    c.setStrokeColor(HexColor("#E5E5E5"))
    c.line(left, y, right, y)
    y -= 18
    for label, value in rows[1:]:
        c.setFillColor(HexColor("#9299A2"))
        c.setFont("DejaVuSans", 9)
        c.drawString(left, y, label)
        c.setFillColor(HexColor("#000000"))
        c.drawRightString(right, y, value)
        y -= 17
    y -= 6
    c.line(left, y, right, y)
    y -= 18
    c.setFont("DejaVuSans", 9)
    c.drawString(left, y, number_line)
    y -= 22
    c.setFillColor(HexColor("#9299A2"))
    c.setFont("DejaVuSans", 7)
    for line in footer:
        c.drawString(left, y, line)
        y -= 11
    c.showPage()
    c.save()
    return buf.getvalue()


@cache
def _pil_font(path: str, size: int):
    from PIL import ImageFont

    return ImageFont.truetype(path, size)


def render_image(fields: dict[str, Any], *, scale: float = 1.0, jpeg_quality: int | None = None) -> tuple[bytes, str]:
    """A phone-screenshot-like picture of the receipt: 880 px wide at scale 1 with 22 px body text."""
    from PIL import Image, ImageDraw

    date_line, rows, number_line, footer = receipt_rows(fields)
    width = 880
    height = 200 + 56 * len(rows) + 200
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    left, right = 48, width - 48
    draw.rounded_rectangle((left, 40, left + 72, 112), radius=14, fill="#FFDD2D")
    draw.rectangle((left + 18, 58, left + 54, 66), fill="#333333")
    draw.rectangle((left + 32, 58, left + 40, 98), fill="#333333")
    y = 140
    body, small, big = _pil_font(FONT_REGULAR, 22), _pil_font(FONT_REGULAR, 20), _pil_font(FONT_BOLD, 32)
    draw.text((left, y), date_line, font=small, fill="#8A8F96")
    y += 52
    label, value = rows[0]
    draw.text((left, y), label, font=big, fill="black")
    draw.text((right, y), value, font=big, fill="black", anchor="ra")
    y += 62
    draw.line((left, y, right, y), fill="#E0E0E0", width=2)
    y += 26
    for label, value in rows[1:]:
        draw.text((left, y), label, font=body, fill="#70757C")
        draw.text((right, y), value, font=body, fill="black", anchor="ra")
        y += 48
    y += 10
    draw.line((left, y, right, y), fill="#E0E0E0", width=2)
    y += 26
    draw.text((left, y), number_line, font=body, fill="black")
    y += 50
    for line in footer:
        draw.text((left, y), line, font=small, fill="#8A8F96")
        y += 32
    img = img.crop((0, 0, width, min(height, y + 40)))
    if scale != 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.LANCZOS)
    out = io.BytesIO()
    if jpeg_quality is not None:
        img.save(out, format="JPEG", quality=int(jpeg_quality))
        return out.getvalue(), "image/jpeg"
    img.save(out, format="PNG")
    return out.getvalue(), "image/png"


def append_edit_revision(pdf: bytes, *, producer: str, mod_time: datetime) -> bytes:
    """Append an incremental update that rewrites the document info, as PDF editing tools do on save.

    A forged receipt made with such a tool keeps the visual layout but gains a second revision (two
    ``%%EOF`` markers, a ``/Prev`` trailer), a foreign ``/Producer`` and a ``/ModDate``: the forensic traces
    our parser reports.  A careful forger can avoid them (``Bank.forged_pdf(..., clean=True)``); only the
    DKIM-signed bank mail channel defeats that one.
    """
    import re

    tail = pdf[-2048:].decode("latin-1")
    size = int(re.findall(r"/Size (\d+)", tail)[-1])
    root = re.findall(r"/Root (\d+ \d+ R)", tail)[-1]
    prev = int(re.findall(r"startxref\s+(\d+)", tail)[-1])
    created = re.search(rb"/CreationDate \((D:[^)]*)\)", pdf)
    stamp = mod_time.astimezone(UTC).strftime("D:%Y%m%d%H%M%S+00'00'")
    body = bytearray(pdf if pdf.endswith(b"\n") else pdf + b"\n")
    offset = len(body)
    info = f"<< /Producer ({producer}) /ModDate ({stamp})"
    if created:
        info += f" /CreationDate ({created.group(1).decode('latin-1')})"
    body += f"{size} 0 obj\n{info} >>\nendobj\n".encode("latin-1")
    xref = len(body)
    body += (f"xref\n0 1\n0000000000 65535 f \n{size} 1\n{offset:010d} 00000 n \n"
             f"trailer\n<< /Size {size + 1} /Root {root} /Info {size} 0 R /Prev {prev} >>\n"
             f"startxref\n{xref}\n%%EOF\n").encode("latin-1")
    return bytes(body)
