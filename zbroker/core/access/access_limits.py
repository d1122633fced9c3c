"""Per-vhost and per-user limits (RabbitMQ's ``set_vhost_limits`` / ``set_user_limits``).

Rules (RabbitMQ's names, values and texts):
- A vhost may limit ``max-connections`` and ``max-queues``; a user ``max-connections``
  and ``max-channels``. A value is an integer; a negative one means no limit, 0 allows
  none. Another name or a value of another type is refused whole (nothing applied).
- Enforced where the thing is made, counting what exists: a connection beyond its vhost's
  limit is 530 ``access to vhost '/' refused for user 'bob': connection limit (N) is
  reached``, beyond its user's 530 ``connection refused for user 'bob': user connection
  limit (N) is reached``; a channel beyond the user's limit closes the connection, 530
  ``number of channels opened for user 'bob' has reached the maximum allowed user limit
  of N``; a queue beyond the vhost's is 406 ``cannot declare queue 'q': queue limit in
  vhost '/' (N) is reached``. What exists when a limit is set stays.
- Limits are durable with the users (``users.py`` saves them) and travel in definitions:
  a user's in its ``limits`` map, a vhost's as RabbitMQ's ``vhost-limits`` parameter.
"""
from __future__ import annotations

from typing import Any

VHOST_LIMITS = ("max-connections", "max-queues")
USER_LIMITS = ("max-connections", "max-channels")


class LimitError(ValueError):
    """A limit definition refused, with the reason."""


def check_definition(definition: Any, allowed: tuple[str, ...]) -> dict[str, int]:
    """The definition as ``{name: int}``, or LimitError naming what is wrong."""
    if not isinstance(definition, dict) or not definition:
        raise LimitError(f"limits must be a non-empty JSON object of {', '.join(allowed)}")
    for name, value in definition.items():
        if name not in allowed:
            raise LimitError(f"unrecognised limit '{name}': one of {', '.join(allowed)}")
        if isinstance(value, bool) or not isinstance(value, int):
            raise LimitError(f"limit '{name}' must be an integer (negative: no limit), got {value!r}")
    return dict(definition)


def reached(limits: dict[str, int] | None, name: str, count: int) -> int | None:
    """The limit ``count`` things have reached, or None (no limit, or room left)."""
    if not limits:
        return None
    limit = limits.get(name)
    return limit if limit is not None and 0 <= limit <= count else None


class AccessLimits:
    def __init__(self) -> None:
        self.vhosts: dict[str, dict[str, int]] = {}
        self.users: dict[str, dict[str, int]] = {}

    def set_vhost(self, vhost: str, definition: Any) -> None:
        self.vhosts[vhost] = {**self.vhosts.get(vhost, {}), **check_definition(definition, VHOST_LIMITS)}

    def clear_vhost(self, vhost: str, name: str = "all") -> None:
        self._clear(self.vhosts, vhost, name, VHOST_LIMITS)

    def set_user(self, user: str, definition: Any) -> None:
        self.users[user] = {**self.users.get(user, {}), **check_definition(definition, USER_LIMITS)}

    def clear_user(self, user: str, name: str = "all") -> None:
        self._clear(self.users, user, name, USER_LIMITS)

    @staticmethod
    def _clear(table: dict[str, dict[str, int]], key: str, name: str, allowed: tuple[str, ...]) -> None:
        if name == "all":
            table.pop(key, None)
            return
        if name not in allowed:
            raise LimitError(f"unrecognised limit '{name}': one of {', '.join(allowed)}, or all")
        limits = table.get(key, {})
        limits.pop(name, None)
        if not limits:
            table.pop(key, None)

    def snapshot(self) -> dict[str, dict]:
        return {"vhosts": self.vhosts, "users": self.users}

    def restore(self, data: dict | None) -> None:
        data = data or {}
        self.vhosts = {k: dict(v) for k, v in (data.get("vhosts") or {}).items()}
        self.users = {k: dict(v) for k, v in (data.get("users") or {}).items()}
