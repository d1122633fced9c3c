"""``zbroker ctl shovel_status``: rabbitmqctl 3.10's (the shovel plugin's
``ShovelStatusCommand``).

Rules:
- One row per dynamic shovel, in rabbitmqctl's columns (``COLUMNS``: its map's keys, in
  their order): where it is running, its source and destination URIs (no passwords)
  and protocols; a shovel that is not running has them empty and, terminated, its
  ``termination_reason``. ``last_changed`` is RabbitMQ's ``YYYY-MM-DD HH:MM:SS``.
- The banner is rabbitmqctl's (``Shovel status on node ...``); ``--formatter json``
  prints the rows as JSON objects.
- Defining and removing shovels is ``set_parameter shovel`` / ``clear_parameter shovel``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

import click

if TYPE_CHECKING:
    from zbroker.management.ctl import Ctl

COLUMNS = ("destination", "destination_protocol", "last_changed", "name", "source", "source_protocol", "state",
           "termination_reason", "type", "vhost")


def row(status: dict[str, Any]) -> dict[str, Any]:
    """A ``/api/shovels`` row as rabbitmqctl shows it (``fmt_status``)."""
    running = status["state"] == "running"
    stamp = status.get("timestamp", "")
    day, _, clock = stamp.partition(" ")
    if clock.count(":") == 2 and len(clock) == 7:  # (the API's hour is not padded; rabbitmqctl's is)
        clock = "0" + clock
    return {"destination": status.get("dest_uri", "") if running else "",
            "destination_protocol": status.get("dest_protocol", "") if running else "",
            "last_changed": f"{day} {clock}".strip(), "name": status["name"],
            "source": status.get("src_uri", "") if running else "",
            "source_protocol": status.get("src_protocol", "") if running else "", "state": status["state"],
            "termination_reason": status.get("reason", "") if status["state"] == "terminated" else "",
            "type": status.get("type", "dynamic"), "vhost": status["vhost"]}


def register(group: click.Group, make_ctl: Callable[..., "Ctl"], formatting: Callable[[Callable], Callable]
             ) -> None:
    @formatting
    @click.pass_context
    def shovel_status(ctx: click.Context, formatter: str, quiet: bool, no_headers: bool) -> None:
        c = make_ctl(ctx, formatter, quiet, no_headers)
        overview = c.ask_as_rabbitmqctl("overview")
        c.info(f"Shovel status on node {overview['node']}")
        c.rows(COLUMNS, [row(s) for s in c.ask_as_rabbitmqctl("list", kind="shovels")])

    group.command("shovel_status", help="The dynamic shovels: state, source, destination, "
                                        "termination reason.")(shovel_status)
