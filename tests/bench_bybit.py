"""Bybit script latency on loopback: cold one-shot (spawn -> answer) and warm ``--serve`` per call.

Targets: cold <= 250 ms median, warm <= 10 ms median.  The sandbox's per-UID and per-IP limits are raised first
(the benchmark measures the scripts, not the rate limiter); the market is frozen so every call does the same
work.  bybit_create_ad uses the account's own payment method id, i.e. one signed call per ad, as the
orchestrator sends it once the payment list is cached.
"""

from __future__ import annotations

import json
from typing import Any

from tests.bench import BenchContext, row

N_COLD = 15
N_WARM = 50
COLD_MS = 250.0
WARM_MS = 10.0


def _account(ctx: BenchContext) -> tuple[dict[str, str], str]:
    acc = ctx.sandbox.control("POST", "/sandbox/bybit/accounts", json={"count": 1, "balance": "10000000"})["accounts"][0]
    method = next(m["id"] for m in acc["payment_methods"] if m["payment_type"] == "382")
    return {"api_key": acc["api_key"], "api_secret": acc["api_secret"]}, method


def _ad_request(cred: dict[str, str], method: str) -> dict[str, Any]:
    return {**cred, "ad_params": {"side": "sell", "currency": "RUB", "price": "81.50", "quantity": "1.5",
                                  "min_amount": "100", "max_amount": "100", "payment_methods": [method],
                                  "remarks": "bench"}}


def _cold(ctx: BenchContext, name: str, payload: dict[str, Any]) -> list[float]:
    stdin = json.dumps(payload).encode()
    argv = [ctx.script(name)]

    def once() -> None:
        code, out = ctx.spawn(argv, stdin, ctx.env)
        if code != 0:
            raise RuntimeError(f"{name} failed: {out[:300]!r}")

    return ctx.time_calls(once, N_COLD, warmup=2)


def _cold_cpu(ctx: BenchContext, name: str, payload: dict[str, Any]) -> list[float]:
    stdin = json.dumps(payload).encode()
    return [ctx.spawn_cpu_ms([ctx.script(name)], stdin, ctx.env) for _ in range(N_COLD)]


def _warm(ctx: BenchContext, name: str, payload: dict[str, Any]) -> tuple[list[float], float]:
    """Per-call wall times, and the worker's own CPU per call (averaged over the run)."""
    worker = ctx.serve(name, ctx.env)
    try:
        def once() -> None:
            reply = worker.call(payload)
            if not reply.get("success"):
                raise RuntimeError(f"{name} --serve failed: {reply}")

        for _ in range(3):
            once()
        cpu0 = ctx.process_cpu_ms(worker.proc.pid)
        samples = ctx.time_calls(once, N_WARM)
        return samples, (ctx.process_cpu_ms(worker.proc.pid) - cpu0) / N_WARM
    finally:
        worker.close()


def _raw_market_read(ctx: BenchContext) -> list[float]:
    """One keyless market read over a kept-alive stdlib connection: the sandbox's share of a warm get_rates."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", ctx.sandbox.port, timeout=10)
    body = json.dumps({"tokenId": "USDT", "currencyId": "RUB", "payment": ["382", "75"], "side": "1",
                       "size": "10", "page": "4"}).encode()

    def once() -> None:
        conn.request("POST", "/fiat/otc/item/online", body=body, headers={"Content-Type": "application/json"})
        conn.getresponse().read()

    try:
        return ctx.time_calls(once, N_WARM, warmup=3)
    finally:
        conn.close()


def rows(ctx: BenchContext) -> list[dict[str, Any]]:
    box = ctx.sandbox
    box.control("POST", "/sandbox/bybit/limits", json={"reads_per_s": 100000, "writes_per_s": 100000,
                                                        "ip_per_5s": 1000000, "edit_budget": 100000})
    box.control("POST", "/sandbox/bybit/market", json={"frozen": True})
    baseline = ctx.time_calls(lambda: ctx.spawn([ctx.python, "-c", "pass"]), N_COLD, warmup=2)
    rates = {"amount_rub": 10000}
    cred, method = _account(ctx)
    ad = _ad_request(cred, method)
    warm_rates, warm_rates_cpu = _warm(ctx, "bybit_get_rates", rates)
    warm_ad, warm_ad_cpu = _warm(ctx, "bybit_create_ad", ad)
    out = [
        row("python -c pass (baseline)", baseline),
        row("python -c pass, child CPU", [ctx.spawn_cpu_ms([ctx.python, "-c", "pass"]) for _ in range(N_COLD)]),
        row("bybit_get_rates cold one-shot", _cold(ctx, "bybit_get_rates", rates), COLD_MS,
            note="3 keyless market reads (sellers p1, buyers p1, rule page)"),
        row("bybit_get_rates cold, child CPU", _cold_cpu(ctx, "bybit_get_rates", rates)),
        row("bybit_create_ad cold one-shot", _cold(ctx, "bybit_create_ad", ad), COLD_MS,
            note="pybit import + sign + 1 POST"),
        row("bybit_create_ad cold, child CPU", _cold_cpu(ctx, "bybit_create_ad", ad)),
        row("bybit_get_rates warm --serve", warm_rates, WARM_MS,
            note=f"worker CPU {warm_rates_cpu:.2f} ms/call; the rest is the sandbox answering 3 reads"),
        row("bybit_create_ad warm --serve", warm_ad, WARM_MS, note=f"worker CPU {warm_ad_cpu:.2f} ms/call"),
        row("sandbox market read, raw (context)", _raw_market_read(ctx),
            note="no script involved; a warm bybit_get_rates makes 3 of these"),
    ]
    box.control("POST", "/sandbox/bybit/market", json={"frozen": False})
    box.control("POST", "/sandbox/bybit/limits", json={"reset": True})
    return out
