"""Fuzzing stdin of the Gate scripts: always one valid envelope, exit 1 or 2, no traceback, no secret echoed."""

from __future__ import annotations

import json
import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCRIPTS = ["gate_login", "gate_me", "gate_set_balance", "gate_list_payouts", "gate_get_payout", "gate_accept",
           "gate_approve", "gate_cancel"]
secret = st.text(alphabet=string.ascii_letters + string.digits, min_size=12, max_size=40).map(lambda s: "Zq" + s)
scalar = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**12), st.floats(allow_nan=False),
                   st.text(max_size=30))
cookie = st.fixed_dictionaries({"name": st.sampled_from(["sid", "rsid", "deviceToken", "x"]), "value": secret},
                               optional={"domain": st.just(".panel.gate.cx"), "path": st.just("/"),
                                         "expirationDate": st.floats(0, 2e9)})
request = st.fixed_dictionaries({}, optional={
    "cookies": st.lists(cookie, max_size=3),
    "login": st.one_of(st.text(max_size=20), st.just("trader@sandbox.invalid")),
    "password": secret,
    "id": st.one_of(st.integers(-5, 10**8), st.text(max_size=10)),
    "amount": scalar,
    "status": st.lists(st.integers(-1, 12), max_size=3),
    "page": scalar,
    "per_page": scalar,
    "search_id": scalar,
    "content_base64": st.text(max_size=20),
    "filename": st.text(max_size=20),
    "timeout_s": st.floats(0.1, 3),
    "bogus": scalar,
})


def _secrets(obj):
    found = []
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("password", "value") and isinstance(value, str):
                found.append(value)
            else:
                found += _secrets(value)
    elif isinstance(obj, list):
        for item in obj:
            found += _secrets(item)
    return found


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
          derandomize=True)
@given(name=st.sampled_from(SCRIPTS), payload=st.one_of(request, st.binary(max_size=40).map(bytes)))
def test_fuzzed_stdin(gate, name, payload):
    stdin = json.dumps(payload) if isinstance(payload, dict) else payload
    res = gate.run(name, stdin, timeout=30)
    assert res.envelope is not None, res.stderr[-1000:]
    assert res.envelope["success"] is False
    assert res.code in (1, 2)
    assert (res.code == 2) == (res.error["code"] in {"schema_violation", "invalid_json", "missing_credentials",
                                                      "bad_attachment", "bad_base64", "file_not_found",
                                                      "empty_file", "bad_amount", "file_too_large"})
    for value in _secrets(payload if isinstance(payload, dict) else {}):
        assert value not in res.stdout and value not in res.stderr
