"""The vocabulary of RabbitMQ's model: every command a client sends and every event the
broker answers with, named as AMQP 0-9-1 names its methods.

Shared by the core (which speaks only this) and by each wire: the zbroker wire uses
these numbers as its opcodes (``protocol/native_commands.py`` gives each its field types); an
AMQP 0-9-1 wire maps its class/method ids onto the same names. Numbers are stable: a new
method gets a new number, an old number is never reused. Connection-level methods are
numbered below ``CHANNEL_OPEN`` (10), channel methods from it up: a reader can tell them
apart with one comparison.

Each method's fields are named here, once (``FIELDS``): channel methods carry the channel
number first. From that table every method gets a named tuple (``QueueDeclareOk``,
``BasicDeliver``, ...) whose first item is the method number: a core event is one of
those, followed in the outbox by its body when the method carries one
(``BODY_METHODS``). A named tuple is still a tuple (msgpack packs it as an array, and
``event[0]`` is its method), so a wire may read by name or by place; the zbroker wire's
table (``protocol/native_commands.py``) adds each field's accepted types, the AMQP
method table (``protocol/amqp_methods.py``) maps them onto AMQP's. The named tuples are
made at import, so a type checker (and mypyc, ``build.py``) does not see them: importing
one by name carries ``# type: ignore[attr-defined]`` and it is ``Any`` to the checker.
"""
from __future__ import annotations

from collections import namedtuple
from enum import IntEnum
from typing import Any


class Method(IntEnum):
    CONNECTION_UPDATE_SECRET_OK = 0  # (the last free connection-level numbers: 0 and 9)
    HELLO = 1  # connection.start/tune/open folded into one request (the zbroker wire's)
    HELLO_OK = 2
    CONNECTION_CLOSE = 3
    CONNECTION_CLOSE_OK = 4
    CONNECTION_BLOCKED = 5  # RabbitMQ's extension: publishing is held (an alarm is on)
    CONNECTION_UNBLOCKED = 6
    PUBLISH_CREDIT = 7  # the zbroker wire's flow control: bytes a client may publish more
    DELIVERY_READ = 8  # the zbroker wire's flow control: delivery bytes a client took in
    CONNECTION_UPDATE_SECRET = 9  # RabbitMQ's extension: renew an expiring credential
    CHANNEL_OPEN = 10
    CHANNEL_OPEN_OK = 11
    CHANNEL_CLOSE = 12
    CHANNEL_CLOSE_OK = 13
    CHANNEL_FLOW = 14
    CHANNEL_FLOW_OK = 15
    EXCHANGE_DECLARE = 20
    EXCHANGE_DECLARE_OK = 21
    EXCHANGE_DELETE = 22
    EXCHANGE_DELETE_OK = 23
    EXCHANGE_BIND = 24
    EXCHANGE_BIND_OK = 25
    EXCHANGE_UNBIND = 26
    EXCHANGE_UNBIND_OK = 27
    QUEUE_DECLARE = 30
    QUEUE_DECLARE_OK = 31
    QUEUE_BIND = 32
    QUEUE_BIND_OK = 33
    QUEUE_UNBIND = 34
    QUEUE_UNBIND_OK = 35
    QUEUE_PURGE = 36
    QUEUE_PURGE_OK = 37
    QUEUE_DELETE = 38
    QUEUE_DELETE_OK = 39
    BASIC_QOS = 40
    BASIC_QOS_OK = 41
    BASIC_CONSUME = 42
    BASIC_CONSUME_OK = 43
    BASIC_CANCEL = 44
    BASIC_CANCEL_OK = 45
    BASIC_PUBLISH = 46
    BASIC_DELIVER = 47
    BASIC_RETURN = 48
    BASIC_GET = 49
    BASIC_GET_OK = 50
    BASIC_GET_EMPTY = 51
    BASIC_ACK = 52
    BASIC_NACK = 53
    BASIC_REJECT = 54
    BASIC_RECOVER = 55
    BASIC_RECOVER_OK = 56
    STREAM_DELIVER = 57  # the zbroker wire's: a stream consumer's deliveries in one command
    CONFIRM_SELECT = 60
    CONFIRM_SELECT_OK = 61
    TX_SELECT = 70
    TX_SELECT_OK = 71
    TX_COMMIT = 72
    TX_COMMIT_OK = 73
    TX_ROLLBACK = 74
    TX_ROLLBACK_OK = 75


