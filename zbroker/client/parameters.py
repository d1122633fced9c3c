"""Connection parameters with pika's names and defaults (the port is zbroker's, 5680)."""
from __future__ import annotations

import os
import warnings
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlparse

from zbroker import DEFAULT_PORT

_DEFAULT = object()
DEFAULT_HOST = "localhost"
DEFAULT_VIRTUAL_HOST = "/"
SCHEMES = ("zbroker", "amqp", "tcp")
#: AMQP 0-9-1's ports (plain, TLS): a program ported from pika often still names one.
AMQP_PORTS = (5672, 5671)


def amqp_server_text(endpoint: str, host: str) -> str:
    """Why ``zbroker.client`` cannot use an AMQP server it was pointed at, and what to do."""
    in_url = f"[{host}]" if ":" in host else host
    return (f"{endpoint} is an AMQP 0-9-1 server (RabbitMQ's protocol), and zbroker.client speaks the "
            f"zbroker wire, on the broker's zbroker port ({DEFAULT_PORT} unless `zbroker serve --bind` "
            f"says otherwise): connect there (e.g. zbroker://{in_url}:{DEFAULT_PORT}/ or "
            f"ConnectionParameters('{host}', {DEFAULT_PORT})), or use real pika over AMQP against "
            "`zbroker serve --amqp`")


def amqp_port_hint(port: int) -> str:
    """A word on a failed connection to one of AMQP's ports ('' for another port)."""
    if port not in AMQP_PORTS:
        return ""
    return (f" ({port} is AMQP's port; zbroker.client speaks the zbroker wire, on the broker's zbroker "
            f"port, {DEFAULT_PORT} by default; real pika speaks AMQP to `zbroker serve --amqp`)")


class PlainCredentials:
    TYPE = "PLAIN"

    def __init__(self, username: str, password: str, erase_on_connect: bool = False) -> None:
        self.username = username
        self.password = password
        self.erase_on_connect = erase_on_connect

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, PlainCredentials) and other.username == self.username
                and other.password == self.password)

    def __repr__(self) -> str:
        return f"PlainCredentials(username={self.username!r})"


