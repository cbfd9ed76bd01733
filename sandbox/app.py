"""One HTTP port serving every simulated venue (REST and WebSocket) plus the ``/sandbox/`` control API.

Each venue module exposes ``install(app, world)``: it creates its state on the world, mounts its routes and
registers its tick function.  Generic faults (latency, timeouts, HTTP 5xx, Cloudflare-style 403 pages) are
applied here in one middleware, so every venue gets them the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response

from sandbox.world import Fault, World

CLOUDFLARE_PAGE = """<!DOCTYPE html><html lang="en-US"><head><title>Just a moment...</title>
<meta http-equiv="Content-Type" content="text/html; charset=UTF-8"></head><body>
<div class="main-wrapper" role="main"><div class="main-content"><h1>panel.gate.cx</h1>
<h2>Checking if the site connection is secure</h2><noscript>Enable JavaScript and cookies to continue</noscript>
</div></div><div class="footer">Performance &amp; security by Cloudflare · Ray ID: 7f{rid}</div></body></html>"""

TICK_INTERVAL_S = 0.05


def venue_modules() -> list[Any]:
    from sandbox import audit, llm
    from sandbox.bank import venue as bank
    from sandbox.bybit import market, rest, ws
    from sandbox.gate import api as gate

    # Order matters: the bank exists before the venues whose buyers pay through it.
    return [bank, gate, rest, market, ws, llm, audit]


def create_app(world: World) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        async def ticker() -> None:
            while True:
                await asyncio.to_thread(world.tick)
                await asyncio.sleep(TICK_INTERVAL_S)

        task = asyncio.create_task(ticker())
        yield
        task.cancel()

    app = FastAPI(title="itrader sandbox venues", lifespan=lifespan)
    app.state.world = world

    @app.middleware("http")
    async def inject_faults(request: Request, call_next):
        path = request.url.path
        if path.startswith("/sandbox/"):
            return await call_next(request)
        fault = world.faults.take(path, ("latency", "timeout", "http_status", "cloudflare", "lost_reply"))
        if fault is not None:
            if fault.kind == "lost_reply":
                # The venue DID handle the request; only its answer is lost (a proxy 502/504 or a dropped
                # connection after the fact).  The case a blind retry turns into a double action.
                handled = await call_next(request)
                async for _ in handled.body_iterator:  # let the venue finish its answer, then drop it
                    pass
                await asyncio.sleep(fault.delay_s)
                return Response(f"simulated HTTP {fault.status or 504}", status_code=fault.status or 504,
                                media_type="text/plain")
            if fault.kind == "latency":
                await asyncio.sleep(fault.delay_s)
            elif fault.kind == "timeout":
                # Hold the connection past any sane client timeout; the client sees a read timeout.
                await asyncio.sleep(fault.delay_s or 30.0)
                return Response(status_code=504)
            elif fault.kind == "cloudflare":
                page = CLOUDFLARE_PAGE.replace("{rid}", f"{world.rng.randrange(16**14):014x}")
                return HTMLResponse(page, status_code=403, headers={"server": "cloudflare"})
            elif fault.kind == "http_status":
                status = fault.status or 500
                return Response(f"simulated HTTP {status}", status_code=status, media_type="text/plain")
        return await call_next(request)

    @app.get("/sandbox/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "seed": world.seed, "speed": world.speed, "uptime_s": round(world.now() - world.started, 3)}

    @app.get("/sandbox/faults")
    def list_faults() -> dict[str, Any]:
        return {"faults": world.faults.list()}

    @app.post("/sandbox/faults")
    async def add_fault(request: Request) -> JSONResponse:
        body = await request.json()
        allowed = set(Fault.__dataclass_fields__) - {"id"}
        unknown = set(body) - allowed
        if unknown or "kind" not in body:
            return JSONResponse({"error": f"fields: kind required; allowed {sorted(allowed)}"}, status_code=400)
        return JSONResponse(world.faults.add(Fault(**body)).to_dict())

    @app.delete("/sandbox/faults")
    def clear_faults() -> dict[str, Any]:
        world.faults.clear()
        return {"ok": True}

    @app.get("/sandbox/truth")
    def truth(kind: str | None = None) -> dict[str, Any]:
        return {"events": world.truth_events(kind)}

    for module in venue_modules():
        module.install(app, world)
    return app


def env_lines(host: str, port: int) -> list[str]:
    """The environment a client needs to talk to this sandbox instead of the real venues."""
    base = f"http://{host}:{port}"
    return [
        f"export ITRADER_BYBIT_URL={base}",
        f"export ITRADER_BYBIT_MARKET_URL={base}",
        f"export ITRADER_BYBIT_WS_URL=ws://{host}:{port}",
        f"export ITRADER_GATE_URL={base}/api/v1",
        f"export ITRADER_OPENAI_URL={base}/v1",
        f"export ITRADER_SANDBOX_URL={base}",
    ]


def serve(host: str, port: int, seed: int, speed: float, options: dict[str, Any] | None = None) -> None:
    import uvicorn

    world = World(seed=seed, speed=speed, options=options)
    uvicorn.run(create_app(world), host=host, port=port, log_level="warning", ws="websockets")
