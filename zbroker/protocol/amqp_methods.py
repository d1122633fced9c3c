"""AMQP 0-9-1's methods <-> the core's commands and events, as two tables.

Rules of this module:
- ``INBOUND``: each method a client may send on a channel, with the core ``Method`` it
  becomes and pamqp's attribute names in the order of the core's fields (the zbroker
  command table's). Field types are then checked against that same table
  (``protocol/native_commands.py``), tables in depth: one set of rules for both wires.
- A method with a ``nowait`` bit names the core's answer to swallow when it is set.
- What AMQP offers and zbroker does not do is refused, never ignored: ``immediate=true``
  and ``no_local=true`` are 540 NOT_IMPLEMENTED (RabbitMQ refuses the first and ignores
  the second). The deprecated ``basic.recover-async`` is basic.recover without an answer,
  as in RabbitMQ.
- ``OUTBOUND``: each core event (a tuple, ``zbroker/methods.py``) as a pamqp method. The
  connection handshake methods are the wire's own (``wires/amqp.py``), not here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pamqp import commands as C

from zbroker import errors
from zbroker.protocol.amqp_codec import ACK_ID, PUBLISH_ID, FrameError, decode_ack, decode_publish, plain_table
from zbroker.methods import Method as M
from zbroker.protocol.native_commands import SPECS, TABLE_FIELDS

#: AMQP's reply-text is a short string: longer texts are cut, as RabbitMQ does.
MAX_REPLY_TEXT = 255


@dataclass(frozen=True)
class Inbound:
    method: int
    attributes: tuple[str, ...]
    #: The core's answer to drop when the client set ``nowait``; None: no nowait bit.
    nowait_ok: int | None = None
    #: The answer is never sent (basic.recover-async has no -ok).
    silent: bool = False


INBOUND: dict[type, Inbound] = {
    C.Channel.Open: Inbound(M.CHANNEL_OPEN, ()),
    C.Channel.Close: Inbound(M.CHANNEL_CLOSE, ("reply_code", "reply_text")),
    C.Channel.CloseOk: Inbound(M.CHANNEL_CLOSE_OK, ()),
    C.Channel.Flow: Inbound(M.CHANNEL_FLOW, ("active",)),
    C.Exchange.Declare: Inbound(M.EXCHANGE_DECLARE, ("exchange", "exchange_type", "passive", "durable",
                                                     "auto_delete", "internal", "arguments"),
                                M.EXCHANGE_DECLARE_OK),
    C.Exchange.Delete: Inbound(M.EXCHANGE_DELETE, ("exchange", "if_unused"), M.EXCHANGE_DELETE_OK),
    C.Exchange.Bind: Inbound(M.EXCHANGE_BIND, ("destination", "source", "routing_key", "arguments"),
                             M.EXCHANGE_BIND_OK),
    C.Exchange.Unbind: Inbound(M.EXCHANGE_UNBIND, ("destination", "source", "routing_key", "arguments"),
                               M.EXCHANGE_UNBIND_OK),
    C.Queue.Declare: Inbound(M.QUEUE_DECLARE, ("queue", "passive", "durable", "exclusive", "auto_delete",
                                               "arguments"), M.QUEUE_DECLARE_OK),
    C.Queue.Bind: Inbound(M.QUEUE_BIND, ("queue", "exchange", "routing_key", "arguments"), M.QUEUE_BIND_OK),
    C.Queue.Unbind: Inbound(M.QUEUE_UNBIND, ("queue", "exchange", "routing_key", "arguments")),
    C.Queue.Purge: Inbound(M.QUEUE_PURGE, ("queue",), M.QUEUE_PURGE_OK),
    C.Queue.Delete: Inbound(M.QUEUE_DELETE, ("queue", "if_unused", "if_empty"), M.QUEUE_DELETE_OK),
    C.Basic.Qos: Inbound(M.BASIC_QOS, ("prefetch_size", "prefetch_count", "global_")),
    C.Basic.Consume: Inbound(M.BASIC_CONSUME, ("queue", "consumer_tag", "no_ack", "exclusive", "arguments"),
                             M.BASIC_CONSUME_OK),
    C.Basic.Cancel: Inbound(M.BASIC_CANCEL, ("consumer_tag",), M.BASIC_CANCEL_OK),
    C.Basic.Publish: Inbound(M.BASIC_PUBLISH, ("exchange", "routing_key", "mandatory")),
    C.Basic.Get: Inbound(M.BASIC_GET, ("queue", "no_ack")),
    C.Basic.Ack: Inbound(M.BASIC_ACK, ("delivery_tag", "multiple")),
    C.Basic.Nack: Inbound(M.BASIC_NACK, ("delivery_tag", "multiple", "requeue")),
    C.Basic.Reject: Inbound(M.BASIC_REJECT, ("delivery_tag", "requeue")),
    C.Basic.Recover: Inbound(M.BASIC_RECOVER, ("requeue",)),
    C.Basic.RecoverAsync: Inbound(M.BASIC_RECOVER, ("requeue",), M.BASIC_RECOVER_OK, silent=True),
    C.Confirm.Select: Inbound(M.CONFIRM_SELECT, (), M.CONFIRM_SELECT_OK),
    C.Tx.Select: Inbound(M.TX_SELECT, ()),
    C.Tx.Commit: Inbound(M.TX_COMMIT, ()),
    C.Tx.Rollback: Inbound(M.TX_ROLLBACK, ()),
}

#: Flags zbroker does not implement: (method class, attribute) -> RabbitMQ's text.
_REFUSED_FLAGS: dict[tuple[type, str], str] = {
    (C.Basic.Publish, "immediate"): "immediate=true",
    (C.Basic.Consume, "no_local"): "no_local=true",
}


def to_command(channel: int, method: Any) -> tuple[Inbound, list[Any]]:
    """A client's channel method as the core's ``(spec, [channel, fields...])``.

    Raises ``FrameError`` for a method that is not a client's on a channel, a flag
    zbroker refuses, or a field the core's table does not accept.
    """
    cls = type(method)
    spec = INBOUND.get(cls)
    if spec is None:
        raise FrameError(errors.COMMAND_INVALID, f"{method.name} is not a client command on a channel")
    for (refused_cls, attribute), text in _REFUSED_FLAGS.items():
        if refused_cls is cls and getattr(method, attribute):
            raise FrameError(errors.NOT_IMPLEMENTED, text)
    fields: list[Any] = [channel]
    types = SPECS[spec.method].exact_types
    names = SPECS[spec.method].fields
    for i, attribute in enumerate(spec.attributes, 1):
        value = getattr(method, attribute)
        name = names[i][0]
        if name in TABLE_FIELDS:
            value = plain_table(value or {}, name)
        elif type(value) not in types[i]:
            raise FrameError(errors.SYNTAX_ERROR, f"{method.name}: field '{attribute}' has a value of "
                                                  f"type {type(value).__name__}")
        fields.append(value)
    return spec, fields


_PUBLISH_OP, _ACK_OP = int(M.BASIC_PUBLISH), int(M.BASIC_ACK)


def fast_command(channel: int, payload: bytes) -> list[Any] | None:
    """basic.publish and basic.ack, the per-message methods, decoded without pamqp as
    ``[method, channel, fields...]`` (the publish's properties to come); None for others."""
    head = payload[:4]
    if head == PUBLISH_ID:
        exchange, routing_key, mandatory, immediate = decode_publish(payload)
        if immediate:
            raise FrameError(errors.NOT_IMPLEMENTED, "immediate=true")
        return [_PUBLISH_OP, channel, exchange, routing_key, mandatory, {}]
    if head == ACK_ID:
        return [_ACK_OP, channel, *decode_ack(payload)]
    return None


def reply_text(text: str) -> str:
    data = text.encode()
    return text if len(data) <= MAX_REPLY_TEXT else data[:MAX_REPLY_TEXT].decode(errors="ignore")


#: Core event method -> (pamqp method class, its arguments from the event tuple
#: ``(method, channel, ...)``); connection events have no channel. Encoded by
#: ``codec.method_frame``.
OUTBOUND: dict[int, tuple[type, Callable[[tuple], tuple]]] = {
    M.CONNECTION_CLOSE: (C.Connection.Close, lambda e: (e[1], reply_text(e[2]), 0, 0)),
    M.CONNECTION_CLOSE_OK: (C.Connection.CloseOk, lambda e: ()),
    M.CONNECTION_UPDATE_SECRET_OK: (C.Connection.UpdateSecretOk, lambda e: ()),
    M.CONNECTION_BLOCKED: (C.Connection.Blocked, lambda e: (e[1],)),
    M.CONNECTION_UNBLOCKED: (C.Connection.Unblocked, lambda e: ()),
    M.CHANNEL_OPEN_OK: (C.Channel.OpenOk, lambda e: (b"",)),
    M.CHANNEL_CLOSE: (C.Channel.Close, lambda e: (e[2], reply_text(e[3]), 0, 0)),
    M.CHANNEL_CLOSE_OK: (C.Channel.CloseOk, lambda e: ()),
    M.CHANNEL_FLOW_OK: (C.Channel.FlowOk, lambda e: (e[2],)),
    M.EXCHANGE_DECLARE_OK: (C.Exchange.DeclareOk, lambda e: ()),
    M.EXCHANGE_DELETE_OK: (C.Exchange.DeleteOk, lambda e: ()),
    M.EXCHANGE_BIND_OK: (C.Exchange.BindOk, lambda e: ()),
    M.EXCHANGE_UNBIND_OK: (C.Exchange.UnbindOk, lambda e: ()),
    M.QUEUE_DECLARE_OK: (C.Queue.DeclareOk, lambda e: (e[2], e[3], e[4])),
    M.QUEUE_BIND_OK: (C.Queue.BindOk, lambda e: ()),
    M.QUEUE_UNBIND_OK: (C.Queue.UnbindOk, lambda e: ()),
    M.QUEUE_PURGE_OK: (C.Queue.PurgeOk, lambda e: (e[2],)),
    M.QUEUE_DELETE_OK: (C.Queue.DeleteOk, lambda e: (e[2],)),
    M.BASIC_QOS_OK: (C.Basic.QosOk, lambda e: ()),
    M.BASIC_CONSUME_OK: (C.Basic.ConsumeOk, lambda e: (e[2],)),
    M.BASIC_CANCEL: (C.Basic.Cancel, lambda e: (e[2], False)),
    M.BASIC_CANCEL_OK: (C.Basic.CancelOk, lambda e: (e[2],)),
    M.BASIC_RETURN: (C.Basic.Return, lambda e: (e[2], reply_text(e[3]), e[4], e[5])),
    M.BASIC_GET_OK: (C.Basic.GetOk, lambda e: (e[2], e[3], e[4], e[5], e[6])),
    M.BASIC_GET_EMPTY: (C.Basic.GetEmpty, lambda e: ("",)),
    M.BASIC_ACK: (C.Basic.Ack, lambda e: (e[2], e[3])),
    M.BASIC_NACK: (C.Basic.Nack, lambda e: (e[2], e[3], e[4])),
    M.BASIC_RECOVER_OK: (C.Basic.RecoverOk, lambda e: ()),
    M.CONFIRM_SELECT_OK: (C.Confirm.SelectOk, lambda e: ()),
    M.TX_SELECT_OK: (C.Tx.SelectOk, lambda e: ()),
    M.TX_COMMIT_OK: (C.Tx.CommitOk, lambda e: ()),
    M.TX_ROLLBACK_OK: (C.Tx.RollbackOk, lambda e: ()),
}
#: Where the properties sit in a body-carrying event tuple.
PROPERTIES_AT = {M.BASIC_DELIVER: 7, M.BASIC_RETURN: 6, M.BASIC_GET_OK: 7}
