"""The on-disk log of one stream (RabbitMQ streams, osiris's design): the interface the
stream queue type in the core is built against. It knows nothing of the core.

The interface (kept small and stable; everything else here is private)::

    log = StreamLog.open(directory, max_segment_bytes=500_000_000,
                         max_length_bytes=None, max_age_s=None)
    log.append(entries: Sequence[tuple[bytes, str | None]], timestamp_ms: int) -> int
    log.add(entries: Sequence[tuple[bytes, str | None]], timestamp_ms: int) -> int
    log.sync() -> None;  log.needs_sync -> bool
    log.first_offset, log.next_offset, log.last_chunk_offset -> int
    log.first_timestamp -> int | None
    log.message_count, log.bytes, log.segment_count -> int
    log.reader(offset: int, filter_values: Iterable[str] | None = None,
               match_unfiltered: bool = False) -> Reader
        reader.read(max_entries: int) -> list[tuple[int, bytes, str | None]]
        reader.next_offset -> int
    log.offset_for_timestamp(timestamp_ms: int) -> int
    log.set_retention(max_length_bytes: int | None, max_age_s: float | None) -> None
    log.apply_retention(now_ms: int) -> int
    log.track(name: str, offset: int);  log.tracked(name: str) -> int | None
    log.close();  log.delete()

Rules:

1. Offsets are dense u64s from 0, one per entry, never reused: ``append`` gives its
   entries ``next_offset .. next_offset + len - 1`` and returns the first. After
   retention ``first_offset`` is > 0; an empty log has ``first == next``.
2. One ``append`` is one chunk (``stream_chunks``); ``add`` gathers entries into the
   pending chunk instead (rule 3). A chunk is stamped with its newest ``timestamp_ms``
   (the caller's wall clock); one older than the previous is raised to it, so
   timestamps never go back and can be binary-searched.
3. Both give offsets at once. ``append`` writes its chunk to the OS at once; what ``add``
   gathered is written when the log is synced, read (a reader reads everything added),
   appended to or closed, or when it reaches ``PENDING_CHUNK_BYTES``. Written is durable
   only after ``sync()`` (one ``fdatasync``). The broker calls ``sync`` once per loop pass before
   any confirm or delivery of that pass leaves, as it commits the message store, so
   nothing read from the log reaches a client before it is on disk, and the publishes
   of one pass share a chunk (as osiris's writer batches what is pending).
4. A directory of segments (``stream_segments``): the active (newest) one is written;
   when an append would take it past ``max_segment_bytes`` the pending chunk is written,
   the segment sealed (synced) and a new one begun, at once (so ``segment_count`` tells
   the caller after its append; a chunk larger than that gets a segment of its own).
5. Memory is per segment, never per message or chunk: chunk lookups (``reader``,
   ``offset_for_timestamp``) binary-search a segment's index file on disk.
6. ``reader(offset)``: an offset before the first is read from the first, one past the
   end waits at ``next_offset``. A reader holds a segment and a file position, not data;
   each ``read`` returns up to ``max_entries`` entries in offset order (fewer at the
   end; more come as they are appended). A read that stops inside a chunk reads that
   chunk again next time (a chunk is one append). With ``filter_values`` the reader
   skips chunks whose filter section rules them out (RabbitMQ 3.13 stream filtering:
   chunk level only; the caller checks each entry's filter value, returned with it).
   A reader whose segment retention deleted goes on from the new first offset.
7. Retention deletes whole segments, oldest first, never the active one: while the
   log's bytes exceed ``max_length_bytes``, and any whose newest chunk is older than
   ``max_age_s`` before ``now_ms``. It runs when the caller says (``apply_retention``,
   cheap: it looks at segments in memory), e.g. on a timer or after an append.
8. ``open`` recovers what a crash left: sealed segments as they were, the active one
   up to its last valid chunk (a torn or garbage tail is truncated away). Everything
   synced is there again at the same offsets. Damage anywhere else (a gap between
   segments, a file of another format) is ``StreamLogError``: refused, not guessed at.
9. Named consumers' offsets (``track``, ``tracked``) live beside the segments
   (``stream_offsets``) and are written with ``sync``.
"""
from __future__ import annotations

import bisect
import logging
import os
import shutil
from pathlib import Path
from typing import Iterable, Sequence

from zbroker.storage import stream_chunks as chunks
from zbroker.storage.datadir import fsync_dir
from zbroker.storage.stream_offsets import TrackedOffsets
from zbroker.storage.stream_segments import FILE_HEADER_SIZE, Segment, StreamLogError

