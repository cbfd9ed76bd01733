"""gate_cancel: an accepted payout goes back (default status 4, back in the pool); refusals."""

from __future__ import annotations


def test_cancel_gives_the_payout_back(gate, cookies, account):
    [made] = gate.generate(1)
    gate.accept(cookies, made["id"])
    res = gate.run("gate_cancel", {"cookies": cookies, "id": made["id"]})
    assert res.code == 0 and res.data["cancelled"] is True
    assert res.data["payout"]["status"] == 4 and res.data["payout"]["amount_rub"] is None
    [event] = gate.events("gate_cancel", made["id"])
    assert event["account"] == account["login"] and event["status"] == 4 and event["wallet"] == made["wallet"]
    # Back in the pool: another account sees it at status 4 again.
    other = gate.login(gate.account())
    listed = gate.run("gate_list_payouts", {"cookies": other, "search_id": made["id"]}).data["payouts"]
    assert [p["status"] for p in listed] == [4]


def test_cancel_target_status_is_configurable(gate, cookies):
    gate.config(cancel_status=9)
    [made] = gate.generate(1)
    gate.accept(cookies, made["id"])
    res = gate.run("gate_cancel", {"cookies": cookies, "id": made["id"]})
    assert res.code == 0 and res.data["payout"]["status"] == 9


def test_cancel_of_a_payout_not_in_work_is_refused(gate, cookies):
    [made] = gate.generate(1)
    res = gate.run("gate_cancel", {"cookies": cookies, "id": made["id"]})
    assert res.code == 1 and res.error["code"] == "incorrect_status" and res.error["details"]["status"] == 4
    other = gate.login(gate.account())
    gate.accept(other, made["id"])
    res = gate.run("gate_cancel", {"cookies": cookies, "id": made["id"]})
    assert res.code == 1 and res.error["code"] == "incorrect_status"
    assert gate.truth(made["id"])["status"] == 5 and not gate.events("gate_cancel", made["id"])
