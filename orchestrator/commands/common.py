"""Shared plumbing for the commands: the --config option, config/engine loading, clean error exits."""

from __future__ import annotations

import getpass
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session

    from orchestrator.config import Config

F = TypeVar("F", bound=Callable[..., Any])


def config_option(fn: F) -> F:
    """--config PATH on every command (default: $ITRADER_CONFIG, else var/itrader.toml if present)."""
    return click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                        help="TOML config file (default: $ITRADER_CONFIG or var/itrader.toml).")(fn)


def load(config_path: str | None) -> Config:
    from orchestrator.config import ConfigError, load_config

    try:
        return load_config(config_path)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None


def engine_for(cfg: Config) -> Engine:
    from orchestrator.db import make_engine

    return make_engine(cfg.database.url)


@contextmanager
def session_scope(cfg: Config) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any error; the engine is disposed after."""
    from sqlalchemy.exc import OperationalError, ProgrammingError
    from sqlalchemy.orm import Session

    engine = engine_for(cfg)
    try:
        with Session(engine, expire_on_commit=False) as session, session.begin():
            yield session
    except (OperationalError, ProgrammingError) as exc:
        msg = str(exc.orig).strip().splitlines()[0] if exc.orig else exc.__class__.__name__
        raise click.ClickException(f"database error: {msg} (did you run `itrader db upgrade`?)") from None
    finally:
        engine.dispose()


def secret_box(cfg: Config) -> Any:
    from orchestrator.secrets import SecretBox, SecretsError

    raw = cfg.security.encryption_key.get_secret_value() if cfg.security.encryption_key else None
    try:
        return SecretBox.from_env(raw if raw is not None else "")
    except SecretsError as exc:
        raise click.ClickException(str(exc)) from None


def operator_name(explicit: str | None) -> str:
    if explicit:
        return explicit
    try:
        return os.environ.get("ITRADER_OPERATOR") or getpass.getuser()
    except (KeyError, OSError):
        return "operator"
