"""HTTP client for the Gate trader panel: cookie session, re-login, and the error classification callers need.

The panel has no official API, so this client is deliberately defensive (gate-panel-api notes in the README):

* Cookies arrive as a browser-export array and leave the same way.  Only ``name``/``value`` go on the wire; every
  ``Set-Cookie`` the panel sends is merged by name, and the *changed* cookie objects are handed back so the
  caller can persist rotated values (unchanged ones are not echoed: their values are secrets of the request and
  would come out masked anyway).
* Login success is decided by the presence of the session cookie, never by the body.
* A 403 is a Cloudflare page and is never parsed as JSON; 410 is an access failure to alert on; 429 carries
  ``Retry-After``; 401 re-logs in once, and only when a password was given.
* Business errors come in three shapes (``error``, ``response.error_description``, ``message``); they are
  flattened to one text so ``incorrect_status`` / "already" answers can be recognised and confirmed by re-reading.
"""

from __future__ import annotations

import json
import logging
import os
import time
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

from itrader.errors import InputError, ScriptError, network_error

DEFAULT_BASE_URL = "https://panel.gate.cx/api/v1"
SESSION_COOKIE = "sid"
DEFAULT_RETRY_AFTER_S = 60
CLOUDFLARE_BACK_OFF_S = 300
COOKIE_DEFAULT_LIFETIME_S = 30 * 24 * 3600
USER_AGENT = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
              "Chrome/131.0.0.0 Safari/537.36")

log = logging.getLogger("itrader.gate")


def base_url() -> str:
    return os.environ.get("ITRADER_GATE_URL", DEFAULT_BASE_URL).rstrip("/")


class GateBusinessError(ScriptError):
    """A 4xx/``success: false`` answer that the panel explained; ``text`` holds the flattened explanation."""

    def __init__(self, code: str, message: str, *, status: int, text: str) -> None:
        super().__init__(code, message, retryable=False, venue_code=status)
        self.status = status
        self.text = text


def _flatten_error(body: Any) -> str:
    """Join the three known error shapes into one lower-case text for matching."""
    parts: list[str] = []
    if isinstance(body, dict):
        if isinstance(body.get("error"), str):
            parts.append(body["error"])
        resp = body.get("response")
        if isinstance(resp, dict) and isinstance(resp.get("error_description"), str):
            parts.append(resp["error_description"])
        if isinstance(body.get("message"), str):
            parts.append(body["message"])
    return "; ".join(parts)


def _looks_html(resp: Any) -> bool:
    ctype = resp.headers.get("Content-Type", "").lower()
    if "html" in ctype:
        return True
    head = resp.content[:64].lstrip().lower()
    return head.startswith((b"<!doctype", b"<html", b"<"))


