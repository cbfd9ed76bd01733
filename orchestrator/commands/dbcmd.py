"""`itrader db upgrade|current|downgrade`, `itrader keygen`, `itrader config show`."""

from __future__ import annotations

import json

import click

from orchestrator.commands.common import config_option, engine_for, load


@click.group()
def db() -> None:
    """Database schema (Alembic migrations in migrations/)."""


@db.command()
@config_option
@click.option("--revision", default="head", show_default=True)
def upgrade(config_path: str | None, revision: str) -> None:
    """Create or migrate the schema (works on a fresh SQLite file or an empty PostgreSQL database)."""
    from orchestrator import db as dbm

    cfg = load(config_path)
    try:
        dbm.upgrade(cfg.database.url, revision)
    except Exception as exc:  # alembic/driver errors: one clear line, no traceback
        raise click.ClickException(f"upgrade failed on {dbm.safe_url(cfg.database.url)}: "
                                   f"{str(exc).strip().splitlines()[0]}") from None
    engine = engine_for(cfg)
    try:
        click.echo(f"{dbm.safe_url(cfg.database.url)}: at revision {dbm.current_revision(engine)}")
    finally:
        engine.dispose()


@db.command()
@config_option
@click.argument("revision")
def downgrade(config_path: str | None, revision: str) -> None:
    """Migrate down to REVISION ("base" drops everything: data is lost)."""
    from orchestrator import db as dbm

    cfg = load(config_path)
    dbm.downgrade(cfg.database.url, revision)
    click.echo(f"{dbm.safe_url(cfg.database.url)}: downgraded to {revision}")


@db.command()
@config_option
def current(config_path: str | None) -> None:
    """Show the database's schema revision and the newest one available."""
    from orchestrator import db as dbm

    cfg = load(config_path)
    engine = engine_for(cfg)
    try:
        rev = dbm.current_revision(engine)
    except Exception as exc:
        raise click.ClickException(f"cannot read {dbm.safe_url(cfg.database.url)}: "
                                   f"{str(exc).strip().splitlines()[0]}") from None
    finally:
        engine.dispose()
    head = dbm.head_revision()
    state = "up to date" if rev == head else ("empty (run `itrader db upgrade`)" if rev is None else "behind")
    click.echo(f"current: {rev or '-'}  head: {head}  ({state})")


@click.command()
def keygen() -> None:
    """Print a fresh ITRADER_ENCRYPTION_KEY (32 random bytes, base64url).  Store it outside the database."""
    from orchestrator.secrets import generate_key

    click.echo(generate_key())


@click.group("config")
def config_group() -> None:
    """Inspect the effective configuration."""


@config_group.command("show")
@config_option
def show(config_path: str | None) -> None:
    """Print the effective config (defaults < file < ITRADER_* env) as JSON, secrets masked."""
    cfg = load(config_path)
    click.echo(json.dumps(cfg.redacted(), indent=2, ensure_ascii=False))
