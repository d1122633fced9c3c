"""A message as the broker holds it: routing facts, properties and an opaque body.

The body is whatever the socket layer handed in (bytes or a zmq frame); the core never
reads, decodes or copies it. One ``Message`` may sit in several queues at once (fanout),
so it is never mutated: a requeue makes a copy marked ``redelivered``. ``seq`` is the
broker-wide publish order; a requeued message goes back to its place by it, as in RabbitMQ.
"""
from __future__ import annotations

from typing import Any


class Message:
    __slots__ = ("seq", "exchange", "routing_key", "properties", "body", "redelivered")

    def __init__(self, seq: int, exchange: str, routing_key: str, properties: dict, body: Any,
                 redelivered: bool = False) -> None:
        self.seq = seq
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body
        self.redelivered = redelivered

    def as_redelivered(self) -> "Message":
        if self.redelivered:
            return self
        return Message(self.seq, self.exchange, self.routing_key, self.properties, self.body, True)

    def __repr__(self) -> str:
        return f"<Message {self.exchange!r}/{self.routing_key!r} redelivered={self.redelivered}>"
