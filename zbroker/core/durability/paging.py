"""The paged tail of a durable queue's lane: messages that exist only on disk.

Past a queue's in-memory window, a message is remembered only as (seq, store location,
body size) in machine-integer arrays, not as a Python object: a backlog of a million
messages costs 24 MB here instead of ~160 MB of objects, and nothing of its bodies (the
expiry of a paged message is in its queue's expiry heap, not here). Messages leave the
tail in order (the queue moves
them to its head when the head runs low); a tail is only ever appended to, so every
message in it is newer than every message at its lane's head, which keeps
requeue-by-seq and delivery order right, and lets ``find`` search by seq.
"""
from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Iterator


class PagedTail:
    __slots__ = ("_seqs", "_locations", "_sizes", "_start")

    def __init__(self) -> None:
        self.clear()

    def __len__(self) -> int:
        return len(self._seqs) - self._start

    def append(self, seq: int, location: int, size: int) -> None:
        self._seqs.append(seq)
        self._locations.append(location)
        self._sizes.append(size)

    def take(self, limit: int) -> list[tuple[int, int, int]]:
        """Up to ``limit`` (seq, location, size) from the front, removed."""
        start = self._start
        end = min(len(self._seqs), start + limit)
        taken = list(zip(self._seqs[start:end], self._locations[start:end], self._sizes[start:end]))
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
        i = bisect_left(self._seqs, seq, self._start)
        if i < len(self._seqs) and self._seqs[i] == seq:
            return self._locations[i], self._sizes[i]
        return None

    def __iter__(self) -> Iterator[tuple[int, int]]:
        """(seq, location) of every entry."""
        return zip(self._seqs[self._start:], self._locations[self._start:])

    def relocate(self, moved: dict[int, int]) -> None:
        """Point entries at their new store locations after a compaction."""
        locations = self._locations
        for i in range(self._start, len(locations)):
            new = moved.get(locations[i])
            if new is not None:
                locations[i] = new

    def clear(self) -> None:
        self._seqs = array("q")
        self._locations = array("q")
        self._sizes = array("q")
        self._start = 0
