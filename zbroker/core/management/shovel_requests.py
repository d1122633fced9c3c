"""Management requests for dynamic shovels' status (RabbitMQ's ``rabbitmq_shovel_management``:
``/api/shovels``, and ``rabbitmqctl shovel_status``).

Rules of this module:
- A shovel is defined and removed as a parameter (``parameter`` requests, component
  ``shovel``); these verbs stop one or restart it. The list is the ``list`` verb's
  ``shovels``, showing only shovels in vhosts the asker has permissions in (RabbitMQ
  filters by the user's vhosts, administrators included).
- ``delete_shovel`` clears the shovel's parameter, as RabbitMQ's DELETE does; a shovel
  that is not there is a 404. ``restart_shovel`` starts its worker again.
- Who may ask: a ``monitoring`` (or ``administrator``) user, RabbitMQ's
  ``is_authorized_monitor`` (``management_access.py``).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from zbroker.core.access.management_access import Principal
from zbroker.core.management.request_errors import arg, not_found
from zbroker.core.shovels import COMPONENT

if TYPE_CHECKING:
    from zbroker.core.broker import Broker


class ShovelRequests:
    def __init__(self, broker: "Broker", principal: Callable[[], Principal]) -> None:
        self.broker = broker
        self.principal = principal

    def verbs(self) -> dict[str, Callable[[dict, dict], Any]]:
        return {"delete_shovel": lambda args, _: self.delete(args),
                "restart_shovel": lambda args, _: self.restart(args)}

    def _existing(self, args: dict) -> tuple[str, str]:
        vhost, name = arg(args, "vhost", str), arg(args, "name", str)
        if (vhost, name) not in self.broker.shovels.status:
            raise not_found()
        return vhost, name

    def delete(self, args: dict) -> dict:
        vhost, name = self._existing(args)
        self.broker.parameters.clear(self.broker.vhosts.get(vhost), COMPONENT, name)
        return {}

    def restart(self, args: dict) -> dict:
        vhost, name = self._existing(args)
        self.broker.shovels.restart(vhost, name)
        return {}
