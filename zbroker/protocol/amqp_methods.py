"""AMQP 0-9-1's methods <-> the core's commands and events, as two tables.

Rules of this module:
- The core's field names are ``zbroker/methods.py``'s (``FIELDS``), and pamqp's
  attributes carry the same names but for ``_PAMQP_NAMES`` (``no_ack``, ``global_``).
  Both tables are built from those names, never from positions written out here.
- ``INBOUND``: each method a client may send on a channel, with the core ``Method`` it
  becomes; its fields are the core's, in the core's order, read from pamqp's attributes.
  A publish's properties come from its content header, not its method frame. Field types
  are then checked against the zbroker wire's table (``protocol/native_commands.py``),
  tables in depth: one set of rules for both wires.
- ``nowait``: a method with a no-wait bit set is a core command with ``nowait`` (the core
  leaves out its ``-ok``); ``silent`` methods always are (basic.recover-async has no -ok).
- What AMQP offers and zbroker does not do is refused, never ignored: ``immediate=true``
  and ``no_local=true`` are 540 NOT_IMPLEMENTED (RabbitMQ refuses the first and ignores
  the second). The deprecated ``basic.recover-async`` is basic.recover without an answer,
  as in RabbitMQ.
- ``OUTBOUND``: each core event (a tuple, ``zbroker/methods.py``) as a pamqp method whose
  arguments are the event's fields of the same names; an argument the core does not
  carry takes ``_PAMQP_DEFAULTS``' value, and a reply text is cut to AMQP's short string.
  The connection handshake methods are the wire's own (``wires/amqp_handshake.py``), not here.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from pamqp import commands as C

from zbroker import errors
from zbroker.protocol.amqp_codec import ACK_ID, PUBLISH_ID, FrameError, decode_ack, decode_publish, plain_table
from zbroker.methods import FIELDS, Method as M
from zbroker.protocol.native_commands import SPECS, TABLE_FIELDS

#: AMQP's reply-text is a short string: longer texts are cut, as RabbitMQ does.
MAX_REPLY_TEXT = 255
#: The core's field name -> pamqp's attribute, where they differ.
_PAMQP_NAMES = {"auto_ack": "no_ack", "global_qos": "global_"}
#: Fields a channel method's frame does not carry: they come with its content.
_FROM_CONTENT = frozenset({"properties"})
#: pamqp arguments of outbound methods that the core's events do not carry.
_PAMQP_DEFAULTS: dict[str, Any] = {
    "class_id": 0, "method_id": 0,  # a close names no method that caused it
    "channel_id": b"",  # channel.open-ok's deprecated id: empty, as RabbitMQ sends it
    "nowait": False,  # a broker-side basic.cancel
    "cluster_id": "",  # basic.get-empty's deprecated field
}


@dataclass(frozen=True)
class Inbound:
    method: int
    #: The answer is never sent (basic.recover-async has no -ok): always ``nowait``.
    silent: bool = False
    #: Per core field after the channel: pamqp's attribute, or None (from the content).
    attributes: tuple[str | None, ...] = field(init=False)

    def __post_init__(self) -> None:
        names = FIELDS[M(self.method)][1:]
        object.__setattr__(self, "attributes", tuple(
            None if name in _FROM_CONTENT else _PAMQP_NAMES.get(name, name) for name in names))


INBOUND: dict[type, Inbound] = {
    C.Channel.Open: Inbound(M.CHANNEL_OPEN),
    C.Channel.Close: Inbound(M.CHANNEL_CLOSE),
    C.Channel.CloseOk: Inbound(M.CHANNEL_CLOSE_OK),
    C.Channel.Flow: Inbound(M.CHANNEL_FLOW),
    C.Exchange.Declare: Inbound(M.EXCHANGE_DECLARE),
    C.Exchange.Delete: Inbound(M.EXCHANGE_DELETE),
    C.Exchange.Bind: Inbound(M.EXCHANGE_BIND),
    C.Exchange.Unbind: Inbound(M.EXCHANGE_UNBIND),
    C.Queue.Declare: Inbound(M.QUEUE_DECLARE),
    C.Queue.Bind: Inbound(M.QUEUE_BIND),
    C.Queue.Unbind: Inbound(M.QUEUE_UNBIND),
    C.Queue.Purge: Inbound(M.QUEUE_PURGE),
    C.Queue.Delete: Inbound(M.QUEUE_DELETE),
    C.Basic.Qos: Inbound(M.BASIC_QOS),
    C.Basic.Consume: Inbound(M.BASIC_CONSUME),
    C.Basic.Cancel: Inbound(M.BASIC_CANCEL),
    C.Basic.Publish: Inbound(M.BASIC_PUBLISH),
    C.Basic.Get: Inbound(M.BASIC_GET),
    C.Basic.Ack: Inbound(M.BASIC_ACK),
    C.Basic.Nack: Inbound(M.BASIC_NACK),
    C.Basic.Reject: Inbound(M.BASIC_REJECT),
    C.Basic.Recover: Inbound(M.BASIC_RECOVER),
    C.Basic.RecoverAsync: Inbound(M.BASIC_RECOVER, silent=True),
    C.Confirm.Select: Inbound(M.CONFIRM_SELECT),
    C.Tx.Select: Inbound(M.TX_SELECT),
    C.Tx.Commit: Inbound(M.TX_COMMIT),
    C.Tx.Rollback: Inbound(M.TX_ROLLBACK),
}
assert all(a is None or a in cls.__slots__ for cls, spec in INBOUND.items() for a in spec.attributes)

#: Flags zbroker does not implement: (method class, attribute) -> RabbitMQ's text.
_REFUSED_FLAGS: dict[tuple[type, str], str] = {
    (C.Basic.Publish, "immediate"): "immediate=true",
    (C.Basic.Consume, "no_local"): "no_local=true",
}


def to_command(channel: int, method: Any) -> tuple[Inbound, list[Any], bool]:
    """A client's channel method as the core's ``(spec, [channel, fields...], nowait)``
    (a publish's properties an empty table, to be filled from its content header).

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
    core = SPECS[spec.method]
    types = core.exact_types
    for i, attribute in enumerate(spec.attributes, 1):
        if attribute is None:
            fields.append({})
            continue
        value = getattr(method, attribute)
        name = core.fields[i][0]
        if name in TABLE_FIELDS:
            value = plain_table(value or {}, name)
        elif type(value) not in types[i]:
            raise FrameError(errors.SYNTAX_ERROR, f"{method.name}: field '{attribute}' has a value of "
                                                  f"type {type(value).__name__}")
        fields.append(value)
    return spec, fields, spec.silent or bool(getattr(method, "nowait", False))


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


def _arguments(method: M, cls: type) -> Callable[[tuple], tuple]:
    """What ``cls`` (a pamqp method) takes, in its order, from an event of ``method``:
    the event's field of each argument's name (its place from ``FIELDS``; the event
    opens with the method number), else ``_PAMQP_DEFAULTS``' value."""
    at = {name: i for i, name in enumerate(FIELDS[method], 1)}
    plan = tuple((at[name], name == "reply_text") if name in at else (None, _PAMQP_DEFAULTS[name])
                 for name in cls.__slots__)
    if not plan:
        return lambda event: ()
    if all(i is not None and not cut for i, cut in plan):
        places = tuple(i for i, _ in plan)
        return lambda event: tuple(event[i] for i in places)
    return lambda event: tuple((reply_text(event[i]) if extra else event[i]) if i is not None else extra
                               for i, extra in plan)


#: Core event method -> the pamqp method class it goes out as.
_OUTBOUND_CLASSES: dict[M, type] = {
    M.CONNECTION_CLOSE: C.Connection.Close,
    M.CONNECTION_CLOSE_OK: C.Connection.CloseOk,
    M.CONNECTION_UPDATE_SECRET_OK: C.Connection.UpdateSecretOk,
    M.CONNECTION_BLOCKED: C.Connection.Blocked,
    M.CONNECTION_UNBLOCKED: C.Connection.Unblocked,
    M.CHANNEL_OPEN_OK: C.Channel.OpenOk,
    M.CHANNEL_CLOSE: C.Channel.Close,
    M.CHANNEL_CLOSE_OK: C.Channel.CloseOk,
    M.CHANNEL_FLOW_OK: C.Channel.FlowOk,
    M.EXCHANGE_DECLARE_OK: C.Exchange.DeclareOk,
    M.EXCHANGE_DELETE_OK: C.Exchange.DeleteOk,
    M.EXCHANGE_BIND_OK: C.Exchange.BindOk,
    M.EXCHANGE_UNBIND_OK: C.Exchange.UnbindOk,
    M.QUEUE_DECLARE_OK: C.Queue.DeclareOk,
    M.QUEUE_BIND_OK: C.Queue.BindOk,
    M.QUEUE_UNBIND_OK: C.Queue.UnbindOk,
    M.QUEUE_PURGE_OK: C.Queue.PurgeOk,
    M.QUEUE_DELETE_OK: C.Queue.DeleteOk,
    M.BASIC_QOS_OK: C.Basic.QosOk,
    M.BASIC_CONSUME_OK: C.Basic.ConsumeOk,
    M.BASIC_CANCEL: C.Basic.Cancel,
    M.BASIC_CANCEL_OK: C.Basic.CancelOk,
    M.BASIC_RETURN: C.Basic.Return,
    M.BASIC_GET_OK: C.Basic.GetOk,
    M.BASIC_GET_EMPTY: C.Basic.GetEmpty,
    M.BASIC_ACK: C.Basic.Ack,
    M.BASIC_NACK: C.Basic.Nack,
    M.BASIC_RECOVER_OK: C.Basic.RecoverOk,
    M.CONFIRM_SELECT_OK: C.Confirm.SelectOk,
    M.TX_SELECT_OK: C.Tx.SelectOk,
    M.TX_COMMIT_OK: C.Tx.CommitOk,
    M.TX_ROLLBACK_OK: C.Tx.RollbackOk,
}
#: Core event method -> (pamqp method class, its arguments from the event tuple
#: ``(method, channel, ...)``); connection events have no channel. Encoded by
#: ``codec.method_frame``. (basic.deliver, the per-message event, is the wire's own
#: fast path: ``codec.deliver_frame``.)
OUTBOUND: dict[int, tuple[type, Callable[[tuple], tuple]]] = {
    op: (cls, _arguments(op, cls)) for op, cls in _OUTBOUND_CLASSES.items()}
#: Where the properties sit in a body-carrying event tuple.
PROPERTIES_AT = {op: FIELDS[op].index("properties") + 1
                 for op in (M.BASIC_DELIVER, M.BASIC_RETURN, M.BASIC_GET_OK)}
