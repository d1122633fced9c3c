"""Management requests: what ``zbroker ctl`` and the HTTP API ask of the broker.

A request is a verb and a dict of arguments (plain data, from any wire); the answer is
plain data in RabbitMQ's management shapes (``views.py``) or a ``ManagementError``.
``handle`` runs on the broker thread like every command, so it sees one consistent
state and needs no lock.

Rules:
- Arguments come from outside: each is checked for type here, and a bad one is a 400
  ``ManagementError`` naming it, never an exception from deeper down.
- Reading marks statistics as watched (``stats.py`` rule 3), so rates exist while
  somebody is looking.
- Lists take RabbitMQ's query options: ``name`` (substring, or a regex with
  ``use_regex``), ``sort`` (a field, dotted for nested ones) and ``sort_reverse``,
  ``page``/``page_size`` (then the answer is RabbitMQ's page object), ``columns``
  (fields to keep, dotted for nested ones). Sorted by name and paged, only the page is
  rendered: a list of 100,000 queues does not stop the broker to show 100.
- Operator actions act as RabbitMQ's do: purging leaves unacked messages with their
  consumers; deleting a queue cancels its consumers; closing a connection sends it 320.
- Who may ask what is decided before a request gets here (``management_access.py``);
  ``handle`` is told who asks, for ``whoami``.
- Objects are found in the vhost the request names (``vhost``, default ``/``); lists
  cover every vhost unless one is named.
"""
from __future__ import annotations

import base64
import datetime
import functools
import re
from typing import TYPE_CHECKING, Any, Callable, Iterable

from zbroker import __version__
from zbroker.core.management import definitions, node_requests, object_requests, views
from zbroker.core.management.parameter_requests import ParameterRequests
from zbroker.core.management.policy_requests import PolicyRequests
from zbroker.core.management.shovel_requests import ShovelRequests
from zbroker.core.management.request_errors import MISSING as _MISSING, ManagementError, arg as _arg, not_found
from zbroker.core.access.access_limits import LimitError
from zbroker.core.access.management_access import Principal, sees_all
from zbroker.core.access.permissions import PermissionError_
from zbroker.core.access.users import DEFAULT_VHOST, UserError
from zbroker.core.messaging.exchanges import EXCHANGE_TYPES
from zbroker.core.access.passwords import SHA256
from zbroker.core.management.stats import CHANNEL_COUNTERS
from zbroker.errors import BrokerError

if TYPE_CHECKING:
    from zbroker.core.broker import Broker

#: RabbitMQ's page_size default and ceiling.
PAGE_SIZE, MAX_PAGE_SIZE = 100, 500
ACK_MODES = {"ack_requeue_true": "requeue", "reject_requeue_true": "requeue",
             "ack_requeue_false": "ack", "reject_requeue_false": "reject"}
EXCHANGE_DESCRIPTIONS = {
    "direct": "AMQP direct exchange, as per the AMQP specification",
    "fanout": "AMQP fanout exchange, as per the AMQP specification",
    "headers": "AMQP headers exchange, as per the AMQP specification",
    "topic": "AMQP topic exchange, as per the AMQP specification",
    "x-consistent-hash": "Consistent Hashing Exchange",
    "x-delayed-message": "Delayed Message Exchange.",
}


