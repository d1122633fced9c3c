"""The packed form of a zbroker message: its commands and small bodies in one frame.

A message in the packed form is::

    [HEADER + msgpack array [command, (body), command, (body), ...], (large body), ...]

A command is the same array as in the split form (``native_codec.py``); a body is a
msgpack bin, or, for a body that travels as a frame of its own, the number of that frame
in the message (1 for the first after the packed frame, then 2, ...).

Why a second form: pyzmq spends far more on each frame it receives (a ``Frame`` object,
its attributes, its release) than on the bytes in it, so one frame instead of the split
form's three or four is most of a small message's receive cost, on both ends; and one
join sends all of a pass's events for one connection.

Rules:
1. A body goes inside the frame if it is ``bytes`` of at most ``INLINE_BODY_BYTES`` and
   the frame stays within the receiver's limit; any other goes as a frame of its own,
   which ZeroMQ sends without a copy. Frames of their own are named in order, each once.
2. The packed frame is at most the receiver's limit (the broker takes frame_max,
   ``MAX_COMMAND_BYTES``; a client that plus ``DELIVERY_OVERHEAD_BYTES``): the encoders
   start a new message before a command that would pass it. A larger packed frame is
   read item by item, and a command in it over the limit is refused with the split
   form's error, before it is decoded; the bodies in it are the body limits' business.
3. Every defect is a ``ProtocolError``, as in the split form, and the commands before it
   are yielded first.
"""
from __future__ import annotations

import struct
from typing import Any, Iterator, Sequence

import msgpack

from zbroker import errors
from zbroker.protocol.native_codec import (HEADER, MAX_COMMAND_BYTES, ProtocolError, check_command,
                                           check_header, decode_message, pack)
from zbroker.protocol.native_commands import BODY_OPS, SPECS

#: The largest body carried inside the packed frame (pyzmq's own zero-copy threshold:
#: a larger one is cheaper as a frame of its own than copied into and out of msgpack).
INLINE_BODY_BYTES = 65536
_HEADER_LEN = len(HEADER)
_ONE = HEADER + b"\x91"  # (msgpack: an array of one item)
_TWO = HEADER + b"\x92"
_FIRST_FRAME = pack(1)
_u16 = struct.Struct(">BH").pack
_u32 = struct.Struct(">BI").pack
_unpackb = msgpack.unpackb
#: The first byte of a msgpack array (a command; a body is a bin or an int).
_ARRAY_MARKERS = frozenset([*range(0x90, 0xA0), 0xDC, 0xDD])


def _array_header(n: int) -> bytes:
    if n < 16:
        return bytes((0x90 | n,))
    return _u16(0xDC, n) if n < 0x10000 else _u32(0xDD, n)


#: msgpack's bin 8 headers, made once: building two bytes per body costs more than the body.
_BIN8 = [bytes((0xC4, n)) for n in range(0x100)]


def _bin_header(n: int) -> bytes:
    if n < 0x100:
        return _BIN8[n]
    return _u16(0xC5, n) if n < 0x10000 else _u32(0xC6, n)


_MAGIC_0, _MAGIC_1, _VERSION = HEADER


def is_packed(frame: Any) -> bool:
    """Is ``frame`` (bytes, or a ``zmq.Frame`` over 64 KiB) a packed frame of this version?"""
    if type(frame) is bytes:  # (by its bytes: a slice would be an object made and freed)
        return len(frame) > _HEADER_LEN and frame[2] == _VERSION and frame[0] == _MAGIC_0 and frame[1] == _MAGIC_1
    return len(frame) > _HEADER_LEN and bytes(memoryview(frame)[:_HEADER_LEN]) == HEADER


def pack_command(command: bytes, body: Any = None, limit: int = MAX_COMMAND_BYTES) -> list[Any]:
    """The packed message for one command already encoded (``encode``), with its body
    if its opcode has one: what a client sends."""
    if body is None:
        return [_ONE + command]
    size = len(body)
    if type(body) is bytes and size <= INLINE_BODY_BYTES and _HEADER_LEN + len(command) + size + 7 <= limit:
        return [b"".join((_TWO, command, _bin_header(size), body))]
    return [b"".join((_TWO, command, _FIRST_FRAME)), body]


