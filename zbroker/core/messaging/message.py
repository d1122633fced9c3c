"""A message as the broker holds it: routing facts, properties and an opaque body.

The body is whatever the wire handed in (bytes or a zmq frame); the core never reads,
decodes or copies it. One ``Message`` may sit in several queues at once (fanout), so it
is never mutated: a requeue makes a copy marked ``redelivered`` (and, for a quorum
queue, counting the return). ``seq`` is the broker-wide publish order; a requeued
message goes back to its place by it, as in RabbitMQ.

``published_at`` (the publish's ``now``, seconds) and ``ttl`` (its own ``expiration``,
ms, or None) are what a queue needs to know when the message expires there: each queue
combines them with its own ``x-message-ttl`` (``Queue.expiry_of``). ``size`` is the
body's length, for byte limits and counters.

A persistent message in a durable queue also has a ``location`` in the store. Far back
in a long queue it may be held *paged*: only ``seq``, ``size``, ``redelivered`` and
``location``, with the rest read back from the store when the message reaches the head.
"""
from __future__ import annotations

from sys import intern
from typing import Any


#: A message's fields, in ``__init__``'s order (``copy`` reads them; a compiled class has
#: no ``__slots__`` to read at run time).
FIELDS = ("seq", "exchange", "routing_key", "properties", "body", "published_at", "ttl",
          "size", "redelivered", "location", "returns")


#: The properties of every message published without any: one dict for all of them
#: (messages are never mutated, so neither is it), not an empty one (64 B) per message.
NO_PROPERTIES: dict = {}


#: Properties dicts that queued messages hold, by their items: most producers send the
#: same few (a content type, a delivery mode) with every message, and each message then
#: holds the one dict (about 250 B saved a message). Emptied when it reaches
#: ``SHARED_PROPERTIES_MAX`` entries, so a producer of ever-new properties costs nothing more.
_shared_properties: dict[tuple, dict] = {}
SHARED_PROPERTIES_MAX = 4096


def published(seq: int, exchange: str, routing_key: str, properties: dict, body: Any, now: float,
              ttl: int | None) -> "Message":
    """A message as a publish makes it. Its exchange name and routing key are interned: a
    queue of messages sent to one key holds one copy of the key, not one per message; its
    properties are shared with earlier messages' equal ones (``shared``)."""
    return Message(seq, intern(exchange), intern(routing_key), shared(properties) if properties else NO_PROPERTIES,
                   body, now, ttl, len(body))


def shared(properties: dict) -> dict:
    """``properties``, or an equal dict that earlier messages hold. Only for properties
    whose values are all exactly ``str`` or ``int``: equal items then mean equal values of
    the same types (``True == 1 == 1.0`` in Python), and a header table is not hashable."""
    for value in properties.values():
        kind = type(value)
        if kind is not str and kind is not int:
            return properties
    key = tuple(properties.items())
    known = _shared_properties.get(key)
    if known is not None:
        return known
    if len(_shared_properties) >= SHARED_PROPERTIES_MAX:
        _shared_properties.clear()
    _shared_properties[key] = properties
    return properties


class Message:
    __slots__ = FIELDS

    def __init__(self, seq: int, exchange: Any, routing_key: Any, properties: Any, body: Any,
                 published_at: float = 0.0, ttl: int | None = None, size: int = 0,
                 redelivered: bool = False, location: int | None = None, returns: int = 0) -> None:
        self.seq = seq
        self.exchange = exchange
        self.routing_key = routing_key
        self.properties = properties
        self.body = body
        self.published_at = published_at
        self.ttl = ttl
        self.size = size
        self.redelivered = redelivered
        self.location = location
        #: Times a quorum queue got this message back unsettled (its x-delivery-count).
        self.returns = returns

    @classmethod
    def paged(cls, seq: int, location: int, size: int, redelivered: bool = False) -> "Message":
        """A message whose contents stay in the store until it is taken."""
        return cls(seq, None, None, None, None, 0.0, None, size, redelivered, location)

    @property
    def is_loaded(self) -> bool:
        return self.properties is not None

    def copy(self, **changes: Any) -> "Message":
        fields = {name: getattr(self, name) for name in FIELDS}
        fields.update(changes)
        return Message(**fields)

    def as_redelivered(self, returned: bool = False) -> "Message":
        """The copy that goes back to a queue; ``returned`` counts it for a delivery limit."""
        if self.redelivered and not returned:
            return self
        return self.copy(redelivered=True, returns=self.returns + returned)

    def __repr__(self) -> str:
        return f"<Message {self.seq} {self.exchange!r}/{self.routing_key!r} redelivered={self.redelivered}>"
