"""The state machine: properties of the TRANSITIONS data, and every (from, to) pair generated from it and
executed against both databases."""

from __future__ import annotations

from collections import deque
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import StatementError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from orchestrator.models import Ad, BybitAccount, Event, Order, SideEffect
from orchestrator.states import (
    EDGES,
    POOL_OF,
    POOLS,
    POST_APPROVAL,
    PRE_PAYMENT,
    REVIEW_APPROVE,
    REVIEW_EXITS,
    REVIEW_REJECT,
    TERMINAL,
    TRANSITIONS,
    IllegalTransition,
    State,
    VersionConflict,
    ad_target,
    is_allowed,
    payout_target,
    record_intent,
    record_outcome,
    review_approve,
    review_reject,
    transition,
)
from tests.orchestrator.conftest import make_order

S = State
HAPPY = [S.PENDING, S.ACCEPTED, S.ADVERTISED, S.BUYER_FOUND, S.CHATTING, S.PAYMENT_RECEIVED, S.VERIFIED,
         S.APPROVED, S.RELEASED, S.COMPLETED]
RANK = {s: i for i, s in enumerate(HAPPY)}
REVIEW_ORIGINS = sorted(s for s in State if S.MANUAL_REVIEW in TRANSITIONS[s])


# ---------------------------------------------------------------- the data itself

def test_table_covers_every_state_with_reasons() -> None:
    assert set(EDGES) == set(State)
    for src, edges in EDGES.items():
        assert src not in edges, f"self-loop on {src}"
        for dst, why in edges.items():
            assert isinstance(dst, State) and why.strip(), (src, dst)


def test_terminal_states_are_exactly_the_dead_ends() -> None:
    assert {s for s in State if not TRANSITIONS[s]} == TERMINAL


def test_every_state_can_still_finish() -> None:
    """From any non-terminal state (and any review origin) some path reaches a terminal state."""
    for start in State:
        seen, todo = {(start, None)}, deque([(start, None)])
        reached = start in TERMINAL
        while todo and not reached:
            cur, origin = todo.popleft()
            for nxt in TRANSITIONS[cur]:
                if cur is S.MANUAL_REVIEW and nxt not in REVIEW_EXITS.get(origin, ()):
                    continue
                nxt_origin = cur if nxt is S.MANUAL_REVIEW else None
                if nxt in TERMINAL:
                    reached = True
                if (nxt, nxt_origin) not in seen:
                    seen.add((nxt, nxt_origin))
                    todo.append((nxt, nxt_origin))
        assert reached or start is S.MANUAL_REVIEW, start


def test_happy_path_is_legal() -> None:
    for a, b in zip(HAPPY, HAPPY[1:], strict=False):
        assert is_allowed(a, b), (a, b)


def test_money_safety_properties() -> None:
    # Gate approved: only release (or a person) comes next; after release only completion (or a person).
    assert TRANSITIONS[S.APPROVED] == {S.RELEASED, S.MANUAL_REVIEW}
    assert TRANSITIONS[S.RELEASED] == {S.COMPLETED, S.MANUAL_REVIEW}
    # RELEASED is reachable only from APPROVED (or an operator resuming a review that began in RELEASED).
    assert {s for s in State if S.RELEASED in TRANSITIONS[s]} == {S.APPROVED, S.MANUAL_REVIEW}
    assert {s for s in State if S.APPROVED in TRANSITIONS[s]} == {S.VERIFIED, S.MANUAL_REVIEW}
    # Once the buyer may have paid, no automatic exit drops the order.
    for src in set(State) - PRE_PAYMENT - TERMINAL - {S.MANUAL_REVIEW}:
        assert not TRANSITIONS[src] & {S.CANCELLED, S.EXPIRED, S.FAILED}, src
        assert not TRANSITIONS[src] & PRE_PAYMENT, f"{src} goes backwards"
    # Re-issue edges (back to ACCEPTED) exist only before a payment was claimed.
    assert {s for s in State if S.ACCEPTED in TRANSITIONS[s]} - {S.MANUAL_REVIEW} <= PRE_PAYMENT
    # Every non-terminal state can escalate to a person.
    for src in set(State) - TERMINAL - {S.MANUAL_REVIEW}:
        assert S.MANUAL_REVIEW in TRANSITIONS[src], src


