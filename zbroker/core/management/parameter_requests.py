"""Management requests for runtime parameters, global parameters and a vhost's limits
(``rabbitmqctl set_parameter`` and friends, the HTTP API's ``/api/parameters``,
``/api/global-parameters`` and ``/api/vhost-limits``).

Rules of this module:
- Answers have RabbitMQ's shapes: a parameter is ``{"value", "vhost", "component",
  "name"}``, a global one ``{"name", "value"}``; lists (``lists``) take the list options
  of every list and are sorted by vhost, then name, as RabbitMQ's.
- A refused value is a 400 whose reason is RabbitMQ's ``Validation failed`` text
  (``parameter_validation.py``); ``policies may not be set using this method`` is a 400
  as it is. Clearing what does not exist is a 404 ``Parameter does not exist``.
- Setting answers ``created`` (the HTTP API's 201 or 204).
- A vhost's limits are its ``vhost-limits`` parameter (``parameter_components.py``):
  setting one limit keeps the others, clearing one that is not set changes nothing, as
  RabbitMQ's ``update_limit`` and ``clear_limit``.
- Who may ask is ``management_access.py``'s: parameters need ``policymaker`` and the
  vhost, writing the ``operator_policy`` and ``vhost-limits`` components
  ``administrator``; global parameters ``policymaker``; a vhost's limits
  ``administrator``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from zbroker.core.management.parameter_components import LIMITS, VHOST_LIMITS_COMPONENT
from zbroker.core.management.parameter_validation import ParameterError, ParameterRefused
from zbroker.core.management.policy_requests import VALIDATION_FAILED
from zbroker.core.management.request_errors import MISSING, ManagementError, arg, not_found

if TYPE_CHECKING:
    from zbroker.core.access.management_access import Principal
    from zbroker.core.broker import Broker
    from zbroker.core.messaging.topology import Topology

#: RabbitMQ's answer to clearing a parameter that is not there.
NOT_THERE = "Parameter does not exist"
#: A list's source for ``Management._list``: (objects, render, name).
Source = tuple[Callable[[], Any], Callable[[Any], dict], Callable[[Any], str]]


def parameter_view(row: tuple[str, str, str, Any]) -> dict[str, Any]:
    vhost, component, name, value = row
    return {"value": value, "vhost": vhost, "component": component, "name": name}


class ParameterRequests:
    def __init__(self, broker: "Broker", topology_of: Callable[[dict], "Topology"],
                 principal: Callable[[], "Principal"]) -> None:
        self.parameters = broker.parameters
        self.topology_of = topology_of
        #: Who asks (a component may check what its value lets that user reach).
        self.principal = principal

    def verbs(self) -> dict[str, Callable[[dict, dict], Any]]:
        return {
            "set_parameter": lambda args, _: self.set(args), "clear_parameter": lambda args, _: self.clear(args),
            "parameter": lambda args, _: self.get(args),
            "set_global_parameter": lambda args, _: self.set_global(args),
            "clear_global_parameter": lambda args, _: self.clear_global(args),
            "global_parameter": lambda args, _: self.get_global(args),
            "set_vhost_limit": lambda args, _: self.set_limit(args),
            "clear_vhost_limit": lambda args, _: self.clear_limit(args),
        }

    def lists(self, topologies: list["Topology"], args: dict) -> dict[str, Source]:
        """The lists of ``Management._list``: ``parameters`` (of ``component`` when given)
        and ``global_parameters``."""
        component = arg(args, "component", str, None)
        return {
            "parameters": (lambda: sorted(self.parameters.rows(topologies, component), key=lambda r: (r[0], r[2])),
                           parameter_view, lambda row: row[2]),
            "global_parameters": (lambda: sorted(self.parameters.global_values.items()),
                                  lambda item: {"name": item[0], "value": item[1]}, lambda item: item[0]),
        }

    # -- per-vhost parameters ----------------------------------------------------------

    def set(self, args: dict) -> dict[str, bool]:
        topology = self.topology_of(args)
        return {"created": self._set(topology, arg(args, "component", str), arg(args, "name", str),
                                     _value(args))}

    def clear(self, args: dict) -> dict[str, str]:
        component, name = arg(args, "component", str), arg(args, "name", str)
        try:
            topology = self.topology_of(args)
        except ManagementError as exc:
            if exc.status != 404:
                raise
            raise ManagementError(404, NOT_THERE) from None  # (RabbitMQ's words for a vhost not there too)
        try:
            cleared = self.parameters.clear(topology, component, name)
        except ParameterRefused as exc:
            raise ManagementError(400, str(exc)) from None
        if not cleared:
            raise ManagementError(404, NOT_THERE)
        return {"name": name}

    def get(self, args: dict) -> dict[str, Any]:
        topology = self.topology_of(args)
        component, name = arg(args, "component", str), arg(args, "name", str)
        value = self.parameters.get(topology, component, name)
        if value is None:
            raise not_found()
        return parameter_view((topology.vhost, component, name, value))

    def _set(self, topology: "Topology", component: str, name: str, value: Any) -> bool:
        try:
            return self.parameters.set(topology, component, name, value, self.principal().name)
        except ParameterRefused as exc:
            raise ManagementError(400, str(exc)) from None
        except ParameterError as exc:
            raise ManagementError(400, VALIDATION_FAILED.format(exc)) from None

    # -- global parameters -------------------------------------------------------------

    def set_global(self, args: dict) -> dict[str, bool]:
        try:
            return {"created": self.parameters.set_global(arg(args, "name", str), _value(args))}
        except ParameterError as exc:
            raise ManagementError(400, VALIDATION_FAILED.format(exc)) from None

    def clear_global(self, args: dict) -> dict[str, str]:
        name = arg(args, "name", str)
        if not self.parameters.clear_global(name):
            raise ManagementError(404, NOT_THERE)
        return {"name": name}

    def get_global(self, args: dict) -> dict[str, Any]:
        name = arg(args, "name", str)
        if name not in self.parameters.global_values:
            raise not_found()
        return {"value": self.parameters.global_values[name], "name": name}

    # -- a vhost's limits --------------------------------------------------------------

    def set_limit(self, args: dict) -> dict[str, str]:
        topology = self.topology_of(args)
        name = arg(args, "name", str)
        limits = {**self._limits(topology), name: _value(args)}
        self._set(topology, VHOST_LIMITS_COMPONENT, LIMITS, limits)
        return {"name": name}

    def clear_limit(self, args: dict) -> dict[str, str]:
        topology = self.topology_of(args)
        name = arg(args, "name", str)
        limits = self._limits(topology)
        if limits.pop(name, None) is not None:
            self._set(topology, VHOST_LIMITS_COMPONENT, LIMITS, limits)
        return {"name": name}

    def _limits(self, topology: "Topology") -> dict[str, Any]:
        return dict(self.parameters.get(topology, VHOST_LIMITS_COMPONENT, LIMITS) or {})


def _value(args: dict) -> Any:
    value = args.get("value", MISSING)
    if value is MISSING:
        raise ManagementError(400, "'value' is required")
    return value
