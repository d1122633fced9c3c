"""Named consumers' tracked offsets of one stream, in a file beside its segments.

Rules of this module:
1. The file ``offsets`` is a sequence of records ``u32 crc32 | u16 name length | name
   (UTF-8) | u64 offset``, the crc over what follows it. Reading it, the highest offset
   of each name wins; a torn or corrupt tail (a crash mid-write) ends the file and is
   cut off.
2. ``track`` keeps the highest offset per name in memory; ``flush`` appends one record
   per name tracked since the last flush (the log calls it from ``sync``, once per loop
   pass). Records are written, not fsynced: a broker killed (``kill -9``) loses none,
   a power cut may lose the last ones, and a named consumer then starts earlier than its
   last ack (it is sent some messages again, never fewer).
3. When the file holds more than ``COMPACT_FACTOR`` times the records it needs (and at
   least ``COMPACT_MIN_BYTES``), it is rewritten with one record per name, atomically
   (``datadir.replace_file``).
"""
from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path

from zbroker.storage.datadir import replace_file

FILE_NAME = "offsets"
_HEAD = struct.Struct("<IH")
_OFFSET = struct.Struct("<Q")
COMPACT_FACTOR = 4
COMPACT_MIN_BYTES = 64 * 1024


def _record(name: str, offset: int) -> bytes:
    body = struct.pack("<H", len(name.encode())) + name.encode() + _OFFSET.pack(offset)
    return struct.pack("<I", zlib.crc32(body)) + body


def _parse(data: bytes) -> tuple[dict[str, int], int]:
    """Rule 1: the offsets by name, and how many bytes of ``data`` are whole records."""
    offsets: dict[str, int] = {}
    at = 0
    while at + _HEAD.size <= len(data):
        crc, length = _HEAD.unpack_from(data, at)
        end = at + _HEAD.size + length + _OFFSET.size
        if end > len(data) or zlib.crc32(data[at + 4:end]) != crc:
            break
        try:
            name = data[at + _HEAD.size:at + _HEAD.size + length].decode()
        except UnicodeDecodeError:
            break
        offset = _OFFSET.unpack_from(data, end - _OFFSET.size)[0]
        if offset > offsets.get(name, -1):
            offsets[name] = offset
        at = end
    return offsets, at


class TrackedOffsets:
    """One stream's tracked offsets (rules 1-3)."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / FILE_NAME
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            data = b""
        self.offsets, whole = _parse(data)
        self._file_bytes = whole
        if whole != len(data):
            os.truncate(self.path, whole)  # rule 1: the torn tail goes
        self._dirty: set[str] = set()

    @property
    def dirty(self) -> bool:
        return bool(self._dirty)

    def track(self, name: str, offset: int) -> None:
        if offset > self.offsets.get(name, -1):
            self.offsets[name] = offset
            self._dirty.add(name)

    def get(self, name: str) -> int | None:
        return self.offsets.get(name)

    def flush(self) -> None:
        """Rule 2 (and rule 3 when the file has grown past its use)."""
        if not self._dirty:
            return
        records = b"".join(_record(name, self.offsets[name]) for name in self._dirty)
        self._dirty.clear()
        needed = sum(len(_record(name, offset)) for name, offset in self.offsets.items())
        if self._file_bytes + len(records) > max(COMPACT_MIN_BYTES, COMPACT_FACTOR * needed):
            whole = b"".join(_record(name, offset) for name, offset in self.offsets.items())
            replace_file(self.path, whole)
            self._file_bytes = len(whole)
            return
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            view = memoryview(records)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        self._file_bytes += len(records)
