"""The ``x-delayed-message`` exchange's delays: RabbitMQ's rabbitmq-delayed-message-exchange
plugin (its 3.10 release, checked against RabbitMQ 3.10.8 with the plugin built from source).

Rules of this module:
1. Declaring. ``x-delayed-type`` names the type that routes (direct, fanout, topic, headers,
   x-consistent-hash). Missing or not a string: 406 "Invalid argument, 'x-delayed-type'
   must be an existing exchange type"; ``x-delayed-message`` itself: 406 "Invalid argument,
   'x-delayed-message' can't be used for 'x-delayed-type'"; a name no type has: the
   declare's own refusal (``exchanges.exchange_type``); then that type's own checks of the
   arguments and, later, of each binding (the plugin delegates ``validate`` and
   ``validate_binding``). A redeclaration compares what any exchange's does, not the type.
2. The delay is the ``x-delay`` header, as the plugin reads it: an integer as it is, a
   float truncated, a string parsed as Erlang's ``binary_to_integer`` (``[+-]digits``); any
   other value (bool, bytes, timestamp, void, array, table) is no delay. A string that is
   not an integer fails the plugin's route: RabbitMQ closes the connection with 541
   INTERNAL_ERROR, and so does zbroker (with the reason in the text).
3. A delay in (0, 2^32-1] ms (Erlang's longest timer) holds the message; anything else
   (none, 0, negative, longer) routes it at once as the delayed type would. This is the
   exchange's ``route``, so it applies however a message reaches the exchange: a publish,
   an exchange-to-exchange binding, a dead letter.
4. Held, a message is due at its publish time plus its delay. Each exchange has a
   ``DelayedHold``: its messages in a heap by (due, publish order). Every hold sits in one
   ``Timers`` heap by its earliest due message, which the broker's ``tick`` drives
   (``Delays``): the cost of a tick is that of the messages it releases, never of those it
   does not. Nothing scans.
5. Due, a message is routed by the exchange's bindings at that moment, by its routing key
   and CC keys (alternate exchanges as for any routing), and enters its queues as a new
   publish: a new place in publish order, published now (a TTL counts from then). Routing
   sees ``x-delay`` negated, as the plugin's does, so no delayed exchange downstream holds
   it again; its header travels as published (RabbitMQ 3.10 delivers the properties it
   was published with). Routed nowhere, it is dropped.
6. Publishing. The hold is a destination like a queue with no consumers, no TTL and no
   limits: a confirm waits for what it waits for with a queue (the disk, for a persistent
   message on a durable exchange). The plugin does not support ``mandatory``: a message
   whose only destination is a hold comes back at once as 312 NO_ROUTE, as RabbitMQ's
   does, and is delivered after its delay all the same (``held_only``).
7. Durability. The hold of a durable exchange has a journal with its own store id, as a
   durable queue has (saved with the exchange in the topology snapshot): a persistent
   message is journaled there and recovered with its publish time, so it is due when it
   was, or at once if that passed while the broker was down. A released message is
   journaled for its queues before it leaves the hold's journal (a crash in between
   delivers it twice, never not at all). Transient messages are held in memory only: a
   restart loses them. Deleting the exchange drops what it holds.
"""
from __future__ import annotations

import heapq
import math
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from zbroker import errors
from zbroker.core.messaging.arguments import precondition
from zbroker.core.messaging.deadletter import routing_keys
from zbroker.core.messaging.message import Message
from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.timers import Timers
from zbroker.errors import ConnectionError_

if TYPE_CHECKING:
    from zbroker.core.messaging.delivery import Delivery
    from zbroker.core.messaging.exchanges import Exchange

DELAYED = "x-delayed-message"
X_DELAYED_TYPE = "x-delayed-type"
X_DELAY = "x-delay"
#: The longest delay held, in ms: Erlang's longest timer, the plugin's ``?ERL_MAX_T``.
MAX_DELAY_MS = 2**32 - 1
#: What Erlang's ``binary_to_integer`` takes (ASCII digits only, an optional sign).
_ERLANG_INTEGER = re.compile(r"[+-]?[0-9]+")


def delayed_type(arguments: dict) -> str:
    """The ``x-delayed-type`` argument, checked as the plugin's ``validate`` (rule 1)."""
    kind = arguments.get(X_DELAYED_TYPE)
    if kind == DELAYED:
        raise precondition(f"Invalid argument, '{DELAYED}' can't be used for '{X_DELAYED_TYPE}'")
    if not isinstance(kind, str):
        raise precondition(f"Invalid argument, '{X_DELAYED_TYPE}' must be an existing exchange type")
    return kind


def delay_of(value: Any) -> int | None:
    """The delay (ms) an ``x-delay`` header's value asks for, if it holds the message (rules 2, 3)."""
    kind = type(value)
    if kind is int:
        delay = value
    elif kind is float:
        if not math.isfinite(value):
            return None  # (out of any range; an Erlang float cannot be one)
        delay = math.trunc(value)
    elif kind is str:
        if not _ERLANG_INTEGER.fullmatch(value):
            raise ConnectionError_(errors.INTERNAL_ERROR, f"the {X_DELAY} header '{value}' is not an integer")
        if len(value.lstrip("+-0")) > len(str(MAX_DELAY_MS)):
            return None  # (out of range, however long: never handed to int())
        delay = int(value)
    else:
        return None
    return delay if 0 < delay <= MAX_DELAY_MS else None


