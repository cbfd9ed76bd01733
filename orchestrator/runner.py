"""The orchestrator's only door to the venues: it runs the scripts in ``scripts/`` as subprocesses.

The orchestrator is one long-lived process driving many payouts; it never imports a script's internals.  The
JSON contract (``itrader.contract``) is the interface: one request object on stdin, one envelope line on
stdout, validated here against the script's output schema before anyone trusts it.

``ScriptRunner.call`` adds what a single script cannot know about:

* **Warm workers.**  A cold script costs 50-550 ms of CPU (imports), so each script gets a small pool of
  ``--serve`` workers, started lazily and reused; one NDJSON line in, one line out, in order.  A worker that
  dies, times out or prints garbage is killed with its whole process group and replaced on the next call.
  Rarely used scripts can run one-shot instead.
* **Rate limits** per venue + account + kind (``orchestrator.ratelimit``), so we budget against the venue
  limits instead of tripping them (earlier systems switched whole services off for that).
* **Retries** with jittered exponential backoff, only for errors the script marks retryable and only when
  the caller says the call is safe to repeat (``retry=True``: reads, or writes the caller knows to be
  idempotent).
* **Outcome-unknown writes.**  When a write times out, its worker dies mid-call, its output is unreadable or
  the script itself reports a transport failure, the side effect may or may not have happened.  The result
  says ``outcome_unknown=True`` and the runner never repeats it: the caller must reconcile with the venue
  first (re-read the order / payout / ad), because a blind retry can release or approve twice.
* **Circuit breaker** per venue (``orchestrator.breaker``).
* **Secrets** travel only on stdin, never in argv or the environment; the runner's own log lines mask every
  value under a secret key.

Thread-safe: the orchestrator may call from a small thread pool; each worker serves one call at a time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import selectors
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.breaker import CircuitBreaker
from orchestrator.ratelimit import KINDS, LimitRule, RateLimiter, default_rules

log = logging.getLogger("itrader.orchestrator.runner")

REPO = Path(__file__).resolve().parents[1]
SCRIPTS_DIR = REPO / "scripts"
MAX_LINE_BYTES = 32 * 1024 * 1024  # a response larger than this is garbage, not data

# Runner-level error codes (the scripts' own codes pass through unchanged).
SCRIPT_TIMEOUT = "script_timeout"
WORKER_DIED = "worker_died"
BAD_OUTPUT = "bad_script_output"
START_FAILED = "worker_start_failed"
RUNNER_BUSY = "runner_busy"
RUNNER_CLOSED = "runner_closed"
CIRCUIT_OPEN = "circuit_open"
LOCAL_RATE_LIMITED = "local_rate_limited"

# Script-reported failures after which a write may or may not have reached the venue.
WRITE_UNKNOWN_CODES = frozenset({
    "timeout", "network_error", "venue_unavailable", "venue_server_error", "venue_bad_response", "internal_error",
})
# Failures that say nothing about the venue's health: they neither trip nor reset the breaker.
NOT_HEALTH_CODES = frozenset({
    "rate_limited", "timestamp_out_of_window", LOCAL_RATE_LIMITED, CIRCUIT_OPEN, RUNNER_BUSY, RUNNER_CLOSED,
    WORKER_DIED, BAD_OUTPUT, START_FAILED,
})
# Retryable in principle, but never retried inside one call: repeating at once cannot help.
NO_INLINE_RETRY = frozenset({CIRCUIT_OPEN, LOCAL_RATE_LIMITED, RUNNER_CLOSED})

_SECRET_MASK = "***"


def _secret_keys() -> tuple[frozenset[str], frozenset[str]]:
    from itrader import contract

    return contract.SECRET_KEYS, getattr(contract, "COOKIE_ATTRIBUTE_KEYS", frozenset())


def redact(obj: Any) -> Any:
    """A copy of ``obj`` safe to log, by the contract's own rules.

    Every scalar under a secret-looking key (at any depth; a browser cookie object keeps its public name/
    domain/path) becomes ``***``, and each such secret string is also masked wherever else it appears, e.g.
    pasted into another field by mistake.
    """
    keys, public = _secret_keys()
    secrets: set[str] = set()

    def mask(node: Any, under: bool) -> Any:
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                kl = str(k).lower()
                if under and kl in public and isinstance(v, str):
                    out[k] = v
                else:
                    out[k] = mask(v, under or kl in keys)
            return out
        if isinstance(node, list):
            return [mask(v, under) for v in node]
        if under and node is not None:
            if isinstance(node, str) and len(node) >= 4:
                secrets.add(node)
            return _SECRET_MASK
        return node

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: scrub(v) for k, v in node.items()}
        if isinstance(node, list):
            return [scrub(v) for v in node]
        if isinstance(node, str):
            for secret in sorted(secrets, key=len, reverse=True):
                node = node.replace(secret, _SECRET_MASK)
        return node

    masked = mask(obj, False)
    return scrub(masked) if secrets else masked


@dataclass
class CallResult:
    ok: bool
    data: dict[str, Any] | None = None
    error: dict[str, Any] | None = None  # {code, message, retryable, venue_code[, details]}
    attempts: int = 0
    elapsed_ms: float = 0.0
    outcome_unknown: bool = False
    script: str = ""
    pid: int | None = None  # the worker that answered last (diagnostics)

    @property
    def code(self) -> str | None:
        return None if self.error is None else self.error.get("code")

    @property
    def retryable(self) -> bool:
        return bool(self.error and self.error.get("retryable"))


@dataclass
class ScriptSpec:
    """How to run one script.  ``validate(script, envelope)`` raises on an off-contract envelope."""

    name: str
    path: Path | None = None
    mode: str = "serve"  # "serve" (warm pool) or "oneshot" (a process per call)
    pool_size: int = 2
    validate: Callable[[str, dict[str, Any]], None] | None = None


def schema_validator(script: str, envelope: dict[str, Any]) -> None:
    """The default: the script's own ``schemas/<script>.output.json`` via the shared compiled validators."""
    from itrader import schemas

    schemas.check(script, "output", envelope)


