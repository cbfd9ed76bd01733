"""The Bybit P2P REST client every Bybit script uses: session construction, endpoints and error mapping.

Only pybit's own P2P methods sign and send requests (no hand-rolled HMAC), so a venue-side change in the
signing rules is fixed by bumping pybit, once, for every script.

Why not ``pybit.unified_trading.HTTP``: importing it pulls in every V5 mixin (trade, asset, earn, spread, ...)
and costs ~230 ms on a cold interpreter, which alone would exceed the one-shot latency budget.  ``HTTP`` is
nothing but a dataclass combining those mixins with ``_V5HTTPManager``; combining just ``P2PHTTP`` with the
same manager gives the identical P2P methods, signing and response handling for about half the import cost.
This reaches into pybit's private modules, which is why pybit is pinned (``==5.17.0``) in pyproject.toml.

Fail fast, let the orchestrator retry: every session is built with ``max_retries=1, retry_delay=0`` and a
``retry_codes`` set that matches nothing.  pybit treats an *empty* ``retry_codes`` as "use the defaults"
({10002, 10006, ...}), which would sleep (up to the rate-limit reset time, or crash with ``ValueError`` on a
reset timestamp in the past) and then hide the venue code behind "Retries exceeded maximum".  With the
sentinel set, 10002 and 10006 surface immediately as ``InvalidRequestError`` carrying their code.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

from itrader import log as itlog
from itrader.errors import InputError, ScriptError

DEFAULT_TIMEOUT_S = 10.0
DEFAULT_RECV_WINDOW = 5000
DEFAULT_MARKET_URL = "https://api2.bybit.com"
MARKET_PATH = "/fiat/otc/item/online"
# A ret_code Bybit never sends: keeps pybit's retry_codes non-empty (empty means "defaults") yet inert.
_NO_RETRY_CODES = frozenset({-999_999})

# Bybit ret_code -> (stable code, retryable)
VENUE_CODES: dict[int, tuple[str, bool]] = {
    10000: ("venue_server_error", True),
    10001: ("invalid_parameter", False),
    10002: ("timestamp_out_of_window", True),
    10003: ("invalid_api_key", False),
    10004: ("invalid_signature", False),
    10005: ("permission_denied", False),
    10006: ("rate_limited", True),
    10016: ("venue_server_error", True),
    912000014: ("permission_denied", False),
    912300013: ("invalid_payment_method", False),
    912120022: ("price_out_of_range", False),
    912120023: ("amount_exceeds_total", False),
    912120024: ("insufficient_balance", False),
}


def venue_error(ret_code: Any, message: str, headers: Any = None) -> ScriptError:
    """Map a non-zero Bybit ret_code (either envelope) to the stable error the orchestrator branches on."""
    try:
        code_int: int | None = int(ret_code)
    except (TypeError, ValueError):
        code_int = None
    code, retryable = VENUE_CODES.get(code_int or 0, ("venue_error", False))
    details: dict[str, Any] = {}
    if code_int == 10006 and headers is not None:
        reset = headers.get("X-Bapi-Limit-Reset-Timestamp")
        if reset and str(reset).isdigit():
            details["reset_at_ms"] = int(reset)
            details["reset_at"] = iso_from_ms(int(reset))
    text = str(message or "")[:300] or "no message"
    return ScriptError(code, f"Bybit answered {code_int}: {text}", retryable=retryable, venue_code=code_int,
                       details=details or None)


def http_error(status: int, venue: str = "Bybit") -> ScriptError:
    """Map a non-200 HTTP status (pybit raises these without reading the body)."""
    if status == 403:
        return ScriptError("ip_rate_limited_or_forbidden",
                           f"{venue} answered HTTP 403 (IP rate limit breached, or the IP/region is blocked)",
                           retryable=True, venue_code=403)
    if status == 429:
        return ScriptError("rate_limited", f"{venue} answered HTTP 429 (frequency protection)", retryable=True,
                           venue_code=429)
    if status >= 500:
        return ScriptError("venue_unavailable", f"{venue} answered HTTP {status}", retryable=True, venue_code=status)
    if status == 401:
        return ScriptError("invalid_api_key", f"{venue} answered HTTP 401 (unknown key or missing auth headers)",
                           retryable=False, venue_code=401)
    if status == 404:
        # One account saw 404 on every P2P path when it had no P2P API access.
        return ScriptError("endpoint_not_found", f"{venue} answered HTTP 404 (path unknown, or no P2P API access)",
                           retryable=False, venue_code=404)
    return ScriptError("venue_http_error", f"{venue} answered HTTP {status}", retryable=False, venue_code=status)


def bad_response(what: str) -> ScriptError:
    return ScriptError("venue_bad_response", f"Bybit sent an unreadable answer ({what})", retryable=True)


def transport_error(exc: BaseException, venue: str = "Bybit") -> ScriptError:
    """requests' exception family -> timeout / network_error (never the exception text: it holds the URL)."""
    import requests

    if isinstance(exc, requests.Timeout):
        return ScriptError("timeout", f"{venue} did not answer in time ({type(exc).__name__})", retryable=True)
    return ScriptError("network_error", f"cannot reach {venue} ({type(exc).__name__})", retryable=True)


