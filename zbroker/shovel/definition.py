"""A shovel's definition as the worker runs it: RabbitMQ 3.10's dynamic shovel keys read
once, defaults filled in (``rabbit_shovel_parameters:parse``).

Rules:
- The broker validated the definition already (``zbroker/core/shovels.py``); this module
  only refuses what would make the worker misbehave (a missing URI, a wrong type), with
  a ``DefinitionError`` whose text says which key. Unknown keys are ignored here.
- Defaults and precedence are RabbitMQ's: ``src-delete-after`` over the deprecated
  ``delete-after``, ``src-prefetch-count`` over ``prefetch-count`` (1000),
  ``dest-add-forward-headers`` over ``add-forward-headers``, ``dest-publish-properties``
  over ``publish-properties``, ``ack-mode`` ``on-confirm``, ``reconnect-delay`` 5 s,
  ``src-exchange-key`` "" (``rabbit_shovel_parameters.erl``, ``rabbit_shovel.hrl``).
- ``src-protocol``/``dest-protocol`` must be ``amqp091``: zbroker has no AMQP 1.0.
- ``reconnect-delay``: any positive number of seconds means "try again after that long";
  0 (or less) means one attempt. (RabbitMQ 3.10 restarts only for a positive *integer*;
  a fraction there silently means "never": we take it at its word instead.)
- Optional ``cluster_name`` in the input (besides the contract's keys) is what forward
  headers say in ``shovelled-by``; the default is zbroker's node name.
- Everything here is plain data (frozen dataclasses): the link (``link.py``) decides.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

AckMode = Literal["on-confirm", "on-publish", "no-ack"]
ACK_MODES: tuple[AckMode, ...] = ("on-confirm", "on-publish", "no-ack")
#: RabbitMQ's ?DEFAULT_PREFETCH (rabbit_shovel.hrl).
DEFAULT_PREFETCH = 1000
#: RabbitMQ's ?DEFAULT_RECONNECT_DELAY, in seconds (rabbit_shovel.hrl).
DEFAULT_RECONNECT_DELAY_S = 5
#: zbroker's node name (``Broker.node_name``), RabbitMQ's cluster name by default.
DEFAULT_CLUSTER_NAME = "zbroker@localhost"
#: The basic properties ``dest-publish-properties`` may set (RabbitMQ's validate_properties).
PUBLISH_PROPERTIES = ("content_type", "content_encoding", "delivery_mode", "priority", "correlation_id",
                      "reply_to", "expiration", "message_id", "timestamp", "type", "user_id", "app_id",
                      "cluster_id")


class DefinitionError(ValueError):
    """The definition cannot be run; the text names the key."""


@dataclass(frozen=True)
class Local:
    """How to reach the broker this shovel belongs to (URIs with no host). In the input
    ``secret`` is hex (the server's secret is random bytes); here it is those bytes."""
    host: str
    port: int
    secret: bytes


@dataclass(frozen=True)
class Source:
    uris: tuple[str, ...]
    queue: str | None                # src-queue, or None with src-exchange
    exchange: str | None
    exchange_key: str
    queue_args: dict[str, Any]
    consumer_args: dict[str, Any]
    prefetch_count: int
    #: "never", "queue-length" or a count.
    delete_after: str | int


@dataclass(frozen=True)
class Destination:
    uris: tuple[str, ...]
    queue: str | None
    exchange: str | None
    exchange_key: str | None
    queue_args: dict[str, Any]
    publish_properties: dict[str, Any]
    add_forward_headers: bool
    add_timestamp_header: bool


@dataclass(frozen=True)
class Shovel:
    vhost: str
    name: str
    source: Source
    destination: Destination
    ack_mode: AckMode
    #: Seconds between attempts; 0 (or less) means one attempt only (RabbitMQ's
    #: ``temporary`` child in rabbit_shovel_dyn_worker_sup).
    reconnect_delay_s: float
    local: Local | None
    #: ``shovelled-by`` in forward headers: RabbitMQ's cluster name.
    cluster_name: str = field(default=DEFAULT_CLUSTER_NAME)

    @property
    def reconnects(self) -> bool:
        return self.reconnect_delay_s > 0


def _get(definition: dict, key: str, legacy: str | None, default: Any) -> Any:
    if key in definition:
        return definition[key]
    if legacy is not None and legacy in definition:
        return definition[legacy]
    return default


def _uris(definition: dict, key: str) -> tuple[str, ...]:
    value = definition.get(key)
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise DefinitionError(f"{key} should be a URI or a non-empty list of URIs, actually was {value!r}")


def _text(definition: dict, key: str, default: str | None = None) -> str | None:
    value = definition.get(key, default)
    if value is not None and not isinstance(value, str):
        raise DefinitionError(f"{key} should be a string, actually was {value!r}")
    return value


def _table(value: Any, key: str) -> dict[str, Any]:
    if value is None:
        return {}
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        return {str(k): v for k, v in value}  # a proplist, as RabbitMQ also takes
    raise DefinitionError(f"{key} should be an object, actually was {value!r}")


def _boolean(definition: dict, key: str, legacy: str) -> bool:
    value = _get(definition, key, legacy, False)
    if not isinstance(value, bool):
        raise DefinitionError(f"{key} should be boolean, actually was {value!r}")
    return value


def _count(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DefinitionError(f"{key} should be a number greater than or equal to 0, actually was {value!r}")
    return value


def parse_local(value: Any) -> Local | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise DefinitionError(f"local should be an object, actually was {value!r}")
    host, port, secret = value.get("host"), value.get("port"), value.get("secret")
    if not isinstance(host, str) or isinstance(port, bool) or not isinstance(port, int) or not isinstance(secret, str):
        raise DefinitionError("local should be {\"host\": str, \"port\": int, \"secret\": str}")
    try:
        raw = bytes.fromhex(secret)
    except ValueError:
        raise DefinitionError("local.secret should be the secret's bytes in hex") from None
    return Local(host, port, raw)


def parse(config: dict) -> Shovel:
    """The worker's input (``{"vhost", "name", "definition", "local"}``) as a ``Shovel``."""
    if not isinstance(config, dict):
        raise DefinitionError("the worker's input should be a JSON object")
    definition = config.get("definition")
    if not isinstance(definition, dict):
        raise DefinitionError(f"definition should be an object, actually was {definition!r}")
    vhost, name = config.get("vhost", "/"), config.get("name")
    if not isinstance(vhost, str) or not isinstance(name, str):
        raise DefinitionError("vhost and name should be strings")
    for key in ("src-protocol", "dest-protocol"):
        if definition.get(key, "amqp091") != "amqp091":
            raise DefinitionError(f"{key} {definition[key]!r} is not supported: zbroker shovels speak amqp091 only")
    ack_mode = definition.get("ack-mode", "on-confirm")
    if ack_mode not in ACK_MODES:
        raise DefinitionError(f"ack-mode should be one of {list(ACK_MODES)}, actually was {ack_mode!r}")
    delay = definition.get("reconnect-delay", DEFAULT_RECONNECT_DELAY_S)
    if isinstance(delay, bool) or not isinstance(delay, (int, float)):
        raise DefinitionError(f"reconnect-delay should be a number, actually was {delay!r}")
    cluster_name = config.get("cluster_name", DEFAULT_CLUSTER_NAME)
    if not isinstance(cluster_name, str):
        raise DefinitionError("cluster_name should be a string")
    return Shovel(vhost=vhost, name=name, source=_source(definition), destination=_destination(definition),
                  ack_mode=ack_mode, reconnect_delay_s=float(delay), local=parse_local(config.get("local")),
                  cluster_name=cluster_name)


def _source(definition: dict) -> Source:
    queue, exchange = _text(definition, "src-queue"), _text(definition, "src-exchange")
    if (queue is None) == (exchange is None):
        raise DefinitionError("Must specify 'src-exchange' or 'src-queue'" if queue is None
                              else "Cannot specify 'src-exchange' and 'src-queue'")
    delete_after = _get(definition, "src-delete-after", "delete-after", "never")
    if delete_after not in ("never", "queue-length"):
        delete_after = _count(delete_after, "src-delete-after")
    return Source(
        uris=_uris(definition, "src-uri"), queue=queue, exchange=exchange,
        exchange_key=_text(definition, "src-exchange-key", "") or "",
        queue_args=_table(definition.get("src-queue-args"), "src-queue-args"),
        consumer_args=_table(definition.get("src-consumer-args"), "src-consumer-args"),
        prefetch_count=_count(_get(definition, "src-prefetch-count", "prefetch-count", DEFAULT_PREFETCH),
                              "src-prefetch-count"),
        delete_after=delete_after)


def _destination(definition: dict) -> Destination:
    queue, exchange = _text(definition, "dest-queue"), _text(definition, "dest-exchange")
    if queue is not None and exchange is not None:
        raise DefinitionError("Cannot specify 'dest-exchange' and 'dest-queue'")
    properties = _table(_get(definition, "dest-publish-properties", "publish-properties", None),
                        "dest-publish-properties")
    unknown = sorted(set(properties) - set(PUBLISH_PROPERTIES))
    if unknown:
        raise DefinitionError(f"dest-publish-properties: unknown properties {unknown}")
    for key in ("delivery_mode", "priority", "timestamp"):  # JSON numbers; AMQP wants integers
        value = properties.get(key)
        if isinstance(value, float) and value.is_integer():
            properties[key] = int(value)
        elif value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise DefinitionError(f"dest-publish-properties: {key} should be an integer, actually was {value!r}")
    return Destination(
        uris=_uris(definition, "dest-uri"), queue=queue, exchange=exchange,
        exchange_key=_text(definition, "dest-exchange-key"),
        queue_args=_table(definition.get("dest-queue-args"), "dest-queue-args"),
        publish_properties=properties,
        add_forward_headers=_boolean(definition, "dest-add-forward-headers", "add-forward-headers"),
        add_timestamp_header=_boolean(definition, "dest-add-timestamp-header", "add-timestamp-header"))
