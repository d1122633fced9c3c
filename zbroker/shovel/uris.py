"""Shovel URIs to pika connection parameters, as RabbitMQ's ``amqp_uri`` reads them.

Rules:
- ``amqp://[user[:pass]@]host[:port][/vhost][?query]`` and ``amqps://``; user, password
  and vhost percent-decoded; no path is vhost ``/``, a bare ``/`` is vhost "" (as
  ``amqp_uri``), a path with a second ``/`` is ``invalid_vhost``. No user: guest/guest.
- No host (``amqp://``, ``amqp:///vhost``) is this broker (RabbitMQ's direct
  connection): the ``local`` host and port, plain AMQP, and the ``ZBROKER-INTERNAL``
  login whose response is the server's secret (``InternalCredentials``). A port with no
  host is ``port_requires_host``; ``amqps://`` with no host has no meaning and is refused.
- Query parameters, RabbitMQ's: ``heartbeat`` (s, default 10 as amqp_client's),
  ``connection_timeout`` (ms, default 60000), ``channel_max`` (default 2047),
  ``frame_max``, ``auth_mechanism`` (plain, external; repeated = tried in order),
  ``password`` (the login's, and on amqps the key's too, as amqp_uri does); on amqps
  ``cacertfile``, ``certfile``, ``keyfile``, ``verify`` (verify_peer | verify_none),
  ``server_name_indication`` (a host name or ``disable``). What pika cannot do is
  refused with ``UnsupportedUri`` naming the parameter (``amqplain`` alone, ``depth``,
  the server-side ``fail_if_no_peer_cert``); unknown keys are ignored, as amqp_uri does.
- TLS as Erlang's client with RabbitMQ's amqp_ssl: no ``verify`` means no certificate
  check (RabbitMQ logs a warning; so do we); ``verify_peer`` checks the chain and the
  host name (or address) unless SNI is ``disable``; SNI is the host when it is a name.
- ``remove_credentials`` is amqp_uri's: ``scheme://host[:port][path]``, no user, no query:
  what status lines and forward headers show.
"""
from __future__ import annotations

import errno
import logging
import re
import socket
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

import pika
import pika.exceptions

from zbroker.shovel.definition import Local

log = logging.getLogger(__name__)

#: The SASL mechanism of the broker's own connections (zbroker/wires/amqp_handshake.py).
INTERNAL_MECHANISM = "ZBROKER-INTERNAL"
#: amqp_client's #amqp_params_network defaults (amqp_client.hrl).
DEFAULT_HEARTBEAT_S = 10
DEFAULT_CONNECTION_TIMEOUT_MS = 60_000
DEFAULT_CHANNEL_MAX = 2047
PORTS = {"amqp": 5672, "amqps": 5671}
_INTEGER_PARAMETERS = ("heartbeat", "connection_timeout", "channel_max", "frame_max")
#: amqp_params_network fields a query may not set (amqp_uri's parameter_unconfigurable_in_query).
_UNCONFIGURABLE = ("username", "virtual_host", "host", "port", "ssl_options", "auth_mechanisms",
                   "client_properties", "socket_options")


class UriError(ValueError):
    """Not a valid URI; the text is amqp_uri's error term."""


class UnsupportedUri(ValueError):
    """A valid RabbitMQ URI asking for something this worker's AMQP client cannot do."""


class InternalCredentials(pika.PlainCredentials):
    """The ``ZBROKER-INTERNAL`` login: the response is the server's secret. The broker
    does not offer the mechanism in connection.start (no client should pick it), so the
    response is sent whatever the offer. A ``PlainCredentials`` subclass because pika's
    ``ConnectionParameters`` takes nothing else; never erased, since every reconnect
    needs it again."""
    TYPE = INTERNAL_MECHANISM

    def __init__(self, secret: bytes) -> None:
        super().__init__("", "")
        self.secret = secret

    def response_for(self, start: Any) -> tuple[str, bytes]:
        return self.TYPE, self.secret

    def erase_credentials(self) -> None:
        pass


@dataclass(frozen=True)
class Target:
    """A URI resolved for connecting: the pika parameters and what to show of it."""
    uri: str
    shown: str                     # remove_credentials(uri)
    parameters: pika.ConnectionParameters
    local: bool


def remove_credentials(uri: str) -> str:
    """amqp_uri:remove_credentials: ``scheme://host[:port]path`` (no user, no query)."""
    parts = urllib.parse.urlsplit(uri)
    host = parts.netloc.rpartition("@")[2]
    return f"{parts.scheme}://{host}{parts.path}"


