"""Loading, bundling and validating the JSON Schemas in ``schemas/``.

Schemas are written as JSON Schema 2020-12 and may reference shared definitions in other files of the folder
(``"common.json#/$defs/decimal"``).  They are bundled into one self-contained document (every external def
copied under ``$defs["<file>.<name>"]``) and compiled with fastjsonschema into Python source cached under
``var/cache/validators``: importing ``jsonschema`` alone costs ~110 ms, which would blow the cold-start budget
of a one-shot script.  ``jsonschema`` still checks every schema against the 2020-12 metaschema in the tests.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from itrader.errors import InputError

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_DIR = Path(os.environ.get("ITRADER_SCHEMA_DIR", REPO_ROOT / "schemas"))
CACHE_DIR = Path(os.environ.get("ITRADER_VAR_DIR", REPO_ROOT / "var")) / "cache" / "validators"


def _read(filename: str) -> dict[str, Any]:
    with open(SCHEMA_DIR / filename, encoding="utf-8") as fh:
        return json.load(fh)


def _split_ref(ref: str) -> tuple[str, str]:
    target, _, pointer = ref.partition("#")
    if not pointer.startswith("/$defs/") or pointer.count("/") != 2:
        raise ValueError(f"unsupported $ref {ref!r}: use [file.json]#/$defs/<name>")
    return target, pointer.removeprefix("/$defs/")


def bundle(filename: str) -> dict[str, Any]:
    """Return the schema with every external ``$defs`` reference pulled into one document."""
    root = _read(filename)
    defs: dict[str, Any] = dict(root.get("$defs", {}))
    pending: list[str] = []
    seen: set[str] = set()

    def rewrite(node: Any, current: str | None) -> Any:
        # current: the external file the node came from (None = the root schema)
        if isinstance(node, dict):
            out = {k: rewrite(v, current) for k, v in node.items() if not (k == "$defs" and node is root)}
            ref = node.get("$ref")
            if isinstance(ref, str):
                target, name = _split_ref(ref)
                target = target or current
                if target is None or target == filename:
                    out["$ref"] = f"#/$defs/{name}"
                else:
                    stem = target.removesuffix(".json")
                    out["$ref"] = f"#/$defs/{stem}.{name}"
                    key = f"{target}#{name}"
                    if key not in seen:
                        seen.add(key)
                        pending.append(key)
            return out
        if isinstance(node, list):
            return [rewrite(v, current) for v in node]
        return node

    body = rewrite(root, None)
    body["$defs"] = {k: rewrite(v, None) for k, v in defs.items()}
    while pending:
        target, name = pending.pop().split("#")
        source = _read(target)["$defs"]
        if name not in source:
            raise ValueError(f"{filename}: {target} has no $defs/{name}")
        body["$defs"][f"{target.removesuffix('.json')}.{name}"] = rewrite(source[name], target)
    return body


@cache
def load(script: str, kind: str) -> dict[str, Any]:
    """The bundled ``<script>.<kind>.json`` schema (kind is "input" or "output")."""
    return bundle(f"{script}.{kind}.json")


def _compile(schema: dict[str, Any], label: str) -> Callable[[Any], Any]:
    import fastjsonschema

    text = json.dumps(schema, sort_keys=True)
    digest = hashlib.sha256((fastjsonschema.VERSION + text).encode()).hexdigest()[:16]
    path = CACHE_DIR / f"v_{label.replace('.', '_')}_{digest}.py"
    if not path.exists():
        code = fastjsonschema.compile_to_code(schema)
        try:
            CACHE_DIR.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(code, encoding="utf-8")
            os.replace(tmp, path)  # atomic: concurrent scripts never import a half-written file
        except OSError:
            namespace: dict[str, Any] = {}
            exec(compile(code, label, "exec"), namespace)  # read-only checkout: compile in memory
            return namespace["validate"]
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.validate


def _cached_validator(script: str, kind: str, _cache: dict[tuple[str, str], Callable[[Any], Any]] = {}):  # noqa: B006
    key = (script, kind)
    if key not in _cache:
        # The schema text itself is the cache key, so an edited schema never meets a stale validator.
        _cache[key] = _compile(load(script, kind), f"{script}.{kind}")
    return _cache[key]


def check(script: str, kind: str, instance: Any) -> None:
    """Raise InputError("schema_violation") naming the failing path (never the offending value)."""
    from fastjsonschema import JsonSchemaValueException

    try:
        _cached_validator(script, kind)(instance)
    except JsonSchemaValueException as exc:
        # fastjsonschema messages name the path and the rule ("data.price must match pattern ..."), not the value.
        raise InputError("schema_violation", f"{kind} does not match schemas/{script}.{kind}.json: {exc.message}") from None
