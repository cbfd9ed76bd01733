"""Client-side rate limits for venue calls, so the orchestrator stays inside the venues' budgets on its own.

Bybit counts per UID over a *rolling* window (10 reads/s, 5 writes/s) and per ad (10 edits / 5 min); the
whole IP gets 600 requests / 5 s before a 403 that means "stop for ten minutes".  Gate's server limit is
unknown, so we keep the pace earlier clients used (240/min per account, configurable).

Each limit is a sliding-window log rather than a refilling bucket: a bucket of N tokens refilled at N per
window admits up to 2N calls inside one rolling window (a full burst, then the refill), which is exactly what
a rolling-window venue punishes.  The log is exact: a call gets the earliest moment at which no window of the
rule's length holds more than ``limit`` grants.  Slots are *reserved* under one lock, so callers from several
threads are spaced out rather than racing, and the wait happens outside the lock.

A venue's "too many visits" answer (Bybit 10006, Gate 429) pushes the account's next allowed time forward
(``penalize``); a call that would have to wait longer than its bound is refused at once as
``local_rate_limited`` instead of stalling a worker thread.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

KINDS = ("read", "write", "ad_edit")


@dataclass(frozen=True)
class LimitRule:
    """At most ``limit`` calls per ``window_s`` for the calls of ``venue`` whose kind is in ``kinds``.

    ``scope`` says what one window is shared by: "account" (one per venue account), "venue" (all accounts,
    e.g. Bybit's per-IP limit) or "limit_key" (the caller's ``limit_key``, e.g. an ad id; a call without a
    key is not subject to the rule).
    """

    name: str
    venue: str
    kinds: frozenset[str]
    limit: int
    window_s: float
    scope: str = "account"

    def __post_init__(self) -> None:
        if self.scope not in ("account", "venue", "limit_key"):
            raise ValueError(f"{self.name}: unknown scope {self.scope!r}")
        if self.limit < 1 or self.window_s <= 0:
            raise ValueError(f"{self.name}: limit must be >= 1 and window_s > 0")
        unknown = set(self.kinds) - set(KINDS)
        if unknown:
            raise ValueError(f"{self.name}: unknown kinds {sorted(unknown)}")


ALL_KINDS = frozenset(KINDS)
WRITES = frozenset({"write", "ad_edit"})


def default_rules(gate_per_minute: int = 240) -> tuple[LimitRule, ...]:
    """The published Bybit limits and the Gate pace earlier clients used."""
    return (
        LimitRule("bybit_ip", "bybit", ALL_KINDS, 600, 5.0, "venue"),
        LimitRule("bybit_reads", "bybit", frozenset({"read"}), 10, 1.0, "account"),
        # An ad edit is also a write: it spends the account's write budget and the ad's own.
        LimitRule("bybit_writes", "bybit", WRITES, 5, 1.0, "account"),
        LimitRule("bybit_ad_edits", "bybit", frozenset({"ad_edit"}), 10, 300.0, "limit_key"),
        LimitRule("gate_account", "gate", ALL_KINDS, gate_per_minute, 60.0, "account"),
    )


@dataclass
class _Window:
    limit: int
    window_s: float
    grants: deque[float] = field(default_factory=deque)
    blocked_until: float = 0.0

    def earliest(self, now: float) -> float:
        while self.grants and self.grants[0] <= now - self.window_s:
            self.grants.popleft()
        slot = max(now, self.blocked_until)
        if self.grants:
            slot = max(slot, self.grants[-1])  # keep the log sorted: reservations are handed out in order
        if len(self.grants) >= self.limit:
            slot = max(slot, self.grants[-self.limit] + self.window_s)
        return slot


@dataclass
class Grant:
    ok: bool
    waited_s: float = 0.0
    rule: str | None = None  # the rule that refused (or made us wait longest)
    needed_s: float = 0.0  # on refusal: how long the call would have had to wait


class RateLimiter:
    def __init__(
        self,
        rules: Iterable[LimitRule] = (),
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        keep_history: int = 0,
    ) -> None:
        self.rules = tuple(rules)
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], _Window] = {}
        self.granted = 0
        self.waited = 0
        self.wait_s = 0.0
        self.refused = 0
        self.penalties = 0
        # Optional audit trail of reserved slots per window key (tests assert the spacing property on it).
        self.history: dict[tuple[str, str], deque[float]] = {}
        self._keep = keep_history

    def _keys(self, venue: str, account: str | None, kind: str, limit_key: str | None) -> list[tuple[LimitRule, str]]:
        out: list[tuple[LimitRule, str]] = []
        for rule in self.rules:
            if rule.venue != venue or kind not in rule.kinds:
                continue
            if rule.scope == "venue":
                out.append((rule, "*"))
            elif rule.scope == "account":
                out.append((rule, account or ""))
            elif limit_key is not None:
                out.append((rule, str(limit_key)))
        return out

    def _window(self, rule: LimitRule, key: str) -> _Window:
        wkey = (rule.name, key)
        win = self._windows.get(wkey)
        if win is None:
            win = self._windows[wkey] = _Window(rule.limit, rule.window_s)
        return win

    def acquire(self, venue: str, account: str | None, kind: str, limit_key: str | None = None,
                max_wait_s: float = 5.0) -> Grant:
        """Reserve the earliest allowed slot for this call and sleep until it; refuse beyond ``max_wait_s``."""
        with self._lock:
            keys = self._keys(venue, account, kind, limit_key)
            if not keys:
                self.granted += 1
                return Grant(ok=True)
            now = self._clock()
            slot, worst = now, None
            for rule, key in keys:
                t = self._window(rule, key).earliest(now)
                if t > slot:
                    slot, worst = t, rule.name
            wait = slot - now
            if wait > max_wait_s:
                self.refused += 1
                return Grant(ok=False, rule=worst, needed_s=wait)
            for rule, key in keys:
                self._window(rule, key).grants.append(slot)
                if self._keep:
                    self.history.setdefault((rule.name, key), deque(maxlen=self._keep)).append(slot)
            self.granted += 1
            if wait > 0:
                self.waited += 1
                self.wait_s += wait
        if wait > 0:
            self._sleep(wait)
        return Grant(ok=True, waited_s=wait, rule=worst)

    def penalize(self, venue: str, account: str | None, kind: str, delay_s: float) -> None:
        """The venue said "too many requests": no call of this account may start for ``delay_s``."""
        with self._lock:
            until = self._clock() + max(0.0, delay_s)
            for rule, key in self._keys(venue, account, kind, None):
                if rule.scope == "account":
                    win = self._window(rule, key)
                    win.blocked_until = max(win.blocked_until, until)
            self.penalties += 1

    def blocked_for(self, venue: str, account: str | None, kind: str, limit_key: str | None = None) -> float:
        """Seconds a call with this key would wait right now (0 = it may start at once); reserves nothing."""
        with self._lock:
            now = self._clock()
            slots = [self._window(rule, key).earliest(now) for rule, key in self._keys(venue, account, kind, limit_key)]
            return max([0.0, *(t - now for t in slots)])

    def stats(self) -> dict[str, float]:
        with self._lock:
            return {"granted": self.granted, "waited": self.waited, "wait_s": round(self.wait_s, 3),
                    "refused": self.refused, "penalties": self.penalties}
