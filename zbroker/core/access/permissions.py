"""Who may do what in a virtual host: RabbitMQ's three regular expressions per user.

Rules (RabbitMQ's "Access Control" guide and its channel's checks):
- A user's permissions in a vhost are three regular expressions: ``configure``,
  ``write``, ``read``. A resource is allowed when its expression *finds* the name
  anywhere (unanchored, as Erlang's ``re:run``: ``^app\\.`` anchors, ``.*`` allows
  all); an empty expression allows nothing (RabbitMQ reads it as ``^$``).
- No permissions in a vhost: the user may not open a connection to it
  (530 ``access to vhost '/' refused for user 'bob'``).
- The default exchange is checked under the name ``amq.default``.
- Which operation needs what (RabbitMQ's table; the broker calls ``check``):
  declare or delete a queue or exchange: configure on it; a passive declare: any of
  the three; a queue with ``x-dead-letter-exchange``: also read on the queue and
  write on the dead-letter exchange; an exchange with ``alternate-exchange``: also
  read on it and write on the alternate; publish: write on the exchange; consume,
  get, purge: read on the queue; (un)bind: write on the destination, read on the
  source exchange.
- A refusal is 403 ACCESS_REFUSED, ``configure access to queue 'q' in vhost '/'
  refused for user 'bob'``: the channel closes, the connection goes on.
- A change takes effect at the connection's next operation: a connection looks its
  user's permissions up each time (one dict lookup; RabbitMQ may wait for a
  reconnect). Results are cached per permission object, which a change replaces.
- Topic permissions (RabbitMQ's, on topic exchanges only): per user, vhost and exchange,
  a ``write`` and a ``read`` expression on routing keys. A publish to a topic exchange
  needs ``write`` to match each of its routing keys (CC/BCC too); binding from one needs
  ``read`` to match the binding key. No entry for that exchange: allowed. ``{username}``
  and ``{vhost}`` in an expression stand for the user's and vhost's names (escaped);
  other ``{...}`` stay as written, as RabbitMQ's AMQP (``{client_id}`` is MQTT's).
  Refusal: 403 ``write access to topic 'a.b' in exchange 'logs' in vhost '/' refused
  for user 'bob'``.
- Permissions are durable with the users (``users.py`` saves them).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

from zbroker import errors
from zbroker.errors import ChannelError

CONFIGURE, WRITE, READ = "configure", "write", "read"
KINDS = (CONFIGURE, WRITE, READ)
DEFAULT_EXCHANGE_NAME = "amq.default"
#: Names remembered per permission object and kind before the cache starts over.
_CACHE_SIZE = 256


class PermissionError_(ValueError):
    """A permission refused as an argument (a regular expression that does not compile)."""


@dataclass
class Permission:
    """One user's three expressions in one vhost, compiled, with a cache of answers."""
    configure: str
    write: str
    read: str
    _compiled: dict[str, re.Pattern | None] = field(default_factory=dict, repr=False)
    _cache: dict[tuple[str, str], bool] = field(default_factory=dict, repr=False)
    #: ``write`` is ``.*`` (everything): a publish needs no lookup at all.
    writes_all: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        for kind in KINDS:
            pattern = getattr(self, kind)
            if not isinstance(pattern, str):
                raise PermissionError_(f"{kind}: a regular expression must be a string")
            try:
                self._compiled[kind] = re.compile(pattern) if pattern else None
            except re.error as exc:
                raise PermissionError_(f"{kind}: invalid regular expression '{pattern}': {exc}") from None
        self.writes_all = self.write == ".*"

    def allows(self, kind: str, name: str) -> bool:
        key = (kind, name)
        answer = self._cache.get(key)
        if answer is None:
            pattern = self._compiled[kind]
            answer = pattern is not None and pattern.search(name) is not None
            if len(self._cache) >= _CACHE_SIZE:
                self._cache.clear()
            self._cache[key] = answer
        return answer

    def as_row(self) -> list[str]:
        return [self.configure, self.write, self.read]


@dataclass
class TopicPermission:
    """One user's ``write`` and ``read`` routing-key expressions on one topic exchange."""
    write: str
    read: str
    _compiled: dict[tuple[str, str, str], re.Pattern] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for kind in (WRITE, READ):
            pattern = getattr(self, kind)
            if not isinstance(pattern, str):
                raise PermissionError_(f"{kind}: a regular expression must be a string")
            try:
                re.compile(pattern)
            except re.error as exc:
                raise PermissionError_(f"{kind}: invalid regular expression '{pattern}': {exc}") from None

    def allows(self, access: str, routing_key: str, user: str, vhost: str) -> bool:
        key = (access, user, vhost)
        pattern = self._compiled.get(key)
        if pattern is None:
            text = getattr(self, access) or "^$"
            text = text.replace("{username}", re.escape(user)).replace("{vhost}", re.escape(vhost))
            pattern = self._compiled[key] = re.compile(text)
        return pattern.search(routing_key) is not None


