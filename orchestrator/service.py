"""The long-lived orchestrator process: ``itrader run``.

Start-up order matters for money: take the single-instance lock first (a second orchestrator on the same
database refuses to act and says who holds it), then build the runner and engine, top up the Gate working
balance, and loop.  SIGTERM/SIGINT stop new work at once, set every Gate balance to the configured shutdown
value (0: no new payouts are offered while nobody watches) and exit well within supervisord's stopwaitsecs.
Open deals are left as they are; the next start reconciles them with the venues before acting.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator.config import Config, var_dir

log = logging.getLogger("itrader.service")

SCRIPT_ENV = {
    "ITRADER_GATE_URL": lambda c: c.venues.gate_url,
    "ITRADER_BYBIT_URL": lambda c: c.venues.bybit_url,
    "ITRADER_BYBIT_MARKET_URL": lambda c: c.venues.bybit_market_url,
    "ITRADER_BYBIT_WS_URL": lambda c: c.venues.bybit_ws_url,
}


def script_env(cfg: Config) -> dict[str, str]:
    """The scripts learn where the venues are from the same config the orchestrator uses."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BYBIT_API", "ITRADER_ENCRYPTION"))}
    env.update({name: get(cfg) for name, get in SCRIPT_ENV.items()})
    env.setdefault("OMP_THREAD_LIMIT", "1")
    return env


def build_runner(cfg: Config, log_dir: Path) -> Any:
    from orchestrator.runner import ScriptRunner

    log_dir.mkdir(parents=True, exist_ok=True)
    # Rare, heavy scripts run one-shot; the per-tick ones stay warm in --serve workers.
    return ScriptRunner(env=script_env(cfg), stderr_path=log_dir / "scripts.log", pool_size=1,
                        oneshot=("gate_login", "bybit_update_ad", "bybit_counterparty_info"))


def setup_logging(level: str = "INFO") -> None:
    from itrader import log as itlog

    itlog.setup("orchestrator")
    logging.getLogger().setLevel(os.environ.get("ITRADER_LOG_LEVEL", level).upper())


class Service:
    """Engine + runner + lock, with a stop switch usable from signals or another thread."""

    def __init__(self, cfg: Config, *, speed: float = 1.0, dkim_dns_override: dict[str, str] | None = None,
                 run_dir: Path | None = None) -> None:
        from orchestrator.db import acquire_instance_lock, make_engine, session_factory
        from orchestrator.engine import Engine
        from orchestrator.secrets import SecretBox

        self.cfg = cfg
        self.run_dir = run_dir or var_dir()
        self.db = make_engine(cfg.database.url)
        self.lock = acquire_instance_lock(self.db)  # raises InstanceLocked with the holder's identity
        key = cfg.security.encryption_key.get_secret_value() if cfg.security.encryption_key else None
        self.runner = build_runner(cfg, self.run_dir / "logs")
        self.engine = Engine(cfg, session_factory(self.db), self.runner, SecretBox.from_env(key), speed=speed,
                             dkim_dns_override=dkim_dns_override, receipt_dir=self.run_dir / "receipts")
        self.stop_event = threading.Event()

    def request_stop(self, *_: Any) -> None:
        self.engine.stopping = True
        self.stop_event.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, self.request_stop)
        signal.signal(signal.SIGINT, self.request_stop)

    def run(self, tick_s: float = 0.1, on_tick: Callable[[], bool] | None = None) -> None:
        """Loop until stopped (or ``on_tick`` returns False); always shut down cleanly."""
        try:
            self.engine.set_gate_balances(self.cfg.gate.working_balance_rub)
            last_topup = time.monotonic()
            while not self.stop_event.is_set():
                started = time.monotonic()
                self.engine.tick()
                if on_tick is not None and on_tick() is False:
                    break
                if time.monotonic() - last_topup > self.cfg.intervals.gate_balance_refresh_s / self.engine.speed:
                    self.engine.set_gate_balances(self.cfg.gate.working_balance_rub)
                    last_topup = time.monotonic()
                self.stop_event.wait(max(0.0, tick_s - (time.monotonic() - started)))
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        self.engine.stopping = True
        try:
            self.engine.set_gate_balances(self.cfg.gate.shutdown_balance_rub)
        except Exception:
            log.exception("could not reset Gate balances at shutdown")
        self.runner.close()
        self.lock.release()
        self.db.dispose()
