"""Crash safety of the whole pipeline: ``kill -9`` a real ``itrader run`` at random moments, restart it, repeat.

The orchestrator runs as the child supervisord would start (its own session, its own process group) against
the sandbox venues.  It is SIGKILLed at least 20 times at seeded random moments, restarted each time, then left
to finish, then stopped with SIGTERM.  Judged from the venues' ground truth, never from what the orchestrator
believes:

* zero auditor violations; no fraudulent buyer's order reached COMPLETED;
* nothing done twice: one Gate approve per payout, one Bybit release per order, never two live ads for one
  of our orders at any sampled moment, no merchant chat message sent twice (a crash must not resend);
* every payout terminal or with an operator, and no intent row left unresolved (queued/intended/unknown);
* a clean SIGTERM exit within supervisord's stopwaitsecs, with the Gate working balance reset to 0.

The helpers at the top are shared with test_faults.py.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from orchestrator.demo import DONE_STATES, HONEST, SandboxStack
from tests.services.postgres import start_postgres
from tests.support import LOG_DIR

SEED = 23
PAYOUTS = 14
KILLS = 20
STOP_WAIT_S = 10.0  # supervisord's stopwaitsecs for the orchestrator program
SETTLE_TIMEOUT_S = 150.0

# Honest buyers most common, and every kind of fraud the orchestrator must refuse to pay.
CRASH_MIX = {
    "cooperative": 6, "chat_receipt": 1, "unclear_then_yes": 1, "refuser": 1, "canceller": 1, "appealer": 1,
    "fraud_edited_pdf": 1, "fraud_reuse": 1, "fraud_wrong_wallet": 1, "fraud_wrong_bank": 1,
    "fraud_lookalike": 1, "mark_paid_only": 1,
}

# The ad remark carries "IT<order id>A<attempt>": the link from a venue ad back to our order.
AD_TOKEN = re.compile(r"\bIT(\d+)A(\d+)\b")


# -- shared helpers (also used by test_faults.py) ---------------------------------------------------------------
def database_url(kind: str, request: pytest.FixtureRequest) -> str | None:
    """None: the stack's own SQLite file; "postgresql": a fresh database, dropped at teardown."""
    if kind == "sqlite":
        return None
    server = start_postgres()
    name_url = server.create_database("itrader_e2e_crash")
    request.addfinalizer(server.close)  # drops every database it created
    return name_url