def _query(parts: urllib.parse.SplitResult) -> dict[str, list[str]]:
    query: dict[str, list[str]] = {}
    for key, value in urllib.parse.parse_qsl(parts.query, keep_blank_values=True):
        query.setdefault(key, []).append(value)
    return query


def _vhost(path: str) -> str:
    if not path:
        return "/"
    rest = path[1:]
    if "/" in rest:
        raise UriError(f'{{invalid_vhost,"{rest}"}}')
    return urllib.parse.unquote(rest)


def resolve(uri: str, local: Local | None, connection_name: str) -> Target:
    """The pika parameters for one shovel URI (raises ``UriError`` or ``UnsupportedUri``)."""
    try:
        parts = urllib.parse.urlsplit(uri)
        port = parts.port
    except ValueError as error:
        raise UriError(f"{{unable_to_parse_uri,{error}}}") from None
    scheme = parts.scheme.lower()
    if scheme not in PORTS:
        raise UriError(f'{{unexpected_uri_scheme,"{scheme}"}}' if scheme else "{unable_to_parse_uri,no_scheme}")
    vhost = _vhost(parts.path)
    query = _query(parts)
    for key in _UNCONFIGURABLE:
        if key in query:
            raise UriError(f'{{parameter_unconfigurable_in_query,{key},"{query[key][0]}"}}')
    options: dict[str, Any] = {"virtual_host": vhost,
                               "client_properties": {"connection_name": connection_name},
                               "heartbeat": DEFAULT_HEARTBEAT_S, "channel_max": DEFAULT_CHANNEL_MAX}
    timeout_ms = DEFAULT_CONNECTION_TIMEOUT_MS
    for key in _INTEGER_PARAMETERS:
        if key in query:
            try:
                value = int(query[key][0])
            except ValueError:
                raise UriError(f'{{invalid_amqp_params_parameter,{key},"{query[key][0]}",'
                               f'{{not_an_integer,"{query[key][0]}"}}}}') from None
            if key == "connection_timeout":
                timeout_ms = value
            elif key != "frame_max" or value:  # frame_max 0: the server's
                options[key] = value
    options["socket_timeout"] = options["stack_timeout"] = timeout_ms / 1000
    shown = remove_credentials(uri)
    if parts.hostname is None or parts.hostname == "":
        if port is not None:
            raise UriError("port_requires_host")
        if scheme == "amqps":
            raise UnsupportedUri("amqps:// with no host: this broker is reached over plain AMQP")
        if local is None:
            raise UnsupportedUri(f"{shown} means this broker, but the worker was not told how to reach it")
        return Target(uri, shown, pika.ConnectionParameters(
            host=local.host, port=local.port, credentials=InternalCredentials(local.secret), **options), True)
    user = urllib.parse.unquote(parts.username) if parts.username is not None else "guest"
    password = urllib.parse.unquote(parts.password) if parts.password is not None else "guest"
    if "password" in query:
        password = query["password"][0]
    options["credentials"] = _credentials(query.get("auth_mechanism", ["plain", "amqplain"]), user, password)
    if scheme == "amqps":
        options["ssl_options"] = _tls(parts.hostname, query)
    return Target(uri, shown, pika.ConnectionParameters(host=parts.hostname, port=port or PORTS[scheme], **options),
                  False)


def _credentials(mechanisms: list[str], user: str, password: str) -> Any:
    """The first mechanism of the URI's list that pika has (amqp_client tries them in order
    against the server's offer; pika takes one, so the first one it can do)."""
    for mechanism in mechanisms:
        name = mechanism.rpartition(":")[2].lower()
        if name == "plain":
            return pika.PlainCredentials(user, password)
        if name == "external":
            return pika.credentials.ExternalCredentials()
    raise UnsupportedUri(f"auth_mechanism {','.join(mechanisms)}: this shovel's AMQP client (pika) "
                         "does PLAIN and EXTERNAL only")


