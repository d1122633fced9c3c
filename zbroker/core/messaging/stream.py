"""The stream queue: RabbitMQ's third queue type (``rabbit_stream_queue``, 3.10) as AMQP
0-9-1 clients see it. Messages are appended to a log (``stream_logs.py``) and never
leave it by being consumed; each consumer reads the log from its own offset.

Rules of this module:
1. Declared by name (406 "Cannot declare a server-named queue for type
   rabbit_stream_queue"), durable, shared and kept (auto-delete, exclusive, non-durable:
   406 "invalid property ...", in RabbitMQ's order), with a segment size at most
   ``MAX_STREAM_SEGMENT_BYTES`` (406 "Exceeded max value for ..."). Its arguments are
   the stream's column of ``arguments.QUEUE_ARGUMENTS``: ``x-max-length-bytes``,
   ``x-max-age``, ``x-stream-max-segment-size-bytes`` (and the placement arguments,
   which mean nothing on one node); any other type's argument is 406 "... of queue type
   rabbit_stream_queue". A policy's ``max-length-bytes``, ``max-age`` and
   ``stream-max-segment-size-bytes`` win over the arguments (``POLICY_PRECEDENCE``).
2. In: every message is added to the log (``StreamLog.add``: on disk the publishes of a
   loop pass make one chunk, written at the pass's sync), timestamped with the
   publish's ``now``. Retention (``max-length-bytes``, ``max-age``: whole segments from the front)
   is applied when an append starts a new segment and when a policy changes the limits
   (``expire``, which the broker calls after a settings change), as osiris does.
   Nothing expires, overflows or is dead-lettered: per-message TTL and limits are not a
   stream's.
3. Consumers: each needs a prefetch (``basic.qos``, 406 "consumer prefetch count is not
   set for ..."), manual acks (540 "automatic acknowledgement not supported by stream
   queues ...") and no global qos (540 "... does not support global qos"), checked in
   that order. It starts at its ``x-stream-offset`` (``arguments.stream_offset``):
   ``first``, ``last`` (the last chunk), ``next`` (the default: only what comes after),
   an offset (before the first: the first; past the end: it waits for that offset), a
   timestamp or an age (the first chunk written at or after it). Every consumer gets
   every message from there on. ``exclusive`` is accepted and ignored (others still
   consume), as ``rabbit_stream_queue`` ignores it.
4. Out: a consumer is sent what it has credit for, in offset order, each delivery with
   an ``x-stream-offset`` header (its offset) and never redelivered. An ack only gives
   the credit back: the message stays in the log. A delivery left unacked when its
   channel goes is forgotten (nothing is put back: the log still has it). Where the
   consumer's connection takes batches (``Connection.stream_batches``: the zbroker
   wire's STREAM_DELIVER) and the log's entries are that wire's (``wire_entries``), its
   deliveries go out as the log's entries, up to ``BATCH_ENTRIES`` in one event, with
   no decoding here; the client adds the header.
5. Refused, as RabbitMQ refuses them: ``basic.get`` (540 "basic.get not supported by
   stream queues ..."), ``queue.purge`` (540), ``basic.nack``/``basic.reject`` (540
   "basic.nack and basic.reject not supported by stream queues ...") and
   ``basic.recover`` with a stream delivery unacked (541 "INTERNAL_ERROR": RabbitMQ's
   requeue crashes there): each closes the connection. queue.delete ignores if-unused
   and if-empty.
6. Counts: ``message_count`` is what the log holds (``next_offset - first_offset``);
   ``unacked`` the deliveries out; ``has_messages`` says some consumer is behind the
   log's end (the broker dispatches again when one is). What RabbitMQ reports of a
   stream elsewhere: consumer_count 0 in declare-ok, message_count 0 in delete-ok, and
   ``active: false`` on its management consumer rows (``QueueType`` rule 4's facts).
7. The log is the queue's own: the in-memory log unless the broker has a data
   directory, whose storage hands it one on disk (``attach_log``, through
   ``Topology``'s ``log_for``), marked as written when it is (an append, a tracked
   offset), synced before the pass's confirms leave (``persistence.py`` rule 8) and
   found again after a restart; deleting the queue deletes its log.
8. Filtering (RabbitMQ 3.13): a message's ``x-stream-filter-value`` header (a string) is
   its entry's filter value; a consumer's ``x-stream-filter`` (a string or an array of
   them) takes only messages with one of those values, and with
   ``x-stream-match-unfiltered: true`` those with none too. RabbitMQ filters per chunk
   with a bloom filter and the client must check again; zbroker filters each message
   exactly (the log's chunk filters only spare reading chunks with nothing wanted), so
   a consumer never gets a message its filter does not take. ``x-stream-filter-size-bytes``
   (16..255, else 406 "Invalid value for  x-stream-filter-size-bytes") is validated and
   compared on redeclare, and changes nothing else.
9. Named consumers, zbroker's extension (RabbitMQ's offset tracking, which it offers on
   its stream protocol only): a consumer with ``x-zbroker-consumer-name`` has its acks
   tracked in the log (the highest acked offset under that name, ``StreamLog.track``,
   durable with the log's next sync). When a consumer with that name comes again, after
   a restart too, it starts after that offset (or at the first kept one) and its
   ``x-stream-offset`` is not read; the first time, it starts at its ``x-stream-offset``.
   A consumer without a name is tracked nowhere.
"""
from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Iterable, Iterator

