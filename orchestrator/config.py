"""The orchestrator's one typed configuration: defaults < TOML file < environment.

File: --config PATH, else $ITRADER_CONFIG, else var/itrader.toml (a missing default file means "all
defaults"; a missing file that was asked for explicitly is an error).

Environment overrides, two forms:
* the general rule ``ITRADER_<SECTION>__<KEY>`` (double underscore between section and key), e.g.
  ``ITRADER_LIMITS__DAILY_VOLUME_RUB=2000000`` or ``ITRADER_ADS__MAX_LIVE_PER_ACCOUNT=1``; top-level keys
  use ``ITRADER__<KEY>`` (``ITRADER__MODE=auto``).  Lists/tables are given as JSON.
* short aliases for the values every deployment sets: see ENV_ALIASES below (ITRADER_DB_URL,
  ITRADER_ENCRYPTION_KEY, ITRADER_GATE_URL, ITRADER_BYBIT_URL, ...).  These are the names the sandbox
  prints with `itrader sandbox --print-env`.

Unknown keys are errors (a typo in a limit must not silently fall back to a default).
"""

from __future__ import annotations

import json
import os
import tomllib
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

REPO = Path(__file__).resolve().parents[1]


def var_dir() -> Path:
    return Path(os.environ.get("ITRADER_VAR_DIR", REPO / "var"))


DEFAULT_CONFIG_PATH = "var/itrader.toml"


