"""One attempt at moving messages: connect both sides, declare, consume, forward, settle,
until a failure, the end (``src-delete-after``) or a stop. The worker (``worker.py``)
runs one after another, ``reconnect-delay`` apart, as RabbitMQ's supervisor restarts
its shovel worker (rabbit_shovel_worker, rabbit_amqp091_shovel, RabbitMQ 3.10).

Rules:
1. Order: connect the source, then the destination (each: a URI picked at random from
   its list; one that fails is dropped and another tried, as make_conn_and_chan), then
   declare the destination (and confirm.select in on-confirm), then the source
   (declarations, basic.qos unless no-ack, the remaining count, basic.consume). The
   link is running once basic.consume-ok arrives: only then is ``running`` reported.
2. Declarations, RabbitMQ's ``ensure_queue``: a passive declare of src-queue/dest-queue
   on a channel of its own; a 404 there (the channel dies) and it is declared durable
   with src-queue-args/dest-queue-args on another. src-exchange: a server-named
   exclusive queue bound with src-exchange-key, on the consuming channel.
3. Forwarding (``forwarding.py`` shapes the message), per ack-mode:
   - on-confirm: each publish gets the destination's next sequence number, remembered
     with the source's delivery tag; a confirm (multiple or not) acks those deliveries
     on the source (one basic.ack, with the same ``multiple``), a nack nacks them
     (requeue); so nothing unconfirmed is ever acked: if a side dies, the source's
     broker requeues what was not acked (duplicates are possible, loss is not).
   - on-publish: the delivery is acked once published (written to pika's buffer);
     the deliveries published in one pass of the loop by one multiple ack, held while
     the destination has more than ``UNSENT_LIMIT_BYTES`` unsent (so prefetch bounds
     what a slow destination makes us hold, as TCP backpressure does in RabbitMQ).
   - no-ack: the source's consumer is no_ack; nothing is settled.
   Sequence numbers grow with delivery tags, so a multiple ack never covers a delivery
   still unconfirmed.
4. src-delete-after: ``remaining`` is counted at each start (a count, or queue-length:
   the queue's message_count from a passive declare, so 0 for a src-exchange's fresh
   queue); it falls by one per confirm (ack or nack) in on-confirm, per publish
   otherwise. At 0 the link ends ``done``. Deliveries beyond it are not published
   (``remaining_unacked``) and not acked: the source requeues them when we close.
5. Failures end the attempt, with RabbitMQ's texts: a connection that could not open
   leaves the shovel ``starting`` (its status in RabbitMQ) with why in ``error``; a
   channel closed by a broker, a lost connection, a basic.cancel from the source leave
   it ``terminated``. Either way every connection is closed.
6. Closing: pika sends what is buffered (acks) before connection.close; we wait for
   both close-oks up to ``CLOSE_TIMEOUT_S``, then drop the sockets. Each connection's
   pending frames go out in one write (``writes.py``).
7. Threads: all of it runs on the link's own pika IOLoop in the caller's thread; the
   only outside input is the stop ``Event``, looked at every ``TICK_S``.
"""
from __future__ import annotations

import collections
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal

import pika
import pika.exceptions
from pika.adapters.select_connection import IOLoop

from zbroker.shovel.definition import Shovel
from zbroker.shovel.forwarding import Forwarder
from zbroker.shovel.uris import Target, connection_error_text, remove_credentials, resolve
from zbroker.shovel.writes import coalesce_writes, pending_bytes

log = logging.getLogger(__name__)

