"""gate_accept: /show only (never /approve), revealed amounts, idempotent repeat, someone else's payout."""

from __future__ import annotations

from decimal import Decimal


def test_accept_uses_show_and_reveals_amounts(gate, cookies, account):
    [made] = gate.generate(1)
    res = gate.run("gate_accept", {"cookies": cookies, "id": made["id"]})
    assert res.code == 0
    p = res.data["payout"]
    assert res.data["already_accepted"] is False and res.data["confirmed"] is True
    assert p["status"] == 5
    assert Decimal(p["amount_rub"]) == Decimal(made["amount_rub"])
    assert Decimal(p["amount_usdt"]) == Decimal(made["amount_usdt"])
    assert p["expired_at"] and p["trader"]["id"] == account["id"]
    paths = [r["path"] for r in gate.requests(account["login"], str(made["id"]))]
    assert any(path.endswith(f"/{made['id']}/show") for path in paths)
    assert not any(path.endswith("/approve") for path in paths)
    events = gate.events("gate_accept", made["id"])
    assert len(events) == 1 and events[0]["account"] == account["login"]
    assert gate.truth(made["id"])["owner"] == account["login"]


def test_repeat_accept_is_idempotent_and_confirmed(gate, cookies, account):
    [made] = gate.generate(1)
    gate.accept(cookies, made["id"])
    res = gate.run("gate_accept", {"cookies": cookies, "id": made["id"]})
    assert res.code == 0 and res.data["already_accepted"] is True and res.data["confirmed"] is True
    assert res.data["payout"]["status"] == 5
    assert Decimal(res.data["payout"]["amount_rub"]) == Decimal(made["amount_rub"])
    assert len(gate.events("gate_accept", made["id"])) == 1
    assert not gate.requests(account["login"], "/approve")


def test_payout_taken_by_another_account_is_refused(gate, cookies):
    other = gate.login(gate.account())
    [made] = gate.generate(1)
    gate.accept(other, made["id"])
    res = gate.run("gate_accept", {"cookies": cookies, "id": made["id"]})
    assert res.code == 1 and res.error["code"] == "incorrect_status" and res.error["retryable"] is False
    assert res.error["details"]["status"] is None  # the re-read cannot see it: it is not ours


def test_accept_unknown_payout(gate, cookies):
    res = gate.run("gate_accept", {"cookies": cookies, "id": 9999999})
    assert res.code == 1 and res.error["code"] == "not_found"


def test_accept_with_password_only_logs_in_and_returns_cookies(gate, account):
    [made] = gate.generate(1)
    res = gate.run("gate_accept", {"login": account["login"], "password": account["password"], "id": made["id"]})
    assert res.code == 0 and res.data["relogged"] is True
    assert {c["name"] for c in res.data["cookies"]} >= {"sid", "rsid"}
    assert account["password"] not in res.stdout + res.stderr


def test_accept_rejects_bad_ids(gate, cookies):
    for bad in (0, -1, "abc", "0123", 1.5, None):
        res = gate.run("gate_accept", {"cookies": cookies, "id": bad})
        assert res.code == 2, bad
