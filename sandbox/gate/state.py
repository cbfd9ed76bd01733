"""State of the simulated Gate payout panel: trader accounts, cookie sessions, payouts and their ground truth.

Everything here is plain Python guarded by ``world.lock`` so the HTTP layer (``api.py``), the tick loop and other
sandbox parts (the demo's auditor uses ``world.gate.payouts()`` / ``attachments()``) see one consistent state.

Durations are simulated seconds turned into real ones with ``world.dur``; timestamps are real wall-clock UTC.
Money is Decimal here and only becomes a JSON number at the HTTP edge, as the real panel sends it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

CENT = Decimal("0.01")
RUB_ISO, USDT_ISO = "643", "000001"
TOTAL_FEE = Decimal("1.022")  # total = amount x 1.022 in both captured payouts (the trader fee)

# The account and session that exist from the first second, matching test_data/gate_credentials.json and
# test_data/gate_cookies.json.  Sandbox-only values: they grant nothing anywhere else.
SEED_LOGIN = "trader@sandbox.invalid"
SEED_PASSWORD = "sandbox-only-password-1"


def _laravel_like(label: str) -> str:
    """A deterministic cookie value shaped like a Laravel encrypted cookie (base64 JSON {iv, value, mac, tag})."""
    digest = hashlib.sha256(f"itrader-sandbox-gate:{label}".encode()).digest()
    blob = {
        "iv": base64.b64encode(digest[:16]).decode(),
        "value": base64.b64encode(hashlib.sha512(digest).digest()[:48]).decode(),
        "mac": hashlib.sha256(digest + b"mac").hexdigest(),
        "tag": "",
    }
    return _cookie_text(blob)


def _cookie_text(blob: dict[str, str]) -> str:
    # Laravel URL-encodes the padding ("%3D"), which also keeps Set-Cookie from quoting the value.
    return base64.b64encode(json.dumps(blob, separators=(",", ":")).encode()).decode().replace("=", "%3D")


SEED_SID = _laravel_like("seed-sid")
SEED_RSID = _laravel_like("seed-rsid")

BANKS: dict[str, dict[str, Any]] = {
    # key -> (id, display label, SBP participant code)
    "sberbank": {"id": 1, "label": "Сбербанк", "code": "100000000111"},
    "tbank": {"id": 2, "label": "Т-Банк", "code": "100000000004"},
    "alfabank": {"id": 3, "label": "Альфа-Банк", "code": "100000000008"},
    "vtb": {"id": 4, "label": "ВТБ", "code": "100000000005"},
    "ozonbank": {"id": 5, "label": "Озон Банк", "code": "100000000273"},
    "yandexbank": {"id": 6, "label": "Яндекс Банк", "code": "100000000150"},
}

METHODS: dict[str, dict[str, Any]] = {
    "sbp": {"id": 5, "type": 2, "name": 2, "label": "OUT: Система быстрых платежей (СБП)"},
    "card": {"id": 3, "type": 2, "name": 1, "label": "OUT: Перевод на банковскую карту"},
}

DEFAULT_CONFIG: dict[str, Any] = {
    "session_ttl_s": 1800.0,  # idle lifetime of a session (simulated seconds)
    "expiry_window_s": 3600.0,  # /show -> expired_at = now + this
    "expiry_grace_s": 300.0,  # a status-5 payout leaves 5 this long after expired_at (approve meanwhile -> 6)
    "post_approve_status": 7,  # 6 or 7; 6 is always used when approving after expired_at
    "cancel_status": 4,  # /cancel gives the payout back to the pool by default
    "expired_status": 4,  # an expired payout goes back to the pool by default
    "details_410": False,  # GET /payments/payouts/{id} answers 410 (search[id] keeps working)
    "rotate_every": 25,  # rotate a session's cookies every N authenticated requests (0 = never)
    "rotation_grace_s": 120.0,  # the previous cookie values keep working this long after a rotation
    "rate_per_minute": 0.0,  # status-4 payouts generated per simulated minute (0 = off)
    "rate_limit_per_minute": 0,  # per-account request budget per simulated minute (0 = unlimited)
    "hide_when_zero_balance": True,  # an account whose RUB balance is 0 is offered no status-4 payouts
    "paginator_meta": False,  # list answers use the data[] + meta{} paginator variant some clients expected
}


def iso(ts: float | None) -> str | None:
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def num(value: Decimal) -> int | float:
    """The panel sends amounts as JSON numbers: 7000 stays an int, 87.68 a float (exact at 2 dp)."""
    return int(value) if value == value.to_integral_value() else float(value)


def _cookie_value() -> str:
    blob = {
        "iv": base64.b64encode(secrets.token_bytes(16)).decode(),
        "value": base64.b64encode(secrets.token_bytes(48)).decode(),
        "mac": secrets.token_hex(32),
        "tag": "",
    }
    return _cookie_text(blob)


@dataclass
class Account:
    id: int
    login: str
    password: str
    name: str
    rub: Decimal = Decimal("0.00")
    usdt: Decimal = Decimal("0.00")
    session_ttl_s: float | None = None  # per-account override of config session_ttl_s

    def public(self) -> dict[str, Any]:
        return {"id": self.id, "login": self.login, "name": self.name, "rub_balance": str(self.rub),
                "usdt_balance": str(self.usdt), "session_ttl_s": self.session_ttl_s}


@dataclass
class Session:
    login: str
    sid: str
    rsid: str
    last_seen: float
    requests: int = 0
    rotate_next: bool = False


@dataclass
class Payout:
    id: int
    method: str  # "sbp" | "card"
    wallet: str
    bank: str | None
    amount_rub: Decimal
    course: Decimal
    created_at: float
    status: int = 4
    owner: str | None = None
    updated_at: float = 0.0
    expired_at: float | None = None
    approved_at: float | None = None
    attachments: list[dict[str, Any]] = field(default_factory=list)  # includes the raw bytes under "content"

    @property
    def amount_usdt(self) -> Decimal:
        return (self.amount_rub / self.course).quantize(CENT, ROUND_HALF_UP)

    @property
    def total_rub(self) -> Decimal:
        return (self.amount_rub * TOTAL_FEE).quantize(CENT, ROUND_HALF_UP)

    @property
    def total_usdt(self) -> Decimal:
        return (self.total_rub / self.course).quantize(CENT, ROUND_HALF_UP)

    def truth(self) -> dict[str, Any]:
        """Everything the simulator knows, including what the panel hides at status 4."""
        return {
            "id": self.id, "status": self.status, "owner": self.owner, "method": self.method,
            "wallet": self.wallet, "bank_key": self.bank, "amount_rub": str(self.amount_rub),
            "amount_usdt": str(self.amount_usdt), "total_rub": str(self.total_rub),
            "total_usdt": str(self.total_usdt), "course": str(self.course), "created_at": iso(self.created_at),
            "expired_at": iso(self.expired_at), "approved_at": iso(self.approved_at),
            "attachments": [{k: v for k, v in a.items() if k != "content"} for a in self.attachments],
        }


class GateState:
    """The panel's state, attached to the world as ``world.gate``."""

    def __init__(self, world: Any) -> None:
        self.world = world
        self.config: dict[str, Any] = dict(DEFAULT_CONFIG)
        self.config.update(world.options.get("gate", {}) if isinstance(world.options.get("gate"), dict) else {})
        self.accounts: dict[str, Account] = {}
        self.sessions: dict[str, Session] = {}  # sid -> session
        self.retired: dict[str, tuple[str, str, float]] = {}  # old sid -> (new sid, old rsid, valid until)
        self.book: dict[int, Payout] = {}
        self.wallets: set[str] = set()
        self.requests: deque[dict[str, Any]] = deque(maxlen=50_000)
        self.forced_429: list[dict[str, Any]] = []  # [{"remaining", "retry_after", "login"}]
        self.budget: dict[str, tuple[float, int]] = {}  # login -> (window start, count)
        self._gen_credit = 0.0
        self._last_tick = world.now()
        self._account_ids = 1000 + world.rng.randrange(900)
        seed = self.create_account(SEED_LOGIN, SEED_PASSWORD, name="Sandbox Trader")
        self.sessions[SEED_SID] = Session(seed.login, SEED_SID, SEED_RSID, world.now())

    # -- Python API for other sandbox parts --------------------------------------------------------------------
    def payouts(self) -> list[dict[str, Any]]:
        with self.world.lock:
            self.settle()
            return [p.truth() for p in self.book.values()]

    def payout(self, payout_id: int | str) -> dict[str, Any] | None:
        with self.world.lock:
            self.settle()
            p = self.book.get(int(payout_id))
            return p.truth() if p else None

    def attachments(self, payout_id: int | str) -> list[bytes]:
        with self.world.lock:
            p = self.book.get(int(payout_id))
            return [a["content"] for a in p.attachments] if p else []

    # -- accounts and sessions -------------------------------------------------------------------------------
    def create_account(self, login: str | None = None, password: str | None = None, *, name: str | None = None,
                       rub: str | Decimal = "0", usdt: str | Decimal = "0",
                       session_ttl_s: float | None = None) -> Account:
        with self.world.lock:
            self._account_ids += 1 + self.world.rng.randrange(5)
            login = login or f"trader{self._account_ids}@sandbox.invalid"
            if login in self.accounts:
                raise ValueError(f"account {login!r} exists")
            acc = Account(self._account_ids, login, password or secrets.token_urlsafe(12),
                          name or f"Trader {self._account_ids}", Decimal(rub).quantize(CENT),
                          Decimal(usdt).quantize(CENT), session_ttl_s)
            self.accounts[login] = acc
            return acc

    def check_password(self, login: str, password: str) -> Account | None:
        acc = self.accounts.get(login)
        if acc is None or not secrets.compare_digest(acc.password.encode(), password.encode()):
            return None
        return acc

    def new_session(self, acc: Account) -> Session:
        sess = Session(acc.login, _cookie_value(), _cookie_value(), self.world.now())
        self.sessions[sess.sid] = sess
        return sess

    def ttl(self, login: str) -> float:
        acc = self.accounts.get(login)
        ttl = acc.session_ttl_s if acc and acc.session_ttl_s is not None else self.config["session_ttl_s"]
        return self.world.dur(float(ttl))

    def resolve(self, sid: str | None, rsid: str | None) -> Session | None:
        """The live session for these cookie values, or None (missing, unknown, mismatched or idle too long)."""
        if not sid or not rsid:
            return None
        now = self.world.now()
        if sid not in self.sessions and sid in self.retired:
            new_sid, old_rsid, until = self.retired[sid]
            if now > until or old_rsid != rsid:
                return None
            sess = self.sessions.get(new_sid)
            if sess is None:
                return None
        else:
            sess = self.sessions.get(sid)
            if sess is None or sess.rsid != rsid:
                return None
        if now - sess.last_seen > self.ttl(sess.login):
            self.drop_session(sess)
            return None
        sess.last_seen = now
        sess.requests += 1
        return sess

    def maybe_rotate(self, sess: Session) -> bool:
        """Give the session new cookie values now and then; the old ones work for a short grace period."""
        every = int(self.config["rotate_every"] or 0)
        if not sess.rotate_next and not (every > 0 and sess.requests % every == 0):
            return False
        sess.rotate_next = False
        old_sid, old_rsid = sess.sid, sess.rsid
        self.sessions.pop(old_sid, None)
        sess.sid, sess.rsid = _cookie_value(), _cookie_value()
        self.sessions[sess.sid] = sess
        self.retired[old_sid] = (sess.sid, old_rsid, self.world.now() + self.world.dur(self.config["rotation_grace_s"]))
        return True

    def drop_session(self, sess: Session) -> None:
        self.sessions.pop(sess.sid, None)
        for old, (new, _, _) in list(self.retired.items()):
            if new == sess.sid:
                del self.retired[old]

    def expire_sessions(self, login: str | None = None) -> int:
        with self.world.lock:
            doomed = [s for s in self.sessions.values() if login is None or s.login == login]
            for sess in doomed:
                self.drop_session(sess)
            return len(doomed)

    def rotate_sessions(self, login: str | None = None) -> int:
        with self.world.lock:
            chosen = [s for s in self.sessions.values() if login is None or s.login == login]
            for sess in chosen:
                sess.rotate_next = True
            return len(chosen)

    def take_429(self, login: str | None) -> int | None:
        """Retry-After seconds when this request must be throttled (forced by control API or over budget)."""
        for item in self.forced_429:
            if item.get("login") in (None, login):
                item["remaining"] -= 1
                if item["remaining"] <= 0:
                    self.forced_429.remove(item)
                return int(item["retry_after"])
        limit = int(self.config["rate_limit_per_minute"] or 0)
        if limit > 0 and login:
            now = self.world.now()
            window = self.world.dur(60)
            start, count = self.budget.get(login, (now, 0))
            if now - start >= window:
                start, count = now, 0
            count += 1
            self.budget[login] = (start, count)
            if count > limit:
                return max(1, int(start + window - now + 0.999))
        return None

    # -- payouts -----------------------------------------------------------------------------------------------
    def _wallet(self, method: str) -> str:
        rng = self.world.rng
        while True:
            if method == "sbp":
                wallet = "79" + "".join(str(rng.randrange(10)) for _ in range(9))
            else:
                body = rng.choice(["2200", "2202", "4276", "5536", "4377"]) + "".join(
                    str(rng.randrange(10)) for _ in range(11))
                wallet = body + str(_luhn_digit(body))
            if wallet not in self.wallets:
                self.wallets.add(wallet)
                return wallet

    def _amount(self) -> Decimal:
        rng = self.world.rng
        # Mostly round sums between 1 000 and 300 000 RUB, skewed towards smaller ones; some with kopecks.
        rub = Decimal(int(1000 * (300 ** rng.random())))
        roll = rng.random()
        if roll < 0.55:
            rub = (rub / 100).to_integral_value() * 100
        elif roll < 0.8:
            rub = rub.to_integral_value()
        else:
            rub = rub + Decimal(rng.randrange(1, 100)) / 100
        return min(max(rub, Decimal(1000)), Decimal(300000)).quantize(CENT)

    def generate(self, n: int = 1, *, amount_rub: str | Decimal | None = None, method: str | None = None,
                 bank: str | None = "random", course: str | Decimal | None = None) -> list[dict[str, Any]]:
        """Create ``n`` status-4 payouts now and return their ground truth (amounts included)."""
        if method is not None and method not in METHODS:
            raise ValueError(f"method must be one of {sorted(METHODS)}")
        if bank not in (None, "random") and bank not in BANKS:
            raise ValueError(f"bank must be null, 'random' or one of {sorted(BANKS)}")
        out = []
        with self.world.lock:
            rng = self.world.rng
            for _ in range(n):
                kind = method or ("sbp" if rng.random() < 0.7 else "card")
                if bank == "random":
                    bank_key = None if rng.random() < 0.06 else rng.choice(sorted(BANKS))
                else:
                    bank_key = bank
                rub = Decimal(str(amount_rub)).quantize(CENT) if amount_rub is not None else self._amount()
                rate = (Decimal(str(course)) if course is not None
                        else Decimal(7800 + rng.randrange(601)) / 100).quantize(CENT)
                now = self.world.now()
                p = Payout(int(self.world.next_id(7)), kind, self._wallet(kind), bank_key, rub, rate, now,
                           updated_at=now)
                self.book[p.id] = p
                out.append(p.truth())
        return out

    def settle(self) -> None:
        """Apply expiry: a status-5 payout past expired_at + grace leaves 5. Call under world.lock."""
        now = self.world.now()
        grace = self.world.dur(float(self.config["expiry_grace_s"]))
        for p in self.book.values():
            if p.status == 5 and p.expired_at is not None and now > p.expired_at + grace:
                owner = p.owner
                p.status = int(self.config["expired_status"])
                p.updated_at = now
                if p.status == 4:
                    p.owner, p.expired_at = None, None
                self.world.record("gate_expired", payout_id=p.id, account=owner, wallet=p.wallet, status=p.status)

    def tick(self, now: float) -> None:
        self.settle()
        rate = float(self.config["rate_per_minute"] or 0)
        elapsed = max(0.0, now - self._last_tick)
        self._last_tick = now
        if rate <= 0:
            self._gen_credit = 0.0
            return
        # rate per simulated minute -> expected payouts in this real interval; deterministic accumulator.
        self._gen_credit += rate * elapsed / self.world.dur(60)
        while self._gen_credit >= 1:
            self._gen_credit -= 1
            self.generate(1)

    def visible(self, p: Payout, acc: Account) -> bool:
        """Status-4 payouts are offered to every account with a balance; others only to their owner."""
        if p.owner is not None:
            return p.owner == acc.login
        if p.status != 4:
            return False
        return not (self.config["hide_when_zero_balance"] and acc.rub <= 0)

    def show(self, p: Payout, acc: Account) -> None:
        now = self.world.now()
        p.status, p.owner, p.updated_at = 5, acc.login, now
        p.expired_at = now + self.world.dur(float(self.config["expiry_window_s"]))
        self.world.record("gate_accept", payout_id=p.id, account=acc.login)

    def approve(self, p: Payout, acc: Account, filename: str, content: bytes, content_type: str) -> None:
        now = self.world.now()
        after = p.expired_at is not None and now > p.expired_at
        p.status = 6 if after else int(self.config["post_approve_status"])
        p.approved_at = p.updated_at = now
        sha = hashlib.sha256(content).hexdigest()
        ext = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        media_id = 500000 + len(self.world.truth) + self.world.rng.randrange(1000)
        p.attachments.append({
            "name": filename.rsplit(".", 1)[0] if "." in filename else filename, "file_name": filename,
            "original_url": f"{media_id}/{filename}", "extension": ext, "size": len(content),
            "mime_type": content_type, "created_at": iso(now), "sha256": sha, "content": content,
        })
        acc.usdt += p.amount_usdt
        self.world.record("gate_approve", payout_id=p.id, account=acc.login, wallet=p.wallet, bank_key=p.bank,
                          amount_rub=str(p.amount_rub), amount_usdt=str(p.amount_usdt), attachment_sha256=sha,
                          filename=filename, status=p.status, after_expiry=after)

    def cancel(self, p: Payout, acc: Account) -> None:
        p.status = int(self.config["cancel_status"])
        p.updated_at = self.world.now()
        if p.status == 4:
            p.owner, p.expired_at = None, None
        self.world.record("gate_cancel", payout_id=p.id, account=acc.login, wallet=p.wallet, status=p.status)

    def log_request(self, method: str, path: str, login: str | None, status: int) -> None:
        self.requests.append({"ts": time.time(), "method": method, "path": path, "account": login,
                              "status": status})


def _luhn_digit(body: str) -> int:
    total = 0
    for i, ch in enumerate(reversed(body)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return (10 - total % 10) % 10
