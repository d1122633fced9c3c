"""The node as RabbitMQ's management API shows it (``/api/nodes``): zbroker is one node.

Rules of this module:
- One node, named ``Broker.node_name``, of type ``disc``, running; ``/api/nodes/{name}``
  for another name is 404.
- Memory and disk come from what the server measures (``facts``: ``resources.py``'s
  figures, with the alarms' limits); what zbroker has no equivalent for (Erlang
  processes, run queue) is left out, never made up.
- Reading it needs the ``monitoring`` or ``administrator`` tag, as RabbitMQ's
  ``is_authorized_monitor`` (``management_access.py``).
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Callable

from zbroker.core.management.request_errors import arg, not_found

if TYPE_CHECKING:
    from zbroker.core.broker import Broker


def node(broker: "Broker", facts: dict) -> dict[str, Any]:
    memory, disk = facts.get("memory") or {}, facts.get("disk") or {}
    alarms = broker.alarms.active
    view: dict[str, Any] = {
        "name": broker.node_name, "type": "disc", "running": True, "being_drained": False,
        "os_pid": str(facts.get("pid", "")), "uptime": int((broker.now - broker.stats.started_at) * 1000),
        "processors": os.cpu_count() or 1, "partitions": [], "cluster_links": [],
        "mem_used": memory.get("resident"), "mem_alarm": "memory" in alarms,
        "disk_free_alarm": "disk" in alarms,
    }
    if "limit" in memory:
        view["mem_limit"] = memory["limit"]
    if disk:
        view["disk_free"], view["disk_free_limit"] = disk.get("free"), disk.get("limit")
    return view


def verbs(broker: "Broker") -> dict[str, Callable[[dict, dict], Any]]:
    def one(args: dict, facts: dict) -> dict[str, Any]:
        if arg(args, "name", str) != broker.node_name:
            raise not_found()
        return node(broker, facts)

    return {"nodes": lambda args, facts: [node(broker, facts)], "node": one}
