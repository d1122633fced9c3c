"""A queue: its messages in order, its consumers, and round-robin dispatch.

Messages are ``messages`` (the head, in memory) followed by ``paged`` (a durable queue's
tail that lives on disk only, see ``paging.py``); the head is refilled from the tail as
it drains, ``REFILL`` at a time.

The queue owns message order and the choice of consumer; credit belongs to the
consumer and its channel (``consumers.py``), delivery frames to the channel
(``session.py``). ``dispatch`` is called whenever something changed that could let a
message move: a publish, an ack that returned credit, a new consumer, a requeue.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Any, Hashable, Iterable, Iterator

from zbroker.core.message import Message
from zbroker.core.paging import PagedTail

if TYPE_CHECKING:
    from zbroker.core.consumers import Consumer
    from zbroker.core.exchanges import Exchange
    from zbroker.core.journal import QueueJournal
    from zbroker.core.session import Connection


#: Paged messages moved to the head at a time (as index entries: read when taken).
REFILL = 256


class Queue:
    def __init__(self, name: str, durable: bool = False, exclusive_owner: "Connection | None" = None,
                 auto_delete: bool = False, arguments: dict | None = None) -> None:
        self.name = name
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = arguments or {}
        self.messages: deque[Message] = deque()
        self.paged = PagedTail()
        self.consumers: list[Consumer] = []
        self.had_consumer = False
        self.deleted = False
        #: Bindings that route into this queue: (source exchange, key, frozen args).
        self.sources: set[tuple[Exchange, str, Hashable]] = set()
        #: Set for a durable queue: where its persistent messages' moves are recorded.
        self.journal: QueueJournal | None = None
        self._rr = 0

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    @property
    def has_exclusive_consumer(self) -> bool:
        return any(c.exclusive for c in self.consumers)

    def add_consumer(self, consumer: "Consumer") -> None:
        self.consumers.append(consumer)
        self.had_consumer = True

    def remove_consumer(self, consumer: "Consumer") -> None:
        try:
            i = self.consumers.index(consumer)
        except ValueError:
            return
        del self.consumers[i]
        if i < self._rr:
            self._rr -= 1
        if self._rr >= len(self.consumers):
            self._rr = 0

    @property
    def unused_auto_delete(self) -> bool:
        """An auto-delete queue goes when its last consumer does (never before its first)."""
        return self.auto_delete and self.had_consumer and not self.consumers

    def requeue(self, messages: Iterable["Message"]) -> None:
        """Put messages back where they were (by publish order), marked redelivered.

        Requeued messages are usually older than everything queued, so each lands at or
        near the head and the scan stops at once.
        """
        if self.deleted:
            return
        queue = self.messages
        for message in sorted(messages, key=lambda m: m.seq, reverse=True):
            i, n = 0, len(queue)
            while i < n and queue[i].seq < message.seq:
                i += 1
            queue.insert(i, message.as_redelivered())

    @property
    def message_count(self) -> int:
        return len(self.messages) + len(self.paged)

    @property
    def has_messages(self) -> bool:
        return bool(self.messages) or len(self.paged) > 0

    def stored(self) -> Iterator[tuple[int, int]]:
        """(seq, location) of every message the queue holds that is in the store."""
        for message in self.messages:
            if message.location is not None:
                yield message.seq, message.location
        yield from self.paged

    def purge(self) -> int:
        count = self.message_count
        if self.journal is not None:
            for seq, location in self.stored():
                self.journal.remove(seq, location)
        self.clear()
        return count

    def clear(self) -> None:
        self.messages.clear()
        self.paged.clear()

    def _refill(self) -> bool:
        """Move the front of the paged tail to the head; False if there was none."""
        entries = self.paged.take(REFILL)
        self.messages.extend(Message.paged(seq, location) for seq, location in entries)
        return bool(entries)

    def take(self, settled: bool) -> "Message":
        """The head message, leaving for a consumer (``settled``: it needs no ack)."""
        if not self.messages:
            self._refill()
        message = self.messages.popleft()
        if message.location is not None and self.journal is not None:
            message = self.journal.take(message, settled)
        return message

    def dispatch(self, limit: int) -> bool:
        """Deliver up to ``limit`` messages; True if it stopped at the limit with more to do.

        The limit keeps one pass of the broker loop short when a consumer needs no credit
        (auto-ack or prefetch 0) and the queue is long: the rest goes out next pass.
        """
        messages, consumers = self.messages, self.consumers
        while consumers and (messages or self._refill()):
            if limit <= 0:
                return True
            consumer = self._next_with_credit()
            if consumer is None:
                return False
            consumer.channel.deliver(consumer, self, self.take(consumer.auto_ack))
            limit -= 1
        return False

    def _next_with_credit(self) -> "Consumer | None":
        consumers = self.consumers
        n = len(consumers)
        if n == 1:
            only = consumers[0]
            return only if only.has_credit() else None
        start = self._rr
        for k in range(n):
            i = (start + k) % n
            consumer = consumers[i]
            if consumer.has_credit():
                self._rr = (i + 1) % n
                return consumer
        return None

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} messages={len(self.messages)} consumers={len(self.consumers)}>"

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: Any) -> bool:
        return self is other
