"""Who may ask management what: a login per request, RabbitMQ's management tags.

Rules (RabbitMQ's management plugin):
- Every management request carries credentials (``zbroker ctl --user/--password``, the
  HTTP API's basic auth); a wrong or missing login is 401 ``Login failed``, with the
  same ``loopback_users`` rule and failed-login throttle as a client's login
  (``users.py``, ``login_throttle.py``).
- Tags decide: ``management``, ``policymaker``, ``monitoring`` or ``administrator``
  may read (overview, lists of queues, exchanges, bindings, connections, channels,
  consumers, ``whoami``; a user with neither ``monitoring`` nor ``administrator`` sees
  only the vhosts it has permissions in); the queue actions (purge, delete, get messages, publish)
  also need the user's permission on the resource, as a client's would; everything
  else (users, permissions, definitions, closing connections, reset) needs
  ``administrator``. Refusals are RabbitMQ's 401 texts (``Not management user``,
  ``Not administrator user``) or the permission's 403 text. Runtime and global
  parameters are a ``policymaker``'s (``PARAMETER_VERBS``; else 401 ``User not
  authorised to access object``).
- Declaring and deleting queues and exchanges and (un)binding (``OBJECT_VERBS``) are
  any management user's, in a vhost it has permissions in (else 401 ``User not
  authorised to access virtual host``; a vhost there is not is the verb's 404), with
  the permissions a client's method needs, checked for administrators too:
  configure to declare or delete, write on the destination and read on the source to
  bind or unbind, and what a new entity's alternate or dead-letter exchange needs
  (``object_requests.extra_checks``). A refusal is RabbitMQ's 401 ``Access refused.``
  (``rabbit_mgmt_util:direct_request``). Reading bindings between two ends needs only
  access to the vhost. The aliveness test needs what its client's methods need, and is
  refused with the permission's text (``with_channel``'s).
- The HTTP server runs in the broker process and forwards its clients' credentials with
  their address; it proves itself with ``relay_token`` (made at start, never leaves
  the process), so only it may say where a login comes from. With the token and no
  user, it asks as the metrics exporter: reads only (Prometheus scrapes without a
  login, as rabbitmq_prometheus's endpoint).
"""
from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Any

from zbroker.core.access.permissions import CONFIGURE, READ, WRITE, check
from zbroker.core.access.users import DEFAULT_VHOST, Users
from zbroker.errors import ChannelError

MANAGEMENT_TAGS = frozenset({"management", "policymaker", "monitoring", "administrator"})
#: Verbs any management user may ask.
READ_VERBS = frozenset({"overview", "list", "queue", "exchange", "connection", "channel", "queue_bindings",
                        "exchange_bindings", "alarms", "whoami"})
#: Lists only an administrator may read.
ADMIN_LISTS = frozenset({"users", "permissions", "topic_permissions", "user_limits", "operator_policies"})
#: A policymaker's: a vhost's policies, where the user has permissions (RabbitMQ's
#: ``policymaker`` tag; operator policies are an administrator's).
POLICY_VERBS = frozenset({"set_policy", "clear_policy", "policy"})
#: Runtime parameters: a policymaker's, in the vhosts it has permissions in (RabbitMQ's
#: ``is_authorized_policies``); writing the components whose own verbs are an
#: administrator's (``ADMIN_COMPONENTS``) is an administrator's. Global parameters: any
#: policymaker's (``is_authorized_global_parameters``). Lists follow their one-item verb.
PARAMETER_VERBS = frozenset({"set_parameter", "clear_parameter", "parameter"})
GLOBAL_PARAMETER_VERBS = frozenset({"set_global_parameter", "clear_global_parameter", "global_parameter"})
PARAMETER_LISTS = {"parameters": "parameter", "global_parameters": "global_parameter"}
ADMIN_COMPONENTS = frozenset({"operator_policy", "vhost-limits"})
#: The node's figures: a monitoring user's (or an administrator's).
NODE_VERBS = frozenset({"nodes", "node", "delete_shovel", "restart_shovel"})
#: Lists a monitoring user's (or an administrator's): RabbitMQ's shovel status.
MONITOR_LISTS = frozenset({"shovels"})
#: Queue actions: (the permission, resource kind, the argument naming it).
RESOURCE_VERBS = {"purge_queue": (READ, "queue", "name"), "delete_queue": (CONFIGURE, "queue", "name"),
                  "get_messages": (READ, "queue", "name"), "publish": (WRITE, "exchange", "exchange")}
