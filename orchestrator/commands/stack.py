"""`itrader sandbox-stack dovecot-conf|bootstrap|wait`: the glue that lets supervisord run a sandbox stack.

supervisor/sandbox.conf runs the sandbox venues, a private dovecot (the merchant's receipt mailbox) and the
orchestrator as ordinary long-lived programs.  What ``SandboxStack`` (orchestrator/demo.py) does in one
Python object has to be split into steps supervisord can order and retry:

* ``dovecot-conf`` renders the dovecot config into the stack directory and prints its path, so the program
  line can ``exec dovecot -F -c "$(itrader sandbox-stack dovecot-conf)"`` and supervisord signals dovecot
  itself, not a wrapper.
* ``bootstrap`` (a one-shot program) waits for the venues and the mailbox, points the simulated bank at the
  mailbox, writes the DKIM override file, writes the orchestrator config, migrates the database and seeds
  the venue accounts.  It is safe to run again at any time: the sandbox keeps its accounts in memory, so
  when it finds the Gate login unknown (a restarted sandbox) it re-creates the venue accounts and updates
  the stored credentials in place; otherwise it only fills what is missing.
* ``wait`` blocks until the bootstrap has finished against the sandbox that runs now (marker file plus the
  Gate login known to the venue), so the orchestrator program can start at the same time as everything else
  and simply wait its turn instead of failing into supervisord's FATAL state.

Every option also reads an environment variable (ITRADER_STACK_DIR, ITRADER_SANDBOX_PORT, ITRADER_IMAP_PORT)
because supervisor/sandbox.conf sets those once in its ``[supervisord] environment`` for every program.
The encryption key is taken from ITRADER_ENCRYPTION_KEY when supervisord was started with one and is then
never written to disk; without it a throwaway sandbox-only key is generated once and kept in the stack's
private config file (mode 0600), because the stack must also start with no preparation at all.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

GATE_LOGIN = "stack-trader@sandbox.invalid"
MAIL_USER = "merchant"
MAIL_PASSWORD = "sandbox-mail-password"  # a throwaway local mailbox that only listens on 127.0.0.1
MAIL_ADDRESS = "receipts@merchant.test"
BYBIT_NAME = "merchant-{}"


def _default_dir() -> Path:
    from orchestrator.config import REPO

    return REPO / "var" / "sandbox-stack"


def stack_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--dir, --sandbox-port, --imap-port, each with its ITRADER_* environment variable."""
    fn = click.option("--imap-port", type=int, default=10143, show_default=True, envvar="ITRADER_IMAP_PORT",
                      help="Port of the stack's dovecot IMAP listener (127.0.0.1).")(fn)
    fn = click.option("--sandbox-port", type=int, default=8800, show_default=True, envvar="ITRADER_SANDBOX_PORT",
                      help="Port of `itrader sandbox` (127.0.0.1).")(fn)
    return click.option("--dir", "stack_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
                        envvar="ITRADER_STACK_DIR",
                        help="Stack state directory (default: var/sandbox-stack).")(fn)


class Paths:
    """Where a stack keeps its files; one place so bootstrap, wait and the docs agree."""

    def __init__(self, stack_dir: Path | None) -> None:
        self.root = Path(stack_dir or _default_dir()).resolve()
        self.mail = self.root / "mail"
        self.config = self.root / "itrader.toml"
        self.dkim = self.root / "dkim.json"
        self.ready = self.root / "ready.json"
        self.db = self.root / "itrader.db"


def _say(message: str) -> None:
    # supervisord captures this as the program's log; one plain line per step is what an operator tails.
    click.echo(f"sandbox-stack: {message}", err=True)


@click.group("sandbox-stack")
def sandbox_stack() -> None:
    """Helpers for supervisor/sandbox.conf (sandbox venues + dovecot + orchestrator under supervisord)."""


@sandbox_stack.command("dovecot-conf")
@stack_options
def dovecot_conf(stack_dir: Path | None, sandbox_port: int, imap_port: int) -> None:
    """Render the stack's dovecot config (and its passwd file) and print the config path."""
    from sandbox.mailserver import MailServer

    paths = Paths(stack_dir)
    server = MailServer(paths.mail, user=MAIL_USER, password=MAIL_PASSWORD, address=MAIL_ADDRESS, port=imap_port)
    # _prepare is exactly "render the files, start nothing"; start() would also launch a child we do not want.
    click.echo(str(server._prepare()))


