"""The queue types a vhost can declare, by their ``x-queue-type`` name.

Rules of this module:
- One entry per type; a type is a ``QueueType`` subclass (``queue_type.py``). Adding a
  type is one module and one line here: nothing else asks which type a queue is.
- An unknown name never gets here: ``arguments.queue_settings`` refuses it first with
  RabbitMQ's 406 text.
"""
from __future__ import annotations

from zbroker.core.messaging.arguments import precondition
from zbroker.core.messaging.classic import ClassicQueue
from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.quorum import QuorumQueue
from zbroker.core.messaging.stream import StreamQueue

QUEUE_TYPES: dict[str, type[QueueType]] = {cls.TYPE: cls for cls in (ClassicQueue, QuorumQueue, StreamQueue)}


def queue_type(name: str) -> type[QueueType]:
    """The implementation of the ``x-queue-type`` called ``name``."""
    return QUEUE_TYPES[name]


def check_server_named(arguments: dict) -> None:
    """A declare with an empty name: refused for a type that is not ``server_named``
    (RabbitMQ's ``is_server_named_allowed``, checked before anything else)."""
    named = arguments.get("x-queue-type")
    kind = QUEUE_TYPES.get(named) if isinstance(named, str) else None
    if kind is not None and not kind.server_named:
        raise precondition(f"Cannot declare a server-named queue for type {kind.MODULE}")
