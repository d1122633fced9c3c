"""``zbroker ctl``'s runtime parameter verbs, rabbitmqctl 3.10's: ``set_parameter``,
``clear_parameter``, ``list_parameters``, ``set_global_parameter``,
``clear_global_parameter`` and ``list_global_parameters``.

Rules:
- Arguments, options and info lines are rabbitmqctl's: ``set_parameter [-p VHOST]
  COMPONENT NAME VALUE`` and ``set_global_parameter NAME VALUE``, VALUE any JSON;
  ``-p`` is ``/`` unless given.
- Lists have rabbitmqctl's columns (``component name value``, ``name value``), each
  value as compact JSON (also in ``--formatter json``, where it is a string), by vhost,
  then name; an empty list is an empty line, as rabbitmqctl's.
- A refusal is printed as rabbitmqctl prints a failed command (``Error:``, the broker's
  reason on the next line, exit status 69), so is a VALUE that is not JSON
  (``ctl_policies.JSON_ERROR``); a vhost that does not exist is rabbitmqctl's line,
  ``Virtual host 'x' does not exist``, and exit status 65.
- The broker decides who may (``--user`` says who asks): a ``policymaker`` in the vhost;
  the ``operator_policy`` and ``vhost-limits`` components an ``administrator``.
"""
from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any, Callable

import click

from zbroker.management.ctl_policies import JSON_ERROR, definition_json, parse_definition

if TYPE_CHECKING:
    from zbroker.management.ctl import Ctl

#: rabbitmqctl's exit status for a vhost that does not exist (EX_DATAERR).
EX_DATAERR = 65


def register(group: click.Group, make_ctl: Callable[..., "Ctl"], formatting: Callable[[Callable], Callable]
             ) -> None:
    """Add the six verbs to ``group`` (as ``ctl_policies.register``)."""
    in_vhost = click.option("-p", "--vhost", default="/", show_default=True, help="The virtual host.")

    @click.argument("component")
    @click.argument("name")
    @click.argument("value")
    @in_vhost
    @click.pass_context
    def set_parameter(ctx: click.Context, vhost: str, component: str, name: str, value: str) -> None:
        c = make_ctl(ctx)
        c.info(f'Setting runtime parameter "{name}" for component "{component}" to "{value}" in vhost '
               f'"{vhost}" ...')
        parsed = _json(c, value)
        _vhost_exists(c, vhost)
        c.ask_as_rabbitmqctl("set_parameter", vhost=vhost, component=component, name=name, value=parsed)

    @click.argument("component")
    @click.argument("name")
    @in_vhost
    @click.pass_context
    def clear_parameter(ctx: click.Context, vhost: str, component: str, name: str) -> None:
        c = make_ctl(ctx)
        c.info(f'Clearing runtime parameter "{name}" for component "{component}" on vhost "{vhost}" ...')
        c.ask_as_rabbitmqctl("clear_parameter", vhost=vhost, component=component, name=name)

    @formatting
    @in_vhost
    @click.pass_context
    def list_parameters(ctx: click.Context, vhost: str, formatter: str, quiet: bool, no_headers: bool) -> None:
        c = make_ctl(ctx, formatter, quiet, no_headers)
        c.info(f'Listing runtime parameters for vhost "{vhost}" ...')
        _vhost_exists(c, vhost)
        _rows(c, ("component", "name", "value"), c.ask_as_rabbitmqctl("list", kind="parameters", vhost=vhost))

    @click.argument("name")
    @click.argument("value")
    @click.pass_context
    def set_global_parameter(ctx: click.Context, name: str, value: str) -> None:
        c = make_ctl(ctx)
        c.info(f'Setting global runtime parameter "{name}" to "{value}" ...')
        c.ask_as_rabbitmqctl("set_global_parameter", name=name, value=_json(c, value))

    @click.argument("name")
    @click.pass_context
    def clear_global_parameter(ctx: click.Context, name: str) -> None:
        c = make_ctl(ctx)
        c.info(f'Clearing global runtime parameter "{name}" ...')
        c.ask_as_rabbitmqctl("clear_global_parameter", name=name)

    @formatting
    @click.pass_context
    def list_global_parameters(ctx: click.Context, formatter: str, quiet: bool, no_headers: bool) -> None:
        c = make_ctl(ctx, formatter, quiet, no_headers)
        c.info("Listing global runtime parameters ...")
        _rows(c, ("name", "value"), c.ask_as_rabbitmqctl("list", kind="global_parameters"))

    helps = {
        set_parameter: "Set parameter NAME of COMPONENT (shovel, operator_policy, vhost-limits) in the vhost "
                       "to VALUE (JSON).",
        clear_parameter: "Remove parameter NAME of COMPONENT in the vhost.",
        list_parameters: "List the vhost's runtime parameters: component, name, value.",
        set_global_parameter: "Set the global parameter NAME to VALUE (JSON); cluster_name names the cluster.",
        clear_global_parameter: "Remove the global parameter NAME.",
        list_global_parameters: "List the global parameters: name, value.",
    }
    for command, text in helps.items():
        group.command(command.__name__, help=text)(command)


def _json(c: "Ctl", text: str) -> Any:
    try:
        return parse_definition(text)
    except ValueError:
        c.fail_as_rabbitmqctl(JSON_ERROR)


def _vhost_exists(c: "Ctl", vhost: str) -> None:
    if not any(v["name"] == vhost for v in c.ask_as_rabbitmqctl("list", kind="vhosts")):
        click.echo(f"Virtual host '{vhost}' does not exist", err=True)
        sys.exit(EX_DATAERR)


def _rows(c: "Ctl", columns: tuple[str, ...], items: list[dict]) -> None:
    """The list as rabbitmqctl's: each value as JSON text; nothing is an empty line."""
    if not items and c.formatter != "json":
        click.echo("")
        return
    c.rows(columns, [{**item, "value": definition_json(item["value"])} for item in items])
