"""supervisor/sandbox.conf under a real supervisord: the stack comes up, works, stops cleanly, leaves nothing.

The test runs the repository's own sandbox.conf, unchanged.  It only has to move the stack somewhere private
(a temp directory, free ports, a fast cooperative buyer mix), and supervisord's ``[include]`` does that with
no template: a tiny main file includes ``supervisor/sandbox.conf`` and then an override file; keys of a later
file replace the same keys of an earlier one, so the override names only the socket, the supervisord log
and pid files and the ``[supervisord] environment`` that every program of sandbox.conf reads its paths and
ports from.  The program sections themselves (commands, priorities, stop settings) are the shipped ones.

supervisord runs in the foreground (``-n``) as our child in its own session; its pid is kept, and every
process below it is recorded while the stack runs so the final ``shutdown`` can be checked to leave none.
The steps depend on each other and run in file order on one module-scoped stack.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import REPO, free_port

BIN = Path(sys.executable).parent
GATE_LOGIN = "stack-trader@sandbox.invalid"  # orchestrator/commands/stack.py seeds this Gate login
WORKING_BALANCE = "10000000.00"  # the orchestrator's default gate.working_balance_rub, as the venue shows it

pytestmark = [
    pytest.mark.skipif(shutil.which("dovecot") is None, reason="dovecot is not installed (./test.sh setup)"),
    pytest.mark.skipif(not (BIN / "supervisord").exists(), reason="supervisor is not installed in the venv"),
]


def wait_for(what: str, check: Callable[[], Any], timeout: float, every: float = 0.3) -> Any:
    """Poll until ``check()`` returns something truthy; fail with the last value seen."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, ValueError, KeyError, requests.RequestException, sqlite3.Error) as exc:
            last = exc
        if last and not isinstance(last, Exception):
            return last
        time.sleep(every)
    raise AssertionError(f"{what}: not reached in {timeout:.0f}s (last: {last!r})")


def _proc_start(pid: int) -> str | None:
    """Start time of a live, non-zombie process (field 22 of /proc/PID/stat), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else fields[19]


def descendants(root: int) -> dict[int, str]:
    """Every live process below ``root`` (whatever its session or process group), with its start time."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: dict[int, str] = {}
    todo = list(children.get(root, []))
    while todo:
        pid = todo.pop()
        start = _proc_start(pid)
        if start is not None:
            found[pid] = start
        todo.extend(children.get(pid, []))
    return found


class Stack:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.dir = root / "stack"
        self.sock = root / "supervisor.sock"
        self.sandbox_port = free_port()
        self.imap_port = free_port()
        self.url = f"http://127.0.0.1:{self.sandbox_port}"
        self.key = subprocess.run([str(BIN / "itrader"), "keygen"], capture_output=True, text=True,
                                  check=True).stdout.strip()
        self.proc: subprocess.Popen[bytes] | None = None
        self.seen: dict[int, str] = {}

    def write_conf(self) -> Path:
        (self.dir / "logs").mkdir(parents=True)
        env = {
            "ITRADER_STACK_DIR": self.dir, "ITRADER_SANDBOX_PORT": self.sandbox_port,
            "ITRADER_IMAP_PORT": self.imap_port, "ITRADER_STACK_SPEED": 60, "ITRADER_STACK_SEED": 11,
            "ITRADER_STACK_BUYERS": "cooperative:1", "PATH": f"{BIN}:%(ENV_PATH)s", "OMP_THREAD_LIMIT": 1,
            "PYTHONUNBUFFERED": 1,
        }
        (self.root / "override.conf").write_text(f"""\
[unix_http_server]
file={self.sock}
[supervisorctl]
serverurl=unix://{self.sock}
[supervisord]
logfile={self.root}/supervisord.log
pidfile={self.root}/supervisord.pid
childlogdir={self.dir}/logs
environment={",".join(f'{k}="{v}"' for k, v in env.items())}
""")
        main = self.root / "supervisord.conf"
        main.write_text(f"[include]\nfiles = {REPO / 'supervisor' / 'sandbox.conf'} override.conf\n")
        return main

    def start(self) -> None:
        conf = self.write_conf()
        # What an operator's shell would hold: the key, and none of the test runner's own ITRADER_* settings.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("ITRADER_", "BYBIT_"))}
        env["ITRADER_ENCRYPTION_KEY"] = self.key
        with open(self.root / "supervisord.stdout", "wb") as out:
            self.proc = subprocess.Popen([str(BIN / "supervisord"), "-n", "-c", str(conf)], stdout=out,
                                         stderr=subprocess.STDOUT, env=env, cwd=self.root, start_new_session=True)

        def answering() -> bool:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"supervisord exited: {(self.root / 'supervisord.stdout').read_text()[-3000:]}")
            return self.ctl("pid").stdout.strip() == str(self.proc.pid)

        wait_for("supervisord answering", answering, timeout=15)

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BIN / "supervisorctl"), "-s", f"unix://{self.sock}", *args],
                              capture_output=True, text=True, timeout=timeout)

    def status(self) -> dict[str, tuple[str, int | None]]:
        """name -> (state, pid).  supervisorctl exits 3 whenever a program is not RUNNING (our one-shot
        bootstrap is EXITED once done), so 0 and 3 are both answers; anything else is an error."""
        res = self.ctl("status")
        assert res.returncode in (0, 3), f"supervisorctl status rc={res.returncode}: {res.stdout}{res.stderr}"
        out: dict[str, tuple[str, int | None]] = {}
        for line in res.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else None
                out[parts[0]] = (parts[1], pid)
        return out

    def gate_balance(self) -> str:
        accounts = requests.get(f"{self.url}/sandbox/gate/accounts", timeout=5).json()["accounts"]
        return next(a["rub_balance"] for a in accounts if a["login"] == GATE_LOGIN)

    def order_states(self) -> list[str]:
        with sqlite3.connect(f"file:{self.dir / 'itrader.db'}?mode=ro", uri=True, timeout=5) as db:
            return [row[0] for row in db.execute("SELECT state FROM orders")]

    def log(self, name: str) -> str:
        path = self.dir / "logs" / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def supervisord_log(self) -> str:
        return (self.root / "supervisord.log").read_text(errors="replace")

    def remember_processes(self) -> None:
        assert self.proc is not None
        self.seen.update(descendants(self.proc.pid))

    def kill_leftovers(self) -> None:
        """Last resort after a failed test: never leave our processes running on a shared machine."""
        if self.proc is not None and self.proc.poll() is None:
            self.ctl("shutdown", timeout=30)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid, start in self.seen.items():
            if _proc_start(pid) == start:
                os.kill(pid, signal.SIGKILL)


