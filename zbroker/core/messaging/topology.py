"""Exchanges, queues and the bindings between them; declaration rules; routing.

Rules of this module (RabbitMQ's, with its reply codes and texts):
- The default exchange ``''`` routes to the queue named by the routing key; it cannot
  be declared, deleted, bound or unbound (403). The ``amq.*`` exchanges exist from the
  start and cannot be deleted (403); no client may create a name with that prefix (403).
- A redeclaration must match the existing entity: type, durable, auto_delete, internal,
  and the queue arguments RabbitMQ compares (its type's ``EQUIVALENCE_ARGS``), else 406. Passive
  declaration only checks existence (404).
- An exclusive queue belongs to one connection: any other connection that declares,
  binds, consumes, gets, purges or deletes it gets 405.
- Deleting a queue removes its bindings; an auto-delete exchange goes with its last
  binding. Deleting what does not exist succeeds, as in RabbitMQ 3.10.
- A new queue beyond ``limits.max_queues`` is refused (406, ``limits.py``), or beyond
  the vhost's ``max-queues`` (``access_limits.py``).

- Durable exchanges and queues, and bindings whose both ends are durable, are the
  *durable topology*: every change to it bumps ``counts.durable_changes`` (one counter
  for every vhost) so the broker knows to save a new snapshot (``snapshot.py``). A durable, non-exclusive queue gets a
  journal from ``journal_for`` (its store id): its persistent messages are recorded; a
  queue that keeps its own log (a stream) gets that log from ``log_for`` instead. So
  does the hold of a durable ``x-delayed-message`` exchange (``delayed.py``), from the
  same store ids.

Nothing here knows about channels or frames: the broker calls in and turns the
``ChannelError``/``ConnectionError_`` raised here into close frames.
"""
from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Collection, Iterator

from zbroker import errors
from zbroker.core.messaging.arguments import CLASSIC, QueueSettings, amqp_type, queue_settings
from zbroker.core.messaging.delayed import DelayedHold
from zbroker.core.messaging.exchanges import (EXCHANGE_TYPES, DelayedExchange, Exchange, HeadersExchange,
                                              exchange_type, freeze)
from zbroker.core.durability.journal import QueueJournal
from zbroker.core.access.access_limits import reached
from zbroker.core.access.limits import Limits
from zbroker.core.access.users import Users
from zbroker.core.messaging.policies import PolicySet
from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.queue_types import QUEUE_TYPES, queue_type
from zbroker.core.messaging.session import Connection
from zbroker.core.messaging.stream_logs import EntryCodec, StreamLog
from zbroker.core.messaging.timers import Timers
from zbroker.errors import ChannelError, ConnectionError_

VHOST = "/"
RESERVED_PREFIX = "amq."
#: AMQP's short string limit, which names and routing keys must respect.
MAX_NAME_BYTES = 255
DEFAULT_EXCHANGES = {
    "amq.direct": "direct",
    "amq.fanout": "fanout",
    "amq.topic": "topic",
    "amq.headers": "headers",
    "amq.match": "headers",
}


def server_queue_name() -> str:
    """A fresh ``amq.gen-…`` name, shaped like RabbitMQ's."""
    return "amq.gen-" + base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


class DefaultExchange(Exchange):
    """``''``: every queue is reachable by its own name, with no binding stored."""

    kind: ClassVar[str] = "direct"

    def __init__(self, queues: dict[str, QueueType]) -> None:
        super().__init__("", durable=True)
        self._queues = queues

    def route(self, routing_key: str, headers: dict | None) -> Collection[Any]:
        queue = self._queues.get(routing_key)
        return (queue,) if queue is not None else ()


def _amqp_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _typed_value(value: Any) -> str:
    return f"the value '{value}' of type '{amqp_type(value)}'"


def header_routes(headers: dict) -> tuple[list[str], list[str]]:
    """RabbitMQ's sender-selected distribution: the ``CC`` and ``BCC`` headers (arrays of
    strings) add routing keys to a publish; ``BCC`` is removed before delivery. Another
    type is RabbitMQ's 406 ``invalid message: {unacceptable_type_in_header,"CC",longstr}``."""
    found: list[list[str]] = []
    for name in ("CC", "BCC"):
        value = headers.get(name)
        if value is None:
            found.append([])
        elif isinstance(value, list):
            found.append([key for key in value if isinstance(key, str)])
        else:
            raise ChannelError(errors.PRECONDITION_FAILED, f"invalid message: {{unacceptable_type_in_header,"
                               f"\"{name}\",{amqp_type(value)}}}")
    return found[0], found[1]


