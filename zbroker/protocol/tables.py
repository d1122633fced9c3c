"""Checking the nested values a peer sends: argument tables, headers, message properties.

Rules of this module:
- A table is a dict with ``str`` keys (at most 255 UTF-8 bytes, AMQP's short string);
  its values are None, bool, int (signed or unsigned 64-bit), float, str, bytes, a
  timestamp, a list of values or a table. Nothing else (no ``bytes`` keys, no
  unknown msgpack extension types) gets past the codec: one peer's odd value could
  otherwise reach a shared structure (a headers binding) and fail every publish through
  it (the bug this module exists for).
- Nesting is limited to ``MAX_DEPTH`` levels, checked without recursion, so a deep
  value cannot exhaust the broker's stack.
- Message properties are pika's ``BasicProperties`` fields only, each of its AMQP type
  (``priority`` and ``delivery_mode`` are octets, ``timestamp`` a 64-bit integer).

Each check raises ``TableError`` with a one-line reason; the codec turns it into a 502
``SYNTAX_ERROR`` for that peer alone.
"""
from __future__ import annotations

from typing import Any

from datetime import datetime

#: How deep tables and arrays may nest (RabbitMQ's own limit is the frame size; pika
#: programs rarely nest beyond 3).
MAX_DEPTH = 32
MAX_KEY_BYTES = 255
_INT_MIN, _UINT_MAX = -2**63, 2**64 - 1
#: (msgpack timestamps are decoded as timezone-aware datetimes.)
_SCALARS = frozenset({type(None), bool, float, str, bytes, datetime})

_STR = frozenset({str})
_OCTET = "octet"
#: pika's BasicProperties fields and the exact types each may have on the wire.
PROPERTY_TYPES: dict[str, Any] = {
    "content_type": _STR, "content_encoding": _STR, "headers": "table",
    "delivery_mode": _OCTET, "priority": _OCTET, "correlation_id": _STR, "reply_to": _STR,
    "expiration": _STR, "message_id": _STR, "timestamp": "uint64", "type": _STR,
    "user_id": _STR, "app_id": _STR, "cluster_id": _STR,
}


class TableError(ValueError):
    """A nested value the broker will not take; the message says which and why."""


def check_table(table: dict, what: str) -> None:
    """Check every key and value inside ``table`` (a dict already)."""
    stack: list[tuple[Any, int]] = [(table, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TableError(f"{what} nests deeper than {MAX_DEPTH} levels")
        if type(value) is dict:
            for key, item in value.items():
                if type(key) is not str:
                    raise TableError(f"{what} has a key of type {type(key).__name__} ({key!r}); "
                                     "keys must be strings")
                if len(key) > MAX_KEY_BYTES // 4 and len(key.encode()) > MAX_KEY_BYTES:
                    raise TableError(f"{what} has a key longer than {MAX_KEY_BYTES} bytes")
                _check_value(item, depth, what, stack)
        else:  # a list
            for item in value:
                _check_value(item, depth, what, stack)


def _check_value(item: Any, depth: int, what: str, stack: list[tuple[Any, int]]) -> None:
    kind = type(item)
    if kind in _SCALARS:
        return
    if kind is int:
        if not _INT_MIN <= item <= _UINT_MAX:
            raise TableError(f"{what} holds an integer out of 64-bit range")
        return
    if kind is dict or kind is list:
        stack.append((item, depth + 1))
        return
    raise TableError(f"{what} holds a value of unsupported type {kind.__name__}")


_NONE = type(None)
#: property -> the exact types it may have (None too); the common case is one set look-up.
_PROPERTY_EXACT = {name: frozenset({str, _NONE}) if kind is _STR else
                   frozenset({dict, _NONE}) if kind == "table" else frozenset({int, _NONE})
                   for name, kind in PROPERTY_TYPES.items()}
_OCTETS = frozenset(name for name, kind in PROPERTY_TYPES.items() if kind == _OCTET)


def check_properties(properties: dict) -> None:
    """Message properties: known names, AMQP types, headers checked as a table."""
    exact = _PROPERTY_EXACT
    for name, value in properties.items():
        allowed = exact.get(name)
        if allowed is None or type(value) not in allowed:
            _property_error(name, value)
        if type(value) is int:
            if not 0 <= value <= (255 if name in _OCTETS else _UINT_MAX):
                _property_error(name, value)
        elif type(value) is dict and value:
            check_table(value, "headers")


def _property_error(name: Any, value: Any) -> None:
    """Say what is wrong with one property (the slow path; ``name`` is what the peer sent:
    any key a table may hold)."""
    kind = PROPERTY_TYPES.get(name)
    if kind is None:
        raise TableError(f"unknown message property {name!r}")
    if kind is _STR:
        raise TableError(f"property '{name}' must be a string, got {type(value).__name__}")
    if kind == "table":
        raise TableError(f"property 'headers' must be a table, got {type(value).__name__}")
    top = 255 if kind == _OCTET else _UINT_MAX
    raise TableError(f"property '{name}' must be an integer from 0 to {top}, got {value!r}")
