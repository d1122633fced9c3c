"""Every command on the wire, as one table.

Rules of this module:
- A command is a msgpack array ``[opcode, field, field, ...]``; the table below gives
  each opcode its name, its fields (name and accepted types) and whether a body frame
  follows it. Everything the decoder checks comes from this table.
- Channel commands carry the channel number as their first field; connection commands
  have none.
- Opcodes are stable: a new command gets a new number, an old number is never reused.
  Changing a command's fields means bumping ``PROTOCOL_VERSION``.
"""
from __future__ import annotations

from dataclasses import dataclass

from zbroker.methods import BODY_METHODS, Method

PROTOCOL_VERSION = 1

_STR = (str,)
_INT = (int,)
_BOOL = (bool,)
_DICT = (dict,)
_OPT_INT = (int, type(None))


#: Opcodes are the shared method numbers (``zbroker/methods.py``).
Op = Method


@dataclass(frozen=True)
class Spec:
    """What one opcode carries: field names and accepted types, and a body or not."""

    op: Op
    fields: tuple[tuple[str, tuple[type, ...]], ...]
    has_body: bool = False

    @property
    def exact_types(self) -> tuple[frozenset[type], ...]:
        """Per field, the exact types msgpack may decode it as (bool is not an int here)."""
        return tuple(frozenset(t) for _, t in self.fields)


_CH = ("channel", _INT)


def _spec(op: Op, *fields: tuple[str, tuple[type, ...]], body: bool = False) -> Spec:
    return Spec(op, tuple(fields), body)


