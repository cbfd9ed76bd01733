"""gate_login: cookies in the browser-export format, bad credentials, the sandbox's shipped test_data files."""

from __future__ import annotations

import requests

from tests.gate.conftest import load_test_data


def test_login_returns_browser_export_cookies(gate, account):
    res = gate.run("gate_login", {"login": account["login"], "password": account["password"]})
    assert res.code == 0
    data = res.data
    assert data["account"]["login"] == account["login"] and data["account"]["id"] == account["id"]
    by_name = {c["name"]: c for c in data["cookies"]}
    assert {"sid", "rsid"} <= set(by_name)
    for cookie in by_name.values():
        assert cookie["value"] and cookie["path"] == "/"
        assert isinstance(cookie["expirationDate"], float) and isinstance(cookie["httpOnly"], bool)
    # The password never reaches any output or log line.
    assert account["password"] not in res.stdout + res.stderr
    # Cookie values never reach the log (they must be on stdout: the caller persists them).
    assert by_name["sid"]["value"] not in res.stderr


def test_the_returned_cookies_open_a_session(gate, cookies):
    res = gate.run("gate_me", {"cookies": cookies})
    assert res.code == 0 and res.data["balances"]["rub"] == "10000000.00"


def test_bad_password_is_invalid_credentials_without_leaking_it(gate, account):
    wrong = "Wrong-Password-0xDEADBEEF"
    res = gate.run("gate_login", {"login": account["login"], "password": wrong})
    assert res.code == 1
    assert res.error["code"] == "invalid_credentials" and res.error["retryable"] is False
    assert wrong not in res.stdout + res.stderr


def test_unknown_login_is_invalid_credentials(gate):
    res = gate.run("gate_login", {"login": "nobody@sandbox.invalid", "password": "whatever-password"})
    assert res.code == 1 and res.error["code"] == "invalid_credentials"


def test_login_needs_both_fields(gate):
    res = gate.run("gate_login", {"login": "x@sandbox.invalid"})
    assert res.code == 2 and res.error["code"] == "schema_violation"
    res = gate.run("gate_login", {"login": "x@sandbox.invalid", "password": "p4ssw0rd!", "extra": 1})
    assert res.code == 2


def test_panel_sets_no_cookie_on_bad_credentials(sandbox):
    """Sandbox conformance: clients key on Set-Cookie, so a refusal must carry none and be non-2xx."""
    resp = requests.post(f"{sandbox.url}/api/v1/auth/basic/login", json={"login": "a@b.c", "password": "nope"},
                         timeout=5)
    assert resp.status_code >= 400 and resp.json()["success"] is False
    assert "set-cookie" not in {k.lower() for k in resp.headers}


def test_shipped_test_data_files_work_against_the_sandbox(gate):
    creds = load_test_data("gate_credentials.json")
    assert set(creds) == {"login", "password"}
    cookies = load_test_data("gate_cookies.json")
    assert {c["name"] for c in cookies} == {"sid", "rsid"}
    for cookie in cookies:
        assert {"domain", "expirationDate", "hostOnly", "httpOnly", "name", "path", "sameSite", "secure",
                "session", "storeId", "value"} == set(cookie)
    me = gate.run("gate_me", {"cookies": cookies})
    assert me.code == 0 and me.data["account"]["login"] == creds["login"]
    login = gate.run("gate_login", creds)
    assert login.code == 0 and login.data["account"]["login"] == creds["login"]
