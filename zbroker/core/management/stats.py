"""Statistics: the broker's counters, sampled into rates. Read-only over broker state.

Rules of this module:
1. Counters are plain integer attributes that the objects themselves bump where the
   event happens, on the broker thread (``Channel``, ``Queue``, ``Exchange``): no lock,
   no allocation per message. This module only reads them; nothing else depends on them.
2. Global totals outlive the objects: when a channel closes its counters are added to
   ``closed`` (``retire``), so ``totals()`` (closed + open channels) only ever grows,
   as RabbitMQ's ``rabbitmq_global_*_total`` do.
3. Every ``interval`` seconds (``SAMPLE_INTERVAL`` unless set; RabbitMQ's
   ``collect_statistics_interval``) the
   broker's ``tick`` calls ``sample(now)``: it records the global totals, and -- while
   somebody has looked in the last ``WATCH_S`` seconds (``watched``) -- each queue's,
   channel's and exchange's counters and depths. A rate is the change between the last
   two samples over their distance in seconds (RabbitMQ's ``*_details.rate``); an object
   with fewer than two samples, or none of the last one, has rate 0.0. So nobody
   looking costs one small sample every 5 s, whatever the number of queues.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Hashable, Iterable

if TYPE_CHECKING:
    from zbroker.core.access.vhosts import VirtualHosts
    from zbroker.core.messaging.session import Connection

SAMPLE_INTERVAL = 5.0
#: Per-object samples are kept while a management read came in the last this many seconds.
WATCH_S = 60.0

#: A channel's counters, in RabbitMQ's message_stats names where they have one.
CHANNEL_COUNTERS: dict[str, str] = {
    "published": "publish", "confirmed": "confirm", "returned": "return_unroutable",
    "dropped": "drop_unroutable", "delivered": "deliver", "delivered_no_ack": "deliver_no_ack",
    "got": "get", "got_no_ack": "get_no_ack", "got_empty": "get_empty",
    "redelivered": "redeliver", "acked": "ack",
}
#: A queue's counters (``published`` is the sum of ``Queue.incoming``).
QUEUE_COUNTERS: dict[str, str] = {
    "delivered": "deliver", "delivered_no_ack": "deliver_no_ack", "got": "get",
    "got_no_ack": "get_no_ack", "redelivered": "redeliver", "acked": "ack",
}
_CHANNEL_ATTRS = tuple(CHANNEL_COUNTERS)
_QUEUE_ATTRS = tuple(QUEUE_COUNTERS)

Sample = tuple[int, ...]


def channel_counts(channel: Any) -> Sample:
    return tuple(getattr(channel, name) for name in _CHANNEL_ATTRS)


def queue_counts(queue: Any) -> Sample:
    """(publish, deliver, deliver_no_ack, get, get_no_ack, redeliver, ack, ready, unacked)."""
    return (sum(queue.incoming.values()), *(getattr(queue, n) for n in _QUEUE_ATTRS),
            queue.ready, queue.unacked)


def exchange_counts(exchange: Any) -> Sample:
    return (exchange.published_in, exchange.published_out)


class Stats:
    def __init__(self, connections: "dict[Hashable, Connection]", vhosts: "VirtualHosts", now: float) -> None:
        #: What it reads: the open connections (their channels) and every vhost's topology.
        self.connections = connections
        self.vhosts = vhosts
        self.started_at = now
        self.interval = SAMPLE_INTERVAL
        self.closed = [0] * len(_CHANNEL_ATTRS)
        self.next_sample = now + SAMPLE_INTERVAL
        self.watched_until = 0.0
        #: (time, sample) pairs, the previous and the last.
        self._global: list[tuple[float, Sample]] = []
        self._objects: list[tuple[float, dict[tuple[str, Any], Sample]]] = []

    # -- counting ----------------------------------------------------------------------

    def retire(self, channel: Any) -> None:
        """A channel closed: its counts join the global totals (rule 2)."""
        self.closed = [a + b for a, b in zip(self.closed, channel_counts(channel))]

    def channels(self) -> Iterable[Any]:
        for conn in self.connections.values():
            yield from conn.channels.values()

    def totals(self) -> dict[str, int]:
        """Global counters by RabbitMQ name, plus queue depths (a fresh reading)."""
        sums = list(self.closed)
        for channel in self.channels():
            for i, value in enumerate(channel_counts(channel)):
                sums[i] += value
        totals = dict(zip(CHANNEL_COUNTERS.values(), sums))
        ready = unacked = 0
        for queue in self.vhosts.queues():
            ready += queue.ready
            if queue.reports_unacked:
                unacked += queue.unacked
        totals.update(messages_ready=ready, messages_unacknowledged=unacked,
                      messages=ready + unacked)
        return totals

    # -- sampling (rule 3) -------------------------------------------------------------

    def watched(self, now: float) -> None:
        """Somebody reads statistics: keep per-object samples for a while."""
        if self.watched_until <= now and not self._objects:
            self.next_sample = min(self.next_sample, now)  # a first sample right away
        self.watched_until = now + WATCH_S

    def tick(self, now: float) -> None:
        if now < self.next_sample:
            return
        self.next_sample = now + self.interval
        self._global = [*self._global[-1:], (now, tuple(self.totals().values()))]
        if now < self.watched_until:
            self._objects = [*self._objects[-1:], (now, self._sample_objects())]
        else:
            self._objects = []

    def _sample_objects(self) -> dict[tuple[str, Any], Sample]:
        sample: dict[tuple[str, Any], Sample] = {}
        for topology in self.vhosts.topologies.values():
            for queue in topology.queues.values():
                sample[("queue", queue)] = queue_counts(queue)
            for exchange in topology.exchanges.values():
                sample[("exchange", exchange)] = exchange_counts(exchange)
        for channel in self.channels():
            sample[("channel", channel)] = channel_counts(channel)
        return sample

    def global_rates(self) -> dict[str, float]:
        names = [*CHANNEL_COUNTERS.values(), "messages_ready", "messages_unacknowledged", "messages"]
        return dict(zip(names, _rates(self._global, lambda sample: sample)))

    def rates(self, kind: str, key: Any, width: int) -> list[float]:
        """Per-second rates of an object's counters (in its ``*_counts`` order)."""
        rates = _rates(self._objects, lambda sample: sample.get((kind, key)))
        return rates if rates else [0.0] * width


def _rates(samples: list[tuple[float, Any]], pick: Any) -> list[float]:
    if len(samples) < 2:
        return []
    (t0, s0), (t1, s1) = samples
    before, after = pick(s0), pick(s1)
    if before is None or after is None or t1 <= t0:
        return []
    return [round((b - a) / (t1 - t0), 1) for a, b in zip(before, after)]
