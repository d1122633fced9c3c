"""The log a stream queue appends to: the protocol every log meets, and the in-memory log
(the pure core's, for its tests and for a broker without a data directory).

Rules of this module:
1. A log is offsets ``first_offset <= o < next_offset``: appending never changes an
   offset, reading never removes anything. A chunk that would take the segment being
   written past ``max_segment_bytes`` starts a new one (``segment_count`` grows).
   Retention removes whole segments from the front (never the one being written), as
   osiris does: ``max_length_bytes`` keeps the log's bytes under the limit, ``max_age_s``
   drops segments whose newest chunk is older. It runs when the owner calls
   ``apply_retention`` (a stream does when an append started a segment, or its limits
   changed, as osiris evaluates it).
2. A chunk is what one ``append`` wrote (``add`` may gather more, rule 3): its entries
   share a timestamp (ms), never older than the previous chunk's (an older one is
   raised to it). ``last`` is the first offset of the last chunk; a timestamp names the
   first chunk written at or after it (the next offset if none was).
3. What ``append`` or ``add`` wrote is readable at once and durable after ``sync``; the
   broker syncs every log that ``needs_sync`` once per loop pass, before the pass's
   confirms.
4. An entry is whatever the owner's codec made of a message (``EntryCodec``): bytes for
   a log on disk (``zbroker/storage/stream_log.py``, which meets this protocol as it
   is, with a codec of the storage's that reads a message's attributes and gives back
   its ``Fields``: no import of the core); the in-memory log keeps the ``Message``
   itself (``KEEP_MESSAGES``), copying nothing. A filter value (RabbitMQ 3.13's stream
   filtering) rides with each entry.
5. A reader is a position: ``read(n)`` returns up to n entries from it and moves on;
   one left behind by retention goes on from the new first offset. Given filter
   values, it may skip chunks with none of them (the caller checks each entry).
6. Tracking: ``track(name, offset)`` keeps the highest offset given under a name,
   ``tracked(name)`` returns it (``None``: never tracked); a log on disk keeps it with
   its data (durable with ``sync``), and deleting the log deletes it.
"""
from __future__ import annotations

from bisect import bisect_left, bisect_right
from typing import Any, Protocol

from zbroker.core.messaging.message import Message

#: RabbitMQ's default segment size (``x-stream-max-segment-size-bytes``): 500 MB.
DEFAULT_SEGMENT_BYTES = 500_000_000

Entry = tuple[int, Any, "str | None"]  # (offset, entry, filter value)


class LogReader(Protocol):
    def read(self, max_entries: int) -> list[Entry]: ...


class StreamLog(Protocol):
    """What a stream asks of its log (rules 1-5)."""

    #: Settable: the size of the segments started from now on.
    max_segment_bytes: int

    @property
    def first_offset(self) -> int: ...
    @property
    def next_offset(self) -> int: ...
    @property
    def last_chunk_offset(self) -> int: ...
    @property
    def segment_count(self) -> int: ...
    @property
    def bytes(self) -> int: ...
    @property
    def needs_sync(self) -> bool: ...

    def append(self, entries: list[tuple[Any, str | None]], timestamp_ms: int) -> int: ...
    def add(self, entries: list[tuple[Any, str | None]], timestamp_ms: int) -> int: ...
    def sync(self) -> None: ...
    def reader(self, offset: int, filter_values: "frozenset[str] | None" = None,
               match_unfiltered: bool = False) -> LogReader: ...
    def track(self, name: str, offset: int) -> None: ...
    def tracked(self, name: str) -> int | None: ...
    def offset_for_timestamp(self, timestamp_ms: int) -> int: ...
    def set_retention(self, max_length_bytes: int | None, max_age_s: float | None) -> None: ...
    def apply_retention(self, now_ms: int) -> int: ...
    def close(self) -> None: ...
    def delete(self) -> None: ...


#: What a stream keeps of a message: exchange, routing key, properties, body, and when it
#: was published (seconds).
Fields = tuple[Any, Any, dict, Any, float]


class EntryCodec(Protocol):
    """A message into a log entry, and the entry back into the message's fields (rule 3).
    A codec whose entries are the zbroker wire's stream entries says so with a true
    ``wire_entries`` attribute (the storage's does; ``StreamQueue`` rule 4);
    ``decodes_new`` says ``decode`` builds new tables each time, which the stream may
    change (else it copies them before adding its header)."""

    decodes_new: bool

    def encode(self, message: Message) -> Any: ...
    def decode(self, entry: Any) -> Fields: ...


class _KeepMessages:
    """The in-memory log's codec: the entry is the message."""

    decodes_new = False  # (its tables are the publisher's message's)

    @staticmethod
    def encode(message: Message) -> Message:
        return message

    @staticmethod
    def decode(entry: Message) -> Fields:
        return entry.exchange, entry.routing_key, entry.properties, entry.body, entry.published_at


KEEP_MESSAGES: EntryCodec = _KeepMessages()


def _size(entry: Any) -> int:
    return entry.size if isinstance(entry, Message) else len(entry)


class _Segment:
    __slots__ = ("first", "bytes", "newest_ms")

    def __init__(self, first: int) -> None:
        self.first = first
        self.bytes = 0
        self.newest_ms = 0


