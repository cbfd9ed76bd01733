"""The order state machine as explicit data, plus the only sanctioned ways to move an order and to record
side-effect intents.

Why data and not code scattered over the loop: the earlier systems lost money through ad-hoc status writes
(a cleanup job marked completed deals as cancelled; assets were released without a Gate approve).  Every
edge below carries the reason it exists, tests are generated from this table, and `transition()` refuses
anything the table does not list.

Money-safety principles behind the table:
* Until the buyer may have paid (PENDING..CHATTING) an order can be re-issued, cancelled, expired or failed.
* From PAYMENT_RECEIVED on, the buyer may have sent real roubles to the payout recipient: no automatic
  terminal exit other than COMPLETED exists; every problem goes to MANUAL_REVIEW.
* APPROVED (Gate accepted the receipt) only moves to RELEASED; RELEASED only to COMPLETED.
* MANUAL_REVIEW exits are operator decisions and depend on the state the order was in when it entered
  review (`orders.review_from`): an operator can resume it, or reject it only while Gate has not approved.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from orchestrator.models import Order, SideEffect


class State(StrEnum):
    PENDING = "PENDING"                    # payout offered on Gate (status 4); nothing done yet
    ACCEPTED = "ACCEPTED"                  # payout taken with /show (status 5); no live ad
    ADVERTISED = "ADVERTISED"              # a live Bybit SELL ad exists for it
    BUYER_FOUND = "BUYER_FOUND"            # a Bybit order on our ad is linked to this payout
    CHATTING = "CHATTING"                  # the chat script has started
    PAYMENT_RECEIVED = "PAYMENT_RECEIVED"  # buyer marked paid and/or a receipt arrived: money may have moved
    VERIFIED = "VERIFIED"                  # a receipt passed every gating check (or an operator confirmed it)
    APPROVED = "APPROVED"                  # Gate approve with the receipt confirmed by a re-read
    RELEASED = "RELEASED"                  # Bybit order/finish succeeded
    COMPLETED = "COMPLETED"
    MANUAL_REVIEW = "MANUAL_REVIEW"
    CANCELLED = "CANCELLED"
    EXPIRED = "EXPIRED"
    FAILED = "FAILED"


S = State

TERMINAL: frozenset[State] = frozenset({S.COMPLETED, S.CANCELLED, S.EXPIRED, S.FAILED})

# States in which the buyer cannot have paid yet (they only learn the requisites in CHATTING, and a payment
# is only asserted in PAYMENT_RECEIVED): abandoning the order here cannot strand a buyer's money.
PRE_PAYMENT: frozenset[State] = frozenset({S.PENDING, S.ACCEPTED, S.ADVERTISED, S.BUYER_FOUND, S.CHATTING})

# Gate has approved the payout with our receipt: the only way forward is to release the USDT.
POST_APPROVAL: frozenset[State] = frozenset({S.APPROVED, S.RELEASED})

# from -> {to: why this edge exists}.  The reasons are documentation, shown by `itrader` and the tests.
EDGES: dict[State, dict[State, str]] = {
    S.PENDING: {
        S.ACCEPTED: "payout taken on Gate with /show (never /approve) and re-read",
        S.CANCELLED: "declined before accepting (operator said no in manual mode, or limits); Gate untouched",
        S.EXPIRED: "the offer vanished from Gate before we took it",
        S.MANUAL_REVIEW: "unexpected Gate answer while accepting (e.g. status 6)",
        S.FAILED: "unrecoverable error before any side effect",
    },
    S.ACCEPTED: {
        S.ADVERTISED: "Bybit ad created and its itemId stored",
        S.CANCELLED: "payout cancelled on Gate (/cancel): no rate, limits, or re-issue attempts exhausted",
        S.EXPIRED: "expired_at passed before an ad could be made",
        S.MANUAL_REVIEW: "ad blocked by needSecurityRisk, or an ad create with unknown outcome",
        S.FAILED: "unrecoverable error; the loop records a gate_cancel intent first",
    },
    S.ADVERTISED: {
        S.BUYER_FOUND: "a Bybit order on our ad (order.itemId == ad.itemId) was linked",
        S.ACCEPTED: "the ad went offline without an order; a fresh ad may be made (attempt counter grows)",
        S.CANCELLED: "no buyer in time: ad removed, payout cancelled on Gate",
        S.EXPIRED: "Gate expired_at passed with the ad still unanswered",
        S.MANUAL_REVIEW: "ad state on Bybit disagrees with ours",
        S.FAILED: "unrecoverable error; ad_cancel and gate_cancel intents recorded first",
    },
    S.BUYER_FOUND: {
        S.CHATTING: "first chat message (the questions) sent",
        S.ACCEPTED: "buyer cancelled the Bybit order before chatting: re-issue a new ad",
        S.CANCELLED: "buyer cancelled and no time is left to re-issue: payout cancelled on Gate",
        S.EXPIRED: "Gate expired_at passed",
        S.MANUAL_REVIEW: "order marked paid before we sent requisites, appeal (status 30), or link doubt",
        S.FAILED: "unrecoverable error before the buyer knew where to pay",
    },
    S.CHATTING: {
        S.PAYMENT_RECEIVED: "buyer marked the order paid (Bybit 20) or a receipt for it arrived",
        S.ACCEPTED: "buyer said no / cancelled: re-issue while time remains before expired_at",
        S.CANCELLED: "buyer said no / cancelled and no time remains: payout cancelled on Gate",
        S.EXPIRED: "Gate expired_at passed with no payment claimed",
        S.MANUAL_REVIEW: "appeal, unclear buyer behaviour, or a chat-only/OCR receipt",
        S.FAILED: "stuck with no payment claimed (no activity for the stuck timeout)",
    },
    S.PAYMENT_RECEIVED: {
        S.VERIFIED: "a mail+DKIM receipt passed every gating check (receipts.md section 9)",
        S.MANUAL_REVIEW: "receipt missing, failed a check, low-trust source, caps, or anything unexpected",
    },
    S.VERIFIED: {
        S.APPROVED: "Gate /approve with the receipt succeeded and a re-read confirmed it",
        S.MANUAL_REVIEW: "Gate approve refused or unconfirmed; never release without it",
    },
    S.APPROVED: {
        S.RELEASED: "release delay elapsed, Bybit order re-read at status 20, order/finish succeeded",
        S.MANUAL_REVIEW: "order not at 20 after the delay (appeal, cancel) or release outcome unknown",
    },
    S.RELEASED: {
        S.COMPLETED: "Bybit order re-read at status 50 (finished)",
        S.MANUAL_REVIEW: "order did not reach 50",
    },
    S.MANUAL_REVIEW: {
        # Operator-only edges; which of them applies depends on REVIEW_EXITS[order.review_from].
        S.PENDING: "operator: resume (review entered from PENDING)",
        S.ACCEPTED: "operator: resume / re-issue (review entered before a payment was claimed)",
        S.ADVERTISED: "operator: resume (review entered from ADVERTISED)",
        S.BUYER_FOUND: "operator: resume (review entered from BUYER_FOUND)",
        S.CHATTING: "operator: resume (review entered from CHATTING)",
        S.VERIFIED: "operator approve: receipt confirmed by a person; Gate approve, delay and Bybit checks "
                    "still run before any release",
        S.APPROVED: "operator: resume the release gate (delay + Bybit status re-check) after Gate approval",
        S.RELEASED: "operator: resume completion checks after a release",
        S.CANCELLED: "operator reject: nothing released; Gate cancel and ad removal recorded as intents",
    },
    S.COMPLETED: {},
    S.CANCELLED: {},
    S.EXPIRED: {},
    S.FAILED: {},
}

TRANSITIONS: dict[State, frozenset[State]] = {s: frozenset(t) for s, t in EDGES.items()}

# review_from -> what an operator may do with the order.  `approve` is one target; `reject` may be None
# (forbidden: once Gate approved, refusing to release would keep the buyer's payment - resolve it forward).
REVIEW_APPROVE: dict[State, State] = {
    S.PENDING: S.PENDING,
    S.ACCEPTED: S.ACCEPTED,
    S.ADVERTISED: S.ADVERTISED,
    S.BUYER_FOUND: S.BUYER_FOUND,
    S.CHATTING: S.CHATTING,
    S.PAYMENT_RECEIVED: S.VERIFIED,
    S.VERIFIED: S.VERIFIED,
    S.APPROVED: S.APPROVED,
    S.RELEASED: S.RELEASED,
}
REVIEW_REJECT: dict[State, State | None] = {
    **{s: S.CANCELLED for s in (S.PENDING, S.ACCEPTED, S.ADVERTISED, S.BUYER_FOUND, S.CHATTING,
                                S.PAYMENT_RECEIVED, S.VERIFIED)},
    S.APPROVED: None,
    S.RELEASED: None,
}
# Every exit out of MANUAL_REVIEW allowed for a given review_from.
REVIEW_EXITS: dict[State, frozenset[State]] = {
    src: frozenset({REVIEW_APPROVE[src]} | ({REVIEW_REJECT[src]} if REVIEW_REJECT[src] else set()))
    for src in REVIEW_APPROVE
}

POOLS: dict[str, frozenset[State]] = {
    "pending": frozenset({S.PENDING}),
    "active": frozenset({S.ACCEPTED, S.ADVERTISED, S.BUYER_FOUND}),
    "chat": frozenset({S.CHATTING}),
    "verification": frozenset({S.PAYMENT_RECEIVED, S.VERIFIED, S.APPROVED, S.RELEASED}),
    "review": frozenset({S.MANUAL_REVIEW}),
    "completed": frozenset({S.COMPLETED}),
    "closed": frozenset({S.CANCELLED, S.EXPIRED, S.FAILED}),
}
POOL_OF: dict[State, str] = {state: pool for pool, states in POOLS.items() for state in states}

SIDE_EFFECT_KINDS = frozenset({
    "gate_accept", "gate_approve", "gate_cancel", "gate_balance",
    "ad_create", "ad_cancel", "chat_send", "release",
})
# queued: recorded for the loop to carry out later (an operator's reject), never attempted yet;
# intended: about to be (or being) performed -- a crash leaves it so; done | failed: the venue answered;
# unknown: the call may or may not have reached the venue (timeout, crash): ask the venue before acting again.
SIDE_EFFECT_STATUSES = frozenset({"queued", "intended", "done", "failed", "unknown"})
UNRESOLVED_EFFECT_STATUSES = ("queued", "intended", "unknown")


class IllegalTransition(Exception):
    """The requested move is not in TRANSITIONS (or not allowed for this review origin)."""


class VersionConflict(Exception):
    """Someone else changed the order since it was loaded: reload and decide again."""


def is_allowed(from_state: State | str, to_state: State | str, review_from: State | str | None = None) -> bool:
    """Pure check against the data; MANUAL_REVIEW exits also need the state review was entered from."""
    src, dst = State(from_state), State(to_state)
    if dst not in TRANSITIONS[src]:
        return False
    if src is S.MANUAL_REVIEW:
        if review_from is None:
            return False
        return dst in REVIEW_EXITS.get(State(review_from), frozenset())
    return True


def _now() -> datetime:
    return datetime.now(UTC)


def transition(session: Session, order: Order, to_state: State | str, *, reason: str,
               data: Mapping[str, Any] | None = None, actor: str = "orchestrator") -> Order:
    """Move `order` to `to_state` and append the event, both in the session's current transaction.

    The UPDATE carries `WHERE id = ? AND version = ?`: if another process moved the order since we read
    it, nothing is updated and VersionConflict is raised (the caller rolls back and re-reads).  The caller
    commits; a rollback undoes the state change and the event together.
    """
    from sqlalchemy import update
    from sqlalchemy.orm.attributes import set_committed_value

    from orchestrator.models import Event, Order

    src, dst = State(order.state), State(to_state)
    if not reason or not reason.strip():
        raise ValueError("a transition needs a reason")
    if not is_allowed(src, dst, order.review_from):
        extra = f" (review entered from {order.review_from})" if src is S.MANUAL_REVIEW else ""
        raise IllegalTransition(f"order {order.id}: {src} -> {dst} is not allowed{extra}")

    session.flush()  # pending ORM changes to the order go out first (under the ORM's own version check)
    now = _now()
    values: dict[str, Any] = {"state": dst.value, "version": order.version + 1, "state_changed_at": now,
                              "updated_at": now}
    if dst is S.MANUAL_REVIEW:
        values["review_from"] = src.value
        values["review_reason"] = reason
    elif src is S.MANUAL_REVIEW:
        values["review_from"] = None
    result = session.execute(
        update(Order).where(Order.id == order.id, Order.version == order.version).values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise VersionConflict(f"order {order.id} changed concurrently (expected version {order.version})")
    for key, value in values.items():
        set_committed_value(order, key, value)
    session.add(Event(ts=now, order_id=order.id, kind="transition", from_state=src.value, to_state=dst.value,
                      actor=actor, reason=reason, data=dict(data) if data else None))
    session.flush()
    return order


def record_event(session: Session, kind: str, *, order: Order | None = None, reason: str | None = None,
                 data: Mapping[str, Any] | None = None, actor: str = "orchestrator") -> None:
    """Append a non-transition event (intent, outcome, note)."""
    from orchestrator.models import Event

    session.add(Event(ts=_now(), order_id=order.id if order is not None else None, kind=kind, actor=actor,
                      reason=reason, data=dict(data) if data else None))


def record_intent(session: Session, kind: str, target_key: str, order: Order | None,
                  request_summary: Mapping[str, Any] | None = None, *,
                  queued: bool = False) -> tuple[SideEffect, bool]:
    """Write down that we are ABOUT to perform a side effect, before performing it.

    Returns (row, created).  If the same (kind, target_key) was already intended, the existing row comes back
    with created=False, and the caller must look at its status instead of acting again: "intended" or
    "unknown" means reconcile with the venue first.  UNIQUE(kind, target_key) is the real guarantee across
    processes; the insert uses ON CONFLICT DO NOTHING so a duplicate neither raises nor poisons the
    caller's transaction (no savepoint: on SQLite a savepoint opened first would escape the transaction).
    The summary must not contain secrets (it is stored and shown to operators).

    ``queued``: the effect is only written down for the loop to perform later (status "queued"), so nothing
    can be in flight for it; the loop still asks the venue first, but without waiting out a call in flight.
    """
    from sqlalchemy import select

    from orchestrator.models import SideEffect

    if kind not in SIDE_EFFECT_KINDS:
        raise ValueError(f"unknown side-effect kind {kind!r}")
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - only the two supported back ends
        raise RuntimeError(f"record_intent: unsupported database {dialect}")
    session.flush()
    now = _now()
    stmt = insert(SideEffect).values(
        kind=kind, target_key=target_key, order_id=order.id if order is not None else None,
        status="queued" if queued else "intended",
        request=dict(request_summary) if request_summary else None, created_at=now, updated_at=now,
    ).on_conflict_do_nothing(index_elements=["kind", "target_key"]).returning(SideEffect.id)
    new_id = session.execute(stmt).scalar_one_or_none()
    row = session.execute(
        select(SideEffect).where(SideEffect.kind == kind, SideEffect.target_key == target_key)
        .execution_options(populate_existing=True)
    ).scalar_one()
    if new_id is None:
        return row, False
    record_event(session, "intent", order=order, data={"kind": kind, "target": target_key})
    return row, True


def record_outcome(session: Session, effect: SideEffect, status: str,
                   outcome: Mapping[str, Any] | None = None) -> SideEffect:
    """Store what happened to an intended side effect: done | failed | unknown (the venue must be re-read)."""
    if status not in SIDE_EFFECT_STATUSES - {"intended", "queued"}:
        raise ValueError(f"outcome status must be done, failed or unknown, not {status!r}")
    if effect.status == "done" and status != "done":
        raise ValueError(f"side effect {effect.kind}:{effect.target_key} is already done")
    now = _now()
    effect.status = status
    effect.outcome = dict(outcome) if outcome else None
    effect.updated_at = now
    if status == "done":
        effect.completed_at = now
    session.flush()
    from orchestrator.models import Event

    session.add(Event(ts=now, order_id=effect.order_id, kind="outcome", actor="orchestrator",
                      data={"kind": effect.kind, "target": effect.target_key, "status": status}))
    return effect


# ---------------------------------------------------------------- side-effect target keys
# One convention for every caller, so UNIQUE(kind, target_key) really means "this effect on this thing".

def payout_target(payout_id: int) -> str:
    """gate_accept / gate_approve / gate_cancel: our payouts.id (unique across Gate accounts)."""
    return f"payout:{payout_id}"


def ad_target(bybit_item_id: str) -> str:
    """ad_cancel: the Bybit item id."""
    return f"ad:{bybit_item_id}"


def release_target(bybit_order_id: str) -> str:
    """release: the Bybit order id - one release per Bybit order, ever."""
    return f"bybit_order:{bybit_order_id}"


# ---------------------------------------------------------------- operator decisions on MANUAL_REVIEW

def review_approve(session: Session, order: Order, *, by: str, reason: str | None = None) -> Order:
    """The operator vouches for the order (typically: "I checked the receipt, it is genuine").

    It moves the order to REVIEW_APPROVE[review_from] and nothing more: the Gate approve, its re-read,
    the release delay and the Bybit order-status re-check still happen in the loop before any release.
    operator_approved_by/at let the loop know a person confirmed the receipt (e.g. for low-trust receipts).
    """
    if State(order.state) is not S.MANUAL_REVIEW:
        raise IllegalTransition(f"order {order.id} is {order.state}, not MANUAL_REVIEW")
    src = State(order.review_from) if order.review_from else None
    if src is None or src not in REVIEW_APPROVE:
        raise IllegalTransition(f"order {order.id}: no approve path from review origin {order.review_from}")
    order.operator_approved_by = by
    order.operator_approved_at = _now()
    return transition(session, order, REVIEW_APPROVE[src], reason=reason or "operator approved",
                      data={"operator": by, "decision": "approve"}, actor=f"operator:{by}")


def review_reject(session: Session, order: Order, *, by: str, reason: str) -> Order:
    """The operator refuses the order: nothing will be released.

    Only allowed while Gate has not approved the payout (REVIEW_REJECT).  Records the clean-up as intents
    (gate_cancel for an accepted payout, ad_cancel for any live ad) in the same transaction, so the loop's
    reconciler performs them even though the order itself is now terminal.
    """
    from sqlalchemy import select

    from orchestrator.models import Ad

    if State(order.state) is not S.MANUAL_REVIEW:
        raise IllegalTransition(f"order {order.id} is {order.state}, not MANUAL_REVIEW")
    src = State(order.review_from) if order.review_from else None
    target = REVIEW_REJECT.get(src) if src else None
    if target is None:
        raise IllegalTransition(f"order {order.id}: reject is not allowed after Gate approval "
                                f"(review entered from {order.review_from}); resolve it forward")
    transition(session, order, target, reason=reason, data={"operator": by, "decision": "reject"},
               actor=f"operator:{by}")
    if src is not S.PENDING:
        record_intent(session, "gate_cancel", payout_target(order.payout_id), order,
                      {"payout_id": order.payout_id, "why": "operator reject"}, queued=True)
    for ad in session.scalars(select(Ad).where(Ad.order_id == order.id, Ad.status == "live")):
        record_intent(session, "ad_cancel", ad_target(ad.bybit_item_id), order,
                      {"item_id": ad.bybit_item_id, "why": "operator reject"}, queued=True)
    return order
