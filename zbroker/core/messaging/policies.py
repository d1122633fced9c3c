"""Policies and operator policies: a queue's or an exchange's settings given from outside
the application, as RabbitMQ's ``rabbit_policy`` and ``rabbit_policies`` give them (3.10's
rules, with 3.13+'s ``apply-to`` values and 4.x's refusal of the mirroring keys; the
README says which version each choice follows).

Rules of this module:
1. A policy is a vhost, a name, a pattern (a regular expression searched for anywhere in
   the entity's name), an ``apply-to`` (``all``, ``queues``, ``classic_queues``,
   ``quorum_queues``, ``streams``, ``exchanges``), a priority (a number) and a
   definition (a map of policy keys). Validation has RabbitMQ's texts (``PolicyError``):
   a bad value is reported before unknown keys, which are listed in key order.
2. At most one policy applies to an entity: of those whose pattern matches, whose
   ``apply-to`` covers it and whose keys its queue type all takes (RabbitMQ's
   ``is_applicable``: a policy with ``delivery-limit`` never applies to a classic
   queue), the highest priority; equal priorities: the first by name (RabbitMQ leaves
   that order unspecified). Definitions are never merged between policies.
3. Operator policies are chosen the same way among operator policies and accept only
   the limit keys (``OPERATOR_KEYS``). Where both set a key, the lesser value wins; the
   effective definition is the user policy's with the operator policy's keys merged in.
4. A queue's own x-arguments meet the effective definition key by key in
   ``arguments.queue_settings`` (``POLICY_WINS``: which side wins, or the lesser).
5. Nothing here is looked at per message: the effective settings are computed when an
   entity is declared and again when a policy of its vhost changes.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable

from zbroker.core.messaging.arguments import CLASSIC, MAX_STREAM_SEGMENT_BYTES, OVERFLOW_MODES, QUORUM, parse_age

APPLY_TO = ("all", "queues", "classic_queues", "quorum_queues", "streams", "exchanges")
#: RabbitMQ 4.x's text for a bad ``apply-to`` (its double space included).
APPLY_TO_TEXT = ("apply-to {} unrecognised; should be one of: 'queues', 'classic_queues',  'quorum_queues', "
                 "'streams', 'exchanges', or 'all'")
#: Keys RabbitMQ knows that zbroker refuses rather than ignore: the at-least-once
#: dead-letter strategy.
NOT_SUPPORTED = frozenset({"dead-letter-strategy"})
#: The keys an operator policy may set, and how it meets a user policy's value (rule 3).
OPERATOR_KEYS = frozenset({"expires", "message-ttl", "max-length", "max-length-bytes",
                           "max-in-memory-length", "max-in-memory-bytes", "delivery-limit"})


class PolicyError(ValueError):
    """A policy RabbitMQ would refuse; the text is RabbitMQ's (``Validation failed`` and
    its reason, as ``rabbitmqctl set_policy`` and the HTTP API say it)."""


def erlang(value: Any) -> str:
    """``value`` as Erlang's ``~p`` prints the term RabbitMQ decoded from JSON: a string
    is a binary ``<<"...">>``, a list ``[...]``, a pair ``{K,V}``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '<<"' + value.replace("\\", "\\\\").replace('"', '\\"') + '">>'
    if isinstance(value, (list, tuple)):
        inner = ",".join(erlang(v) for v in value)
        return "{" + inner + "}" if isinstance(value, tuple) else "[" + inner + "]"
    if isinstance(value, dict):
        return "[" + ",".join(erlang((k, v)) for k, v in value.items()) + "]"
    if value is None:
        return "null"
    return repr(value)


def _check(test: Callable[[Any], bool], text: str) -> Callable[[Any], None]:
    def validate(value: Any) -> None:
        if not test(value):
            raise PolicyError(text.format(erlang(value)))
    return validate


