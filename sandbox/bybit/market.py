"""The competitor order book behind Bybit's keyless web-UI market list (``POST /fiat/otc/item/online``).

Our rate rule prices an ad from *other* merchants' ads (the second-to-last price on page N of the SBP+Tinkoff
seller list), so the sandbox needs a believable, reproducible book of several hundred USDT/RUB ads rather
than a handful of fixed rows:

* The book is generated once from the world seed: every ad gets a fixed offset from the mid price (sellers
  above it, buyers below it), a trader profile (nick name, order stats, tags) and a set of payment type ids.
* Prices move over time through a mean-reverting random walk of the mid (one step per simulated minute, so
  ``--speed`` makes the market move faster), plus a small per-ad re-quote noise.  Both are pure functions
  of (seed, step), so two sandboxes with the same seed at the same simulated minute agree on every price.
* ``world.bybit_market`` is the :class:`MarketBook`; the signed ``/v5/p2p/item/online`` of the REST venue
  reads the same book through :meth:`MarketBook.page`.

Side semantics (documented because earlier code disagreed, see reference §11): ``side`` is the advertiser's
side, as in the official API.  ``"1"`` lists SELL ads (makers who sell USDT, the ones we compete with; sorted
by price ascending, cheapest first), ``"0"`` lists BUY ads (makers who buy USDT; sorted descending, best bid
first).  The earlier fetcher's ``"0"`` therefore gets the buyers' book here, not the sellers'.

Request fields honoured: ``tokenId``, ``currencyId`` (only USDT/RUB has ads; others give an empty list),
``side``, ``payment`` (payment *type* ids; an ad matches if it accepts any of them; empty = no filter),
``page`` / ``size`` (strings as the web UI sends them; integers are tolerated because the web endpoint is
not strict; ``size`` is clamped to 300), ``amount`` (RUB; keeps ads whose min..max range covers it) and
``sortType`` (``TRADE_PRICE`` default; ``OVERALL_RANKING`` orders by recent order count).  Everything else
(``userId``, ``vaMaker``, ``canTrade``, ``itemRegion``...) is accepted and ignored.  Browser headers are
neither required nor checked.

Control API: ``GET /sandbox/bybit/market`` (mid, step, ad counts) and ``POST /sandbox/bybit/market``
``{"mid": "81.20", "frozen": true}`` (``frozen`` stops the drift, handy for tests that compare two reads).
Faults: generic HTTP faults come from the app middleware (path ``/fiat/otc/item/online``); a ``bybit_code``
fault on that path answers the legacy envelope with that ``ret_code``.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

MARKET_PATHS = ("/fiat/otc/item/online", "/x-api/fiat/otc/item/online")
DEFAULT_MID = Decimal("80.00")
STEP_SIM_S = 60.0  # one drift step per simulated minute
MAX_SIZE = 300
N_SELL = 260
N_BUY = 180

SBP, TINKOFF, BANK_TRANSFER = "382", "75", "14"
# Filler payment types besides the three verified ids of reference §5 (their exact meaning is unverified;
# they only make sure that a payment filter really filters).
OTHER_PAYMENTS = ("64", "185", "581", "583")

_NICK_A = ("Crypto", "Fast", "Best", "Sber", "Rub", "Usdt", "P2P", "Moscow", "Nord", "Green", "Gold", "Star",
           "Swift", "Easy", "Trust", "Sky", "Volga", "Ural", "Neva", "Baikal")
_NICK_B = ("Trader", "Exchange", "Change", "Money", "Deal", "Cash", "Pay", "Market", "Point", "Broker", "Bro",
           "Line", "Hub", "Shop", "Bank", "Flow")
_REMARKS = ("", "", "Быстро, без комиссии. Только Т-Банк / СБП.", "Работаю 24/7. Чек обязателен.",
            "Fast release. Pay only from your own account.", "Без третьих лиц. ФИО должно совпадать.",
            "Online, answer within 1 min.")


def _q2(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass
class MarketAd:
    """One competitor ad. ``offset`` is its fixed distance from the mid as a fraction (+ above, - below)."""

    index: int
    id: str
    side: int  # 1 sell USDT, 0 buy USDT (advertiser's view)
    offset: float
    noise_period: int  # the ad re-quotes every this many steps
    user_id: str
    account_id: str
    nick: str
    payments: list[str]
    last_quantity: Decimal
    min_amount: Decimal
    max_amount_cap: Decimal
    recent_order_num: int
    recent_execute_rate: int
    order_num: int
    finish_num: int
    is_online: bool
    auth_tag: list[str]
    user_type: str
    remark: str
    payment_period: int
    create_ms: int
    last_logout_s: int
    extra: dict[str, Any] = field(default_factory=dict)


class MarketBook:
    """A seeded USDT/RUB competitor book whose prices drift with simulated time."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.seed = int(world.seed)
        self.mid = Decimal(str(world.options.get("usdt_rub_mid", DEFAULT_MID)))
        self.frozen_step: int | None = None
        # Drift steps are counted from a base so that changing the mid or freezing does not jump prices.
        self._walk: list[float] = [0.0]
        self._walk_rng = random.Random(f"market-walk:{self.seed}")
        rng = random.Random(f"market-book:{self.seed}")
        self.ads: list[MarketAd] = []
        base_id = 1_800_000_000_000_000_000 + rng.randrange(10**15)
        now_ms = int(time.time() * 1000)
        for i in range(N_SELL + N_BUY):
            side = 1 if i < N_SELL else 0
            self.ads.append(self._make_ad(rng, i, side, str(base_id + i * 7919), now_ms))

    # -- generation ---------------------------------------------------------------------------------------
    @staticmethod
    def _make_ad(rng: random.Random, i: int, side: int, ad_id: str, now_ms: int) -> MarketAd:
        # Offsets: a dense cluster near the mid (most competitive traders) and a long, thin tail.
        magnitude = 0.001 + rng.expovariate(1 / 0.018)
        offset = min(magnitude, 0.12) * (1 if side == 1 else -1)
        roll = rng.random()
        if roll < 0.40:
            payments = [SBP, TINKOFF]
        elif roll < 0.60:
            payments = [SBP]
        elif roll < 0.75:
            payments = [TINKOFF]
        elif roll < 0.85:
            payments = [TINKOFF, BANK_TRANSFER]
        else:
            payments = sorted(rng.sample(OTHER_PAYMENTS, rng.randint(1, 2)) + ([BANK_TRANSFER] if rng.random() < 0.5 else []))
        last_quantity = Decimal(str(round(math.exp(rng.uniform(math.log(40), math.log(25000))), 4)))
        min_amount = Decimal(rng.choice((500, 1000, 1000, 2000, 3000, 5000, 5000, 10000, 20000)))
        max_cap = Decimal(rng.choice((30000, 50000, 100000, 150000, 300000, 500000, 1000000)))
        recent = int(rng.expovariate(1 / 300))
        order_num = recent + int(rng.expovariate(1 / 3000))
        tags = ["GA"] if rng.random() < 0.9 else []
        if rng.random() < 0.5:
            tags.append("VA")
        if rng.random() < 0.15:
            tags.append("BA")
        uid = str(100_000_000 + rng.randrange(400_000_000))
        return MarketAd(
            index=i,
            id=ad_id,
            side=side,
            offset=offset,
            noise_period=rng.randint(3, 30),
            user_id=uid,
            account_id=str(int(uid) + 17_000_000),
            nick=f"{rng.choice(_NICK_A)}{rng.choice(_NICK_B)}{rng.randrange(10, 9999)}",
            payments=payments,
            last_quantity=last_quantity,
            min_amount=min_amount,
            max_amount_cap=max_cap,
            recent_order_num=recent,
            recent_execute_rate=rng.choice((100, 100, 99, 98, 97, 95, 92, 88)),
            order_num=order_num,
            finish_num=int(order_num * rng.uniform(0.85, 1.0)),
            is_online=rng.random() < 0.85,
            auth_tag=tags,
            user_type="ORG" if rng.random() < 0.1 else "PERSONAL",
            remark=rng.choice(_REMARKS),
            payment_period=rng.choice((15, 15, 30)),
            create_ms=now_ms - rng.randrange(3600_000, 90 * 86400_000),
            last_logout_s=int(now_ms / 1000) - rng.randrange(60, 86400),
        )

    # -- time and prices ----------------------------------------------------------------------------------
    def step(self) -> int:
        """The drift step (one per simulated minute since the sandbox started), or the frozen one."""
        if self.frozen_step is not None:
            return self.frozen_step
        elapsed_sim = (self.world.now() - self.world.started) * self.world.speed
        return max(0, int(elapsed_sim / STEP_SIM_S))

    def _drift(self, step: int) -> float:
        # A mean-reverting walk (AR(1)) so the market wanders by a few tenths of a percent, never far away.
        while len(self._walk) <= step:
            self._walk.append(0.97 * self._walk[-1] + self._walk_rng.gauss(0.0, 0.0009))
        return self._walk[step]

    def prices(self, step: int) -> dict[int, Decimal]:
        """Every ad's price at one drift step and mid, computed once (they only change when either does)."""
        cached = getattr(self, "_prices_at", None)
        if cached is None or cached[0] != (step, self.mid):
            cached = ((step, self.mid), {ad.index: self.price(ad, step) for ad in self.ads})
            self._prices_at = cached
        return cached[1]

    def price(self, ad: MarketAd, step: int) -> Decimal:
        slot = step // ad.noise_period
        noise = random.Random(f"market-noise:{self.seed}:{ad.index}:{slot}").uniform(-0.0015, 0.0015)
        factor = (1.0 + self._drift(step)) * (1.0 + ad.offset + noise)
        return _q2(self.mid * Decimal(str(round(factor, 6))))

    # -- queries ------------------------------------------------------------------------------------------
    def item(self, ad: MarketAd, price: Decimal) -> dict[str, Any]:
        """The ad as the list shows it (reference §6/§11 fields; ints for side/status/period, strings else)."""
        cap_by_stock = (ad.last_quantity * price).quantize(Decimal("1"), rounding=ROUND_DOWN)
        max_amount = min(ad.max_amount_cap, cap_by_stock)
        min_amount = min(ad.min_amount, max_amount)
        return {
            "id": ad.id,
            "accountId": ad.account_id,
            "userId": ad.user_id,
            "nickName": ad.nick,
            "tokenId": "USDT",
            "tokenName": "USDT",
            "currencyId": "RUB",
            "side": ad.side,
            "priceType": 0,
            "price": str(price),
            "premium": "",
            "lastQuantity": str(ad.last_quantity),
            "quantity": str(ad.last_quantity),
            "frozenQuantity": "0",
            "executedQuantity": "0",
            "minAmount": f"{min_amount:.2f}",
            "maxAmount": f"{max_amount:.2f}",
            "remark": ad.remark,
            "status": 10,
            "createDate": str(ad.create_ms),
            "payments": list(ad.payments),
            "orderNum": ad.order_num,
            "finishNum": ad.finish_num,
            "recentOrderNum": ad.recent_order_num,
            "recentExecuteRate": ad.recent_execute_rate,
            "fee": "",
            "isOnline": ad.is_online,
            "lastLogoutTime": str(ad.last_logout_s),
            "blocked": "N",
            "makerContact": False,
            "paymentPeriod": ad.payment_period,
            "itemType": "ORIGIN",
            "version": 0,
            "hiddenReason": "",
            "authStatus": 1 if "VA" in ad.auth_tag else 2,
            "recommend": False,
            "recommendTag": "",
            "authTag": list(ad.auth_tag),
            "userType": ad.user_type,
            "userMaskId": f"s{ad.user_id[-6:]}",
            "tradingPreferenceSet": {},
            "symbolInfo": {
                "tokenId": "USDT", "currencyId": "RUB", "itemDownRange": "70", "itemUpRange": "130",
                "currencyMinQuote": "100", "currencyMaxQuote": "5000000", "tokenMinQuote": "1",
                "tokenMaxQuote": "100000", "orderAutoCancelMinute": 15, "orderFinishMinute": 10,
                "itemSideLimit": 3, "currency": {"currencyId": "RUB", "scale": 2},
                "token": {"tokenId": "USDT", "scale": 4},
            },
        }

    def page(self, side: str | int, payments: list[str] | None, page: int, size: int, *,
             token_id: str = "USDT", currency_id: str = "RUB", amount: Decimal | None = None,
             sort_type: str = "TRADE_PRICE") -> tuple[int, list[dict[str, Any]]]:
        """``(count, items)`` of one page. ``side`` "1" = SELL ads ascending by price, "0" = BUY ads descending."""
        if str(token_id).upper() != "USDT" or str(currency_id).upper() != "RUB":
            return 0, []
        want_side = 1 if str(side) == "1" else 0
        wanted = {str(p) for p in (payments or []) if str(p) != ""}
        prices = self.prices(self.step())
        rows: list[tuple[Decimal, MarketAd]] = [
            (prices[ad.index], ad) for ad in self.ads
            if ad.side == want_side and (not wanted or wanted.intersection(ad.payments))
        ]
        size = max(1, min(int(size), MAX_SIZE))
        start = (max(1, int(page)) - 1) * size
        if amount is None and sort_type != "OVERALL_RANKING":
            # The common query: sort the (price, ad) rows and build item dicts for the requested page only.
            rows.sort(key=lambda r: (r[0], r[1].id), reverse=want_side == 0)
            return len(rows), [self.item(ad, price) for price, ad in rows[start:start + size]]
        items = [self.item(ad, price) for price, ad in rows]
        if amount is not None:
            items = [it for it in items if Decimal(it["minAmount"]) <= amount <= Decimal(it["maxAmount"])]
        if sort_type == "OVERALL_RANKING":
            items.sort(key=lambda it: (-it["recentOrderNum"], it["id"]))
        else:
            items.sort(key=lambda it: (Decimal(it["price"]), it["id"]), reverse=want_side == 0)
        return len(items), items[start:start + size]

    def state(self) -> dict[str, Any]:
        step = self.step()
        return {"mid": str(self.mid), "step": step, "frozen": self.frozen_step is not None,
                "drift": round(self._drift(step), 6), "sell_ads": N_SELL, "buy_ads": N_BUY}


