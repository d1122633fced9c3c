"""How a management request is refused: an HTTP-like status and RabbitMQ's texts, and
the one way a request's arguments are read (a wrong or missing one is a 400).
"""
from __future__ import annotations

from typing import Any


class ManagementError(Exception):
    """A refused request: an HTTP-like status and RabbitMQ's ``error``/``reason`` texts."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason

    @property
    def error(self) -> str:
        return {400: "bad_request", 404: "Object Not Found", 405: "Method Not Allowed",
                501: "not_implemented"}.get(self.status, "internal_server_error")

    def as_dict(self) -> dict[str, Any]:
        return {"error": self.error, "reason": self.reason}


def not_found() -> ManagementError:
    return ManagementError(404, "Not Found")


#: An argument with no default: it is required.
MISSING = object()


def arg(args: dict, key: str, kind: type, default: Any = MISSING) -> Any:
    value = args.get(key, MISSING)
    if value is MISSING or value is None:
        if default is MISSING:
            raise ManagementError(400, f"'{key}' is required")
        return default
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise ManagementError(400, f"'{key}' must be {kind.__name__}, not {type(value).__name__}")
    return value
