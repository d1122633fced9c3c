"""Users: who may log in, with RabbitMQ's password hashes and tags.

Rules (RabbitMQ's internal user database, "Access Control" guide):
- A fresh broker has one user, ``guest`` with password ``guest`` and tag
  ``administrator``; ``guest`` may log in from a loopback address only
  (``loopback_users``). Deleting or restricting it is how a LAN broker is secured.
- Passwords are kept only as hashes (``passwords.py``); a login is refused with one
  reason for the log (never the password) and RabbitMQ's single text for the client.
- Tags are free words; ``administrator``, ``monitoring``, ``management`` and
  ``policymaker`` are RabbitMQ's. Users are durable: they are part of the topology
  snapshot (``snapshot.py``), so every change bumps ``changes``.
- Names are at most 255 bytes, as AMQP's short strings; an empty name is refused.
- The broker's own connections (a shovel's side on this broker) log in with the secret
  the server holds (``internal_secret``, never stored), as RabbitMQ's direct connections
  do with its internal user ``none``: every permission in every vhost. Their
  permissions are keyed by ``INTERNAL_KEY`` (""), a name no user can have, so they
  never show in a listing and no login can reach them.
- Each user's permissions per vhost (``permissions.py``) live here too: ``guest`` has
  all of them on ``/``, a new user none (RabbitMQ's defaults); deleting a user drops
  its permissions. So do the per-user and per-vhost limits (``access_limits.py``).
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
from dataclasses import dataclass, field
from typing import Callable

from zbroker.core.access.access_limits import AccessLimits
from zbroker.core.access.login_throttle import LoginThrottle

from zbroker.core.access.passwords import ALGORITHMS, SHA256, check_password, hash_password
from zbroker.core.access.permissions import Permissions

log = logging.getLogger(__name__)

DEFAULT_USER = "guest"
DEFAULT_VHOST = "/"
#: The permissions RabbitMQ gives ``guest`` (and zbroker gave every user before it had
#: permissions, so an older snapshot's users keep them).
FULL = (".*", ".*", ".*")
LOOPBACK_USERS = frozenset({DEFAULT_USER})
#: The name the broker's own connections show (RabbitMQ's direct connections' user).
INTERNAL_USER = "none"
#: The permission key of the broker's own connections (``Permissions.grant_internal``).
INTERNAL_KEY = ""
#: RabbitMQ's text for every refused login, whatever the reason (the reason is logged).
LOGIN_REFUSED = "Login was refused using authentication mechanism {}. For details see the broker logfile."


class UserError(ValueError):
    """A user operation refused, with RabbitMQ's wording where it has one."""


@dataclass
class User:
    name: str
    password_hash: str
    hashing_algorithm: str = SHA256
    tags: list[str] = field(default_factory=list)


