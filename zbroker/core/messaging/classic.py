"""The classic queue: RabbitMQ's default type. It owns its messages: their order in
priority lanes, paging, expiry and length limits (the rest of a queue, its consumers and
counters, is every type's: ``queue_type.py``).

Rules of this module:
1. Order. A queue has one lane per priority (``x-max-priority`` + 1 lanes; a queue
   without it has one). A message's lane is its ``priority`` (none = 0, above the
   maximum = the maximum). Within a lane messages are in publish (``seq``) order and a
   requeued message goes back to its place by seq. The next message is the oldest one
   of the highest non-empty lane.
2. Paging. A queue (durable or not, on a store that pages: the disk store, or the
   in-memory one, whose records are packed byte arrays, ``storage/arena.py``) keeps at most
   ``PAGE_AFTER`` messages, or about ``PAGE_AFTER_BYTES`` of bodies, in memory (the
   lanes' heads) when they are in the store already; for transient messages, which
   paging must write, the windows are ``TRANSIENT_PAGE_AFTER(_BYTES)``. Past that, newcomers
   join their lane's paged tail (``paging.py``), refilled into the head ``REFILL`` at
   a time. Once a lane has a tail every newcomer to it joins the tail, to keep order.
3. Counters. ``ready`` / ``ready_bytes`` count the messages waiting (expired ones are
   out the moment they expire), ``unacked`` those taken and not yet settled.
4. Expiry. A message expires ``min(its expiration, x-message-ttl)`` ms after it was
   published, and keeps that time when requeued. Every ready message with an expiry
   sits in a heap; ``expire(now)`` takes out every one that is due, wherever it is in
   the queue -- not only at the head, as RabbitMQ does -- and marks it dead where it
   lies, to be skipped when reached. Dead messages at the front of a lane are dropped
   at once, so memory does not hold them for long.
5. Limits. ``x-max-length`` / ``x-max-length-bytes`` count ready messages. With
   ``drop-head`` the broker asks ``over_limit()`` after an enqueue and drops what it
   returns from the front; with ``reject-publish(-dlx)`` ``would_overflow`` refuses the
   newcomer before it is enqueued, as RabbitMQ does.
6. Returns. ``requeue`` puts every message back, marked redelivered; ``returned`` is
   where a subtype counts returns and keeps some out (the quorum queue's delivery
   limit). ``take`` hands a message out as it is held.
"""
from __future__ import annotations

import heapq
from collections import deque
from typing import TYPE_CHECKING, Iterable, Iterator

from zbroker.core.durability.paging import PagedTail
from zbroker.core.messaging.arguments import CLASSIC, TYPE_MODULES, QueueSettings
from zbroker.core.messaging.message import Message
from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.timers import NEVER

if TYPE_CHECKING:
    from zbroker.core.messaging.session import Connection

#: Paged messages moved to a lane's head at a time (as index entries: read when taken).
REFILL = 256
#: A durable queue holds a newcomer paged once its heads hold this many messages, or
#: once that many messages of the newcomer's size would exceed ``PAGE_AFTER_BYTES``:
#: with bodies of similar size, each queue keeps about that much in memory at most.
PAGE_AFTER = 2000
PAGE_AFTER_BYTES = 16 * 1024 * 1024
#: A message not yet in the store (a transient one) costs a write and a read to page, so
#: it is paged only once the heads hold this many messages or this much memory (bodies
#: plus ``MESSAGE_MEMORY`` each, what a message object costs besides its body): a queue
#: draining at about the rate it fills never touches the disk, a real backlog does.
TRANSIENT_PAGE_AFTER = 100_000
TRANSIENT_PAGE_AFTER_BYTES = 64 * 1024 * 1024
MESSAGE_MEMORY = 256


class Lane:
    """Messages of one priority: the in-memory head, then the paged tail."""

    __slots__ = ("head", "tail")

    def __init__(self) -> None:
        self.head: deque[Message] = deque()
        self.tail = PagedTail()


