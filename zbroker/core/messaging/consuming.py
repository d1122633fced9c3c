"""Consuming: prefetch, consumers, gets, and the settling of what was delivered (AMQP's
basic.qos/consume/cancel/get/ack/nack/reject/recover).

Rules of this module:
1. Prefetch is credit (``consumers.py``): ``basic.qos`` changes it and lets the
   channel's queues dispatch at once; ``prefetch_size`` is refused (540, as RabbitMQ).
2. A consumer tag is unique on its channel (530 on reuse); a server-made tag is
   ``amq.ctag-`` and 22 random URL-safe characters, as RabbitMQ's.
3. Consumer arguments are validated where the queue type says
   (``arguments.consumer_arguments``); an exclusive consumer excludes every other (403);
   then the queue's type may refuse the consumer (``QueueType.add_consumer``: a stream
   wants a prefetch and manual acks) before the channel knows of it.
4. A get without auto-ack is an unacked delivery like any other: it holds no consumer
   credit but it does start the consumer timeout.
5. Settling names delivery tags of this channel (406 for an unknown one); ack frees
   the message, nack/reject requeue it (in place, redelivered) or dead-letter it. A
   type may refuse gets and returns (``check_get``, ``check_return``: a stream's 540);
   refused returns stay unacked on the channel, so the close requeues them.
6. The consumer timeout closes the channel (406) when an unacked delivery is older than
   its consumer's (or the queue's, or the server's) timeout (``consumer_timeout.py``).
"""
from __future__ import annotations

import base64
import logging
import secrets
from typing import TYPE_CHECKING, Any, Callable

from zbroker import errors
from zbroker.core.access.checks import AccessChecks
from zbroker.core.access.permissions import READ
from zbroker.core.messaging import consumer_timeout
from zbroker.core.messaging.arguments import REPLY_TO, consumer_arguments
from zbroker.core.messaging.consumers import Consumer, Unacked, returnable
from zbroker.core.messaging.delivery import Delivery
from zbroker.core.messaging.message import Message
from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.reply_to import DirectReplyTo
from zbroker.core.messaging.timers import Clock
from zbroker.errors import ChannelError, ConnectionError_
from zbroker.methods import BasicCancelOk, BasicConsumeOk, BasicGetEmpty, BasicGetOk, BasicQosOk, BasicRecoverOk  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from zbroker.core.messaging.session import Channel

log = logging.getLogger(__name__)

_new = tuple.__new__
_GET_OK = BasicGetOk.METHOD
_GET_EMPTY = BasicGetEmpty.METHOD


def new_consumer_tag() -> str:
    return "amq.ctag-" + base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


