"""Normalising the panel's payout objects and paginators into the scripts' stable output shape.

Status-4 payouts carry ``amount: []`` and ``total: []`` by design: they are returned with null amounts rather
than skipped (an earlier client skipped them and therefore never saw a new payout).  Amounts are exact Decimals
taken from the JSON text itself (the body is parsed with ``parse_float=Decimal``).
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from itrader.errors import ScriptError

RUB_ISO, USDT_ISO = "643", "000001"
APPROVED_STATUSES = frozenset({6, 7})


def _bad(what: str) -> ScriptError:
    return ScriptError("bad_response", f"Gate payout has an unreadable {what}", retryable=False)


def _decimal(value: Any, what: str) -> Decimal | None:
    if value is None:
        return None
    if isinstance(value, bool):
        raise _bad(what)
    try:
        out = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise _bad(what) from None
    if not out.is_finite():
        raise _bad(what)
    return out


def _money(block: Any, iso: str, what: str) -> Decimal | None:
    """``{"trader": {"643": n, "000001": n}}`` -> Decimal; ``[]``/null (hidden at status 4) -> None."""
    if not isinstance(block, dict):
        return None
    trader = block.get("trader")
    if not isinstance(trader, dict):
        return None
    return _decimal(trader.get(iso), what)


def _int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise _bad(what)
    try:
        return int(str(value))
    except ValueError:
        raise _bad(what) from None


def _str_or_none(value: Any) -> str | None:
    return None if value is None else str(value)


def normalize_payout(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict) or "id" not in raw or "status" not in raw:
        raise ScriptError("bad_response", "Gate returned something that is not a payout object", retryable=False)
    meta = raw.get("meta") if isinstance(raw.get("meta"), dict) else {}
    courses = meta.get("courses") if isinstance(meta.get("courses"), dict) else {}
    bank = raw.get("bank")
    method = raw.get("method")
    trader = raw.get("trader")
    attachments = raw.get("attachments")
    out: dict[str, Any] = {
        "id": _int(raw["id"], "id"),
        "status": _int(raw["status"], "status"),
        "wallet": _str_or_none(raw.get("wallet")),
        "amount_rub": _money(raw.get("amount"), RUB_ISO, "amount"),
        "amount_usdt": _money(raw.get("amount"), USDT_ISO, "amount"),
        "total_rub": _money(raw.get("total"), RUB_ISO, "total"),
        "total_usdt": _money(raw.get("total"), USDT_ISO, "total"),
        "course": _decimal(courses.get("trader"), "course"),
        "bank": ({"key": _str_or_none(bank.get("name")), "label": _str_or_none(bank.get("label")),
                  "code": _str_or_none(bank.get("code"))} if isinstance(bank, dict) else None),
        "method": ({"id": method.get("id") if isinstance(method.get("id"), int) else None,
                    "label": _str_or_none(method.get("label"))} if isinstance(method, dict) else None),
        "created_at": _str_or_none(raw.get("created_at")),
        "updated_at": _str_or_none(raw.get("updated_at")),
        "expired_at": _str_or_none(raw.get("expired_at")),
        "approved_at": _str_or_none(raw.get("approved_at")),
        "attachments": len(attachments) if isinstance(attachments, list) else 0,
        "trader": ({"id": trader.get("id") if isinstance(trader.get("id"), int) else None,
                    "name": _str_or_none(trader.get("name"))} if isinstance(trader, dict) else None),
    }
    if isinstance(raw.get("statusLabel"), str):
        out["status_label"] = raw["statusLabel"]
    return out


def payout_of(response: Any) -> dict[str, Any]:
    """``response.payout`` or (details endpoint variant) ``response`` itself."""
    if isinstance(response, dict) and isinstance(response.get("payout"), dict):
        return response["payout"]
    return response


def page_of(response: Any) -> tuple[list[Any], dict[str, int | None]]:
    """Accept both paginator shapes: Laravel's flat one and ``data`` + ``meta``; also a bare list."""
    pag = response.get("payouts") if isinstance(response, dict) else None
    if isinstance(pag, list):
        return pag, {"current_page": 1, "last_page": 1, "per_page": len(pag), "total": len(pag)}
    if not isinstance(pag, dict) or not isinstance(pag.get("data"), list):
        raise ScriptError("bad_response", "Gate payout list has no payouts.data array", retryable=False)
    source = pag.get("meta") if isinstance(pag.get("meta"), dict) else pag

    def field(name: str) -> int | None:
        value = source.get(name)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    return pag["data"], {k: field(k) for k in ("current_page", "last_page", "per_page", "total")}
