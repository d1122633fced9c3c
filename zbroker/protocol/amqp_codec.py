"""AMQP 0-9-1 frames <-> Python values, at the one boundary where peer bytes come in.

Rules of this module:
- Frames are cut here (type, channel, size, payload, 0xCE); a frame larger than the
  negotiated ``frame_max`` or not ending in 0xCE is a 501 FRAME_ERROR before any of it
  is decoded, and so are method arguments that cannot be decoded; the texts are
  RabbitMQ's (``type 1, all octets = <<...>>: {frame_too_large,200000,131064}``).
- Method frames and content headers are decoded by pamqp (the codec aiormq builds on).
  Whatever pamqp raises on bad bytes, and any value the core will not take (checked with
  the zbroker wire's own rules, ``protocol/tables.py``), becomes ``FrameError`` with
  AMQP's code: the connection is closed, nobody else notices.
- Message properties become pika's names (``type``, not pamqp's ``message_type``;
  ``timestamp`` as integer seconds) and header tables plain values (``bytes`` for AMQP's
  byte arrays), so a message looks the same to the core whichever wire brought it.
  A decimal value has no equal on the zbroker wire: it is refused (502), never altered.
- Content headers and tables going out are encoded here, not by pamqp: pamqp writes a
  float as 32 bits (a double published by pika would come back rounded) and truncates
  keys past 128 bytes. Integers go out as pika writes them (``I`` or ``l``).
- Bodies are split at ``frame_max`` as views of the body, never copied for large bodies
  (the socket gathers them); small ones are joined into one buffer with their frames.
- The per-message methods -- basic.publish and basic.ack in, basic.deliver out -- are
  also (de)coded here directly: through pamqp they cost ~9 us of the ~19 us a message
  spends in the broker. Tests hold them byte for byte to pamqp's results.
"""
from __future__ import annotations

import struct
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

from pamqp import commands, decode

from zbroker import errors
from zbroker.methods import SignedLong
from zbroker.protocol.tables import MAX_DEPTH, TableError, check_properties, check_table

PROTOCOL_HEADER = b"AMQP\x00\x00\x09\x01"
FRAME_METHOD, FRAME_HEADER, FRAME_BODY, FRAME_HEARTBEAT = 1, 2, 3, 8
FRAME_END = 0xCE
#: type (1), channel (2), size (4) before the payload, and the end octet after it.
FRAME_OVERHEAD = 8
#: AMQP's frame-min-size: no peer may negotiate a smaller frame_max.
FRAME_MIN_SIZE = 4096
HEARTBEAT = b"\x08\x00\x00\x00\x00\x00\x00\xce"
#: Bodies up to this size are joined with their frame headers into one buffer; larger
#: ones travel as views (a copy costs more than a gathered write from here on).
JOIN_BODY_BYTES = 65536
BASIC_CLASS = 60

_HEAD = struct.Struct(">BHI")
_METHOD_HEAD = struct.Struct(">BHII")  # frame head + method index
_CONTENT_HEAD = struct.Struct(">BHIHHQH")  # frame head, class, weight, body size, flags
_END = b"\xce"
_LONG = struct.Struct(">I")


