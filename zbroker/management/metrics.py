"""Prometheus metrics with rabbitmq_prometheus's names and labels, from management views.

``/metrics`` is aggregated, as rabbitmq_prometheus's default: one sample per metric for
the whole broker. ``/metrics/per-object`` adds the per-queue (``vhost``, ``queue``) and
per-channel (``channel``) series, as RabbitMQ's endpoint of that name. The exposition
text is prometheus_client's, so escaping and format follow the reference library.
"""
from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from zbroker import __version__

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Ask = Callable[..., Awaitable[Any]]

#: rabbitmq_global_*_total <- overview message_stats (sums where RabbitMQ splits finer).
GLOBAL_COUNTERS: dict[str, tuple[str, ...]] = {
    "messages_received": ("publish",),
    "messages_routed": (),  # publish - unroutable, below
    "messages_unroutable_dropped": ("drop_unroutable",),
    "messages_unroutable_returned": ("return_unroutable",),
    "messages_confirmed": ("confirm",),
    "messages_delivered": ("deliver", "deliver_no_ack", "get", "get_no_ack"),
    "messages_delivered_consume_manual_ack": ("deliver",),
    "messages_delivered_consume_auto_ack": ("deliver_no_ack",),
    "messages_delivered_get_manual_ack": ("get",),
    "messages_delivered_get_auto_ack": ("get_no_ack",),
    "messages_get_empty": ("get_empty",),
    "messages_redelivered": ("redeliver",),
    "messages_acknowledged": ("ack",),
}
#: rabbitmq_channel_*_total <- a channel's message_stats.
CHANNEL_COUNTERS: dict[str, tuple[str, ...]] = {
    "messages_published": ("publish",), "messages_confirmed": ("confirm",),
    "messages_unroutable_dropped": ("drop_unroutable",),
    "messages_unroutable_returned": ("return_unroutable",),
    "messages_delivered": ("deliver_no_ack",), "messages_delivered_ack": ("deliver",),
    "get": ("get_no_ack",), "get_ack": ("get",), "get_empty": ("get_empty",),
    "messages_redelivered": ("redeliver",), "messages_acked": ("ack",),
}
#: rabbitmq_* gauges <- a queue's view. A queue whose view lacks the field has no sample
#: (rabbitmq_prometheus emits none for a key the queue's type does not report: a stream
#: has no paged-out messages or memory here). ``stream_segments`` is RabbitMQ's from
#: 3.13.3 (a stream's log segments), as a gauge: retention lowers it, and
#: prometheus_client would name a counter ``_total``.
QUEUE_GAUGES: dict[str, str] = {
    "queue_messages_ready": "messages_ready", "queue_messages_unacked": "messages_unacknowledged",
    "queue_messages": "messages", "queue_consumers": "consumers",
    "queue_messages_bytes": "message_bytes", "queue_messages_ready_bytes": "message_bytes_ready",
    "queue_messages_paged_out": "messages_paged_out", "queue_process_memory_bytes": "memory",
    "stream_segments": "segments",
}


def _sum(stats: dict, keys: Iterable[str]) -> int:
    return sum(stats.get(k, 0) for k in keys)


async def exposition(ask: Ask, per_object: bool) -> bytes:
    overview = await ask("overview")
    queues = await ask("list", kind="queues")
    channels = await ask("list", kind="channels")
    families = [*broker_families(overview, queues, channels, aggregate=not per_object)]
    if per_object:
        families += [*queue_families(queues), *channel_families(channels)]
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed(families))
    return generate_latest(registry)


