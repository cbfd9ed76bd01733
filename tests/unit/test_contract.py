"""The script contract: envelopes, exit codes, Decimal money, redaction, --serve and --schema."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from decimal import Decimal

import pytest

from itrader import contract, schemas
from itrader.errors import InputError, ScriptError


@pytest.fixture
def probe(tmp_path, monkeypatch):
    """A throwaway script contract ("probe") with its own schema folder."""
    (tmp_path / "common.json").write_text((schemas.SCHEMA_DIR / "common.json").read_text())
    (tmp_path / "probe.input.json").write_text(json.dumps({
        "$schema": "https://json-schema.org/draft/2020-12/schema", "type": "object",
        "properties": {"amount": {"$ref": "common.json#/$defs/decimal_or_number"}, "api_secret": {"type": "string"},
                       "mode": {"enum": ["ok", "refuse", "crash", "bad_output"]}},
        "required": ["amount", "mode"], "additionalProperties": False}))
    (tmp_path / "probe.output.json").write_text(json.dumps({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "oneOf": [{"type": "object", "required": ["success", "data"], "additionalProperties": False,
                   "properties": {"success": {"const": True}, "data": {
                       "type": "object", "required": ["double"],
                       "properties": {"double": {"$ref": "common.json#/$defs/decimal"}}}}},
                  {"$ref": "common.json#/$defs/failure"}]}))
    monkeypatch.setattr(schemas, "SCHEMA_DIR", tmp_path)
    monkeypatch.setattr(schemas, "CACHE_DIR", tmp_path / "cache")
    schemas.load.cache_clear()
    schemas._cached_validator.__defaults__[0].clear()
    yield tmp_path
    schemas.load.cache_clear()
    schemas._cached_validator.__defaults__[0].clear()


def operation(request, ctx):
    mode = request["mode"]
    if mode == "refuse":
        raise ScriptError("venue_refused", "no", retryable=True, venue_code=10006)
    if mode == "crash":
        raise RuntimeError(f"leaking {request.get('api_secret')}")
    if mode == "bad_output":
        return {"double": 3.5}
    return {"double": Decimal(str(request["amount"])) * 2}


def call(line):
    ctx = contract.Context(script="probe", log=__import__("logging").getLogger("probe"))
    return contract.handle("probe", operation, line, ctx)


def test_success_keeps_money_exact(probe):
    envelope, code = call(b'{"amount": 10000.10, "mode": "ok"}')
    assert code == 0
    assert envelope == {"success": True, "data": {"double": "20000.20"}}


@pytest.mark.parametrize("line", [b"garbage", b"[1, 2]", b"", b"\xff\xfe", b'"text"'])
def test_not_a_json_object_is_bad_input(probe, line):
    envelope, code = call(line)
    assert code == 2
    assert envelope["error"]["code"] == "invalid_json"
    assert envelope["error"]["retryable"] is False


def test_schema_violation_names_the_field_not_the_value(probe):
    envelope, code = call(b'{"amount": "12abc", "mode": "ok"}')
    assert code == 2
    assert envelope["error"]["code"] == "schema_violation"
    assert "amount" in envelope["error"]["message"] and "12abc" not in envelope["error"]["message"]


def test_unknown_field_is_rejected(probe):
    envelope, code = call(b'{"amount": 1, "mode": "ok", "amuont": 2}')
    assert (code, envelope["error"]["code"]) == (2, "schema_violation")


def test_venue_refusal_keeps_code_and_retryable(probe):
    envelope, code = call(b'{"amount": 1, "mode": "refuse"}')
    assert code == 1
    assert envelope["error"] == {"code": "venue_refused", "message": "no", "retryable": True, "venue_code": 10006}


def test_unexpected_exception_is_an_internal_error_without_the_secret(probe, capsys):
    envelope, code = call(b'{"amount": 1, "mode": "crash", "api_secret": "TOPSECRET-123"}')
    assert code == 1 and envelope["error"]["code"] == "internal_error"
    printed = contract.dumps(envelope)
    from itrader.log import REDACTOR

    assert "TOPSECRET-123" not in REDACTOR.redact(printed)


def test_output_that_breaks_its_schema_is_reported_not_printed(probe):
    envelope, code = call(b'{"amount": 1, "mode": "bad_output"}')
    assert code == 1
    assert envelope["error"]["code"] == "output_contract_violation"


def run_probe_process(probe_dir, args, stdin):
    code = textwrap.dedent(f"""
        import sys
        from itrader import schemas
        from pathlib import Path
        schemas.SCHEMA_DIR = Path({str(probe_dir)!r}); schemas.CACHE_DIR = Path({str(probe_dir)!r}) / "cache"
        from tests.unit.test_contract import operation
        from itrader.contract import run
        run("probe", operation)
    """)
    return subprocess.run([sys.executable, "-c", code, *args], input=stdin, capture_output=True,
                          cwd=schemas.REPO_ROOT, timeout=30)


def test_serve_answers_each_line_in_order_and_exits_zero_on_eof(probe):
    lines = b'{"amount": 1, "mode": "ok"}\n\nnot json\n{"amount": 2, "mode": "refuse"}\n{"amount": 3, "mode": "ok"}\n'
    proc = run_probe_process(probe, ["--serve"], lines)
    assert proc.returncode == 0
    out = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [o["success"] for o in out] == [True, False, False, True]
    assert out[0]["data"]["double"] == "2" and out[3]["data"]["double"] == "6"
    assert out[1]["error"]["code"] == "invalid_json" and out[2]["error"]["code"] == "venue_refused"


def test_schema_flag_prints_both_schemas(probe):
    proc = run_probe_process(probe, ["--schema"], b"")
    assert proc.returncode == 0
    doc = json.loads(proc.stdout)
    assert doc["contract_version"] == contract.CONTRACT_VERSION
    assert set(doc) >= {"input", "output"}


def test_unknown_argument_is_bad_input_with_envelope(probe):
    proc = run_probe_process(probe, ["--api-secret=x"], b"{}")
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["error"]["code"] == "bad_arguments"


def test_logs_are_json_lines_on_stderr_and_redacted(probe):
    proc = run_probe_process(probe, [], b'{"amount": 1, "mode": "crash", "api_secret": "TOPSECRET-456"}')
    assert proc.returncode == 1
    stderr = proc.stderr.decode()
    assert "TOPSECRET-456" not in stderr and "TOPSECRET-456" not in proc.stdout.decode()
    for line in stderr.splitlines():
        json.loads(line)
    assert "Traceback" not in proc.stdout.decode()


def test_bundle_rejects_unknown_reference(probe):
    (probe / "broken.input.json").write_text(json.dumps({"$ref": "common.json#/$defs/nope"}))
    with pytest.raises(ValueError, match="nope"):
        schemas.bundle("broken.input.json")


def test_input_error_is_exit_two():
    assert InputError("x", "y").exit_code == 2 and ScriptError("x", "y").exit_code == 1
