"""One segment of a stream: a file of chunks and its sparse index file.

Rules:

1. A segment is named by its first offset: ``<first:020>.segment`` and
   ``<first:020>.index``; each file opens with an 8-byte magic (``SEGMENT_MAGIC``,
   ``INDEX_MAGIC``), then chunks (see ``stream_chunks``) or index records.
2. The index has ONE fixed-size record per chunk, never one per message::

       first offset u64 | timestamp ms i64 | position u64 | count u32 | size u32

   It is searched on disk (binary search by ``pread``): in memory a segment keeps only
   a handful of integers (first/next offset, first/last timestamp, sizes), so memory
   grows with the number of segments, never with messages or chunks.
3. Writes go at positions the segment tracks (``pwritev``), chunk first, index record
   second: a failed or short write is overwritten by the next one, and after a crash
   an index record can point past the valid chunks only if the OS lost page-cache data.
   A chunk goes to the OS when appended; its index record waits (in memory, one loop
   pass's worth, ``PENDING_RECORDS`` at most) until ``sync``, a lookup or ``seal``
   writes them at once.
4. Only the active (newest) segment is written. ``seal`` syncs both files before the
   next segment is created, so a sealed segment is complete: opening it reads two index
   records. The active one is verified on open: index records must be contiguous and
   the last one's chunk must check out; chunks past the index are scanned (CRC checked)
   and indexed; the first invalid byte ends the segment and both files are truncated.
5. A missing or damaged index of a sealed segment is rebuilt from its chunks.
"""
from __future__ import annotations

import logging
import os
import struct
from pathlib import Path

from zbroker.storage import stream_chunks as chunks

log = logging.getLogger(__name__)

SEGMENT_MAGIC = b"ZSLSEG01"
INDEX_MAGIC = b"ZSLIDX01"
FILE_HEADER_SIZE = 8
RECORD = struct.Struct("<QqQII")
RECORD_SIZE = RECORD.size
#: Index records held back at most (a caller that never syncs still writes them).
PENDING_RECORDS = 256
#: Index records read at a time when verifying an active segment's index.
_VERIFY_RECORDS = 4096


class StreamLogError(Exception):
    """The stream's files cannot be used as they are (damage from outside zbroker, or a
    directory in another format); the stream must not be opened."""


def segment_path(directory: Path, first: int) -> Path:
    return directory / f"{first:020d}.segment"


def index_path(directory: Path, first: int) -> Path:
    return directory / f"{first:020d}.index"


def _write_all(fd: int, buffers: list[bytes], position: int) -> None:
    total = sum(len(b) for b in buffers)
    done = os.pwritev(fd, buffers, position)
    if done < total:  # a short write: finish it part by part
        joined = b"".join(buffers)
        while done < total:
            done += os.pwrite(fd, joined[done:], position + done)


