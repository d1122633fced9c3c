"""Resource alarms: while the broker is low on memory or disk, publishers are held.

Rules (RabbitMQ's, from its "alarms" and "blocked connection notifications" pages):
- The server watches the resources (``zbroker/resources.py``); the core only hears
  ``Broker.set_alarm(resource, active, now)``. Resources are ``memory`` and ``disk``.
- While any alarm is on, a connection that publishes is *blocked*: it gets
  ``CONNECTION_BLOCKED(reason)`` once, with RabbitMQ's reason text ("low on memory",
  "low on disk", "low on memory & disk"), and its wire takes no more of its publishes
  (the zbroker wire stops returning publish credit; an AMQP wire stops reading).
  "Publishes" means it has published before the alarm, or does so during it.
- A connection that only consumes, acknowledges or manages is never blocked: draining
  the queues is what frees memory, so consumers must keep going.
- A publish from a blocked connection that still arrives is accepted: it was already in
  flight, and the wire's credit bounds how much can be.
- When the last alarm clears, every blocked connection gets ``CONNECTION_UNBLOCKED``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

from zbroker.methods import ConnectionBlocked, ConnectionUnblocked  # type: ignore[attr-defined]

if TYPE_CHECKING:
    from zbroker.core.messaging.session import Connection

RESOURCES = ("memory", "disk")


def reason_text(resources: Iterable[str]) -> str:
    """RabbitMQ's ``connection.blocked`` reason for the resources in alarm."""
    named = set(resources)
    return "low on " + " & ".join(r for r in RESOURCES if r in named)


class Alarms:
    def __init__(self) -> None:
        self.active: set[str] = set()
        self.blocked: set["Connection"] = set()

    def set(self, resource: str, active: bool, connections: Iterable["Connection"]) -> None:
        """Raise or clear one alarm (setting it as it is changes nothing)."""
        if resource not in RESOURCES:
            raise ValueError(f"unknown resource {resource!r}; expected one of {RESOURCES}")
        if active == (resource in self.active):
            return
        if active:
            self.active.add(resource)
            for conn in connections:
                if conn.has_published:
                    self.block(conn)
        else:
            self.active.discard(resource)
            if not self.active:
                self._unblock_all()

    def block(self, conn: "Connection") -> None:
        """Hold ``conn``'s publishing (it publishes during an alarm)."""
        if conn.publish_blocked:
            return
        conn.publish_blocked = True
        self.blocked.add(conn)
        conn.send(ConnectionBlocked(reason_text(self.active)))

    def forget(self, conn: "Connection") -> None:
        self.blocked.discard(conn)

    def _unblock_all(self) -> None:
        for conn in self.blocked:
            conn.publish_blocked = False
            conn.send(ConnectionUnblocked())
        self.blocked.clear()