def _err(code: str, message: str, retryable: bool, venue_code: int | None = None) -> dict[str, Any]:
    return {"code": code, "message": message, "retryable": retryable, "venue_code": venue_code}


class _Timeout(Exception):
    pass


class _Died(Exception):
    pass


class _StartFailed(Exception):
    pass


HANDSHAKE = b"[]\n"


class _Worker:
    """One ``--serve`` process.  Only the pool's current holder talks to it."""

    def __init__(self, spec: ScriptSpec, argv: list[str], env: Mapping[str, str], stderr: Any, cwd: Path) -> None:
        self.spec = spec
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr,
                                     env=dict(env), cwd=cwd, start_new_session=True)
        self.pid = self.proc.pid
        self.served = 0
        self._buf = bytearray()
        self._io_lock = threading.Lock()  # close() must not pull stdin from under a writer
        assert self.proc.stdin and self.proc.stdout
        self._in_fd = self.proc.stdin.fileno()
        self._out_fd = self.proc.stdout.fileno()
        os.set_blocking(self._in_fd, False)
        os.set_blocking(self._out_fd, False)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def unfit(self) -> str | None:
        """Why this idle worker must not take another request, or None.

        An idle worker has answered everything it was sent, so any byte waiting on its stdout is output we did
        not ask for: the next answer would be read as that one's.  No request id exists in the contract, so
        this check (plus discarding a worker after any bad line) is what keeps answers matched to requests.
        """
        if self.proc.poll() is not None:
            return f"had died while idle (exit {self.proc.returncode})"
        if self._buf:
            return "had unread output"
        with selectors.DefaultSelector() as sel:
            sel.register(self._out_fd, selectors.EVENT_READ)
            if sel.select(0):
                return "wrote output nobody asked for"
        return None

    def send(self, payload: bytes, deadline: float) -> None:
        """Write one request line, never blocking past the deadline (a hung worker stops reading)."""
        view = memoryview(payload)
        with self._io_lock, selectors.DefaultSelector() as sel:
            if self.proc.stdin is None or self.proc.stdin.closed:
                raise BrokenPipeError("worker stdin closed")
            sel.register(self._in_fd, selectors.EVENT_WRITE)
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Timeout("request not accepted in time")
                if not sel.select(remaining):
                    continue
                try:
                    n = os.write(self._in_fd, view)
                except BlockingIOError:
                    continue
                view = view[n:]

    def read_line(self, deadline: float) -> bytes:
        try:
            return self._read_line(deadline)
        except (OSError, ValueError) as exc:  # the pipe was closed under us
            raise _Died(f"stdout unusable ({type(exc).__name__})") from None

    def _read_line(self, deadline: float) -> bytes:
        with selectors.DefaultSelector() as sel:
            sel.register(self._out_fd, selectors.EVENT_READ)
            while True:
                i = self._buf.find(b"\n")
                if i >= 0:
                    line = bytes(self._buf[:i])
                    del self._buf[: i + 1]
                    if line.strip():
                        return line
                    continue
                if len(self._buf) > MAX_LINE_BYTES:
                    raise _Died("response line too long")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Timeout("no answer in time")
                if not sel.select(remaining):
                    continue
                try:
                    chunk = os.read(self._out_fd, 1 << 16)
                except BlockingIOError:
                    continue
                if not chunk:
                    raise _Died("worker closed stdout")
                self._buf += chunk

    def signal_kill(self) -> None:
        """SIGKILL the whole process group (the script and anything it spawned)."""
        if self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pid, signal.SIGKILL)

    def kill(self) -> None:
        """Kill, reap and release the pipes.  Only the worker's holder (or the pool, for idle ones) does this:
        closing a pipe under another thread's select could let the fd number be reused for another file."""
        self.signal_kill()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:  # pragma: no cover - SIGKILL does not get ignored
            log.error("worker pid %s of %s did not die", self.pid, self.spec.name)
        self._close_pipes()

    def eof(self) -> None:
        """Ask the worker to finish: ``--serve`` exits when stdin ends."""
        with self._io_lock:
            if self.proc.stdin and not self.proc.stdin.closed:
                with contextlib.suppress(OSError):
                    self.proc.stdin.close()

    def _close_pipes(self) -> None:
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe and not pipe.closed:
                with contextlib.suppress(OSError):
                    pipe.close()