SPECS: dict[int, Spec] = {
    s.op: s
    for s in (
        # HELLO: the client's wish for heartbeat (None: take the broker's), vhost,
        # credentials and free-form client properties.
        _spec(Op.HELLO, ("heartbeat", _OPT_INT), ("virtual_host", _STR),
              ("username", _STR), ("password", _STR), ("client_properties", _DICT)),
        _spec(Op.HELLO_OK, ("heartbeat", _INT), ("max_body_bytes", _INT),
              ("server_properties", _DICT)),
        _spec(Op.CONNECTION_CLOSE, ("reply_code", _INT), ("reply_text", _STR)),
        _spec(Op.CONNECTION_CLOSE_OK),
        _spec(Op.CONNECTION_UPDATE_SECRET, ("new_secret", _STR), ("reason", _STR)),
        _spec(Op.CONNECTION_UPDATE_SECRET_OK),
        _spec(Op.CONNECTION_BLOCKED, ("reason", _STR)),
        _spec(Op.CONNECTION_UNBLOCKED),
        # Flow control (``zbroker/wires/flow.py``): the broker returns publish credit in
        # bytes; the client reports the delivery bytes it handed to the program.
        _spec(Op.PUBLISH_CREDIT, ("bytes", _INT)),
        _spec(Op.DELIVERY_READ, ("bytes", _INT)),
        _spec(Op.CHANNEL_OPEN, _CH),
        _spec(Op.CHANNEL_OPEN_OK, _CH),
        _spec(Op.CHANNEL_CLOSE, _CH, ("reply_code", _INT), ("reply_text", _STR)),
        _spec(Op.CHANNEL_CLOSE_OK, _CH),
        _spec(Op.EXCHANGE_DECLARE, _CH, ("exchange", _STR), ("exchange_type", _STR),
              ("passive", _BOOL), ("durable", _BOOL), ("auto_delete", _BOOL),
              ("internal", _BOOL), ("arguments", _DICT)),
        _spec(Op.EXCHANGE_DECLARE_OK, _CH),
        _spec(Op.EXCHANGE_DELETE, _CH, ("exchange", _STR), ("if_unused", _BOOL)),
        _spec(Op.EXCHANGE_DELETE_OK, _CH),
        _spec(Op.EXCHANGE_BIND, _CH, ("destination", _STR), ("source", _STR),
              ("routing_key", _STR), ("arguments", _DICT)),
        _spec(Op.EXCHANGE_BIND_OK, _CH),
        _spec(Op.EXCHANGE_UNBIND, _CH, ("destination", _STR), ("source", _STR),
              ("routing_key", _STR), ("arguments", _DICT)),
        _spec(Op.EXCHANGE_UNBIND_OK, _CH),
        _spec(Op.QUEUE_DECLARE, _CH, ("queue", _STR), ("passive", _BOOL),
              ("durable", _BOOL), ("exclusive", _BOOL), ("auto_delete", _BOOL),
              ("arguments", _DICT)),
        _spec(Op.QUEUE_DECLARE_OK, _CH, ("queue", _STR), ("message_count", _INT),
              ("consumer_count", _INT)),
        _spec(Op.QUEUE_BIND, _CH, ("queue", _STR), ("exchange", _STR),
              ("routing_key", _STR), ("arguments", _DICT)),
        _spec(Op.QUEUE_BIND_OK, _CH),
        _spec(Op.QUEUE_UNBIND, _CH, ("queue", _STR), ("exchange", _STR),
              ("routing_key", _STR), ("arguments", _DICT)),
        _spec(Op.QUEUE_UNBIND_OK, _CH),
        _spec(Op.QUEUE_PURGE, _CH, ("queue", _STR)),
        _spec(Op.QUEUE_PURGE_OK, _CH, ("message_count", _INT)),
        _spec(Op.QUEUE_DELETE, _CH, ("queue", _STR), ("if_unused", _BOOL),
              ("if_empty", _BOOL)),
        _spec(Op.QUEUE_DELETE_OK, _CH, ("message_count", _INT)),
        _spec(Op.BASIC_QOS, _CH, ("prefetch_size", _INT), ("prefetch_count", _INT),
              ("global_qos", _BOOL)),
        _spec(Op.BASIC_QOS_OK, _CH),
        _spec(Op.BASIC_CONSUME, _CH, ("queue", _STR), ("consumer_tag", _STR),
              ("auto_ack", _BOOL), ("exclusive", _BOOL), ("arguments", _DICT)),
        _spec(Op.BASIC_CONSUME_OK, _CH, ("consumer_tag", _STR)),
        _spec(Op.BASIC_CANCEL, _CH, ("consumer_tag", _STR)),
        _spec(Op.BASIC_CANCEL_OK, _CH, ("consumer_tag", _STR)),
        _spec(Op.BASIC_PUBLISH, _CH, ("exchange", _STR), ("routing_key", _STR),
              ("mandatory", _BOOL), ("properties", _DICT), body=True),
        _spec(Op.BASIC_DELIVER, _CH, ("consumer_tag", _STR), ("delivery_tag", _INT),
              ("redelivered", _BOOL), ("exchange", _STR), ("routing_key", _STR),
              ("properties", _DICT), body=True),
        _spec(Op.BASIC_RETURN, _CH, ("reply_code", _INT), ("reply_text", _STR),
              ("exchange", _STR), ("routing_key", _STR), ("properties", _DICT),
              body=True),
        _spec(Op.BASIC_GET, _CH, ("queue", _STR), ("auto_ack", _BOOL)),
        _spec(Op.BASIC_GET_OK, _CH, ("delivery_tag", _INT), ("redelivered", _BOOL),
              ("exchange", _STR), ("routing_key", _STR), ("message_count", _INT),
              ("properties", _DICT), body=True),
        _spec(Op.BASIC_GET_EMPTY, _CH),
        _spec(Op.BASIC_ACK, _CH, ("delivery_tag", _INT), ("multiple", _BOOL)),
        _spec(Op.BASIC_NACK, _CH, ("delivery_tag", _INT), ("multiple", _BOOL),
              ("requeue", _BOOL)),
        _spec(Op.BASIC_REJECT, _CH, ("delivery_tag", _INT), ("requeue", _BOOL)),
        _spec(Op.BASIC_RECOVER, _CH, ("requeue", _BOOL)),
        _spec(Op.BASIC_RECOVER_OK, _CH),
        _spec(Op.CONFIRM_SELECT, _CH),
        _spec(Op.CONFIRM_SELECT_OK, _CH),
        _spec(Op.CHANNEL_FLOW, _CH, ("active", _BOOL)),
        _spec(Op.CHANNEL_FLOW_OK, _CH, ("active", _BOOL)),
        _spec(Op.TX_SELECT, _CH),
        _spec(Op.TX_SELECT_OK, _CH),
        _spec(Op.TX_COMMIT, _CH),
        _spec(Op.TX_COMMIT_OK, _CH),
        _spec(Op.TX_ROLLBACK, _CH),
        _spec(Op.TX_ROLLBACK_OK, _CH),
    )
}

#: Opcodes whose command frame is followed by a body frame.
BODY_OPS: frozenset[int] = frozenset(op for op, s in SPECS.items() if s.has_body)
assert BODY_OPS == BODY_METHODS  # one list of body-carrying methods for every wire

#: Fields holding a table whose nested values come from the peer: each is checked in
#: depth by the codec (``tables.py``) before any of it reaches the broker.
PROPERTY_FIELDS = frozenset({"properties"})
TABLE_FIELDS = frozenset({"arguments", "client_properties"})

#: Connection-level opcodes (no channel field).
CONNECTION_OPS: frozenset[int] = frozenset(
    {Op.HELLO, Op.HELLO_OK, Op.CONNECTION_CLOSE, Op.CONNECTION_CLOSE_OK, Op.CONNECTION_BLOCKED,
     Op.CONNECTION_UNBLOCKED, Op.PUBLISH_CREDIT, Op.DELIVERY_READ, Op.CONNECTION_UPDATE_SECRET,
     Op.CONNECTION_UPDATE_SECRET_OK}
)
assert all(op < Op.CHANNEL_OPEN for op in CONNECTION_OPS)  # methods.py numbers them so