class ConfigError(Exception):
    """The configuration file or an override is invalid; the message says which key."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Database(_Section):
    url: str = Field(default_factory=lambda: f"sqlite:///{var_dir() / 'itrader.db'}")


class Security(_Section):
    # Prefer the environment for this one; a key inside the config file sits next to the data it protects.
    encryption_key: SecretStr | None = None


class Venues(_Section):
    gate_url: str = "https://panel.gate.cx/api/v1"
    bybit_url: str = "https://api.bybit.com"
    bybit_market_url: str = "https://www.bybit.com"
    bybit_ws_url: str = "wss://stream.bybit.com"
    openai_url: str | None = None


class Limits(_Section):
    min_amount_rub: Decimal = Decimal("1000")
    max_amount_rub: Decimal = Decimal("200000")
    max_in_work_per_gate_account: int = Field(default=4, ge=1)
    daily_volume_rub: Decimal = Decimal("3000000")
    # Auto-release caps: above them the order goes to manual review instead of releasing automatically.
    max_release_rub_per_order: Decimal = Decimal("100000")
    max_release_rub_per_day: Decimal = Decimal("1000000")

    @model_validator(mode="after")
    def _ranges(self) -> Limits:
        if self.min_amount_rub <= 0 or self.min_amount_rub > self.max_amount_rub:
            raise ValueError("need 0 < min_amount_rub <= max_amount_rub")
        return self


class Ads(_Section):
    max_live_per_account: int = Field(default=2, ge=1)
    payment_window_min: int = Field(default=15, ge=15, le=120)
    quantity_buffer_usdt: Decimal = Field(default=Decimal("1"), ge=0)
    reissue_attempts: int = Field(default=2, ge=0)
    payment_kinds: list[Literal["sbp", "tinkoff"]] = Field(default_factory=lambda: ["sbp", "tinkoff"])


class Release(_Section):
    delay_after_approve_s: int = Field(default=120, ge=0)
    expected_order_status: int = 20  # Bybit "paid"; anything else after the delay -> manual review


class ReceiptPolicy(_Section):
    """What is trusted enough for an automatic approve+release; everything else goes to manual review."""

    require_mail: bool = True
    require_dkim: bool = True
    chat_receipts: Literal["manual_review", "reject"] = "manual_review"
    ocr_receipts: Literal["manual_review", "reject"] = "manual_review"


class Mailbox(_Section):
    imap_host: str = "127.0.0.1"
    imap_port: int = 993
    imap_ssl: bool = True
    user: str | None = None
    password: SecretStr | None = None
    folder: str = "INBOX"
    receipt_address: str | None = None
    allowlist: list[str] = Field(default_factory=lambda: ["noreply@tinkoff.ru", "noreply@tbank.ru"])


class PricingRule(_Section):
    """The rule-engine shape (business-rules 3.2): times are Moscow time, windows may wrap midnight, amount
    range inclusive, ad_index may be negative (counted from the end of the page: -2 = second-to-last)."""

    name: str
    priority: int = 0
    time_start: str = "00:00"
    time_end: str = "00:00"  # equal start and end = the whole day
    min_amount_rub: Decimal | None = None
    max_amount_rub: Decimal | None = None
    page: int = Field(ge=1)
    ad_index: int
    price_adjustment_pct: Decimal = Decimal("0")

    @field_validator("time_start", "time_end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        hh, sep, mm = v.partition(":")
        if sep != ":" or not (hh.isdigit() and mm.isdigit()) or int(hh) > 23 or int(mm) > 59 or len(mm) != 2:
            raise ValueError(f"{v!r} is not HH:MM")
        return f"{int(hh):02d}:{mm}"


def _tiered_rules() -> list[PricingRule]:
    """The original specification as data: small <= 50 000 RUB, night = 01:00-07:00 MSK, page 4/2/5/3,
    the second-to-last ad of the page."""
    small, large = {"max_amount_rub": Decimal("50000")}, {"min_amount_rub": Decimal("50000.01")}
    day, night = {"time_start": "07:00", "time_end": "01:00"}, {"time_start": "01:00", "time_end": "07:00"}
    return [
        PricingRule(name="small_day", page=4, ad_index=-2, **small, **day),
        PricingRule(name="small_night", page=2, ad_index=-2, **small, **night),
        PricingRule(name="large_day", page=5, ad_index=-2, **large, **day),
        PricingRule(name="large_night", page=3, ad_index=-2, **large, **night),
    ]


class Pricing(_Section):
    rules: list[PricingRule] = Field(default_factory=_tiered_rules, min_length=1)


class Intervals(_Section):
    """Seconds between polls (business-rules section 5)."""

    gate_new_payouts_s: float = Field(default=30, gt=0)
    gate_sync_s: float = Field(default=300, gt=0)
    ad_creator_s: float = Field(default=10, gt=0)
    bybit_orders_s: float = Field(default=10, gt=0)
    chat_s: float = Field(default=5, gt=0)
    mailbox_s: float = Field(default=30, gt=0)
    release_check_s: float = Field(default=10, gt=0)
    stuck_after_s: float = Field(default=1800, gt=0)
    gate_balance_refresh_s: float = Field(default=4 * 3600, gt=0)
    gate_session_refresh_s: float = Field(default=1500, gt=0)


class Gate(_Section):
    working_balance_rub: Decimal = Decimal("10000000")
    shutdown_balance_rub: Decimal = Decimal("0")  # set on every Gate account at graceful shutdown


class Config(_Section):
    mode: Literal["auto", "manual"] = "manual"
    database: Database = Field(default_factory=Database)
    security: Security = Field(default_factory=Security)
    venues: Venues = Field(default_factory=Venues)
    limits: Limits = Field(default_factory=Limits)
    ads: Ads = Field(default_factory=Ads)
    release: Release = Field(default_factory=Release)
    receipts: ReceiptPolicy = Field(default_factory=ReceiptPolicy)
    mailbox: Mailbox = Field(default_factory=Mailbox)
    pricing: Pricing = Field(default_factory=Pricing)
    intervals: Intervals = Field(default_factory=Intervals)
    gate: Gate = Field(default_factory=Gate)

    def redacted(self) -> dict[str, Any]:
        """A JSON-safe dict with every secret masked (what `itrader config show` prints)."""
        from orchestrator.db import safe_url

        data = self.model_dump(mode="json")  # SecretStr -> "**********"
        data["database"]["url"] = safe_url(self.database.url)
        return data


# Short names -> (section, key).  The venue names match `itrader sandbox --print-env`.
ENV_ALIASES: dict[str, tuple[str | None, str]] = {
    "ITRADER_DB_URL": ("database", "url"),
    "ITRADER_ENCRYPTION_KEY": ("security", "encryption_key"),
    "ITRADER_GATE_URL": ("venues", "gate_url"),
    "ITRADER_BYBIT_URL": ("venues", "bybit_url"),
    "ITRADER_BYBIT_MARKET_URL": ("venues", "bybit_market_url"),
    "ITRADER_BYBIT_WS_URL": ("venues", "bybit_ws_url"),
    "ITRADER_OPENAI_URL": ("venues", "openai_url"),
    "ITRADER_MODE": (None, "mode"),
    "ITRADER_IMAP_PASSWORD": ("mailbox", "password"),
}


def _env_value(raw: str) -> Any:
    """JSON for lists/tables (and explicit null); everything else stays a string for pydantic to coerce."""
    s = raw.strip()
    if s[:1] in "[{" or s == "null":
        try:
            return json.loads(s)
        except ValueError:
            return raw
    return raw


def _apply(data: dict[str, Any], section: str | None, key: str, value: Any) -> None:
    if section is None:
        data[key] = value
    else:
        sec = data.setdefault(section, {})
        if not isinstance(sec, dict):
            raise ConfigError(f"[{section}] is not a table")
        sec[key] = value


def env_overrides(environ: dict[str, str] | os._Environ[str]) -> list[tuple[str, str | None, str, Any]]:
    out: list[tuple[str, str | None, str, Any]] = []
    for name, raw in environ.items():
        if name in ENV_ALIASES:
            section, key = ENV_ALIASES[name]
            out.append((name, section, key, raw))
        elif name.startswith("ITRADER__") and len(name) > 9:
            out.append((name, None, name[9:].lower(), _env_value(raw)))
        elif name.startswith("ITRADER_") and "__" in name:
            rest = name[len("ITRADER_"):]
            section_part, _, key = rest.partition("__")
            if not key:
                continue
            out.append((name, section_part.lower() or None, key.lower(), _env_value(raw)))
    return out


def resolve_path(path: str | os.PathLike[str] | None, environ: dict[str, str] | None = None) -> tuple[Path, bool]:
    """(path, explicit): explicit paths must exist; the default one may be missing."""
    env = os.environ if environ is None else environ
    if path:
        return Path(path), True
    if env.get("ITRADER_CONFIG"):
        return Path(env["ITRADER_CONFIG"]), True
    return REPO / DEFAULT_CONFIG_PATH, False


def load_config(path: str | os.PathLike[str] | None = None, environ: dict[str, str] | None = None) -> Config:
    env = os.environ if environ is None else environ
    file, explicit = resolve_path(path, env)
    data: dict[str, Any] = {}
    if file.exists():
        try:
            with open(file, "rb") as fh:
                data = tomllib.load(fh, parse_float=Decimal)  # money in the file stays exact
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{file}: invalid TOML: {exc}") from None
    elif explicit:
        raise ConfigError(f"config file {file} does not exist")
    for _name, section, key, value in env_overrides(env):
        _apply(data, section, key, value)
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in exc.errors(include_input=False)
        )
        raise ConfigError(f"invalid configuration ({file.name if file.exists() else 'defaults'} + env): "
                          f"{problems}") from None
