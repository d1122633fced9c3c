"""A message as the broker holds it: routing facts, properties and an opaque body.

The body is whatever the socket layer handed in (bytes or a zmq frame); the core never
reads, decodes or copies it. One ``Message`` may sit in several queues at once (fanout),
so it is never mutated: a requeue makes a copy marked ``redelivered``.
"""
from __future__ import annotations

from typing import Any


class Message:
    __slots__ = ("exchange", "routing_key", "properties", "body", "redelivered")

    def __init__(self, exchange: str, routing_key: str, properties: dict, body: Any,
                 redelivered: bool = False) -> None:
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body
        self.redelivered = redelivered

    def as_redelivered(self) -> "Message":
        if self.redelivered:
            return self
        return Message(self.exchange, self.routing_key, self.properties, self.body, True)

    def __repr__(self) -> str:
        return f"<Message {self.exchange!r}/{self.routing_key!r} redelivered={self.redelivered}>"
