"""Journal records kept in memory, packed into large byte arrays: what the in-memory store
holds of a message, at about its encoded size, instead of a Python object per message.

A record is ``u32 metadata length | u32 body length | metadata | body``, its metadata a
journal record's (``records.py``), so the two stores describe messages alike; memory
needs no checksum. Rules:

1. Segments. Records are appended to the active segment, a ``bytearray``; once it holds
   ``SEGMENT_BYTES`` the next record starts a new one. A location is the segment's number
   shifted left by ``OFFSET_BITS``, or'ed with the record's offset in it.
2. Large bodies stay objects. A body over ``INLINE_BODY_BYTES`` is not copied: its record
   holds an empty body and the body object is kept beside the segment, and goes with it.
   (Copying it would cost a megabyte's copy for a megabyte's message, and save nothing.)
3. References. Each segment counts the references appended to it (a message reaching
   three queues: three) and those still live. A release takes one; a segment with none
   left that is not the active one is freed at once. Unlike the disk journal, which must
   delete its segments oldest first, any segment may go.
4. Compaction. A segment that holds back its memory for a few live references that
   have stayed put (``compaction.py``: a segment a consumer is draining is left to empty
   itself) is compacted: the store, which knows where they are held, copies its live
   records to the active segment, and it is freed once the last is released. Only the
   segments that became sparse are looked at, so a pass's check costs nothing per
   segment of a long backlog.
"""
from __future__ import annotations

import struct
from typing import Any

from zbroker.storage.compaction import LIVE_FRACTION, Stillness
from zbroker.storage.records import pack_meta, unpack_meta

#: Bytes a segment holds before the next record starts a new one.
SEGMENT_BYTES = 4 * 1024 * 1024
#: Bodies up to this size are copied into their record; larger ones stay objects (rule 2).
INLINE_BODY_BYTES = 64 * 1024
#: Bits of a location below the segment number (a segment stays far below 4 GiB).
OFFSET_BITS = 32
_OFFSET_MASK = (1 << OFFSET_BITS) - 1
#: A record's head: the lengths of its metadata and its body.
HEAD = struct.Struct("<II")
_pack_head = HEAD.pack
_unpack_head = HEAD.unpack_from
_HEAD_SIZE = HEAD.size


class Arena:
    def __init__(self, segment_bytes: int = SEGMENT_BYTES) -> None:
        self.segment_bytes = segment_bytes
        #: The active segment grows; a finished one is made exact-size ``bytes``.
        self._segments: dict[int, bytearray | bytes] = {}
        #: Rule 2: per segment, the bodies its records hold by reference, by location.
        self._bodies: dict[int, dict[int, Any]] = {}
        self._live: dict[int, int] = {}
        self._appended: dict[int, int] = {}
        #: Segments a compaction could not empty (a reference nobody released): not again.
        self._no_compact: set[int] = set()
        self._stillness = Stillness()  # (rule 4)
        #: Rule 4: segments at most 1/LIVE_FRACTION live (a segment that is stays so:
        #: only the active one is appended to).
        self._sparse: set[int] = set()
        self._active = 0
        self._segments[0] = bytearray()

    def append(self, meta: list[Any], body: Any, references: int) -> int:
        """Store a record; returns its location."""
        original = body
        large = len(body) > INLINE_BODY_BYTES
        if large:
            body = b""
        packed = pack_meta(meta)
        segment = self._segments[self._active]
        assert isinstance(segment, bytearray)  # (the active one)
        end = len(segment)
        if end and end + _HEAD_SIZE + len(packed) + len(body) > self.segment_bytes:
            segment, end = self._start_segment(), 0
        number = self._active
        location = (number << OFFSET_BITS) | end
        segment += _pack_head(len(packed), len(body))
        segment += packed
        segment += body
        if large:
            self._bodies.setdefault(number, {})[location] = original
        self._live[number] = self._live.get(number, 0) + references
        self._appended[number] = self._appended.get(number, 0) + references
        return location

    def _start_segment(self) -> bytearray:
        finished = self._active
        if self._live.get(finished):
            # A growing bytearray keeps up to an eighth more than it holds: let that go.
            self._segments[finished] = bytes(self._segments[finished])
        else:
            self._free(finished)  # (everything in it went while it was active)
        self._active += 1
        segment = self._segments[self._active] = bytearray()
        return segment

    def read(self, location: int) -> tuple[list[Any], Any]:
        """(metadata, body) of the record at ``location``."""
        number, offset = location >> OFFSET_BITS, location & _OFFSET_MASK
        segment = self._segments[number]
        meta_size, body_size = _unpack_head(segment, offset)
        start = offset + _HEAD_SIZE
        end = start + meta_size
        meta = unpack_meta(segment[start:end])
        held = self._bodies.get(number)
        if held is not None and location in held:
            return meta, held[location]
        body = segment[end:end + body_size]
        return meta, body if type(body) is bytes else bytes(body)

    def release(self, location: int, references: int = 1) -> None:
        number = location >> OFFSET_BITS
        left = self._live.get(number, 0) - references
        if left > 0:
            self._live[number] = left
            if left * LIVE_FRACTION <= self._appended.get(number, 0):
                self._sparse.add(number)
        elif number != self._active:
            self._free(number)
        else:
            self._live[number] = 0

    def _free(self, number: int) -> None:
        self._segments.pop(number, None)
        self._bodies.pop(number, None)
        self._live.pop(number, None)
        self._appended.pop(number, None)
        self._no_compact.discard(number)
        self._sparse.discard(number)
        self._stillness.forget(number)

    # -- compaction (rule 4) ----------------------------------------------------------

    def compaction_candidate(self) -> int | None:
        """A segment worth compacting (rule 4), if one is; call once a loop pass."""
        found, worth = None, self._stillness.worth_compacting
        # No break once one is found: each call counts that segment's stillness, so every
        # sparse segment is checked every pass (hence ``found is None`` tested last).
        for number in self._sparse:
            if (number != self._active and number not in self._no_compact
                    and worth(number, self._live.get(number, 0), self._appended.get(number, 0))
                    and found is None):
                found = number
        return found

    def gave_up(self, number: int) -> None:
        """A compaction left references in segment ``number``: do not try it again."""
        if number in self._segments:
            self._no_compact.add(number)

    def held_in(self, number: int) -> bool:
        return number in self._segments

    @staticmethod
    def segment_of(location: int) -> int:
        return location >> OFFSET_BITS