from zbroker import errors
from zbroker.core.messaging.arguments import (MAX_STREAM_SEGMENT_BYTES, STREAM, TYPE_MODULES, QueueSettings,
                                              consumer_name, precondition, queue_resource, stream_filter,
                                              stream_offset)
from zbroker.core.messaging.message import Message
from zbroker.core.messaging.queue_type import QueueType, require_durable_shared
from zbroker.core.messaging.stream_logs import (DEFAULT_SEGMENT_BYTES, KEEP_MESSAGES, Entry, EntryCodec, LogReader,
                                                MemoryStreamLog, StreamLog)
from zbroker.errors import ConnectionError_
from zbroker.methods import SignedLong

if TYPE_CHECKING:
    from zbroker.core.messaging.consumers import Consumer, Unacked
    from zbroker.core.messaging.session import Connection

#: Entries a consumer's reader takes from the log at a time (beyond its credit they wait
#: in its buffer for the next dispatch).
READ_BATCH = 256
#: A batch of entries (``Channel.deliver_entries``) holds at most this many, and takes no
#: more once it holds ``BATCH_BYTES`` (bounding one event and the client's work per read).
BATCH_ENTRIES = 1000
BATCH_BYTES = 1 << 20
OFFSET_HEADER = "x-stream-offset"
FILTER_VALUE_HEADER = "x-stream-filter-value"
CONSUMER_NAME = "x-zbroker-consumer-name"
#: RabbitMQ 3.13's bounds for ``x-stream-filter-size-bytes``.
FILTER_SIZE_BYTES = range(16, 256)


class _Reader:
    """One consumer's place in the log: its reader, what it read but has not sent, and
    the filter values it asked for (``None``: every message)."""

    __slots__ = ("reader", "start", "read_to", "buffered", "filters", "unfiltered", "batches")

    def __init__(self, reader: LogReader, start: int, filters: frozenset[str] | None, unfiltered: bool) -> None:
        self.reader = reader
        self.batches = False  # its entries go out as they are, many per event (rule 4)
        self.start = start  # the first offset it is sent (a disk reader starts at a chunk)
        self.read_to = start  # the offset after the last entry it read
        self.buffered: deque[Entry] = deque()
        self.filters = filters
        self.unfiltered = unfiltered

    def wanted(self, entries: list[Entry]) -> list[Entry]:
        """The entries from ``start`` on that the consumer's filter takes (rule 8: exact)."""
        start, filters = self.start, self.filters
        if filters is None:
            return [e for e in entries if e[0] >= start] if entries[0][0] < start else entries
        unfiltered = self.unfiltered
        return [e for e in entries
                if e[0] >= start and (e[2] in filters if e[2] is not None else unfiltered)]


