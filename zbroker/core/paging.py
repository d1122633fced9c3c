"""The paged tail of a durable queue: messages that exist only on disk, 16 bytes each.

Past a queue's in-memory window, a message is remembered only as (seq, store location)
in two machine-integer arrays, not as a Python object: a backlog of a million messages
costs 16 MB here instead of ~160 MB of objects, and nothing of its bodies. Messages
leave the tail in order (the queue moves them to its head when the head runs low); a
tail is only ever appended to, so every message in it is newer than every message at
the queue's head, which keeps requeue-by-seq and delivery order right.
"""
from __future__ import annotations

from array import array
from typing import Iterator


class PagedTail:
    __slots__ = ("_seqs", "_locations", "_start")

    def __init__(self) -> None:
        self._seqs = array("q")
        self._locations = array("q")
        self._start = 0

    def __len__(self) -> int:
        return len(self._seqs) - self._start

    def append(self, seq: int, location: int) -> None:
        self._seqs.append(seq)
        self._locations.append(location)

    def take(self, limit: int) -> list[tuple[int, int]]:
        """Up to ``limit`` (seq, location) pairs from the front, removed."""
        start = self._start
        end = min(len(self._seqs), start + limit)
        taken = list(zip(self._seqs[start:end], self._locations[start:end]))
        self._start = end
        if end == len(self._seqs):
            self.clear()
        elif end > 65536 and end * 2 > len(self._seqs):  # reclaim the consumed front
            del self._seqs[:end]
            del self._locations[:end]
            self._start = 0
        return taken

    def __iter__(self) -> Iterator[tuple[int, int]]:
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
        self._start = 0
