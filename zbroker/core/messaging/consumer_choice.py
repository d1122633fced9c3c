"""Which consumer of a queue gets the next message: one place, used by every queue type.

Rules of this module:
1. Consumers are kept in priority order: a higher ``x-priority`` first; a newcomer goes
   after those of higher or equal priority.
2. Without priorities, consumers take turns (round robin), skipping those without
   credit (``consumers.py``). With priorities, the first consumer with credit in
   priority order gets it and then moves behind the others of its priority, so equal
   priorities take turns and a lower priority gets messages only while every higher
   one is out of credit.
3. With ``x-single-active-consumer`` only ``active`` receives. The first consumer
   becomes active; when the active one goes, the first of the others (highest
   priority, earliest registered) takes over.
4. No consumer has credit: ``next()`` is None and the queue stops dispatching until
   credit comes back (an ack, a qos change, a connection unblocked).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from zbroker.core.messaging.consumers import Consumer


class ConsumerChoice:
    __slots__ = ("consumers", "active", "single_active", "had_consumer", "_prioritised", "_rr")

    def __init__(self, single_active: bool = False) -> None:
        #: In priority order (rule 1); the queue type exposes this list as ``consumers``.
        self.consumers: list[Consumer] = []
        #: The single active consumer, when ``single_active`` is on (rule 3).
        self.active: Consumer | None = None
        self.single_active = single_active
        #: A consumer was ever added (an auto-delete queue goes only after its first one).
        self.had_consumer = False
        self._prioritised = False
        self._rr = 0

    @property
    def has_exclusive(self) -> bool:
        return any(c.exclusive for c in self.consumers)

    def add(self, consumer: "Consumer") -> None:
        """Register a consumer, after those of higher or equal priority (rule 1)."""
        consumers = self.consumers
        if consumer.priority:
            self._prioritised = True
        if self._prioritised:
            i = len(consumers)
            while i > 0 and consumers[i - 1].priority < consumer.priority:
                i -= 1
            consumers.insert(i, consumer)
        else:
            consumers.append(consumer)
        self.had_consumer = True
        if self.single_active and self.active is None:
            self.active = consumer

    def remove(self, consumer: "Consumer") -> None:
        try:
            i = self.consumers.index(consumer)
        except ValueError:
            return
        del self.consumers[i]
        if i < self._rr:
            self._rr -= 1
        if self._rr >= len(self.consumers):
            self._rr = 0
        if self.active is consumer:
            self.active = self.consumers[0] if self.consumers else None

    def next(self) -> "Consumer | None":
        """The consumer to serve next (rules 2-4), or None if none has credit."""
        if self.active is not None:
            return self.active if self.active.has_credit() else None
        consumers = self.consumers
        n = len(consumers)
        if n == 1:
            only = consumers[0]
            return only if only.has_credit() else None
        if self._prioritised:
            return self._next_by_priority()
        start = self._rr
        for k in range(n):
            i = (start + k) % n
            consumer = consumers[i]
            if consumer.has_credit():
                self._rr = (i + 1) % n
                return consumer
        return None

    def _next_by_priority(self) -> "Consumer | None":
        """The first consumer with credit in priority order; it then moves behind the
        others of its priority, which makes equal priorities take turns."""
        consumers = self.consumers
        for i, consumer in enumerate(consumers):
            if consumer.has_credit():
                j = i + 1
                while j < len(consumers) and consumers[j].priority == consumer.priority:
                    j += 1
                if j > i + 1:
                    consumers.insert(j - 1, consumers.pop(i))
                return consumer
        return None
