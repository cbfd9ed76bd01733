"""Gate script latency on loopback: gate_list_payouts cold one-shot (spawn -> answer) and warm ``--serve``.

One page of 30 status-4 payouts (the orchestrator's "find work" poll), authenticated with browser-export
cookies.  Cookie rotation is switched off while measuring so every call does the same work.
Targets: cold <= 250 ms median, warm <= 10 ms median (same budgets as the Bybit scripts).
"""

from __future__ import annotations

import json
from typing import Any

import requests

from tests.bench import BenchContext, row

N_COLD = 15
N_WARM = 50
COLD_MS = 250.0
WARM_MS = 10.0


def _session(ctx: BenchContext) -> list[dict[str, Any]]:
    box = ctx.sandbox
    acc = box.control("POST", "/sandbox/gate/accounts", json={"rub_balance": "10000000"})
    resp = requests.post(f"{box.url}/api/v1/auth/basic/login", json={"login": acc["login"],
                                                                     "password": acc["password"]}, timeout=10)
    resp.raise_for_status()
    return [{"name": n, "value": resp.cookies[n], "domain": ".panel.gate.cx", "path": "/"} for n in ("sid", "rsid")]


def rows(ctx: BenchContext) -> list[dict[str, Any]]:
    box = ctx.sandbox
    before = box.control("GET", "/sandbox/gate/config")
    box.control("POST", "/sandbox/gate/config", json={"rotate_every": 0})
    try:
        box.control("POST", "/sandbox/gate/payouts", json={"n": 30})
        payload = {"cookies": _session(ctx), "status": [4], "per_page": 30}
        stdin = json.dumps(payload).encode()
        argv = [ctx.script("gate_list_payouts")]

        def cold() -> None:
            code, out = ctx.spawn(argv, stdin, ctx.env)
            if code != 0:
                raise RuntimeError(f"gate_list_payouts failed: {out[:300]!r}")

        cold_ms = ctx.time_calls(cold, N_COLD, warmup=2)
        worker = ctx.serve("gate_list_payouts", ctx.env)
        try:
            def warm() -> None:
                reply = worker.call(payload)
                if not reply.get("success"):
                    raise RuntimeError(f"gate_list_payouts --serve failed: {reply}")

            warm_ms = ctx.time_calls(warm, N_WARM, warmup=3)
        finally:
            worker.close()
    finally:
        box.control("POST", "/sandbox/gate/config", json=before)
    return [
        row("gate_list_payouts cold one-shot", cold_ms, COLD_MS, note="requests import + 1 GET, 30 payouts"),
        row("gate_list_payouts warm --serve", warm_ms, WARM_MS, note="keep-alive GET, 30 payouts normalised"),
    ]
