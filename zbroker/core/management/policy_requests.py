"""Management requests for policies and operator policies (``rabbitmqctl set_policy`` and
friends, the HTTP API's ``/api/policies`` and ``/api/operator-policies``).

Rules of this module:
- A policy is validated whole before anything changes; a refusal is a 400 whose reason is
  RabbitMQ's ``Validation failed`` text (``policies.PolicyError``).
- Clearing a policy that does not exist is a 404, as RabbitMQ's ``Parameter does not exist``.
- Setting or clearing a policy applies the vhost's policies again at once
  (``Broker.set_policy``), to the queues and exchanges that already exist.
- Who may ask is ``management_access.py``'s: policies need ``policymaker`` (and the
  user's permissions in the vhost), operator policies ``administrator``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from zbroker.core.management.request_errors import ManagementError, arg, not_found
from zbroker.core.messaging.policies import PolicyError

if TYPE_CHECKING:
    from zbroker.core.broker import Broker
    from zbroker.core.messaging.topology import Topology

#: RabbitMQ's words before a policy validation error (``rabbit_runtime_parameters``).
VALIDATION_FAILED = "Validation failed\n\n{}\n"


class PolicyRequests:
    def __init__(self, broker: "Broker", topology_of: Callable[[dict], "Topology"]) -> None:
        self.broker = broker
        self.topology_of = topology_of

    def verbs(self) -> dict[str, Callable[[dict, dict], Any]]:
        return {
            "set_policy": lambda args, _: self.set(args, False),
            "clear_policy": lambda args, _: self.clear(args, False),
            "policy": lambda args, _: self.get(args, False),
            "set_operator_policy": lambda args, _: self.set(args, True),
            "clear_operator_policy": lambda args, _: self.clear(args, True),
            "operator_policy": lambda args, _: self.get(args, True),
        }

    def set(self, args: dict, operator: bool) -> dict[str, str]:
        topology = self.topology_of(args)
        name = arg(args, "name", str)
        for key in ("pattern", "definition"):
            if args.get(key) is None:
                raise ManagementError(400, f"'{key}' is required")
        try:
            self.broker.set_policy(topology, name, args["pattern"], args["definition"],
                                   args.get("priority", 0), args.get("apply_to", "all"), operator)
        except PolicyError as exc:
            raise ManagementError(400, VALIDATION_FAILED.format(exc)) from None
        return {"name": name}

    def clear(self, args: dict, operator: bool) -> dict[str, str]:
        name = arg(args, "name", str)
        if not self.broker.clear_policy(self.topology_of(args), name, operator):
            raise ManagementError(404, "Parameter does not exist")
        return {"name": name}

    def get(self, args: dict, operator: bool) -> dict[str, Any]:
        policies = self.topology_of(args).policies
        found = (policies.operator if operator else policies.user).get(arg(args, "name", str))
        if found is None:
            raise not_found()
        return found.view()