#: Methods followed by a body.
BODY_METHODS: frozenset[int] = frozenset({Method.BASIC_PUBLISH, Method.BASIC_DELIVER,
                                          Method.BASIC_RETURN, Method.BASIC_GET_OK,
                                          Method.STREAM_DELIVER})


_CH = "channel"
#: Every method's fields, in wire order (the command table the named tuples come from).
FIELDS: dict[Method, tuple[str, ...]] = {
    Method.HELLO: ("heartbeat", "virtual_host", "username", "password", "client_properties"),
    Method.HELLO_OK: ("heartbeat", "max_body_bytes", "server_properties"),
    Method.CONNECTION_CLOSE: ("reply_code", "reply_text"),
    Method.CONNECTION_CLOSE_OK: (),
    Method.CONNECTION_UPDATE_SECRET: ("new_secret", "reason"),
    Method.CONNECTION_UPDATE_SECRET_OK: (),
    Method.CONNECTION_BLOCKED: ("reason",),
    Method.CONNECTION_UNBLOCKED: (),
    Method.PUBLISH_CREDIT: ("bytes",),
    Method.DELIVERY_READ: ("bytes",),
    Method.CHANNEL_OPEN: (_CH,),
    Method.CHANNEL_OPEN_OK: (_CH,),
    Method.CHANNEL_CLOSE: (_CH, "reply_code", "reply_text"),
    Method.CHANNEL_CLOSE_OK: (_CH,),
    Method.CHANNEL_FLOW: (_CH, "active"),
    Method.CHANNEL_FLOW_OK: (_CH, "active"),
    Method.EXCHANGE_DECLARE: (_CH, "exchange", "exchange_type", "passive", "durable", "auto_delete",
                              "internal", "arguments"),
    Method.EXCHANGE_DECLARE_OK: (_CH,),
    Method.EXCHANGE_DELETE: (_CH, "exchange", "if_unused"),
    Method.EXCHANGE_DELETE_OK: (_CH,),
    Method.EXCHANGE_BIND: (_CH, "destination", "source", "routing_key", "arguments"),
    Method.EXCHANGE_BIND_OK: (_CH,),
    Method.EXCHANGE_UNBIND: (_CH, "destination", "source", "routing_key", "arguments"),
    Method.EXCHANGE_UNBIND_OK: (_CH,),
    Method.QUEUE_DECLARE: (_CH, "queue", "passive", "durable", "exclusive", "auto_delete", "arguments"),
    Method.QUEUE_DECLARE_OK: (_CH, "queue", "message_count", "consumer_count"),
    Method.QUEUE_BIND: (_CH, "queue", "exchange", "routing_key", "arguments"),
    Method.QUEUE_BIND_OK: (_CH,),
    Method.QUEUE_UNBIND: (_CH, "queue", "exchange", "routing_key", "arguments"),
    Method.QUEUE_UNBIND_OK: (_CH,),
    Method.QUEUE_PURGE: (_CH, "queue"),
    Method.QUEUE_PURGE_OK: (_CH, "message_count"),
    Method.QUEUE_DELETE: (_CH, "queue", "if_unused", "if_empty"),
    Method.QUEUE_DELETE_OK: (_CH, "message_count"),
    Method.BASIC_QOS: (_CH, "prefetch_size", "prefetch_count", "global_qos"),
    Method.BASIC_QOS_OK: (_CH,),
    Method.BASIC_CONSUME: (_CH, "queue", "consumer_tag", "auto_ack", "exclusive", "arguments"),
    Method.BASIC_CONSUME_OK: (_CH, "consumer_tag"),
    Method.BASIC_CANCEL: (_CH, "consumer_tag"),
    Method.BASIC_CANCEL_OK: (_CH, "consumer_tag"),
    Method.BASIC_PUBLISH: (_CH, "exchange", "routing_key", "mandatory", "properties"),
    Method.BASIC_DELIVER: (_CH, "consumer_tag", "delivery_tag", "redelivered", "exchange", "routing_key",
                           "properties"),
    Method.BASIC_RETURN: (_CH, "reply_code", "reply_text", "exchange", "routing_key", "properties"),
    Method.BASIC_GET: (_CH, "queue", "auto_ack"),
    Method.BASIC_GET_OK: (_CH, "delivery_tag", "redelivered", "exchange", "routing_key", "message_count",
                          "properties"),
    Method.BASIC_GET_EMPTY: (_CH,),
    Method.BASIC_ACK: (_CH, "delivery_tag", "multiple"),
    Method.BASIC_NACK: (_CH, "delivery_tag", "multiple", "requeue"),
    Method.BASIC_REJECT: (_CH, "delivery_tag", "requeue"),
    Method.BASIC_RECOVER: (_CH, "requeue"),
    Method.BASIC_RECOVER_OK: (_CH,),
    Method.STREAM_DELIVER: (_CH, "consumer_tag", "delivery_tag", "offsets", "sizes"),
    Method.CONFIRM_SELECT: (_CH,),
    Method.CONFIRM_SELECT_OK: (_CH,),
    Method.TX_SELECT: (_CH,),
    Method.TX_SELECT_OK: (_CH,),
    Method.TX_COMMIT: (_CH,),
    Method.TX_COMMIT_OK: (_CH,),
    Method.TX_ROLLBACK: (_CH,),
    Method.TX_ROLLBACK_OK: (_CH,),
}
assert set(FIELDS) == set(Method)  # every method is named in the table


