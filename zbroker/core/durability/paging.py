"""The paged tail of a durable queue's lane: messages that exist only on disk.

Past a queue's in-memory window, a message is remembered only as (seq, store location,
body size) in machine-integer arrays, not as a Python object: 16 bytes a message (a
million paged messages cost 16 MB here instead of ~160 MB of objects), and nothing of
its bodies (the expiry of a paged message is in its queue's expiry heap, not here).
Messages leave the tail in order (the queue moves them to its head when the head runs
low); a tail is only ever appended to, so every message in it is newer than every
message at its lane's head, which keeps requeue-by-seq and delivery order right, and
lets ``find`` search by seq.

Rules:
- A seq is kept as its distance from the tail's first (4 bytes), a body size as it is (4
  bytes), a store location whole (8 bytes: its segment number and offset).
- A 4-byte column that meets a value it cannot hold (a tail spanning four billion
  publishes, a body over 4 GiB) becomes an 8-byte one, for that tail, until it empties.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Iterator


#: The type codes of a compact column, and of one that met a value it could not hold.
NARROW, WIDE = "I", "q"


def _appended(column: array, value: int) -> array:
    """``column`` with ``value`` appended: itself, or a wide copy if it was too narrow."""
    try:
        column.append(value)
    except OverflowError:
        column = array(WIDE, column)
        column.append(value)
    return column


class PagedTail:
    __slots__ = ("_seqs", "_locations", "_sizes", "_start", "_base")

    def __init__(self) -> None:
        self.clear()

    def __len__(self) -> int:
        return len(self._seqs) - self._start

    def append(self, seq: int, location: int, size: int) -> None:
        if not self._seqs:
            self._base = seq
        self._seqs = _appended(self._seqs, seq - self._base)
        self._locations.append(location)
        self._sizes = _appended(self._sizes, size)

    def take(self, limit: int) -> list[tuple[int, int, int]]:
        """Up to ``limit`` (seq, location, size) from the front, removed."""
        start, base = self._start, self._base
        end = min(len(self._seqs), start + limit)
        taken = [(base + seq, location, size) for seq, location, size
                 in zip(self._seqs[start:end], self._locations[start:end], self._sizes[start:end])]
        self._start = end
        if end == len(self._seqs):
            self.clear()
        elif end > 65536 and end * 2 > len(self._seqs):  # reclaim the consumed front
            for column in (self._seqs, self._locations, self._sizes):
                del column[:end]
            self._start = 0
        return taken

    def find(self, seq: int) -> tuple[int, int] | None:
        """(location, size) of the entry with ``seq``, if it is in the tail."""
        distance = seq - self._base
        i = bisect_left(self._seqs, distance, self._start)
        if i < len(self._seqs) and self._seqs[i] == distance:
            return self._locations[i], self._sizes[i]
        return None

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """(seq, location) of every entry."""
        base = self._base
        return ((base + seq, location) for seq, location in zip(self._seqs[self._start:],
                                                                 self._locations[self._start:]))

    def relocate(self, moved: dict[int, int]) -> None:
        """Point entries at their new store locations after a compaction."""
        locations = self._locations
        for i in range(self._start, len(locations)):
            new = moved.get(locations[i])
            if new is not None:
                locations[i] = new

    @property
    def bytes_per_entry(self) -> int:
        """What one entry costs in the arrays (16 while every column is compact)."""
        return self._seqs.itemsize + self._locations.itemsize + self._sizes.itemsize

    def clear(self) -> None:
        self._seqs = array(NARROW)
        self._locations = array(WIDE)
        self._sizes = array(NARROW)
        self._start = 0
        self._base = 0
