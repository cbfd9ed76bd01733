"""gate_set_balance and gate_me: balances by iso_code, the amount sent as a string, bad amounts."""

from __future__ import annotations

import requests


def test_me_reports_balances_by_iso_code(gate, cookies, account):
    res = gate.run("gate_me", {"cookies": cookies})
    assert res.code == 0
    assert res.data["account"] == {"id": account["id"], "name": account["name"], "login": account["login"]}
    assert res.data["balances"] == {"rub": "10000000.00", "usdt": "0.00"}
    assert {w["iso_code"] for w in res.data["wallets"]} == {"643", "000001"}


def test_set_balance_sends_a_string_and_confirms(gate, cookies, account):
    res = gate.run("gate_set_balance", {"cookies": cookies, "amount": "1000000"})
    assert res.code == 0
    assert res.data == {"amount": "1000000", "balances": {"rub": "1000000.00", "usdt": "0.00"}, "confirmed": True}
    event = [e for e in gate.events("gate_set_balance") if e["account"] == account["login"]][-1]
    assert event["wire_type"] == "str" and event["amount"] == "1000000.00"


def test_set_balance_accepts_numbers_and_kopecks(gate, cookies):
    res = gate.run("gate_set_balance", {"cookies": cookies, "amount": 2500.5})
    assert res.code == 0 and res.data["amount"] == "2500.5" and res.data["balances"]["rub"] == "2500.50"
    res = gate.run("gate_set_balance", {"cookies": cookies, "amount": "0"})
    assert res.code == 0 and res.data["balances"]["rub"] == "0.00" and res.data["confirmed"] is True


def test_set_balance_rejects_bad_amounts_before_any_call(gate, cookies, account):
    before = len(gate.requests(account["login"], "/balance"))
    for amount in ("abc", "-5", "1e6", "1.234", "", None, True):
        res = gate.run("gate_set_balance", {"cookies": cookies, "amount": amount})
        assert res.code == 2, amount
    res = gate.run("gate_set_balance", {"cookies": cookies, "amount": -1})
    assert res.code == 2
    assert len(gate.requests(account["login"], "/balance")) == before


def test_zero_balance_means_no_new_payouts_offered(gate, cookies):
    [made] = gate.generate(1)
    assert gate.run("gate_list_payouts", {"cookies": cookies, "search_id": made["id"]}).data["payouts"]
    gate.run("gate_set_balance", {"cookies": cookies, "amount": "0"})
    assert gate.run("gate_list_payouts", {"cookies": cookies, "search_id": made["id"]}).data["payouts"] == []


def test_panel_rejects_missing_or_non_numeric_amount(sandbox, gate, cookies):
    """Sandbox conformance for POST /payments/payouts/balance."""
    jar = {c["name"]: c["value"] for c in cookies}
    for body in ({}, {"amount": "ten"}, {"amount": None}):
        resp = requests.post(f"{sandbox.url}/api/v1/payments/payouts/balance", json=body, cookies=jar, timeout=5)
        assert resp.status_code == 422 and resp.json()["success"] is False
