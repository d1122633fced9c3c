"""Definitions: the broker's topology as RabbitMQ's definitions JSON, and back.

The format is RabbitMQ's (``rabbitmqctl export_definitions``, ``GET /api/definitions``),
so an export from RabbitMQ imports here and one from here imports into RabbitMQ.

Rules:
- Export: every vhost, every exchange a client declared (not the default and
  ``amq.*`` ones) and every queue but exclusive ones (a definition outlives its
  connection), with the bindings between them; transient ones too, as RabbitMQ does.
  The shapes are ``rabbitmqctl export_definitions``' (3.10): a queue's ``type``, a vhost's
  ``metadata`` (``description``, ``tags``). Two of the management API's fields are added:
  an exchange's ``internal`` (RabbitMQ's ``rabbitmqctl`` leaves internal exchanges out, but
  not the bindings to them, so its file does not import back; zbroker exports them) and
  ``product_name``/``product_version`` (informational; RabbitMQ's import passes over them).
- Import declares exchanges, then queues, then bindings, with the same rules and error
  texts as a client's declare. The file is checked before anything is declared (its
  shape, exchange types, queue arguments, what each binding names), so such a refusal
  changes nothing; a declaration that conflicts with an existing entity (RabbitMQ's
  406 "inequivalent arg") stops the import at that entry, as RabbitMQ's does.
- Users are exported and imported with their password hashes (RabbitMQ's scheme,
  ``passwords.py``), so logins move with them; an imported user replaces one of the
  same name.
- Permissions and topic permissions (``permissions.py``) are exported and imported as
  RabbitMQ's entries;
  an imported one replaces the user's permissions in that vhost. Each names a user
  of the file or of the broker, and its expressions must compile.
- Limits (``access_limits.py``) travel as RabbitMQ's: a user's in its ``limits`` map, a
  vhost's as a ``vhost-limits`` parameter (and in its vhost entry, as RabbitMQ writes it).
- Runtime parameters (operator policies among them) and global parameters travel as
  RabbitMQ's ``parameters`` and ``global_parameters`` (``definitions_parameters.py``),
  each validated before anything is imported, and set before the exchanges and queues
  are declared, as RabbitMQ sets them.
- Vhosts are exported and imported (a missing one is created); every entry names an
  existing vhost or one of the file.
- Policies travel as RabbitMQ's ``policies`` entries, each validated before anything is
  imported, and set before the queues are declared (a queue gets its policy at once).
- What zbroker cannot apply is refused, never dropped. Informational fields (versions,
  product names) are read and left.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zbroker import __version__
from zbroker.core.access.access_limits import USER_LIMITS, LimitError, check_definition
from zbroker.core.management import definitions_parameters
from zbroker.core.messaging.arguments import CLASSIC, queue_settings
from zbroker.core.messaging.consistent_hash import hash_source, weight_of
from zbroker.core.messaging.exchanges import EXCHANGE_TYPES, ConsistentHashExchange, DelayedExchange
from zbroker.core.access.passwords import ALGORITHMS, SHA256
from zbroker.core.access.permissions import Permission, PermissionError_, TopicPermission
from zbroker.core.messaging.policies import PolicyError, make
from zbroker.core.messaging.queue_type import QueueType
from zbroker.core.messaging.topology import DEFAULT_EXCHANGES, VHOST
from zbroker.errors import BrokerError

if TYPE_CHECKING:
    from zbroker.core.broker import Broker



class DefinitionsError(ValueError):
    """The definitions cannot be applied; the text says which entry and why."""


def export(broker: "Broker") -> dict[str, Any]:
    users = broker.users
    exchanges: list[dict] = []
    queues: list[dict] = []
    bindings: list[dict] = []
    for vhost, topology in broker.vhosts.topologies.items():
        exchanges += [{"name": e.name, "vhost": vhost, "type": e.kind, "durable": e.durable,
                       "auto_delete": e.auto_delete, "internal": e.internal, "arguments": e.arguments}
                      for e in topology.exchanges.values() if e.name and e.name not in DEFAULT_EXCHANGES]
        queues += [{"name": q.name, "vhost": vhost, "type": q.TYPE, "durable": q.durable,
                    "auto_delete": q.auto_delete, "arguments": q.arguments}
                   for q in topology.queues.values() if not q.exclusive]
        for source in topology.exchanges.values():
            for (destination, key, _), arguments in source.bindings.items():
                if isinstance(destination, QueueType) and destination.exclusive:
                    continue
                bindings.append({"source": source.name, "vhost": vhost, "destination": destination.name,
                                 "destination_type": "queue" if isinstance(destination, QueueType) else "exchange",
                                 "routing_key": key, "arguments": arguments})
    return {"product_name": "zbroker", "product_version": __version__,
            "users": users.definitions(),
            "vhosts": [{"name": v["name"], "metadata": {"description": v["description"], "tags": v["tags"]},
                        "limits": definitions_parameters.vhost_limits(broker, v["name"])}
                       for v in broker.vhosts.views()],
            "permissions": [{"user": user, "vhost": vhost, "configure": c, "write": w, "read": r}
                            for user, vhost, c, w, r in users.permissions.rows()],
            "topic_permissions": [{"user": user, "vhost": vhost, "exchange": exchange, "write": w, "read": r}
                                  for user, vhost, exchange, w, r in users.permissions.topic_rows()],
            **definitions_parameters.export(broker),
            "policies": [p.view() for t in broker.vhosts.topologies.values() for p in t.policies.user.values()],
            "queues": queues, "exchanges": exchanges, "bindings": bindings}


def apply(broker: "Broker", data: Any) -> dict[str, int]:
    """Declare what ``data`` defines; returns how many of each were in it."""
    if not isinstance(data, dict):
        raise DefinitionsError("definitions must be a JSON object")
    vhosts = _vhosts(data)
    known = set(broker.vhosts.topologies) | {v["name"] for v in vhosts}
    users = _users(data)
    known_users = {u["name"] for u in users} | set(broker.users.users)
    permissions = _permissions(data, "permissions", known_users, known)
    topic_permissions = _permissions(data, "topic_permissions", known_users, known)
    exchanges = _entries(data, "exchanges", ("name", "type"), known)
    queues = _entries(data, "queues", ("name",), known)
    bindings = _entries(data, "bindings", ("source", "destination", "destination_type"), known)
    policies = _policies(data, known)
    try:
        parameters, global_parameters = definitions_parameters.check(
            broker, data, _entries(data, "parameters", ("component", "name"), known), vhosts)
    except definitions_parameters.ParameterDefinitionsError as exc:
        raise DefinitionsError(str(exc)) from None
    _check(broker, exchanges, queues, bindings)
    for v in vhosts:
        if broker.vhosts.get(v["name"]) is None:
            metadata = v.get("metadata") or {}  # (RabbitMQ 3.11+ keeps description and tags there)
            broker.add_vhost(v["name"], v.get("description") or metadata.get("description") or "",
                             _tags(v.get("tags") or metadata.get("tags")))
    users_db = broker.users
    for user in users:
        users_db.put(user["name"], user["password_hash"], user.get("hashing_algorithm", SHA256),
                     _tags(user.get("tags")))
    for user in users:
        if user.get("limits"):
            users_db.set_user_limits(user["name"], user["limits"])
    for p in permissions:
        users_db.set_permissions(p["user"], p.get("vhost", VHOST), p["configure"], p["write"], p["read"])
    for t in topic_permissions:
        users_db.set_topic_permissions(t["user"], t.get("vhost", VHOST), t["exchange"], t["write"], t["read"])
    for p in policies:
        broker.set_policy(_topology(broker, p), p["name"], p["pattern"], p["definition"], p.get("priority", 0),
                          p.get("apply-to", "all"))
    counts = definitions_parameters.apply(broker, parameters, global_parameters)
    for e in exchanges:
        _topology(broker, e).declare_exchange(e["name"], e["type"], False, bool(e.get("durable", True)),
                                              bool(e.get("auto_delete", False)), bool(e.get("internal", False)),
                                              e.get("arguments") or {})
    for q in queues:
        queue = _topology(broker, q).declare_queue(q["name"], False, bool(q.get("durable", True)), False,
                                                   bool(q.get("auto_delete", False)), queue_arguments(q), None)
        queue.last_used = broker.now
        if queue.settings.expires is not None:
            broker.timers.watch(queue)
    for b in bindings:
        topology = _topology(broker, b)
        destination = (topology.queue(b["destination"], None) if b["destination_type"] == "queue"
                       else topology.exchange(b["destination"]))
        topology.bind(destination, b["source"], b.get("routing_key", ""), b.get("arguments") or {})
    return {"vhosts": len(vhosts), "users": len(users), "permissions": len(permissions), "policies": len(policies),
            "topic_permissions": len(topic_permissions), **counts,
            "exchanges": len(exchanges), "queues": len(queues), "bindings": len(bindings)}


def _topology(broker: "Broker", entry: dict) -> Any:
    return broker.vhosts.topologies[entry.get("vhost", VHOST)]


def _vhosts(data: dict) -> list[dict]:
    vhosts = data.get("vhosts") or []
    if not isinstance(vhosts, list):
        raise DefinitionsError("'vhosts' must be a list")
    for vhost in vhosts:
        if not isinstance(vhost, dict) or not isinstance(vhost.get("name"), str) or not vhost["name"]:
            raise DefinitionsError(f"a vhost entry lacks a name: {vhost!r}")
        if len(vhost["name"].encode()) > 255:
            raise DefinitionsError(f"vhost name longer than 255 bytes: {vhost['name'][:40]!r}...")
        if not isinstance(vhost.get("metadata") or {}, dict):
            raise DefinitionsError(f"vhost '{vhost['name']}': metadata must be an object")
    return vhosts


def _users(data: dict) -> list[dict]:
    """The file's users, checked whole before anything is applied."""
    users = data.get("users") or []
    if not isinstance(users, list):
        raise DefinitionsError("'users' must be a list")
    for user in users:
        if not isinstance(user, dict) or not isinstance(user.get("name"), str) or not user["name"]:
            raise DefinitionsError(f"a user entry lacks a name: {user!r}")
        if not isinstance(user.get("password_hash"), str):
            raise DefinitionsError(f"user '{user['name']}' lacks a password_hash")
        algorithm = user.get("hashing_algorithm", SHA256)
        if algorithm not in ALGORITHMS:
            raise DefinitionsError(f"user '{user['name']}': unknown hashing_algorithm {algorithm!r}")
        _tags(user.get("tags"))
        if user.get("limits"):
            try:
                check_definition(user["limits"], USER_LIMITS)
            except LimitError as exc:
                raise DefinitionsError(f"user '{user['name']}' limits: {exc}") from None
    return users