def test_review_exits_never_skip_a_gate() -> None:
    assert set(REVIEW_APPROVE) == set(REVIEW_REJECT) == set(REVIEW_ORIGINS)
    union = set().union(*REVIEW_EXITS.values())
    assert union == set(TRANSITIONS[S.MANUAL_REVIEW]), "every MANUAL_REVIEW edge is used by some origin"
    for origin, target in REVIEW_APPROVE.items():
        # An operator may resume where the order was, or confirm a claimed payment (-> VERIFIED, which
        # still needs the Gate approve); never jump to APPROVED/RELEASED from an earlier state.
        if origin is S.PAYMENT_RECEIVED:
            assert target is S.VERIFIED
        else:
            assert target is origin
    for origin in POST_APPROVAL:
        assert REVIEW_REJECT[origin] is None, "rejecting after Gate approval would keep the buyer's money"


def test_pools_partition_the_states() -> None:
    assert sorted(s for states in POOLS.values() for s in states) == sorted(State)
    assert set(POOL_OF) == set(State)
    assert POOLS["review"] == {S.MANUAL_REVIEW} and POOLS["completed"] == {S.COMPLETED}


# ---------------------------------------------------------------- every pair, on both databases

def _expected(src: State, dst: State, origin: State | None) -> bool:
    if dst not in EDGES[src]:
        return False
    return src is not S.MANUAL_REVIEW or dst in REVIEW_EXITS[origin]


CASES = [(src, None) for src in State if src is not S.MANUAL_REVIEW] + \
        [(S.MANUAL_REVIEW, origin) for origin in REVIEW_ORIGINS]


@pytest.mark.parametrize(("src", "origin"), CASES, ids=[f"{s}" + (f"<-{o}" if o else "") for s, o in CASES])
def test_every_pair_from(session: Session, src: State, origin: State | None) -> None:
    for dst in State:
        order = make_order(session, src.value, review_from=origin.value if origin else None)
        session.commit()
        version = order.version
        legal = _expected(src, dst, origin)
        assert is_allowed(src, dst, origin) is legal
        if legal:
            transition(session, order, dst, reason=f"test {src}->{dst}", data={"n": Decimal("1.5")})
            session.commit()
            session.expire_all()
            fresh = session.get(Order, order.id)
            assert fresh.state == dst.value and fresh.version == version + 1
            assert fresh.review_from == (src.value if dst is S.MANUAL_REVIEW else None)
            ev = session.scalars(select(Event).where(Event.order_id == order.id)).one()
            assert (ev.kind, ev.from_state, ev.to_state) == ("transition", src.value, dst.value)
            assert ev.data == {"n": "1.5"}
        else:
            with pytest.raises(IllegalTransition):
                transition(session, order, dst, reason="should fail")
            session.commit()
            session.expire_all()
            assert session.get(Order, order.id).state == src.value
            assert session.scalar(select(func.count()).where(Event.order_id == order.id)) == 0


def test_review_without_origin_cannot_leave(session: Session) -> None:
    order = make_order(session, "MANUAL_REVIEW", review_from=None)
    for dst in State:
        with pytest.raises(IllegalTransition):
            transition(session, order, dst, reason="x")


# ---------------------------------------------------------------- atomicity and concurrency

def test_rollback_leaves_neither_state_nor_event(session: Session) -> None:
    order = make_order(session, "PENDING")
    session.commit()
    transition(session, order, S.ACCEPTED, reason="accepted")
    session.rollback()
    session.expire_all()
    assert session.get(Order, order.id).state == "PENDING"
    assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_failing_event_insert_undoes_the_state_change(session: Session) -> None:
    order = make_order(session, "PENDING")
    session.commit()
    with pytest.raises(StatementError):
        transition(session, order, S.ACCEPTED, reason="accepted", data={"bad": object()})
    session.rollback()
    session.expire_all()
    assert session.get(Order, order.id).state == "PENDING"
    assert session.scalar(select(func.count()).select_from(Event)) == 0


def test_optimistic_version_conflict(engine, session: Session) -> None:  # type: ignore[no-untyped-def]
    order = make_order(session, "ADVERTISED")
    session.commit()
    with Session(engine, expire_on_commit=False) as other:
        mine = other.get(Order, order.id)  # loaded at version 1 by a second worker
        transition(session, order, S.BUYER_FOUND, reason="linked")
        session.commit()
        with pytest.raises(VersionConflict):
            transition(other, mine, S.ACCEPTED, reason="stale view: ad went offline")
        other.rollback()
        other.expire_all()
        assert other.get(Order, order.id).state == "BUYER_FOUND"
        # Plain ORM writes carry the version check too.
        stale = other.get(Order, order.id)
        transition(session, order, S.CHATTING, reason="asked")
        session.commit()
        stale.chat_step = 5
        with pytest.raises(StaleDataError):
            other.commit()
    assert session.scalar(select(func.count()).where(Event.order_id == order.id)) == 2


