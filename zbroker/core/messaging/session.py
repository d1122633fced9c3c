"""Connections and channels as the core sees them, and the outbox their events go to.

A ``Connection`` is one client connection, whatever wire it came over; ``conn_id`` is
the wire's opaque name for it (the zbroker wire uses the ZeroMQ routing id). Its
``Channel``s hold the per-channel facts: prefetch, the unacked deliveries keyed by
delivery tag, consumers, confirm and transaction mode. Events for a connection are the
methods' named tuples (``zbroker/methods.py``: ``BasicDeliver(channel, ...)``), each
followed by its body when it has one, appended to the shared ``Outbox``; the server
hands each connection's events to its own wire, which encodes them its own way.
"""
from __future__ import annotations

from itertools import takewhile
from typing import TYPE_CHECKING, Any, Hashable

from zbroker import errors
from zbroker.credit import DELIVERY_COST
from zbroker.core.messaging.consumers import Consumer, Unacked
from zbroker.core.messaging.message import Message
from zbroker.core.messaging.timers import NEVER
from zbroker.errors import ChannelError
from zbroker.methods import BasicDeliver, StreamDeliver  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from zbroker.core.messaging.queue_type import QueueType

_DELIVER = BasicDeliver.METHOD
_STREAM_DELIVER = StreamDeliver.METHOD
_new = tuple.__new__  # (a named event without the checking constructor: once per delivery)


class Outbox:
    """Events waiting to leave, per connection, in order."""

    def __init__(self) -> None:
        self.pending: dict[Hashable, list[Any]] = {}

    def put(self, conn_id: Hashable, event: tuple, body: Any = None) -> None:
        parts = self.pending.get(conn_id)
        if parts is None:
            parts = self.pending[conn_id] = []
        parts.append(event)
        if body is not None:
            parts.append(body)

    def take(self) -> dict[Hashable, list[Any]]:
        pending, self.pending = self.pending, {}
        return pending


class Connection:
    def __init__(self, conn_id: Hashable, outbox: Outbox, heartbeat: int, virtual_host: str,
                 client_properties: dict) -> None:
        self.conn_id = conn_id
        self.outbox = outbox
        self.heartbeat = heartbeat
        self.virtual_host = virtual_host
        self.client_properties = client_properties
        self.channels: dict[int, Channel] = {}
        #: Channels the broker closed and whose CHANNEL_CLOSE_OK has not come yet:
        #: frames on them are discarded, as AMQP requires.
        self.closing_channels: set[int] = set()
        self.exclusive_queues: list[QueueType] = []
        #: No deliveries while set: the peer's pipe is full (``pipe_full``, set by the
        #: wire) or it holds a full delivery window unread (``unread >= unread_limit``).
        self.blocked = False
        self.pipe_full = False
        #: Delivery bytes (``zbroker/credit.py``) sent and not yet reported read by
        #: the peer; 0 as limit: the wire keeps no window (it bounds the peer otherwise).
        self.unread = 0
        self.unread_limit = 0
        #: Publishing (``alarms.py``): it has published; it is held by an alarm.
        self.has_published = False
        self.publish_blocked = False
        #: For management (``stats.py``): when it opened (``now``), where it comes from,
        #: and its wire's name for its protocol.
        self.connected_at = 0.0
        self.user = "guest"
        #: (user, vhost): where the broker looks its permissions up (``permissions.py``).
        self.access_key = ("guest", virtual_host)
        #: May publish with another user's ``user_id``: RabbitMQ's ``impersonator`` tag,
        #: and the broker's own connections (its internal user, as RabbitMQ's dummy backend).
        self.impersonator = False
        #: Its vhost's exchanges and queues (``topology.py``), set when it opens.
        self.topology: Any = None
        self.peer: str | None = None  # the peer's host
        self.peer_port: int | None = None  # when the wire knows it (AMQP's TCP does)
        self.frame_max = 0  # the negotiated frame size, where the wire has one
        self.auth_mechanism = "PLAIN"
        self.ssl = False  # the wire's transport is TLS
        self.listener = ""  # the address it connected to, when the wire knows it
        self.protocol = "zbroker"
        #: Its wire carries a stream consumer's deliveries as entries in batches
        #: (the zbroker wire's STREAM_DELIVER, which its client asks for at HELLO).
        self.stream_batches = False
        #: What its channels read ``now`` and the consumer-timeout heap from (the broker).
        self.clock: Any = None

    @property
    def name(self) -> str:
        conn_id = self.conn_id
        return conn_id.hex()[:12] if isinstance(conn_id, bytes) else str(conn_id)

    def send(self, event: tuple, body: Any = None) -> None:
        self.outbox.put(self.conn_id, event, body)

    def update_blocked(self) -> bool:
        """Recompute ``blocked``; returns True when deliveries may resume."""
        was = self.blocked
        self.blocked = self.pipe_full or bool(self.unread_limit and self.unread >= self.unread_limit)
        return was and not self.blocked


