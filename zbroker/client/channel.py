"""``BlockingChannel``: pika's blocking channel API on zbroker's wire.

Rules:
- Synchronous methods (declare, bind, consume, get, ...) send one command and read input
  until its reply, or until the broker closes the channel, which raises
  ``ChannelClosedByBroker`` with RabbitMQ's code and text. Afterwards every call raises
  ``ChannelWrongStateError('Channel is closed.')``, as pika does.
- The channel uses its connection only through its link (``link.py``), and the
  connection calls it only as a ``LinkedChannel``: ``open_on_broker``,
  ``handle_command``, ``dispatch_event``, ``connection_closing``, ``connection_lost``.
- Here: the channel's life, the routing of the broker's commands to it, declarations,
  transactions, publishing and publisher confirms. Receiving (consumers, ``basic_get``,
  acks) is its base class ``Consuming`` (``consuming.py``).
- In confirm mode ``basic_publish`` waits for its own message's confirm;
  ``publish_nowait`` and ``wait_for_confirms`` pipeline them (an extension).
"""
from __future__ import annotations

import logging
import warnings
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

from zbroker.client import exceptions, frame, spec
from zbroker.client.arguments import arguments_table, message_body, short_string
from zbroker.client.consuming import Consuming
from zbroker.client.exchange_type import ExchangeType
from zbroker.protocol import Op, encode
from zbroker.protocol.native_codec import MAX_COMMAND_BYTES
from zbroker.protocol.tables import TableError, check_properties

#: (plain ints: an IntEnum member look-up costs ~90 ns, once per publish or delivery)
_PUBLISH, _DELIVER = int(Op.BASIC_PUBLISH), int(Op.BASIC_DELIVER)

if TYPE_CHECKING:
    from zbroker.client.connection import BlockingConnection

log = logging.getLogger(__name__)


class ReturnedMessage(NamedTuple):
    """A message the broker returned: ``method`` is ``Basic.Return``."""

    method: Any
    properties: spec.BasicProperties
    body: bytes


