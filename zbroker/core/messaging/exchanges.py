"""Exchange types: each one small, behind one interface.

An exchange keeps its bindings and answers one question, ``route``: to which
destinations (queues, or exchanges for exchange-to-exchange bindings) does a message
with this routing key and these headers go? The broker calls

- ``bind`` / ``unbind`` when a binding is added or removed (both idempotent, as in
  RabbitMQ: a second identical bind is a no-op, unbinding what is not bound is fine);
- ``route`` once per published message, so it is the hot path: direct and fanout are
  a dict or set lookup, topic goes through the cached ``TopicMatcher``, x-consistent-hash
  through the precomputed ``HashRing``. Its second argument is the message's headers for
  the headers exchange, its properties for a type with ``routes_on_properties``, else None;
- ``info`` for the management views: what the type adds to an exchange's (RabbitMQ's
  ``info/1`` callback).

``x-delayed-message`` routes as the type its ``x-delayed-type`` names, except that a
message with a due ``x-delay`` goes to the exchange's hold until then (``delayed.py``).

A binding is identified by (destination, routing key, arguments); ``bindings`` holds
them all so the broker can answer ``if_unused`` and drop a deleted queue's bindings.
"""
from __future__ import annotations

from collections import Counter
from typing import Any, ClassVar, Collection, Hashable

from zbroker import errors
from zbroker.core.messaging.consistent_hash import HashRing, hash_source, hashed_value, weight_of
from zbroker.core.messaging.delayed import X_DELAY, DelayedHold, delay_of, delayed_type
from zbroker.core.messaging.topic import TopicMatcher
from zbroker.errors import ChannelError

BindingKey = tuple[Any, str, Hashable]  # (destination, routing_key, frozen arguments)


def freeze(value: Any) -> Hashable:
    """A hashable, order-independent form of binding arguments."""
    if isinstance(value, dict):
        return tuple(sorted((k, freeze(v)) for k, v in value.items()))
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    return value


class Exchange:
    """Base: declaration attributes and the binding set; subclasses route."""

    kind: ClassVar[str] = ""
    #: ``route`` reads the message's properties (the topology passes them): a type that
    #: hashes a header or property, as the consistent-hash exchange does.
    routes_on_properties: ClassVar[bool] = False
    #: Routes a message by its first routing key only, whatever its CC and BCC headers add
    #: (the consistent-hash exchange: one copy, as RabbitMQ's plugin).
    first_key_only: bool = False

    def __init__(self, name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict | None = None) -> None:
        self.name = name
        self.durable = durable
        self.auto_delete = auto_delete
        self.internal = internal
        self.arguments = arguments or {}
        #: The ``alternate-exchange`` argument: where messages this one cannot route go.
        alternate = self.arguments.get("alternate-exchange")
        self.alternate: str | None = alternate if isinstance(alternate, str) else None
        self.bindings: dict[BindingKey, dict] = {}
        #: Bindings in which this exchange is the destination (exchange-to-exchange).
        self.sources: set[tuple[Exchange, str, Hashable]] = set()
        #: How many of this exchange's bindings lead to another exchange; while 0, routing
        #: is one look-up with no graph walk (kept by the topology).
        self.exchange_destinations = 0
        #: Counters (``stats.py``): messages published into it, and routed out of it
        #: (once per queue reached).
        self.published_in = self.published_out = 0

    def bind(self, destination: Any, routing_key: str, arguments: dict) -> bool:
        key = (destination, routing_key, freeze(arguments))
        if key in self.bindings:
            return False
        self.bindings[key] = arguments
        self._add(destination, routing_key, arguments)
        return True

    def unbind(self, destination: Any, routing_key: str, arguments: dict) -> bool:
        key = (destination, routing_key, freeze(arguments))
        if self.bindings.pop(key, None) is None:
            return False
        self._remove(destination, routing_key, arguments)
        return True

    def route(self, routing_key: str, headers: dict | None) -> Collection[Any]:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """What this type adds to the exchange's management view."""
        return {}

    def _add(self, destination: Any, routing_key: str, arguments: dict) -> None:
        raise NotImplementedError

    def _remove(self, destination: Any, routing_key: str, arguments: dict) -> None:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class _KeyedExchange(Exchange):
    """Shared bookkeeping for types that route by routing key: a count per
    (key, destination), since bindings differing only in arguments route alike."""

    def __init__(self, name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict | None = None) -> None:
        super().__init__(name, durable, auto_delete, internal, arguments)
        self._counts: Counter[tuple[str, Any]] = Counter()

    def _add(self, destination: Any, routing_key: str, arguments: dict) -> None:
        self._counts[(routing_key, destination)] += 1
        if self._counts[(routing_key, destination)] == 1:
            self._link(routing_key, destination)

    def _remove(self, destination: Any, routing_key: str, arguments: dict) -> None:
        self._counts[(routing_key, destination)] -= 1
        if self._counts[(routing_key, destination)] == 0:
            del self._counts[(routing_key, destination)]
            self._unlink(routing_key, destination)

    def _link(self, routing_key: str, destination: Any) -> None:
        raise NotImplementedError

    def _unlink(self, routing_key: str, destination: Any) -> None:
        raise NotImplementedError