def _envelope(result: Any, code: int = 0, msg: str = "SUCCESS") -> dict[str, Any]:
    now = time.time()
    return {"ret_code": code, "ret_msg": msg, "result": result if result is not None else {}, "ext_code": "",
            "ext_info": {}, "time_now": f"{int(now)}.{int((now % 1) * 1_000_000):06d}"}


def _as_int(value: Any, default: int) -> int | None:
    """Page/size as the web UI sends them (strings); ints tolerated; None when unusable."""
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return None
    try:
        number = int(str(value).strip())
    except ValueError:
        return None
    return number if number >= 1 else None


def install(app: FastAPI, world: Any) -> None:
    book = MarketBook(world)
    world.bybit_market = book

    async def item_online(request: Request) -> JSONResponse:
        fault = world.faults.take(request.url.path, ("bybit_code",))
        if fault is not None:
            return JSONResponse(_envelope({}, fault.code or 10016, "simulated venue error"))
        raw = await request.body()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return JSONResponse(_envelope({}, 10001, "request body is not JSON"))
        if not isinstance(body, dict):
            return JSONResponse(_envelope({}, 10001, "request body must be an object"))
        page = _as_int(body.get("page"), 1)
        size = _as_int(body.get("size"), 10)
        side = str(body.get("side", "1"))
        payments = body.get("payment") or []
        if page is None or size is None or side not in ("0", "1") or not isinstance(payments, list):
            return JSONResponse(_envelope({}, 10001, "params error: page/size positive integers, side '0'|'1'"))
        amount = None
        if body.get("amount") not in (None, ""):
            try:
                amount = Decimal(str(body["amount"]))
            except ArithmeticError:
                return JSONResponse(_envelope({}, 10001, "params error: amount"))
        with world.lock:
            count, items = book.page(side, [str(p) for p in payments], page, size,
                                     token_id=str(body.get("tokenId", "USDT")),
                                     currency_id=str(body.get("currencyId", "RUB")), amount=amount,
                                     sort_type=str(body.get("sortType") or "TRADE_PRICE"))
        return JSONResponse(_envelope({"count": count, "items": items}))

    for path in MARKET_PATHS:
        app.add_api_route(path, item_online, methods=["POST"], include_in_schema=False)

    @app.get("/sandbox/bybit/market")
    def market_state() -> dict[str, Any]:
        with world.lock:
            return book.state()

    @app.post("/sandbox/bybit/market")
    async def market_control(request: Request) -> JSONResponse:
        body = await request.json()
        with world.lock:
            if "mid" in body:
                try:
                    mid = Decimal(str(body["mid"]))
                except ArithmeticError:
                    return JSONResponse({"error": "mid must be a decimal string"}, status_code=400)
                if not mid.is_finite() or mid <= 0:
                    return JSONResponse({"error": "mid must be > 0"}, status_code=400)
                book.mid = mid
            if "frozen" in body:
                book.frozen_step = book.step() if body["frozen"] else None
            return JSONResponse(book.state())

    # The simulated buyers live beside the market (both are "other people on Bybit"); installing them here
    # keeps sandbox/app.py's venue list untouched.
    from sandbox.bybit import buyers

    buyers.install(app, world)
