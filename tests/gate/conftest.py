"""Fixtures for the Gate tests: fresh trader accounts on the shared sandbox, logged-in sessions, payouts.

Status-4 payouts are visible to every account with a balance, so tests never assume they own the whole list:
they generate their own payouts and look them up by id or wallet.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.support import REPO, Result, run_script, validate_envelope

TEST_DATA = REPO / "test_data"


class Gate:
    """Thin helper around the sandbox's Gate control API and the gate_* scripts."""

    def __init__(self, sandbox: Any) -> None:
        self.sb = sandbox
        self.env = sandbox.env

    def account(self, rub: str = "10000000", **extra: Any) -> dict[str, Any]:
        return self.sb.control("POST", "/sandbox/gate/accounts", json={"rub_balance": rub, **extra})

    def run(self, name: str, payload: Any, env: dict[str, str] | None = None, **kw: Any) -> Result:
        res = run_script(name, payload, env={**self.env, **(env or {})}, **kw)
        assert "Traceback" not in res.stdout and "Traceback" not in res.stderr, res.stderr[-2000:]
        if res.envelope is not None:
            validate_envelope(name, res.envelope)
        return res

    def login(self, acc: dict[str, Any]) -> list[dict[str, Any]]:
        """Set-up shortcut (gate_login itself is tested in test_login): log in over plain HTTP."""
        resp = requests.post(f"{self.sb.url}/api/v1/auth/basic/login", timeout=10,
                             json={"login": acc["login"], "password": acc["password"]})
        resp.raise_for_status()
        return [{"domain": "127.0.0.1", "expirationDate": 1893456000.0, "hostOnly": True, "httpOnly": True,
                 "name": name, "path": "/", "sameSite": None, "secure": False, "session": False,
                 "storeId": None, "value": resp.cookies[name]} for name in ("sid", "rsid")]

    def generate(self, n: int = 1, **kw: Any) -> list[dict[str, Any]]:
        return self.sb.control("POST", "/sandbox/gate/payouts", json={"n": n, **kw})["payouts"]

    def truth(self, payout_id: int) -> dict[str, Any]:
        return self.sb.control("GET", f"/sandbox/gate/payouts/{payout_id}")

    def events(self, kind: str, payout_id: int | None = None) -> list[dict[str, Any]]:
        events = self.sb.control("GET", "/sandbox/truth", params={"kind": kind})["events"]
        return [e for e in events if payout_id is None or e.get("payout_id") == payout_id]

    def requests(self, account: str, path_contains: str | None = None) -> list[dict[str, Any]]:
        params = {"account": account}
        if path_contains:
            params["path_contains"] = path_contains
        return self.sb.control("GET", "/sandbox/gate/requests", params=params)["requests"]

    def config(self, **values: Any) -> dict[str, Any]:
        return self.sb.control("POST", "/sandbox/gate/config", json=values)

    def fault(self, **fault: Any) -> dict[str, Any]:
        return self.sb.control("POST", "/sandbox/faults", json=fault)

    def accept(self, cookies: list[dict[str, Any]], payout_id: int) -> dict[str, Any]:
        """Set-up shortcut (gate_accept itself is tested in test_accept): POST /show over plain HTTP."""
        resp = requests.post(f"{self.sb.url}/api/v1/payments/payouts/{payout_id}/show", timeout=10,
                             cookies={c["name"]: c["value"] for c in cookies})
        resp.raise_for_status()
        return resp.json()["response"]


@pytest.fixture
def gate(sandbox):
    helper = Gate(sandbox)
    before = sandbox.control("GET", "/sandbox/gate/config")
    yield helper
    # Leave the shared sandbox as we found it: no pending faults, default panel behaviour.
    sandbox.control("DELETE", "/sandbox/faults")
    sandbox.control("POST", "/sandbox/gate/config", json=before)


@pytest.fixture
def account(gate):
    """A fresh trader account with a 10 000 000 RUB balance (so status-4 payouts are offered to it)."""
    return gate.account()


@pytest.fixture
def cookies(gate, account):
    return gate.login(account)


def load_test_data(name: str) -> Any:
    return json.loads(Path(TEST_DATA / name).read_text(encoding="utf-8"))
