"""State model of the simulated Bybit P2P venue: accounts, payment methods, ads, orders, chat and uploads.

Everything here is plain Python under ``world.lock`` so the REST layer (sandbox/bybit/rest.py), the simulated
buyers (sandbox/bybit/buyers.py) and the tick loop all see one consistent venue.  Money is ``Decimal``.

Funds model (why it looks like this): Bybit freezes the ad's whole ``quantity`` in the Funding account when a
sell ad is posted, moves part of it into ``frozenQuantity`` when a buyer opens an order and to
``executedQuantity`` on release.  We keep, per ad, ``quantity == last + frozen + executed`` at all times, and
per account ``frozen == sum(last + frozen of live ads) + sum(frozen of removed ads)``: removing an ad gives its
``last`` back to the available balance at once, while USDT locked in open orders stays frozen until each order
finishes or is cancelled.

Ad lifecycle: 10 online <-> 20 offline; 30 sold out once no order is open and what is left cannot cover the
ad's ``minAmount``.  ``item/cancel`` removes the ad: it keeps answering ``item/info`` (status 20) so running
orders can still be inspected, but it leaves the personal list.

Errors are ``VenueError(code, msg)``; the REST layer turns them into the legacy envelope.  The status error
for ``order/finish`` on an order that is not at 20 (including a second release) is ``912000004`` with the
message ``order status error (status N)``; unknown ids answer ``912000004`` too, with a different message.
"""

from __future__ import annotations

import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import urlsplit

ORDER_PENDING_STATUSES = (5, 10, 20, 30, 90, 100, 110)
METHOD_NAMES = {"382": "SBP", "75": "Tinkoff", "14": "Bank Transfer", "377": "Balance"}
MSG_TYPES = {"str": 1, "pic": 2, "pdf": 7, "video": 8}
UPLOAD_EXT = {"jpg": "IMAGE", "jpeg": "IMAGE", "png": "IMAGE", "pdf": "PDF", "mp4": "VIDEO"}
UPLOAD_PREFIX = "/fiat/p2p/oss/showObj/otc/9001/"
Q4 = Decimal("0.0001")

# Error codes used by the simulator (see bybit-p2p-api reference §4).
PARAM_ERROR = 10001
TOO_MANY = 10006
P2P_PARAM = 912000004
NO_PERMISSION = 912000014
BAD_PAYMENT = 912300013
MIN_OVER_TOTAL = 912120023
NO_FUNDS = 912120024


class VenueError(Exception):
    """A refusal with a Bybit ``ret_code``; ``msg`` becomes ``ret_msg``."""

    def __init__(self, code: int, msg: str) -> None:
        super().__init__(f"{code} {msg}")
        self.code = code
        self.msg = msg


def fmt(value: Decimal) -> str:
    """A Decimal as the plain string Bybit sends (no exponent, no trailing zero noise)."""
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def ms(ts: float) -> str:
    return str(int(ts * 1000))


@dataclass
class PaymentMethod:
    id: str
    payment_type: str  # type id: "382" SBP, "75" Tinkoff, "377" Balance
    real_name: str
    bank_name: str
    account_no: str
    mobile: str = ""

    def to_api(self) -> dict[str, Any]:
        name = METHOD_NAMES.get(self.payment_type, "Bank Transfer")
        return {
            "id": self.id, "realName": self.real_name, "paymentType": int(self.payment_type),
            "bankName": self.bank_name, "branchName": "", "accountNo": self.account_no, "qrcode": "",
            "visible": 1, "payMessage": "", "firstName": "", "lastName": "", "secondLastName": "", "clabe": "",
            "debitCardNumber": "", "mobile": self.mobile, "businessName": "", "concept": "",
            "online": "1" if self.id != "-1" else "0", "countNo": "", "paymentExt1": "", "paymentExt2": "",
            "paymentExt3": "", "paymentExt4": "", "paymentExt5": "", "paymentExt6": "",
            "paymentTemplateVersion": 1, "realNameVerified": True,
            "paymentConfigVo": {
                "paymentType": self.payment_type, "checkType": 0, "sort": 0, "paymentName": name,
                "addTips": "", "itemTips": "", "online": 0,
                "items": [{"view": True, "name": "accountNo", "label": "Account", "type": "text",
                           "maxLength": "40", "required": True}],
            },
        }


