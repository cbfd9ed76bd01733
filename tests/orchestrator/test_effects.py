"""Engine._effect, the intent-first rule every money-moving step goes through, on SQLite and PostgreSQL.

What must hold: a call that may still be in flight (a crash mid-call, a timeout) is neither repeated nor
concluded from a venue read until it can no longer land; an operator-queued clean-up, which was never
attempted, is carried out at once; a re-attempt is itself protected like a first attempt.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine as DbEngine
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import engine as engine_mod
from orchestrator.config import load_config
from orchestrator.engine import IN_FLIGHT_GRACE, Engine
from orchestrator.models import SideEffect
from orchestrator.secrets import SecretBox
from orchestrator.states import record_intent
from tests.orchestrator.conftest import make_order


@dataclass
class Answer:
    ok: bool = True
    data: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    outcome_unknown: bool = False


class NoRunner:
    def call(self, *args: Any, **kwargs: Any) -> Answer:
        raise AssertionError("no script may be called in this test")


@pytest.fixture
def machine(engine: DbEngine, tmp_path: Path) -> Engine:
    (tmp_path / "itrader.toml").write_text("")  # defaults only: never the machine's var/itrader.toml
    cfg = load_config(tmp_path / "itrader.toml", environ={})
    return Engine(cfg, sessionmaker(engine, expire_on_commit=False), NoRunner(), SecretBox(os.urandom(32)),
                  receipt_dir=tmp_path / "receipts")


class Venue:
    """Counts what _effect asks of the venue; reconcile answers `seen`."""

    def __init__(self, seen: dict[str, Any] | bool | None = False) -> None:
        self.seen, self.performed, self.asked = seen, 0, 0

    def perform(self) -> Answer:
        self.performed += 1
        return Answer(data={"ad_id": "1"})

    def reconcile(self) -> dict[str, Any] | bool | None:
        self.asked += 1
        return self.seen


def _intent(machine: Engine, status: str, age: timedelta, queued: bool = False) -> int:
    with machine.sessions.begin() as s:
        order = make_order(s, "ACCEPTED")
        row, _ = record_intent(s, "ad_create", f"order:{order.id}:ad:0", order, {"token": "T"}, queued=queued)
        row.status = status
        row.updated_at = engine_mod.utcnow() - age
        return order.id


def _status(machine: Engine, order_id: int) -> str:
    with machine.sessions() as s:
        return s.scalar(select(SideEffect.status).where(SideEffect.order_id == order_id))


@pytest.mark.parametrize("status", ["intended", "unknown"])
def test_a_call_that_may_be_in_flight_is_neither_repeated_nor_reconciled(machine: Engine, status: str) -> None:
    order_id = _intent(machine, status, timedelta(seconds=1))
    venue = Venue()
    result = machine._effect(order_id, "ad_create", f"order:{order_id}:ad:0", {}, venue.perform, venue.reconcile)
    assert result == ("unknown", None)
    assert (venue.asked, venue.performed) == (0, 0)
    assert _status(machine, order_id) == status


def test_after_the_grace_the_venue_is_asked_and_a_landed_call_is_not_repeated(machine: Engine) -> None:
    order_id = _intent(machine, "intended", IN_FLIGHT_GRACE + timedelta(seconds=1))
    venue = Venue(seen={"ad_id": "42"})
    status, data = machine._effect(order_id, "ad_create", f"order:{order_id}:ad:0", {}, venue.perform,
                                   venue.reconcile)
    assert (status, data, venue.asked, venue.performed) == ("done", {"ad_id": "42"}, 1, 0)
    assert _status(machine, order_id) == "done"


def test_a_call_known_not_to_have_landed_is_performed_once(machine: Engine) -> None:
    order_id = _intent(machine, "unknown", IN_FLIGHT_GRACE + timedelta(seconds=1))
    venue = Venue(seen=False)
    assert machine._effect(order_id, "ad_create", f"order:{order_id}:ad:0", {}, venue.perform,
                           venue.reconcile)[0] == "done"
    assert (venue.asked, venue.performed) == (1, 1)


def test_an_operator_queued_effect_is_carried_out_without_waiting(machine: Engine) -> None:
    order_id = _intent(machine, "queued", timedelta(0), queued=True)
    venue = Venue(seen=False)
    assert machine._effect(order_id, "ad_create", f"order:{order_id}:ad:0", {}, venue.perform,
                           venue.reconcile)[0] == "done"
    assert (venue.asked, venue.performed) == (1, 1)


def test_a_reattempt_counts_as_in_flight_from_its_own_start(machine: Engine) -> None:
    """A re-attempt that crashes before its outcome is recorded must get the same protection as a first one."""
    order_id = _intent(machine, "unknown", IN_FLIGHT_GRACE + timedelta(seconds=1))
    target = f"order:{order_id}:ad:0"

    def crash() -> Answer:
        raise KeyboardInterrupt  # the process dies mid-call: no outcome is written

    with pytest.raises(KeyboardInterrupt):
        machine._effect(order_id, "ad_create", target, {}, crash, Venue(seen=False).reconcile)
    assert _status(machine, order_id) == "intended"
    venue = Venue(seen=False)
    assert machine._effect(order_id, "ad_create", target, {}, venue.perform, venue.reconcile) == ("unknown", None)
    assert (venue.asked, venue.performed) == (0, 0)


def test_settling_ad_creates_waits_while_a_create_may_still_land(machine: Engine) -> None:
    """Giving a payout up must not conclude "no ad" from an ad list read while the create is in flight."""
    order_id = _intent(machine, "intended", timedelta(seconds=1))
    assert machine._settle_ad_creates(order_id) is None


def test_queued_rows_are_only_written_by_request(session: Session) -> None:
    order = make_order(session, "CANCELLED")
    row, created = record_intent(session, "gate_cancel", "payout:x", order, queued=True)
    assert created and row.status == "queued"
    again, created_again = record_intent(session, "gate_cancel", "payout:x", order)
    assert not created_again and again.status == "queued"


class ChatVenue:
    """Stands in for the Bybit chat read: our messages on the venue, or no answer at all."""

    def __init__(self, ours: list[str] | None) -> None:
        self.ours, self.reads = ours, 0

    def get_chat(self, keys: Any, bybit_order_id: str) -> Answer:
        self.reads += 1
        if self.ours is None:
            return Answer(ok=False, error={"code": "network", "retryable": True})
        return Answer(data={"messages": [{"id": str(i), "is_ours": True, "message": t}
                                         for i, t in enumerate(self.ours)]})


def _chat_intent(machine: Engine, state: str, bybit_order_id: str, text: str, current: str | None = None) -> int:
    with machine.sessions.begin() as s:
        order = make_order(s, state, review_from="CHATTING" if state == "MANUAL_REVIEW" else None,
                           bybit_order_id=current or bybit_order_id)
        row, _ = record_intent(s, "chat_send", f"chat:{bybit_order_id}:ask:await_payment:3", order,
                               {"text": text, "account_id": 1})
        row.updated_at = engine_mod.utcnow() - IN_FLIGHT_GRACE - timedelta(seconds=1)
        return order.id


def _settle(machine: Engine, venue: ChatVenue, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.venues import BybitKeys

    monkeypatch.setattr(machine.bybit, "get_chat", venue.get_chat)
    monkeypatch.setattr(machine, "bybit_keys", lambda s, account_id: BybitKeys(account_id, "k", "s"))
    machine._settle_chat_sends()


def _outcome(machine: Engine, order_id: int) -> tuple[str, str | None]:
    with machine.sessions() as s:
        row = s.scalar(select(SideEffect).where(SideEffect.order_id == order_id))
        return row.status, (row.outcome or {}).get("code")


def test_a_message_cut_short_for_an_order_in_review_is_settled_by_reading_the_chat(
        machine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    landed = _chat_intent(machine, "MANUAL_REVIEW", "900001", "Переведите строго")
    missing = _chat_intent(machine, "MANUAL_REVIEW", "900002", "Сумма перевода")
    _settle(machine, ChatVenue(["Переведите строго на Сбербанк 79001234567"]), monkeypatch)
    assert _outcome(machine, landed) == ("done", None)
    # Not sent: failed but retryable, so a dialogue the operator resumes sends it (never from the clean-up).
    assert _outcome(machine, missing) == ("failed", "not_sent")


def test_an_unreadable_chat_is_given_up_only_when_the_order_is_over(
        machine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    over = _chat_intent(machine, "COMPLETED", "900003", "Спасибо")
    in_review = _chat_intent(machine, "MANUAL_REVIEW", "900004", "Сумма перевода")
    _settle(machine, ChatVenue(None), monkeypatch)
    assert _outcome(machine, over) == ("failed", "abandoned")
    assert _outcome(machine, in_review) == ("intended", None)


def test_the_dialogue_keeps_its_own_messages(machine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """A chatting order's current message is the dialogue's to finish; an old Bybit order's is settled."""
    current = _chat_intent(machine, "CHATTING", "900005", "Сумма перевода")
    reissued = _chat_intent(machine, "CHATTING", "900006", "Сумма перевода", current="900007")
    venue = ChatVenue([])
    _settle(machine, venue, monkeypatch)
    assert _outcome(machine, current) == ("intended", None)
    assert _outcome(machine, reissued) == ("failed", "not_sent")
    assert venue.reads == 1
