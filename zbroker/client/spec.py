"""The AMQP classes, methods and properties that pika programs touch, by pika's names.

Method objects are plain attribute bags built from a field table; the client fills them
from zbroker's wire commands. ``BasicProperties`` converts to and from the compact
mapping the wire carries (only the fields that are set).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from zbroker.client.amqp_object import Class, Method, Properties
from zbroker.client.delivery_mode import DeliveryMode

PROTOCOL_VERSION = (0, 9, 1)
PORT = 5680
TRANSIENT_DELIVERY_MODE = DeliveryMode.Transient.value
PERSISTENT_DELIVERY_MODE = DeliveryMode.Persistent.value

REPLY_SUCCESS = 200
NO_ROUTE = 312
CONNECTION_FORCED = 320
ACCESS_REFUSED = 403
NOT_FOUND = 404
RESOURCE_LOCKED = 405
PRECONDITION_FAILED = 406


class BasicProperties(Properties):
    NAME = "BasicProperties"
    FIELDS = ("content_type", "content_encoding", "headers", "delivery_mode", "priority",
              "correlation_id", "reply_to", "expiration", "message_id", "timestamp", "type",
              "user_id", "app_id", "cluster_id")

    def __init__(self, content_type: str | None = None, content_encoding: str | None = None,
                 headers: dict | None = None, delivery_mode: int | DeliveryMode | None = None,
                 priority: int | None = None, correlation_id: str | None = None,
                 reply_to: str | None = None, expiration: str | None = None,
                 message_id: str | None = None, timestamp: int | None = None,
                 type: str | None = None, user_id: str | None = None,  # noqa: A002 - pika's name
                 app_id: str | None = None, cluster_id: str | None = None) -> None:
        self.content_type = content_type
        self.content_encoding = content_encoding
        self.headers = headers
        self.delivery_mode = delivery_mode.value if isinstance(delivery_mode, DeliveryMode) else delivery_mode
        self.priority = priority
        self.correlation_id = correlation_id
        self.reply_to = reply_to
        self.expiration = expiration
        self.message_id = message_id
        self.timestamp = timestamp
        self.type = type
        self.user_id = user_id
        self.app_id = app_id
        self.cluster_id = cluster_id

    def to_wire(self) -> dict[str, Any]:
        """The fields that are set; names a program added itself are dropped by receivers."""
        wire = {k: v for k, v in self.__dict__.items() if v is not None}
        if wire.get("headers"):
            wire["headers"] = amqp_table(wire["headers"])
        return wire

    @classmethod
    def from_wire(cls, fields: dict[str, Any]) -> "BasicProperties":
        """Build from the wire mapping; runs once per delivery, so it skips __init__."""
        props = cls.__new__(cls)
        attrs = props.__dict__
        attrs.update(_UNSET)
        if fields:
            if fields.keys() <= _FIELD_SET:
                attrs.update(fields)
            else:  # a peer added names we do not know: keep only ours
                attrs.update((k, v) for k, v in fields.items() if k in _FIELD_SET)
            if attrs["headers"]:
                attrs["headers"] = naive_utc(attrs["headers"])
        return props


def amqp_table(table: dict) -> dict:
    """A table as AMQP carries it: keys are strings. pika sends a ``bytes`` key as the
    string it spells, so ``{b"k": 1}`` and ``{"k": 1}`` are one table, here too."""
    if all(type(k) is str and type(v) not in (dict, list) for k, v in table.items()):
        return table  # the common case, unchanged
    return {(k.decode() if isinstance(k, bytes) else k): _amqp_value(v) for k, v in table.items()}


def _amqp_value(value: Any) -> Any:
    if isinstance(value, dict):
        return amqp_table(value)
    if isinstance(value, list):
        return [_amqp_value(v) for v in value]
    return value


#: Values that hold no timestamp: a table of only these is given as it is (once per
#: delivery with headers, so the common flat table costs one pass and no copy).
_PLAIN = frozenset({str, int, float, bytes, bool, type(None)})


def naive_utc(value: Any) -> Any:
    """Timestamps inside headers (an ``x-death`` entry's ``time``) as pika gives them:
    naive ``datetime`` objects in UTC."""
    if isinstance(value, dict):
        for item in value.values():
            if type(item) not in _PLAIN:
                return {k: naive_utc(v) for k, v in value.items()}
        return value
    if isinstance(value, list):
        return [naive_utc(v) for v in value]
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


_FIELD_SET = frozenset(BasicProperties.FIELDS)
_UNSET = dict.fromkeys(BasicProperties.FIELDS)


def _method(qualname: str, fields: dict[str, Any], synchronous: bool = False) -> type[Method]:
    """Build a pika-shaped method class: keyword arguments with defaults, pika's NAME."""
    defaults = dict(fields)

    def __init__(self: Method, *args: Any, **kwargs: Any) -> None:
        values = dict(defaults)
        values.update(zip(defaults, args))
        values.update(kwargs)
        for key, value in values.items():
            setattr(self, key, value)

    return type(qualname.split(".")[1], (Method,), {
        "NAME": qualname, "synchronous": synchronous, "__init__": __init__,
        "__doc__": f"pika's ``spec.{qualname}``.",
    })


class Connection(Class):
    NAME = "Connection"
    Close = _method("Connection.Close", {"reply_code": None, "reply_text": "", "class_id": None,
                                         "method_id": None}, True)
    CloseOk = _method("Connection.CloseOk", {})
    Blocked = _method("Connection.Blocked", {"reason": ""})
    Unblocked = _method("Connection.Unblocked", {})


class Channel(Class):
    NAME = "Channel"
    Open = _method("Channel.Open", {"out_of_band": ""}, True)
    OpenOk = _method("Channel.OpenOk", {"channel_id": ""})
    Close = _method("Channel.Close", {"reply_code": None, "reply_text": "", "class_id": None,
                                      "method_id": None}, True)
    CloseOk = _method("Channel.CloseOk", {})
    Flow = _method("Channel.Flow", {"active": None}, True)
    FlowOk = _method("Channel.FlowOk", {"active": None})


class Exchange(Class):
    NAME = "Exchange"
    DeclareOk = _method("Exchange.DeclareOk", {})
    DeleteOk = _method("Exchange.DeleteOk", {})
    BindOk = _method("Exchange.BindOk", {})
    UnbindOk = _method("Exchange.UnbindOk", {})


class Queue(Class):
    NAME = "Queue"
    DeclareOk = _method("Queue.DeclareOk", {"queue": None, "message_count": None,
                                            "consumer_count": None})
    BindOk = _method("Queue.BindOk", {})
    UnbindOk = _method("Queue.UnbindOk", {})
    PurgeOk = _method("Queue.PurgeOk", {"message_count": None})
    DeleteOk = _method("Queue.DeleteOk", {"message_count": None})


class Basic(Class):
    NAME = "Basic"

    class Deliver(Method):
        """``Basic.Deliver``, written out: one is built per delivery."""

        NAME = "Basic.Deliver"

        def __init__(self, consumer_tag: str | None = None, delivery_tag: int | None = None,
                     redelivered: bool = False, exchange: str | None = None,
                     routing_key: str | None = None) -> None:
            self.consumer_tag = consumer_tag
            self.delivery_tag = delivery_tag
            self.redelivered = redelivered
            self.exchange = exchange
            self.routing_key = routing_key

    QosOk = _method("Basic.QosOk", {})
    ConsumeOk = _method("Basic.ConsumeOk", {"consumer_tag": None})
    Cancel = _method("Basic.Cancel", {"consumer_tag": None, "nowait": False}, True)
    CancelOk = _method("Basic.CancelOk", {"consumer_tag": None})
    Return = _method("Basic.Return", {"reply_code": None, "reply_text": "", "exchange": None,
                                      "routing_key": None})
    GetOk = _method("Basic.GetOk", {"delivery_tag": None, "redelivered": False, "exchange": None,
                                    "routing_key": None, "message_count": None})
    GetEmpty = _method("Basic.GetEmpty", {"cluster_id": ""})
    Ack = _method("Basic.Ack", {"delivery_tag": 0, "multiple": False})
    Nack = _method("Basic.Nack", {"delivery_tag": 0, "multiple": False, "requeue": True})
    RecoverOk = _method("Basic.RecoverOk", {})


class Confirm(Class):
    NAME = "Confirm"
    SelectOk = _method("Confirm.SelectOk", {})


class Tx(Class):
    NAME = "Tx"
    SelectOk = _method("Tx.SelectOk", {})
    CommitOk = _method("Tx.CommitOk", {})
    RollbackOk = _method("Tx.RollbackOk", {})