def check_name(name: str, what: str) -> None:
    if len(name.encode()) > MAX_NAME_BYTES:
        raise ConnectionError_(errors.SYNTAX_ERROR, f"{what} name longer than {MAX_NAME_BYTES} bytes")


def is_durable_binding(source: Exchange, destination: QueueType | Exchange) -> bool:
    return source.durable and destination.durable and not getattr(destination, "exclusive", False)


@dataclass
class Counts:
    """What the topologies of all vhosts share (``vhosts.py``): store ids (a durable
    queue's journal id is unique in the store), node-wide counts, and the delayed
    exchanges' holds by their earliest due message (``delayed.py``)."""
    next_queue_id: int = 1
    next_transient_id: int = -1
    queues: int = 0
    #: How many queues keep every message (``QueueType.keeps_every_message``: quorum
    #: queues): while 0, a transient publish needs no store look.
    keeping_queues: int = 0
    holds: Timers[DelayedHold] = field(default_factory=Timers)
    #: The stream logs in the storage, by store id: the broker syncs them each pass.
    logs: dict[int, StreamLog] = field(default_factory=dict)
    #: Those written to since the last commit (their streams add them): the ones the
    #: commit syncs, so a pass costs nothing per stream that was not written.
    written_logs: set[StreamLog] = field(default_factory=set)
    #: Changes to any vhost's durable topology, only ever counted up: one number the
    #: broker compares at each commit, however many vhosts there are.
    durable_changes: int = 0