class DirectExchange(_KeyedExchange):
    """Routes to the destinations bound with exactly the message's routing key."""

    kind: ClassVar[str] = "direct"

    def __init__(self, name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict | None = None) -> None:
        super().__init__(name, durable, auto_delete, internal, arguments)
        self._table: dict[str, set[Any]] = {}

    def route(self, routing_key: str, headers: dict | None) -> Collection[Any]:
        return self._table.get(routing_key, ())

    def _link(self, routing_key: str, destination: Any) -> None:
        self._table.setdefault(routing_key, set()).add(destination)

    def _unlink(self, routing_key: str, destination: Any) -> None:
        dests = self._table[routing_key]
        dests.discard(destination)
        if not dests:
            del self._table[routing_key]


class FanoutExchange(_KeyedExchange):
    """Routes to every bound destination; routing keys are ignored."""

    kind: ClassVar[str] = "fanout"

    def __init__(self, name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict | None = None) -> None:
        super().__init__(name, durable, auto_delete, internal, arguments)
        self._dests: Counter[Any] = Counter()

    def route(self, routing_key: str, headers: dict | None) -> Collection[Any]:
        return self._dests.keys()

    def _link(self, routing_key: str, destination: Any) -> None:
        self._dests[destination] += 1

    def _unlink(self, routing_key: str, destination: Any) -> None:
        self._dests[destination] -= 1
        if not self._dests[destination]:
            del self._dests[destination]


class TopicExchange(_KeyedExchange):
    """Routes by pattern: ``*`` one word, ``#`` zero or more (see ``topic.py``)."""

    kind: ClassVar[str] = "topic"

    def __init__(self, name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict | None = None) -> None:
        super().__init__(name, durable, auto_delete, internal, arguments)
        self._matcher = TopicMatcher()

    def route(self, routing_key: str, headers: dict | None) -> Collection[Any]:
        return self._matcher.match(routing_key)

    def _link(self, routing_key: str, destination: Any) -> None:
        self._matcher.add(routing_key, destination)

    def _unlink(self, routing_key: str, destination: Any) -> None:
        self._matcher.remove(routing_key, destination)


X_MATCH = "x-match"
_MATCH_MODES = ("all", "any", "all-with-x", "any-with-x")


class HeadersExchange(Exchange):
    """Routes by message headers against binding arguments.

    ``x-match`` is ``all`` (the default: every binding argument must be present with an
    equal value) or ``any`` (at least one must); arguments starting with ``x-`` are not
    compared unless the mode is ``all-with-x`` / ``any-with-x``, as in RabbitMQ.
    """

    kind: ClassVar[str] = "headers"

    def bind(self, destination: Any, routing_key: str, arguments: dict) -> bool:
        if not valid_match_mode(arguments):  # (refused even when already bound, as RabbitMQ's validate_binding)
            raise ChannelError(errors.PRECONDITION_FAILED,
                               f"Invalid x-match field value {arguments.get(X_MATCH)!r}; "
                               "expected all, any, all-with-x, or any-with-x")
        return super().bind(destination, routing_key, arguments)

    def route(self, routing_key: str, headers: dict | None) -> Collection[Any]:
        headers = headers or {}
        return {dest for (dest, _, _), args in self.bindings.items()
                if headers_match(args, headers)}

    def _add(self, destination: Any, routing_key: str, arguments: dict) -> None:
        pass

    def _remove(self, destination: Any, routing_key: str, arguments: dict) -> None:
        pass


