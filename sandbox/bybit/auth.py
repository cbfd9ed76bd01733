"""Request authentication and rate limiting of the simulated Bybit V5 API.

Signature: HMAC-SHA256 (lower-case hex) keyed with the secret over ``timestamp + api_key + recv_window``
followed by the RAW body bytes exactly as received.  The body is never re-serialised: clients differ in key
order, separators and ASCII escaping, and the real server verifies what was sent, so a client that signs one
serialisation and sends another must fail here as it would on Bybit.  Multipart uploads are signed the same way
over the raw multipart bytes.

Time window: valid only if ``server_time - recv_window <= timestamp < server_time + 1000`` (10002 otherwise).

Limits (rolling windows): per UID 10 reads/s and 5 writes/s (10006 "Too many visits!"), per IP 600 requests
per 5 s (HTTP 403 "access too frequent").  Every reply carries ``X-Bapi-Limit``, ``X-Bapi-Limit-Status`` and an
``X-Bapi-Limit-Reset-Timestamp`` that is always in the FUTURE: pybit sleeps until it on 10006, and a past value
makes it call ``time.sleep`` with a negative number.
"""

from __future__ import annotations

import hashlib
import hmac
import threading
import time
from collections import deque
from dataclasses import dataclass

from sandbox.bybit.state import Account, BybitVenue, VenueError

DEFAULT_RECV_WINDOW = 5000
FUTURE_SKEW_MS = 1000
MIN_RESET_AHEAD_MS = 200  # the reset header is at least this far ahead, so it is still future on arrival


class HttpRefusal(Exception):
    """A refusal at the HTTP layer (401 missing auth headers, 403 IP limit)."""

    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


def sign(secret: str, timestamp: str, api_key: str, recv_window: str, body: bytes) -> str:
    """The signature a correct client sends (also used by tests and the control API docs)."""
    payload = f"{timestamp}{api_key}{recv_window}".encode() + body
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


def authenticate(venue: BybitVenue, headers: dict[str, str], body: bytes, now_ms: int | None = None) -> Account:
    """Check headers, key, time window and signature; returns the calling account or raises."""
    key = headers.get("x-bapi-api-key")
    ts = headers.get("x-bapi-timestamp")
    signature = headers.get("x-bapi-sign")
    if not key or not ts or not signature:
        raise HttpRefusal(401, "Unauthorized: X-BAPI-API-KEY, X-BAPI-TIMESTAMP and X-BAPI-SIGN are required")
    rw_text = headers.get("x-bapi-recv-window") or str(DEFAULT_RECV_WINDOW)
    account = venue.account_by_key(key)
    if account is None:
        raise VenueError(10003, "API key is invalid.")
    if not rw_text.isdigit() or not 0 < int(rw_text) <= 120_000:
        raise VenueError(10001, "recv_window is invalid")
    server = now_ms if now_ms is not None else int(time.time() * 1000)
    rw = int(rw_text)
    if not ts.isdigit() or not server - rw <= int(ts) < server + FUTURE_SKEW_MS:
        raise VenueError(10002, "invalid request, please check your server timestamp or recv_window param. "
                                f"req_timestamp[{ts}],server_timestamp[{server}],recv_window[{rw}]")
    expected = sign(account.api_secret or "", ts, key, rw_text, body)
    if not hmac.compare_digest(expected.encode(), signature.encode()):
        raise VenueError(10004, "error sign!")
    return account


@dataclass
class Limits:
    """Tunable through ``POST /sandbox/bybit/limits`` (tests use small numbers to trigger them)."""

    reads_per_s: int = 10
    writes_per_s: int = 5
    ip_per_5s: int = 600
    ip_ban_s: float = 0.0  # extra lock-out after an IP breach (real Bybit: >= 10 min); 0 = rolling window only


class RateLimiter:
    """Rolling-window counters.  Refused requests are not counted, so waiting until the reset always helps."""

    def __init__(self) -> None:
        self.limits = Limits()
        self._lock = threading.Lock()
        self._uid: dict[tuple[str, str], deque[float]] = {}
        self._ip: dict[str, deque[float]] = {}
        self._banned_until: dict[str, float] = {}

    def reset(self) -> None:
        with self._lock:
            self._uid.clear()
            self._ip.clear()
            self._banned_until.clear()

    def check_ip(self, ip: str, now: float | None = None) -> None:
        now = now if now is not None else time.time()
        with self._lock:
            if self._banned_until.get(ip, 0) > now:
                raise HttpRefusal(403, "access too frequent")
            q = self._ip.setdefault(ip, deque())
            while q and now - q[0] >= 5.0:
                q.popleft()
            if len(q) >= self.limits.ip_per_5s:
                if self.limits.ip_ban_s > 0:
                    self._banned_until[ip] = now + self.limits.ip_ban_s
                raise HttpRefusal(403, "access too frequent")
            q.append(now)

    def check_uid(self, uid: str, kind: str, now: float | None = None) -> dict[str, str]:
        """Count one ``kind`` ("read"/"write") request; returns the limit headers, raises 10006 when over."""
        now = now if now is not None else time.time()
        limit = self.limits.writes_per_s if kind == "write" else self.limits.reads_per_s
        with self._lock:
            q = self._uid.setdefault((uid, kind), deque())
            while q and now - q[0] >= 1.0:
                q.popleft()
            over = len(q) >= limit
            if not over:
                q.append(now)
            headers = self._headers(limit, limit - len(q), q, now)
        if over:
            raise RateLimited(headers)
        return headers

    @staticmethod
    def _headers(limit: int, remaining: int, q: deque[float], now: float) -> dict[str, str]:
        now_ms = int(now * 1000)
        reset = int(q[0] * 1000) + 1000 if q else now_ms
        reset = max(reset, now_ms + MIN_RESET_AHEAD_MS)
        return {"X-Bapi-Limit": str(limit), "X-Bapi-Limit-Status": str(max(remaining, 0)),
                "X-Bapi-Limit-Reset-Timestamp": str(reset)}

    def idle_headers(self, kind: str = "read") -> dict[str, str]:
        """Headers for replies that were refused before a UID was known."""
        limit = self.limits.writes_per_s if kind == "write" else self.limits.reads_per_s
        return self._headers(limit, limit, deque(), time.time())


class RateLimited(VenueError):
    """10006 with the headers that tell the client when to retry."""

    def __init__(self, headers: dict[str, str]) -> None:
        super().__init__(10006, "Too many visits!")
        self.headers = headers
