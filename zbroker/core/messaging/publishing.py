"""Publishing: a message from a channel (or an operator) to the queues its exchange
routes it to, with the checks RabbitMQ makes on the way.

Rules of this module:
1. Checks, in RabbitMQ's order: write permission on the exchange, the exchange exists
   and is not internal, the body fits ``max_body_bytes``, topic permissions of every
   routing key, a valid ``expiration``, a ``user_id`` equal to the connection's user
   (unless it is an ``impersonator``, or the broker's own connection).
2. ``reply_to = amq.rabbitmq.reply-to`` becomes the channel's direct reply-to address;
   a publish to such an address goes straight to the waiting channel, never a queue.
3. CC and BCC headers add routing keys; BCC never travels with the message.
4. Unroutable: a ``mandatory`` publish comes back as ``basic.return`` (312 NO_ROUTE),
   others are dropped and counted. So does a ``mandatory`` publish that only a delayed
   exchange's hold took, though it is delivered after its delay (``delayed.py`` rule 6).
5. A publisher is remembered (``Connection.has_published``) so that a resource alarm
   blocks it (``alarms.py``), and only it.
6. The per-message path is this module's ``basic_publish``: it reads the permission
   table directly and builds nothing it does not need.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Collection

from zbroker import errors
from zbroker.core.access.checks import AccessChecks
from zbroker.core.access.permissions import WRITE
from zbroker.core.messaging.alarms import Alarms
from zbroker.core.messaging.arguments import REPLY_TO, parse_expiration, precondition
from zbroker.core.messaging.confirms import Confirms
from zbroker.core.messaging.delayed import held_only
from zbroker.core.messaging.delivery import Delivery
from zbroker.core.messaging.exchanges import Exchange, TopicExchange
from zbroker.core.messaging.message import published
from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.reply_to import REPLY_PREFIX, DirectReplyTo
from zbroker.core.messaging.timers import Clock
from zbroker.core.messaging.topology import Topology, header_routes
from zbroker.errors import ChannelError
from zbroker.methods import BasicReturn, ConfirmSelectOk  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from zbroker.core.messaging.session import Channel, Connection

_new = tuple.__new__
_RETURN = BasicReturn.METHOD


class Publishing:
    def __init__(self, clock: Clock, checks: AccessChecks, delivery: Delivery, confirms: Confirms,
                 alarms: Alarms, reply_to: DirectReplyTo, max_body_bytes: int) -> None:
        self.clock = clock
        self.checks = checks
        self.delivery = delivery
        self.confirms = confirms
        self.alarms = alarms
        self.reply_to = reply_to
        self.max_body_bytes = max_body_bytes

    def basic_publish(self, channel: "Channel", body: Any, exchange: str, routing_key: str,
                      mandatory: bool, properties: dict) -> None:
        conn = channel.connection
        if self.alarms.active or not conn.has_published:
            self.publisher(conn)
        seq = self.confirms.published(channel) if channel.confirm else 0
        channel.published += 1
        checks = self.checks
        permission = checks.permissions.get(conn.access_key)  # (``checks.may``, inlined: once per message)
        if permission is None or not permission.writes_all:
            checks.may(conn, WRITE, "exchange", exchange)
        topology = conn.topology
        ex = topology.exchanges.get(exchange)
        if ex is None or ex.internal or len(body) > self.max_body_bytes:
            ex = self.publishable(topology, exchange, body)  # (raises the refusal)
        if checks.topics and type(ex) is TopicExchange:
            checks.may_publish_topic(conn, exchange, routing_key, properties)
        ex.published_in += 1
        ttl = None
        if properties:
            expiration = properties.get("expiration")
            if expiration is not None:
                ttl = parse_expiration(expiration)
            user_id = properties.get("user_id")
            if user_id is not None and user_id != conn.user and not conn.impersonator:  # RabbitMQ's validated user-id
                raise precondition(f"user_id property set to '{user_id}' but authenticated user was "
                                   f"'{conn.user}'")
            if properties.get("reply_to") == REPLY_TO:
                properties = self.reply_to.address(channel, properties)
        if exchange == "" and routing_key.startswith(REPLY_PREFIX):
            if self.reply_to.deliver(routing_key, properties, body, conn.virtual_host):
                return
            if not mandatory:
                channel.dropped += 1
                return
            queues: Collection[QueueType] = ()
        elif properties and properties.get("headers") and (
                "CC" in properties["headers"] or "BCC" in properties["headers"]):
            queues, properties = self._sender_selected(topology, ex, routing_key, properties)
        else:
            queues = topology.route(ex, routing_key, properties)
        if queues:
            ex.published_out += len(queues)
            delivery = self.delivery
            delivery.seq += 1
            message = published(delivery.seq, exchange, routing_key, properties, body, self.clock.now, ttl)
            delivery.enqueue(queues, message, channel if channel.confirm else None, seq)
            if mandatory and topology.delayed_exchanges and held_only(queues):
                self._return(channel, exchange, routing_key, properties, body)
        elif not mandatory:
            channel.dropped += 1
        else:
            self._return(channel, exchange, routing_key, properties, body)

    @staticmethod
    def _return(channel: "Channel", exchange: str, routing_key: str, properties: dict, body: Any) -> None:
        """A ``mandatory`` publish no queue took comes back (rule 4)."""
        channel.returned += 1
        channel.send(_new(BasicReturn, (_RETURN, channel.number, errors.NO_ROUTE, "NO_ROUTE", exchange,
                                        routing_key, properties)), body)

    def publisher(self, conn: "Connection") -> None:
        """``conn`` publishes: remember it, and block it while an alarm is on (rule 5)."""
        conn.has_published = True
        if self.alarms.active:
            self.alarms.block(conn)

    def _sender_selected(self, topology: Topology, exchange: Exchange, routing_key: str,
                         properties: dict) -> tuple[list[QueueType], dict]:
        """CC/BCC routing keys (``topology.header_routes``); the BCC header does not travel."""
        cc, bcc = header_routes(properties["headers"])
        queues = topology.route_keys(exchange, [routing_key, *cc, *bcc], properties)
        if "BCC" in properties["headers"]:
            headers = {k: v for k, v in properties["headers"].items() if k != "BCC"}
            properties = {**properties, "headers": headers}
        return queues, properties

    def publishable(self, topology: Topology, exchange: str, body: Any) -> Exchange:
        """The exchange a publish names, checked: it exists, is not internal, the body fits."""
        ex = topology.exchanges.get(exchange)
        if ex is None:
            raise ChannelError(errors.NOT_FOUND, f"no exchange '{exchange}' in vhost '{topology.vhost}'")
        if ex.internal:
            raise ChannelError(errors.ACCESS_REFUSED,
                               f"cannot publish to internal exchange '{exchange}' in vhost '{topology.vhost}'")
        if len(body) > self.max_body_bytes:
            raise ChannelError(errors.PRECONDITION_FAILED,
                               f"message size {len(body)} is larger than configured max size {self.max_body_bytes}")
        return ex

    def check(self, channel: "Channel", fields: Any, body: Any) -> None:
        """What a transaction checks of a publish when it arrives (transactions rule 1)."""
        conn = channel.connection
        self.checks.may(conn, WRITE, "exchange", fields[1])
        ex = self.publishable(conn.topology, fields[1], body)
        if self.checks.topics and type(ex) is TopicExchange:
            self.checks.may_publish_topic(conn, fields[1], fields[2], fields[4])
        expiration = fields[4].get("expiration")
        if expiration is not None:
            parse_expiration(expiration)

    def confirm_select(self, channel: "Channel", _: Any) -> None:
        if channel.tx is not None:
            raise precondition("cannot switch from tx to confirm mode")
        channel.confirm = True
        channel.reply(ConfirmSelectOk(channel.number))

    def operator_publish(self, topology: Topology, exchange: str, routing_key: str, properties: dict,
                         body: bytes) -> bool:
        """Publish as an operator (no channel, no confirm); True if it reached a queue (a
        delayed exchange's hold is none: RabbitMQ answers ``routed: false``)."""
        ex = self.publishable(topology, exchange, body)
        expiration = properties.get("expiration")
        ttl = parse_expiration(expiration) if expiration is not None else None
        queues = list(topology.route(ex, routing_key, properties))
        ex.published_in += 1
        if not queues:
            return False
        ex.published_out += len(queues)
        message = published(self.delivery.next_seq(), exchange, routing_key, properties, body, self.clock.now, ttl)
        self.delivery.enqueue(queues, message, None, 0)
        return not held_only(queues)