def class_name(method: Method) -> str:
    """``QUEUE_DECLARE_OK`` -> ``QueueDeclareOk``."""
    return "".join(part.capitalize() for part in method.name.split("_"))


def _named(method: Method) -> type:
    """The named tuple of ``method``: ``(method, *fields)``, built from the fields alone."""
    base = namedtuple(class_name(method), ("method", *FIELDS[method]))  # type: ignore[misc]
    number = int(method)
    new = tuple.__new__

    def __new__(cls: type, *fields: Any) -> Any:
        if len(fields) != len(FIELDS[method]):
            raise TypeError(f"{cls.__name__} takes {len(FIELDS[method])} fields, got {len(fields)}")
        return new(cls, (number, *fields))

    return type(base.__name__, (base,), {"__slots__": (), "__new__": __new__, "METHOD": number,
                                         "__doc__": f"The {method.name} method: {', '.join(FIELDS[method]) or 'no fields'}."})


#: Method number -> its named tuple class.
NAMED: dict[int, type] = {int(m): _named(m) for m in Method}
globals().update({cls.__name__: cls for cls in NAMED.values()})


def named(fields: Any) -> Any:
    """A decoded ``[method, *fields]`` array as its method's named tuple (no copy of the
    fields' values; the length is checked by the wire that decoded it)."""
    return tuple.__new__(NAMED[fields[0]], fields)


class SignedLong(int):
    """An integer a table value carries as AMQP's signed 64-bit type (``l``) whatever its
    size: an AMQP wire otherwise sends the smallest type that holds an int (``I`` below
    2**31). The core marks the values whose type RabbitMQ fixes (a stream delivery's
    ``x-stream-offset``); everywhere else it is an int (msgpack, JSON)."""

    __slots__ = ()
