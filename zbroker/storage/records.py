"""The journal's record format: length, checksum, metadata, body.

    u32 payload length | u32 CRC-32 of payload | payload
    payload = u32 metadata length | metadata (msgpack array) | body (raw bytes)

The body is written as is (never re-encoded), so a 64 KiB body costs one copy into
the kernel. A length of zero ends a segment: segments are pre-filled with zeros, so
the clean end of the journal and a never-written region look the same. Anything else
that does not check out (a length running past the file, a checksum mismatch,
metadata that does not decode) is a torn or corrupt record; the scan stops there and
says where, and the store truncates the journal at that point.
"""
from __future__ import annotations

import struct
import zlib
from typing import Any, Iterator

import msgpack

HEADER = struct.Struct("<II")
META_LEN = struct.Struct("<I")
HEADER_SIZE = HEADER.size
_unpack_header = HEADER.unpack_from
_unpack_meta_len = META_LEN.unpack_from
_crc32 = zlib.crc32
_unpackb = msgpack.unpackb

# Record kinds (the first metadata field).
#: [PUBLISH, seq, [queue ids], exchange, routing key, properties, persistent, published_at]
#: + body; published_at (seconds) was added without a format change: a reader takes a
#: record without it as published at recovery.
PUBLISH = 1
REMOVE = 2  # [REMOVE, queue id, seq]
DELIVERED = 3  # [DELIVERED, queue id, seq]: the queue delivered everything up to seq
DROP = 4  # [DROP, queue id]: the queue was deleted, all its messages are dead

#: The metadata's encoding (the in-memory store's records use it too: ``arena.py``).
pack_meta = msgpack.Packer(use_bin_type=True, datetime=True).pack


def unpack_meta(data: Any) -> Any:
    return _unpackb(data, raw=False)


def encode(meta: list[Any], body: Any = b"") -> list[Any]:
    """The buffers of one record, for ``os.writev`` (the body is not copied)."""
    packed = pack_meta(meta)
    head = META_LEN.pack(len(packed))
    crc = zlib.crc32(body, zlib.crc32(packed, zlib.crc32(head)))
    length = len(head) + len(packed) + len(body)
    out = [HEADER.pack(length, crc) + head + packed]
    if len(body):
        out.append(body)
    return out


class Corrupt(Exception):
    """Where a scan stopped on bytes that are not a valid record."""

    def __init__(self, offset: int, reason: str) -> None:
        super().__init__(f"{reason} at offset {offset}")
        self.offset = offset
        self.reason = reason


def decode_at(data: Any, offset: int) -> tuple[list[Any], memoryview, int] | None:
    """The record at ``offset`` of ``data`` (bytes-like) as (metadata, body, next offset);
    None at the clean end; ``Corrupt`` if the bytes there are not a whole valid record."""
    return _decode(memoryview(data), offset)


def _decode(view: memoryview, offset: int) -> tuple[list[Any], memoryview, int] | None:
    size = len(view)
    if offset + HEADER_SIZE > size:
        if any(view[offset:]):
            raise Corrupt(offset, "truncated header")
        return None
    length, crc = _unpack_header(view, offset)
    if length == 0:
        if crc:
            raise Corrupt(offset, "zero length with a checksum")
        return None
    start = offset + HEADER_SIZE
    end = start + length
    if length < META_LEN.size or end > size:
        raise Corrupt(offset, f"record of {length} bytes runs past the end")
    payload = view[start:end]
    if _crc32(payload) != crc:
        raise Corrupt(offset, "checksum mismatch")
    meta_end = META_LEN.size + _unpack_meta_len(payload, 0)[0]
    if meta_end > length:
        raise Corrupt(offset, "metadata longer than the record")
    try:
        meta = unpack_meta(payload[META_LEN.size:meta_end])
    except Exception as exc:  # a checksummed record that does not decode: still corrupt
        raise Corrupt(offset, f"undecodable metadata ({exc})") from None
    if type(meta) is not list or not meta:
        raise Corrupt(offset, "metadata is not a record")
    return meta, payload[meta_end:], end


def scan(data: Any, offset: int = 0) -> Iterator[tuple[int, list[Any], memoryview, int]]:
    """Every record from ``offset`` as (offset, metadata, body, next offset); raises
    ``Corrupt`` where the valid records end in garbage (after yielding the good ones)."""
    view = memoryview(data)
    while True:
        record = _decode(view, offset)
        if record is None:
            return
        meta, body, following = record
        yield offset, meta, body, following
        offset = following
