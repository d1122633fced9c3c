"""``BlockingChannel``: pika's blocking channel API on zbroker's wire.

Synchronous methods (declare, bind, consume, get, ...) send one command and pump the
connection until its reply, or until the broker closes the channel, which raises
``ChannelClosedByBroker`` with RabbitMQ's code and text. Afterwards every call raises
``ChannelWrongStateError('Channel is closed.')``, as pika does.

Deliveries are queued as connection events and handed to consumer callbacks only while
the program is inside a dispatching call. A consumer being cancelled by the program
rejects (requeue) what it had not yet dispatched, so nothing it was sent is lost.
"""
from __future__ import annotations

import logging
import time
import uuid
import warnings
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Generator, NamedTuple

from zbroker.client import exceptions, frame, spec
from zbroker.client.exchange_type import ExchangeType
from zbroker.protocol import Op, encode
from zbroker.protocol.native_codec import MAX_COMMAND_BYTES
from zbroker.protocol.tables import TableError, check_properties, check_table

if TYPE_CHECKING:
    from zbroker.client.connection import BlockingConnection

log = logging.getLogger(__name__)

MAX_SHORT_STRING = 255
_CANCELLED = object()  # marks a broker cancel in a consume() generator's queue


class ReturnedMessage(NamedTuple):
    """A message the broker returned: ``method`` is ``Basic.Return``."""

    method: Any
    properties: spec.BasicProperties
    body: bytes


class _Consumer:
    __slots__ = ("tag", "callback", "auto_ack", "pending")

    def __init__(self, tag: str, callback: Callable[..., None] | None, auto_ack: bool) -> None:
        self.tag = tag
        self.callback = callback
        self.auto_ack = auto_ack
        #: consume() generators keep their deliveries here instead of a callback.
        self.pending: deque[Any] | None = None if callback is not None else deque()


def _short(value: Any, what: str) -> str:
    if type(value) is not str:
        if not isinstance(value, str):
            raise TypeError(f"{what} must be a str, got {type(value).__name__}")
        value = str.__str__(value)  # a str subclass (an ExchangeType member): its plain text
    # UTF-8 takes at most 4 bytes a character: only longer strings need encoding to check.
    if len(value) > MAX_SHORT_STRING // 4 and len(value.encode()) > MAX_SHORT_STRING:
        raise exceptions.ShortStringTooLong(value.encode())
    return value


def _table(arguments: dict | None) -> dict:
    if arguments is None:
        return {}
    if not isinstance(arguments, dict):
        raise TypeError(f"arguments must be a dict or None, got {type(arguments).__name__}")
    table = spec.amqp_table(arguments)
    try:  # the broker would close the connection (502) for these: say it here
        check_table(table, "arguments")
    except TableError as exc:
        raise ValueError(f"invalid arguments: {exc}") from None
    return table


def _body(body: Any) -> bytes:
    if isinstance(body, str):
        return body.encode("utf-8")
    if isinstance(body, (bytes, bytearray, memoryview)):
        return bytes(body) if not isinstance(body, bytes) else body
    raise TypeError(f"body must be bytes or str, got {type(body).__name__}")


_CONSUME_PARAMS = ("queue", "on_message_callback", "auto_ack", "exclusive", "consumer_tag", "arguments")
_CONSUME_PARAMS_0X = ("consumer_callback", "queue", "no_ack", "exclusive", "consumer_tag", "arguments")


