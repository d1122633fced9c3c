"""Virtual hosts: each its own exchanges, queues and bindings (a ``Topology``), sharing
the broker's users, store ids and node-wide counts.

Rules (RabbitMQ's):
- ``/`` exists from the start (the default vhost) and cannot be deleted here: every
  client that names no vhost lands in it.
- A name is a non-empty string of at most 255 bytes (AMQP's short string).
- Adding a vhost gives nobody permissions in it (``set_permissions`` does); its
  ``amq.*`` exchanges exist at once.
- Deleting a vhost deletes its queues (with their messages) and exchanges, the
  permissions and limits that name it; the broker closes its connections first (320).
- Vhosts are durable: they are part of the topology snapshot (``snapshot.py``); every
  change bumps ``changes``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.topology import Counts, Topology
from zbroker.core.access.users import DEFAULT_VHOST, UserError, Users

DEFAULT_DESCRIPTION = "Default virtual host"


@dataclass
class VhostInfo:
    description: str = ""
    tags: list[str] = field(default_factory=list)


class VirtualHosts:
    def __init__(self, users: Users, make: Callable[[str, Counts], Topology]) -> None:
        self.users = users
        self.counts = Counts()
        self._make = make
        self.topologies: dict[str, Topology] = {}
        self.info: dict[str, VhostInfo] = {}
        #: Bumped by adding or deleting a vhost: the snapshot is saved when it moves.
        self.changes = 0
        self._add(DEFAULT_VHOST, VhostInfo(DEFAULT_DESCRIPTION))
        users.vhost_exists = self.topologies.__contains__

    @property
    def default(self) -> Topology:
        return self.topologies[DEFAULT_VHOST]

    def get(self, name: str) -> Topology | None:
        return self.topologies.get(name)

    def add(self, name: str, description: str = "", tags: list[str] | None = None) -> Topology:
        if not isinstance(name, str) or not name or len(name.encode()) > 255:
            raise UserError("a vhost name must be a non-empty string of at most 255 bytes")
        if name in self.topologies:
            raise UserError(f"vhost '{name}' already exists")
        self.changes += 1
        return self._add(name, VhostInfo(description, list(tags or [])))

    def _add(self, name: str, info: VhostInfo) -> Topology:
        topology = self.topologies[name] = self._make(name, self.counts)
        self.info[name] = info
        return topology

    def remove(self, name: str) -> Topology:
        """Forget ``name`` (the broker has emptied it) and what names it."""
        if name == DEFAULT_VHOST:
            raise UserError(f"the default vhost '{DEFAULT_VHOST}' cannot be deleted")
        topology = self.topologies.pop(name, None)
        if topology is None:
            raise UserError(f"vhost '{name}' does not exist")
        del self.info[name]
        self.users.forget_vhost(name)
        self.changes += 1
        return topology

    def queues(self) -> Iterator[QueueType]:
        for topology in self.topologies.values():
            yield from topology.queues.values()

    @property
    def durable_changes(self) -> int:
        return self.changes + self.counts.durable_changes

    def views(self) -> list[dict]:
        """RabbitMQ's ``/api/vhosts`` entries, with their message counts (ready + unacked)."""
        return [{"name": name, "description": info.description, "tags": list(info.tags),
                 "default_queue_type": "classic", "tracing": False, **self._depth(name)}
                for name, info in sorted(self.info.items())]

    def _depth(self, name: str) -> dict[str, int]:
        queues = self.topologies[name].queues.values()
        ready = sum(q.ready for q in queues)
        unacked = sum(q.unacked for q in queues)
        return {"messages": ready + unacked, "messages_ready": ready, "messages_unacknowledged": unacked}
