"""An operator's decision in `itrader review` is carried out by the running loop, against the real venues."""

from __future__ import annotations

import json
import subprocess
import sys

from orchestrator.demo import SandboxStack


def itrader(stack: SandboxStack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *args, "--config", str(stack.config_path)],
                          capture_output=True, text=True, timeout=60, check=False)


def test_reject_gives_the_payout_back_on_gate(tmp_path):
    # Buyers who mark the order paid without paying end in review before Gate ever approves anything.
    stack = SandboxStack(tmp_path / "run", seed=5, speed=60, bybit_accounts=2, mix={"mark_paid_only": 1})
    try:
        stack.offer_payouts(2)
        assert stack.run(2, timeout_s=120)
        listed = itrader(stack, "review", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        reviews = json.loads(listed.stdout)
        assert reviews, "expected orders in review"
        order_id = reviews[0]["id"]
        rejected = itrader(stack, "review", "reject", str(order_id), "--reason", "buyer never paid", "--by", "test")
        assert rejected.returncode == 0, rejected.stderr
        stack.run(2, timeout_s=30, at_least_s=3)
        cancels = stack.sandbox.control("GET", "/sandbox/truth", params={"kind": "gate_cancel"})["events"]
        audit = stack.audit()
        states = stack.state_counts()
    finally:
        stack.close()
    assert audit["violations"] == []
    assert states["CANCELLED"] >= 1
    assert len(cancels) >= 1, "the operator's reject was not carried out on Gate"
