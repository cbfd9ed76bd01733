"""Simulated Bybit V5 P2P REST API (every path pybit 5.17 calls) plus the ``/sandbox/bybit/`` control API.

Request pipeline for ``POST /v5/p2p/...`` (order matters and mirrors what clients observe):
IP limit (HTTP 403) -> route (HTTP 404) -> auth (HTTP 401 without headers; 10003 unknown key, 10002 time
window, 10004 bad signature) -> P2P permission (912000014) -> per-UID read/write limit (10006) -> injected
``bybit_code`` fault -> strict request typing (10001) -> the venue state.  Every reply carries the rate-limit
headers with a future reset timestamp.

Replies use the legacy P2P envelope ``{ret_code, ret_msg, result, ext_code, ext_info, time_now}`` with
``time_now`` as "<sec>.<micro>", ``result: {}`` on errors and ``ext_map`` on ``item/create``; the upload
answers ``{result, token, ret_code, ret_msg: "成功"}`` without ``time_now``.

Typing is strict like the real server: values the docs list as strings must be JSON strings (a number gives
10001), while the order lists take ``page``/``size``/``status``/``side`` as JSON integers.

Chat: ``order/message/listpage`` serves the nested form ``result: {"result": [...]}``, NEWEST message first,
``currentPage`` counting from 1 and ``size`` at most 30.

Control API (JSON, for tests and the demo; no auth):
  POST  /sandbox/bybit/accounts        {"count":1,"balance":"100000","methods":["382","75"],"p2p":true,
                                        "need_security_risk":false,"nick":"...","real_name":"..."}
                                        -> {"accounts":[{uid, api_key, api_secret, payment_methods, ...}]}
  GET   /sandbox/bybit/accounts        every account (no secrets); GET /sandbox/bybit/accounts/{uid}
  PATCH /sandbox/bybit/accounts/{uid}  {"p2p": bool, "need_security_risk": bool, "balance": "123.45"}
  GET   /sandbox/bybit/ads[?uid=]      ground truth of every ad (removed ones too); PATCH .../ads/{id} {"status":20}
  GET   /sandbox/bybit/orders[?uid=]   ground truth of every order; GET /sandbox/bybit/orders/{id}
  POST  /sandbox/bybit/orders          {"item_id":"...", "buyer_nick":"opt", "buyer_uid":"opt", "amount":"opt"}
                                        -> {"order_id", "buyer_uid", ...}: a buyer takes the ad (full amount)
  POST  /sandbox/bybit/orders/{id}/pay | /cancel | /appeal      the buyer side of an order
  POST  /sandbox/bybit/orders/{id}/messages  {"text": "..."} or {"file_b64": "...", "filename": "r.pdf"}
  GET   /sandbox/bybit/orders/{id}/messages  oldest first
  POST  /sandbox/bybit/limits          {"reads_per_s","writes_per_s","ip_per_5s","ip_ban_s","edit_budget",
                                        "edit_window_s","reset": true} -> the current limits
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from sandbox.bybit.auth import HttpRefusal, RateLimited, RateLimiter, authenticate
from sandbox.bybit.state import (
    MSG_TYPES,
    ORDER_PENDING_STATUSES,
    P2P_PARAM,
    PARAM_ERROR,
    UPLOAD_PREFIX,
    Account,
    Ad,
    BybitVenue,
    Order,
    VenueError,
    _ad_symbol_info,
    fmt,
    ms,
)

CREDENTIALS = Path(__file__).resolve().parents[2] / "test_data" / "bybit_credentials.json"
WRITE_PATHS = {"item/create", "item/update", "item/cancel", "order/pay", "order/finish", "order/message/send",
               "oss/upload_file", "chat/message/send"}
FAULT_MESSAGES = {10000: "Server Timeout", 10006: "Too many visits!", 10016: "Server error.",
                  10002: "invalid request, please check your server timestamp or recv_window param",
                  912000014: "permission denied", 10005: "Permission denied, please check your API key "
                  "permissions."}
MEDIA = {"pdf": "application/pdf", "png": "image/png", "jpg": "image/jpeg", "jpeg": "image/jpeg",
         "mp4": "video/mp4"}

Json = dict[str, Any]


# -- envelopes ------------------------------------------------------------------------------------------------
def _dump(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_default).encode()


def _default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return fmt(value)
    raise TypeError(type(value).__name__)


def envelope(code: int, msg: str, result: Any, extra: Json | None = None) -> Json:
    ext_info: Json = {"fiat_error_config": ""} if code >= 900_000_000 else {}
    env = {"ret_code": code, "ret_msg": msg, "result": result if code == 0 else {}, "ext_code": "",
           "ext_info": ext_info, "time_now": f"{time.time():.6f}"}
    env.update(extra or {})
    return env


def _reply(body: Json, headers: dict[str, str], status: int = 200) -> Response:
    return Response(_dump(body), status_code=status, media_type="application/json", headers=headers)


# -- strict typing --------------------------------------------------------------------------------------------
def s_field(body: Json, name: str, required: bool = True) -> str | None:
    """A field the API documents as a string; a JSON number (or anything else) is 10001."""
    if name not in body or body[name] is None:
        if required:
            raise VenueError(PARAM_ERROR, f"params error: {name} is required")
        return None
    value = body[name]
    if not isinstance(value, str):
        raise VenueError(PARAM_ERROR, f"params error: {name} must be a string")
    return value


def i_field(body: Json, name: str, required: bool = True) -> int | None:
    """A field the order lists take as a JSON integer."""
    if name not in body or body[name] is None:
        if required:
            raise VenueError(PARAM_ERROR, f"params error: {name} is required")
        return None
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise VenueError(PARAM_ERROR, f"params error: {name} must be an integer")
    return value


def dec_field(body: Json, name: str) -> Decimal:
    text = s_field(body, name)
    try:
        value = Decimal(text or "")
    except InvalidOperation:
        raise VenueError(PARAM_ERROR, f"params error: {name} is not a number") from None
    if not value.is_finite():
        raise VenueError(PARAM_ERROR, f"params error: {name} is not a number")
    return value


def int_text(body: Json, name: str, default: int, lo: int, hi: int, required: bool = False) -> int:
    """A count sent as a string ("1", "10")."""
    text = s_field(body, name, required)
    if text is None or text == "":
        return default
    if not text.isdigit() or not lo <= int(text) <= hi:
        raise VenueError(PARAM_ERROR, f"params error: {name} must be between {lo} and {hi}")
    return int(text)


def choice(body: Json, name: str, allowed: tuple[str, ...]) -> str:
    value = s_field(body, name) or ""
    if value not in allowed:
        raise VenueError(PARAM_ERROR, f"params error: {name} must be one of {', '.join(allowed)}")
    return value


def payment_ids(body: Json) -> list[str]:
    ids = body.get("paymentIds")
    if not isinstance(ids, list) or not all(isinstance(x, str) for x in ids):
        raise VenueError(PARAM_ERROR, "params error: paymentIds must be an array of strings")
    return ids


def preferences(body: Json) -> Json:
    prefs = body.get("tradingPreferenceSet")
    if not isinstance(prefs, dict):
        raise VenueError(PARAM_ERROR, "params error: tradingPreferenceSet must be an object")
    for key, value in prefs.items():
        ok = isinstance(value, str) or (isinstance(value, list) and all(isinstance(x, str) for x in value))
        if not ok:
            raise VenueError(PARAM_ERROR, f"params error: tradingPreferenceSet.{key} must be a string")
    return prefs


def ad_terms(body: Json) -> Json:
    """The fields shared by item/create and item/update, validated and converted."""
    remark = s_field(body, "remark") or ""
    if len(remark) > 900:
        raise VenueError(PARAM_ERROR, "params error: remark exceeds 900 characters")
    period_text = s_field(body, "paymentPeriod") or ""
    if not period_text.isdigit() or not 15 <= int(period_text) <= 120:
        raise VenueError(PARAM_ERROR, "params error: paymentPeriod must be 15..120 minutes")
    return {
        "price_type": int(choice(body, "priceType", ("0", "1"))),
        "premium": s_field(body, "premium") or "",
        "price": dec_field(body, "price"),
        "min_amount": dec_field(body, "minAmount"),
        "max_amount": dec_field(body, "maxAmount"),
        "quantity": dec_field(body, "quantity"),
        "payment_period": int(period_text),
        "remark": remark,
        "payment_ids": payment_ids(body),
        "trading_preferences": preferences(body),
    }


# -- views ----------------------------------------------------------------------------------------------------
def ad_view(venue: BybitVenue, ad: Ad) -> Json:
    owner = venue.accounts[ad.uid]
    terms = [m for pid in ad.payment_ids for m in owner.methods if m.id == pid]
    prefs = {"hasUnPostAd": 0, "isKyc": 0, "isEmail": 0, "isMobile": 0, "hasRegisterTime": 0,
             "registerTimeThreshold": 0, "orderFinishNumberDay30": 0, "completeRateDay30": "0",
             "nationalLimit": "", "hasOrderFinishNumberDay30": 0, "hasCompleteRateDay30": 0,
             "hasNationalLimit": 0}
    prefs.update(ad.trading_preferences)
    return {
        "id": ad.id, "accountId": owner.account_id, "userId": owner.uid, "nickName": owner.nick,
        "tokenId": ad.token, "tokenName": ad.token, "currencyId": ad.currency, "side": ad.side,
        "priceType": ad.price_type, "price": fmt(ad.price), "premium": ad.premium,
        "lastQuantity": fmt(ad.last_quantity), "quantity": fmt(ad.quantity),
        "frozenQuantity": fmt(ad.frozen_quantity), "executedQuantity": fmt(ad.executed_quantity),
        "minAmount": fmt(ad.min_amount), "maxAmount": fmt(ad.max_amount), "remark": ad.remark,
        "status": ad.status, "createDate": ms(ad.created_at), "payments": [m.payment_type for m in terms],
        "orderNum": ad.order_num, "finishNum": ad.finish_num, "recentOrderNum": ad.order_num,
        "recentExecuteRate": 100 if not ad.order_num else int(100 * ad.finish_num / ad.order_num),
        "fee": "0", "isOnline": True, "lastLogoutTime": str(int(time.time()) - 60), "blocked": "",
        "makerContact": False, "symbolInfo": _ad_symbol_info(ad.token, ad.currency),
        "tradingPreferenceSet": prefs, "version": 1, "updateDate": ms(ad.updated_at),
        "feeRate": "0", "paymentTerms": [m.to_api() for m in terms], "paymentPeriod": ad.payment_period,
        "itemType": ad.item_type, "hiddenReason": ad.hidden_reason,
    }


def order_item(venue: BybitVenue, order: Order, viewer: str, now: float) -> Json:
    seller, buyer = venue.accounts[order.seller_uid], venue.accounts[order.buyer_uid]
    target = buyer if viewer == seller.uid else seller
    return {
        "id": order.id, "side": 1 if viewer == seller.uid else 0, "tokenId": order.token, "orderType": "ORIGIN",
        "amount": fmt(order.amount), "currencyId": order.currency, "price": fmt(order.price),
        "notifyTokenQuantity": fmt(order.quantity), "notifyTokenId": order.token, "fee": "0",
        "targetNickName": target.nick, "targetUserId": target.uid, "status": order.status,
        "selfUnreadMsgCount": "0", "createDate": ms(order.created_at),
        "transferLastSeconds": str(venue.transfer_last_seconds(order, now)), "appealLastSeconds": "0",
        "userId": viewer, "sellerRealName": seller.real_name, "buyerRealName": buyer.real_name,
        "judgeInfo": {"autoJudgeUnlockTime": "", "dissentResult": "", "preDissent": "", "postDissent": ""},
        "unreadMsgCount": "0", "extension": {"isDelayWithdraw": False, "delayTime": "0", "startTime": "0"},
        "bulkOrderFlag": False,
    }


def order_detail(venue: BybitVenue, order: Order, viewer: str, now: float) -> Json:
    item = order_item(venue, order, viewer, now)
    seller = venue.accounts[order.seller_uid]
    target = venue.accounts[order.buyer_uid if viewer == seller.uid else order.seller_uid]
    terms = [m.to_api() for m in venue.payment_terms(order)]
    confirmed = next((t for t in terms if t["id"] == order.payment_id), None)
    ad = venue.ad(order.item_id)
    item.update({
        "itemId": order.item_id, "makerUserId": seller.uid, "targetAccountId": target.account_id,
        "targetConnectInformation": "", "targetUserType": "PERSONAL", "targetUserMaskId": f"s{target.uid[-6:]}",
        "remark": ad.remark, "orderSource": "P2P", "realOrderStatus": order.status,
        "quantity": fmt(order.quantity), "payCode": "", "paymentType": int(order.payment_type or 0),
        "transferDate": ms(order.paid_at) if order.paid_at else "0", "paymentTermList": terms,
        "confirmedPayTerm": confirmed or {}, "paymentTermResult": confirmed or {},
        "appealContent": "", "appealType": "", "appealNickName": "", "canAppeal": "1" if order.status == 20 else "0",
        "totalAppealTimes": "3", "appealedTimes": str(order.appeals), "appealFlowStatus": "",
        "appealSubStatus": "", "orderFinishMinute": 10, "makerFee": "0", "takerFee": "0",
        "tokenBalance": "0", "fiatBalance": "0", "updateDate": ms(order.updated_at),
        "cancelReason": order.cancel_reason, "needBuyerExamineCancel": False,
        "needSellerExamineCancel": False, "couponTokenQuantity": "",
    })
    return item


# -- P2P handlers ---------------------------------------------------------------------------------------------
Handler = Callable[[BybitVenue, Account, Json], Any]


def h_personal_info(venue: BybitVenue, acc: Account, body: Json) -> Any:
    return acc.to_api()


def h_payment_list(venue: BybitVenue, acc: Account, body: Json) -> Any:
    return [m.to_api() for m in acc.methods]


def h_counterparty(venue: BybitVenue, acc: Account, body: Json) -> Any:
    uid = s_field(body, "originalUid") or ""
    order = venue.order(s_field(body, "orderId") or "")
    if acc.uid not in (order.buyer_uid, order.seller_uid) or uid not in (order.buyer_uid, order.seller_uid):
        raise VenueError(P2P_PARAM, "P2P parameter exception")
    return venue.account(uid).to_api()


def h_online(venue: BybitVenue, acc: Account, body: Json) -> Any:
    token = s_field(body, "tokenId") or ""
    currency = s_field(body, "currencyId") or ""
    side = choice(body, "side", ("0", "1"))
    page = int_text(body, "page", 1, 1, 10_000)
    size = int_text(body, "size", 10, 1, 300)
    payments = body.get("payment") or []
    if not isinstance(payments, list) or not all(isinstance(p, str) for p in payments):
        raise VenueError(PARAM_ERROR, "params error: payment must be an array of strings")
    market = getattr(venue.world, "bybit_market", None)
    if market is None or token != "USDT" or currency != "RUB":
        return {"count": 0, "items": []}
    count, items = market.page(side, payments, page, size)
    return {"count": count, "items": items}


def h_create(venue: BybitVenue, acc: Account, body: Json) -> Any:
    token = s_field(body, "tokenId") or ""
    currency = s_field(body, "currencyId") or ""
    if token not in ("USDT", "USDC", "BTC", "ETH") or not (currency.isalpha() and len(currency) == 3):
        raise VenueError(PARAM_ERROR, "params error: unsupported tokenId/currencyId")
    side = int(choice(body, "side", ("0", "1")))
    item_type = choice(body, "itemType", ("ORIGIN", "BULK"))
    ad = venue.create_ad(acc.uid, side=side, token=token, currency=currency, item_type=item_type,
                         **ad_terms(body))
    return {"itemId": ad.id, "securityRiskToken": "", "riskTokenType": "challenge", "riskVersion": "1",
            "needSecurityRisk": acc.need_security_risk}


def h_personal_list(venue: BybitVenue, acc: Account, body: Json) -> Any:
    item_id = s_field(body, "itemId", False)
    status = s_field(body, "status", False)
    side = s_field(body, "side", False)
    token = s_field(body, "tokenId", False)
    currency = s_field(body, "currencyId", False)
    page = int_text(body, "page", 1, 1, 10_000)
    size = int_text(body, "size", 10, 1, 50)
    if status not in (None, "", "1", "2"):
        raise VenueError(PARAM_ERROR, "params error: status must be 1 (sold out) or 2 (available)")
    ads = [a for a in venue.ads() if a.uid == acc.uid and not a.removed]
    if item_id:
        ads = [a for a in ads if a.id == item_id]
    if status == "1":
        ads = [a for a in ads if a.status == 30]
    elif status == "2":
        ads = [a for a in ads if a.status in (10, 20)]
    if side:
        ads = [a for a in ads if str(a.side) == side]
    if token:
        ads = [a for a in ads if a.token == token]
    if currency:
        ads = [a for a in ads if a.currency == currency]
    ads.sort(key=lambda a: a.created_at, reverse=True)
    chunk = ads[(page - 1) * size: page * size]
    return {"count": len(ads), "items": [ad_view(venue, a) for a in chunk], "hiddenFlag": False}


def h_info(venue: BybitVenue, acc: Account, body: Json) -> Any:
    return ad_view(venue, venue.ad(s_field(body, "itemId") or ""))


def h_update(venue: BybitVenue, acc: Account, body: Json) -> Any:
    item_id = s_field(body, "id") or ""
    action = choice(body, "actionType", ("MODIFY", "ACTIVE"))
    venue.update_ad(acc.uid, item_id, action, **ad_terms(body))
    return {"securityRiskToken": "", "riskTokenType": "challenge", "riskVersion": "1",
            "needSecurityRisk": acc.need_security_risk}


def h_cancel(venue: BybitVenue, acc: Account, body: Json) -> Any:
    venue.remove_ad(acc.uid, s_field(body, "itemId") or "")
    return None


def _orders(venue: BybitVenue, acc: Account, body: Json, pending: bool) -> Any:
    page = i_field(body, "page")
    size = i_field(body, "size")
    status = i_field(body, "status", False)
    side = i_field(body, "side", False)
    token = s_field(body, "tokenId", False)
    begin = s_field(body, "beginTime", False)
    end = s_field(body, "endTime", False)
    assert page is not None and size is not None
    if page < 1 or not 1 <= size <= 30:
        raise VenueError(PARAM_ERROR, "params error: page >= 1, size 1..30")
    for name, text in (("beginTime", begin), ("endTime", end)):
        if text and not text.isdigit():
            raise VenueError(PARAM_ERROR, f"params error: {name} must be a ms timestamp")
    now = time.time()
    found = [o for o in venue.orders() if acc.uid in (o.buyer_uid, o.seller_uid)]
    if pending:
        found = [o for o in found if o.status in ORDER_PENDING_STATUSES]
    if status is not None:
        found = [o for o in found if o.status == status]
    if side is not None:
        found = [o for o in found if (1 if o.seller_uid == acc.uid else 0) == side]
    if token:
        found = [o for o in found if o.token == token]
    lo = int(begin) / 1000 if begin else now - 90 * 86400
    hi = int(end) / 1000 if end else float("inf")
    found = [o for o in found if lo <= o.created_at <= hi]
    found.sort(key=lambda o: o.created_at, reverse=True)
    chunk = found[(page - 1) * size: page * size]
    return {"count": len(found), "items": [order_item(venue, o, acc.uid, now) for o in chunk]}


def h_orders(venue: BybitVenue, acc: Account, body: Json) -> Any:
    return _orders(venue, acc, body, pending=False)


def h_pending(venue: BybitVenue, acc: Account, body: Json) -> Any:
    return _orders(venue, acc, body, pending=True)


def _own_order(venue: BybitVenue, acc: Account, body: Json) -> Order:
    order = venue.order(s_field(body, "orderId") or "")
    if acc.uid not in (order.buyer_uid, order.seller_uid):
        raise VenueError(P2P_PARAM, "order does not exist")
    return order


def h_order_info(venue: BybitVenue, acc: Account, body: Json) -> Any:
    return order_detail(venue, _own_order(venue, acc, body), acc.uid, time.time())


def h_pay(venue: BybitVenue, acc: Account, body: Json) -> Any:
    order_id = s_field(body, "orderId") or ""
    ptype = s_field(body, "paymentType") or ""
    pid = s_field(body, "paymentId") or ""
    venue.mark_paid(order_id, acc.uid, ptype, pid)
    return None


def h_finish(venue: BybitVenue, acc: Account, body: Json) -> Any:
    venue.release(s_field(body, "orderId") or "", acc.uid)
    return None


def h_listpage(venue: BybitVenue, acc: Account, body: Json) -> Any:
    size = int_text(body, "size", 30, 1, 30, required=True)
    page = int_text(body, "currentPage", 1, 1, 100_000)
    order = _own_order(venue, acc, body)
    msgs = list(reversed(venue.messages(order.id)))
    return {"result": msgs[(page - 1) * size: page * size]}


def h_send(venue: BybitVenue, acc: Account, body: Json) -> Any:
    message = s_field(body, "message") or ""
    content_type = s_field(body, "contentType") or ""
    order_id = s_field(body, "orderId") or ""
    msg_uuid = s_field(body, "msgUuid") or ""
    file_name = s_field(body, "fileName", False) or ""
    if content_type not in MSG_TYPES:
        raise VenueError(PARAM_ERROR, "params error: contentType must be str, pic, pdf or video")
    if not message or not msg_uuid:
        raise VenueError(PARAM_ERROR, "params error: message and msgUuid must not be empty")
    venue.send_message(order_id, acc.uid, message, content_type, msg_uuid, file_name)
    return None


def h_session_list(venue: BybitVenue, acc: Account, body: Json) -> Any:
    return {"chatSession": []}


def h_session_messages(venue: BybitVenue, acc: Account, body: Json) -> Any:
    return {"result": []}


def h_session_send(venue: BybitVenue, acc: Account, body: Json) -> Any:
    raise VenueError(P2P_PARAM, "chat session does not exist")


ROUTES: dict[str, Handler] = {
    "user/personal/info": h_personal_info,
    "user/payment/list": h_payment_list,
    "user/order/personal/info": h_counterparty,
    "item/online": h_online,
    "item/create": h_create,
    "item/personal/list": h_personal_list,
    "item/info": h_info,
    "item/update": h_update,
    "item/cancel": h_cancel,
    "order/simplifyList": h_orders,
    "order/pending/simplifyList": h_pending,
    "order/info": h_order_info,
    "order/pay": h_pay,
    "order/finish": h_finish,
    "order/message/listpage": h_listpage,
    "order/message/send": h_send,
    "oss/upload_file": h_session_send,  # never called: the multipart upload is handled before JSON parsing
    "chat/session/list": h_session_list,
    "chat/message/listpage": h_session_messages,
    "chat/message/send": h_session_send,
}


def parse_multipart(content_type: str, body: bytes) -> tuple[str, bytes] | None:
    """The (filename, bytes) of the ``upload_file`` part, whatever Content-Type the part claims."""
    marker = "boundary="
    if "multipart/form-data" not in content_type or marker not in content_type:
        return None
    boundary = content_type.split(marker, 1)[1].split(";", 1)[0].strip().strip('"').encode()
    for part in body.split(b"--" + boundary):
        if b"\r\n\r\n" not in part:
            continue
        head, data = part.split(b"\r\n\r\n", 1)
        if data.endswith(b"\r\n"):
            data = data[:-2]
        head_text = head.decode("utf-8", "replace")
        if 'name="upload_file"' not in head_text:
            continue
        filename = "upload"
        if 'filename="' in head_text:
            filename = head_text.split('filename="', 1)[1].split('"', 1)[0]
        return filename, data
    return None


# -- install --------------------------------------------------------------------------------------------------
def install(app: FastAPI, world: Any) -> None:
    venue = BybitVenue(world)
    limiter = RateLimiter()
    world.bybit = venue
    venue.limiter = limiter
    if CREDENTIALS.exists():
        creds = json.loads(CREDENTIALS.read_text())
        venue.create_account(nick="itrader_sandbox", real_name="Petrov Petr", api_key=creds["api_key"],
                             api_secret=creds["api_secret"], balance=Decimal("1000000"))
    world.on_tick(venue.tick)

    def handle(sub: str, request: Request, body: bytes) -> Response:
        kind = "write" if sub in WRITE_PATHS else "read"
        headers = limiter.idle_headers(kind)
        ip = request.client.host if request.client else "unknown"
        try:
            limiter.check_ip(ip)
        except HttpRefusal as exc:
            return Response(exc.text, status_code=exc.status, media_type="text/plain", headers=headers)
        if sub not in ROUTES:
            return Response("404 page not found", status_code=404, media_type="text/plain", headers=headers)
        try:
            acc = authenticate(venue, {k.lower(): v for k, v in request.headers.items()}, body)
            if not acc.p2p:
                raise VenueError(912000014, "permission denied")
            headers = limiter.check_uid(acc.uid, kind)
            fault = world.faults.take(f"/v5/p2p/{sub}", ("bybit_code",))
            if fault is not None:
                code = fault.code or 10016
                if code == 10006:
                    headers = limiter.idle_headers(kind)
                    headers["X-Bapi-Limit-Status"] = "0"
                raise VenueError(code, FAULT_MESSAGES.get(code, "simulated error"))
            if sub == "oss/upload_file":
                return upload(acc, request, body, headers)
            try:
                data = json.loads(body or b"{}", parse_float=Decimal)
            except (ValueError, UnicodeDecodeError):
                raise VenueError(PARAM_ERROR, "params error: body is not JSON") from None
            if not isinstance(data, dict):
                raise VenueError(PARAM_ERROR, "params error: body must be a JSON object")
            with world.lock:
                result = ROUTES[sub](venue, acc, data)
            extra = {"ext_map": {}} if sub == "item/create" else None
            return _reply(envelope(0, "SUCCESS", result, extra), headers)
        except HttpRefusal as exc:
            return Response(exc.text, status_code=exc.status, media_type="text/plain", headers=headers)
        except RateLimited as exc:
            return _reply(envelope(exc.code, exc.msg, None), exc.headers)
        except VenueError as exc:
            return _reply(envelope(exc.code, exc.msg, None), headers)

    def upload(acc: Account, request: Request, body: bytes, headers: dict[str, str]) -> Response:
        part = parse_multipart(request.headers.get("content-type", ""), body)
        if part is None:
            raise VenueError(PARAM_ERROR, "params error: multipart part upload_file is required")
        filename, data = part
        if not data:
            raise VenueError(PARAM_ERROR, "params error: empty file")
        up = venue.store_upload(acc.uid, filename, data)
        kind = {"pdf": "PDF", "mp4": "VIDEO"}.get(up.key.rsplit(".", 1)[1], "IMAGE")
        reply = {"result": {"url": up.url, "type": kind, "uploadId": None}, "token": None, "ret_code": 0,
                 "ret_msg": "成功"}
        return _reply(reply, headers)

    @app.post("/v5/p2p/{sub:path}")
    async def p2p(sub: str, request: Request) -> Response:
        body = await request.body()
        # Off the event loop: the tick thread may hold world.lock for a while (buyers, bank receipts).
        return await run_in_threadpool(handle, sub, request, body)

    @app.get(UPLOAD_PREFIX + "{key}")
    def show_obj(key: str, token: str = "") -> Response:
        up = venue.uploads.get(key)
        if up is None or token != up.token:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(up.data, media_type=MEDIA.get(key.rsplit(".", 1)[-1], "application/octet-stream"))

    install_control(app, world, venue, limiter)


# -- control API ----------------------------------------------------------------------------------------------
def _account_json(acc: Account, secrets_too: bool = False) -> Json:
    out = {"uid": acc.uid, "account_id": acc.account_id, "nick": acc.nick, "real_name": acc.real_name,
           "balance": fmt(acc.balance), "frozen": fmt(acc.frozen), "p2p": acc.p2p,
           "need_security_risk": acc.need_security_risk, "has_api_key": acc.api_key is not None,
           "payment_methods": [{"id": m.id, "payment_type": m.payment_type, "bank_name": m.bank_name,
                                "account_no": m.account_no} for m in acc.methods if m.id != "-1"]}
    if secrets_too:
        out["api_key"], out["api_secret"] = acc.api_key, acc.api_secret
    return out


def _ad_json(ad: Ad) -> Json:
    return {"id": ad.id, "uid": ad.uid, "side": ad.side, "status": ad.status, "removed": ad.removed,
            "price": fmt(ad.price), "min_amount": fmt(ad.min_amount), "max_amount": fmt(ad.max_amount),
            "quantity": fmt(ad.quantity), "last_quantity": fmt(ad.last_quantity),
            "frozen_quantity": fmt(ad.frozen_quantity), "executed_quantity": fmt(ad.executed_quantity),
            "payment_ids": ad.payment_ids, "remark": ad.remark, "payment_period": ad.payment_period,
            "hidden_reason": ad.hidden_reason, "edits": len(ad.edits), "created_at": ad.created_at}


def _order_json(venue: BybitVenue, order: Order) -> Json:
    return {"id": order.id, "item_id": order.item_id, "status": order.status, "amount": fmt(order.amount),
            "quantity": fmt(order.quantity), "price": fmt(order.price), "buyer_uid": order.buyer_uid,
            "seller_uid": order.seller_uid, "created_at": order.created_at, "paid_at": order.paid_at,
            "finished_at": order.finished_at, "cancelled_at": order.cancelled_at,
            "payment_deadline": order.payment_deadline, "cancel_reason": order.cancel_reason,
            "payment_type": order.payment_type, "payment_id": order.payment_id,
            "transfer_last_seconds": venue.transfer_last_seconds(order)}


def _dec(value: Any, name: str) -> Decimal:
    try:
        out = Decimal(str(value))
    except InvalidOperation:
        raise VenueError(PARAM_ERROR, f"{name} is not a number") from None
    if not out.is_finite() or out < 0:
        raise VenueError(PARAM_ERROR, f"{name} must be a non-negative number")
    return out


def install_control(app: FastAPI, world: Any, venue: BybitVenue, limiter: RateLimiter) -> None:
    def guarded(fn: Callable[[], Any]) -> JSONResponse:
        try:
            with world.lock:
                return JSONResponse(json.loads(_dump(fn())))
        except VenueError as exc:
            return JSONResponse({"error": exc.msg, "code": exc.code}, status_code=400)
        except (KeyError, TypeError, ValueError, binascii.Error) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, status_code=400)

    async def with_body(request: Request, fn: Callable[[Json], Any]) -> JSONResponse:
        raw = await request.body()
        try:
            data = json.loads(raw) if raw.strip() else {}
        except ValueError:
            data = None
        if not isinstance(data, dict):
            return JSONResponse({"error": "body must be a JSON object"}, status_code=400)
        return await run_in_threadpool(guarded, lambda: fn(data))

    @app.post("/sandbox/bybit/accounts")
    async def create_accounts(request: Request) -> JSONResponse:
        def go(body: Json) -> Json:
            count = int(body.get("count", 1))
            if not 1 <= count <= 100:
                raise VenueError(PARAM_ERROR, "count must be 1..100")
            made = []
            for n in range(count):
                nick = body.get("nick")
                acc = venue.create_account(
                    nick=f"{nick}{n + 1 if count > 1 else ''}" if nick else None, real_name=body.get("real_name"),
                    balance=_dec(body.get("balance", "100000"), "balance"),
                    methods=tuple(str(m) for m in body.get("methods", ["382", "75"])),
                    p2p=bool(body.get("p2p", True)), need_security_risk=bool(body.get("need_security_risk")))
                made.append(_account_json(acc, secrets_too=True))
            return {"accounts": made}
        return await with_body(request, go)

    @app.get("/sandbox/bybit/accounts")
    def list_accounts() -> JSONResponse:
        return guarded(lambda: {"accounts": [_account_json(a) for a in venue.accounts.values()]})

    @app.get("/sandbox/bybit/accounts/{uid}")
    def get_account(uid: str) -> JSONResponse:
        return guarded(lambda: _account_json(venue.account(uid)))

    @app.patch("/sandbox/bybit/accounts/{uid}")
    async def patch_account(uid: str, request: Request) -> JSONResponse:
        def go(body: Json) -> Json:
            acc = venue.account(uid)
            if "p2p" in body:
                acc.p2p = bool(body["p2p"])
            if "need_security_risk" in body:
                acc.need_security_risk = bool(body["need_security_risk"])
            if "balance" in body:
                acc.balance = _dec(body["balance"], "balance")
            return _account_json(acc)
        return await with_body(request, go)

    @app.get("/sandbox/bybit/ads")
    def list_ads(uid: str | None = None) -> JSONResponse:
        return guarded(lambda: {"ads": [_ad_json(a) for a in venue.ads() if uid is None or a.uid == uid]})

    @app.patch("/sandbox/bybit/ads/{item_id}")
    async def patch_ad(item_id: str, request: Request) -> JSONResponse:
        return await with_body(request, lambda body: _ad_json(venue.set_ad_status(item_id, int(body["status"]))))

    @app.get("/sandbox/bybit/orders")
    def list_orders(uid: str | None = None) -> JSONResponse:
        return guarded(lambda: {"orders": [_order_json(venue, o) for o in venue.orders()
                                           if uid is None or uid in (o.buyer_uid, o.seller_uid)]})

    @app.get("/sandbox/bybit/orders/{order_id}")
    def get_order(order_id: str) -> JSONResponse:
        return guarded(lambda: _order_json(venue, venue.order(order_id)))

    @app.post("/sandbox/bybit/orders")
    async def open_order(request: Request) -> JSONResponse:
        def go(body: Json) -> Json:
            buyer = body.get("buyer_uid")
            if not buyer:
                n = len(venue.accounts) + 1
                buyer = venue.create_buyer(body.get("buyer_nick") or f"buyer{n}", body.get("buyer_real_name")
                                           or f"Sidorov Sidor {n}")
            amount = _dec(body["amount"], "amount") if body.get("amount") else None
            order = venue.open_order(buyer, str(body["item_id"]), amount)
            return {"order_id": order.id, **_order_json(venue, order)}
        return await with_body(request, go)

    def buyer_action(order_id: str, action: str, body: Json) -> Json:
        order = venue.order(order_id)
        if action == "pay":
            venue.mark_paid(order_id, order.buyer_uid)
        elif action == "cancel":
            venue.cancel_order(order_id, order.buyer_uid, str(body.get("reason", "")))
        elif action == "appeal":
            venue.appeal(order_id, str(body.get("by_uid") or order.buyer_uid))
        return _order_json(venue, order)

    for action in ("pay", "cancel", "appeal"):
        def make(action: str = action):
            async def route(order_id: str, request: Request) -> JSONResponse:
                return await with_body(request, lambda body: buyer_action(order_id, action, body))
            return route
        app.post(f"/sandbox/bybit/orders/{{order_id}}/{action}")(make())

    @app.post("/sandbox/bybit/orders/{order_id}/messages")
    async def buyer_message(order_id: str, request: Request) -> JSONResponse:
        def go(body: Json) -> Json:
            order = venue.order(order_id)
            if body.get("file_b64"):
                data = base64.b64decode(body["file_b64"], validate=True)
                return venue.post_message(order_id, order.buyer_uid, file_bytes=data,
                                          filename=body.get("filename"), content_type=body.get("content_type", "str"))
            return venue.post_message(order_id, order.buyer_uid, str(body["text"]))
        return await with_body(request, go)

    @app.get("/sandbox/bybit/orders/{order_id}/messages")
    def order_messages(order_id: str) -> JSONResponse:
        return guarded(lambda: {"messages": venue.messages(order_id)})

    @app.post("/sandbox/bybit/limits")
    async def set_limits(request: Request) -> JSONResponse:
        def go(body: Json) -> Json:
            lim = limiter.limits
            for name in ("reads_per_s", "writes_per_s", "ip_per_5s"):
                if name in body:
                    setattr(lim, name, int(body[name]))
            if "ip_ban_s" in body:
                lim.ip_ban_s = float(body["ip_ban_s"])
            if "edit_budget" in body:
                venue.edit_budget = int(body["edit_budget"])
            if "edit_window_s" in body:
                venue.edit_window_s = float(body["edit_window_s"])
            if body.get("reset"):
                limiter.reset()
            return {"reads_per_s": lim.reads_per_s, "writes_per_s": lim.writes_per_s, "ip_per_5s": lim.ip_per_5s,
                    "ip_ban_s": lim.ip_ban_s, "edit_budget": venue.edit_budget, "edit_window_s": venue.edit_window_s}
        return await with_body(request, go)
