"""Database fixtures for the orchestrator tests: every DB test runs on SQLite AND PostgreSQL.

Migrating is done once per session per back end; each test then gets an empty migrated database
(SQLite: a copy of the migrated template file; PostgreSQL: the session database with every row
deleted), which keeps the suite fast while every test still starts clean.
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

from orchestrator import db as dbm
from orchestrator.models import Base, GateAccount, Order, Payout
from tests.services.postgres import PostgresServer, start_postgres

BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = start_postgres()
    yield server
    server.close()


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tpl") / "template.db"
    url = f"sqlite:///{path}"
    dbm.upgrade(url)
    conn = sqlite3.connect(path)  # fold the WAL into the file so a plain copy is a complete database
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path


@pytest.fixture(scope="session")
def _pg_migrated(pg_server: PostgresServer) -> str:
    url = pg_server.create_database("itrader_test_orch")
    dbm.upgrade(url)
    return url


def _truncate_all(url: str) -> None:
    engine = dbm.make_engine(url)
    # DELETE, not TRUNCATE: on tiny tables it avoids new relation files (and their fsyncs) per test.
    with engine.begin() as conn:
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
    engine.dispose()


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty, migrated database URL on each back end."""
    if request.param == "sqlite":
        path = tmp_path / "itrader.db"
        shutil.copyfile(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("_pg_migrated")
    _truncate_all(url)
    return url


@pytest.fixture(params=BACKENDS)
def fresh_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A brand-new EMPTY database (no schema) on each back end, for migration tests."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.db'}"
        return
    server: PostgresServer = request.getfixturevalue("pg_server")
    url = server.create_database("itrader_test_fresh")
    yield url
    server.drop_database(make_url(url).database)


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    eng = dbm.make_engine(db_url)
    yield eng
    eng.dispose()


@pytest.fixture
def session(engine: Engine) -> Iterator[Session]:
    with Session(engine, expire_on_commit=False) as s:
        yield s


_seq = itertools.count(1)


def make_account(s: Session) -> GateAccount:
    acc = GateAccount(login=f"trader{next(_seq)}@example.test")
    s.add(acc)
    s.flush()
    return acc


def make_payout(s: Session, account: GateAccount | None = None, **kw: Any) -> Payout:
    account = account or make_account(s)
    values: dict[str, Any] = dict(gate_payout_id=str(next(_seq) + 9_000_000), status=5, wallet="79001234567",
                                  bank_name="sberbank", bank_label="Сбербанк", amount_rub=Decimal("15000.50"),
                                  expired_at=datetime.now(UTC) + timedelta(hours=1))
    values.update(kw)
    p = Payout(gate_account_id=account.id, **values)
    s.add(p)
    s.flush()
    return p


def make_order(s: Session, state: str = "PENDING", review_from: str | None = None, **kw: Any) -> Order:
    o = Order(payout_id=make_payout(s).id, state=state, review_from=review_from, **kw)
    s.add(o)
    s.flush()
    return o
