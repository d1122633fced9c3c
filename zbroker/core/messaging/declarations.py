"""Declaring and removing what a vhost holds: exchanges, queues and the bindings between
them, and purging a queue (AMQP's exchange.* and queue.* methods).

Rules of this module:
- Access is checked first, in RabbitMQ's order (``access/checks.py``): configure to
  declare or delete, read and write to bind, read to purge; a passive declare needs any
  one of the three; declaring with an alternate exchange or a dead-letter exchange also
  needs read on the new entity and write on the exchange it names.
- ``topology.py`` decides what the declaration means (equivalence, exclusivity,
  reserved names, limits); this module only applies it and answers.
- Deleting a queue cancels its consumers (``delivery.py`` rule 6); ``if-unused`` and
  ``if-empty`` are RabbitMQ's 406 texts.
- Every answer is the command's ``-ok`` through ``Channel.reply`` (nothing with nowait).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zbroker import errors
from zbroker.core.access.checks import AccessChecks
from zbroker.core.access.permissions import CONFIGURE, READ, WRITE
from zbroker.core.messaging.delivery import Delivery
from zbroker.core.messaging.queue_types import check_server_named
from zbroker.core.messaging.reply_to import DirectReplyTo, is_reply_name
from zbroker.core.messaging.topology import DEFAULT_EXCHANGES, check_name
from zbroker.errors import ChannelError
from zbroker.methods import (ExchangeBindOk, ExchangeDeclareOk, ExchangeDeleteOk, ExchangeUnbindOk, QueueBindOk,
                             QueueDeclareOk, QueueDeleteOk, QueuePurgeOk, QueueUnbindOk)

if TYPE_CHECKING:
    from zbroker.core.messaging.session import Channel


class Declarations:
    def __init__(self, checks: AccessChecks, delivery: Delivery, reply_to: DirectReplyTo) -> None:
        self.checks = checks
        self.delivery = delivery
        self.reply_to = reply_to

    def exchange_declare(self, channel: "Channel", _: Any, exchange: str, exchange_type: str,
                         passive: bool, durable: bool, auto_delete: bool, internal: bool,
                         arguments: dict) -> None:
        conn = channel.connection
        may = self.checks.may
        if exchange and passive:
            self.checks.may_any(conn, "exchange", exchange)
        elif exchange:
            may(conn, CONFIGURE, "exchange", exchange)
            alternate = arguments.get("alternate-exchange")
            if isinstance(alternate, str) and exchange not in conn.topology.exchanges:
                may(conn, READ, "exchange", exchange)
                may(conn, WRITE, "exchange", alternate)
        conn.topology.declare_exchange(exchange, exchange_type, passive, durable, auto_delete,
                                       internal, arguments)
        channel.reply(ExchangeDeclareOk(channel.number))

    def exchange_delete(self, channel: "Channel", _: Any, exchange: str, if_unused: bool) -> None:
        if exchange and exchange not in DEFAULT_EXCHANGES:  # (those refused below, as RabbitMQ's order)
            self.checks.may(channel.connection, CONFIGURE, "exchange", exchange)
        channel.connection.topology.delete_exchange(exchange, if_unused)
        channel.reply(ExchangeDeleteOk(channel.number))

    def exchange_bind(self, channel: "Channel", _: Any, destination: str, source: str,
                      routing_key: str, arguments: dict) -> None:
        check_name(routing_key, "routing key")
        self.checks.may_bind(channel.connection, "exchange", destination, source, routing_key)
        channel.connection.topology.bind_names(destination, False, source, routing_key, arguments, None)
        channel.reply(ExchangeBindOk(channel.number))

    def exchange_unbind(self, channel: "Channel", _: Any, destination: str, source: str,
                        routing_key: str, arguments: dict) -> None:
        self.checks.may_bind(channel.connection, "exchange", destination, source, routing_key)
        channel.connection.topology.unbind(destination, False, source, routing_key, arguments, None)
        channel.reply(ExchangeUnbindOk(channel.number))

    def queue_declare(self, channel: "Channel", _: Any, queue: str, passive: bool, durable: bool,
                      exclusive: bool, auto_delete: bool, arguments: dict) -> None:
        if is_reply_name(queue):
            self.reply_to.declare(channel, queue)
            return
        conn = channel.connection
        may = self.checks.may
        server_named = not queue and not passive
        if passive:
            self.checks.may_any(conn, "queue", queue)
        else:
            if server_named:  # the new name is what is checked, as RabbitMQ's
                check_server_named(arguments)
                queue = conn.topology.new_queue_name()
            may(conn, CONFIGURE, "queue", queue)
            dlx = arguments.get("x-dead-letter-exchange")
            if isinstance(dlx, str) and queue not in conn.topology.queues:
                may(conn, READ, "queue", queue)
                may(conn, WRITE, "exchange", dlx)
        q = conn.topology.declare_queue(queue, passive, durable, exclusive, auto_delete, arguments,
                                        conn, server_named)
        self.delivery.used(q)
        consumers = len(q.consumers) if q.counts_consumers else 0
        channel.reply(QueueDeclareOk(channel.number, q.name, q.message_count, consumers))

    def queue_bind(self, channel: "Channel", _: Any, queue: str, exchange: str, routing_key: str,
                   arguments: dict) -> None:
        check_name(routing_key, "routing key")
        self.checks.may_bind(channel.connection, "queue", queue, exchange, routing_key)
        channel.connection.topology.bind_names(queue, True, exchange, routing_key, arguments, channel.connection)
        channel.reply(QueueBindOk(channel.number))

    def queue_unbind(self, channel: "Channel", _: Any, queue: str, exchange: str, routing_key: str,
                     arguments: dict) -> None:
        self.checks.may_bind(channel.connection, "queue", queue, exchange, routing_key)
        channel.connection.topology.unbind(queue, True, exchange, routing_key, arguments, channel.connection)
        channel.reply(QueueUnbindOk(channel.number))

    def queue_purge(self, channel: "Channel", _: Any, queue: str) -> None:
        self.checks.may(channel.connection, READ, "queue", queue)
        count = channel.connection.topology.queue(queue, channel.connection).purge()
        channel.reply(QueuePurgeOk(channel.number, count))

    def queue_delete(self, channel: "Channel", _: Any, queue: str, if_unused: bool, if_empty: bool) -> None:
        self.checks.may(channel.connection, CONFIGURE, "queue", queue)
        count = 0
        topology = channel.connection.topology
        if queue in topology.queues:
            q = topology.queue(queue, channel.connection)
            checks = q.delete_checks
            if checks and if_unused and q.consumers:
                raise ChannelError(errors.PRECONDITION_FAILED, f"queue '{queue}' in vhost '{topology.vhost}' in use")
            if checks and if_empty and q.has_messages:
                raise ChannelError(errors.PRECONDITION_FAILED,
                                   f"queue '{queue}' in vhost '{topology.vhost}' not empty")
            count = self.delivery.delete_queue(q)
            if not checks:
                count = 0
        channel.reply(QueueDeleteOk(channel.number, count))
