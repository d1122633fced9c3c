"""A stream's deliveries as the broker batches them on the zbroker wire (STREAM_DELIVER,
``zbroker/protocol/stream_entries.py``), turned back into the one basic.deliver per
message that the rest of the client, and the program, see.

Rules:
- Entry i becomes BASIC_DELIVER's fields ``[channel, consumer tag, first tag + i,
  redelivered false, exchange, routing key, properties]`` and its body; its properties'
  headers gain ``x-stream-offset`` (its offset), as the broker adds it for any other
  client.
- A batch that does not add up is the broker's protocol error (``ProtocolError`` 502),
  which ends the connection as any other malformed input does.
"""
from __future__ import annotations

from typing import Any, Iterator

from zbroker import errors
from zbroker.protocol import ProtocolError, stream_entries


def stream_deliveries(fields: list[Any], body: Any) -> Iterator[tuple[list[Any], bytes]]:
    """Each entry of one STREAM_DELIVER as a BASIC_DELIVER's fields and body."""
    number, consumer_tag, tag, offsets, sizes = fields
    try:
        for offset, exchange, routing_key, properties, payload in stream_entries.split(offsets, sizes, bytes(body)):
            headers = properties.get("headers")
            if headers is None:
                properties["headers"] = headers = {}
            headers["x-stream-offset"] = offset
            yield [number, consumer_tag, tag, False, exchange, routing_key, properties], payload
            tag += 1
    except ValueError as exc:
        raise ProtocolError(errors.SYNTAX_ERROR, str(exc)) from None
