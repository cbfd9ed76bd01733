"""ScriptRunner against real subprocesses: the real Bybit scripts on the session sandbox, and the test-only
``tests/fixtures_scripts/fx_probe.py`` (same contract) where a failure has to be produced on demand.

Nothing is mocked: workers are real ``--serve`` processes, faults are injected into the real sandbox, the
breaker's "venue down" is a real closed port.  Only the breaker/limiter clock is a fake where a cooldown
would otherwise have to be slept through.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import jsonschema
import pytest

from orchestrator.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from orchestrator.ratelimit import LimitRule, RateLimiter, default_rules
from orchestrator.runner import ScriptRunner, ScriptSpec, redact, schema_validator
from tests.support import REPO, free_port, script_env

FX_DIR = REPO / "tests" / "fixtures_scripts"
FX_OUTPUT = jsonschema.Draft202012Validator(json.loads((FX_DIR / "schemas" / "fx_probe.output.json").read_text()))


def fx_validate(script: str, envelope: dict) -> None:
    # fx_probe's schemas live beside it (self-contained), not in schemas/, so it brings its own validator.
    FX_OUTPUT.validate(envelope)


FX = ScriptSpec("fx_probe", path=FX_DIR / "fx_probe.py", pool_size=2, validate=fx_validate)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def gone(pid: int) -> bool:
    """True once the process no longer exists (the runner reaps what it kills)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def wait_dead(pid: int, timeout: float = 5.0) -> None:
    """Wait until a SIGKILLed child is a zombie or gone (not reaped: it is the runner's child)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.01)
    raise AssertionError(f"pid {pid} still running")


@pytest.fixture
def make_runner(tmp_path):
    runners: list[ScriptRunner] = []

    def make(**kwargs) -> ScriptRunner:
        kwargs.setdefault("specs", [FX])
        kwargs.setdefault("limits", ())
        kwargs.setdefault("backoff_base_s", 0.01)
        kwargs.setdefault("stderr_path", tmp_path / "scripts.log")
        runner = ScriptRunner(**kwargs)
        runners.append(runner)
        return runner

    yield make
    for runner in runners:
        runner.close(grace_s=1.0)


@pytest.fixture(scope="module")
def bybit_account(sandbox):
    acc = sandbox.control("POST", "/sandbox/bybit/accounts", json={"count": 1})["accounts"][0]
    return {"uid": str(acc["uid"]), "creds": {"api_key": acc["api_key"], "api_secret": acc["api_secret"]}}


@pytest.fixture
def clean_faults(sandbox):
    yield
    sandbox.control("DELETE", "/sandbox/faults")


# -- warm workers ------------------------------------------------------------------------------------------

def test_warm_worker_is_reused_and_close_ends_it(make_runner):
    runner = make_runner()
    results = [runner.call("fx_probe", {"action": "echo", "text": f"n{i}"}, venue="fx") for i in range(4)]
    assert all(r.ok for r in results)
    assert len({r.data["pid"] for r in results}) == 1
    assert [r.data["served"] for r in results] == [1, 2, 3, 4]
    assert [r.data["echo"] for r in results] == ["n0", "n1", "n2", "n3"]
    assert runner.stats()["workers_started"] == {"fx_probe": 1}
    pid = results[0].data["pid"]
    runner.close()
    assert gone(pid)
    after = runner.call("fx_probe", {"action": "echo"}, venue="fx")
    assert not after.ok and after.code == "runner_closed" and after.attempts == 0


def test_real_script_warm_worker_on_sandbox(make_runner, sandbox, bybit_account):
    runner = make_runner(env=script_env(sandbox.env))
    results = [runner.call("bybit_account_info", dict(bybit_account["creds"]), venue="bybit",
                           account=bybit_account["uid"]) for _ in range(3)]
    assert all(r.ok for r in results), results[0].error
    assert results[0].data["user_id"] == bybit_account["uid"]
    assert len({r.pid for r in results}) == 1
    assert runner.stats()["workers_started"] == {"bybit_account_info": 1}


def test_oneshot_mode_runs_a_process_per_call(make_runner):
    runner = make_runner(specs=[ScriptSpec(**{**FX.__dict__, "mode": "oneshot"})], oneshot_startup_s=0.3)
    results = [runner.call("fx_probe", {"action": "echo"}, venue="fx") for _ in range(2)]
    assert all(r.ok and r.data["served"] == 1 for r in results)
    assert results[0].data["pid"] != results[1].data["pid"]
    timed_out = runner.call("fx_probe", {"action": "sleep", "seconds": 30}, venue="fx", kind="write", timeout_s=0.2)
    assert timed_out.code == "script_timeout" and timed_out.outcome_unknown


def test_worker_killed_between_calls_is_replaced(make_runner):
    runner = make_runner()
    first = runner.call("fx_probe", {"action": "echo"}, venue="fx")
    os.kill(first.data["pid"], signal.SIGKILL)
    wait_dead(first.data["pid"])
    second = runner.call("fx_probe", {"action": "echo"}, venue="fx", kind="write")
    assert second.ok and second.data["pid"] != first.data["pid"] and second.data["served"] == 1
    assert runner.stats()["workers_started"] == {"fx_probe": 2}


def test_worker_dying_mid_call(make_runner):
    runner = make_runner()
    read = runner.call("fx_probe", {"action": "crash"}, venue="fx", kind="read")
    assert not read.ok and read.code == "worker_died" and read.retryable and not read.outcome_unknown
    write = runner.call("fx_probe", {"action": "crash"}, venue="fx", kind="write", retry=True)
    assert write.code == "worker_died" and write.outcome_unknown and write.attempts == 1  # never repeated
    assert gone(write.pid)
    after = runner.call("fx_probe", {"action": "echo"}, venue="fx")
    assert after.ok and after.data["served"] == 1


def test_start_failure_is_reported_not_raised(make_runner, tmp_path):
    runner = make_runner(specs=[ScriptSpec("nope", path=tmp_path / "missing.py")])
    result = runner.call("nope", {}, venue="fx", kind="write", retry=True)
    assert result.code == "worker_start_failed" and result.attempts == 0 and not result.outcome_unknown


# -- timeouts ------------------------------------------------------------------------------------------------

def test_timeout_on_a_write_kills_the_worker_and_is_outcome_unknown(make_runner):
    runner = make_runner()
    result = runner.call("fx_probe", {"action": "sleep", "seconds": 30}, venue="fx", kind="write",
                         timeout_s=0.5, retry=True)
    assert not result.ok and result.code == "script_timeout"
    assert result.outcome_unknown and result.attempts == 1
    assert gone(result.pid)
    assert runner.stats()["workers_killed"] == {"fx_probe": 1}
    after = runner.call("fx_probe", {"action": "echo"}, venue="fx")
    assert after.ok and after.data["pid"] != result.pid


def test_timeout_on_a_read_is_retried_on_a_fresh_worker(make_runner, sandbox, bybit_account, clean_faults):
    runner = make_runner(env=script_env(sandbox.env))
    call = {"script": "bybit_account_info", "request": dict(bybit_account["creds"]), "venue": "bybit",
            "account": bybit_account["uid"]}
    warm = runner.call(**call)
    assert warm.ok
    # The venue holds this one request for 5 s (the script's own HTTP timeout is 10 s): only the runner's
    # 1.5 s timeout can end it.  The fault fires once, so the retry on a new worker gets an answer.
    sandbox.control("POST", "/sandbox/faults", json={"kind": "timeout", "path": "/v5/p2p/user/personal/info",
                                                     "delay_s": 5, "remaining": 1})
    result = runner.call(**call, timeout_s=1.5, retry=True)
    assert result.ok, result.error
    assert result.attempts == 2 and result.pid != warm.pid
    stats = runner.stats()
    assert stats["retries"] == 1 and stats["workers_killed"] == {"bybit_account_info": 1}


# -- output validation ---------------------------------------------------------------------------------------

def test_garbage_and_off_schema_output(make_runner):
    runner = make_runner()
    garbage = runner.call("fx_probe", {"action": "garbage"}, venue="fx", kind="read", retry=True)
    assert garbage.code == "bad_script_output" and not garbage.retryable and not garbage.outcome_unknown
    assert garbage.attempts == 1
    garbage_w = runner.call("fx_probe", {"action": "garbage"}, venue="fx", kind="write")
    assert garbage_w.code == "bad_script_output" and garbage_w.outcome_unknown
    off = runner.call("fx_probe", {"action": "off_schema"}, venue="fx")
    assert off.code == "bad_script_output" and "schema" in off.error["message"]
    # Each of those workers printed a second line after the bad one; had it been reused, this call would read
    # that stale line instead of its own answer.
    after = runner.call("fx_probe", {"action": "echo", "text": "mine"}, venue="fx")
    assert after.ok and after.data["echo"] == "mine" and after.data["served"] == 1
    assert runner.stats()["workers_killed"] == {"fx_probe": 3}


def test_worker_with_stray_output_is_not_reused(make_runner):
    runner = make_runner()
    noisy = runner.call("fx_probe", {"action": "noise_later"}, venue="fx")
    assert noisy.ok
    time.sleep(0.3)  # the stray line is written 50 ms after the answer, while the worker is idle
    after = runner.call("fx_probe", {"action": "echo", "text": "x"}, venue="fx")
    assert after.ok and after.data["echo"] == "x" and after.data["pid"] != noisy.data["pid"]


def test_default_validator_uses_the_scripts_schema():
    schema_validator("bybit_account_info", {"success": False, "error": {
        "code": "network_error", "message": "m", "retryable": True, "venue_code": None}})
    with pytest.raises(Exception, match="schema"):
        schema_validator("bybit_account_info", {"success": True, "data": {"surprise": 1}})


# -- retries -------------------------------------------------------------------------------------------------

def test_retry_only_for_retryable_errors_and_retry_true(make_runner):
    clock = FakeClock()
    runner = make_runner(sleep=clock.sleep, max_attempts=3, backoff_base_s=0.5)
    fail = {"action": "fail", "code": "venue_unavailable", "retryable": True, "venue_code": 503}
    assert runner.call("fx_probe", fail, venue="fx", retry=False).attempts == 1
    result = runner.call("fx_probe", fail, venue="fx", retry=True)
    assert result.code == "venue_unavailable" and result.attempts == 3
    # jittered exponential backoff: 0.5 * 2**n scaled by a factor in [0.5, 1]
    assert len(clock.slept) == 2
    assert 0.25 <= clock.slept[0] <= 0.5 and 0.5 <= clock.slept[1] <= 1.0
    refused = {"action": "fail", "code": "invalid_parameter", "retryable": False, "venue_code": 10001}
    assert runner.call("fx_probe", refused, venue="fx", retry=True).attempts == 1
    eventually = runner.call("fx_probe", {"action": "fail_until", "n": 3, "text": "k1"}, venue="fx", retry=True)
    assert eventually.ok and eventually.attempts == 3
    assert runner.stats()["retries"] == 4


def test_write_with_unknown_outcome_is_never_retried(make_runner):
    runner = make_runner(max_attempts=3, breaker_threshold=100)
    timeout = {"action": "fail", "code": "timeout", "retryable": True}
    write = runner.call("fx_probe", timeout, venue="fx", kind="write", retry=True)
    assert write.outcome_unknown and write.attempts == 1
    read = runner.call("fx_probe", timeout, venue="fx", kind="read", retry=True)
    assert not read.outcome_unknown and read.attempts == 3
    # A script that knows the request never left (e.g. connection refused) may say so; then an idempotent
    # write is retried.
    not_sent = {**timeout, "code": "network_error", "details": {"outcome_unknown": False}}
    known = runner.call("fx_probe", not_sent, venue="fx", kind="ad_edit", retry=True, limit_key="ad1")
    assert not known.outcome_unknown and known.attempts == 3


# -- rate limits ---------------------------------------------------------------------------------------------

def test_sliding_window_limiter_exact_slots():
    clock = FakeClock()
    lim = RateLimiter([LimitRule("r", "v", frozenset({"read"}), 3, 1.0)], clock=clock, sleep=clock.sleep)
    t0 = clock.now
    grants = [lim.acquire("v", "a", "read") for _ in range(7)]
    assert all(g.ok for g in grants)
    # 3 at once, 3 one window later, the 7th two windows later: never 4 inside one rolling second.
    assert [round(g.waited_s, 6) for g in grants] == [0, 0, 0, 1.0, 0, 0, 1.0]
    assert clock.now == t0 + 2.0
    assert lim.stats()["waited"] == 2 and lim.stats()["granted"] == 7
    # another account has its own window; another venue/kind is not limited by this rule
    assert lim.acquire("v", "b", "read").waited_s == 0
    assert lim.acquire("v", "a", "write").waited_s == 0
    assert lim.blocked_for("v", "a", "read") == 0  # only the 7th grant is inside the last second
    assert [lim.acquire("v", "a", "read").waited_s for _ in range(2)] == [0, 0]
    assert lim.blocked_for("v", "a", "read") == pytest.approx(1.0)


def test_limiter_refuses_beyond_bound_and_honours_penalties():
    clock = FakeClock()
    lim = RateLimiter(default_rules(), clock=clock, sleep=clock.sleep)
    for _ in range(10):
        assert lim.acquire("bybit", "u1", "ad_edit", limit_key="ad9").ok
    # the ad's 11th edit inside 5 minutes would wait ~300 s: refused, nothing reserved
    refused = lim.acquire("bybit", "u1", "ad_edit", limit_key="ad9", max_wait_s=5)
    assert not refused.ok and refused.rule == "bybit_ad_edits" and refused.needed_s > 250
    assert lim.stats()["refused"] == 1
    # other ads of the same account are not held by ad9's budget (only by the account's write budget)
    assert lim.acquire("bybit", "u1", "ad_edit", limit_key="ad10", max_wait_s=5).ok
    # a venue 10006 pushes the account's next allowed call
    lim.penalize("bybit", "u2", "read", 2.5)
    assert lim.blocked_for("bybit", "u2", "read") == pytest.approx(2.5)
    assert lim.acquire("bybit", "u2", "read").waited_s == pytest.approx(2.5)
    # the IP-wide budget is shared by every account
    lim2 = RateLimiter([LimitRule("ip", "bybit", frozenset({"read"}), 2, 5.0, "venue")], clock=clock,
                       sleep=clock.sleep)
    assert [lim2.acquire("bybit", acc, "read").waited_s for acc in ("a", "b", "c")] == [0, 0, 5.0]


def test_rate_limit_spaces_real_calls(make_runner, sandbox, bybit_account):
    rule = LimitRule("bybit_reads", "bybit", frozenset({"read"}), 3, 2.0)
    runner = make_runner(env=script_env(sandbox.env), limits=[rule], limiter_history=50)
    results = [runner.call("bybit_account_info", dict(bybit_account["creds"]), venue="bybit",
                           account=bybit_account["uid"]) for _ in range(5)]
    assert all(r.ok for r in results)
    stats = runner.stats()["limiter"]
    assert stats["granted"] == 5 and stats["waited"] == 2 and stats["refused"] == 0
    slots = list(runner.limiter.history[("bybit_reads", bybit_account["uid"])])
    assert all(slots[i + 3] - slots[i] >= 2.0 for i in range(len(slots) - 3))


def test_venue_10006_holds_the_account(make_runner, sandbox, bybit_account, clean_faults):
    runner = make_runner(env=script_env(sandbox.env), limits=default_rules())
    call = {"script": "bybit_account_info", "request": dict(bybit_account["creds"]), "venue": "bybit",
            "account": bybit_account["uid"]}
    sandbox.control("POST", "/sandbox/faults", json={"kind": "bybit_code", "code": 10006,
                                                     "path": "/v5/p2p/user/personal/info", "remaining": 1})
    limited = runner.call(**call)
    assert limited.code == "rate_limited" and limited.error["venue_code"] == 10006 and limited.retryable
    assert runner.stats()["limiter"]["penalties"] == 1
    assert runner.stats()["breakers"]["bybit"]["state"] == CLOSED  # a rate limit is not an outage
    sandbox.control("POST", "/sandbox/faults", json={"kind": "bybit_code", "code": 10006,
                                                     "path": "/v5/p2p/user/personal/info", "remaining": 1})
    retried = runner.call(**call, retry=True)
    assert retried.ok and retried.attempts == 2
    # A long reset (Gate-style retry_after) makes the next call fail fast instead of blocking a thread.
    fx = make_runner(limits=default_rules(), max_wait_s=1.0)
    fx.call("fx_probe", {"action": "fail", "code": "rate_limited", "retryable": True, "venue_code": 429,
                         "details": {"retry_after": 30}}, venue="gate", account="g1")
    held = fx.call("fx_probe", {"action": "echo"}, venue="gate", account="g1", kind="write")
    assert held.code == "local_rate_limited" and held.retryable and held.attempts == 0
    assert fx.call("fx_probe", {"action": "echo"}, venue="gate", account="g2").ok  # other accounts go on


# -- circuit breaker -----------------------------------------------------------------------------------------

def test_breaker_opens_on_connection_refused(make_runner, bybit_account):
    clock = FakeClock()
    closed = f"http://127.0.0.1:{free_port()}"
    runner = make_runner(env=script_env({"ITRADER_BYBIT_URL": closed}), clock=clock, breaker_threshold=3,
                         breaker_cooldown_s=60)
    call = {"script": "bybit_account_info", "request": dict(bybit_account["creds"]), "venue": "bybit",
            "account": bybit_account["uid"]}
    codes = [runner.call(**call).code for _ in range(3)]
    assert codes == ["network_error"] * 3
    fast = runner.call(**call, retry=True)
    assert fast.code == "circuit_open" and fast.retryable and fast.attempts == 0
    stats = runner.stats()
    assert stats["attempts"] == 3 and stats["breaker_opens"] == 1
    assert stats["breakers"]["bybit"]["state"] == OPEN


def test_breaker_half_opens_after_cooldown(make_runner, sandbox):
    clock = FakeClock()
    runner = make_runner(clock=clock, breaker_threshold=2, breaker_cooldown_s=30)
    down = {"action": "http", "url": f"http://127.0.0.1:{free_port()}/x", "seconds": 5}
    up = {"action": "http", "url": f"{sandbox.url}/sandbox/health"}
    refused = {"action": "fail", "code": "invalid_parameter", "retryable": False, "venue_code": 10001}
    # a business refusal in between proves the venue is up: the consecutive count starts again
    assert [runner.call("fx_probe", r, venue="fx").code for r in (down, refused, down)] == \
        ["network_error", "invalid_parameter", "network_error"]
    assert runner.breaker("fx").state == CLOSED
    assert runner.call("fx_probe", down, venue="fx").code == "network_error"
    assert runner.breaker("fx").state == OPEN
    assert runner.call("fx_probe", up, venue="fx").code == "circuit_open"
    clock.now += 31
    assert runner.breaker("fx").state == HALF_OPEN
    assert runner.call("fx_probe", down, venue="fx").code == "network_error"  # the probe fails: open again
    assert runner.breaker("fx").state == OPEN and runner.breaker("fx").opens == 2
    assert runner.call("fx_probe", up, venue="fx").code == "circuit_open"
    clock.now += 31
    probe = runner.call("fx_probe", up, venue="fx")
    assert probe.ok and probe.data["status"] == 200
    assert runner.breaker("fx").state == CLOSED
    assert runner.call("fx_probe", up, venue="fx").ok


def test_breaker_lets_one_probe_through():
    clock = FakeClock()
    br = CircuitBreaker("v", threshold=1, cooldown_s=10, clock=clock)
    br.record_failure()
    assert br.state == OPEN and not br.allow()
    clock.now += 10
    assert br.allow() and not br.allow()  # the probe is out; everyone else fails fast
    br.record_neutral()  # the probe never reached the venue (e.g. local rate limit): next caller probes
    assert br.allow()
    br.record_success()
    assert br.state == CLOSED and br.allow() and br.allow()
    br.trip(600)
    assert br.state == OPEN and br.retry_in_s() == pytest.approx(600)


def test_bybit_ip_403_opens_the_breaker_at_once(make_runner, sandbox, bybit_account, clean_faults):
    runner = make_runner(env=script_env(sandbox.env))
    sandbox.control("POST", "/sandbox/faults", json={"kind": "http_status", "status": 403,
                                                     "path": "/v5/p2p/user/personal/info", "remaining": 1})
    call = {"script": "bybit_account_info", "request": dict(bybit_account["creds"]), "venue": "bybit",
            "account": bybit_account["uid"]}
    assert runner.call(**call).code == "ip_rate_limited_or_forbidden"
    assert runner.breaker("bybit").state == OPEN and runner.breaker("bybit").retry_in_s() > 590
    assert runner.call(**call).code == "circuit_open"


# -- secrets, threads, stats ---------------------------------------------------------------------------------

def test_no_secret_in_runner_logs_argv_or_environment(make_runner, sandbox, bybit_account, caplog, tmp_path):
    secret = bybit_account["creds"]["api_secret"]
    runner = make_runner(env=script_env(sandbox.env))
    caplog.set_level(logging.DEBUG, logger="itrader.orchestrator.runner")
    ok = runner.call("bybit_account_info", dict(bybit_account["creds"]), venue="bybit", account=bybit_account["uid"])
    assert ok.ok
    bad = runner.call("bybit_account_info", {**bybit_account["creds"], "surprise": secret}, venue="bybit",
                      account=bybit_account["uid"])
    assert bad.code == "schema_violation"
    fx = runner.call("fx_probe", {"action": "echo", "api_secret": secret}, venue="fx")
    assert fx.ok
    for pid in (ok.pid, fx.pid):
        assert secret.encode() not in Path(f"/proc/{pid}/cmdline").read_bytes()
        assert secret.encode() not in Path(f"/proc/{pid}/environ").read_bytes()
    records = caplog.records
    assert any(getattr(r, "fields", {}).get("request", {}).get("api_secret") == "***" for r in records)
    dumped = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in records)
    assert "bybit_account_info" in dumped and secret not in dumped
    runner.close()
    script_logs = (tmp_path / "scripts.log").read_text()
    assert "echo with a secret ***" in script_logs and secret not in script_logs


def test_redact_masks_nested_secret_keys():
    request = {"api_key": "k" * 8, "cookies": [{"name": "sid", "value": "abcdef"}], "amount": "10",
               "nested": {"password": "hunter22"}, "note": "pasted hunter22 here", "ids": [1, None]}
    assert redact(request) == {"api_key": "***", "cookies": [{"name": "sid", "value": "***"}], "amount": "10",
                               "nested": {"password": "***"}, "note": "pasted *** here", "ids": [1, None]}


def test_calls_from_a_thread_pool(make_runner):
    runner = make_runner()
    errors: list[str] = []
    pids: set[int] = set()
    lock = threading.Lock()

    def work(n: int) -> None:
        for i in range(5):
            text = f"t{n}-{i}"
            result = runner.call("fx_probe", {"action": "echo", "text": text}, venue="fx", timeout_s=20)
            with lock:
                if not result.ok or result.data["echo"] != text:
                    errors.append(f"{text}: {result}")
                else:
                    pids.add(result.data["pid"])

    threads = [threading.Thread(target=work, args=(n,)) for n in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert 1 <= len(pids) <= FX.pool_size  # answers never crossed, and the pool never outgrew its size
    stats = runner.stats()
    assert stats["calls"] == {"fx_probe": 25} and stats["ok"] == {"fx_probe": 25}
    assert stats["latency_p50_ms"]["fx_probe"] > 0


def test_close_kills_a_busy_worker_after_the_grace_period(make_runner):
    runner = make_runner()
    box: dict = {}
    t = threading.Thread(target=lambda: box.update(r=runner.call(
        "fx_probe", {"action": "sleep", "seconds": 30}, venue="fx", kind="write", timeout_s=60)))
    t.start()
    time.sleep(0.5)  # let the call reach the worker
    runner.close(grace_s=0.3)
    t.join(10)
    result = box["r"]
    assert result.code == "worker_died" and result.outcome_unknown
    assert gone(result.pid)
