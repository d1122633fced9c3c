"""``zbroker ctl``'s policy verbs, rabbitmqctl 3.10's: ``set_policy``, ``clear_policy``,
``list_policies`` and the same three for operator policies.

Rules:
- Arguments, options and info lines are rabbitmqctl's (``set_policy_command.ex`` and its
  siblings): ``set_policy [-p VHOST] [--priority N] [--apply-to X] NAME PATTERN
  DEFINITION``, DEFINITION a JSON object; ``-p`` is ``/`` unless given.
- ``list_policies`` has rabbitmqctl's columns (``COLUMNS``) and order (lowest priority
  first), the definition as RabbitMQ encodes it (compact JSON, keys sorted), also in
  ``--formatter json``.
- A refusal is printed as rabbitmqctl prints a failed command (``Error:``, the broker's
  reason on the next line, exit status 69); so is a DEFINITION that is not JSON, in
  RabbitMQ's words (``JSON_ERROR``).
- The broker decides who may: ``policymaker`` for policies, ``administrator`` for
  operator policies (``--user`` says who asks).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

import click

if TYPE_CHECKING:
    from zbroker.management.ctl import Ctl

#: rabbitmqctl's columns of ``list_policies`` (``rabbit_policy:p/2``).
COLUMNS = ("vhost", "name", "pattern", "apply-to", "definition", "priority")
#: RabbitMQ's answer to a DEFINITION that is not JSON (``rabbit_policy:parse_set0``).
JSON_ERROR = "JSON decoding error. Reason: badarg"

#: kind (the management requests' suffix) -> the info lines of its three verbs, and what
#: its list is called.
KINDS: dict[str, dict[str, str]] = {
    "policy": {
        "set": 'Setting policy "{name}" for pattern "{pattern}" to "{definition}" with priority '
               '"{priority}" for vhost "{vhost}" ...',
        "clear": 'Clearing policy "{name}" on vhost "{vhost}" ...',
        "list": 'Listing policies for vhost "{vhost}" ...',
        "plural": "policies",
        "about": "a policy: the queues and exchanges whose names PATTERN (a regular expression) "
                 "finds take the settings of DEFINITION",
    },
    "operator_policy": {
        "set": 'Setting operator policy override "{name}" for pattern "{pattern}" to "{definition}" '
               'with priority "{priority}" for vhost "{vhost}" ...',
        "clear": 'Clearing operator policy "{name}" on vhost "{vhost}" ...',
        "list": 'Listing operator policy overrides for vhost "{vhost}" ...',
        "plural": "operator_policies",
        "about": "an operator policy: limits (max-length, message-ttl, expires, ...) that override "
                 "a policy's where lower",
    },
}


def definition_json(definition: dict[str, Any]) -> str:
    """A definition as RabbitMQ's ``rabbit_json:encode`` writes it."""
    return json.dumps(definition, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def listed(policies: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows of ``list_policies``: lowest priority first (ties stay in the broker's
    order, by name), the definition as JSON text."""
    return [{**p, "definition": definition_json(p["definition"])}
            for p in sorted(policies, key=lambda p: p["priority"])]


def parse_definition(text: str) -> Any:
    """DEFINITION as JSON, or ValueError (NaN and Infinity too, which JSON does not have)."""
    def refuse(constant: str) -> Any:
        raise ValueError(constant)
    return json.loads(text, parse_constant=refuse)


def register(group: click.Group, make_ctl: Callable[..., "Ctl"], formatting: Callable[[Callable], Callable]
             ) -> None:
    """Add the six verbs to ``group``; ``make_ctl(ctx, formatter, quiet, no_headers)`` is
    the ``Ctl`` a verb asks through, ``formatting`` the list options' decorator."""
    for kind, words in KINDS.items():
        _set_command(group, make_ctl, kind, words)
        _clear_command(group, make_ctl, kind, words)
        _list_command(group, make_ctl, formatting, kind, words)


def _in_vhost(command: Callable) -> Callable:
    return click.option("-p", "--vhost", default="/", show_default=True, help="The virtual host.")(command)


def _set_command(group: click.Group, make_ctl: Callable[..., "Ctl"], kind: str, words: dict[str, str]) -> None:
    @click.argument("name")
    @click.argument("pattern")
    @click.argument("definition")
    @click.option("--apply-to", default="all", show_default=True,
                  help="What it applies to: queues, exchanges or all (both).")
    @click.option("--priority", type=int, default=0, show_default=True,
                  help="Of the policies whose pattern finds a name, the highest priority applies.")
    @_in_vhost
    @click.pass_context
    def command(ctx: click.Context, vhost: str, priority: int, apply_to: str, name: str, pattern: str,
                definition: str) -> None:
        c = make_ctl(ctx)
        c.info(words["set"].format(name=name, pattern=pattern, definition=definition, priority=priority,
                                   vhost=vhost))
        try:
            parsed = parse_definition(definition)
        except ValueError:
            c.fail_as_rabbitmqctl(JSON_ERROR)
        c.ask_as_rabbitmqctl(f"set_{kind}", vhost=vhost, name=name, pattern=pattern, definition=parsed,
                             priority=priority, apply_to=apply_to)

    group.command(f"set_{kind}", help=f"Set or replace NAME, {words['about']} (JSON, e.g. "
                                      "'{\"max-length\": 1000}').")(command)


def _clear_command(group: click.Group, make_ctl: Callable[..., "Ctl"], kind: str, words: dict[str, str]) -> None:
    @click.argument("name")
    @_in_vhost
    @click.pass_context
    def command(ctx: click.Context, vhost: str, name: str) -> None:
        c = make_ctl(ctx)
        c.info(words["clear"].format(name=name, vhost=vhost))
        c.ask_as_rabbitmqctl(f"clear_{kind}", vhost=vhost, name=name)

    group.command(f"clear_{kind}", help=f"Remove {kind.replace('_', ' ')} NAME; the next match "
                                        "applies in its place.")(command)


def _list_command(group: click.Group, make_ctl: Callable[..., "Ctl"], formatting: Callable[[Callable], Callable],
                  kind: str, words: dict[str, str]) -> None:
    @formatting
    @_in_vhost
    @click.pass_context
    def command(ctx: click.Context, vhost: str, formatter: str, quiet: bool, no_headers: bool) -> None:
        c = make_ctl(ctx, formatter, quiet, no_headers)
        c.info(words["list"].format(vhost=vhost))
        c.rows(COLUMNS, listed(c.ask_as_rabbitmqctl("list", kind=words["plural"], vhost=vhost)))

    group.command(f"list_{words['plural']}",
                  help=f"List the vhost's {words['plural'].replace('_', ' ')}: {', '.join(COLUMNS)}.")(command)
