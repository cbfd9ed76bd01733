"""The ``ocr_receipt`` operation: read one receipt file, extract its fields, check them, give a verdict."""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import time
from decimal import Decimal
from typing import Any

from itrader.contract import Context
from itrader.errors import InputError, ScriptError

MAX_FILE_BYTES = 20 * 1024 * 1024


def read_input_file(request: dict[str, Any]) -> tuple[bytes, str]:
    if "path" in request:
        path = str(request["path"])
        try:
            size = os.path.getsize(path)
            if size > MAX_FILE_BYTES:
                raise InputError("file_too_large", f"receipt file is {size} bytes; the limit is {MAX_FILE_BYTES}")
            with open(path, "rb") as fh:
                return fh.read(), os.path.basename(path)
        except FileNotFoundError:
            raise InputError("file_not_found", "no file at the given path") from None
        except IsADirectoryError:
            raise InputError("file_not_found", "the given path is a directory") from None
        except PermissionError:
            raise InputError("file_unreadable", "the receipt file cannot be read (permission denied)") from None
    try:
        data = base64.b64decode(request["content_base64"], validate=True)
    except (binascii.Error, ValueError):
        raise InputError("invalid_base64", "content_base64 is not valid base64") from None
    if len(data) > MAX_FILE_BYTES:
        raise InputError("file_too_large", f"receipt content is {len(data)} bytes; the limit is {MAX_FILE_BYTES}")
    return data, str(request.get("filename") or "receipt")


def analyse(data: bytes, *, expected: dict[str, Any] | None = None, force_ocr: bool = False) -> dict[str, Any]:
    """The whole pipeline on bytes; shared by the script, the CLI and the bench."""
    from itrader.receipts.check import evaluate
    from itrader.receipts.extract import extract
    from itrader.receipts.parse import parse_text

    started = time.perf_counter()
    try:
        extracted = extract(data, force_ocr=force_ocr)
    except ValueError:
        raise InputError("unsupported_file", "the file is neither a PDF nor an image") from None
    except Exception as exc:  # tesseract/poppler missing or crashed: an environment problem, not bad input
        raise ScriptError("extraction_failed", f"cannot extract text ({type(exc).__name__})", retryable=False) from None
    parsed = parse_text(extracted.text, ocr=extracted.source == "ocr")
    checks, verdict, reasons = evaluate(parsed.fields, source=extracted.source, expected=expected,
                                        ambiguous=parsed.ambiguous, document=extracted.document,
                                        labels_found=parsed.labels_found)
    fields = {k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in parsed.fields.items()}
    return {
        "source": extracted.source,
        "file_type": extracted.kind,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "elapsed_ms": round((time.perf_counter() - started) * 1000, 1),
        "fields": fields,
        "ambiguous": {k: [format(v, "f") for v in vs] for k, vs in parsed.ambiguous.items()},
        "checks": checks,
        "verdict": verdict,
        "reasons": reasons,
        "document": {k: v for k, v in extracted.document.items() if k != "pages" or v is not None},
    }


def ocr_receipt(request: dict[str, Any], ctx: Context) -> dict[str, Any]:
    data, filename = read_input_file(request)
    out = analyse(data, expected=request.get("expected"), force_ocr=bool(request.get("force_ocr", False)))
    out["filename"] = filename
    ctx.log.info("receipt analysed", extra={"fields": {"source": out["source"], "verdict": out["verdict"],
                                                       "reasons": out["reasons"], "sha256": out["sha256"]}})
    return out
