"""Bench rows for the whole pipeline: latency from a payout appearing on Gate to our ad being online,
throughput with many payouts and Bybit accounts at a fast clock, and orchestrator CPU per completed payout.

It builds its own SandboxStack (it needs buyers, the bank mailbox and a database, not only the shared
sandbox).  Sizes come from the environment so a quick look is cheap:
BENCH_ORCH_PAYOUTS (default 200), BENCH_ORCH_ACCOUNTS (default 50), BENCH_ORCH_SPEED (default 30).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.bench import BenchContext, row

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_ms(pid: int) -> float:
    """User + system CPU of one live process, from /proc."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) * 1000 / CLK_TCK


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except OSError:
                continue
            if ppid == pid:
                out.append(int(entry.name))
    return out


def rows(ctx: BenchContext) -> list[dict[str, Any]]:
    from sqlalchemy import select

    from orchestrator.demo import SandboxStack
    from orchestrator.models import Ad, Order, Payout

    payouts = int(os.environ.get("BENCH_ORCH_PAYOUTS", "200"))
    accounts = int(os.environ.get("BENCH_ORCH_ACCOUNTS", "50"))
    speed = float(os.environ.get("BENCH_ORCH_SPEED", "30"))
    run_dir = Path(tempfile.mkdtemp(prefix="itrader-bench-"))
    stack = SandboxStack(run_dir, seed=3, speed=speed, bybit_accounts=accounts, mix={"cooperative": 1},
                         max_in_work=payouts)
    try:
        own = {stack.sandbox.proc.pid, *(p for p in [getattr(stack.mail.proc, "pid", None)] if p)}
        stack.offer_payouts(payouts)
        cpu_start = time.process_time() * 1000
        started = time.monotonic()
        workers_cpu: dict[int, float] = {}

        def sample(_counts: Any) -> None:
            for pid in _children(os.getpid()):
                if pid not in own:
                    workers_cpu[pid] = max(workers_cpu.get(pid, 0.0), _cpu_ms(pid))

        stack.run(payouts, timeout_s=900, on_progress=sample)
        elapsed_min = (time.monotonic() - started) / 60
        orchestrator_cpu = time.process_time() * 1000 - cpu_start + sum(workers_cpu.values())
        with_latency = stack._query(lambda s: s.execute(
            select(Payout.gate_created_at, Payout.accepted_at, Ad.created_at).join(Order, Order.payout_id == Payout.id)
            .join(Ad, Ad.order_id == Order.id).order_by(Ad.id)).all())
        states = stack.state_counts()
        completed = states.get("COMPLETED", 0)
        violations = len(stack.audit()["violations"])
    finally:
        stack.close()
    first_ad: dict[Any, tuple[Any, Any]] = {}
    for visible, accepted, online in with_latency:
        first_ad.setdefault(visible, (accepted, online))
    latency_ms = [(online - visible).total_seconds() * 1000 for visible, (_, online) in first_ad.items() if visible]
    own_ms = [(online - accepted).total_seconds() * 1000 for accepted, online in first_ad.values() if accepted]
    note = (f"{payouts} payouts offered at once, {accounts} accounts x 2 ad slots, speed x{speed:g}, "
            f"{violations} violations; includes waiting for the Gate pacing (one account) and for a free ad slot")
    out = [row("orchestrator: payout visible on Gate -> ad online (real ms)", latency_ms or [0.0], note=note),
           row("orchestrator: payout accepted -> ad online (real ms)", own_ms or [0.0],
               note="rate + payment method + create_ad, and the wait for a free slot")]
    out.append(row("orchestrator: payouts completed per minute", [completed / max(elapsed_min, 1e-9)],
                   note=f"{completed} completed in {elapsed_min:.1f} min; final states {dict(states)}"))
    out.append(row("orchestrator: CPU ms per completed payout (incl. script workers)",
                   [orchestrator_cpu / max(completed, 1)], note="sandbox and dovecot excluded"))
    return out