class Permissions:
    """Every (user, vhost) → ``Permission``, and topic permissions; the users' table owns
    it (``users.py``)."""

    def __init__(self) -> None:
        self.table: dict[tuple[str, str], Permission] = {}
        #: (user, vhost) -> exchange -> TopicPermission; empty while nobody has any.
        self.topics: dict[tuple[str, str], dict[str, TopicPermission]] = {}

    def get(self, user: str, vhost: str) -> Permission | None:
        return self.table.get((user, vhost))

    def set(self, user: str, vhost: str, configure: str, write: str, read: str) -> None:
        self.table[(user, vhost)] = Permission(configure, write, read)

    def clear(self, user: str, vhost: str) -> bool:
        return self.table.pop((user, vhost), None) is not None

    def grant_internal(self, vhost: str) -> None:
        """Every permission in ``vhost`` for the broker's own connections (``users.py``)."""
        if ("", vhost) not in self.table:
            self.table[("", vhost)] = Permission(".*", ".*", ".*")

    def forget_user(self, user: str) -> None:
        for table in (self.table, self.topics):
            for key in [key for key in table if key[0] == user]:
                del table[key]

    def set_topic(self, user: str, vhost: str, exchange: str, write: str, read: str) -> None:
        self.topics.setdefault((user, vhost), {})[exchange] = TopicPermission(write, read)

    def clear_topic(self, user: str, vhost: str, exchange: str | None = None) -> None:
        """Clear one exchange's topic permissions, or (None) all of them in the vhost."""
        table = self.topics.get((user, vhost), {})
        if exchange is None:
            table.clear()
        else:
            table.pop(exchange, None)
        if not table:
            self.topics.pop((user, vhost), None)

    def topic_rows(self) -> list[list[str]]:
        """``[user, vhost, exchange, write, read]`` sorted."""
        return [[user, vhost, exchange, t.write, t.read]
                for (user, vhost), table in sorted(self.topics.items()) for exchange, t in sorted(table.items())]

    def restore_topics(self, rows: list[list[str]]) -> None:
        self.topics.clear()
        for user, vhost, exchange, write, read in rows:
            self.set_topic(user, vhost, exchange, write, read)

    def rows(self) -> list[list[str]]:
        """``[user, vhost, configure, write, read]`` sorted: the snapshot's and listings' form."""
        return [[user, vhost, *p.as_row()] for (user, vhost), p in sorted(self.table.items()) if user]

    def restore(self, rows: list[list[str]]) -> None:
        self.table.clear()  # (in place: the broker holds the table)
        self.table.update({(user, vhost): Permission(c, w, r) for user, vhost, c, w, r in rows if user})


def resource(kind: str, name: str, vhost: str) -> str:
    """RabbitMQ's way to name a resource in a message: ``queue 'q' in vhost '/'``."""
    return f"{kind} '{name}' in vhost '{vhost}'"


def check(permission: Permission | None, user: str, vhost: str, access: str, kind: str,
          name: str) -> None:
    """Raise RabbitMQ's 403 unless ``user`` may ``access`` the resource."""
    if kind == "exchange" and name == "":
        name = DEFAULT_EXCHANGE_NAME
    if permission is None or not permission.allows(access, name):
        raise ChannelError(errors.ACCESS_REFUSED,
                           f"{access} access to {resource(kind, name, vhost)} refused for user '{user}'")


def check_topic(permissions: Permissions, user: str, vhost: str, access: str, exchange: str,
                routing_keys: list[str]) -> None:
    """Raise RabbitMQ's 403 unless each routing key is allowed on the topic exchange."""
    table = permissions.topics.get((user, vhost))
    topic = table.get(exchange) if table else None
    if topic is None:
        return
    for key in routing_keys:
        if not topic.allows(access, key, user, vhost):
            raise ChannelError(errors.ACCESS_REFUSED, f"{access} access to topic '{key}' in exchange "
                                                      f"'{exchange}' in vhost '{vhost}' refused for user '{user}'")


def check_any(permission: Permission | None, user: str, vhost: str, kind: str, name: str) -> None:
    """A passive declare needs any of the three; the refusal names ``configure``, as
    RabbitMQ's does (it tries configure last so the text matches a declare's)."""
    if permission is not None and any(permission.allows(access, name) for access in (READ, WRITE)):
        return
    check(permission, user, vhost, CONFIGURE, kind, name)
