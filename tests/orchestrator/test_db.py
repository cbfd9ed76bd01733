"""Schema, migrations, exact decimals, the constraints that refuse double work, and the instance lock."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, inspect, select
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session

from orchestrator import db as dbm
from orchestrator.models import Ad, Base, BybitAccount, ChatMessage, Order, Payout, Receipt, SideEffect
from orchestrator.states import record_intent, release_target
from tests.orchestrator.conftest import make_account, make_order, make_payout
from tests.services.postgres import start_postgres
from tests.support import REPO

TABLES = {t.name for t in Base.metadata.sorted_tables}


# ---------------------------------------------------------------- migrations

def test_migrations_upgrade_downgrade_upgrade(fresh_db_url: str) -> None:
    engine = dbm.make_engine(fresh_db_url)
    try:
        assert dbm.current_revision(engine) is None
        dbm.upgrade(fresh_db_url)
        assert dbm.current_revision(engine) == dbm.head_revision()
        assert set(inspect(engine).get_table_names()) >= TABLES
        dbm.downgrade(fresh_db_url, "base")
        engine.dispose()
        assert dbm.current_revision(engine) is None
        assert not TABLES & set(inspect(engine).get_table_names())
        dbm.upgrade(fresh_db_url)
        assert dbm.current_revision(engine) == dbm.head_revision()
    finally:
        engine.dispose()


def test_migration_matches_models(engine) -> None:  # type: ignore[no-untyped-def]
    """The hand-checked migration and the ORM model must describe the same schema on both back ends."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diffs == []


def test_partial_unique_index_exists(engine) -> None:  # type: ignore[no-untyped-def]
    names = {ix["name"]: ix for ix in inspect(engine).get_indexes("ads")}
    assert names["uq_ads_one_live_per_order"]["unique"]


# ---------------------------------------------------------------- exact money

AMOUNTS = [Decimal("0.00000001"), Decimal("15000.50"), Decimal("9999999999.99999999"), Decimal("-9999999999.99999999"), Decimal("-0.1"),
           Decimal("0"), Decimal("1234567.12345678"), Decimal("0.1") + Decimal("0.2")]


def test_decimal_round_trip_is_exact(session: Session) -> None:
    ids = []
    for amount in AMOUNTS:
        p = make_payout(session, amount_rub=amount, amount_usdt=amount, course=Decimal("81.23"))
        ids.append(p.id)
    session.commit()
    session.expunge_all()
    for pid, amount in zip(ids, AMOUNTS, strict=True):
        p = session.get(Payout, pid)
        assert isinstance(p.amount_rub, Decimal)
        assert p.amount_rub == amount and p.amount_usdt == amount
        assert str(p.amount_rub) == str(amount.quantize(Decimal("1E-8")))
    # SUM and comparisons stay exact in SQL on both back ends.
    total = session.execute(select(func.sum(Payout.amount_rub)).where(Payout.id.in_(ids))).scalar_one()
    assert total == sum(AMOUNTS)
    small = session.scalars(select(Payout.id).where(Payout.id.in_(ids), Payout.amount_rub < Decimal("0.3"))).all()
    assert sorted(small) == sorted(i for i, a in zip(ids, AMOUNTS, strict=True) if a < Decimal("0.3"))


@pytest.mark.parametrize("bad", [Decimal("1.000000001"), 0.1, Decimal("NaN"), Decimal("1E+10"), "abc"])
def test_money_refuses_float_and_rounding(session: Session, bad: object) -> None:
    with pytest.raises(StatementError):
        make_payout(session, amount_rub=bad)
    session.rollback()


def test_json_columns_keep_decimals_as_strings(session: Session) -> None:
    p = make_payout(session, raw={"amount": Decimal("15000.50"), "at": datetime(2026, 1, 1, tzinfo=UTC)})
    session.commit()
    session.expunge_all()
    assert session.get(Payout, p.id).raw == {"amount": "15000.50", "at": "2026-01-01T00:00:00+00:00"}


def test_timestamps_come_back_aware_utc(session: Session) -> None:
    p = make_payout(session, expired_at=datetime(2026, 5, 1, 12, 0, tzinfo=UTC))
    session.commit()
    session.expunge_all()
    got = session.get(Payout, p.id).expired_at
    assert got == datetime(2026, 5, 1, 12, 0, tzinfo=UTC) and got.tzinfo is not None


# ---------------------------------------------------------------- double work refused by the database

def _bybit(s: Session) -> BybitAccount:
    acc = BybitAccount(name=f"b{make_account(s).id}", api_key="k")
    s.add(acc)
    s.flush()
    return acc


def _ad(order: Order, acc: BybitAccount, item: str, status: str = "live") -> Ad:
    return Ad(bybit_item_id=item, order_id=order.id, bybit_account_id=acc.id, payment_kind="sbp",
              price=Decimal("81.20"), quantity=Decimal("185.75"), status=status)


