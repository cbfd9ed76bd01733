"""Engine and session helpers, Alembic upgrade/current, the single-instance lock, and the settings switches.

One URL rule for both back ends: `sqlite:///path` or `postgresql+psycopg2://...` (SQLAlchemy 2.1 maps a bare
`postgresql://` to psycopg 3, which is not installed, so we rewrite it to psycopg2).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, select, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

REPO = Path(__file__).resolve().parents[1]
MIGRATIONS = REPO / "migrations"
PG_LOCK_KEY = 0x69_74_72_61_64_65_72  # "itrader" as an int: the advisory-lock key (per database)


class InstanceLocked(RuntimeError):
    """Another orchestrator holds the database."""


def normalize_url(url: str) -> str:
    """Force the psycopg2 driver for PostgreSQL URLs; make relative SQLite paths absolute-safe."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        url = "postgresql+psycopg2://" + url.split("://", 1)[1]
    return url


def safe_url(url: str) -> str:
    """The URL with any password masked, for messages and `config show`."""
    return make_url(url).render_as_string(hide_password=True)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return f"<{len(obj)} bytes>"
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def json_dumps(obj: Any) -> str:
    """JSON columns: Decimals become strings (exact), never floats."""
    return json.dumps(obj, default=_json_default, ensure_ascii=False, separators=(",", ":"))


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine with the settings both back ends need (SQLite: FKs on, WAL, busy timeout)."""
    url = normalize_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30})
    else:
        kwargs.setdefault("pool_pre_ping", True)
    engine = create_engine(url, json_serializer=json_dumps, **kwargs)
    if u.get_backend_name() == "sqlite":
        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            if u.database and u.database != ":memory:":
                cur.execute("PRAGMA journal_mode=WAL")
            cur.close()
    return engine


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


# ---------------------------------------------------------------- migrations

def alembic_config(url: str) -> Any:
    from alembic.config import Config

    cfg = Config(str(MIGRATIONS / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS))
    # ConfigParser interpolation: a literal % in a password must be doubled.
    cfg.set_main_option("sqlalchemy.url", normalize_url(url).replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    from alembic import command

    make_engine(url).dispose()  # creates the SQLite parent directory if needed
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str, revision: str) -> None:
    from alembic import command

    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


# ---------------------------------------------------------------- single instance

def _holder_info() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": datetime.now(UTC).isoformat()}


def _describe(info: dict[str, Any] | None) -> str:
    if not info:
        return "holder unknown"
    return f"pid {info.get('pid')} on {info.get('host')} since {info.get('since')}"


class InstanceLock:
    """Held for the life of the orchestrator process; released by release() or by the process dying."""

    def __init__(self, kind: str, release_fn: Any, where: str) -> None:
        self.kind = kind
        self.where = where
        self._release = release_fn

    def release(self) -> None:
        if self._release is not None:
            fn, self._release = self._release, None
            fn()

    def __enter__(self) -> InstanceLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def acquire_instance_lock(engine: Engine) -> InstanceLock:
    """Refuse to run a second orchestrator on the same database.

    PostgreSQL: a session advisory lock on a dedicated connection kept open (the server frees it when the
    process dies); the holder's pid/host are written to settings so the refusal can name them.
    SQLite: an exclusive flock on "<db file>.lock" (freed by the kernel when the process dies) whose content
    names the holder.  flock locks belong to the open file, so a second attempt in the same process is
    refused too.
    """
    backend = engine.url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_lock(engine)
    if backend == "postgresql":
        return _pg_lock(engine)
    raise RuntimeError(f"no instance lock for {backend}")


def _sqlite_lock(engine: Engine) -> InstanceLock:
    import fcntl

    db = engine.url.database
    if not db or db == ":memory:":
        return InstanceLock("none", lambda: None, "in-memory database")
    path = Path(db).resolve().with_name(Path(db).name + ".lock")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        try:
            info = json.loads(os.pread(fd, 4096, 0) or b"null")
        except ValueError:
            info = None
        os.close(fd)
        raise InstanceLocked(f"another orchestrator already runs on {db} ({_describe(info)}; lock file {path})"
                             ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(_holder_info()).encode(), 0)

    def release() -> None:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)

    return InstanceLock("flock", release, str(path))


def _pg_lock(engine: Engine) -> InstanceLock:
    conn: Connection = engine.connect()
    try:
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": PG_LOCK_KEY}).scalar()
        conn.commit()
    except Exception:
        conn.close()
        raise
    where = safe_url(str(engine.url))
    if not got:
        conn.close()
        info = None
        try:
            info = json.loads(get_setting_engine(engine, "instance_holder") or "null")
        except Exception:  # the settings table may not exist yet: the lock itself is what matters
            info = None
        raise InstanceLocked(f"another orchestrator already runs on {where} ({_describe(info)})")
    # Not migrated yet? The lock still holds; only the holder's name is unavailable to a second instance.
    with contextlib.suppress(Exception):
        set_setting_engine(engine, "instance_holder", json.dumps(_holder_info()), by="instance-lock")

    def release() -> None:
        try:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PG_LOCK_KEY})
            conn.commit()
        finally:
            conn.close()

    return InstanceLock("pg_advisory_lock", release, where)


# ---------------------------------------------------------------- settings (pause switch)

def get_setting(session: Session, key: str) -> str | None:
    from orchestrator.models import Setting

    return session.execute(select(Setting.value).where(Setting.key == key)).scalar_one_or_none()


def set_setting(session: Session, key: str, value: str, *, by: str | None = None) -> None:
    from orchestrator.models import Setting

    row = session.get(Setting, key)
    if row is None:
        session.add(Setting(key=key, value=value, updated_by=by))
    else:
        row.value = value
        row.updated_by = by
    session.flush()


def get_setting_engine(engine: Engine, key: str) -> str | None:
    with Session(engine) as s:
        return get_setting(s, key)


def set_setting_engine(engine: Engine, key: str, value: str, *, by: str | None = None) -> None:
    with Session(engine) as s, s.begin():
        set_setting(s, key, value, by=by)


def is_paused(session: Session) -> bool:
    """The running orchestrator calls this every tick: when paused it starts no new work."""
    return get_setting(session, "paused") == "1"
