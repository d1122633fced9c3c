"""What a shovelled message becomes on the destination: its exchange, routing key and
properties (rabbit_shovel_parameters:parse_amqp091_dest, rabbit_shovel_util).

Rules, RabbitMQ 3.10's:
1. Routing: ``dest-queue`` publishes to the default exchange with the queue's name as the
   routing key; otherwise ``dest-exchange`` (else the exchange the message came from)
   with ``dest-exchange-key`` (else the message's own routing key).
2. Properties cross as they came, every one of them (``user_id`` too: the destination
   checks it against the shovel's login, as it would any publisher's). Then, in this
   order: ``dest-publish-properties`` overrides; ``dest-add-forward-headers`` prepends
   one table to the ``x-shovelled`` array header (a message shovelled twice carries two,
   newest first; a non-array ``x-shovelled`` is moved into ``x-invalid-headers``, as
   rabbit_basic:prepend_table_header does); ``dest-add-timestamp-header`` sets
   ``x-shovelled-timestamp`` to the time in seconds.
3. The ``x-shovelled`` table: shovelled-by, shovel-type (dynamic), shovel-name,
   shovel-vhost, src-uri, dest-uri (without credentials), then src-queue or
   src-exchange + src-exchange-key, then those of dest-exchange, dest-exchange-key,
   dest-queue that were given; every value a string.
4. With nothing to change, the delivered properties object is published as is: pika
   makes a new one per delivery, and copying it would cost every message.
"""
from __future__ import annotations

import copy
import time
from typing import Any, Callable

import pika

from zbroker.shovel.definition import Shovel

FORWARD_HEADER = "x-shovelled"
TIMESTAMP_HEADER = "x-shovelled-timestamp"
INVALID_HEADERS = "x-invalid-headers"


class Forwarder:
    """Routing and properties for one link (the URIs are the ones it connected to)."""

    def __init__(self, shovel: Shovel, src_uri: str, dest_uri: str, clock: Callable[[], float] = time.time) -> None:
        dest = shovel.destination
        if dest.queue is not None:
            self.exchange: str | None = ""
            self.routing_key: str | None = dest.queue
        else:
            self.exchange, self.routing_key = dest.exchange, dest.exchange_key
        self.overrides = dict(dest.publish_properties)
        self.table = forward_table(shovel, src_uri, dest_uri) if dest.add_forward_headers else None
        self.timestamp = dest.add_timestamp_header
        self.clock = clock
        self.changes_properties = bool(self.overrides or self.table is not None or self.timestamp)

    def route(self, exchange: str, routing_key: str) -> tuple[str, str]:
        return (exchange if self.exchange is None else self.exchange,
                routing_key if self.routing_key is None else self.routing_key)

    def properties(self, delivered: pika.BasicProperties) -> pika.BasicProperties:
        if not self.changes_properties:
            return delivered
        props = copy.copy(delivered)
        for key, value in self.overrides.items():
            setattr(props, key, value)
        if self.table is not None or self.timestamp:
            headers = dict(props.headers or {})
            if self.table is not None:
                prepend_table(headers, FORWARD_HEADER, self.table)
            if self.timestamp:
                headers[TIMESTAMP_HEADER] = int(self.clock())
            props.headers = headers
        return props


def forward_table(shovel: Shovel, src_uri: str, dest_uri: str) -> dict[str, str]:
    """The table a forwarded message gains in ``x-shovelled`` (rule 3)."""
    src, dest = shovel.source, shovel.destination
    table = {"shovelled-by": shovel.cluster_name, "shovel-type": "dynamic", "shovel-name": shovel.name,
             "shovel-vhost": shovel.vhost, "src-uri": src_uri, "dest-uri": dest_uri}
    if src.queue is not None:
        table["src-queue"] = src.queue
    else:
        table["src-exchange"] = src.exchange or ""
        table["src-exchange-key"] = src.exchange_key
    for key, value in (("dest-exchange", dest.exchange), ("dest-exchange-key", dest.exchange_key),
                       ("dest-queue", dest.queue)):
        if value is not None:
            table[key] = value
    return table


def prepend_table(headers: dict[str, Any], name: str, table: dict[str, Any]) -> None:
    """rabbit_basic:prepend_table_header: ``table`` first in the array ``headers[name]``."""
    existing = headers.get(name)
    if isinstance(existing, list):
        headers[name] = [table, *existing]
        return
    headers[name] = [table]
    if existing is not None:  # not an array: kept aside, as RabbitMQ's set_invalid_header
        invalid = headers.get(INVALID_HEADERS)
        invalid = dict(invalid) if isinstance(invalid, dict) else {}
        invalid[name] = [existing, *invalid.get(name, [])] if isinstance(invalid.get(name), list) else [existing]
        headers[INVALID_HEADERS] = invalid
