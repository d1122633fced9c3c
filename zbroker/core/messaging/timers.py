"""The core's deadlines, each heap of them for one kind of thing: when to look at a queue
again (a message due to expire, an unused queue due for deletion), or at a channel (an
unacked delivery due to time out, ``consumer_timeout.py``).

Rules: the broker never reads a clock; the wire's loop passes ``now`` and asks
``next_deadline()`` for its poll timeout. An entry may be stale (the message was
consumed, the queue used again, the delivery acked): the thing re-checks when it fires,
so entries are never removed early. Each thing keeps ``scheduled_at``, the earliest
entry held for it, and a new entry is pushed only for an earlier time, so the heap holds
a few entries per thing, not one per message.
"""
from __future__ import annotations

import heapq
from itertools import count
from typing import Any, Generic, Protocol, TypeVar

NEVER = float("inf")


class Timed(Protocol):
    """What a heap holds: its earliest entry's time, and whether it is gone."""

    scheduled_at: float
    deleted: bool


T = TypeVar("T", bound=Timed)


class Timers(Generic[T]):
    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._order = count()

    def watch(self, item: Any) -> None:
        """Make sure the item's ``next_deadline()`` (a queue's) is in the heap."""
        self.at(item, item.next_deadline())

    def at(self, item: T, due: float) -> None:
        """Make sure the heap looks at ``item`` at ``due`` or earlier."""
        if due < item.scheduled_at:
            item.scheduled_at = due
            heapq.heappush(self._heap, (due, next(self._order), item))

    def due(self, now: float) -> list[T]:
        """The items with a deadline at or before ``now``, each once; their entries go."""
        heap, found = self._heap, {}
        while heap and heap[0][0] <= now:
            _, _, item = heapq.heappop(heap)
            item.scheduled_at = NEVER
            found[id(item)] = item
        return list(found.values())

    def next_deadline(self) -> float | None:
        while self._heap and self._heap[0][2].deleted:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None


class Clock:
    """The ``now`` of the call being applied (seconds, given by the wire's loop with every
    entry point; never read from a clock here) and the consumer timeout's heap: shared by
    every part of the core that needs them, channels included (one per delivery)."""

    __slots__ = ("now", "ack_timers")

    def __init__(self, now: float) -> None:
        self.now = now
        #: Channels holding unacked deliveries, by when one may time out.
        self.ack_timers: Timers[Any] = Timers()