class _Pool:
    """Up to ``size`` warm workers of one script; idle ones are reused most-recent first."""

    def __init__(self, spec: ScriptSpec, spawn: Callable[[ScriptSpec], _Worker]) -> None:
        self.spec = spec
        self._spawn = spawn
        self._cond = threading.Condition()
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._starting = 0
        self.closed = False

    def acquire(self, deadline: float) -> tuple[_Worker, bool]:
        """Return (worker, fresh).  Raises _Timeout when every worker stays busy past the deadline."""
        with self._cond:
            while True:
                if self.closed:
                    raise _Died("runner closed")
                while self._idle:
                    worker = self._idle.pop()
                    problem = worker.unfit()
                    if problem is None:
                        return worker, False
                    self._all.discard(worker)
                    log.warning("%s worker pid %s %s; replacing it", self.spec.name, worker.pid, problem)
                    worker.kill()
                if len(self._all) + self._starting < max(1, self.spec.pool_size):
                    self._starting += 1
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise _Timeout("every worker is busy")
                self._cond.wait(remaining)
        try:
            worker = self._spawn(self.spec)  # outside the lock: other callers keep using idle workers
        finally:
            with self._cond:
                self._starting -= 1
                self._cond.notify()
        with self._cond:
            self._all.add(worker)
            if self.closed:
                self._all.discard(worker)
                worker.eof()
                worker.kill()
                raise _Died("runner closed")
        return worker, True

    def release(self, worker: _Worker) -> None:
        with self._cond:
            drop = self.closed or worker not in self._all
            if drop:
                self._all.discard(worker)
            else:
                self._idle.append(worker)
            self._cond.notify()
        if drop:  # the runner closed while this call was in flight: end the worker here, its holder
            worker.eof()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(1.0)
            worker.kill()

    def discard(self, worker: _Worker) -> None:
        with self._cond:
            self._all.discard(worker)
            if worker in self._idle:
                self._idle.remove(worker)
            self._cond.notify()
        worker.kill()

    def close(self) -> tuple[list[_Worker], list[_Worker]]:
        """Mark closed; return (idle, busy) workers.  Busy ones stay registered so their holders can finish."""
        with self._cond:
            self.closed = True
            idle = list(self._idle)
            busy = [w for w in self._all if w not in self._idle]
            for worker in idle:
                self._all.discard(worker)
            self._idle.clear()
            self._cond.notify_all()
        return idle, busy


@dataclass
class _Exec:
    envelope: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    executed: bool = True  # False: the script never saw the request (no side effect possible)
    unknown: bool = False  # the request reached a script whose answer we could not read
    pid: int | None = None


@dataclass
class _Stats:
    lock: threading.Lock = field(default_factory=threading.Lock)
    calls: Counter = field(default_factory=Counter)
    ok: Counter = field(default_factory=Counter)
    failures: Counter = field(default_factory=Counter)
    attempts: int = 0
    retries: int = 0
    outcome_unknown: int = 0
    workers_started: Counter = field(default_factory=Counter)
    workers_killed: Counter = field(default_factory=Counter)
    latency: dict[str, deque] = field(default_factory=dict)


