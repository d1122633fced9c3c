"""The access checks a command passes before it acts: RabbitMQ's 403 ACCESS_REFUSED
texts, in RabbitMQ's order.

Rules of this module:
- A check returns or raises ``ChannelError(403)``; it never changes state.
- The common case costs one dict look-up: a user allowed everything (``writes_all``,
  ``allows``) is let through before any text is built (``permissions.py`` builds it).
- Passive declares need any one of configure, write or read; binding writes to the
  destination and reads the source; a topic exchange also checks topic permissions of
  every routing key (CC and BCC included).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from zbroker.core.access.permissions import DEFAULT_EXCHANGE_NAME, READ, WRITE, check, check_any, check_topic
from zbroker.core.access.users import Users
from zbroker.core.messaging.exchanges import TopicExchange
from zbroker.core.messaging.topology import header_routes

if TYPE_CHECKING:
    from zbroker.core.messaging.session import Connection


class AccessChecks:
    def __init__(self, users: Users) -> None:
        self.users = users
        #: (user, vhost) -> permission, and whether any topic permission exists at all.
        self.permissions = users.permissions.table
        self.topics = users.permissions.topics

    def may(self, conn: "Connection", access: str, kind: str, name: str) -> None:
        """RabbitMQ's 403 unless the connection's user may ``access`` (``permissions.py``)."""
        permission = self.permissions.get(conn.access_key)
        if permission is None or not permission.allows(access, name or DEFAULT_EXCHANGE_NAME):
            check(permission, conn.user, conn.virtual_host, access, kind, name)

    def may_any(self, conn: "Connection", kind: str, name: str) -> None:
        """A passive declare needs any one of the three permissions."""
        check_any(self.permissions.get(conn.access_key), conn.user, conn.virtual_host, kind, name)

    def may_bind(self, conn: "Connection", kind: str, destination: str, source: str, routing_key: str) -> None:
        """(Un)binding writes to the destination and reads the source exchange (and, from a
        topic exchange, the binding key: topic permissions); the default exchange is
        refused after the first check, as RabbitMQ orders them."""
        self.may(conn, WRITE, kind, destination)
        if source:
            self.may(conn, READ, "exchange", source)
            if self.topics and type(conn.topology.exchanges.get(source)) is TopicExchange:
                check_topic(self.users.permissions, conn.user, conn.virtual_host, READ, source, [routing_key])

    def may_publish_topic(self, conn: "Connection", exchange: str, routing_key: str, properties: dict) -> None:
        """A publish to a topic exchange: each of its routing keys (CC and BCC too) must be
        allowed by the user's topic permissions (``permissions.py``)."""
        keys = [routing_key]
        headers = properties.get("headers") if properties else None
        if headers and ("CC" in headers or "BCC" in headers):
            cc, bcc = header_routes(headers)
            keys += cc + bcc
        check_topic(self.users.permissions, conn.user, conn.virtual_host, WRITE, exchange, keys)
