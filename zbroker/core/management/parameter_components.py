"""The parameter components RabbitMQ keeps in its own core, over the stores zbroker
already has: ``operator_policy`` (``rabbit_policy``), ``vhost-limits``
(``rabbit_vhost_limit``) and ``policy``, which the parameter verbs only list.

Rules of this module:
- Each keeps its values where zbroker keeps them (``policies.py`` through
  ``Broker.set_policy``, ``access_limits.py`` through ``Users``), never a second copy:
  ``values(vhost)`` reads them back in RabbitMQ's shape, ``changed`` writes them.
- ``operator_policy`` values are ``{"pattern", "definition", "priority", "apply-to"}``,
  checked as RabbitMQ checks them (``priority``, ``pattern`` and ``definition``
  mandatory, each key with the texts of ``policies.make``); without ``apply-to`` the
  policy applies to ``all``, as ``set_operator_policy``'s does. (RabbitMQ 3.10 stores
  such a policy with no ``apply-to``, and it then applies to nothing.)
- ``vhost-limits`` has one parameter, ``limits``: ``{"max-connections": N, "max-queues":
  N}``, integers, replaced whole; an empty one leaves the vhost without limits. Another
  name is refused (RabbitMQ 3.10 stores it and fails to apply it).
- ``policy`` lists the vhost's policies as RabbitMQ's ``/api/parameters/policy`` does;
  setting or clearing one through the parameters is refused (``Parameters``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zbroker.core.access.access_limits import VHOST_LIMITS
from zbroker.core.management.parameter_validation import (ParameterError, ParameterRefused, integer, proplist,
                                                          refuse)
from zbroker.core.messaging.policies import Policy, PolicyError, make

if TYPE_CHECKING:
    from zbroker.core.broker import Broker

OPERATOR_POLICY, VHOST_LIMITS_COMPONENT, POLICY = "operator_policy", "vhost-limits", "policy"
#: The one name of a vhost's limits parameter.
LIMITS = "limits"
#: A valid value for each field of an operator policy: one field at a time is checked
#: with the others set to these, so each gets ``policies.make``'s own text.
_VALID = {"pattern": "", "definition": {"max-length": 0}, "priority": 0, "apply-to": "all"}


def policy_value(policy: Policy) -> dict[str, Any]:
    """A policy as the value of its parameter (RabbitMQ's ``rabbit_policy:set``)."""
    return {"pattern": policy.pattern, "definition": dict(policy.definition), "priority": policy.priority,
            "apply-to": policy.apply_to}


def _policy_values(broker: "Broker", vhost: str, operator: bool) -> dict[str, Any]:
    topology = broker.vhosts.get(vhost)
    if topology is None:
        return {}
    policies = topology.policies.operator if operator else topology.policies.user
    return {name: policy_value(p) for name, p in sorted(policies.items())}


class OperatorPolicies:
    """``operator_policy``: the vhost's operator policies."""

    def __init__(self, broker: "Broker") -> None:
        self.broker = broker

    def validate(self, vhost: str, name: str, value: Any, user: str | None) -> None:
        def check(key: str, given: Any) -> str | None:
            fields = {**_VALID, key: given}
            try:
                make(vhost, name, fields["pattern"], fields["definition"], fields["priority"], fields["apply-to"],
                     True)
            except PolicyError as exc:
                return str(exc)
            return None
        refuse(proplist(name, [("priority", check, True), ("pattern", check, True), ("apply-to", check, False),
                               ("definition", check, True)], value))

    def changed(self, vhost: str, name: str, value: Any | None) -> None:
        topology = self.broker.vhosts.topologies[vhost]
        if value is None:
            self.broker.clear_policy(topology, name, True)
        else:
            self.broker.set_policy(topology, name, value["pattern"], value["definition"], value["priority"],
                                   value.get("apply-to", "all"), True)

    def values(self, vhost: str) -> dict[str, Any]:
        return _policy_values(self.broker, vhost, True)


class VhostLimits:
    """``vhost-limits``: the vhost's limits (``access_limits.py``)."""

    def __init__(self, broker: "Broker") -> None:
        self.users = broker.users

    def validate(self, vhost: str, name: str, value: Any, user: str | None) -> None:
        if name != LIMITS:
            raise ParameterError(f"a vhost's limits are its parameter named '{LIMITS}', not '{name}'")
        refuse(proplist(name, [(key, integer, False) for key in VHOST_LIMITS], value))

    def changed(self, vhost: str, name: str, value: Any | None) -> None:
        self.users.clear_vhost_limits(vhost)
        if value:
            self.users.set_vhost_limits(vhost, dict(value))

    def values(self, vhost: str) -> dict[str, Any]:
        limits = self.users.limits.vhosts.get(vhost)
        return {LIMITS: dict(limits)} if limits else {}


class Policies:
    """``policy``: listed, never set or cleared through the parameters."""

    def __init__(self, broker: "Broker") -> None:
        self.broker = broker

    def validate(self, vhost: str, name: str, value: Any, user: str | None) -> None:
        raise ParameterRefused("policies may not be set using this method")

    def changed(self, vhost: str, name: str, value: Any | None) -> None:
        raise ParameterRefused("policies may not be set using this method")

    def values(self, vhost: str) -> dict[str, Any]:
        return _policy_values(self.broker, vhost, False)


def builtin(broker: "Broker") -> dict[str, Any]:
    """The components every broker has, by name."""
    return {OPERATOR_POLICY: OperatorPolicies(broker), VHOST_LIMITS_COMPONENT: VhostLimits(broker),
            POLICY: Policies(broker)}