class AdSampler:
    """Samples the venue's ads in a thread: the most live ads ever seen at once for one of our orders.

    "Live" is what a buyer could open an order on: status 10 and not removed.  Two of them for one order at
    the same moment would let two buyers pay for one payout.
    """

    def __init__(self, base_url: str, interval_s: float = 0.25) -> None:
        self.base_url = base_url
        self.interval_s = interval_s
        self.samples = 0
        self.max_live: Counter[str] = Counter()
        self.doubles: list[dict[str, Any]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ad-sampler", daemon=True)

    def __enter__(self) -> AdSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(10)

    def sample(self) -> None:
        ads = requests.get(f"{self.base_url}/sandbox/bybit/ads", timeout=10).json()["ads"]
        live: defaultdict[str, list[str]] = defaultdict(list)
        for ad in ads:
            m = AD_TOKEN.search(ad.get("remark") or "")
            if m and ad["status"] == 10 and not ad["removed"]:
                live[m.group(1)].append(ad["id"])
        for order_id, ids in live.items():
            self.max_live[order_id] = max(self.max_live[order_id], len(ids))
            if len(ids) > 1:
                self.doubles.append({"order": order_id, "ads": ids, "at": time.time()})
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.sample()
            except requests.RequestException:
                continue  # the sandbox is busy; the next sample counts


def sandbox_get(stack: SandboxStack, path: str) -> Any:
    return stack.sandbox.control("GET", path)


def duplicates_on_venues(stack: SandboxStack) -> list[str]:
    """Everything the venues saw more than once where once is the rule (ground truth, not our DB).

    Raises when the venues saw no merchant chat message at all: the chat check would then prove nothing.
    """
    problems: list[str] = []
    approves = Counter(str(e["payout_id"]) for e in sandbox_get(stack, "/sandbox/truth?kind=gate_approve")["events"])
    problems += [f"payout {p} approved {n} times on Gate" for p, n in approves.items() if n > 1]
    releases = Counter(str(e["order_id"]) for e in sandbox_get(stack, "/sandbox/truth?kind=bybit_release")["events"])
    problems += [f"Bybit order {o} released {n} times" for o, n in releases.items() if n > 1]
    chat_problems, merchant_messages = chat_duplicates(stack)
    assert merchant_messages > 0, "no merchant chat message on the venue: the duplicate check proves nothing"
    return problems + chat_problems


def chat_duplicates(stack: SandboxStack) -> tuple[list[str], int]:
    """Merchant chat texts sent more than once in one order.

    The only text the dialogue legitimately sends twice is the repeated question (after a second unclear
    answer); it may appear at most twice.  Everything else (question, the four requisites messages, the
    refusal, the confirmation) exactly once per Bybit order.
    """
    from orchestrator import dialogue

    repeat_question = dialogue.question(repeat=True)
    problems: list[str] = []
    total = 0
    for order in sandbox_get(stack, "/sandbox/bybit/orders")["orders"]:
        messages = sandbox_get(stack, f"/sandbox/bybit/orders/{order['id']}/messages")["messages"]
        ours = Counter(m["message"] for m in messages if str(m.get("userId")) == str(order["seller_uid"]))
        total += sum(ours.values())
        for text, n in ours.items():
            allowed = 2 if text == repeat_question else 1
            if n > allowed:
                problems.append(f"order {order['id']}: merchant sent {n}x {text[:60]!r}")
    return problems, total


def stuck_intents(stack: SandboxStack) -> list[tuple[str, str, str]]:
    """Intent rows still queued/intended/unknown: nobody knows whether that venue call happened.

    None is tolerated, chat messages included: one begun for an order the dialogue has left is settled by
    reading the chat (``Engine._settle_chat_sends``).
    """
    from sqlalchemy import select

    from orchestrator.models import SideEffect
    from orchestrator.states import UNRESOLVED_EFFECT_STATUSES

    return stack._query(lambda s: [tuple(r) for r in s.execute(
        select(SideEffect.kind, SideEffect.target_key, SideEffect.status)
        .where(SideEffect.status.in_(UNRESOLVED_EFFECT_STATUSES))).all()])


def fraud_paid(stack: SandboxStack) -> list[dict[str, Any]]:
    """Payouts completed for a fraudulent buyer (profile from the sandbox's ground truth, wallet from our DB).

    One exception, and only on its precise ground: ``fraud_wrong_bank`` sends the exact amount to the payout's
    wallet at another bank.  For SBP by phone that is another person's account (must never complete); for a
    card number the card alone names the account, so the money did reach the recipient and completing is right.
    """
    from sqlalchemy import select

    from orchestrator.models import Order, Payout

    profile_of = sandbox_get(stack, "/sandbox/bybit/buyers")["by_order"]
    rows = stack._query(lambda s: s.execute(
        select(Order.id, Order.bybit_order_id, Payout.wallet).join(Payout, Payout.id == Order.payout_id)
        .where(Order.state == "COMPLETED")).all())
    paid = []
    for order_id, bybit_order_id, wallet in rows:
        profile = profile_of.get(str(bybit_order_id), "no buyer")
        if profile in HONEST:
            continue
        if profile == "fraud_wrong_bank" and len(wallet or "") != 11:
            continue  # card payout: see above
        paid.append({"order": order_id, "bybit_order": bybit_order_id, "profile": profile, "wallet": wallet})
    return paid


def run_dir(name: str) -> Path:
    """A run directory under var/test-logs (databases, logs, receipts), kept as evidence when a test fails.

    pytest's tmp_path is pruned by any later pytest run on the machine, which loses the evidence of a rare
    interleaving; callers remove the directory themselves once the test passed.
    """
    path = LOG_DIR / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def save_evidence(stack: SandboxStack) -> None:
    """The sandbox's ground truth dies with its process: keep a copy next to the database and logs."""
    import json

    for name, path in (("truth", "/sandbox/truth"), ("audit", "/sandbox/audit"), ("buyers", "/sandbox/bybit/buyers"),
                       ("orders", "/sandbox/bybit/orders"), ("ads", "/sandbox/bybit/ads")):
        try:
            data = sandbox_get(stack, path)
        except Exception as exc:  # evidence is best effort; the test's own assertion says what failed
            data = {"error": repr(exc)}
        (stack.run_dir / f"sandbox-{name}.json").write_text(json.dumps(data, ensure_ascii=False, indent=1))


def log_tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return "(no log)"


# -- the crash test ------------------------------------------------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str | None:
    return database_url(request.param, request)


def _kill_group(child: subprocess.Popen[bytes]) -> None:
    """kill -9 the orchestrator's whole process group (what an OOM kill or a power cut amounts to)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)
    child.wait(10)


def test_kill9_at_random_moments_then_finish(db_url: str | None) -> None:
    rng = random.Random(SEED)
    started = time.monotonic()
    where = run_dir(f"crash-{'pg' if db_url else 'sqlite'}")
    stack = SandboxStack(where, db_url=db_url, seed=SEED, speed=60, bybit_accounts=4, mix=CRASH_MIX,
                         max_in_work=PAYOUTS)
    log = stack.run_dir / "orchestrator.log"
    child: subprocess.Popen[bytes] | None = None
    try:
        stack.offer_payouts(PAYOUTS)
        with AdSampler(stack.sandbox.url) as sampler:
            lifetimes = []
            for i in range(KILLS):
                child = stack.start_orchestrator()
                lifetime = rng.uniform(0.3, 3.0)
                time.sleep(lifetime)
                assert child.poll() is None, f"orchestrator exited on its own before kill {i}: {log_tail(log)}"
                _kill_group(child)
                lifetimes.append(lifetime)
            killed_at = time.monotonic()

            child = stack.start_orchestrator()
            deadline = time.monotonic() + SETTLE_TIMEOUT_S
            while not stack.settled(PAYOUTS) and time.monotonic() < deadline:
                assert child.poll() is None, f"orchestrator died: {log_tail(log)}"
                time.sleep(1.0)
            settled_s = time.monotonic() - killed_at
            counts = stack.state_counts()
            assert stack.settled(PAYOUTS), f"not settled {SETTLE_TIMEOUT_S:.0f}s after the last kill: {dict(counts)}"

            # Graceful stop: SIGTERM to the main process only, as supervisord sends it.
            stop_started = time.monotonic()
            child.send_signal(signal.SIGTERM)
            try:
                code = child.wait(STOP_WAIT_S)
            except subprocess.TimeoutExpired:
                pytest.fail(f"no exit within {STOP_WAIT_S}s of SIGTERM: {log_tail(log)}")
            stop_s = time.monotonic() - stop_started
            assert code == 0, f"exit status {code} after SIGTERM: {log_tail(log)}"
            sampler.sample()

        gate_accounts = sandbox_get(stack, "/sandbox/gate/accounts")["accounts"]
        balance_events = sandbox_get(stack, "/sandbox/truth?kind=gate_set_balance")["events"]
        audit = stack.audit()
        by_profile = stack.outcomes_by_profile()
        paid_fraud = fraud_paid(stack)
        duplicates = duplicates_on_venues(stack)
        stuck = stuck_intents(stack)
    finally:
        if child is not None and child.poll() is None:
            _kill_group(child)
        save_evidence(stack)
        stack.close()

    print(f"\ncrash[{where.name}]: {KILLS} kills (lifetimes {min(lifetimes):.1f}-"
          f"{max(lifetimes):.1f}s), settled {settled_s:.1f}s after the last kill, SIGTERM exit {stop_s:.1f}s, "
          f"{sampler.samples} ad samples, states {dict(counts)}, total {time.monotonic() - started:.0f}s")
    assert audit["violations"] == [], audit["violations"]
    assert sum(counts.values()) == PAYOUTS and set(counts) <= DONE_STATES, counts
    assert paid_fraud == [], (paid_fraud, by_profile)
    assert duplicates == [], duplicates
    assert sampler.doubles == [], sampler.doubles[:5]
    assert sampler.samples > 50 and sampler.max_live, "the ad sampler hardly saw an ad: the check proves nothing"
    assert stuck == [], f"intents never resolved: {stuck}"
    # Working balance set at each start; 0 at the graceful stop, and that is what Gate holds now.
    assert any(Decimal(e["amount"]) > 0 for e in balance_events), balance_events
    assert Decimal(balance_events[-1]["amount"]) == 0, balance_events[-3:]
    assert all(Decimal(a["rub_balance"]) == 0 for a in gate_accounts), gate_accounts
    shutil.rmtree(where, ignore_errors=True)