class Topology:
    """One virtual host's exchanges, queues and bindings."""

    def __init__(self, name_source: Callable[[], str] = server_queue_name,
                 journal_for: Callable[[int], QueueJournal] | None = None,
                 limits: Limits | None = None, *, vhost: str = VHOST, counts: Counts | None = None,
                 users: Users | None = None,
                 log_for: Callable[[int, QueueSettings, bool], tuple[StreamLog, EntryCodec]] | None = None) -> None:
        self.vhost = vhost
        self.limits = limits or Limits()
        self.queues: dict[str, QueueType] = {}
        self.counts = counts or Counts()
        #: This vhost's policies and operator policies (``policies.py``).
        self.policies = PolicySet()
        #: How many delayed exchanges it has: while 0, no routing reaches a hold.
        self.delayed_exchanges = 0
        #: This vhost's runtime parameters, by (component, name) (``core/parameters.py``).
        self.parameters: dict[tuple[str, str], Any] = {}
        #: Who may log in (``users.py``), shared by every vhost; saved with the topology.
        self.users = users or Users()
        self._journal_for = journal_for
        #: The storage's log for a persisting queue that ``owns_log`` (a stream), by its
        #: store id, settings and whether it is recovered (else it starts empty); without
        #: it such a queue keeps its in-memory log.
        self._log_for = log_for
        self.default = DefaultExchange(self.queues)
        self.exchanges: dict[str, Exchange] = {"": self.default}
        for name, kind in DEFAULT_EXCHANGES.items():
            self.exchanges[name] = EXCHANGE_TYPES[kind](name, durable=True)
        self._name_source = name_source

    # -- policies ------------------------------------------------------------------

    def _settings(self, name: str, arguments: dict) -> QueueSettings:
        """A queue's settings: its arguments met with its effective policy, by its type's
        rules (``arguments.queue_settings``; an unknown type is refused there)."""
        named = arguments.get("x-queue-type", CLASSIC)
        kind = QUEUE_TYPES.get(named) if isinstance(named, str) else None
        if kind is None or not self.policies:
            return queue_settings(name, arguments, self.vhost)
        policy = self.policies.effective(kind.TYPE, name, kind.UNSUPPORTED_POLICIES)
        return queue_settings(name, arguments, self.vhost, policy, kind.POLICY_PRECEDENCE)

    def _policy_alternate(self, exchange: Exchange) -> None:
        """An exchange's ``alternate-exchange`` argument wins; without one, its policy's
        (RabbitMQ's ``rabbit_policy:get_arg``)."""
        argument = exchange.arguments.get("alternate-exchange")
        if isinstance(argument, str):
            exchange.alternate = argument
        else:
            exchange.alternate = self.policies.effective("exchange", exchange.name).get("alternate-exchange")

    def apply_policies(self) -> list[QueueType]:
        """The vhost's policies changed: every entity's effective settings again, at once.
        Returns the queues whose settings changed (the broker applies their limits)."""
        self.apply_exchange_policies()
        return [queue for queue in list(self.queues.values()) if self.reapply(queue)]

    def apply_exchange_policies(self) -> None:
        self.counts.durable_changes += 1
        for exchange in self.exchanges.values():
            if exchange.name:
                self._policy_alternate(exchange)

    def reapply(self, queue: QueueType) -> bool:
        """One queue's effective settings again; True if they changed."""
        settings = self._settings(queue.name, queue.arguments)
        if settings == queue.settings:
            return False
        queue.apply_settings(settings)
        return True

    def new_queue_name(self) -> str:
        """A fresh server-made queue name (``amq.gen-…``)."""
        return self._name_source()

    # -- lookups -------------------------------------------------------------------

    def exchange(self, name: str) -> Exchange:
        exchange = self.exchanges.get(name)
        if exchange is None:
            raise ChannelError(errors.NOT_FOUND, f"no exchange '{name}' in vhost '{self.vhost}'")
        return exchange

    def queue(self, name: str, conn: Connection | None) -> QueueType:
        """The queue, checked for existence (404) and exclusive ownership (405)."""
        queue = self.queues.get(name)
        if queue is None:
            raise ChannelError(errors.NOT_FOUND, f"no queue '{name}' in vhost '{self.vhost}'")
        self._check_owner(queue, conn)
        return queue

    def _check_owner(self, queue: QueueType, conn: Connection | None) -> None:
        if queue.exclusive_owner is not None and queue.exclusive_owner is not conn:
            raise ChannelError(
                errors.RESOURCE_LOCKED,
                f"cannot obtain exclusive access to locked queue '{queue.name}' in vhost "
                f"'{self.vhost}'. It could be originally declared on another connection or the "
                "exclusive property value does not match that of the original declaration.",
            )

    # -- exchanges -----------------------------------------------------------------

    def declare_exchange(self, name: str, kind: str, passive: bool, durable: bool,
                         auto_delete: bool, internal: bool, arguments: dict) -> Exchange:
        check_name(name, "exchange")
        if name == "":
            raise ChannelError(errors.ACCESS_REFUSED, "operation not permitted on the default exchange")
        if passive:
            return self.exchange(name)
        cls = exchange_type(kind)
        existing = self.exchanges.get(name)
        if existing is None:
            if name.startswith(RESERVED_PREFIX):
                raise ChannelError(errors.ACCESS_REFUSED,
                                   f"exchange name '{name}' contains reserved prefix '{RESERVED_PREFIX}*'")
            alternate = arguments.get("alternate-exchange")
            if alternate is not None and not isinstance(alternate, str):
                raise ChannelError(errors.PRECONDITION_FAILED,
                                   f"invalid arg 'alternate-exchange' for exchange '{name}' in vhost "
                                   f"'{self.vhost}': {{unacceptable_type,{amqp_type(alternate)}}}")
            exchange = cls(name, durable, auto_delete, internal, arguments)
            self._policy_alternate(exchange)
            self.add_exchange(exchange)
            return exchange
        for arg, have, want in (("type", existing.kind, kind), ("durable", existing.durable, durable),
                                ("auto_delete", existing.auto_delete, auto_delete),
                                ("internal", existing.internal, internal)):
            if have != want:
                raise ChannelError(
                    errors.PRECONDITION_FAILED,
                    f"inequivalent arg '{arg}' for exchange '{name}' in vhost '{self.vhost}': "
                    f"received '{_amqp_value(want)}' but current is '{_amqp_value(have)}'")
        return existing

    def add_exchange(self, exchange: Exchange, store_id: int | None = None) -> None:
        """Register a new exchange; a delayed one's hold joins the delays' heap and, for a
        durable exchange, gets its journal (``store_id`` on recovery)."""
        self.exchanges[exchange.name] = exchange
        self.counts.durable_changes += exchange.durable
        if isinstance(exchange, DelayedExchange):
            self.delayed_exchanges += 1
            hold = exchange.hold
            hold.topology = self
            hold.timers = self.counts.holds
            if exchange.durable and self._journal_for is not None:
                hold.journal = self._journal_for(self._store_id(store_id))

    def holds(self) -> Iterator[DelayedHold]:
        """The holds of this vhost's delayed exchanges."""
        return (e.hold for e in self.exchanges.values() if isinstance(e, DelayedExchange))

    def delete_exchange(self, name: str, if_unused: bool) -> None:
        if name == "":
            raise ChannelError(errors.ACCESS_REFUSED, "operation not permitted on the default exchange")
        if name.startswith(RESERVED_PREFIX) and name in DEFAULT_EXCHANGES:
            raise ChannelError(errors.ACCESS_REFUSED,
                               f"deletion of system exchange '{name}' in vhost '{self.vhost}' not allowed")
        exchange = self.exchanges.get(name)
        if exchange is None:
            return
        if if_unused and exchange.bindings:
            raise ChannelError(errors.PRECONDITION_FAILED, f"exchange '{name}' in vhost '{self.vhost}' in use")
        self._drop_exchange(exchange)

    def _drop_exchange(self, exchange: Exchange) -> None:
        del self.exchanges[exchange.name]
        self.counts.durable_changes += exchange.durable
        for dest, key, frozen in list(exchange.bindings):
            dest.sources.discard((exchange, key, frozen))
        exchange.bindings.clear()
        exchange.exchange_destinations = 0
        for source, key, frozen in list(exchange.sources):
            self._unbind(source, exchange, key, source.bindings.get((exchange, key, frozen), {}))
        if isinstance(exchange, DelayedExchange):  # what it holds goes with it
            self.delayed_exchanges -= 1
            hold = exchange.hold
            hold.deleted = True
            if hold.journal is not None:
                hold.journal.drop(hold.stored())
            hold.clear()

    # -- queues --------------------------------------------------------------------

    def declare_queue(self, name: str, passive: bool, durable: bool, exclusive: bool,
                      auto_delete: bool, arguments: dict, conn: Connection | None,
                      server_named: bool = False) -> QueueType:
        """``server_named``: ``name`` came from ``new_queue_name`` (the client sent '')."""
        check_name(name, "queue")
        if passive:
            return self.queue(name, conn)
        if name == "":
            name, server_named = self.new_queue_name(), True
        if name.startswith(RESERVED_PREFIX) and name not in self.queues and not server_named:
            raise ChannelError(errors.ACCESS_REFUSED,
                               f"queue name '{name}' contains reserved prefix '{RESERVED_PREFIX}*'")
        existing = self.queues.get(name)
        if existing is not None:
            self._check_owner(existing, conn)
            if existing.exclusive != exclusive:
                self._check_owner(existing, None if exclusive else conn)
                # Same owner but the flag differs: RabbitMQ answers 405 too.
                raise ChannelError(errors.RESOURCE_LOCKED, f"cannot obtain exclusive access to locked "
                                   f"queue '{name}' in vhost '{self.vhost}'. It could be originally declared on "
                                   "another connection or the exclusive property value does not match "
                                   "that of the original declaration.")
            self._check_queue_equivalent(existing, durable, auto_delete, arguments)
            return existing
        settings = self._settings(name, arguments)
        kind = queue_type(settings.queue_type)
        kind.check_declare(name, self.vhost, durable, exclusive, auto_delete, settings)
        vhost_limit = reached(self.users.limits.vhosts.get(self.vhost), "max-queues", len(self.queues))
        if vhost_limit is not None:
            raise ChannelError(errors.PRECONDITION_FAILED, f"cannot declare queue '{name}': queue limit in vhost "
                                                           f"'{self.vhost}' ({vhost_limit}) is reached")
        limit = self.limits.max_queues
        if self.limits.reached(limit, self.counts.queues):
            text = f"cannot declare queue '{name}': queue limit in cluster ({limit}) is reached"
            self.limits.report("queues", f"queue limit in cluster ({limit}) is reached")
            raise ChannelError(errors.PRECONDITION_FAILED, text)
        self.limits.clear("queues")
        queue = kind(name, durable, conn if exclusive else None, auto_delete, arguments, settings)
        self.add_queue(queue)
        if exclusive and conn is not None:  # (management declares none exclusive)
            conn.exclusive_queues.append(queue)
        return queue

    def add_queue(self, queue: QueueType, store_id: int | None = None) -> None:
        """Register a new queue; a durable one gets its journal (``store_id`` on recovery)."""
        self.queues[queue.name] = queue
        queue.topology = self
        counts = self.counts
        counts.queues += 1
        counts.keeping_queues += queue.keeps_every_message
        if queue.persists:
            recovered = store_id is not None
            store_id = self._store_id(store_id)
            if queue.owns_log:  # (a stream: its own log, no journal)
                if self._log_for is not None:
                    log, codec = self._log_for(store_id, queue.settings, recovered)
                    queue.attach_log(log, codec)
                    queue.store_id = store_id
                    counts.logs[store_id] = log
            elif self._journal_for is not None:
                queue.journal = self._journal_for(store_id)
                queue.pages = queue.journal.store.pages
                queue.store_id = store_id
            self.counts.durable_changes += 1
        elif self._journal_for is not None and not queue.owns_log:
            # A transient queue pages too, when the store can: its backlog is bounded by
            # disk, not memory. Its records are transient (never recovered) and its ids
            # negative, so they never meet a durable queue's.
            journal = self._journal_for(counts.next_transient_id)
            if journal.store.pages:
                counts.next_transient_id -= 1
                queue.journal = journal
                queue.pages = True

    def _store_id(self, store_id: int | None) -> int:
        """A journal's id in the store: ``store_id`` (recovered) or the next free one."""
        counts = self.counts
        if store_id is None:
            store_id = counts.next_queue_id
        counts.next_queue_id = max(counts.next_queue_id, store_id + 1)
        return store_id

    def _check_queue_equivalent(self, queue: QueueType, durable: bool, auto_delete: bool, arguments: dict) -> None:
        where = f"for queue '{queue.name}' in vhost '{self.vhost}'"
        for flag, has, wants in (("durable", queue.durable, durable),
                                 ("auto_delete", queue.auto_delete, auto_delete)):
            if has != wants:
                raise ChannelError(errors.PRECONDITION_FAILED,
                                   f"inequivalent arg '{flag}' {where}: received '{_amqp_value(wants)}' "
                                   f"but current is '{_amqp_value(has)}'")
        for arg in queue.EQUIVALENCE_ARGS:
            have, want = queue.arguments.get(arg), arguments.get(arg)
            if have == want:
                continue
            received = _typed_value(want) if want is not None else "none"
            current = _typed_value(have) if have is not None else "none"
            if have is not None and want is not None:
                received, current = f"'{_amqp_value(want)}'", f"'{_amqp_value(have)}'"
            raise ChannelError(errors.PRECONDITION_FAILED,
                               f"inequivalent arg '{arg}' {where}: received {received} but current is {current}")

    def delete_queue(self, queue: QueueType) -> int:
        """Remove the queue and its bindings; the caller cancels its consumers."""
        count = queue.message_count
        if self.queues.pop(queue.name, None) is not None:
            self.counts.queues -= 1
            self.counts.keeping_queues -= queue.keeps_every_message
        queue.deleted = True
        if queue.journal is not None:
            queue.journal.drop(queue.stored())
        if queue.store_id is not None:
            stream_log = self.counts.logs.pop(queue.store_id, None)
            if stream_log is not None:
                self.counts.written_logs.discard(stream_log)  # (deleted with its queue: nothing to sync)
            self.counts.durable_changes += queue.persists
        for source, key, frozen in list(queue.sources):
            self._unbind(source, queue, key, source.bindings.get((queue, key, frozen), {}))
        queue.clear()
        owner = queue.exclusive_owner
        if owner is not None and queue in owner.exclusive_queues:
            owner.exclusive_queues.remove(queue)
        return count

    # -- bindings ------------------------------------------------------------------

    def bind(self, destination: QueueType | Exchange, source_name: str, routing_key: str,
             arguments: dict) -> None:
        source = self._bindable_source(source_name)
        if source.bind(destination, routing_key, arguments):
            destination.sources.add((source, routing_key, freeze(arguments)))
            self.counts.durable_changes += is_durable_binding(source, destination)
            if isinstance(destination, Exchange):
                source.exchange_destinations += 1

    def bind_names(self, destination_name: str, to_queue: bool, source_name: str, routing_key: str,
                   arguments: dict, conn: Connection | None) -> None:
        """A client's bind: the source is looked up first, so with both missing the 404
        names the exchange, as RabbitMQ's; then the destination (404, or 405 for another
        connection's exclusive queue)."""
        self._bindable_source(source_name)
        destination = self.queue(destination_name, conn) if to_queue else self.exchange(destination_name)
        self.bind(destination, source_name, routing_key, arguments)

    def unbind(self, destination_name: str, to_queue: bool, source_name: str, routing_key: str,
               arguments: dict, conn: Connection | None) -> None:
        """Remove a binding. Idempotent, as RabbitMQ's (and as deleting is): a source,
        destination or binding that does not exist is not an error, so a client may unbind
        what an auto-delete already took. Refused: the default exchange at either end (403),
        and a binding of another connection's exclusive queue (405), checked only when the
        binding exists, in RabbitMQ's order."""
        if source_name == "" or (not to_queue and destination_name == ""):
            raise ChannelError(errors.ACCESS_REFUSED, "operation not permitted on the default exchange")
        source = self.exchanges.get(source_name)
        destination = (self.queues if to_queue else self.exchanges).get(destination_name)
        if source is None or destination is None:
            return
        if (source, routing_key, freeze(arguments)) not in destination.sources:
            return
        if isinstance(destination, QueueType):
            self._check_owner(destination, conn)
        self._unbind(source, destination, routing_key, arguments)

    def _bindable_source(self, name: str) -> Exchange:
        if name == "":
            raise ChannelError(errors.ACCESS_REFUSED, "operation not permitted on the default exchange")
        return self.exchange(name)

    def _unbind(self, source: Exchange, destination: QueueType | Exchange, routing_key: str,
                arguments: dict) -> None:
        if not source.unbind(destination, routing_key, arguments):
            return
        destination.sources.discard((source, routing_key, freeze(arguments)))
        self.counts.durable_changes += is_durable_binding(source, destination)
        if isinstance(destination, Exchange):
            source.exchange_destinations -= 1
        if source.auto_delete and not source.bindings and source.name in self.exchanges:
            self._drop_exchange(source)

    # -- routing -------------------------------------------------------------------

    def route_keys(self, exchange: Exchange, routing_keys: list[str], properties: dict) -> list[QueueType]:
        """The queues a message with several routing keys (CC/BCC) reaches, each once."""
        if exchange.first_key_only:
            return list(self.route(exchange, routing_keys[0], properties))
        found: dict[int, QueueType] = {}
        for key in routing_keys:
            for queue in self.route(exchange, key, properties):
                found.setdefault(id(queue), queue)
        return list(found.values())

    def route(self, exchange: Exchange, routing_key: str, properties: dict) -> Collection[QueueType]:
        """The queues a message reaches; where an exchange routes it nowhere and has an
        ``alternate-exchange``, the alternate's (and so on, each exchange once)."""
        if not exchange.exchange_destinations:  # (``_route``'s common case, in line: once per publish)
            queues = exchange.route(routing_key, properties.get("headers") if type(exchange) is HeadersExchange
                                    else properties if exchange.routes_on_properties else None)
        else:
            queues = self._route(exchange, routing_key, properties)
        if queues or exchange.alternate is None:
            return queues
        tried = {exchange.name}
        while not queues and exchange.alternate is not None and exchange.alternate not in tried:
            tried.add(exchange.alternate)
            alternate = self.exchanges.get(exchange.alternate)
            if alternate is None:
                break  # RabbitMQ treats a missing alternate as unroutable
            exchange = alternate
            queues = self._route(exchange, routing_key, properties)
        return queues

    def _route(self, exchange: Exchange, routing_key: str, properties: dict) -> Collection[QueueType]:
        """The queues a message reaches, following exchange-to-exchange bindings once each."""
        if not exchange.exchange_destinations:  # the common case: queues only, no walk
            return exchange.route(routing_key, properties.get("headers") if type(exchange) is HeadersExchange
                                  else properties if exchange.routes_on_properties else None)
        out: list[QueueType] = []
        seen: set[int] = set()
        pending: list[Exchange] = [exchange]
        while pending:
            ex = pending.pop()
            if id(ex) in seen:
                continue
            seen.add(id(ex))
            headers = (properties.get("headers") if type(ex) is HeadersExchange
                       else properties if ex.routes_on_properties else None)
            for dest in ex.route(routing_key, headers):
                if not isinstance(dest, Exchange):  # a queue
                    if id(dest) not in seen:
                        seen.add(id(dest))
                        out.append(dest)
                else:
                    pending.append(dest)
        return out
