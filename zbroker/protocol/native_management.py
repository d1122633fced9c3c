"""Management frames: ``zbroker ctl`` and the HTTP API asking the broker, on its own socket.

A management message is ``[MANAGEMENT_HEADER, request]`` with ``request`` a msgpack
array ``[request id, verb, arguments, credentials]`` (``credentials``: a map with
``user`` and ``password``, checked by ``core/access/management_access.py``; a request without
it is refused as a failed login); the broker answers ``[MANAGEMENT_HEADER,
[request id, ok, result]]`` where ``result`` is the answer, or ``{"status", "error",
"reason"}`` when ``ok`` is false. It needs no HELLO and opens no connection: a
management peer never shows up among the connections it lists.

Rules:
- The header differs from a client's (``codec.HEADER``) in its magic, so a peer that
  mixes them up gets an error, never a misreading.
- A request is checked here like any peer input: its shape, and every nested value of
  its arguments (``tables.check_table``); a defect is ``ProtocolError``.
- A request may be larger than a client command (a definitions file):
  ``MAX_REQUEST_BYTES``.
"""
from __future__ import annotations

from typing import Any

import msgpack

from zbroker import errors
from zbroker.protocol.native_codec import ProtocolError, pack
from zbroker.protocol.tables import TableError, check_table

MANAGEMENT_VERSION = 1
MANAGEMENT_HEADER = b"ZBM" + bytes([MANAGEMENT_VERSION])
MAX_REQUEST_BYTES = 64 * 1024 * 1024


def encode_request(request_id: int, verb: str, arguments: dict, credentials: dict | None = None) -> bytes:
    return pack([request_id, verb, arguments, credentials])


def decode_request(frame: bytes) -> tuple[int, str, dict, Any]:
    if len(frame) > MAX_REQUEST_BYTES:
        raise ProtocolError(errors.FRAME_ERROR, f"management request of {len(frame)} bytes is "
                                                f"larger than {MAX_REQUEST_BYTES}")
    try:
        request = msgpack.unpackb(frame, timestamp=3)
    except Exception as exc:  # msgpack raises several unrelated types
        raise ProtocolError(errors.SYNTAX_ERROR, f"undecodable management request: {exc}") from None
    if (type(request) is not list or len(request) not in (3, 4) or type(request[0]) is not int
            or type(request[1]) is not str or type(request[2]) is not dict):
        raise ProtocolError(errors.SYNTAX_ERROR, "a management request is [id, verb, arguments, credentials]")
    try:
        check_table(request[2], "management arguments")
    except TableError as exc:
        raise ProtocolError(errors.SYNTAX_ERROR, str(exc)) from None
    return request[0], request[1], request[2], request[3] if len(request) == 4 else None


def encode_reply(request_id: int, ok: bool, result: Any) -> bytes:
    return pack([request_id, ok, result])


def decode_reply(frame: bytes) -> tuple[int, bool, Any]:
    """A reply, as the management client reads it (from the broker it asked)."""
    try:
        reply = msgpack.unpackb(frame, timestamp=3)
    except Exception as exc:
        raise ProtocolError(errors.SYNTAX_ERROR, f"undecodable management reply: {exc}") from None
    if type(reply) is not list or len(reply) != 3 or type(reply[0]) is not int:
        raise ProtocolError(errors.SYNTAX_ERROR, "a management reply is [id, ok, result]")
    return reply[0], bool(reply[1]), reply[2]