class BlockingChannel(Consuming):
    """pika's ``BlockingChannel`` (module rules); ``BlockingConnection.channel()`` makes it."""

    def __init__(self, connection: BlockingConnection, channel_number: int) -> None:
        self._connection = connection  # only for pika's ``connection`` property
        self._link = connection.link
        self._number = channel_number
        self._open_state = False
        self._closing_reason: exceptions.ChannelClosed | None = None
        self._reply: tuple[int, list[Any], Any] | None = None
        self._init_consuming()
        self._confirm = False
        self._publish_seq = 0
        self._confirmed_seq = 0  # every publish up to here is acked or nacked
        self._nacked: set[int] = set()
        #: Messages sent with publish_nowait() awaiting their confirm, kept for a NackError.
        self._unconfirmed: dict[int, ReturnedMessage] = {}
        self._nacked_messages: list[ReturnedMessage] = []
        self._returned: list[ReturnedMessage] = []
        self._on_return: list[Callable[..., None]] = []

    # -- plumbing ---------------------------------------------------------------------

    def open_on_broker(self) -> None:
        """Internal to zbroker's client: register with the connection and open the channel
        on the broker (``BlockingConnection.channel`` calls it once)."""
        self._link.register(self)
        try:
            self._open()
        except BaseException:
            self._link.unregister(self)
            raise

    def _open(self) -> None:
        self._send(Op.CHANNEL_OPEN)
        self._await({Op.CHANNEL_OPEN_OK})
        self._open_state = True

    def _send(self, op: int, *fields: Any, body: Any = None) -> None:
        parts = [encode(op, self._number, *fields)]
        if body is not None:
            parts.append(body)
        self._link.send(parts)

    def _raise_if_not_open(self) -> None:
        if not self.is_open:
            raise exceptions.ChannelWrongStateError("Channel is closed.")

    def _rpc(self, op: int, *fields: Any, expect: set[int]) -> tuple[list[Any], Any]:
        self._raise_if_not_open()
        self._send(op, *fields)
        return self._await(expect)

    def _await(self, expect: set[int]) -> tuple[list[Any], Any]:
        self._reply = None
        self._link.wait_until(lambda: self._reply is not None or self._closing_reason is not None)
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

    # -- input from the connection (LinkedChannel) ------------------------------------------

    def handle_command(self, op: int, fields: list[Any], body: Any) -> None:
        """Internal to zbroker's client: a command the broker sent to this channel."""
        if op == _DELIVER:
            _, tag, dtag, redelivered, exchange, routing_key, props = fields
            method = spec.Basic.Deliver(tag, dtag, redelivered, exchange, routing_key)
            self._on_delivery(method, spec.BasicProperties.from_wire(props), body)
        elif op == Op.BASIC_ACK or op == Op.BASIC_NACK:
            self._on_confirm(op == Op.BASIC_NACK, fields[1], fields[2])
        elif op == Op.BASIC_RETURN:
            _, code, text, exchange, routing_key, props = fields
            returned = ReturnedMessage(spec.Basic.Return(code, text, exchange, routing_key),
                                       spec.BasicProperties.from_wire(props), body)
            if self._confirm:  # raised by the publish as UnroutableError, and called back
                self._returned.append(returned)
            self._link.queue_event(self, "return", returned)
        elif op == Op.BASIC_CANCEL:
            self._link.queue_event(self, "cancel", fields[1])
        elif op == Op.CHANNEL_CLOSE:
            self._closed(exceptions.ChannelClosedByBroker(fields[1], fields[2]))
            self._link.queue_event(self, "closed", None)
            log.info("channel %d closed by broker: (%s) %s", self._number, fields[1], fields[2])
            self._link.send([encode(Op.CHANNEL_CLOSE_OK, self._number)])
        elif op == Op.CHANNEL_CLOSE_OK:
            self._closed(exceptions.ChannelClosedByClient(200, "Normal shutdown"))
        else:
            self._reply = (op, fields, body)

    def dispatch_event(self, kind: str, payload: Any) -> bool:
        """Internal to zbroker's client: run the callbacks of one event queued for this
        channel; whether any ran."""
        if kind == "closed":
            return True  # wakes a waiting process_data_events, which then raises
        if not self._open_state:  # closed by the broker, the program or the connection
            return False
        if kind == "deliver":
            return self._deliver(payload)
        if kind == "return":
            for callback in self._on_return:
                callback(self, *payload)
            return True
        if kind == "cancel":
            self._broker_cancelled(payload)
            return True
        return False

    def connection_closing(self) -> None:
        """Internal to zbroker's client: the program closes the connection; what was not
        dispatched is dropped (the broker requeues it)."""
        self._forget_consumers()

    def connection_lost(self, reason: Exception) -> None:
        """Internal to zbroker's client: the connection ended, so has this channel."""
        self._open_state = False
        self._link.unregister(self)

    def _closed(self, reason: exceptions.ChannelClosed) -> None:
        self._open_state = False
        self._closing_reason = reason
        self._link.unregister(self)

    def _process_data_events(self, time_limit: float | None) -> None:
        self._link.process_data_events(time_limit=time_limit)
        if isinstance(self._closing_reason, exceptions.ChannelClosedByBroker):
            raise self._closing_reason

    # -- properties ---------------------------------------------------------------------

    @property
    def channel_number(self) -> int:
        return self._number

    @property
    def connection(self) -> BlockingConnection:
        return self._connection

    @property
    def is_open(self) -> bool:
        return self._open_state and self._link.is_open

    @property
    def is_closed(self) -> bool:
        return not self.is_open

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
        self._link.wait_until(lambda: self._closing_reason is not None)

    def add_on_return_callback(self, callback: Callable[..., None]) -> None:
        """``callback(channel, method, properties, body)`` for each returned message."""
        self._on_return.append(callback)

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
        self._rpc(Op.EXCHANGE_DECLARE, short_string(exchange, "exchange"), short_string(kind, "exchange_type"),
                  bool(passive), bool(durable), bool(auto_delete), bool(internal), arguments_table(arguments),
                  expect={Op.EXCHANGE_DECLARE_OK})
        return self._method_frame(spec.Exchange.DeclareOk())

    def exchange_delete(self, exchange: str | None = None, if_unused: bool = False) -> frame.Method:
        self._rpc(Op.EXCHANGE_DELETE, short_string(exchange or "", "exchange"), bool(if_unused),
                  expect={Op.EXCHANGE_DELETE_OK})
        return self._method_frame(spec.Exchange.DeleteOk())

    def exchange_bind(self, destination: str, source: str, routing_key: str = "",
                      arguments: dict | None = None) -> frame.Method:
        self._rpc(Op.EXCHANGE_BIND, short_string(destination, "destination"), short_string(source, "source"),
                  short_string(routing_key, "routing_key"), arguments_table(arguments), expect={Op.EXCHANGE_BIND_OK})
        return self._method_frame(spec.Exchange.BindOk())

    def exchange_unbind(self, destination: str | None = None, source: str | None = None,
                        routing_key: str = "", arguments: dict | None = None) -> frame.Method:
        self._rpc(Op.EXCHANGE_UNBIND, short_string(destination or "", "destination"), short_string(source or "", "source"),
                  short_string(routing_key, "routing_key"), arguments_table(arguments), expect={Op.EXCHANGE_UNBIND_OK})
        return self._method_frame(spec.Exchange.UnbindOk())

    # -- queues ---------------------------------------------------------------------------

    def queue_declare(self, queue: str = "", passive: bool = False, durable: bool = False,
                      exclusive: bool = False, auto_delete: bool = False,
                      arguments: dict | None = None) -> frame.Method:
        fields, _ = self._rpc(Op.QUEUE_DECLARE, short_string(queue, "queue"), bool(passive), bool(durable),
                              bool(exclusive), bool(auto_delete), arguments_table(arguments),
                              expect={Op.QUEUE_DECLARE_OK})
        return self._method_frame(spec.Queue.DeclareOk(fields[1], fields[2], fields[3]))

    def queue_bind(self, queue: str, exchange: str, routing_key: str | None = None,
                   arguments: dict | None = None) -> frame.Method:
        key = queue if routing_key is None else routing_key
        self._rpc(Op.QUEUE_BIND, short_string(queue, "queue"), short_string(exchange, "exchange"),
                  short_string(key, "routing_key"), arguments_table(arguments), expect={Op.QUEUE_BIND_OK})
        return self._method_frame(spec.Queue.BindOk())

    def queue_unbind(self, queue: str, exchange: str | None = None, routing_key: str | None = None,
                     arguments: dict | None = None) -> frame.Method:
        key = queue if routing_key is None else routing_key
        self._rpc(Op.QUEUE_UNBIND, short_string(queue, "queue"), short_string(exchange or "", "exchange"),
                  short_string(key, "routing_key"), arguments_table(arguments), expect={Op.QUEUE_UNBIND_OK})
        return self._method_frame(spec.Queue.UnbindOk())

    def queue_purge(self, queue: str) -> frame.Method:
        fields, _ = self._rpc(Op.QUEUE_PURGE, short_string(queue, "queue"), expect={Op.QUEUE_PURGE_OK})
        return self._method_frame(spec.Queue.PurgeOk(fields[1]))

    def queue_delete(self, queue: str, if_unused: bool = False, if_empty: bool = False) -> frame.Method:
        fields, _ = self._rpc(Op.QUEUE_DELETE, short_string(queue, "queue"), bool(if_unused), bool(if_empty),
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
        if not (self._open_state and self._link.is_open):  # (``_raise_if_not_open``, in line)
            raise exceptions.ChannelWrongStateError("Channel is closed.")
        props = properties.to_wire() if properties is not None else {}
        if props:
            try:  # the broker would close the connection (502) for these: say it here
                check_properties(props)
            except TableError as exc:
                raise ValueError(f"invalid message properties: {exc}") from None
        data = message_body(body)
        command = encode(_PUBLISH, self._number, short_string(exchange, "exchange"),
                         short_string(routing_key, "routing_key"), bool(mandatory), props)
        if len(command) > MAX_COMMAND_BYTES:  # the broker would close the connection (501)
            raise ValueError(f"message properties too large: {len(command)} bytes encoded, "
                             f"frame_max is {MAX_COMMAND_BYTES}")
        self._link.publish(command, data)
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
        done = self._link.wait_until(
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

    def _on_confirm(self, nack: bool, tag: int, multiple: bool) -> None:
        """The broker's ack (or nack) of the publishes up to ``tag`` (or of that one)."""
        if nack:
            self._nacked.update(range(self._confirmed_seq + 1 if multiple else tag, tag + 1))
        self._confirmed_seq = max(self._confirmed_seq, tag)
        if self._unconfirmed:
            self._settle_unconfirmed(tag)

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
