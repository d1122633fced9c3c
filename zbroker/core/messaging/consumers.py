"""Consumers and credit: how many deliveries may be out, unacknowledged, at once.

The credit protocol (RabbitMQ's prefetch, as the broker applies it):

1. ``basic_qos(prefetch_count=N, global_qos=False)`` sets the limit for consumers the
   channel creates *afterwards*: each such consumer may hold at most N unacked
   deliveries. ``global_qos=True`` sets one limit shared by all consumers of the channel.
   Both may apply; a delivery needs credit under both. 0 means unlimited.
2. A consumer with ``auto_ack=True`` needs no credit: its deliveries are settled when
   sent, so prefetch does not limit it (as in RabbitMQ).
3. The broker sends a delivery only to a consumer that has credit. Sending one takes one
   unit (the delivery is recorded as unacked on the channel, under a delivery tag).
4. ``basic_ack`` / ``basic_nack`` / ``basic_reject`` settle deliveries and give their
   credit back; the queues that consumer reads from are then dispatched again.
5. Competing consumers on one queue are served highest ``x-priority`` first and round
   robin among equal priorities, skipping those without credit; a lower-priority
   consumer gets messages only while every higher one is out of credit. With
   ``x-single-active-consumer`` only the queue's active consumer is served
   (``queues.py``). A queue stops dispatching when no consumer it may serve has credit.
   A connection that is ``blocked`` has no credit at all until it catches up: its
   socket pipe is full, or it holds a whole delivery window it has not reported read
   (``session.py``). So a slow reader's messages wait in the queue, where other
   consumers can take them, instead of piling up in the broker's send buffers.
6. Every unacked delivery is owned by exactly one (connection, channel, delivery tag).
   When the channel closes, or its connection closes or dies, the owner's unacked
   deliveries return to the head of their queues, marked redelivered.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zbroker.errors import BrokerError

if TYPE_CHECKING:
    from zbroker.core.messaging.message import Message
    from zbroker.core.messaging.queue_type import QueueType
    from zbroker.core.messaging.session import Channel


class Consumer:
    __slots__ = ("tag", "queue", "channel", "auto_ack", "exclusive", "prefetch",
                 "unacked", "arguments", "priority", "timeout")

    def __init__(self, tag: str, queue: "QueueType", channel: "Channel", auto_ack: bool,
                 exclusive: bool, prefetch: int, arguments: dict | None = None,
                 priority: int = 0, timeout: int = 0) -> None:
        self.tag = tag
        self.queue = queue
        self.channel = channel
        self.auto_ack = auto_ack
        self.exclusive = exclusive
        self.prefetch = prefetch
        self.unacked = 0
        self.arguments = arguments or {}
        self.priority = priority
        #: Milliseconds its deliveries may stay unacked (``consumer_timeout.py``; 0: no limit).
        self.timeout = timeout

    def has_credit(self) -> bool:
        if self.channel.connection.blocked:
            return False
        if self.auto_ack:
            return True
        if self.prefetch and self.unacked >= self.prefetch:
            return False
        channel = self.channel  # the channel's share (global prefetch, rule 1)
        return not channel.global_prefetch or channel.consumer_unacked < channel.global_prefetch

    def __repr__(self) -> str:
        return f"<Consumer {self.tag!r} on {self.queue.name!r} unacked={self.unacked}>"


class Unacked:
    """One delivery awaiting its ack: where it came from and who holds its credit."""

    __slots__ = ("queue", "message", "consumer", "tag", "at")

    def __init__(self, queue: "QueueType", message: "Message", consumer: Consumer | None, tag: int,
                 at: float = 0.0) -> None:
        self.queue = queue
        self.message = message
        self.consumer = consumer
        self.tag = tag
        self.at = at  # when it was sent (``now``): the consumer timeout counts from it

    def settle(self) -> Any:
        """Give the credit back; returns the consumer whose queue may dispatch again."""
        consumer = self.consumer
        if consumer is not None:
            consumer.unacked -= 1
            consumer.channel.consumer_unacked -= 1
        return consumer


def returnable(channel: "Channel", entries: list[Unacked]) -> list[Unacked]:
    """Deliveries a nack or reject gives back, if every queue they came from takes them
    back (``QueueType.check_return``); if one refuses, they stay unacked on the channel
    (its connection closes and they go back as on any close) and the refusal is raised."""
    try:
        for entry in entries:
            entry.queue.check_return()
    except BrokerError:
        channel.unacked.update((entry.tag, entry) for entry in entries)
        raise
    return entries
