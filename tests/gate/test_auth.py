"""Session lifecycle: login -> expiry -> session_expired -> re-login -> success; rotation; idle TTL."""

from __future__ import annotations

import time


def _values(cookies):
    return {c["name"]: c["value"] for c in cookies}


def test_lifecycle_login_expiry_relogin(gate, account):
    cookies = gate.login(account)
    assert gate.run("gate_me", {"cookies": cookies}).code == 0
    assert gate.sb.control("POST", "/sandbox/gate/sessions/expire", json={"login": account["login"]})["expired"] >= 1
    res = gate.run("gate_me", {"cookies": cookies})
    assert res.code == 1
    assert res.error["code"] == "session_expired" and res.error["retryable"] is False
    assert res.error["venue_code"] == 401
    fresh = gate.login(account)
    assert _values(fresh)["sid"] != _values(cookies)["sid"]
    assert gate.run("gate_me", {"cookies": fresh}).code == 0


def test_expired_cookies_with_password_relogin_once(gate, account):
    cookies = gate.login(account)
    gate.sb.control("POST", "/sandbox/gate/sessions/expire", json={"login": account["login"]})
    res = gate.run("gate_me", {"cookies": cookies, "login": account["login"], "password": account["password"]})
    assert res.code == 0 and res.data["relogged"] is True
    new = _values(res.data["cookies"])
    assert new["sid"] != _values(cookies)["sid"]
    assert account["password"] not in res.stdout + res.stderr
    for value in _values(cookies).values():
        assert value not in res.stderr
    # The refreshed cookies alone now work.
    assert gate.run("gate_me", {"cookies": res.data["cookies"]}).code == 0
    assert len(gate.requests(account["login"], "/auth/basic/login")) == 2


def test_wrong_password_on_relogin_is_invalid_credentials(gate, account):
    cookies = gate.login(account)
    gate.sb.control("POST", "/sandbox/gate/sessions/expire", json={"login": account["login"]})
    res = gate.run("gate_me", {"cookies": cookies, "login": account["login"], "password": "not-the-password"})
    assert res.code == 1 and res.error["code"] == "invalid_credentials"


def test_idle_ttl_expires_the_session(gate):
    acc = gate.account(session_ttl_s=0.5)
    cookies = gate.login(acc)
    time.sleep(0.8)  # idle longer than the account's TTL (not a timing assertion: the outcome is a state)
    res = gate.run("gate_me", {"cookies": cookies})
    assert res.code == 1 and res.error["code"] == "session_expired"


def test_session_expiry_fault_through_the_generic_fault_api(gate, cookies):
    gate.fault(kind="session_expiry", path="/api/v1/auth/me", remaining=1)
    res = gate.run("gate_me", {"cookies": cookies})
    assert res.code == 1 and res.error["code"] == "session_expired"
    assert gate.run("gate_me", {"cookies": cookies}).code == 1  # the session is really gone


def test_rotated_cookies_are_returned_and_work(gate, account):
    cookies = gate.login(account)
    gate.sb.control("POST", "/sandbox/gate/sessions/rotate", json={"login": account["login"]})
    res = gate.run("gate_me", {"cookies": cookies})
    assert res.code == 0
    rotated = res.data["cookies"]
    assert {c["name"] for c in rotated} == {"sid", "rsid"}
    # Unchanged cookie attributes survive the merge (only values change).
    assert {c["name"]: c["path"] for c in rotated} == {"sid": "/", "rsid": "/"}
    assert all(v not in _values(cookies).values() for v in _values(rotated).values())
    plain = gate.run("gate_me", {"cookies": rotated})
    assert plain.code == 0 and "cookies" not in plain.data  # nothing new this time


def test_periodic_rotation(gate, account):
    gate.config(rotate_every=2)
    cookies = gate.login(account)
    seen = []
    for _ in range(3):
        res = gate.run("gate_me", {"cookies": cookies})
        assert res.code == 0
        if "cookies" in res.data:
            merged = {c["name"]: c for c in cookies} | {c["name"]: c for c in res.data["cookies"]}
            cookies = list(merged.values())
            seen.append(True)
    assert seen, "the panel never rotated the cookies"


def test_missing_session_is_an_input_error(gate):
    res = gate.run("gate_me", {})
    assert res.code == 2 and res.error["code"] == "missing_credentials"
    res = gate.run("gate_me", {"login": "someone@sandbox.invalid"})
    assert res.code == 2 and res.error["code"] == "missing_credentials"


def test_foreign_cookie_objects_are_kept_out_of_the_answer(gate, account):
    cookies = gate.login(account) + [{"name": "deviceToken", "value": "device-token-value-1234",
                                       "domain": ".gate.cx", "path": "/"}]
    res = gate.run("gate_me", {"cookies": cookies})
    assert res.code == 0 and "cookies" not in res.data
    assert "device-token-value-1234" not in res.stdout + res.stderr


def test_refreshed_cookies_come_back_even_when_the_call_fails(gate, account):
    cookies = gate.login(account)
    gate.sb.control("POST", "/sandbox/gate/sessions/expire", json={"login": account["login"]})
    res = gate.run("gate_get_payout", {"cookies": cookies, "login": account["login"],
                                       "password": account["password"], "id": 9999999})
    assert res.code == 1 and res.error["code"] == "not_found"
    fresh = res.error["details"]["cookies"]
    assert {c["name"] for c in fresh} == {"sid", "rsid"}
    assert gate.run("gate_me", {"cookies": fresh}).code == 0
