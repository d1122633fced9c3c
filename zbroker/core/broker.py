"""The broker's semantics as a pure state machine: frames in, frames out.

``Broker.handle(peer, parts)`` applies one ZeroMQ message from a peer (header, then
commands) and leaves the frames to send in ``outbox``; ``peer_gone(peer)`` is called by
the socket layer when a peer's transport died. Nothing here touches a socket, a clock
or a thread, so tests drive it directly.

Error handling, at this one boundary:
- ``ProtocolError`` (the peer sent garbage): the connection is closed with the code the
  codec chose (502/501/540), the peer told so.
- ``ChannelError`` (a soft rule, e.g. 404 on a passive declare): the channel is closed
  with the code; the rest of the batch goes on, frames on that channel are discarded
  until the client's CHANNEL_CLOSE_OK, as in AMQP.
- ``ConnectionError_`` (a hard rule, e.g. an unopened channel): the connection is closed.
- Anything else is a bug in the broker: logged with its traceback, and the peer's
  connection closed with 541 INTERNAL_ERROR, so one bad case cannot stop the broker.

Durability: the broker keeps its durable state in a ``MessageStore`` (memory unless the
server gives it a disk store). A persistent message (``delivery_mode`` 2) routed to
durable queues is appended to the store; the socket layer calls ``commit()`` once per
loop pass, before sending anything, and publisher confirms are held until then, so a
confirm is never sent for a message that is not yet on disk. Deep in a long durable
queue, persistent messages are kept *paged* (contents on disk only, ``PAGE_AFTER``).
"""
from __future__ import annotations

import base64
import logging
import secrets
from typing import Any, Callable, Iterable

from zbroker import __version__, errors
from zbroker.core import snapshot
from zbroker.core.consumers import Consumer, Unacked
from zbroker.core.journal import QueueJournal
from zbroker.core.message import Message
from zbroker.core.queues import Queue
from zbroker.core.session import Channel, Connection, Outbox
from zbroker.core.topology import VHOST, Topology, check_name, server_queue_name
from zbroker.errors import BrokerError, ChannelError, ConnectionError_
from zbroker.protocol import Op, ProtocolError, check_header, decode_message, encode
from zbroker.storage.memory import MemoryStore
from zbroker.storage.store import MessageStore, Recovered, RecoveredQueue

log = logging.getLogger(__name__)

#: RabbitMQ's default heartbeat timeout, in seconds.
DEFAULT_HEARTBEAT_S = 60
#: Largest body accepted. RabbitMQ 3.10 allows 128 MiB (its max_message_size default
#: before 3.13); we keep that so programs written for it keep working.
DEFAULT_MAX_BODY_BYTES = 128 * 1024 * 1024
MAX_CHANNEL = 65535
#: Deliveries one queue makes per dispatch before yielding to the rest of the loop.
DISPATCH_BATCH = 1000
#: A persistent message joining a durable queue is held paged (contents on disk only,
#: memory per message a small index entry) once the queue holds this many messages, or
#: once that many messages of its size would exceed ``PAGE_AFTER_BYTES``: with bodies of
#: similar size, each queue keeps about that much of them in memory at most.
PAGE_AFTER = 2000
PAGE_AFTER_BYTES = 16 * 1024 * 1024
PERSISTENT = 2


_CHANNEL_LIFECYCLE_OPS = frozenset({Op.CHANNEL_OPEN, Op.CHANNEL_CLOSE, Op.CHANNEL_CLOSE_OK})


def consumer_tag() -> str:
    return "amq.ctag-" + base64.urlsafe_b64encode(secrets.token_bytes(16)).rstrip(b"=").decode()


