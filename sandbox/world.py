"""The simulated world every sandbox venue lives in.

One ``World`` per sandbox process: a seeded RNG (same seed -> same market, same buyers), a clock whose
durations shrink with ``speed`` (``--speed 60`` turns a 15-minute payment window into 15 real seconds, while
timestamps stay real wall-clock time so clients' clocks and signatures keep working), one lock that serialises
every state change, a tick loop that lets venues and simulated buyers act, a fault registry for the control
API, and the ground-truth log that tests and ``itrader demo`` audit for violations.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Fault:
    """One injected fault. ``path`` is a prefix of the request path; ``remaining`` counts uses (None = forever)."""

    # "http_status" | "latency" | "timeout" | "cloudflare" | "lost_reply" (handled, answer lost: ``status``,
    # default 504, after ``delay_s``) | "bybit_code" | "ws_drop" | "session_expiry"
    kind: str
    path: str = "/"
    status: int | None = None
    code: int | None = None
    delay_s: float = 0.0
    remaining: int | None = 1
    probability: float = 1.0
    id: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("id", "kind", "path", "status", "code", "delay_s", "remaining", "probability")}


class FaultRegistry:
    def __init__(self, rng: random.Random) -> None:
        self._faults: list[Fault] = []
        self._next = 1
        self._rng = rng
        self._lock = threading.Lock()

    def add(self, fault: Fault) -> Fault:
        with self._lock:
            fault.id = self._next
            self._next += 1
            self._faults.append(fault)
        return fault

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def list(self) -> list[dict[str, Any]]:
        with self._lock:
            return [f.to_dict() for f in self._faults]

    def take(self, path: str, kinds: tuple[str, ...]) -> Fault | None:
        """Consume and return the first matching fault for this request, if it fires."""
        with self._lock:
            for fault in self._faults:
                if fault.kind in kinds and path.startswith(fault.path):
                    if fault.probability < 1.0 and self._rng.random() >= fault.probability:
                        continue
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining <= 0:
                            self._faults.remove(fault)
                    return fault
        return None


@dataclass
class TruthEvent:
    """A fact only the simulator knows for sure (a bank payment, an approve, a release)."""

    ts: float
    kind: str
    data: dict[str, Any] = field(default_factory=dict)


class World:
    def __init__(self, seed: int = 0, speed: float = 1.0, options: dict[str, Any] | None = None) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.seed = seed
        self.speed = speed
        self.options: dict[str, Any] = dict(options or {})
        self.rng = random.Random(seed)
        self.lock = threading.RLock()
        self.faults = FaultRegistry(random.Random(seed + 1))
        self.truth: list[TruthEvent] = []
        self._tickers: list[Callable[[float], None]] = []
        self.started = time.time()
        # Bybit ids are 19-digit strings, Gate payout ids 7-digit ints; one counter per width.
        self._ids: dict[int, int] = {19: 1_900_000_000_000_000_000 + self.rng.randrange(10**12), 7: 2_000_000}
        # Venue states, set by each venue module's install(); typed loosely to keep venues decoupled.
        self.bybit: Any = None
        self.gate: Any = None
        self.bank: Any = None

    # -- time ---------------------------------------------------------------------------------------------
    def now(self) -> float:
        return time.time()

    def dur(self, seconds: float) -> float:
        """A simulated duration in real seconds at the configured speed."""
        return seconds / self.speed

    # -- ids ----------------------------------------------------------------------------------------------
    def next_id(self, digits: int = 19) -> str:
        """A unique, increasing numeric id of the given width, as a string."""
        with self.lock:
            self._ids[digits] = self._ids.get(digits, 10 ** (digits - 1)) + 1 + self.rng.randrange(7)
            return str(self._ids[digits])

    # -- ticking ------------------------------------------------------------------------------------------
    def on_tick(self, fn: Callable[[float], None]) -> None:
        self._tickers.append(fn)

    def tick(self) -> None:
        now = self.now()
        for fn in self._tickers:
            with self.lock:
                fn(now)

    # -- ground truth ---------------------------------------------------------------------------------------
    def record(self, kind: str, **data: Any) -> None:
        with self.lock:
            self.truth.append(TruthEvent(ts=self.now(), kind=kind, data=data))

    def truth_events(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            return [{"ts": e.ts, "kind": e.kind, **e.data} for e in self.truth if kind is None or e.kind == kind]
