"""Queue, consumer and exchange arguments: validated as RabbitMQ validates them, then
turned into typed settings the queue applies.

Rules of this module:
- Every ``x-`` argument RabbitMQ knows for a queue is in ``QUEUE_ARGUMENTS`` with the
  queue types it applies to. A value of the wrong type or range is a 406
  PRECONDITION_FAILED with RabbitMQ's text, ``invalid arg 'x-max-priority' for queue
  'q' in vhost '/': {max_value_exceeded,300}``; an argument of another queue type is
  ``invalid arg 'x-max-priority' for queue 'q' in vhost '/' of queue type
  rabbit_quorum_queue``.
- An argument RabbitMQ implements and zbroker does not is refused (406, "... is not
  supported by zbroker"), never stored and ignored: a program must not believe it is
  protected when it is not. Arguments that only place a queue in a cluster
  (``x-queue-leader-locator``, ``x-quorum-initial-group-size`` ...) mean nothing on one
  node and are accepted, as a one-node RabbitMQ accepts them.
- Names RabbitMQ itself does not know are kept and ignored, as RabbitMQ does.
- Times are milliseconds; RabbitMQ's ceiling for them is ten years.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable

from zbroker import errors
from zbroker.errors import ChannelError

VHOST = "/"
log = logging.getLogger(__name__)
#: RabbitMQ's limit for x-message-ttl, x-expires and a message's expiration: 10 years.
MAX_EXPIRY_MS = 315_360_000_000
#: The highest x-max-priority RabbitMQ supports.
MAX_PRIORITY = 255
OVERFLOW_MODES = ("drop-head", "reject-publish", "reject-publish-dlx")
CLASSIC, QUORUM, STREAM = "classic", "quorum", "stream"
QUEUE_TYPES = (CLASSIC, QUORUM, STREAM)
#: RabbitMQ's module names, as its "of queue type" texts print them.
TYPE_MODULES = {CLASSIC: "rabbit_classic_queue", QUORUM: "rabbit_quorum_queue", STREAM: "rabbit_stream_queue"}
#: RabbitMQ's ceiling for a stream's segment size (``?MAX_STREAM_MAX_SEGMENT_SIZE``).
MAX_STREAM_SEGMENT_BYTES = 3_000_000_000
#: The units of an age (``x-max-age``, the ``max-age`` policy, an ``x-stream-offset``
#: interval) in ms, as RabbitMQ's ``check_max_age`` reads them: a month is 30 days.
AGE_UNITS_MS = {"Y": 365 * 86_400_000, "M": 30 * 86_400_000, "D": 86_400_000, "h": 3_600_000,
                "m": 60_000, "s": 1000}
_AGE = re.compile(r"([0-9]*)(.*)", re.DOTALL)  # (RabbitMQ's "(^[0-9]*)(.*)")
REPLY_TO = "amq.rabbitmq.reply-to"


def amqp_type(value: Any) -> str:
    """The AMQP field type RabbitMQ would see for a Python value (for error texts)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -2**31 <= value < 2**31 else "long"
    return {str: "longstr", bytes: "longstr", float: "double", dict: "table", list: "array",
            type(None): "void", datetime: "timestamp"}.get(type(value), "longstr")



class _Invalid(Exception):
    """A validator's verdict: the Erlang-shaped reason RabbitMQ would print."""


