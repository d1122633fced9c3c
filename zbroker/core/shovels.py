"""Dynamic shovels in the core: the ``shovel`` parameter component and its status table
(RabbitMQ's ``rabbit_shovel_parameters`` and ``rabbit_shovel_status``).

Rules of this module:
- A shovel is a runtime parameter (``parameters.py``) of component ``shovel``; its value
  is validated as RabbitMQ 3.10 validates it, every error listed in RabbitMQ's words and
  order (``validate``). AMQP 1.0 (``src-protocol``/``dest-protocol`` ``amqp10``) is
  refused: zbroker speaks AMQP 0-9-1 only.
- A URI with no host (``amqp://``, ``amqp:///vhost``) is this broker: the shovel's
  connections there are the broker's own (``users.INTERNAL_USER``, every permission),
  so the user who defines such a shovel must be allowed into that vhost.
- The core only records what should run (``wanted``, bumped ``version`` on each change)
  and what the workers report (``report``); the server's supervisor
  (``zbroker/shovel_supervisor.py``) starts and stops the worker processes. A shovel is
  ``starting`` from the moment it is defined until its worker says otherwise.
- A worker that reports ``done`` (``src-delete-after`` reached) ends its shovel: the
  broker clears the parameter, as RabbitMQ's worker does.
- Status rows are RabbitMQ 3.10's (``rabbit_shovel_mgmt_util:format``): ``node``,
  ``timestamp``, ``name``, ``vhost``, ``type``, ``state``; a running shovel's URIs,
  protocols, source and destination; a terminated one's ``reason`` as RabbitMQ prints it
  (``rabbitmq_reason``: ``"needed a restart"`` with its quotes). zbroker adds ``error``
  (the worker's own words for its last failure, also while ``starting``) and the
  worker's counters (``COUNTERS``).
"""
from __future__ import annotations

import datetime
import urllib.parse
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from zbroker.core.messaging.policies import erlang
from zbroker.core.management.parameter_validation import ParameterError, binary, proplist

if TYPE_CHECKING:
    from zbroker.core.messaging.timers import Clock

COMPONENT = "shovel"
ACK_MODES = ("no-ack", "on-publish", "on-confirm")
PROTOCOLS = ("amqp10", "amqp091")
#: What a worker counts, shown with its status (a zbroker extension of RabbitMQ's rows).
COUNTERS = ("moved", "acked", "nacked", "in_flight", "remaining")
#: The definition's keys a running shovel's status shows, under RabbitMQ's names.
_RUNNING_KEYS = {"src-queue": "src_queue", "src-exchange": "src_exchange", "src-exchange-key": "src_exchange_key",
                 "dest-queue": "dest_queue", "dest-exchange": "dest_exchange",
                 "dest-exchange-key": "dest_exchange_key"}
_PROPERTIES_STR = ("content_type", "content_encoding", "correlation_id", "reply_to", "expiration", "message_id",
                   "type", "user_id", "app_id", "cluster_id")
_PROPERTIES_NUM = ("delivery_mode", "priority", "timestamp")
#: The properties ``dest-publish-properties`` may set, in RabbitMQ's order.
PUBLISH_PROPERTIES = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
                      "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id",
                      "cluster_id")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _typed(test: Callable[[Any], bool], kind: str) -> Callable[[str, Any], str | None]:
    def check(key: str, value: Any) -> str | None:
        return None if test(value) else f"{key} should be {kind}, actually was {erlang(value)}"
    return check


_number = _typed(_is_number, "a number")
_boolean = _typed(lambda v: isinstance(v, bool), "boolean")


def _enum(options: tuple[str, ...]) -> Callable[[str, Any], str | None]:
    def check(key: str, value: Any) -> str | None:
        if not isinstance(value, str):
            return f"{key} should be binary, actually was {erlang(value)}"
        if value not in options:
            return f"{key} should be one of {erlang(list(options))}, actually was {erlang(value)}"
        return None
    return check


