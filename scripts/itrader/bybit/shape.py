"""Turning Bybit's camelCase results into the scripts' stable snake_case shapes.

Bybit mixes types freely (ids and money as strings, statuses as ints, some counters as either), so every field
goes through a small coercion that never raises: a value that cannot be read becomes ``None`` rather than an
exception or a silently wrong number.  Money always leaves as a decimal string.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

AD_STATUS = {10: "online", 20: "offline", 30: "completed"}
ORDER_STATUS = {
    5: "waiting_for_chain", 10: "waiting_for_payment", 20: "waiting_for_release", 30: "appealing",
    40: "cancelled", 50: "completed", 60: "paying", 70: "pay_failed", 80: "exception_cancelled",
    90: "waiting_for_token", 100: "objectioning", 110: "waiting_for_objection",
}
MSG_TYPE = {0: "system", 1: "text", 2: "image", 5: "admin_text", 6: "admin_image", 7: "pdf", 8: "video"}
SBP_TYPE, TINKOFF_TYPE = "382", "75"
_PHONE = re.compile(r"^\+?[78]?[\s(-]*9\d{2}[\s)-]*\d{3}[\s-]*\d{2}[\s-]*\d{2}$")


def dec(value: Any) -> str | None:
    """A decimal string (normalised, no exponent) or None for "", null and garbage."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        out = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    if not out.is_finite():
        return None
    text = format(out, "f")
    return text


def integer(value: Any) -> int | None:
    if isinstance(value, bool) or value is None or value == "":
        return None
    try:
        return int(str(value).strip())
    except ValueError:
        try:
            return int(Decimal(str(value).strip()))
        except (InvalidOperation, ValueError):
            return None


def text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)