class ClassicQueue(QueueType):
    TYPE = CLASSIC
    MODULE = TYPE_MODULES[CLASSIC]
    #: RabbitMQ 4.0's ``rabbit_classic_queue`` capabilities.
    UNSUPPORTED_POLICIES = frozenset({"max-age", "stream-max-segment-size-bytes", "initial-cluster-size",
                                      "delivery-limit", "dead-letter-strategy", "max-in-memory-length",
                                      "max-in-memory-bytes", "target-group-size"})
    #: ``rabbit_amqqueue_process:process_args_policy`` (``consumer-timeout``: 4.x's ``min``).
    POLICY_PRECEDENCE = {"expires": "min", "message-ttl": "min", "max-length": "min", "max-length-bytes": "min",
                         "dead-letter-exchange": "argument", "dead-letter-routing-key": "argument",
                         "overflow": "argument", "consumer-timeout": "min"}

    def __init__(self, name: str, durable: bool = False, exclusive_owner: "Connection | None" = None,
                 auto_delete: bool = False, arguments: dict | None = None,
                 settings: QueueSettings | None = None) -> None:
        super().__init__(name, durable, exclusive_owner, auto_delete, arguments, settings)
        self.lanes = [Lane() for _ in range((self.settings.max_priority or 0) + 1)]
        self._lane0 = self.lanes[0]
        self._highest_first = self.lanes[::-1]
        self._resident = 0  # messages in the heads, dead ones included
        self._dead: set[int] = set()
        #: seq -> (expiry, the message if in a head / None if paged, lane) of ready messages.
        self._expiring: dict[int, tuple[float, Message | None, int]] = {}
        self._heap: list[tuple[float, int]] = []

    def _derive(self) -> None:
        super()._derive()
        #: Nothing to apply per message on enqueue: the publish fast path.
        self._plain = self.settings.plain

    # -- facts ---------------------------------------------------------------------

    @property
    def resident_count(self) -> int:
        """Ready messages held in memory (RabbitMQ's messages_ram)."""
        return self.ready - self.paged_count

    @property
    def paged_count(self) -> int:
        """Ready messages held on disk only (RabbitMQ's messages_paged_out)."""
        dead_paged = sum(1 for lane in self.lanes for seq, _ in lane.tail if seq in self._dead) \
            if self._dead else 0
        return sum(len(lane.tail) for lane in self.lanes) - dead_paged

    def expiry_of(self, message: Message) -> float | None:
        """When ``message`` expires in this queue (seconds), or None."""
        ttl, queue_ttl = message.ttl, self.settings.message_ttl
        if queue_ttl is not None and (ttl is None or queue_ttl < ttl):
            ttl = queue_ttl
        return None if ttl is None else message.published_at + ttl / 1000.0

    def lane_of(self, message: Message) -> int:
        top = len(self.lanes) - 1
        if not top:
            return 0
        priority = message.properties.get("priority") if message.properties else None
        return 0 if not priority else min(priority, top)

    def next_deadline(self) -> float:
        """The earliest time something may be due here (expiry, x-expires); NEVER if none."""
        due = self._heap[0][0] if self._heap else NEVER
        expires = self.settings.expires
        if expires is not None and not self.consumers:
            due = min(due, self.last_used + expires / 1000.0)
        return due

    def due(self, now: float) -> bool:
        """True if some ready message is past its expiry at ``now`` (one whose expiry is
        ``now`` itself, as with TTL 0, may still be delivered at once)."""
        heap = self._heap
        return bool(heap) and heap[0][0] < now

    @property
    def timed(self) -> bool:
        return bool(self._heap) or self.settings.expires is not None

    # -- in ------------------------------------------------------------------------

    def enqueue(self, message: Message) -> None:
        """Add a newly published message at the back of its lane."""
        incoming = self.incoming
        incoming[message.exchange] = incoming.get(message.exchange, 0) + 1
        if self._plain and message.ttl is None and (not self.pages or (
                not self._lane0.tail and self._fits(message))):
            self._lane0.head.append(message)
            self._resident += 1
            self.ready += 1
            self.ready_bytes += message.size
            return
        index = self.lane_of(message)
        lane = self.lanes[index]
        expires = self.expiry_of(message)
        location = self._page_location(lane, message)
        if location is None:
            lane.head.append(message)
            self._resident += 1
        else:
            lane.tail.append(message.seq, location, message.size)
        self.ready += 1
        self.ready_bytes += message.size
        if expires is not None:
            self._track(message.seq, expires, message if location is None else None, index)

    def _page_location(self, lane: Lane, message: Message) -> int | None:
        """The store location under which ``message`` joins the lane's paged tail, or
        None to keep it in memory (the heads are not full, or this queue does not page).
        A transient newcomer behind a tail is journaled too (``QueueJournal.page``)."""
        if not self.pages or (not len(lane.tail) and self._fits(message)):
            return None
        if message.location is not None:
            return message.location
        assert self.journal is not None  # pages is only set with a journal
        try:
            return self.journal.page(message)
        except OSError:
            return None  # kept in memory instead; the broker's commit reports the disk

    def _fits(self, message: Message) -> bool:
        """The heads have room for ``message`` (rule 2's windows)."""
        held = self._resident
        if message.location is not None:
            return held < PAGE_AFTER and held * message.size < PAGE_AFTER_BYTES
        return held < TRANSIENT_PAGE_AFTER and held * (message.size + MESSAGE_MEMORY) < TRANSIENT_PAGE_AFTER_BYTES

    def append_recovered(self, message: Message | None, seq: int, location: int, size: int,
                         priority: int, expires: float | None) -> None:
        """A message recovered from the store, in order: in memory, or paged if None."""
        index = min(priority, len(self.lanes) - 1)
        if message is not None:
            self.lanes[index].head.append(message)
            self._resident += 1
        else:
            self.lanes[index].tail.append(seq, location, size)
        self.ready += 1
        self.ready_bytes += size
        if expires is not None:
            self._track(seq, expires, message, index)

    def _track(self, seq: int, expires: float, message: Message | None, lane: int) -> None:
        self._expiring[seq] = (expires, message, lane)
        heapq.heappush(self._heap, (expires, seq))

    def requeue(self, messages: Iterable[Message]) -> list[Message]:
        """Put messages back where they were (by seq), marked redelivered. Returns those
        the type keeps out (``returned``: none here)."""
        if self.deleted:
            return []
        over: list[Message] = []
        for message in sorted(messages, key=lambda m: m.seq, reverse=True):
            self.unacked -= 1
            back = self.returned(message)
            if back is None:
                over.append(message.as_redelivered(returned=True))
                continue
            message = back
            index = self.lane_of(message)
            head = self.lanes[index].head
            i, n = 0, len(head)
            while i < n and head[i].seq < message.seq:
                i += 1
            head.insert(i, message)
            self._resident += 1
            self.ready += 1
            self.ready_bytes += message.size
            expires = self.expiry_of(message)
            if expires is not None:
                self._track(message.seq, expires, message, index)
        return over

    def returned(self, message: Message) -> Message | None:
        """A delivery came back unsettled: the message to put back (None: keep it out)."""
        return message.as_redelivered()

    # -- out -----------------------------------------------------------------------

    def _front(self) -> tuple[Lane, Message] | None:
        """The next live message and its lane; dead messages on the way are dropped."""
        for lane in self._highest_first:
            head = lane.head
            while head or self._refill(lane):
                message = head[0]
                if self._dead and message.seq in self._dead:
                    head.popleft()
                    self._resident -= 1
                    self._dead.discard(message.seq)
                    continue
                return lane, message
        return None

    def _refill(self, lane: Lane) -> bool:
        """Move the front of the lane's paged tail to its head; False if there was none."""
        entries = lane.tail.take(REFILL)
        dead, expiring = self._dead, self._expiring
        for seq, location, size in entries:
            if seq in dead:
                dead.discard(seq)
                continue
            message = Message.paged(seq, location, size)
            lane.head.append(message)
            self._resident += 1
            if seq in expiring:
                expires, _, index = expiring[seq]
                expiring[seq] = (expires, message, index)
        return bool(entries)

    def take(self, settled: bool) -> Message:
        """The next message, leaving for a consumer (``settled``: it needs no ack).

        A paged message is read from the store before it leaves the queue, so a read
        error leaves it where it was.
        """
        head = self._lane0.head
        if self._plain and head and not self._dead and head[0].location is None:  # the common case, in line
            message = head.popleft()
            self._resident -= 1
            self.ready -= 1
            self.ready_bytes -= message.size
            if self._expiring:
                self._expiring.pop(message.seq, None)
            if not settled:
                self.unacked += 1
            return message
        else:
            lane, message = self._next()
        if message.location is not None and self.journal is not None:
            message = self.journal.take(message, settled)
        self._pop(lane, message)
        if not settled:
            self.unacked += 1
        return message

    def _next(self) -> tuple[Lane, Message]:
        if self._plain and not self._dead and self._lane0.head:
            return self._lane0, self._lane0.head[0]
        front = self._front()
        if front is None:
            raise LookupError(f"queue '{self.name}' has no message to take")
        return front

    def _pop(self, lane: Lane, message: Message) -> None:
        """The front message of ``lane`` leaves the queue (read first, by the caller)."""
        lane.head.popleft()
        self._resident -= 1
        self.ready -= 1
        self.ready_bytes -= message.size
        if self._expiring:
            self._expiring.pop(message.seq, None)

    def expire(self, now: float) -> list[Message]:
        """Take out every ready message whose time has come (rule 4); returns them (a
        paged one as a paged ``Message``, contents still in the store)."""
        heap, expiring = self._heap, self._expiring
        expired: list[Message] = []
        while heap and heap[0][0] <= now:
            when, seq = heapq.heappop(heap)
            entry = expiring.get(seq)
            if entry is None or entry[0] != when:
                continue  # taken, or requeued with a new entry
            del expiring[seq]
            _, message, index = entry
            if message is None:
                found = self.lanes[index].tail.find(seq)
                if found is None:
                    continue
                message = Message.paged(seq, found[0], found[1])
            self._dead.add(seq)
            self.ready -= 1
            self.ready_bytes -= message.size
            expired.append(message)
        if expired:
            self._prune()
        return expired

    def _prune(self) -> None:
        """Drop dead messages from the front of every lane, and compact a head that is
        mostly dead (expired messages behind live ones)."""
        dead = self._dead
        for lane in self.lanes:
            head = lane.head
            while head and head[0].seq in dead:
                dead.discard(head.popleft().seq)
                self._resident -= 1
            if len(dead) > 64 and len(dead) * 2 > len(head):
                kept = deque(m for m in head if m.seq not in dead)
                for m in head:
                    if m.seq in dead:
                        dead.discard(m.seq)
                self._resident -= len(head) - len(kept)
                lane.head = kept

    def over_limit(self) -> list[Message]:
        """drop-head: take messages from the front until the queue is within its limits."""
        s = self.settings
        dropped: list[Message] = []
        if s.overflow != "drop-head":
            return dropped
        while self.ready and ((s.max_length is not None and self.ready > s.max_length) or
                              (s.max_length_bytes is not None and self.ready_bytes > s.max_length_bytes)):
            lane, message = self._next()  # stays in the store: the broker dead-letters, then removes
            self._pop(lane, message)
            dropped.append(message)
        return dropped

    def purge(self) -> int:
        count = self.ready
        if self.journal is not None:
            for seq, location in self.stored():
                self.journal.remove(seq, location)
        self.clear()
        return count

    def clear(self) -> None:
        for lane in self.lanes:
            lane.head.clear()
            lane.tail.clear()
        self.ready = self.ready_bytes = self._resident = 0
        self._dead.clear()
        self._expiring.clear()
        self._heap.clear()

    def stored(self) -> Iterator[tuple[int, int]]:
        """(seq, location) of every ready message the queue holds that is in the store."""
        for message in self.resident():
            if message.location is not None:
                yield message.seq, message.location
        yield from self.paged()

    def paged(self) -> Iterator[tuple[int, int]]:
        """(seq, location) of the live messages in the lanes' paged tails."""
        dead = self._dead
        for lane in self.lanes:
            for seq, location in lane.tail:
                if seq not in dead:
                    yield seq, location

    def resident(self) -> Iterator[Message]:
        """The live messages held in memory (the heads)."""
        dead = self._dead
        for lane in self.lanes:
            for message in lane.head:
                if message.seq not in dead:
                    yield message

    def relocate(self, moved: dict[int, int]) -> None:
        for lane in self.lanes:
            lane.tail.relocate(moved)
