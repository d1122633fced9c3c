"""The receiving side of ``BlockingChannel``: consumers, the ``consume()`` generator,
``basic_get``, and settling what was received (ack, nack, reject, recover).

Rules:
- A delivery is queued as a connection event as it is read, and handed to its
  consumer's callback (or its generator's queue) only while the program is inside a
  dispatching call, as in pika.
- A consumer is registered before its ``basic.consume`` is sent: its first deliveries
  may arrive in the same message as the ``consume-ok``.
- Nothing a consumer was sent is lost when the program cancels it: what was not yet
  dispatched is rejected with requeue (manual ack) or returned to the program by
  ``basic_cancel`` (auto_ack), and so are deliveries that crossed the cancel on the wire.
  A delivery for a consumer the channel never knew is rejected with requeue.
- A broker's cancel (the queue was deleted) ends the consumer: its generator stops and
  the cancel callbacks run, in the order of the channel's other events.
- ``Consuming`` is a base class of ``BlockingChannel``, not used alone; what it uses of
  the rest of the channel is listed at the top of the class.
"""
from __future__ import annotations

import logging
import time
import uuid
import warnings
from collections import deque
from typing import TYPE_CHECKING, Any, Callable, Generator

from zbroker.client import exceptions, spec
from zbroker.client.arguments import arguments_table, short_string
from zbroker.protocol import Op

if TYPE_CHECKING:
    from zbroker.client import frame
    from zbroker.client.link import ChannelLink

log = logging.getLogger(__name__)

_CANCELLED = object()  # marks a broker cancel in a consume() generator's queue
#: (a plain int: an IntEnum member look-up costs ~90 ns, once per ack)
_ACK = int(Op.BASIC_ACK)
_CONSUME_PARAMS = ("queue", "on_message_callback", "auto_ack", "exclusive", "consumer_tag", "arguments")
_CONSUME_PARAMS_0X = ("consumer_callback", "queue", "no_ack", "exclusive", "consumer_tag", "arguments")


class _Consumer:
    __slots__ = ("tag", "callback", "auto_ack", "pending")

    def __init__(self, tag: str, callback: Callable[..., None] | None, auto_ack: bool) -> None:
        self.tag = tag
        self.callback = callback
        self.auto_ack = auto_ack
        #: consume() generators keep their deliveries here instead of a callback.
        self.pending: deque[Any] | None = None if callback is not None else deque()


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


