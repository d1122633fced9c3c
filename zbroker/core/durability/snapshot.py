"""The durable topology as plain data, and back: what survives a broker restart.

Saved: durable exchanges (not the predeclared ``amq.*`` ones), durable non-exclusive
queues with their store ids, bindings whose source and destination are both durable, as
RabbitMQ keeps them, per vhost, with its policies and runtime parameters; the users with
their password hashes, permissions and limits; the global parameters. Transient things
are never written, so after a restart they are simply gone.

A durable queue's arguments are applied again on recovery, including those an older
zbroker stored without applying them (TTL, limits, dead-lettering, priorities).

A delayed exchange's row ends with its hold's store id (``messaging/delayed.py``): its
held messages come back into the hold, as a queue's into the queue.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from zbroker.core.messaging.arguments import QueueSettings, queue_settings
from zbroker.core.messaging.exchanges import EXCHANGE_TYPES, DelayedExchange, Exchange
from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.policies import Policy, PolicyError, make
from zbroker.core.messaging.queue_types import queue_type
from zbroker.core.messaging.topology import DEFAULT_EXCHANGES, Topology, is_durable_binding
from zbroker.core.access.users import DEFAULT_VHOST
from zbroker.errors import BrokerError

if TYPE_CHECKING:
    from zbroker.core.access.vhosts import VirtualHosts
    from zbroker.core.parameters import Parameters

#: 2: a section per vhost (1: the default vhost's topology at the top level).
FORMAT = 2

log = logging.getLogger(__name__)


def snapshot(vhosts: "VirtualHosts", parameters: "Parameters | None" = None) -> dict[str, Any]:
    users = vhosts.users
    globals_ = [[name, value] for name, value in parameters.global_values.items()] if parameters else []
    return {"format": FORMAT, "next_queue_id": vhosts.counts.next_queue_id,
            "vhosts": [{"name": name, "description": vhosts.info[name].description, "tags": vhosts.info[name].tags,
                        **_topology(topology)} for name, topology in vhosts.topologies.items()],
            "users": users.snapshot(), "permissions": users.permissions.rows(), "limits": users.limits.snapshot(),
            "topic_permissions": users.permissions.topic_rows(), "global_parameters": globals_}


def _topology(topology: Topology) -> dict[str, list]:
    exchanges = [[e.name, e.kind, e.auto_delete, e.internal, e.arguments, *_store_id(e)]
                 for e in topology.exchanges.values()
                 if e.durable and e.name and e.name not in DEFAULT_EXCHANGES]
    queues = [[q.name, q.store_id, q.auto_delete, q.arguments]
              for q in topology.queues.values() if q.persists and q.store_id is not None]
    bindings = []
    for source in topology.exchanges.values():
        for (destination, key, _), arguments in source.bindings.items():
            if is_durable_binding(source, destination):
                kind = "queue" if isinstance(destination, QueueType) else "exchange"
                bindings.append([source.name, kind, destination.name, key, arguments])
    policies = topology.policies
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings,
            "policies": [_policy(p) for p in policies.user.values()],
            "operator_policies": [_policy(p) for p in policies.operator.values()],
            "parameters": [[component, name, value] for (component, name), value in topology.parameters.items()]}


def _store_id(exchange: Exchange) -> list[int]:
    """A delayed exchange's hold's store id, as its row's last item (none for other exchanges)."""
    if isinstance(exchange, DelayedExchange) and exchange.hold.journal is not None:
        return [exchange.hold.journal.queue_id]
    return []


def _policy(policy: Policy) -> list:
    return [policy.name, policy.pattern, policy.apply_to, policy.priority, policy.definition]


def restore(vhosts: "VirtualHosts", data: dict[str, Any], parameters: "Parameters | None" = None
            ) -> dict[int, QueueType]:
    """Rebuild the durable topology of every vhost from ``data``, and the global
    parameters into ``parameters``; returns the queues by store id. Format 1 (before
    vhosts) is the default vhost's alone. Components are told of the parameters
    afterwards (``Parameters.recovered``)."""
    if data.get("format") not in (1, FORMAT):
        raise ValueError(f"unknown topology format {data.get('format')!r}")
    if data.get("users"):  # (a snapshot of an older zbroker has none: guest as on a fresh broker)
        vhosts.users.restore(data["users"], data.get("permissions"))
        vhosts.users.limits.restore(data.get("limits"))
        vhosts.users.permissions.restore_topics(data.get("topic_permissions") or [])
    sections = data["vhosts"] if data["format"] == FORMAT else [{"name": DEFAULT_VHOST, **data}]
    by_id: dict[int, QueueType] = {}
    for section in sections:
        topology = vhosts.get(section["name"]) or vhosts.add(section["name"], section.get("description", ""),
                                                            section.get("tags"))
        by_id.update(_restore_topology(topology, section))
    vhosts.counts.next_queue_id = max(vhosts.counts.next_queue_id, data["next_queue_id"])
    if parameters is not None:
        parameters.global_values.update((name, value) for name, value in data.get("global_parameters", ()))
    return by_id


def _restore_topology(topology: Topology, data: dict[str, Any]) -> dict[int, QueueType]:
    for key, operator in (("policies", False), ("operator_policies", True)):
        for name, pattern, apply_to, priority, definition in data.get(key, ()):
            try:
                topology.policies.put(make(topology.vhost, name, pattern, definition, priority, apply_to, operator),
                                      operator)
            except PolicyError as exc:  # (saved by a zbroker that took it: kept out, and said)
                log.error("policy '%s' of vhost '%s' not restored: %s", name, topology.vhost, exc)
    topology.parameters.update(((component, name), value) for component, name, value in data.get("parameters", ()))
    by_id: dict[int, QueueType] = {}
    for name, kind, auto_delete, internal, arguments, *store_id in data["exchanges"]:
        exchange = EXCHANGE_TYPES[kind](name, True, auto_delete, internal, arguments)
        topology.add_exchange(exchange, *store_id)
        if isinstance(exchange, DelayedExchange) and exchange.hold.journal is not None:
            by_id[exchange.hold.journal.queue_id] = exchange.hold
    for name, store_id, auto_delete, arguments in data["queues"]:
        settings = _settings(name, arguments)
        queue = queue_type(settings.queue_type)(name, True, None, auto_delete, arguments, settings)
        topology.add_queue(queue, store_id)
        by_id[store_id] = queue
    for source, kind, destination, key, arguments in data["bindings"]:
        dest: QueueType | Exchange | None = (topology.queues.get(destination) if kind == "queue"
                                         else topology.exchanges.get(destination))
        if dest is not None and source in topology.exchanges:
            topology.bind(dest, source, key, arguments)
    if topology.policies:
        topology.apply_policies()
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