def _integer(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _Invalid(f'"expected integer, got {amqp_type(value)}"')
    return value


def _non_negative(value: Any) -> int:
    n = _integer(value)
    if n < 0:
        raise _Invalid(f"{{value_negative,{n}}}")
    return n


def _expiry(value: Any) -> int:
    n = _integer(value)
    if n < 0:
        raise _Invalid(f"{{value_negative,{n}}}")
    if n > MAX_EXPIRY_MS:
        raise _Invalid(f"{{value_too_large,{n}}}")
    return n


def _expires(value: Any) -> int:
    if _integer(value) == 0:
        raise _Invalid("{value_zero,0}")
    return _expiry(value)


def _max_priority(value: Any) -> int:
    n = _non_negative(value)
    if n > MAX_PRIORITY:
        raise _Invalid(f"{{max_value_exceeded,{n}}}")
    return n


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise _Invalid(f"{{unacceptable_type,{amqp_type(value)}}}")
    return value


class _BadType(Exception):
    """RabbitMQ words a wrong type for some arguments its own way (see queue_settings)."""


def _exchange_name(value: Any) -> str:
    if not isinstance(value, str):
        raise _BadType(amqp_type(value))
    return value


def _boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise _Invalid(f"{{unacceptable_type,{amqp_type(value)}}}")
    return value


def _choice(choices: tuple[str, ...], reason: str) -> Callable[[Any], str]:
    def check(value: Any) -> str:
        if _string(value) not in choices:
            raise _Invalid(reason)
        return value
    return check


def _positive(value: Any) -> int:
    if _non_negative(value) == 0:
        raise _Invalid("{value_zero,0}")
    return value


def parse_age(value: str) -> int | None:
    """An age such as ``7D``, ``1h`` or ``30s`` in ms (RabbitMQ's ``check_max_age``: a
    positive integer and one unit of ``AGE_UNITS_MS``); None if it is not one."""
    digits, unit = _AGE.fullmatch(value).groups()  # type: ignore[union-attr]  # (matches anything)
    if not digits or unit not in AGE_UNITS_MS or int(digits) <= 0:
        return None
    return int(digits) * AGE_UNITS_MS[unit]


def _max_age(value: Any) -> int:
    age = parse_age(_string(value))
    if age is None:
        raise _Invalid("invalid_max_age")
    return age


def _unsupported(value: Any) -> Any:
    raise _Unsupported()


class _Unsupported(Exception):
    pass


_BOTH = (CLASSIC, QUORUM)
#: name -> (validator, queue types it applies to). The validator returns the typed value.
#: A stream takes what RabbitMQ 3.10's ``rabbit_stream_queue`` does (its capabilities).
QUEUE_ARGUMENTS: dict[str, tuple[Callable[[Any], Any], tuple[str, ...]]] = {
    "x-queue-type": (_choice(QUEUE_TYPES, "invalid_queue_type"), QUEUE_TYPES),
    "x-message-ttl": (_expiry, _BOTH),
    "x-expires": (_expires, _BOTH),
    "x-max-length": (_non_negative, _BOTH),
    "x-max-length-bytes": (_non_negative, QUEUE_TYPES),
    "x-max-age": (_max_age, (STREAM,)),
    "x-stream-max-segment-size-bytes": (_non_negative, (STREAM,)),
    "x-overflow": (_choice(OVERFLOW_MODES, "invalid_overflow"), _BOTH),
    "x-dead-letter-exchange": (_exchange_name, _BOTH),
    "x-dead-letter-routing-key": (_string, _BOTH),
    "x-max-priority": (_max_priority, (CLASSIC,)),
    "x-single-active-consumer": (_boolean, _BOTH),
    "x-consumer-timeout": (_non_negative, _BOTH),
    "x-delivery-limit": (_integer, (QUORUM,)),
    # Layout and placement: no effect on a single node, accepted as RabbitMQ accepts them.
    "x-queue-mode": (_choice(("default", "lazy"), "invalid_queue_mode"), (CLASSIC,)),
    "x-queue-version": (_integer, (CLASSIC,)),
    "x-queue-master-locator": (_string, (CLASSIC,)),
    "x-queue-leader-locator": (_string, QUEUE_TYPES),
    "x-initial-cluster-size": (_positive, (STREAM,)),
    "x-quorum-initial-group-size": (_positive, (QUORUM,)),
    "x-member-placement-tag": (_string, (QUORUM,)),
    "x-max-in-memory-length": (_non_negative, (QUORUM,)),
    "x-max-in-memory-bytes": (_non_negative, (QUORUM,)),
    # RabbitMQ features zbroker does not implement: refused, never ignored.
    "x-dead-letter-strategy": (_unsupported, (QUORUM,)),
    "x-consumer-disconnected-timeout": (_unsupported, (QUORUM,)),
    "x-delayed-retry-type": (_unsupported, (QUORUM,)),
    "x-delayed-retry-min": (_unsupported, (QUORUM,)),
    "x-delayed-retry-max": (_unsupported, (QUORUM,)),
    # RabbitMQ 3.13's stream filtering: the size of a chunk's bloom filter (16..255,
    # ``StreamQueue.check_declare``). zbroker sizes its chunk filters itself and filters
    # each message exactly, so the value changes no delivery (the README says so).
    "x-stream-filter-size-bytes": (_non_negative, (STREAM,)),
}


def precondition(detail: str) -> ChannelError:
    return ChannelError(errors.PRECONDITION_FAILED, detail)


def queue_resource(name: str, vhost: str = VHOST) -> str:
    return f"queue '{name}' in vhost '{vhost}'"


@dataclass(frozen=True)
class QueueSettings:
    """What a queue's arguments ask of it, typed; ``None`` where the argument is absent."""

    queue_type: str = CLASSIC
    message_ttl: int | None = None
    expires: int | None = None
    max_length: int | None = None
    max_length_bytes: int | None = None
    overflow: str = "drop-head"
    dead_letter_exchange: str | None = None
    dead_letter_routing_key: str | None = None
    max_priority: int | None = None
    single_active_consumer: bool = False
    delivery_limit: int | None = None
    consumer_timeout: int | None = None
    #: A stream's retention by age (ms) and its segment size.
    max_age: int | None = None
    max_segment_size_bytes: int | None = None
    filter_size_bytes: int | None = None

    @property
    def limited(self) -> bool:
        return self.max_length is not None or self.max_length_bytes is not None

    @property
    def plain(self) -> bool:
        """Nothing to apply per message on enqueue (the publish fast path)."""
        return (self.message_ttl is None and not self.limited and not self.max_priority)


_SETTING_NAMES = {
    "x-queue-type": "queue_type", "x-message-ttl": "message_ttl", "x-expires": "expires",
    "x-max-length": "max_length", "x-max-length-bytes": "max_length_bytes",
    "x-overflow": "overflow", "x-dead-letter-exchange": "dead_letter_exchange",
    "x-dead-letter-routing-key": "dead_letter_routing_key", "x-max-priority": "max_priority",
    "x-single-active-consumer": "single_active_consumer", "x-delivery-limit": "delivery_limit",
    "x-consumer-timeout": "consumer_timeout", "x-max-age": "max_age",
    "x-stream-max-segment-size-bytes": "max_segment_size_bytes",
    "x-stream-filter-size-bytes": "filter_size_bytes",
}


#: The policy keys a queue applies, by the setting each gives. How a policy's value meets
#: the queue's own x-argument is its type's (``QueueType.POLICY_PRECEDENCE``): ``min``
#: the lesser wins, ``argument`` the argument wins, ``policy`` the policy wins (RabbitMQ's
#: ``res_min`` / ``res_arg`` / ``policyHasPrecedence``).
POLICY_SETTINGS: dict[str, str] = {
    "message-ttl": "message_ttl", "expires": "expires", "max-length": "max_length",
    "max-length-bytes": "max_length_bytes", "delivery-limit": "delivery_limit", "overflow": "overflow",
    "dead-letter-exchange": "dead_letter_exchange", "dead-letter-routing-key": "dead_letter_routing_key",
    "consumer-timeout": "consumer_timeout", "max-age": "max_age",
    "stream-max-segment-size-bytes": "max_segment_size_bytes",
}
#: Policy values given in another form than the setting's: ``max-age`` is an age string.
_POLICY_VALUES: dict[str, Callable[[Any], Any]] = {"max-age": parse_age}


def queue_settings(name: str, arguments: dict, vhost: str = VHOST, policy: dict | None = None,
                   precedence: dict[str, str] | None = None) -> QueueSettings:
    """Validate a new queue's arguments (406 with RabbitMQ's text) and type them, then
    meet the effective policy definition (``policy``, already valid) key by key, by the
    queue type's ``precedence``."""
    where = queue_resource(name, vhost)
    qtype = arguments.get("x-queue-type", CLASSIC)
    if qtype not in QUEUE_TYPES:
        raise precondition(f"invalid arg 'x-queue-type' for {where}: \"unsupported queue type '{qtype}'\"")
    values: dict[str, Any] = {}
    for key, value in arguments.items():
        rule = QUEUE_ARGUMENTS.get(key)
        if rule is None:
            continue  # unknown to RabbitMQ too: kept and ignored, as there
        check, types = rule
        if qtype not in types and check is not _unsupported:
            if check is _exchange_name and not isinstance(value, str):  # (rabbit_channel's check comes first)
                raise precondition(f"invalid type '{amqp_type(value)}' for arg '{key}' in {where}")
            raise precondition(f"invalid arg '{key}' for {where} of queue type {TYPE_MODULES[qtype]}")
        try:
            typed = check(value)
        except _Invalid as exc:
            raise precondition(f"invalid arg '{key}' for {where}: {exc}") from None
        except _Unsupported:
            raise precondition(f"invalid arg '{key}' for {where}: not supported by zbroker") from None
        except _BadType as exc:
            raise precondition(f"invalid type '{exc}' for arg '{key}' in {where}") from None
        if key in _SETTING_NAMES:
            values[_SETTING_NAMES[key]] = typed
    if "dead_letter_routing_key" in values and "dead_letter_exchange" not in values:
        raise precondition(f"invalid arg 'x-dead-letter-routing-key' for {where}: "
                           "routing_key_but_no_dlx_defined")
    if qtype == QUORUM and values.get("overflow") == "reject-publish-dlx":
        raise precondition(f"invalid arg 'x-overflow' for {where}: reject-publish-dlx is not "
                           "supported by quorum queues")
    if values.get("max_priority") == 0:
        values.pop("max_priority")  # RabbitMQ accepts 0: a queue with one priority
    if values.get("delivery_limit") is not None and values["delivery_limit"] < 0:
        values.pop("delivery_limit")  # RabbitMQ: a negative limit means none
    if policy and precedence:
        _meet_policy(values, policy, precedence)
    return QueueSettings(**values)


def _meet_policy(values: dict[str, Any], policy: dict, precedence: dict[str, str]) -> None:
    """The policy's value where the queue has no argument; where it has one, by
    ``precedence``. Keys the type does not read (layout, placement) change nothing."""
    for key, value in policy.items():
        setting, rule = POLICY_SETTINGS.get(key), precedence.get(key)
        if setting is None or rule is None:
            continue
        if setting == "overflow" and value == "reject-publish-dlx" and values.get("queue_type") == QUORUM:
            log.warning("invalid overflow strategy 'reject-publish-dlx' for a quorum queue: drop-head applies")
            values[setting] = "drop-head"  # (RabbitMQ's rabbit_quorum_queue falls back to its default)
            continue
        if key in _POLICY_VALUES:
            value = _POLICY_VALUES[key](value)
        own = values.get(setting)
        if own is None or rule == "policy":
            values[setting] = value
        elif rule == "min":
            values[setting] = min(value, own)


STREAM_OFFSET_NAMES = ("first", "last", "next")
#: Where a stream consumer starts: a name above, ``offset`` (a number), ``timestamp``
#: (ms since the epoch) or ``age`` (ms before now); the number, 0 for a name.
StreamOffset = tuple[str, int]


def stream_offset(value: Any) -> StreamOffset:
    """An ``x-stream-offset`` as RabbitMQ 3.10's ``parse_offset_arg`` reads it: ``first``,
    ``last``, ``next``, an integer offset, an AMQP timestamp (seconds) or an age string
    (``check_max_age``: ``1h``, ``30s``, ``7D``). Anything else is refused with RabbitMQ's
    reason (3.10 takes other field types too, and its reader then crashes)."""
    if isinstance(value, bytes) and value.decode("latin-1") in STREAM_OFFSET_NAMES:  # (any string type)
        return value.decode(), 0
    if isinstance(value, str):
        if value in STREAM_OFFSET_NAMES:
            return value, 0
        age = parse_age(value)
        if age is not None:
            return "age", age
        shown = '<<"' + value.replace("\\", "\\\\").replace('"', '\\"') + '">>'
    elif isinstance(value, datetime):
        utc = value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)
        return "timestamp", int(utc.timestamp()) * 1000
    elif isinstance(value, int) and not isinstance(value, bool):
        return "offset", value
    else:
        shown = ("true" if value else "false") if isinstance(value, bool) else repr(value)
    raise _Invalid(f"{{invalid_stream_offset_arg,{{{amqp_type(value)},{shown}}}}}")


