"""What a program passes to a channel, checked before it goes on the wire.

Rules:
- Whatever the broker would refuse by closing the connection (a short string over 255
  bytes, a table it cannot hold) is refused here, as the exception pika raises
  (``ShortStringTooLong``, ``TypeError``, ``ValueError``), so one bad argument costs the
  program one call, not its connection.
- Each check returns the value as it is sent: plain ``str``, an AMQP table, ``bytes``.
"""
from __future__ import annotations

from typing import Any

from zbroker.client import exceptions, spec
from zbroker.protocol.tables import TableError, check_table

#: AMQP's short string: at most 255 bytes of UTF-8.
MAX_SHORT_STRING = 255


def short_string(value: Any, what: str) -> str:
    """An exchange, queue, routing key or tag: a str of at most 255 bytes in UTF-8."""
    if type(value) is not str:
        if not isinstance(value, str):
            raise TypeError(f"{what} must be a str, got {type(value).__name__}")
        value = str.__str__(value)  # a str subclass (an ExchangeType member): its plain text
    # UTF-8 takes at most 4 bytes a character: only longer strings need encoding to check.
    if len(value) > MAX_SHORT_STRING // 4 and len(value.encode()) > MAX_SHORT_STRING:
        raise exceptions.ShortStringTooLong(value.encode())
    return value


def arguments_table(arguments: dict | None) -> dict:
    """x-arguments: None is an empty table."""
    if arguments is None:
        return {}
    if not isinstance(arguments, dict):
        raise TypeError(f"arguments must be a dict or None, got {type(arguments).__name__}")
    converted = spec.amqp_table(arguments)
    try:  # the broker would close the connection (502) for these: say it here
        check_table(converted, "arguments")
    except TableError as exc:
        raise ValueError(f"invalid arguments: {exc}") from None
    return converted


def message_body(value: Any) -> bytes:
    """A message body: bytes as they are, a str in UTF-8."""
    if type(value) is bytes:  # (the common case, first)
        return value
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value) if not isinstance(value, bytes) else value
    raise TypeError(f"body must be bytes or str, got {type(value).__name__}")
