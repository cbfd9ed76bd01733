"""The script contract (version 1), shared by every program in ``scripts/``.

A script is ``run(name, operation)``: it reads ONE JSON object on stdin, validates it against
``schemas/<name>.input.json`` before any network call, calls ``operation(request, ctx)`` and prints ONE JSON
envelope validated against ``schemas/<name>.output.json``::

    {"success": true,  "data": {...}}
    {"success": false, "error": {"code", "message", "retryable", "venue_code"}}

Exit status: 0 success, 1 the operation failed, 2 the input is bad.  ``--serve`` keeps one process (and its
cached venue sessions in ``ctx.cache``) alive for NDJSON request lines; ``--schema`` prints both schemas.

Secrets only ever arrive inside the request; every string found under a secret-looking key is registered with
the redactor, so no stdout envelope and no stderr log line can carry it, even inside an exception message.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, NoReturn

from itrader import log as itlog
from itrader.errors import InputError, ScriptError

CONTRACT_VERSION = "1"

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2

Operation = Callable[[dict[str, Any], "Context"], dict[str, Any]]

# Keys whose string values (at any depth) are secrets.  "value" covers browser-export cookie objects.
SECRET_KEYS = frozenset(
    {"api_key", "api_secret", "password", "value", "cookies", "cookie", "sid", "rsid", "secret", "token"}
)


@dataclass
class Context:
    """Per-process state handed to operations; in ``--serve`` mode it lives across requests."""

    script: str
    cache: dict[str, Any] = field(default_factory=dict)
    log: Any = None


def json_default(value: Any) -> Any:
    """Money stays exact on the wire: Decimals are written as strings, never floats."""
    if isinstance(value, Decimal):
        return format(value, "f")
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=json_default)


def success(data: dict[str, Any]) -> dict[str, Any]:
    return {"success": True, "data": data}


def failure(err: ScriptError) -> dict[str, Any]:
    return {"success": False, "error": err.to_dict()}


# Public attributes of a browser-export cookie object (inside "cookies"): only its "value" is secret.  Masking
# "rsid" or ".panel.gate.cx" would garble the refreshed cookie objects a Gate script must hand back.
COOKIE_ATTRIBUTE_KEYS = frozenset({"name", "domain", "path", "samesite", "storeid"})


def _collect_secrets(obj: Any, under_secret: bool = False) -> list[str]:
    found: list[str] = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if under_secret and str(key).lower() in COOKIE_ATTRIBUTE_KEYS and isinstance(value, str):
                continue
            found += _collect_secrets(value, under_secret or str(key).lower() in SECRET_KEYS)
    elif isinstance(obj, list):
        for item in obj:
            found += _collect_secrets(item, under_secret)
    elif isinstance(obj, str) and under_secret and len(obj) >= 4:
        found.append(obj)
    return found


def parse_request(line: str | bytes) -> dict[str, Any]:
    """Decode one request; floats become Decimal so amounts like 10000.10 are never rounded."""
    try:
        request = json.loads(line, parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError("invalid_json", f"stdin is not one JSON object: {exc.__class__.__name__}") from None
    if not isinstance(request, dict):
        raise InputError("invalid_json", f"stdin must be a JSON object, got {type(request).__name__}")
    return request


def handle(name: str, operation: Operation, line: str | bytes, ctx: Context) -> tuple[dict[str, Any], int]:
    """Run one request end to end and return (envelope, exit status). Never raises."""
    from itrader import schemas

    started = time.perf_counter()
    try:
        request = parse_request(line)
        itlog.REDACTOR.add(_collect_secrets(request))
        schemas.check(name, "input", request)
        data = operation(request, ctx)
        envelope = success(data)
        code = EXIT_OK
    except ScriptError as err:
        envelope, code = failure(err), err.exit_code
    except Exception as exc:  # a bug, not a venue answer: report it in the contract shape, log the trace
        ctx.log.exception("unexpected error in %s", name)
        err = ScriptError("internal_error", f"{type(exc).__name__}: {exc}", retryable=False)
        envelope, code = failure(err), EXIT_FAILED
    # Round-trip through JSON so the output schema sees exactly what stdout will carry (Decimals as strings).
    envelope = json.loads(dumps(envelope))
    try:
        schemas.check(name, "output", envelope)
    except InputError as bad:
        ctx.log.error("output contract violation: %s", bad.message)
        err = ScriptError("output_contract_violation", bad.message, retryable=False)
        envelope, code = failure(err), EXIT_FAILED
    ctx.log.info(
        "done",
        extra={"fields": {"ok": envelope["success"], "elapsed_ms": round((time.perf_counter() - started) * 1000, 1)}},
    )
    return envelope, code


def emit(envelope: dict[str, Any]) -> None:
    sys.stdout.write(itlog.REDACTOR.redact(dumps(envelope)) + "\n")
    sys.stdout.flush()


def run(name: str, operation: Operation, argv: list[str] | None = None) -> NoReturn:
    """Entry point of every script: one-shot, ``--serve`` or ``--schema``."""
    args = sys.argv[1:] if argv is None else argv
    logger = itlog.setup(name)
    ctx = Context(script=name, log=logger)
    if args == ["--schema"]:
        from itrader import schemas

        emit({"contract_version": CONTRACT_VERSION, "input": schemas.load(name, "input"),
              "output": schemas.load(name, "output")})
        sys.exit(EXIT_OK)
    if args == ["--serve"]:
        for line in sys.stdin.buffer:
            if line.strip():
                emit(handle(name, operation, line, ctx)[0])
        sys.exit(EXIT_OK)
    if args:
        emit(failure(InputError("bad_arguments", "usage: <script> [--serve | --schema]; input goes on stdin")))
        sys.exit(EXIT_BAD_INPUT)
    envelope, code = handle(name, operation, sys.stdin.buffer.read(), ctx)
    emit(envelope)
    sys.exit(code)
