"""JSON-lines logging on stderr, with secret redaction applied to every line.

Configured before any venue client is built: pybit attaches its own handler when the root logger has none.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterable


class Redactor:
    """Masks every registered secret string wherever it appears in emitted text."""

    MASK = "***"

    def __init__(self) -> None:
        self._secrets: set[str] = set()

    def add(self, secrets: Iterable[str]) -> None:
        self._secrets.update(s for s in secrets if s)

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            if secret in text:
                text = text.replace(secret, self.MASK)
        return text


REDACTOR = Redactor()


class JsonFormatter(logging.Formatter):
    def __init__(self, script: str) -> None:
        super().__init__()
        self.script = script

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "script": self.script,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update(getattr(record, "fields", {}) or {})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return REDACTOR.redact(json.dumps(entry, ensure_ascii=False, default=str))


def setup(script: str) -> logging.Logger:
    level = os.environ.get("ITRADER_LOG_LEVEL", "INFO").upper()
    root = logging.getLogger()
    root.handlers[:] = []
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(script))
    root.addHandler(handler)
    root.setLevel(level)
    # urllib3 debug lines would print request URLs and headers; keep them out unless asked for.
    logging.getLogger("urllib3").setLevel(max(logging.WARNING, root.level))
    return logging.getLogger(f"itrader.{script}")