# -- bootstrap -------------------------------------------------------------------------------------------------
def _wait_for(what: str, probe: Callable[[], None], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            probe()
            return
        except Exception as exc:  # not up yet: keep polling until the deadline
            last = exc
            time.sleep(0.2)
    raise click.ClickException(f"{what} not ready after {timeout_s:.0f}s ({type(last).__name__}: {last})")


class Venue:
    """The sandbox control API over plain HTTP (the same calls SandboxStack makes)."""

    def __init__(self, port: int) -> None:
        import requests

        self.base = f"http://127.0.0.1:{port}"
        self.http = requests.Session()

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        resp = self.http.request(method, f"{self.base}{path}", timeout=10, **kwargs)
        resp.raise_for_status()
        return resp.json()

    def gate_logins(self) -> set[str]:
        return {a["login"] for a in self.call("GET", "/sandbox/gate/accounts")["accounts"]}

    def env(self) -> dict[str, str]:
        from sandbox.app import env_lines

        port = int(self.base.rsplit(":", 1)[1])
        return dict(line.removeprefix("export ").split("=", 1) for line in env_lines("127.0.0.1", port))


def _imap_login(port: int) -> None:
    from imapclient import IMAPClient

    with IMAPClient("127.0.0.1", port=port, ssl=False, timeout=2) as client:
        client.login(MAIL_USER, MAIL_PASSWORD)
        client.logout()


def _existing_key(path: Path) -> str | None:
    """The generated sandbox key of an earlier bootstrap (losing it would make the stored secrets unreadable)."""
    import tomllib

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh).get("security", {}).get("encryption_key")
    except (OSError, tomllib.TOMLDecodeError):
        return None


def _build_config(paths: Paths, venue: Venue, imap_port: int, key: str | None) -> Any:
    from orchestrator.config import Config

    env = venue.env()
    # The same working limits as SandboxStack: generous enough that the simulated market never hits them.
    return Config.model_validate({
        "mode": "auto",
        "database": {"url": os.environ.get("ITRADER_DB_URL") or f"sqlite:///{paths.db}"},
        "security": {"encryption_key": key},
        "venues": {"gate_url": env["ITRADER_GATE_URL"], "bybit_url": env["ITRADER_BYBIT_URL"],
                   "bybit_market_url": env["ITRADER_BYBIT_MARKET_URL"], "bybit_ws_url": env["ITRADER_BYBIT_WS_URL"],
                   "openai_url": env["ITRADER_OPENAI_URL"]},
        "limits": {"min_amount_rub": "1000", "max_amount_rub": "300000", "max_in_work_per_gate_account": 40,
                   "daily_volume_rub": "1000000000", "max_release_rub_per_order": "300000",
                   "max_release_rub_per_day": "1000000000"},
        "mailbox": {"imap_host": "127.0.0.1", "imap_port": imap_port, "imap_ssl": False, "user": MAIL_USER,
                    "password": MAIL_PASSWORD, "receipt_address": MAIL_ADDRESS},
    })


def _seed_accounts(cfg: Any, venue: Venue, bybit_accounts: int) -> dict[str, Any]:
    """Make the database and the (in-memory) sandbox agree on one Gate login and N Bybit keys."""
    import secrets as pysecrets

    from sqlalchemy import select

    from orchestrator.db import make_engine, session_factory
    from orchestrator.models import BybitAccount, GateAccount
    from orchestrator.secrets import SecretBox

    box = SecretBox.from_env(cfg.security.encryption_key.get_secret_value())
    fresh_venue = GATE_LOGIN not in venue.gate_logins()
    engine = make_engine(cfg.database.url)
    created = {"gate": 0, "bybit": 0}
    try:
        with session_factory(engine).begin() as s:
            gate = s.scalars(select(GateAccount).where(GateAccount.login == GATE_LOGIN)).first()
            if fresh_venue:
                password = (gate.password(box) if gate is not None else None) or pysecrets.token_urlsafe(16)
                venue.call("POST", "/sandbox/gate/accounts", json={"login": GATE_LOGIN, "password": password})
                created["gate"] = 1
                if gate is None:
                    gate = GateAccount(login=GATE_LOGIN)
                    s.add(gate)
                    s.flush()
                gate.set_password(box, password)
                gate.set_cookies(box, None)  # sessions of a previous sandbox process are meaningless now
            elif gate is None:
                raise click.ClickException(
                    f"the sandbox already has {GATE_LOGIN} but this database does not (the database was replaced "
                    "while the sandbox kept running): restart the sandbox program, then bootstrap again")
            names = [BYBIT_NAME.format(i) for i in range(1, bybit_accounts + 1)]
            rows = {a.name: a for a in s.scalars(select(BybitAccount).where(BybitAccount.name.in_(names)))}
            # A fresh sandbox forgot every key, so all of them are re-issued; otherwise only the missing ones.
            todo = names if fresh_venue else [n for n in names if n not in rows]
            if todo:
                made = venue.call("POST", "/sandbox/bybit/accounts",
                                  json={"count": len(todo), "nick": "stackmerchant", "balance": "1000000"})["accounts"]
                for name, acc in zip(todo, made, strict=True):
                    row = rows.get(name)
                    if row is None:
                        row = BybitAccount(name=name, api_key=acc["api_key"])
                        s.add(row)
                        s.flush()
                    row.api_key = acc["api_key"]
                    row.set_api_secret(box, acc["api_secret"])
                created["bybit"] = len(todo)
    finally:
        engine.dispose()
    return {"fresh_sandbox": fresh_venue, "created": created}


