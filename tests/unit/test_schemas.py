"""The schemas are the contract: each is valid 2020-12, every script has both, and both validators agree."""

from __future__ import annotations

import json
import os
import subprocess

import jsonschema
import pytest

from itrader import schemas

SCHEMA_FILES = sorted(p.name for p in schemas.SCHEMA_DIR.glob("*.json"))
SCRIPTS = sorted(p.stem for p in (schemas.REPO_ROOT / "scripts").glob("*.py"))
FAILURE = {"success": False, "error": {"code": "network_error", "message": "x", "retryable": True, "venue_code": None}}


@pytest.mark.parametrize("name", SCHEMA_FILES)
def test_schema_file_is_valid_2020_12(name):
    doc = json.loads((schemas.SCHEMA_DIR / name).read_text())
    assert doc.get("$schema") == "https://json-schema.org/draft/2020-12/schema", name
    jsonschema.Draft202012Validator.check_schema(doc)


def test_every_script_has_input_and_output_schema():
    assert SCRIPTS, "no scripts found"
    for script in SCRIPTS:
        for kind in ("input", "output"):
            assert (schemas.SCHEMA_DIR / f"{script}.{kind}.json").exists(), f"{script} lacks its {kind} schema"


@pytest.mark.parametrize("script", SCRIPTS)
def test_bundled_schemas_compile_and_accept_the_failure_envelope(script):
    for kind in ("input", "output"):
        bundled = schemas.load(script, kind)
        jsonschema.Draft202012Validator.check_schema(bundled)
    jsonschema.Draft202012Validator(schemas.load(script, "output")).validate(FAILURE)
    schemas.check(script, "output", FAILURE)  # the compiled runtime validator agrees


@pytest.mark.parametrize("script", SCRIPTS)
def test_script_is_executable_and_prints_its_schema(script):
    path = schemas.REPO_ROOT / "scripts" / f"{script}.py"
    assert os.access(path, os.X_OK), f"{path} is not executable"
    proc = subprocess.run([str(path), "--schema"], capture_output=True, timeout=30)
    assert proc.returncode == 0, proc.stderr[-500:]
    doc = json.loads(proc.stdout)
    assert doc["input"] == schemas.load(script, "input") and doc["output"] == schemas.load(script, "output")
