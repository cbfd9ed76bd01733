"""``itrader demo``: the main job on the embedded default — SQLite, the sandbox venues, the orchestrator.

It builds a throwaway world (a sandbox process, a private dovecot as the merchant's receipt mailbox, a Gate
trader account, N Bybit accounts, simulated buyers of every profile), runs the very same Service that
``itrader run`` runs until every payout is terminal or waiting for an operator, and then asks the sandbox's
ground truth for violations.  The last stdout line is one JSON object; the exit status is non-zero when a
payout is left unfinished or any violation was found.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
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
DONE_STATES = {"COMPLETED", "CANCELLED", "EXPIRED", "FAILED", "MANUAL_REVIEW"}


@dataclass
class DemoWorld:
    """Everything the demo started, so it can all be stopped again."""

    run_dir: Path
    sandbox: Any = None
    mail: Any = None
    gate_login: str = ""
    gate_password: str = ""
    bybit_keys: list[dict[str, str]] = field(default_factory=list)
    dkim: dict[str, str] = field(default_factory=dict)

    def close(self) -> None:
        if self.mail is not None:
            self.mail.stop()
        if self.sandbox is not None:
            self.sandbox.close()


def start_world(run_dir: Path, *, seed: int, speed: float, bybit_accounts: int, mix: dict[str, int]) -> DemoWorld:
    from sandbox.mailserver import MailServer
    from sandbox.process import SandboxProcess

    world = DemoWorld(run_dir)
    try:
        world.sandbox = SandboxProcess(seed=seed, speed=speed, log_path=run_dir / "sandbox.log")
        world.mail = MailServer(run_dir / "mail")
        box = world.mail.start()
        sb = world.sandbox
        sb.control("POST", "/sandbox/bank/mailbox", json={"host": box.host, "port": box.port, "user": box.user,
                                                           "password": box.password, "address": box.address})
        world.dkim = sb.control("GET", "/sandbox/bank/dkim")["records"]
        gate = sb.control("POST", "/sandbox/gate/accounts", json={"login": "demo-trader@sandbox.invalid"})
        world.gate_login, world.gate_password = gate["login"], gate["password"]
        made = sb.control("POST", "/sandbox/bybit/accounts", json={"count": bybit_accounts, "nick": "demo-merchant",
                                                                   "balance": "1000000"})
        world.bybit_keys = [{"api_key": a["api_key"], "api_secret": a["api_secret"]} for a in made["accounts"]]
        sb.control("POST", "/sandbox/bybit/buyers", json={"mix": mix, "enabled": True})
        return world
    except Exception:
        world.close()
        raise


def demo_config(world: DemoWorld, db_url: str, payouts: int) -> Config:
    env = world.sandbox.env
    box = world.mail.mailbox
    return Config.model_validate({
        "mode": "auto",
        "database": {"url": db_url},
        "venues": {"gate_url": env["ITRADER_GATE_URL"], "bybit_url": env["ITRADER_BYBIT_URL"],
                   "bybit_market_url": env["ITRADER_BYBIT_MARKET_URL"], "bybit_ws_url": env["ITRADER_BYBIT_WS_URL"]},
        "limits": {"min_amount_rub": "1000", "max_amount_rub": "300000",
                   "max_in_work_per_gate_account": max(1, min(payouts, 40)), "daily_volume_rub": "1000000000",
                   "max_release_rub_per_order": "300000", "max_release_rub_per_day": "1000000000"},
        "mailbox": {"imap_host": box.host, "imap_port": box.port, "imap_ssl": False, "user": box.user,
                    "password": box.password, "receipt_address": box.address},
    })


def seed_accounts(cfg: Config, world: DemoWorld) -> None:
    from orchestrator.db import make_engine, session_factory, upgrade
    from orchestrator.models import BybitAccount, GateAccount
    from orchestrator.secrets import SecretBox

    upgrade(cfg.database.url)
    box = SecretBox.from_env(cfg.security.encryption_key.get_secret_value())
    engine = make_engine(cfg.database.url)
    with session_factory(engine).begin() as s:
        gate = GateAccount(login=world.gate_login)
        s.add(gate)
        s.flush()
        gate.set_password(box, world.gate_password)
        for i, keys in enumerate(world.bybit_keys, 1):
            acc = BybitAccount(name=f"demo-{i}", api_key=keys["api_key"])
            s.add(acc)
            s.flush()
            acc.set_api_secret(box, keys["api_secret"])
    engine.dispose()


def state_counts(cfg: Config) -> Counter[str]:
    from sqlalchemy import func, select

    from orchestrator.db import make_engine, session_factory
    from orchestrator.models import Order

    engine = make_engine(cfg.database.url)
    try:
        with session_factory(engine)() as s:
            return Counter(dict(s.execute(select(Order.state, func.count(Order.id)).group_by(Order.state)).all()))
    finally:
        engine.dispose()


def run_demo(payouts: int, speed: float, db: str | None, seed: int, bybit_accounts: int, timeout_s: float,
             mix: dict[str, int]) -> int:
    from orchestrator.secrets import generate_key
    from orchestrator.service import Service, setup_logging

    started = time.monotonic()
    run_dir = var_dir() / "demo" / time.strftime("%Y%m%d-%H%M%S")
    run_dir.mkdir(parents=True, exist_ok=True)
    setup_logging("INFO")
    _log_to_file(run_dir / "orchestrator.log")
    key = os.environ.get("ITRADER_ENCRYPTION_KEY") or generate_key()
    click.echo(f"demo: {payouts} payouts, speed x{speed}, run directory {run_dir}", err=True)
    world = start_world(run_dir, seed=seed, speed=speed, bybit_accounts=bybit_accounts, mix=mix)
    try:
        cfg = demo_config(world, db or f"sqlite:///{run_dir / 'itrader.db'}", payouts)
        cfg.security.encryption_key = key
        seed_accounts(cfg, world)
        world.sandbox.control("POST", "/sandbox/gate/payouts", json={"n": payouts})
        service = Service(cfg, speed=speed, dkim_dns_override=world.dkim, run_dir=run_dir)
        service.install_signal_handlers()
        deadline = time.monotonic() + timeout_s
        bar = click.progressbar(length=payouts, label="payouts settled", file=sys.stderr, show_pos=True)
        progress = {"done": 0, "last": 0.0}

        def on_tick() -> bool:
            now = time.monotonic()
            if now - progress["last"] < 0.5:
                return True
            progress["last"] = now
            counts = state_counts(cfg)
            done = sum(n for state, n in counts.items() if state in DONE_STATES)
            if done > progress["done"]:
                bar.update(done - progress["done"])
                progress["done"] = done
            finished = sum(counts.values()) >= payouts and done >= sum(counts.values())
            return not finished and now < deadline

        with bar:
            service.run(tick_s=0.05, on_tick=on_tick)
        counts = state_counts(cfg)
        truth = world.sandbox.control("GET", "/sandbox/audit")
        by_profile = outcomes_by_profile(cfg, world.sandbox.control("GET", "/sandbox/bybit/buyers")["by_order"])
    finally:
        world.close()
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


def outcomes_by_profile(cfg: Config, profile_of_order: dict[str, str]) -> dict[str, dict[str, int]]:
    """Final state of each payout by the simulated buyer profile of its last Bybit order (ground truth)."""
    from sqlalchemy import select

    from orchestrator.db import make_engine, session_factory
    from orchestrator.models import Order

    engine = make_engine(cfg.database.url)
    table: dict[str, Counter[str]] = {}
    try:
        with session_factory(engine)() as s:
            for state, bybit_order_id in s.execute(select(Order.state, Order.bybit_order_id)):
                profile = profile_of_order.get(str(bybit_order_id), "no buyer")
                table.setdefault(profile, Counter())[state] += 1
    finally:
        engine.dispose()
    return {p: dict(c) for p, c in sorted(table.items())}


def render_profiles(by_profile: dict[str, dict[str, int]]) -> str:
    lines = ["", "  buyer profile -> outcome"]
    for profile, states in by_profile.items():
        lines.append(f"  {profile:<20}" + ", ".join(f"{s} {n}" for s, n in sorted(states.items())))
    return "\n".join(lines)


def _log_to_file(path: Path) -> None:
    """Keep the terminal for the progress bar and the summary; the JSON log lines go to the run directory."""
    import logging

    root = logging.getLogger()
    for handler in root.handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.setStream(open(path, "a", encoding="utf-8"))  # noqa: SIM115 - lives as long as the demo


def render_table(summary: dict[str, Any], counts: Counter[str], violations: list[dict[str, Any]]) -> str:
    rows = [("state", "payouts")] + sorted(counts.items())
    width = max(len(r[0]) for r in rows) + 2
    lines = ["", *(f"  {name:<{width}}{n}" for name, n in rows)]
    lines.append(f"  {'released USDT':<{width}}{Decimal(summary['released_usdt']):.2f}")
    lines.append(f"  {'violations':<{width}}{summary['violations']}")
    lines += [f"    ! {v}" for v in violations[:20]]
    return "\n".join(lines)