class Consuming:
    def __init__(self, clock: Clock, checks: AccessChecks, delivery: Delivery, reply_to: DirectReplyTo,
                 consumer_timeout_ms: int, close_channel: Callable[["Channel", ChannelError], None]) -> None:
        self.clock = clock
        self.checks = checks
        self.delivery = delivery
        self.reply_to = reply_to
        #: RabbitMQ's consumer_timeout: the server's default (``consumer_timeout.py``).
        self.consumer_timeout_ms = consumer_timeout_ms
        self.close_channel = close_channel

    # -- consumers -----------------------------------------------------------------------

    def basic_qos(self, channel: "Channel", _: Any, prefetch_size: int, prefetch_count: int,
                  global_qos: bool) -> None:
        if prefetch_size:
            raise ConnectionError_(errors.NOT_IMPLEMENTED, f"prefetch_size!=0 ({prefetch_size})")
        if prefetch_count < 0 or prefetch_count > 65535:
            raise ConnectionError_(errors.SYNTAX_ERROR, f"prefetch_count out of range ({prefetch_count})")
        if global_qos:
            channel.global_prefetch = prefetch_count
        else:
            channel.prefetch_count = prefetch_count
        channel.reply(BasicQosOk(channel.number))
        self.delivery.dispatch_consumers_of(channel)

    def basic_consume(self, channel: "Channel", _: Any, queue: str, consumer_tag: str,
                      auto_ack: bool, exclusive: bool, arguments: dict) -> None:
        tag = consumer_tag or new_consumer_tag()
        if tag in channel.consumers or (channel.reply_to is not None and channel.reply_to[0] == tag):
            raise ConnectionError_(errors.NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'")
        if queue == REPLY_TO:
            self.reply_to.consume(channel, tag, auto_ack)
            return
        self.checks.may(channel.connection, READ, "queue", queue)
        q = channel.connection.topology.queue(queue, channel.connection)
        priority, timeout = consumer_arguments(queue, q.settings.queue_type, arguments, q.topology.vhost)
        if q.exclusive_consumers and (q.has_exclusive_consumer or (exclusive and q.consumers)):
            raise ChannelError(errors.ACCESS_REFUSED,
                               f"queue '{queue}' in vhost '{q.topology.vhost}' in exclusive use")
        consumer = Consumer(tag, q, channel, auto_ack, exclusive, channel.prefetch_count, arguments, priority,
                            consumer_timeout.consumer_timeout_ms(q, self.consumer_timeout_ms, timeout))
        q.add_consumer(consumer, self.clock.now)  # (the type may refuse it: before the channel knows it)
        channel.consumers[tag] = consumer
        self.delivery.used(q)
        channel.reply(BasicConsumeOk(channel.number, tag))
        self.delivery.dispatch(q)

    def basic_cancel(self, channel: "Channel", _: Any, consumer_tag: str) -> None:
        self.reply_to.cancel(channel, consumer_tag)
        consumer = channel.consumers.pop(consumer_tag, None)
        channel.reply(BasicCancelOk(channel.number, consumer_tag))
        if consumer is not None:
            consumer.queue.remove_consumer(consumer)
            self.delivery.consumer_left(consumer.queue, holding=consumer.unacked > 0)

    # -- gets ----------------------------------------------------------------------------

    def basic_get(self, channel: "Channel", _: Any, queue: str, auto_ack: bool) -> None:
        self.checks.may(channel.connection, READ, "queue", queue)
        q = channel.connection.topology.queue(queue, channel.connection)
        q.check_get()
        now = self.clock.now
        self.delivery.used(q)
        if q.due(now):
            self.delivery.expire(q)
        if not q.has_messages:
            channel.got_empty += 1
            channel.send(_new(BasicGetEmpty, (_GET_EMPTY, channel.number)))
            return
        message = q.take(auto_ack)  # an auto-acked message leaves the store here
        tag = channel.take_tag()
        if not auto_ack:
            channel.unacked[tag] = Unacked(q, message, None, tag, now)
            timeout = consumer_timeout.queue_timeout_ms(q, self.consumer_timeout_ms)
            if timeout:
                self.clock.ack_timers.at(channel, now + timeout / 1000)
            channel.got += 1
            q.got += 1
        else:
            channel.got_no_ack += 1
            q.got_no_ack += 1
        if message.redelivered:
            channel.redelivered += 1
            q.redelivered += 1
        channel.send(_new(BasicGetOk, (_GET_OK, channel.number, tag, message.redelivered, message.exchange,
                                       message.routing_key, q.message_count, message.properties)), message.body)

    def operator_get(self, queue: QueueType, count: int, settle: str) -> list[tuple[Message, int]]:
        """Take up to ``count`` messages (with the count left after each) and settle them
        at once: ``requeue`` puts them back (redelivered), ``ack`` removes them,
        ``reject`` dead-letters them (RabbitMQ's management "get messages" ack modes)."""
        queue.check_get()
        if queue.due(self.clock.now):
            self.delivery.expire(queue)
        taken: list[tuple[Message, int]] = []
        while len(taken) < count and queue.has_messages:
            message = queue.take(False)
            taken.append((message, queue.message_count))
        entries = [Unacked(queue, message, None, 0) for message, _ in taken]
        if settle == "requeue":
            self.delivery.requeue(entries)
        elif settle == "ack":
            for entry in entries:
                self.delivery.forget(entry)
        else:
            self.delivery.reject(entries)
        return taken

    # -- settling ------------------------------------------------------------------------

    def basic_ack(self, channel: "Channel", _: Any, delivery_tag: int, multiple: bool) -> None:
        entries = channel.settle(delivery_tag, multiple)
        channel.acked += len(entries)
        delivery = self.delivery
        for entry in entries:
            delivery.forget(entry)
        delivery.after_settle(channel, entries)

    def basic_nack(self, channel: "Channel", _: Any, delivery_tag: int, multiple: bool, requeue: bool) -> None:
        self.delivery.settle(channel, returnable(channel, channel.settle(delivery_tag, multiple)), requeue)

    def basic_reject(self, channel: "Channel", _: Any, delivery_tag: int, requeue: bool) -> None:
        self.delivery.settle(channel, returnable(channel, channel.settle(delivery_tag, False)), requeue)

    def basic_recover(self, channel: "Channel", _: Any, requeue: bool) -> None:
        if not requeue:
            raise ConnectionError_(errors.NOT_IMPLEMENTED, "requeue=false")
        for entry in channel.unacked.values():
            entry.queue.check_recover()
        self.delivery.requeue(channel.take_all_unacked())
        channel.reply(BasicRecoverOk(channel.number))

    def ack_timer(self, channel: "Channel") -> None:
        """The consumer timeout (rule 6): close the channel if one of its deliveries timed
        out, else look again at its next deadline."""
        due, expired = consumer_timeout.check(channel, self.clock.now, self.consumer_timeout_ms)
        if expired is None:
            self.clock.ack_timers.at(channel, due)
            return
        line, error = consumer_timeout.timed_out(channel, expired, self.consumer_timeout_ms)
        log.warning("%s", line)
        self.close_channel(channel, error)
