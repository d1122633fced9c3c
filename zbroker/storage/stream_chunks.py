"""A stream's chunk: the unit a stream log writes, checks and skips.

Rules:

1. One ``append`` is one chunk: a header, an optional filter section, then the entries.
   Nothing in a chunk is ever rewritten; a chunk is valid only as a whole (one CRC).
2. Header (little-endian, ``HEADER.size`` = 36 bytes)::

       magic 4s "ZSC1" | flags u8 | filter kind u8 | filter size u16 | count u32 |
       first offset u64 | timestamp ms i64 | data size u32 | crc u32

   The CRC-32 covers the 32 header bytes before it, the filter section and the data,
   so a torn write, a stale tail or a flipped bit anywhere fails the check.
3. Entries are the caller's bytes, never interpreted: ``u32 length | bytes``; when any
   entry of the chunk has a filter value (flag ``HAS_FILTERS``) each entry is
   ``u32 length | u16 filter length (NO_FILTER for None) | filter utf-8 | bytes``.
   Offsets are not stored per entry: entry i has offset ``first offset + i``.
4. The filter section (RabbitMQ 3.13 stream filtering) says which filter values the
   chunk may hold, so a reader can skip a chunk without reading its entries: the exact
   set of values when small (``FILTER_SET_MAX`` values, ``FILTER_SET_BYTES`` bytes),
   else a bloom filter (``BLOOM_HASHES`` hashes, about ``BLOOM_BITS_PER_VALUE`` bits a
   value, a power of two between ``BLOOM_MIN_BYTES`` and ``BLOOM_MAX_BYTES``). The flag
   ``HAS_UNFILTERED`` says some entry has no filter value. Hashes are blake2b, never
   Python's ``hash`` (randomized per process).
5. Anything that does not check out is ``ChunkError``; the log decides what it means
   (a torn tail is truncated, damage elsewhere is refused).
"""
from __future__ import annotations

import hashlib
import os
import struct
import zlib
from typing import Iterable, Sequence

HEADER = struct.Struct("<4sBBHIQqII")
HEADER_SIZE = HEADER.size
#: The header's bytes the CRC covers (all but the CRC itself).
_CRC_START = HEADER_SIZE - 4
MAGIC = b"ZSC1"
HAS_FILTERS = 0x01  # entries carry a filter field
HAS_UNFILTERED = 0x02  # at least one entry has no filter value
FILTER_NONE, FILTER_SET, FILTER_BLOOM = 0, 1, 2
#: Written as an entry's filter length for "no filter value".
NO_FILTER = 0xFFFF
#: A filter value's UTF-8 bytes must fit a u16 below NO_FILTER.
MAX_FILTER_BYTES = NO_FILTER - 1
#: A chunk's data size is a u32.
MAX_DATA_BYTES = 0xFFFFFFFF
#: Up to this many distinct values (and bytes) the chunk keeps the exact set: no false
#: positives for the common case of a few values per chunk (regions, tenants).
FILTER_SET_MAX = 16
FILTER_SET_BYTES = 1024
#: The bloom filter past that: ~1% false positives at 10 bits a value with 3 hashes;
#: RabbitMQ's default bloom is 16 bytes, its maximum 255.
BLOOM_HASHES = 3
BLOOM_BITS_PER_VALUE = 10
BLOOM_MIN_BYTES = 16
BLOOM_MAX_BYTES = 4096
#: A reader's first read of a chunk: a small chunk (header, filter, data) in one call.
FIRST_READ_BYTES = 64 * 1024

_U32 = struct.Struct("<I")
_U16 = struct.Struct("<H")
_ENTRY_F = struct.Struct("<IH")
_pack_u32 = _U32.pack
_crc32 = zlib.crc32


class ChunkError(Exception):
    """Bytes that are not a whole valid chunk where one should be."""


class Header:
    """A chunk's header, decoded."""

    __slots__ = ("flags", "filter_kind", "filter_size", "count", "first_offset", "timestamp_ms",
                 "data_size", "crc")

    def __init__(self, flags: int, filter_kind: int, filter_size: int, count: int, first_offset: int,
                 timestamp_ms: int, data_size: int, crc: int) -> None:
        self.flags = flags
        self.filter_kind = filter_kind
        self.filter_size = filter_size
        self.count = count
        self.first_offset = first_offset
        self.timestamp_ms = timestamp_ms
        self.data_size = data_size
        self.crc = crc

    @property
    def size(self) -> int:
        """The whole chunk's bytes: header, filter section, data."""
        return HEADER_SIZE + self.filter_size + self.data_size

    @property
    def next_offset(self) -> int:
        return self.first_offset + self.count