#: The permission entries of a definitions file: key -> (its label, the fields it needs,
#: how the fields make the object that checks them).
PERMISSION_ENTRIES: dict[str, tuple[str, tuple[str, ...], Any]] = {
    "permissions": ("permission", ("user", "configure", "write", "read"),
                    lambda e: Permission(e["configure"], e["write"], e["read"])),
    "topic_permissions": ("topic permission", ("user", "exchange", "write", "read"),
                          lambda e: TopicPermission(e["write"], e["read"])),
}


def _permissions(data: dict, key: str, users: set[str], vhosts: set[str]) -> list[dict]:
    """The file's ``key`` entries, checked whole (user and vhost known, expressions compile)."""
    label, required, make = PERMISSION_ENTRIES[key]
    entries = _entries(data, key, required, vhosts)
    for entry in entries:
        if entry["user"] not in users:
            raise DefinitionsError(f"{label} for user '{entry['user']}': no such user")
        try:
            make(entry)
        except PermissionError_ as exc:
            raise DefinitionsError(f"{label} for user '{entry['user']}': {exc}") from None
    return entries


def _tags(tags: Any) -> list[str]:
    """RabbitMQ exports tags as a list (3.10+) or a comma-separated string (older)."""
    if tags is None:
        return []
    if isinstance(tags, str):
        return [t for t in tags.split(",") if t]
    if isinstance(tags, list) and all(isinstance(t, str) for t in tags):
        return tags
    raise DefinitionsError(f"user tags must be a list of strings: {tags!r}")