def _tls(host: str, query: dict[str, list[str]]) -> pika.SSLOptions:
    if "depth" in query:
        raise UnsupportedUri("depth: Python's ssl module cannot limit the certificate chain's depth")
    if "fail_if_no_peer_cert" in query:
        raise UnsupportedUri("fail_if_no_peer_cert is a TLS server's option; a shovel is a TLS client")
    verify = query.get("verify", [None])[0]
    if verify not in (None, "verify_peer", "verify_none"):
        raise UnsupportedUri(f"verify={verify}: verify_peer or verify_none")
    sni = query.get("server_name_indication", [None])[0]
    # What the certificate is checked against, and sent as SNI when it is a name (Python's
    # ssl sends no SNI for an address, as Erlang adds none for one).
    server_hostname = None if sni == "disable" else sni or host
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    if verify == "verify_peer":
        context.check_hostname = sni != "disable"
        context.verify_mode = ssl.CERT_REQUIRED
        if "cacertfile" in query:
            context.load_verify_locations(cafile=query["cacertfile"][0])
        else:
            context.load_default_certs()
    else:
        log.warning("certificate chain verification is not enabled for the TLS connection to %s "
                    "(add verify=verify_peer to the URI)", host)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if "certfile" in query:
        key_password = query.get("password", [None])[0]
        context.load_cert_chain(query["certfile"][0], query.get("keyfile", [None])[0], key_password)
    return pika.SSLOptions(context, server_hostname)


#: RabbitMQ's human_readable_connection_error texts, by errno name.
_ERRNO_TEXTS = {
    "ECONNREFUSED": "connection to target host was refused (ECONNREFUSED)",
    "ECONNRESET": "connection to target host was reset by peer (ECONNRESET)",
    "ETIMEDOUT": "connection to target host timed out (ETIMEDOUT)",
    "EHOSTUNREACH": "target host is unreachable (EHOSTUNREACH)",
    "EACCES": "connection to target host failed with EACCES. This may be due to insufficient RabbitMQ "
              "process permissions or a reserved IP address used as destination",
}


def _causes(error: BaseException) -> list[Any]:
    """``error`` and what it wraps, outermost first: pika nests the socket's error in
    workflow errors (``exceptions``, ``exception``, ``args``), and gives some broker
    closes as text."""
    found: list[Any] = []
    pending: list[Any] = [error]
    while pending and len(found) < 32:
        item = pending.pop(0)
        if any(item is seen for seen in found):
            continue
        found.append(item)
        if isinstance(item, BaseException):
            pending.extend(getattr(item, "exceptions", None) or [])  # a workflow's attempts
            inner = getattr(item, "exception", None)  # a workflow phase's error
            if isinstance(inner, BaseException):
                pending.append(inner)
            pending.extend(a for a in item.args if isinstance(a, (BaseException, str)))
            if item.__cause__ is not None:
                pending.append(item.__cause__)
    return found


#: How pika words a socket error it wraps in text (StreamLostError).
_ERRNO_IN_TEXT = re.compile(r"Error\((\d+),")
#: How pika words a broker's connection.close it wraps in text (probable auth/access errors).
_CLOSED_TEXT = re.compile(r"ConnectionClosedByBroker: \((\d+)\) '(.*)'")


def _broker_close_text(code: int, text: str) -> str:
    if code == 530:  # amqp_client's not_allowed
        return "access to target virtual host was refused"
    return text  # e.g. 403: the broker's ACCESS_REFUSED text (RabbitMQ's auth_failure message)


def connection_error_text(error: BaseException) -> str:
    """Why a connection attempt failed, in RabbitMQ's words where it has some
    (rabbit_amqp091_shovel:human_readable_connection_error)."""
    for cause in _causes(error):
        if isinstance(cause, str):
            match = _CLOSED_TEXT.search(cause)
            if match:
                return _broker_close_text(int(match.group(1)), match.group(2))
        elif isinstance(cause, socket.gaierror):
            return "target hostname cannot be resolved (NXDOMAIN)"
        elif isinstance(cause, ssl.SSLError):
            return f"TLS: {cause.reason or cause}"
        elif isinstance(cause, OSError) and cause.errno in errno.errorcode:
            name = errno.errorcode[cause.errno]
            return _ERRNO_TEXTS.get(name, f"{name}: {cause.strerror}")
        elif isinstance(cause, (socket.timeout, TimeoutError)) or "Timeout" in type(cause).__name__:
            return _ERRNO_TEXTS["ETIMEDOUT"]
        elif isinstance(cause, pika.exceptions.ConnectionClosedByBroker):
            return _broker_close_text(cause.reply_code, cause.reply_text)
        elif isinstance(cause, pika.exceptions.StreamLostError):  # its socket error is only text
            number = _ERRNO_IN_TEXT.search(str(cause))
            name = errno.errorcode.get(int(number.group(1)), "") if number else ""
            return _ERRNO_TEXTS.get(name, "socket_closed_unexpectedly")  # amqp_client's reason for an EOF
    return f"{type(error).__name__}: {error}"