def _queue_name(key: str, value: Any) -> str | None:
    if not isinstance(value, str):
        return f"{key} should be binary, actually was {erlang(value)}"
    size = len(value.encode())
    return None if size <= 255 else f"{key} should be less than 255 bytes, actually was {size}"


def _delete_after(key: str, value: Any) -> str | None:
    if value in ("never", "queue-length") or (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return None
    return (f'{key} should be a number greater than or equal to 0, "never" or "queue-length", '
            f"actually was {erlang(value)}")


def _properties(key: str, value: Any) -> str | None:
    constraints = [(p, binary if p in _PROPERTIES_STR else _number, False) for p in PUBLISH_PROPERTIES]
    errors = proplist(key, constraints, value)
    return "\n".join(errors) if errors else None


def _arguments(key: str, value: Any) -> str | None:
    """``src-queue-args``/``dest-queue-args``: an object (each argument is checked when the
    worker declares the queue, as any declare)."""
    return None if isinstance(value, dict) else f"{key} not a list {erlang(value)}"


class UriError(ValueError):
    """amqp_uri's ``{error, {Reason, URI}}``; ``reason`` is the Erlang term, as text."""

    def __init__(self, reason: str, uri: str) -> None:
        super().__init__(f'{{{reason},"{uri}"}}')
        self.reason, self.uri = reason, uri

    def pretty(self, column: int) -> str:
        """The term as Erlang's ``~p`` prints it from ``column`` on: on one line if it ends
        within 80 columns, else one element a line, each under the first."""
        flat = str(self)
        if column + len(flat) <= 80:
            return flat
        return "{" + self.reason + ",\n" + " " * (column + 1) + f'"{self.uri}"' + "}"


@dataclass
class Endpoint:
    """A parsed shovel URI: ``host`` None is this broker."""
    uri: str
    host: str | None
    vhost: str
    tls: bool


def parse_uri(uri: str) -> Endpoint:
    """RabbitMQ's ``amqp_uri:parse``, enough to validate: the scheme, the vhost (the path,
    percent-decoded; none: ``/``). Raises ``UriError`` with amqp_uri's error term."""
    parsed = urllib.parse.urlsplit(uri)
    if not parsed.scheme:
        raise UriError("{unable_to_parse_uri,no_scheme}", uri)
    scheme = parsed.scheme.lower()
    if scheme not in ("amqp", "amqps"):
        raise UriError(f'{{unexpected_uri_scheme,"{scheme}"}}', uri)
    path = parsed.path[1:] if parsed.path.startswith("/") else parsed.path
    if "/" in path:
        raise UriError(f'{{invalid_vhost,"{path}"}}', uri)
    vhost = urllib.parse.unquote(path) if parsed.path else "/"
    return Endpoint(uri, parsed.hostname or None, vhost, scheme == "amqps")


class ShovelComponent:
    """The ``shovel`` parameter component: validation, what should run, what runs."""

    def __init__(self, clock: "Clock", may_connect: Callable[[str, str], bool],
                 node: Callable[[], str] = lambda: "zbroker@localhost") -> None:
        self.clock = clock
        #: The broker's node name, in each status row (RabbitMQ's ``node``).
        self.node = node
        #: (user, vhost) -> whether that user may open a connection there.
        self.may_connect = may_connect
        #: (vhost, name) -> the definition that should be running.
        self.wanted: dict[tuple[str, str], dict] = {}
        #: Bumped whenever ``wanted`` changes: the supervisor's cue.
        self.version = 0
        self.status: dict[tuple[str, str], ShovelStatus] = {}
        #: (vhost, name) -> how many times it was asked to restart (the supervisor
        #: restarts a worker whose count moved).
        self.restarts: dict[tuple[str, str], int] = {}

    # -- the component (``parameters.Component``) --------------------------------

    def validate(self, vhost: str, name: str, value: Any, user: str | None) -> None:
        errors = validation_errors(value, lambda uri_vhost: user is None or self.may_connect(user, uri_vhost), user,
                                   name)
        if errors:
            raise ParameterError("\n".join(errors))

    def changed(self, vhost: str, name: str, value: Any | None) -> None:
        key = (vhost, name)
        if value is None:
            self.wanted.pop(key, None)
            self.status.pop(key, None)
            self.restarts.pop(key, None)
        else:
            self.wanted[key] = value
            self.status[key] = ShovelStatus(vhost, name, timestamp=self.clock.now)
        self.version += 1

    def restart(self, vhost: str, name: str) -> None:
        """Start a shovel's worker again (RabbitMQ's ``restart_shovel``)."""
        key = (vhost, name)
        self.restarts[key] = self.restarts.get(key, 0) + 1
        self.status[key] = ShovelStatus(vhost, name, timestamp=self.clock.now)
        self.version += 1

    # -- what the workers say ----------------------------------------------------

    def report(self, vhost: str, name: str, report: dict, now: float) -> bool:
        """A worker's status line; True if it says the shovel is done (``src-delete-after``)."""
        status = self.status.get((vhost, name))
        if status is None:  # cleared meanwhile
            return False
        if report.get("state") == "running":
            report = {**report, "info": running_info(self.wanted[(vhost, name)], report)}
        status.update(report, now)
        return bool(report.get("done"))

    def rows(self, vhost: str | None = None) -> list[dict]:
        """``/api/shovels`` rows, RabbitMQ's shape, by name."""
        node = self.node()
        return [{"node": node, **s.view()} for key, s in sorted(self.status.items())
                if vhost is None or key[0] == vhost]


@dataclass
class ShovelStatus:
    vhost: str
    name: str
    state: str = "starting"
    reason: str | None = None
    info: dict = field(default_factory=dict)
    counters: dict = field(default_factory=dict)
    timestamp: float = 0.0

    def update(self, report: dict, now: float) -> None:
        state = report.get("state")
        if state in ("starting", "running", "terminated") and state != self.state or "error" in report:
            self.state = state or self.state
            self.reason = report.get("error")
            self.info = dict(report.get("info") or {}) if self.state == "running" else {}
            self.timestamp = now
        counters = {key: value for key, value in report.items() if key in COUNTERS and isinstance(value, int)}
        if counters:
            self.counters.update(counters)

    def view(self) -> dict:
        at = datetime.datetime.fromtimestamp(self.timestamp)  # (RabbitMQ's local time, its layout)
        row: dict[str, Any] = {"timestamp": f"{at:%Y-%m-%d} {at.hour}:{at:%M:%S}",
                               "name": self.name, "vhost": self.vhost, "type": "dynamic", "state": self.state}
        if self.state == "running":
            row.update(self.info)
        elif self.state == "terminated":
            row["reason"] = rabbitmq_reason(self.reason or "")
        if self.reason:
            row["error"] = self.reason
        if self.counters:
            row.update(self.counters)
        return row


#: How RabbitMQ 3.10's worker reports a failure in the status (``rabbit_shovel_worker:terminate``),
#: by how zbroker's worker words it: a channel or connection a broker closed (404, 406, ...)
#: and a cancelled consumer are both "needed a restart" there (the code and text go only to
#: its log), a heartbeat timeout "heartbeat timeout".
_RABBITMQ_REASONS = (("one of its connections closed with code ", "needed a restart"),
                     ("needed a restart", "needed a restart"),
                     ("detected missed heartbeats", "heartbeat timeout"),
                     ("destination connection failed", "destination connection failed"),
                     ("source connection failed", "source connection failed"))


def rabbitmq_reason(error: str) -> str:
    """A terminated shovel's ``reason`` as RabbitMQ's status shows it: its term printed
    with ``~p`` (a string in double quotes). Failures RabbitMQ has no words for keep
    zbroker's, quoted the same way; the row's ``error`` always has zbroker's own."""
    term = next((said for start, said in _RABBITMQ_REASONS if error.startswith(start)), error)
    return '"' + term.replace("\\", "\\\\").replace('"', '\\"') + '"'


def running_info(definition: dict, report: dict) -> dict:
    """A running shovel's fields in ``/api/shovels`` (RabbitMQ 3.10's ``{running, Props}``):
    the URIs the worker connected to (no passwords), the protocols, source and destination."""
    info = {"src_uri": report.get("src", ""), "src_protocol": "amqp091", "dest_protocol": "amqp091",
            "dest_uri": report.get("dest", "")}
    info.update({name: definition[key] for key, name in _RUNNING_KEYS.items() if key in definition})
    if "src-exchange" in definition:  # (RabbitMQ's source_endpoint: the key, "" by default)
        info["src_exchange_key"] = definition.get("src-exchange-key", "")
    return info


def validation_errors(value: Any, may_connect: Callable[[str], bool], user: str | None,
                      name: str = COMPONENT) -> list[str]:
    """Every error RabbitMQ 3.10 finds in a shovel's value, in its order (``validate``:
    source, destination, then the keys' checks newest first). ``name`` is the shovel's:
    RabbitMQ's texts name it (``Key "src-uri" not found in my-shovel``)."""
    if not isinstance(value, dict):
        return [f"{name} not a list {erlang(value)}"]
    errors: list[str] = []
    src_proto, dest_proto = value.get("src-protocol", "amqp091"), value.get("dest-protocol", "amqp091")
    if "amqp10" in (src_proto, dest_proto):
        return ["AMQP 1.0 shovels are not implemented in zbroker: src-protocol and dest-protocol must be amqp091"]
    src_x, src_q = "src-exchange" in value, "src-queue" in value
    if not (src_x or src_q):
        errors.append("Must specify 'src-exchange' or 'src-queue'")
    elif src_x and src_q:
        errors.append("Cannot specify 'src-exchange' and 'src-queue'")
    delete_after = value.get("src-delete-after", value.get("delete-after"))
    if isinstance(delete_after, int) and not isinstance(delete_after, bool) and value.get("ack-mode") == "no-ack":
        errors.append("Cannot specify 'no-ack' and numerical 'delete-after'")
    if "dest-exchange" in value and "dest-queue" in value:
        errors.append("Cannot specify 'dest-exchange' and 'dest-queue'")
    uri = _uri_check(may_connect, user)
    constraints = [
        ("reconnect-delay", _number, False), ("ack-mode", _enum(ACK_MODES), False),
        ("src-protocol", _enum(PROTOCOLS), False), ("dest-protocol", _enum(PROTOCOLS), False),
        ("src-uri", uri, True), ("src-exchange", binary, False), ("src-exchange-key", binary, False),
        ("src-queue", binary, False), ("src-queue-args", _arguments, False),
        ("src-consumer-args", _arguments, False), ("prefetch-count", _number, False),
        ("src-prefetch-count", _number, False), ("delete-after", _delete_after, False),
        ("src-delete-after", _delete_after, False),
        ("dest-uri", uri, True), ("dest-exchange", binary, False), ("dest-exchange-key", binary, False),
        ("dest-queue", _queue_name, False), ("dest-queue-args", _arguments, False),
        ("add-forward-headers", _boolean, False), ("add-timestamp-header", _boolean, False),
        ("dest-add-forward-headers", _boolean, False), ("dest-add-timestamp-header", _boolean, False),
        ("publish-properties", _properties, False), ("dest-publish-properties", _properties, False),
    ]
    return errors + proplist(name, constraints, value)


def _uri_check(may_connect: Callable[[str], bool], user: str | None) -> Callable[[str, Any], str | None]:
    def check(key: str, value: Any) -> str | None:
        for uri in value if isinstance(value, list) else [value]:
            if not isinstance(uri, str):  # (RabbitMQ: not a binary, so it must be a list)
                return f"{key} should be list, actually was {erlang(uri)}"
            try:
                endpoint = parse_uri(uri)
            except UriError as exc:
                said = f'"{uri}" not a valid URI: '
                return said + exc.pretty(len(said))
            if endpoint.host is None and not may_connect(endpoint.vhost):
                return f'user "{user}" may not connect to vhost "{endpoint.vhost}"'
        return None
    return check
