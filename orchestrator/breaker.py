"""A per-venue circuit breaker: stop hammering a venue that is down, probe it now and then.

Earlier systems kept calling a venue through outages and Cloudflare blocks, which prolongs blocks and floods
the logs; others switched whole services off by hand after tripping limits.  Here N consecutive health
failures (network errors, timeouts, 5xx, Cloudflare 403...) open the circuit for a cooldown; calls then fail
fast with ``circuit_open``.  After the cooldown the circuit is half-open: exactly one probe call goes through,
and its result closes the circuit or opens it again.  A business refusal from the venue (invalid parameter,
incorrect status) proves the venue is up, so it counts as health, not as failure.

The clock is injectable so tests can step through cooldowns without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class CircuitBreaker:
    def __init__(self, name: str, threshold: int = 5, cooldown_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1:
            raise ValueError("threshold must be >= 1")
        self.name = name
        self.threshold = threshold
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._open_until: float | None = None  # None = closed
        self._probe_in_flight = False
        self.opens = 0
        self.fast_failures = 0

    @property
    def state(self) -> str:
        with self._lock:
            return self._state()

    def _state(self) -> str:
        if self._open_until is None:
            return CLOSED
        return OPEN if self._clock() < self._open_until else HALF_OPEN

    def retry_in_s(self) -> float:
        """Seconds until the next probe may go through (0 when closed or half-open)."""
        with self._lock:
            if self._open_until is None:
                return 0.0
            return max(0.0, self._open_until - self._clock())

    def allow(self) -> bool:
        """May a call go to the venue now?  In half-open state only the first caller (the probe) may."""
        with self._lock:
            state = self._state()
            if state == CLOSED:
                return True
            if state == HALF_OPEN and not self._probe_in_flight:
                self._probe_in_flight = True
                return True
            self.fast_failures += 1
            return False

    def record_failure(self) -> None:
        with self._lock:
            self._failures += 1
            if self._probe_in_flight or (self._open_until is None and self._failures >= self.threshold):
                self._open(self.cooldown_s)

    def record_success(self) -> None:
        """The venue answered: close the circuit and forget earlier failures."""
        with self._lock:
            self._failures = 0
            self._open_until = None
            self._probe_in_flight = False

    def record_neutral(self) -> None:
        """The call said nothing about the venue's health (local error, never sent): free the probe slot."""
        with self._lock:
            self._probe_in_flight = False

    def trip(self, cooldown_s: float | None = None) -> None:
        """Open at once, e.g. on Bybit's IP-level 403 that asks for ten minutes of silence."""
        with self._lock:
            self._open(self.cooldown_s if cooldown_s is None else cooldown_s)

    def _open(self, cooldown_s: float) -> None:
        until = self._clock() + cooldown_s
        if self._open_until is None or self._probe_in_flight or until > self._open_until:
            if self._open_until is None or self._probe_in_flight:
                self.opens += 1
            self._open_until = until
        self._probe_in_flight = False