__all__ = ["StreamLog", "Reader", "StreamLogError", "MAX_SEGMENT_BYTES"]

log = logging.getLogger(__name__)

#: RabbitMQ's default x-stream-max-segment-size-bytes.
MAX_SEGMENT_BYTES = 500_000_000
#: Rule 3: a pending chunk this large is written without waiting for the sync.
PENDING_CHUNK_BYTES = 1 << 20
_SEGMENT_SUFFIX = ".segment"
_INDEX_SUFFIX = ".index"


def _first_offsets(directory: Path, suffix: str) -> list[int]:
    return sorted(int(p.name[:-len(suffix)]) for p in directory.iterdir()
                  if p.name.endswith(suffix) and p.name[:-len(suffix)].isdigit())


class StreamLog:
    """One stream's segments; see the module text for the rules."""

    def __init__(self, directory: Path, max_segment_bytes: int, max_length_bytes: int | None,
                 max_age_s: float | None) -> None:
        if max_segment_bytes <= 0:
            raise ValueError("max_segment_bytes must be positive")
        self.directory = directory
        self.max_segment_bytes = max_segment_bytes
        self.max_length_bytes = max_length_bytes
        self.max_age_s = max_age_s
        self._segments: list[Segment] = []  # by first offset; the last one is active
        self._bytes = 0  # of every segment but the active one (whose size changes)
        self._unsynced = False
        self._closed = False
        #: Rule 3: the entries appended since the last chunk was written, its timestamp,
        #: and its bytes (what the chunk's entries take; the header comes on top).
        self._pending: list[tuple[bytes, str | None]] = []
        self._pending_ms = 0
        self._pending_bytes = 0
        self._offsets: TrackedOffsets | None = None

    @classmethod
    def open(cls, directory: str | os.PathLike[str], max_segment_bytes: int = MAX_SEGMENT_BYTES,
             max_length_bytes: int | None = None, max_age_s: float | None = None) -> "StreamLog":
        """Open (creating if need be) the stream in ``directory`` and recover it."""
        self = cls(Path(directory), max_segment_bytes, max_length_bytes, max_age_s)
        self.directory.mkdir(parents=True, exist_ok=True)
        firsts = _first_offsets(self.directory, _SEGMENT_SUFFIX)
        for orphan in set(_first_offsets(self.directory, _INDEX_SUFFIX)) - set(firsts):
            (self.directory / f"{orphan:020d}{_INDEX_SUFFIX}").unlink()  # its segment was deleted
        try:
            for first in firsts[:-1]:
                self._segments.append(Segment.open_sealed(self.directory, first))
            if firsts:
                self._segments.append(Segment.open_active(self.directory, firsts[-1]))
        except BaseException:
            for segment in self._segments:
                segment.close()
            raise
        for before, after in zip(self._segments, self._segments[1:]):
            if before.next_offset != after.first_offset:
                self.close()
                raise StreamLogError(f"stream {self.directory}: segment {before.path.name} ends at offset "
                                     f"{before.next_offset} but the next one starts at {after.first_offset}")
        if not self._segments:
            self._segments.append(Segment.create(self.directory, 0))
            fsync_dir(self.directory)
        self._bytes = sum(s.bytes for s in self._segments[:-1])
        self._offsets = TrackedOffsets(self.directory)
        if firsts:
            log.info("stream %s: offsets %d..%d in %d segment(s) recovered", self.directory,
                     self.first_offset, self.next_offset, len(self._segments))
        return self

    # -- facts ----------------------------------------------------------------------

    @property
    def _active(self) -> Segment:
        return self._segments[-1]

    @property
    def first_offset(self) -> int:
        return self._segments[0].first_offset

    @property
    def next_offset(self) -> int:
        """The offset the next appended entry gets (everything before it is readable)."""
        return self._active.next_offset + len(self._pending)

    @property
    def last_chunk_offset(self) -> int:
        """First offset of the newest chunk (RabbitMQ's ``last``); ``next_offset`` if empty."""
        if self._pending:
            return self._active.next_offset
        newest = self._newest()
        return self.next_offset if newest is None else newest.last_chunk_offset

    def _newest(self) -> Segment | None:
        """The newest segment holding a chunk (the active one may be empty after a crash
        while rolling)."""
        for segment in reversed(self._segments):
            if segment.chunks:
                return segment
        return None

    @property
    def first_timestamp(self) -> int | None:
        """Timestamp (ms) of the oldest chunk kept; None while empty."""
        for segment in self._segments:
            if segment.first_timestamp is not None:
                return segment.first_timestamp
        return None

    @property
    def message_count(self) -> int:
        return self.next_offset - self.first_offset

    @property
    def bytes(self) -> int:
        """Disk bytes of every segment and index file (and of the pending chunk's entries)."""
        return self._bytes + self._active.bytes + self._pending_bytes

    @property
    def segment_count(self) -> int:
        return len(self._segments)

    @property
    def needs_sync(self) -> bool:
        offsets = self._offsets
        return self._unsynced or (offsets is not None and offsets.dirty)

    # -- writing --------------------------------------------------------------------

    def append(self, entries: Sequence[tuple[bytes, str | None]], timestamp_ms: int) -> int:
        """Write ``entries`` (message bytes, filter value) as one chunk; returns the first
        entry's offset. Readable at once, durable after ``sync()``."""
        self._write_pending()
        first = self.add(entries, timestamp_ms)
        self._write_pending()
        return first

    def add(self, entries: Sequence[tuple[bytes, str | None]], timestamp_ms: int) -> int:
        """Gather ``entries`` into the pending chunk (rule 3); returns the first entry's
        offset."""
        self._check_open()
        if not entries:
            raise ValueError("a chunk holds at least one entry")
        size = chunks.entries_size(entries)  # (ValueError for what a chunk cannot hold)
        active = self._active
        if ((active.chunks or self._pending)
                and active.end + self._pending_bytes + size + chunks.HEADER_SIZE > self.max_segment_bytes):
            self._write_pending()
            active = self._roll()
        first = self.next_offset
        newest = self._pending_ms if self._pending else self._newest_timestamp()
        self._pending.extend(entries)
        self._pending_ms = max(timestamp_ms, newest)
        self._pending_bytes += size
        self._unsynced = True
        if self._pending_bytes >= PENDING_CHUNK_BYTES:
            self._write_pending()
        return first

    def _newest_timestamp(self) -> int:
        newest = self._newest()
        return 0 if newest is None else newest.last_timestamp

    def _write_pending(self) -> None:
        """Rule 3: the pending entries become a chunk in the active segment."""
        pending = self._pending
        if not pending:
            return
        active = self._active
        first = active.next_offset
        buffers = chunks.encode(pending, first, self._pending_ms)
        if active.chunks and active.end + len(buffers[0]) + len(buffers[1]) > self.max_segment_bytes:
            active = self._roll()  # (only where the filter section outgrew the estimate)
        active.append(buffers, first, len(pending), self._pending_ms)
        self._pending = []
        self._pending_bytes = 0
        self._unsynced = True

    def _roll(self) -> Segment:
        old = self._active
        old.seal()
        segment = Segment.create(self.directory, old.next_offset)
        fsync_dir(self.directory)
        old.close()  # a sealed segment's files are reopened when read
        self._bytes += old.bytes
        self._segments.append(segment)
        self._unsynced = False  # the seal synced everything appended so far
        return segment

    def sync(self) -> None:
        """Make everything appended durable (one ``fdatasync`` of the active segment; its
        index is rebuilt from the segment if a crash loses part of it)."""
        self._write_pending()
        if self._unsynced:
            self._active.sync()
            self._unsynced = False
        if self._offsets is not None:
            self._offsets.flush()

    # -- tracking (rule 9) ------------------------------------------------------------

    def track(self, name: str, offset: int) -> None:
        assert self._offsets is not None
        self._offsets.track(name, offset)

    def tracked(self, name: str) -> int | None:
        assert self._offsets is not None
        return self._offsets.get(name)

    # -- reading --------------------------------------------------------------------

    def reader(self, offset: int, filter_values: Iterable[str] | None = None,
               match_unfiltered: bool = False) -> "Reader":
        self._check_open()
        matcher = None if filter_values is None else chunks.FilterMatcher(filter_values, match_unfiltered)
        return Reader(self, offset, matcher)

    def offset_for_timestamp(self, timestamp_ms: int) -> int:
        """First offset of the first chunk whose timestamp is >= ``timestamp_ms`` (the
        newest message of each chunk); ``next_offset`` if every chunk is older."""
        self._check_open()
        self._write_pending()
        for segment in self._segments:
            found = segment.first_chunk_at_or_after(timestamp_ms)
            if found is not None:
                return found
        return self.next_offset

    def _segment_for(self, offset: int) -> Segment:
        """The segment holding ``offset`` (the first one below the first offset, the
        active one at or past the end)."""
        i = bisect.bisect_right(self._segments, offset, key=lambda s: s.first_offset) - 1
        return self._segments[max(i, 0)]

    def _segment_after(self, segment: Segment) -> Segment | None:
        i = bisect.bisect_right(self._segments, segment.first_offset, key=lambda s: s.first_offset)
        return self._segments[i] if i < len(self._segments) else None

    # -- retention ------------------------------------------------------------------

    def set_retention(self, max_length_bytes: int | None, max_age_s: float | None) -> None:
        """New limits (a policy changed); they take effect at the next ``apply_retention``."""
        self.max_length_bytes = max_length_bytes
        self.max_age_s = max_age_s

    def apply_retention(self, now_ms: int) -> int:
        """Delete the oldest whole segments the limits no longer allow (never the active
        one); returns the first offset kept."""
        self._check_open()
        doomed = 0
        total = self.bytes
        oldest_allowed = None if self.max_age_s is None else now_ms - self.max_age_s * 1000
        for segment in self._segments[:-1]:
            too_big = self.max_length_bytes is not None and total > self.max_length_bytes
            too_old = (oldest_allowed is not None and segment.last_timestamp is not None
                       and segment.last_timestamp < oldest_allowed)
            if not (too_big or too_old):
                break
            doomed += 1
            total -= segment.bytes
        if doomed:
            for segment in self._segments[:doomed]:
                segment.unlink()
                self._bytes -= segment.bytes
            del self._segments[:doomed]
            fsync_dir(self.directory)
            log.info("stream %s: retention deleted %d segment(s); first offset now %d", self.directory,
                     doomed, self.first_offset)
        return self.first_offset

    # -- closing ----------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StreamLogError(f"stream {self.directory} is closed")

    def close(self) -> None:
        """Sync and close (a closed log refuses every call; open it again to use it)."""
        if self._closed:
            return
        try:
            self._write_pending()
            if self._offsets is not None:
                self._offsets.flush()
            self._active.seal()  # the index too: the next open reads it without a scan
        finally:
            for segment in self._segments:
                segment.close()
            self._closed = True

    def delete(self) -> None:
        """Close and remove the stream's directory and everything in it."""
        for segment in self._segments:
            segment.close()
        self._closed = True
        shutil.rmtree(self.directory, ignore_errors=True)


