"""``itrader demo``: the main job on the embedded default — SQLite, the sandbox venues, the orchestrator.

``SandboxStack`` builds a throwaway world: a sandbox process, a private dovecot as the merchant's receipt
mailbox, a Gate trader account, N Bybit accounts, simulated buyers of every profile, a migrated database
with those accounts (secrets encrypted), a config file and the DKIM override file.  The demo then runs the
very same Service that ``itrader run`` runs until every payout is terminal or waiting for an operator, and
asks the sandbox's ground truth for violations.  The e2e, crash and fault tests drive the same stack, in
process or as a real ``itrader run`` child that they kill.

The last stdout line of the demo is one JSON object; the exit status is non-zero when a payout is left
unfinished or any violation was found.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import click

from orchestrator.config import Config, var_dir

# Every buyer profile of the sandbox, honest ones most common: the demo shows the fraud cases being caught.
DEFAULT_MIX: dict[str, int] = {
    "cooperative": 10, "chat_receipt": 2, "unclear_then_yes": 2, "refuser": 1, "silent": 1, "canceller": 1,
    "appealer": 1, "fraud_edited_pdf": 1, "fraud_reuse": 1, "fraud_wrong_wallet": 1, "fraud_wrong_bank": 1,
    "fraud_pending": 1, "fraud_lookalike": 1, "fraud_screenshot": 1, "mark_paid_only": 1,
}
HONEST = frozenset({"cooperative", "chat_receipt", "unclear_then_yes", "appealer"})
DONE_STATES = frozenset({"COMPLETED", "CANCELLED", "EXPIRED", "FAILED", "MANUAL_REVIEW"})


def config_toml(cfg: Config) -> str:
    """The config as a TOML file ``itrader run --config`` reads back (secrets included: keep the file private).

    Only what differs from the defaults is written, so the file stays readable and defaults can evolve.
    """
    from pydantic import BaseModel, SecretStr

    def scalar(value: Any) -> str:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, list):
            return "[" + ", ".join(scalar(v) for v in value) + "]"
        return json.dumps(str(value), ensure_ascii=False)

    defaults = Config()
    lines: list[str] = []
    top = {k: v for k, v in cfg if not isinstance(v, BaseModel) and v != getattr(defaults, k)}
    lines += [f"{k} = {scalar(v)}" for k, v in top.items()]
    for name, section in cfg:
        if not isinstance(section, BaseModel):
            continue
        default_section = getattr(defaults, name)
        changed = [(k, v) for k, v in section if v is not None and v != getattr(default_section, k)
                   and not (isinstance(v, list) and v and isinstance(v[0], BaseModel))]
        if changed:
            lines += ["", f"[{name}]"] + [f"{k} = {scalar(v)}" for k, v in changed]
    return "\n".join(lines) + "\n"


def write_private(path: Path, text: str) -> Path:
    """Write a file only the owner can read (configs and DKIM overrides of sandbox stacks)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    return path