class _Fixed:
    """A collector of metrics already read (this request's)."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> list[Metric]:
        return self.families


def gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"rabbitmq_{name}", doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def broker_families(overview: dict, queues: list[dict], channels: list[dict],
                    aggregate: bool = True) -> Iterable[Metric]:
    """Broker-wide metrics; with ``aggregate``, queue and channel metrics summed (the
    per-object endpoint has them per object instead, under the same names)."""
    totals = overview["object_totals"]
    stats = overview["message_stats"]
    yield gauge("build_info", "zbroker version", 1, {"product_version": __version__, "product": "zbroker"})
    yield gauge("identity_info", "Node name", 1, {"rabbitmq_node": overview["node"],
                                                   "rabbitmq_cluster": overview["cluster_name"]})
    yield gauge("connections", "Connections currently open", totals["connections"])
    yield gauge("channels", "Channels currently open", totals["channels"])
    yield gauge("consumers", "Consumers currently connected", totals["consumers"])
    yield gauge("queues", "Queues available", totals["queues"])
    yield from _global(overview, totals, stats)
    if not aggregate:
        return
    for metric, field in QUEUE_GAUGES.items():
        yield gauge(metric, f"Sum over queues of {field}", sum(q.get(field) or 0 for q in queues))
    for metric, keys in CHANNEL_COUNTERS.items():
        counter = CounterMetricFamily(f"rabbitmq_channel_{metric}", f"Total over channels of {'+'.join(keys)}")
        counter.add_metric([], _sum(stats, keys))
        yield counter
    yield gauge("channel_messages_unacked", "Delivered but not yet acknowledged",
                sum(c["messages_unacknowledged"] for c in channels))
    yield gauge("channel_messages_unconfirmed", "Published but not yet confirmed",
                sum(c["messages_unconfirmed"] for c in channels))


def _global(overview: dict, totals: dict, stats: dict) -> Iterable[Metric]:
    for metric, keys in GLOBAL_COUNTERS.items():
        value = (_sum(stats, ("publish",)) - _sum(stats, ("drop_unroutable", "return_unroutable"))
                 if metric == "messages_routed" else _sum(stats, keys))
        counter = CounterMetricFamily(f"rabbitmq_global_{metric}", f"Total {metric.replace('_', ' ')}",
                                      labels=["protocol"])
        counter.add_metric(["zbroker"], value)
        yield counter
    yield gauge("global_consumers", "Current consumers", totals["consumers"], {"protocol": "zbroker"})
    alarms = set(overview.get("alarms") or ())
    yield gauge("alarms_memory_used_watermark", "1 while the memory alarm is on", int("memory" in alarms))
    yield gauge("alarms_free_disk_space_watermark", "1 while the disk alarm is on", int("disk" in alarms))
    memory = overview.get("memory") or {}
    yield gauge("process_resident_memory_bytes", "Resident memory of the broker", memory.get("resident", 0))
    if "limit" in memory:
        yield gauge("resident_memory_limit_bytes", "Memory alarm threshold", memory["limit"])
    disk = overview.get("disk")
    if disk:
        yield gauge("disk_space_available_bytes", "Free disk space of the data directory", disk["free"])
        yield gauge("disk_space_available_limit_bytes", "Disk alarm threshold", disk["limit"])


def queue_families(queues: list[dict]) -> Iterable[Metric]:
    for metric, field in QUEUE_GAUGES.items():
        family = GaugeMetricFamily(f"rabbitmq_{metric}", f"Queue {field}", labels=["vhost", "queue"])
        for q in queues:
            if field in q:
                family.add_metric([q["vhost"], q["name"]], q[field] or 0)
        yield family
    for metric, key in (("messages_published", "publish"), ("messages_acked", "ack"),
                        ("messages_delivered", "deliver_get"), ("messages_redelivered", "redeliver")):
        counter = CounterMetricFamily(f"rabbitmq_queue_{metric}", f"Queue {key} count", labels=["vhost", "queue"])
        for q in queues:
            counter.add_metric([q["vhost"], q["name"]], q["message_stats"].get(key, 0))
        yield counter


def channel_families(channels: list[dict]) -> Iterable[Metric]:
    for metric, keys in CHANNEL_COUNTERS.items():
        counter = CounterMetricFamily(f"rabbitmq_channel_{metric}", f"Channel {'+'.join(keys)}", labels=["channel"])
        for c in channels:
            counter.add_metric([c["name"]], _sum(c["message_stats"], keys))
        yield counter
