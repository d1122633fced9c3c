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
  ``Not administrator user``) or the permission's 403 text.
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
#: Queue actions: (the permission, resource kind, the argument naming it).
RESOURCE_VERBS = {"purge_queue": (READ, "queue", "name"), "delete_queue": (CONFIGURE, "queue", "name"),
                  "get_messages": (READ, "queue", "name"), "publish": (WRITE, "exchange", "exchange")}
METRICS_PRINCIPAL = "(metrics)"


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
        if verb not in READ_VERBS or args.get("kind") in ADMIN_LISTS:
            raise AccessDenied(401, "Not administrator user")
        return
    if not tags & MANAGEMENT_TAGS:
        raise AccessDenied(401, "Not management user")
    if "administrator" in tags:
        return
    if verb in POLICY_VERBS:  # (listing them is any management user's, as RabbitMQ 3.10's)
        _may_make_policies(users, principal, tags, args)
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