class SandboxStack:
    """Sandbox venues + receipt mailbox + database + config for one orchestrator; ``close()`` stops it all."""

    def __init__(self, run_dir: Path, *, db_url: str | None = None, seed: int = 7, speed: float = 60.0,
                 bybit_accounts: int = 6, mix: dict[str, int] | None = None, max_in_work: int = 40) -> None:
        from orchestrator.secrets import generate_key
        from sandbox.mailserver import MailServer
        from sandbox.process import SandboxProcess

        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.speed = speed
        self.sandbox: Any = None
        self.mail: Any = None
        self.child: subprocess.Popen[bytes] | None = None
        try:
            self.sandbox = SandboxProcess(seed=seed, speed=speed, log_path=self.run_dir / "sandbox.log")
            self.mail = MailServer(self.run_dir / "mail")
            box = self.mail.start()
            sb = self.sandbox
            sb.control("POST", "/sandbox/bank/mailbox", json={"host": box.host, "port": box.port, "user": box.user,
                                                               "password": box.password, "address": box.address})
            self.dkim: dict[str, str] = sb.control("GET", "/sandbox/bank/dkim")["records"]
            gate = sb.control("POST", "/sandbox/gate/accounts", json={"login": "demo-trader@sandbox.invalid"})
            made = sb.control("POST", "/sandbox/bybit/accounts",
                              json={"count": bybit_accounts, "nick": "merchant", "balance": "1000000"})
            sb.control("POST", "/sandbox/bybit/buyers", json={"mix": mix or DEFAULT_MIX, "enabled": True})
            env = sb.env
            self.cfg = Config.model_validate({
                "mode": "auto",
                "database": {"url": db_url or f"sqlite:///{self.run_dir / 'itrader.db'}"},
                "security": {"encryption_key": os.environ.get("ITRADER_ENCRYPTION_KEY") or generate_key()},
                "venues": {"gate_url": env["ITRADER_GATE_URL"], "bybit_url": env["ITRADER_BYBIT_URL"],
                           "bybit_market_url": env["ITRADER_BYBIT_MARKET_URL"],
                           "bybit_ws_url": env["ITRADER_BYBIT_WS_URL"]},
                "limits": {"min_amount_rub": "1000", "max_amount_rub": "300000",
                           "max_in_work_per_gate_account": max_in_work, "daily_volume_rub": "1000000000",
                           "max_release_rub_per_order": "300000", "max_release_rub_per_day": "1000000000"},
                "mailbox": {"imap_host": box.host, "imap_port": box.port, "imap_ssl": False, "user": box.user,
                            "password": box.password, "receipt_address": box.address},
            })
            self._seed_accounts(gate["login"], gate["password"],
                                [(a["api_key"], a["api_secret"]) for a in made["accounts"]])
            self.config_path = write_private(self.run_dir / "itrader.toml", config_toml(self.cfg))
            self.dkim_path = write_private(self.run_dir / "dkim.json", json.dumps(self.dkim))
        except Exception:
            self.close()
            raise

    def _seed_accounts(self, gate_login: str, gate_password: str, bybit_keys: list[tuple[str, str]]) -> None:
        from orchestrator.db import make_engine, session_factory, upgrade
        from orchestrator.models import BybitAccount, GateAccount
        from orchestrator.secrets import SecretBox

        upgrade(self.cfg.database.url)
        box = SecretBox.from_env(self.cfg.security.encryption_key.get_secret_value())
        engine = make_engine(self.cfg.database.url)
        try:
            with session_factory(engine).begin() as s:
                gate = GateAccount(login=gate_login)
                s.add(gate)
                s.flush()
                gate.set_password(box, gate_password)
                for i, (key, secret) in enumerate(bybit_keys, 1):
                    acc = BybitAccount(name=f"merchant-{i}", api_key=key)
                    s.add(acc)
                    s.flush()
                    acc.set_api_secret(box, secret)
        finally:
            engine.dispose()

    # -- work and observation --------------------------------------------------------------------------------
    def offer_payouts(self, n: int) -> None:
        self.sandbox.control("POST", "/sandbox/gate/payouts", json={"n": n})

    def state_counts(self) -> Counter[str]:
        from sqlalchemy import func, select

        from orchestrator.models import Order

        return Counter(dict(self._query(lambda s: s.execute(
            select(Order.state, func.count(Order.id)).group_by(Order.state)).all())))

    def open_effects(self) -> int:
        """Intents whose outcome is still open (an ad removal or a chat message cut short by a crash, say).

        A run is not finished while one is: an ad we could not confirm removed may still be online with its
        USDT frozen, and a message may or may not have reached the buyer.
        """
        from sqlalchemy import func, select

        from orchestrator.models import SideEffect
        from orchestrator.states import UNRESOLVED_EFFECT_STATUSES

        return self._query(lambda s: s.scalar(select(func.count(SideEffect.id)).where(
            SideEffect.status.in_(UNRESOLVED_EFFECT_STATUSES)))) or 0

    def settled(self, payouts: int, counts: Counter[str] | None = None) -> bool:
        """Every payout terminal or with an operator, and no intent left open."""
        counts = self.state_counts() if counts is None else counts
        total = sum(counts.values())
        return (total >= payouts and all(state in DONE_STATES for state in counts)
                and self.open_effects() == 0)

    def audit(self) -> dict[str, Any]:
        return self.sandbox.control("GET", "/sandbox/audit")

    def outcomes_by_profile(self) -> dict[str, dict[str, int]]:
        """Final state of each payout by the simulated buyer profile of its last Bybit order (ground truth)."""
        from sqlalchemy import select

        from orchestrator.models import Order

        profile_of = self.sandbox.control("GET", "/sandbox/bybit/buyers")["by_order"]
        table: dict[str, Counter[str]] = {}
        for state, bybit_order_id in self._query(lambda s: s.execute(select(Order.state, Order.bybit_order_id)).all()):
            table.setdefault(profile_of.get(str(bybit_order_id), "no buyer"), Counter())[state] += 1
        return {p: dict(c) for p, c in sorted(table.items())}

    def _query(self, fn: Any) -> Any:
        from orchestrator.db import make_engine, session_factory

        engine = make_engine(self.cfg.database.url)
        try:
            with session_factory(engine)() as s:
                return fn(s)
        finally:
            engine.dispose()

    # -- the orchestrator in this process -------------------------------------------------------------------
    def run(self, payouts: int, timeout_s: float, on_progress: Any = None, at_least_s: float = 0.0) -> bool:
        """Run the Service here until ``payouts`` payouts are settled (and at least ``at_least_s`` passed) or
        the time is up; True when settled."""
        from orchestrator.service import Service

        service = Service(self.cfg, speed=self.speed, dkim_dns_override=self.dkim, run_dir=self.run_dir)
        if threading_is_main():
            service.install_signal_handlers()
        deadline = time.monotonic() + timeout_s
        earliest = time.monotonic() + at_least_s
        state = {"last": 0.0, "settled": False}

        def on_tick() -> bool:
            now = time.monotonic()
            if now - state["last"] < 0.5:
                return True
            state["last"] = now
            counts = self.state_counts()
            if on_progress is not None:
                on_progress(counts)
            state["settled"] = self.settled(payouts, counts)
            return (not state["settled"] or now < earliest) and now < deadline

        service.run(tick_s=0.05, on_tick=on_tick)
        return bool(state["settled"])

    # -- the orchestrator as a real child process (what supervisord runs) ------------------------------------
    def start_orchestrator(self) -> subprocess.Popen[bytes]:
        env = {**os.environ, "ITRADER_DKIM_DNS_FILE": str(self.dkim_path),
               "ITRADER_VAR_DIR": str(self.run_dir / "var")}
        log = open(self.run_dir / "orchestrator.log", "ab")  # noqa: SIM115 - handed to the child
        self.child = subprocess.Popen(
            [sys.executable, "-m", "orchestrator.cli", "run", "--config", str(self.config_path),
             "--speed", str(self.speed)], stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        log.close()
        return self.child

    def close(self) -> None:
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()
            try:
                self.child.wait(15)
            except subprocess.TimeoutExpired:
                self.child.kill()
        if self.mail is not None:
            self.mail.stop()
        if self.sandbox is not None:
            self.sandbox.close()


def threading_is_main() -> bool:
    import threading

    return threading.current_thread() is threading.main_thread()


def run_demo(payouts: int, speed: float, db: str | None, seed: int, bybit_accounts: int, timeout_s: float,
             mix: dict[str, int]) -> int:
    from orchestrator.service import setup_logging

    started = time.monotonic()
    run_dir = var_dir() / "demo" / time.strftime("%Y%m%d-%H%M%S")
    setup_logging("INFO")
    _log_to_file(run_dir / "orchestrator.log")
    click.echo(f"demo: {payouts} payouts, speed x{speed}, run directory {run_dir}", err=True)
    stack = SandboxStack(run_dir, db_url=db, seed=seed, speed=speed, bybit_accounts=bybit_accounts, mix=mix,
                         max_in_work=max(1, min(payouts, 40)))
    try:
        stack.offer_payouts(payouts)
        bar = click.progressbar(length=payouts, label="payouts settled", file=sys.stderr, show_pos=True)
        progress = {"done": 0}

        def on_progress(counts: Counter[str]) -> None:
            done = sum(n for state, n in counts.items() if state in DONE_STATES)
            if done > progress["done"]:
                bar.update(done - progress["done"])
                progress["done"] = done

        with bar:
            stack.run(payouts, timeout_s, on_progress)
        counts = stack.state_counts()
        truth = stack.audit()
        by_profile = stack.outcomes_by_profile()
    finally:
        stack.close()
    summary = {
        "payouts": payouts,
        "seen": sum(counts.values()),
        "completed": counts.get("COMPLETED", 0),
        "cancelled": counts.get("CANCELLED", 0),
        "expired": counts.get("EXPIRED", 0),
        "manual_review": counts.get("MANUAL_REVIEW", 0),
        "failed": counts.get("FAILED", 0),
        "unfinished": sum(n for s, n in counts.items() if s not in DONE_STATES) + max(0, payouts - sum(counts.values())),
        "violations": len(truth["violations"]),
        "released_usdt": truth["released_usdt"],
        "elapsed_s": round(time.monotonic() - started, 1),
        "by_profile": by_profile,
    }
    click.echo(render_table(summary, counts, truth["violations"]))
    click.echo(render_profiles(by_profile))
    click.echo(json.dumps(summary, ensure_ascii=False))
    return 0 if summary["unfinished"] == 0 and summary["violations"] == 0 else 1


def _log_to_file(path: Path) -> None:
    """Keep the terminal for the progress bar and the summary; the JSON log lines go to the run directory."""
    import logging

    path.parent.mkdir(parents=True, exist_ok=True)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(path, "a", encoding="utf-8"))  # noqa: SIM115 - lives as long as the demo


def render_profiles(by_profile: dict[str, dict[str, int]]) -> str:
    lines = ["", "  buyer profile -> outcome"]
    for profile, states in by_profile.items():
        lines.append(f"  {profile:<20}" + ", ".join(f"{s} {n}" for s, n in sorted(states.items())))
    return "\n".join(lines)


def render_table(summary: dict[str, Any], counts: Counter[str], violations: list[dict[str, Any]]) -> str:
    rows = [("state", "payouts")] + sorted(counts.items())
    width = max(len(r[0]) for r in rows) + 2
    lines = ["", *(f"  {name:<{width}}{n}" for name, n in rows)]
    lines.append(f"  {'released USDT':<{width}}{Decimal(summary['released_usdt']):.2f}")
    lines.append(f"  {'violations':<{width}}{summary['violations']}")
    lines += [f"    ! {v}" for v in violations[:20]]
    return "\n".join(lines)