class GateClient:
    """One Gate account's session.  ``cookies`` and/or ``login``+``password`` come from the request."""

    def __init__(self, *, cookies: list[dict[str, Any]] | None, login: str | None, password: str | None,
                 timeout_s: float = 20.0, http: Any = None, url: str | None = None) -> None:
        import requests

        self.base = (url or base_url()).rstrip("/")
        parts = urlsplit(self.base)
        self.origin = f"{parts.scheme}://{parts.netloc}"
        self.login_name = login
        self.password = password
        self.timeout = (min(5.0, timeout_s), timeout_s)
        self.http = http or requests.Session()
        self.jar: dict[str, dict[str, Any]] = {}
        for cookie in cookies or []:
            if cookie.get("name") and isinstance(cookie.get("value"), str):
                self.jar[cookie["name"]] = dict(cookie)
        self._given = {name: c["value"] for name, c in self.jar.items()}
        self.relogged = False

    # -- cookies -------------------------------------------------------------------------------------------------
    def has_session(self) -> bool:
        return bool(self.jar.get(SESSION_COOKIE, {}).get("value"))

    def cookie_header(self) -> str:
        return "; ".join(f"{name}={c['value']}" for name, c in self.jar.items() if c.get("value"))

    def _merge(self, resp: Any) -> None:
        host = urlsplit(self.base).hostname or ""
        now = time.time()
        for c in resp.cookies:
            entry = self.jar.get(c.name) or {
                "domain": c.domain if c.domain_specified else host, "hostOnly": not c.domain_specified,
                "httpOnly": bool(c.has_nonstandard_attr("HttpOnly")), "name": c.name, "path": c.path or "/",
                "sameSite": None, "secure": bool(c.secure), "session": c.expires is None, "storeId": None,
            }
            entry = dict(entry)
            entry["value"] = c.value
            entry["expirationDate"] = float(c.expires) if c.expires else now + COOKIE_DEFAULT_LIFETIME_S
            self.jar[c.name] = entry
        self.http.cookies.clear()  # the jar above is the only cookie store: nothing leaks between accounts

    def changed_cookies(self) -> list[dict[str, Any]]:
        """Cookie objects whose value differs from what the caller gave us (new or rotated)."""
        return [dict(c) for name, c in self.jar.items() if self._given.get(name) != c.get("value")]

    # -- transport -----------------------------------------------------------------------------------------------
    def _headers(self, json_body: bool) -> dict[str, str]:
        headers = {
            "Accept": "application/json, text/plain, */*",
            "Accept-Language": "ru,en;q=0.9",
            "Origin": self.origin,
            "Referer": f"{self.origin}/",
            "DNT": "1",
            "User-Agent": USER_AGENT,
        }
        if json_body:
            headers["Content-Type"] = "application/json"
        cookie = self.cookie_header()
        if cookie:
            headers["Cookie"] = cookie
        return headers

    def _send(self, method: str, path: str, *, params: Any = None, body: Any = None,
              files: Any = None) -> Any:
        import requests

        data = None
        if body is not None:
            data = json.dumps(body)
        elif files is None and method == "POST":
            data = b""  # an empty POST still sends Content-Length: 0, as the browser does
        started = time.perf_counter()
        try:
            resp = self.http.request(method, self.base + path, params=params, data=data, files=files,
                                     headers=self._headers(body is not None), timeout=self.timeout,
                                     allow_redirects=False)
        except requests.RequestException as exc:
            log.warning("gate request failed", extra={"fields": {"method": method, "path": path,
                                                                  "error": type(exc).__name__}})
            raise network_error(exc, "Gate") from None
        self._merge(resp)
        log.info("gate request", extra={"fields": {"method": method, "path": path, "status": resp.status_code,
                                                     "ms": round((time.perf_counter() - started) * 1000, 1)}})
        return resp

    def _classify(self, resp: Any) -> Any:
        """Return the decoded JSON body of a successful answer or raise the matching ScriptError."""
        status = resp.status_code
        if status == 403:
            if _looks_html(resp) or "cloudflare" in resp.headers.get("Server", "").lower():
                raise ScriptError("cloudflare_block", "Gate answered 403 with a Cloudflare page; back off and alert",
                                  retryable=True, venue_code=403,
                                  details={"back_off_s": CLOUDFLARE_BACK_OFF_S, "alert": True})
            raise ScriptError("forbidden", "Gate refused the request (403)", retryable=False, venue_code=403,
                              details={"alert": True})
        if status == 401:
            raise ScriptError("session_expired", "the Gate session expired or the cookies are invalid",
                              retryable=False, venue_code=401)
        if status == 410:
            raise ScriptError("gone", "Gate answered 410 Gone (access from this egress is blocked); alert",
                              retryable=False, venue_code=410, details={"alert": True})
        if status == 429:
            retry_after = DEFAULT_RETRY_AFTER_S
            header = resp.headers.get("Retry-After", "")
            if header.strip().isdigit():
                retry_after = int(header.strip())
            raise ScriptError("rate_limited", f"Gate rate limit; retry after {retry_after} s", retryable=True,
                              venue_code=429, details={"retry_after": retry_after})
        if status >= 500:
            raise ScriptError("venue_unavailable", f"Gate server error (HTTP {status})", retryable=True,
                              venue_code=status)
        if 300 <= status < 400:
            raise ScriptError("bad_response", f"unexpected redirect from Gate (HTTP {status})", retryable=True,
                              venue_code=status)
        if _looks_html(resp):
            raise ScriptError("bad_response", f"Gate answered HTML instead of JSON (HTTP {status})",
                              retryable=True, venue_code=status)
        try:
            body = json.loads(resp.content or b"null", parse_float=Decimal)
        except ValueError:
            raise ScriptError("bad_response", f"Gate answered non-JSON (HTTP {status})", retryable=True,
                              venue_code=status) from None
        if 200 <= status < 300 and not (isinstance(body, dict) and body.get("success") is False):
            return body
        text = _flatten_error(body)
        low = text.lower()
        if "incorrect_status" in low:
            code = "incorrect_status"
        elif "already" in low or "processing" in low:
            code = "already_processed"
        elif status == 404:
            code = "not_found"
        elif status in (400, 409, 422):
            code = "rejected"
        else:
            code = "venue_error"
        # The panel's own words are short diagnostics (never secrets); keep them for the operator.
        raise GateBusinessError(code, f"Gate refused (HTTP {status}): {text or 'no explanation'}"[:300],
                                status=status, text=text)

    # -- API -------------------------------------------------------------------------------------------------------
    def login(self) -> dict[str, Any]:
        """POST /auth/basic/login; success means the panel set the session cookie (the body is optional)."""
        if not self.login_name or not self.password:
            raise InputError("missing_credentials", "login and password are required to log in to Gate")
        before = self.jar.get(SESSION_COOKIE, {}).get("value")
        resp = self._send("POST", "/auth/basic/login", body={"login": self.login_name, "password": self.password})
        got_cookie = self.jar.get(SESSION_COOKIE, {}).get("value") not in (None, before)
        if resp.status_code in (403, 410, 429) or resp.status_code >= 500:
            self._classify(resp)
        if not got_cookie:
            if 400 <= resp.status_code < 500:
                raise ScriptError("invalid_credentials", "Gate rejected the login or password", retryable=False,
                                  venue_code=resp.status_code)
            raise ScriptError("login_failed", f"Gate set no session cookie (HTTP {resp.status_code})",
                              retryable=False, venue_code=resp.status_code)
        try:
            body = json.loads(resp.content or b"null", parse_float=Decimal)
        except ValueError:
            body = None
        user = body.get("response", {}).get("user") if isinstance(body, dict) and isinstance(
            body.get("response"), dict) else None
        return user if isinstance(user, dict) else {}

    def call(self, method: str, path: str, *, params: Any = None, body: Any = None, files: Any = None) -> Any:
        """One authenticated call; logs in first when only a password is known, and once more on 401."""
        if not self.has_session():
            if not self.password:
                raise InputError("missing_credentials", "give cookies (with sid) or login and password")
            self.login()
            self.relogged = True
        resp = self._send(method, path, params=params, body=body, files=files)
        if resp.status_code == 401 and self.password and not self.relogged:
            self.login()
            self.relogged = True
            resp = self._send(method, path, params=params, body=body, files=files)
        return self._classify(resp)


def response_of(body: Any) -> Any:
    """The ``response`` member of a success envelope (or the body itself when the panel omits the envelope)."""
    if isinstance(body, dict) and "response" in body:
        return body["response"]
    return body