class Management:
    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        self.parameter_requests = ParameterRequests(broker, self._topology, lambda: self.principal)
        self._verbs: dict[str, Callable[[dict, dict], Any]] = {
            "overview": self._overview, "list": self._list, "queue": self._queue,
            "exchange": self._exchange, "connection": self._connection, "channel": self._channel,
            "queue_bindings": self._queue_bindings, "exchange_bindings": self._exchange_bindings,
            "purge_queue": self._purge, "delete_queue": self._delete_queue,
            "close_connection": self._close_connection, "get_messages": self._get_messages,
            "publish": self._publish, "definitions": self._definitions,
            "import_definitions": self._import_definitions, "alarms": self._alarms,
            "reset": self._reset, "add_user": self._add_user,
            "set_user_tags": self._set_user_tags,
            "put_user": self._put_user, "user_permissions": self._user_permissions,
            "user_topic_permissions": self._user_topic_permissions,
            "add_vhost": self._add_vhost, "delete_vhost": self._delete_vhost,
            "whoami": self._whoami,
            **{verb: functools.partial(self._users_verb, verb) for verb in USERS_VERBS},
            **PolicyRequests(broker, self._topology).verbs(), **node_requests.verbs(broker),
            **object_requests.ObjectRequests(broker, self._topology, lambda: self.principal).verbs(),
            **ShovelRequests(broker, lambda: self.principal).verbs(), **self.parameter_requests.verbs(),
        }
        #: Who asks the request being answered.
        self.principal = Principal("guest", ["administrator"])

    def handle(self, verb: Any, args: Any, facts: dict | None = None, principal: Principal | None = None) -> Any:
        """Answer one request; ``facts``: what only the server knows (listeners, memory);
        ``principal``: who asks (already authorised)."""
        if principal is not None:
            self.principal = principal
        handler = self._verbs.get(verb) if isinstance(verb, str) else None
        if handler is None:
            raise ManagementError(400, f"unknown management request {verb!r}")
        if not isinstance(args, dict):
            raise ManagementError(400, "request arguments must be a map")
        self.broker.stats.watched(self.broker.now)
        try:
            return handler(args, facts or {})
        except BrokerError as exc:  # a declare or publish refused, with RabbitMQ's text
            raise ManagementError(400, exc.text) from None
        except (definitions.DefinitionsError, UserError, PermissionError_, LimitError) as exc:
            raise ManagementError(400, str(exc)) from None

    # -- reading ---------------------------------------------------------------------

    def _overview(self, args: dict, facts: dict) -> dict[str, Any]:
        broker = self.broker
        stats = broker.stats
        totals, rates = stats.totals(), stats.global_rates()
        counters = list(CHANNEL_COUNTERS.values())
        message_stats = views.details(counters, (totals[c] for c in counters),
                                      (rates.get(c, 0.0) for c in counters))
        deliver_get = sum(totals[c] for c in ("deliver", "deliver_no_ack", "get", "get_no_ack"))
        message_stats.update(views.details(
            ("deliver_get",), (deliver_get,),
            (sum(rates.get(c, 0.0) for c in ("deliver", "deliver_no_ack", "get", "get_no_ack")),)))
        depth = ("messages", "messages_ready", "messages_unacknowledged")
        return {
            "management_version": __version__, "product_name": "zbroker", "product_version": __version__,
            "rates_mode": "basic", "node": broker.node_name, "cluster_name": broker.parameters.cluster_name,
            "exchange_types": [{"name": kind, "description": EXCHANGE_DESCRIPTIONS[kind], "enabled": True}
                               for kind in sorted(EXCHANGE_TYPES)],
            "message_stats": message_stats,
            "queue_totals": views.details(depth, (totals[d] for d in depth), (rates.get(d, 0.0) for d in depth)),
            "object_totals": {
                "connections": len(broker.connections), "channels": sum(1 for _ in stats.channels()),
                "exchanges": sum(len(t.exchanges) for t in broker.vhosts.topologies.values()),
                "queues": broker.vhosts.counts.queues,
                "consumers": sum(len(q.consumers) for q in broker.vhosts.queues()),
            },
            "alarms": sorted(broker.alarms.active),
            "uptime": int((broker.now - stats.started_at) * 1000),
            **facts,
        }

    def _list(self, args: dict, facts: dict) -> Any:
        """A list (rule 3); ``vhost``, when given, keeps that vhost's objects (404 if it
        does not exist)."""
        kind = _arg(args, "kind", str)
        broker, users = self.broker, self.broker.users
        topologies = self._topologies(args)
        sources: dict[str, tuple[Callable[[], Iterable[Any]], Callable[[Any], dict], Callable[[Any], str]]] = {
            "queues": (lambda: (q for t in topologies for q in t.queues.values()),
                       lambda q: views.queue(broker, q), lambda q: q.name),
            "exchanges": (lambda: ((t, e) for t in topologies for e in t.exchanges.values()),
                          lambda te: views.exchange(broker, te[1], te[0].vhost), lambda te: te[1].name),
            "connections": (lambda: (c for c in broker.connections.values() if c.topology in topologies),
                            lambda c: views.connection(broker, c), views.connection_name),
            "channels": (lambda: (c for c in broker.stats.channels() if c.connection.topology in topologies),
                         lambda c: views.channel(broker, c), views.channel_name),
            "consumers": (lambda: (c for t in topologies for q in t.queues.values() for c in q.consumers),
                          lambda c: views.consumer(broker, c), lambda c: c.tag),
            "bindings": (lambda: (b for t in topologies for b in views.bindings(t)), lambda b: b,
                         lambda b: b["source"]),
            "users": (lambda: users.users.values(),
                      lambda u: {"name": u.name, "user": u.name, "password_hash": u.password_hash,
                                 "hashing_algorithm": u.hashing_algorithm, "tags": list(u.tags),
                                 "limits": dict(users.limits.users.get(u.name, {}))},
                      lambda u: u.name),
            "permissions": (lambda: (row for row in users.permissions.rows()
                                     if broker.vhosts.get(row[1]) in topologies), _permission_view,
                            lambda row: row[0]),
            "topic_permissions": (lambda: (row for row in users.permissions.topic_rows()
                                           if broker.vhosts.get(row[1]) in topologies), _topic_permission_view,
                                  lambda row: row[0]),
            "vhosts": (broker.vhosts.views, lambda v: v, lambda v: v["name"]),
            "policies": (lambda: (p for t in topologies for p in t.policies.user.values()),
                         lambda p: p.view(), lambda p: p.name),
            "operator_policies": (lambda: (p for t in topologies for p in t.policies.operator.values()),
                                  lambda p: p.view(), lambda p: p.name),
            "vhost_limits": (lambda: users.limits.vhosts.items(),
                             lambda item: {"vhost": item[0], "value": dict(item[1])}, lambda item: item[0]),
            "user_limits": (lambda: users.limits.users.items(),
                            lambda item: {"user": item[0], "value": dict(item[1])}, lambda item: item[0]),
            "shovels": (lambda: (r for t in topologies for r in broker.shovels.rows(t.vhost)
                                 if users.permissions.get(self.principal.name, t.vhost) is not None),
                        lambda r: r, lambda r: r["name"]),
            **self.parameter_requests.lists(topologies, args),
        }
        if kind not in sources:
            raise ManagementError(400, f"unknown list {kind!r}; one of {', '.join(sorted(sources))}")
        objects, render, name = sources[kind]
        return listing(list(objects()), render, name, args)

    def _topologies(self, args: dict) -> list[Any]:
        """The vhost ``args`` names (404 if none such), or every vhost; for a user with
        only the ``management`` tag, of those only the vhosts it has permissions in
        (RabbitMQ's rule: monitoring and administrator users see all)."""
        vhost = _arg(args, "vhost", str, None)
        vhosts = self.broker.vhosts.topologies
        if vhost is None:
            found = list(vhosts.values())
        elif vhost in vhosts:
            found = [vhosts[vhost]]
        else:
            raise not_found()
        if sees_all(self.principal):
            return found
        permissions = self.broker.users.permissions
        return [t for t in found if permissions.get(self.principal.name, t.vhost) is not None]

    def _queue(self, args: dict, facts: dict) -> dict[str, Any]:
        return views.queue_detail(self.broker, self._find_queue(args))

    def _exchange(self, args: dict, facts: dict) -> dict[str, Any]:
        return views.exchange(self.broker, self._find_exchange(args), self._topology(args).vhost)

    def _connection(self, args: dict, facts: dict) -> dict[str, Any]:
        conn = self._find_connection(args)
        out = views.connection(self.broker, conn)
        out["channel_details"] = [views.channel_ref(ch) for ch in conn.channels.values()]
        return out

    def _channel(self, args: dict, facts: dict) -> dict[str, Any]:
        name = _arg(args, "name", str)
        for channel in self.broker.stats.channels():
            if views.channel_name(channel) == name:
                out = views.channel(self.broker, channel)
                out["consumer_details"] = [views.consumer(self.broker, c) for c in channel.consumers.values()]
                return out
        raise not_found()

    def _queue_bindings(self, args: dict, facts: dict) -> list[dict]:
        queue = self._find_queue(args)
        return [b for b in views.bindings(queue.topology)
                if b["destination_type"] == "queue" and b["destination"] == queue.name]

    def _exchange_bindings(self, args: dict, facts: dict) -> list[dict]:
        exchange = self._find_exchange(args)
        side = "destination" if _arg(args, "direction", str, "source") == "destination" else "source"
        return [b for b in views.bindings(self._topology(args)) if b[side] == exchange.name
                and (side == "source" or b["destination_type"] == "exchange")]

    def _definitions(self, args: dict, facts: dict) -> dict[str, Any]:
        return definitions.export(self.broker)

    def _alarms(self, args: dict, facts: dict) -> list[str]:
        return sorted(self.broker.alarms.active)

    # -- acting ----------------------------------------------------------------------

    def _purge(self, args: dict, facts: dict) -> dict[str, int]:
        return {"message_count": self.broker.purge(self._find_queue(args))}

    def _delete_queue(self, args: dict, facts: dict) -> dict[str, int]:
        queue = self._find_queue(args)
        where = f"queue '{queue.name}' in vhost '{queue.topology.vhost}'"
        checks = queue.delete_checks  # (a stream ignores both, and says 0: QueueType rule 4)
        if checks and _arg(args, "if_unused", bool, False) and queue.consumers:
            raise ManagementError(400, f"{where} in use")
        if checks and _arg(args, "if_empty", bool, False) and queue.has_messages:
            raise ManagementError(400, f"{where} not empty")
        count = self.broker.delete(queue)
        return {"message_count": count if checks else 0}

    def _close_connection(self, args: dict, facts: dict) -> dict[str, str]:
        conn = self._find_connection(args)
        reason = _arg(args, "reason", str, "Closed via management")
        self.broker.force_close(conn, reason)
        return {"name": views.connection_name(conn)}

    def _get_messages(self, args: dict, facts: dict) -> list[dict[str, Any]]:
        queue = self._find_queue(args)
        count = _integer(args, "count", 1)  # (rabbitmqadmin sends numbers as strings)
        mode = _arg(args, "ackmode", str, "ack_requeue_true")
        encoding = _arg(args, "encoding", str, "auto")
        truncate = _integer(args, "truncate", 50000)
        if mode not in ACK_MODES:
            raise ManagementError(400, f"ackmode must be one of {', '.join(ACK_MODES)}")
        if encoding not in ("auto", "base64"):
            raise ManagementError(400, "encoding must be 'auto' or 'base64'")
        if count < 1 or truncate < 0:
            raise ManagementError(400, "count must be at least 1 and truncate not negative")
        out = []
        for message, left in self.broker.get(queue, count, ACK_MODES[mode]):
            body = bytes(message.body)
            payload, payload_encoding = _payload(body[:truncate], encoding)
            out.append({"payload_bytes": len(body), "redelivered": message.redelivered,
                        "exchange": message.exchange, "routing_key": message.routing_key,
                        "message_count": left, "properties": _json_properties(message.properties),
                        "payload": payload, "payload_encoding": payload_encoding})
        return out

    def _publish(self, args: dict, facts: dict) -> dict[str, bool]:
        exchange = _arg(args, "exchange", str)
        routing_key = _arg(args, "routing_key", str)
        properties = _arg(args, "properties", dict, {})  # checked by the wire, as a client's
        payload = _arg(args, "payload", str)
        encoding = _arg(args, "payload_encoding", str, "string")
        if encoding == "string":
            body = payload.encode()
        elif encoding == "base64":
            try:
                body = base64.b64decode(payload, validate=True)
            except ValueError:
                raise ManagementError(400, "payload is not valid base64") from None
        else:
            raise ManagementError(400, "payload_encoding must be 'string' or 'base64'")
        topology = self._topology(args)
        if exchange not in topology.exchanges:
            raise not_found()
        return {"routed": self.broker.publish(exchange, routing_key, properties, body, topology)}

    def _reset(self, args: dict, facts: dict) -> dict[str, int]:
        """Delete every queue and every exchange clients declared (the pytest plugin's
        clean slate between tests); connections stay open."""
        queues = list(self.broker.vhosts.queues())
        for queue in queues:
            self.broker.delete(queue)
        exchanges = 0
        for topology in self.broker.vhosts.topologies.values():
            names = [name for name in topology.exchanges if name and not name.startswith("amq.")]
            for name in names:
                topology.delete_exchange(name, False)
            exchanges += len(names)
        return {"queues": len(queues), "exchanges": exchanges}

    def _add_user(self, args: dict, facts: dict) -> dict[str, str]:
        user = self.broker.users.add(_arg(args, "name", str), _arg(args, "password", str),
                                              _arg(args, "tags", list, []))
        return {"name": user.name}

    def _set_user_tags(self, args: dict, facts: dict) -> dict[str, str]:
        name = _arg(args, "name", str)
        tags = _arg(args, "tags", list, [])
        if not all(isinstance(t, str) for t in tags):
            raise ManagementError(400, "tags must be strings")
        self.broker.users.set_tags(name, tags)
        return {"name": name}

    def _put_user(self, args: dict, facts: dict) -> dict[str, bool]:
        """RabbitMQ's ``PUT /api/users/{name}``: create or update, with a password or a
        hash; ``tags`` a list or RabbitMQ's comma-separated string."""
        users = self.broker.users
        name = _arg(args, "name", str)
        tags = args.get("tags", "")
        tags = [t for t in tags.split(",") if t] if isinstance(tags, str) else tags
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ManagementError(400, "tags must be a list of strings or a comma-separated string")
        created = name not in users.users
        if "password" in args:
            if created:
                users.add(name, _arg(args, "password", str), tags)
            else:
                users.change_password(name, _arg(args, "password", str))
        elif "password_hash" in args:
            users.put(name, _arg(args, "password_hash", str), _arg(args, "hashing_algorithm", str, SHA256), tags)
        else:
            raise ManagementError(400, "password or password_hash is required")
        users.set_tags(name, tags)
        return {"created": created}

    def _user_permissions(self, args: dict, facts: dict) -> list[dict]:
        return self._users_rows(args, self.broker.users.permissions.rows(), _permission_view)

    def _user_topic_permissions(self, args: dict, facts: dict) -> list[dict]:
        return self._users_rows(args, self.broker.users.permissions.topic_rows(), _topic_permission_view)

    def _users_rows(self, args: dict, rows: list[list[str]], view: Callable[[list[str]], dict]) -> list[dict]:
        """The rows (user first) of the user ``args`` names, as ``view`` shows them; 404 if
        there is no such user."""
        name = _arg(args, "name", str)
        if name not in self.broker.users.users:
            raise not_found()
        return [view(row) for row in rows if row[0] == name]

    def _add_vhost(self, args: dict, facts: dict) -> dict[str, str]:
        name = _arg(args, "name", str)
        tags = _arg(args, "tags", list, [])
        if not all(isinstance(t, str) for t in tags):
            raise ManagementError(400, "tags must be strings")
        self.broker.add_vhost(name, _arg(args, "description", str, ""), tags)
        return {"name": name}

    def _delete_vhost(self, args: dict, facts: dict) -> dict[str, str]:
        name = _arg(args, "name", str)
        self.broker.delete_vhost(name)
        return {"name": name}

    def _users_verb(self, verb: str, args: dict, facts: dict) -> dict[str, str]:
        """A verb of ``USERS_VERBS``: one ``Users`` method, its arguments checked."""
        method, parameters = USERS_VERBS[verb]
        values = [_arg(args, key, kind, default) for key, kind, default in parameters]
        getattr(self.broker.users, method)(*values)
        return {parameters[0][0]: values[0]}

    def _whoami(self, args: dict, facts: dict) -> dict[str, Any]:
        return {"name": self.principal.name, "tags": list(self.principal.tags)}

    def _import_definitions(self, args: dict, facts: dict) -> dict[str, int]:
        return definitions.apply(self.broker, args.get("definitions"))

    # -- finding ---------------------------------------------------------------------

    def _topology(self, args: dict) -> Any:
        """The vhost an object request names (``vhost``, default ``/``), or 404."""
        topology = self.broker.vhosts.get(_arg(args, "vhost", str, DEFAULT_VHOST))
        if topology is None:
            raise not_found()
        return topology

    def _find_queue(self, args: dict) -> Any:
        queue = self._topology(args).queues.get(_arg(args, "name", str))
        if queue is None:
            raise not_found()
        return queue

    def _find_exchange(self, args: dict) -> Any:
        exchange = self._topology(args).exchanges.get(_arg(args, "name", str))
        if exchange is None:
            raise not_found()
        return exchange

    def _find_connection(self, args: dict) -> Any:
        name = _arg(args, "name", str)
        for conn in self.broker.connections.values():
            if views.connection_name(conn) == name or conn.name == name:
                return conn
        raise not_found()


