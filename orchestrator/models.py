"""Database model (SQLAlchemy 2 declarative).  The same schema runs on SQLite and PostgreSQL.

Double work is refused by the database itself, not by in-memory sets (earlier systems lost those on
restart): one order per payout, one live ad per order (partial unique index), one row per intended side
effect, a receipt can be stored and used once.  Schema changes go through Alembic (migrations/); the
model and the migrations are compared by a test.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator, TypeEngine

MONEY_SCALE = 8
_SCALE = Decimal(10) ** MONEY_SCALE
MONEY_LIMIT = Decimal("1E10")  # |value| < 10 000 000 000 on both back ends (fits int64 units of 1e-8)


class Money(TypeDecorator[Decimal]):
    """Exact decimal money: NUMERIC(20, 8) on PostgreSQL, a scaled 64-bit integer on SQLite.

    Why not plain Numeric everywhere: SQLite gives NUMERIC columns REAL affinity, so 0.1 + 0.2 style values
    would silently become binary floats.  Storing units of 1e-8 as INTEGER keeps values, comparisons and
    SUM() exact in SQL on SQLite too.  Values with more than 8 decimal places are refused rather than
    rounded (PostgreSQL would round them silently); floats are refused outright; |value| < 1e10.
    """

    impl = Numeric(20, MONEY_SCALE)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(BigInteger())
        return dialect.type_descriptor(Numeric(20, MONEY_SCALE, asdecimal=True))

    @staticmethod
    def to_decimal(value: Any) -> Decimal:
        if isinstance(value, float | bool):
            raise TypeError(f"money must be Decimal, int or str, not {type(value).__name__}")
        try:
            dec = value if isinstance(value, Decimal) else Decimal(str(value))
        except InvalidOperation:
            raise ValueError(f"not a decimal amount: {value!r}") from None
        if not dec.is_finite():
            raise ValueError(f"not a finite amount: {value!r}")
        scaled = dec * _SCALE
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{dec} has more than {MONEY_SCALE} decimal places")
        if abs(dec) >= MONEY_LIMIT:
            raise ValueError(f"{dec} is out of range for a money column")
        return dec

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        dec = self.to_decimal(value)
        if dialect.name == "sqlite":
            return int(dec * _SCALE)
        return dec

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return (Decimal(int(value)) / _SCALE).quantize(Decimal(1).scaleb(-MONEY_SCALE))
        return Decimal(value).quantize(Decimal(1).scaleb(-MONEY_SCALE))


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC timestamps on both databases (SQLite has no time zones: values come back naive)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if not isinstance(value, datetime):
            raise TypeError("expected a datetime")
        if value.tzinfo is None:
            raise ValueError("naive datetime: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


JsonDoc = JSON().with_variant(JSONB(), "postgresql")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


# Encrypted columns: each token is bound to its table/column/row id (see orchestrator.secrets), so a row
# must have an id before a secret is stored: add it and flush first.

def _seal(box: Any, row: Any, column: str, plaintext: str | None) -> str | None:
    if plaintext is None:
        return None
    if row.id is None:
        raise ValueError(f"{row.__tablename__}: flush the row before storing a secret (its id is part of it)")
    return box.seal(plaintext, row.__tablename__, column, row.id)


def _open(box: Any, row: Any, column: str) -> str | None:
    token = getattr(row, column)
    return None if token is None else box.open(token, row.__tablename__, column, row.id)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class GateAccount(Base):
    """A Gate panel login.  password/cookies are AES-GCM tokens (orchestrator.secrets), never plaintext."""

    __tablename__ = "gate_accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(200), unique=True)
    password_enc: Mapped[str | None] = mapped_column(Text)
    cookies_enc: Mapped[str | None] = mapped_column(Text)
    gate_user_id: Mapped[str | None] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    def set_password(self, box: Any, password: str | None) -> None:
        self.password_enc = _seal(box, self, "password_enc", password)

    def password(self, box: Any) -> str | None:
        return _open(box, self, "password_enc")

    def set_cookies(self, box: Any, cookies: dict[str, str] | None) -> None:
        self.cookies_enc = _seal(box, self, "cookies_enc", None if cookies is None else json.dumps(cookies))

    def cookies(self, box: Any) -> dict[str, str] | None:
        raw = _open(box, self, "cookies_enc")
        return None if raw is None else json.loads(raw)


class BybitAccount(Base):
    """A Bybit API key pair.  The api_key is an identifier (shown masked); api_secret is encrypted."""

    __tablename__ = "bybit_accounts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    api_key: Mapped[str] = mapped_column(String(200))
    api_secret_enc: Mapped[str | None] = mapped_column(Text)
    testnet: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    bybit_user_id: Mapped[str | None] = mapped_column(String(64))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True, server_default=text("true"))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)

    def set_api_secret(self, box: Any, secret: str) -> None:
        self.api_secret_enc = _seal(box, self, "api_secret_enc", secret)

    def api_secret(self, box: Any) -> str | None:
        return _open(box, self, "api_secret_enc")


class Payout(Base):
    """Our mirror of a Gate payout (amounts are hidden while Gate status is 4, hence nullable)."""

    __tablename__ = "payouts"
    __table_args__ = (UniqueConstraint("gate_account_id", "gate_payout_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    gate_account_id: Mapped[int] = mapped_column(ForeignKey("gate_accounts.id"))
    gate_payout_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[int] = mapped_column(Integer)
    wallet: Mapped[str | None] = mapped_column(String(64))
    bank_name: Mapped[str | None] = mapped_column(String(64))
    bank_label: Mapped[str | None] = mapped_column(String(200))
    amount_rub: Mapped[Decimal | None] = mapped_column(Money)
    amount_usdt: Mapped[Decimal | None] = mapped_column(Money)
    course: Mapped[Decimal | None] = mapped_column(Money)
    gate_created_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    expired_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    raw: Mapped[Any | None] = mapped_column(JsonDoc)
    first_seen_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class Order(Base):
    """Our work item: exactly one per payout.  `state` only changes through orchestrator.states.transition().

    `version` is the optimistic lock: every UPDATE (ORM flushes included) carries WHERE version = ?.
    """

    __tablename__ = "orders"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payout_id: Mapped[int] = mapped_column(ForeignKey("payouts.id"), unique=True)
    state: Mapped[str] = mapped_column(String(24), index=True)
    bybit_account_id: Mapped[int | None] = mapped_column(ForeignKey("bybit_accounts.id"))
    bybit_order_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    buyer_user_id: Mapped[str | None] = mapped_column(String(64))
    chat_step: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    review_from: Mapped[str | None] = mapped_column(String(24))
    review_reason: Mapped[str | None] = mapped_column(Text)
    operator_approved_by: Mapped[str | None] = mapped_column(String(100))
    operator_approved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    requisites_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    gate_approved_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    state_changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1, server_default=text("1"))

    __mapper_args__ = {"version_id_col": version}


class Ad(Base):
    """A Bybit SELL ad we created.  status: live (online, no order yet) | taken | cancelled | offline | failed."""

    __tablename__ = "ads"
    __table_args__ = (
        Index("uq_ads_one_live_per_order", "order_id", unique=True,
              sqlite_where=text("status = 'live'"), postgresql_where=text("status = 'live'")),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    bybit_item_id: Mapped[str] = mapped_column(String(64), unique=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    bybit_account_id: Mapped[int] = mapped_column(ForeignKey("bybit_accounts.id"), index=True)
    payment_kind: Mapped[str] = mapped_column(String(16))
    payment_id: Mapped[str | None] = mapped_column(String(64))
    price: Mapped[Decimal] = mapped_column(Money)
    quantity: Mapped[Decimal] = mapped_column(Money)
    amount_rub: Mapped[Decimal | None] = mapped_column(Money)
    status: Mapped[str] = mapped_column(String(16), default="live")
    request: Mapped[Any | None] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class ChatMessage(Base):
    """One chat message of a Bybit order.  Ours are inserted before sending (msg_uuid), theirs on read."""

    __tablename__ = "chat_messages"
    __table_args__ = (UniqueConstraint("order_id", "bybit_message_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    bybit_message_id: Mapped[str | None] = mapped_column(String(64))
    msg_uuid: Mapped[str | None] = mapped_column(String(64), unique=True)
    direction: Mapped[str] = mapped_column(String(8))  # in | out
    chat_step: Mapped[int | None] = mapped_column(Integer)
    text: Mapped[str | None] = mapped_column(Text)
    content_type: Mapped[str] = mapped_column(String(16), default="str")
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    raw: Mapped[Any | None] = mapped_column(JsonDoc)


class Receipt(Base):
    """A payment receipt, stored once and usable once (every dedup key of receipts.md section 7 is UNIQUE)."""

    __tablename__ = "receipts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    receipt_number: Mapped[str | None] = mapped_column(String(64), unique=True)
    operation_id: Mapped[str | None] = mapped_column(String(64), unique=True)
    email_message_id: Mapped[str | None] = mapped_column(String(300), unique=True)
    source: Mapped[str] = mapped_column(String(8))  # mail | chat
    sender: Mapped[str | None] = mapped_column(String(200))
    dkim: Mapped[str | None] = mapped_column(String(8))  # pass | fail | none
    ocr: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    amount_rub: Mapped[Decimal | None] = mapped_column(Money)
    receipt_time: Mapped[datetime | None] = mapped_column(UtcDateTime)
    parsed: Mapped[Any | None] = mapped_column(JsonDoc)
    verdict: Mapped[str] = mapped_column(String(16), default="pending")  # pending | ok | review | reject
    reasons: Mapped[Any | None] = mapped_column(JsonDoc)
    used_by_order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), unique=True)
    filename: Mapped[str | None] = mapped_column(String(200))
    content: Mapped[bytes | None] = mapped_column(LargeBinary)
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Rate(Base):
    """Every computed ad price with its inputs (never a silent fallback)."""

    __tablename__ = "rates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    rule: Mapped[str] = mapped_column(String(100))
    page: Mapped[int] = mapped_column(Integer)
    ad_index: Mapped[int] = mapped_column(Integer)
    raw_price: Mapped[Decimal] = mapped_column(Money)
    result: Mapped[Decimal] = mapped_column(Money)
    amount_rub: Mapped[Decimal | None] = mapped_column(Money)
    data: Mapped[Any | None] = mapped_column(JsonDoc)


class SideEffect(Base):
    """Intent rows: written BEFORE a venue call, so a crash leaves evidence and the same effect (kind, target)
    can never be intended twice.  status: queued | intended | done | failed | unknown (states.SIDE_EFFECT_STATUSES)."""

    __tablename__ = "side_effects"
    __table_args__ = (UniqueConstraint("kind", "target_key"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    target_key: Mapped[str] = mapped_column(String(200))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="intended", index=True)
    request: Mapped[Any | None] = mapped_column(JsonDoc)
    outcome: Mapped[Any | None] = mapped_column(JsonDoc)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UtcDateTime)


class Event(Base):
    """Append-only audit log: transition | intent | outcome | note."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, index=True)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))
    from_state: Mapped[str | None] = mapped_column(String(24))
    to_state: Mapped[str | None] = mapped_column(String(24))
    actor: Mapped[str] = mapped_column(String(100), default="orchestrator")
    reason: Mapped[str | None] = mapped_column(Text)
    data: Mapped[Any | None] = mapped_column(JsonDoc)


class Setting(Base):
    """Small key/value switches the running orchestrator re-reads every tick (e.g. `paused`)."""

    __tablename__ = "settings"
    key: Mapped[str] = mapped_column(String(100), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(100))

