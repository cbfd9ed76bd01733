"""``itrader sandbox`` as a child process: started on a free port, ready when /sandbox/health answers.

Used by ``itrader demo`` and by the tests, so both talk to the venues over real sockets exactly as the
orchestrator does in production.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests


def stop_process(proc: subprocess.Popen[bytes], grace_s: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after ``grace_s``; always reaped."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SandboxProcess:
    def __init__(self, *, seed: int = 7, speed: float = 1.0, log_path: Path, port: int | None = None,
                 extra: list[str] | None = None, cwd: Path | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = Path(log_path)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "orchestrator.cli", "sandbox", "--port", str(self.port), "--seed", str(seed),
               "--speed", str(speed), *(extra or [])]
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - lives as long as the child process
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd)
        try:
            self.wait_ready()
        except Exception:
            self.close()
            raise

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sandbox exited early: {self.log_path.read_text(errors='replace')[-3000:]}")
            try:
                if requests.get(f"{self.url}/sandbox/health", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.05)
        raise RuntimeError("sandbox did not become healthy")

    @property
    def env(self) -> dict[str, str]:
        """The ITRADER_* variables that point every client at this sandbox."""
        from sandbox.app import env_lines

        pairs = (line.removeprefix("export ").split("=", 1) for line in env_lines("127.0.0.1", self.port))
        return dict(pairs)

    def control(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = requests.request(method, f"{self.url}{path}", timeout=30, **kwargs)
        resp.raise_for_status()
        return resp.json()

    def close(self) -> None:
        stop_process(self.proc)
        self._log.close()
