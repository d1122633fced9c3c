"""The paged tail of a queue's lane: messages that exist only as store records (on disk,
or packed in the in-memory store's byte arrays).

Past a queue's in-memory window, a message is remembered only as (seq, store location,
body size) in machine-integer arrays, not as a Python object: 12 bytes a message (ten
million paged messages cost 115 MiB here instead of ~1.3 GB of objects), and nothing of
its bodies (the expiry of a paged message is in its queue's expiry heap, not here).
Messages leave the tail in order (the queue moves them to its head when the head runs
low); a tail is only ever appended to, so every message in it is newer than every
message at its lane's head, which keeps requeue-by-seq and delivery order right, and
lets ``find`` search by seq.

Rules:
- A seq is kept as its distance from the tail's first (4 bytes), a body size as it is (2
  bytes), a store location in two parts: its low 32 bits (4 bytes) and the bits above
  them as their distance from the tail's first entry's (1 byte; 2 once the tail spans
  more than one disk segment, or 256 of the in-memory store's: a segment's number sits
  in those bits).
- A column that meets a value it cannot hold (a tail spanning four billion publishes, a
  body of 64 KiB or more, a tail over hundreds of segments) moves to the next wider
  type code, for that tail, until it empties.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Iterator


#: Each column's type code when a tail starts (seq distances, location high-part
#: distances, location low parts, body sizes), and the next wider code of each.
SEQS, HIGHS, LOWS, SIZES = "I", "B", "I", "H"
WIDER = {"B": "H", "H": "I", "I": "q"}
#: Where a location is cut into its two parts.
LOW_BITS = 32
_LOW_MASK = (1 << LOW_BITS) - 1


def _widened(column: array) -> array:
    wider = WIDER.get(column.typecode)
    if wider is None:
        raise OverflowError(f"a paged tail cannot hold a value past {column.typecode!r}")
    return array(wider, column)


def _appended(column: array, value: int) -> array:
    """``column`` with ``value`` appended: itself, or a wider copy if it was too narrow."""
    while True:
        try:
            column.append(value)
            return column
        except OverflowError:
            column = _widened(column)


def _stored(column: array, index: int, value: int) -> array:
    """``column`` with ``value`` at ``index``: itself, or a wider copy if it was too narrow."""
    while True:
        try:
            column[index] = value
            return column
        except OverflowError:
            column = _widened(column)


class PagedTail:
    __slots__ = ("_seqs", "_highs", "_lows", "_sizes", "_start", "_base", "_high_base")
    _seqs: array
    _highs: array
    _lows: array
    _sizes: array
    _start: int
    _base: int
    _high_base: int

    def __init__(self) -> None:
        self.clear()

    def __len__(self) -> int:
        return len(self._seqs) - self._start

    def append(self, seq: int, location: int, size: int) -> None:
        if not self._seqs:
            self._base, self._high_base = seq, location >> LOW_BITS
        self._seqs = _appended(self._seqs, seq - self._base)
        self._highs = _appended(self._highs, (location >> LOW_BITS) - self._high_base)
        self._lows.append(location & _LOW_MASK)
        self._sizes = _appended(self._sizes, size)

    def take(self, limit: int) -> list[tuple[int, int, int]]:
        """Up to ``limit`` (seq, location, size) from the front, removed."""
        start, base, high_base = self._start, self._base, self._high_base
        end = min(len(self._seqs), start + limit)
        taken = [(base + seq, ((high_base + high) << LOW_BITS) | low, size) for seq, high, low, size
                 in zip(self._seqs[start:end], self._highs[start:end], self._lows[start:end],
                        self._sizes[start:end])]
        self._start = end
        if end == len(self._seqs):
            self.clear()
        elif end > 65536 and end * 2 > len(self._seqs):  # reclaim the consumed front
            for column in (self._seqs, self._highs, self._lows, self._sizes):
                del column[:end]
            self._start = 0
        return taken

    def find(self, seq: int) -> tuple[int, int] | None:
        """(location, size) of the entry with ``seq``, if it is in the tail."""
        distance = seq - self._base
        i = bisect_left(self._seqs, distance, self._start)
        if i < len(self._seqs) and self._seqs[i] == distance:
            return self._location(i), self._sizes[i]
        return None

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """(seq, location) of every entry."""
        base, high_base, start = self._base, self._high_base, self._start
        return ((base + seq, ((high_base + high) << LOW_BITS) | low) for seq, high, low
                in zip(self._seqs[start:], self._highs[start:], self._lows[start:]))

    def relocate(self, moved: dict[int, int]) -> None:
        """Point entries at their new store locations after a compaction."""
        high_base, start = self._high_base, self._start
        highs = {(location >> LOW_BITS) - high_base for location in moved}  # (high parts of moved ones)
        for i, high in enumerate(self._highs[start:], start):
            if high not in highs:
                continue
            new = moved.get(((high_base + high) << LOW_BITS) | self._lows[i])
            if new is not None:
                self._highs = _stored(self._highs, i, (new >> LOW_BITS) - high_base)
                self._lows[i] = new & _LOW_MASK

    def _location(self, i: int) -> int:
        return ((self._high_base + self._highs[i]) << LOW_BITS) | self._lows[i]

    @property
    def bytes_per_entry(self) -> int:
        """What one entry costs in the arrays (11 or 12 while every column is compact)."""
        return sum(column.itemsize for column in (self._seqs, self._highs, self._lows, self._sizes))

    def clear(self) -> None:
        self._seqs = array(SEQS)
        self._highs = array(HIGHS)
        self._lows = array(LOWS)
        self._sizes = array(SIZES)
        self._start = 0
        self._base = self._high_base = 0
