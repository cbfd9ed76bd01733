"""gate_list_payouts and gate_get_payout: hidden amounts at status 4, filters, search, both paginator shapes."""

from __future__ import annotations

import time
from decimal import Decimal

from tests.support import ServeWorker


def _find(payouts, payout_id):
    return next(p for p in payouts if p["id"] == payout_id)


def test_status_4_payouts_are_returned_with_null_amounts(gate, cookies):
    made = gate.generate(3)
    res = gate.run("gate_list_payouts", {"cookies": cookies, "status": [4], "per_page": 100})
    assert res.code == 0
    for truth in made:
        p = _find(res.data["payouts"], truth["id"])
        assert p["status"] == 4 and p["wallet"] == truth["wallet"]
        assert p["amount_rub"] is None and p["amount_usdt"] is None and p["total_rub"] is None
        assert p["course"] == truth["course"]
        assert (p["bank"] or {}).get("key") == truth["bank_key"]
        assert p["trader"] is None and p["attachments"] == 0


def test_accepted_payout_shows_amounts_and_filters_combine(gate, cookies):
    a, b = gate.generate(2, amount_rub="12345.67", course="80.00")
    gate.accept(cookies, a["id"])
    fives = gate.run("gate_list_payouts", {"cookies": cookies, "status": [5]}).data["payouts"]
    p = _find(fives, a["id"])
    assert p["amount_rub"] == "12345.67" and p["amount_usdt"] == str((Decimal("12345.67") / 80).quantize(Decimal("0.01")))
    assert Decimal(p["total_rub"]) == Decimal(a["total_rub"]) and p["expired_at"] is not None
    assert all(x["status"] == 5 for x in fives)
    both = gate.run("gate_list_payouts", {"cookies": cookies, "status": [4, 5], "per_page": 100}).data["payouts"]
    ids = {x["id"] for x in both}
    assert {a["id"], b["id"]} <= ids