@pytest.fixture(scope="module")
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    # Not pytest's tmp_path: its 0700 parents would lock out dovecot's unprivileged processes, and the
    # unix socket path must stay short.  Kept for a look when a step failed, removed otherwise.
    root = Path(tempfile.mkdtemp(prefix="itrader-sup-"))
    root.chmod(0o755)
    s = Stack(root)
    failed_before = request.session.testsfailed
    s.start()
    try:
        yield s
    finally:
        s.kill_leftovers()
        if request.session.testsfailed == failed_before:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"supervisor stack kept for inspection: {root}")


def test_stack_comes_up(stack: Stack) -> None:
    wanted = {"sandbox:venues", "sandbox:mail", "orchestrator"}
    status = wait_for("venues, mail and orchestrator RUNNING",
                      lambda: (st := stack.status()) and all(st.get(n, ("",))[0] == "RUNNING" for n in wanted) and st,
                      timeout=30)
    assert set(status) == wanted | {"sandbox:bootstrap"}
    # The one-shot bootstrap finishes with exit 0 (EXITED, not BACKOFF/FATAL) and leaves its ready marker.
    wait_for("bootstrap EXITED", lambda: stack.status()["sandbox:bootstrap"][0] == "EXITED", timeout=60)
    assert "exited: bootstrap (exit status 0; expected)" in stack.supervisord_log()
    ready = json.loads((stack.dir / "ready.json").read_text())
    assert ready["fresh_sandbox"] is True and ready["created"] == {"gate": 1, "bybit": 3}
    # The orchestrator waited for it and is now the real `itrader run`: it topped up the Gate balance.
    assert wait_for("working balance set", lambda: stack.gate_balance() == WORKING_BALANCE, timeout=30)
    # The operator's key stayed in the environment: the stack wrote it nowhere.
    config = stack.dir / "itrader.toml"
    assert stack.key not in config.read_text() and "encryption_key" not in config.read_text()
    assert config.stat().st_mode & 0o077 == 0
    assert "bootstrap done; starting the orchestrator" in stack.log("orchestrator")


def test_payouts_complete(stack: Stack) -> None:
    resp = requests.post(f"{stack.url}/sandbox/gate/payouts", json={"n": 3}, timeout=10)
    assert resp.status_code == 200 and len(resp.json()["payouts"]) == 3
    wait_for("orders for the offered payouts", lambda: len(stack.order_states()) >= 1, timeout=30)
    # Speed 60: a cooperative buyer's deal takes a few simulated minutes = seconds here.
    wait_for("a COMPLETED payout", lambda: "COMPLETED" in stack.order_states(), timeout=90)
    approved = requests.get(f"{stack.url}/sandbox/gate/payouts", params={"owner": GATE_LOGIN}, timeout=5).json()
    assert any(p["status"] == 7 for p in approved["payouts"]), approved  # approved on the venue, not just in our DB
    stack.remember_processes()  # workers are up now: the final shutdown must take them down too


def test_stop_runs_the_sigterm_shutdown(stack: Stack) -> None:
    assert stack.gate_balance() == WORKING_BALANCE
    old_pid = stack.status()["orchestrator"][1]
    started = time.monotonic()
    res = stack.ctl("stop", "orchestrator")
    took = time.monotonic() - started
    assert res.returncode == 0 and "orchestrator: stopped" in res.stdout, res.stdout + res.stderr
    assert stack.status()["orchestrator"][0] == "STOPPED"
    # It exited by itself (exit 0) well inside stopwaitsecs: no SIGKILL was needed.
    assert "stopped: orchestrator (exit status 0)" in stack.supervisord_log()
    assert took < 25, took
    # The shutdown path ran against the venue: no new payouts are offered while nobody watches.
    assert stack.gate_balance() == "0.00"
    assert _proc_start(old_pid) is None


