"""``zbroker ctl shovel_status``: rabbitmqctl 3.10's (the shovel plugin's
``ShovelStatusCommand``).

Rules:
- One row per dynamic shovel, each a map of rabbitmqctl's keys (``row``: its
  ``fmt_status``): ``name``, ``vhost``, ``type``, ``state``, ``last_changed``
  (``YYYY-MM-DD HH:MM:SS``), ``source``, ``destination`` and ``termination_reason``
  always; a running shovel adds ``source_protocol``, ``destination_protocol`` and its
  source and destination (``source_queue`` or ``source_exchange`` and
  ``source_exchange_key``; ``destination_queue``, ``destination_exchange``,
  ``destination_exchange_key`` as defined). A terminated one's reason is RabbitMQ's, as
  its ``~p`` prints it (``"needed a restart"``).
- The table is rabbitmqctl's: the header is the first row's keys, in order; every row
  shows its own keys' values, in their order (so rows of other shapes do not line up
  under the header, as in rabbitmqctl). ``--formatter json`` prints the rows as objects.
  The banner is rabbitmqctl's (``Shovel status on node ...``).
- zbroker's extensions of ``/api/shovels`` (the worker's counters, its own ``error``
  text) are not shown here.
- Defining and removing shovels is ``set_parameter shovel`` / ``clear_parameter shovel``.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

import click

if TYPE_CHECKING:
    from zbroker.management.ctl import Ctl

#: ``/api/shovels`` keys of a running shovel's source and destination -> rabbitmqctl's.
DETAILS = {"src_queue": "source_queue", "src_exchange": "source_exchange",
           "src_exchange_key": "source_exchange_key", "dest_queue": "destination_queue",
           "dest_exchange": "destination_exchange", "dest_exchange_key": "destination_exchange_key"}


def row(status: dict[str, Any]) -> dict[str, Any]:
    """A ``/api/shovels`` row as rabbitmqctl shows it (``fmt_status``), keys sorted."""
    stamp = status.get("timestamp", "")
    day, _, clock = stamp.partition(" ")
    if clock.count(":") == 2 and len(clock) == 7:  # (the API's hour is not padded; rabbitmqctl's is)
        clock = "0" + clock
    shown: dict[str, Any] = {"type": status.get("type", "dynamic"), "last_changed": f"{day} {clock}".strip(),
                             "state": status["state"], "source": "", "destination": "", "termination_reason": "",
                             "name": status["name"], "vhost": status["vhost"]}
    if status["state"] == "running":
        shown.update(source=status.get("src_uri", ""), destination=status.get("dest_uri", ""),
                     source_protocol=status.get("src_protocol", ""),
                     destination_protocol=status.get("dest_protocol", ""))
        shown.update({ctl_key: status[key] for key, ctl_key in DETAILS.items() if key in status})
    elif status["state"] == "terminated":
        shown["termination_reason"] = status.get("reason", "")
    return dict(sorted(shown.items()))


def show(c: "Ctl", rows: list[dict[str, Any]]) -> None:
    """rabbitmqctl's stream of maps: the header from the first, each row its own values."""
    if c.formatter == "json":
        click.echo(json.dumps(rows))
        return
    if c.headers and rows:
        click.echo("\t".join(rows[0]))
    for shown in rows:
        click.echo("\t".join(str(value) for value in shown.values()))  # (every value is a string)


def register(group: click.Group, make_ctl: Callable[..., "Ctl"], formatting: Callable[[Callable], Callable]
             ) -> None:
    @formatting
    @click.pass_context
    def shovel_status(ctx: click.Context, formatter: str, quiet: bool, no_headers: bool) -> None:
        c = make_ctl(ctx, formatter, quiet, no_headers)
        overview = c.ask_as_rabbitmqctl("overview")
        c.info(f"Shovel status on node {overview['node']}")
        show(c, [row(s) for s in c.ask_as_rabbitmqctl("list", kind="shovels")])

    group.command("shovel_status", help="The dynamic shovels: state, source, destination, "
                                        "termination reason.")(shovel_status)
