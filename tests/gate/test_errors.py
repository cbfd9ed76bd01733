"""The error matrix: 401, 403 Cloudflare page, 410, 429 (+Retry-After), 5xx, timeout, network errors."""

from __future__ import annotations

import pytest

from tests.support import free_port

ME = "/api/v1/auth/me"


def test_cloudflare_page_is_never_parsed_as_json(gate, cookies):
    gate.fault(kind="cloudflare", path=ME)
    res = gate.run("gate_me", {"cookies": cookies})
    assert res.code == 1
    assert res.error["code"] == "cloudflare_block" and res.error["retryable"] is True
    assert res.error["venue_code"] == 403 and res.error["details"]["alert"] is True
    assert res.error["details"]["back_off_s"] > 0


def test_gone_is_an_access_alert_not_retryable(gate, cookies):
    gate.fault(kind="http_status", status=410, path="/api/v1/payments/payouts")
    res = gate.run("gate_list_payouts", {"cookies": cookies, "status": [4]})
    assert res.code == 1 and res.error["code"] == "gone" and res.error["retryable"] is False
    assert res.error["details"]["alert"] is True


def test_429_without_retry_after_defaults_to_60(gate, cookies):
    gate.fault(kind="http_status", status=429, path=ME)
    res = gate.run("gate_me", {"cookies": cookies})
    assert res.error["code"] == "rate_limited" and res.error["retryable"] is True
    assert res.error["details"]["retry_after"] == 60


def test_429_with_retry_after_header(gate, cookies, account):
    gate.sb.control("POST", "/sandbox/gate/ratelimit", json={"count": 1, "retry_after": 7, "login": account["login"]})
    res = gate.run("gate_me", {"cookies": cookies})
    assert res.error["code"] == "rate_limited" and res.error["details"]["retry_after"] == 7
    assert gate.run("gate_me", {"cookies": cookies}).code == 0


def test_per_account_rate_limit(gate, cookies):
    gate.config(rate_limit_per_minute=2)
    codes = [gate.run("gate_me", {"cookies": cookies}).code for _ in range(3)]
    assert codes[:2] == [0, 0] and codes[2] == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retryable(gate, cookies, status):
    gate.fault(kind="http_status", status=status, path=ME)
    res = gate.run("gate_me", {"cookies": cookies})
    assert res.error["code"] == "venue_unavailable" and res.error["retryable"] is True
    assert res.error["venue_code"] == status


def test_timeout(gate, cookies):
    gate.fault(kind="timeout", path=ME, delay_s=3.0)
    res = gate.run("gate_me", {"cookies": cookies, "timeout_s": 0.5})
    assert res.code == 1 and res.error["code"] == "timeout" and res.error["retryable"] is True


def test_unreachable_panel_is_a_network_error(gate, cookies):
    res = gate.run("gate_me", {"cookies": cookies},
                   env={"ITRADER_GATE_URL": f"http://127.0.0.1:{free_port()}/api/v1"})
    assert res.code == 1 and res.error["code"] == "network_error" and res.error["retryable"] is True


def test_session_expired_without_password_is_not_retryable(gate, cookies, account):
    gate.sb.control("POST", "/sandbox/gate/sessions/expire", json={"login": account["login"]})
    for name, extra in (("gate_list_payouts", {}), ("gate_accept", {"id": 1}), ("gate_cancel", {"id": 1})):
        res = gate.run(name, {"cookies": cookies, **extra})
        assert res.error["code"] == "session_expired" and res.error["retryable"] is False, name


def test_cloudflare_on_accept_leaves_the_payout_alone(gate, cookies, account):
    [made] = gate.generate(1)
    gate.fault(kind="cloudflare", path=f"/api/v1/payments/payouts/{made['id']}/show")
    res = gate.run("gate_accept", {"cookies": cookies, "id": made["id"]})
    assert res.error["code"] == "cloudflare_block"
    assert gate.truth(made["id"])["status"] == 4
    assert gate.accept(cookies, made["id"])["payout"]["status"] == 5