def pack_events(parts: list[Any], limit: int) -> list[list[Any]]:
    """The packed messages, in order, for one connection's events: ``parts`` holds event
    tuples (a command's array), each followed by its body where its opcode has one."""
    messages: list[list[Any]] = []
    chunks: list[Any] = [HEADER, b""]  # (the array's header goes second, once counted)
    own: list[Any] = []  # bodies sent as frames of their own
    items, size = 0, _HEADER_LEN + 5
    for part in parts:
        if isinstance(part, tuple):
            command = pack(part)
            if items and size + len(command) > limit:
                messages.append(_finish(chunks, items, own))
                chunks, own, items, size = [HEADER, b""], [], 0, _HEADER_LEN + 5
            chunks.append(command)
            size += len(command)
        else:
            n = len(part)
            if type(part) is bytes and n <= INLINE_BODY_BYTES and size + n + 5 <= limit:
                chunks.append(_bin_header(n))
                chunks.append(part)
                size += n + 5
            else:
                own.append(part)
                chunks.append(pack(len(own)))
                size += 5
        items += 1
    if items:
        messages.append(_finish(chunks, items, own))
    return messages


def _finish(chunks: list[Any], items: int, own: list[Any]) -> list[Any]:
    chunks[1] = _array_header(items)
    return [b"".join(chunks), *own]


def decode_packed(parts: Sequence[Any], start: int = 0,
                  max_bytes: int = MAX_COMMAND_BYTES) -> Iterator[tuple[int, list[Any], Any]]:
    """Yield ``(opcode, fields, body)`` for each command of the packed message whose
    packed frame is ``parts[start]``."""
    frame = parts[start]
    items = _items(frame) if len(frame) <= max_bytes else _items_checked(frame, max_bytes)
    own = len(parts) - start - 1
    named = 0
    i, n = 0, len(items)
    while i < n:
        op, fields = check_command(items[i])
        i += 1
        body = None
        if op in BODY_OPS:
            if i >= n:
                raise ProtocolError(errors.FRAME_ERROR, f"{SPECS[op].op.name} without its body")
            body = items[i]
            i += 1
            if type(body) is not bytes:
                if type(body) is not int or body != named + 1 or body > own:
                    raise ProtocolError(errors.FRAME_ERROR, f"{SPECS[op].op.name}'s body is {body!r}: neither "
                                                            f"bytes nor the next of the message's {own} frames")
                named = body
                body = parts[start + body]
        yield op, fields, body
    if named != own:
        raise ProtocolError(errors.FRAME_ERROR, f"{own - named} frames of the message belong to no command")


def _items(frame: Any) -> list[Any]:
    try:
        items = _unpackb(memoryview(frame)[_HEADER_LEN:], timestamp=3)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(errors.SYNTAX_ERROR, f"undecodable packed frame: {exc}") from None
    if type(items) is not list:
        raise ProtocolError(errors.SYNTAX_ERROR, "packed frame is not an array")
    return items


def _items_checked(frame: Any, max_bytes: int) -> list[Any]:
    """A packed frame over the limit, item by item: a command over it is refused before
    it is decoded (rule 2)."""
    view = memoryview(frame)[_HEADER_LEN:]
    unpacker = msgpack.Unpacker(timestamp=3, max_buffer_size=len(view))
    try:
        unpacker.feed(view)
        count = unpacker.read_array_header()
        items, at = [], unpacker.tell()
        for _ in range(count):
            unpacker.skip()
            end = unpacker.tell()
            if end - at > max_bytes and view[at] in _ARRAY_MARKERS:
                raise ProtocolError(errors.FRAME_ERROR, f"command frame of {end - at} bytes is larger than "
                                                        f"frame_max ({max_bytes} bytes)")
            items.append(_unpackb(view[at:end], timestamp=3))
            at = end
    except ProtocolError:
        raise
    except Exception as exc:
        raise ProtocolError(errors.SYNTAX_ERROR, f"undecodable packed frame: {exc}") from None
    if at != len(view):
        raise ProtocolError(errors.SYNTAX_ERROR, "undecodable packed frame: extra data after its array")
    return items


def decode_frames(parts: Sequence[Any], start: int = 0,
                  max_bytes: int = MAX_COMMAND_BYTES) -> Iterator[tuple[int, list[Any], Any]]:
    """The commands of a message of this version in either form; ``parts[start]`` is its
    header frame or its packed frame. Anything else raises the header's ``ProtocolError``."""
    first = parts[start]
    if first == HEADER:
        return decode_message(parts, start + 1, max_bytes)
    if is_packed(first):
        return decode_packed(parts, start, max_bytes)
    check_header(first)
    raise ProtocolError(errors.FRAME_ERROR, "not a zbroker message (bad header frame)")  # (not reached)