@dataclass
class Account:
    uid: str
    account_id: str
    nick: str
    real_name: str
    api_key: str | None = None
    api_secret: str | None = None
    balance: Decimal = Decimal(0)  # available USDT in the Funding account
    frozen: Decimal = Decimal(0)  # locked by ads and open orders
    p2p: bool = True  # GA advertiser with P2P API permission
    need_security_risk: bool = False
    methods: list[PaymentMethod] = field(default_factory=list)
    created_at: float = field(default_factory=time.time)
    profile: dict[str, Any] = field(default_factory=dict)  # overrides of the account object fields

    def to_api(self) -> dict[str, Any]:
        days = int(self.profile.get("accountCreateDays", 400))
        obj: dict[str, Any] = {
            "nickName": self.nick, "defaultNickName": False, "isOnline": True, "kycLevel": 2,
            "email": "", "mobile": "", "lastLogoutTime": str(int(time.time()) - 60), "recentRate": 98,
            "totalFinishCount": 180, "totalFinishSellCount": 120, "totalFinishBuyCount": 60,
            "recentFinishCount": 35, "averageReleaseTime": "2.5", "averageTransferTime": "4.1",
            "accountCreateDays": days, "firstTradeDays": max(days - 10, 0), "realName": self.real_name,
            "recentTradeAmount": "125000.5", "totalTradeAmount": "980000.25",
            "registerTime": str(int(self.created_at) - days * 86400), "authStatus": 1, "kycCountryCode": "RUS",
            "blocked": "0", "goodAppraiseRate": 99, "goodAppraiseCount": 150, "badAppraiseCount": 1,
            "accountId": self.account_id, "paymentCount": len(self.methods), "contactCount": 0, "vipLevel": 1,
            "userCurPrivilege": ["OPEN_API_ACCESS", "POST_EDIT_AD"] if self.p2p else [],
            "userType": "PERSONAL", "realNameEn": self.real_name, "userId": self.uid,
            "userCancelCountLimit": 3, "openApiSwitch": 1 if self.p2p else 0,
        }
        obj.update(self.profile)
        return obj


@dataclass
class Ad:
    id: str
    uid: str
    side: int  # from the advertiser's view: 1 sell USDT, 0 buy
    token: str
    currency: str
    price_type: int
    price: Decimal
    premium: str
    min_amount: Decimal
    max_amount: Decimal
    quantity: Decimal
    payment_period: int
    remark: str
    payment_ids: list[str]
    item_type: str = "ORIGIN"
    trading_preferences: dict[str, Any] = field(default_factory=dict)
    last_quantity: Decimal = Decimal(0)
    frozen_quantity: Decimal = Decimal(0)
    executed_quantity: Decimal = Decimal(0)
    status: int = 10
    removed: bool = False
    hidden_reason: str = ""
    created_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    order_num: int = 0
    finish_num: int = 0
    edits: list[float] = field(default_factory=list)

    def capacity(self) -> Decimal:
        """RUB that can still be ordered on this ad."""
        return self.last_quantity * self.price


@dataclass
class Order:
    id: str
    item_id: str
    buyer_uid: str
    seller_uid: str
    amount: Decimal  # RUB
    quantity: Decimal  # USDT
    price: Decimal
    status: int
    created_at: float
    payment_deadline: float
    paid_at: float | None = None
    finished_at: float | None = None
    cancelled_at: float | None = None
    cancel_reason: str = ""
    payment_type: str = ""
    payment_id: str = ""
    token: str = "USDT"
    currency: str = "RUB"
    appeals: int = 0
    updated_at: float = field(default_factory=time.time)