def _integer_at_least(low: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= low


_STRING = lambda v: isinstance(v, str)  # noqa: E731
#: key -> its validator, with RabbitMQ's text for a bad value (``rabbit_policies``).
KEYS: dict[str, Callable[[Any], None]] = {
    "alternate-exchange": _check(_STRING, "{} is not a valid alternate exchange name"),
    "dead-letter-exchange": _check(_STRING, "{} is not a valid dead letter exchange name"),
    "dead-letter-routing-key": _check(_STRING, "{} is not a valid dead letter routing key"),
    "message-ttl": _check(_integer_at_least(0), "{} is not a valid message TTL"),
    "expires": _check(_integer_at_least(1), "{} is not a valid queue expiry"),
    "max-length": _check(_integer_at_least(0), "{} is not a valid maximum length"),
    "max-length-bytes": _check(_integer_at_least(0), "{} is not a valid maximum length in bytes"),
    "max-in-memory-length": _check(_integer_at_least(0), "{} is not a valid maximum memory in bytes"),
    "max-in-memory-bytes": _check(_integer_at_least(0), "{} is not a valid maximum memory in bytes"),
    "delivery-limit": _check(_integer_at_least(0), "{} is not a valid delivery limit"),
    "overflow": _check(lambda v: v in OVERFLOW_MODES, "{} is not a valid overflow value"),
    "queue-mode": _check(lambda v: v in ("default", "lazy"), "{} is not a valid queue-mode value"),
    "queue-version": _check(lambda v: v in (1, 2) and not isinstance(v, bool), "{} is not a valid queue-version value"),
    "consumer-timeout": _check(_integer_at_least(0), "{} is not a valid consumer timeout"),
    # Streams (``stream.py``); RabbitMQ 3.10 crashes on a max-age that is not a string or
    # has no digits, zbroker refuses it with the same text as any other bad one.
    "max-age": _check(lambda v: isinstance(v, str) and parse_age(v) is not None, "{} is not a valid max age"),
    "stream-max-segment-size-bytes": _check(lambda v: _integer_at_least(0)(v) and v <= MAX_STREAM_SEGMENT_BYTES,
                                            "{} is not a valid segment size"),
    # Placement: nothing to place on one node (accepted as RabbitMQ 4.0 accepts them).
    "initial-cluster-size": _check(_integer_at_least(0), "{} is not a valid cluster size"),
    "queue-master-locator": _check(lambda v: v in ("client-local", "min-masters", "random"),
                                   "{} invalid queue-master-locator value"),
    "queue-leader-locator": _check(lambda v: v in ("client-local", "balanced", "random", "least-leaders"),
                                   "{} is not a valid queue leader locator value"),
}


@dataclass(frozen=True)
class Policy:
    vhost: str
    name: str
    pattern: str
    apply_to: str
    priority: int
    definition: dict[str, Any]
    regex: re.Pattern = field(compare=False, repr=False)

    def covers(self, kind: str, name: str, unsupported: frozenset[str] = frozenset()) -> bool:
        """Rule 2's match: ``kind`` is ``exchange`` or a queue type's name, whose
        ``unsupported`` policy keys keep the whole policy off it."""
        applies = self.apply_to
        if applies != "all" and applies != _APPLY_KIND.get(kind) and not (
                applies == "queues" and kind != "exchange"):
            return False
        if unsupported and not unsupported.isdisjoint(self.definition):
            return False
        return self.regex.search(name) is not None

    def view(self) -> dict[str, Any]:
        """As RabbitMQ's HTTP API shows a policy."""
        return {"vhost": self.vhost, "name": self.name, "pattern": self.pattern, "apply-to": self.apply_to,
                "definition": dict(self.definition), "priority": self.priority}


_APPLY_KIND = {"exchange": "exchanges", CLASSIC: "classic_queues", QUORUM: "quorum_queues", "stream": "streams"}


def make(vhost: str, name: str, pattern: Any, definition: Any, priority: Any = 0, apply_to: Any = "all",
         operator: bool = False) -> Policy:
    """A validated policy, or ``PolicyError`` with RabbitMQ's text."""
    if not isinstance(pattern, str):
        raise PolicyError(f"pattern should be a binary but was {erlang(pattern)}")
    try:
        regex = re.compile(pattern)
    except re.error as exc:  # (Python's words for the fault; RabbitMQ gives PCRE's)
        raise PolicyError(f'pattern should be regular expression but is invalid: {{"{exc.msg}",{exc.pos}}}') from None
    if apply_to not in APPLY_TO:
        raise PolicyError(APPLY_TO_TEXT.format(f"'{apply_to}'"))
    if isinstance(priority, bool) or not isinstance(priority, (int, float)):
        raise PolicyError(f"priority should be a number, actually was {erlang(priority)}")
    if not isinstance(definition, dict):
        raise PolicyError(f"definition must be a dictionary: {erlang(definition)}")
    if not definition:
        raise PolicyError("no policy provided")
    validate(definition, operator)
    return Policy(vhost, name, pattern, apply_to, priority, dict(definition), regex)


def validate(definition: dict[str, Any], operator: bool = False) -> None:
    """Each value valid, then each key known (rule 1), an operator policy's keys limits
    (rule 3); a key zbroker does not implement is refused, never ignored."""
    for key in sorted(definition):
        if key in KEYS and (not operator or key in OPERATOR_KEYS):
            KEYS[key](definition[key])
    missing = sorted(k for k in definition if k in NOT_SUPPORTED)
    if missing:
        raise PolicyError(f"{', '.join(missing)}: not supported by zbroker")
    unknown = [(k, definition[k]) for k in sorted(definition)
               if k not in KEYS or (operator and k not in OPERATOR_KEYS)]
    if unknown:
        raise PolicyError(f"{erlang(unknown)} are not recognised policy settings")


class PolicySet:
    """One vhost's policies and operator policies, and the choice among them."""

    def __init__(self) -> None:
        self.user: dict[str, Policy] = {}
        self.operator: dict[str, Policy] = {}
        #: Bumped on every change: the durable snapshot is written again when it moves.
        self.changes = 0

    def put(self, policy: Policy, operator: bool = False) -> None:
        (self.operator if operator else self.user)[policy.name] = policy
        self.changes += 1

    def remove(self, name: str, operator: bool = False) -> Policy | None:
        removed = (self.operator if operator else self.user).pop(name, None)
        if removed is not None:
            self.changes += 1
        return removed

    def __bool__(self) -> bool:
        return bool(self.user or self.operator)

    def chosen(self, kind: str, name: str, unsupported: frozenset[str] = frozenset()
               ) -> tuple[Policy | None, Policy | None]:
        """The user policy and the operator policy that apply to the entity (rule 2)."""
        return _choose(self.user, kind, name, unsupported), _choose(self.operator, kind, name, unsupported)

    def effective(self, kind: str, name: str, unsupported: frozenset[str] = frozenset()) -> dict[str, Any]:
        """The merged definition that applies to the entity (rule 3)."""
        policy, operator = self.chosen(kind, name, unsupported)
        return merge(policy, operator)


def _choose(policies: dict[str, Policy], kind: str, name: str, unsupported: frozenset[str]) -> Policy | None:
    best: Policy | None = None
    for policy in sorted(policies.values(), key=lambda p: p.name):
        if policy.covers(kind, name, unsupported) and (best is None or policy.priority > best.priority):
            best = policy
    return best


def merge(policy: Policy | None, operator: Policy | None) -> dict[str, Any]:
    """A user policy's definition with an operator policy's merged in: the lesser value
    where both set a key (rule 3)."""
    merged = dict(policy.definition) if policy is not None else {}
    if operator is not None:
        for key, value in operator.definition.items():
            mine = merged.get(key)
            merged[key] = value if mine is None else min(mine, value)
    return merged
