"""`itrader accounts add-gate|add-bybit|list|disable|enable`.

Secrets are read from a hidden prompt (terminal) or from stdin (pipes), never from argv, and are stored
AES-GCM encrypted (ITRADER_ENCRYPTION_KEY).  Nothing secret is ever printed back.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from orchestrator.commands.common import config_option, load, secret_box, session_scope


def _stdin_is_tty() -> bool:
    try:
        return sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _read_stdin() -> str:
    data = sys.stdin.read()
    if not data.strip():
        raise click.ClickException("expected the secret on stdin (or run in a terminal to be prompted)")
    return data


def _stdin_json_or_line(data: str) -> dict[str, Any] | str:
    s = data.strip()
    if s.startswith("{"):
        try:
            obj = json.loads(s)
        except ValueError:
            raise click.ClickException("stdin looks like JSON but does not parse") from None
        if not isinstance(obj, dict):
            raise click.ClickException("stdin JSON must be an object")
        return obj
    return s.splitlines()[0]


def mask(value: str) -> str:
    return (value[:4] + "…") if len(value) > 8 else "…"


@click.group()
def accounts() -> None:
    """Venue accounts (Gate logins, Bybit API keys)."""


@accounts.command("add-gate")
@config_option
@click.option("--login", required=True, help="Gate panel login (e-mail).")
def add_gate(config_path: str | None, login: str) -> None:
    """Add a Gate account.  Password: hidden prompt, or stdin as one line or JSON
    {"password": "...", "cookies": {"sid": "...", "rsid": "..."}} (cookie-only accounts omit the password)."""
    from sqlalchemy import select

    from orchestrator.models import GateAccount

    cfg = load(config_path)
    box = secret_box(cfg)  # fail on a missing key before asking for anything
    cookies: dict[str, str] | None = None
    if _stdin_is_tty():
        password: str | None = click.prompt("Gate password", hide_input=True, err=True)
    else:
        got = _stdin_json_or_line(_read_stdin())
        if isinstance(got, dict):
            unknown = set(got) - {"password", "cookies"}
            if unknown:
                raise click.ClickException(f"unknown keys on stdin: {', '.join(sorted(unknown))}")
            password, cookies = got.get("password"), got.get("cookies")
            if cookies is not None and not (isinstance(cookies, dict)
                                            and all(isinstance(v, str) for v in cookies.values())):
                raise click.ClickException("cookies must be an object of strings")
        else:
            password = got
    if not password and not cookies:
        raise click.ClickException("a password or cookies are required")
    with session_scope(cfg) as s:
        if s.execute(select(GateAccount.id).where(GateAccount.login == login)).first():
            raise click.ClickException(f"a Gate account with login {login!r} already exists")
        acc = GateAccount(login=login)
        s.add(acc)
        s.flush()
        acc.set_password(box, password or None)
        acc.set_cookies(box, cookies)
        acc_id = acc.id
    click.echo(f"gate account {acc_id} added ({login}; password {'stored' if password else 'none'}, "
               f"cookies {'stored' if cookies else 'none'})")


@accounts.command("add-bybit")
@config_option
@click.option("--name", required=True, help="A local name for this Bybit account.")
@click.option("--testnet", is_flag=True, help="The key belongs to api-testnet.bybit.com.")
def add_bybit(config_path: str | None, name: str, testnet: bool) -> None:
    """Add a Bybit API key.  Key and secret: hidden prompts, or stdin JSON {"api_key", "api_secret"}
    (the shape of test_data/bybit_credentials.json; other keys are ignored)."""
    from sqlalchemy import select

    from orchestrator.models import BybitAccount

    cfg = load(config_path)
    box = secret_box(cfg)
    if _stdin_is_tty():
        api_key = click.prompt("Bybit API key", hide_input=True, err=True)
        api_secret = click.prompt("Bybit API secret", hide_input=True, err=True)
    else:
        got = _stdin_json_or_line(_read_stdin())
        if not isinstance(got, dict):
            raise click.ClickException('stdin must be JSON {"api_key": "...", "api_secret": "..."}')
        api_key, api_secret = got.get("api_key"), got.get("api_secret")
        if got.get("testnet") is True:
            testnet = True
    if not isinstance(api_key, str) or not isinstance(api_secret, str) or not api_key or not api_secret:
        raise click.ClickException("api_key and api_secret are both required (non-empty strings)")
    with session_scope(cfg) as s:
        if s.execute(select(BybitAccount.id).where(BybitAccount.name == name)).first():
            raise click.ClickException(f"a Bybit account named {name!r} already exists")
        acc = BybitAccount(name=name, api_key=api_key.strip(), testnet=testnet)
        s.add(acc)
        s.flush()
        acc.set_api_secret(box, api_secret.strip())
        acc_id = acc.id
    click.echo(f"bybit account {acc_id} added ({name}, key {mask(api_key)}{', testnet' if testnet else ''})")


def list_accounts(s: Any) -> dict[str, list[dict[str, Any]]]:
    from sqlalchemy import select

    from orchestrator.models import BybitAccount, GateAccount

    gate = [{"id": a.id, "login": a.login, "enabled": a.enabled, "password": a.password_enc is not None,
             "cookies": a.cookies_enc is not None} for a in s.scalars(select(GateAccount).order_by(GateAccount.id))]
    bybit = [{"id": a.id, "name": a.name, "api_key": mask(a.api_key), "testnet": a.testnet,
              "enabled": a.enabled} for a in s.scalars(select(BybitAccount).order_by(BybitAccount.id))]
    return {"gate": gate, "bybit": bybit}


@accounts.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_cmd(config_path: str | None, as_json: bool) -> None:
    """List accounts (no secrets: only whether one is stored)."""
    cfg = load(config_path)
    with session_scope(cfg) as s:
        data = list_accounts(s)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    yn = {True: "yes", False: "no"}
    click.echo("GATE")
    for a in data["gate"]:
        click.echo(f"  {a['id']:>4}  {a['login']:<32} enabled={yn[a['enabled']]:<3} password={yn[a['password']]:<3} "
                   f"cookies={yn[a['cookies']]}")
    click.echo("BYBIT")
    for a in data["bybit"]:
        click.echo(f"  {a['id']:>4}  {a['name']:<32} enabled={yn[a['enabled']]:<3} key={a['api_key']:<6} "
                   f"testnet={yn[a['testnet']]}")


def _set_enabled(config_path: str | None, kind: str, account_id: int, enabled: bool) -> None:
    from orchestrator.models import BybitAccount, GateAccount

    cfg = load(config_path)
    model = GateAccount if kind == "gate" else BybitAccount
    with session_scope(cfg) as s:
        acc = s.get(model, account_id)
        if acc is None:
            raise click.ClickException(f"no {kind} account {account_id}")
        acc.enabled = enabled
    click.echo(f"{kind} account {account_id} {'enabled' if enabled else 'disabled'}")


@accounts.command("disable")
@config_option
@click.argument("kind", type=click.Choice(["gate", "bybit"]))
@click.argument("account_id", type=int)
def disable(config_path: str | None, kind: str, account_id: int) -> None:
    """Stop taking new work on an account (open orders on it still finish)."""
    _set_enabled(config_path, kind, account_id, False)


@accounts.command("enable")
@config_option
@click.argument("kind", type=click.Choice(["gate", "bybit"]))
@click.argument("account_id", type=int)
def enable(config_path: str | None, kind: str, account_id: int) -> None:
    """Re-enable an account."""
    _set_enabled(config_path, kind, account_id, True)