def test_pagination(gate, cookies):
    gate.generate(3)
    first = gate.run("gate_list_payouts", {"cookies": cookies, "status": [4], "per_page": 2}).data
    assert len(first["payouts"]) == 2 and first["pagination"]["per_page"] == 2
    total = first["pagination"]["total"]
    assert total >= 3 and first["pagination"]["last_page"] == -(-total // 2)
    second = gate.run("gate_list_payouts", {"cookies": cookies, "status": [4], "per_page": 2, "page": 2}).data
    assert second["pagination"]["current_page"] == 2
    assert not {p["id"] for p in first["payouts"]} & {p["id"] for p in second["payouts"]}


def test_meta_paginator_shape_is_understood(gate, cookies):
    [made] = gate.generate(1)
    gate.config(paginator_meta=True)
    res = gate.run("gate_list_payouts", {"cookies": cookies, "search_id": made["id"]})
    assert [p["id"] for p in res.data["payouts"]] == [made["id"]]
    assert res.data["pagination"] == {"current_page": 1, "last_page": 1, "per_page": 30, "total": 1}


def test_search_by_id_wallet_and_term(gate, cookies):
    made, other = gate.generate(2)
    by_id = gate.run("gate_list_payouts", {"cookies": cookies, "search_id": str(made["id"])}).data["payouts"]
    assert [p["id"] for p in by_id] == [made["id"]]
    by_wallet = gate.run("gate_list_payouts", {"cookies": cookies, "search_wallet": made["wallet"]}).data["payouts"]
    assert [p["id"] for p in by_wallet] == [made["id"]]
    by_term = gate.run("gate_list_payouts", {"cookies": cookies, "search_term": other["wallet"]}).data["payouts"]
    assert [p["id"] for p in by_term] == [other["id"]]


def test_card_and_bankless_payouts_normalise(gate, cookies):
    card = gate.generate(1, method="card", bank=None)[0]
    p = gate.run("gate_get_payout", {"cookies": cookies, "id": card["id"]}).data["payout"]
    assert p["bank"] is None and len(p["wallet"]) == 16 and p["method"]["id"] != 5
    sbp = gate.generate(1, method="sbp", bank="tbank")[0]
    p = gate.run("gate_get_payout", {"cookies": cookies, "id": sbp["id"]}).data["payout"]
    assert p["bank"] == {"key": "tbank", "label": "Т-Банк", "code": "100000000004"}
    assert p["wallet"].startswith("7") and len(p["wallet"]) == 11 and p["method"]["id"] == 5


def test_get_payout_falls_back_to_search_when_details_are_gone(gate, cookies):
    [made] = gate.generate(1)
    res = gate.run("gate_get_payout", {"cookies": cookies, "id": made["id"]})
    assert res.code == 0 and res.data["source"] == "details" and res.data["payout"]["id"] == made["id"]
    gate.config(details_410=True)
    res = gate.run("gate_get_payout", {"cookies": cookies, "id": made["id"]})
    assert res.code == 0 and res.data["source"] == "search" and res.data["details_error"] == "gone"
    assert res.data["payout"]["wallet"] == made["wallet"]


def test_get_payout_of_another_account_is_not_found(gate, cookies):
    other = gate.login(gate.account())
    [made] = gate.generate(1)
    gate.accept(other, made["id"])
    res = gate.run("gate_get_payout", {"cookies": cookies, "id": made["id"]})
    assert res.code == 1 and res.error["code"] == "not_found" and res.error["retryable"] is False
    # ... and it dropped out of this account's list.
    listed = gate.run("gate_list_payouts", {"cookies": cookies, "search_id": made["id"]}).data["payouts"]
    assert listed == []


def test_serve_mode_reuses_one_process(gate, account):
    [made] = gate.generate(1)
    worker = ServeWorker("gate_list_payouts", env=gate.env)
    try:
        creds = {"login": account["login"], "password": account["password"]}
        first = worker.call({**creds, "search_id": made["id"]})
        second = worker.call({**creds, "search_id": made["id"]})
    finally:
        assert worker.close() == 0
    assert first["success"] and second["success"]
    assert first["data"]["payouts"][0]["id"] == made["id"] == second["data"]["payouts"][0]["id"]
    assert first["data"]["relogged"] is True and "relogged" not in second["data"]
    assert len(gate.requests(account["login"], "/auth/basic/login")) == 1


def test_generator_rate_switch(gate):
    before = len(gate.sb.control("GET", "/sandbox/gate/payouts")["payouts"])
    gate.sb.control("POST", "/sandbox/gate/payouts/rate", json={"per_minute": 1200})
    try:
        deadline = time.monotonic() + 10
        while len(gate.sb.control("GET", "/sandbox/gate/payouts")["payouts"]) == before:
            assert time.monotonic() < deadline, "the generator made no payout"
            time.sleep(0.1)
    finally:
        gate.sb.control("POST", "/sandbox/gate/payouts/rate", json={"per_minute": 0})
    made = [p for p in gate.sb.control("GET", "/sandbox/gate/payouts")["payouts"][before:]]
    assert made and all(p["status"] == 4 and 1000 <= Decimal(p["amount_rub"]) <= 300000 for p in made)


def test_python_api_of_the_simulated_panel():
    """world.gate as other sandbox parts (the demo's auditor) use it, in-process."""
    from sandbox.gate.state import GateState
    from sandbox.world import World

    world = World(seed=11)
    gate = GateState(world)
    made = gate.generate(40)
    assert len({p["wallet"] for p in made}) == 40  # ground truth is by wallet: never reused
    assert {p["method"] for p in made} == {"sbp", "card"}
    assert any(p["bank_key"] is None for p in made) or len({p["bank_key"] for p in made}) >= 4
    for p in made:
        assert 1000 <= Decimal(p["amount_rub"]) <= 300000
        assert Decimal("78") <= Decimal(p["course"]) <= Decimal("84")
        assert Decimal(p["amount_usdt"]) == (Decimal(p["amount_rub"]) / Decimal(p["course"])).quantize(Decimal("0.01"))
        if p["method"] == "sbp":
            assert len(p["wallet"]) == 11 and p["wallet"].startswith("7")
    acc = gate.create_account(rub="100")
    raw = gate.book[made[0]["id"]]
    gate.show(raw, acc)
    gate.approve(raw, acc, "r.pdf", b"%PDF-1.4 x", "application/pdf")
    assert gate.payout(made[0]["id"])["status"] == 7
    assert gate.attachments(made[0]["id"]) == [b"%PDF-1.4 x"]
    assert len(gate.payouts()) == 40