def headers_match(binding_args: dict, headers: dict) -> bool:
    mode = binding_args.get(X_MATCH, "all")
    with_x = mode.endswith("-with-x") if isinstance(mode, str) else False
    pairs = [(k, v) for k, v in binding_args.items()
             if k != X_MATCH and (with_x or not k.startswith("x-"))]
    if mode in ("any", "any-with-x"):
        return any(k in headers and headers[k] == v for k, v in pairs)
    return all(k in headers and headers[k] == v for k, v in pairs)


class ConsistentHashExchange(Exchange):
    """``x-consistent-hash`` (RabbitMQ's plugin): each message to one destination, chosen by
    a hash of its routing key, a header or a property over buckets weighted by the binding
    keys; the rules and the ring are ``consistent_hash.py``'s."""

    kind: ClassVar[str] = "x-consistent-hash"
    routes_on_properties: ClassVar[bool] = True
    first_key_only = True

    def __init__(self, name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict | None = None) -> None:
        super().__init__(name, durable, auto_delete, internal, arguments)
        self._source = hash_source(self.arguments)  # (refuses bad arguments, as RabbitMQ on declare)
        self._ring = HashRing()

    def bind(self, destination: Any, routing_key: str, arguments: dict) -> bool:
        weight_of(routing_key)  # refused even when already bound, as RabbitMQ's validate_binding
        return super().bind(destination, routing_key, arguments)

    def route(self, routing_key: str, properties: dict | None) -> Collection[Any]:
        if self._source is None:
            return self._ring.route(routing_key.encode())
        return self._ring.route(hashed_value(self._source, properties))

    def _add(self, destination: Any, routing_key: str, arguments: dict) -> None:
        self._ring.add(destination, weight_of(routing_key))

    def _remove(self, destination: Any, routing_key: str, arguments: dict) -> None:
        self._ring.remove(destination)


class DelayedExchange(Exchange):
    """``x-delayed-message`` (RabbitMQ's delayed message plugin): an exchange of the type its
    ``x-delayed-type`` argument names (``inner``: its bindings, their checks and its
    routing), which routes a message with a due ``x-delay`` to its ``hold`` instead, to be
    routed when due (``delayed.py``)."""

    kind: ClassVar[str] = "x-delayed-message"
    routes_on_properties: ClassVar[bool] = True

    def __init__(self, name: str, durable: bool = False, auto_delete: bool = False,
                 internal: bool = False, arguments: dict | None = None) -> None:
        super().__init__(name, durable, auto_delete, internal, arguments)
        # (refused as the plugin's validate: the delayed type, then that type's own checks)
        self.inner = exchange_type(delayed_type(self.arguments))(self.name, arguments=self.arguments)
        self.bindings = self.inner.bindings
        self.first_key_only = self.inner.first_key_only
        self.hold = DelayedHold(self)
        self._held = (self.hold,)
        inner = self.inner
        self._reads = "headers" if type(inner) is HeadersExchange else "properties" if inner.routes_on_properties else ""

    def bind(self, destination: Any, routing_key: str, arguments: dict) -> bool:
        return self.inner.bind(destination, routing_key, arguments)

    def unbind(self, destination: Any, routing_key: str, arguments: dict) -> bool:
        return self.inner.unbind(destination, routing_key, arguments)

    def route(self, routing_key: str, properties: dict | None) -> Collection[Any]:
        headers = properties.get("headers") if properties else None
        if headers and X_DELAY in headers and delay_of(headers[X_DELAY]) is not None:
            return self._held
        reads = self._reads
        return self.inner.route(routing_key, headers if reads == "headers" else properties if reads else None)

    def info(self) -> dict[str, Any]:
        return {"messages_delayed": self.hold.ready}


EXCHANGE_TYPES: dict[str, type[Exchange]] = {
    cls.kind: cls for cls in (DirectExchange, FanoutExchange, TopicExchange, HeadersExchange,
                              ConsistentHashExchange, DelayedExchange)
}


def exchange_type(kind: str) -> type[Exchange]:
    """The class of the exchange type named ``kind``; an unknown one is refused (RabbitMQ
    4.x's channel error; 3.x closes the connection with 503)."""
    cls = EXCHANGE_TYPES.get(kind)
    if cls is None:
        raise ChannelError(errors.PRECONDITION_FAILED, f"unknown exchange type '{kind}'")
    return cls


def valid_match_mode(arguments: dict) -> bool:
    return arguments.get(X_MATCH, "all") in _MATCH_MODES
