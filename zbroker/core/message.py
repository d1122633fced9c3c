"""A message as the broker holds it: routing facts, properties and an opaque body.

The body is whatever the socket layer handed in (bytes or a zmq frame); the core never
reads, decodes or copies it. One ``Message`` may sit in several queues at once (fanout),
so it is never mutated: a requeue makes a copy marked ``redelivered``. ``seq`` is the
broker-wide publish order; a requeued message goes back to its place by it, as in RabbitMQ.

A persistent message in a durable queue also has a ``location`` in the store. Far back
in a long queue it may be held *paged*: only ``seq``, ``redelivered`` and ``location``,
with exchange, routing key, properties and body read back from the store when the
message reaches the head (``Queue.take``).
"""
from __future__ import annotations

from typing import Any


class Message:
    __slots__ = ("seq", "exchange", "routing_key", "properties", "body", "redelivered", "location")

    def __init__(self, seq: int, exchange: Any, routing_key: Any, properties: Any, body: Any,
                 redelivered: bool = False, location: int | None = None) -> None:
        self.seq = seq
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body
        self.redelivered = redelivered
        self.location = location

    @classmethod
    def paged(cls, seq: int, location: int, redelivered: bool = False) -> "Message":
        """A message whose contents stay in the store until it is taken."""
        return cls(seq, None, None, None, None, redelivered, location)

    def as_redelivered(self) -> "Message":
        if self.redelivered:
            return self
        return Message(self.seq, self.exchange, self.routing_key, self.properties, self.body, True,
                       self.location)

    def __repr__(self) -> str:
        return f"<Message {self.exchange!r}/{self.routing_key!r} redelivered={self.redelivered}>"