class Channel:
    def __init__(self, number: int, connection: Connection) -> None:
        self.number = number
        self.connection = connection
        self.prefetch_count = 0  # for consumers created from now on
        self.global_prefetch = 0  # shared by all consumers of the channel
        self.consumer_unacked = 0  # unacked deliveries that hold consumer credit
        self.unacked: dict[int, Unacked] = {}
        self.next_tag = 1
        self.consumers: dict[str, Consumer] = {}
        self.confirm = False
        self.publish_seq = 0
        self.confirmed_seq = 0  # publishes up to here are answered (confirms.py)
        #: In transaction mode (tx_select): the publishes and settlements held for
        #: the commit (``transactions.py``); None outside a transaction.
        self.tx: list[Any] | None = None
        #: Direct reply-to: (consumer tag, reply queue name) once it consumes amq.rabbitmq.reply-to.
        self.reply_to: tuple[str, str] | None = None
        #: Counters (``stats.py`` reads them; ``CHANNEL_COUNTERS`` names them).
        self.published = self.confirmed = self.returned = self.dropped = 0
        self.delivered = self.delivered_no_ack = self.got = self.got_no_ack = 0
        self.got_empty = self.redelivered = self.acked = 0
        #: The consumer timeout (``consumer_timeout.py``): the broker (its ``now`` and its
        #: ``ack_timers``), this channel's entry in that heap, and whether it is gone.
        self.clock: Any = connection.clock
        self.scheduled_at = NEVER
        self.deleted = False
        #: Set while a command sent with no-wait is applied: its ``-ok`` is not sent.
        self.nowait = False

    def send(self, event: tuple, body: Any = None) -> None:
        self.connection.outbox.put(self.connection.conn_id, event, body)

    def reply(self, event: tuple) -> None:
        """Send a command's ``-ok``, unless the client asked for none (``nowait``)."""
        if not self.nowait:
            self.connection.outbox.put(self.connection.conn_id, event)

    def take_tag(self) -> int:
        tag = self.next_tag
        self.next_tag = tag + 1
        return tag

    def deliver(self, consumer: Consumer, queue: "QueueType", message: "Message") -> None:
        tag = self.next_tag
        self.next_tag = tag + 1
        if not consumer.auto_ack:
            clock = self.clock
            self.unacked[tag] = Unacked(queue, message, consumer, tag, clock.now)
            if consumer.timeout and self.scheduled_at == NEVER:
                clock.ack_timers.at(self, clock.now + consumer.timeout / 1000)
            consumer.unacked += 1
            self.consumer_unacked += 1
            self.delivered += 1
            queue.delivered += 1
        else:
            self.delivered_no_ack += 1
            queue.delivered_no_ack += 1
        if message.redelivered:
            self.redelivered += 1
            queue.redelivered += 1
        conn = self.connection
        if conn.unread_limit:
            conn.unread += message.size + DELIVERY_COST  # size is len(body)
            if conn.unread >= conn.unread_limit:
                conn.blocked = True
        pending = conn.outbox.pending  # (``Outbox.put``, in line: once per delivery)
        parts = pending.get(conn.conn_id)
        if parts is None:
            parts = pending[conn.conn_id] = []
        parts.append(_new(BasicDeliver, (_DELIVER, self.number, consumer.tag, tag, message.redelivered,
                                         message.exchange, message.routing_key, message.properties)))
        parts.append(message.body)

    def deliver_entries(self, consumer: Consumer, queue: "QueueType", entries: list[tuple[int, bytes, Any]]) -> None:
        """A stream's entries ``(offset, entry, filter value)`` to a consumer whose
        connection has ``stream_batches``: one STREAM_DELIVER event
        (``zbroker/protocol/stream_entries.py``), each entry a delivery awaiting its ack
        as ``deliver`` makes one (a stream's consumers ack manually)."""
        first = self.next_tag
        count = len(entries)
        self.next_tag = first + count
        clock = self.clock
        now = clock.now
        unacked = self.unacked
        offsets = [offset for offset, _, _ in entries]
        sizes = [len(entry) for _, entry, _ in entries]
        for tag, offset, size in zip(range(first, first + count), offsets, sizes):
            unacked[tag] = Unacked(queue, Message(offset, None, None, None, None, 0.0, None, size), consumer, tag, now)
        if consumer.timeout and self.scheduled_at == NEVER:
            clock.ack_timers.at(self, now + consumer.timeout / 1000)
        consumer.unacked += count
        self.consumer_unacked += count
        self.delivered += count
        queue.delivered += count
        body = b"".join([entry for _, entry, _ in entries])
        conn = self.connection
        if conn.unread_limit:
            conn.unread += len(body) + DELIVERY_COST * count
            if conn.unread >= conn.unread_limit:
                conn.blocked = True
        conn.outbox.put(conn.conn_id, _new(StreamDeliver, (_STREAM_DELIVER, self.number, consumer.tag, first,
                                                           offsets, sizes)), body)

    def settle(self, delivery_tag: int, multiple: bool) -> list[Unacked]:
        """Remove and return the deliveries an ack/nack/reject names.

        ``multiple`` takes every tag up to and including ``delivery_tag`` (all of them
        for tag 0); an unknown tag is RabbitMQ's 406, which closes the channel.
        """
        unacked = self.unacked
        if multiple:
            if delivery_tag == 0:
                taken = list(unacked.values())
                unacked.clear()
                return taken
            tags = list(takewhile(lambda t: t <= delivery_tag, unacked))
            if not tags:
                raise ChannelError(errors.PRECONDITION_FAILED, f"unknown delivery tag {delivery_tag}")
            return [unacked.pop(t) for t in tags]
        entry = unacked.pop(delivery_tag, None)
        if entry is None:
            raise ChannelError(errors.PRECONDITION_FAILED, f"unknown delivery tag {delivery_tag}")
        return [entry]

    def take_all_unacked(self) -> list[Unacked]:
        taken = list(self.unacked.values())
        self.unacked.clear()
        return taken