def queue_arguments(entry: dict) -> dict:
    """A queue's arguments; RabbitMQ's exports (``rabbitmqctl export_definitions``) name the
    queue type in a ``type`` field too, which means ``x-queue-type`` (a conflict between the
    two is refused). ``classic``, the default, is not added: the queue keeps the arguments
    it was declared with, as RabbitMQ's does, so they export as they came in."""
    arguments = dict(entry.get("arguments") or {})
    kind = entry.get("type")
    if kind is None or (kind == CLASSIC and "x-queue-type" not in arguments):
        return arguments
    declared = arguments.setdefault("x-queue-type", kind)
    if declared != kind:
        raise DefinitionsError(f"queue '{entry['name']}': type '{kind}' but x-queue-type '{declared}'")
    return arguments


def _entries(data: dict, key: str, required: tuple[str, ...], vhosts: set[str]) -> list[dict]:
    """The file's ``key`` entries, each checked: an object with the ``required`` string
    fields, in one of ``vhosts``."""
    entries = data.get(key) or []
    if not isinstance(entries, list):
        raise DefinitionsError(f"'{key}' must be a list")
    for entry in entries:
        if not isinstance(entry, dict):
            raise DefinitionsError(f"an entry of '{key}' is not an object: {entry!r}")
        missing = [field for field in required if not isinstance(entry.get(field), str)]
        if missing:
            raise DefinitionsError(f"an entry of '{key}' lacks {', '.join(missing)}: {entry!r}")
        if entry.get("vhost", VHOST) not in vhosts:
            label = entry.get("name", entry.get("source", entry.get("user")))
            raise DefinitionsError(f"{key[:-1]} '{label}' is in vhost '{entry['vhost']}', which neither exists "
                                   "nor is in the file")
        if not isinstance(entry.get("arguments") or {}, dict):
            raise DefinitionsError(f"arguments of an entry of '{key}' must be an object: {entry!r}")
    return entries