def _consume_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Read basic_consume's arguments in pika 1.x order, or pika 0.x's callback-first one."""
    old_style = (args and callable(args[0])) or "consumer_callback" in kwargs or "no_ack" in kwargs
    names = _CONSUME_PARAMS_0X if old_style else _CONSUME_PARAMS
    if len(args) > len(names):
        raise TypeError(f"basic_consume() takes at most {len(names)} arguments")
    values: dict[str, Any] = {"auto_ack": False, "no_ack": False, "exclusive": False,
                              "consumer_tag": None, "arguments": None, "queue": ""}
    values.update(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise TypeError(f"basic_consume() got an unexpected keyword argument {key!r}")
        if key in dict(zip(names, args)):
            raise TypeError(f"basic_consume() got multiple values for argument {key!r}")
        values[key] = value
    if old_style:
        warnings.warn("basic_consume(callback, queue, no_ack=...) is pika 0.x; use "
                      "basic_consume(queue, on_message_callback, auto_ack=...)", DeprecationWarning, stacklevel=3)
        return (values["queue"], values.get("consumer_callback"), values["no_ack"], values["exclusive"],
                values["consumer_tag"], values["arguments"])
    if "queue" not in kwargs and not args:
        raise TypeError("basic_consume() missing required argument: 'queue'")
    return (values["queue"], values.get("on_message_callback"), values["auto_ack"], values["exclusive"],
            values["consumer_tag"], values["arguments"])


class BlockingChannel:
    def __init__(self, connection: "BlockingConnection", channel_number: int) -> None:
        self._connection = connection
        self._number = channel_number
        self._open_state = False
        self._closing_reason: exceptions.ChannelClosed | None = None
        self._reply: tuple[int, list[Any], Any] | None = None
        self._consumers: dict[str, _Consumer] = {}
        self._generator: tuple[tuple[Any, ...], _Consumer] | None = None
        #: Tags cancelled by the program: late deliveries for them are rejected/kept.
        self._cancelled: dict[str, list[Any]] = {}
        self._confirm = False
        self._publish_seq = 0
        self._confirmed_seq = 0  # every publish up to here is acked or nacked
        self._nacked: set[int] = set()
        #: Messages sent with publish_nowait() awaiting their confirm, kept for a NackError.
        self._unconfirmed: dict[int, ReturnedMessage] = {}
        self._nacked_messages: list[ReturnedMessage] = []
        self._returned: list[ReturnedMessage] = []
        self._on_return: list[Callable[..., None]] = []
        self._on_cancel: list[Callable[..., None]] = []

    # -- plumbing ---------------------------------------------------------------------

    def _open(self) -> None:
        self._send(Op.CHANNEL_OPEN)
        self._await({Op.CHANNEL_OPEN_OK})
        self._open_state = True

    def _send(self, op: int, *fields: Any, body: Any = None) -> None:
        parts = [encode(op, self._number, *fields)]
        if body is not None:
            parts.append(body)
        self._connection._send(parts)

    def _raise_if_not_open(self) -> None:
        if not self.is_open:
            raise exceptions.ChannelWrongStateError("Channel is closed.")

    def _rpc(self, op: int, *fields: Any, expect: set[int]) -> tuple[list[Any], Any]:
        self._raise_if_not_open()
        self._send(op, *fields)
        return self._await(expect)

    def _await(self, expect: set[int]) -> tuple[list[Any], Any]:
        self._reply = None
        self._connection._wait_until(lambda: self._reply is not None or self._closing_reason is not None)
        if self._reply is None:
            assert self._closing_reason is not None  # the wait ended on one or the other
            raise self._closing_reason
        op, fields, body = self._reply
        self._reply = None
        if op not in expect:
            raise exceptions.UnexpectedFrameError(f"expected {sorted(Op(e).name for e in expect)}, got {Op(op).name}")
        return fields, body

    def _method_frame(self, method: Any) -> frame.Method:
        return frame.Method(self._number, method)

    # -- input from the connection ------------------------------------------------------

    def _on_command(self, op: int, fields: list[Any], body: Any) -> None:
        if op == Op.BASIC_DELIVER:
            _, tag, dtag, redelivered, exchange, routing_key, props = fields
            method = spec.Basic.Deliver(tag, dtag, redelivered, exchange, routing_key)
            self._on_delivery(method, spec.BasicProperties.from_wire(props), body)
        elif op == Op.BASIC_ACK or op == Op.BASIC_NACK:
            _, tag, multiple = fields[:3]
            if op == Op.BASIC_NACK:
                self._nacked.update(range(self._confirmed_seq + 1 if multiple else tag, tag + 1))
            self._confirmed_seq = max(self._confirmed_seq, tag)
            if self._unconfirmed:
                self._settle_unconfirmed(tag)
        elif op == Op.BASIC_RETURN:
            _, code, text, exchange, routing_key, props = fields
            returned = ReturnedMessage(spec.Basic.Return(code, text, exchange, routing_key),
                                       spec.BasicProperties.from_wire(props), body)
            if self._confirm:  # raised by the publish as UnroutableError, and called back
                self._returned.append(returned)
            self._connection._queue_event(self, "return", returned)
        elif op == Op.BASIC_CANCEL:
            self._connection._queue_event(self, "cancel", fields[1])
        elif op == Op.CHANNEL_CLOSE:
            self._closed(exceptions.ChannelClosedByBroker(fields[1], fields[2]))
            self._connection._queue_event(self, "closed", None)
            log.info("channel %d closed by broker: (%s) %s", self._number, fields[1], fields[2])
            self._connection._send([encode(Op.CHANNEL_CLOSE_OK, self._number)])
        elif op == Op.CHANNEL_CLOSE_OK:
            self._closed(exceptions.ChannelClosedByClient(200, "Normal shutdown"))
        else:
            self._reply = (op, fields, body)

    def _on_delivery(self, method: Any, properties: spec.BasicProperties, body: Any) -> None:
        tag = method.consumer_tag
        if tag in self._consumers:
            self._connection._queue_event(self, "deliver", (method, properties, body))
        elif tag in self._cancelled:
            # Sent before the broker saw our cancel: hand it back (manual) or keep it
            # for basic_cancel's return value (auto_ack), as pika does.
            self._cancelled[tag].append((method, properties, body))
        else:
            log.debug("delivery for unknown consumer %s rejected", tag)
            self._send(Op.BASIC_REJECT, method.delivery_tag, True)

    def _dispatch_event(self, kind: str, payload: Any) -> bool:
        if kind == "closed":
            return True  # wakes a waiting process_data_events, which then raises
        if not self._open_state:  # closed by the broker, the program or the connection
            return False
        if kind == "deliver":
            consumer = self._consumers.get(payload[0].consumer_tag)
            if consumer is None:
                return False
            if consumer.pending is not None:
                consumer.pending.append(payload)
            else:
                consumer.callback(self, *payload)
            return True
        if kind == "return":
            for callback in self._on_return:
                callback(self, *payload)
            return True
        if kind == "cancel":
            consumer = self._consumers.pop(payload, None)
            if consumer is not None and consumer.pending is not None:
                consumer.pending.append(_CANCELLED)
            for callback in self._on_cancel:
                callback(self._method_frame(spec.Basic.Cancel(consumer_tag=payload)))
            return True
        return False

    def _closed(self, reason: exceptions.ChannelClosed) -> None:
        self._open_state = False
        self._closing_reason = reason
        self._connection._channels.pop(self._number, None)

    def _on_connection_closed(self, reason: Exception) -> None:
        self._open_state = False
        self._connection._channels.pop(self._number, None)

    def _forget_consumers(self) -> None:
        """Drop undispatched deliveries: closing the channel makes the broker requeue them."""
        self._consumers.clear()
        self._generator = None
        events = self._connection._events
        kept = [e for e in events if e[0] is not self]
        events.clear()
        events.extend(kept)

    def _take_pending(self, tag: str) -> list[Any]:
        """Remove and return undispatched deliveries for one consumer."""
        events = self._connection._events
        taken = [e[2] for e in events if e[0] is self and e[1] == "deliver" and e[2][0].consumer_tag == tag]
        if taken:
            kept = [e for e in events if not (e[0] is self and e[1] == "deliver" and e[2][0].consumer_tag == tag)]
            events.clear()
            events.extend(kept)
        return taken

    def _process_data_events(self, time_limit: float | None) -> None:
        self._connection.process_data_events(time_limit=time_limit)
        if isinstance(self._closing_reason, exceptions.ChannelClosedByBroker):
            raise self._closing_reason

    # -- properties ---------------------------------------------------------------------

    @property
    def channel_number(self) -> int:
        return self._number

    @property
    def connection(self) -> "BlockingConnection":
        return self._connection

    @property
    def is_open(self) -> bool:
        return self._open_state and self._connection.is_open

    @property
    def is_closed(self) -> bool:
        return not self.is_open

    @property
    def consumer_tags(self) -> list[str]:
        return list(self._consumers)

    def __int__(self) -> int:
        return self._number

    def __repr__(self) -> str:
        return f"<BlockingChannel number={self._number} open={self.is_open}>"

    def __enter__(self) -> "BlockingChannel":
        return self

    def __exit__(self, exc_type: Any, value: Any, traceback: Any) -> None:
        if self.is_open:
            self.close()

    # -- channel ------------------------------------------------------------------------

    def close(self, reply_code: int = 0, reply_text: str = "Normal shutdown") -> None:
        self._raise_if_not_open()
        self._forget_consumers()
        self._send(Op.CHANNEL_CLOSE, reply_code, reply_text)
        self._connection._wait_until(lambda: self._closing_reason is not None)

    def add_on_return_callback(self, callback: Callable[..., None]) -> None:
        """``callback(channel, method, properties, body)`` for each returned message."""
        self._on_return.append(callback)

    def add_on_cancel_callback(self, callback: Callable[..., None]) -> None:
        """``callback(method_frame)`` when the broker cancels a consumer (queue deleted)."""
        self._on_cancel.append(callback)

    def flow(self, active: bool) -> bool:
        """``channel.flow``: RabbitMQ (and zbroker) answer True for active=True and close
        the connection (540 NOT_IMPLEMENTED) for active=False, which it never honours."""
        fields, _ = self._rpc(Op.CHANNEL_FLOW, bool(active), expect={Op.CHANNEL_FLOW_OK})
        return fields[1]

    # -- transactions -------------------------------------------------------------------

    def tx_select(self) -> frame.Method:
        """Transaction mode: publishes and acks take effect at ``tx_commit``."""
        self._rpc(Op.TX_SELECT, expect={Op.TX_SELECT_OK})
        return self._method_frame(spec.Tx.SelectOk())

    def tx_commit(self) -> frame.Method:
        self._rpc(Op.TX_COMMIT, expect={Op.TX_COMMIT_OK})
        return self._method_frame(spec.Tx.CommitOk())

    def tx_rollback(self) -> frame.Method:
        """Discard the transaction's publishes; its acked messages are unacked again."""
        self._rpc(Op.TX_ROLLBACK, expect={Op.TX_ROLLBACK_OK})
        return self._method_frame(spec.Tx.RollbackOk())

    # -- exchanges ------------------------------------------------------------------------

    def exchange_declare(self, exchange: str, exchange_type: str | ExchangeType = ExchangeType.direct,
                         passive: bool = False, durable: bool = False, auto_delete: bool = False,
                         internal: bool = False, arguments: dict | None = None) -> frame.Method:
        kind = exchange_type.value if isinstance(exchange_type, ExchangeType) else exchange_type
        self._rpc(Op.EXCHANGE_DECLARE, _short(exchange, "exchange"), _short(kind, "exchange_type"),
                  bool(passive), bool(durable), bool(auto_delete), bool(internal), _table(arguments),
                  expect={Op.EXCHANGE_DECLARE_OK})
        return self._method_frame(spec.Exchange.DeclareOk())

    def exchange_delete(self, exchange: str | None = None, if_unused: bool = False) -> frame.Method:
        self._rpc(Op.EXCHANGE_DELETE, _short(exchange or "", "exchange"), bool(if_unused),
                  expect={Op.EXCHANGE_DELETE_OK})
        return self._method_frame(spec.Exchange.DeleteOk())

    def exchange_bind(self, destination: str, source: str, routing_key: str = "",
                      arguments: dict | None = None) -> frame.Method:
        self._rpc(Op.EXCHANGE_BIND, _short(destination, "destination"), _short(source, "source"),
                  _short(routing_key, "routing_key"), _table(arguments), expect={Op.EXCHANGE_BIND_OK})
        return self._method_frame(spec.Exchange.BindOk())

    def exchange_unbind(self, destination: str | None = None, source: str | None = None,
                        routing_key: str = "", arguments: dict | None = None) -> frame.Method:
        self._rpc(Op.EXCHANGE_UNBIND, _short(destination or "", "destination"), _short(source or "", "source"),
                  _short(routing_key, "routing_key"), _table(arguments), expect={Op.EXCHANGE_UNBIND_OK})
        return self._method_frame(spec.Exchange.UnbindOk())

    # -- queues ---------------------------------------------------------------------------

    def queue_declare(self, queue: str = "", passive: bool = False, durable: bool = False,
                      exclusive: bool = False, auto_delete: bool = False,
                      arguments: dict | None = None) -> frame.Method:
        fields, _ = self._rpc(Op.QUEUE_DECLARE, _short(queue, "queue"), bool(passive), bool(durable),
                              bool(exclusive), bool(auto_delete), _table(arguments),
                              expect={Op.QUEUE_DECLARE_OK})
        return self._method_frame(spec.Queue.DeclareOk(fields[1], fields[2], fields[3]))

    def queue_bind(self, queue: str, exchange: str, routing_key: str | None = None,
                   arguments: dict | None = None) -> frame.Method:
        key = queue if routing_key is None else routing_key
        self._rpc(Op.QUEUE_BIND, _short(queue, "queue"), _short(exchange, "exchange"),
                  _short(key, "routing_key"), _table(arguments), expect={Op.QUEUE_BIND_OK})
        return self._method_frame(spec.Queue.BindOk())

    def queue_unbind(self, queue: str, exchange: str | None = None, routing_key: str | None = None,
                     arguments: dict | None = None) -> frame.Method:
        key = queue if routing_key is None else routing_key
        self._rpc(Op.QUEUE_UNBIND, _short(queue, "queue"), _short(exchange or "", "exchange"),
                  _short(key, "routing_key"), _table(arguments), expect={Op.QUEUE_UNBIND_OK})
        return self._method_frame(spec.Queue.UnbindOk())

    def queue_purge(self, queue: str) -> frame.Method:
        fields, _ = self._rpc(Op.QUEUE_PURGE, _short(queue, "queue"), expect={Op.QUEUE_PURGE_OK})
        return self._method_frame(spec.Queue.PurgeOk(fields[1]))

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False) -> frame.Method:
        fields, _ = self._rpc(Op.QUEUE_DELETE, _short(queue, "queue"), bool(if_unused), bool(if_empty),
                              expect={Op.QUEUE_DELETE_OK})
        return self._method_frame(spec.Queue.DeleteOk(fields[1]))

    # -- publishing -------------------------------------------------------------------------

    def confirm_delivery(self) -> None:
        """Publisher confirms: each basic_publish then waits for the broker's ack."""
        self._rpc(Op.CONFIRM_SELECT, expect={Op.CONFIRM_SELECT_OK})
        self._confirm = True

    def _send_publish(self, exchange: str, routing_key: str, body: bytes | str,
                      properties: spec.BasicProperties | None, mandatory: bool) -> Any:
        """Send one publish; returns the body as sent."""
        self._raise_if_not_open()
        props = properties.to_wire() if properties is not None else {}
        if props:
            try:  # the broker would close the connection (502) for these: say it here
                check_properties(props)
            except TableError as exc:
                raise ValueError(f"invalid message properties: {exc}") from None
        data = _body(body)
        command = encode(Op.BASIC_PUBLISH, self._number, _short(exchange, "exchange"),
                         _short(routing_key, "routing_key"), bool(mandatory), props)
        if len(command) > MAX_COMMAND_BYTES:  # the broker would close the connection (501)
            raise ValueError(f"message properties too large: {len(command)} bytes encoded, "
                             f"frame_max is {MAX_COMMAND_BYTES}")
        self._connection._publish(command, data)
        return data

    def basic_publish(self, exchange: str, routing_key: str, body: bytes | str,
                      properties: spec.BasicProperties | None = None, mandatory: bool = False) -> None:
        data = self._send_publish(exchange, routing_key, body, properties, mandatory)
        if not self._confirm:
            return
        self._publish_seq += 1
        seq = self._publish_seq
        self._wait_confirmed(seq, None)
        returned, self._returned = self._returned, []
        if seq in self._nacked:
            self._nacked.discard(seq)
            raise exceptions.NackError(returned or [ReturnedMessage(None, properties or spec.BasicProperties(), data)])
        if returned:
            raise exceptions.UnroutableError(returned)

    def _wait_confirmed(self, seq: int, timeout: float | None) -> bool:
        """Wait until the broker confirmed every publish up to ``seq``; False on timeout."""
        done = self._connection._wait_until(
            lambda: self._confirmed_seq >= seq or self._closing_reason is not None, timeout)
        if self._confirmed_seq < seq and self._closing_reason is not None:
            raise self._closing_reason
        return done

    # -- pipelined confirms (an extension: pika has no such calls) ---------------------------

    def publish(self, exchange: str, routing_key: str, body: bytes | str,
                properties: spec.BasicProperties | None = None, mandatory: bool = False,
                immediate: bool = False) -> None:
        """pika 0.x's name for a publish that raises ``UnroutableError`` / ``NackError`` for
        its own message in confirm mode: today's ``basic_publish``."""
        warnings.warn("publish() is pika 0.x; use basic_publish()", DeprecationWarning, stacklevel=2)
        if immediate:
            raise exceptions.AMQPChannelError("immediate=True is not supported (RabbitMQ dropped it)")
        self.basic_publish(exchange, routing_key, body, properties, mandatory)

    def publish_nowait(self, exchange: str, routing_key: str, body: bytes | str,
                       properties: spec.BasicProperties | None = None, mandatory: bool = False) -> int:
        """Publish without waiting for the confirm; returns the message's sequence number.

        zbroker's faster path beside pika's ``basic_publish``: in confirm mode a producer
        sends many messages and then calls ``wait_for_confirms()`` once, so the broker can
        put them all on disk with one sync (group commit) instead of one sync per message.
        Without ``confirm_delivery()`` it is ``basic_publish`` and returns 0.
        """
        data = self._send_publish(exchange, routing_key, body, properties, mandatory)
        if not self._confirm:
            return 0
        self._publish_seq += 1
        self._unconfirmed[self._publish_seq] = ReturnedMessage(None, properties or spec.BasicProperties(), data)
        return self._publish_seq

    def _settle_unconfirmed(self, up_to: int) -> None:
        """Let go of confirmed publish_nowait() messages; keep the nacked ones for wait_for_confirms."""
        unconfirmed = self._unconfirmed
        while unconfirmed:
            seq = next(iter(unconfirmed))  # insertion order is sequence order
            if seq > up_to:
                return
            message = unconfirmed.pop(seq)
            if seq in self._nacked:
                self._nacked.discard(seq)
                self._nacked_messages.append(message)

    def wait_for_confirms(self, timeout: float | None = None) -> bool:
        """Wait until every message published so far on this channel is confirmed.

        Returns True then, or False if ``timeout`` seconds passed first (call again to
        keep waiting). Raises ``NackError`` with the refused messages (body and
        properties, to publish again) and ``UnroutableError`` with those a
        ``mandatory=True`` publish could not route; a message that is neither was taken
        by the broker: for a persistent message to a durable queue, it is on disk.
        """
        if not self._confirm:
            raise exceptions.ChannelWrongStateError("wait_for_confirms() needs confirm_delivery() first")
        if not self._wait_confirmed(self._publish_seq, timeout):
            return False
        nacked, self._nacked_messages = self._nacked_messages, []
        returned, self._returned = self._returned, []
        if nacked:
            raise exceptions.NackError(nacked)
        if returned:
            raise exceptions.UnroutableError(returned)
        return True

    # -- consuming --------------------------------------------------------------------------

    def basic_qos(self, prefetch_size: int = 0, prefetch_count: int = 0, global_qos: bool = False,
                  **kwargs: Any) -> None:
        if "all_channels" in kwargs:  # pika 0.x name
            warnings.warn("all_channels is deprecated, use global_qos", DeprecationWarning, stacklevel=2)
            global_qos = kwargs.pop("all_channels")
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {sorted(kwargs)}")
        for name, value in (("prefetch_size", prefetch_size), ("prefetch_count", prefetch_count)):
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative int, got {value!r}")
        self._rpc(Op.BASIC_QOS, prefetch_size, prefetch_count, bool(global_qos), expect={Op.BASIC_QOS_OK})

    def _new_tag(self) -> str:
        return f"ctag{self._number}.{uuid.uuid4().hex}"

    def basic_consume(self, *args: Any, **kwargs: Any) -> str:
        """``basic_consume(queue, on_message_callback, auto_ack=False, exclusive=False,
        consumer_tag=None, arguments=None)``; returns the consumer tag.

        ``on_message_callback(channel, method, properties, body)`` runs for each delivery.
        pika 0.x's ``basic_consume(callback, queue, no_ack=...)`` is accepted with a
        DeprecationWarning, so tutorials copied years ago still run.
        """
        queue, callback, auto_ack, exclusive, tag, arguments = _consume_arguments(args, kwargs)
        if not callable(callback):
            raise ValueError(f"callback on_message_callback must be callable; got {callback!r}")
        self._raise_if_not_open()
        tag = tag or self._new_tag()
        self._start_consumer(_Consumer(_short(tag, "consumer_tag"), callback, bool(auto_ack)),
                             queue, exclusive, arguments)
        return tag

    def _start_consumer(self, consumer: _Consumer, queue: str, exclusive: bool, arguments: dict | None) -> None:
        if consumer.tag in self._consumers:
            raise exceptions.DuplicateConsumerTag(consumer.tag)
        # Registered before the request: deliveries may follow CONSUME_OK in one message.
        self._consumers[consumer.tag] = consumer
        try:
            self._rpc(Op.BASIC_CONSUME, _short(queue, "queue"), consumer.tag, consumer.auto_ack,
                      bool(exclusive), _table(arguments), expect={Op.BASIC_CONSUME_OK})
        except BaseException:
            self._consumers.pop(consumer.tag, None)
            raise

    def basic_cancel(self, consumer_tag: str) -> list[tuple[Any, Any, Any]]:
        """Cancel a consumer. Manual-ack: undispatched deliveries are rejected with requeue
        and ``[]`` is returned; auto_ack: they are returned as (method, properties, body)."""
        if consumer_tag not in self._consumers:
            log.warning("basic_cancel of unknown consumer %s; already cancelled by user or broker?", consumer_tag)
            return []
        self._raise_if_not_open()
        consumer = self._consumers.pop(consumer_tag)
        self._cancelled[consumer_tag] = []
        try:
            # Cancel first, then hand back: rejected messages then stay in the queue
            # instead of bouncing back to this consumer.
            self._send(Op.BASIC_CANCEL, consumer_tag)
            self._connection._wait_until(
                lambda: (self._reply is not None and self._reply[0] == Op.BASIC_CANCEL_OK)
                or self._closing_reason is not None)
            self._reply = None
        finally:
            late = self._cancelled.pop(consumer_tag, [])
            if self._generator is not None and self._generator[1] is consumer:
                self._generator = None
        held = [p for p in (consumer.pending or ()) if p is not _CANCELLED]
        pending = held + self._take_pending(consumer_tag) + late
        if consumer.pending:
            consumer.pending.clear()
        if consumer.auto_ack:
            return pending
        if self.is_open:
            for method, _, _ in pending:
                self._send(Op.BASIC_REJECT, method.delivery_tag, True)
        return []

    def start_consuming(self) -> None:
        """Dispatch deliveries to callbacks until every consumer of this channel is cancelled."""
        if self._connection._dispatching:
            raise exceptions.ReentrancyError(
                "start_consuming may not be called from the scope of another BlockingConnection "
                "or BlockingChannel callback")
        self._raise_if_not_open()
        while self.is_open and any(c.callback is not None for c in self._consumers.values()):
            self._process_data_events(time_limit=None)

    def stop_consuming(self, consumer_tag: str | None = None) -> None:
        if consumer_tag:
            self.basic_cancel(consumer_tag)
            return
        for tag in list(self._consumers):
            if self.is_open:
                self.basic_cancel(tag)

    def consume(self, queue: str, auto_ack: bool = False, exclusive: bool = False,
                arguments: dict | None = None, inactivity_timeout: float | None = None,
                consumer_tag: str | None = None) -> Generator[tuple[Any, Any, Any], None, None]:
        """Yield ``(method, properties, body)`` per delivery; ``(None, None, None)`` after
        ``inactivity_timeout`` seconds with none. Call ``cancel()`` when leaving the loop."""
        self._raise_if_not_open()
        params = (queue, auto_ack, exclusive)
        if self._generator is not None:
            if self._generator[0] != params:
                raise ValueError("Consume with different params not allowed on existing queue consumer "
                                 f"generator; previous params: {self._generator[0]!r}; new params: {params!r}")
        else:
            consumer = _Consumer(_short(consumer_tag or self._new_tag(), "consumer_tag"), None, bool(auto_ack))
            self._generator = (params, consumer)
            try:
                self._start_consumer(consumer, queue, exclusive, arguments)
            except BaseException:
                self._generator = None
                raise
        while self._generator is not None:
            pending = self._generator[1].pending
            assert pending is not None  # generator consumers always queue
            if pending:
                event = pending.popleft()
                if event is _CANCELLED:
                    self._generator = None
                    return
                yield event
                continue
            if inactivity_timeout is None:
                self._process_data_events(time_limit=None)
                continue
            deadline = time.monotonic() + inactivity_timeout
            while self._generator is not None and not self._generator[1].pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    yield (None, None, None)
                    break
                self._process_data_events(time_limit=remaining)

    def get_waiting_message_count(self) -> int:
        if self._generator is None:
            return 0
        pending = self._generator[1].pending or deque()
        return sum(1 for p in pending if p is not _CANCELLED)

    def cancel(self) -> int:
        """Cancel the consume() generator; its undelivered messages are requeued. Returns 0, as pika."""
        if self._generator is None:
            log.warning("cancel: queue consumer generator is inactive (already cancelled by client or broker?)")
            return 0
        consumer = self._generator[1]
        if consumer.tag in self._consumers and self.is_open:
            self.basic_cancel(consumer.tag)
        self._generator = None
        return 0

    def basic_get(self, queue: str, auto_ack: bool = False) -> tuple[Any, Any, Any]:
        fields, body = self._rpc(Op.BASIC_GET, _short(queue, "queue"), bool(auto_ack),
                                 expect={Op.BASIC_GET_OK, Op.BASIC_GET_EMPTY})
        if len(fields) == 1:
            return None, None, None
        _, dtag, redelivered, exchange, routing_key, message_count, props = fields
        method = spec.Basic.GetOk(dtag, redelivered, exchange, routing_key, message_count)
        return method, spec.BasicProperties.from_wire(props), body

    def basic_ack(self, delivery_tag: int = 0, multiple: bool = False) -> None:
        self._raise_if_not_open()
        self._send(Op.BASIC_ACK, int(delivery_tag), bool(multiple))

    def basic_nack(self, delivery_tag: int = 0, multiple: bool = False, requeue: bool = True) -> None:
        self._raise_if_not_open()
        self._send(Op.BASIC_NACK, int(delivery_tag), bool(multiple), bool(requeue))

    def basic_reject(self, delivery_tag: int = 0, requeue: bool = True) -> None:
        self._raise_if_not_open()
        self._send(Op.BASIC_REJECT, int(delivery_tag), bool(requeue))

    def basic_recover(self, requeue: bool = False) -> None:
        self._rpc(Op.BASIC_RECOVER, bool(requeue), expect={Op.BASIC_RECOVER_OK})