class Segment:
    """A segment's few facts in memory, and its files (opened when needed)."""

    def __init__(self, directory: Path, first_offset: int) -> None:
        self.directory = directory
        self.first_offset = first_offset
        self.next_offset = first_offset  # after its last chunk
        self.first_timestamp: int | None = None  # of its first chunk (None while empty)
        self.last_timestamp: int | None = None  # of its newest chunk
        self.last_chunk_offset: int | None = None  # first offset of its newest chunk
        self.end = FILE_HEADER_SIZE  # bytes of the segment file in use
        self.chunks = 0  # index records
        self.deleted = False
        self._pending: list[bytes] = []  # index records not yet written (one loop pass's)
        self._fd: int | None = None
        self._index_fd: int | None = None

    @property
    def path(self) -> Path:
        return segment_path(self.directory, self.first_offset)

    @property
    def index_path(self) -> Path:
        return index_path(self.directory, self.first_offset)

    @property
    def fd(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR)
        return self._fd

    @property
    def index_fd(self) -> int:
        if self._index_fd is None:
            self._index_fd = os.open(self.index_path, os.O_RDWR)
        return self._index_fd

    @property
    def bytes(self) -> int:
        """Disk bytes: the segment file and its index."""
        return self.end + FILE_HEADER_SIZE + self.chunks * RECORD_SIZE

    # -- creating, sealing, removing --------------------------------------------------

    @classmethod
    def create(cls, directory: Path, first_offset: int) -> "Segment":
        segment = cls(directory, first_offset)
        for path, magic in ((segment.path, SEGMENT_MAGIC), (segment.index_path, INDEX_MAGIC)):
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                _write_all(fd, [magic], 0)
                os.fdatasync(fd)
            finally:
                os.close(fd)
        return segment

    def append(self, buffers: list[bytes], first: int, count: int, timestamp_ms: int) -> None:
        size = sum(len(b) for b in buffers)
        _write_all(self.fd, buffers, self.end)
        self._pending.append(RECORD.pack(first, timestamp_ms, self.end, count, size))
        self.end += size
        self.chunks += 1
        self.next_offset = first + count
        self.last_chunk_offset = first
        self.last_timestamp = timestamp_ms
        if self.first_timestamp is None:
            self.first_timestamp = timestamp_ms
        if len(self._pending) >= PENDING_RECORDS:
            self.flush_index()

    def flush_index(self) -> None:
        """Write the index records of chunks appended since the last flush (rule 3)."""
        if self._pending:
            written = self.chunks - len(self._pending)
            _write_all(self.index_fd, [b"".join(self._pending)], FILE_HEADER_SIZE + written * RECORD_SIZE)
            self._pending = []

    def sync(self) -> None:
        self.flush_index()
        os.fdatasync(self.fd)

    def seal(self) -> None:
        """Make both files durable: the segment is never written again."""
        self.flush_index()
        os.fdatasync(self.fd)
        os.fdatasync(self.index_fd)

    def close(self) -> None:
        for fd in (self._fd, self._index_fd):
            if fd is not None:
                os.close(fd)
        self._fd = self._index_fd = None

    def unlink(self) -> None:
        """Remove both files (the segment file first: an index alone is an orphan the
        next open deletes; a segment alone gets its index rebuilt)."""
        self.close()
        self.deleted = True
        self.path.unlink(missing_ok=True)
        self.index_path.unlink(missing_ok=True)

    # -- the index on disk ----------------------------------------------------------

    def record(self, i: int) -> tuple[int, int, int, int, int]:
        """Index record ``i``: (first offset, timestamp ms, position, count, size)."""
        if self._pending:
            self.flush_index()
        data = os.pread(self.index_fd, RECORD_SIZE, FILE_HEADER_SIZE + i * RECORD_SIZE)
        if len(data) < RECORD_SIZE:
            raise StreamLogError(f"{self.index_path}: record {i} is missing")
        return RECORD.unpack(data)

    def chunk_for_offset(self, offset: int) -> tuple[int, int]:
        """(position, first offset) of the chunk holding ``offset`` (within the segment)."""
        lo, hi = 0, self.chunks - 1  # the last record whose first offset <= offset
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.record(mid)[0] <= offset:
                lo = mid
            else:
                hi = mid - 1
        first, _, position, _, _ = self.record(lo)
        return position, first

    def first_chunk_at_or_after(self, timestamp_ms: int) -> int | None:
        """First offset of the first chunk whose timestamp is >= ``timestamp_ms``."""
        if self.last_timestamp is None or self.last_timestamp < timestamp_ms:
            return None
        lo, hi = 0, self.chunks - 1
        while lo < hi:
            mid = (lo + hi) // 2
            if self.record(mid)[1] >= timestamp_ms:
                hi = mid
            else:
                lo = mid + 1
        return self.record(lo)[0]

    # -- opening ------------------------------------------------------------------

    @classmethod
    def open_sealed(cls, directory: Path, first_offset: int) -> "Segment":
        """A complete segment: its facts from the first and last index records, or
        from its chunks if the index is missing or does not agree with the segment."""
        segment = cls(directory, first_offset)
        segment._check_magic()
        size = os.fstat(segment.fd).st_size
        try:
            segment._load_from_index(size)
        except (StreamLogError, chunks.ChunkError, OSError) as exc:
            log.warning("stream %s: index %s is unusable (%s); rebuilding it from the segment",
                        directory, segment.index_path.name, exc)
            segment._rebuild_index(size, truncate=False)
        segment.close()  # reopened when a reader comes: sealed segments hold no descriptor
        return segment

    @classmethod
    def open_active(cls, directory: Path, first_offset: int) -> "Segment":
        """The newest segment after a clean stop or a crash: keep its valid chunks,
        index them all, truncate whatever follows."""
        segment = cls(directory, first_offset)
        size = os.fstat(segment.fd).st_size
        if size < FILE_HEADER_SIZE:  # created, then crashed before its magic was written
            _write_all(segment.fd, [SEGMENT_MAGIC], 0)
            os.ftruncate(segment.fd, FILE_HEADER_SIZE)
            size = FILE_HEADER_SIZE
        segment._check_magic()
        try:
            segment._check_index_magic()
            good = segment._verified_records(size)
        except (StreamLogError, OSError):  # missing, or torn before its magic: rebuilt
            good = 0
        segment._rebuild_index(size, truncate=True, records=good)
        return segment

    def _check_magic(self) -> None:
        if os.pread(self.fd, FILE_HEADER_SIZE, 0) != SEGMENT_MAGIC:
            raise StreamLogError(f"{self.path} is not a stream segment in format {SEGMENT_MAGIC!r}")

    def _check_index_magic(self) -> None:
        if os.pread(self.index_fd, FILE_HEADER_SIZE, 0) != INDEX_MAGIC:
            raise StreamLogError(f"{self.index_path} is not a stream index in format {INDEX_MAGIC!r}")

    def _load_from_index(self, size: int) -> None:
        self._check_index_magic()
        index_size = os.fstat(self.index_fd).st_size
        count = (index_size - FILE_HEADER_SIZE) // RECORD_SIZE
        if count <= 0 or (index_size - FILE_HEADER_SIZE) % RECORD_SIZE:
            raise StreamLogError(f"{index_size} bytes")
        first = self.record(0)
        last = self.record(count - 1)
        if first[0] != self.first_offset or first[2] != FILE_HEADER_SIZE or last[2] + last[4] != size:
            raise StreamLogError("its records do not match the segment")
        header, _ = chunks.read_chunk(self.fd, last[2], size)  # the newest chunk checks out
        if (header.first_offset, header.count, header.size) != (last[0], last[3], last[4]):
            raise StreamLogError("its last record does not match the segment's last chunk")
        self.chunks = count
        self.end = size
        self.first_timestamp = first[1]
        self.last_timestamp = last[1]
        self.last_chunk_offset = last[0]
        self.next_offset = last[0] + last[3]

    def _verified_records(self, size: int) -> int:
        """How many leading index records are contiguous and inside the segment file."""
        index_size = os.fstat(self.index_fd).st_size
        total = (index_size - FILE_HEADER_SIZE) // RECORD_SIZE
        expected_offset, expected_position, good = self.first_offset, FILE_HEADER_SIZE, 0
        while good < total:
            n = min(_VERIFY_RECORDS, total - good)
            data = os.pread(self.index_fd, n * RECORD_SIZE, FILE_HEADER_SIZE + good * RECORD_SIZE)
            for first, _, position, count, chunk_size in RECORD.iter_unpack(data[:len(data) // RECORD_SIZE * RECORD_SIZE]):
                if (first != expected_offset or position != expected_position or count == 0
                        or position + chunk_size > size):
                    return good
                expected_offset, expected_position = first + count, position + chunk_size
                good += 1
            if len(data) < n * RECORD_SIZE:
                return good
        return good

    def _rebuild_index(self, size: int, truncate: bool, records: int = 0) -> None:
        """Keep the first ``records`` index records whose newest chunk checks out, then
        index every valid chunk after them; with ``truncate``, cut both files where the
        valid chunks end (a torn tail), else refuse a segment that does not end cleanly."""
        while records:  # the newest indexed chunk must be there on disk (the OS may have lost it)
            first, ts, position, count, chunk_size = self.record(records - 1)
            try:
                header, _ = chunks.read_chunk(self.fd, position, size)
                if (header.first_offset, header.count, header.size) == (first, count, chunk_size):
                    break
            except chunks.ChunkError:
                pass
            records -= 1
        if not records:  # a fresh index file
            if self._index_fd is not None:
                os.close(self._index_fd)
                self._index_fd = None
            fd = os.open(self.index_path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
            _write_all(fd, [INDEX_MAGIC], 0)
            os.close(fd)
        self.chunks, self.end, self.next_offset = 0, FILE_HEADER_SIZE, self.first_offset
        self.first_timestamp = self.last_timestamp = self.last_chunk_offset = None
        if records:
            first_record, last = self.record(0), self.record(records - 1)
            self.chunks, self.end = records, last[2] + last[4]
            self.first_timestamp, self.last_timestamp = first_record[1], last[1]
            self.last_chunk_offset, self.next_offset = last[0], last[0] + last[3]
        added = 0
        while self.end < size:
            try:
                header, _ = chunks.read_chunk(self.fd, self.end, size)
                if header.first_offset != self.next_offset:
                    raise chunks.ChunkError(f"chunk at offset {header.first_offset}, "
                                            f"expected {self.next_offset}")
            except chunks.ChunkError as exc:
                if not truncate:
                    raise StreamLogError(f"{self.path}: {exc} at byte {self.end}") from None
                log.warning("stream %s: segment %s: %s at byte %d; truncating %d byte(s)",
                            self.directory, self.path.name, exc, self.end, size - self.end)
                break
            position = self.end
            _write_all(self.index_fd, [RECORD.pack(header.first_offset, header.timestamp_ms, position,
                                                   header.count, header.size)],
                       FILE_HEADER_SIZE + self.chunks * RECORD_SIZE)
            self.chunks += 1
            self.end += header.size
            self.next_offset = header.next_offset
            self.last_chunk_offset = header.first_offset
            self.last_timestamp = header.timestamp_ms
            if self.first_timestamp is None:
                self.first_timestamp = header.timestamp_ms
            added += 1
        index_end = FILE_HEADER_SIZE + self.chunks * RECORD_SIZE
        changed = self.end < size or os.fstat(self.index_fd).st_size != index_end or added
        if self.end < size:
            os.ftruncate(self.fd, self.end)
        if os.fstat(self.index_fd).st_size != index_end:
            os.ftruncate(self.index_fd, index_end)
        if changed:
            self.seal()