def _policies(data: dict, vhosts: set[str]) -> list[dict]:
    """The file's policies, each validated as ``set_policy`` would (rule: checked first)."""
    entries = _entries(data, "policies", ("name", "pattern"), vhosts)
    for p in entries:
        try:
            make(p.get("vhost", VHOST), p["name"], p["pattern"], p.get("definition"), p.get("priority", 0),
                 p.get("apply-to", "all"))
        except PolicyError as exc:
            raise DefinitionsError(f"policy '{p['name']}': Validation failed: {exc}") from None
    return entries


def _check(broker: "Broker", exchanges: list[dict], queues: list[dict], bindings: list[dict]) -> None:
    """Refuse the whole file before declaring anything (rule 2)."""
    kinds = {(vhost, name): ex.kind
             for vhost, t in broker.vhosts.topologies.items() for name, ex in t.exchanges.items()}
    names: set[tuple[str, str]] = set(kinds)
    names |= {(vhost, name) for vhost in {e.get("vhost", VHOST) for e in exchanges + bindings}
              for name in DEFAULT_EXCHANGES}  # (a vhost the file makes has them too)
    for e in exchanges:
        if e["type"] not in EXCHANGE_TYPES:
            raise DefinitionsError(f"exchange '{e['name']}': unknown exchange type '{e['type']}'")
        if e["type"] == ConsistentHashExchange.kind:
            _as_definitions_error(f"exchange '{e['name']}'", hash_source, e.get("arguments") or {})
        if e["type"] == DelayedExchange.kind:  # (its x-delayed-type, and that type's own checks)
            _as_definitions_error(f"exchange '{e['name']}'", lambda a: DelayedExchange("", arguments=a),
                                  e.get("arguments") or {})
        names.add((e.get("vhost", VHOST), e["name"]))
        kinds[(e.get("vhost", VHOST), e["name"])] = e["type"]
    queue_names = {(vhost, name) for vhost, t in broker.vhosts.topologies.items() for name in t.queues}
    for q in queues:
        _as_definitions_error(f"queue '{q['name']}'",
                              lambda entry: queue_settings(entry["name"], queue_arguments(entry)), q)
        topology = broker.vhosts.get(q.get("vhost", VHOST))
        existing = topology.queues.get(q["name"]) if topology is not None else None
        if existing is not None and existing.exclusive:
            raise DefinitionsError(f"queue '{q['name']}' exists as an exclusive queue")
        queue_names.add((q.get("vhost", VHOST), q["name"]))
    for b in bindings:
        vhost = b.get("vhost", VHOST)
        if (vhost, b["source"]) not in names:
            raise DefinitionsError(f"binding from '{b['source']}': no exchange '{b['source']}' in vhost '{vhost}'")
        if kinds.get((vhost, b["source"])) == ConsistentHashExchange.kind:
            _as_definitions_error(f"binding from '{b['source']}'", weight_of, b.get("routing_key", ""))
        known = queue_names if b["destination_type"] == "queue" else names
        if b["destination_type"] not in ("queue", "exchange") or (vhost, b["destination"]) not in known:
            raise DefinitionsError(f"binding to {b['destination_type']} '{b['destination']}': "
                                   f"no such {b['destination_type']} in vhost '{vhost}'")


def _as_definitions_error(label: str, check: Any, value: Any) -> None:
    """Run a declare-time check on a file's entry; its refusal names the entry."""
    try:
        check(value)
    except BrokerError as exc:
        raise DefinitionsError(f"{label}: {exc.text}") from None
