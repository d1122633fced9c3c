"""How a runtime parameter's value is checked: RabbitMQ's ``rabbit_parameter_validation``,
its texts and its order, for every component (``parameters.py``).

Rules of this module:
- A refused value is a ``ParameterError`` whose text is RabbitMQ's reason (several
  reasons one a line); the requests wrap it in ``Validation failed`` as RabbitMQ does.
  A ``ParameterRefused`` is shown as it is (``policies may not be set using this
  method``).
- ``proplist`` checks an object of known keys as RabbitMQ's ``proplist/3``: each key's
  check in the order given, a missing mandatory key named, keys nobody checks listed as
  ``Unrecognised terms``; the reasons come newest first with the unrecognised ones ahead,
  as RabbitMQ prints them. Anything but an object or a list is ``not a list``.
- Values are Erlang terms in the texts (``policies.erlang``): ``<<"x">>`` for a string.
"""
from __future__ import annotations

from typing import Any, Callable

from zbroker.core.messaging.policies import erlang

#: A key's check: its reason for a bad value, or None.
Check = Callable[[str, Any], "str | None"]


class ParameterError(Exception):
    """A refused value: RabbitMQ's validation text (callers wrap it in ``Validation failed``)."""


class ParameterRefused(ParameterError):
    """A request RabbitMQ refuses before any validation; its text is shown as it is."""


def integer(key: str, value: Any) -> str | None:
    """``rabbit_parameter_validation:integer`` (its text says number, as RabbitMQ's does)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return None
    return f"{key} should be a number, actually was {erlang(value)}"


def binary(key: str, value: Any) -> str | None:
    """``rabbit_parameter_validation:binary``."""
    return None if isinstance(value, str) else f"{key} should be binary, actually was {erlang(value)}"


def proplist(name: str, constraints: list[tuple[str, Check, bool]], term: Any) -> list[str]:
    """Every reason ``term`` is refused (empty: accepted); ``constraints`` are (key, its
    check, whether it is mandatory), in RabbitMQ's order."""
    if isinstance(term, list):  # (a JSON array: no key of it is a key RabbitMQ looks for)
        rest: list[Any] = list(term)
        present: dict[str, Any] = {}
    elif isinstance(term, dict):
        present = dict(term)
        rest = []
    else:
        return [f"{name} not a list {erlang(term)}"]
    errors: list[str] = []
    for key, check, mandatory in constraints:
        if key in present:
            reason = check(key, present.pop(key))
            if reason is not None:
                errors.insert(0, reason)
        elif mandatory:
            errors.insert(0, f'Key "{key}" not found in {name}')
    rest += sorted(present.items())  # (RabbitMQ sees a map's keys in order)
    if rest:
        errors.insert(0, f"Unrecognised terms {erlang(rest)} in {name}")
    return errors


def refuse(errors: list[str]) -> None:
    """Raise the ``ParameterError`` that lists ``errors``, if there are any."""
    if errors:
        raise ParameterError("\n".join(errors))