def _hashes(value: bytes, bits: int) -> list[int]:
    digest = hashlib.blake2b(value, digest_size=4 * BLOOM_HASHES).digest()
    return [h % bits for h in struct.unpack(f"<{BLOOM_HASHES}I", digest)]


def _bloom_bytes(distinct: int) -> int:
    size = BLOOM_MIN_BYTES
    while size < BLOOM_MAX_BYTES and size * 8 < distinct * BLOOM_BITS_PER_VALUE:
        size *= 2
    return size


def _filter_section(values: set[bytes]) -> tuple[int, bytes]:
    if len(values) <= FILTER_SET_MAX:
        encoded = b"".join(_U16.pack(len(v)) + v for v in sorted(values))
        if len(encoded) <= FILTER_SET_BYTES:
            return FILTER_SET, encoded
    size = _bloom_bytes(len(values))
    bitmap = bytearray(size)
    for value in values:
        for bit in _hashes(value, size * 8):
            bitmap[bit >> 3] |= 1 << (bit & 7)
    return FILTER_BLOOM, bytes(bitmap)


def entries_size(entries: Sequence[tuple[bytes, str | None]]) -> int:
    """At most what ``entries`` take in a chunk's data (each with a filter field), not
    counting its header and filter section; ``ValueError`` for a filter value too long."""
    size = 0
    for blob, value in entries:
        size += _ENTRY_F.size + len(blob)
        if value is not None:
            encoded = len(value.encode())
            if encoded > MAX_FILTER_BYTES:
                raise ValueError(f"a filter value is {encoded} bytes; at most {MAX_FILTER_BYTES}")
            size += encoded
    return size


def encode(entries: Sequence[tuple[bytes, str | None]], first_offset: int,
           timestamp_ms: int) -> list[bytes]:
    """The buffers of one chunk (for ``os.pwritev``); ``ValueError`` for entries the
    format cannot hold (none, a filter value too long, data past a u32)."""
    if not entries:
        raise ValueError("a chunk holds at least one entry")
    flags, kind, section = 0, FILTER_NONE, b""
    if any(f is not None for _, f in entries):
        flags = HAS_FILTERS
        parts: list[bytes] = []
        values: set[bytes] = set()
        for blob, value in entries:
            if value is None:
                flags |= HAS_UNFILTERED
                parts.append(_ENTRY_F.pack(len(blob), NO_FILTER))
            else:
                encoded = value.encode()
                if len(encoded) > MAX_FILTER_BYTES:
                    raise ValueError(f"a filter value is {len(encoded)} bytes; at most {MAX_FILTER_BYTES}")
                values.add(encoded)
                parts.append(_ENTRY_F.pack(len(blob), len(encoded)))
                parts.append(encoded)
            parts.append(blob)
        data = b"".join(parts)
        kind, section = _filter_section(values)
    else:
        flags = HAS_UNFILTERED
        data = b"".join([x for blob, _ in entries for x in (_pack_u32(len(blob)), blob)])
    if len(data) > MAX_DATA_BYTES:
        raise ValueError(f"a chunk of {len(data)} bytes; at most {MAX_DATA_BYTES}")
    head = HEADER.pack(MAGIC, flags, kind, len(section), len(entries), first_offset, timestamp_ms,
                       len(data), 0)[:_CRC_START]
    crc = _crc32(data, _crc32(section, _crc32(head)))
    return [head + _pack_u32(crc) + section, data]


def decode_header(buf: bytes | memoryview, at: int = 0) -> Header:
    """The header at ``buf[at:]``; ``ChunkError`` if it is not one (zeros, garbage, short)."""
    if len(buf) - at < HEADER_SIZE:
        raise ChunkError("truncated chunk header")
    magic, flags, kind, fsize, count, first, ts, dsize, crc = HEADER.unpack_from(buf, at)
    if magic != MAGIC or count == 0 or kind > FILTER_BLOOM:
        raise ChunkError("no chunk header")
    return Header(flags, kind, fsize, count, first, ts, dsize, crc)


def check_crc(header: Header, chunk: bytes | memoryview) -> None:
    """``chunk`` is the whole chunk's bytes (header first)."""
    if _crc32(memoryview(chunk)[HEADER_SIZE:header.size], _crc32(memoryview(chunk)[:_CRC_START])) != header.crc:
        raise ChunkError("chunk checksum mismatch")


