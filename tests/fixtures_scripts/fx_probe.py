#!/bin/sh
''''true; case $0 in */*) d=${0%/*};; *) d=.;; esac; p=$d/../../.venv/bin/python; [ -x "$p" ] || p=python3; exec "$p" "$0" "$@" # '''
"""Test-only script with controllable behaviour, so the runner's failure paths can be driven for real.

It follows the script contract exactly (``itrader.contract.run``) with its own schemas next to it: a warm
worker that sleeps, crashes, prints garbage or an off-schema envelope, fails with a chosen error, or makes an
HTTP request (to the sandbox, or to a closed port).  Never used in production.
"""
# ruff: noqa: E402  (the polyglot line above is a statement, so every import comes "late")

import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Before any itrader import: these schemas live beside the script, and the shared library is under scripts/.
os.environ["ITRADER_SCHEMA_DIR"] = str(HERE / "schemas")
sys.path.insert(0, str(HERE.parents[1] / "scripts"))

from itrader.contract import run
from itrader.errors import ScriptError, network_error


def probe(request: dict, ctx) -> dict:
    """One action per request; ``served`` counts requests handled by this process (warm-worker evidence)."""
    ctx.cache["served"] = ctx.cache.get("served", 0) + 1
    action = request["action"]
    out = {"pid": os.getpid(), "served": ctx.cache["served"]}
    if action == "echo":
        if "api_secret" in request:
            ctx.log.info("echo with a secret %s", request["api_secret"])  # the contract must redact this
        out["echo"] = request.get("text", "")
    elif action == "sleep":
        time.sleep(float(request.get("seconds", 1)))
    elif action == "crash":
        os._exit(3)
    elif action == "garbage":
        sys.stdout.write("this is not json\n")
        sys.stdout.flush()
    elif action == "noise_later":
        # Answers normally, then prints a stray line while idle: the runner must not reuse this worker.
        import threading

        def noise() -> None:
            time.sleep(0.05)
            sys.stdout.write('{"success": true, "data": {"pid": 0, "served": 0}}\n')
            sys.stdout.flush()

        threading.Thread(target=noise, daemon=True).start()
    elif action == "off_schema":
        sys.stdout.write('{"success": true, "data": {"surprise": 1}}\n')
        sys.stdout.flush()
    elif action == "fail":
        raise ScriptError(request.get("code", "venue_error"), "requested failure",
                          retryable=bool(request.get("retryable", False)), venue_code=request.get("venue_code"),
                          details=request.get("details"))
    elif action == "fail_until":
        # Fails (retryable) until this process has seen `text` `n` times: lets a retry succeed on a warm worker.
        seen = ctx.cache["seen:" + request.get("text", "")] = ctx.cache.get("seen:" + request.get("text", ""), 0) + 1
        if seen < int(request["n"]):
            raise ScriptError("venue_unavailable", "not yet", retryable=True, venue_code=503)
    elif action == "http":
        import requests

        try:
            resp = requests.get(request["url"], timeout=float(request.get("seconds", 10)))
        except requests.RequestException as exc:
            raise network_error(exc, "probe target") from None
        if resp.status_code >= 500:
            raise ScriptError("venue_unavailable", f"HTTP {resp.status_code}", retryable=True,
                              venue_code=resp.status_code)
        if resp.status_code == 403:
            raise ScriptError("cloudflare_block", "HTTP 403", retryable=True, venue_code=403)
        out["status"] = resp.status_code
    return out


if __name__ == "__main__":
    run("fx_probe", probe)
