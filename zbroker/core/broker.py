"""The broker's semantics as a pure state machine: typed commands and ``now`` in, events
out, timers through ``tick(now)`` and ``next_deadline()``.

A wire (``zbroker/wires/``) turns its frames into calls and the events back into frames:
- ``login(...)`` then ``open_connection(conn_id, now, ...)`` once its handshake is done,
  then ``command(conn, method, fields, body, now, nowait)`` for each command
  (``zbroker/methods.py`` names the methods and their fields);
- ``connection_lost(conn_id, now)`` when its transport died, ``close_connection`` when
  the peer broke the wire's own rules;
- each loop pass: ``tick(now)``, ``run_pending(now)``, ``commit(now)``, then it sends
  what ``outbox`` holds for its connections. Its poll timeout is ``next_deadline()``.
Nothing here touches a socket, reads a clock or starts a thread; ``now`` (seconds, wall
clock, since a recovered message's expiry must survive a restart) comes with every call.

Who does what (this module only connects them): ``admission.py`` admits connections and
channels and releases what they leave; ``messaging/declarations.py``,
``publishing.py``, ``consuming.py`` and ``transactions.py`` hold the command handlers
by family; ``messaging/delivery.py`` moves messages between queues, consumers and the
store; the queue types (``messaging/queue_type.py``) own messages;
``access/checks.py`` checks permissions; ``durability/`` talks to the store.

Error handling, at this one boundary:
- ``ChannelError`` (a soft rule, e.g. 404 on a passive declare): the channel is closed
  with the code; frames on it are discarded until the client's CHANNEL_CLOSE_OK.
- ``ConnectionError_`` (a hard rule, e.g. an unopened channel): the connection is closed.
- Anything else is a bug in the broker: logged with its traceback, and that one
  connection closed with 541 INTERNAL_ERROR. The timer, commit and connection-loss entry
  points are guarded alike, so one bad case can never stop the broker loop.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Iterator

from zbroker import errors
from zbroker.core.access.checks import AccessChecks
from zbroker.core.access.limits import Limits
from zbroker.core.access.users import INTERNAL_KEY, Users
from zbroker.core.access.vhosts import VirtualHosts
from zbroker.core.admission import Admission
from zbroker.core.durability.journal import QueueJournal
from zbroker.core.durability.persistence import Durability
from zbroker.core.management.stats import Stats
from zbroker.core.messaging import consumer_timeout, policies, transactions
from zbroker.core.messaging.alarms import Alarms
from zbroker.core.messaging.confirms import Confirms
from zbroker.core.messaging.consumers import Unacked
from zbroker.core.messaging.consuming import Consuming
from zbroker.core.messaging.declarations import Declarations
from zbroker.core.messaging.delayed import Delays
from zbroker.core.messaging.delivery import Delivery
from zbroker.core.messaging.message import Message
from zbroker.core.messaging.publishing import Publishing
from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.reply_to import DirectReplyTo
from zbroker.core.messaging.session import Connection, Outbox
from zbroker.core.messaging.timers import Clock
from zbroker.core.messaging.topology import DEFAULT_EXCHANGES, Topology, server_queue_name
from zbroker.core.parameters import Parameters
from zbroker.core.shovels import COMPONENT as SHOVEL, ShovelComponent
from zbroker.errors import BrokerError, ChannelError, ConnectionError_
from zbroker.methods import ConnectionCloseOk, ConnectionUpdateSecretOk  # type: ignore[attr-defined]
from zbroker.methods import Method as M
from zbroker.storage.memory import MemoryStore
from zbroker.storage.stream_codec import remove_unused, stream_logs
from zbroker.storage.store import MessageStore

log = logging.getLogger(__name__)

#: RabbitMQ's default heartbeat timeout, in seconds.
DEFAULT_HEARTBEAT_S = 60
#: Largest body accepted. RabbitMQ 3.10 allows 128 MiB (its max_message_size default
#: before 3.13); we keep that so programs written for it keep working.
DEFAULT_MAX_BODY_BYTES = 128 * 1024 * 1024

#: Queues given changed policies per loop pass.
POLICY_BATCH = 2000
#: Hot-path method numbers as plain ints (an IntEnum member look-up costs ~90 ns on 3.11).
_CONNECTION_CLOSE, _CONNECTION_CLOSE_OK = int(M.CONNECTION_CLOSE), int(M.CONNECTION_CLOSE_OK)
_UPDATE_SECRET, _CHANNEL_OPEN = int(M.CONNECTION_UPDATE_SECRET), int(M.CHANNEL_OPEN)
_HELD = transactions.HELD


class Broker:
    def __init__(self, heartbeat: int = DEFAULT_HEARTBEAT_S,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 name_source: Callable[[], str] = server_queue_name,
                 store: MessageStore | None = None, now: float = 0.0,
                 limits: Limits | None = None,
                 consumer_timeout_ms: int = consumer_timeout.DEFAULT_CONSUMER_TIMEOUT_MS) -> None:
        self.heartbeat = heartbeat
        self.max_body_bytes = max_body_bytes
        self.limits = limits or Limits()
        self.clock = Clock(now)
        #: Channels holding unacked deliveries, by when one may time out.
        self.ack_timers = self.clock.ack_timers
        self.store = store if store is not None else MemoryStore()
        self.users = Users()
        #: Streams keep their logs beside a store on disk (``<its directory>/streams``), in
        #: memory beside a store in memory.
        data_dir: Path | None = getattr(self.store, "directory", None)
        log_for = None if data_dir is None else stream_logs(data_dir)
        #: Every vhost's topology (``vhosts.py``); ``topology`` is the default vhost's.
        self.vhosts = VirtualHosts(self.users, lambda vhost, counts: Topology(
            name_source, lambda queue_id: QueueJournal(self.store, queue_id, now), self.limits,
            vhost=vhost, counts=counts, users=self.users, log_for=log_for))
        self.topology = self.vhosts.default
        self.outbox = Outbox()
        self.confirms = Confirms()
        self.reply_to = DirectReplyTo()
        self.alarms = Alarms()
        #: Parameter components and global parameters (``parameters.py``).
        self.parameters = Parameters(self)
        self.durability = Durability(self.store, self.vhosts, self.confirms, self._all_unacked, self.parameters)
        self.delivery = Delivery(self.clock, self.durability, self.confirms, self.vhosts.counts)
        #: Queues by their earliest deadline (``delivery.py`` rule 5).
        self.timers = self.delivery.timers
        #: Delayed exchanges' held messages, released when due (``delayed.py``).
        self.delays = Delays(self.delivery, self.vhosts.counts.holds)
        checks = AccessChecks(self.users)
        self.declarations = Declarations(checks, self.delivery, self.reply_to)
        self.publishing = Publishing(self.clock, checks, self.delivery, self.confirms, self.alarms,
                                     self.reply_to, max_body_bytes)
        self.transactions = transactions.Transactions(self.publishing, self.delivery)
        connections: dict[Hashable, Connection] = {}
        self.stats = Stats(connections, self.vhosts, now)
        self.admission = Admission(self.clock, self.outbox, self.users, self.vhosts, self.limits, self.delivery,
                                   self.confirms, self.alarms, self.reply_to, self.stats,
                                   lambda op: op in self._handlers)
        self.admission.connections = connections
        #: The open connections, by the wire's id for each.
        self.connections = connections
        self.consuming = Consuming(self.clock, checks, self.delivery, self.reply_to, consumer_timeout_ms,
                                   self.admission.close_channel)
        #: This broker's name in management views (the server sets ``zbroker@<host>``).
        self.node_name = "zbroker@localhost"
        self._handlers = self._handler_table()
        #: Dynamic shovels: the ``shovel`` component and its status (``shovels.py``).
        self.shovels = ShovelComponent(self.clock, self._may_connect, lambda: self.node_name)
        self.parameters.register(SHOVEL, self.shovels)
        #: Vhosts whose queues are being given changed policies (``_policies_changed``).
        self._policy_passes: dict[Topology, Iterator[QueueType]] = {}
        self.delivery.seq = self.durability.recover(self.store.open(), now)
        if data_dir is not None:  # (what a crash left of deleted streams)
            remove_unused(data_dir, self.vhosts.counts.logs)
        for queue in list(self.vhosts.queues()):
            queue.last_used = now
            if queue.settings.limited:  # limits an older zbroker stored but did not apply
                self._guarded(self.delivery.after_enqueue, queue)
            elif queue.timed:
                self.timers.watch(queue)

    def _handler_table(self) -> dict[int, Callable[..., None]]:
        """Channel method -> its handler, called as ``handler(channel, body, *fields)``
        with the fields of ``methods.FIELDS`` after the channel number."""
        d, p, c, t = self.declarations, self.publishing, self.consuming, self.transactions
        return {
            M.EXCHANGE_DECLARE: d.exchange_declare, M.EXCHANGE_DELETE: d.exchange_delete,
            M.EXCHANGE_BIND: d.exchange_bind, M.EXCHANGE_UNBIND: d.exchange_unbind,
            M.QUEUE_DECLARE: d.queue_declare, M.QUEUE_BIND: d.queue_bind, M.QUEUE_UNBIND: d.queue_unbind,
            M.QUEUE_PURGE: d.queue_purge, M.QUEUE_DELETE: d.queue_delete,
            M.BASIC_QOS: c.basic_qos, M.BASIC_CONSUME: c.basic_consume, M.BASIC_CANCEL: c.basic_cancel,
            M.BASIC_PUBLISH: p.basic_publish, M.BASIC_GET: c.basic_get, M.BASIC_ACK: c.basic_ack,
            M.BASIC_NACK: c.basic_nack, M.BASIC_REJECT: c.basic_reject, M.BASIC_RECOVER: c.basic_recover,
            M.CONFIRM_SELECT: p.confirm_select, M.CHANNEL_FLOW: self.admission.channel_flow,
            M.TX_SELECT: t.tx_select, M.TX_COMMIT: t.tx_commit, M.TX_ROLLBACK: t.tx_rollback,
        }

    @property
    def now(self) -> float:
        """The ``now`` of the call being applied (the last one given)."""
        return self.clock.now

    @now.setter
    def now(self, now: float) -> None:
        self.clock.now = now

    @property
    def consumer_timeout_ms(self) -> int:
        """RabbitMQ's consumer_timeout: the server's default (``consumer_timeout.py``)."""
        return self.consuming.consumer_timeout_ms

    # -- entry points ----------------------------------------------------------------

    def login(self, username: str, password: str, peer_host: str | None, now: float,
              mechanism: str = "PLAIN") -> bool:
        """Check a login, the one path for every wire (``users.py``: the password, the
        loopback rule for ``guest``, the failed-login throttle). False: refused, and the
        core logged why; the wire refuses it its own way (RabbitMQ's 403 text is
        ``users.LOGIN_REFUSED``)."""
        self.clock.now = now
        return self.users.login(username, password, peer_host, now, mechanism) is None

    def login_internal(self, secret: bytes) -> bool:
        """A login by one of the broker's own connections (``users.py``); refusals are logged."""
        if self.users.internal_login(secret):
            return True
        log.warning("internal login refused: wrong secret")
        return False

    def open_connection(self, conn_id: Hashable, now: float, heartbeat: int | None,
                        virtual_host: str, username: str, client_properties: dict,
                        delivery_window: int = 0, peer_host: str | None = None) -> Connection | None:
        """A wire finished its handshake, ``username``'s login accepted (``login``); None
        (and a close event) if the connection is refused (``admission.py`` rule 1).

        ``delivery_window``: delivery bytes the peer may hold unread before deliveries to
        it pause (0: none; the wire bounds the peer another way, e.g. TCP). ``peer_host``:
        where it comes from (None: a local transport). ``username`` ``users.INTERNAL_KEY``:
        one of the broker's own connections (``login_internal``).
        """
        self.clock.now = now
        if username == INTERNAL_KEY:
            self.users.permissions.grant_internal(virtual_host)
        negotiated = self.heartbeat if heartbeat is None else heartbeat
        return self.admission.open_connection(conn_id, negotiated, virtual_host, username, client_properties,
                                              delivery_window)

    def command(self, conn: Connection, op: int, fields: Any, body: Any, now: float,
                nowait: bool = False) -> None:
        """Apply one command of an open connection (channel commands, connection.close
        and connection.update-secret). ``nowait``: the client asked for no answer (AMQP's
        no-wait bit): the command's ``-ok`` is not sent, anything else still is."""
        self.clock.now = now
        try:
            if op >= _CHANNEL_OPEN:
                channel = conn.channels.get(fields[0] if fields else 0)
                handler = self._handlers.get(op)
                if channel is None or handler is None or nowait or channel.tx is not None:
                    self._channel_command(conn, op, fields, body, nowait)
                    return
                try:  # the common case, in line: once per publish and per ack
                    arity = len(fields)
                    if arity == 5:  # basic.publish, without slicing the fields into a tuple
                        handler(channel, body, fields[1], fields[2], fields[3], fields[4])
                    elif arity == 3:  # basic.ack
                        handler(channel, body, fields[1], fields[2])
                    else:
                        handler(channel, body, *fields[1:])
                except ChannelError as exc:
                    self.admission.close_channel(channel, exc)
                except ConnectionError_ as exc:
                    self.admission.close_for(conn, exc.code, exc.text)
            elif op == _CONNECTION_CLOSE:
                log.info("connection %s closed by client (%s %s)", conn.name, *fields[:2])
                self.admission.drop_connection(conn)
                conn.send(ConnectionCloseOk())
            elif op == _UPDATE_SECRET:
                # As RabbitMQ's internal user database: its credentials never expire, so
                # the connection keeps its user and the secret is not checked
                # (rabbit_access_control:update_state keeps a backend whose expiry is
                # ``never``); the answer is update-secret-ok and this line.
                log.info("connection %s: user '%s' updated secret, reason: %s", conn.name, conn.user, fields[1])
                conn.send(ConnectionUpdateSecretOk())
            elif op != _CONNECTION_CLOSE_OK:
                self.admission.not_open(conn, op, fields[0] if fields else 0)
        except Exception:
            log.exception("internal error handling a command from %s", conn.name)
            self.close_connection(conn.conn_id, errors.INTERNAL_ERROR, "internal error")

    def _channel_command(self, conn: Connection, op: int, fields: Any, body: Any, nowait: bool) -> None:
        """A channel command other than the common case (``command`` applies that): a
        channel not open, a channel method, a transaction, no-wait."""
        number = fields[0] if fields else 0
        channel = conn.channels.get(number)
        if channel is None:
            self.admission.not_open(conn, op, number)
            return
        handler = self._handlers.get(op)
        try:
            if handler is None:
                self.admission.channel_method(channel, op)
            elif channel.tx is not None and op in _HELD:
                self.transactions.hold(channel, op, fields, body)
            elif nowait:
                channel.nowait = True
                try:
                    handler(channel, body, *fields[1:])
                finally:
                    channel.nowait = False
            else:
                handler(channel, body, *fields[1:])
        except ChannelError as exc:
            self.admission.close_channel(channel, exc)
        except ConnectionError_ as exc:
            self.admission.close_for(conn, exc.code, exc.text)

    def close_connection(self, conn_id: Hashable, code: int, detail: str) -> None:
        """Close a connection (known or not) with ``code``: release it, tell the peer."""
        self._guarded(self.admission.refuse, conn_id, code, detail)

    def channel_error(self, conn: Connection, number: int, code: int, detail: str) -> None:
        """A wire found a soft error on an open channel before the core saw the command
        (an AMQP content header announcing too large a body): close that channel."""
        channel = conn.channels.get(number)
        if channel is not None:
            self._guarded(self.admission.close_channel, channel, ChannelError(code, detail))

    def connection_lost(self, conn_id: Hashable, now: float, reason: str = "transport closed") -> None:
        """The transport died: release everything the connection held, send it nothing."""
        self.clock.now = now
        conn = self.connections.get(conn_id)
        if conn is not None:
            log.info("connection %s lost: %s", conn.name, reason)
            self._guarded(self.admission.drop_connection, conn)

    def tick(self, now: float) -> None:
        """Act on what is due: expire messages, delete unused queues (``x-expires``),
        time out unacked deliveries, release delayed messages, sample statistics."""
        self.clock.now = now
        for queue in self.timers.due(now):
            if not queue.deleted:
                self._guarded(self.delivery.timer, queue)
        for channel in self.ack_timers.due(now):
            if not channel.deleted:
                self._guarded(self.consuming.ack_timer, channel)
        self.delays.tick(now, self._guarded)
        if now >= self.stats.next_sample:
            self._guarded(self.stats.tick, now)

    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do (seconds, as ``now``), or None."""
        soonest = self.stats.next_sample
        for due in (self.timers.next_deadline(), self.ack_timers.next_deadline(), self.delays.next_deadline()):
            if due is not None and due < soonest:
                soonest = due
        return soonest

    def commit(self, now: float | None = None) -> None:
        """Make this pass's durable changes durable, then answer the publishers waiting.

        The wire's loop calls it once per pass, before sending anything.
        """
        if now is not None:
            self.clock.now = now
        self._guarded(self.durability.commit)

    def after_input(self) -> None:
        """A batch of input was applied: answer publishers now if nothing waits for the disk."""
        if self.confirms and not self.store.needs_sync and not self.durability.logs_need_sync:
            self._guarded(self.confirms.flush)

    @property
    def has_pending_work(self) -> bool:
        return bool(self.delivery.pending or self._policy_passes)

    def run_pending(self, now: float | None = None) -> None:
        """Continue dispatches cut short by DISPATCH_BATCH and policy changes cut short by
        POLICY_BATCH; the loop calls it each pass."""
        if now is not None:
            self.clock.now = now
        self.delivery.run_pending(self._guarded)
        for topology in list(self._policy_passes):
            self._guarded(self._policy_batch, topology)

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
        self.clock.now = now
        self.alarms.set(resource, active, self.connections.values())

    def _update_blocked(self, conn: Connection) -> None:
        if conn.update_blocked():
            for channel in list(conn.channels.values()):
                self._guarded(self.delivery.dispatch_consumers_of, channel)

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
            self.durability.close_logs()
            self.store.close()

    # -- management (``management/requests.py`` calls these; no channel is involved) -----

    def purge(self, queue: QueueType) -> int:
        """Remove every ready message of ``queue`` (unacked ones stay with their holders)."""
        return queue.purge()

    def delete(self, queue: QueueType) -> int:
        """Delete ``queue``, cancelling its consumers as a client's delete does."""
        return self.delivery.delete_queue(queue)

    def add_vhost(self, name: str, description: str = "", tags: list[str] | None = None) -> Topology:
        return self.vhosts.add(name, description, tags)

    def delete_vhost(self, name: str) -> None:
        """Delete a vhost: its connections are closed (320), its queues deleted with their
        messages, then it and what names it are gone (``vhosts.py``)."""
        topology = self.vhosts.get(name)
        if topology is None or topology is self.topology:
            self.vhosts.remove(name)  # raises the refusal
            return
        for conn in [c for c in self.connections.values() if c.topology is topology]:
            log.info("connection %s closed: its vhost '%s' is deleted", conn.name, name)
            self.close_connection(conn.conn_id, errors.CONNECTION_FORCED, f"vhost '{name}' is deleted")
        for queue in list(topology.queues.values()):
            self.delivery.delete_queue(queue)
        for exchange in [n for n in topology.exchanges if n and n not in DEFAULT_EXCHANGES]:
            topology.delete_exchange(exchange, False)
        self.parameters.clear_vhost(topology)
        self.vhosts.remove(name)

    def set_policy(self, topology: Topology, name: str, pattern: Any, definition: Any, priority: Any = 0,
                   apply_to: Any = "all", operator: bool = False) -> None:
        """Add or replace a policy (an operator policy with ``operator``) of ``topology``'s
        vhost, validated (``PolicyError``), and apply the vhost's policies again."""
        policy = policies.make(topology.vhost, name, pattern, definition, priority, apply_to, operator)
        topology.policies.put(policy, operator)
        self._policies_changed(topology)

    def clear_policy(self, topology: Topology, name: str, operator: bool = False) -> bool:
        """Remove a policy; False if there was none of that name. The next match takes over."""
        if topology.policies.remove(name, operator) is None:
            return False
        self._policies_changed(topology)
        return True

    def _policies_changed(self, topology: Topology) -> None:
        """Apply a vhost's policies again: its exchanges at once, its queues ``POLICY_BATCH``
        at a time, the rest in the next loop passes (``run_pending``), so a change over
        50,000 queues never holds the loop for long. A change while one is under way
        starts that vhost's pass over again."""
        topology.apply_exchange_policies()
        self._policy_passes[topology] = iter(list(topology.queues.values()))
        self._policy_batch(topology)

    def _policy_batch(self, topology: Topology) -> None:
        queues = self._policy_passes[topology]
        done = 0
        for queue in queues:
            if not queue.deleted and topology.reapply(queue):
                self._guarded(self.delivery.settings_changed, queue)
            done += 1
            if done == POLICY_BATCH:
                return
        del self._policy_passes[topology]

    def _may_connect(self, user: str, vhost: str) -> bool:
        """Whether ``user`` may open a connection to ``vhost`` (it exists, they have permissions)."""
        return self.vhosts.get(vhost) is not None and self.users.permissions.get(user, vhost) is not None

    def shovel_report(self, vhost: str, name: str, report: dict, now: float) -> None:
        """A shovel worker's status line (the server's supervisor hands it over). A shovel
        that is done (``src-delete-after``) goes, its parameter with it, as in RabbitMQ."""
        self.clock.now = now
        if self.shovels.report(vhost, name, report, now):
            topology = self.vhosts.get(vhost)
            if topology is not None:
                log.info("shovel '%s' in vhost '%s' is done: its parameter is cleared", name, vhost)
                self.parameters.clear(topology, SHOVEL, name)

    def force_close(self, conn: Connection, reason: str) -> None:
        """Close a connection on an operator's request: RabbitMQ's 320 CONNECTION_FORCED."""
        log.info("connection %s closed by an operator: %s", conn.name, reason)
        self.close_connection(conn.conn_id, errors.CONNECTION_FORCED,
                              f"broker forced connection closure with reason '{reason}'")

    def get(self, queue: QueueType, count: int, settle: str) -> list[tuple[Message, int]]:
        """Take up to ``count`` messages and settle them at once (``Consuming.operator_get``)."""
        return self.consuming.operator_get(queue, count, settle)

    def publish(self, exchange: str, routing_key: str, properties: dict, body: bytes,
                topology: Topology | None = None) -> bool:
        """Publish as an operator (no channel, no confirm) in ``topology`` (a vhost's; the
        default one's if None); True if it reached a queue."""
        return self.publishing.operator_publish(topology or self.topology, exchange, routing_key, properties, body)

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


__all__ = ["Broker", "BrokerError", "DEFAULT_HEARTBEAT_S", "DEFAULT_MAX_BODY_BYTES"]
