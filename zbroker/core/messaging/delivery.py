"""The delivery engine: messages into their queues, out to consumers under credit, back
on a requeue, away on an ack, an expiry or a dead letter.

Rules of this module:
1. A routed message enters every queue it was routed to, or none of them with a
   ``reject-publish`` queue full: that queue refuses it (the publisher's confirm is a
   nack; ``reject-publish-dlx`` dead-letters it), the others take it.
2. A message reaches the store before any queue holds it when it is persistent, or when
   a queue it enters keeps every message (``QueueType.keeps_every_message``: quorum).
   A transient one stored for those queues only is theirs alone: the other queues get
   a copy that names no record (a location must name a record of every queue that
   holds the message, or their removals would free what the record's queues still need).
3. A queue with consumers dispatches right after it changes: an enqueue, a requeue, a
   settle that gave credit back, a new consumer. One dispatch delivers at most
   ``DISPATCH_BATCH`` messages; a queue cut short waits in ``pending`` for the next
   loop pass, so one long queue cannot stall the loop.
4. A message leaves the store only after it has left every queue, and after it was
   dead-lettered where its queue says so (durability rule 4): ``give_up`` keeps that order.
5. Expiry and ``x-expires`` run from the queue timers: a queue is in the heap at its
   earliest deadline (``timers.py``); nothing here polls.
6. Deleting a queue cancels its consumers with ``basic.cancel`` (RabbitMQ's consumer
   cancel notification), on the channel that consumed.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Callable, Iterable

from zbroker.core.durability.persistence import PERSISTENT, Durability
from zbroker.core.messaging.confirms import Confirms
from zbroker.core.messaging.consumers import Unacked
from zbroker.core.messaging.deadletter import DELIVERY_LIMIT, EXPIRED, MAXLEN, REJECTED, DeadLetters
from zbroker.core.messaging.message import Message
from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.timers import Clock, Timers
from zbroker.methods import BasicCancel  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from zbroker.core.messaging.session import Channel
    from zbroker.core.messaging.topology import Counts

log = logging.getLogger(__name__)

#: Deliveries one queue makes per dispatch before yielding to the rest of the loop.
DISPATCH_BATCH = 1000


class Delivery:
    """Moves messages between publishers, queues, consumers and the store (the rules above)."""

    def __init__(self, clock: Clock, durability: Durability, confirms: Confirms, counts: "Counts") -> None:
        self.clock = clock
        self.durability = durability
        self.confirms = confirms
        self.counts = counts
        #: Queues by their earliest deadline (message expiry, x-expires).
        self.timers: Timers[QueueType] = Timers()
        #: Queues that stopped at DISPATCH_BATCH with deliverable messages left.
        self.pending: dict[QueueType, None] = {}
        #: The last message sequence number given (publishes and dead letters).
        self.seq = 0
        self.dead_letters = DeadLetters(self.next_seq, lambda queues, message: self.enqueue(queues, message, None, 0))

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    # -- in ------------------------------------------------------------------------------

    def enqueue(self, queues: Iterable[QueueType], message: Message, confirming: "Channel | None",
                seq: int) -> None:
        """Put a routed message into its queues (a publish, or a dead letter): rules 1-3."""
        for queue in queues:
            if queue.rejects and queue.would_overflow(message):
                queues = self._refuse(queues, message, confirming, seq)
                break
        kept = message  # what the queues that keep every message enqueue (rule 2)
        if message.properties.get("delivery_mode") == PERSISTENT:
            self.durability.store_message(message, queues, confirming)
        elif self.counts.keeping_queues:  # while 0, a transient publish needs no store look
            keeping = [q for q in queues if q.keeps_every_message]
            if keeping:
                if any(not q.keeps_every_message for q in queues):
                    kept = message.copy()
                self.durability.store_message(kept, keeping, confirming)
        for queue in queues:
            queue.enqueue(message if kept is message or not queue.keeps_every_message else kept)
            if queue.consumers:
                self.dispatch(queue)
            if queue.careful or message.ttl is not None:
                self.after_enqueue(queue)

    def _refuse(self, queues: Iterable[QueueType], message: Message, confirming: "Channel | None",
                seq: int) -> list[QueueType]:
        """reject-publish(-dlx): the full queues refuse the message, the publisher gets a
        nack for it; returns the queues that take it."""
        refused = [q for q in queues if q.rejects and q.would_overflow(message)]
        if confirming is not None:
            self.confirms.refuse(confirming, seq)
        for queue in refused:
            if queue.settings.overflow == "reject-publish-dlx":
                self.give_up(queue, [message], MAXLEN, stored=False)
        return [q for q in queues if q not in refused]

    def after_enqueue(self, queue: QueueType) -> None:
        """Apply drop-head limits and due expiry (TTL 0: delivered at once or expired)."""
        if queue.settings.limited:
            self.give_up(queue, queue.over_limit(), MAXLEN)
        self.expire(queue)  # what is due now, not delivered at once, goes now
        self.timers.watch(queue)

    def settings_changed(self, queue: QueueType) -> None:
        """A policy changed ``queue``'s settings: a lower limit trims it now (drop-head), a
        new expiry takes its place in the timers, x-expires counts again from now (as
        RabbitMQ restarts its expiry timer on a policy change), consumers go on."""
        if queue.settings.expires is not None:
            queue.last_used = self.clock.now
        self.after_enqueue(queue)
        if queue.consumers and queue.has_messages:
            self.dispatch(queue)

    # -- out -----------------------------------------------------------------------------

    def dispatch(self, queue: QueueType) -> None:
        """Deliver what ``queue``'s consumers have credit for (rule 3)."""
        if queue.due(self.clock.now):
            self.expire(queue)
        if queue.dispatch(DISPATCH_BATCH):
            self.pending[queue] = None

    def dispatch_consumers_of(self, channel: "Channel") -> None:
        for queue in {id(c.queue): c.queue for c in channel.consumers.values()}.values():
            self.dispatch(queue)

    def run_pending(self, guarded: Callable[..., None]) -> None:
        """Continue dispatches cut short by DISPATCH_BATCH (each under ``guarded``)."""
        pending, self.pending = self.pending, {}
        for queue in pending:
            if not queue.deleted:
                guarded(self.dispatch, queue)

    # -- settling ------------------------------------------------------------------------

    def forget(self, entry: Unacked) -> None:
        """A delivery is acked: free its credit and its place in the store."""
        consumer = entry.consumer  # (``Unacked.settle``, ``settled`` and ``Durability.forget``, in line)
        if consumer is not None:
            consumer.unacked -= 1
            consumer.channel.consumer_unacked -= 1
        queue = entry.queue
        queue.unacked -= 1
        queue.acked += 1
        message = entry.message
        if message.location is not None and queue.journal is not None:
            queue.journal.remove(message.seq, message.location)
        if queue.tracks_acks:
            queue.track_ack(entry)

    def reject(self, entries: list[Unacked]) -> None:
        """Rejected without requeue: dead-lettered where the queue says so, else dropped."""
        by_queue: dict[int, tuple[QueueType, list[Message]]] = {}
        for entry in entries:
            entry.settle()
            entry.queue.settled()
            by_queue.setdefault(id(entry.queue), (entry.queue, []))[1].append(entry.message)
        for queue, messages in by_queue.values():
            self.give_up(queue, messages, REJECTED)

    def requeue(self, entries: Iterable[Unacked]) -> None:
        """Return deliveries to their queues, in order, and dispatch them."""
        by_queue: dict[int, tuple[QueueType, list[Message]]] = {}
        for entry in entries:
            entry.settle()
            if entry.queue.deleted:  # nowhere to go back to
                self.durability.forget(entry.queue, entry.message)
                continue
            by_queue.setdefault(id(entry.queue), (entry.queue, []))[1].append(entry.message)
        now = self.clock.now
        for queue, messages in by_queue.values():
            self.give_up(queue, queue.requeue(messages), DELIVERY_LIMIT)
            if queue.timed:
                if queue.due(now):
                    self.expire(queue)
                self.timers.watch(queue)
        for queue, _ in by_queue.values():
            if not queue.deleted:
                self.dispatch(queue)

    def after_settle(self, channel: "Channel", entries: list[Unacked]) -> None:
        """Credit came back: let the queues those deliveries came from move again."""
        if channel.global_prefetch:
            self.dispatch_consumers_of(channel)
            return
        if len(entries) == 1:
            queue = entries[0].queue
            if queue.has_messages and not queue.deleted:
                self.dispatch(queue)
            return
        for queue in {id(e.queue): e.queue for e in entries}.values():
            if queue.has_messages and not queue.deleted:
                self.dispatch(queue)

    def settle(self, channel: "Channel", entries: list[Unacked], requeue: bool | None) -> None:
        """Apply one settlement: ``requeue`` None acks, True requeues, False rejects."""
        if requeue is None:
            channel.acked += len(entries)
            for entry in entries:
                self.forget(entry)
        elif requeue:
            self.requeue(entries)
        else:
            self.reject(entries)
        self.after_settle(channel, entries)

    # -- giving messages up, expiry, x-expires -------------------------------------------

    def give_up(self, queue: QueueType, messages: list[Message], reason: str, stored: bool = True) -> None:
        """Messages leave ``queue`` for ``reason``: dead-lettered if it has a DLX, then
        removed from the store (in that order: rule 4)."""
        if not messages:
            return
        self.dead_letters.give_up(queue, messages, reason, self.clock.now)
        if stored:
            for message in messages:
                self.durability.forget(queue, message)

    def expire(self, queue: QueueType) -> None:
        self.give_up(queue, queue.expire(self.clock.now), EXPIRED)

    def timer(self, queue: QueueType) -> None:
        """A queue's deadline came: expire its messages, delete it if x-expires says so."""
        self.expire(queue)
        if queue.unused_since(self.clock.now):
            log.info("queue '%s' expired: unused for %d ms", queue.name, queue.settings.expires)
            self.delete_queue(queue)
            return
        self.timers.watch(queue)

    def used(self, queue: QueueType) -> None:
        """x-expires counts from the last use: a declare, a get, a consumer leaving."""
        queue.last_used = self.clock.now
        if queue.settings.expires is not None:
            self.timers.watch(queue)

    # -- consumers leaving, queues going -------------------------------------------------

    def consumer_left(self, queue: QueueType, holding: bool = False) -> None:
        """A consumer went: delete an auto-delete queue, start x-expires, let the next
        consumer (a new single active one) take the waiting messages.

        ``holding``: the consumer was cancelled with deliveries still unacked on its open
        channel. Then nothing is dispatched now: the next single active consumer starts
        when those are settled or requeued (pika cancels before it closes a channel), so
        it gets the requeued ones first, in order, as with RabbitMQ, whose classic queue
        does not run on basic.cancel."""
        if queue.deleted:
            return
        if queue.unused_auto_delete:
            self.delete_queue(queue)
            return
        if not queue.consumers:
            self.used(queue)
        elif queue.has_messages and not holding:
            self.dispatch(queue)

    def delete_queue(self, queue: QueueType) -> int:
        """Delete a queue and tell its consumers (rule 6); returns its ready count."""
        for consumer in list(queue.consumers):
            queue.remove_consumer(consumer)
            channel = consumer.channel
            if channel.consumers.pop(consumer.tag, None) is not None:
                channel.send(BasicCancel(channel.number, consumer.tag))
        self.pending.pop(queue, None)
        return queue.topology.delete_queue(queue)