#: Object verbs: the permissions each needs, as (permission, resource kind, argument
#: naming it); a kind of None is the argument ``destination_type``'s.
OBJECT_VERBS: dict[str, tuple[tuple[str, str | None, str], ...]] = {
    "declare_queue": ((CONFIGURE, "queue", "name"),),
    "declare_exchange": ((CONFIGURE, "exchange", "name"),),
    "delete_exchange": ((CONFIGURE, "exchange", "name"),),
    "bind": ((WRITE, None, "destination"), (READ, "exchange", "source")),
    "unbind": ((WRITE, None, "destination"), (READ, "exchange", "source")),
    "bindings_between": (), "binding": (),
    # A client's queue.declare, basic.publish to the default exchange and basic.get.
    "aliveness_test": ((CONFIGURE, "queue", "aliveness-test"), (WRITE, "exchange", ""),
                       (READ, "queue", "aliveness-test")),
}
#: Object verbs whose resources are named by the table itself, not by an argument; a
#: refusal is the permission's text (RabbitMQ's ``with_channel``: a channel's close).
FIXED_NAMES = frozenset({"aliveness_test"})
#: Exchanges whose deletion the verb itself refuses, before any permission (as a client's).
_SYSTEM_EXCHANGES = frozenset({"", "amq.direct", "amq.fanout", "amq.topic", "amq.headers", "amq.match"})
METRICS_PRINCIPAL = "(metrics)"
#: RabbitMQ's refusal of a parameter request (``rabbit_mgmt_util:is_authorized_policies``).
OBJECT_REFUSED = "User not authorised to access object"


class AccessDenied(Exception):
    """A refused management request: an HTTP-like status and RabbitMQ's reason."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class Principal:
    """Who is asking: a user and its tags."""
    name: str
    tags: list[str] = field(default_factory=list)


def login(users: Users, credentials: Any, transport_host: str | None, relay_token: bytes, now: float) -> Principal:
    """The principal ``credentials`` (a map) prove, or 401. ``transport_host``: the
    address the request came from (None: a local transport)."""
    if not isinstance(credentials, dict):
        raise AccessDenied(401, "Login failed")
    relayed = isinstance(credentials.get("relay"), bytes) and hmac.compare_digest(credentials["relay"], relay_token)
    host = credentials.get("peer") if relayed else transport_host
    user, password = credentials.get("user"), credentials.get("password")
    if relayed and user is None:
        return Principal(METRICS_PRINCIPAL, ["monitoring"])
    if not isinstance(user, str) or not isinstance(password, str) or not (host is None or isinstance(host, str)):
        raise AccessDenied(401, "Login failed")
    if users.login(user, password, host, now, "management") is not None:
        raise AccessDenied(401, "Login failed")
    return Principal(user, list(users.users[user].tags))


def sees_all(principal: Principal) -> bool:
    """Whether lists show every vhost to ``principal`` (else only those it has
    permissions in): RabbitMQ's ``monitoring`` and ``administrator``."""
    return bool({"monitoring", "administrator"} & set(principal.tags))


def authorize(users: Users, principal: Principal, verb: str, args: dict) -> None:
    """Raise unless ``principal`` may ask ``verb`` (rule 2)."""
    tags = set(principal.tags)
    if principal.name == METRICS_PRINCIPAL:
        if verb not in READ_VERBS or args.get("kind") in ADMIN_LISTS or args.get("kind") in PARAMETER_LISTS:
            raise AccessDenied(401, "Not administrator user")
        return
    if not tags & MANAGEMENT_TAGS:
        raise AccessDenied(401, "Not management user")
    if verb in OBJECT_VERBS:
        _may_act_on_objects(users, principal, verb, args)
        return
    if "administrator" in tags:
        return
    if verb in NODE_VERBS:  # (RabbitMQ's is_authorized_monitor)
        if "monitoring" not in tags:
            raise AccessDenied(401, "Not monitor user")
        return
    if verb in PARAMETER_VERBS | GLOBAL_PARAMETER_VERBS or verb == "list" and args.get("kind") in PARAMETER_LISTS:
        _may_use_parameters(users, principal, tags, verb, args)
        return
    if verb in POLICY_VERBS:  # (listing them is any management user's, as RabbitMQ 3.10's)
        _may_make_policies(users, principal, tags, args)
        return
    if verb in READ_VERBS and args.get("kind") in MONITOR_LISTS:
        if "monitoring" not in tags:
            raise AccessDenied(401, "Not monitor user")
        return
    if verb in READ_VERBS and args.get("kind") not in ADMIN_LISTS:
        return
    resource = RESOURCE_VERBS.get(verb)
    if resource is None:
        raise AccessDenied(401, "Not administrator user")
    access, kind, key = resource
    name, vhost = args.get(key), args.get("vhost", DEFAULT_VHOST)
    if not isinstance(name, str) or not isinstance(vhost, str):
        return  # the verb itself refuses the missing argument (400)
    try:
        check(users.permissions.get(principal.name, vhost), principal.name, vhost, access, kind, name)
    except ChannelError as exc:
        raise AccessDenied(403, exc.text) from None


