"""Test helpers: a real sandbox process on a free port, and scripts run as real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sandbox.process import SandboxProcess, free_port  # noqa: F401 - free_port is re-exported for the tests

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = REPO / "scripts"
PY = sys.executable
LOG_DIR = REPO / "var" / "test-logs"


class Sandbox(SandboxProcess):
    """``itrader sandbox`` in a child process; its log is kept under var/test-logs."""

    def __init__(self, seed: int = 7, speed: float = 1.0, extra: list[str] | None = None) -> None:
        port = free_port()
        super().__init__(seed=seed, speed=speed, port=port, extra=extra, cwd=REPO,
                         log_path=LOG_DIR / f"sandbox-{port}.log")


@dataclass
class Result:
    envelope: dict[str, Any] | None
    code: int
    stdout: str
    stderr: str

    @property
    def data(self) -> dict[str, Any]:
        assert self.envelope and self.envelope["success"], f"script failed: {self.stdout}\n{self.stderr[-2000:]}"
        return self.envelope["data"]

    @property
    def error(self) -> dict[str, Any]:
        assert self.envelope and not self.envelope["success"], f"expected failure: {self.stdout}"
        return self.envelope["error"]


def script_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ITRADER_", "BYBIT_"))}
    env["OMP_THREAD_LIMIT"] = "1"
    env.update(extra or {})
    return env


def run_script(name: str, payload: Any, env: dict[str, str] | None = None, timeout: float = 60,
               args: list[str] | None = None) -> Result:
    """Run ``scripts/<name>.py`` exactly as a user would: stdin in, one envelope out."""
    if isinstance(payload, (dict, list)):
        stdin = json.dumps(payload).encode()
    elif isinstance(payload, str):
        stdin = payload.encode()
    else:
        stdin = payload
    proc = subprocess.run([str(SCRIPTS / f"{name}.py"), *(args or [])], input=stdin, capture_output=True,
                          env=script_env(env), timeout=timeout, cwd=REPO)
    out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) <= 1, f"more than one stdout line: {out!r}"
    envelope = json.loads(lines[0]) if lines else None
    return Result(envelope, proc.returncode, out, err)


def validate_envelope(name: str, envelope: dict[str, Any]) -> None:
    """Check an envelope with the reference validator (jsonschema 2020-12), not the runtime one."""
    import jsonschema

    from itrader import schemas

    jsonschema.Draft202012Validator(schemas.load(name, "output")).validate(envelope)


class ServeWorker:
    """A script in ``--serve`` mode: one JSON line in, one JSON line out."""

    def __init__(self, name: str, env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen([str(SCRIPTS / f"{name}.py"), "--serve"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=script_env(env), cwd=REPO)

    def call(self, payload: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write((json.dumps(payload) + "\n").encode())
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> int:
        assert self.proc.stdin
        self.proc.stdin.close()
        return self.proc.wait(10)