class FrameError(Exception):
    """Bytes from a peer that break AMQP's rules: closes that connection with ``code``."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


# -- cutting frames ------------------------------------------------------------------------

def missing_octets(cut: bytes | bytearray, data: bytes) -> int:
    """How many of ``data``'s first octets complete the frame that ``cut`` (the end of
    an earlier read) begins; all of ``data`` when even they do not (or while the frame's
    size is not known yet)."""
    have = len(cut)
    head = cut if have >= 7 else bytes(cut) + data[:7 - have]
    if len(head) < 7:
        return len(data)
    size = _LONG.unpack_from(head, 3)[0]
    return min(len(data), max(0, 7 + size + 1 - have))


def next_frame(buf: bytes | bytearray, pos: int, frame_max: int) -> tuple[int, int, int, int] | None:
    """``(type, channel, payload start, payload end)`` of the frame at ``pos``, or None
    while it has not fully arrived."""
    if len(buf) - pos < 7:
        return None
    kind, channel, size = _HEAD.unpack_from(buf, pos)
    if size + FRAME_OVERHEAD > frame_max:
        raise FrameError(errors.FRAME_ERROR, f"type {kind}, all octets = <<>>: "
                                             f"{{frame_too_large,{size},{frame_max - FRAME_OVERHEAD}}}")
    end = pos + 7 + size
    if len(buf) <= end:
        return None
    if buf[end] != FRAME_END:
        raise FrameError(errors.FRAME_ERROR, f"type {kind}, all octets = {octets(buf[pos + 7:end])}: "
                                             f"{{invalid_frame_end_marker,{buf[end]}}}")
    return kind, channel, pos + 7, end


def octets(data: Any) -> str:
    """Bytes as RabbitMQ's error texts show them, ``<<0,50,...>>`` (the start of them: a
    reply text is at most 255 bytes)."""
    return "<<" + ",".join(str(b) for b in bytes(data[:64])) + ">>"


#: Method ids (class, method) of the per-message methods, as they open a method frame.
PUBLISH_ID = b"\x00\x3c\x00\x28"  # basic.publish (60, 40)
ACK_ID = b"\x00\x3c\x00\x50"  # basic.ack (60, 80)
_DELIVER_ID = b"\x00\x3c\x00\x3c"  # basic.deliver (60, 60)
_ACK_ARGS = struct.Struct(">QB")


def decode_publish(payload: bytes) -> tuple[str, str, bool, bool]:
    """basic.publish's ``(exchange, routing_key, mandatory, immediate)``: after the method
    id, a reserved short, two short strings and a bit octet."""
    try:
        size = payload[6]
        exchange = payload[7:7 + size].decode()
        pos = 7 + size
        size = payload[pos]
        routing_key = payload[pos + 1:pos + 1 + size].decode()
        bits = payload[pos + 1 + size]
    except (IndexError, UnicodeDecodeError):
        raise FrameError(errors.FRAME_ERROR, f"cannot decode {octets(payload[4:])}") from None
    return exchange, routing_key, bool(bits & 1), bool(bits & 2)


def decode_ack(payload: bytes) -> tuple[int, bool]:
    """basic.ack's ``(delivery_tag, multiple)``."""
    try:
        tag, bits = _ACK_ARGS.unpack_from(payload, 4)
    except struct.error:
        raise FrameError(errors.FRAME_ERROR, f"cannot decode {octets(payload[4:])}") from None
    return tag, bool(bits & 1)


def deliver_frame(channel: int, consumer_tag: str, delivery_tag: int, redelivered: bool, exchange: str,
                  routing_key: str) -> bytes:
    """A basic.deliver method frame."""
    tag, ex, key = consumer_tag.encode(), exchange.encode(), routing_key.encode()
    payload = b"".join((_DELIVER_ID, bytes((len(tag),)), tag, _ACK_ARGS.pack(delivery_tag, redelivered),
                        bytes((len(ex),)), ex, bytes((len(key),)), key))
    return b"".join((_HEAD.pack(FRAME_METHOD, channel, len(payload)), payload, _END))


def decode_method(payload: bytes) -> Any:
    """A method frame's payload as a pamqp command object."""
    if len(payload) < 4:
        raise FrameError(errors.FRAME_ERROR, "method frame shorter than its method id")
    index = _LONG.unpack_from(payload)[0]
    cls = commands.INDEX_MAPPING.get(index)
    if cls is None:
        raise FrameError(errors.COMMAND_INVALID, f"unknown method: class {index >> 16}, method {index & 0xFFFF}")
    method = cls()
    try:
        method.unmarshal(payload[4:])
    except (ValueError, TypeError, IndexError, struct.error, RecursionError):
        raise FrameError(errors.FRAME_ERROR, f"cannot decode {octets(payload[4:])}") from None
    return method


#: pamqp's Basic.Properties attribute -> pika's property name, in AMQP's flag order.
_PROPERTY_NAMES = [(slot, "type" if slot == "message_type" else slot)
                   for slot in commands.Basic.Properties.__slots__]


#: pika property name and its flag bit, in AMQP's order.
_PROPERTY_FLAGS = [(name, 1 << (15 - i)) for i, (_, name) in enumerate(_PROPERTY_NAMES)]
_OCTET_PROPS = frozenset({"delivery_mode", "priority"})
_LONGLONG = struct.Struct(">Q")


