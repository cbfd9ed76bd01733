"""Hypothesis over every Bybit script's stdin: whatever arrives, exactly one valid envelope line comes out,
the exit status is 1 or 2, no traceback reaches stdout and no secret reaches stdout or stderr.

The venue hosts point at a closed port, so well-formed requests still run the whole client path (credentials,
pybit session, signing, error mapping) and fail with network_error instead of touching a shared sandbox."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from itrader import schemas
from tests.support import free_port, run_script, validate_envelope

SCRIPTS = ["bybit_account_info", "bybit_payment_methods", "bybit_get_rates", "bybit_create_ad", "bybit_list_ads",
           "bybit_get_ad", "bybit_update_ad", "bybit_cancel_ad", "bybit_list_orders", "bybit_get_order",
           "bybit_counterparty_info", "bybit_get_chat", "bybit_send_chat", "bybit_release_order"]
DEAD = f"http://127.0.0.1:{free_port()}"
ENV = {"ITRADER_BYBIT_URL": DEAD, "ITRADER_BYBIT_MARKET_URL": DEAD}

secrets = st.text(alphabet="0123456789abcdef", min_size=6, max_size=24).map(lambda s: "SECRETx" + s)
scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**20), st.floats(allow_nan=False),
                    st.text(max_size=30), st.sampled_from(["sbp", "tinkoff", "81.5", "10000", "sell", "1", "-1", ""]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=8)


def request_strategy(name: str) -> st.SearchStrategy[Any]:
    props = sorted(schemas.load(name, "input").get("properties", {}))
    known = st.dictionaries(st.sampled_from(props), values, max_size=len(props))
    ad = st.fixed_dictionaries({}, optional={k: values for k in ("price", "quantity", "min_amount", "max_amount",
                                                                   "payment_methods", "side", "remarks")})

    def with_secrets(d: dict[str, Any], key: str, secret: str, include_ad: dict[str, Any] | None) -> dict[str, Any]:
        out = dict(d)
        if name != "bybit_get_rates":
            out["api_key"], out["api_secret"] = key, secret
        if include_ad is not None and name in ("bybit_create_ad", "bybit_update_ad"):
            out["ad_params" if name == "bybit_create_ad" else "changes"] = include_ad
        return out

    shaped = st.builds(with_secrets, known, secrets, secrets, st.one_of(st.none(), ad)).map(json.dumps)
    return st.one_of(shaped, st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
                     values.map(json.dumps), st.text(max_size=40))


@pytest.mark.parametrize("name", SCRIPTS)
def test_any_stdin_gives_one_envelope(name: str) -> None:
    @settings(max_examples=20, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
    @given(request_strategy(name))
    def check(stdin: str) -> None:
        result = run_script(name, stdin.encode("utf-8", "surrogatepass"), env=ENV, timeout=30)
        assert result.envelope is not None, (stdin, result.stderr[-1500:])
        assert len(result.stdout.splitlines()) == 1
        validate_envelope(name, result.envelope)
        assert result.envelope["success"] is False and result.code in (1, 2), result.stdout
        assert result.envelope["error"]["code"] != "internal_error", (stdin, result.stderr[-1500:])
        assert result.envelope["error"]["code"] != "output_contract_violation", result.stdout
        assert "Traceback" not in result.stdout
        try:
            parsed = json.loads(stdin)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            for key in ("api_key", "api_secret"):
                secret = parsed.get(key)
                if isinstance(secret, str) and secret.startswith("SECRETx"):
                    assert secret not in result.stdout and secret not in result.stderr

    check()