class ScriptRunner:
    """Runs contract scripts for the orchestrator; see the module docstring.  Close it with ``close()``."""

    def __init__(
        self,
        *,
        scripts_dir: Path | str = SCRIPTS_DIR,
        specs: Iterable[ScriptSpec] = (),
        oneshot: Iterable[str] = (),
        pool_size: int = 2,
        env: Mapping[str, str] | None = None,
        stderr_path: Path | str | None = None,
        limits: Iterable[LimitRule] | None = None,
        max_wait_s: float = 5.0,
        max_attempts: int = 3,
        backoff_base_s: float = 0.25,
        backoff_cap_s: float = 5.0,
        breaker_threshold: int = 5,
        breaker_cooldown_s: float = 30.0,
        breakers: Mapping[str, tuple[int, float]] | None = None,
        trip_codes: Mapping[str, Mapping[str, float]] | None = None,
        rate_limit_penalty_s: Mapping[str, float] | None = None,
        startup_timeout_s: float = 15.0,
        oneshot_startup_s: float = 2.0,
        close_grace_s: float = 3.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        limiter_history: int = 0,
    ) -> None:
        """
        ``limits``: rate-limit rules (default: ``ratelimit.default_rules()``; pass ``()`` for none).
        ``breakers``: per-venue ``(threshold, cooldown_s)`` overriding the defaults.
        ``trip_codes``: per venue, error codes that open its breaker at once for the given seconds (default:
        Bybit's IP-level 403, which asks for >= 10 minutes without traffic).
        ``rate_limit_penalty_s``: per venue, how long to hold an account after "too many requests" when the
        answer carries no reset time (Bybit: 1 s; Gate: 60 s, what worked for earlier clients).
        ``clock``/``sleep`` drive the limiter, the breakers and the backoff (injectable for tests); worker
        timeouts always use the real monotonic clock, because the subprocesses live in real time.
        ``startup_timeout_s`` bounds a new worker's start (up to its handshake answer) separately from the
        call's own ``timeout_s``; ``oneshot_startup_s`` is added to ``timeout_s`` for one-shot scripts.
        """
        self.scripts_dir = Path(scripts_dir)
        self._specs: dict[str, ScriptSpec] = {s.name: s for s in specs}
        self._oneshot = set(oneshot)
        self._pool_size = pool_size
        self._env = dict(os.environ if env is None else env)
        self._stderr_file = open(stderr_path, "ab") if stderr_path is not None else None  # noqa: SIM115
        self.limiter = RateLimiter(default_rules() if limits is None else limits, clock=clock, sleep=sleep,
                                   keep_history=limiter_history)
        self.max_wait_s = max_wait_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self._breaker_defaults = (breaker_threshold, breaker_cooldown_s)
        self._breaker_overrides = dict(breakers or {})
        self._trip_codes = {"bybit": {"ip_rate_limited_or_forbidden": 600.0}} if trip_codes is None else trip_codes
        self._penalty = {"bybit": 1.0, "gate": 60.0, **(rate_limit_penalty_s or {})}
        self.startup_timeout_s = startup_timeout_s
        self.oneshot_startup_s = oneshot_startup_s
        self.close_grace_s = close_grace_s
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self._pools: dict[str, _Pool] = {}
        self._breakers: dict[str, CircuitBreaker] = {}
        self._stats = _Stats()
        self._closed = False
        self._validators_warned: set[str] = set()

    # -- configuration ----------------------------------------------------------------------------------
    def spec(self, script: str) -> ScriptSpec:
        with self._lock:
            spec = self._specs.get(script)
            if spec is None:
                mode = "oneshot" if script in self._oneshot else "serve"
                spec = self._specs[script] = ScriptSpec(script, mode=mode, pool_size=self._pool_size)
            return spec

    def breaker(self, venue: str) -> CircuitBreaker:
        with self._lock:
            br = self._breakers.get(venue)
            if br is None:
                threshold, cooldown = self._breaker_overrides.get(venue, self._breaker_defaults)
                br = self._breakers[venue] = CircuitBreaker(venue, threshold, cooldown, clock=self._clock)
            return br

    def _argv(self, spec: ScriptSpec, serve: bool) -> list[str]:
        path = spec.path or self.scripts_dir / f"{spec.name}.py"
        return [str(path), "--serve"] if serve else [str(path)]

    def _spawn(self, spec: ScriptSpec) -> _Worker:
        """Start a ``--serve`` worker and wait until it answers a handshake.

        The handshake is the line ``[]``: the contract rejects anything but a JSON object before doing
        anything else, so the answer (an ``invalid_json`` failure envelope) proves the worker has finished its
        imports and speaks the contract, with no possible side effect.  Without it, a cold start (up to
        ~0.5 s, more on a loaded host) would eat into the first real call's timeout, and a write could be
        declared outcome-unknown merely because Python was still importing.
        """
        worker = _Worker(spec, self._argv(spec, True), self._env, self._stderr_file, REPO)
        with self._stats.lock:
            self._stats.workers_started[spec.name] += 1
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            worker.send(HANDSHAKE, deadline)
            raw = worker.read_line(deadline)
            answer = json.loads(raw)
            if not (isinstance(answer, dict) and answer.get("success") is False
                    and (answer.get("error") or {}).get("code") == "invalid_json"):
                raise ValueError("unexpected handshake answer")
        except (_Timeout, _Died, OSError, ValueError) as exc:
            worker.kill()
            raise _StartFailed(f"{spec.name} worker pid {worker.pid} failed its handshake "
                               f"({type(exc).__name__}: {exc})") from None
        log.info("started %s worker pid %s", spec.name, worker.pid)
        return worker

    def _pool(self, spec: ScriptSpec) -> _Pool:
        with self._lock:
            pool = self._pools.get(spec.name)
            if pool is None:
                pool = self._pools[spec.name] = _Pool(spec, self._spawn)
            return pool

    def warm(self, script: str, timeout_s: float = 10.0) -> int:
        """Start one worker ahead of the first call (at orchestrator start); returns its pid.

        Raises RuntimeError when the script cannot be started: better to learn that at start-up than on the
        first payout.
        """
        pool = self._pool(self.spec(script))
        try:
            worker, _ = pool.acquire(time.monotonic() + timeout_s)
        except (_Timeout, _Died, _StartFailed, OSError) as exc:
            raise RuntimeError(f"cannot warm {script}: {exc}") from None
        pool.release(worker)
        return worker.pid

    # -- the call ---------------------------------------------------------------------------------------
    def call(
        self,
        script: str,
        request: dict[str, Any],
        *,
        venue: str,
        account: str | None = None,
        kind: str = "read",
        timeout_s: float = 30.0,
        retry: bool = False,
        limit_key: str | None = None,
    ) -> CallResult:
        """Run ``script`` with ``request``; never raises for venue or script trouble, see ``CallResult``.

        ``kind`` is "read", "write" or "ad_edit" (a write that also spends the ad's own edit budget, keyed by
        ``limit_key`` = the ad id).  ``retry=True`` declares the call safe to repeat.
        """
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        started = time.perf_counter()
        spec = self.spec(script)
        line = _encode(request)
        log.debug("call %s", script, extra={"fields": {"script": script, "venue": venue, "account": account,
                                                         "kind": kind, "request": redact(request)}})
        attempts = tries = 0  # attempts: times a script saw the request; tries: loop turns (bounded too)
        while True:
            ex = self._attempt(spec, line, venue=venue, account=account, kind=kind, timeout_s=timeout_s,
                               limit_key=limit_key)
            tries += 1
            attempts += 1 if ex.executed else 0
            result = self._result(spec, ex, kind)
            if result.ok or not self._should_retry(result, retry, tries):
                break
            delay = min(self.backoff_cap_s, self.backoff_base_s * 2 ** (tries - 1))
            delay *= 0.5 + self._rng.random() / 2  # jitter: retries from many threads do not line up
            with self._stats.lock:
                self._stats.retries += 1
            log.info("retrying %s after %s (try %d, backoff %.2fs)", script, result.code, tries + 1, delay)
            self._sleep(delay)
        result.attempts = attempts
        result.elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        self._account(result, venue, account, kind)
        return result

    def _should_retry(self, result: CallResult, retry: bool, tries: int) -> bool:
        return (retry and result.retryable and not result.outcome_unknown
                and result.code not in NO_INLINE_RETRY and tries < self.max_attempts)

    def _attempt(self, spec: ScriptSpec, line: bytes, *, venue: str, account: str | None, kind: str,
                 timeout_s: float, limit_key: str | None) -> _Exec:
        if self._closed:
            return _Exec(error=_err(RUNNER_CLOSED, "the runner is closed", False), executed=False)
        breaker = self.breaker(venue)
        if not breaker.allow():
            return _Exec(error=_err(CIRCUIT_OPEN, f"{venue} circuit is open; next probe in "
                                                  f"{breaker.retry_in_s():.1f}s", True), executed=False)
        grant = self.limiter.acquire(venue, account, kind, limit_key, max_wait_s=self.max_wait_s)
        if not grant.ok:
            breaker.record_neutral()
            return _Exec(error=_err(LOCAL_RATE_LIMITED, f"{venue} budget {grant.rule} needs {grant.needed_s:.2f}s "
                                                        f"(bound {self.max_wait_s:.2f}s)", True), executed=False)
        t0 = time.perf_counter()
        ex = self._run_serve(spec, line, timeout_s) if spec.mode == "serve" else self._run_oneshot(spec, line, timeout_s)
        if ex.executed:
            with self._stats.lock:
                self._stats.attempts += 1
                lat = self._stats.latency.setdefault(spec.name, deque(maxlen=500))
                lat.append((time.perf_counter() - t0) * 1000)
        self._feedback(ex, breaker, venue, account, kind)
        return ex

    def _feedback(self, ex: _Exec, breaker: CircuitBreaker, venue: str, account: str | None, kind: str) -> None:
        """Tell the breaker and the limiter what this attempt revealed about the venue."""
        err = ex.error if ex.error is not None else (ex.envelope or {}).get("error")
        if ex.error is None and ex.envelope is not None and ex.envelope.get("success"):
            breaker.record_success()
            return
        if err is None:
            breaker.record_neutral()
            return
        code = err.get("code", "")
        trip = self._trip_codes.get(venue, {}).get(code)
        if trip is not None:
            before = breaker.opens
            breaker.trip(trip)
            if breaker.opens > before:
                log.error("%s circuit opened for %.0fs on %s", venue, trip, code)
        elif err.get("retryable") and code not in NOT_HEALTH_CODES:
            before = breaker.opens
            breaker.record_failure()
            if breaker.opens > before:
                log.error("%s circuit opened after %d consecutive failures (last: %s)", venue,
                          breaker.threshold, code)
        elif err.get("venue_code") is not None:
            breaker.record_success()  # a business refusal: the venue is up and answering
        else:
            breaker.record_neutral()
        if code == "rate_limited":
            delay = _reset_delay(err.get("details") or {}, self._penalty.get(venue, 1.0))
            self.limiter.penalize(venue, account, kind, delay)
            log.warning("%s said too many requests for account %s; holding its %s calls %.2fs", venue, account,
                        kind, delay)

    # -- execution ----------------------------------------------------------------------------------------
    def _run_serve(self, spec: ScriptSpec, line: bytes, timeout_s: float) -> _Exec:
        pool = self._pool(spec)
        for _attempt in range(2):  # a second go only when the request provably never reached a worker
            try:
                worker, _fresh = pool.acquire(time.monotonic() + timeout_s)
            except _Timeout:
                return _Exec(error=_err(RUNNER_BUSY, f"every {spec.name} worker stayed busy for {timeout_s}s",
                                        True), executed=False)
            except _Died:
                return _Exec(error=_err(RUNNER_CLOSED, "the runner is closed", False), executed=False)
            except OSError as exc:
                return _Exec(error=_err(START_FAILED, f"cannot start {spec.name}: {type(exc).__name__}: "
                                                      f"{exc.strerror or exc}", False), executed=False)
            except _StartFailed as exc:
                return _Exec(error=_err(START_FAILED, str(exc), True), executed=False)
            deadline = time.monotonic() + timeout_s
            try:
                worker.send(line, deadline)
            except (BrokenPipeError, OSError, ValueError):  # no complete line reached the worker
                log.warning("%s worker pid %s was gone before the request; using a fresh one", spec.name,
                            worker.pid)
                self._discard(pool, worker, "dead before request")
                continue
            except _Timeout:
                self._discard(pool, worker, "request not accepted")
                return _Exec(error=_err(SCRIPT_TIMEOUT, f"{spec.name} did not take the request within "
                                                        f"{timeout_s}s", True), unknown=True, pid=worker.pid)
            return self._serve_answer(spec, pool, worker, deadline, timeout_s)
        return _Exec(error=_err(WORKER_DIED, f"{spec.name} workers keep dying at start", True), executed=False)

    def _serve_answer(self, spec: ScriptSpec, pool: _Pool, worker: _Worker, deadline: float,
                      timeout_s: float) -> _Exec:
        try:
            raw = worker.read_line(deadline)
        except _Timeout:
            self._discard(pool, worker, f"no answer within {timeout_s}s")
            return _Exec(error=_err(SCRIPT_TIMEOUT, f"{spec.name} gave no answer within {timeout_s}s", True),
                         unknown=True, pid=worker.pid)
        except _Died as exc:
            self._discard(pool, worker, str(exc))
            return _Exec(error=_err(WORKER_DIED, f"{spec.name} worker died mid-call ({exc}; exit "
                                                 f"{worker.proc.returncode})", True), unknown=True, pid=worker.pid)
        worker.served += 1
        ex = self._check_envelope(spec, _parse(spec.name, raw))
        ex.pid = worker.pid
        if ex.error is not None:  # off-contract output: the stream may be out of step, never reuse it
            self._discard(pool, worker, "bad output")
        else:
            pool.release(worker)
        return ex

    def _run_oneshot(self, spec: ScriptSpec, line: bytes, timeout_s: float) -> _Exec:
        try:
            proc = subprocess.Popen(self._argv(spec, False), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=self._stderr_file, env=self._env, cwd=REPO, start_new_session=True)
        except OSError as exc:
            return _Exec(error=_err(START_FAILED, f"cannot start {spec.name}: {type(exc).__name__}: "
                                                  f"{exc.strerror or exc}", False), executed=False)
        with self._stats.lock:
            self._stats.workers_started[spec.name] += 1
        limit = timeout_s + self.oneshot_startup_s  # a one-shot call pays its interpreter start every time
        try:
            out, _ = proc.communicate(line, timeout=limit)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            self._count_kill(spec.name, proc.pid, "one-shot timeout")
            return _Exec(error=_err(SCRIPT_TIMEOUT, f"{spec.name} gave no answer within {timeout_s}s", True),
                         unknown=True, pid=proc.pid)
        lines = [ln for ln in out.splitlines() if ln.strip()]
        if not lines:
            return _Exec(error=_err(WORKER_DIED, f"{spec.name} exited with status {proc.returncode} and no answer",
                                    True), unknown=True, pid=proc.pid)
        if len(lines) > 1:
            return _Exec(error=_err(BAD_OUTPUT, f"{spec.name} printed {len(lines)} lines instead of one", False),
                         unknown=True, pid=proc.pid)
        ex = self._check_envelope(spec, _parse(spec.name, lines[0]))
        ex.pid = proc.pid
        return ex

    def _discard(self, pool: _Pool, worker: _Worker, why: str) -> None:
        pool.discard(worker)
        self._count_kill(pool.spec.name, worker.pid, why)

    def _count_kill(self, script: str, pid: int, why: str) -> None:
        with self._stats.lock:
            self._stats.workers_killed[script] += 1
        log.warning("killed %s worker pid %s (%s)", script, pid, why)

    def _check_envelope(self, spec: ScriptSpec, ex: _Exec) -> _Exec:
        if ex.error is not None:
            return ex
        validate = spec.validate or schema_validator
        try:
            validate(spec.name, ex.envelope or {})
        except Exception as exc:  # any validator, any failure: the answer is not trustworthy
            msg = getattr(exc, "message", None) or str(exc)
            return _Exec(error=_err(BAD_OUTPUT, f"{spec.name} answer breaks its output schema: {msg[:300]}",
                                    False), unknown=True, pid=ex.pid)
        return ex

    def _result(self, spec: ScriptSpec, ex: _Exec, kind: str) -> CallResult:
        write = kind != "read"
        if ex.error is not None:
            return CallResult(ok=False, error=ex.error, outcome_unknown=write and ex.unknown, script=spec.name,
                              pid=ex.pid)
        env = ex.envelope or {}
        if env.get("success"):
            return CallResult(ok=True, data=env.get("data"), script=spec.name, pid=ex.pid)
        error = dict(env.get("error") or {})
        details = error.get("details") or {}
        declared = details.get("outcome_unknown") if isinstance(details, dict) else None
        unknown = declared if isinstance(declared, bool) else error.get("code") in WRITE_UNKNOWN_CODES
        return CallResult(ok=False, error=error, outcome_unknown=write and unknown, script=spec.name, pid=ex.pid)

    def _account(self, result: CallResult, venue: str, account: str | None, kind: str) -> None:
        with self._stats.lock:
            self._stats.calls[result.script] += 1
            if result.ok:
                self._stats.ok[result.script] += 1
            else:
                self._stats.failures[result.code or "unknown"] += 1
            if result.outcome_unknown:
                self._stats.outcome_unknown += 1
        fields = {"script": result.script, "venue": venue, "account": account, "kind": kind, "ok": result.ok,
                  "code": result.code, "attempts": result.attempts, "elapsed_ms": result.elapsed_ms,
                  "outcome_unknown": result.outcome_unknown}
        if result.ok:
            log.info("%s ok in %.1f ms", result.script, result.elapsed_ms, extra={"fields": fields})
        else:
            level = logging.ERROR if result.outcome_unknown else logging.WARNING
            log.log(level, "%s failed: %s%s", result.script, result.code,
                    " (outcome unknown: reconcile before retrying)" if result.outcome_unknown else "",
                    extra={"fields": fields})

    # -- observability and shutdown -------------------------------------------------------------------------
    def stats(self) -> dict[str, Any]:
        with self._stats.lock:
            s = self._stats
            out: dict[str, Any] = {
                "calls": dict(s.calls), "ok": dict(s.ok), "failures": dict(s.failures), "attempts": s.attempts,
                "retries": s.retries, "outcome_unknown": s.outcome_unknown,
                "workers_started": dict(s.workers_started), "workers_killed": dict(s.workers_killed),
                "latency_p50_ms": {k: round(statistics.median(v), 2) for k, v in s.latency.items() if v},
            }
        with self._lock:
            breakers = dict(self._breakers)
        out["breakers"] = {v: {"state": b.state, "opens": b.opens, "fast_failures": b.fast_failures}
                           for v, b in breakers.items()}
        out["breaker_opens"] = sum(b.opens for b in breakers.values())
        out["limiter"] = self.limiter.stats()
        return out

    def close(self, grace_s: float | None = None) -> None:
        """End every worker: EOF on stdin (a ``--serve`` loop then exits), SIGKILL to stragglers."""
        grace = self.close_grace_s if grace_s is None else grace_s
        with self._lock:
            self._closed = True
            pools = list(self._pools.values())
        idle: list[_Worker] = []
        busy: list[_Worker] = []
        for pool in pools:
            i, b = pool.close()
            idle += i
            busy += b
        for worker in idle + busy:
            worker.eof()  # a busy worker finishes its request, answers, then sees EOF
        deadline = time.monotonic() + grace
        for worker in idle + busy:
            try:
                worker.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("%s worker pid %s still running after %.1fs; killing it", worker.spec.name,
                            worker.pid, grace)
            if worker in idle:
                worker.kill()
            else:
                worker.signal_kill()  # its caller sees EOF, reports worker_died and reaps it
        if self._stderr_file is not None:
            self._stderr_file.close()
            self._stderr_file = None

    def __enter__(self) -> ScriptRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _encode(request: dict[str, Any]) -> bytes:
    """One NDJSON line.  Decimals go as decimal strings (the contract's money form); never a float."""
    from itrader.contract import dumps

    return (dumps(request) + "\n").encode()


