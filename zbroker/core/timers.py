"""The core's deadlines: when to look at a queue again (a message due to expire, an
unused queue due for deletion), kept as one heap.

Rules: the broker never reads a clock; the wire's loop passes ``now`` and asks
``next_deadline()`` for its poll timeout. An entry may be stale (the message was
consumed, the queue used again): the queue re-checks when it fires, so entries are
never removed early. Each queue keeps ``scheduled_at``, the earliest entry held for it,
and a new entry is pushed only for an earlier time, so the heap holds a few entries per
queue, not one per message.
"""
from __future__ import annotations

import heapq
from itertools import count
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zbroker.core.queues import Queue

NEVER = float("inf")


class Timers:
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Queue]] = []
        self._order = count()

    def watch(self, queue: "Queue") -> None:
        """Make sure the queue's next deadline is in the heap."""
        due = queue.next_deadline()
        if due < queue.scheduled_at:
            queue.scheduled_at = due
            heapq.heappush(self._heap, (due, next(self._order), queue))

    def due(self, now: float) -> list["Queue"]:
        """The queues with a deadline at or before ``now``, each once; their entries go."""
        heap, found = self._heap, {}
        while heap and heap[0][0] <= now:
            _, _, queue = heapq.heappop(heap)
            queue.scheduled_at = NEVER
            found[id(queue)] = queue
        return list(found.values())

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0][2].deleted:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None