def decode_header(payload: bytes) -> tuple[int, dict]:
    """A content header's ``(body size, properties)``, properties in pika's names."""
    if len(payload) < 14:
        raise FrameError(errors.FRAME_ERROR, "content header shorter than 14 bytes")
    class_id, _weight, body_size, flags = struct.unpack_from(">HHQH", payload)
    if class_id != BASIC_CLASS:
        raise FrameError(errors.COMMAND_INVALID, f"content header for class {class_id}, expected {BASIC_CLASS}")
    if not flags:
        return body_size, {}
    if flags & 1:
        raise FrameError(errors.SYNTAX_ERROR, "content header with more than one property flag word")
    try:
        properties = _decode_properties(flags, payload)
    except (ValueError, TypeError, IndexError, struct.error, RecursionError) as exc:
        raise FrameError(errors.SYNTAX_ERROR, f"cannot decode the content header: {exc}") from None
    if "headers" in properties:
        properties["headers"] = plain_table(properties["headers"], "headers")
    try:
        check_properties(properties)
    except TableError as exc:
        raise FrameError(errors.SYNTAX_ERROR, str(exc)) from None
    return body_size, properties


def _decode_properties(flags: int, payload: bytes) -> dict:
    """The properties a flag word announces, in AMQP's order (a header table by pamqp).

    Decoded here rather than by pamqp's Basic.Properties: a publish with a few properties
    (reply_to, correlation_id: every RPC) spent ~5 us there; this takes ~1.5 us."""
    properties: dict[str, Any] = {}
    pos = 14
    for name, bit in _PROPERTY_FLAGS:
        if not flags & bit:
            continue
        if name in _OCTET_PROPS:
            properties[name] = payload[pos]
            pos += 1
        elif name == "headers":
            used, table = decode.field_table(payload[pos:])
            properties[name] = table
            pos += used
        elif name == "timestamp":
            properties[name] = _LONGLONG.unpack_from(payload, pos)[0]
            pos += 8
        else:
            size = payload[pos]
            properties[name] = payload[pos + 1:pos + 1 + size].decode()
            pos += 1 + size
    return properties


def plain_table(value: Any, what: str) -> Any:
    """A table or array as decoded by pamqp, with byte arrays as ``bytes`` and checked by
    the core's rules (``check_table``); a decimal is refused."""
    converted = _plain(value, what, 0)
    if type(converted) is dict:
        try:
            check_table(converted, what)
        except TableError as exc:
            raise FrameError(errors.SYNTAX_ERROR, str(exc)) from None
    return converted


