"""A stream's entry: how a message is kept in a stream's log on disk, and how the zbroker
wire's STREAM_DELIVER carries many of them to a consumer in one command.

Rules of this module:
1. An entry is ``u32 metadata length | metadata (msgpack) | body``; the metadata is
   ``[exchange, routing key, properties, published_at]``, datetimes as msgpack
   timestamps (as every zbroker-wire command carries them), the body as it came.
2. STREAM_DELIVER is ``[op, channel, consumer tag, first delivery tag, offsets, sizes]``
   and one body frame: the entries, back to back. Delivery tags count on from the first
   one, one per entry; ``offsets[i]`` is entry i's offset in the stream (its
   ``x-stream-offset``), ``sizes[i]`` its length. The broker sends entries as its log
   holds them (no decoding, no copy per message); the client splits them (``split``)
   and hands each to the program as one ``basic.deliver``.
3. What does not add up (sizes against the body, offsets against sizes, an entry that
   does not parse) is ``ValueError``: the receiver's to treat as a protocol error.
"""
from __future__ import annotations

import struct
from typing import Any, Iterator

import msgpack

META_LEN = struct.Struct("<I")
_pack = msgpack.Packer(use_bin_type=True, datetime=True).pack


def encode(exchange: Any, routing_key: Any, properties: dict, published_at: float, body: Any) -> bytes:
    """Rule 1."""
    meta = _pack([exchange, routing_key, properties, published_at])
    return META_LEN.pack(len(meta)) + meta + bytes(body)


def decode(entry: Any) -> tuple[Any, Any, dict, bytes, float]:
    """Rule 1: ``(exchange, routing key, properties, body, published_at)``."""
    end = META_LEN.size + META_LEN.unpack_from(entry)[0]
    exchange, routing_key, properties, published_at = msgpack.unpackb(
        entry[META_LEN.size:end], raw=False, timestamp=3, strict_map_key=False)
    return exchange, routing_key, properties, bytes(entry[end:]), published_at


def split(offsets: list[Any], sizes: list[Any], body: bytes) -> Iterator[tuple[int, Any, Any, dict, bytes]]:
    """Rule 2, on the receiving side: ``(offset, exchange, routing key, properties, body)``
    of each entry of a STREAM_DELIVER (rule 3: ``ValueError`` if it does not add up)."""
    if len(offsets) != len(sizes) or sum(sizes) != len(body):
        raise ValueError(f"STREAM_DELIVER of {len(offsets)} offsets, {len(sizes)} sizes and {len(body)} bytes")
    view = memoryview(body)
    at = 0
    unpack_len = META_LEN.unpack_from
    unpackb = msgpack.unpackb
    for offset, size in zip(offsets, sizes):
        end = at + size
        meta_end = at + META_LEN.size + unpack_len(view, at)[0]
        if meta_end > end:
            raise ValueError(f"a stream entry of {size} bytes with {meta_end - at} bytes of metadata")
        try:
            exchange, routing_key, properties, _ = unpackb(view[at + META_LEN.size:meta_end], raw=False,
                                                           timestamp=3, strict_map_key=False)
        except (ValueError, TypeError, msgpack.UnpackException) as exc:
            raise ValueError(f"a stream entry's metadata does not parse: {exc}") from None
        yield offset, exchange, routing_key, properties, body[meta_end:end]
        at = end
