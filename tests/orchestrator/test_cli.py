"""The operator CLI: db, keygen, config show, accounts, pools, review, pause/resume (both databases)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import select
from sqlalchemy.orm import Session

from orchestrator import db as dbm
from orchestrator.cli import main
from orchestrator.commands import accounts as accounts_cmd
from orchestrator.models import BybitAccount, Event, GateAccount, Order, SideEffect
from orchestrator.secrets import SecretBox, generate_key, parse_key
from orchestrator.states import State, transition
from tests.orchestrator.conftest import make_order
from tests.support import REPO

PASSWORD = "s3cret-Gate-pass"
API_SECRET = "bybit-api-secret-0123456789"
API_KEY = "APIKEYabcdef123456"


@pytest.fixture
def env(tmp_path: Path, db_url: str) -> dict[str, str]:
    cfg = tmp_path / "empty.toml"
    cfg.write_text("")
    return {"ITRADER_CONFIG": str(cfg), "ITRADER_DB_URL": db_url, "ITRADER_ENCRYPTION_KEY": generate_key(),
            "ITRADER_OPERATOR": "tester"}


def run(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(main, list(args), input=input, env=env, catch_exceptions=False)


def test_db_upgrade_and_current_on_a_fresh_database(fresh_db_url: str, tmp_path: Path) -> None:
    env = {"ITRADER_DB_URL": fresh_db_url, "ITRADER_CONFIG": str(tmp_path / "none.toml")}
    (tmp_path / "none.toml").write_text("")
    res = run(env, "db", "current")
    assert res.exit_code == 0 and "empty" in res.output
    res = run(env, "db", "upgrade")
    assert res.exit_code == 0, res.output
    assert f"at revision {dbm.head_revision()}" in res.output
    res = run(env, "db", "current")
    assert "up to date" in res.output
    assert run(env, "db", "upgrade").exit_code == 0  # idempotent


def test_keygen_prints_a_usable_random_key() -> None:
    a, b = (CliRunner().invoke(main, ["keygen"]).output.strip() for _ in range(2))
    assert a != b and len(parse_key(a)) == 32


def test_config_show_redacts(env: dict[str, str]) -> None:
    res = run({**env, "ITRADER_IMAP_PASSWORD": "imap-secret-1"}, "config", "show")
    assert res.exit_code == 0
    data = json.loads(res.output)
    assert data["security"]["encryption_key"] == "**********"
    assert env["ITRADER_ENCRYPTION_KEY"] not in res.output and "imap-secret-1" not in res.output
    bad = run({**env, "ITRADER_ADS__MAX_LIVE_PER_ACCOUNT": "zero"}, "config", "show")
    assert bad.exit_code == 1 and "ads.max_live_per_account" in bad.output


def _accounts(env: dict[str, str], engine_url: str) -> tuple[list[GateAccount], list[BybitAccount]]:
    engine = dbm.make_engine(engine_url)
    with Session(engine) as s:
        gate = list(s.scalars(select(GateAccount).order_by(GateAccount.id)))
        bybit = list(s.scalars(select(BybitAccount).order_by(BybitAccount.id)))
    engine.dispose()
    return gate, bybit


def test_accounts_secrets_from_stdin_and_prompt(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    box = SecretBox.from_env(env["ITRADER_ENCRYPTION_KEY"])
    res = run(env, "accounts", "add-gate", "--login", "one@example.test", input=PASSWORD + "\n")
    assert res.exit_code == 0, res.output
    cookies = {"sid": "sid-cookie-value", "rsid": "rsid-cookie-value"}
    res = run(env, "accounts", "add-gate", "--login", "two@example.test", input=json.dumps({"cookies": cookies}))
    assert res.exit_code == 0 and "password none, cookies stored" in res.output
    res = run(env, "accounts", "add-bybit", "--name", "main", "--testnet",
              input=json.dumps({"api_key": API_KEY, "api_secret": API_SECRET}))
    assert res.exit_code == 0 and "APIK…" in res.output
    # A terminal: hidden prompt.
    monkeypatch.setattr(accounts_cmd, "_stdin_is_tty", lambda: True)
    res = run(env, "accounts", "add-gate", "--login", "three@example.test", input="typed-" + PASSWORD + "\n")
    assert res.exit_code == 0 and "Gate password" in res.output
    monkeypatch.undo()

    gate, bybit = _accounts(env, env["ITRADER_DB_URL"])
    assert [g.password(box) for g in gate] == [PASSWORD, None, "typed-" + PASSWORD]
    assert gate[1].cookies(box) == cookies
    assert bybit[0].api_secret(box) == API_SECRET and bybit[0].api_key == API_KEY and bybit[0].testnet

    listed = run(env, "accounts", "list")
    as_json = run(env, "accounts", "list", "--json")
    for out in (listed.output, as_json.output):
        for secret in (PASSWORD, API_SECRET, API_KEY, *cookies.values()):
            assert secret not in out
    data = json.loads(as_json.output)
    assert [g["login"] for g in data["gate"]] == ["one@example.test", "two@example.test", "three@example.test"]
    assert data["gate"][1] == {"id": gate[1].id, "login": "two@example.test", "enabled": True,
                               "password": False, "cookies": True}

    dup = run(env, "accounts", "add-gate", "--login", "one@example.test", input="x\n")
    assert dup.exit_code == 1 and "already exists" in dup.output
    assert run(env, "accounts", "disable", "gate", str(gate[0].id)).exit_code == 0
    assert run(env, "accounts", "disable", "bybit", "999").exit_code == 1
    assert json.loads(run(env, "accounts", "list", "--json").output)["gate"][0]["enabled"] is False


@pytest.mark.parametrize(("command", "stdin"), [
    ("add-gate", ""), ("add-gate", "{not json"), ("add-gate", '{"password": "x", "extra": 1}'),
    ("add-gate", '{"cookies": ["a"]}'), ("add-bybit", '["a"]'), ("add-bybit", '{"api_key": "k"}'),
    ("add-bybit", "just-a-line"),
])
def test_accounts_bad_stdin_is_a_clean_error(env: dict[str, str], command: str, stdin: str) -> None:
    flag = "--login" if command == "add-gate" else "--name"
    res = run(env, "accounts", command, flag, "bad@example.test", input=stdin)
    assert res.exit_code == 1 and "Error:" in res.output and "Traceback" not in res.output
    assert _accounts(env, env["ITRADER_DB_URL"]) == ([], [])


def test_missing_key_refuses_to_store_anything(env: dict[str, str]) -> None:
    no_key = {k: v for k, v in env.items() if k != "ITRADER_ENCRYPTION_KEY"}
    res = CliRunner().invoke(main, ["accounts", "add-gate", "--login", "k@example.test"], input=PASSWORD,
                             env={**no_key, "ITRADER_ENCRYPTION_KEY": None})
    assert res.exit_code == 1 and "ITRADER_ENCRYPTION_KEY is not set" in res.output
    assert _accounts(env, env["ITRADER_DB_URL"])[0] == []


def test_pools_review_pause(env: dict[str, str], engine) -> None:  # type: ignore[no-untyped-def]
    with Session(engine, expire_on_commit=False) as s:
        make_order(s, "PENDING")
        make_order(s, "CHATTING")
        make_order(s, "COMPLETED")
        paid = make_order(s, "PAYMENT_RECEIVED", bybit_order_id="42")
        approved = make_order(s, "APPROVED")
        for o, why in ((paid, "chat-only receipt"), (approved, "order at 30 (appeal)")):
            transition(s, o, State.MANUAL_REVIEW, reason=why)
        s.commit()

    pools = json.loads(run(env, "pools", "--json").output)
    counts = {k: v["count"] for k, v in pools["pools"].items()}
    assert counts == {"pending": 1, "active": 0, "chat": 1, "verification": 0, "review": 2, "completed": 1,
                      "closed": 0}
    assert pools["paused"] is False

    items = json.loads(run(env, "review", "list", "--json").output)
    assert {(i["id"], i["approve_to"], i["reject_to"]) for i in items} == {
        (paid.id, "VERIFIED", "CANCELLED"), (approved.id, "APPROVED", None)}
    assert "chat-only receipt" in run(env, "review", "list").output

    res = run(env, "review", "reject", str(approved.id), "--reason", "no")
    assert res.exit_code == 1 and "after Gate approval" in res.output
    res = run(env, "review", "approve", str(paid.id), "--by", "alice", "--reason", "statement checked")
    assert res.exit_code == 0 and "VERIFIED" in res.output
    assert run(env, "review", "approve", str(paid.id)).exit_code == 1  # no longer in review
    assert run(env, "review", "reject", str(approved.id)).exit_code == 2  # --reason is required

    assert run(env, "pause", "--reason", "bank maintenance").exit_code == 0
    assert json.loads(run(env, "pools", "--json").output)["paused"] is True
    assert "PAUSED" in run(env, "pools").output
    with Session(engine) as s:
        assert dbm.is_paused(s)
        order = s.get(Order, paid.id)
        assert order.state == "VERIFIED" and order.operator_approved_by == "alice"
        actors = set(s.scalars(select(Event.actor).where(Event.actor.like("operator:%"))))
        assert actors == {"operator:alice", "operator:tester"}
        assert s.scalars(select(SideEffect)).all() == []
    assert run(env, "resume").exit_code == 0
    with Session(engine) as s:
        assert not dbm.is_paused(s)


def test_real_executable_reads_secrets_from_stdin_only(tmp_path: Path) -> None:
    """The installed `itrader` entry point, as an operator would run it (SQLite only; it is slow-ish)."""
    exe = Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "itrader"
    if not exe.exists():
        exe = REPO / ".venv" / "bin" / "itrader"
    (tmp_path / "c.toml").write_text(f'[database]\nurl = "sqlite:///{tmp_path / "x.db"}"\n')
    env = {**os.environ, "ITRADER_CONFIG": str(tmp_path / "c.toml"), "ITRADER_ENCRYPTION_KEY": generate_key()}

    def call(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(exe), *args], input=stdin, env=env, capture_output=True, text=True, timeout=60)

    assert call("db", "upgrade").returncode == 0
    res = call("accounts", "add-bybit", "--name", "live",
               stdin=json.dumps({"api_key": API_KEY, "api_secret": API_SECRET, "note": "ignored"}))
    assert res.returncode == 0, res.stderr
    listed = call("accounts", "list")
    for out in (res.stdout, res.stderr, listed.stdout, listed.stderr):
        assert API_SECRET not in out and API_KEY not in out
    assert "live" in listed.stdout