class StreamQueue(QueueType):
    TYPE = STREAM
    MODULE = TYPE_MODULES[STREAM]
    owns_log = True
    server_named = False
    exclusive_consumers = False
    counts_consumers = False
    delete_checks = False
    #: RabbitMQ 3.10's ``rabbit_stream_queue`` capabilities (with zbroker's
    #: ``consumer-timeout``, which a stream's x-arguments do not take either).
    UNSUPPORTED_POLICIES = frozenset({"expires", "message-ttl", "dead-letter-exchange", "dead-letter-routing-key",
                                      "max-length", "max-in-memory-length", "max-in-memory-bytes", "max-priority",
                                      "overflow", "queue-mode", "single-active-consumer", "delivery-limit",
                                      "queue-master-locator", "dead-letter-strategy", "consumer-timeout"})
    #: 3.10's ``policy_precedence/2``: the policy's value wins.
    POLICY_PRECEDENCE = {"max-length-bytes": "policy", "max-age": "policy", "stream-max-segment-size-bytes": "policy"}
    #: A stream is compared on its own arguments only (its ``queue_arguments`` capability).
    EQUIVALENCE_ARGS = ("x-queue-type", "x-max-length-bytes", "x-max-age", "x-stream-max-segment-size-bytes",
                        "x-stream-filter-size-bytes", "x-initial-cluster-size", "x-queue-leader-locator")
    #: Acks tell the stream which offsets a named consumer finished (rule 9).
    tracks_acks = True
    reports_unacked = False  # (rule 6: RabbitMQ's stream counts none)

    def __init__(self, name: str, durable: bool = True, exclusive_owner: "Connection | None" = None,
                 auto_delete: bool = False, arguments: dict | None = None,
                 settings: QueueSettings | None = None) -> None:
        super().__init__(name, durable, exclusive_owner, auto_delete, arguments, settings)
        s = self.settings
        self.log: StreamLog = MemoryStreamLog(s.max_segment_size_bytes, s.max_length_bytes, _seconds(s.max_age))
        self.codec: EntryCodec = KEEP_MESSAGES
        self._readers: dict[Consumer, _Reader] = {}
        self._names: dict[Consumer, str] = {}  # named consumers (rule 9), until their last ack
        #: Where a log the broker syncs is marked as written (rule 7; None: nobody syncs it).
        self._written: set | None = None

    def _derive(self) -> None:
        """Rule 2: nothing for the broker to look at after an enqueue."""
        s = self.settings
        self.careful = self.rejects = False
        self._retains = s.max_length_bytes is not None or s.max_age is not None

    # -- declare (rule 1) and the log (rule 7) ---------------------------------------------

    @classmethod
    def check_declare(cls, name: str, vhost: str, durable: bool, exclusive: bool, auto_delete: bool,
                      settings: QueueSettings) -> None:
        require_durable_shared(name, vhost, durable, exclusive, auto_delete)
        size = settings.max_segment_size_bytes
        if size is not None and size > MAX_STREAM_SEGMENT_BYTES:
            raise precondition("Exceeded max value for x-stream-max-segment-size-bytes")
        filter_size = settings.filter_size_bytes
        if filter_size is not None and filter_size not in FILTER_SIZE_BYTES:
            raise precondition("Invalid value for  x-stream-filter-size-bytes")  # (two spaces: RabbitMQ's)

    def attach_log(self, log: StreamLog, codec: EntryCodec) -> None:
        """The storage's log for this queue (and how messages become its entries)."""
        self.log = log
        self.codec = codec
        if self.topology is not None:
            self._written = self.topology.counts.written_logs
        log.set_retention(self.settings.max_length_bytes, _seconds(self.settings.max_age))
        self._counted()  # (a recovered log has messages)

    def apply_settings(self, settings: QueueSettings) -> None:
        """A policy changed the retention or the segment size: the log has the new limits,
        applied when the broker looks after the change (``expire``); the next segment
        started has the new size."""
        super().apply_settings(settings)
        self.log.set_retention(settings.max_length_bytes, _seconds(settings.max_age))
        self.log.max_segment_bytes = settings.max_segment_size_bytes or DEFAULT_SEGMENT_BYTES

    # -- facts (rule 6) --------------------------------------------------------------------

    @property
    def message_count(self) -> int:
        return self.log.next_offset - self.log.first_offset

    @property
    def has_messages(self) -> bool:
        end = self.log.next_offset
        return any(r.buffered or r.read_to < end for r in self._readers.values())

    @property
    def resident_count(self) -> int:
        return 0

    @property
    def segments(self) -> int:
        return self.log.segment_count

    def _counted(self) -> None:
        """``ready`` and ``ready_bytes`` are what the log holds (rule 6)."""
        log = self.log
        self.ready = log.next_offset - log.first_offset
        self.ready_bytes = log.bytes

    def would_overflow(self, message: Message) -> bool:
        return False

    # -- in (rule 2) -----------------------------------------------------------------------

    def enqueue(self, message: Message) -> None:
        incoming = self.incoming
        incoming[message.exchange] = incoming.get(message.exchange, 0) + 1
        now_ms = int(message.published_at * 1000)
        log = self.log
        segments = log.segment_count
        headers = message.properties.get("headers")
        log.add([(self.codec.encode(message), _filter_value(headers) if headers else None)], now_ms)
        if self._written is not None:
            self._written.add(log)
        if self._retains and log.segment_count != segments:
            log.apply_retention(now_ms)
        self._counted()

    def append_recovered(self, message: Message | None, seq: int, location: int, size: int,
                         priority: int, expires: float | None) -> None:
        raise TypeError("a stream recovers from its own log, not from the message store")

    # -- consumers (rule 3) ----------------------------------------------------------------

    @property
    def _where(self) -> str:
        return queue_resource(self.name, self.topology.vhost if self.topology is not None else "/")

    def add_consumer(self, consumer: "Consumer", now: float) -> None:
        where = self._where
        if not consumer.prefetch:
            raise precondition(f"consumer prefetch count is not set for '{where}'")
        if consumer.auto_ack:
            raise ConnectionError_(errors.NOT_IMPLEMENTED,
                                   f"automatic acknowledgement not supported by stream queues {where}")
        if consumer.channel.global_prefetch:
            raise ConnectionError_(errors.NOT_IMPLEMENTED, f"{where} does not support global qos")
        arguments = consumer.arguments
        name = arguments.get(CONSUMER_NAME)
        if name is not None:
            name = consumer_name(name)  # (validated already; bytes become the string they spell)
        tracked = None if name is None else self.log.tracked(name)
        if tracked is not None:
            start = max(tracked + 1, self.log.first_offset)
        else:
            start = self._start(arguments.get("x-stream-offset"), now)
        wanted = arguments.get("x-stream-filter")
        filters = None if wanted is None else stream_filter(wanted)
        unfiltered = bool(arguments.get("x-stream-match-unfiltered", False))
        reader = _Reader(self.log.reader(start, filters, unfiltered), start, filters, unfiltered)
        reader.batches = consumer.channel.connection.stream_batches and getattr(self.codec, "wire_entries", False)
        self._readers[consumer] = reader
        if name is not None:
            self._names[consumer] = name
        super().add_consumer(consumer, now)

    def _start(self, value: object, now: float) -> int:
        """The first offset a consumer with ``x-stream-offset: value`` is sent (rule 3)."""
        log = self.log
        kind, number = ("next", 0) if value is None else stream_offset(value)
        if kind == "first":
            return log.first_offset
        if kind == "last":
            return log.last_chunk_offset if log.next_offset > log.first_offset else log.next_offset
        if kind == "next":
            return log.next_offset
        if kind == "offset":  # (past the end: it waits for that offset, skipping what comes before)
            return max(number, log.first_offset)
        if kind == "age":
            number = int(now * 1000) - number
        return log.offset_for_timestamp(number)

    def remove_consumer(self, consumer: "Consumer") -> None:
        self._readers.pop(consumer, None)
        if not consumer.unacked:
            self._names.pop(consumer, None)
        super().remove_consumer(consumer)

    def track_ack(self, entry: "Unacked") -> None:
        """Rule 9: a named consumer's ack moves its tracked offset."""
        consumer = entry.consumer
        name = self._names.get(consumer)  # type: ignore[arg-type]
        if name is not None:
            self.log.track(name, entry.message.seq)
            if self._written is not None:
                self._written.add(self.log)
            if consumer is not None and not consumer.unacked and consumer not in self._readers:
                del self._names[consumer]  # (its last ack after it was cancelled)

    # -- out (rule 4) ----------------------------------------------------------------------

    def dispatch(self, limit: int) -> bool:
        """Send each consumer what it has credit for from its own place in the log."""
        for consumer in self.consumers:
            reader = self._readers[consumer]
            channel = consumer.channel
            if reader.batches:
                limit = self._send_entries(consumer, reader, limit)
                if limit <= 0 and consumer.has_credit():
                    return True
                continue
            while consumer.has_credit():
                if limit <= 0:
                    return True
                entry = self._next(reader)
                if entry is None:
                    break
                self.unacked += 1
                channel.deliver(consumer, self, self._delivery(entry))
                limit -= 1
        return False

    def _send_entries(self, consumer: "Consumer", reader: _Reader, limit: int) -> int:
        """Rule 4 for a consumer whose wire takes entries as they are: as many as its
        credit allows per event (``stream_entries.BATCH_ENTRIES``, ``BATCH_BYTES``);
        returns what is left of ``limit``."""
        channel = consumer.channel
        while limit > 0 and consumer.has_credit():
            room = min(consumer.prefetch - consumer.unacked, limit, BATCH_ENTRIES)
            entries = self._take(reader, room)
            if not entries:
                break
            self.unacked += len(entries)
            channel.deliver_entries(consumer, self, entries)
            limit -= len(entries)
        return limit

    def _take(self, reader: _Reader, count: int) -> list[Entry]:
        """Up to ``count`` entries (and about ``BATCH_BYTES``) from ``reader``'s place on."""
        out: list[Entry] = []
        size = 0
        buffered = reader.buffered
        while len(out) < count and size < BATCH_BYTES:
            if not buffered:
                entries = reader.reader.read(max(READ_BATCH, count - len(out)))
                if not entries:
                    break
                reader.read_to = entries[-1][0] + 1
                buffered.extend(reader.wanted(entries))
                continue
            entry = buffered.popleft()
            size += len(entry[1])
            out.append(entry)
        return out

    def _next(self, reader: _Reader) -> Entry | None:
        buffered = reader.buffered
        while not buffered:
            entries = reader.reader.read(READ_BATCH)
            if not entries:
                return None
            reader.read_to = entries[-1][0] + 1
            buffered.extend(reader.wanted(entries))
        return buffered.popleft()

    def _delivery(self, entry: Entry) -> Message:
        """The message at ``entry``'s offset as a consumer gets it: with its offset header."""
        offset, data, _ = entry
        exchange, routing_key, properties, body, published_at = self.codec.decode(data)
        headers = properties.get("headers")
        if not self.codec.decodes_new:  # (the publisher's own tables: add to copies)
            properties = dict(properties)
            headers = properties["headers"] = dict(headers) if headers else {}
        elif headers is None:
            headers = properties["headers"] = {}
        headers[OFFSET_HEADER] = SignedLong(offset)  # (type 'l' on the AMQP wire, as RabbitMQ's)
        return Message(offset, exchange, routing_key, properties, body, published_at, None, len(body))

    def take(self, settled: bool) -> Message:
        raise self._refused("basic.get")

    def check_get(self) -> None:
        raise self._refused("basic.get")

    def check_return(self) -> None:
        raise self._refused("basic.nack and basic.reject")

    def check_recover(self) -> None:
        """RabbitMQ's requeue of a stream delivery crashes the channel: 541, the name alone."""
        error = ConnectionError_(errors.INTERNAL_ERROR, "")
        error.text = "INTERNAL_ERROR"
        raise error

    def _refused(self, what: str) -> ConnectionError_:
        return ConnectionError_(errors.NOT_IMPLEMENTED, f"{what} not supported by stream queues {self._where}")

    def requeue(self, messages: Iterable[Message]) -> list[Message]:
        """A channel went with deliveries unacked: nothing goes back (rule 4); a named
        consumer it held is forgotten once nothing of it is left unacked."""
        self.unacked -= len(list(messages))
        for consumer in [c for c in self._names if not c.unacked and c not in self._readers]:
            del self._names[consumer]
        return []

    def expire(self, now: float) -> list[Message]:
        """What a stream has of expiry: the log's retention, applied when the broker looks
        after a settings change (``Delivery.settings_changed``; rule 2). Nothing is
        returned: what retention drops is not dead-lettered."""
        if self._retains:
            self.log.apply_retention(int(now * 1000))
            self._counted()
        return []

    def over_limit(self) -> list[Message]:
        return []

    # -- going (rules 5 and 7) -------------------------------------------------------------

    def purge(self) -> int:
        raise self._refused("queue.purge")

    def clear(self) -> None:
        """The queue is deleted: so is its log."""
        self._readers.clear()
        self._names.clear()
        self.log.delete()
        self.ready = self.ready_bytes = 0

    def stored(self) -> Iterator[tuple[int, int]]:
        return iter(())

    def resident(self) -> Iterator[Message]:
        return iter(())

    def paged(self) -> Iterator[tuple[int, int]]:
        return iter(())

    def relocate(self, moved: dict[int, int]) -> None:
        """Nothing of a stream is in the message store."""


def _filter_value(headers: dict) -> str | None:
    """A message's ``x-stream-filter-value``: a string, as RabbitMQ takes it (any other
    type leaves the message unfiltered, as RabbitMQ's ``mc:x_header`` match does)."""
    value = headers.get(FILTER_VALUE_HEADER)
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return None
    return value if isinstance(value, str) else None


def _seconds(ms: int | None) -> float | None:
    return None if ms is None else ms / 1000.0
