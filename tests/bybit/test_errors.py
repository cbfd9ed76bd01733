"""The error matrix: every failure a Bybit script can meet, each with its stable code, retryable flag and
venue code, produced by the real sandbox (auth, permissions, injected faults) or a real socket."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support import Result, free_port, run_script, validate_envelope


def call(name: str, payload: Any, env: dict[str, str]) -> Result:
    result = run_script(name, payload, env=env)
    assert result.envelope is not None, result.stderr[-2000:]
    validate_envelope(name, result.envelope)
    assert "Traceback" not in result.stdout
    return result


@pytest.fixture(scope="module")
def account(sandbox: Any) -> dict[str, Any]:
    return sandbox.control("POST", "/sandbox/bybit/accounts", json={"count": 1})["accounts"][0]


@pytest.fixture()
def cred(account: dict[str, Any]) -> dict[str, str]:
    return {"api_key": account["api_key"], "api_secret": account["api_secret"]}


@pytest.fixture(autouse=True)
def no_leftover_faults(sandbox: Any) -> Iterator[None]:
    yield
    sandbox.control("DELETE", "/sandbox/faults")


def assert_error(result: Result, code: str, retryable: bool, venue_code: int | None, exit_code: int = 1) -> None:
    err = result.error
    assert (err["code"], err["retryable"], err["venue_code"], result.code) == (code, retryable, venue_code, exit_code), \
        result.stdout


def assert_no_secret(result: Result, secrets: list[str]) -> None:
    for secret in secrets:
        assert secret not in result.stdout and secret not in result.stderr


# -- bad input (exit 2, before any network call) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("stdin", "code"),
    [(b"not json", "invalid_json"), (b"[1, 2]", "invalid_json"), (b"\xff\xfe", "invalid_json"), (b"", "invalid_json"),
     (b'{"api_key": "k", "api_secret": "s", "bogus": 1}', "schema_violation"),
     (b'{"api_key": "", "api_secret": "s"}', "schema_violation"),
     (b'{"api_key": "key1", "api_secret": "sec1", "timeout_s": -1}', "schema_violation"),
     (b'{"api_key": "key1", "api_secret": "sec1", "testnet": "yes"}', "schema_violation")],
)
def test_bad_stdin(sandbox: Any, stdin: bytes, code: str) -> None:
    result = call("bybit_account_info", stdin, sandbox.env)
    assert_error(result, code, False, None, exit_code=2)


def test_missing_credentials_fail_before_any_network_call() -> None:
    dead = {"ITRADER_BYBIT_URL": f"http://127.0.0.1:{free_port()}"}
    for name, payload in [("bybit_account_info", {}), ("bybit_get_order", {"order_id": "1"}),
                          ("bybit_send_chat", {"order_id": "1", "text": "hi"}),
                          ("bybit_create_ad", {"ad_params": {"price": "1", "quantity": "1", "min_amount": "1",
                                                             "max_amount": "1", "payment_methods": ["sbp"]}}),
                          ("bybit_release_order", {"order_id": "1", "api_key": "only-a-key"})]:
        result = call(name, payload, dead)
        assert_error(result, "missing_credentials", False, None, exit_code=2)


# -- venue authentication and permission ------------------------------------------------------------------------


def test_unknown_key_is_10003(sandbox: Any) -> None:
    result = call("bybit_account_info", {"api_key": "nosuchkey123", "api_secret": "whatever-secret"}, sandbox.env)
    assert_error(result, "invalid_api_key", False, 10003)
    assert_no_secret(result, ["whatever-secret"])


def test_bad_signature_is_10004(sandbox: Any, account: dict[str, Any]) -> None:
    secret = "wrong-secret-" + account["api_secret"][::-1]
    result = call("bybit_account_info", {"api_key": account["api_key"], "api_secret": secret}, sandbox.env)
    assert_error(result, "invalid_signature", False, 10004)
    assert_no_secret(result, [secret])


def test_no_p2p_permission_is_912000014(sandbox: Any) -> None:
    acc = sandbox.control("POST", "/sandbox/bybit/accounts", json={"count": 1, "p2p": False})["accounts"][0]
    result = call("bybit_list_ads", {"api_key": acc["api_key"], "api_secret": acc["api_secret"]}, sandbox.env)
    assert_error(result, "permission_denied", False, 912000014)


def test_bogus_payment_id_is_912300013(sandbox: Any, cred: dict[str, str]) -> None:
    ad = {"price": "80", "quantity": "10", "min_amount": "100", "max_amount": "500", "payment_methods": ["42"]}
    result = call("bybit_create_ad", {**cred, "ad_params": ad}, sandbox.env)
    assert_error(result, "invalid_payment_method", False, 912300013)


# -- injected venue codes -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "stable", "retryable"),
    [(10001, "invalid_parameter", False), (10002, "timestamp_out_of_window", True), (10005, "permission_denied", False),
     (10006, "rate_limited", True), (10000, "venue_server_error", True), (10016, "venue_server_error", True),
     (912120022, "price_out_of_range", False), (912120023, "amount_exceeds_total", False),
     (912000004, "venue_error", False)],
)
def test_injected_venue_codes(sandbox: Any, cred: dict[str, str], code: int, stable: str, retryable: bool) -> None:
    # pybit would sleep and retry on 10002/10006 by default; one call and the code intact prove it does not.
    sandbox.control("POST", "/sandbox/faults", json={"kind": "bybit_code", "code": code,
                                                     "path": "/v5/p2p/user/personal/info"})
    result = call("bybit_account_info", cred, sandbox.env)
    assert_error(result, stable, retryable, code)
    if code == 10006:
        assert result.error["details"]["reset_at_ms"] > 0


def test_rate_limit_on_a_write(sandbox: Any, cred: dict[str, str]) -> None:
    sandbox.control("POST", "/sandbox/faults", json={"kind": "bybit_code", "code": 10006, "path": "/v5/p2p/item/create"})
    ad = {"price": "80", "quantity": "10", "min_amount": "100", "max_amount": "500", "payment_methods": ["sbp"]}
    result = call("bybit_create_ad", {**cred, "ad_params": ad}, sandbox.env)
    assert_error(result, "rate_limited", True, 10006)


# -- HTTP and transport --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "stable"),
    [(403, "ip_rate_limited_or_forbidden"), (500, "venue_unavailable"), (502, "venue_unavailable"),
     (503, "venue_unavailable")],
)
def test_http_status(sandbox: Any, cred: dict[str, str], status: int, stable: str) -> None:
    sandbox.control("POST", "/sandbox/faults", json={"kind": "http_status", "status": status, "path": "/v5/p2p/"})
    result = call("bybit_get_order", {**cred, "order_id": "1900000000000000001"}, sandbox.env)
    assert_error(result, stable, True, status)


def test_cloudflare_page(sandbox: Any, cred: dict[str, str]) -> None:
    sandbox.control("POST", "/sandbox/faults", json={"kind": "cloudflare", "path": "/v5/p2p/"})
    result = call("bybit_list_orders", cred, sandbox.env)
    assert_error(result, "ip_rate_limited_or_forbidden", True, 403)


def test_connection_refused(cred: dict[str, str]) -> None:
    result = call("bybit_account_info", cred, {"ITRADER_BYBIT_URL": f"http://127.0.0.1:{free_port()}"})
    assert_error(result, "network_error", True, None)
    assert_no_secret(result, [cred["api_secret"]])


def test_timeout(sandbox: Any, cred: dict[str, str]) -> None:
    sandbox.control("POST", "/sandbox/faults", json={"kind": "timeout", "delay_s": 3, "path": "/v5/p2p/user/"})
    result = call("bybit_account_info", {**cred, "timeout_s": 0.5}, sandbox.env)
    assert_error(result, "timeout", True, None)


OK = {"ret_code": 0, "ret_msg": "SUCCESS", "ext_code": "", "ext_info": {}, "time_now": "1767225600.000001"}
QUIRK_ORDER = {"id": "1900000000000000077", "side": 1, "status": 10, "tokenId": "USDT", "currencyId": "RUB",
               "amount": "8000", "price": "80", "notifyTokenQuantity": "100", "userId": "111", "targetUserId": "222",
               "createDate": "1767225600000"}
LEGACY_CHAT = [
    {"id": "3", "message": "+", "msgType": 1, "roleType": "user", "userId": "222", "createDate": "1767225603000",
     "contentType": "str"},
    {"id": "2", "message": "hello", "msgType": 1, "roleType": "user", "userId": "111", "createDate": "1767225602000",
     "contentType": "str"},
    {"id": "1", "message": "Beware of fraud", "msgType": 0, "roleType": "sys", "userId": "0",
     "createDate": "1767225601000", "contentType": "str"},
]


class _Scripted(http.server.BaseHTTPRequestHandler):
    """A real HTTP server answering 200 with replies the sandbox does not produce: junk bodies, a past
    rate-limit reset time, and the documented venue quirks (pending list with a count but no items, the
    pre-Dec-2025 flat chat list)."""

    def do_POST(self) -> None:  # noqa: N802 (http.server naming)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        prefix, _, rest = self.path[1:].partition("/")
        headers: dict[str, str] = {}
        if prefix == "html":
            body = b"<html>maintenance</html>"
        elif prefix == "array":
            body = b"[1, 2, 3]"
        elif prefix == "nomsg":
            body = b'{"ret_code": 10001}'
        elif prefix == "pastreset":
            body = json.dumps({"ret_code": 10006, "ret_msg": "Too many visits!", "result": {}}).encode()
            headers["X-Bapi-Limit-Reset-Timestamp"] = "1000"  # in the past: pybit's own retry would crash
        elif prefix == "quirk":
            sent = json.loads(raw or b"{}")
            result: Any = {}
            if rest.endswith("order/pending/simplifyList"):
                result = {"count": 1, "items": []}
            elif rest.endswith("order/simplifyList"):
                ok = sent.get("status") == 10 and isinstance(sent.get("page"), int)
                result = {"count": 1 if ok else 0, "items": [QUIRK_ORDER] if ok else []}
            elif rest.endswith("order/info"):
                result = QUIRK_ORDER
            elif rest.endswith("order/message/listpage"):
                result = LEGACY_CHAT
            body = json.dumps({**OK, "result": result}).encode()
        else:
            body = b"{}"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for key, value in headers.items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def junk_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Scripted)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_rate_limit_with_a_past_reset_time_does_not_crash(junk_server: str, cred: dict[str, str]) -> None:
    result = call("bybit_account_info", cred, {"ITRADER_BYBIT_URL": junk_server + "/pastreset"})
    assert_error(result, "rate_limited", True, 10006)
    assert result.error["details"]["reset_at_ms"] == 1000


def test_pending_list_quirk_falls_back_to_status_10(junk_server: str, cred: dict[str, str]) -> None:
    result = call("bybit_list_orders", {**cred, "pending": True}, {"ITRADER_BYBIT_URL": junk_server + "/quirk"})
    data = result.data
    assert data["fallback_used"] is True and [o["order_id"] for o in data["items"]] == [QUIRK_ORDER["id"]]


def test_legacy_flat_chat_list_is_accepted(junk_server: str, cred: dict[str, str]) -> None:
    result = call("bybit_get_chat", {**cred, "order_id": QUIRK_ORDER["id"]}, {"ITRADER_BYBIT_URL": junk_server + "/quirk"})
    msgs = result.data["messages"]
    assert [m["id"] for m in msgs] == ["1", "2", "3"]
    assert [(m["is_system"], m["is_ours"]) for m in msgs] == [(True, False), (False, True), (False, False)]


def test_testnet_flag_selects_the_testnet_host(monkeypatch: pytest.MonkeyPatch) -> None:
    from itrader.bybit import client

    monkeypatch.delenv("ITRADER_BYBIT_URL", raising=False)
    assert client.rest_endpoint(True) == "https://api-testnet.bybit.com"
    assert client.rest_endpoint(False) == "https://api.bybit.com"
    monkeypatch.setenv("ITRADER_BYBIT_URL", "http://127.0.0.1:1/")
    assert client.rest_endpoint(True) == "http://127.0.0.1:1"


@pytest.mark.parametrize("prefix", ["/html", "/array", "/nomsg"])
def test_unreadable_replies(junk_server: str, cred: dict[str, str], prefix: str) -> None:
    result = call("bybit_account_info", cred, {"ITRADER_BYBIT_URL": junk_server + prefix})
    assert_error(result, "venue_bad_response", True, None)


def test_unreadable_market_reply(junk_server: str) -> None:
    result = call("bybit_get_rates", {"amount_rub": 1000}, {"ITRADER_BYBIT_MARKET_URL": junk_server + "/html"})
    assert_error(result, "venue_bad_response", True, None)