@dataclass
class Upload:
    key: str  # "<random>.<ext>"
    token: str
    expiry: int
    filename: str
    data: bytes
    uid: str

    @property
    def url(self) -> str:
        return f"{UPLOAD_PREFIX}{self.key}?e={self.expiry}&token={self.token}"


def _ad_symbol_info(token: str, currency: str) -> dict[str, Any]:
    return {
        "id": "62", "exchangeId": "1", "orgId": "1", "tokenId": token, "currencyId": currency, "status": 1,
        "lowerLimitAlarm": 90, "upperLimitAlarm": 200, "itemDownRange": "70", "itemUpRange": "130",
        "currencyMinQuote": "500", "currencyMaxQuote": "5000000", "currencyLowerMaxQuote": "0",
        "tokenMinQuote": "1", "tokenMaxQuote": "500000", "kycCurrencyLimit": "1000000",
        "itemSideLimit": 3, "buyFeeRate": "0", "sellFeeRate": "0", "orderAutoCancelMinute": 15,
        "orderFinishMinute": 10, "tradeSide": 9,
        "currency": {"id": "11", "exchangeId": "1", "orgId": "1", "currencyId": currency, "scale": 2},
        "token": {"id": "1", "exchangeId": "1", "orgId": "1", "tokenId": token, "scale": 4, "sequence": 1},
        "buyAd": {"paymentPeriods": [15, 30, 60]}, "sellAd": {"paymentPeriods": [15, 30, 60]},
    }