def ident(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def flag(value: Any) -> bool | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes")


def iso_ms(value: Any) -> str | None:
    """Bybit ms-epoch string -> ISO 8601 UTC; "0" and junk -> None."""
    ms = integer(value)
    if not ms:
        return None
    try:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


def iso_s(value: Any) -> str | None:
    """Seconds-epoch (``registerTime``, ``lastLogoutTime``, ``time_now``) -> ISO 8601 UTC."""
    try:
        secs = float(str(value))
    except (TypeError, ValueError):
        return None
    if secs <= 0:
        return None
    try:
        return datetime.fromtimestamp(secs, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


def side_name(value: Any) -> str | None:
    return {0: "buy", 1: "sell"}.get(integer(value))  # type: ignore[arg-type]


def as_dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# -- payment methods ------------------------------------------------------------------------------------------


def payment_kind(method: dict[str, Any]) -> str:
    """"sbp" | "tinkoff" | "other": payment name first, then bank name, then the type id, then a phone number."""
    config = as_dict(method.get("paymentConfigVo") or method.get("paymentConfig"))
    for source in (str(config.get("paymentName") or ""), str(method.get("bankName") or "")):
        low = source.lower()
        if "tinkoff" in low or "тинькофф" in low or "t-bank" in low or "т-банк" in low or "tbank" in low:
            return "tinkoff"
        if "sbp" in low or "система быстрых платежей" in low or low.strip() == "сбп":
            return "sbp"
    ptype = str(method.get("paymentType") or config.get("paymentType") or "")
    if ptype == SBP_TYPE:
        return "sbp"
    if ptype == TINKOFF_TYPE:
        return "tinkoff"
    if _PHONE.match(str(method.get("accountNo") or "").strip()):
        return "sbp"
    return "other"


def payment_method(method: dict[str, Any]) -> dict[str, Any]:
    config = as_dict(method.get("paymentConfigVo") or method.get("paymentConfig"))
    return {
        "id": str(method.get("id")),
        "payment_type": ident(method.get("paymentType") or config.get("paymentType")),
        "name": text(config.get("paymentName")),
        "bank_name": text(method.get("bankName")),
        "account_no": text(method.get("accountNo")),
        "real_name": text(method.get("realName")),
        "kind": payment_kind(method),
        "online": flag(method.get("online")),
    }


def payment_methods(raw: Any) -> list[dict[str, Any]]:
    """The account's own methods, normalised; the internal Balance method (id "-1") is skipped."""
    items = raw if isinstance(raw, list) else as_list(as_dict(raw).get("items"))
    return [payment_method(m) for m in items if isinstance(m, dict) and str(m.get("id")) not in ("-1", "None")]


# -- account ----------------------------------------------------------------------------------------------------


def account(info: Any) -> dict[str, Any]:
    d = as_dict(info)
    return {
        "user_id": ident(d.get("userId")),
        "account_id": ident(d.get("accountId")),
        "nick_name": text(d.get("nickName")),
        "real_name": text(d.get("realName")),
        "real_name_en": text(d.get("realNameEn")),
        "user_type": text(d.get("userType")),
        "is_online": flag(d.get("isOnline")),
        "last_logout_time": iso_s(d.get("lastLogoutTime")),
        "kyc_level": text(d.get("kycLevel")),
        "kyc_country_code": text(d.get("kycCountryCode")),
        "auth_status": integer(d.get("authStatus")),
        "vip_level": integer(d.get("vipLevel")),
        "account_create_days": integer(d.get("accountCreateDays")),
        "first_trade_days": integer(d.get("firstTradeDays")),
        "register_time": iso_s(d.get("registerTime")),
        "total_finish_count": integer(d.get("totalFinishCount")),
        "total_finish_sell_count": integer(d.get("totalFinishSellCount")),
        "total_finish_buy_count": integer(d.get("totalFinishBuyCount")),
        "recent_finish_count": integer(d.get("recentFinishCount")),
        "recent_rate": dec(d.get("recentRate")),
        "average_release_time": dec(d.get("averageReleaseTime")),
        "average_transfer_time": dec(d.get("averageTransferTime")),
        "recent_trade_amount": dec(d.get("recentTradeAmount")),
        "total_trade_amount": dec(d.get("totalTradeAmount")),
        "good_appraise_rate": dec(d.get("goodAppraiseRate")),
        "good_appraise_count": integer(d.get("goodAppraiseCount")),
        "bad_appraise_count": integer(d.get("badAppraiseCount")),
        "blocked": text(d.get("blocked")),
        "privileges": [str(p) for p in as_list(d.get("userCurPrivilege"))],
        "open_api_switch": integer(d.get("openApiSwitch")),
    }


# -- ads --------------------------------------------------------------------------------------------------------


def payment_term(term: Any) -> dict[str, Any]:
    t = as_dict(term)
    return {
        "id": ident(t.get("id")),
        "payment_type": ident(t.get("paymentType")),
        "real_name": text(t.get("realName")),
        "bank_name": text(t.get("bankName")),
        "account_no": text(t.get("accountNo")),
        "kind": payment_kind(t),
    }


def ad(item: Any) -> dict[str, Any]:
    d = as_dict(item)
    status = integer(d.get("status"))
    prefs = {str(k): (v if isinstance(v, (list, dict)) else str(v)) for k, v in as_dict(d.get("tradingPreferenceSet")).items()}
    terms = [payment_term(t) for t in as_list(d.get("paymentTerms"))]
    return {
        "ad_id": str(d.get("id")),
        "side": side_name(d.get("side")),
        "token": text(d.get("tokenId")),
        "currency": text(d.get("currencyId")),
        "price_type": integer(d.get("priceType")),
        "price": dec(d.get("price")),
        "premium": dec(d.get("premium")),
        "min_amount": dec(d.get("minAmount")),
        "max_amount": dec(d.get("maxAmount")),
        "quantity": dec(d.get("quantity")),
        "last_quantity": dec(d.get("lastQuantity")),
        "frozen_quantity": dec(d.get("frozenQuantity")),
        "executed_quantity": dec(d.get("executedQuantity")),
        "payment_period": integer(d.get("paymentPeriod")),
        "item_type": text(d.get("itemType")),
        "remark": text(d.get("remark")),
        "status": status,
        "status_name": AD_STATUS.get(status or -1, "unknown"),
        "hidden_reason": text(d.get("hiddenReason")) or None,
        "payment_types": [str(p) for p in as_list(d.get("payments"))],
        "payment_ids": [t["id"] for t in terms if t["id"]],
        "payment_terms": terms,
        "trading_preference_set": prefs,
        "user_id": ident(d.get("userId")),
        "nick_name": text(d.get("nickName")),
        "created_at": iso_ms(d.get("createDate")),
        "updated_at": iso_ms(d.get("updateDate")),
        "version": integer(d.get("version")),
    }


def market_ad(item: Any) -> dict[str, Any]:
    d = as_dict(item)
    return {
        "ad_id": ident(d.get("id")),
        "price": dec(d.get("price")),
        "nick_name": text(d.get("nickName")),
        "min_amount": dec(d.get("minAmount")),
        "max_amount": dec(d.get("maxAmount")),
        "last_quantity": dec(d.get("lastQuantity")),
    }


# -- orders -----------------------------------------------------------------------------------------------------


def order(item: Any, detail: bool = False) -> dict[str, Any]:
    d = as_dict(item)
    status = integer(d.get("status"))
    out: dict[str, Any] = {
        "order_id": str(d.get("id")),
        "side": side_name(d.get("side")),
        "status": status,
        "status_name": ORDER_STATUS.get(status or -1, "unknown"),
        "order_type": text(d.get("orderType")),
        "token": text(d.get("tokenId")),
        "currency": text(d.get("currencyId")),
        "amount": dec(d.get("amount")),
        "price": dec(d.get("price")),
        "quantity": dec(d.get("quantity") if d.get("quantity") not in (None, "") else d.get("notifyTokenQuantity")),
        "fee": dec(d.get("fee")),
        "item_id": ident(d.get("itemId")),
        "user_id": ident(d.get("userId")),
        "target_user_id": ident(d.get("targetUserId")),
        "target_nick_name": text(d.get("targetNickName")),
        "seller_real_name": text(d.get("sellerRealName")),
        "buyer_real_name": text(d.get("buyerRealName")),
        "created_at": iso_ms(d.get("createDate")),
        "transfer_last_seconds": integer(d.get("transferLastSeconds")),
        "appeal_last_seconds": integer(d.get("appealLastSeconds")),
        "unread_count": integer(d.get("unreadMsgCount")),
    }
    if detail:
        confirmed = as_dict(d.get("confirmedPayTerm"))
        out.update({
            "remark": text(d.get("remark")),
            "maker_user_id": ident(d.get("makerUserId")),
            "target_account_id": ident(d.get("targetAccountId")),
            "payment_type": ident(d.get("paymentType")),
            "paid_at": iso_ms(d.get("transferDate")),
            "payment_terms": [payment_term(t) for t in as_list(d.get("paymentTermList"))],
            "confirmed_payment": payment_term(confirmed) if confirmed else None,
            "cancel_reason": text(d.get("cancelReason")) or None,
            "can_appeal": flag(d.get("canAppeal")),
            "appeal_content": text(d.get("appealContent")) or None,
            "order_finish_minute": integer(d.get("orderFinishMinute")),
        })
    return out


# -- chat -------------------------------------------------------------------------------------------------------


def message(msg: Any, own_user_id: str | None) -> dict[str, Any]:
    d = as_dict(msg)
    msg_type = integer(d.get("msgType"))
    role = text(d.get("roleType"))
    sender = ident(d.get("userId"))
    is_system = msg_type == 0 or (role or "").lower() == "sys"
    return {
        "id": ident(d.get("id")),
        "message": text(d.get("message")) or "",
        "content_type": text(d.get("contentType")),
        "msg_type": msg_type,
        "msg_type_name": MSG_TYPE.get(msg_type if msg_type is not None else -1, "unknown"),
        "msg_code": integer(d.get("msgCode")),
        "role_type": role,
        "user_id": sender,
        "nick_name": text(d.get("nickName")),
        "file_name": text(d.get("fileName")) or None,
        "msg_uuid": text(d.get("msgUuid")) or None,
        "created_at": iso_ms(d.get("createDate")),
        "is_read": flag(d.get("isRead") if d.get("isRead") is not None else d.get("read")),
        "is_system": is_system,
        "is_admin": msg_type in (5, 6),
        "is_ours": bool(own_user_id) and not is_system and sender == own_user_id,
    }