def _parse(script: str, raw: bytes) -> _Exec:
    try:
        envelope = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return _Exec(error=_err(BAD_OUTPUT, f"{script} printed a line that is not JSON ({len(raw)} bytes)", False),
                     unknown=True)
    if not isinstance(envelope, dict) or not isinstance(envelope.get("success"), bool):
        return _Exec(error=_err(BAD_OUTPUT, f"{script} printed JSON that is not a contract envelope", False),
                     unknown=True)
    return _Exec(envelope=envelope)


def _reset_delay(details: Mapping[str, Any], default: float) -> float:
    """Seconds until the venue's limit resets, from whatever the script could tell; ``default`` otherwise.

    Accepted hints: ``retry_after``/``retry_after_s`` (seconds), ``reset_at_ms``/``reset_timestamp_ms`` (epoch
    ms, e.g. Bybit's X-Bapi-Limit-Reset-Timestamp) or ``reset_at`` (epoch seconds or ms).  Capped at 15 min.
    """
    for key in ("retry_after", "retry_after_s"):
        value = details.get(key)
        if isinstance(value, (int, float, str)):
            try:
                return min(900.0, max(0.0, float(value)))
            except ValueError:
                pass
    for key in ("reset_at_ms", "reset_timestamp_ms", "reset_ms", "reset_at"):
        value = details.get(key)
        if isinstance(value, (int, float, str)):
            try:
                ts = float(value)
            except ValueError:
                continue
            if ts > 1e11:  # milliseconds
                ts /= 1000
            return min(900.0, max(0.0, ts - time.time()))
    return default
