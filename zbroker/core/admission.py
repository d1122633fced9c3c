"""Admission: connections and channels coming and going, and what they leave behind.

Rules of this module:
1. A connection is admitted after its login (``Broker.login``) if its user has
   permissions in the vhost and no connection limit is reached (the node's, the
   vhost's, the user's): RabbitMQ's 530 NOT_ALLOWED texts otherwise.
2. A channel opens on ``channel.open`` with a number 1-65535 not in use, within the
   negotiated ``channel_max`` and the user's ``max-channels``; anything else on a
   channel that is not open is a connection error (504 CHANNEL_ERROR, or 503
   COMMAND_INVALID for a method no client sends).
3. A channel the broker closed (a soft error) discards every frame until the client's
   ``channel.close-ok``; a ``channel.close`` crossing the broker's is answered.
4. A channel that goes cancels its consumers and returns what it held unacked (and what
   an open transaction held) to the queues, in order, redelivered; a connection that
   goes does that for each channel, then deletes its exclusive queues.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Hashable

from zbroker import errors
from zbroker.core.access.access_limits import reached
from zbroker.core.access.limits import Limits
from zbroker.core.access.users import INTERNAL_USER, Users
from zbroker.core.access.vhosts import VirtualHosts
from zbroker.core.management.stats import Stats
from zbroker.core.messaging import transactions
from zbroker.core.messaging.alarms import Alarms
from zbroker.core.messaging.confirms import Confirms
from zbroker.core.messaging.delivery import Delivery
from zbroker.core.messaging.reply_to import DirectReplyTo
from zbroker.core.messaging.session import Channel, Connection, Outbox
from zbroker.core.messaging.timers import Clock
from zbroker.errors import ChannelError, ConnectionError_
from zbroker.methods import ChannelClose, ChannelCloseOk, ChannelFlowOk, ChannelOpenOk, ConnectionClose
from zbroker.methods import Method as M

log = logging.getLogger(__name__)

MAX_CHANNEL = 65535
_CHANNEL_METHODS = (M.CHANNEL_OPEN, M.CHANNEL_CLOSE, M.CHANNEL_CLOSE_OK)


class Admission:
    def __init__(self, clock: Clock, outbox: Outbox, users: Users, vhosts: VirtualHosts, limits: Limits,
                 delivery: Delivery, confirms: Confirms, alarms: Alarms, reply_to: DirectReplyTo,
                 stats: Stats, is_client_command: Callable[[int], bool]) -> None:
        self.clock = clock
        self.outbox = outbox
        self.users = users
        self.vhosts = vhosts
        self.limits = limits
        self.delivery = delivery
        self.confirms = confirms
        self.alarms = alarms
        self.reply_to = reply_to
        self.stats = stats
        self.is_client_command = is_client_command
        self.connections: dict[Hashable, Connection] = {}

    # -- connections ---------------------------------------------------------------------

    def open_connection(self, conn_id: Hashable, heartbeat: int, virtual_host: str, username: str,
                        client_properties: dict, delivery_window: int) -> Connection | None:
        """Rule 1: the new connection, or None with its close queued."""
        topology = self.vhosts.get(virtual_host)
        if topology is None:
            self.refuse(conn_id, errors.NOT_ALLOWED, f"vhost {virtual_host} not found")
            return None
        refusal = self._vhost_refusal(username, virtual_host)
        if refusal is not None:
            log.warning("connection refused: %s", refusal)
            self.refuse(conn_id, errors.NOT_ALLOWED, refusal)
            return None
        limit = self.limits.max_connections
        if self.limits.reached(limit, len(self.connections)):
            text = f"connection refused: node connection limit ({limit}) is reached"
            self.limits.report("connections", text)
            self.refuse(conn_id, errors.NOT_ALLOWED, text)
            return None
        self.limits.clear("connections")
        conn = Connection(conn_id, self.outbox, heartbeat, virtual_host, client_properties)
        conn.unread_limit = delivery_window
        conn.clock = self.clock
        conn.connected_at = self.clock.now
        conn.user = username or INTERNAL_USER
        user = self.users.users.get(username)
        conn.impersonator = not username or (user is not None and "impersonator" in user.tags)
        conn.access_key = (username, virtual_host)
        conn.topology = topology
        self.connections[conn_id] = conn
        log.info("connection %s opened (%s)", conn.name,
                 client_properties.get("connection_name") or client_properties.get("product", "client"))
        return conn

    def refuse(self, conn_id: Hashable, code: int, detail: str) -> None:
        """Close a connection (known or not) with ``code``: release it, tell the peer."""
        conn = self.connections.get(conn_id)
        if conn is not None:
            self.drop_connection(conn)
        self.outbox.put(conn_id, ConnectionClose(code, errors.reply_text(code, detail)))

    def _vhost_refusal(self, username: str, vhost: str) -> str | None:
        """Why ``username`` may not open a connection to ``vhost`` (its permissions, the
        vhost's and the user's connection limits: ``access_limits.py``), or None."""
        users = self.users
        if users.permissions.get(username, vhost) is None:
            return f"access to vhost '{vhost}' refused for user '{username}'"
        in_vhost = sum(1 for conn in self.connections.values() if conn.virtual_host == vhost)
        limit = reached(users.limits.vhosts.get(vhost), "max-connections", in_vhost)
        if limit is not None:
            return f"access to vhost '{vhost}' refused for user '{username}': connection limit ({limit}) is reached"
        mine = sum(1 for conn in self.connections.values() if conn.user == username)
        limit = reached(users.limits.users.get(username), "max-connections", mine)
        if limit is not None:
            return f"connection refused for user '{username}': user connection limit ({limit}) is reached"
        return None

    def drop_connection(self, conn: Connection) -> None:
        """Rule 4, for a whole connection."""
        self.connections.pop(conn.conn_id, None)
        self.alarms.forget(conn)
        for channel in list(conn.channels.values()):
            self.release_channel(channel)
        for queue in list(conn.exclusive_queues):
            self.delivery.delete_queue(queue)

    def close_for(self, conn: Connection, code: int, text: str, detail: str | None = None) -> None:
        """A hard error: the connection is closed with ``code`` and ``text`` (logged with
        ``detail``, the text without its code's name, where the caller has it)."""
        log.warning("connection %s closed: %s", conn.name, detail or text)
        self.drop_connection(conn)
        conn.send(ConnectionClose(code, text))

    # -- channels ------------------------------------------------------------------------

    def not_open(self, conn: Connection, op: int, number: int) -> None:
        """Commands for a channel that is not open: open it, or finish closing it (rules 2-3)."""
        if number in conn.closing_channels:
            if op == M.CHANNEL_CLOSE_OK:
                conn.closing_channels.discard(number)
            elif op == M.CHANNEL_CLOSE:  # both sides closed at once
                conn.closing_channels.discard(number)
                conn.send(ChannelCloseOk(number))
            return  # anything else on a closing channel is discarded
        if op == M.CHANNEL_OPEN and 1 <= number <= MAX_CHANNEL:
            text = self._channel_refusal(conn)
            if text is not None:
                self.close_for(conn, errors.NOT_ALLOWED, errors.reply_text(errors.NOT_ALLOWED, text), text)
                return
            conn.channels[number] = Channel(number, conn)
            conn.send(ChannelOpenOk(number))
            return
        if not self.is_client_command(op) and op not in _CHANNEL_METHODS:
            detail = f"{M(op).name} is not a client command"
            code = errors.COMMAND_INVALID
        else:
            detail = "expected 'channel.open'" if op != M.CHANNEL_OPEN else f"invalid channel number {number}"
            code = errors.CHANNEL_ERROR
        self.close_for(conn, code, errors.reply_text(code, detail), detail)

    def _channel_refusal(self, conn: Connection) -> str | None:
        """Why ``conn`` may not open one more channel (``limits.py``, ``access_limits.py``)."""
        channel_max = self.limits.channel_max
        if self.limits.reached(channel_max, len(conn.channels)):
            return (f"number of channels opened ({len(conn.channels)}) has reached the "
                    f"negotiated channel_max ({channel_max})")
        user_limits = self.users.limits.users.get(conn.user)
        if user_limits:
            count = sum(len(c.channels) for c in self.connections.values() if c.user == conn.user)
            limit = reached(user_limits, "max-channels", count)
            if limit is not None:
                return (f"number of channels opened for user '{conn.user}' has reached the maximum allowed "
                        f"user limit of {limit}")
        return None

    def channel_method(self, channel: Channel, op: int) -> None:
        """channel.close, or a channel method out of place on an open channel."""
        if op == M.CHANNEL_CLOSE:
            self.release_channel(channel)
            channel.send(ChannelCloseOk(channel.number))
        elif op == M.CHANNEL_OPEN:
            raise ConnectionError_(errors.CHANNEL_ERROR, "second 'channel.open' seen")
        elif op == M.CHANNEL_CLOSE_OK:  # for a channel the broker did not close
            raise ConnectionError_(errors.CHANNEL_ERROR, "unexpected 'channel.close-ok'")
        else:
            raise ConnectionError_(errors.COMMAND_INVALID, f"{M(op).name} is not a client command")

    def channel_flow(self, channel: Channel, _: Any, active: bool) -> None:
        if not active:
            raise ConnectionError_(errors.NOT_IMPLEMENTED, "active=false")
        channel.reply(ChannelFlowOk(channel.number, True))

    def close_channel(self, channel: Channel, exc: ChannelError) -> None:
        """A soft error: the channel is closed with its code (rule 3)."""
        conn = channel.connection
        log.warning("channel %d of connection %s closed: %s", channel.number, conn.name, exc.text)
        self.release_channel(channel)
        conn.closing_channels.add(channel.number)
        conn.send(ChannelClose(channel.number, exc.code, exc.text))

    def release_channel(self, channel: Channel) -> None:
        """Rule 4: cancel the channel's consumers and requeue what it held unacked."""
        channel.connection.channels.pop(channel.number, None)
        channel.deleted = True
        consumers = list(channel.consumers.values())
        channel.consumers.clear()
        for consumer in consumers:
            consumer.queue.remove_consumer(consumer)
        held = list(transactions.held_deliveries(channel))
        channel.tx = None
        self.reply_to.release(channel)
        self.delivery.requeue(channel.take_all_unacked() + held)
        for consumer in consumers:
            self.delivery.consumer_left(consumer.queue)
        self.confirms.forget(channel)
        self.stats.retire(channel)