class Block:
    """Bytes of a segment read at once, so that small chunks cost one ``pread`` between
    them, not one each; a reader keeps one only for the length of one ``read`` call."""

    __slots__ = ("fd", "position", "data")

    def __init__(self) -> None:
        self.fd = -1
        self.position = 0
        self.data: bytes = b""

    def chunk(self, fd: int, position: int, limit: int) -> tuple[Header, memoryview]:
        """The checked chunk at ``position`` (as ``read_chunk``), from the block if it
        holds the chunk whole, else read (and kept) afresh."""
        rel = position - self.position
        if fd == self.fd and 0 <= rel and rel + HEADER_SIZE <= len(self.data):
            header = decode_header(self.data, rel)
            end = rel + header.size
            if end <= len(self.data) and position + header.size <= limit:
                chunk = memoryview(self.data)[rel:end]
                check_crc(header, chunk)
                return header, chunk
        header, chunk, data = _read(fd, position, limit)
        self.fd, self.position, self.data = fd, position, data
        return header, chunk


def read_chunk(fd: int, position: int, limit: int) -> tuple[Header, memoryview]:
    """The whole checked chunk at ``position`` of ``fd`` (not past ``limit``): its header
    and its bytes (header included)."""
    return _read(fd, position, limit)[:2]


def _read(fd: int, position: int, limit: int) -> tuple[Header, memoryview, bytes]:
    buf = os.pread(fd, min(FIRST_READ_BYTES, limit - position), position)
    header = decode_header(buf)
    size = header.size
    if position + size > limit:
        raise ChunkError("chunk runs past the end of the segment")
    if len(buf) < size:
        buf += _pread_all(fd, size - len(buf), position + len(buf))
        if len(buf) < size:
            raise ChunkError("chunk runs past the end of the file")
    check_crc(header, buf)
    return header, memoryview(buf)[:size], buf


def _pread_all(fd: int, size: int, position: int) -> bytes:
    parts = []
    while size > 0:
        part = os.pread(fd, size, position)
        if not part:
            break
        parts.append(part)
        size -= len(part)
        position += len(part)
    return b"".join(parts)


def decode_entries(header: Header, chunk: memoryview, skip: int, limit: int) -> list[tuple[int, bytes, str | None]]:
    """Entries ``skip`` .. ``skip + limit`` of a checked chunk as (offset, bytes, filter)."""
    out: list[tuple[int, bytes, str | None]] = []
    p = HEADER_SIZE + header.filter_size
    offset = header.first_offset
    stop = min(header.count, skip + limit)
    unpack = _U32.unpack_from
    if header.flags & HAS_FILTERS:
        unpack_f = _ENTRY_F.unpack_from
        for i in range(stop):
            n, fl = unpack_f(chunk, p)
            p += 6
            value = None
            if fl != NO_FILTER:
                if i >= skip:
                    value = str(chunk[p:p + fl], "utf-8")
                p += fl
            if i >= skip:
                out.append((offset + i, bytes(chunk[p:p + n]), value))
            p += n
        return out
    for i in range(stop):
        n = unpack(chunk, p)[0]
        p += 4
        if i >= skip:
            out.append((offset + i, bytes(chunk[p:p + n]), None))
        p += n
    return out


class FilterMatcher:
    """A reader's filter values, ready to test chunk filter sections (hashes computed once)."""

    def __init__(self, values: Iterable[str], match_unfiltered: bool = False) -> None:
        self.values = frozenset(v.encode() for v in values)
        self.match_unfiltered = match_unfiltered
        self._bloom_bits: dict[int, list[list[int]]] = {}

    def chunk_may_match(self, header: Header, section: bytes | memoryview) -> bool:
        """False only if no entry of the chunk can have one of the values (or, with
        ``match_unfiltered``, no filter value at all): the chunk can be skipped."""
        if self.match_unfiltered and header.flags & HAS_UNFILTERED:
            return True
        if header.filter_kind == FILTER_SET:
            return any(v in self.values for v in _set_values(section))
        if header.filter_kind == FILTER_BLOOM:
            bits = len(section) * 8
            positions = self._bloom_bits.get(bits)
            if positions is None:
                positions = self._bloom_bits[bits] = [_hashes(v, bits) for v in self.values]
            return any(all(section[b >> 3] & (1 << (b & 7)) for b in value) for value in positions)
        return False  # no entry of the chunk has a filter value


def _set_values(section: bytes | memoryview) -> Iterable[bytes]:
    p, end = 0, len(section)
    while p < end:
        n = _U16.unpack_from(section, p)[0]
        yield bytes(section[p + 2:p + 2 + n])
        p += 2 + n


def chunk_may_match(header: Header, section: bytes | memoryview, filter_values: Iterable[str],
                    match_unfiltered: bool = False) -> bool:
    """One-off form of ``FilterMatcher.chunk_may_match``."""
    return FilterMatcher(filter_values, match_unfiltered).chunk_may_match(header, section)
