"""The orchestrator's loop: every payout driven through the state machine by calling the scripts.

Shape of every money-moving step (the crash-safety contract):

1. write an intent row (``record_intent``) and COMMIT it before touching the venue;
2. call the script;
3. record the outcome and the resulting transition in ONE transaction.

A crash between 1 and 3 leaves an intent whose outcome is unknown.  Before anything is done again for the
same target, the venue is asked what really happened (``_effect``'s ``reconcile``): an ad with our token in
its remark, a payout already at status 5/7, an order already at 50.  Steps are idempotent because the
intent rows are unique per (kind, target) and the order state only moves through ``states.transition``.

Each order is handled in its own transactions; one order's failure never stops the others.  All durations
are divided by ``speed`` (only the sandbox demo sets it), so the same code runs a day or a minute.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_UP, Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from orchestrator import dialogue
from orchestrator.config import Config
from orchestrator.db import is_paused
from orchestrator.gates import Policy, ReceiptFacts, approve_gate, release_gate
from orchestrator.matching import Candidate, match_receipt
from orchestrator.models import (
    Ad,
    BybitAccount,
    ChatMessage,
    GateAccount,
    Order,
    Payout,
    Rate,
    Receipt,
    SideEffect,
)
from orchestrator.secrets import SecretBox
from orchestrator.states import (
    PRE_PAYMENT,
    TERMINAL,
    UNRESOLVED_EFFECT_STATUSES,
    State,
    VersionConflict,
    ad_target,
    payout_target,
    record_event,
    record_intent,
    record_outcome,
    release_target,
    transition,
)
from orchestrator.venues import (
    Bybit,
    BybitKeys,
    CallResult,
    Gate,
    GateSession,
    MailboxSettings,
    Receipts,
    Runner,
)

log = logging.getLogger("itrader.engine")
S = State

# Dialogue states stored in orders.chat_step (an int column): index into this tuple.
CHAT_STEPS = ("new", dialogue.START, "ask_again", "ask_again_2", "await_payment", "closed")
# The states whose step (drive_chats) reads the order's chat and finishes any message it began.
CHAT_DRIVEN = frozenset({State.BUYER_FOUND, State.CHATTING, State.PAYMENT_RECEIVED})
BYBIT_PAID, BYBIT_APPEAL, BYBIT_CANCELLED, BYBIT_FINISHED, BYBIT_WAITING = 20, 30, 40, 50, 10
# Refusals by the auth/edge layer (an expired Gate session, a Cloudflare page) say nothing about the operation,
# and a script that writes and then re-reads (gate_accept, gate_approve) can meet them AFTER its write went
# through.  Such a write is treated as "outcome unknown": the venue is asked before anything is concluded.
OUTCOME_UNCLEAR_CODES = frozenset({"session_expired", "cloudflare_block"})

# Real seconds during which an intent with no recorded outcome may still be in flight: longer than any
# write's timeout (Bybit 15 s, Gate 20 s) plus the runner's start-up bound.  Not divided by ``speed``: it
# measures real requests on real sockets, not the simulated clock.
IN_FLIGHT_GRACE = timedelta(seconds=40)


def _may_be_in_flight(last_touched: datetime) -> bool:
    """Whether a call begun at ``last_touched`` may still reach the venue.

    A worker from before a crash finishes its call after its parent died (only a process-group kill stops it),
    and a venue may act on a request the client gave up on (timeout).  Asking the venue before then could see
    nothing yet and act a second time.
    """
    return utcnow() - last_touched < IN_FLIGHT_GRACE

AD_REMARK = (
    "Перед заказом прочитайте условия. Оплата по СБП или на карту Т-Банка, без комиссии. "
    "Платите ТОЛЬКО со счёта в Т-Банке: переводы из других банков не принимаются. "
    "Банк получателя сообщим в чате — переводите строго в него. "
    "Обязательна PDF-квитанция из официального письма Т-Банка на нашу почту. "
    "Согласны — напишите в чат «+», и мы пришлём реквизиты. Код сделки: {token}"
)


def utcnow() -> datetime:
    return datetime.now(UTC)


def dec(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    return Decimal(str(value))


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    if isinstance(value, int | float) or (isinstance(value, str) and value.isdigit()):
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@dataclass
class Stats:
    ticks: int = 0
    errors: int = 0


class Engine:
    """One orchestrator: owns the database session factory and the script runner."""

    def __init__(self, config: Config, sessions: sessionmaker[Session], runner: Runner, secrets: SecretBox, *,
                 speed: float = 1.0, dkim_dns_override: dict[str, str] | None = None,
                 receipt_dir: Path | None = None) -> None:
        self.cfg = config
        self.sessions = sessions
        self.gate = Gate(runner)
        self.bybit = Bybit(runner)
        self.receipts = Receipts(runner)
        self.secrets = secrets
        self.speed = speed
        self.dkim_dns_override = dkim_dns_override
        self.receipt_dir = receipt_dir or Path("var/receipts")
        self.receipt_dir.mkdir(parents=True, exist_ok=True)
        self.stopping = False
        self.stats = Stats()
        self._last: dict[str, float] = {}
        self._gate_sessions: dict[int, GateSession] = {}
        self._bybit_keys: dict[int, BybitKeys] = {}
        self._methods: dict[int, dict[str, str]] = {}
        self._kind_turn = 0
        self.policy = Policy(per_order_cap_rub=config.limits.max_release_rub_per_order,
                             daily_cap_rub=config.limits.max_release_rub_per_day,
                             release_delay=self.dur(config.release.delay_after_approve_s))

    # -- time -------------------------------------------------------------------------------------------------
    def dur(self, seconds: float) -> timedelta:
        return timedelta(seconds=seconds / self.speed)

    def due(self, task: str, interval_s: float) -> bool:
        now = time.monotonic()
        if now - self._last.get(task, -1e9) >= interval_s / self.speed:
            self._last[task] = now
            return True
        return False

    # -- credentials (decrypted on use, kept in memory only) ------------------------------------------------------
    def gate_session(self, s: Session, account: GateAccount) -> GateSession:
        cached = self._gate_sessions.get(account.id)
        if cached is None:
            cached = GateSession(account.id, account.login, account.password(self.secrets),
                                 account.cookies(self.secrets))
            self._gate_sessions[account.id] = cached
        return cached

    def bybit_keys(self, s: Session, account_id: int) -> BybitKeys:
        cached = self._bybit_keys.get(account_id)
        if cached is None:
            account = s.get(BybitAccount, account_id)
            secret = account.api_secret(self.secrets) if account is not None else None
            if not secret:
                raise RuntimeError(f"bybit account {account_id} has no API secret stored")
            cached = BybitKeys(account.id, account.api_key, secret, account.testnet)
            self._bybit_keys[account_id] = cached
        return cached

    # -- the loop -------------------------------------------------------------------------------------------------
    def tick(self) -> None:
        iv = self.cfg.intervals
        with self.sessions() as s:
            paused = is_paused(s)
        steps: list[tuple[str, float, Callable[[], None], bool]] = [
            ("gate_new", iv.gate_new_payouts_s, self.take_payouts, True),
            ("accept", 1.0, self.accept_pending, False),
            ("ads", iv.ad_creator_s, self.advertise, True),
            ("orders", iv.bybit_orders_s, self.link_orders, False),
            ("chat", iv.chat_s, self.drive_chats, False),
            ("mail", iv.mailbox_s, self.intake_mail, False),
            ("approve", 1.0, self.approve_verified, False),
            ("release", iv.release_check_s, self.release_approved, False),
            ("complete", iv.release_check_s, self.complete_released, False),
            ("housekeeping", iv.release_check_s, self.housekeeping, False),
            ("clean_up", iv.release_check_s, self.carry_out_queued_clean_ups, False),
        ]
        for name, interval, step, is_new_work in steps:
            if is_new_work and (paused or self.stopping):
                continue
            if self.due(name, interval):
                try:
                    step()
                except Exception:
                    self.stats.errors += 1
                    log.exception("step %s failed", name)
        self.stats.ticks += 1

    def _orders(self, *states: State) -> list[int]:
        with self.sessions() as s:
            return list(s.scalars(select(Order.id).where(Order.state.in_([st.value for st in states]))
                                  .order_by(Order.id)))

    def _each(self, ids: list[int], fn: Callable[[int], None]) -> None:
        for order_id in ids:
            try:
                fn(order_id)
            except VersionConflict:
                log.warning("order %s changed concurrently; will retry", order_id)
            except Exception:
                self.stats.errors += 1
                log.exception("order %s: step failed", order_id)

    def _move(self, order_id: int, to: State, reason: str, data: dict[str, Any] | None = None,
              update: Callable[[Session, Order], None] | None = None) -> None:
        """One transaction: optional field updates, then the transition and its event."""
        with self.sessions.begin() as s:
            order = s.get(Order, order_id)
            assert order is not None
            if update:
                update(s, order)
            if State(order.state) is not to:
                transition(s, order, to, reason=reason, data=data)

    # -- side effects ----------------------------------------------------------------------------------------------
    def _effect(self, order_id: int | None, kind: str, target: str, summary: dict[str, Any],
                perform: Callable[[], CallResult], reconcile: Callable[[], dict[str, Any] | bool | None]
                ) -> tuple[str, dict[str, Any] | None]:
        """Intent first, then the call, then the outcome. Returns (status, data).

        status: "done" (data = the script's data or the reconciled/stored outcome), "failed" (data = the
        error), "unknown" (the venue could not tell; try again later, never blindly repeat).
        """
        with self.sessions.begin() as s:
            order = s.get(Order, order_id) if order_id else None
            row, created = record_intent(s, kind, target, order, summary)
            effect_id, status, outcome = row.id, row.status, dict(row.outcome or {})
            last_touched = row.updated_at
        if not created:
            if status == "done":
                return "done", outcome.get("data") or outcome
            if status == "failed" and not outcome.get("retryable"):
                return "failed", outcome
            if status in UNRESOLVED_EFFECT_STATUSES:
                if status != "queued" and _may_be_in_flight(last_touched):
                    return "unknown", None
                seen = reconcile()
                if seen is None:
                    return "unknown", None
                if seen:
                    data = seen if isinstance(seen, dict) else {}
                    with self.sessions.begin() as s:
                        record_outcome(s, s.get(SideEffect, effect_id), "done", {"data": data, "reconciled": True})
                    return "done", data
            with self.sessions.begin() as s:  # known not to have happened: perform it (again)
                row = s.get(SideEffect, effect_id)
                row.status, row.updated_at = "intended", utcnow()  # a crash from here on is in flight
        result = perform()
        unclear = result.outcome_unknown or (result.error or {}).get("code") in OUTCOME_UNCLEAR_CODES
        with self.sessions.begin() as s:
            row = s.get(SideEffect, effect_id)
            if result.ok:
                record_outcome(s, row, "done", {"data": _summary(result.data)})
            elif unclear:
                record_outcome(s, row, "unknown", {"error": result.error})
            else:
                err = result.error or {}
                record_outcome(s, row, "failed", {**err, "retryable": bool(err.get("retryable"))})
        if result.ok:
            return "done", result.data or {}
        if unclear:
            return "unknown", None
        return "failed", result.error or {}

    # -- 1. Gate: new payouts --------------------------------------------------------------------------------------
    def take_payouts(self) -> None:
        limits = self.cfg.limits
        with self.sessions() as s:
            accounts = list(s.scalars(select(GateAccount).where(GateAccount.enabled.is_(True))))
        for account in accounts:
            with self.sessions() as s:
                gs = self.gate_session(s, account)
                in_work = s.scalar(select(func.count(Order.id)).join(Payout, Payout.id == Order.payout_id)
                                   .where(Payout.gate_account_id == account.id,
                                          Order.state.notin_([t.value for t in TERMINAL]))) or 0
                since = _start_of_day()
                volume = s.scalar(select(func.coalesce(func.sum(Payout.amount_rub), 0))
                                  .where(Payout.gate_account_id == account.id, Payout.accepted_at >= since)) or 0
            room = limits.max_in_work_per_gate_account - in_work
            if room <= 0 or Decimal(volume) >= limits.daily_volume_rub:
                continue
            result = self.gate.list_payouts(gs, [4])
            self._store_cookies(account.id, gs)
            if not result.ok:
                log.warning("gate %s: list failed: %s", account.login, (result.error or {}).get("code"))
                continue
            for item in (result.data or {}).get("payouts", []):
                if room <= 0:
                    break
                if self._new_order_for(account.id, item):
                    room -= 1

    def _new_order_for(self, account_id: int, item: dict[str, Any]) -> bool:
        try:
            with self.sessions.begin() as s:
                exists = s.scalar(select(Payout.id).where(Payout.gate_account_id == account_id,
                                                          Payout.gate_payout_id == str(item["id"])))
                if exists:
                    return False
                payout = Payout(gate_account_id=account_id, gate_payout_id=str(item["id"]), status=int(item["status"]),
                                wallet=item.get("wallet"), raw=item, gate_created_at=parse_time(item.get("created_at")))
                s.add(payout)
                s.flush()
                order = Order(payout_id=payout.id, state=S.PENDING.value)
                s.add(order)
                s.flush()
                record_event(s, "note", order=order, reason="payout offered on Gate", data={"gate_id": item["id"]})
            return True
        except IntegrityError:
            return False

    def accept_pending(self) -> None:
        self._each(self._orders(S.PENDING), self._accept)

    def _accept(self, order_id: int) -> None:
        with self.sessions() as s:
            order = s.get(Order, order_id)
            payout = s.get(Payout, order.payout_id)
            gs = self.gate_session(s, s.get(GateAccount, payout.gate_account_id))
            gate_id = payout.gate_payout_id

        def reconcile() -> dict[str, Any] | bool | None:
            r = self.gate.get_payout(gs, gate_id)
            if not r.ok:
                return None
            p = r.data["payout"]
            return {"payout": p} if int(p["status"]) == 5 else False

        status, data = self._effect(order_id, "gate_accept", payout_target(payout.id),
                                    {"payout": gate_id}, lambda: self.gate.accept(gs, gate_id), reconcile)
        self._store_cookies(payout.gate_account_id, gs)
        if status == "unknown":
            return
        if status == "failed":
            if data.get("retryable"):
                return  # not performed (breaker open, rate limit): try again next tick
            self._move(order_id, S.EXPIRED, f"Gate refused the accept: {data.get('code')}", data)
            return
        p = data.get("payout") or {}
        amount = dec(p.get("amount_rub"))

        def update(s: Session, order: Order) -> None:
            pay = s.get(Payout, order.payout_id)
            pay.status = int(p.get("status", 5))
            pay.wallet = p.get("wallet") or pay.wallet
            bank = p.get("bank") or {}
            pay.bank_name, pay.bank_label = bank.get("key"), bank.get("label")
            pay.amount_rub, pay.amount_usdt = amount, dec(p.get("amount_usdt"))
            pay.course = dec(p.get("course"))
            pay.expired_at = parse_time(p.get("expired_at"))
            pay.accepted_at = utcnow()
            pay.raw = p

        self._move(order_id, S.ACCEPTED, "payout taken with /show", {"amount_rub": str(amount)}, update)
        limits = self.cfg.limits
        if amount is None or not (limits.min_amount_rub <= amount <= limits.max_amount_rub):
            self._cancel_payout(order_id, f"amount {amount} outside the configured range")

    def _store_cookies(self, account_id: int, gs: GateSession) -> None:
        """Persist refreshed Gate cookies (encrypted) so a restart keeps the session."""
        if not gs.changed:
            return
        with self.sessions.begin() as s:
            s.get(GateAccount, account_id).set_cookies(self.secrets, gs.cookies)
        gs.changed = False

    # -- 2. Bybit ads --------------------------------------------------------------------------------------------
    def advertise(self) -> None:
        self._each(self._orders(S.ACCEPTED), self._advertise)

    def _remaining(self, payout: Payout) -> timedelta:
        return (payout.expired_at - utcnow()) if payout.expired_at else timedelta(days=1)

    def _min_time_for_deal(self) -> timedelta:
        return self.dur(self.cfg.ads.payment_window_min * 60 + 10 * 60)

    def _advertise(self, order_id: int) -> None:
        with self.sessions() as s:
            order = s.get(Order, order_id)
            payout = s.get(Payout, order.payout_id)
            amount, attempt = payout.amount_rub, order.attempt
            too_late = self._remaining(payout) < self._min_time_for_deal()
        limits = self.cfg.limits
        if amount is None or not (limits.min_amount_rub <= amount <= limits.max_amount_rub):
            # Normally cancelled right after the accept; this catches a cancel that has to be retried.
            self._cancel_payout(order_id, f"amount {amount} outside the configured range")
            return
        if too_late:
            self._cancel_payout(order_id, "too little time left before Gate expiry to advertise")
            return
        target = f"order:{order_id}:ad:{attempt}"
        with self.sessions() as s:
            prior = s.scalar(select(SideEffect).where(SideEffect.kind == "ad_create", SideEffect.target_key == target))
            chosen = (prior.request or {}).get("account_id") if prior else self._free_account(s)
        if chosen is None:
            return  # every account is full: wait for a slot
        token = f"IT{order_id}A{attempt}"
        with self.sessions() as s:
            keys = self.bybit_keys(s, chosen)
        kind, payment_id = self._payment_choice(chosen, keys)
        if payment_id is None:
            return
        if prior is not None and prior.request and prior.request.get("price"):
            price = Decimal(prior.request["price"])
        else:
            price = self._price(order_id, amount)
            if price is None:
                return
        quantity = (amount / price + self.cfg.ads.quantity_buffer_usdt).quantize(Decimal("0.01"), ROUND_UP)
        ad_params = {"side": "1", "currency": "RUB", "price": format(price, "f"),
                     "quantity": format(quantity, "f"), "min_amount": format(amount, "f"),
                     "max_amount": format(amount, "f"), "payment_methods": [payment_id],
                     "remarks": AD_REMARK.format(token=token)}
        summary = {"account_id": chosen, "price": format(price, "f"), "quantity": format(quantity, "f"),
                   "kind": kind, "token": token}

        def reconcile() -> dict[str, Any] | bool | None:
            r = self.bybit.list_ads(keys)
            if not r.ok:
                return None
            for ad in r.data.get("items", []):
                if token in (ad.get("remark") or "") and ad.get("status") == 10:
                    return {"ad_id": ad["ad_id"], "reconciled": True}
            return False

        status, data = self._effect(order_id, "ad_create", target, summary,
                                    lambda: self.bybit.create_ad(keys, ad_params, self.cfg.ads.payment_window_min),
                                    reconcile)
        if status == "unknown":
            return
        if status == "failed":
            if data.get("retryable"):
                return
            self._move(order_id, S.MANUAL_REVIEW, f"ad create refused: {data.get('code')}", data)
            return

        def update(s: Session, order: Order) -> None:
            order.bybit_account_id = chosen
            s.add(Ad(bybit_item_id=str(data["ad_id"]), order_id=order_id, bybit_account_id=chosen, payment_kind=kind,
                     payment_id=payment_id, price=price, quantity=quantity, amount_rub=amount, status="live",
                     request={k: v for k, v in ad_params.items() if k != "remarks"}))

        if data.get("need_security_risk"):
            self._move(order_id, S.MANUAL_REVIEW, "Bybit asked for a security check on the new ad", data, update)
            return
        self._move(order_id, S.ADVERTISED, "ad online", {"ad_id": data["ad_id"], "price": str(price)}, update)

    def _free_account(self, s: Session) -> int | None:
        """First fit: the first enabled account with fewer live ads than the limit."""
        live = dict(s.execute(select(Ad.bybit_account_id, func.count(Ad.id)).where(Ad.status == "live")
                              .group_by(Ad.bybit_account_id)).all())
        for account_id in s.scalars(select(BybitAccount.id).where(BybitAccount.enabled.is_(True))
                                    .order_by(BybitAccount.id)):
            if live.get(account_id, 0) < self.cfg.ads.max_live_per_account:
                return account_id
        return None

    def _payment_choice(self, account_id: int, keys: BybitKeys) -> tuple[str, str | None]:
        """Alternate SBP/Tinkoff: never two unanswered live ads of one account with the same method."""
        methods = self._methods.get(account_id)
        if methods is None:
            r = self.bybit.payment_methods(keys)
            if not r.ok:
                return "", None
            methods = {}
            for m in r.data.get("methods", []):
                if m.get("kind") in ("sbp", "tinkoff") and m["kind"] not in methods:
                    methods[m["kind"]] = str(m["id"])
            self._methods[account_id] = methods
        with self.sessions() as s:
            used = set(s.scalars(select(Ad.payment_kind).where(Ad.bybit_account_id == account_id,
                                                               Ad.status == "live")))
        kinds = [k for k in self.cfg.ads.payment_kinds if k in methods]
        free = [k for k in kinds if k not in used] or kinds
        if not free:
            return "", None
        self._kind_turn += 1
        kind = free[self._kind_turn % len(free)]
        return kind, methods[kind]

    def _price(self, order_id: int, amount: Decimal) -> Decimal | None:
        r = self.bybit.rates(amount, list(self.cfg.pricing.rules))
        if not r.ok:
            log.warning("order %s: no rate (%s); the payout waits, never a made-up price", order_id,
                        (r.error or {}).get("code"))
            return None
        pricing = r.data["pricing"]
        price = Decimal(str(r.data["ad_price"]))
        with self.sessions.begin() as s:
            s.add(Rate(order_id=order_id, rule=str(pricing.get("rule")), page=int(pricing.get("page", 0)),
                       ad_index=int(pricing.get("ad_index", 0)),
                       raw_price=Decimal(str(pricing.get("raw_price", price))), result=price, amount_rub=amount,
                       data=pricing))
        return price

    # -- 3. Bybit orders: link, take the ad down -----------------------------------------------------------------
    def link_orders(self) -> None:
        with self.sessions() as s:
            accounts = sorted(set(s.scalars(select(Ad.bybit_account_id).where(Ad.status == "live"))))
        for account_id in accounts:
            with self.sessions() as s:
                keys = self.bybit_keys(s, account_id)
            r = self.bybit.pending_orders(keys)
            if not r.ok:
                continue
            for item in r.data.get("items", []):
                item_id = item.get("item_id")
                if not item_id:
                    detail = self.bybit.get_order(keys, item["order_id"])
                    item_id = detail.data.get("item_id") if detail.ok else None
                if item_id:
                    self._link(account_id, str(item_id), item)
        self._each(self._orders(S.BUYER_FOUND, S.CHATTING, S.ADVERTISED), self._take_down_taken_ads)

    def _link(self, account_id: int, item_id: str, item: dict[str, Any]) -> None:
        with self.sessions() as s:
            ad = s.scalar(select(Ad).where(Ad.bybit_item_id == item_id))
            if ad is None or ad.status != "live":
                return
            order = s.get(Order, ad.order_id)
            if State(order.state) is not S.ADVERTISED:
                return
            order_id = order.id

        def update(s: Session, order: Order) -> None:
            order.bybit_order_id = str(item["order_id"])
            order.buyer_user_id = str(item.get("target_user_id") or "") or None
            order.chat_step = 0
            s.scalar(select(Ad).where(Ad.bybit_item_id == item_id)).status = "taken"

        self._move(order_id, S.BUYER_FOUND, "buyer opened an order on our ad",
                   {"bybit_order_id": item["order_id"], "ad_id": item_id}, update)

    def _take_down_taken_ads(self, order_id: int) -> None:
        """Once an order exists the ad must not take a second buyer: remove it (one ad, one order)."""
        with self.sessions() as s:
            ads = list(s.scalars(select(Ad).where(Ad.order_id == order_id, Ad.status == "taken")))
            keys = {ad.id: self.bybit_keys(s, ad.bybit_account_id) for ad in ads}
        for ad in ads:
            self._remove_ad(ad.id, ad.bybit_item_id, keys[ad.id], order_id, final_status="removed")

    def _remove_ad(self, ad_row_id: int, item_id: str, keys: BybitKeys, order_id: int, final_status: str) -> bool:
        def reconcile() -> dict[str, Any] | bool | None:
            r = self.bybit.get_ad(keys, item_id)
            if not r.ok:
                return None
            return {"status": r.data.get("status")} if r.data.get("status") != 10 else False

        status, data = self._effect(order_id, "ad_cancel", ad_target(item_id), {"ad_id": item_id},
                                    lambda: self.bybit.cancel_ad(keys, item_id), reconcile)
        if status == "failed":
            # Already offline/sold out on the venue counts as removed; anything else is logged and retried.
            r = self.bybit.get_ad(keys, item_id)
            if not (r.ok and r.data.get("status") != 10):
                log.warning("ad %s: cancel failed: %s", item_id, data.get("code"))
                return False
        if status == "unknown":
            return False
        with self.sessions.begin() as s:
            s.get(Ad, ad_row_id).status = final_status
        return True

    # -- 4. Chat, Bybit order status -------------------------------------------------------------------------------
    def drive_chats(self) -> None:
        self._each(self._orders(*CHAT_DRIVEN), self._chat)

    def _chat(self, order_id: int) -> None:
        with self.sessions() as s:
            order = s.get(Order, order_id)
            payout = s.get(Payout, order.payout_id)
            keys = self.bybit_keys(s, order.bybit_account_id)
            bybit_order_id, state, step = order.bybit_order_id, State(order.state), CHAT_STEPS[order.chat_step]
            requisites_sent = order.requisites_sent_at is not None
        r = self.bybit.get_order(keys, bybit_order_id)
        if not r.ok:
            return
        bstatus = int(r.data["status"])
        # A reply's messages already partly sent (a crash between two of them): finish them before anything else.
        resuming = state is S.CHATTING and self._reply_started(bybit_order_id, step)
        if bstatus == BYBIT_APPEAL:
            self._move(order_id, S.MANUAL_REVIEW, "buyer opened an appeal on Bybit", {"bybit_status": bstatus})
            return
        if bstatus == BYBIT_CANCELLED:
            if state is S.PAYMENT_RECEIVED:
                self._move(order_id, S.MANUAL_REVIEW, "Bybit order cancelled after a payment was claimed")
            else:
                self._reissue_or_cancel(order_id, "Bybit order cancelled or payment window lapsed")
            return
        if bstatus == BYBIT_PAID and state is not S.PAYMENT_RECEIVED:
            if requisites_sent:
                self._move(order_id, S.PAYMENT_RECEIVED, "buyer marked the order paid", {"bybit_status": 20})
                return
            if not (resuming and self._reply_started(bybit_order_id, step, "await_payment")):
                self._move(order_id, S.MANUAL_REVIEW, "order marked paid before we sent requisites")
                return
            # The buyer paid on the part of the requisites that went out before a crash: send the rest (below);
            # the next tick sees the requisites sent and takes the payment claim.
        if bstatus not in (BYBIT_WAITING, BYBIT_PAID):
            self._move(order_id, S.MANUAL_REVIEW, f"unexpected Bybit order status {bstatus}")
            return
        if state is S.BUYER_FOUND:
            if self._send(order_id, keys, bybit_order_id, "question", [dialogue.question()]):
                self._move(order_id, S.CHATTING, "questions sent",
                           update=lambda s, o: setattr(o, "chat_step", CHAT_STEPS.index(dialogue.START)))
            return
        if state is S.CHATTING and step in dialogue.WAITING_FOR_ANSWER:
            reply = self._next_reply(order_id, keys, bybit_order_id, resume=resuming)
            if reply is None:
                return
            message_id, text = reply
            label = dialogue.classify(text)
            plan = dialogue.next_step(step, label)
            assert plan is not None
            messages: list[str] = []
            for kind in plan.send:
                if kind == "requisites":
                    messages += dialogue.requisites(
                        wallet=payout.wallet, bank_label=payout.bank_label or payout.bank_name or "",
                        amount=payout.amount_rub, receipt_email=self.cfg.mailbox.receipt_address or "")
                elif kind == "question_repeat":
                    messages.append(dialogue.question(repeat=True))
                else:
                    messages.append(dialogue.render(kind))
            if not self._send(order_id, keys, bybit_order_id, f"{step}:{plan.next_state}", messages):
                return

            def update(s: Session, order: Order) -> None:
                order.chat_step = CHAT_STEPS.index(plan.next_state)
                if plan.outcome == "paying":
                    order.requisites_sent_at = utcnow()
                msg = s.scalar(select(ChatMessage).where(ChatMessage.order_id == order_id,
                                                         ChatMessage.bybit_message_id == message_id))
                msg.chat_step = CHAT_STEPS.index(step)

            with self.sessions.begin() as s:
                order = s.get(Order, order_id)
                update(s, order)
                record_event(s, "note", order=order, reason=f"buyer answered {label}", data={"step": step})
            if plan.outcome == "refused":
                self._reissue_or_cancel(order_id, "buyer refused the terms")

    def _reply_started(self, bybit_order_id: str, step: str, next_state: str = "") -> bool:
        """Whether an answer to the reply awaited at ``step`` (leading to ``next_state``, if given) was begun:
        ``_send`` labels those messages' intents "chat:<order>:<step>:<next state>:<i>"."""
        prefix = f"chat:{bybit_order_id}:{step}:{next_state + ':' if next_state else ''}"
        with self.sessions() as s:
            return any(key.startswith(prefix) for key in s.scalars(select(SideEffect.target_key).where(
                SideEffect.kind == "chat_send", SideEffect.target_key.startswith(f"chat:{bybit_order_id}:"))))

    def _next_reply(self, order_id: int, keys: BybitKeys, bybit_order_id: str,
                    resume: bool = False) -> tuple[str, str] | None:
        """Store new buyer messages; return the oldest unconsumed text reply sent after our last message.

        ``resume``: our answer to that reply was cut short by a crash, so our last message is part of the
        answer itself and must not hide the reply it answers.
        """
        r = self.bybit.get_chat(keys, bybit_order_id)
        if not r.ok:
            return None
        with self.sessions.begin() as s:
            known = set(s.scalars(select(ChatMessage.bybit_message_id).where(ChatMessage.order_id == order_id)))
            last_out = s.scalar(select(func.max(ChatMessage.sent_at)).where(ChatMessage.order_id == order_id,
                                                                            ChatMessage.direction == "out"))
            for m in sorted(r.data.get("messages", []), key=lambda m: str(m.get("created_at") or "")):
                if m.get("is_ours") or m.get("is_system") or str(m["id"]) in known:
                    continue
                s.add(ChatMessage(order_id=order_id, bybit_message_id=str(m["id"]), direction="in",
                                  text=m.get("message"), content_type=m.get("content_type") or "str",
                                  sent_at=parse_time(m.get("created_at")), raw=m))
            s.flush()
            pending = s.scalars(select(ChatMessage).where(
                ChatMessage.order_id == order_id, ChatMessage.direction == "in", ChatMessage.chat_step.is_(None),
                ChatMessage.content_type == "str").order_by(ChatMessage.sent_at, ChatMessage.id)).all()
            for msg in pending:
                if resume or last_out is None or (msg.sent_at and msg.sent_at >= last_out - timedelta(seconds=1)):
                    return msg.bybit_message_id, msg.text or ""
        return None

    def _send(self, order_id: int, keys: BybitKeys, bybit_order_id: str, label: str, texts: list[str]) -> bool:
        """Each message its own intent (a crash never repeats a sent message); msgUuid derived from it."""
        for i, text in enumerate(texts):
            target = f"chat:{bybit_order_id}:{label}:{i}"
            msg_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"itrader:{target}"))

            def reconcile(text: str = text) -> dict[str, Any] | bool | None:
                ours = self._our_messages(keys, bybit_order_id)
                if ours is None:
                    return None
                return next(({"message_id": m.get("id")} for m in ours if m.get("message") == text), False)

            summary = {"text": text[:200], "msg_uuid": msg_uuid, "account_id": keys.account_id}
            status, _ = self._effect(order_id, "chat_send", target, summary,
                                     lambda text=text: self.bybit.send_chat(keys, bybit_order_id, text),
                                     reconcile)
            if status != "done":
                return False
            with self.sessions.begin() as s:
                if s.scalar(select(ChatMessage.id).where(ChatMessage.msg_uuid == msg_uuid)) is None:
                    s.add(ChatMessage(order_id=order_id, msg_uuid=msg_uuid, direction="out", text=text,
                                      content_type="str", sent_at=utcnow()))
        return True

    def _our_messages(self, keys: BybitKeys, bybit_order_id: str) -> list[dict[str, Any]] | None:
        """The messages we sent in a Bybit order's chat, as the venue has them; None if it cannot tell."""
        r = self.bybit.get_chat(keys, bybit_order_id)
        if not r.ok:
            return None
        return [m for m in r.data.get("messages", []) if m.get("is_ours")]

    def _reissue_or_cancel(self, order_id: int, reason: str) -> None:
        with self.sessions() as s:
            order = s.get(Order, order_id)
            payout = s.get(Payout, order.payout_id)
            can_reissue = order.attempt < self.cfg.ads.reissue_attempts and \
                self._remaining(payout) >= self._min_time_for_deal()
            live = list(s.scalars(select(Ad).where(Ad.order_id == order_id, Ad.status.in_(["live", "taken"]))))
            keys = {ad.id: self.bybit_keys(s, ad.bybit_account_id) for ad in live}
        for ad in live:
            if not self._remove_ad(ad.id, ad.bybit_item_id, keys[ad.id], order_id, "removed"):
                return  # try again next tick: never leave a second live ad behind
        if can_reissue:
            def update(s: Session, order: Order) -> None:
                order.attempt += 1
                order.bybit_order_id = None
                order.buyer_user_id = None
                order.chat_step = 0
                order.requisites_sent_at = None

            self._move(order_id, S.ACCEPTED, f"{reason}: re-issuing the ad", update=update)
        else:
            self._cancel_payout(order_id, f"{reason}: no re-issue left")

    def _keys_of(self, ad: Ad) -> BybitKeys:
        with self.sessions() as s:
            return self.bybit_keys(s, ad.bybit_account_id)

    def _settle_ad_creates(self, order_id: int) -> list[Ad] | None:
        """Resolve this order's ad creates whose outcome is unknown (a crash or a timeout mid-call).

        Giving a payout up must not leave behind an ad we never learned about: it would stay online with its
        USDT frozen for a payout we no longer hold, and its buyer would be ignored.  Each such ad is looked
        for by the token in its remark; one found is recorded (so the caller takes it down) and the intent is
        marked done; none found marks it failed, retryable (known not to exist, so creating it later is safe).
        Returns the ads found, or None when Bybit could not answer or a create may still be in flight.
        """
        with self.sessions() as s:
            rows = list(s.scalars(select(SideEffect).where(
                SideEffect.order_id == order_id, SideEffect.kind == "ad_create",
                SideEffect.status.in_(UNRESOLVED_EFFECT_STATUSES))))
            if any(_may_be_in_flight(row.updated_at) for row in rows):
                return None  # a create may still land: the ad list cannot tell yet
            pending = [(row.id, dict(row.request or {})) for row in rows]
        found: list[Ad] = []
        for effect_id, req in pending:
            account_id, token = req.get("account_id"), req.get("token")
            if account_id is None or not token:
                continue
            with self.sessions() as s:
                keys = self.bybit_keys(s, account_id)
            r = self.bybit.list_ads(keys)
            if not r.ok:
                return None
            ads = [a for a in r.data.get("items", []) if token in (a.get("remark") or "") and a.get("status") != 30]
            with self.sessions.begin() as s:
                for a in ads:
                    if s.scalar(select(Ad.id).where(Ad.bybit_item_id == str(a["ad_id"]))) is None:
                        row = Ad(bybit_item_id=str(a["ad_id"]), order_id=order_id, bybit_account_id=account_id,
                                 payment_kind=req.get("kind") or "", price=Decimal(req["price"]),
                                 quantity=Decimal(req["quantity"]), status="taken")
                        s.add(row)
                        s.flush()
                        s.expunge(row)
                        found.append(row)
                record_outcome(s, s.get(SideEffect, effect_id), "done" if ads else "failed",
                               {"data": {"ad_ids": [str(a["ad_id"]) for a in ads]}, "reconciled": True}
                               if ads else {"code": "not_created", "reconciled": True, "retryable": True})
        return found

    def _gate_cancel(self, order_id: int, reason: str) -> tuple[str, dict[str, Any] | None, GateSession, str]:
        """The gate_cancel side effect for the order's payout (shared by the loop and operator rejects)."""
        with self.sessions() as s:
            payout = s.get(Payout, s.get(Order, order_id).payout_id)
            gs = self.gate_session(s, s.get(GateAccount, payout.gate_account_id))
            gate_id, payout_row = payout.gate_payout_id, payout.id

        def reconcile() -> dict[str, Any] | bool | None:
            r = self.gate.get_payout(gs, gate_id)
            if not r.ok:
                return None
            return {"status": r.data["payout"]["status"]} if int(r.data["payout"]["status"]) != 5 else False

        status, data = self._effect(order_id, "gate_cancel", payout_target(payout_row), {"reason": reason},
                                    lambda: self.gate.cancel(gs, gate_id), reconcile)
        return status, data, gs, gate_id

    def _cancel_payout(self, order_id: int, reason: str) -> None:
        with self.sessions() as s:
            order = s.get(Order, order_id)
            state = State(order.state)
            live = list(s.scalars(select(Ad).where(Ad.order_id == order_id, Ad.status.in_(["live", "taken"]))))
            keys = {ad.id: self.bybit_keys(s, ad.bybit_account_id) for ad in live}
        if state not in PRE_PAYMENT:
            self._move(order_id, S.MANUAL_REVIEW, f"would cancel after a payment claim: {reason}")
            return
        found = self._settle_ad_creates(order_id)
        if found is None:
            return  # Bybit cannot tell yet whether an ad of ours is online: never give the payout up blind
        live += found
        for ad in live:
            if not self._remove_ad(ad.id, ad.bybit_item_id, keys.get(ad.id) or self._keys_of(ad), order_id,
                                   "removed"):
                return
        status, data, gs, gate_id = self._gate_cancel(order_id, reason)
        if status == "done":
            self._move(order_id, S.CANCELLED, reason, data)
        elif status == "failed":
            if data.get("retryable"):
                return  # not performed (breaker open, rate limit): try again next tick, the order stays put
            r = self.gate.get_payout(gs, gate_id)
            if r.ok and int(r.data["payout"]["status"]) != 5:
                self._move(order_id, S.EXPIRED, f"{reason}; payout already left status 5 on Gate",
                           {"gate_status": r.data["payout"]["status"]})
            else:
                self._move(order_id, S.FAILED if state is S.PENDING else S.MANUAL_REVIEW,
                           f"Gate cancel refused ({data.get('code')}): {reason}", data)

    # -- 5. Receipts from the bank's mail ------------------------------------------------------------------------
    def mailbox(self) -> MailboxSettings | None:
        mb = self.cfg.mailbox
        if not (mb.user and mb.password):
            return None
        return MailboxSettings(mb.imap_host, mb.imap_port, mb.imap_ssl, mb.user, mb.password.get_secret_value(),
                               mb.folder, list(mb.allowlist), self.dkim_dns_override)

    def intake_mail(self) -> None:
        box = self.mailbox()
        if box is None:
            return
        r = self.receipts.fetch(box, str(self.receipt_dir))
        if r.ok:
            for message in r.data.get("messages", []):
                for att in message.get("attachments", []):
                    if att.get("saved_path"):
                        self._store_receipt(att["saved_path"], att.get("sha256"), "mail", message)
        # Files saved by a fetch whose results we did not record (crash): stored as unknown-channel receipts.
        self._recover_saved_files()
        self._match_receipts()

    def _recover_saved_files(self) -> None:
        import hashlib

        with self.sessions() as s:
            known = set(s.scalars(select(Receipt.sha256)))
        for path in sorted(self.receipt_dir.glob("*")):
            # Hidden names are email_fetch_receipts' unfinished writes (".part-*", left by a kill -9 mid-save).
            if path.is_file() and not path.name.endswith(".tmp") and not path.name.startswith("."):
                sha = hashlib.sha256(path.read_bytes()).hexdigest()
                if sha not in known:
                    self._store_receipt(str(path), sha, "mail", None)

    def _store_receipt(self, path: str, sha256: str | None, source: str, message: dict[str, Any] | None) -> None:
        with self.sessions() as s:
            if sha256 and s.scalar(select(Receipt.id).where(Receipt.sha256 == sha256)):
                return
        r = self.receipts.parse(path)
        if not r.ok:
            log.warning("receipt %s: parse failed: %s", path, (r.error or {}).get("code"))
            return
        data = r.data
        fields = data.get("fields", {})
        meta = message or {}
        row = dict(sha256=data["sha256"], source=source, sender=meta.get("from"),
                   dkim=meta.get("dkim") or "none", ocr=data.get("source") == "ocr",
                   amount_rub=dec(fields.get("amount")), receipt_time=parse_time(fields.get("date")),
                   parsed={"fields": fields, "path": path, "allowlisted": bool(meta.get("allowlisted")),
                           "message_id": meta.get("message_id")},
                   verdict="pending", filename=Path(path).name, content=Path(path).read_bytes())
        try:
            with self.sessions.begin() as s:
                s.add(Receipt(receipt_number=fields.get("receipt_number"), operation_id=fields.get("operation_id"),
                              email_message_id=meta.get("message_id"), **row))
        except IntegrityError:
            # Same receipt number / operation id / message seen before: a reused receipt. Keep it as evidence.
            try:
                with self.sessions.begin() as s:
                    s.add(Receipt(**{**row, "verdict": "reject"}, reasons=["receipt_reused"]))
            except IntegrityError:
                pass

    def _match_receipts(self) -> None:
        with self.sessions() as s:
            receipts = list(s.scalars(select(Receipt).where(Receipt.verdict == "pending",
                                                            Receipt.used_by_order_id.is_(None))))
            rows = s.execute(select(Order, Payout).join(Payout, Payout.id == Order.payout_id).where(
                Order.state.in_([S.CHATTING.value, S.PAYMENT_RECEIVED.value]),
                Order.requisites_sent_at.is_not(None))).all()
            candidates = [Candidate(o.id, p.amount_rub, p.wallet or "", p.accepted_at or o.created_at)
                          for o, p in rows if p.amount_rub is not None]
        for receipt in receipts:
            found = match_receipt((receipt.parsed or {}).get("fields", {}), candidates)
            if found.order_id is None:
                continue
            self._verify(found.order_id, receipt.id)

    def _verify(self, order_id: int, receipt_id: int) -> None:
        with self.sessions() as s:
            order = s.get(Order, order_id)
            payout = s.get(Payout, order.payout_id)
            receipt = s.get(Receipt, receipt_id)
            expected = {"amount": format(payout.amount_rub, "f"), "wallet": payout.wallet,
                        "not_before": (payout.accepted_at or order.created_at).isoformat()}
            if payout.bank_name:
                expected["bank"] = payout.bank_name
            path = (receipt.parsed or {}).get("path")
            meta = dict(receipt.parsed or {})
            released_today = _released_today(s)
            state = State(order.state)
        r = self.receipts.parse(path, expected)
        if not r.ok:
            return
        data = r.data
        facts = ReceiptFacts(verdict=data["verdict"], reasons=tuple(data.get("reasons", [])), source=receipt.source,
                             extraction=data.get("source", "ocr"), dkim=receipt.dkim or "none",
                             sender_allowlisted=bool(meta.get("allowlisted")), already_used=False,
                             amount=dec(data.get("fields", {}).get("amount")), checks=data.get("checks") or {})
        decision = approve_gate(facts, order_amount=payout.amount_rub, released_today=released_today,
                                policy=self.policy)
        if self.cfg.mode == "manual" and decision.ok:
            decision = type(decision)("manual_review", ("manual_mode",))
        if state is S.CHATTING:
            self._move(order_id, S.PAYMENT_RECEIVED, "a receipt for this order arrived", {"receipt_id": receipt_id})
        verdict = {"proceed": "ok", "manual_review": "review", "reject": "reject"}[decision.route]
        try:
            with self.sessions.begin() as s:
                rec = s.get(Receipt, receipt_id)
                rec.verdict, rec.reasons = verdict, list(decision.reasons)
                if decision.route in ("proceed", "manual_review"):
                    # Claimed by this order (UNIQUE): an operator who approves the review approves THIS file.
                    rec.used_by_order_id = order_id
                order = s.get(Order, order_id)
                to = S.VERIFIED if decision.ok else S.MANUAL_REVIEW
                transition(s, order, to, reason="receipt verified" if decision.ok else
                           "receipt needs review: " + ", ".join(decision.reasons),
                           data={"receipt_id": receipt_id, "checks": facts.checks, "reasons": list(decision.reasons)})
        except IntegrityError:
            self._move(order_id, S.MANUAL_REVIEW, "receipt already used by another order", {"receipt_id": receipt_id})

    # -- 6. Approve on Gate, then release on Bybit ----------------------------------------------------------------
    def approve_verified(self) -> None:
        self._each(self._orders(S.VERIFIED), self._approve)

    def _approve(self, order_id: int) -> None:
        with self.sessions() as s:
            order = s.get(Order, order_id)
            payout = s.get(Payout, order.payout_id)
            receipt = s.scalar(select(Receipt).where(Receipt.used_by_order_id == order_id))
            pass_review = receipt is None or receipt.content is None
            if receipt is not None:
                content, filename = receipt.content, receipt.filename or "receipt.pdf"
            gs = self.gate_session(s, s.get(GateAccount, payout.gate_account_id))
            gate_id = payout.gate_payout_id
            if self.cfg.mode == "manual" and order.operator_approved_at is None:
                pass_review = True
        if pass_review:
            self._move(order_id, S.MANUAL_REVIEW, "no verified receipt file (or manual mode) for the Gate approve")
            return

        def reconcile() -> dict[str, Any] | bool | None:
            r = self.gate.get_payout(gs, gate_id)
            if not r.ok:
                return None
            return {"payout": r.data["payout"]} if int(r.data["payout"]["status"]) in (6, 7) else False

        status, data = self._effect(order_id, "gate_approve", payout_target(payout.id),
                                    {"receipt_sha256": receipt.sha256},
                                    lambda: self.gate.approve(gs, gate_id, content, filename), reconcile)
        self._store_cookies(payout.gate_account_id, gs)
        if status == "unknown":
            return
        if status == "failed":
            if data.get("retryable"):
                return
            self._move(order_id, S.MANUAL_REVIEW, f"Gate approve refused: {data.get('code')}", data)
            return
        self._move(order_id, S.APPROVED, "Gate approved the payout with the receipt",
                   update=lambda s, o: setattr(o, "gate_approved_at", o.gate_approved_at or utcnow()))
        with self.sessions() as s:
            order = s.get(Order, order_id)
            keys = self.bybit_keys(s, order.bybit_account_id)
            bybit_order_id = order.bybit_order_id
            op = (receipt.parsed or {}).get("fields", {}).get("receipt_number") or receipt.sha256[:12]
        self._send(order_id, keys, bybit_order_id, "confirmed",
                   [dialogue.render("confirmed", amount=dialogue.money_text(payout.amount_rub), operation_ref=op)])

    def release_approved(self) -> None:
        self._each(self._orders(S.APPROVED), self._release)

    def _release(self, order_id: int) -> None:
        with self.sessions() as s:
            order = s.get(Order, order_id)
            payout = s.get(Payout, order.payout_id)
            keys = self.bybit_keys(s, order.bybit_account_id)
            approved_at, bybit_order_id = order.gate_approved_at, order.bybit_order_id
            verdict = s.scalar(select(Receipt.verdict).where(Receipt.used_by_order_id == order_id))
            receipt_ok = verdict == "ok" or (verdict == "review" and order.operator_approved_at is not None)
            released_today = _released_today(s)
            amount = payout.amount_rub
        if approved_at and utcnow() < approved_at + self.policy.release_delay:
            return
        r = self.bybit.get_order(keys, bybit_order_id)
        if not r.ok:
            return
        bstatus = int(r.data["status"])
        target = release_target(bybit_order_id)
        with self.sessions() as s:
            prior = s.scalar(select(SideEffect.status).where(SideEffect.kind == "release",
                                                             SideEffect.target_key == target))
        if not (prior in ("intended", "unknown") and bstatus == BYBIT_FINISHED):
            decision = release_gate(gate_approved=True, approved_at=approved_at, now=utcnow(), bybit_status=bstatus,
                                    order_amount=amount, released_today=released_today, policy=self.policy,
                                    approved_receipt_ok=receipt_ok)
            if decision.route == "wait":
                return
            if not decision.ok:
                self._move(order_id, S.MANUAL_REVIEW, "release gate: " + ", ".join(decision.reasons),
                           {"bybit_status": bstatus})
                return

        def reconcile() -> dict[str, Any] | bool | None:
            rr = self.bybit.get_order(keys, bybit_order_id)
            if not rr.ok:
                return None
            s2 = int(rr.data["status"])
            return {"status": s2} if s2 == BYBIT_FINISHED else (False if s2 == BYBIT_PAID else None)

        status, data = self._effect(order_id, "release", target, {"amount_rub": format(amount, "f")},
                                    lambda: self.bybit.release(keys, bybit_order_id), reconcile)
        if status == "unknown":
            return
        if status == "failed":
            if data.get("retryable"):
                return
            self._move(order_id, S.MANUAL_REVIEW, f"release refused: {data.get('code')}", data)
            return
        self._move(order_id, S.RELEASED, "USDT released on Bybit",
                   update=lambda s, o: setattr(o, "released_at", o.released_at or utcnow()))

    def complete_released(self) -> None:
        self._each(self._orders(S.RELEASED), self._complete)

    def _complete(self, order_id: int) -> None:
        with self.sessions() as s:
            order = s.get(Order, order_id)
            keys = self.bybit_keys(s, order.bybit_account_id)
            bybit_order_id = order.bybit_order_id
        r = self.bybit.get_order(keys, bybit_order_id)
        if r.ok and int(r.data["status"]) == BYBIT_FINISHED:
            self._move(order_id, S.COMPLETED, "Bybit order finished (50)")
        elif r.ok and int(r.data["status"]) in (BYBIT_APPEAL, BYBIT_CANCELLED):
            self._move(order_id, S.MANUAL_REVIEW, f"released order now at {r.data['status']}")

    # -- 7. Time-outs: Gate expiry, no buyer, no receipt ----------------------------------------------------------
    def housekeeping(self) -> None:
        with self.sessions() as s:
            rows = s.execute(select(Order.id, Order.state, Order.state_changed_at, Order.requisites_sent_at,
                                    Payout.expired_at).join(Payout, Payout.id == Order.payout_id).where(
                Order.state.in_([S.ADVERTISED.value, S.BUYER_FOUND.value, S.CHATTING.value,
                                 S.PAYMENT_RECEIVED.value]))).all()
        now = utcnow()
        margin = self.dur(5 * 60)
        receipt_wait = self.dur(self.cfg.intervals.stuck_after_s)
        for order_id, state, changed_at, requisites_at, expired_at in rows:
            state = State(state)
            left = (expired_at - now) if expired_at else timedelta(days=1)
            try:
                if state is S.ADVERTISED and left < self._min_time_for_deal():
                    self._cancel_payout(order_id, "no buyer in time before Gate expiry")
                elif state is S.PAYMENT_RECEIVED and (now - changed_at > receipt_wait or left < margin):
                    self._move(order_id, S.MANUAL_REVIEW, "payment claimed but no verifiable receipt in time")
                elif state in (S.BUYER_FOUND, S.CHATTING) and left < margin:
                    if requisites_at is None:
                        self._cancel_payout(order_id, "Gate payout about to expire before the buyer agreed")
                    else:
                        self._move(order_id, S.MANUAL_REVIEW, "Gate payout about to expire while the buyer "
                                                              "holds our requisites")
            except VersionConflict:
                continue

    def carry_out_queued_clean_ups(self) -> None:
        """Finish clean-ups nobody else will come back to, each reconciled with the venue first.

        * Gate cancels of terminal orders (an operator's reject queues them): give the payout back.
        * Every ad removal whose outcome is still open, whatever the order's state: the step that began it
          (e.g. taking down a taken ad) is not re-run once the order has moved on, and the ad must not stay
          online with its USDT frozen.
        """
        with self.sessions() as s:
            rows = s.execute(select(SideEffect.kind, SideEffect.target_key, SideEffect.order_id).join(
                Order, Order.id == SideEffect.order_id).where(
                SideEffect.status.in_(UNRESOLVED_EFFECT_STATUSES),
                ((SideEffect.kind == "gate_cancel") & Order.state.in_([t.value for t in TERMINAL]))
                | (SideEffect.kind == "ad_cancel"))).all()
        for kind, target, order_id in rows:
            try:
                if kind == "gate_cancel":
                    self._gate_cancel(order_id, "queued clean-up")
                    continue
                item_id = target.removeprefix("ad:")
                with self.sessions() as s:
                    ad = s.scalar(select(Ad).where(Ad.bybit_item_id == item_id))
                    keys = self.bybit_keys(s, ad.bybit_account_id) if ad else None
                if ad is not None and keys is not None:
                    self._remove_ad(ad.id, item_id, keys, order_id, "removed")
            except Exception:
                self.stats.errors += 1
                log.exception("clean-up %s %s failed", kind, target)
        self._settle_chat_sends()

    def _settle_chat_sends(self) -> None:
        """Resolve chat messages begun for a Bybit order the dialogue is no longer driving.

        A message whose send was cut short (a crash, a timeout) is normally finished by the next dialogue
        step; once the order has moved on (to review, to the Gate approve, a re-issued ad, a close) nobody
        comes back to it.  It is never sent from here: the chat is read, and the intent becomes done (it landed)
        or failed-retryable (it did not, so a resumed dialogue may send it).  A chat that cannot be read for
        an order that is over is given up: nothing will ever be sent to it again.
        """
        with self.sessions() as s:
            rows = s.execute(select(SideEffect, Order.state, Order.bybit_order_id, Order.bybit_account_id).join(
                Order, Order.id == SideEffect.order_id).where(
                SideEffect.kind == "chat_send", SideEffect.status.in_(UNRESOLVED_EFFECT_STATUSES))).all()
        for effect, state, current_order, account_id in rows:
            bybit_order_id = effect.target_key.split(":")[1]
            if State(state) in CHAT_DRIVEN and bybit_order_id == current_order:
                continue  # the dialogue itself finishes it
            if _may_be_in_flight(effect.updated_at):
                continue
            request = effect.request or {}
            with self.sessions() as s:
                keys = self.bybit_keys(s, request.get("account_id") or account_id)
            ours = self._our_messages(keys, bybit_order_id)
            if ours is not None:
                text = request.get("text") or ""  # the intent keeps the first 200 characters
                landed = any((m.get("message") or "")[:len(text)] == text for m in ours)
                outcome = ("done", {"data": {}, "reconciled": True}) if landed else \
                    ("failed", {"code": "not_sent", "retryable": True, "reconciled": True})
            elif State(state) in TERMINAL:
                outcome = ("failed", {"code": "abandoned", "retryable": False,
                                      "message": "the order is over and its chat cannot be read"})
            else:
                continue
            with self.sessions.begin() as s:
                record_outcome(s, s.get(SideEffect, effect.id), *outcome)

    # -- start-up and shutdown --------------------------------------------------------------------------------
    def set_gate_balances(self, amount: Decimal) -> None:
        with self.sessions() as s:
            accounts = list(s.scalars(select(GateAccount).where(GateAccount.enabled.is_(True))))
            sessions = [(a.id, self.gate_session(s, a)) for a in accounts]
        for account_id, gs in sessions:
            r = self.gate.set_balance(gs, amount)
            self._store_cookies(account_id, gs)
            if not r.ok:
                log.warning("gate account %s: set balance failed: %s", account_id, (r.error or {}).get("code"))

    def non_terminal_count(self) -> int:
        with self.sessions() as s:
            return s.scalar(select(func.count(Order.id)).where(
                Order.state.notin_([t.value for t in TERMINAL] + [S.MANUAL_REVIEW.value]))) or 0


def _start_of_day() -> datetime:
    """Where the daily limits (accepted volume, released amount) restart: midnight UTC."""
    return utcnow().replace(hour=0, minute=0, second=0, microsecond=0)


def _released_today(s: Session) -> Decimal:
    """RUB of the payouts whose USDT was released since the start of the day (the daily release cap)."""
    return Decimal(s.scalar(select(func.coalesce(func.sum(Payout.amount_rub), 0)).join(
        Order, Order.payout_id == Payout.id).where(Order.released_at >= _start_of_day())) or 0)


def _summary(data: dict[str, Any] | None) -> dict[str, Any]:
    """What of a script answer is kept in the intent row: ids and statuses, never cookies or content."""
    if not data:
        return {}
    keep = {}
    for key, value in data.items():
        if key in ("cookies",):
            continue
        if isinstance(value, str | int | float | bool) or value is None:
            keep[key] = value
        elif key == "payout" and isinstance(value, dict):
            keep[key] = {k: v for k, v in value.items() if isinstance(v, str | int | float | bool | type(None)) or
                         k == "bank"}
    return keep