def test_restart_brings_a_new_orchestrator(stack: Stack) -> None:
    res = stack.ctl("start", "orchestrator")
    assert res.returncode == 0, res.stdout + res.stderr
    first = stack.status()["orchestrator"]
    res = stack.ctl("restart", "orchestrator")
    assert res.returncode == 0 and "orchestrator: started" in res.stdout, res.stdout + res.stderr
    state, pid = stack.status()["orchestrator"]
    assert state == "RUNNING" and pid is not None and pid != first[1]
    # The new process is really working: it took the lock and set the working balance again.
    assert wait_for("working balance after restart", lambda: stack.gate_balance() == WORKING_BALANCE, timeout=30)
    stack.remember_processes()


def test_bootstrap_again_is_harmless(stack: Stack) -> None:
    runs = stack.log("bootstrap").count("sandbox-stack: ready")
    res = stack.ctl("start", "sandbox:bootstrap")
    assert res.returncode == 0, res.stdout + res.stderr
    wait_for("second bootstrap done", lambda: stack.log("bootstrap").count("sandbox-stack: ready") == runs + 1,
             timeout=60)
    ready = json.loads((stack.dir / "ready.json").read_text())
    assert ready["fresh_sandbox"] is False and ready["created"] == {"gate": 0, "bybit": 0}
    wait_for("bootstrap EXITED again", lambda: stack.status()["sandbox:bootstrap"][0] == "EXITED", timeout=10)
    assert stack.status()["orchestrator"][0] == "RUNNING"
    with sqlite3.connect(f"file:{stack.dir / 'itrader.db'}?mode=ro", uri=True) as db:
        assert db.execute("SELECT count(*) FROM gate_accounts").fetchone()[0] == 1
        assert db.execute("SELECT count(*) FROM bybit_accounts").fetchone()[0] == 3


def test_shutdown_leaves_no_process(stack: Stack) -> None:
    assert stack.proc is not None
    stack.remember_processes()
    assert len(stack.seen) >= 6, stack.seen  # venues, dovecot + its helpers, orchestrator, its script workers
    res = stack.ctl("shutdown")
    assert res.returncode == 0 and "Shut down" in res.stdout, res.stdout + res.stderr
    assert stack.proc.wait(30) == 0
    log = stack.supervisord_log()
    # Groups stop by priority: the orchestrator (and its Gate balance reset) before the venues it talks to.
    assert log.rindex("stopped: orchestrator") < log.rindex("stopped: venues")
    deadline = time.monotonic() + 10
    while (alive := [p for p, s in stack.seen.items() if _proc_start(p) == s]) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not alive, {p: Path(f"/proc/{p}/cmdline").read_bytes() for p in alive}
    with pytest.raises(ProcessLookupError):
        os.killpg(stack.proc.pid, 0)  # supervisord's own process group is empty too


def test_production_conf_parses_with_safe_stop_settings(tmp_path: Path) -> None:
    """supervisor/supervisord.conf as supervisord itself reads it (paths moved by the same include trick)."""
    from supervisor.datatypes import RestartUnconditionally
    from supervisor.options import ServerOptions

    (tmp_path / "override.conf").write_text(f"""\
[unix_http_server]
file={tmp_path}/s.sock
[supervisord]
logfile={tmp_path}/supervisord.log
pidfile={tmp_path}/supervisord.pid
childlogdir={tmp_path}
[program:orchestrator]
stdout_logfile={tmp_path}/orchestrator.log
""")
    conf_path = REPO / "supervisor" / "supervisord.conf"
    (tmp_path / "main.conf").write_text(f"[include]\nfiles = {conf_path} override.conf\n")
    options = ServerOptions()
    options.realize(args=["-c", str(tmp_path / "main.conf")])
    (group,) = options.process_group_configs
    (prog,) = group.process_configs
    assert prog.name == "orchestrator"
    assert prog.command == f"{REPO / 'supervisor'}/../.venv/bin/itrader run"
    assert Path(prog.directory).resolve() == REPO  # `itrader run` finds var/itrader.toml from here
    assert prog.autorestart is RestartUnconditionally
    assert prog.stopsignal == signal.SIGTERM and prog.stopasgroup and prog.killasgroup
    assert 30 <= prog.stopwaitsecs <= 120  # room for the balance reset, yet a bounded stop
    assert prog.redirect_stderr and prog.stdout_logfile_maxbytes > 0 and prog.stdout_logfile_backups > 0
    assert "ITRADER_ENCRYPTION_KEY" not in prog.environment
    text = conf_path.read_text()
    assert "encryption_key" not in text.lower().replace("itrader_encryption_key", "")