# ---------------------------------------------------------------- intents

def test_record_intent_is_idempotent_and_outcome_is_recorded(session: Session) -> None:
    order = make_order(session, "VERIFIED")
    effect, created = record_intent(session, "gate_approve", payout_target(order.payout_id), order,
                                    {"payout": order.payout_id})
    session.commit()
    assert created and effect.status == "intended"
    again, created = record_intent(session, "gate_approve", payout_target(order.payout_id), order)
    assert not created and again.id == effect.id
    # The same target under another kind is a different side effect.
    _, created = record_intent(session, "gate_cancel", payout_target(order.payout_id), order)
    assert created
    record_outcome(session, effect, "done", {"status": 7})
    session.commit()
    session.expire_all()
    row = session.get(SideEffect, effect.id)
    assert row.status == "done" and row.completed_at is not None and row.outcome == {"status": 7}
    with pytest.raises(ValueError):
        record_outcome(session, row, "failed")
    with pytest.raises(ValueError):
        record_intent(session, "approve_everything", "x", order)
    kinds = session.scalars(select(Event.kind).where(Event.order_id == order.id).order_by(Event.id)).all()
    assert kinds == ["intent", "intent", "outcome"]


def test_intent_as_first_statement_still_rolls_back(engine) -> None:  # type: ignore[no-untyped-def]
    """The savepoint inside record_intent must stay inside the caller's transaction (SQLite pitfall)."""
    with Session(engine) as s:
        payout_id = make_order(s, "VERIFIED").payout_id
        s.commit()
    with Session(engine) as s:
        record_intent(s, "gate_approve", payout_target(payout_id), None)
        s.rollback()
        assert s.scalar(select(func.count()).select_from(SideEffect)) == 0


# ---------------------------------------------------------------- operator decisions

def test_review_approve_confirms_payment_but_release_gate_remains(session: Session) -> None:
    order = make_order(session, "PAYMENT_RECEIVED")
    transition(session, order, S.MANUAL_REVIEW, reason="chat-only receipt")
    review_approve(session, order, by="alice", reason="checked the bank statement")
    session.commit()
    assert order.state == "VERIFIED" and order.operator_approved_by == "alice"
    assert order.review_from is None
    # From VERIFIED the machine still needs the Gate approve; nothing may jump to RELEASED.
    assert not is_allowed(order.state, S.RELEASED)
    ev = session.scalars(select(Event).where(Event.order_id == order.id).order_by(Event.id.desc())).first()
    assert ev.actor == "operator:alice" and ev.to_state == "VERIFIED"


def test_review_reject_cancels_and_queues_cleanup(session: Session) -> None:
    order = make_order(session, "ADVERTISED")
    acc = BybitAccount(name="rev", api_key="k")
    session.add(acc)
    session.flush()
    session.add(Ad(bybit_item_id="77", order_id=order.id, bybit_account_id=acc.id, payment_kind="sbp",
                   price=Decimal("80"), quantity=Decimal("10"), status="live"))
    transition(session, order, S.MANUAL_REVIEW, reason="ad state disagrees")
    review_reject(session, order, by="bob", reason="suspicious")
    session.commit()
    assert order.state == "CANCELLED"
    intents = {(e.kind, e.target_key, e.status) for e in session.scalars(select(SideEffect))}
    assert intents == {("gate_cancel", payout_target(order.payout_id), "queued"),
                       ("ad_cancel", ad_target("77"), "queued")}


def test_review_reject_refused_after_gate_approval(session: Session) -> None:
    order = make_order(session, "APPROVED")
    transition(session, order, S.MANUAL_REVIEW, reason="order not at 20 after delay")
    session.commit()
    with pytest.raises(IllegalTransition, match="after Gate approval"):
        review_reject(session, order, by="bob", reason="no")
    review_approve(session, order, by="bob")
    assert order.state == "APPROVED"
    with pytest.raises(IllegalTransition):
        review_approve(session, order, by="bob")  # not in review any more
