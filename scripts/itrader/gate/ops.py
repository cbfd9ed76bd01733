"""The Gate scripts' operations (one function per script), on top of ``GateClient``.

Rules that matter for real money and are easy to get wrong (business rules §1, §7):

* Accepting a payout is ``POST /show`` and nothing else: ``/approve`` completes a payout, and is only called by
  ``approve`` with a receipt file.
* "Already" answers (``incorrect_status``, "already", "processing") are never trusted on their own: the payout
  is re-read through ``search[id]`` and the answer is success only when the re-read proves the wanted state on
  OUR account.
* Status 6 (approved after the deadline) counts as approved but is flagged ``needs_review`` for an operator.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

from itrader.errors import InputError, ScriptError
from itrader.gate.client import GateBusinessError, GateClient, base_url, response_of
from itrader.gate.payouts import APPROVED_STATUSES, RUB_ISO, USDT_ISO, normalize_payout, page_of, payout_of

MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
ALREADY_CODES = ("incorrect_status", "already_processed")
# The details endpoint became unreliable (410); these answers mean "try search[id]" rather than "give up".
DETAIL_FALLBACK_CODES = ("gone", "not_found", "rejected", "bad_response", "venue_unavailable", "venue_error")


# -- session handling --------------------------------------------------------------------------------------------
def _client(request: dict[str, Any], ctx: Any) -> GateClient:
    import requests

    if not request.get("cookies") and not (request.get("login") and request.get("password")):
        raise InputError("missing_credentials", "give the session as cookies, or login and password")
    url = base_url()
    http = ctx.cache.get(("gate_http", url))
    if http is None:
        http = ctx.cache[("gate_http", url)] = requests.Session()
        # Read proxy / CA-bundle settings from the environment once, not on every request (requests would
        # re-scan the environment per call, a measurable share of a warm --serve call).
        http.proxies = requests.utils.get_environ_proxies(url)
        http.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
        http.trust_env = False
    cookies = request.get("cookies")
    login = request.get("login")
    if cookies is None and login:
        # --serve: a password-only caller keeps its session between requests instead of logging in each time.
        cookies = ctx.cache.get(("gate_jar", url, login))
    return GateClient(cookies=cookies, login=login, password=request.get("password"),
                      timeout_s=float(request.get("timeout_s", 20)), http=http, url=url)


def _with_session(request: dict[str, Any], ctx: Any, body: Any) -> dict[str, Any]:
    """Run ``body(client)``; attach refreshed cookies to the answer, success or failure."""
    client = _client(request, ctx)
    try:
        data = body(client)
    except ScriptError as err:
        changed = client.changed_cookies()
        if changed:
            err.details = {**err.details, "cookies": changed}
        raise
    finally:
        if request.get("login"):
            ctx.cache[("gate_jar", client.base, request["login"])] = list(client.jar.values())
    changed = client.changed_cookies()
    if changed:
        data["cookies"] = changed
    if client.relogged:
        data["relogged"] = True
    return data


# -- shared reads --------------------------------------------------------------------------------------------------
def _account(user: Any) -> dict[str, Any]:
    user = user if isinstance(user, dict) else {}
    login = user.get("login") or user.get("email")
    return {"id": user.get("id") if isinstance(user.get("id"), int) else None,
            "name": user.get("name") if isinstance(user.get("name"), str) else None,
            "login": login if isinstance(login, str) else None}


def _me(client: GateClient) -> dict[str, Any]:
    resp = response_of(client.call("GET", "/auth/me"))
    user = resp.get("user") if isinstance(resp, dict) else None
    if not isinstance(user, dict):
        raise ScriptError("bad_response", "Gate /auth/me has no user object", retryable=True)
    return user


def _balances(user: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Wallets are picked by currency.iso_code ("643" RUB, "000001" USDT); ``code`` varies between endpoints."""
    balances: dict[str, Any] = {"rub": None, "usdt": None}
    wallets = []
    for w in user.get("wallets") or []:
        if not isinstance(w, dict) or not isinstance(w.get("currency"), dict):
            continue
        iso = str(w["currency"].get("iso_code"))
        try:
            balance = Decimal(str(w.get("balance")))
        except ArithmeticError:
            raise ScriptError("bad_response", "Gate wallet balance is not a number", retryable=False) from None
        wallets.append({"iso_code": iso, "code": w["currency"].get("code"), "balance": balance})
        if iso == RUB_ISO:
            balances["rub"] = balance
        elif iso == USDT_ISO:
            balances["usdt"] = balance
    return balances, wallets