class Users:
    def __init__(self) -> None:
        self.users: dict[str, User] = {
            DEFAULT_USER: User(DEFAULT_USER, hash_password(DEFAULT_USER), SHA256, ["administrator"])}
        self.permissions = Permissions()
        self.permissions.set(DEFAULT_USER, DEFAULT_VHOST, *FULL)
        self.limits = AccessLimits()
        #: Whether a vhost exists (the vhosts' registry sets it: ``vhosts.py``).
        self.vhost_exists: Callable[[str], bool] = lambda name: name == DEFAULT_VHOST
        #: Bumped by every change: the durable topology is saved when it moves.
        self.changes = 0
        self.throttle = LoginThrottle()
        #: The secret the broker's own connections prove themselves with (the server's).
        self.internal_secret: bytes | None = None

    def internal_login(self, secret: bytes) -> bool:
        """Whether ``secret`` is the server's internal one (compared in constant time)."""
        return self.internal_secret is not None and hmac.compare_digest(secret, self.internal_secret)

    def login(self, username: str, password: str, peer_host: str | None, now: float, what: str) -> str | None:
        """``authenticate`` behind the failed-login throttle (``login_throttle.py``), each
        refusal logged (never the password); ``what``: the mechanism or "management"."""
        if self.throttle.throttled(peer_host, now, what):
            return "too many failed logins"
        refused = self.authenticate(username, password, peer_host)
        if refused is not None:
            self.throttle.failed(peer_host, now)
            log.warning("%s login refused%s: %s", what, f" from {peer_host}" if peer_host else "", refused)
        return refused

    def authenticate(self, username: str, password: str, peer_host: str | None) -> str | None:
        """Why a login is refused (for the log), or None. ``peer_host`` None: a local
        transport (ipc, inproc), which counts as loopback."""
        user = self.users.get(username)
        if user is None:
            return f"user '{username}' does not exist"
        if not check_password(user.password_hash, password, user.hashing_algorithm):
            return f"user '{username}' - invalid credentials"
        if username in LOOPBACK_USERS and peer_host is not None and not is_loopback(peer_host):
            return f"user '{username}' can only connect via localhost"
        return None

    def add(self, name: str, password: str, tags: list[str] | None = None) -> User:
        check_name(name)
        if name in self.users:
            raise UserError(f"user '{name}' already exists")
        user = self.users[name] = User(name, hash_password(password), SHA256, list(tags or []))
        self.changes += 1
        return user

    def put(self, name: str, password_hash: str, hashing_algorithm: str, tags: list[str]) -> None:
        """Add or replace a user from a definitions file (the hash as given)."""
        check_name(name)
        if hashing_algorithm not in ALGORITHMS:
            raise UserError(f"user '{name}': unknown hashing_algorithm '{hashing_algorithm}'")
        self.users[name] = User(name, password_hash, hashing_algorithm, list(tags))
        self.changes += 1

    def delete(self, name: str) -> None:
        if self.users.pop(name, None) is None:
            raise UserError(f"user '{name}' does not exist")
        self.permissions.forget_user(name)
        self.limits.users.pop(name, None)
        self.changes += 1

    def set_user_limits(self, name: str, definition: dict) -> None:
        self._get(name)
        self.limits.set_user(name, definition)
        self.changes += 1

    def clear_user_limits(self, name: str, limit: str) -> None:
        self._get(name)
        self.limits.clear_user(name, limit)
        self.changes += 1

    def set_vhost_limits(self, vhost: str, definition: dict) -> None:
        self.check_vhost(vhost)
        self.limits.set_vhost(vhost, definition)
        self.changes += 1

    def clear_vhost_limits(self, vhost: str, limit: str = "all") -> None:
        self.check_vhost(vhost)
        self.limits.clear_vhost(vhost, limit)
        self.changes += 1

    def forget_vhost(self, vhost: str) -> None:
        """A vhost is deleted: the permissions and limits that name it go."""
        for user in list(self.users):
            self.permissions.clear(user, vhost)
            self.permissions.clear_topic(user, vhost)
        self.limits.vhosts.pop(vhost, None)
        self.changes += 1

    def set_topic_permissions(self, name: str, vhost: str, exchange: str, write: str, read: str) -> None:
        self._get(name)
        self.check_vhost(vhost)
        self.permissions.set_topic(name, vhost, exchange, write, read)
        self.changes += 1

    def clear_topic_permissions(self, name: str, vhost: str, exchange: str | None = None) -> None:
        self._get(name)
        self.check_vhost(vhost)
        self.permissions.clear_topic(name, vhost, exchange)
        self.changes += 1

    def check_vhost(self, vhost: str) -> None:
        if not isinstance(vhost, str) or not self.vhost_exists(vhost):
            raise UserError(f"vhost '{vhost}' does not exist")

    def set_permissions(self, name: str, vhost: str, configure: str, write: str, read: str) -> None:
        self._get(name)
        self.check_vhost(vhost)
        self.permissions.set(name, vhost, configure, write, read)
        self.changes += 1

    def clear_permissions(self, name: str, vhost: str) -> None:
        self._get(name)
        self.check_vhost(vhost)
        self.permissions.clear(name, vhost)
        self.changes += 1

    def change_password(self, name: str, password: str) -> None:
        user = self._get(name)
        user.password_hash, user.hashing_algorithm = hash_password(password), SHA256
        self.changes += 1

    def set_tags(self, name: str, tags: list[str]) -> None:
        self._get(name).tags = list(tags)
        self.changes += 1

    def _get(self, name: str) -> User:
        user = self.users.get(name)
        if user is None:
            raise UserError(f"user '{name}' does not exist")
        return user

    # -- durable form (the topology snapshot) and definitions ------------------------

    def snapshot(self) -> list[list]:
        return [[u.name, u.password_hash, u.hashing_algorithm, u.tags] for u in self.users.values()]

    def restore(self, rows: list[list], permissions: list[list] | None) -> None:
        """``permissions`` None: a snapshot from before permissions, whose users could do
        everything on ``/``; they keep that."""
        self.users = {name: User(name, password_hash, algorithm, list(tags))
                      for name, password_hash, algorithm, tags in rows}
        if permissions is None:
            permissions = [[name, DEFAULT_VHOST, *FULL] for name in self.users]
        self.permissions.restore(permissions)

    def definitions(self) -> list[dict]:
        """RabbitMQ's ``users`` entries (``tags`` as a list, as RabbitMQ 3.10+ exports)."""
        return [{"name": u.name, "password_hash": u.password_hash, "hashing_algorithm": u.hashing_algorithm,
                 "tags": list(u.tags), "limits": dict(self.limits.users.get(u.name, {}))}
                for u in self.users.values()]


def check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise UserError("a user name must be a non-empty string")
    if len(name.encode()) > 255:
        raise UserError("a user name is at most 255 bytes")


def is_loopback(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return (mapped or address).is_loopback