# -- lists (rule 3) ------------------------------------------------------------------------

def _topic_permission_view(row: list[str]) -> dict[str, str]:
    user, vhost, exchange, write, read = row
    return {"user": user, "vhost": vhost, "exchange": exchange, "write": write, "read": read}


def _permission_view(row: list[str]) -> dict[str, str]:
    user, vhost, configure, write, read = row
    return {"user": user, "vhost": vhost, "configure": configure, "write": write, "read": read}


def _integer(args: dict, key: str, default: int) -> int:
    """An integer argument, or its decimal string (RabbitMQ's ``parse_int``)."""
    value = args.get(key)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return _arg(args, key, int, default)


def listing(objects: list[Any], render: Callable[[Any], dict], name_of: Callable[[Any], str],
            args: dict) -> Any:
    name = _arg(args, "name", str, "")
    if name:
        if _arg(args, "use_regex", bool, False):
            try:
                pattern = re.compile(name)
            except re.error as exc:
                raise ManagementError(400, f"bad regex {name!r}: {exc}") from None
            objects = [o for o in objects if pattern.search(name_of(o))]
        else:
            objects = [o for o in objects if name in name_of(o)]
    sort = _arg(args, "sort", str, "")
    reverse = _arg(args, "sort_reverse", bool, False)
    page = _arg(args, "page", int, None)
    columns = _arg(args, "columns", list, [])
    if not all(isinstance(c, str) for c in columns):
        raise ManagementError(400, "columns must be field names")
    if sort in ("", "name"):
        objects.sort(key=name_of, reverse=reverse)
        items = objects
        render_all = False
    else:
        items = sorted((render(o) for o in objects), key=lambda d: _sort_key(d, sort), reverse=reverse)
        render_all = True
    if page is None:
        rendered = items if render_all else [render(o) for o in items]
        return [_columns(d, columns) for d in rendered]
    page_size = _arg(args, "page_size", int, PAGE_SIZE)
    if page < 1 or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ManagementError(400, f"page must be at least 1 and page_size 1 to {MAX_PAGE_SIZE}")
    page_count = max(1, -(-len(items) // page_size))
    if page > page_count:
        raise ManagementError(400, f"page out of range: {page} of {page_count}")
    chosen = items[(page - 1) * page_size: page * page_size]
    rendered = chosen if render_all else [render(o) for o in chosen]
    return {"filtered_count": len(items), "item_count": len(chosen), "page": page,
            "page_count": page_count, "page_size": page_size, "total_count": len(objects),
            "items": [_columns(d, columns) for d in rendered]}


def _sort_key(item: dict, field: str) -> tuple:
    value: Any = item
    for part in field.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return (value is None, str(type(value)), value if isinstance(value, (int, float, str)) else str(value))


def _columns(item: dict, columns: list[str]) -> dict:
    """Keep only ``columns`` (dotted paths reach into nested objects), as RabbitMQ does."""
    if not columns:
        return item
    out: dict[str, Any] = {}
    for column in columns:
        source, target = item, out
        parts = column.split(".")
        for part in parts[:-1]:
            source = source.get(part) if isinstance(source, dict) else None
            if not isinstance(source, dict):
                break
            target = target.setdefault(part, {})
        else:
            if isinstance(source, dict) and parts[-1] in source:
                target[parts[-1]] = source[parts[-1]]
    return out


# -- arguments and payloads ---------------------------------------------------------------

#: Access-control verbs that call one ``Users`` method of the same name: its arguments as
#: (key, type, default); the answer names the first one.
USERS_VERBS: dict[str, tuple[str, tuple[tuple[str, type, Any], ...]]] = {
    "delete_user": ("delete", (("name", str, _MISSING),)),
    "change_password": ("change_password", (("name", str, _MISSING), ("password", str, _MISSING))),
    "set_permissions": ("set_permissions", (("name", str, _MISSING), ("vhost", str, DEFAULT_VHOST),
                                            ("configure", str, _MISSING), ("write", str, _MISSING),
                                            ("read", str, _MISSING))),
    "clear_permissions": ("clear_permissions", (("name", str, _MISSING), ("vhost", str, DEFAULT_VHOST))),
    "set_vhost_limits": ("set_vhost_limits", (("vhost", str, DEFAULT_VHOST), ("definition", dict, _MISSING))),
    "clear_vhost_limits": ("clear_vhost_limits", (("vhost", str, DEFAULT_VHOST), ("limit", str, "all"))),
    "set_user_limits": ("set_user_limits", (("name", str, _MISSING), ("definition", dict, _MISSING))),
    "clear_user_limits": ("clear_user_limits", (("name", str, _MISSING), ("limit", str, "all"))),
    "set_topic_permissions": ("set_topic_permissions", (("name", str, _MISSING), ("vhost", str, DEFAULT_VHOST),
                                                        ("exchange", str, _MISSING), ("write", str, _MISSING),
                                                        ("read", str, _MISSING))),
    "clear_topic_permissions": ("clear_topic_permissions", (("name", str, _MISSING), ("vhost", str, DEFAULT_VHOST),
                                                            ("exchange", str, None))),
}


def _payload(body: bytes, encoding: str) -> tuple[str, str]:
    if encoding == "auto":
        try:
            return body.decode("utf-8"), "string"
        except UnicodeDecodeError:
            pass
    return base64.b64encode(body).decode(), "base64"


def _json_properties(properties: dict) -> dict[str, Any]:
    """Message properties as JSON can carry them (timestamps as seconds, bytes as text)."""
    out = {}
    for key, value in (properties or {}).items():
        out[key] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, datetime.datetime):  # an AMQP timestamp: seconds, as RabbitMQ shows it
        return int(value.timestamp())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)

