"""The durable topology as plain data, and back: what survives a broker restart.

Saved: durable exchanges (not the predeclared ``amq.*`` ones), durable non-exclusive
queues with their store ids, bindings whose source and destination are both durable, as
RabbitMQ keeps them, and the users with their password hashes. Transient things are never written, so after a
restart they are simply gone.

A durable queue's arguments are applied again on recovery, including those an older
zbroker stored without applying them (TTL, limits, dead-lettering, priorities).
"""
from __future__ import annotations

import logging
from typing import Any

from zbroker.core.arguments import QueueSettings, queue_settings
from zbroker.core.exchanges import EXCHANGE_TYPES, Exchange
from zbroker.core.queues import Queue
from zbroker.core.topology import DEFAULT_EXCHANGES, Topology, is_durable_binding
from zbroker.errors import BrokerError

FORMAT = 1

log = logging.getLogger(__name__)


def snapshot(topology: Topology) -> dict[str, Any]:
    exchanges = [[e.name, e.kind, e.auto_delete, e.internal, e.arguments]
                 for e in topology.exchanges.values()
                 if e.durable and e.name and e.name not in DEFAULT_EXCHANGES]
    queues = [[q.name, q.journal.queue_id, q.auto_delete, q.arguments]
              for q in topology.queues.values() if q.persists and q.journal is not None]
    bindings = []
    for source in topology.exchanges.values():
        for (destination, key, _), arguments in source.bindings.items():
            if is_durable_binding(source, destination):
                kind = "queue" if isinstance(destination, Queue) else "exchange"
                bindings.append([source.name, kind, destination.name, key, arguments])
    return {"format": FORMAT, "next_queue_id": topology.next_queue_id, "exchanges": exchanges,
            "queues": queues, "bindings": bindings, "users": topology.users.snapshot(),
            "permissions": topology.users.permissions.rows(), "limits": topology.users.limits.snapshot()}


def restore(topology: Topology, data: dict[str, Any]) -> dict[int, Queue]:
    """Rebuild the durable topology from ``data``; returns the queues by store id."""
    if data.get("format") != FORMAT:
        raise ValueError(f"unknown topology format {data.get('format')!r}")
    for name, kind, auto_delete, internal, arguments in data["exchanges"]:
        topology.exchanges[name] = EXCHANGE_TYPES[kind](name, True, auto_delete, internal, arguments)
    by_id: dict[int, Queue] = {}
    for name, store_id, auto_delete, arguments in data["queues"]:
        queue = Queue(name, True, None, auto_delete, arguments, _settings(name, arguments))
        topology.add_queue(queue, store_id)
        by_id[store_id] = queue
    topology.next_queue_id = max(topology.next_queue_id, data["next_queue_id"])
    if data.get("users"):  # (a snapshot of an older zbroker has none: guest as on a fresh broker)
        topology.users.restore(data["users"], data.get("permissions"))
        topology.users.limits.restore(data.get("limits"))
    for source, kind, destination, key, arguments in data["bindings"]:
        dest: Queue | Exchange | None = (topology.queues.get(destination) if kind == "queue"
                                         else topology.exchanges.get(destination))
        if dest is not None and source in topology.exchanges:
            topology.bind(dest, source, key, arguments)
    return by_id


def _settings(name: str, arguments: dict) -> QueueSettings:
    """The recovered queue's settings. An older zbroker accepted arguments RabbitMQ
    refuses; such a queue is recovered (its messages are not lost) with the valid
    arguments applied and the refusal logged."""
    try:
        return queue_settings(name, arguments)
    except BrokerError as exc:
        log.error("durable queue '%s' has arguments this zbroker refuses (%s); recovered "
                  "without them: delete and redeclare it", name, exc.text)
        valid = {}
        for key, value in arguments.items():
            try:
                queue_settings(name, {**valid, key: value})
            except BrokerError:
                continue
            valid[key] = value
        return queue_settings(name, valid)
