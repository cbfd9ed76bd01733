"""Operator commands: `itrader pools`, `itrader review list|approve|reject`, `itrader pause|resume`."""

from __future__ import annotations

import json
from typing import Any

import click

from orchestrator.commands.common import config_option, load, operator_name, session_scope


def pool_report(s: Any, limit: int = 20) -> dict[str, Any]:
    from sqlalchemy import func, select

    from orchestrator.models import Order, Payout
    from orchestrator.states import POOLS

    counts = dict(s.execute(select(Order.state, func.count()).group_by(Order.state)).all())
    out: dict[str, Any] = {}
    for pool, states in POOLS.items():
        names = sorted(st.value for st in states)
        rows = s.execute(
            select(Order.id, Order.state, Payout.gate_payout_id, Payout.amount_rub, Order.state_changed_at)
            .join(Payout, Payout.id == Order.payout_id).where(Order.state.in_(names))
            .order_by(Order.state_changed_at.desc()).limit(limit)
        ).all()
        out[pool] = {
            "count": sum(counts.get(n, 0) for n in names),
            "orders": [{"id": r[0], "state": r[1], "gate_payout_id": r[2],
                        "amount_rub": None if r[3] is None else str(r[3]),
                        "since": r[4].isoformat()} for r in rows],
        }
    return out


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True)
@click.option("--limit", default=20, show_default=True, help="Orders listed per pool (newest first).")
def pools(config_path: str | None, as_json: bool, limit: int) -> None:
    """Order counts per pool (pending, active, chat, verification, review, completed, closed)."""
    from orchestrator.db import is_paused

    cfg = load(config_path)
    with session_scope(cfg) as s:
        report = pool_report(s, limit)
        paused = is_paused(s)
    if as_json:
        click.echo(json.dumps({"paused": paused, "pools": report}, indent=2))
        return
    if paused:
        click.echo("PAUSED: no new work is started")
    for pool, info in report.items():
        click.echo(f"{pool:<13} {info['count']}")
        for o in info["orders"]:
            click.echo(f"    #{o['id']:<6} {o['state']:<17} payout {o['gate_payout_id']:<12} "
                       f"{o['amount_rub'] or '-':>18} RUB  since {o['since']}")


@click.group()
def review() -> None:
    """Orders waiting for a person (MANUAL_REVIEW).

    approve = you confirm the order may continue (for a payment: the receipt is genuine).  It does NOT skip
    the release gate: the Gate approve with the receipt, its re-read, the release delay and the Bybit
    order-status re-check all still run before any USDT is released.  reject = nothing is released; allowed
    only until Gate approved the payout; the Gate cancel and ad removal are queued as intents.
    """


@review.command("list")
@config_option
@click.option("--json", "as_json", is_flag=True)
def review_list(config_path: str | None, as_json: bool) -> None:
    """Orders in MANUAL_REVIEW with where they came from and why."""
    from sqlalchemy import select

    from orchestrator.models import Order, Payout
    from orchestrator.states import REVIEW_APPROVE, REVIEW_REJECT, State

    cfg = load(config_path)
    with session_scope(cfg) as s:
        rows = s.execute(select(Order, Payout).join(Payout, Payout.id == Order.payout_id)
                         .where(Order.state == State.MANUAL_REVIEW.value).order_by(Order.state_changed_at)).all()
        items = []
        for order, payout in rows:
            src = State(order.review_from) if order.review_from else None
            items.append({
                "id": order.id, "review_from": order.review_from, "reason": order.review_reason,
                "gate_payout_id": payout.gate_payout_id, "wallet": payout.wallet, "bank": payout.bank_label,
                "amount_rub": None if payout.amount_rub is None else str(payout.amount_rub),
                "bybit_order_id": order.bybit_order_id, "since": order.state_changed_at.isoformat(),
                "approve_to": REVIEW_APPROVE[src].value if src in REVIEW_APPROVE else None,
                "reject_to": (REVIEW_REJECT[src].value if src in REVIEW_REJECT and REVIEW_REJECT[src]
                              else None),
            })
    if as_json:
        click.echo(json.dumps(items, indent=2, ensure_ascii=False))
        return
    if not items:
        click.echo("nothing to review")
    for it in items:
        click.echo(f"#{it['id']} from {it['review_from']} since {it['since']}: {it['reason']}\n"
                   f"    payout {it['gate_payout_id']} {it['amount_rub'] or '-'} RUB to {it['wallet']} "
                   f"({it['bank']}), bybit order {it['bybit_order_id'] or '-'}\n"
                   f"    approve -> {it['approve_to']}   reject -> {it['reject_to'] or 'not allowed'}")


def _decide(config_path: str | None, order_id: int, by: str | None, reason: str | None, approve: bool) -> None:
    from orchestrator.models import Order
    from orchestrator.states import IllegalTransition, VersionConflict, review_approve, review_reject

    cfg = load(config_path)
    who = operator_name(by)
    with session_scope(cfg) as s:
        order = s.get(Order, order_id)
        if order is None:
            raise click.ClickException(f"no order {order_id}")
        try:
            if approve:
                review_approve(s, order, by=who, reason=reason)
            else:
                review_reject(s, order, by=who, reason=reason or "")
        except (IllegalTransition, VersionConflict) as exc:
            raise click.ClickException(str(exc)) from None
        state = order.state
    click.echo(f"order {order_id} -> {state} (by {who})")


@review.command("approve")
@config_option
@click.argument("order_id", type=int)
@click.option("--by", help="Operator name recorded in the event (default: $ITRADER_OPERATOR or $USER).")
@click.option("--reason", help="Why (recorded).")
def review_approve_cmd(config_path: str | None, order_id: int, by: str | None, reason: str | None) -> None:
    """Let a MANUAL_REVIEW order continue (release checks still apply)."""
    _decide(config_path, order_id, by, reason, approve=True)


@review.command("reject")
@config_option
@click.argument("order_id", type=int)
@click.option("--by", help="Operator name recorded in the event (default: $ITRADER_OPERATOR or $USER).")
@click.option("--reason", required=True, help="Why (recorded).")
def review_reject_cmd(config_path: str | None, order_id: int, by: str | None, reason: str) -> None:
    """Refuse a MANUAL_REVIEW order: cancel it, never release."""
    _decide(config_path, order_id, by, reason, approve=False)


def _set_pause(config_path: str | None, paused: bool, by: str | None, reason: str | None) -> None:
    from orchestrator.db import set_setting
    from orchestrator.states import record_event

    cfg = load(config_path)
    who = operator_name(by)
    with session_scope(cfg) as s:
        set_setting(s, "paused", "1" if paused else "0", by=who)
        record_event(s, "note", reason=reason or ("paused" if paused else "resumed"),
                     data={"paused": paused}, actor=f"operator:{who}")
    click.echo("paused: the orchestrator starts no new work; steps in flight finish safely" if paused
               else "resumed")


@click.command()
@config_option
@click.option("--by")
@click.option("--reason")
def pause(config_path: str | None, by: str | None, reason: str | None) -> None:
    """Stop taking new work (read by the running orchestrator every tick)."""
    _set_pause(config_path, True, by, reason)


@click.command()
@config_option
@click.option("--by")
@click.option("--reason")
def resume(config_path: str | None, by: str | None, reason: str | None) -> None:
    """Take new work again."""
    _set_pause(config_path, False, by, reason)
