"""What a queue tells the store as its stored messages move.

Persistent messages in durable queues are journaled, and so is a transient message that
joins a queue whose tail is paged (it must wait its turn on disk; recovery skips it).
A transient queue has a journal too when the store pages (negative ids, never
recovered): a persistent message it shares with durable queues is recorded for it as
well, so a message's location always names a record of every queue holding it, and
the same take/remove/drop rules apply to every queue. The broker calls ``page`` for those. The queue calls ``take`` when a
message leaves its head for a consumer, the broker calls ``remove`` when a delivery is
settled for good and ``drop`` when the queue is deleted.
"""
from __future__ import annotations

from typing import Iterable

from zbroker.core.messaging.message import Message
from zbroker.storage.store import MessageStore


class QueueJournal:
    __slots__ = ("store", "queue_id", "recovered_at")

    def __init__(self, store: MessageStore, queue_id: int, recovered_at: float = 0.0) -> None:
        self.store = store
        self.queue_id = queue_id
        #: Stands in for the publish time of records written before it was kept.
        self.recovered_at = recovered_at

    def take(self, message: Message, settled: bool) -> Message:
        """The message leaves the queue's head: settled (auto-ack) or now awaiting an ack.

        A paged message is read back here. An unsettled one is marked delivered, so a
        crash before its ack brings it back with ``redelivered=True``.
        """
        if message.body is None:
            message = self.load(message)
        location = message.location
        assert location is not None  # (the queue calls this only for a stored message)
        if settled:
            self.store.remove(self.queue_id, message.seq, location)
        else:  # (paged transient messages are marked too: harmless, recovery skips them)
            self.store.delivered(self.queue_id, message.seq)
        return message

    def page(self, message: Message) -> int:
        """Journal a transient message so it can wait in the paged tail; its location."""
        return self.store.append(message.seq, [self.queue_id], message.exchange, message.routing_key,
                                 message.properties, message.body, persistent=False,
                                 published_at=message.published_at)

    def load(self, message: Message) -> Message:
        """The whole message behind a paged one."""
        location = message.location
        assert location is not None  # (a paged message always has one)
        exchange, routing_key, properties, body, published_at = self.store.read(location)
        ttl = properties.get("expiration")
        return Message(message.seq, exchange, routing_key, properties, body,
                       self.recovered_at if published_at is None else published_at,
                       int(ttl) if isinstance(ttl, str) and ttl.isdigit() else None,
                       len(body), message.redelivered, message.location, message.returns)

    def remove(self, seq: int, location: int) -> None:
        self.store.remove(self.queue_id, seq, location)

    def drop(self, stored: Iterable[tuple[int, int]]) -> None:
        """The queue is deleted; ``stored`` are (seq, location) of what it still held."""
        self.store.drop_queue(self.queue_id, [location for _, location in stored])