def _plain(value: Any, what: str, depth: int) -> Any:
    if depth > MAX_DEPTH:
        raise FrameError(errors.SYNTAX_ERROR, f"{what} nests deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if kind is dict:
        return {k: _plain(v, what, depth + 1) for k, v in value.items()}
    if kind is list:
        return [_plain(v, what, depth + 1) for v in value]
    if kind is bytearray:
        return bytes(value)
    if kind is Decimal:
        raise FrameError(errors.SYNTAX_ERROR, f"{what} holds a decimal value; zbroker does not support "
                                              "decimals in tables")
    return value


def decode_table_bytes(data: bytes, what: str) -> dict:
    """A field table without its length prefix (AMQPLAIN's response), as plain values."""
    try:
        _, table = decode.field_table(_LONG.pack(len(data)) + data)
    except (ValueError, TypeError, IndexError, struct.error, RecursionError) as exc:
        raise FrameError(errors.SYNTAX_ERROR, f"cannot decode {what}: {exc}") from None
    return plain_table(table, what)


# -- encoding ------------------------------------------------------------------------------

#: Per pamqp method class: its arguments' AMQP types, in order (pamqp's own description).
_LAYOUTS: dict[type, tuple[str, ...]] = {}
_SHORT, _LONG_ARG = struct.Struct(">H"), struct.Struct(">I")


def method_frame(channel: int, cls: Any, *args: Any) -> bytes:
    """A method frame for pamqp's method class ``cls``, ``args`` in the method's order.

    Encoded here from pamqp's description of the method, not by pamqp's ``marshal``: that
    first checks names against a grammar stricter than RabbitMQ's (a queue named
    ``my queue`` or ``naïve`` could not be declared-ok), and would raise on the way out.
    """
    layout = _LAYOUTS.get(cls)
    if layout is None:
        layout = _LAYOUTS[cls] = tuple(cls.amqp_type(name) for name in cls.__slots__)
    out = [_LONG.pack(cls.index)]
    bits = nbits = 0
    for kind, value in zip(layout, args):
        if kind == "bit":
            bits |= bool(value) << nbits
            nbits += 1
            if nbits == 8:
                out.append(bytes((bits,)))
                bits = nbits = 0
            continue
        if nbits:
            out.append(bytes((bits,)))
            bits = nbits = 0
        if kind == "shortstr":
            out.append(_shortstr(value))
        elif kind == "longstr":
            out.append(_longstr(value if isinstance(value, bytes) else value.encode()))
        elif kind == "short":
            out.append(_SHORT.pack(value))
        elif kind == "long":
            out.append(_LONG_ARG.pack(value))
        elif kind == "longlong":
            out.append(_LONGLONG.pack(value))
        elif kind == "octet":
            out.append(bytes((value,)))
        elif kind == "table":
            out.append(_table(value))
        else:
            raise TypeError(f"no encoder for AMQP type {kind}")
    if nbits:
        out.append(bytes((bits,)))
    payload = b"".join(out)
    return b"".join((_HEAD.pack(FRAME_METHOD, channel, len(payload)), payload, _END))


def content_frames(channel: int, method: bytes, properties: dict, body: Any, frame_max: int) -> list[Any]:
    """A content-carrying method frame, its header and its body frames, as buffers to
    write in order. ``body`` is bytes or anything with the buffer protocol (a ``zmq.Frame``)."""
    size = len(body)
    head = method + content_header(channel, size, properties)
    if size == 0:
        return [head]
    chunk = frame_max - FRAME_OVERHEAD
    if size <= chunk:
        if size <= JOIN_BODY_BYTES:
            return [b"".join((head, _HEAD.pack(FRAME_BODY, channel, size), body, _END))]
        return [head + _HEAD.pack(FRAME_BODY, channel, size), memoryview(body), _END]
    parts: list[Any] = [head]
    view = memoryview(body)
    for start in range(0, size, chunk):
        piece = view[start:start + chunk]
        parts.append(_HEAD.pack(FRAME_BODY, channel, len(piece)))
        parts.append(piece)
        parts.append(_END)
    return parts




def content_header(channel: int, body_size: int, properties: dict) -> bytes:
    """A content header frame for class basic, encoded here (see the module's rules)."""
    if not properties:
        return _CONTENT_HEAD.pack(FRAME_HEADER, channel, 14, BASIC_CLASS, 0, body_size, 0) + _END
    flags = 0
    out = []
    for name, bit in _PROPERTY_FLAGS:
        value = properties.get(name)
        if value is None:
            continue
        flags |= bit
        if name == "headers":
            out.append(_table(value))
        elif name in _OCTET_PROPS:
            out.append(bytes((value,)))
        elif name == "timestamp":
            out.append(struct.pack(">Q", value))
        else:
            out.append(_shortstr(value))
    payload = b"".join(out)
    return (_CONTENT_HEAD.pack(FRAME_HEADER, channel, 14 + len(payload), BASIC_CLASS, 0, body_size, flags)
            + payload + _END)


def _shortstr(value: str) -> bytes:
    data = value.encode()
    if len(data) > 255:
        data = data[:255]  # the zbroker wire refuses longer ones; a last guard only
    return bytes((len(data),)) + data


def _longstr(data: bytes) -> bytes:
    return _LONG.pack(len(data)) + data


def _table(table: dict) -> bytes:
    """A field table (``F``'s payload) with its length."""
    out = []
    for key, value in table.items():
        out.append(_shortstr(key))
        out.append(_value(value))
    data = b"".join(out)
    return _LONG.pack(len(data)) + data


def _value(value: Any) -> bytes:
    kind = type(value)
    if kind is str:
        return b"S" + _longstr(value.encode())
    if kind is bool:
        return b"t\x01" if value else b"t\x00"
    if kind is int:
        if -2**31 <= value < 2**31:
            return b"I" + struct.pack(">i", value)
        if -2**63 <= value < 2**63:
            return b"l" + struct.pack(">q", value)
        return b"S" + _longstr(str(value).encode())  # above AMQP's signed 64 bits
    if kind is float:
        return b"d" + struct.pack(">d", value)
    if kind is bytes or kind is bytearray:
        return b"x" + _longstr(bytes(value))
    if kind is dict:
        return b"F" + _table(value)
    if kind is list:
        data = b"".join(_value(v) for v in value)
        return b"A" + _LONG.pack(len(data)) + data
    if value is None:
        return b"V"
    if kind is datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=timezone.utc)
        return b"T" + struct.pack(">Q", int(value.timestamp()))
    if kind is SignedLong:  # (last: the common kinds above pay nothing for it)
        return b"l" + struct.pack(">q", value)
    raise TypeError(f"no AMQP field type for {kind.__name__}")  # the wires refuse them on the way in