class ConnectionParameters:
    """Where and how to connect. Options pika has that mean nothing here (frame_max,
    locale, tcp_options) are accepted and ignored so programs still run; ``ssl_options``
    is refused (TLS is AMQP's; the zbroker wire is encrypted with CURVE instead).

    Extensions beyond pika: ``curve_server_key``, the broker's CURVE public key (its
    40-character Z85 text or the path of its ``.key`` file): the connection is then
    encrypted and the broker authenticated (``zbroker serve --curve-secret-key``);
    ``curve_client_key_file``, this client's ``.key_secret`` file, where the broker
    allows only listed client keys (otherwise a key pair is made per connection)."""

    DEFAULT_HOST = DEFAULT_HOST
    DEFAULT_PORT = DEFAULT_PORT
    DEFAULT_VIRTUAL_HOST = DEFAULT_VIRTUAL_HOST
    DEFAULT_CHANNEL_MAX = 65535
    DEFAULT_CONNECTION_ATTEMPTS = 1
    DEFAULT_RETRY_DELAY = 2.0
    DEFAULT_SOCKET_TIMEOUT = 10.0
    DEFAULT_STACK_TIMEOUT = 15.0
    DEFAULT_HEARTBEAT_TIMEOUT = None
    DEFAULT_BLOCKED_CONNECTION_TIMEOUT = None

    def __init__(self, host: Any = _DEFAULT, port: Any = _DEFAULT, virtual_host: Any = _DEFAULT,
                 credentials: Any = _DEFAULT, channel_max: Any = _DEFAULT, frame_max: Any = _DEFAULT,
                 heartbeat: Any = _DEFAULT, ssl_options: Any = _DEFAULT,
                 connection_attempts: Any = _DEFAULT, retry_delay: Any = _DEFAULT,
                 socket_timeout: Any = _DEFAULT, stack_timeout: Any = _DEFAULT, locale: Any = _DEFAULT,
                 blocked_connection_timeout: Any = _DEFAULT, client_properties: Any = _DEFAULT,
                 tcp_options: Any = _DEFAULT, curve_server_key: str | bytes | None = None,
                 curve_client_key_file: str | None = None, **kwargs: Any) -> None:
        if "heartbeat_interval" in kwargs:  # pika 0.x name
            warnings.warn("heartbeat_interval is deprecated, use heartbeat", DeprecationWarning, stacklevel=2)
            if heartbeat is _DEFAULT:
                heartbeat = kwargs.pop("heartbeat_interval")
        kwargs.pop("heartbeat_interval", None)
        if kwargs:
            raise TypeError(f"unexpected keyword arguments: {sorted(kwargs)}")

        def pick(value: Any, default: Any) -> Any:
            return default if value is _DEFAULT else value

        # ZBROKER_HOST / ZBROKER_PORT move the defaults only, so a program that names
        # no broker can be pointed at one without editing it.
        self.host: str = pick(host, os.environ.get("ZBROKER_HOST") or DEFAULT_HOST)
        self.port: int = int(pick(port, os.environ.get("ZBROKER_PORT") or DEFAULT_PORT))
        self.virtual_host: str = pick(virtual_host, DEFAULT_VIRTUAL_HOST)
        self.credentials: PlainCredentials = pick(credentials, PlainCredentials("guest", "guest"))
        self.channel_max: int = pick(channel_max, self.DEFAULT_CHANNEL_MAX)
        self.frame_max = pick(frame_max, 131072)
        self.heartbeat: int | Callable[..., int] | None = pick(heartbeat, None)
        self.ssl_options = pick(ssl_options, None)
        self.connection_attempts: int = pick(connection_attempts, self.DEFAULT_CONNECTION_ATTEMPTS)
        self.retry_delay: float = pick(retry_delay, self.DEFAULT_RETRY_DELAY)
        self.socket_timeout: float = pick(socket_timeout, self.DEFAULT_SOCKET_TIMEOUT)
        self.stack_timeout: float = pick(stack_timeout, self.DEFAULT_STACK_TIMEOUT)
        self.locale = pick(locale, "en_US")
        self.blocked_connection_timeout = pick(blocked_connection_timeout, None)
        self.client_properties: dict | None = pick(client_properties, None)
        self.tcp_options = pick(tcp_options, None)
        self.curve_server_key: bytes | None = None
        self.curve_client_keys: tuple[bytes, bytes] | None = None
        if self.ssl_options is not None:
            raise ValueError("ssl_options: TLS is for AMQP (amqps://); the zbroker wire is encrypted with "
                             "CURVE: give curve_server_key (the broker's public key)")
        if curve_server_key is not None or curve_client_key_file is not None:
            self._curve(curve_server_key, curve_client_key_file)
        self._validate()

    def _curve(self, server_key: str | bytes | None, client_key_file: str | None) -> None:
        from zbroker.curve import KeyError_, load_secret_key
        from zbroker.curve import server_key as read_server_key
        if server_key is None:
            raise ValueError("curve_client_key_file needs curve_server_key")
        try:
            self.curve_server_key = read_server_key(server_key)
            if client_key_file is not None:
                self.curve_client_keys = load_secret_key(client_key_file)
        except KeyError_ as exc:
            raise ValueError(f"curve: {exc}") from None

    def _validate(self) -> None:
        if not isinstance(self.host, str) or not self.host:
            raise ValueError(f"host must be a non-empty str, got {self.host!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be 1..65535, got {self.port}")
        if not isinstance(self.credentials, PlainCredentials):
            raise TypeError("credentials must be a PlainCredentials")
        hb = self.heartbeat
        if hb is not None and not callable(hb) and (not isinstance(hb, int) or hb < 0):
            raise ValueError(f"heartbeat must be a non-negative int, None or a callable, got {hb!r}")
        if not isinstance(self.connection_attempts, int) or self.connection_attempts < 1:
            raise ValueError("connection_attempts must be an int >= 1")
        for name in ("retry_delay", "socket_timeout", "stack_timeout"):
            value = getattr(self, name)
            if value is None and name != "retry_delay":
                continue  # pika: None means no timeout
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value!r}")

    @property
    def endpoint(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    def __repr__(self) -> str:
        return f"<ConnectionParameters host={self.host} port={self.port} virtual_host={self.virtual_host}>"


class URLParameters(ConnectionParameters):
    """``zbroker://user:pass@host:port/vhost?heartbeat=2``; ``amqp://`` URLs are read
    the same way, so a RabbitMQ URL ports by changing only its port."""

    _QUERY_TYPES: dict[str, Callable[[str], Any]] = {
        "heartbeat": int, "connection_attempts": int, "retry_delay": float,
        "socket_timeout": float, "stack_timeout": float, "channel_max": int,
        "blocked_connection_timeout": float, "curve_server_key": str, "curve_client_key_file": str,
    }

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme == "amqps":
            raise ValueError(f"amqps:// is AMQP over TLS, for real pika against `zbroker serve --amqps`; "
                             f"zbroker.client speaks the zbroker wire (zbroker://host:{DEFAULT_PORT}/), "
                             "encrypted with CURVE (curve_server_key)")
        if parsed.scheme not in SCHEMES:
            raise ValueError(f"URL scheme must be one of {SCHEMES}, got {parsed.scheme!r}")
        kwargs: dict[str, Any] = {}
        if parsed.hostname:
            kwargs["host"] = parsed.hostname
        if parsed.port:
            kwargs["port"] = parsed.port
        if parsed.username:
            kwargs["credentials"] = PlainCredentials(unquote(parsed.username), unquote(parsed.password or ""))
        if parsed.path and parsed.path != "/":
            kwargs["virtual_host"] = unquote(parsed.path[1:])
        for key, values in parse_qs(parsed.query).items():
            if key in self._QUERY_TYPES:
                kwargs[key] = self._QUERY_TYPES[key](values[-1])
        super().__init__(**kwargs)