def iso_from_ms(ms: int | float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


# -- sessions -----------------------------------------------------------------------------------------------


@cache
def _session_class() -> type:
    """Build the lean session class on first use, so scripts that never sign pay nothing for pybit."""
    import sys
    from dataclasses import dataclass

    # pybit imports pycryptodome (for RSA keys, unused with HMAC keys), whose native loader prefers cffi when it
    # is installed; importing cffi parses C declarations with pycparser, ~30-50 ms of a cold start.  Its own
    # documented fallback is ctypes, chosen when ``import cffi`` fails, so hide cffi for exactly this import
    # and restore it at once (nothing in a Bybit script needs cffi; other imports later see it normally).
    hide_cffi = "cffi" not in sys.modules
    if hide_cffi:
        sys.modules["cffi"] = None  # type: ignore[assignment]
    try:
        from pybit._http_manager import _V5HTTPManager
        from pybit._v5_p2p import P2PHTTP
    finally:
        if hide_cffi and sys.modules.get("cffi", 0) is None:
            del sys.modules["cffi"]

    @dataclass
    class P2PSession(P2PHTTP, _V5HTTPManager):
        """``pybit.unified_trading.HTTP`` reduced to the P2P mixin (see the module docstring for why)."""

    return P2PSession


def credentials(request: dict[str, Any]) -> tuple[str, str]:
    """The request's keys, else BYBIT_API_KEY/BYBIT_API_SECRET; checked before any network call."""
    key = request.get("api_key") or os.environ.get("BYBIT_API_KEY") or ""
    secret = request.get("api_secret") or os.environ.get("BYBIT_API_SECRET") or ""
    if not key or not secret:
        raise InputError("missing_credentials",
                         "api_key and api_secret are required (in the request or BYBIT_API_KEY/BYBIT_API_SECRET)")
    # Keys from the environment are not seen by the contract's request scan: register them for redaction too.
    itlog.REDACTOR.add([key, secret])
    return key, secret


def rest_endpoint(testnet: bool) -> str:
    override = os.environ.get("ITRADER_BYBIT_URL", "").strip()
    if override:
        return override.rstrip("/")
    return "https://api-testnet.bybit.com" if testnet else "https://api.bybit.com"


def timeout_of(request: dict[str, Any]) -> float:
    return float(request.get("timeout_s") or DEFAULT_TIMEOUT_S)


def session(request: dict[str, Any], ctx: Any) -> Any:
    """A signed P2P session for this request's account, reused across --serve requests (keeps the connection)."""
    import hashlib

    key, secret = credentials(request)
    testnet = bool(request.get("testnet", False))
    endpoint = rest_endpoint(testnet)
    fingerprint = hashlib.sha256(f"{key}\0{secret}".encode()).hexdigest()[:16]
    cache_key = f"bybit:rest:{endpoint}:{fingerprint}"
    sess = ctx.cache.get(cache_key)
    if sess is None:
        sess = _session_class()(
            testnet=testnet,
            api_key=key,
            api_secret=secret,
            max_retries=1,
            retry_delay=0,
            retry_codes=set(_NO_RETRY_CODES),
            force_retry=False,
        )
        # Same code for production and sandbox: only the host differs, and pybit reads it at call time.
        sess.endpoint = endpoint
        ctx.cache[cache_key] = sess
    sess.timeout = timeout_of(request)
    sess.recv_window = int(request.get("recv_window") or DEFAULT_RECV_WINDOW)
    return sess


def call(sess: Any, method: str, **params: Any) -> Any:
    """Call one pybit P2P method and return the envelope's ``result``; every failure becomes a ScriptError."""
    return call_envelope(sess, method, **params).get("result")


def call_envelope(sess: Any, method: str, **params: Any) -> dict[str, Any]:
    """Call one pybit P2P method and return the whole envelope (``time_now`` included)."""
    import requests
    from pybit.exceptions import FailedRequestError, InvalidRequestError

    try:
        reply = getattr(sess, method)(**params)
    except InvalidRequestError as exc:
        raise venue_error(exc.status_code, exc.message, exc.resp_headers) from None
    except FailedRequestError as exc:
        if exc.resp_headers is None and "decode JSON" in str(exc.message):
            raise bad_response("not JSON") from None
        if exc.resp_headers is None:  # "Retries exceeded maximum": only reachable through a retry code
            raise ScriptError("venue_error", "Bybit request failed after retries", retryable=True,
                              venue_code=exc.status_code) from None
        raise http_error(int(exc.status_code)) from None
    except requests.RequestException as exc:
        raise transport_error(exc) from None
    except (KeyError, TypeError, AttributeError) as exc:
        # pybit indexes the decoded body directly; a JSON array or an envelope without ret_msg ends up here.
        raise bad_response(f"unexpected envelope: {type(exc).__name__}") from None
    if not isinstance(reply, dict):
        raise bad_response("envelope is not an object")
    return reply


# -- the keyless market list -------------------------------------------------------------------------------


def market_url() -> str:
    return (os.environ.get("ITRADER_BYBIT_MARKET_URL", "").strip() or DEFAULT_MARKET_URL).rstrip("/") + MARKET_PATH


def ws_url() -> str:
    return (os.environ.get("ITRADER_BYBIT_WS_URL", "").strip() or "wss://stream.bybit.com").rstrip("/")


MARKET_HEADERS = {
    "User-Agent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
    "Origin": "https://www.bybit.com",
    "Referer": "https://www.bybit.com/",
    "Content-Type": "application/json;charset=UTF-8",
    "Accept": "application/json",
}


class _MarketConnection:
    """A keep-alive connection to the keyless market host, on the standard library only.

    The market list is a plain unauthenticated POST, so it does not need requests: skipping that import saves
    a large part of bybit_get_rates' cold start.  In --serve mode the connection stays open in ctx.cache.
    """

    def __init__(self, url: str, timeout_s: float) -> None:
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputError("bad_configuration", "ITRADER_BYBIT_MARKET_URL must be an http(s) URL")
        self.url = url
        self.path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.scheme, self.host, self.port = parts.scheme, parts.hostname, parts.port
        self.conn: Any = None
        self.timeout_s = timeout_s

    def _connect(self) -> Any:
        import http.client

        if self.scheme == "https":
            return http.client.HTTPSConnection(self.host, self.port, timeout=self.timeout_s)
        return http.client.HTTPConnection(self.host, self.port, timeout=self.timeout_s)

    def post(self, body: bytes, timeout_s: float) -> tuple[int, bytes, Any]:
        import http.client

        for attempt in (1, 2):
            fresh = self.conn is None
            if fresh:
                self.conn = self._connect()
            self.conn.timeout = timeout_s
            if self.conn.sock is not None:
                self.conn.sock.settimeout(timeout_s)
            try:
                self.conn.request("POST", self.path, body=body, headers=MARKET_HEADERS)
                resp = self.conn.getresponse()
                data = resp.read()
                if resp.will_close:
                    self.close()
                return resp.status, data, resp.headers
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError,
                    http.client.CannotSendRequest, http.client.ResponseNotReady):
                # A kept-alive connection the server already closed: the read is idempotent, retry once fresh.
                self.close()
                if fresh or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def market_post(ctx: Any, body: dict[str, Any], timeout_s: float, slot: int = 0) -> dict[str, Any]:
    """POST the web UI's keyless list query; returns ``result`` ({count, items}) or raises a ScriptError.

    ``slot`` picks one of several keep-alive connections, so independent reads can run at the same time
    (one connection carries one request at a time).
    """
    import http.client
    import json

    url = market_url()
    key = f"bybit:market:{slot}"
    conn = ctx.cache.get(key)
    if conn is None or conn.url != url:
        conn = ctx.cache[key] = _MarketConnection(url, timeout_s)
    venue = "the Bybit market list"
    try:
        status, raw, headers = conn.post(json.dumps(body).encode(), timeout_s)
    except TimeoutError:
        conn.close()
        raise ScriptError("timeout", f"{venue} did not answer in time", retryable=True) from None
    except (OSError, ValueError, http.client.HTTPException) as exc:  # refused, reset, DNS, TLS, bad status line
        conn.close()
        raise ScriptError("network_error", f"cannot reach {venue} ({type(exc).__name__})", retryable=True) from None
    if status != 200:
        raise http_error(status, venue)
    try:
        envelope = json.loads(raw)
    except ValueError:
        raise bad_response("market list is not JSON") from None
    if not isinstance(envelope, dict):
        raise bad_response("market list envelope is not an object")
    ret_code = envelope.get("ret_code", envelope.get("retCode", 0))
    if ret_code not in (0, "0", None):
        raise venue_error(ret_code, str(envelope.get("ret_msg") or envelope.get("retMsg") or ""), headers)
    result = envelope.get("result")
    if isinstance(result, dict) and "items" not in result and isinstance(result.get("data"), dict):
        result = result["data"]  # one older client saw the list nested under result.data
    if not isinstance(result, dict) or not isinstance(result.get("items", []), list):
        raise bad_response("market list has no result.items")
    items = [item for item in result.get("items") or [] if isinstance(item, dict)]
    return {"count": result.get("count"), "items": items}
