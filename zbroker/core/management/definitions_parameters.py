"""Definitions' runtime parameters and global parameters, as RabbitMQ 3.10 exports and
imports them (``rabbit_definitions``): its ``parameters`` and ``global_parameters``
arrays, and the ``limits`` of its vhost entries.

Rules of this module:
- Export lists every parameter but policies (they have their own array), operator
  policies and a vhost's limits included: ``{"value", "vhost", "component", "name"}``;
  and every global parameter, ``{"name", "value"}``. A vhost entry carries its limits
  as RabbitMQ writes them, a list of ``[name, value]`` pairs.
- Import checks every entry before anything is applied (``check``): a parameter as its
  component validates it (a component zbroker does not have, or ``policy``, is
  refused), with RabbitMQ's text and the entry it names (``Validation failed ...
  (vhost/component/name)``); a global ``cluster_name`` must be a string.
- An operator policy's ``definition`` may be a list of ``[key, value]`` pairs, as
  ``rabbitmqctl export_definitions`` writes one made by ``set_operator_policy``; it is
  read as the object it stands for. (RabbitMQ 3.10 refuses its own file there.)
- A vhost entry's ``limits`` are what its ``vhost-limits`` parameter says (RabbitMQ
  reads the parameter and not them); limits there that the file's parameters do not say
  are refused, never dropped.
- ``operator_policies`` is not a key of RabbitMQ's definitions: a file with one is
  refused (RabbitMQ would pass over it).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zbroker.core.management.parameter_components import LIMITS, OPERATOR_POLICY, POLICY, VHOST_LIMITS_COMPONENT
from zbroker.core.management.parameter_requests import parameter_view
from zbroker.core.management.parameter_validation import ParameterError, ParameterRefused
from zbroker.core.management.policy_requests import VALIDATION_FAILED
from zbroker.core.parameters import CLUSTER_NAME

if TYPE_CHECKING:
    from zbroker.core.broker import Broker


class ParameterDefinitionsError(ValueError):
    """A parameter entry the import refuses; the text names it."""


def export(broker: "Broker") -> dict[str, list]:
    """The ``parameters`` and ``global_parameters`` arrays."""
    parameters = broker.parameters
    rows = parameters.rows(broker.vhosts.topologies.values())
    return {"parameters": [parameter_view(row) for row in sorted(rows, key=lambda r: (r[0], r[1], r[2]))],
            "global_parameters": [{"name": name, "value": value}
                                  for name, value in sorted(parameters.global_values.items())]}


def vhost_limits(broker: "Broker", vhost: str) -> list[list[Any]]:
    """A vhost entry's ``limits``, as RabbitMQ writes them."""
    return [[name, value] for name, value in sorted(broker.users.limits.vhosts.get(vhost, {}).items())]


def check(broker: "Broker", data: dict, entries: list[dict], vhosts: list[dict]) -> tuple[list[dict], list[dict]]:
    """The file's ``parameters`` (``entries``, already checked for shape and vhost), each
    read and validated by its component, its vhosts' ``limits`` against them, and its
    global parameters. Nothing is applied."""
    if data.get("operator_policies"):
        raise ParameterDefinitionsError(
            "'operator_policies' is not a key of RabbitMQ's definitions: operator policies travel as "
            "'operator_policy' parameters (nothing was imported)")
    parameters = [{**entry, "value": _read_value(entry)} for entry in entries]
    for entry in parameters:
        where = f" ({entry.get('vhost', '/')}/{entry['component']}/{entry['name']})"
        try:
            if entry["component"] == POLICY:
                raise ParameterRefused("policies may not be set using this method")
            broker.parameters.component(entry["component"]).validate(entry.get("vhost", "/"), entry["name"],
                                                                     entry["value"], None)
        except ParameterRefused as exc:
            raise ParameterDefinitionsError(f"{exc}{where}") from None
        except ParameterError as exc:
            raise ParameterDefinitionsError(VALIDATION_FAILED.format(exc) + where) from None
    _check_vhost_limits(vhosts, parameters)
    globals_ = data.get("global_parameters") or []
    if not isinstance(globals_, list):
        raise ParameterDefinitionsError("'global_parameters' must be a list")
    for entry in globals_:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str) or "value" not in entry:
            raise ParameterDefinitionsError(f"a global parameter needs a name and a value: {entry!r}")
        if entry["name"] == CLUSTER_NAME and not isinstance(entry["value"], str):
            raise ParameterDefinitionsError(f"global parameter '{CLUSTER_NAME}' must be a string")
    return parameters, globals_


def apply(broker: "Broker", parameters: list[dict], globals_: list[dict]) -> dict[str, int]:
    """Set what ``check`` accepted; how many of each kind."""
    for entry in globals_:
        broker.parameters.set_global(entry["name"], entry["value"])
    for entry in parameters:
        broker.parameters.set(broker.vhosts.topologies[entry.get("vhost", "/")], entry["component"], entry["name"],
                              entry["value"])
    kinds = [entry["component"] for entry in parameters]
    return {"global_parameters": len(globals_), "operator_policies": kinds.count(OPERATOR_POLICY),
            "vhost_limits": kinds.count(VHOST_LIMITS_COMPONENT),
            "parameters": len(kinds) - kinds.count(OPERATOR_POLICY) - kinds.count(VHOST_LIMITS_COMPONENT)}


def _read_value(entry: dict) -> Any:
    """An entry's value; an operator policy's definition given as pairs is read as its object."""
    value = entry.get("value")
    if entry["component"] == OPERATOR_POLICY and isinstance(value, dict) and _pairs(value.get("definition")):
        return {**value, "definition": dict(value["definition"])}
    return value


def _pairs(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(
        isinstance(pair, list) and len(pair) == 2 and isinstance(pair[0], str) for pair in value)


def _check_vhost_limits(vhosts: list[dict], parameters: list[dict]) -> None:
    said = {e.get("vhost", "/"): e["value"] for e in parameters
            if e["component"] == VHOST_LIMITS_COMPONENT and e["name"] == LIMITS}
    for vhost in vhosts:
        limits = vhost.get("limits") or {}
        if _pairs(limits):
            limits = dict(limits)
        if limits and limits != said.get(vhost["name"]):
            raise ParameterDefinitionsError(
                f"vhost '{vhost['name']}': its limits {limits!r} are not its 'vhost-limits' parameter's; zbroker "
                "reads a vhost's limits from the parameter, as RabbitMQ does (nothing was imported)")
