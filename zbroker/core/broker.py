"""The broker's semantics as a pure state machine: typed commands and ``now`` in, events
out, timers through ``tick(now)`` and ``next_deadline()``.

A wire (``zbroker/wires/``) turns its frames into calls and the events back into frames:
- ``open_connection(conn_id, now, ...)`` once its handshake is done, then
  ``command(conn, method, fields, body, now)`` for each command (``zbroker/methods.py``
  names them; ``fields`` are in the zbroker command table's order);
- ``connection_lost(conn_id, now)`` when its transport died, ``close_connection`` when
  the peer broke the wire's own rules;
- each loop pass: ``tick(now)``, ``run_pending(now)``, ``commit(now)``, then it sends
  what ``outbox`` holds. Its poll timeout is ``next_deadline()``.
Nothing here touches a socket, reads a clock or starts a thread; ``now`` (seconds, wall
clock, since a recovered message's expiry must survive a restart) comes with every call.

Who does what: ``topology.py`` declares and routes, ``queues.py`` owns messages and picks
consumers, ``consumers.py`` keeps credit, ``confirms.py`` answers publishers,
``durability.py`` talks to the store, ``deadletter.py`` shapes dead letters,
``timers.py`` keeps deadlines, ``reply_to.py`` and ``transactions.py`` are what their
names say. This module applies commands and connects them.

Error handling, at this one boundary:
- ``ChannelError`` (a soft rule, e.g. 404 on a passive declare): the channel is closed
  with the code; frames on it are discarded until the client's CHANNEL_CLOSE_OK.
- ``ConnectionError_`` (a hard rule, e.g. an unopened channel): the connection is closed.
- Anything else is a bug in the broker: logged with its traceback, and that one
  connection closed with 541 INTERNAL_ERROR. The timer, commit and connection-loss entry
  points are guarded alike, so one bad case can never stop the broker loop.
"""
from __future__ import annotations

import base64
import logging
import secrets
from typing import Any, Callable, Hashable, Iterable

from zbroker import errors
from zbroker.core.messaging import transactions
from zbroker.core.messaging.alarms import Alarms
from zbroker.core.messaging import consumer_timeout
from zbroker.core.messaging.arguments import REPLY_TO, consumer_arguments, parse_expiration, precondition
from zbroker.core.messaging.confirms import Confirms
from zbroker.core.messaging.consumers import Consumer, Unacked
from zbroker.core.messaging.deadletter import DELIVERY_LIMIT, EXPIRED, MAXLEN, REJECTED, DeadLetters
from zbroker.core.durability.persistence import PERSISTENT, Durability
from zbroker.core.messaging.exchanges import Exchange, TopicExchange
from zbroker.core.durability.journal import QueueJournal
from zbroker.core.access.limits import Limits
from zbroker.core.messaging.message import Message
from zbroker.core.messaging.queues import Queue
from zbroker.core.messaging.reply_to import REPLY_PREFIX, DirectReplyTo, is_reply_name
from zbroker.core.messaging.session import Channel, Connection, Outbox
from zbroker.core.management.stats import Stats
from zbroker.core.messaging.timers import Timers
from zbroker.core.access.access_limits import reached
from zbroker.core.access.permissions import CONFIGURE, DEFAULT_EXCHANGE_NAME, READ, WRITE, check, check_any, check_topic
from zbroker.core.messaging.topology import DEFAULT_EXCHANGES, Topology, check_name, header_routes, server_queue_name
from zbroker.core.access.users import Users
from zbroker.core.access.vhosts import VirtualHosts
from zbroker.errors import BrokerError, ChannelError, ConnectionError_
from zbroker.methods import Method as M
from zbroker.storage.memory import MemoryStore
from zbroker.storage.store import MessageStore

log = logging.getLogger(__name__)

#: RabbitMQ's default heartbeat timeout, in seconds.
DEFAULT_HEARTBEAT_S = 60
#: Largest body accepted. RabbitMQ 3.10 allows 128 MiB (its max_message_size default
#: before 3.13); we keep that so programs written for it keep working.
DEFAULT_MAX_BODY_BYTES = 128 * 1024 * 1024
MAX_CHANNEL = 65535
#: Deliveries one queue makes per dispatch before yielding to the rest of the loop.
DISPATCH_BATCH = 1000

#: Hot-path method numbers as plain ints (an IntEnum member look-up costs ~90 ns on 3.11).
_CONNECTION_CLOSE, _CONNECTION_CLOSE_OK = int(M.CONNECTION_CLOSE), int(M.CONNECTION_CLOSE_OK)
_UPDATE_SECRET = int(M.CONNECTION_UPDATE_SECRET)
_GET_OK, _GET_EMPTY, _RETURN = int(M.BASIC_GET_OK), int(M.BASIC_GET_EMPTY), int(M.BASIC_RETURN)


def consumer_tag() -> str:
    return "amq.ctag-" + base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


