"""Frames on the wire: commands, each followed by its body, in one of two forms.

A ZeroMQ message between a client and the broker is either, in the split form::

    [HEADER, command, (body), command, (body), ...]

or, in the packed form (``native_packed.py``: the form of everything but a HELLO from
version 2 on), one frame that starts with ``HEADER`` and holds the same commands and
bodies as one msgpack array, bodies over 64 KiB following as frames of their own.
``HEADER`` names the protocol version; every command is a msgpack array whose opcode
says (through ``commands.SPECS``) whether a body follows. Several commands per
message let either side batch.

Versions: 2 added the packed form. A HELLO travels in the split form, so a broker of
any version reads the peer's version from a header frame of exactly three bytes and can
answer a mismatch clearly; a version 2 broker takes version 1 peers, in the split form
both ways (``V1_HEADER``).

Peer input is validated here, once, and every defect becomes ``ProtocolError``: the
caller decides what the peer gets back. Nothing here trusts the peer or uses assert.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Iterator, Sequence

import msgpack

from zbroker import errors
from zbroker.protocol.native_commands import BODY_OPS, PROPERTY_FIELDS, PROTOCOL_VERSION, SPECS, TABLE_FIELDS
from zbroker.protocol.tables import TableError, check_properties, check_table

MAGIC = b"ZB"
HEADER = MAGIC + bytes([PROTOCOL_VERSION])
#: A version 1 peer's header: split form only, which this version still speaks to it.
V1_HEADER = MAGIC + b"\x01"

#: Timestamps travel as msgpack's timestamp type: a timezone-aware ``datetime`` (the
#: time of a dead letter's ``x-death``) packs as one, and unpacks back into one.
def _default(value: Any) -> Any:
    """A naive ``datetime`` (pika's way to send an AMQP timestamp) is taken as UTC."""
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    raise TypeError(f"cannot send a value of type {type(value).__name__}")


_packb = msgpack.Packer(use_bin_type=True, datetime=True, default=_default).pack
pack = _packb
_unpackb = msgpack.unpackb
#: opcode -> (spec, exact types per field), so validation is one set look-up per field.
_CHECKS = {op: (spec, spec.exact_types) for op, spec in SPECS.items()}
#: opcode -> ((field index, checker, name), ...) for fields whose nested values are checked.
_DEEP = {
    op: tuple((i, check_properties if name in PROPERTY_FIELDS else None, name)
              for i, (name, _) in enumerate(spec.fields) if name in PROPERTY_FIELDS | TABLE_FIELDS)
    for op, spec in SPECS.items()
}


#: The largest command frame a peer may send: RabbitMQ's default frame_max (128 KiB),
#: which in AMQP bounds a message's properties and headers (its content header frame
#: cannot be split). Checked before decoding, so a 100 MB header table costs no parsing.
MAX_COMMAND_BYTES = 131072
#: What the broker adds to a published command when it delivers it (consumer tag,
#: delivery tag, exchange and routing key, each at most 255 bytes): a client accepts
#: command frames this much larger.
DELIVERY_OVERHEAD_BYTES = 4096


class ProtocolError(Exception):
    """The peer sent something that is not a valid zbroker message."""

    def __init__(self, code: int, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(detail)


def encode(op: int, *fields: Any) -> bytes:
    """One command frame. Callers pass fields in table order; types are theirs to keep."""
    return _packb((op, *fields))


def check_header(header: Any) -> None:
    """Reject a message that is not ours, or is ours at another protocol version (``header``:
    bytes, or a ``zmq.Frame`` where a peer sent one over 64 KiB)."""
    if header == HEADER:
        return
    if type(header) is not bytes:  # (a frame over 64 KiB: no header of ours)
        raise ProtocolError(errors.FRAME_ERROR, "not a zbroker message (bad header frame)")
    if header[:2] == MAGIC and len(header) == 3:
        raise ProtocolError(
            errors.NOT_IMPLEMENTED,
            f"protocol version mismatch: peer speaks {header[2]}, "
            f"broker speaks {PROTOCOL_VERSION}",
        )
    raise ProtocolError(errors.FRAME_ERROR, "not a zbroker message (bad header frame)")


def decode_command(frame: Any, max_bytes: int = MAX_COMMAND_BYTES) -> tuple[int, list[Any]]:
    """Decode and validate one command frame against the table (``frame``: bytes, or a
    ``zmq.Frame`` over 64 KiB, which the size check refuses unless frame_max allows it)."""
    if len(frame) > max_bytes:
        raise ProtocolError(errors.FRAME_ERROR, f"command frame of {len(frame)} bytes is larger than "
                                                f"frame_max ({max_bytes} bytes)")
    try:
        command = _unpackb(frame, timestamp=3)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(errors.SYNTAX_ERROR, f"undecodable command frame: {exc}") from None
    return check_command(command)


def check_command(command: Any) -> tuple[int, list[Any]]:
    """Validate one decoded command (a msgpack array) against the table."""
    if type(command) is not list or not command:
        raise ProtocolError(errors.SYNTAX_ERROR, "command frame is not a non-empty array")
    op = command[0]
    check = _CHECKS.get(op) if type(op) is int else None
    if check is None:
        raise ProtocolError(errors.NOT_IMPLEMENTED, f"unknown command {op!r}")
    spec, types = check
    fields = command[1:]
    if len(fields) != len(types):
        raise ProtocolError(errors.SYNTAX_ERROR, f"{spec.op.name} takes {len(types)} fields, got {len(fields)}")
    for value, allowed in zip(fields, types):
        if type(value) not in allowed:
            _bad_field(spec, fields)
    for i, checker, name in _DEEP[op]:
        if fields[i]:
            try:
                if checker is None:
                    check_table(fields[i], f"{spec.op.name}.{name}")
                else:
                    checker(fields[i])
            except TableError as exc:
                raise ProtocolError(errors.SYNTAX_ERROR, str(exc)) from None
    return op, fields


def _bad_field(spec: Any, fields: list[Any]) -> None:
    """Name the first field of the wrong type: the slow path, for the error message."""
    for value, (name, allowed) in zip(fields, spec.fields):
        if type(value) not in allowed:
            raise ProtocolError(
                errors.SYNTAX_ERROR,
                f"{spec.op.name}.{name} must be {'/'.join(t.__name__ for t in allowed)}, "
                f"got {type(value).__name__}",
            )


def decode_message(parts: Sequence[Any], start: int = 1,
                   max_bytes: int = MAX_COMMAND_BYTES) -> Iterator[tuple[int, list[Any], Any]]:
    """Yield ``(opcode, fields, body)`` for each command of ``parts[start:]``.

    ``start`` skips the header (and, on the broker, the peer id); ``body`` is ``None``
    for commands without one.
    Commands before a defect are yielded before the ``ProtocolError`` is raised, so a
    batch is applied up to the bad command, as a stream would be.
    """
    i, n = start, len(parts)
    while i < n:
        op, fields = decode_command(parts[i], max_bytes)
        i += 1
        body = None
        if op in BODY_OPS:
            if i >= n:
                raise ProtocolError(errors.FRAME_ERROR, f"{SPECS[op].op.name} without its body frame")
            body = parts[i]
            i += 1
        yield op, fields, body