def _may_make_policies(users: Users, principal: Principal, tags: set[str], args: dict) -> None:
    """Policies are a policymaker's, in the vhosts it has permissions in (listing every
    vhost's lists only those: the request's own filter)."""
    if "policymaker" not in tags:
        raise AccessDenied(401, "Not policymaker user")
    vhost = args.get("vhost")
    if isinstance(vhost, str) and users.permissions.get(principal.name, vhost) is None:
        raise AccessDenied(401, f"Access refused to vhost '{vhost}'")


def _may_use_parameters(users: Users, principal: Principal, tags: set[str], verb: str, args: dict) -> None:
    """Parameters and global parameters are a policymaker's; a vhost's parameters only
    where it has permissions (listing every vhost's lists only those)."""
    if "policymaker" not in tags:
        raise AccessDenied(401, OBJECT_REFUSED)
    if verb in GLOBAL_PARAMETER_VERBS or args.get("kind") == "global_parameters":
        return
    vhost = args.get("vhost", None if verb == "list" else DEFAULT_VHOST)
    if isinstance(vhost, str) and users.permissions.get(principal.name, vhost) is None:
        raise AccessDenied(401, OBJECT_REFUSED)
    if verb in ("set_parameter", "clear_parameter") and args.get("component") in ADMIN_COMPONENTS:
        raise AccessDenied(401, "Not administrator user")


def _may_act_on_objects(users: Users, principal: Principal, verb: str, args: dict) -> None:
    """An object verb (``OBJECT_VERBS``): the vhost, then each permission ``OBJECT_VERBS`` names."""
    vhost = args.get("vhost", DEFAULT_VHOST)
    if not isinstance(vhost, str) or not users.vhost_exists(vhost):
        return  # the verb itself refuses the argument (400) or the vhost (404)
    if users.permissions.get(principal.name, vhost) is None and "administrator" not in principal.tags:
        raise AccessDenied(401, "User not authorised to access virtual host")
    if verb in FIXED_NAMES:
        for access, kind, name in OBJECT_VERBS[verb]:
            try:
                check(users.permissions.get(principal.name, vhost), principal.name, vhost, access, kind, name)
            except ChannelError as exc:
                raise AccessDenied(401, exc.text) from None
        return
    needed = []
    for access, kind, key in OBJECT_VERBS[verb]:
        name = args.get(key)
        if kind is None:
            kind = args.get("destination_type")
        if not isinstance(name, str) or kind not in ("queue", "exchange"):
            return  # the verb refuses it (400)
        if kind == "exchange" and key == "source" and name == "":
            continue  # the default exchange: refused by the verb, after the destination's check
        if verb == "delete_exchange" and name in _SYSTEM_EXCHANGES:
            continue
        needed.append((access, kind, name))
    may(users, principal, vhost, needed)


def may(users: Users, principal: Principal, vhost: str, needed: list[tuple[str, str, str]]) -> None:
    """Raise RabbitMQ's 401 ``Access refused.`` unless ``principal`` has each (permission,
    kind, name) in ``vhost``, as a client's method would need."""
    permission = users.permissions.get(principal.name, vhost)
    for access, kind, name in needed:
        try:
            check(permission, principal.name, vhost, access, kind, name)
        except ChannelError:
            raise AccessDenied(401, "Access refused.") from None
