"""Runtime parameters: RabbitMQ's per-vhost ``{component, name, value}`` entries
(``rabbit_runtime_parameters``), and the global parameters beside them.

Rules of this module:
- A parameter belongs to a component (``shovel``, ...) that validates its value and is
  told when it is set or cleared; a component nobody registered is refused with
  RabbitMQ's text (``component federation-upstream not found``), never stored.
- Values are JSON-like terms, stored as given; a component sees each change once, after
  the store holds it, so what it starts can read the parameter back.
- Parameters live in their vhost's topology (``topology.parameters``) and go with it;
  global parameters live here. Both are durable (``snapshot.py``), so a change bumps
  ``changes`` for the snapshot to notice.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from zbroker.core.messaging.topology import Topology


class ParameterError(Exception):
    """A refused value: RabbitMQ's validation text (callers wrap it in ``Validation failed``)."""


class Component(Protocol):
    """What a parameter component does (RabbitMQ's ``rabbit_runtime_parameter`` behaviour)."""

    def validate(self, vhost: str, name: str, value: Any, user: str | None) -> None:
        """Raise ``ParameterError`` with RabbitMQ's text if ``value`` is not acceptable."""

    def changed(self, vhost: str, name: str, value: Any | None) -> None:
        """``value`` was stored (None: the parameter was cleared)."""


class Parameters:
    """The components, and the global parameters (per-vhost ones are in each topology)."""

    def __init__(self) -> None:
        self.components: dict[str, Component] = {}
        self.global_values: dict[str, Any] = {}
        self.changes = 0

    def register(self, name: str, component: Component) -> None:
        self.components[name] = component

    def component(self, name: str) -> Component:
        component = self.components.get(name)
        if component is None:
            raise ParameterError(f"component {name} not found")
        return component

    def set(self, topology: "Topology", component: str, name: str, value: Any, user: str | None = None) -> None:
        """Validate and store a parameter, then tell its component."""
        handler = self.component(component)
        handler.validate(topology.vhost, name, value, user)
        topology.parameters[(component, name)] = value
        topology.durable_changes += 1
        self.changes += 1
        handler.changed(topology.vhost, name, value)

    def clear(self, topology: "Topology", component: str, name: str) -> bool:
        """Remove a parameter; False if there was none."""
        if topology.parameters.pop((component, name), _NONE) is _NONE:
            return False
        topology.durable_changes += 1
        self.changes += 1
        handler = self.components.get(component)
        if handler is not None:
            handler.changed(topology.vhost, name, None)
        return True

    def clear_vhost(self, topology: "Topology") -> None:
        """A vhost is being deleted: its parameters go, each component told."""
        for component, name in list(topology.parameters):
            self.clear(topology, component, name)


_NONE = object()