class Consuming:
    """The receiving side of ``BlockingChannel`` (module rules)."""

    if TYPE_CHECKING:  # what it uses of the rest of the channel (channel.py)
        _number: int
        _link: ChannelLink
        _reply: tuple[int, list[Any], Any] | None
        _closing_reason: exceptions.ChannelClosed | None

        @property
        def is_open(self) -> bool: ...
        def _send(self, op: int, *fields: Any, body: Any = None) -> None: ...
        def _rpc(self, op: int, *fields: Any, expect: set[int]) -> tuple[list[Any], Any]: ...
        def _raise_if_not_open(self) -> None: ...
        def _method_frame(self, method: Any) -> frame.Method: ...
        def _process_data_events(self, time_limit: float | None) -> None: ...

    def _init_consuming(self) -> None:
        self._consumers: dict[str, _Consumer] = {}
        self._generator: tuple[tuple[Any, ...], _Consumer] | None = None
        #: Tags cancelled by the program: late deliveries for them are rejected/kept.
        self._cancelled: dict[str, list[Any]] = {}
        self._on_cancel: list[Callable[..., None]] = []

    # -- deliveries from the connection -----------------------------------------------

    def _on_delivery(self, method: Any, properties: spec.BasicProperties, body: Any) -> None:
        tag = method.consumer_tag
        if tag in self._consumers:
            self._link.queue_event(self, "deliver", (method, properties, body))
        elif tag in self._cancelled:
            # Sent before the broker saw our cancel: hand it back (manual) or keep it
            # for basic_cancel's return value (auto_ack), as pika does.
            self._cancelled[tag].append((method, properties, body))
        else:
            log.debug("delivery for unknown consumer %s rejected", tag)
            self._send(Op.BASIC_REJECT, method.delivery_tag, True)

    def _deliver(self, payload: tuple[Any, Any, Any]) -> bool:
        """Hand one queued delivery to its consumer; False if it is gone."""
        consumer = self._consumers.get(payload[0].consumer_tag)
        if consumer is None:
            return False
        if consumer.pending is not None:
            consumer.pending.append(payload)
        else:
            consumer.callback(self, *payload)
        return True

    def _broker_cancelled(self, consumer_tag: str) -> None:
        consumer = self._consumers.pop(consumer_tag, None)
        if consumer is not None and consumer.pending is not None:
            consumer.pending.append(_CANCELLED)
        for callback in self._on_cancel:
            callback(self._method_frame(spec.Basic.Cancel(consumer_tag=consumer_tag)))

    def _forget_consumers(self) -> None:
        """Drop undispatched deliveries: closing the channel makes the broker requeue them."""
        self._consumers.clear()
        self._generator = None
        self._link.take_events(lambda event: event[0] is self)

    def _take_pending(self, tag: str) -> list[Any]:
        """Remove and return undispatched deliveries for one consumer."""
        taken = self._link.take_events(
            lambda e: e[0] is self and e[1] == "deliver" and e[2][0].consumer_tag == tag)
        return [event[2] for event in taken]

    # -- consumers --------------------------------------------------------------------

    @property
    def consumer_tags(self) -> list[str]:
        return list(self._consumers)

    def add_on_cancel_callback(self, callback: Callable[..., None]) -> None:
        """``callback(method_frame)`` when the broker cancels a consumer (queue deleted)."""
        self._on_cancel.append(callback)

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
        self._start_consumer(_Consumer(short_string(tag, "consumer_tag"), callback, bool(auto_ack)),
                             queue, exclusive, arguments)
        return tag

    def _start_consumer(self, consumer: _Consumer, queue: str, exclusive: bool, arguments: dict | None) -> None:
        if consumer.tag in self._consumers:
            raise exceptions.DuplicateConsumerTag(consumer.tag)
        # Registered before the request: deliveries may follow CONSUME_OK in one message.
        self._consumers[consumer.tag] = consumer
        try:
            self._rpc(Op.BASIC_CONSUME, short_string(queue, "queue"), consumer.tag, consumer.auto_ack,
                      bool(exclusive), arguments_table(arguments), expect={Op.BASIC_CONSUME_OK})
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
            self._link.wait_until(
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
        if self._link.dispatching:
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

    # -- the consume() generator ------------------------------------------------------

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
            consumer = _Consumer(short_string(consumer_tag or self._new_tag(), "consumer_tag"), None, bool(auto_ack))
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

    # -- getting and settling -----------------------------------------------------------

    def basic_get(self, queue: str, auto_ack: bool = False) -> tuple[Any, Any, Any]:
        fields, body = self._rpc(Op.BASIC_GET, short_string(queue, "queue"), bool(auto_ack),
                                 expect={Op.BASIC_GET_OK, Op.BASIC_GET_EMPTY})
        if len(fields) == 1:
            return None, None, None
        _, dtag, redelivered, exchange, routing_key, message_count, props = fields
        method = spec.Basic.GetOk(dtag, redelivered, exchange, routing_key, message_count)
        return method, spec.BasicProperties.from_wire(props), body

    def basic_ack(self, delivery_tag: int = 0, multiple: bool = False) -> None:
        self._raise_if_not_open()
        self._send(_ACK, int(delivery_tag), bool(multiple))

    def basic_nack(self, delivery_tag: int = 0, multiple: bool = False, requeue: bool = True) -> None:
        self._raise_if_not_open()
        self._send(Op.BASIC_NACK, int(delivery_tag), bool(multiple), bool(requeue))

    def basic_reject(self, delivery_tag: int = 0, requeue: bool = True) -> None:
        self._raise_if_not_open()
        self._send(Op.BASIC_REJECT, int(delivery_tag), bool(requeue))

    def basic_recover(self, requeue: bool = False) -> None:
        self._rpc(Op.BASIC_RECOVER, bool(requeue), expect={Op.BASIC_RECOVER_OK})