@sandbox_stack.command()
@stack_options
@click.option("--bybit-accounts", default=3, show_default=True, type=click.IntRange(1, 100))
@click.option("--timeout", "timeout_s", default=60.0, show_default=True, type=float,
              help="How long to wait for the venues and the mailbox.")
@click.option("--pause-on-error", default=3.0, show_default=True, type=float,
              help="Seconds to wait before exiting 1, so supervisord's immediate restarts do not spin.")
def bootstrap(stack_dir: Path | None, sandbox_port: int, imap_port: int, bybit_accounts: int,
              timeout_s: float, pause_on_error: float) -> None:
    """One-shot: wire the bank to the mailbox, DKIM file, config, DB migration, accounts.  Idempotent."""
    try:
        _bootstrap(Paths(stack_dir), sandbox_port, imap_port, bybit_accounts, timeout_s)
    except Exception as exc:
        detail = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        _say(f"failed: {type(exc).__name__}: {detail}")  # first line only: no SQL parameters in the log
        time.sleep(pause_on_error)
        raise SystemExit(1) from None


def _bootstrap(paths: Paths, sandbox_port: int, imap_port: int, bybit_accounts: int, timeout_s: float) -> None:
    from orchestrator.db import safe_url, upgrade
    from orchestrator.demo import config_toml, write_private
    from orchestrator.secrets import ENV_KEY, generate_key

    paths.root.mkdir(parents=True, exist_ok=True)
    paths.ready.unlink(missing_ok=True)  # the orchestrator must not start on a half-done bootstrap
    venue = Venue(sandbox_port)
    _wait_for(f"sandbox on {venue.base}", lambda: venue.call("GET", "/sandbox/health"), timeout_s)
    _wait_for(f"IMAP on 127.0.0.1:{imap_port}", lambda: _imap_login(imap_port), timeout_s)
    _say(f"venues on {venue.base} and IMAP on 127.0.0.1:{imap_port} are up")

    venue.call("POST", "/sandbox/bank/mailbox", json={"host": "127.0.0.1", "port": imap_port, "user": MAIL_USER,
                                                      "password": MAIL_PASSWORD, "address": MAIL_ADDRESS})
    write_private(paths.dkim, json.dumps(venue.call("GET", "/sandbox/bank/dkim")["records"]))
    _say(f"bank mails receipts to {MAIL_ADDRESS}; DKIM override file {paths.dkim}")

    env_key = os.environ.get(ENV_KEY)
    key = env_key or _existing_key(paths.config) or generate_key()
    cfg = _build_config(paths, venue, imap_port, key)
    # An operator's key stays in the environment only (`itrader run` reads ITRADER_ENCRYPTION_KEY itself).
    write_private(paths.config, config_toml(_build_config(paths, venue, imap_port, None if env_key else key)))
    _say(f"config {paths.config} (encryption key {'from the environment' if env_key else 'sandbox-only, in the file'})")

    try:
        upgrade(cfg.database.url)
    except Exception as exc:
        raise click.ClickException(f"migration failed on {safe_url(cfg.database.url)}: "
                                   f"{str(exc).strip().splitlines()[0]}") from None
    seeded = _seed_accounts(cfg, venue, bybit_accounts)
    _say(f"database {safe_url(cfg.database.url)} migrated; accounts: {json.dumps(seeded)}")

    write_private(paths.ready, json.dumps({"sandbox": venue.base, "gate_login": GATE_LOGIN, "at": time.time(),
                                           **seeded}))
    _say("ready")


@sandbox_stack.command()
@stack_options
@click.option("--timeout", "timeout_s", default=120.0, show_default=True, type=float)
def wait(stack_dir: Path | None, sandbox_port: int, imap_port: int, timeout_s: float) -> None:
    """Block until the bootstrap is done for the sandbox running now; exit 1 on timeout (supervisord retries)."""
    paths = Paths(stack_dir)
    venue = Venue(sandbox_port)

    def probe() -> None:
        marker = json.loads(paths.ready.read_text())
        if marker["gate_login"] not in venue.gate_logins():
            raise RuntimeError("the running sandbox has not been bootstrapped (restarted since?)")

    _wait_for("the stack bootstrap", probe, timeout_s)
    _say("bootstrap done; starting the orchestrator")