class Reader:
    """Reads a stream in offset order from a position; see rule 6 of the module text."""

    def __init__(self, stream: StreamLog, offset: int, matcher: chunks.FilterMatcher | None) -> None:
        self._log = stream
        self._matcher = matcher
        stream._write_pending()  # (rule 3: a reader sees every append)
        self.next_offset = 0  # the offset the next entry returned will have
        self._segment: Segment = stream._active
        self._position = FILE_HEADER_SIZE  # of the chunk holding next_offset (or the end)
        self._seek(offset)

    def _seek(self, offset: int) -> None:
        stream = self._log
        offset = min(max(offset, stream.first_offset), stream.next_offset)
        segment = stream._segment_for(offset)
        self._segment = segment
        self.next_offset = offset
        if offset >= segment.next_offset:
            self._position = segment.end
        else:
            self._position = segment.chunk_for_offset(offset)[0]

    def read(self, max_entries: int) -> list[tuple[int, bytes, str | None]]:
        """Up to ``max_entries`` entries as (offset, message bytes, filter value)."""
        stream = self._log
        stream._check_open()
        stream._write_pending()
        out: list[tuple[int, bytes, str | None]] = []
        matcher = self._matcher
        block = chunks.Block()
        while len(out) < max_entries:
            segment = self._segment
            if segment.deleted:  # retention took it: go on from the oldest kept
                self._seek(self.next_offset)
                continue
            if self._position >= segment.end:
                following = stream._segment_after(segment)
                if following is None:
                    break
                self._segment, self._position = following, FILE_HEADER_SIZE
                continue
            try:
                header, chunk = block.chunk(segment.fd, self._position, segment.end)
            except chunks.ChunkError as exc:
                raise StreamLogError(f"{segment.path}: {exc} at byte {self._position}") from None
            if matcher is not None:
                section = chunk[chunks.HEADER_SIZE:chunks.HEADER_SIZE + header.filter_size]
                if not matcher.chunk_may_match(header, section):
                    self.next_offset = header.next_offset
                    self._position += header.size
                    continue
            got = chunks.decode_entries(header, chunk, self.next_offset - header.first_offset,
                                        max_entries - len(out))
            out.extend(got)
            self.next_offset += len(got)
            if self.next_offset >= header.next_offset:
                self._position += header.size
        return out
