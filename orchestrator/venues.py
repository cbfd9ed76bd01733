"""Typed adapters over the scripts: the one place that knows each script's request and response fields.

The engine speaks in payouts, ads, orders and receipts; these adapters turn that into script requests for
the runner (secrets on stdin only) and shape the answers.  Every method returns the runner's CallResult so
the engine can tell a venue refusal from an unknown outcome.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol


class CallResult(Protocol):
    ok: bool
    data: dict[str, Any] | None
    error: dict[str, Any] | None
    outcome_unknown: bool


class Runner(Protocol):
    def call(self, script: str, request: dict[str, Any], *, venue: str, account: str | None, kind: str,
             timeout_s: float, retry: bool, limit_key: str | None = None) -> CallResult: ...


@dataclass
class GateSession:
    """One Gate account's credentials; the cookie jar (name -> value) is merged after every call."""

    account_id: int
    login: str
    password: str | None
    cookies: dict[str, str] | None
    changed: bool = False

    def auth(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.cookies:
            out["cookies"] = [{"name": k, "value": v, "domain": ".panel.gate.cx", "path": "/"}
                              for k, v in self.cookies.items()]
        if self.password:
            out["login"], out["password"] = self.login, self.password
        return out

    def merge(self, set_cookies: list[dict[str, Any]]) -> None:
        jar = dict(self.cookies or {})
        for cookie in set_cookies:
            if jar.get(cookie["name"]) != cookie["value"]:
                jar[cookie["name"]] = cookie["value"]
                self.changed = True
        self.cookies = jar


class Gate:
    TIMEOUT = 20.0

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def _call(self, script: str, session: GateSession, request: dict[str, Any], kind: str, retry: bool) -> CallResult:
        result = self.runner.call(script, {**session.auth(), **request}, venue="gate",
                                  account=f"gate:{session.account_id}", kind=kind, timeout_s=self.TIMEOUT,
                                  retry=retry)
        if result.ok and result.data and result.data.get("cookies"):
            session.merge(result.data["cookies"])
        return result

    def list_payouts(self, s: GateSession, statuses: list[int], page: int = 1, per_page: int = 50) -> CallResult:
        return self._call("gate_list_payouts", s, {"status": statuses, "page": page, "per_page": per_page},
                          "read", True)

    def get_payout(self, s: GateSession, payout_id: str) -> CallResult:
        return self._call("gate_get_payout", s, {"id": str(payout_id)}, "read", True)

    def accept(self, s: GateSession, payout_id: str) -> CallResult:
        return self._call("gate_accept", s, {"id": str(payout_id)}, "write", False)

    def approve(self, s: GateSession, payout_id: str, content: bytes, filename: str) -> CallResult:
        import base64

        return self._call("gate_approve", s, {"id": str(payout_id), "filename": filename,
                                              "content_base64": base64.b64encode(content).decode()}, "write", False)

    def cancel(self, s: GateSession, payout_id: str) -> CallResult:
        return self._call("gate_cancel", s, {"id": str(payout_id)}, "write", False)

    def set_balance(self, s: GateSession, amount: Decimal) -> CallResult:
        return self._call("gate_set_balance", s, {"amount": format(amount, "f")}, "write", True)


@dataclass
class BybitKeys:
    account_id: int
    api_key: str
    api_secret: str
    testnet: bool = False

    def auth(self) -> dict[str, Any]:
        return {"api_key": self.api_key, "api_secret": self.api_secret, "testnet": self.testnet}


KOPECK = Decimal("0.01")


def pricing_rule_request(rule: Any) -> dict[str, Any]:
    """Config PricingRule -> bybit_get_rates ``rules`` item.

    The config states amount ranges inclusively (min_amount_rub..max_amount_rub); the script takes an
    exclusive lower bound, which at kopeck precision is one kopeck below.  Equal start and end times mean the
    whole day in the config, "00:00".."24:00" for the script.
    """
    out: dict[str, Any] = {"name": rule.name, "priority": rule.priority, "page_number": rule.page,
                           "ad_index": rule.ad_index, "price_adjustment": format(rule.price_adjustment_pct, "f")}
    if rule.time_start == rule.time_end:
        out["time_start"], out["time_end"] = "00:00", "24:00"
    else:
        out["time_start"], out["time_end"] = rule.time_start, rule.time_end
    if rule.min_amount_rub is not None:
        out["min_amount"] = format(rule.min_amount_rub - KOPECK, "f")
    if rule.max_amount_rub is not None:
        out["max_amount"] = format(rule.max_amount_rub, "f")
    return out


class Bybit:
    TIMEOUT = 15.0

    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def _call(self, script: str, keys: BybitKeys, request: dict[str, Any], kind: str, retry: bool,
              limit_key: str | None = None) -> CallResult:
        return self.runner.call(script, {**keys.auth(), **request}, venue="bybit", account=f"bybit:{keys.account_id}",
                                kind=kind, timeout_s=self.TIMEOUT, retry=retry, limit_key=limit_key)

    def rates(self, amount_rub: Decimal, rules: list[Any] | None = None) -> CallResult:
        request: dict[str, Any] = {"amount_rub": format(amount_rub, "f")}
        if rules:
            request["rules"] = [pricing_rule_request(r) for r in rules]
        return self.runner.call("bybit_get_rates", request, venue="bybit_market", account=None, kind="read",
                                timeout_s=self.TIMEOUT, retry=True)

    def payment_methods(self, keys: BybitKeys) -> CallResult:
        return self._call("bybit_payment_methods", keys, {}, "read", True)

    def account_info(self, keys: BybitKeys) -> CallResult:
        return self._call("bybit_account_info", keys, {}, "read", True)

    def create_ad(self, keys: BybitKeys, ad_params: dict[str, Any], payment_period: int) -> CallResult:
        return self._call("bybit_create_ad", keys, {"ad_params": ad_params, "payment_period": payment_period},
                          "write", False)

    def list_ads(self, keys: BybitKeys) -> CallResult:
        return self._call("bybit_list_ads", keys, {}, "read", True)

    def get_ad(self, keys: BybitKeys, ad_id: str) -> CallResult:
        return self._call("bybit_get_ad", keys, {"ad_id": ad_id}, "read", True)

    def cancel_ad(self, keys: BybitKeys, ad_id: str) -> CallResult:
        return self._call("bybit_cancel_ad", keys, {"ad_id": ad_id}, "ad_edit", False, limit_key=ad_id)

    def pending_orders(self, keys: BybitKeys) -> CallResult:
        return self._call("bybit_list_orders", keys, {"pending": True}, "read", True)

    def get_order(self, keys: BybitKeys, order_id: str) -> CallResult:
        return self._call("bybit_get_order", keys, {"order_id": order_id}, "read", True)

    def get_chat(self, keys: BybitKeys, order_id: str) -> CallResult:
        return self._call("bybit_get_chat", keys, {"order_id": order_id}, "read", True)

    def send_chat(self, keys: BybitKeys, order_id: str, text: str) -> CallResult:
        return self._call("bybit_send_chat", keys, {"order_id": order_id, "text": text}, "write", False)

    def release(self, keys: BybitKeys, order_id: str) -> CallResult:
        return self._call("bybit_release_order", keys, {"order_id": order_id}, "write", False)


@dataclass
class MailboxSettings:
    host: str
    port: int
    ssl: bool
    user: str
    password: str
    folder: str
    allowlist: list[str]
    dkim_dns_override: dict[str, str] | None = None


class Receipts:
    def __init__(self, runner: Runner) -> None:
        self.runner = runner

    def fetch(self, box: MailboxSettings, save_dir: str) -> CallResult:
        request: dict[str, Any] = {
            "host": box.host, "port": box.port, "ssl": box.ssl, "username": box.user, "password": box.password,
            "folder": box.folder, "senders": box.allowlist, "mark_seen": True, "save_dir": save_dir,
        }
        if box.dkim_dns_override:
            request["dkim_dns_override"] = box.dkim_dns_override
        return self.runner.call("email_fetch_receipts", request, venue="mailbox", account=box.user, kind="read",
                                timeout_s=60.0, retry=True)

    def parse(self, path: str, expected: dict[str, Any] | None = None) -> CallResult:
        request: dict[str, Any] = {"path": path}
        if expected:
            request["expected"] = expected
        return self.runner.call("ocr_receipt", request, venue="local", account=None, kind="read", timeout_s=60.0,
                                retry=False)