class Broker:
    def __init__(self, heartbeat: int = DEFAULT_HEARTBEAT_S,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 name_source: Callable[[], str] = server_queue_name,
                 store: MessageStore | None = None, now: float = 0.0,
                 limits: Limits | None = None,
                 consumer_timeout_ms: int = consumer_timeout.DEFAULT_CONSUMER_TIMEOUT_MS) -> None:
        self.heartbeat = heartbeat
        #: RabbitMQ's consumer_timeout: the server's default (``consumer_timeout.py``).
        self.consumer_timeout_ms = consumer_timeout_ms
        self.max_body_bytes = max_body_bytes
        self.limits = limits or Limits()
        self.now = now
        self.store = store if store is not None else MemoryStore()
        self.users = Users()
        #: Every vhost's topology (``vhosts.py``); ``topology`` is the default vhost's.
        self.vhosts = VirtualHosts(self.users, lambda vhost, counts: Topology(
            name_source, lambda queue_id: QueueJournal(self.store, queue_id, now), self.limits,
            vhost=vhost, counts=counts, users=self.users))
        self.topology = self.vhosts.default
        self._permissions = self.users.permissions.table
        self._topics = self.users.permissions.topics
        self.outbox = Outbox()
        self.connections: dict[Hashable, Connection] = {}
        self.confirms = Confirms()
        self.timers: Timers[Queue] = Timers()
        #: Channels holding unacked deliveries, by when one may time out.
        self.ack_timers: Timers[Channel] = Timers()
        self.durability = Durability(self.store, self.vhosts, self.confirms, self._all_unacked)
        self._publish_seq = 0
        #: Queues that stopped at DISPATCH_BATCH with deliverable messages left.
        self._pending_dispatch: dict[Queue, None] = {}
        self.reply_to = DirectReplyTo()
        self.alarms = Alarms()
        self.stats = Stats(self, now)
        #: This broker's name in management views (the server sets ``zbroker@<host>``).
        self.node_name = "zbroker@localhost"
        self.dead_letters = DeadLetters(self._next_seq,
                                        lambda queues, message: self._enqueue(queues, message, None, 0))
        self._channel_ops: dict[int, Callable[..., None]] = {
            M.EXCHANGE_DECLARE: self._exchange_declare,
            M.EXCHANGE_DELETE: self._exchange_delete,
            M.EXCHANGE_BIND: self._exchange_bind,
            M.EXCHANGE_UNBIND: self._exchange_unbind,
            M.QUEUE_DECLARE: self._queue_declare,
            M.QUEUE_BIND: self._queue_bind,
            M.QUEUE_UNBIND: self._queue_unbind,
            M.QUEUE_PURGE: self._queue_purge,
            M.QUEUE_DELETE: self._queue_delete,
            M.BASIC_QOS: self._basic_qos,
            M.BASIC_CONSUME: self._basic_consume,
            M.BASIC_CANCEL: self._basic_cancel,
            M.BASIC_PUBLISH: self._basic_publish,
            M.BASIC_GET: self._basic_get,
            M.BASIC_ACK: self._basic_ack,
            M.BASIC_NACK: self._basic_nack,
            M.BASIC_REJECT: self._basic_reject,
            M.BASIC_RECOVER: self._basic_recover,
            M.CONFIRM_SELECT: self._confirm_select,
            M.CHANNEL_FLOW: self._channel_flow,
            M.TX_SELECT: self._tx_select,
            M.TX_COMMIT: self._tx_commit,
            M.TX_ROLLBACK: self._tx_rollback,
        }
        self._publish_seq = self.durability.recover(self.store.open(), now)
        for queue in list(self.vhosts.queues()):
            queue.last_used = now
            if queue.settings.limited:  # limits an older zbroker stored but did not apply
                self._guarded(self._after_enqueue, queue)
            elif queue.timed:
                self.timers.watch(queue)

    # -- entry points ----------------------------------------------------------------

    def login(self, username: str, password: str, peer_host: str | None, now: float,
              mechanism: str = "PLAIN") -> bool:
        """Check a login, the one path for every wire (``users.py``: the password, the
        loopback rule for ``guest``, the failed-login throttle). False: refused, and the
        core logged why; the wire refuses it its own way (RabbitMQ's 403 text is
        ``users.LOGIN_REFUSED``)."""
        self.now = now
        return self.users.login(username, password, peer_host, now, mechanism) is None

    def open_connection(self, conn_id: Hashable, now: float, heartbeat: int | None,
                        virtual_host: str, username: str, client_properties: dict,
                        delivery_window: int = 0, peer_host: str | None = None) -> Connection | None:
        """A wire finished its handshake, ``username``'s login accepted (``login``); None
        (and a close event) if the connection is refused (vhost, permissions, limits).

        ``delivery_window``: delivery bytes the peer may hold unread before deliveries to
        it pause (0: none; the wire bounds the peer another way, e.g. TCP). ``peer_host``:
        where it comes from (None: a local transport).
        """
        self.now = now
        topology = self.vhosts.get(virtual_host)
        if topology is None:
            self.close_connection(conn_id, errors.NOT_ALLOWED, f"vhost {virtual_host} not found")
            return None
        refusal = self._vhost_refusal(username, virtual_host)
        if refusal is not None:
            log.warning("connection refused: %s", refusal)
            self.close_connection(conn_id, errors.NOT_ALLOWED, refusal)
            return None
        limit = self.limits.max_connections
        if self.limits.reached(limit, len(self.connections)):
            text = f"connection refused: node connection limit ({limit}) is reached"
            self.limits.report("connections", text)
            self.close_connection(conn_id, errors.NOT_ALLOWED, text)
            return None
        self.limits.clear("connections")
        negotiated = self.heartbeat if heartbeat is None else heartbeat
        conn = Connection(conn_id, self.outbox, negotiated, virtual_host, client_properties)
        conn.unread_limit = delivery_window
        conn.clock = self
        conn.connected_at = now
        conn.user = username
        conn.access_key = (username, virtual_host)
        conn.topology = topology
        self.connections[conn_id] = conn
        log.info("connection %s opened (%s)", conn.name,
                 client_properties.get("connection_name") or client_properties.get("product", "client"))
        return conn

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

    def command(self, conn: Connection, op: int, fields: Any, body: Any, now: float,
                nowait: bool = False) -> None:
        """Apply one command of an open connection (channel commands, connection.close
        and connection.update-secret). ``nowait``: the client asked for no answer (AMQP's
        no-wait bit): the command's ``-ok`` is not sent, anything else still is."""
        self.now = now
        try:
            if op == _CONNECTION_CLOSE:
                log.info("connection %s closed by client (%s %s)", conn.name, *fields)
                self._drop_connection(conn)
                conn.send((_CONNECTION_CLOSE_OK,))
            elif op == _UPDATE_SECRET:
                # As RabbitMQ's internal user database: its credentials never expire, so
                # the connection keeps its user and the secret is not checked
                # (rabbit_access_control:update_state keeps a backend whose expiry is
                # ``never``); the answer is update-secret-ok and this line.
                log.info("connection %s: user '%s' updated secret, reason: %s", conn.name, conn.user, fields[1])
                conn.send((M.CONNECTION_UPDATE_SECRET_OK,))
            elif op != _CONNECTION_CLOSE_OK:
                self._channel_command(conn, op, fields, body, nowait)
        except Exception:
            log.exception("internal error handling a command from %s", conn.name)
            self.close_connection(conn.conn_id, errors.INTERNAL_ERROR, "internal error")

    def close_connection(self, conn_id: Hashable, code: int, detail: str) -> None:
        """Close a connection (known or not) with ``code``: release it, tell the peer."""
        conn = self.connections.get(conn_id)
        if conn is not None:
            self._guarded(self._drop_connection, conn)
        self.outbox.put(conn_id, (M.CONNECTION_CLOSE, code, errors.reply_text(code, detail)))

    def channel_error(self, conn: Connection, number: int, code: int, detail: str) -> None:
        """A wire found a soft error on an open channel before the core saw the command
        (an AMQP content header announcing too large a body): close that channel."""
        channel = conn.channels.get(number)
        if channel is not None:
            self._guarded(self._close_channel, channel, ChannelError(code, detail))

    def connection_lost(self, conn_id: Hashable, now: float, reason: str = "transport closed") -> None:
        """The transport died: release everything the connection held, send it nothing."""
        self.now = now
        conn = self.connections.get(conn_id)
        if conn is not None:
            log.info("connection %s lost: %s", conn.name, reason)
            self._guarded(self._drop_connection, conn)

    def tick(self, now: float) -> None:
        """Act on what is due: expire messages, delete unused queues (``x-expires``)."""
        self.now = now
        for queue in self.timers.due(now):
            if not queue.deleted:
                self._guarded(self._timer, queue)
        for channel in self.ack_timers.due(now):
            if not channel.deleted:
                self._guarded(self._ack_timer, channel)
        if now >= self.stats.next_sample:
            self._guarded(self.stats.tick, now)

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do (seconds, as ``now``), or None."""
        soonest = self.stats.next_sample
        for due in (self.timers.next_deadline(), self.ack_timers.next_deadline()):
            if due is not None and due < soonest:
                soonest = due
        return soonest

    def commit(self, now: float | None = None) -> None:
        """Make this pass's durable changes durable, then answer the publishers waiting.

        The wire's loop calls it once per pass, before sending anything.
        """
        if now is not None:
            self.now = now
        self._guarded(self.durability.commit)

    def after_input(self) -> None:
        """A batch of input was applied: answer publishers now if nothing waits for the disk."""
        if self.confirms and not self.store.needs_sync:
            self._guarded(self.confirms.flush)

    @property
    def has_pending_work(self) -> bool:
        return bool(self._pending_dispatch)

    def run_pending(self, now: float | None = None) -> None:
        """Continue dispatches cut short by DISPATCH_BATCH; the loop calls it each pass."""
        if now is not None:
            self.now = now
        pending, self._pending_dispatch = self._pending_dispatch, {}
        for queue in pending:
            if not queue.deleted:
                self._guarded(self._dispatch, queue)

    def set_pipe_full(self, conn_id: Hashable, full: bool) -> None:
        """The peer's pipe filled up (True) or drained (False): stop or resume its deliveries."""
        conn = self.connections.get(conn_id)
        if conn is None or conn.pipe_full == full:
            return
        conn.pipe_full = full
        self._update_blocked(conn)

    def deliveries_read(self, conn_id: Hashable, nbytes: int) -> None:
        """The peer reports ``nbytes`` of its delivery window read: it may get more."""
        conn = self.connections.get(conn_id)
        if conn is None:
            return
        conn.unread = max(0, conn.unread - nbytes)
        self._update_blocked(conn)

    def set_alarm(self, resource: str, active: bool, now: float) -> None:
        """A resource alarm went on or off (``alarms.py``): block or release publishers."""
        self.now = now
        self.alarms.set(resource, active, self.connections.values())

    def _update_blocked(self, conn: Connection) -> None:
        if conn.update_blocked():
            for channel in list(conn.channels.values()):
                self._guarded(self._dispatch_consumers_of, channel)

    def shutdown(self) -> None:
        """Tell every client the broker is going away (320, as RabbitMQ does)."""
        for conn_id in list(self.connections):
            self.close_connection(conn_id, errors.CONNECTION_FORCED,
                                  "broker forced connection closure with reason 'shutdown'")

    def close(self) -> None:
        """Commit and release the store (the data directory's lock with it)."""
        try:
            self.durability.commit()
        finally:
            self.store.close()

    # -- management (``management.py`` calls these; no channel is involved) ----------------

    def purge(self, queue: Queue) -> int:
        """Remove every ready message of ``queue`` (unacked ones stay with their holders)."""
        return queue.purge()

    def delete(self, queue: Queue) -> int:
        """Delete ``queue``, cancelling its consumers as a client's delete does."""
        return self._delete_queue(queue)

    def add_vhost(self, name: str, description: str = "", tags: list[str] | None = None) -> Topology:
        return self.vhosts.add(name, description, tags)

    def delete_vhost(self, name: str) -> None:
        """Delete a vhost: its connections are closed (320), its queues deleted with their
        messages, then it and what names it are gone (``vhosts.py``)."""
        topology = self.vhosts.get(name)
        if topology is None or topology is self.topology:
            self.vhosts.remove(name)  # raises the refusal
        for conn in [c for c in self.connections.values() if c.topology is topology]:
            log.info("connection %s closed: its vhost '%s' is deleted", conn.name, name)
            self.close_connection(conn.conn_id, errors.CONNECTION_FORCED, f"vhost '{name}' is deleted")
        for queue in list(topology.queues.values()):
            self._delete_queue(queue)
        for exchange in [n for n in topology.exchanges if n and n not in DEFAULT_EXCHANGES]:
            topology.delete_exchange(exchange, False)
        self.vhosts.remove(name)

    def force_close(self, conn: Connection, reason: str) -> None:
        """Close a connection on an operator's request: RabbitMQ's 320 CONNECTION_FORCED."""
        log.info("connection %s closed by an operator: %s", conn.name, reason)
        self.close_connection(conn.conn_id, errors.CONNECTION_FORCED,
                              f"broker forced connection closure with reason '{reason}'")

    def get(self, queue: Queue, count: int, settle: str) -> list[tuple[Message, int]]:
        """Take up to ``count`` messages (with the count left after each) and settle them
        at once: ``requeue`` puts them back (redelivered), ``ack`` removes them,
        ``reject`` dead-letters them (RabbitMQ's management "get messages" ack modes)."""
        if queue.due(self.now):
            self._expire(queue)
        taken: list[tuple[Message, int]] = []
        while len(taken) < count and queue.has_messages:
            message = queue.take(False)
            taken.append((message, queue.message_count))
        entries = [Unacked(queue, message, None, 0) for message, _ in taken]
        if settle == "requeue":
            self._requeue(entries)
        elif settle == "ack":
            for entry in entries:
                self._forget(entry)
        else:
            self._reject(entries)
        return taken

    def publish(self, exchange: str, routing_key: str, properties: dict, body: bytes,
                topology: Topology | None = None) -> bool:
        """Publish as an operator (no channel, no confirm) in ``topology`` (a vhost's; the
        default one's if None); True if it reached a queue."""
        topology = topology or self.topology
        ex = self._publishable(topology, exchange, body)
        expiration = properties.get("expiration")
        ttl = parse_expiration(expiration) if expiration is not None else None
        queues = list(topology.route(ex, routing_key, properties))
        ex.published_in += 1
        if not queues:
            return False
        ex.published_out += len(queues)
        self._publish_seq += 1
        self._enqueue(queues, Message(self._publish_seq, exchange, routing_key, properties, body,
                                      self.now, ttl, len(body)), None, 0)
        return True

    def conn_ids(self) -> list[Hashable]:
        return list(self.connections)

    def _guarded(self, action: Callable[..., Any], *args: Any) -> None:
        """Run an entry point's work; a bug is logged, never allowed to stop the loop."""
        try:
            action(*args)
        except Exception:
            log.exception("internal error in %s", getattr(action, "__name__", action))

    def _all_unacked(self) -> Iterable[Unacked]:
        for conn in self.connections.values():
            for channel in conn.channels.values():
                yield from channel.unacked.values()
                yield from transactions.held_deliveries(channel)

    # -- timers ------------------------------------------------------------------------

    def _timer(self, queue: Queue) -> None:
        now = self.now
        self._expire(queue)
        if queue.unused_since(now):
            log.info("queue '%s' expired: unused for %d ms", queue.name, queue.settings.expires)
            self._delete_queue(queue)
            return
        self.timers.watch(queue)

    def _expire(self, queue: Queue) -> None:
        self._give_up(queue, queue.expire(self.now), EXPIRED)

    def _ack_timer(self, channel: Channel) -> None:
        """The consumer timeout (``consumer_timeout.py``): close the channel if one of its
        deliveries timed out, else look again at its next deadline."""
        due, expired = consumer_timeout.check(channel, self.now, self.consumer_timeout_ms)
        if expired is None:
            self.ack_timers.at(channel, due)
            return
        line, error = consumer_timeout.timed_out(channel, expired, self.consumer_timeout_ms)
        log.warning("%s", line)
        self._close_channel(channel, error)

    # -- connections and channels ------------------------------------------------------

    def _drop_connection(self, conn: Connection) -> None:
        self.connections.pop(conn.conn_id, None)
        self.alarms.forget(conn)
        for channel in list(conn.channels.values()):
            self._release_channel(channel)
        for queue in list(conn.exclusive_queues):
            self._delete_queue(queue)

    def _channel_command(self, conn: Connection, op: int, fields: Any, body: Any, nowait: bool = False) -> None:
        handler = self._channel_ops.get(op)
        number = fields[0] if fields else 0
        channel = conn.channels.get(number)
        if channel is None:
            self._channel_lifecycle(conn, op, number)
            return
        try:
            if handler is not None:
                if channel.tx is not None and op in transactions.HELD:
                    transactions.hold(channel, op, fields, body,
                                      lambda fields_, body_: self._check_publish(channel, fields_, body_))
                elif nowait:
                    channel.nowait = True
                    try:
                        handler(channel, body, *fields[1:])
                    finally:
                        channel.nowait = False
                else:
                    handler(channel, body, *fields[1:])
            elif op == M.CHANNEL_CLOSE:
                self._release_channel(channel)
                channel.reply((M.CHANNEL_CLOSE_OK, number))
            elif op == M.CHANNEL_OPEN:
                raise ConnectionError_(errors.CHANNEL_ERROR, "second 'channel.open' seen")
            elif op == M.CHANNEL_CLOSE_OK:  # for a channel the broker did not close
                raise ConnectionError_(errors.CHANNEL_ERROR, "unexpected 'channel.close-ok'")
            else:
                raise ConnectionError_(errors.COMMAND_INVALID, f"{M(op).name} is not a client command")
        except ChannelError as exc:
            self._close_channel(channel, exc)
        except ConnectionError_ as exc:
            log.warning("connection %s closed: %s", conn.name, exc.text)
            self._drop_connection(conn)
            conn.send((M.CONNECTION_CLOSE, exc.code, exc.text))

    def _close_channel(self, channel: Channel, exc: ChannelError) -> None:
        conn = channel.connection
        log.warning("channel %d of connection %s closed: %s", channel.number, conn.name, exc.text)
        self._release_channel(channel)
        conn.closing_channels.add(channel.number)
        conn.send((M.CHANNEL_CLOSE, channel.number, exc.code, exc.text))

    def _channel_lifecycle(self, conn: Connection, op: int, number: int) -> None:
        """Commands for a channel that is not open: open it, or finish closing it."""
        if number in conn.closing_channels:
            if op == M.CHANNEL_CLOSE_OK:
                conn.closing_channels.discard(number)
            elif op == M.CHANNEL_CLOSE:  # both sides closed at once
                conn.closing_channels.discard(number)
                conn.send((M.CHANNEL_CLOSE_OK, number))
            return  # anything else on a closing channel is discarded
        if op == M.CHANNEL_OPEN and 1 <= number <= MAX_CHANNEL:
            text = self._channel_refusal(conn)
            if text is not None:
                log.warning("connection %s closed: %s", conn.name, text)
                self._drop_connection(conn)
                conn.send((M.CONNECTION_CLOSE, errors.NOT_ALLOWED, errors.reply_text(errors.NOT_ALLOWED, text)))
                return
            conn.channels[number] = Channel(number, conn)
            conn.send((M.CHANNEL_OPEN_OK, number))
            return
        if op not in self._channel_ops and op not in (M.CHANNEL_OPEN, M.CHANNEL_CLOSE, M.CHANNEL_CLOSE_OK):
            detail = f"{M(op).name} is not a client command"
            code = errors.COMMAND_INVALID
        else:
            detail = "expected 'channel.open'" if op != M.CHANNEL_OPEN else f"invalid channel number {number}"
            code = errors.CHANNEL_ERROR
        log.warning("connection %s closed: %s", conn.name, detail)
        self._drop_connection(conn)
        conn.send((M.CONNECTION_CLOSE, code, errors.reply_text(code, detail)))

    def _release_channel(self, channel: Channel) -> None:
        """Cancel the channel's consumers and requeue what it held unacked."""
        channel.connection.channels.pop(channel.number, None)
        channel.deleted = True
        consumers = list(channel.consumers.values())
        channel.consumers.clear()
        for consumer in consumers:
            consumer.queue.remove_consumer(consumer)
        held = list(transactions.held_deliveries(channel))
        channel.tx = None
        self.reply_to.release(channel)
        self._requeue(channel.take_all_unacked() + held)
        for consumer in consumers:
            self._consumer_left(consumer.queue)
        self.confirms.forget(channel)
        self.stats.retire(channel)

    def _consumer_left(self, queue: Queue, holding: bool = False) -> None:
        """A consumer went: delete an auto-delete queue, start x-expires, let the next
        consumer (a new single active one) take the waiting messages.

        ``holding``: the consumer was cancelled with deliveries still unacked on its open
        channel. Then nothing is dispatched now: the next single active consumer starts
        when those are settled or requeued (pika cancels before it closes a channel), so
        it gets the requeued ones first, in order, as with RabbitMQ, whose classic queue
        does not run on basic.cancel."""
        if queue.deleted:
            return
        if queue.unused_auto_delete:
            self._delete_queue(queue)
            return
        if not queue.consumers:
            self._used(queue)
        elif queue.has_messages and not holding:
            self._dispatch(queue)

    def _used(self, queue: Queue) -> None:
        """x-expires counts from the last use: a declare, a get, a consumer leaving."""
        queue.last_used = self.now
        if queue.settings.expires is not None:
            self.timers.watch(queue)

    # -- exchanges, queues, bindings ---------------------------------------------------

    def _may(self, conn: Connection, access: str, kind: str, name: str) -> None:
        """RabbitMQ's 403 unless the connection's user may ``access`` (``permissions.py``)."""
        permission = self._permissions.get(conn.access_key)
        if permission is None or not permission.allows(access, name or DEFAULT_EXCHANGE_NAME):
            check(permission, conn.user, conn.virtual_host, access, kind, name)

    def _may_any(self, conn: Connection, kind: str, name: str) -> None:
        """A passive declare needs any one of the three permissions."""
        check_any(self.users.permissions.table.get(conn.access_key), conn.user,
                  conn.virtual_host, kind, name)

    def _exchange_declare(self, channel: Channel, _: Any, exchange: str, exchange_type: str,
                          passive: bool, durable: bool, auto_delete: bool, internal: bool,
                          arguments: dict) -> None:
        conn = channel.connection
        if exchange and passive:
            self._may_any(conn, "exchange", exchange)
        elif exchange:
            self._may(conn, CONFIGURE, "exchange", exchange)
            alternate = arguments.get("alternate-exchange")
            if isinstance(alternate, str) and exchange not in conn.topology.exchanges:
                self._may(conn, READ, "exchange", exchange)
                self._may(conn, WRITE, "exchange", alternate)
        conn.topology.declare_exchange(exchange, exchange_type, passive, durable, auto_delete,
                                       internal, arguments)
        channel.reply((M.EXCHANGE_DECLARE_OK, channel.number))

    def _exchange_delete(self, channel: Channel, _: Any, exchange: str, if_unused: bool) -> None:
        if exchange and exchange not in DEFAULT_EXCHANGES:  # (those refused below, as RabbitMQ's order)
            self._may(channel.connection, CONFIGURE, "exchange", exchange)
        channel.connection.topology.delete_exchange(exchange, if_unused)
        channel.reply((M.EXCHANGE_DELETE_OK, channel.number))

    def _exchange_bind(self, channel: Channel, _: Any, destination: str, source: str,
                       routing_key: str, arguments: dict) -> None:
        check_name(routing_key, "routing key")
        self._may_bind(channel.connection, "exchange", destination, source, routing_key)
        channel.connection.topology.bind_names(destination, False, source, routing_key, arguments, None)
        channel.reply((M.EXCHANGE_BIND_OK, channel.number))

    def _exchange_unbind(self, channel: Channel, _: Any, destination: str, source: str,
                         routing_key: str, arguments: dict) -> None:
        self._may_bind(channel.connection, "exchange", destination, source, routing_key)
        channel.connection.topology.unbind(destination, False, source, routing_key, arguments, None)
        channel.reply((M.EXCHANGE_UNBIND_OK, channel.number))

    def _queue_declare(self, channel: Channel, _: Any, queue: str, passive: bool, durable: bool,
                       exclusive: bool, auto_delete: bool, arguments: dict) -> None:
        if is_reply_name(queue):
            self.reply_to.declare(channel, queue)
            return
        conn = channel.connection
        server_named = not queue and not passive
        if passive:
            self._may_any(conn, "queue", queue)
        else:
            if server_named:  # the new name is what is checked, as RabbitMQ's
                queue = conn.topology.new_queue_name()
            self._may(conn, CONFIGURE, "queue", queue)
            dlx = arguments.get("x-dead-letter-exchange")
            if isinstance(dlx, str) and queue not in conn.topology.queues:
                self._may(conn, READ, "queue", queue)
                self._may(conn, WRITE, "exchange", dlx)
        q = conn.topology.declare_queue(queue, passive, durable, exclusive, auto_delete, arguments,
                                        conn, server_named)
        self._used(q)
        channel.reply((M.QUEUE_DECLARE_OK, channel.number, q.name, q.message_count, len(q.consumers)))

    def _queue_bind(self, channel: Channel, _: Any, queue: str, exchange: str, routing_key: str,
                    arguments: dict) -> None:
        check_name(routing_key, "routing key")
        self._may_bind(channel.connection, "queue", queue, exchange, routing_key)
        channel.connection.topology.bind_names(queue, True, exchange, routing_key, arguments, channel.connection)
        channel.reply((M.QUEUE_BIND_OK, channel.number))

    def _queue_unbind(self, channel: Channel, _: Any, queue: str, exchange: str, routing_key: str,
                      arguments: dict) -> None:
        self._may_bind(channel.connection, "queue", queue, exchange, routing_key)
        channel.connection.topology.unbind(queue, True, exchange, routing_key, arguments, channel.connection)
        channel.reply((M.QUEUE_UNBIND_OK, channel.number))

    def _may_bind(self, conn: Connection, kind: str, destination: str, source: str, routing_key: str) -> None:
        """(Un)binding writes to the destination and reads the source exchange (and, from a
        topic exchange, the binding key: topic permissions); the default exchange is
        refused after the first check, as RabbitMQ orders them."""
        self._may(conn, WRITE, kind, destination)
        if source:
            self._may(conn, READ, "exchange", source)
            if self._topics and type(conn.topology.exchanges.get(source)) is TopicExchange:
                check_topic(self.users.permissions, conn.user, conn.virtual_host, READ, source, [routing_key])

    def _may_publish_topic(self, conn: Connection, exchange: str, routing_key: str, properties: dict) -> None:
        """A publish to a topic exchange: each of its routing keys (CC and BCC too) must be
        allowed by the user's topic permissions (``permissions.py``)."""
        keys = [routing_key]
        headers = properties.get("headers") if properties else None
        if headers and ("CC" in headers or "BCC" in headers):
            cc, bcc = header_routes(headers)
            keys += cc + bcc
        check_topic(self.users.permissions, conn.user, conn.virtual_host, WRITE, exchange, keys)

    def _queue_purge(self, channel: Channel, _: Any, queue: str) -> None:
        self._may(channel.connection, READ, "queue", queue)
        count = channel.connection.topology.queue(queue, channel.connection).purge()
        channel.reply((M.QUEUE_PURGE_OK, channel.number, count))

    def _queue_delete(self, channel: Channel, _: Any, queue: str, if_unused: bool,
                      if_empty: bool) -> None:
        self._may(channel.connection, CONFIGURE, "queue", queue)
        count = 0
        topology = channel.connection.topology
        if queue in topology.queues:
            q = topology.queue(queue, channel.connection)
            if if_unused and q.consumers:
                raise ChannelError(errors.PRECONDITION_FAILED, f"queue '{queue}' in vhost '{topology.vhost}' in use")
            if if_empty and q.has_messages:
                raise ChannelError(errors.PRECONDITION_FAILED,
                                   f"queue '{queue}' in vhost '{topology.vhost}' not empty")
            count = self._delete_queue(q)
        channel.reply((M.QUEUE_DELETE_OK, channel.number, count))

    def _delete_queue(self, queue: Queue) -> int:
        """Delete a queue and tell its consumers (RabbitMQ's consumer cancel notify)."""
        for consumer in list(queue.consumers):
            queue.remove_consumer(consumer)
            channel = consumer.channel
            if channel.consumers.pop(consumer.tag, None) is not None:
                channel.send((M.BASIC_CANCEL, channel.number, consumer.tag))
        self._pending_dispatch.pop(queue, None)
        return queue.topology.delete_queue(queue)

    # -- consuming ---------------------------------------------------------------------

    def _basic_qos(self, channel: Channel, _: Any, prefetch_size: int, prefetch_count: int,
                   global_qos: bool) -> None:
        if prefetch_size:
            raise ConnectionError_(errors.NOT_IMPLEMENTED, f"prefetch_size!=0 ({prefetch_size})")
        if prefetch_count < 0 or prefetch_count > 65535:
            raise ConnectionError_(errors.SYNTAX_ERROR, f"prefetch_count out of range ({prefetch_count})")
        if global_qos:
            channel.global_prefetch = prefetch_count
        else:
            channel.prefetch_count = prefetch_count
        channel.reply((M.BASIC_QOS_OK, channel.number))
        self._dispatch_consumers_of(channel)

    def _basic_consume(self, channel: Channel, _: Any, queue: str, consumer_tag_: str,
                       auto_ack: bool, exclusive: bool, arguments: dict) -> None:
        tag = consumer_tag_ or consumer_tag()
        if tag in channel.consumers or (channel.reply_to is not None and channel.reply_to[0] == tag):
            raise ConnectionError_(errors.NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'")
        if queue == REPLY_TO:
            self.reply_to.consume(channel, tag, auto_ack)
            return
        self._may(channel.connection, READ, "queue", queue)
        q = channel.connection.topology.queue(queue, channel.connection)
        priority, timeout = consumer_arguments(queue, q.settings.queue_type, arguments, q.topology.vhost)
        if q.has_exclusive_consumer or (exclusive and q.consumers):
            raise ChannelError(errors.ACCESS_REFUSED,
                               f"queue '{queue}' in vhost '{q.topology.vhost}' in exclusive use")
        consumer = Consumer(tag, q, channel, auto_ack, exclusive, channel.prefetch_count, arguments, priority,
                            consumer_timeout.consumer_timeout_ms(q, self.consumer_timeout_ms, timeout))
        channel.consumers[tag] = consumer
        q.add_consumer(consumer)
        self._used(q)
        channel.reply((M.BASIC_CONSUME_OK, channel.number, tag))
        self._dispatch(q)

    def _basic_cancel(self, channel: Channel, _: Any, consumer_tag_: str) -> None:
        self.reply_to.cancel(channel, consumer_tag_)
        consumer = channel.consumers.pop(consumer_tag_, None)
        channel.reply((M.BASIC_CANCEL_OK, channel.number, consumer_tag_))
        if consumer is not None:
            consumer.queue.remove_consumer(consumer)
            self._consumer_left(consumer.queue, holding=consumer.unacked > 0)

    def _basic_get(self, channel: Channel, _: Any, queue: str, auto_ack: bool) -> None:
        self._may(channel.connection, READ, "queue", queue)
        q = channel.connection.topology.queue(queue, channel.connection)
        self._used(q)
        if q.due(self.now):
            self._expire(q)
        if not q.has_messages:
            channel.got_empty += 1
            channel.send((_GET_EMPTY, channel.number))
            return
        message = q.take(auto_ack)  # an auto-acked message leaves the store here
        tag = channel.take_tag()
        if not auto_ack:
            channel.unacked[tag] = Unacked(q, message, None, tag, self.now)
            timeout = consumer_timeout.queue_timeout_ms(q, self.consumer_timeout_ms)
            if timeout:
                self.ack_timers.at(channel, self.now + timeout / 1000)
            channel.got += 1
            q.got += 1
        else:
            channel.got_no_ack += 1
            q.got_no_ack += 1
        if message.redelivered:
            channel.redelivered += 1
            q.redelivered += 1
        channel.send((_GET_OK, channel.number, tag, message.redelivered, message.exchange,
                      message.routing_key, q.message_count, message.properties), message.body)

    # -- publishing --------------------------------------------------------------------

    def _basic_publish(self, channel: Channel, body: Any, exchange: str, routing_key: str,
                       mandatory: bool, properties: dict) -> None:
        if self.alarms.active or not channel.connection.has_published:
            self._publisher(channel.connection)
        seq = self.confirms.published(channel) if channel.confirm else 0
        channel.published += 1
        conn = channel.connection
        permission = self._permissions.get(conn.access_key)  # (``_may``, inlined: once per message)
        if permission is None or not permission.writes_all:
            self._may(conn, WRITE, "exchange", exchange)
        ex = self._publishable(conn.topology, exchange, body)
        if self._topics and type(ex) is TopicExchange:
            self._may_publish_topic(conn, exchange, routing_key, properties)
        ex.published_in += 1
        ttl = None
        if properties:
            expiration = properties.get("expiration")
            if expiration is not None:
                ttl = parse_expiration(expiration)
            user_id = properties.get("user_id")
            if user_id is not None and user_id != channel.connection.user:  # RabbitMQ's validated user-id
                raise precondition(f"user_id property set to '{user_id}' but authenticated user was "
                                   f"'{channel.connection.user}'")
            if properties.get("reply_to") == REPLY_TO:
                properties = self.reply_to.address(channel, properties)
        if exchange == "" and routing_key.startswith(REPLY_PREFIX):
            if self.reply_to.deliver(routing_key, properties, body, conn.virtual_host):
                return
            if not mandatory:
                channel.dropped += 1
                return
            queues: Iterable[Queue] = ()
        elif properties and properties.get("headers") and (
                "CC" in properties["headers"] or "BCC" in properties["headers"]):
            queues, properties = self._sender_selected(channel.connection.topology, ex, routing_key, properties)
        else:
            queues = channel.connection.topology.route(ex, routing_key, properties)
        if queues:
            ex.published_out += len(queues)
            self._publish_seq += 1
            message = Message(self._publish_seq, exchange, routing_key, properties, body, self.now, ttl,
                              len(body))
            self._enqueue(queues, message, channel if channel.confirm else None, seq)
        elif not mandatory:
            channel.dropped += 1
        else:
            channel.returned += 1
            channel.send((_RETURN, channel.number, errors.NO_ROUTE, "NO_ROUTE", exchange,
                          routing_key, properties), body)

    def _publisher(self, conn: Connection) -> None:
        """``conn`` publishes: remember it, and block it while an alarm is on."""
        conn.has_published = True
        if self.alarms.active:
            self.alarms.block(conn)

    def _sender_selected(self, topology: Topology, exchange: Exchange, routing_key: str,
                         properties: dict) -> tuple[list[Queue], dict]:
        """CC/BCC routing keys (``topology.header_routes``); the BCC header does not travel."""
        cc, bcc = header_routes(properties["headers"])
        queues = topology.route_keys(exchange, [routing_key, *cc, *bcc], properties)
        if "BCC" in properties["headers"]:
            headers = {k: v for k, v in properties["headers"].items() if k != "BCC"}
            properties = {**properties, "headers": headers}
        return queues, properties

    def _publishable(self, topology: Topology, exchange: str, body: Any) -> Exchange:
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

    def _enqueue(self, queues: Iterable[Queue], message: Message, confirming: Channel | None,
                 seq: int) -> None:
        """Put a routed message into its queues (a publish, or a dead letter)."""
        for queue in queues:
            if queue.rejects and queue.would_overflow(message):
                queues = self._refuse(queues, message, confirming, seq)
                break
        if message.properties.get("delivery_mode") == PERSISTENT:
            self.durability.store_message(message, queues, confirming)
        elif self.vhosts.counts.quorum_queues:  # a quorum queue keeps every message, as RabbitMQ's
            quorum = [q for q in queues if q.quorum]
            if quorum:
                self.durability.store_message(message, quorum, confirming)
        for queue in queues:
            queue.enqueue(message)
            if queue.consumers:
                self._dispatch(queue)
            if queue.careful or message.ttl is not None:
                self._after_enqueue(queue)

    def _refuse(self, queues: Iterable[Queue], message: Message, confirming: Channel | None,
                seq: int) -> list[Queue]:
        """reject-publish(-dlx): the full queues refuse the message, the publisher gets a
        nack for it; returns the queues that take it."""
        refused = [q for q in queues if q.rejects and q.would_overflow(message)]
        if confirming is not None:
            self.confirms.refuse(confirming, seq)
        for queue in refused:
            if queue.settings.overflow == "reject-publish-dlx":
                self._give_up(queue, [message], MAXLEN, stored=False)
        return [q for q in queues if q not in refused]

    def _after_enqueue(self, queue: Queue) -> None:
        """Apply drop-head limits and due expiry (TTL 0: delivered at once or expired)."""
        if queue.settings.limited:
            self._give_up(queue, queue.over_limit(), MAXLEN)
        self._expire(queue)  # what is due now, not delivered at once, goes now
        self.timers.watch(queue)

    # -- settling ----------------------------------------------------------------------

    def _basic_ack(self, channel: Channel, _: Any, delivery_tag: int, multiple: bool) -> None:
        entries = channel.settle(delivery_tag, multiple)
        channel.acked += len(entries)
        for entry in entries:
            self._forget(entry)
        self._after_settle(channel, entries)

    def _forget(self, entry: Unacked) -> None:
        """A delivery is acked: free its credit and its place in the store."""
        entry.settle()
        entry.queue.settled()
        entry.queue.acked += 1
        self.durability.forget(entry.queue, entry.message)

    def _basic_nack(self, channel: Channel, _: Any, delivery_tag: int, multiple: bool,
                    requeue: bool) -> None:
        entries = channel.settle(delivery_tag, multiple)
        if requeue:
            self._requeue(entries)
        else:
            self._reject(entries)
        self._after_settle(channel, entries)

    def _basic_reject(self, channel: Channel, _: Any, delivery_tag: int, requeue: bool) -> None:
        self._basic_nack(channel, None, delivery_tag, False, requeue)

    def _reject(self, entries: list[Unacked]) -> None:
        """Rejected without requeue: dead-lettered where the queue says so, else dropped."""
        by_queue: dict[int, tuple[Queue, list[Message]]] = {}
        for entry in entries:
            entry.settle()
            entry.queue.settled()
            by_queue.setdefault(id(entry.queue), (entry.queue, []))[1].append(entry.message)
        for queue, messages in by_queue.values():
            self._give_up(queue, messages, REJECTED)

    def _basic_recover(self, channel: Channel, _: Any, requeue: bool) -> None:
        if not requeue:
            raise ConnectionError_(errors.NOT_IMPLEMENTED, "requeue=false")
        self._requeue(channel.take_all_unacked())
        channel.reply((M.BASIC_RECOVER_OK, channel.number))

    def _after_settle(self, channel: Channel, entries: list[Unacked]) -> None:
        """Credit came back: let the queues those deliveries came from move again."""
        if channel.global_prefetch:
            self._dispatch_consumers_of(channel)
            return
        if len(entries) == 1:
            queue = entries[0].queue
            if queue.has_messages and not queue.deleted:
                self._dispatch(queue)
            return
        for queue in {id(e.queue): e.queue for e in entries}.values():
            if queue.has_messages and not queue.deleted:
                self._dispatch(queue)

    def _requeue(self, entries: Iterable[Unacked]) -> None:
        """Return deliveries to their queues, in order, and dispatch them."""
        by_queue: dict[int, tuple[Queue, list[Message]]] = {}
        for entry in entries:
            entry.settle()
            if entry.queue.deleted:  # nowhere to go back to
                self.durability.forget(entry.queue, entry.message)
                continue
            by_queue.setdefault(id(entry.queue), (entry.queue, []))[1].append(entry.message)
        for queue, messages in by_queue.values():
            self._give_up(queue, queue.requeue(messages), DELIVERY_LIMIT)
            if queue.timed:
                if queue.due(self.now):
                    self._expire(queue)
                self.timers.watch(queue)
        for queue, _ in by_queue.values():
            if not queue.deleted:
                self._dispatch(queue)

    # -- giving messages up: dead-lettering ------------------------------------------------

    def _give_up(self, queue: Queue, messages: list[Message], reason: str, stored: bool = True) -> None:
        """Messages leave ``queue`` for ``reason``: dead-lettered if it has a DLX, then
        removed from the store (in that order: durability rule 4)."""
        if not messages:
            return
        self.dead_letters.give_up(queue, messages, reason, self.now)
        if stored:
            for message in messages:
                self.durability.forget(queue, message)

    def _next_seq(self) -> int:
        self._publish_seq += 1
        return self._publish_seq

    # -- confirms, flow, transactions ---------------------------------------------------------

    def _confirm_select(self, channel: Channel, _: Any) -> None:
        if channel.tx is not None:
            raise precondition("cannot switch from tx to confirm mode")
        channel.confirm = True
        channel.reply((M.CONFIRM_SELECT_OK, channel.number))

    def _channel_flow(self, channel: Channel, _: Any, active: bool) -> None:
        if not active:
            raise ConnectionError_(errors.NOT_IMPLEMENTED, "active=false")
        channel.reply((M.CHANNEL_FLOW_OK, channel.number, True))

    def _tx_select(self, channel: Channel, _: Any) -> None:
        transactions.select(channel)
        channel.reply((M.TX_SELECT_OK, channel.number))

    def _check_publish(self, channel: Channel, fields: list[Any], body: Any) -> None:
        """What a transaction checks of a publish when it arrives (transactions rule 1)."""
        self._may(channel.connection, WRITE, "exchange", fields[1])
        ex = self._publishable(channel.connection.topology, fields[1], body)
        if self._topics and type(ex) is TopicExchange:
            self._may_publish_topic(channel.connection, fields[1], fields[2], fields[4])
        expiration = fields[4].get("expiration")
        if expiration is not None:
            parse_expiration(expiration)

    def _tx_commit(self, channel: Channel, _: Any) -> None:
        held = transactions.take(channel)
        channel.tx = None  # applied as if outside a transaction
        try:
            for item in held:
                if isinstance(item, transactions.Publish):
                    self._basic_publish(channel, item.body, *item.fields[1:])
                    continue
                if item.requeue is None:
                    channel.acked += len(item.entries)
                    for entry in item.entries:
                        self._forget(entry)
                elif item.requeue:
                    self._requeue(item.entries)
                else:
                    self._reject(item.entries)
                self._after_settle(channel, item.entries)
        finally:
            channel.tx = []
        channel.reply((M.TX_COMMIT_OK, channel.number))

    def _tx_rollback(self, channel: Channel, _: Any) -> None:
        transactions.rollback(channel)
        channel.reply((M.TX_ROLLBACK_OK, channel.number))

    # -- delivery plumbing -----------------------------------------------------------------

    def _dispatch(self, queue: Queue) -> None:
        if queue.due(self.now):
            self._expire(queue)
        if queue.dispatch(DISPATCH_BATCH):
            self._pending_dispatch[queue] = None

    def _dispatch_consumers_of(self, channel: Channel) -> None:
        for queue in {id(c.queue): c.queue for c in channel.consumers.values()}.values():
            self._dispatch(queue)


__all__ = ["Broker", "BrokerError", "DEFAULT_HEARTBEAT_S", "DEFAULT_MAX_BODY_BYTES"]