def _any(value: Any) -> Any:
    return value


#: The longest tracked consumer name, in UTF-8 bytes (RabbitMQ's stream protocol allows a
#: 255-byte offset-tracking reference).
MAX_CONSUMER_NAME_BYTES = 255


def _text(value: Any) -> str:
    """A string argument, given as a string or as the UTF-8 bytes of one (a byte array)."""
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            raise _Invalid("{unacceptable_type,longstr}") from None
    if not isinstance(value, str):
        raise _Invalid(f"{{unacceptable_type,{amqp_type(value)}}}")
    return value


def consumer_name(value: Any) -> str:
    """``x-zbroker-consumer-name``: a non-empty string of at most 255 UTF-8 bytes."""
    value = _text(value)
    if not value or len(value.encode()) > MAX_CONSUMER_NAME_BYTES:
        raise _Invalid(f"{{invalid_length,{len(value.encode())}}}")
    return value


def stream_filter(value: Any) -> frozenset[str]:
    """``x-stream-filter``: one filter value or an array of them (RabbitMQ 3.13). RabbitMQ
    drops what is not a string; zbroker refuses it, so no consumer believes it filters
    on a value it does not."""
    if not isinstance(value, list):
        return frozenset((_text(value),))
    return frozenset(_text(item) for item in value)