class BybitVenue:
    """The whole simulated Bybit P2P venue.  Public methods take ``world.lock`` (re-entrant) themselves."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.lock: threading.RLock = world.lock
        self.accounts: dict[str, Account] = {}
        self.by_key: dict[str, Account] = {}
        self._ads: dict[str, Ad] = {}
        self._orders: dict[str, Order] = {}
        self._messages: dict[str, list[dict[str, Any]]] = {}
        self.uploads: dict[str, Upload] = {}
        self.edit_budget = 10  # modifications per ad per edit window
        self.edit_window_s = 300.0  # simulated seconds (shrinks with world.speed)
        self.limiter: Any = None  # the REST layer's RateLimiter, set by rest.install

    # -- accounts -----------------------------------------------------------------------------------------
    def _new_uid(self) -> str:
        return str(self.world.rng.randrange(100_000_000, 999_999_999))

    def create_account(self, *, nick: str | None = None, real_name: str | None = None,
                       api_key: str | None = None, api_secret: str | None = None,
                       balance: Decimal = Decimal("100000"), methods: tuple[str, ...] = ("382", "75"),
                       p2p: bool = True, need_security_risk: bool = False,
                       profile: dict[str, Any] | None = None, with_keys: bool = True) -> Account:
        """A merchant (with API keys) or a buyer (``with_keys=False``) account."""
        with self.lock:
            uid = self._new_uid()
            while uid in self.accounts:
                uid = self._new_uid()
            real = real_name or f"Ivanov Ivan {len(self.accounts) + 1}"
            acc = Account(uid=uid, account_id=str(self.world.rng.randrange(10**7, 10**8)),
                          nick=nick or f"merchant{uid[-5:]}", real_name=real, balance=Decimal(balance),
                          p2p=p2p, need_security_risk=need_security_risk, profile=dict(profile or {}))
            if with_keys:
                acc.api_key = api_key or secrets.token_hex(9)
                acc.api_secret = api_secret or secrets.token_hex(18)
                if acc.api_key in self.by_key:
                    raise VenueError(PARAM_ERROR, "api key already exists")
                self.by_key[acc.api_key] = acc
            # Real accounts list the internal Balance method with id "-1"; clients must skip it.
            acc.methods.append(PaymentMethod(id="-1", payment_type="377", real_name=real, bank_name="Balance",
                                             account_no=""))
            for ptype in methods:
                phone = f"+79{self.world.rng.randrange(10**8, 10**9)}"
                card = f"2200{self.world.rng.randrange(10**11, 10**12)}"
                if str(ptype) == "382":
                    pm = PaymentMethod(id=self.world.next_id(19), payment_type="382", real_name=real,
                                       bank_name="T-Bank", account_no=phone, mobile=phone)
                else:
                    pm = PaymentMethod(id=self.world.next_id(19), payment_type=str(ptype), real_name=real,
                                       bank_name="Tinkoff", account_no=card)
                acc.methods.append(pm)
            self.accounts[uid] = acc
            return acc

    def account(self, uid: str) -> Account:
        with self.lock:
            acc = self.accounts.get(uid)
            if acc is None:
                raise VenueError(P2P_PARAM, f"user {uid} not found")
            return acc

    def account_by_key(self, api_key: str) -> Account | None:
        with self.lock:
            return self.by_key.get(api_key)

    def create_buyer(self, nick: str, real_name: str, **profile: Any) -> str:
        """A buyer account (no API keys); ``profile`` overrides account-object fields (e.g. totalFinishCount)."""
        acc = self.create_account(nick=nick, real_name=real_name, balance=Decimal(0), methods=(),
                                  profile=profile, with_keys=False)
        return acc.uid

    # -- ads ----------------------------------------------------------------------------------------------
    def ads(self) -> list[Ad]:
        with self.lock:
            return list(self._ads.values())

    def ad(self, item_id: str) -> Ad:
        with self.lock:
            ad = self._ads.get(item_id)
            if ad is None:
                raise VenueError(P2P_PARAM, "advertisement does not exist")
            return ad

    def online_sell_ads(self) -> list[Ad]:
        """Our merchants' sell ads a buyer can take now (online, and the rest still covers ``minAmount``)."""
        with self.lock:
            return [a for a in self._ads.values()
                    if a.status == 10 and a.side == 1 and not a.removed and a.last_quantity > 0
                    and a.capacity() >= a.min_amount]

    def _check_payment_ids(self, acc: Account, ids: list[str]) -> None:
        own = {m.id for m in acc.methods if m.id != "-1"}
        if not ids or len(ids) > 5:
            raise VenueError(PARAM_ERROR, "paymentIds must hold 1 to 5 payment method ids")
        for pid in ids:
            if pid not in own:
                raise VenueError(BAD_PAYMENT, "error retrieving payment method")

    @staticmethod
    def _check_amounts(min_amount: Decimal, max_amount: Decimal, quantity: Decimal, price: Decimal) -> None:
        if min_amount <= 0 or max_amount <= 0 or quantity <= 0 or price <= 0:
            raise VenueError(PARAM_ERROR, "amounts, quantity and price must be positive")
        if min_amount > max_amount or max_amount > quantity * price:
            raise VenueError(MIN_OVER_TOTAL, "minAmount > total")

    def create_ad(self, uid: str, *, side: int, token: str, currency: str, price_type: int, price: Decimal,
                  premium: str, min_amount: Decimal, max_amount: Decimal, quantity: Decimal,
                  payment_period: int, remark: str, payment_ids: list[str], item_type: str = "ORIGIN",
                  trading_preferences: dict[str, Any] | None = None) -> Ad:
        with self.lock:
            acc = self.account(uid)
            self._check_payment_ids(acc, payment_ids)
            self._check_amounts(min_amount, max_amount, quantity, price)
            if side == 1:
                if acc.balance < quantity:
                    raise VenueError(NO_FUNDS, "Insufficient balance in the funding account")
                acc.balance -= quantity
                acc.frozen += quantity
            now = time.time()
            ad = Ad(id=self.world.next_id(19), uid=uid, side=side, token=token, currency=currency,
                    price_type=price_type, price=price, premium=premium, min_amount=min_amount,
                    max_amount=max_amount, quantity=quantity, payment_period=payment_period, remark=remark,
                    payment_ids=list(payment_ids), item_type=item_type,
                    trading_preferences=dict(trading_preferences or {}), last_quantity=quantity,
                    created_at=now, updated_at=now)
            if acc.need_security_risk:
                # The ad exists but a security check keeps it off the market until an operator acts.
                ad.status = 20
                ad.hidden_reason = "SECURITY_RISK"
            self._ads[ad.id] = ad
            self.world.record("bybit_ad_created", item_id=ad.id, uid=uid, price=fmt(price),
                              quantity=fmt(quantity), min_amount=fmt(min_amount), max_amount=fmt(max_amount))
            return ad

    def update_ad(self, uid: str, item_id: str, action: str, *, price_type: int, price: Decimal, premium: str,
                  min_amount: Decimal, max_amount: Decimal, quantity: Decimal, payment_period: int,
                  remark: str, payment_ids: list[str], trading_preferences: dict[str, Any]) -> Ad:
        """``MODIFY`` replaces the terms; ``ACTIVE`` also puts an offline ad back online (20 -> 10)."""
        with self.lock:
            ad = self.ad(item_id)
            if ad.uid != uid:
                raise VenueError(P2P_PARAM, "advertisement does not exist")
            if ad.removed or ad.status == 30:
                raise VenueError(P2P_PARAM, f"advertisement status error (status {ad.status})")
            now = time.time()
            window = self.world.dur(self.edit_window_s)
            ad.edits = [t for t in ad.edits if now - t < window]
            if len(ad.edits) >= self.edit_budget:
                raise VenueError(TOO_MANY, "Too many visits!")
            acc = self.account(uid)
            self._check_payment_ids(acc, payment_ids)
            self._check_amounts(min_amount, max_amount, quantity, price)
            committed = ad.frozen_quantity + ad.executed_quantity
            if quantity < committed:
                raise VenueError(MIN_OVER_TOTAL, "quantity below the amount already in orders")
            new_last = quantity - committed
            delta = new_last - ad.last_quantity
            if ad.side == 1:
                if delta > acc.balance:
                    raise VenueError(NO_FUNDS, "Insufficient balance in the funding account")
                acc.balance -= delta
                acc.frozen += delta
            ad.quantity, ad.last_quantity = quantity, new_last
            ad.price_type, ad.price, ad.premium = price_type, price, premium
            ad.min_amount, ad.max_amount, ad.payment_period = min_amount, max_amount, payment_period
            ad.remark, ad.payment_ids = remark, list(payment_ids)
            ad.trading_preferences = dict(trading_preferences)
            if action == "ACTIVE" and ad.status == 20 and not acc.need_security_risk:
                ad.status, ad.hidden_reason = 10, ""
            ad.edits.append(now)
            ad.updated_at = now
            self._maybe_sold_out(ad)
            return ad

    def remove_ad(self, uid: str, item_id: str) -> None:
        with self.lock:
            ad = self.ad(item_id)
            if ad.uid != uid or ad.removed:
                raise VenueError(P2P_PARAM, "advertisement does not exist")
            acc = self.account(uid)
            if ad.side == 1:
                acc.frozen -= ad.last_quantity
                acc.balance += ad.last_quantity
            ad.removed = True
            ad.status = 20
            ad.updated_at = time.time()
            self.world.record("bybit_ad_removed", item_id=ad.id, uid=uid)

    def set_ad_status(self, item_id: str, status: int) -> Ad:
        """Control API: take an ad offline (20) or back online (10), as the web UI would."""
        with self.lock:
            ad = self.ad(item_id)
            if ad.removed or status not in (10, 20):
                raise VenueError(P2P_PARAM, "advertisement status error")
            ad.status = status
            ad.hidden_reason = "" if status == 10 else ad.hidden_reason
            ad.updated_at = time.time()
            return ad

    def _maybe_sold_out(self, ad: Ad) -> None:
        if not ad.removed and ad.frozen_quantity == 0 and ad.capacity() < ad.min_amount:
            ad.status = 30

    # -- orders -------------------------------------------------------------------------------------------
    def orders(self) -> list[Order]:
        with self.lock:
            return list(self._orders.values())

    def order(self, order_id: str) -> Order:
        with self.lock:
            order = self._orders.get(order_id)
            if order is None:
                raise VenueError(P2P_PARAM, "order does not exist")
            return order

    def open_order(self, buyer_uid: str, item_id: str, amount_rub: Decimal | None = None) -> Order:
        """A buyer takes a sell ad for ``amount_rub`` (default: the ad's ``maxAmount``)."""
        with self.lock:
            buyer = self.account(buyer_uid)
            ad = self.ad(item_id)
            if ad.removed or ad.status != 10 or ad.side != 1:
                raise VenueError(P2P_PARAM, "advertisement is not available")
            if ad.uid == buyer.uid:
                raise VenueError(P2P_PARAM, "cannot trade with your own advertisement")
            amount = Decimal(amount_rub) if amount_rub is not None else ad.max_amount
            if amount < ad.min_amount or amount > ad.max_amount:
                raise VenueError(P2P_PARAM, "amount out of the advertisement limits")
            qty = (amount / ad.price).quantize(Q4, rounding=ROUND_HALF_UP)
            if qty <= 0 or qty > ad.last_quantity:
                raise VenueError(NO_FUNDS, "advertisement quantity is not enough")
            now = time.time()
            order = Order(id=self.world.next_id(19), item_id=ad.id, buyer_uid=buyer.uid, seller_uid=ad.uid,
                          amount=amount, quantity=qty, price=ad.price, status=10, created_at=now,
                          payment_deadline=now + self.world.dur(ad.payment_period * 60), token=ad.token,
                          currency=ad.currency, updated_at=now)
            ad.last_quantity -= qty
            ad.frozen_quantity += qty
            ad.order_num += 1
            ad.updated_at = now
            self._orders[order.id] = order
            self._messages[order.id] = []
            self._sys(order, "Do not release the crypto before you have confirmed the payment in your own bank "
                             "account. Beware of fraud: Bybit will never ask you to pay outside the order.", 1)
            self._sys(order, f"The buyer has submitted an order for {fmt(amount)} {order.currency}. "
                             f"The payment must be made within {ad.payment_period} minutes.", 2)
            if ad.remark:
                self._add_message(order, ad.uid, ad.remark, "str")
            self.world.record("bybit_order_created", order_id=order.id, item_id=ad.id, buyer_uid=buyer.uid,
                              seller_uid=ad.uid, amount=fmt(amount), quantity=fmt(qty), price=fmt(ad.price))
            return order

    def _party(self, order: Order, uid: str) -> None:
        if uid not in (order.buyer_uid, order.seller_uid):
            raise VenueError(P2P_PARAM, "order does not exist")

    def mark_paid(self, order_id: str, buyer_uid: str, payment_type: str | None = None,
                  payment_id: str | None = None) -> None:
        """Buyer side 10 -> 20.  The term defaults to the ad's first payment method."""
        with self.lock:
            order = self.order(order_id)
            if buyer_uid != order.buyer_uid:
                raise VenueError(P2P_PARAM, "only the buyer can mark an order as paid")
            if order.status != 10:
                raise VenueError(P2P_PARAM, f"order status error (status {order.status})")
            terms = self.payment_terms(order)
            if payment_type is None and payment_id is None:
                term = terms[0]
            else:
                if payment_type == "377":
                    raise VenueError(P2P_PARAM, "payment type not supported")
                matching = [t for t in terms if t.id == payment_id and t.payment_type == payment_type]
                if not matching:
                    raise VenueError(BAD_PAYMENT, "error retrieving payment method")
                term = matching[0]
            order.status = 20
            order.paid_at = order.updated_at = time.time()
            order.payment_type, order.payment_id = term.payment_type, term.id
            self._sys(order, "The buyer has marked the order as paid. Check that the money arrived in your "
                             "account before releasing.", 3)
            self.world.record("bybit_order_paid", order_id=order.id, buyer_uid=order.buyer_uid,
                              amount=fmt(order.amount), payment_type=term.payment_type)

    def cancel_order(self, order_id: str, by_uid: str, reason: str = "") -> None:
        """Buyer cancels an unpaid order (10 -> 40); the USDT goes back to the ad."""
        with self.lock:
            order = self.order(order_id)
            if by_uid != order.buyer_uid:
                raise VenueError(P2P_PARAM, "only the buyer can cancel an order")
            if order.status != 10:
                raise VenueError(P2P_PARAM, f"order status error (status {order.status})")
            self._cancel(order, reason or "buyer cancelled")

    def _cancel(self, order: Order, reason: str) -> None:
        ad = self._ads[order.item_id]
        ad.frozen_quantity -= order.quantity
        ad.last_quantity += order.quantity
        if ad.removed and ad.side == 1:
            acc = self.accounts[ad.uid]
            acc.frozen -= order.quantity
            acc.balance += order.quantity
        order.status = 40
        order.cancel_reason = reason
        order.cancelled_at = order.updated_at = time.time()
        self._sys(order, "The order has been cancelled. The seller can no longer appeal this order.", 4)
        self.world.record("bybit_order_cancelled", order_id=order.id, item_id=order.item_id, reason=reason)

    def appeal(self, order_id: str, by_uid: str) -> None:
        """Either party appeals a paid order (20 -> 30)."""
        with self.lock:
            order = self.order(order_id)
            self._party(order, by_uid)
            if order.status != 20:
                raise VenueError(P2P_PARAM, f"order status error (status {order.status})")
            order.status = 30
            order.appeals += 1
            order.updated_at = time.time()
            self._sys(order, "An appeal has been filed. Customer support will join the chat.", 5)
            self.world.record("bybit_appeal", order_id=order.id, by_uid=by_uid)

    def release(self, order_id: str, seller_uid: str) -> None:
        """Seller releases (20 -> 50): frozen USDT moves to the buyer, exactly once."""
        with self.lock:
            order = self.order(order_id)
            self._party(order, seller_uid)
            if seller_uid != order.seller_uid:
                raise VenueError(P2P_PARAM, "only the seller can release")
            if order.status != 20:
                raise VenueError(P2P_PARAM, f"order status error (status {order.status})")
            ad = self._ads[order.item_id]
            seller, buyer = self.accounts[order.seller_uid], self.accounts[order.buyer_uid]
            ad.frozen_quantity -= order.quantity
            ad.executed_quantity += order.quantity
            ad.finish_num += 1
            seller.frozen -= order.quantity
            buyer.balance += order.quantity
            order.status = 50
            order.finished_at = order.updated_at = time.time()
            self._maybe_sold_out(ad)
            self._sys(order, "The seller has released the crypto. The order is completed.", 6)
            self.world.record("bybit_release", order_id=order.id, item_id=order.item_id,
                              seller_uid=order.seller_uid, amount=fmt(order.amount),
                              quantity=fmt(order.quantity), price=fmt(order.price))

    def payment_terms(self, order: Order) -> list[PaymentMethod]:
        ad = self._ads[order.item_id]
        seller = self.accounts[ad.uid]
        return [m for pid in ad.payment_ids for m in seller.methods if m.id == pid]

    def transfer_last_seconds(self, order: Order, now: float | None = None) -> int:
        if order.status != 10:
            return 0
        return max(0, math.ceil(order.payment_deadline - (now or time.time())))

    def tick(self, now: float) -> None:
        """Cancel orders whose payment window ran out."""
        with self.lock:
            for order in self._orders.values():
                if order.status == 10 and now >= order.payment_deadline:
                    self._cancel(order, "payment timeout")

    # -- chat ---------------------------------------------------------------------------------------------
    def _sys(self, order: Order, text: str, code: int) -> None:
        self._messages[order.id].append({
            "id": self.world.next_id(19), "accountId": "0", "message": text, "msgType": 0, "msgCode": code,
            "createDate": ms(time.time()), "isRead": 1, "read": 1, "contentType": "str", "roleType": "sys",
            "userId": "0", "orderId": order.id, "msgUuid": "", "nickName": "", "fileName": "",
            "onlyForCustomer": 0,
        })

    def _add_message(self, order: Order, uid: str, text: str, content_type: str, file_name: str = "",
                     msg_uuid: str = "") -> dict[str, Any]:
        acc = self.accounts[uid]
        msg = {
            "id": self.world.next_id(19), "accountId": acc.account_id, "message": text,
            "msgType": MSG_TYPES[content_type], "msgCode": 0, "createDate": ms(time.time()), "isRead": 0,
            "read": 0, "contentType": content_type, "roleType": "user", "userId": uid, "orderId": order.id,
            "msgUuid": msg_uuid or secrets.token_hex(16), "nickName": acc.nick, "fileName": file_name,
            "onlyForCustomer": 0,
        }
        self._messages[order.id].append(msg)
        return msg

    def send_message(self, order_id: str, uid: str, message: str, content_type: str, msg_uuid: str,
                     file_name: str = "") -> dict[str, Any]:
        """A party's chat message.  There is no idempotency: the same ``msgUuid`` twice makes two messages."""
        with self.lock:
            order = self.order(order_id)
            self._party(order, uid)
            if content_type not in MSG_TYPES:
                raise VenueError(PARAM_ERROR, "contentType must be one of str, pic, pdf, video")
            if content_type != "str" and not file_name:
                up = self.upload_for(message)
                file_name = up.filename if up else ""
            return dict(self._add_message(order, uid, message, content_type, file_name, msg_uuid))

    def post_message(self, order_id: str, from_uid: str, text: str | None = None, *,
                     file_bytes: bytes | None = None, filename: str | None = None,
                     content_type: str = "str") -> dict[str, Any]:
        """A buyer's message: text, or a file (stored like an upload, the message is its relative url)."""
        with self.lock:
            if file_bytes is not None:
                name = filename or ("receipt.pdf" if content_type == "pdf" else "image.png")
                up = self.store_upload(from_uid, name, file_bytes)
                if content_type == "str":
                    content_type = "pdf" if name.lower().endswith(".pdf") else "pic"
                return self.send_message(order_id, from_uid, up.url, content_type, secrets.token_hex(16), name)
            if text is None:
                raise VenueError(PARAM_ERROR, "text or file_bytes required")
            return self.send_message(order_id, from_uid, text, content_type, secrets.token_hex(16))

    def messages(self, order_id: str) -> list[dict[str, Any]]:
        """All messages of an order, oldest first (copies)."""
        with self.lock:
            self.order(order_id)
            return [dict(m) for m in self._messages.get(order_id, [])]

    # -- uploads ------------------------------------------------------------------------------------------
    def store_upload(self, uid: str, filename: str, data: bytes) -> Upload:
        with self.lock:
            ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
            if ext not in UPLOAD_EXT:
                raise VenueError(PARAM_ERROR, "file type not supported (jpg, png, jpeg, pdf, mp4)")
            key = f"{secrets.token_hex(16)}.{ext}"
            up = Upload(key=key, token=secrets.token_hex(20), expiry=int(time.time()) + 86400 * 7,
                        filename=filename, data=bytes(data), uid=uid)
            self.uploads[key] = up
            return up

    def upload_for(self, url: str) -> Upload | None:
        path = urlsplit(url).path
        if not path.startswith(UPLOAD_PREFIX):
            return None
        with self.lock:
            return self.uploads.get(path[len(UPLOAD_PREFIX):])

    def file_bytes(self, url: str) -> bytes:
        """The bytes behind an upload url (relative or absolute)."""
        up = self.upload_for(url)
        if up is None:
            raise VenueError(P2P_PARAM, "file not found")
        return up.data