def _search(client: GateClient, payout_id: int) -> dict[str, Any] | None:
    """Re-read one payout through ``search[id]`` (the reliable way); None when this account cannot see it."""
    resp = response_of(client.call("GET", "/payments/payouts",
                                   params=[("page", 1), ("per_page", 30), ("search[id]", payout_id)]))
    items, _ = page_of(resp)
    for raw in items:
        p = normalize_payout(raw)
        if p["id"] == payout_id:
            return p
    return None


def _is_ours(client: GateClient, payout: dict[str, Any]) -> bool:
    """A re-read payout belongs to us when its trader is our account (or, lacking that field, when we see it)."""
    trader = payout.get("trader")
    if not trader or trader.get("id") is None:
        return True
    return _account(_me(client))["id"] == trader["id"]


def _payout_id(request: dict[str, Any]) -> int:
    return int(str(request["id"]))


# -- operations ----------------------------------------------------------------------------------------------------
def login(request: dict[str, Any], ctx: Any) -> dict[str, Any]:
    def body(client: GateClient) -> dict[str, Any]:
        client.login()
        user = _me(client)  # confirm the new cookies really open a session
        return {"account": _account(user), "cookies": [dict(c) for c in client.jar.values()]}

    request = {k: v for k, v in request.items() if k != "cookies"}
    data = _with_session(request, ctx, body)
    data.pop("relogged", None)
    return data


def me(request: dict[str, Any], ctx: Any) -> dict[str, Any]:
    def body(client: GateClient) -> dict[str, Any]:
        user = _me(client)
        balances, wallets = _balances(user)
        return {"account": _account(user), "balances": balances, "wallets": wallets}

    return _with_session(request, ctx, body)


def set_balance(request: dict[str, Any], ctx: Any) -> dict[str, Any]:
    amount = Decimal(str(request["amount"]))
    if not amount.is_finite() or amount < 0 or amount != amount.quantize(Decimal("0.01")):
        raise InputError("bad_amount", "amount must be a non-negative RUB amount with at most 2 decimals")
    text = format(amount.normalize() if amount == amount.to_integral_value() else amount, "f")

    def body(client: GateClient) -> dict[str, Any]:
        client.call("POST", "/payments/payouts/balance", body={"amount": text})
        balances, _ = _balances(_me(client))
        return {"amount": text, "balances": balances,
                "confirmed": balances["rub"] is not None and balances["rub"] == amount}

    return _with_session(request, ctx, body)


def list_payouts(request: dict[str, Any], ctx: Any) -> dict[str, Any]:
    params: list[tuple[str, Any]] = [("page", request.get("page", 1)), ("per_page", request.get("per_page", 30))]
    params += [("filters[status][]", s) for s in request.get("status", [])]
    for key in ("id", "wallet", "term"):
        if request.get(f"search_{key}") is not None:
            params.append((f"search[{key}]", str(request[f"search_{key}"])))

    def body(client: GateClient) -> dict[str, Any]:
        items, pagination = page_of(response_of(client.call("GET", "/payments/payouts", params=params)))
        return {"payouts": [normalize_payout(raw) for raw in items], "pagination": pagination}

    return _with_session(request, ctx, body)


def get_payout(request: dict[str, Any], ctx: Any) -> dict[str, Any]:
    payout_id = _payout_id(request)

    def body(client: GateClient) -> dict[str, Any]:
        detail_error: ScriptError | None = None
        try:
            raw = payout_of(response_of(client.call("GET", f"/payments/payouts/{payout_id}")))
            return {"payout": normalize_payout(raw), "source": "details"}
        except ScriptError as err:
            if err.code not in DETAIL_FALLBACK_CODES:
                raise
            detail_error = err
        found = _search(client, payout_id)
        if found is None:
            raise ScriptError("not_found", f"payout {payout_id} is not visible to this account", retryable=False,
                              venue_code=detail_error.venue_code if detail_error else None)
        data: dict[str, Any] = {"payout": found, "source": "search"}
        if detail_error is not None:
            data["details_error"] = detail_error.code
        return data

    return _with_session(request, ctx, body)


