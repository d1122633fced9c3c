"""Management requests that declare and delete queues, exchanges and bindings: the HTTP
API's ``PUT /api/queues/{vhost}/{name}``, ``PUT``/``DELETE /api/exchanges/{vhost}/{name}``
and ``/api/bindings/{vhost}/e/{source}/{q|e}/{destination}[/{props}]``.

Rules of this module (RabbitMQ 3.10's ``rabbit_mgmt_wm_queue``, ``_exchange``,
``_bindings``, ``_binding``, which send the client's AMQP method through
``rabbit_channel:handle_method``):
- A declare is a client's: the same ``Topology`` calls, rules and texts
  (equivalence, reserved names, limits, policies applied at once), with no connection
  (so never exclusive). Left out, ``durable``, ``auto_delete`` and ``internal`` are
  false and an exchange's ``type`` is ``direct``, as AMQP's method defaults; booleans
  may be JSON's or the strings ``"true"``/``"false"`` (``rabbit_misc:parse_bool``).
- A refusal reads as ``rabbit_mgmt_util:direct_request`` turns the AMQP error: 404
  ``not_found`` with the explanation, 401 ``Access refused.`` for ``access_refused``
  and ``not_allowed``, else 400 with the explanation (``inequivalent arg …``).
- A declare answers whether it created the entity (HTTP: 201, else 204).
- A binding is named in URLs by its *properties key* (``properties_key``): its routing
  key quoted as ``quote_plus`` with ``~`` as ``%7E`` (``~`` alone for an empty one),
  then ``~`` and a hash of its arguments when it has any. RabbitMQ hashes with Erlang's
  ``phash2``; ours is a stable digest in the same shape (base64url of 32 bits), so a
  key is the same across restarts but not equal to RabbitMQ's for the same arguments
  (``binding_keys.py``; the views list bindings with the same keys).
- A binding asked for by a properties key that names none is 404, as RabbitMQ's.
- The aliveness test is a client's declare, publish and get in the vhost; it answers
  ``{"status": "failed", "reason": …}`` when one of them fails (HTTP: 503).
- Who may ask is ``management_access.py``'s (``OBJECT_VERBS``): configure to declare
  or delete, write on the destination and read on the source to (un)bind, and the
  extra checks a client's declare makes with an alternate or dead-letter exchange
  (``extra_checks``, made here: they need to know whether the entity exists).
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any, Callable

from zbroker import errors
from zbroker.core.access.management_access import Principal, may
from zbroker.core.access.permissions import READ, WRITE
from zbroker.core.management import views
from zbroker.core.management.binding_keys import args_hash, properties_key, unpack
from zbroker.core.management.request_errors import ManagementError, arg, not_found
from zbroker.errors import BrokerError

if TYPE_CHECKING:
    from zbroker.core.broker import Broker
    from zbroker.core.messaging.topology import Topology

#: AMQP reply codes that ``direct_request`` answers 401 ``Access refused.``.
REFUSED_CODES = (errors.ACCESS_REFUSED, errors.NOT_ALLOWED)
DESTINATION_TYPES = ("queue", "exchange")
#: RabbitMQ's aliveness test: its queue and message (``rabbit_mgmt_wm_aliveness_test``).
ALIVENESS_QUEUE, ALIVENESS_MESSAGE = "aliveness-test", b"test_message"


class ObjectError(ManagementError):
    """A refusal whose ``error`` is not the one its status implies (``not_found`` and
    ``not_authorised`` from an AMQP error, as ``direct_request``'s)."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(status, reason)
        self._error = error

    @property
    def error(self) -> str:
        return self._error


def refusal(exc: BrokerError) -> ManagementError:
    """An AMQP error as ``rabbit_mgmt_util:direct_request`` answers it."""
    explanation = exc.text.split(" - ", 1)[-1]
    if exc.code == errors.NOT_FOUND:
        return ObjectError(404, "not_found", explanation)
    if exc.code in REFUSED_CODES:
        return ObjectError(401, "not_authorised", "Access refused.")
    return ManagementError(400, explanation)


def vhost_not_found() -> ManagementError:
    """A write in a vhost there is not (``with_vhost_and_props``)."""
    return ObjectError(404, "not_found", "vhost_not_found")


def parse_bool(args: dict, key: str) -> bool:
    value = args.get(key)
    if value in (None, False, "false"):
        return False
    if value in (True, "true"):
        return True
    raise ManagementError(400, f"{{not_boolean,{json.dumps(value)}}}")


class ObjectRequests:
    def __init__(self, broker: "Broker", topology_of: Callable[[dict], "Topology"],
                 principal_of: Callable[[], Principal]) -> None:
        self.broker = broker
        self.topology_of = topology_of
        #: Who asks the request being answered.
        self.principal_of = principal_of

    def verbs(self) -> dict[str, Callable[[dict, dict], Any]]:
        return {
            "declare_queue": lambda args, _: self._acting(self.declare_queue, args),
            "declare_exchange": lambda args, _: self._acting(self.declare_exchange, args),
            "delete_exchange": lambda args, _: self._acting(self.delete_exchange, args, not_found),
            "bind": lambda args, _: self._acting(self.bind, args),
            "unbind": lambda args, _: self._acting(self.unbind, args, not_found),
            "bindings_between": lambda args, _: self.bindings_between(args),
            "binding": lambda args, _: self.binding(args),
            "aliveness_test": lambda args, _: self.aliveness_test(args),
        }

    def _acting(self, verb: Callable[[dict], Any], args: dict,
                missing_vhost: Callable[[], ManagementError] = vhost_not_found) -> Any:
        """A write: ``missing_vhost`` without the vhost (``vhost_not_found`` for a declare or
        bind, RabbitMQ's plain 404 where it first looks the object up); AMQP errors as
        ``refusal``."""
        try:
            self.topology_of(args)
        except ManagementError:
            raise missing_vhost() from None
        try:
            return verb(args)
        except BrokerError as exc:
            raise refusal(exc) from None

    # -- queues and exchanges ----------------------------------------------------------

    def declare_queue(self, args: dict) -> dict[str, bool]:
        topology = self.topology_of(args)
        name = arg(args, "name", str)
        created = name not in topology.queues
        may(self.broker.users, self.principal_of(), topology.vhost, extra_checks(topology, "declare_queue", args))
        queue = topology.declare_queue(name, False, parse_bool(args, "durable"), False,
                                       parse_bool(args, "auto_delete"), _arguments(args), None)
        self.broker.delivery.used(queue)
        return {"created": created}

    def declare_exchange(self, args: dict) -> dict[str, bool]:
        topology = self.topology_of(args)
        name = arg(args, "name", str)
        created = name not in topology.exchanges
        may(self.broker.users, self.principal_of(), topology.vhost, extra_checks(topology, "declare_exchange", args))
        topology.declare_exchange(name, arg(args, "type", str, "direct"), False, parse_bool(args, "durable"),
                                  parse_bool(args, "auto_delete"), parse_bool(args, "internal"), _arguments(args))
        return {"created": created}

    def delete_exchange(self, args: dict) -> dict[str, str]:
        topology = self.topology_of(args)
        name = arg(args, "name", str)
        if name not in topology.exchanges:
            raise not_found()
        topology.delete_exchange(name, arg(args, "if_unused", bool, False))
        return {"name": name}

    # -- bindings ----------------------------------------------------------------------

    def bind(self, args: dict) -> dict[str, str]:
        topology = self.topology_of(args)
        source, destination, to_queue = _ends(args)
        routing_key = arg(args, "routing_key", str, "")
        arguments = _arguments(args)
        topology.bind_names(destination, to_queue, source, routing_key, arguments, None)
        return {"properties_key": properties_key(routing_key, arguments)}

    def bindings_between(self, args: dict) -> list[dict[str, Any]]:
        """The bindings from ``source`` to ``destination``, as RabbitMQ sorts them."""
        topology = self.topology_of(args)
        source, destination, to_queue = _ends(args)
        kind = "queue" if to_queue else "exchange"
        found = [dict(b, properties_key=properties_key(b["routing_key"], b["arguments"]))
                 for b in views.bindings(topology)
                 if b["source"] == source and b["destination"] == destination and b["destination_type"] == kind]
        return sorted(found, key=lambda b: (b["routing_key"], b["properties_key"]))

    def binding(self, args: dict) -> dict[str, Any]:
        wanted = unpack(arg(args, "properties_key", str))
        if wanted is None:
            raise not_found()
        key, digest = wanted
        for found in self.bindings_between(args):
            if found["routing_key"] != key or bool(found["arguments"]) != (digest is not None):
                continue
            if digest is None or digest == args_hash(found["arguments"]):
                return found
        raise not_found()

    def unbind(self, args: dict) -> dict[str, str]:
        found = self.binding(args)
        _, _, to_queue = _ends(args)
        self.topology_of(args).unbind(found["destination"], to_queue, found["source"], found["routing_key"],
                                      found["arguments"], None)
        return {"properties_key": found["properties_key"]}

    # -- aliveness ----------------------------------------------------------------------

    def aliveness_test(self, args: dict) -> dict[str, str]:
        """RabbitMQ's ``/api/aliveness-test/{vhost}``: declare ``aliveness-test`` (kept,
        so a probe every few seconds declares nothing new), publish to it through the
        default exchange and get the message back."""
        topology = self.topology_of(args)
        try:
            queue = topology.declare_queue(ALIVENESS_QUEUE, False, False, False, False, {}, None)
            self.broker.delivery.used(queue)
            self.broker.publish("", ALIVENESS_QUEUE, {}, ALIVENESS_MESSAGE, topology)
        except BrokerError as exc:
            return {"status": "failed", "reason": exc.text}
        if not self.broker.get(queue, 1, "ack"):
            return {"status": "failed", "reason": "aliveness-test queue is empty"}
        return {"status": "ok"}


def extra_checks(topology: "Topology", verb: str, args: dict) -> list[tuple[str, str, str]]:
    """The checks a client's declare adds when it creates an entity naming another: (the
    permission, the resource's kind, its name), for ``management_access.may``."""
    name, arguments = args.get("name"), args.get("arguments")
    if not isinstance(name, str) or not isinstance(arguments, dict):
        return []
    if verb == "declare_queue" and name not in topology.queues:
        dlx = arguments.get("x-dead-letter-exchange")
        if isinstance(dlx, str):
            return [(READ, "queue", name), (WRITE, "exchange", dlx)]
    if verb == "declare_exchange" and name not in topology.exchanges:
        alternate = arguments.get("alternate-exchange")
        if isinstance(alternate, str):
            return [(READ, "exchange", name), (WRITE, "exchange", alternate)]
    return []


def _arguments(args: dict) -> dict:
    return dict(arg(args, "arguments", dict, {}))


def _ends(args: dict) -> tuple[str, str, bool]:
    """(source, destination, whether the destination is a queue) a binding request names."""
    kind = arg(args, "destination_type", str)
    if kind not in DESTINATION_TYPES:
        raise ManagementError(400, f"destination_type must be one of {', '.join(DESTINATION_TYPES)}")
    return arg(args, "source", str), arg(args, "destination", str), kind == "queue"
