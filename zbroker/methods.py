"""The vocabulary of RabbitMQ's model: every command a client sends and every event the
broker answers with, named as AMQP 0-9-1 names its methods.

Shared by the core (which speaks only this) and by each wire: the zbroker wire uses
these numbers as its opcodes (``protocol/commands.py`` gives each its field types); an
AMQP 0-9-1 wire maps its class/method ids onto the same names. Numbers are stable: a new
method gets a new number, an old number is never reused. Connection-level methods are
numbered below ``CHANNEL_OPEN`` (10), channel methods from it up: a reader can tell them
apart with one comparison.

A core event is a plain tuple ``(Method, field, field, ...)`` in the field order of the
zbroker command table, followed in the outbox by its body when the method carries one
(``BODY_METHODS``).
"""
from __future__ import annotations

from enum import IntEnum


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
                                          Method.BASIC_RETURN, Method.BASIC_GET_OK})