def accept(request: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Take a status-4 payout with ``/show`` (never ``/approve``); an already-taken payout of ours is success."""
    payout_id = _payout_id(request)

    def body(client: GateClient) -> dict[str, Any]:
        try:
            shown = normalize_payout(payout_of(response_of(
                client.call("POST", f"/payments/payouts/{payout_id}/show"))))
        except GateBusinessError as err:
            if err.code not in ALREADY_CODES:
                raise
            again = _search(client, payout_id)
            if again is not None and again["status"] in (5, *APPROVED_STATUSES) and _is_ours(client, again):
                return {"payout": again, "already_accepted": True, "confirmed": True}
            status = again["status"] if again else None
            raise ScriptError("incorrect_status", f"payout {payout_id} cannot be accepted by this account "
                              f"(status {status if status is not None else 'not visible'})", retryable=False,
                              venue_code=err.status, details={"status": status}) from None
        # Re-read to store what the list says (the reliable view); fall back to the /show answer.
        try:
            again = _search(client, payout_id)
        except ScriptError as err:
            if err.code in ("session_expired", "cloudflare_block"):
                raise
            again = None
        payout = again if again is not None else shown
        if payout["status"] != 5:
            raise ScriptError("incorrect_status", f"payout {payout_id} is in status {payout['status']} after /show",
                              retryable=False, details={"status": payout["status"]})
        return {"payout": payout, "already_accepted": False, "confirmed": again is not None}

    return _with_session(request, ctx, body)


def _attachment(request: dict[str, Any]) -> tuple[str, bytes, str]:
    has_path, has_content = "path" in request, "content_base64" in request
    if has_path == has_content:
        raise InputError("bad_attachment", "give exactly one of path, or content_base64 with filename")
    if has_content and not request.get("filename"):
        raise InputError("bad_attachment", "content_base64 needs a filename (e.g. receipt.pdf)")
    if has_path:
        path = Path(request["path"])
        if not path.is_file():
            raise InputError("file_not_found", "path does not name a readable file")
        if path.stat().st_size > MAX_ATTACHMENT_BYTES:
            raise InputError("file_too_large", f"the receipt is larger than {MAX_ATTACHMENT_BYTES} bytes")
        content = path.read_bytes()
        filename = request.get("filename") or path.name
    else:
        try:
            content = base64.b64decode(request["content_base64"], validate=True)
        except (binascii.Error, ValueError):
            raise InputError("bad_base64", "content_base64 is not valid base64") from None
        filename = request["filename"]
        if len(content) > MAX_ATTACHMENT_BYTES:
            raise InputError("file_too_large", f"the receipt is larger than {MAX_ATTACHMENT_BYTES} bytes")
    if not content:
        raise InputError("empty_file", "the receipt file is empty")
    filename = os.path.basename(filename) or "receipt.pdf"
    ctype = request.get("content_type") or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    return filename, content, ctype


def approve(request: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Complete an accepted payout with the receipt file (multipart, exactly one ``attachments[]`` part)."""
    import hashlib

    payout_id = _payout_id(request)
    filename, content, ctype = _attachment(request)
    sha = hashlib.sha256(content).hexdigest()

    def body(client: GateClient) -> dict[str, Any]:
        files = [("attachments[]", (filename, content, ctype))]
        venue_code: int | None = None
        try:
            answered = normalize_payout(payout_of(response_of(
                client.call("POST", f"/payments/payouts/{payout_id}/approve", files=files))))
            already = False
        except GateBusinessError as err:
            if err.code not in ALREADY_CODES:
                raise
            answered, already = None, True
            venue_code = err.status
        try:
            again = _search(client, payout_id)
        except ScriptError as err:
            if already or err.code in ("session_expired", "cloudflare_block"):
                raise
            again = None
        payout = again if again is not None else answered
        approved = (payout is not None and payout["status"] in APPROVED_STATUSES
                    and (not already or (payout["approved_at"] is not None and _is_ours(client, payout))))
        if not approved:
            status = payout["status"] if payout else None
            raise ScriptError("incorrect_status", f"payout {payout_id} is not approved on this account "
                              f"(status {status if status is not None else 'not visible'})", retryable=False,
                              venue_code=venue_code, details={"status": status})
        return {"payout": payout, "approved": True, "already_approved": already,
                "needs_review": payout["status"] == 6, "confirmed": again is not None,
                "attachment": {"filename": filename, "sha256": sha, "size": len(content)}}

    return _with_session(request, ctx, body)


def cancel(request: dict[str, Any], ctx: Any) -> dict[str, Any]:
    """Give an accepted payout back (the buyer backed out and no new ad fits before ``expired_at``)."""
    payout_id = _payout_id(request)

    def body(client: GateClient) -> dict[str, Any]:
        try:
            payout = normalize_payout(payout_of(response_of(
                client.call("POST", f"/payments/payouts/{payout_id}/cancel"))))
        except GateBusinessError as err:
            if err.code not in ALREADY_CODES:
                raise
            again = _search(client, payout_id)
            status = again["status"] if again else None
            raise ScriptError("incorrect_status", f"payout {payout_id} cannot be cancelled by this account "
                              f"(status {status if status is not None else 'not visible'})", retryable=False,
                              venue_code=err.status, details={"status": status}) from None
        return {"payout": payout, "cancelled": True}

    return _with_session(request, ctx, body)
