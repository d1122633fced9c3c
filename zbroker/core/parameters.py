"""Runtime parameters: RabbitMQ's per-vhost ``{component, name, value}`` entries
(``rabbit_runtime_parameters``), and the global parameters beside them.

Rules of this module:
- A parameter belongs to a component (``shovel``, ...) that validates its value and is
  told when it is set or cleared; a component nobody registered is refused with
  RabbitMQ's text (``component federation-upstream not found``), never stored. The
  ``policy`` component is RabbitMQ's: its parameters are listed only when asked for by
  name, and never set or cleared here (``policies may not be set using this method``).
- Values are JSON-like terms, stored as given; a component sees each change once, after
  the store holds it, so what it starts can read the parameter back. Setting the value a
  parameter already has changes nothing and tells nobody, as in RabbitMQ.
- Parameters live in their vhost's topology (``topology.parameters``) and go with it;
  global parameters live here. Both are durable (``snapshot.py``), so a change bumps
  ``changes`` for the snapshot to notice. After a restart each component is told of its
  parameters again: at recovery if it is registered by then, else when it registers.
- A component with its own store (``OwnStore``: ``operator_policy`` and ``vhost-limits``,
  ``management/parameter_components.py``) keeps its values there and nowhere else; this
  module reads them back through its ``values``.
- Global parameters take any name and value, as RabbitMQ's do; ``cluster_name`` (a
  string) is the name the broker gives its cluster (the node's name until one is set).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from zbroker.core.management.parameter_components import POLICY, builtin
from zbroker.core.management.parameter_validation import ParameterError, ParameterRefused, binary

if TYPE_CHECKING:
    from zbroker.core.broker import Broker
    from zbroker.core.messaging.topology import Topology

__all__ = ["CLUSTER_NAME", "Component", "OwnStore", "ParameterError", "ParameterRefused", "Parameters"]

#: The global parameter that names the cluster (RabbitMQ's ``rabbit_nodes:cluster_name``).
CLUSTER_NAME = "cluster_name"


class Component(Protocol):
    """What a parameter component does (RabbitMQ's ``rabbit_runtime_parameter`` behaviour)."""

    def validate(self, vhost: str, name: str, value: Any, user: str | None) -> None:
        """Raise ``ParameterError`` with RabbitMQ's text if ``value`` is not acceptable."""

    def changed(self, vhost: str, name: str, value: Any | None) -> None:
        """``value`` was stored (None: the parameter was cleared)."""


class OwnStore(Component, Protocol):
    """A component that keeps its values itself: ``changed`` stores them."""

    def values(self, vhost: str) -> dict[str, Any]:
        """The vhost's parameters of this component, by name."""


class Parameters:
    """The components, and the global parameters (per-vhost ones are in each topology)."""

    def __init__(self, broker: "Broker | None" = None) -> None:
        self.components: dict[str, Component] = {}
        self.global_values: dict[str, Any] = {}
        self.changes = 0
        self._topologies: Callable[[], Iterable["Topology"]] = lambda: ()
        self._node_name: Callable[[], str] = lambda: ""
        if broker is not None:
            self._topologies = lambda: broker.vhosts.topologies.values()
            self._node_name = lambda: broker.node_name
            for name, component in builtin(broker).items():
                self.register(name, component)

    def register(self, name: str, component: Component) -> None:
        """Add a component; it is told of the parameters already stored for it (rule 4)."""
        self.components[name] = component
        if not _owns_store(component):
            for topology in self._topologies():
                for (owner, key), value in list(topology.parameters.items()):
                    if owner == name:
                        component.changed(topology.vhost, key, value)

    def component(self, name: str) -> Component:
        component = self.components.get(name)
        if component is None:
            raise ParameterError(f"component {name} not found")
        return component

    # -- per-vhost parameters ------------------------------------------------------

    def set(self, topology: "Topology", component: str, name: str, value: Any, user: str | None = None) -> bool:
        """Validate and store a parameter, then tell its component; True if it is new."""
        if component == POLICY:
            raise ParameterRefused("policies may not be set using this method")
        handler = self.component(component)
        handler.validate(topology.vhost, name, value, user)
        if value is None:
            raise ParameterError("value should not be null")
        old = self.get(topology, component, name)
        if old == value:
            return False
        if not _owns_store(handler):
            topology.parameters[(component, name)] = value
            topology.counts.durable_changes += 1
            self.changes += 1
        handler.changed(topology.vhost, name, value)
        return old is None

    def clear(self, topology: "Topology", component: str, name: str) -> bool:
        """Remove a parameter; False if there was none."""
        if component == POLICY:
            raise ParameterRefused("policies may not be cleared using this method")
        handler = self.components.get(component)
        if handler is not None and _owns_store(handler):
            if name not in handler.values(topology.vhost):  # type: ignore[attr-defined]
                return False
            handler.changed(topology.vhost, name, None)
            return True
        if topology.parameters.pop((component, name), _NONE) is _NONE:
            return False
        topology.counts.durable_changes += 1
        self.changes += 1
        if handler is not None:
            handler.changed(topology.vhost, name, None)
        return True

    def clear_vhost(self, topology: "Topology") -> None:
        """A vhost is being deleted: its parameters go, each component told."""
        for component, name in list(topology.parameters):
            self.clear(topology, component, name)

    def get(self, topology: "Topology", component: str, name: str) -> Any | None:
        """A parameter's value, or None."""
        handler = self.components.get(component)
        if handler is not None and _owns_store(handler):
            return handler.values(topology.vhost).get(name)  # type: ignore[attr-defined]
        return topology.parameters.get((component, name))

    def rows(self, topologies: Iterable["Topology"], component: str | None = None
             ) -> list[tuple[str, str, str, Any]]:
        """(vhost, component, name, value) of each parameter of ``topologies`` (of
        ``component`` when given; ``policy`` only then)."""
        found = []
        for topology in topologies:
            stored = [(c, n, v) for (c, n), v in topology.parameters.items()]
            for owner, handler in self.components.items():
                if _owns_store(handler) and (owner != POLICY or component == POLICY):
                    stored += [(owner, n, v) for n, v in handler.values(topology.vhost).items()]  # type: ignore
            found += [(topology.vhost, c, n, v) for c, n, v in stored if component is None or c == component]
        return found

    def recovered(self) -> None:
        """The snapshot was restored: tell each registered component of its parameters."""
        for topology in self._topologies():
            for (component, name), value in list(topology.parameters.items()):
                handler = self.components.get(component)
                if handler is not None:
                    handler.changed(topology.vhost, name, value)

    # -- global parameters ---------------------------------------------------------

    def set_global(self, name: str, value: Any) -> bool:
        """Store a global parameter; True if it is new."""
        reason = binary(name, value) if name == CLUSTER_NAME else None
        if reason is not None:
            raise ParameterError(reason)
        if value is None:
            raise ParameterError("value should not be null")
        created = name not in self.global_values
        self.global_values[name] = value
        self.changes += 1
        return created

    def clear_global(self, name: str) -> bool:
        """Remove a global parameter; False if there was none."""
        if self.global_values.pop(name, _NONE) is _NONE:
            return False
        self.changes += 1
        return True

    @property
    def cluster_name(self) -> str:
        """The cluster's name: the ``cluster_name`` global parameter, else the node's name."""
        return self.global_values.get(CLUSTER_NAME) or self._node_name()


def _owns_store(component: Component) -> bool:
    return callable(getattr(component, "values", None))


_NONE = object()