#: How often the loop looks at the stop event and the counters: a stop takes this long.
TICK_S = 0.1
#: How long close-oks are waited for (RabbitMQ's ?MAX_CONNECTION_CLOSE_TIMEOUT is 10 s; the
#: supervisor sends SIGTERM 5 s after closing our stdin, so we are gone before that).
CLOSE_TIMEOUT_S = 3.0
NOT_FOUND = 404
#: on-publish acks wait while the destination has more than this unsent (a slow
#: destination must slow the source, not fill our memory: prefetch then bounds it).
UNSENT_LIMIT_BYTES = 4 * 1024 * 1024
UNSENT_WAIT_S = 0.01


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended: ``state`` and ``error`` are what the status shows."""
    kind: Literal["done", "stopped", "failed"]
    state: Literal["starting", "terminated"] = "terminated"
    error: str | None = None


@dataclass
class Counters:
    """What moved, for the status API (``worker.py`` reports them)."""
    moved: int = 0        # published to the destination
    acked: int = 0        # source deliveries acked after their transfer
    nacked: int = 0       # source deliveries nacked (requeued) after a destination nack
    in_flight: int = 0    # on-confirm: published, not yet confirmed
    remaining: int | None = None  # src-delete-after: still to transfer in this attempt

    def snapshot(self) -> dict[str, int]:
        counts = {"moved": self.moved, "acked": self.acked, "nacked": self.nacked, "in_flight": self.in_flight}
        if self.remaining is not None:
            counts["remaining"] = self.remaining
        return counts


@dataclass
class _Side:
    """One end of the link: its connection, its channel, the URI it reached."""
    name: Literal["source", "destination"]
    uris: list[str]
    connection: Any = None
    channel: Any = None
    target: Target | None = None


class Link:
    """One attempt (rules above); ``run`` blocks until it is over."""

    def __init__(self, shovel: Shovel, counters: Counters, on_running: Callable[[dict], None],
                 on_tick: Callable[[], None]) -> None:
        self.shovel = shovel
        self.counters = counters
        self.on_running = on_running
        self.on_tick = on_tick
        self.no_ack = shovel.ack_mode == "no-ack"
        self.on_confirm = shovel.ack_mode == "on-confirm"
        self.source = _Side("source", list(shovel.source.uris))
        self.dest = _Side("destination", list(shovel.destination.uris))
        self.ioloop = IOLoop()
        self.forwarder: Forwarder | None = None
        self.queue = ""
        #: on-confirm: destination sequence number -> source delivery tag, oldest first.
        self.unconfirmed: collections.OrderedDict[int, int] = collections.OrderedDict()
        self.next_seq = 0
        #: on-publish: the latest delivery published and not acked yet (``_ack_later``).
        self.ack_upto: int | None = None
        self.remaining: int | None = None
        self.remaining_unacked: int | None = None
        self.outcome: Outcome | None = None
        self.closing = False
        self.close_by = 0.0
        self.stop: threading.Event | None = None

    # -- the loop ----------------------------------------------------------------

    def run(self, stop: threading.Event) -> Outcome:
        self.stop = stop
        self.ioloop.call_later(0, lambda: self._connect(self.source, self._source_connected))
        self.ioloop.call_later(TICK_S, self._tick)
        try:
            self.ioloop.start()
        finally:
            self._drop_sockets()
            self.ioloop.close()
        self.counters.in_flight = len(self.unconfirmed)
        return self.outcome or Outcome("stopped")

    def _tick(self) -> None:
        if self.stop is not None and self.stop.is_set() and not self.closing:
            self._end(Outcome("stopped"))
        self.counters.in_flight = len(self.unconfirmed)
        self.on_tick()
        if self.closing and time.monotonic() >= self.close_by:
            log.warning("shovel %s: connections not closed within %s s; dropping them", self._label(),
                        CLOSE_TIMEOUT_S)
            self.ioloop.stop()
            return
        self.ioloop.call_later(TICK_S, self._tick)

    def _label(self) -> str:
        return f"'{self.shovel.name}' in virtual host '{self.shovel.vhost}'"

    def _end(self, outcome: Outcome) -> None:
        """The attempt is over (the first reason wins): close everything (rule 6)."""
        if self.outcome is None:
            self.outcome = outcome
            if outcome.kind == "failed":
                log.error("Shovel %s: %s", self._label(), outcome.error)
        if self.closing:
            return
        self._flush_acks(force=True)
        self.closing = True
        self.close_by = time.monotonic() + CLOSE_TIMEOUT_S
        for side in (self.source, self.dest):
            connection = side.connection
            if connection is not None and not (connection.is_closed or connection.is_closing):
                try:
                    connection.close()
                except pika.exceptions.AMQPError as error:
                    log.debug("closing the %s connection: %r", side.name, error)
        self._stop_when_closed()

    def _stop_when_closed(self) -> None:
        if self.closing and all(s.connection is None or s.connection.is_closed for s in (self.source, self.dest)):
            self.ioloop.stop()

    def _drop_sockets(self) -> None:
        for side in (self.source, self.dest):
            transport = getattr(side.connection, "_transport", None)
            if transport is not None and side.connection is not None and not side.connection.is_closed:
                try:
                    transport.abort()
                except Exception as error:  # noqa: BLE001 -- best effort on a connection already given up
                    log.debug("dropping the %s socket: %r", side.name, error)

    # -- connecting (rule 1) -------------------------------------------------------

    def _connect(self, side: _Side, then: Callable[[], None]) -> None:
        if self.closing:
            return
        uri = random.choice(side.uris)
        name = f"Shovel {self.shovel.name}"
        try:
            target = resolve(uri, self.shovel.local, name)
        except (ValueError, OSError) as error:  # e.g. a certificate file that cannot be read
            self._connect_failed(side, uri, str(error), then)
            return
        side.target = target

        def opened(connection: Any) -> None:
            coalesce_writes(connection)
            connection.channel(on_open_callback=lambda channel: self._channel_open(side, channel, then))

        def open_failed(connection: Any, error: BaseException) -> None:
            if self.closing:
                self._stop_when_closed()
                return
            self._connect_failed(side, uri, connection_error_text(error), then)

        side.connection = pika.SelectConnection(
            target.parameters, on_open_callback=opened, on_open_error_callback=open_failed,
            on_close_callback=lambda connection, reason: self._connection_closed(side, reason),
            custom_ioloop=self.ioloop)

    def _connect_failed(self, side: _Side, uri: str, text: str, then: Callable[[], None]) -> None:
        shown = remove_credentials(uri)
        log.error("Shovel %s failed to connect (URI: %s): %s", self._label(), shown, text)
        side.uris = sorted(set(side.uris) - {uri})
        if side.uris:
            self._connect(side, then)
        else:
            self._end(Outcome("failed", "starting", f"could not connect to {side.name} (URI: {shown}): {text}"))

    def _channel_open(self, side: _Side, channel: Any, then: Callable[[], None]) -> None:
        side.channel = channel
        channel.add_on_close_callback(lambda ch, reason: self._channel_closed(side, reason))
        log.debug("Shovel %s connected to %s", self._label(), side.name)
        then()

    def _source_connected(self) -> None:
        self._connect(self.dest, self._init_dest)

    def _connection_closed(self, side: _Side, reason: BaseException) -> None:
        if self.closing:
            self._stop_when_closed()
            return
        if isinstance(reason, pika.exceptions.AMQPHeartbeatTimeout):
            text = f"detected missed heartbeats on {side.name} connection (heartbeat timeout)"
        else:
            text = f"{side.name} connection failed: {connection_error_text(reason)}"
        self._end(Outcome("failed", "terminated", text))

    def _channel_closed(self, side: _Side, reason: BaseException) -> None:
        if self.closing or not isinstance(reason, pika.exceptions.ChannelClosedByBroker):
            return  # ours, or its connection's end (reported by _connection_closed)
        self._broker_closed_channel(side, reason)

    def _broker_closed_channel(self, side: _Side, reason: pika.exceptions.ChannelClosedByBroker) -> None:
        log.error("Shovel %s: the %s broker closed a channel: %s %s", self._label(), side.name,
                  reason.reply_code, reason.reply_text)
        self._end(Outcome("failed", "terminated", f"one of its connections closed with code {reason.reply_code}, "
                                                  f"reason: {reason.reply_text}"))

    # -- declarations (rule 2) -------------------------------------------------------

    def _ensure_queue(self, side: _Side, queue: str, arguments: dict, then: Callable[[], None]) -> None:
        """rabbit_shovel_parameters:ensure_queue: passive, else durable with the arguments."""
        settled = False

        def declared(_frame: Any, channel: Any) -> None:
            nonlocal settled
            settled = True
            channel.close()
            then()

        def passive_closed(channel: Any, reason: BaseException) -> None:
            if settled or self.closing or not isinstance(reason, pika.exceptions.ChannelClosedByBroker):
                return
            if reason.reply_code != NOT_FOUND:
                self._broker_closed_channel(side, reason)
                return
            side.connection.channel(on_open_callback=declare_durable)

        def declare_durable(channel: Any) -> None:
            channel.add_on_close_callback(lambda ch, reason: None if settled else self._channel_closed(side, reason))
            channel.queue_declare(queue, durable=True, arguments=arguments or None,
                                  callback=lambda frame: declared(frame, channel))

        def declare_passive(channel: Any) -> None:
            channel.add_on_close_callback(passive_closed)
            channel.queue_declare(queue, passive=True, callback=lambda frame: declared(frame, channel))

        side.connection.channel(on_open_callback=declare_passive)

    def _init_dest(self) -> None:
        dest = self.shovel.destination
        if dest.queue is not None:
            self._ensure_queue(self.dest, dest.queue, dest.queue_args, self._dest_declared)
        else:
            self._dest_declared()

    def _dest_declared(self) -> None:
        if self.on_confirm:
            self.dest.channel.confirm_delivery(ack_nack_callback=self._on_confirm,
                                               callback=lambda _frame: self._init_source())
        else:
            self._init_source()

    def _init_source(self) -> None:
        assert self.source.target is not None and self.dest.target is not None  # both connected by now
        self.forwarder = Forwarder(self.shovel, self.source.target.shown, self.dest.target.shown)
        src = self.shovel.source
        if src.queue is not None:
            self._ensure_queue(self.source, src.queue, src.queue_args, lambda: self._source_declared(src.queue))
            return
        channel = self.source.channel

        def bind(frame: Any) -> None:
            queue = frame.method.queue
            channel.queue_bind(queue, src.exchange, routing_key=src.exchange_key,
                               callback=lambda _frame: self._source_declared(queue))

        channel.queue_declare("", exclusive=True, callback=bind)

    def _source_declared(self, queue: str) -> None:
        self.queue = queue
        if self.no_ack:
            self._count_remaining()
        else:
            self.source.channel.basic_qos(prefetch_count=self.shovel.source.prefetch_count,
                                          callback=lambda _frame: self._count_remaining())

    def _count_remaining(self) -> None:
        delete_after = self.shovel.source.delete_after
        if delete_after == "never":
            self._consume(None)
        elif delete_after == "queue-length":
            self.source.channel.queue_declare(self.queue, passive=True,
                                              callback=lambda frame: self._consume(frame.method.message_count))
        else:
            self._consume(int(delete_after))

    def _consume(self, remaining: int | None) -> None:
        self.remaining = self.remaining_unacked = self.counters.remaining = remaining
        if remaining == 0:
            self._done()
            return
        channel = self.source.channel
        channel.add_on_cancel_callback(self._on_cancel)
        channel.basic_consume(self.queue, self._on_message, auto_ack=self.no_ack,
                              arguments=self.shovel.source.consumer_args or None,
                              callback=lambda _frame: self._running())

    def _running(self) -> None:
        assert self.source.target is not None and self.dest.target is not None
        src, dest = self.shovel.source, self.shovel.destination
        info: dict[str, str] = {"src_uri": self.source.target.shown, "src_protocol": "amqp091",
                                "dest_protocol": "amqp091", "dest_uri": self.dest.target.shown}
        if src.queue is not None:
            info["src_queue"] = src.queue
        else:
            info.update(src_exchange=src.exchange or "", src_exchange_key=src.exchange_key)
        for key, value in (("dest_exchange", dest.exchange), ("dest_exchange_key", dest.exchange_key),
                           ("dest_queue", dest.queue)):
            if value is not None:
                info[key] = value
        log.info("Shovel %s is running: %s -> %s", self._label(), info["src_uri"], info["dest_uri"])
        self.on_running({"state": "running", "src": info["src_uri"], "dest": info["dest_uri"], "info": info})

    def _on_cancel(self, _frame: Any) -> None:
        log.warning("Shovel %s received a 'basic.cancel' from the server", self._label())
        self._end(Outcome("failed", "terminated", "needed a restart"))

    # -- forwarding (rules 3 and 4) ------------------------------------------------

    def _on_message(self, channel: Any, deliver: Any, properties: Any, body: bytes) -> None:
        if self.closing or self.remaining_unacked == 0:
            return  # not acked: requeued when the source connection closes
        assert self.forwarder is not None  # made before consuming
        exchange, routing_key = self.forwarder.route(deliver.exchange, deliver.routing_key)
        try:
            self.dest.channel.basic_publish(exchange, routing_key, body, self.forwarder.properties(properties))
        except pika.exceptions.AMQPError as error:  # the destination just went: its callback ends the link
            log.debug("publish failed: %r", error)
            return
        self.counters.moved += 1
        if self.on_confirm:
            self.next_seq += 1
            self.unconfirmed[self.next_seq] = deliver.delivery_tag
        elif self.no_ack:
            self._transferred(1)
        else:
            self._ack_later(deliver.delivery_tag)
            self._transferred(1)
        if self.remaining_unacked:
            self.remaining_unacked -= 1

    def _ack_later(self, tag: int) -> None:
        """on-publish: this delivery is acked with the others published in the same pass
        of the loop, by one multiple ack (every delivery before it is published too)."""
        if self.ack_upto is None:
            self.ioloop.call_later(0, self._flush_acks)
        self.ack_upto = tag
        self.counters.acked += 1

    def _flush_acks(self, force: bool = False) -> None:
        if not force and pending_bytes(self.dest.connection) > UNSENT_LIMIT_BYTES:
            self.ioloop.call_later(UNSENT_WAIT_S, self._flush_acks)  # hold the source back a while
            return
        tag, self.ack_upto = self.ack_upto, None
        channel = self.source.channel
        if tag is not None and channel is not None and channel.is_open:
            channel.basic_ack(tag, multiple=True)

    def _on_confirm(self, frame: Any) -> None:
        method = frame.method
        seq, multiple = method.delivery_tag, method.multiple
        tags: list[int] = []
        if multiple:
            while self.unconfirmed and next(iter(self.unconfirmed)) <= seq:
                tags.append(self.unconfirmed.popitem(last=False)[1])
        elif seq in self.unconfirmed:
            tags.append(self.unconfirmed.pop(seq))
        if not tags:
            return
        channel = self.source.channel
        try:
            if isinstance(method, pika.spec.Basic.Ack):
                channel.basic_ack(tags[-1], multiple=multiple)
                self.counters.acked += len(tags)
            else:
                channel.basic_nack(tags[-1], multiple=multiple, requeue=True)
                self.counters.nacked += len(tags)
        except pika.exceptions.AMQPError as error:  # the source just went: its callback ends the link
            log.debug("settling on the source failed: %r", error)
            return
        self._transferred(len(tags))

    def _transferred(self, count: int) -> None:
        """rabbit_shovel_behaviour:decr_remaining."""
        if self.remaining is None:
            return
        self.remaining = max(self.remaining - count, 0)
        self.counters.remaining = self.remaining
        if self.remaining == 0:
            self._done()

    def _done(self) -> None:
        log.info("shutting down Shovel %s, no messages left to transfer", self._label())
        self._end(Outcome("done"))
