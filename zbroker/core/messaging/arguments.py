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
from dataclasses import dataclass
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
CLASSIC, QUORUM = "classic", "quorum"
QUEUE_TYPES = (CLASSIC, QUORUM)
#: RabbitMQ's module names, as its "of queue type" texts print them.
TYPE_MODULES = {CLASSIC: "rabbit_classic_queue", QUORUM: "rabbit_quorum_queue"}
REPLY_TO = "amq.rabbitmq.reply-to"


def amqp_type(value: Any) -> str:
    """The AMQP field type RabbitMQ would see for a Python value (for error texts)."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "signedint" if -2**31 <= value < 2**31 else "long"
    return {str: "longstr", bytes: "longstr", float: "double", dict: "table", list: "array",
            type(None): "void"}.get(type(value), "longstr")



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


def _unsupported(value: Any) -> Any:
    raise _Unsupported()


class _Unsupported(Exception):
    pass


_BOTH = (CLASSIC, QUORUM)
#: name -> (validator, queue types it applies to). The validator returns the typed value.
QUEUE_ARGUMENTS: dict[str, tuple[Callable[[Any], Any], tuple[str, ...]]] = {
    "x-queue-type": (_choice(QUEUE_TYPES, "invalid_queue_type"), _BOTH),
    "x-message-ttl": (_expiry, _BOTH),
    "x-expires": (_expires, _BOTH),
    "x-max-length": (_non_negative, _BOTH),
    "x-max-length-bytes": (_non_negative, _BOTH),
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
    "x-queue-leader-locator": (_string, _BOTH),
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
    "x-max-age": (_unsupported, ()),
    "x-stream-max-segment-size-bytes": (_unsupported, ()),
    "x-stream-filter-size-bytes": (_unsupported, ()),
    "x-initial-cluster-size": (_unsupported, ()),
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
    "x-consumer-timeout": "consumer_timeout",
}


#: The policy keys a queue applies, by the setting each gives. How a policy's value meets
#: the queue's own x-argument is its type's (``QueueType.POLICY_PRECEDENCE``): ``min``
#: the lesser wins, ``argument`` the argument wins, ``policy`` the policy wins (RabbitMQ's
#: ``res_min`` / ``res_arg`` / ``policyHasPrecedence``).
POLICY_SETTINGS: dict[str, str] = {
    "message-ttl": "message_ttl", "expires": "expires", "max-length": "max_length",
    "max-length-bytes": "max_length_bytes", "delivery-limit": "delivery_limit", "overflow": "overflow",
    "dead-letter-exchange": "dead_letter_exchange", "dead-letter-routing-key": "dead_letter_routing_key",
    "consumer-timeout": "consumer_timeout",
}


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
        own = values.get(setting)
        if own is None or rule == "policy":
            values[setting] = value
        elif rule == "min":
            values[setting] = min(value, own)


CONSUMER_STREAM_ONLY = ("x-stream-offset", "x-stream-filter", "x-stream-match-unfiltered", "x-credit")
#: The consumer arguments zbroker applies: name -> (validator, value when absent).
CONSUMER_ARGUMENTS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "x-priority": (_integer, 0),
    "x-consumer-timeout": (_non_negative, None),  # RabbitMQ 4.x's; None: the queue's or server's
}


def consumer_arguments(queue: str, queue_type: str, arguments: dict, vhost: str = VHOST) -> tuple[int, int | None]:
    """``x-priority`` and ``x-consumer-timeout`` of ``basic_consume(arguments=...)``,
    validated with RabbitMQ's texts; a stream's consumer arguments are refused here."""
    for key in arguments:
        if key in CONSUMER_STREAM_ONLY:
            raise precondition(f"invalid arg '{key}' for {queue_resource(queue, vhost)} of queue type "
                               f"{TYPE_MODULES[queue_type]}")
    values = []
    for key, (check, absent) in CONSUMER_ARGUMENTS.items():
        value = arguments.get(key)
        try:
            values.append(absent if value is None else check(value))
        except _Invalid as exc:
            raise precondition(f"invalid arg '{key}' for {queue_resource(queue, vhost)}: {exc}") from None
    priority, timeout = values
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