class Broker:
    def __init__(self, heartbeat: int = DEFAULT_HEARTBEAT_S,
                 max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
                 name_source: Callable[[], str] = server_queue_name,
                 store: MessageStore | None = None) -> None:
        self.heartbeat = heartbeat
        self.max_body_bytes = max_body_bytes
        self.store = store if store is not None else MemoryStore()
        self.topology = Topology(name_source, lambda queue_id: QueueJournal(self.store, queue_id))
        self.outbox = Outbox()
        self.connections: dict[bytes, Connection] = {}
        self._confirms: dict[Channel, None] = {}
        #: Channels whose outstanding publishes could not be stored: nacked, not acked.
        self._failed: set[Channel] = set()
        #: Confirm channels that published persistent messages since the last commit.
        self._awaiting_disk: set[Channel] = set()
        self._publish_seq = 0
        self._saved_changes = 0
        self._store_failing = False
        #: Queues that stopped at DISPATCH_BATCH with deliverable messages left.
        self._pending_dispatch: dict[Queue, None] = {}
        self._connection_ops = {
            Op.HELLO: self._second_hello,
            Op.CONNECTION_CLOSE: self._connection_close,
            Op.CONNECTION_CLOSE_OK: lambda conn, *_: None,
        }
        self._channel_ops: dict[int, Callable[..., None]] = {
            Op.EXCHANGE_DECLARE: self._exchange_declare,
            Op.EXCHANGE_DELETE: self._exchange_delete,
            Op.EXCHANGE_BIND: self._exchange_bind,
            Op.EXCHANGE_UNBIND: self._exchange_unbind,
            Op.QUEUE_DECLARE: self._queue_declare,
            Op.QUEUE_BIND: self._queue_bind,
            Op.QUEUE_UNBIND: self._queue_unbind,
            Op.QUEUE_PURGE: self._queue_purge,
            Op.QUEUE_DELETE: self._queue_delete,
            Op.BASIC_QOS: self._basic_qos,
            Op.BASIC_CONSUME: self._basic_consume,
            Op.BASIC_CANCEL: self._basic_cancel,
            Op.BASIC_PUBLISH: self._basic_publish,
            Op.BASIC_GET: self._basic_get,
            Op.BASIC_ACK: self._basic_ack,
            Op.BASIC_NACK: self._basic_nack,
            Op.BASIC_REJECT: self._basic_reject,
            Op.BASIC_RECOVER: self._basic_recover,
            Op.CONFIRM_SELECT: self._confirm_select,
        }
        self._recover(self.store.open())

    # -- entry points ----------------------------------------------------------------

    def handle(self, peer: bytes, parts: list[Any], start: int = 0) -> None:
        """Apply one message from ``peer``: ``parts[start]`` is its header frame."""
        conn = self.connections.get(peer)
        try:
            check_header(parts[start])
            for op, fields, body in decode_message(parts, start + 1):
                if conn is None:
                    conn = self._unknown_peer(peer, op, fields)
                    if conn is None:
                        return
                    continue
                if op in self._connection_ops:
                    self._connection_ops[op](conn, *fields)
                    if peer not in self.connections:
                        return
                    continue
                self._channel_command(conn, op, fields, body)
                if peer not in self.connections:
                    return
        except ProtocolError as exc:
            log.warning("protocol error from %s: %s", peer.hex()[:12], exc.detail)
            self._close_connection(peer, exc.code, errors.reply_text(exc.code, exc.detail))
        except Exception:
            log.exception("internal error handling a message from %s", peer.hex()[:12])
            self._close_connection(peer, errors.INTERNAL_ERROR,
                                   errors.reply_text(errors.INTERNAL_ERROR, "internal error"))
        finally:
            if self._confirms and not self.store.needs_sync:
                self._flush_confirms()

    def peer_gone(self, peer: bytes, reason: str = "transport closed") -> None:
        """The peer's transport died: release everything it held, send it nothing."""
        conn = self.connections.get(peer)
        if conn is not None:
            log.info("connection %s lost: %s", conn.name, reason)
            self._drop_connection(conn)

    def shutdown(self) -> None:
        """Tell every client the broker is going away (320, as RabbitMQ does)."""
        text = errors.reply_text(errors.CONNECTION_FORCED,
                                 "broker forced connection closure with reason 'shutdown'")
        for peer in list(self.connections):
            self._close_connection(peer, errors.CONNECTION_FORCED, text)

    def peers(self) -> list[bytes]:
        return list(self.connections)

    # -- durability ------------------------------------------------------------------

    def _recover(self, recovered: Recovered) -> None:
        """Rebuild the durable topology and the persistent messages the store held."""
        by_id: dict[int, Queue] = {}
        if recovered.topology is not None:
            by_id = snapshot.restore(self.topology, recovered.topology)
        self._saved_changes = self.topology.durable_changes
        self._publish_seq = recovered.max_seq
        for queue_id, stored in recovered.queues.items():
            queue = by_id.get(queue_id)
            if queue is None:  # deleted before the crash, after its last snapshot
                self.store.drop_queue(queue_id, stored.locations)
                continue
            self._recover_messages(queue, stored)
        if recovered.queues:
            log.info("recovered %d durable queue(s), %d persistent message(s)", len(by_id),
                     sum(q.message_count for q in by_id.values()))

    def _recover_messages(self, queue: Queue, stored: RecoveredQueue) -> None:
        """The head window (and every redelivered message, all at the front) in memory,
        the rest as the paged tail: the same bound as ``_page``."""
        assert queue.journal is not None  # recovered queues are durable
        resident = 0
        delivered_up_to = stored.delivered_up_to
        for seq, location in zip(stored.seqs, stored.locations):
            redelivered = seq <= delivered_up_to
            if not self.store.pages or redelivered or (
                    not queue.paged and len(queue.messages) < PAGE_AFTER and resident < PAGE_AFTER_BYTES):
                message = queue.journal.load(Message.paged(seq, location, redelivered))
                resident += len(message.body)
                queue.messages.append(message)
            else:
                queue.paged.append(seq, location)

    def commit(self) -> None:
        """Make this pass's durable changes durable, then release the confirms they held.

        The socket layer calls it once per loop pass before sending anything. If the
        store fails (disk full, I/O error), the publishes waiting are nacked, never acked.
        """
        if self.topology.durable_changes != self._saved_changes:
            self.store.save_topology(snapshot.snapshot(self.topology))
            self._saved_changes = self.topology.durable_changes
        try:
            self.store.commit()
        except OSError as exc:
            if not self._store_failing:  # once per outage, not once per loop pass
                log.error("store commit failed: %s; publishes waiting for confirms are nacked "
                          "until it works again", exc)
            self._store_failing = True
            self._failed.update(ch for ch in self._confirms if ch in self._awaiting_disk)
        else:
            if self._store_failing:
                log.warning("store commits work again")
            self._store_failing = False
        if self._confirms:
            self._flush_confirms()
        self._awaiting_disk.clear()
        if self._store_failing:
            return  # compaction writes too: not while the disk refuses
        try:
            moved = self.store.compact(self._held)
        except OSError as exc:
            log.error("store compaction failed: %s", exc)
            return
        if moved:
            self._relocate(moved)

    def _stored_references(self) -> Iterable[tuple[int, int, Message | None]]:
        """(queue id, location, message or None if paged) of everything the store holds for us."""
        for queue in self.topology.queues.values():
            if queue.journal is not None:
                qid = queue.journal.queue_id
                for message in queue.messages:
                    if message.location is not None:
                        yield qid, message.location, message
                for _, location in queue.paged:
                    yield qid, location, None
        for conn in self.connections.values():
            for channel in conn.channels.values():
                for entry in channel.unacked.values():
                    if entry.queue.journal is not None and entry.message.location is not None:
                        yield entry.queue.journal.queue_id, entry.message.location, entry.message

    def _held(self, selects: Callable[[int], bool]) -> dict[int, list[int]]:
        held: dict[int, list[int]] = {}
        for qid, location, _ in self._stored_references():
            if selects(location):
                held.setdefault(location, []).append(qid)
        return held

    def _relocate(self, moved: dict[int, int]) -> None:
        """A compaction copied records: point messages and paged entries at the copies."""
        # A message object can be referenced from several places: move each one once.
        messages = {id(m): m for _, loc, m in self._stored_references() if m is not None and loc in moved}
        for message in messages.values():
            message.location = moved[message.location]
        for queue in self.topology.queues.values():
            queue.paged.relocate(moved)

    def close(self) -> None:
        """Commit and release the store (the data directory's lock with it)."""
        try:
            self.commit()
        finally:
            self.store.close()

    @property
    def has_pending_work(self) -> bool:
        return bool(self._pending_dispatch)

    def run_pending(self) -> None:
        """Continue dispatches cut short by DISPATCH_BATCH; the socket layer calls it each pass."""
        pending, self._pending_dispatch = self._pending_dispatch, {}
        for queue in pending:
            if not queue.deleted:
                self._dispatch(queue)

    def set_blocked(self, peer: bytes, blocked: bool) -> None:
        """The peer's pipe filled up (True) or drained (False): stop or resume its deliveries."""
        conn = self.connections.get(peer)
        if conn is None or conn.blocked == blocked:
            return
        conn.blocked = blocked
        if not blocked:
            for channel in list(conn.channels.values()):
                self._dispatch_consumers_of(channel)

    def _dispatch(self, queue: Queue) -> None:
        if queue.dispatch(DISPATCH_BATCH):
            self._pending_dispatch[queue] = None

    # -- connections -------------------------------------------------------------------

    def _unknown_peer(self, peer: bytes, op: int, fields: list[Any]) -> Connection | None:
        if op == Op.HELLO:
            return self._hello(peer, *fields)
        if op != Op.CONNECTION_CLOSE_OK:
            log.debug("frame %s from unknown peer %s", op, peer.hex()[:12])
            self.outbox.put(peer, encode(Op.CONNECTION_CLOSE, errors.CONNECTION_FORCED, errors.reply_text(
                errors.CONNECTION_FORCED, "connection not open on this broker (was it restarted?)")))
        return None

    def _hello(self, peer: bytes, heartbeat: int | None, virtual_host: str, username: str,
               password: str, client_properties: dict) -> Connection | None:
        if virtual_host != VHOST:
            self.outbox.put(peer, encode(Op.CONNECTION_CLOSE, errors.NOT_ALLOWED, errors.reply_text(
                errors.NOT_ALLOWED, f"vhost {virtual_host} not found")))
            return None
        negotiated = self.heartbeat if heartbeat is None else heartbeat
        conn = Connection(peer, self.outbox, negotiated, virtual_host, client_properties)
        self.connections[peer] = conn
        log.info("connection %s opened (%s)", conn.name,
                 client_properties.get("connection_name") or client_properties.get("product", "client"))
        conn.send(encode(Op.HELLO_OK, negotiated, self.max_body_bytes,
                         {"product": "zbroker", "version": __version__}))
        return conn

    def _second_hello(self, conn: Connection, *_: Any) -> None:
        log.warning("connection %s closed: second HELLO", conn.name)
        self._close_connection(conn.peer, errors.COMMAND_INVALID,
                               errors.reply_text(errors.COMMAND_INVALID, "second 'connection.open' seen"))

    def _connection_close(self, conn: Connection, reply_code: int, reply_text: str) -> None:
        log.info("connection %s closed by client (%s %s)", conn.name, reply_code, reply_text)
        self._drop_connection(conn)
        self.outbox.put(conn.peer, encode(Op.CONNECTION_CLOSE_OK))

    def _close_connection(self, peer: bytes, code: int, text: str) -> None:
        conn = self.connections.get(peer)
        if conn is not None:
            self._drop_connection(conn)
        self.outbox.put(peer, encode(Op.CONNECTION_CLOSE, code, text))

    def _drop_connection(self, conn: Connection) -> None:
        self.connections.pop(conn.peer, None)
        for channel in list(conn.channels.values()):
            self._release_channel(channel)
        for queue in list(conn.exclusive_queues):
            self._delete_queue(queue)

    # -- channels ----------------------------------------------------------------------

    def _channel_command(self, conn: Connection, op: int, fields: list[Any], body: Any) -> None:
        handler = self._channel_ops.get(op)
        if handler is None and op not in _CHANNEL_LIFECYCLE_OPS:
            detail = f"{Op(op).name} is not a client command"
            log.warning("connection %s closed: %s", conn.name, detail)
            self._close_connection(conn.peer, errors.COMMAND_INVALID, errors.reply_text(errors.COMMAND_INVALID, detail))
            return
        number = fields[0]
        channel = conn.channels.get(number)
        if channel is None:
            self._channel_lifecycle(conn, op, number)
            return
        try:
            if handler is not None:
                handler(channel, body, *fields[1:])
            elif op == Op.CHANNEL_CLOSE:
                self._release_channel(channel)
                channel.send(encode(Op.CHANNEL_CLOSE_OK, number))
            elif op == Op.CHANNEL_OPEN:
                raise ConnectionError_(errors.CHANNEL_ERROR, "second 'channel.open' seen")
            else:  # CHANNEL_CLOSE_OK for a channel the broker did not close
                raise ConnectionError_(errors.CHANNEL_ERROR, "unexpected 'channel.close-ok'")
        except ChannelError as exc:
            log.warning("channel %d of connection %s closed: %s", number, conn.name, exc.text)
            self._release_channel(channel)
            conn.closing_channels.add(number)
            conn.send(encode(Op.CHANNEL_CLOSE, number, exc.code, exc.text))
        except ConnectionError_ as exc:
            log.warning("connection %s closed: %s", conn.name, exc.text)
            self._close_connection(conn.peer, exc.code, exc.text)

    def _channel_lifecycle(self, conn: Connection, op: int, number: int) -> None:
        """Commands for a channel that is not open: open it, or finish closing it."""
        if number in conn.closing_channels:
            if op == Op.CHANNEL_CLOSE_OK:
                conn.closing_channels.discard(number)
            elif op == Op.CHANNEL_CLOSE:  # both sides closed at once
                conn.closing_channels.discard(number)
                conn.send(encode(Op.CHANNEL_CLOSE_OK, number))
            return  # anything else on a closing channel is discarded
        if op == Op.CHANNEL_OPEN and 1 <= number <= MAX_CHANNEL:
            conn.channels[number] = Channel(number, conn)
            conn.send(encode(Op.CHANNEL_OPEN_OK, number))
            return
        detail = "expected 'channel.open'" if op != Op.CHANNEL_OPEN else f"invalid channel number {number}"
        log.warning("connection %s closed: %s", conn.name, detail)
        self._close_connection(conn.peer, errors.CHANNEL_ERROR, errors.reply_text(errors.CHANNEL_ERROR, detail))

    def _release_channel(self, channel: Channel) -> None:
        """Cancel the channel's consumers and requeue what it held unacked."""
        channel.connection.channels.pop(channel.number, None)
        consumers = list(channel.consumers.values())
        channel.consumers.clear()
        for consumer in consumers:
            consumer.queue.remove_consumer(consumer)
        self._requeue(channel.take_all_unacked())
        for consumer in consumers:
            if consumer.queue.unused_auto_delete and not consumer.queue.deleted:
                self._delete_queue(consumer.queue)
        self._confirms.pop(channel, None)

    # -- exchanges, queues, bindings ---------------------------------------------------

    def _exchange_declare(self, channel: Channel, _: Any, exchange: str, exchange_type: str,
                          passive: bool, durable: bool, auto_delete: bool, internal: bool,
                          arguments: dict) -> None:
        self.topology.declare_exchange(exchange, exchange_type, passive, durable, auto_delete,
                                       internal, arguments)
        channel.send(encode(Op.EXCHANGE_DECLARE_OK, channel.number))

    def _exchange_delete(self, channel: Channel, _: Any, exchange: str, if_unused: bool) -> None:
        self.topology.delete_exchange(exchange, if_unused)
        channel.send(encode(Op.EXCHANGE_DELETE_OK, channel.number))

    def _exchange_bind(self, channel: Channel, _: Any, destination: str, source: str,
                       routing_key: str, arguments: dict) -> None:
        check_name(routing_key, "routing key")
        self.topology.bind(self.topology.exchange(destination), source, routing_key, arguments)
        channel.send(encode(Op.EXCHANGE_BIND_OK, channel.number))

    def _exchange_unbind(self, channel: Channel, _: Any, destination: str, source: str,
                         routing_key: str, arguments: dict) -> None:
        self.topology.unbind(self.topology.exchange(destination), source, routing_key, arguments)
        channel.send(encode(Op.EXCHANGE_UNBIND_OK, channel.number))

    def _queue_declare(self, channel: Channel, _: Any, queue: str, passive: bool, durable: bool,
                       exclusive: bool, auto_delete: bool, arguments: dict) -> None:
        q = self.topology.declare_queue(queue, passive, durable, exclusive, auto_delete, arguments,
                                        channel.connection)
        channel.send(encode(Op.QUEUE_DECLARE_OK, channel.number, q.name, q.message_count,
                            len(q.consumers)))

    def _queue_bind(self, channel: Channel, _: Any, queue: str, exchange: str, routing_key: str,
                    arguments: dict) -> None:
        check_name(routing_key, "routing key")
        q = self.topology.queue(queue, channel.connection)
        self.topology.bind(q, exchange, routing_key, arguments)
        channel.send(encode(Op.QUEUE_BIND_OK, channel.number))

    def _queue_unbind(self, channel: Channel, _: Any, queue: str, exchange: str, routing_key: str,
                      arguments: dict) -> None:
        q = self.topology.queue(queue, channel.connection)
        self.topology.unbind(q, exchange, routing_key, arguments)
        channel.send(encode(Op.QUEUE_UNBIND_OK, channel.number))

    def _queue_purge(self, channel: Channel, _: Any, queue: str) -> None:
        count = self.topology.queue(queue, channel.connection).purge()
        channel.send(encode(Op.QUEUE_PURGE_OK, channel.number, count))

    def _queue_delete(self, channel: Channel, _: Any, queue: str, if_unused: bool,
                      if_empty: bool) -> None:
        count = 0
        if queue in self.topology.queues:
            q = self.topology.queue(queue, channel.connection)
            if if_unused and q.consumers:
                raise ChannelError(errors.PRECONDITION_FAILED, f"queue '{queue}' in vhost '{VHOST}' in use")
            if if_empty and q.has_messages:
                raise ChannelError(errors.PRECONDITION_FAILED, f"queue '{queue}' in vhost '{VHOST}' not empty")
            count = self._delete_queue(q)
        channel.send(encode(Op.QUEUE_DELETE_OK, channel.number, count))

    def _delete_queue(self, queue: Queue) -> int:
        """Delete a queue and tell its consumers (RabbitMQ's consumer cancel notify)."""
        for consumer in list(queue.consumers):
            queue.remove_consumer(consumer)
            channel = consumer.channel
            if channel.consumers.pop(consumer.tag, None) is not None:
                channel.send(encode(Op.BASIC_CANCEL, channel.number, consumer.tag))
        return self.topology.delete_queue(queue)

    # -- basic ------------------------------------------------------------------------

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
        channel.send(encode(Op.BASIC_QOS_OK, channel.number))
        self._dispatch_consumers_of(channel)

    def _basic_consume(self, channel: Channel, _: Any, queue: str, consumer_tag_: str,
                       auto_ack: bool, exclusive: bool, arguments: dict) -> None:
        q = self.topology.queue(queue, channel.connection)
        tag = consumer_tag_ or consumer_tag()
        if tag in channel.consumers:
            raise ConnectionError_(errors.NOT_ALLOWED, f"attempt to reuse consumer tag '{tag}'")
        if q.has_exclusive_consumer or (exclusive and q.consumers):
            raise ChannelError(errors.ACCESS_REFUSED, f"queue '{queue}' in vhost '{VHOST}' in exclusive use")
        consumer = Consumer(tag, q, channel, auto_ack, exclusive, channel.prefetch_count, arguments)
        channel.consumers[tag] = consumer
        q.add_consumer(consumer)
        channel.send(encode(Op.BASIC_CONSUME_OK, channel.number, tag))
        self._dispatch(q)

    def _basic_cancel(self, channel: Channel, _: Any, consumer_tag_: str) -> None:
        consumer = channel.consumers.pop(consumer_tag_, None)
        channel.send(encode(Op.BASIC_CANCEL_OK, channel.number, consumer_tag_))
        if consumer is not None:
            queue = consumer.queue
            queue.remove_consumer(consumer)
            if queue.unused_auto_delete:
                self._delete_queue(queue)

    def _basic_publish(self, channel: Channel, body: Any, exchange: str, routing_key: str,
                       mandatory: bool, properties: dict) -> None:
        if channel.confirm:
            channel.publish_seq += 1
            self._confirms[channel] = None
        ex = self.topology.exchanges.get(exchange)
        if ex is None:
            raise ChannelError(errors.NOT_FOUND, f"no exchange '{exchange}' in vhost '{VHOST}'")
        if ex.internal:
            raise ChannelError(errors.ACCESS_REFUSED, f"cannot publish to internal exchange '{exchange}' in vhost '{VHOST}'")
        if len(body) > self.max_body_bytes:
            raise ChannelError(errors.PRECONDITION_FAILED,
                               f"message size {len(body)} is larger than configured max size {self.max_body_bytes}")
        queues = self.topology.route(ex, routing_key, properties)
        if queues:
            self._publish_seq += 1
            message = Message(self._publish_seq, exchange, routing_key, properties, body)
            if properties.get("delivery_mode") == PERSISTENT:
                self._store_message(channel, message, queues)
            for queue in queues:
                location = self._page(queue, message) if queue.journal is not None else None
                if location is not None:
                    queue.paged.append(message.seq, location)
                else:
                    queue.messages.append(message)
                if queue.consumers:
                    self._dispatch(queue)
        elif mandatory:
            channel.send(encode(Op.BASIC_RETURN, channel.number, errors.NO_ROUTE, "NO_ROUTE",
                                exchange, routing_key, properties), body)

    def _page(self, queue: Queue, message: Message) -> int | None:
        """The store location under which ``message`` joins the durable queue's paged
        tail, or None to keep it in memory (the head is not full, or no tail is kept).

        Once a queue has a tail, every newcomer joins it, to keep the order: a transient
        message is then journaled too (``QueueJournal.page``).
        """
        if not self.store.pages:
            return None
        held = len(queue.messages)
        if not (len(queue.paged) or held >= PAGE_AFTER or held * len(message.body) >= PAGE_AFTER_BYTES):
            return None
        if message.location is not None:
            return message.location
        assert queue.journal is not None  # only durable queues page
        try:
            return queue.journal.page(message)
        except OSError as exc:
            log.error("cannot page a message of queue '%s' to disk: %s", queue.name, exc)
            return None

    def _store_message(self, channel: Channel, message: Message, queues: Iterable[Queue]) -> None:
        """Journal a persistent message for the durable queues it reached."""
        queue_ids = [q.journal.queue_id for q in queues if q.journal is not None]
        if not queue_ids:
            return
        if channel.confirm:
            self._awaiting_disk.add(channel)
        try:
            message.location = self.store.append(message.seq, queue_ids, message.exchange,
                                                 message.routing_key, message.properties, message.body)
        except OSError as exc:  # kept in memory; a confirming publisher gets a nack
            log.error("cannot store a persistent message: %s", exc)
            if channel.confirm:
                self._failed.add(channel)

    def _basic_get(self, channel: Channel, _: Any, queue: str, auto_ack: bool) -> None:
        q = self.topology.queue(queue, channel.connection)
        if not q.has_messages:
            channel.send(encode(Op.BASIC_GET_EMPTY, channel.number))
            return
        message = q.take(auto_ack)
        tag = channel.take_tag()
        if not auto_ack:
            channel.unacked[tag] = Unacked(q, message, None)
        channel.send(encode(Op.BASIC_GET_OK, channel.number, tag, message.redelivered,
                            message.exchange, message.routing_key, q.message_count,
                            message.properties), message.body)

    def _basic_ack(self, channel: Channel, _: Any, delivery_tag: int, multiple: bool) -> None:
        entries = channel.settle(delivery_tag, multiple)
        for entry in entries:
            self._forget(entry)
        self._after_settle(channel, entries)

    @staticmethod
    def _forget(entry: Unacked) -> None:
        """A delivery is settled for good: free its credit and its place in the store."""
        entry.settle()
        journal = entry.queue.journal
        if journal is not None and entry.message.location is not None:
            journal.remove(entry.message.seq, entry.message.location)

    def _basic_nack(self, channel: Channel, _: Any, delivery_tag: int, multiple: bool,
                    requeue: bool) -> None:
        entries = channel.settle(delivery_tag, multiple)
        if requeue:
            self._requeue(entries)
        else:
            for entry in entries:
                self._forget(entry)
        self._after_settle(channel, entries)

    def _basic_reject(self, channel: Channel, _: Any, delivery_tag: int, requeue: bool) -> None:
        self._basic_nack(channel, None, delivery_tag, False, requeue)

    def _basic_recover(self, channel: Channel, _: Any, requeue: bool) -> None:
        if not requeue:
            raise ConnectionError_(errors.NOT_IMPLEMENTED, "requeue=false")
        self._requeue(channel.take_all_unacked())
        channel.send(encode(Op.BASIC_RECOVER_OK, channel.number))

    def _confirm_select(self, channel: Channel, _: Any) -> None:
        channel.confirm = True
        channel.send(encode(Op.CONFIRM_SELECT_OK, channel.number))

    # -- delivery plumbing -------------------------------------------------------------

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

    def _dispatch_consumers_of(self, channel: Channel) -> None:
        for queue in {id(c.queue): c.queue for c in channel.consumers.values()}.values():
            self._dispatch(queue)

    def _requeue(self, entries: Iterable[Unacked]) -> None:
        """Return deliveries to the head of their queues, in order, and dispatch them."""
        by_queue: dict[int, tuple[Queue, list[Message]]] = {}
        for entry in entries:
            if entry.queue.deleted:  # nowhere to go back to
                self._forget(entry)
                continue
            entry.settle()
            by_queue.setdefault(id(entry.queue), (entry.queue, []))[1].append(entry.message)
        for queue, messages in by_queue.values():
            queue.requeue(messages)
        for queue, _ in by_queue.values():
            if not queue.deleted:
                self._dispatch(queue)

    def _flush_confirms(self) -> None:
        """One ``multiple`` ack (or nack, if storing failed) per confirm channel per batch,
        after its returns."""
        for channel in self._confirms:
            if channel.connection.channels.get(channel.number) is channel:
                op = Op.BASIC_NACK if channel in self._failed else Op.BASIC_ACK
                fields = (True, False) if op == Op.BASIC_NACK else (True,)
                channel.send(encode(op, channel.number, channel.publish_seq, *fields))
        self._confirms.clear()
        self._failed.clear()


__all__ = ["Broker", "BrokerError", "DEFAULT_HEARTBEAT_S", "DEFAULT_MAX_BODY_BYTES"]
