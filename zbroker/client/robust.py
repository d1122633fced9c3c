"""A connection that heals: ``RobustConnection``, an extension beyond pika (aio-pika's
``connect_robust`` is the model).

Rules:
- It is a ``BlockingConnection`` (same methods, same channels) that, when the broker goes
  away (a restart, a SIGKILL, a network cut noticed by heartbeats, a 320 close), connects
  again with backoff (``reconnect_delay`` doubling up to ``max_reconnect_delay``,
  forever) instead of raising. The first connection, a refused login (403/530), a
  protocol error and the program's own ``close()`` behave as a BlockingConnection's.
- Restored, per channel in number order and in the order the program did things: the
  channel opens again with its number, confirm mode and prefetch; its exchanges, queues
  and bindings are declared again (a server-named queue gets a new name, and the old
  one keeps working in this connection's calls); its consumers come back with the same
  tags and callbacks; messages published with ``publish_nowait`` in confirm mode and not
  yet confirmed are published again (at least once: the broker may have them already).
- Delivery tags keep growing across reconnections. A tag from before the cut is stale:
  the broker requeued that message when the connection died, so acking, nacking or
  rejecting it is dropped with a log line, never sent (on the new channel the number
  belongs to another message). Deliveries received but not yet dispatched are dropped
  for the same reason.
- A blocking call the cut interrupted is done again once restored: declarations and
  bindings (idempotent), ``basic_publish`` (sent again; in confirm mode it returns once
  confirmed), ``basic_get``, ``wait_for_confirms``. ``process_data_events`` returns.
- The program is told: a WARNING at the loss, an INFO line when restored, and
  ``add_on_connection_lost_callback(cb(connection, reason))`` /
  ``add_on_reconnect_callback(cb(connection))``, called in the program's thread from the
  blocking call that noticed.
- Transactions are refused on its channels (``tx_select``): a transaction open at the
  cut could not be restored, and a program must not believe its messages committed.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable, Iterable, cast

from zbroker.client import exceptions
from zbroker.client.channel import BlockingChannel, ReturnedMessage
from zbroker.client.connection import PERMANENT, BlockingConnection
from zbroker.client.parameters import ConnectionParameters
from zbroker.protocol import Op

log = logging.getLogger(__name__)

_SETTLE_OPS = frozenset({Op.BASIC_ACK, Op.BASIC_NACK, Op.BASIC_REJECT})


class _Restored(Exception):
    """Internal: the connection was lost and is restored; the interrupted call runs again."""


class _LostAgain(Exception):
    """Internal: lost again while restoring; the restore starts over."""


class RobustConnection(BlockingConnection):
    """``BlockingConnection`` that reconnects and restores itself (module rules)."""

    def __init__(self, parameters: ConnectionParameters | Iterable[ConnectionParameters] | None = None,
                 reconnect_delay: float = 1.0, max_reconnect_delay: float = 30.0) -> None:
        if reconnect_delay <= 0 or max_reconnect_delay < reconnect_delay:
            raise ValueError("reconnect_delay must be > 0 and max_reconnect_delay >= reconnect_delay")
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        #: How many times the connection was restored.
        self.reconnects = 0
        self._outage: Exception | None = None
        self._phase = "connecting"  # "connecting" (base rules), "open", "restoring"
        self._in_restore = False
        self._user_closing = False
        self._lost_callbacks: list[Callable[..., None]] = []
        self._reconnect_callbacks: list[Callable[..., None]] = []
        #: Server-named queues renamed by a restore: old name -> current name.
        self.aliases: dict[str, str] = {}
        super().__init__(parameters)
        self._phase = "open"

    def add_on_connection_lost_callback(self, callback: Callable[..., None]) -> None:
        self._lost_callbacks.append(callback)

    def add_on_reconnect_callback(self, callback: Callable[..., None]) -> None:
        self._reconnect_callbacks.append(callback)

    def alias(self, name: str) -> str:
        return self.aliases.get(name, name)

    # -- losing and restoring ------------------------------------------------------------

    def _new_channel(self, channel_number: int) -> Any:
        return RobustChannel(self, channel_number)

    def _recoverable(self, reason: Exception) -> bool:
        if self._phase == "connecting" or self._user_closing or self._close_ok or isinstance(reason, PERMANENT):
            return False
        if isinstance(reason, exceptions.ConnectionClosedByBroker):
            return reason.reply_code == 320  # CONNECTION_FORCED: a restart, an operator
        return isinstance(reason, exceptions.AMQPConnectionError)

    def _lose(self, reason: exceptions.AMQPConnectionError) -> None:
        if self._in_restore and self._phase == "connecting":
            # A failed attempt: ``_connect`` raises it; the channels wait for the next one.
            self._closed_reason = self._closed_reason or reason
            self._teardown()
            return
        if not self._recoverable(reason):
            super()._lose(reason)
            return
        if self._outage is None:
            self._outage = reason
            log.warning("connection to %s lost (%r); reconnecting", self._endpoint, reason)
        self._drop_deliveries()
        self._teardown()

    def _drop_deliveries(self) -> None:
        """Deliveries not yet dispatched: the broker requeued them when we were lost."""
        self._events.take(lambda event: event[1] == "deliver")
        for channel in self._robust_channels():
            channel.drop_deliveries()

    def _robust_channels(self) -> list[RobustChannel]:
        """The open channels, in number order (all are RobustChannels: ``_new_channel``)."""
        return [cast(RobustChannel, self._channels[n]) for n in sorted(self._channels)]

    def _raise_if_lost(self) -> None:
        if self._outage is not None:
            if self._phase == "restoring":
                raise _LostAgain()
            self._restore()
            raise _Restored()
        super()._raise_if_lost()

    def _restore(self) -> None:
        reason = self._outage
        for callback in list(self._lost_callbacks):
            callback(self, reason)
        delay = self.reconnect_delay
        started = time.monotonic()
        self._in_restore = True
        try:
            self._restore_loop(reason, delay)
        finally:
            self._in_restore = False
        self._phase = "open"
        self.reconnects += 1
        log.info("connection to %s restored after %.1f s (%d channel(s))", self._endpoint,
                 time.monotonic() - started, len(self._channels))
        for callback in list(self._reconnect_callbacks):
            callback(self)

    def _restore_loop(self, reason: Exception | None, delay: float) -> None:
        while True:
            self._outage = None  # (set again by a loss while restoring, or below)
            try:
                self._phase = "connecting"
                self._reconnect_once()
                self._phase = "restoring"
                for channel in self._robust_channels():
                    try:
                        channel.restore()
                    except exceptions.ChannelClosed as exc:  # e.g. a redeclaration now refused
                        log.error("channel %d could not be restored: %r", channel.channel_number, exc)
                break
            except _LostAgain:
                self._teardown()
            except PERMANENT as exc:
                self._outage = None
                self._phase, self._in_restore = "open", False
                self._closed_reason = None
                super()._lose(exc)
                raise
            except exceptions.AMQPConnectionError as exc:
                log.info("reconnecting to the broker: %s; next try in %.1f s", exc, delay)
            self._outage = reason
            time.sleep(delay)
            delay = min(delay * 2, self.max_reconnect_delay)

    def _reconnect_once(self) -> None:
        """One attempt over the candidates; raises the last reason if none answered."""
        last: Exception | None = None
        for params in self._candidates:
            self._reason_raised = False
            self._blocked, self._blocked_deadline, self._unreported = False, None, 0
            last = self._attempt(params)
            if last is None:
                return
        raise last or exceptions.AMQPConnectionError("no connection parameters")

    # -- the program's calls ----------------------------------------------------------

    def retrying(self, call: Callable[[], Any]) -> Any:
        """Run ``call``; if the connection was restored meanwhile, run it again."""
        while True:
            try:
                return call()
            except _Restored:
                continue

    def channel(self, channel_number: int | None = None) -> Any:
        return self.retrying(lambda: super(RobustConnection, self).channel(channel_number))

    def process_data_events(self, time_limit: float | None = 0) -> None:
        try:
            super().process_data_events(time_limit)
        except _Restored:
            return

    @property
    def is_open(self) -> bool:
        """True while it is open or being restored (it is not closed)."""
        return self._closed_reason is None and (self._sock is not None or self._outage is not None)

    def close(self, reply_code: int = 200, reply_text: str = "Normal shutdown") -> None:
        self._user_closing = True
        if self._outage is not None and self._closed_reason is None:
            self._outage = None  # nothing to say goodbye to
            self._close_ok = True
            super()._lose(exceptions.ConnectionClosedByClient(reply_code, reply_text))
            self._wakeup = None
            return
        super().close(reply_code, reply_text)


class RobustChannel(BlockingChannel):
    """A channel of a ``RobustConnection``: remembers what it declared, consumed and
    published unconfirmed, to do it again after a reconnection."""

    def __init__(self, connection: RobustConnection, channel_number: int) -> None:
        super().__init__(connection, channel_number)
        #: Its connection's extensions beyond the link: queue aliases, retrying a call.
        self._robust = connection
        #: (method name, arguments) of declarations and bindings, in the program's order.
        self._journal: list[tuple[str, tuple]] = []
        self._qos: dict[bool, tuple[int, int]] = {}
        #: consumer tag -> (queue, exclusive, arguments)
        self._consumed: dict[str, tuple[str, bool, dict | None]] = {}
        #: publish_nowait sequence -> (exchange, routing_key, body, properties, mandatory)
        self._resend: dict[int, tuple] = {}
        self._tag_offset = 0
        self._max_tag = 0

    # -- delivery tags across reconnections (rule 3) -------------------------------------

    def handle_command(self, op: int, fields: list[Any], body: Any) -> None:
        """Internal to zbroker's client: a command from the broker, its delivery tag
        counted on from before the reconnections."""
        if op == Op.BASIC_DELIVER:
            fields = list(fields)
            fields[2] += self._tag_offset
            self._max_tag = max(self._max_tag, fields[2])
        super().handle_command(op, fields, body)

    def _send(self, op: int, *fields: Any, body: Any = None) -> None:
        if op in _SETTLE_OPS and fields[0]:
            tag = fields[0]
            if tag <= self._tag_offset:
                log.info("%s of delivery tag %d dropped: it is from before the reconnection (the broker "
                         "requeued that message)", Op(op).name, tag)
                return
            fields = (tag - self._tag_offset, *fields[1:])
        super()._send(op, *fields, body=body)

    def drop_deliveries(self) -> None:
        """Internal to zbroker's client: the connection was lost; deliveries held for a
        consume() generator are dropped (the broker requeued them)."""
        for consumer in self._consumers.values():
            if consumer.pending:
                consumer.pending.clear()

    # -- restoring -----------------------------------------------------------------------

    def restore(self) -> None:
        """Internal to zbroker's client: the connection is back; open this channel again
        and redo what it did (module rules)."""
        if not self._open_state:
            return  # closed before the cut: stays closed
        self._tag_offset = self._max_tag
        self._reply = None
        self._publish_seq = self._confirmed_seq = 0
        self._nacked.clear()
        self._unconfirmed.clear()
        self._open()
        if self._confirm:
            BlockingChannel.confirm_delivery(self)
        for global_qos, (size, count) in self._qos.items():
            BlockingChannel.basic_qos(self, size, count, global_qos)
        for method, args in self._journal:
            self._apply(method, args)
        for tag, (queue, exclusive, arguments) in self._consumed.items():
            consumer = self._consumers.get(tag)
            if consumer is not None:
                self._rpc(Op.BASIC_CONSUME, self._robust.alias(queue), tag, consumer.auto_ack, exclusive,
                          arguments or {}, expect={Op.BASIC_CONSUME_OK})
        self._publish_again()

    def _publish_again(self) -> None:
        """Publish again what was not confirmed before the cut. The messages stay in
        ``_resend`` until now, and one not yet sent again goes back there if the
        connection is lost meanwhile: a restore cut short by another loss (the broker
        killed again while it answered the round trips above) must not forget them."""
        pending = list(self._resend.values())
        self._resend.clear()
        for done, message in enumerate(pending):
            try:
                self.publish_nowait(*message)
            except BaseException:
                # Numbered past this connection's publishes, so that none of its confirms
                # settles them (the numbers start again at the next restore).
                for seq, rest in enumerate(pending[done:], start=self._publish_seq + 1):
                    self._resend[seq] = rest
                raise
        if pending:
            log.info("channel %d: %d unconfirmed message(s) published again", self._number, len(pending))

    def _apply(self, method: str, args: tuple) -> None:
        aliases = self._robust.aliases
        if method == "queue_declare" and args[0].startswith("amq.gen-"):  # server-named
            old = args[0]
            new = BlockingChannel.queue_declare(self, "", *args[1:]).method.queue
            aliases.update({name: new for name, current in aliases.items() if current == aliases.get(old, old)})
            aliases[old] = new
            return
        if method == "queue_declare":
            BlockingChannel.queue_declare(self, *args)
        elif method in ("queue_bind", "queue_unbind"):
            getattr(BlockingChannel, method)(self, self._robust.alias(args[0]), *args[1:])
        else:
            getattr(BlockingChannel, method)(self, *args)

    def _record(self, method: str, args: tuple) -> None:
        if (method, args) not in self._journal:
            self._journal.append((method, args))

    def _forget(self, keep: Callable[[str, tuple], bool]) -> None:
        self._journal = [(m, a) for m, a in self._journal if keep(m, a)]

    # -- the program's calls: done, remembered, done again after a restore ---------------

    def _retry(self, call: Callable[[], Any]) -> Any:
        return self._robust.retrying(call)

    def exchange_declare(self, exchange: str, exchange_type: Any = "direct", passive: bool = False,
                         durable: bool = False, auto_delete: bool = False, internal: bool = False,
                         arguments: dict | None = None) -> Any:
        args = (exchange, exchange_type, passive, durable, auto_delete, internal, arguments)
        result = self._retry(lambda: BlockingChannel.exchange_declare(self, *args))
        if not passive:
            self._record("exchange_declare", args)
        return result

    def exchange_delete(self, exchange: str | None = None, if_unused: bool = False) -> Any:
        result = self._retry(lambda: BlockingChannel.exchange_delete(self, exchange, if_unused))
        self._forget(lambda m, a: not ((m == "exchange_declare" and a[0] == exchange)
                                       or (m == "queue_bind" and a[1] == exchange)
                                       or (m == "exchange_bind" and exchange in a[:2])))
        return result

    def exchange_bind(self, destination: str, source: str, routing_key: str = "",
                      arguments: dict | None = None) -> Any:
        args = (destination, source, routing_key, arguments)
        result = self._retry(lambda: BlockingChannel.exchange_bind(self, *args))
        self._record("exchange_bind", args)
        return result

    def exchange_unbind(self, destination: str | None = None, source: str | None = None,
                        routing_key: str = "", arguments: dict | None = None) -> Any:
        args = (destination, source, routing_key, arguments)
        result = self._retry(lambda: BlockingChannel.exchange_unbind(self, *args))
        self._forget(lambda m, a: not (m == "exchange_bind" and a == args))
        return result

    def queue_declare(self, queue: str = "", passive: bool = False, durable: bool = False,
                      exclusive: bool = False, auto_delete: bool = False, arguments: dict | None = None) -> Any:
        name = self._robust.alias(queue)
        result = self._retry(lambda: BlockingChannel.queue_declare(
            self, name, passive, durable, exclusive, auto_delete, arguments))
        if not passive:
            self._record("queue_declare", (queue or result.method.queue, False, durable, exclusive,
                                           auto_delete, arguments))
        return result

    def queue_bind(self, queue: str, exchange: str, routing_key: str | None = None,
                   arguments: dict | None = None) -> Any:
        args = (queue, exchange, queue if routing_key is None else routing_key, arguments)
        result = self._retry(lambda: BlockingChannel.queue_bind(self, self._robust.alias(queue), *args[1:]))
        self._record("queue_bind", args)
        return result

    def queue_unbind(self, queue: str, exchange: str | None = None, routing_key: str | None = None,
                     arguments: dict | None = None) -> Any:
        args = (queue, exchange, queue if routing_key is None else routing_key, arguments)
        result = self._retry(lambda: BlockingChannel.queue_unbind(self, self._robust.alias(queue), *args[1:]))
        self._forget(lambda m, a: not (m == "queue_bind" and a == args))
        return result

    def queue_purge(self, queue: str) -> Any:
        return self._retry(lambda: BlockingChannel.queue_purge(self, self._robust.alias(queue)))

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False) -> Any:
        result = self._retry(lambda: BlockingChannel.queue_delete(
            self, self._robust.alias(queue), if_unused, if_empty))
        self._forget(lambda m, a: not (m in ("queue_declare", "queue_bind") and a[0] == queue))
        return result

    def confirm_delivery(self) -> None:
        self._retry(lambda: BlockingChannel.confirm_delivery(self))

    def basic_qos(self, prefetch_size: int = 0, prefetch_count: int = 0, global_qos: bool = False,
                  **kwargs: Any) -> None:
        self._retry(lambda: BlockingChannel.basic_qos(self, prefetch_size, prefetch_count, global_qos, **kwargs))
        self._qos[bool(global_qos)] = (prefetch_size, prefetch_count)

    def _start_consumer(self, consumer: Any, queue: str, exclusive: bool, arguments: dict | None) -> None:
        self._retry(lambda: BlockingChannel._start_consumer(
            self, consumer, self._robust.alias(queue), exclusive, arguments))
        self._consumed[consumer.tag] = (queue, exclusive, arguments)

    def basic_cancel(self, consumer_tag: str) -> list:
        self._consumed.pop(consumer_tag, None)
        return self._retry(lambda: BlockingChannel.basic_cancel(self, consumer_tag))

    def basic_get(self, queue: str, auto_ack: bool = False) -> tuple[Any, Any, Any]:
        method, properties, body = self._retry(lambda: BlockingChannel.basic_get(
            self, self._robust.alias(queue), auto_ack))
        if method is not None:
            method.delivery_tag += self._tag_offset
            self._max_tag = max(self._max_tag, method.delivery_tag)
        return method, properties, body

    def basic_publish(self, exchange: str, routing_key: str, body: bytes | str, properties: Any = None,
                      mandatory: bool = False) -> None:
        key = self._robust.alias(routing_key) if exchange == "" else routing_key
        self._retry(lambda: BlockingChannel.basic_publish(self, exchange, key, body, properties, mandatory))

    def publish_nowait(self, exchange: str, routing_key: str, body: bytes | str, properties: Any = None,
                       mandatory: bool = False) -> int:
        key = self._robust.alias(routing_key) if exchange == "" else routing_key
        seq = self._retry(lambda: BlockingChannel.publish_nowait(self, exchange, key, body, properties, mandatory))
        if seq:
            self._resend[seq] = (exchange, key, body, properties, mandatory)
        return seq

    def _settle_unconfirmed(self, up_to: int) -> None:
        super()._settle_unconfirmed(up_to)
        for seq in [s for s in self._resend if s <= up_to]:
            del self._resend[seq]

    def wait_for_confirms(self, timeout: float | None = None) -> bool:
        return self._retry(lambda: BlockingChannel.wait_for_confirms(self, timeout))

    def basic_ack(self, delivery_tag: int = 0, multiple: bool = False) -> None:
        self._retry(lambda: BlockingChannel.basic_ack(self, delivery_tag, multiple))

    def basic_nack(self, delivery_tag: int = 0, multiple: bool = False, requeue: bool = True) -> None:
        self._retry(lambda: BlockingChannel.basic_nack(self, delivery_tag, multiple, requeue))

    def basic_reject(self, delivery_tag: int = 0, requeue: bool = True) -> None:
        self._retry(lambda: BlockingChannel.basic_reject(self, delivery_tag, requeue))

    def basic_recover(self, requeue: bool = False) -> None:
        self._retry(lambda: BlockingChannel.basic_recover(self, requeue))

    def tx_select(self) -> Any:
        raise exceptions.AMQPChannelError("transactions are not supported on a RobustConnection's channels: "
                                          "one open at a reconnection could not be restored (use confirms)")


__all__ = ["RobustConnection", "RobustChannel", "ReturnedMessage"]
