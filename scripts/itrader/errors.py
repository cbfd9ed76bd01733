"""Errors that scripts turn into the contract's failure envelope.

``code`` is a stable snake_case identifier callers branch on; ``retryable`` tells the orchestrator whether the
same request may simply be sent again; ``venue_code`` keeps the venue's own numeric code (Bybit ``ret_code``,
HTTP status for Gate) for audit.
"""

from __future__ import annotations

from typing import Any


class ScriptError(Exception):
    exit_code = 1

    def __init__(
        self,
        code: str,
        message: str,
        *,
        retryable: bool = False,
        venue_code: int | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retryable = retryable
        self.venue_code = venue_code
        self.details = details or {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "retryable": self.retryable,
            "venue_code": self.venue_code,
        }
        if self.details:
            out["details"] = self.details
        return out

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code!r}, {self.message!r})"


class InputError(ScriptError):
    """The request itself is wrong (not JSON, schema violation, missing credentials): exit status 2."""

    exit_code = 2

    def __init__(self, code: str, message: str, **kwargs: Any) -> None:
        kwargs.setdefault("retryable", False)
        super().__init__(code, message, **kwargs)


def network_error(exc: BaseException, venue: str) -> ScriptError:
    """Classify a transport failure from requests; both kinds may be retried (after reconciliation)."""
    name = type(exc).__name__
    if "Timeout" in name:
        return ScriptError("timeout", f"{venue} did not answer in time ({name})", retryable=True)
    return ScriptError("network_error", f"cannot reach {venue} ({name})", retryable=True)