#: The consumer arguments RabbitMQ knows: name -> (validator, value when absent, the queue
#: types that take it). One another type takes is RabbitMQ's 406 "... of queue type ...".
#: ``x-credit`` (AMQP 1.0's link credit) means nothing over 0-9-1: a stream takes it, as
#: RabbitMQ's does.
CONSUMER_ARGUMENTS: dict[str, tuple[Callable[[Any], Any], Any, tuple[str, ...]]] = {
    "x-priority": (_integer, 0, _BOTH),
    "x-consumer-timeout": (_non_negative, None, QUEUE_TYPES),  # RabbitMQ 4.x's; None: the queue's or server's
    "x-cancel-on-ha-failover": (_any, None, _BOTH),  # (mirrored classic queues'; a stream refuses it)
    "x-stream-offset": (stream_offset, None, (STREAM,)),
    "x-credit": (_any, None, (STREAM,)),
    "x-stream-filter": (stream_filter, None, (STREAM,)),
    "x-stream-match-unfiltered": (_boolean, None, (STREAM,)),
    # zbroker's extension: a stream consumer's name, whose offset the broker tracks.
    "x-zbroker-consumer-name": (consumer_name, None, (STREAM,)),
}


def consumer_arguments(queue: str, queue_type: str, arguments: dict, vhost: str = VHOST) -> tuple[int, int | None]:
    """Validate ``basic_consume(arguments=...)`` for a queue of ``queue_type`` with
    RabbitMQ's texts; returns ``x-priority`` and ``x-consumer-timeout`` (a stream reads
    its ``x-stream-offset`` itself, with ``stream_offset``)."""
    where = queue_resource(queue, vhost)
    for key in arguments:
        rule = CONSUMER_ARGUMENTS.get(key)
        if rule is not None and queue_type not in rule[2]:
            raise precondition(f"invalid arg '{key}' for {where} of queue type {TYPE_MODULES[queue_type]}")
    values = []
    for key, (check, absent, _) in CONSUMER_ARGUMENTS.items():
        value = arguments.get(key)
        try:
            values.append(absent if value is None else check(value))
        except _Invalid as exc:
            raise precondition(f"invalid arg '{key}' for {where}: {exc}") from None
    priority, timeout = values[0], values[1]
    return priority, timeout


def parse_expiration(expiration: str) -> int:
    """A message's ``expiration`` property (a string of milliseconds), as RabbitMQ reads it."""
    if expiration.isdigit() and expiration.isascii():
        n = int(expiration)
        if n > MAX_EXPIRY_MS:
            raise precondition(f"invalid expiration '{expiration}': {{value_too_large,{n}}}")
        return n
    sign = 1
    digits = expiration
    if digits[:1] in ("+", "-"):
        sign, digits = (-1 if digits[0] == "-" else 1), digits[1:]
    count = len(digits) - len(digits.lstrip("0123456789"))
    if count == 0:
        raise precondition(f"invalid expiration '{expiration}': no_integer")
    rest = digits[count:]
    if rest:
        raise precondition(f"invalid expiration '{expiration}': {{leftover_string,\"{rest}\"}}")
    n = sign * int(digits)
    if n < 0:
        raise precondition(f"invalid expiration '{expiration}': {{value_negative,{n}}}")
    return n
