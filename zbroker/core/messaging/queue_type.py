"""The queue-type interface: what the broker may ask of any queue, whatever its type
(RabbitMQ's ``rabbit_queue_type`` is the model).

Rules of this module:
1. The broker never asks which type a queue is; it calls this interface. A type is a
   subclass (``classic.py``, ``quorum.py``, ``stream.py``) registered in
   ``queue_types.py`` under its ``x-queue-type`` name.
2. The interface, by stage of a queue's life:
   - declare: the arguments are validated against the one table of what each argument
     is for (``arguments.queue_settings``: 406 with RabbitMQ's text, naming ``MODULE``),
     then ``check_declare`` (the type's rules on durable / exclusive / auto-delete) and
     the constructor; ``apply_settings`` takes settings changed at run time (policies);
   - in: ``would_overflow``, ``enqueue``, ``append_recovered`` (recovery after a
     restart), ``requeue`` (returns what the type will not take back);
   - out: ``dispatch`` (deliver under the consumers' credit), ``take`` (the next
     message, for a get or a delivery), ``settled``, ``expire``, ``over_limit``;
   - consumers: ``add_consumer`` (the type may refuse the consumer, before anything
     else knows of it) / ``remove_consumer``; the choice of the next consumer is
     ``consumer_choice.py``'s, shared by every type;
   - refusals: ``check_get`` (basic.get), ``check_return`` (nack, reject) and
     ``check_recover`` (basic.recover; ``check_return`` unless the type says otherwise)
     raise where the type has no such operation (a stream: RabbitMQ's 540, 541 for a
     recover);
   - going: ``purge``, ``clear``, ``stored`` (what the store must drop with it);
   - the store's compaction: ``resident``, ``paged``, ``relocate``;
   - statistics: ``message_count``, ``resident_count``, ``paged_count`` and the plain
     counters (``incoming``, ``delivered``, ``got``, ``redelivered``, ``acked``...).
3. What every queue is, whatever its type, lives here: its name and declaration, its
   consumers, its place in its vhost's topology and the broker's timers, its counters.
   How it holds messages is the type's.
4. Class facts the broker reads instead of asking the type: ``keeps_every_message`` (the
   store keeps a copy of every message, persistent or not: quorum), ``counts_returns``
   (a message returned unsettled is counted: ``x-delivery-count``, ``x-delivery-limit``),
   ``owns_log`` (its messages are in a log of its own, not the message store: a stream;
   it gets no journal, and a persisting one is handed its log with ``attach_log``),
   ``server_named`` (it may be declared with an empty name), and RabbitMQ's answers that
   are the type's (all True but for a stream, whose ``rabbit_stream_queue`` differs):
   ``exclusive_consumers`` (basic.consume's exclusive flag is honoured; a stream accepts
   and ignores it), ``counts_consumers`` (declare-ok's consumer_count and a management
   consumer row's ``active`` are the consumers'; a stream's ``stat/1`` says 0 and its
   consumers show ``active: false``), ``delete_checks`` (queue.delete honours if-unused
   and if-empty and its delete-ok counts the ready messages; a stream's ignores both and
   says 0).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Hashable, Iterable, Iterator

from zbroker import errors
from zbroker.core.messaging.arguments import QueueSettings
from zbroker.core.messaging.consumer_choice import ConsumerChoice
from zbroker.core.messaging.timers import NEVER
from zbroker.errors import ChannelError

if TYPE_CHECKING:
    from zbroker.core.durability.journal import QueueJournal
    from zbroker.core.messaging.consumers import Consumer, Unacked
    from zbroker.core.messaging.exchanges import Exchange
    from zbroker.core.messaging.message import Message
    from zbroker.core.messaging.session import Connection


def require_durable_shared(name: str, vhost: str, durable: bool, exclusive: bool, auto_delete: bool) -> None:
    """A quorum queue's and a stream's rule: durable, not exclusive, not auto-delete (406
    "invalid property ...", checked in ``rabbit_queue_type_util``'s order)."""
    for bad, prop in ((auto_delete, "auto-delete"), (exclusive, "exclusive-owner"), (not durable, "non-durable")):
        if bad:
            raise ChannelError(errors.PRECONDITION_FAILED,
                               f"invalid property '{prop}' for queue '{name}' in vhost '{vhost}'")


class QueueType(ABC):
    #: The ``x-queue-type`` name, and RabbitMQ's module for it (error texts name it).
    TYPE: ClassVar[str]
    MODULE: ClassVar[str]
    keeps_every_message: ClassVar[bool] = False
    counts_returns: ClassVar[bool] = False
    owns_log: ClassVar[bool] = False
    #: A client may declare one with an empty name (RabbitMQ's ``server_named`` capability).
    server_named: ClassVar[bool] = True
    #: RabbitMQ's answers that are the type's (rule 4).
    exclusive_consumers: ClassVar[bool] = True
    counts_consumers: ClassVar[bool] = True
    delete_checks: ClassVar[bool] = True
    #: Policy keys the type does not take: a policy with any of them does not apply to
    #: its queues (RabbitMQ's ``unsupported_policies`` capability).
    UNSUPPORTED_POLICIES: ClassVar[frozenset[str]] = frozenset()
    #: How each policy key meets the queue's own x-argument (``arguments.POLICY_SETTINGS``).
    POLICY_PRECEDENCE: ClassVar[dict[str, str]] = {}
    #: The arguments whose values must agree when the queue is declared again (RabbitMQ's
    #: list; others are not compared); what they may be is ``arguments.py``'s business.
    EQUIVALENCE_ARGS: ClassVar[tuple[str, ...]] = (
        "x-queue-type", "x-message-ttl", "x-expires", "x-max-length", "x-max-length-bytes",
        "x-dead-letter-exchange", "x-dead-letter-routing-key", "x-max-priority", "x-overflow",
        "x-queue-mode", "x-single-active-consumer")

    def __init__(self, name: str, durable: bool = False, exclusive_owner: "Connection | None" = None,
                 auto_delete: bool = False, arguments: dict | None = None,
                 settings: QueueSettings | None = None) -> None:
        self.name = name
        self.durable = durable
        self.exclusive_owner = exclusive_owner
        self.auto_delete = auto_delete
        self.arguments = arguments or {}
        self.settings = settings or QueueSettings(queue_type=self.TYPE)
        self.choice = ConsumerChoice(self.settings.single_active_consumer)
        #: The consumers in priority order (the choice's own list).
        self.consumers: list[Consumer] = self.choice.consumers
        self.ready = 0
        self.ready_bytes = 0
        self.unacked = 0
        self.deleted = False
        #: The vhost's topology that holds it (set by ``Topology.add_queue``).
        self.topology: Any = None
        #: When the queue was last used (x-expires counts from here).
        self.last_used = 0.0
        #: The earliest deadline the broker's timers hold for this queue.
        self.scheduled_at = NEVER
        #: Bindings that route into this queue: (source exchange, key, frozen args).
        self.sources: set[tuple[Exchange, str, Hashable]] = set()
        #: Set for a durable queue: where its persistent messages' moves are recorded.
        self.journal: QueueJournal | None = None
        #: Its id in the storage (journal, stream log) while it persists there; the
        #: snapshot saves the queues that have one.
        self.store_id: int | None = None
        self.pages = False  # set with a journal whose store can page
        #: Counters (``stats.py`` reads them): messages enqueued per exchange they came
        #: through, deliveries to consumers, gets, redeliveries, acks. They only grow.
        self.incoming: dict[str, int] = {}
        self.delivered = self.delivered_no_ack = self.got = self.got_no_ack = 0
        self.redelivered = self.acked = 0
        self._derive()

    # -- declare -------------------------------------------------------------------------

    @classmethod
    def check_declare(cls, name: str, vhost: str, durable: bool, exclusive: bool, auto_delete: bool,
                      settings: QueueSettings) -> None:
        """The type's rules on a new queue's properties and settings (406 with RabbitMQ's text)."""

    def attach_log(self, log: Any, codec: Any) -> None:
        """An ``owns_log`` type's log from the storage (``Topology.add_queue``)."""
        raise TypeError(f"a {self.TYPE} queue keeps no log of its own")

    def apply_settings(self, settings: QueueSettings) -> None:
        """Settings changed at run time (a policy): from now on they apply. The broker
        then applies limits and expiry to what the queue holds (``Delivery.after_enqueue``)."""
        if settings.max_priority != self.settings.max_priority:
            raise ValueError("x-max-priority cannot change on a running queue")
        self.settings = settings
        self.choice.single_active = settings.single_active_consumer
        self._derive()

    def _derive(self) -> None:
        """Facts computed from the settings once, read per message."""
        s = self.settings
        #: Limits or a TTL: the broker looks again after each enqueue.
        self.careful = s.message_ttl is not None or s.limited
        #: reject-publish(-dlx): a full queue refuses newcomers.
        self.rejects = s.limited and s.overflow != "drop-head"

    # -- facts ---------------------------------------------------------------------------

    @property
    def exclusive(self) -> bool:
        return self.exclusive_owner is not None

    @property
    def persists(self) -> bool:
        """Survives a restart: durable and not exclusive (RabbitMQ drops exclusive ones)."""
        return self.durable and self.exclusive_owner is None

    @property
    def message_count(self) -> int:
        return self.ready

    @property
    def has_messages(self) -> bool:
        return self.ready > 0

    @property
    def unused_auto_delete(self) -> bool:
        """An auto-delete queue goes when its last consumer does (never before its first)."""
        return self.auto_delete and self.choice.had_consumer and not self.consumers

    @property
    def had_consumer(self) -> bool:
        return self.choice.had_consumer

    def unused_since(self, now: float) -> bool:
        """True if x-expires says the queue is due for deletion at ``now``."""
        expires = self.settings.expires
        return (expires is not None and not self.consumers
                and now >= self.last_used + expires / 1000.0)

    def would_overflow(self, message: "Message") -> bool:
        """reject-publish(-dlx): accepting ``message`` would pass a limit."""
        s = self.settings
        return s.overflow != "drop-head" and (
            (s.max_length is not None and self.ready >= s.max_length)
            or (s.max_length_bytes is not None and self.ready_bytes + message.size > s.max_length_bytes))

    # -- consumers -----------------------------------------------------------------------

    @property
    def active(self) -> "Consumer | None":
        """The single active consumer, if that is on and there is one."""
        return self.choice.active

    @property
    def has_exclusive_consumer(self) -> bool:
        return self.choice.has_exclusive

    def add_consumer(self, consumer: "Consumer", now: float) -> None:
        """A new consumer; the type may refuse it first (raise, with RabbitMQ's text)."""
        self.choice.add(consumer)

    def remove_consumer(self, consumer: "Consumer") -> None:
        self.choice.remove(consumer)

    def dispatch(self, limit: int) -> bool:
        """Deliver up to ``limit`` messages to consumers with credit; True if it stopped
        at the limit with more to do (the broker goes on next loop pass)."""
        choose = self.choice.next
        while self.consumers and self.ready:
            if limit <= 0:
                return True
            consumer = choose()
            if consumer is None:
                return False
            consumer.channel.deliver(consumer, self, self.take(consumer.auto_ack))
            limit -= 1
        return False

    def check_get(self) -> None:
        """basic.get: raise if the type has none."""

    def check_return(self) -> None:
        """A consumer gives deliveries back (nack, reject, recover): raise if the type
        takes none back. A channel or connection that goes is not asked."""

    def check_recover(self) -> None:
        """basic.recover would give this queue's deliveries back: raise if it cannot."""
        self.check_return()

    # -- what each type does its own way -------------------------------------------------

    @property
    @abstractmethod
    def resident_count(self) -> int:
        """Ready messages held in memory (RabbitMQ's messages_ram)."""

    # A type with no paging and no deadlines (a stream, a delayed exchange's hold) keeps
    # these four defaults; the classic queue overrides them.

    @property
    def segments(self) -> int | None:
        """The log segments a stream's messages are in (``None``: this type keeps no log)."""
        return None
    #: Its deliveries out count as messages_unacknowledged in RabbitMQ's totals (a
    #: stream's do not: RabbitMQ reports 0 for it).
    reports_unacked: ClassVar[bool] = True
    #: Whether ``track_ack`` is to be told of each ack (a stream's named consumers).
    tracks_acks: ClassVar[bool] = False

    def track_ack(self, entry: "Unacked") -> None:
        """A delivery of this queue was acked (asked only where ``tracks_acks``)."""

    @property
    def paged_count(self) -> int:
        """Ready messages held only as store records (RabbitMQ's messages_paged_out): on
        disk, or with ``--in-memory`` packed in the in-memory store's byte arrays."""
        return 0

    @property
    def timed(self) -> bool:
        """Something here has a deadline (a message expiry, x-expires)."""
        return False

    def next_deadline(self) -> float:
        """The earliest time something may be due here; ``NEVER`` if none."""
        return NEVER

    def due(self, now: float) -> bool:
        """Some ready message is past its expiry at ``now``."""
        return False

    @abstractmethod
    def enqueue(self, message: "Message") -> None:
        """Take a newly published message."""

    @abstractmethod
    def append_recovered(self, message: "Message | None", seq: int, location: int, size: int,
                         priority: int, expires: float | None) -> None:
        """A message recovered from the store, in order (None: left in the store)."""

    @abstractmethod
    def requeue(self, messages: Iterable["Message"]) -> list["Message"]:
        """Take back deliveries returned unsettled; returns those it will not keep."""

    @abstractmethod
    def take(self, settled: bool) -> "Message":
        """The next message, leaving for a consumer (``settled``: it needs no ack)."""

    def settled(self, count: int = 1) -> None:
        """Deliveries taken unsettled were acked, rejected or lost for good."""
        self.unacked -= count

    @abstractmethod
    def expire(self, now: float) -> list["Message"]:
        """Take out every ready message whose time has come; returns them."""

    @abstractmethod
    def over_limit(self) -> list["Message"]:
        """drop-head: take messages from the front until within the limits; returns them."""

    @abstractmethod
    def purge(self) -> int:
        """Remove every ready message (from the store too); returns how many."""

    @abstractmethod
    def clear(self) -> None:
        """Forget every ready message (the store is the caller's)."""

    @abstractmethod
    def stored(self) -> Iterator[tuple[int, int]]:
        """(seq, location) of every ready message held that is in the store."""

    @abstractmethod
    def resident(self) -> Iterator["Message"]:
        """The ready messages held in memory (the store compacts around them)."""

    @abstractmethod
    def paged(self) -> Iterator[tuple[int, int]]:
        """(seq, location) of the ready messages held in the store only."""

    @abstractmethod
    def relocate(self, moved: dict[int, int]) -> None:
        """The store compacted: paged messages' locations moved (seq -> new location)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} ready={self.ready} consumers={len(self.consumers)}>"

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: Any) -> bool:
        return self is other