def routing_properties(properties: dict) -> dict:
    """A released message's properties as routing sees them: ``x-delay`` negated (rule 5)."""
    headers = dict(properties["headers"])
    headers[X_DELAY] = -(delay_of(headers[X_DELAY]) or 0)
    return {**properties, "headers": headers}


def held_only(destinations: Iterable[Any]) -> bool:
    """Routing reached holds and no queue: a ``mandatory`` publish comes back (rule 6)."""
    return all(type(d) is DelayedHold for d in destinations)


class DelayedHold(QueueType):
    """Where a delayed exchange keeps its messages until they are due (rules 4-7).

    Routing gives it messages as it gives them to a queue (``Delivery.enqueue``), and the
    store journals them for it as for a durable queue; it is never listed, bound, consumed
    from or given a TTL or limits. It is no queue of the broker's timers (its
    ``next_deadline`` is NEVER): its messages' due times are ``timers``, the delays' heap.
    """

    TYPE = DELAYED
    MODULE = "rabbit_delayed_message"

    def __init__(self, exchange: "Exchange") -> None:
        super().__init__(f"{DELAYED} hold of '{exchange.name}'", exchange.durable)
        self.exchange = exchange
        #: The delays' heap of holds (``Topology.add_exchange`` gives it).
        self.timers: Timers[DelayedHold] | None = None
        self._heap: list[tuple[float, int, Message]] = []

    # -- holding and releasing -------------------------------------------------------

    def enqueue(self, message: Message) -> None:
        delay = delay_of(message.properties["headers"][X_DELAY])
        assert delay is not None  # (routing sent it here for its delay)
        due = message.published_at + delay / 1000.0
        heapq.heappush(self._heap, (due, message.seq, message))
        self.ready += 1
        self.ready_bytes += message.size
        if self.timers is not None:
            self.timers.at(self, due)

    def take_due(self, now: float) -> Message | None:
        """The next message due at ``now``, removed; None when none is."""
        heap = self._heap
        if not heap or heap[0][0] > now:
            return None
        message = heapq.heappop(heap)[2]
        self.ready -= 1
        self.ready_bytes -= message.size
        return message

    def schedule(self) -> None:
        """Put the hold back in the delays' heap at its earliest due message."""
        if self._heap and self.timers is not None:
            self.timers.at(self, self._heap[0][0])

    def forget(self, message: Message) -> None:
        """A released message leaves the hold's journal."""
        if self.journal is not None and message.location is not None:
            self.journal.remove(message.seq, message.location)

    def append_recovered(self, message: Message | None, seq: int, location: int, size: int,
                         priority: int, expires: float | None) -> None:
        assert self.journal is not None  # (only a hold with a journal has messages to recover)
        self.enqueue(message if message is not None else self.journal.load(Message.paged(seq, location, size)))

    # -- the queue interface, as far as a hold has it ----------------------------------

    @property
    def resident_count(self) -> int:
        return len(self._heap)

    def expire(self, now: float) -> list[Message]:
        return []  # (a TTL counts in the queues a message reaches, from its release)

    def over_limit(self) -> list[Message]:
        return []

    def requeue(self, messages: Iterable[Message]) -> list[Message]:
        raise TypeError("a delayed exchange's hold has no consumers")

    def take(self, settled: bool) -> Message:
        raise TypeError("a delayed exchange's hold has no consumers")

    def purge(self) -> int:
        count = self.ready
        for message in self.resident():
            self.forget(message)
        self.clear()
        return count

    def clear(self) -> None:
        self._heap = []
        self.ready = self.ready_bytes = 0

    def stored(self) -> Iterator[tuple[int, int]]:
        return ((m.seq, m.location) for _, _, m in self._heap if m.location is not None)

    def resident(self) -> Iterator[Message]:
        return (m for _, _, m in self._heap)

    def paged(self) -> Iterator[tuple[int, int]]:
        return iter(())

    def relocate(self, moved: dict[int, int]) -> None:
        pass  # (every held message is resident: the broker re-points it)


class Delays:
    """Releases held messages when they are due (rules 4, 5): ``tick`` is the broker's."""

    def __init__(self, delivery: "Delivery", timers: Timers[DelayedHold]) -> None:
        self.delivery = delivery
        self.timers = timers

    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def tick(self, now: float, guarded: Callable[..., None]) -> None:
        for hold in self.timers.due(now):
            if not hold.deleted:
                guarded(self.release, hold, now)

    def release(self, hold: DelayedHold, now: float) -> None:
        """Route every message of ``hold`` due at ``now``, in due order."""
        try:
            while (message := hold.take_due(now)) is not None:
                self._route(hold, message, now)
        finally:
            hold.schedule()

    def _route(self, hold: DelayedHold, message: Message, now: float) -> None:
        delivery = self.delivery
        queues = hold.topology.route_keys(hold.exchange, routing_keys(message), routing_properties(message.properties))
        if queues:
            delivery.enqueue(queues, Message(delivery.next_seq(), message.exchange, message.routing_key,
                                             message.properties, message.body, now, message.ttl, message.size),
                             None, 0)
        hold.forget(message)  # (after its copy is journaled for its queues: rule 7)