class MemoryStreamLog:
    """The log in memory: entries in one list from ``first_offset`` on, with the chunks'
    and segments' starts beside it."""

    def __init__(self, max_segment_bytes: int | None = None, max_length_bytes: int | None = None,
                 max_age_s: float | None = None) -> None:
        self.max_segment_bytes = max_segment_bytes or DEFAULT_SEGMENT_BYTES
        self.max_length_bytes = max_length_bytes
        self.max_age_s = max_age_s
        self.first_offset = self.next_offset = self.last_chunk_offset = 0
        self._entries: list[tuple[Any, str | None]] = []
        #: Chunks' first offsets and timestamps (ms), in order (rule 2).
        self._chunks: list[int] = []
        self._chunk_ms: list[int] = []
        self._segments = [_Segment(0)]
        self._tracked: dict[str, int] = {}
        self.bytes = 0
        self.closed = self.deleted = False

    # -- writing -------------------------------------------------------------------------

    def append(self, entries: list[tuple[Any, str | None]], timestamp_ms: int) -> int:
        """Write one chunk; returns its first offset."""
        first = self.next_offset
        segment = self._segments[-1]
        size = sum(_size(entry) for entry, _ in entries)
        if segment.bytes and segment.bytes + size > self.max_segment_bytes:
            segment = _Segment(first)
            self._segments.append(segment)
        if self._chunk_ms and timestamp_ms < self._chunk_ms[-1]:
            timestamp_ms = self._chunk_ms[-1]
        self._entries.extend(entries)
        self._chunks.append(first)
        self._chunk_ms.append(timestamp_ms)
        segment.bytes += size
        segment.newest_ms = timestamp_ms
        self.bytes += size
        self.last_chunk_offset = first
        self.next_offset = first + len(entries)
        return first

    def add(self, entries: list[tuple[Any, str | None]], timestamp_ms: int) -> int:
        """In memory, nothing waits for a sync: a chunk of its own."""
        return self.append(entries, timestamp_ms)

    def sync(self) -> None:
        """Nothing to flush in memory."""

    needs_sync = False

    # -- retention (rule 1) --------------------------------------------------------------

    def set_retention(self, max_length_bytes: int | None, max_age_s: float | None) -> None:
        self.max_length_bytes = max_length_bytes
        self.max_age_s = max_age_s

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    def apply_retention(self, now_ms: int) -> int:
        """Drop the segments the limits no longer allow; returns the first offset kept."""
        segments = self._segments
        drop = 0
        held = self.bytes
        while drop < len(segments) - 1:
            oldest = segments[drop]
            too_big = self.max_length_bytes is not None and held > self.max_length_bytes
            too_old = self.max_age_s is not None and oldest.newest_ms < now_ms - self.max_age_s * 1000
            if not (too_big or too_old):
                break
            held -= oldest.bytes
            drop += 1
        if drop:
            self._truncate(segments[drop].first)
            del segments[:drop]
            self.bytes = held
        return self.first_offset

    def _truncate(self, first: int) -> None:
        """Forget every entry before offset ``first`` (a segment's start)."""
        del self._entries[:first - self.first_offset]
        cut = bisect_right(self._chunks, first - 1)
        del self._chunks[:cut]
        del self._chunk_ms[:cut]
        self.first_offset = first

    # -- reading (rules 2 and 4) ---------------------------------------------------------

    def reader(self, offset: int, filter_values: frozenset[str] | None = None,
               match_unfiltered: bool = False) -> "MemoryReader":
        """(Filters skip nothing here: the caller checks each entry, and no chunk is read
        from disk to spare.)"""
        return MemoryReader(self, offset)

    def offset_for_timestamp(self, timestamp_ms: int) -> int:
        """The first chunk written at or after ``timestamp_ms``; the next offset if none."""
        found = bisect_left(self._chunk_ms, timestamp_ms)  # (timestamps only grow, as ``now`` does)
        return self._chunks[found] if found < len(self._chunks) else self.next_offset

    def entries(self, offset: int, count: int) -> list[Entry]:
        start = max(offset, self.first_offset)
        index = start - self.first_offset
        return [(start + i, entry, filter_value)
                for i, (entry, filter_value) in enumerate(self._entries[index:index + count])]

    # -- tracking (rule 6) ----------------------------------------------------------------

    def track(self, name: str, offset: int) -> None:
        if offset > self._tracked.get(name, -1):
            self._tracked[name] = offset

    def tracked(self, name: str) -> int | None:
        return self._tracked.get(name)

    # -- going ---------------------------------------------------------------------------

    def close(self) -> None:
        self.closed = True

    def delete(self) -> None:
        self._tracked.clear()
        self._entries.clear()
        self._chunks.clear()
        self._chunk_ms.clear()
        self.deleted = True


class MemoryReader:
    __slots__ = ("log", "offset")

    def __init__(self, log: MemoryStreamLog, offset: int) -> None:
        self.log = log
        self.offset = offset

    def read(self, max_entries: int) -> list[Entry]:
        found = self.log.entries(self.offset, max_entries)
        if found:
            self.offset = found[-1][0] + 1
        return found
