"""The config model: defaults, TOML file, ITRADER_* overrides, validation, redaction."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from orchestrator.config import Config, ConfigError, load_config

KEY = "q2yLq3o2e7m5ZbJm8m3m5m9a0H0bYw6oNw4R3m8rX2c="


def test_missing_default_file_means_defaults(tmp_path: Path) -> None:
    cfg = load_config(None, environ={"ITRADER_VAR_DIR": str(tmp_path)})
    assert cfg.mode == "manual"
    assert cfg.database.url.startswith("sqlite:///") and cfg.database.url.endswith("itrader.db")
    assert cfg.ads.max_live_per_account == 2 and cfg.ads.payment_window_min == 15
    assert cfg.ads.quantity_buffer_usdt == Decimal("1") and isinstance(cfg.limits.daily_volume_rub, Decimal)
    assert cfg.release.delay_after_approve_s == 120
    assert cfg.receipts.require_mail and cfg.receipts.require_dkim
    assert cfg.receipts.chat_receipts == cfg.receipts.ocr_receipts == "manual_review"
    assert cfg.gate.shutdown_balance_rub == 0
    assert set(cfg.mailbox.allowlist) == {"noreply@tinkoff.ru", "noreply@tbank.ru"}
    rules = {r.name: r for r in cfg.pricing.rules}
    assert {n: r.page for n, r in rules.items()} == {"small_day": 4, "small_night": 2, "large_day": 5,
                                                     "large_night": 3}
    assert all(r.ad_index == -2 for r in rules.values())
    assert rules["small_night"].time_start == "01:00" and rules["small_night"].time_end == "07:00"
    assert rules["small_day"].max_amount_rub == Decimal("50000")


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(None, environ={"ITRADER_CONFIG": str(tmp_path / "nope.toml")})


def test_file_then_env_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.toml"
    f.write_text("""
mode = "auto"
[database]
url = "sqlite:////tmp/from-file.db"
[limits]
daily_volume_rub = 2500000.10  # a TOML float: read as an exact Decimal
max_in_work_per_gate_account = 3
[ads]
max_live_per_account = 1
[[pricing.rules]]
name = "only"
page = 1
ad_index = 0
price_adjustment_pct = "2.5"
time_start = "9:00"
time_end = "18:00"
""", encoding="utf-8")
    env = {
        "ITRADER_DB_URL": "postgresql://app@127.0.0.1:5432/app",
        "ITRADER_LIMITS__MAX_IN_WORK_PER_GATE_ACCOUNT": "7",
        "ITRADER_RELEASE__DELAY_AFTER_APPROVE_S": "300",
        "ITRADER_MAILBOX__ALLOWLIST": '["noreply@tbank.ru"]',
        "ITRADER_GATE_URL": "http://127.0.0.1:9/api/v1",
        "ITRADER_ENCRYPTION_KEY": KEY,
        "ITRADER_LOG_LEVEL": "DEBUG",  # not a config key: ignored
    }
    cfg = load_config(f, environ=env)
    assert cfg.mode == "auto"
    assert cfg.database.url == "postgresql://app@127.0.0.1:5432/app"
    assert cfg.limits.daily_volume_rub == Decimal("2500000.10")
    assert cfg.limits.max_in_work_per_gate_account == 7
    assert cfg.ads.max_live_per_account == 1
    assert cfg.release.delay_after_approve_s == 300
    assert cfg.mailbox.allowlist == ["noreply@tbank.ru"]
    assert cfg.venues.gate_url == "http://127.0.0.1:9/api/v1"
    assert cfg.security.encryption_key.get_secret_value() == KEY
    (rule,) = cfg.pricing.rules
    assert (rule.page, rule.ad_index, rule.price_adjustment_pct, rule.time_start) == (1, 0, Decimal("2.5"), "09:00")
    assert load_config(f, environ={"ITRADER__MODE": "manual"}).mode == "manual"


@pytest.mark.parametrize(("text", "env", "needle"), [
    ("[limits]\ndaily_volume_rub = 'lots'\n", {}, "limits.daily_volume_rub"),
    ("[limts]\nx = 1\n", {}, "limts"),                       # typo in a section
    ("[ads]\nmax_live = 3\n", {}, "ads.max_live"),           # typo in a key
    ("", {"ITRADER_ADS__MAX_LIVE_PER_ACCOUNT": "0"}, "ads.max_live_per_account"),
    ("", {"ITRADER_MODE": "yolo"}, "mode"),
    ("[limits]\nmin_amount_rub = 5\nmax_amount_rub = 1\n", {}, "min_amount_rub"),
    ("[[pricing.rules]]\nname='x'\npage=1\nad_index=0\ntime_start='25:00'\n", {}, "time_start"),
    ("mode = \n", {}, "invalid TOML"),
])
def test_invalid_values_are_reported_by_key(tmp_path: Path, text: str, env: dict[str, str], needle: str) -> None:
    f = tmp_path / "c.toml"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as exc:
        load_config(f, environ=env)
    assert needle in str(exc.value)


def test_redacted_view_hides_secrets() -> None:
    cfg = Config.model_validate({"security": {"encryption_key": KEY},
                                 "database": {"url": "postgresql+psycopg2://app:dbpass123@db/app"},
                                 "mailbox": {"password": "imap-pass-456"}})
    shown = json.dumps(cfg.redacted())
    for secret in (KEY, "dbpass123", "imap-pass-456"):
        assert secret not in shown
    assert "app:***@db" in shown and json.loads(shown)["limits"]["daily_volume_rub"] == "3000000"