def test_one_live_ad_per_order(session: Session) -> None:
    order, acc = make_order(session, "ADVERTISED"), _bybit(session)
    session.add(_ad(order, acc, "1001"))
    session.commit()
    session.add(_ad(order, acc, "1002"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    # Once the first ad is no longer live, a new live ad (a re-issue) is fine; old ones may pile up.
    first = session.scalars(select(Ad).where(Ad.bybit_item_id == "1001")).one()
    first.status = "cancelled"
    session.add_all([_ad(order, acc, "1002"), _ad(order, acc, "1003", status="cancelled")])
    session.commit()
    # ...and a second order may have its own live ad at the same time.
    other = make_order(session, "ADVERTISED")
    session.add(_ad(other, acc, "2001"))
    session.commit()
    # The same Bybit item can never be linked twice.
    session.add(_ad(other, acc, "1001", status="cancelled"))
    with pytest.raises(IntegrityError):
        session.commit()


def test_one_order_per_payout_and_per_bybit_order(session: Session) -> None:
    o = make_order(session, bybit_order_id="555")
    session.commit()
    session.add(Order(payout_id=o.payout_id, state="PENDING"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    with pytest.raises(IntegrityError):
        make_order(session, bybit_order_id="555")


def test_gate_payout_unique_per_account(session: Session) -> None:
    acc = make_account(session)
    make_payout(session, acc, gate_payout_id="777")
    make_payout(session, make_account(session), gate_payout_id="777")  # another account: fine
    session.commit()
    with pytest.raises(IntegrityError):
        make_payout(session, acc, gate_payout_id="777")


def test_second_release_side_effect_refused(session: Session) -> None:
    order = make_order(session, "APPROVED", bybit_order_id="9001")
    row, created = record_intent(session, "release", release_target("9001"), order, {"order_id": "9001"})
    session.commit()
    assert created and row.status == "intended"
    again, created2 = record_intent(session, "release", release_target("9001"), order)
    assert not created2 and again.id == row.id
    # Even bypassing the helper, the database refuses a second release intent for the same Bybit order.
    session.add(SideEffect(kind="release", target_key=release_target("9001"), status="intended"))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    assert session.scalar(select(func.count()).select_from(SideEffect)) == 1


@pytest.mark.parametrize("field", ["sha256", "receipt_number", "operation_id", "email_message_id",
                                   "used_by_order_id"])
def test_receipt_cannot_be_reused(session: Session, field: str) -> None:
    o1, o2 = make_order(session), make_order(session)
    base = dict(source="mail", receipt_number="1-11-111-111-111", operation_id="A" + "1" * 26,
                email_message_id="<m1@tbank.ru>", used_by_order_id=o1.id, sha256="a" * 64)
    session.add(Receipt(**base))
    session.commit()
    other = dict(source="mail", receipt_number="1-22-222-222-222", operation_id="A" + "2" * 26,
                 email_message_id="<m2@tbank.ru>", used_by_order_id=o2.id, sha256="b" * 64)
    other[field] = base[field]
    session.add(Receipt(**other))
    with pytest.raises(IntegrityError):
        session.commit()
    session.rollback()
    # Nullable dedup keys: many receipts may lack them (e.g. a chat upload without an operation id).
    for sha in ("c" * 64, "d" * 64):
        session.add(Receipt(source="chat", sha256=sha))
    session.commit()


def test_chat_message_unique_per_order(session: Session) -> None:
    o = make_order(session, "CHATTING")
    session.add(ChatMessage(order_id=o.id, bybit_message_id="m1", direction="in", text="да"))
    session.commit()
    session.add(ChatMessage(order_id=o.id, bybit_message_id="m1", direction="in", text="да"))
    with pytest.raises(IntegrityError):
        session.commit()


# ---------------------------------------------------------------- single instance

def test_instance_lock_refuses_second_holder_in_process(engine) -> None:  # type: ignore[no-untyped-def]
    lock = dbm.acquire_instance_lock(engine)
    try:
        other = dbm.make_engine(str(engine.url.render_as_string(hide_password=False)))
        try:
            with pytest.raises(dbm.InstanceLocked, match="another orchestrator already runs"):
                dbm.acquire_instance_lock(other)
        finally:
            other.dispose()
    finally:
        lock.release()
    again = dbm.acquire_instance_lock(engine)  # released -> can be taken again
    again.release()


HOLDER = textwrap.dedent("""
    import sys
    from orchestrator import db
    engine = db.make_engine(sys.argv[1])
    lock = db.acquire_instance_lock(engine)
    print("locked", flush=True)
    sys.stdin.read()
    lock.release()
""")


def test_instance_lock_across_processes_names_the_holder(engine) -> None:  # type: ignore[no-untyped-def]
    url = engine.url.render_as_string(hide_password=False)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(dbm.InstanceLocked) as exc:
            dbm.acquire_instance_lock(engine)
        assert f"pid {proc.pid}" in str(exc.value)
    finally:
        proc.stdin.close()
        proc.wait(10)
    # The holder is gone: the lock is free again.
    dbm.acquire_instance_lock(engine).release()


def test_instance_lock_freed_when_holder_is_killed(engine) -> None:  # type: ignore[no-untyped-def]
    url = engine.url.render_as_string(hide_password=False)
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, url], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, cwd=REPO)
    assert proc.stdout.readline().strip() == "locked"
    proc.kill()
    proc.wait(10)
    proc.stdin.close()
    if engine.url.get_backend_name() == "postgresql":
        # The server notices the dead backend asynchronously; give it a moment without a timed assertion.
        import time

        for _ in range(100):
            try:
                dbm.acquire_instance_lock(engine).release()
                break
            except dbm.InstanceLocked:
                time.sleep(0.05)
        else:
            pytest.fail("advisory lock not freed after the holder died")
    else:
        dbm.acquire_instance_lock(engine).release()


# ---------------------------------------------------------------- the throwaway PostgreSQL path (fresh CI)

def test_throwaway_postgres_cluster() -> None:
    server = start_postgres(force_throwaway=True)
    root = server.root  # type: ignore[attr-defined]
    try:
        assert server.kind == "throwaway" and server.port != 5432
        url = server.create_database()
        dbm.upgrade(url)
        engine = dbm.make_engine(url)
        assert dbm.current_revision(engine) == dbm.head_revision()
        engine.dispose()
    finally:
        server.close()
    assert not root.exists()
