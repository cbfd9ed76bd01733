"""The simulated Gate trader panel (panel.gate.cx) under ``/api/v1``, plus its control API under ``/sandbox/gate/``.

It behaves the way captured traffic says the real panel does (see the module docstring of ``state.py`` for the
model): cookie sessions ``sid``/``rsid`` with an idle lifetime and occasional rotation, status-4 payouts with
hidden amounts, ``/show`` to take one, multipart ``/approve`` with exactly one ``attachments[]`` file, and the
three error shapes clients must cope with (``error``, ``response.error_description``, top-level ``message``).

Defaults worth knowing: ``/cancel`` and expiry both give the payout back to the pool (status 4, amounts hidden
again, visible to every account); an account whose RUB balance is 0 is offered no status-4 payouts (which is
why the orchestrator sets the balance at start and zeroes it at shutdown).  Every knob is in ``config``.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from math import ceil
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sandbox.gate.state import (
    BANKS,
    METHODS,
    RUB_ISO,
    USDT_ISO,
    Account,
    GateState,
    Payout,
    Session,
    iso,
    num,
)

PREFIX = "/api/v1"
COOKIE_MAX_AGE = 30 * 24 * 3600
STATUS_CODES = {1, 2, 3, 4, 5, 6, 7, 8, 9}


def install(app: FastAPI, world: Any) -> None:
    gate = GateState(world)
    world.gate = gate
    world.on_tick(gate.tick)
    app.include_router(_panel_routes(gate, world), prefix=PREFIX)
    app.include_router(_control_routes(gate, world), prefix="/sandbox/gate")


# -- rendering ---------------------------------------------------------------------------------------------------
def render(p: Payout, gate: GateState) -> dict[str, Any]:
    hidden = p.status == 4
    money = {"trader": {RUB_ISO: num(p.amount_rub), USDT_ISO: num(p.amount_usdt)}}
    total = {"trader": {RUB_ISO: num(p.total_rub), USDT_ISO: num(p.total_usdt)}}
    owner = gate.accounts.get(p.owner) if p.owner else None
    bank = None
    if p.bank:
        b = BANKS[p.bank]
        bank = {"id": b["id"], "name": p.bank, "code": b["code"], "label": b["label"], "active": True,
                "meta": {"parser": {"sms": True, "push": True}, "1click": []}}
    m = METHODS[p.method]
    return {
        "id": p.id,
        "payment_method_id": m["id"],
        "wallet": p.wallet,
        "amount": [] if hidden else money,
        "total": [] if hidden else total,
        "status": p.status,
        "approved_at": iso(p.approved_at),
        "expired_at": iso(p.expired_at),
        "created_at": iso(p.created_at),
        "updated_at": iso(p.updated_at),
        "meta": {"courses": {"trader": num(p.course)}, "reason": {"trader": None, "support": None}},
        "method": {**m, "status": 1, "payment_provider_id": 1, "wallet_currency_id": 1,
                   "currency": {"id": 1, "iso_code": RUB_ISO, "code": "rub", "name": "Russian ruble",
                                "decimals": 2, "network": None},
                   "provider": {"id": 1, "label": "Gate", "provider": 1, "status": 1}},
        "bank": bank,
        "attachments": [
            {k: a[k] for k in ("name", "file_name", "original_url", "extension", "size", "created_at")}
            | {"custom_properties": {"fake": True}}
            for a in p.attachments
        ],
        "tooltip": {"payments": {"success": 0, "rejected": 0, "percent": 0}, "reasons": []},
        "trader": {"id": owner.id, "name": owner.name} if owner else None,
    }


def ok(response: Any, status: int = 200) -> JSONResponse:
    return JSONResponse({"success": True, "response": response}, status_code=status)


def err_message(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"message": message}, status_code=status, headers=headers)


def err_error(status: int, text: str) -> JSONResponse:
    return JSONResponse({"success": False, "error": text}, status_code=status)


def err_description(status: int, description: str) -> JSONResponse:
    return JSONResponse({"success": False, "response": {"error_description": description}}, status_code=status)


def set_session_cookies(resp: Response, sess: Session) -> None:
    for name, value in (("sid", sess.sid), ("rsid", sess.rsid)):
        resp.set_cookie(name, value, max_age=COOKIE_MAX_AGE, path="/", httponly=True, samesite="lax")


def paginate(items: list[Any], page: int, per_page: int, base: str, query: dict[str, Any]) -> dict[str, Any]:
    total = len(items)
    last = max(1, ceil(total / per_page))
    start = (page - 1) * per_page
    chunk = items[start:start + per_page]

    def url(n: int) -> str:
        return f"{base}?{urlencode({**query, 'page': n})}"

    return {
        "current_page": page, "data": chunk, "first_page_url": url(1),
        "from": start + 1 if chunk else None, "last_page": last, "last_page_url": url(last),
        "next_page_url": url(page + 1) if page < last else None, "path": base, "per_page": per_page,
        "prev_page_url": url(page - 1) if page > 1 else None, "to": start + len(chunk) if chunk else None,
        "total": total,
    }


# -- the panel -----------------------------------------------------------------------------------------------------
def _panel_routes(gate: GateState, world: Any) -> APIRouter:
    router = APIRouter()

    def authenticate(request: Request) -> tuple[Account | None, Session | None, Response | None, bool]:
        """(account, session, error response, rotated). Call under world.lock."""
        path = request.url.path
        sess = gate.resolve(request.cookies.get("sid"), request.cookies.get("rsid"))
        if sess is not None and world.faults.take(path, ("session_expiry",)) is not None:
            gate.drop_session(sess)
            sess = None
        if sess is None or sess.login not in gate.accounts:
            gate.log_request(request.method, path, None, 401)
            return None, None, err_message(401, "Unauthenticated."), False
        retry_after = gate.take_429(sess.login)
        if retry_after is not None:
            gate.log_request(request.method, path, sess.login, 429)
            return None, None, err_message(429, "Too Many Attempts.", {"Retry-After": str(retry_after)}), False
        # A client still on pre-rotation values (grace period) is sent the current ones again.
        rotated = gate.maybe_rotate(sess) or request.cookies.get("sid") != sess.sid
        gate.settle()
        return gate.accounts[sess.login], sess, None, rotated

    def finish(request: Request, acc: Account, sess: Session, rotated: bool, resp: Response) -> Response:
        gate.log_request(request.method, request.url.path, acc.login, resp.status_code)
        if rotated:
            set_session_cookies(resp, sess)
        return resp

    @router.post("/auth/basic/login")
    async def login(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("login"), str) \
                or not isinstance(body.get("password"), str):
            return err_message(422, "The login and password fields are required.")
        with world.lock:
            acc = gate.check_password(body["login"], body["password"])
            gate.log_request("POST", request.url.path, acc.login if acc else None, 200 if acc else 422)
            if acc is None:
                return err_error(422, "Invalid credentials")
            sess = gate.new_session(acc)
            resp = ok({"user": _user(acc, with_wallets=False)})
            set_session_cookies(resp, sess)
            return resp

    @router.get("/auth/me")
    def me(request: Request) -> Response:
        with world.lock:
            acc, sess, error, rotated = authenticate(request)
            if error:
                return error
            return finish(request, acc, sess, rotated, ok({"user": _user(acc, with_wallets=True)}))

    @router.post("/payments/payouts/balance")
    async def set_balance(request: Request) -> Response:
        try:
            body = await request.json()
        except ValueError:
            body = None
        with world.lock:
            acc, sess, error, rotated = authenticate(request)
            if error:
                return error
            amount = body.get("amount") if isinstance(body, dict) else None
            try:
                value = Decimal(str(amount)) if isinstance(amount, (str, int, float)) else None
            except InvalidOperation:
                value = None
            if value is None or not value.is_finite() or value < 0 or value > Decimal("1e12"):
                resp = JSONResponse({"success": False, "message": "The amount field must be a number.",
                                     "errors": {"amount": ["The amount field must be a number."]}}, status_code=422)
                return finish(request, acc, sess, rotated, resp)
            acc.rub = value.quantize(Decimal("0.01"))
            world.record("gate_set_balance", account=acc.login, amount=str(acc.rub),
                         wire_type=type(amount).__name__)
            return finish(request, acc, sess, rotated, ok({"balance": str(acc.rub)}))

    @router.get("/payments/payouts")
    def list_payouts(request: Request) -> Response:
        with world.lock:
            acc, sess, error, rotated = authenticate(request)
            if error:
                return error
            q = request.query_params
            try:
                page = max(1, int(q.get("page", "1")))
                per_page = min(100, max(1, int(q.get("per_page", "30"))))
                statuses = {int(s) for s in q.getlist("filters[status][]")}
            except ValueError:
                return finish(request, acc, sess, rotated, err_message(422, "The given data was invalid."))
            items = [p for p in gate.book.values() if gate.visible(p, acc)]
            if statuses:
                items = [p for p in items if p.status in statuses]
            if q.get("search[id]"):
                items = [p for p in items if str(p.id) == q["search[id]"].strip()]
            if q.get("search[wallet]"):
                items = [p for p in items if q["search[wallet]"].strip() in p.wallet]
            if q.get("search[term]"):
                term = q["search[term]"].strip().lower()
                items = [p for p in items if term in str(p.id) or term in p.wallet
                         or (p.bank and term in p.bank)]
            items.sort(key=lambda p: p.id, reverse=True)
            query = [(k, v) for k, v in q.multi_items() if k != "page"]
            body = paginate([render(p, gate) for p in items], page, per_page, str(request.url).split("?")[0],
                            dict(query))
            if gate.config["paginator_meta"]:
                body = {"data": body["data"], "meta": {k: body[k] for k in
                                                       ("current_page", "last_page", "per_page", "total")}}
            return finish(request, acc, sess, rotated, ok({"payouts": body}))

    def payout_by_id(payout_id: str) -> Payout | None:
        try:
            return gate.book.get(int(payout_id))
        except ValueError:
            return None

    def payout_for(acc: Account, payout_id: str) -> Payout | None:
        p = payout_by_id(payout_id)
        return p if p is not None and gate.visible(p, acc) else None

    @router.get("/payments/payouts/{payout_id}")
    @router.get("/payments/payouts/{payout_id}/")
    def details(request: Request, payout_id: str) -> Response:
        with world.lock:
            acc, sess, error, rotated = authenticate(request)
            if error:
                return error
            if gate.config["details_410"]:
                return finish(request, acc, sess, rotated,
                              Response("<html><body><h1>410 Gone</h1></body></html>", status_code=410,
                                       media_type="text/html"))
            p = payout_for(acc, payout_id)
            if p is None:
                return finish(request, acc, sess, rotated, err_message(404, "Not found"))
            return finish(request, acc, sess, rotated, ok({"payout": render(p, gate)}))

    @router.post("/payments/payouts/{payout_id}/show")
    def show(request: Request, payout_id: str) -> Response:
        with world.lock:
            acc, sess, error, rotated = authenticate(request)
            if error:
                return error
            p = payout_by_id(payout_id)
            if p is None:
                return finish(request, acc, sess, rotated, err_message(404, "Not found"))
            if p.status != 4 or not gate.visible(p, acc):
                return finish(request, acc, sess, rotated, err_description(400, "incorrect_status"))
            gate.show(p, acc)
            return finish(request, acc, sess, rotated, ok({"payout": render(p, gate)}))

    @router.post("/payments/payouts/{payout_id}/approve")
    async def approve(request: Request, payout_id: str) -> Response:
        ctype = request.headers.get("content-type", "")
        upload = None
        problem = None
        if not ctype.startswith("multipart/form-data"):
            problem = "The attachments field is required (multipart/form-data)."
        else:
            try:
                form = await request.form()
            except Exception:  # malformed multipart: the panel would answer 422 too
                form = None
            files = form.getlist("attachments[]") if form is not None else []
            if len(files) != 1 or isinstance(files[0], str):
                problem = "Exactly one file is required in attachments[]."
            else:
                upload = files[0]
                content = await upload.read()
                if not content:
                    problem = "The attachment is empty."
        with world.lock:
            acc, sess, error, rotated = authenticate(request)
            if error:
                return error
            if problem:
                resp = JSONResponse({"success": False, "message": problem,
                                     "errors": {"attachments": [problem]}}, status_code=422)
                return finish(request, acc, sess, rotated, resp)
            p = payout_by_id(payout_id)
            if p is None:
                return finish(request, acc, sess, rotated, err_message(404, "Not found"))
            if p.owner == acc.login and p.status in (6, 7):
                return finish(request, acc, sess, rotated,
                              JSONResponse({"success": False, "message": "Payout is already approved"},
                                           status_code=409))
            if p.status != 5 or p.owner != acc.login:
                return finish(request, acc, sess, rotated, err_description(400, "incorrect_status"))
            filename = (upload.filename or "attachment").replace("/", "_")[:200]
            gate.approve(p, acc, filename, content, upload.content_type or "application/octet-stream")
            body = render(p, gate)
            body["statusLabel"] = "Подтверждена" if p.status == 7 else "Подтверждена после срока"
            return finish(request, acc, sess, rotated, ok({"payout": body}))

    @router.post("/payments/payouts/{payout_id}/cancel")
    def cancel(request: Request, payout_id: str) -> Response:
        with world.lock:
            acc, sess, error, rotated = authenticate(request)
            if error:
                return error
            p = payout_by_id(payout_id)
            if p is None:
                return finish(request, acc, sess, rotated, err_message(404, "Not found"))
            if p.status != 5 or p.owner != acc.login:
                return finish(request, acc, sess, rotated, err_description(400, "incorrect_status"))
            gate.cancel(p, acc)
            return finish(request, acc, sess, rotated, ok({"payout": render(p, gate)}))

    @router.get("/devices/sms")
    @router.get("/devices/pushes")
    def devices(request: Request) -> Response:
        with world.lock:
            acc, sess, error, rotated = authenticate(request)
            if error:
                return error
            q = request.query_params
            key = "sms" if request.url.path.endswith("/sms") else "pushes"
            page = max(1, int(q.get("page", "1") or 1)) if q.get("page", "1").isdigit() else 1
            body = paginate([], page, 50, str(request.url).split("?")[0], {})
            return finish(request, acc, sess, rotated, ok({key: body}))

    @router.get("/dashboards/trader")
    def dashboard(request: Request) -> Response:
        with world.lock:
            acc, sess, error, rotated = authenticate(request)
            if error:
                return error
            mine = [p for p in gate.book.values() if p.owner == acc.login]
            stats = {str(s): sum(1 for p in mine if p.status == s) for s in sorted({p.status for p in mine})}
            return finish(request, acc, sess, rotated, ok({"statuses": stats, "payouts": len(mine)}))

    return router


def _user(acc: Account, with_wallets: bool) -> dict[str, Any]:
    user: dict[str, Any] = {"id": acc.id, "name": acc.name, "email": acc.login, "role": "trader",
                            "created_at": "2025-01-15T09:00:00.000000Z", "updated_at": "2025-01-15T09:00:00.000000Z"}
    if with_wallets:
        user["wallets"] = [
            {"id": acc.id * 10 + 1, "balance": str(acc.rub),
             "currency": {"id": 1, "code": "RUB", "iso_code": RUB_ISO, "name": "Russian ruble", "decimals": 2}},
            {"id": acc.id * 10 + 2, "balance": str(acc.usdt),
             "currency": {"id": 2, "code": "USDT", "iso_code": USDT_ISO, "name": "Tether", "decimals": 2}},
        ]
    return user


# -- control API ---------------------------------------------------------------------------------------------------
def _control_routes(gate: GateState, world: Any) -> APIRouter:
    router = APIRouter()

    async def body_of(request: Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError:
            return {}
        return body if isinstance(body, dict) else {}

    def bad(message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=400)

    @router.post("/accounts")
    async def create_account(request: Request) -> Response:
        b = await body_of(request)
        try:
            acc = gate.create_account(b.get("login"), b.get("password"), name=b.get("name"),
                                      rub=str(b.get("rub_balance", "0")), usdt=str(b.get("usdt_balance", "0")),
                                      session_ttl_s=b.get("session_ttl_s"))
        except (ValueError, InvalidOperation) as exc:
            return bad(str(exc))
        return JSONResponse({**acc.public(), "password": acc.password})

    @router.get("/accounts")
    def accounts() -> dict[str, Any]:
        with world.lock:
            return {"accounts": [a.public() for a in gate.accounts.values()]}

    @router.post("/payouts")
    async def generate(request: Request) -> Response:
        b = await body_of(request)
        try:
            n = int(b.get("n", 1))
            if not 0 <= n <= 1000:
                raise ValueError("n must be 0..1000")
            made = gate.generate(n, amount_rub=b.get("amount_rub"), method=b.get("method"),
                                 bank=b.get("bank", "random"), course=b.get("course"))
        except (ValueError, InvalidOperation, TypeError) as exc:
            return bad(str(exc))
        return JSONResponse({"payouts": made})

    @router.get("/payouts")
    def payouts(status: int | None = None, owner: str | None = None) -> dict[str, Any]:
        items = gate.payouts()
        if status is not None:
            items = [p for p in items if p["status"] == status]
        if owner is not None:
            items = [p for p in items if p["owner"] == owner]
        return {"payouts": items}

    @router.get("/payouts/{payout_id}")
    def payout(payout_id: int) -> Response:
        p = gate.payout(payout_id)
        return JSONResponse(p) if p else JSONResponse({"error": "no such payout"}, status_code=404)

    @router.post("/payouts/{payout_id}/expire")
    async def expire_payout(request: Request, payout_id: int) -> Response:
        """Move expired_at so the payout is ``seconds`` (simulated, may be negative) from its deadline."""
        b = await body_of(request)
        with world.lock:
            p = gate.book.get(payout_id)
            if p is None or p.status != 5:
                return bad("payout is not in status 5")
            p.expired_at = world.now() + world.dur(float(b.get("seconds", 0)))
            gate.settle()
            return JSONResponse(p.truth())

    @router.post("/payouts/rate")
    async def set_rate(request: Request) -> Response:
        b = await body_of(request)
        with world.lock:
            gate.config["rate_per_minute"] = float(b.get("per_minute", 0))
            return JSONResponse({"rate_per_minute": gate.config["rate_per_minute"]})

    @router.post("/sessions/expire")
    async def expire_sessions(request: Request) -> Response:
        b = await body_of(request)
        return JSONResponse({"expired": gate.expire_sessions(b.get("login"))})

    @router.post("/sessions/rotate")
    async def rotate_sessions(request: Request) -> Response:
        b = await body_of(request)
        return JSONResponse({"rotating": gate.rotate_sessions(b.get("login"))})

    @router.post("/ratelimit")
    async def force_429(request: Request) -> Response:
        b = await body_of(request)
        with world.lock:
            gate.forced_429.append({"remaining": int(b.get("count", 1)), "retry_after": int(b.get("retry_after", 60)),
                                    "login": b.get("login")})
        return JSONResponse({"ok": True})

    @router.get("/config")
    def get_config() -> dict[str, Any]:
        return dict(gate.config)

    @router.post("/config")
    async def set_config(request: Request) -> Response:
        b = await body_of(request)
        unknown = set(b) - set(gate.config)
        if unknown:
            return bad(f"unknown keys {sorted(unknown)}; known {sorted(gate.config)}")
        for key in ("post_approve_status",):
            if key in b and b[key] not in (6, 7):
                return bad(f"{key} must be 6 or 7")
        for key in ("cancel_status", "expired_status"):
            if key in b and b[key] not in STATUS_CODES:
                return bad(f"{key} must be a status code 1..9")
        with world.lock:
            gate.config.update(b)
            return JSONResponse(dict(gate.config))

    @router.get("/requests")
    def requests_log(account: str | None = None, path_contains: str | None = None,
                     since: float | None = None) -> dict[str, Any]:
        with world.lock:
            items = list(gate.requests)
        if account is not None:
            items = [r for r in items if r["account"] == account]
        if path_contains is not None:
            items = [r for r in items if path_contains in r["path"]]
        if since is not None:
            items = [r for r in items if r["ts"] >= since]
        return {"requests": items}

    @router.get("/truth")
    def truth() -> dict[str, Any]:
        return {"events": [e for e in world.truth_events() if e["kind"].startswith("gate_")]}

    return router
