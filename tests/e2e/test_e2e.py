"""The whole pipeline in the sandbox, on SQLite and on PostgreSQL, with buyers of every profile.

Ground truth (the sandbox's ledger, Gate approvals and Bybit releases) decides: zero violations, every payout
terminal or waiting for an operator, and no fraudulent buyer ever walks away with USDT.
"""

from __future__ import annotations

import pytest

from orchestrator.demo import DONE_STATES, HONEST, SandboxStack
from sandbox.bybit.buyers import PROFILES
from tests.services.postgres import start_postgres

EVERY_PROFILE = {name: 1 for name in PROFILES} | {"cooperative": 4}
PAYOUTS = 16


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    if request.param == "sqlite":
        yield None  # the stack's own SQLite file
        return
    server = start_postgres()
    try:
        yield server.create_database("itrader_e2e")
    finally:
        server.close()  # drops the databases it created (and stops a throwaway cluster)


def test_pipeline_settles_every_payout_without_violations(tmp_path, db_url):
    stack = SandboxStack(tmp_path / "run", db_url=db_url, seed=11, speed=60, bybit_accounts=6, mix=EVERY_PROFILE)
    try:
        stack.offer_payouts(PAYOUTS)
        settled = stack.run(PAYOUTS, timeout_s=240)
        counts = stack.state_counts()
        audit = stack.audit()
        by_profile = stack.outcomes_by_profile()
    finally:
        stack.close()
    assert audit["violations"] == [], audit["violations"]
    assert settled, f"not settled in time: {dict(counts)}"
    assert sum(counts.values()) == PAYOUTS and set(counts) <= DONE_STATES, counts
    for profile, outcomes in by_profile.items():
        # fraud_wrong_bank may legitimately complete on a CARD payout: a card number alone names the account,
        # so its money did reach the recipient (on phone payouts the receipt's bank check stops it, and the
        # auditor above would flag it otherwise).
        if profile not in HONEST and profile != "fraud_wrong_bank":
            assert "COMPLETED" not in outcomes, f"{profile} got paid out: {outcomes}"
    assert counts.get("COMPLETED", 0) >= 1, f"no honest deal completed: {by_profile}"
    assert audit["counts"]["releases"] == counts.get("COMPLETED", 0)
    assert len([p for p in by_profile if p != "no buyer"]) >= 6, by_profile
