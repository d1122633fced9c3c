"""The consumer timeout (RabbitMQ's delivery acknowledgement timeout): a delivery left
unacknowledged past its timeout closes its channel, and the channel's unacked
deliveries go back to their queues exactly as on any channel close.

Rules:
1. A delivery's timeout, the first found (milliseconds; 0 turns it off):
   the consumer's ``x-consumer-timeout`` argument (RabbitMQ 4.x), its queue's
   ``x-consumer-timeout`` argument (RabbitMQ 3.12+), the server's ``--consumer-timeout``
   (RabbitMQ's ``consumer_timeout``, 30 minutes by default). A ``basic.get`` delivery has
   no consumer: its queue's, else the server's. The consumer's is fixed when it
   subscribes.
2. When one times out, the channel is closed with RabbitMQ 3.x's (and 4.0 to 4.2's) 406
   ``delivery acknowledgement on channel N timed out. Timeout value used: X ms. ...``,
   logged with the consumer, queue and delivery tag as RabbitMQ logs it. (RabbitMQ 4.3
   sends a quorum queue's consumer ``basic.cancel`` instead and no longer times classic
   queues out; zbroker keeps the close, which kombu and Celery recover from by
   reopening, where a cancelled pika consumer would sit idle on an open channel.)
3. Cost: each unacked delivery records when it was sent (``Unacked.at``), and a channel
   holding unacked deliveries has one entry in a timer heap (``timers.py``) for the
   earliest moment one of them can time out. Nothing runs per message beyond that.
   When the entry fires, the channel's unacked deliveries are looked at: one that has
   timed out closes the channel; otherwise the channel is scheduled again for its
   earliest deadline (acks move it later, never earlier).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from zbroker import errors
from zbroker.core.messaging.timers import NEVER
from zbroker.errors import ChannelError

if TYPE_CHECKING:
    from zbroker.core.messaging.consumers import Unacked
    from zbroker.core.messaging.queue_type import QueueType
    from zbroker.core.messaging.session import Channel

#: RabbitMQ's default consumer_timeout: 30 minutes.
DEFAULT_CONSUMER_TIMEOUT_MS = 1_800_000


def queue_timeout_ms(queue: "QueueType", server_ms: int) -> int:
    """The timeout for deliveries from ``queue`` without a consumer's own (rule 1)."""
    own = queue.settings.consumer_timeout
    return server_ms if own is None else own


def consumer_timeout_ms(queue: "QueueType", server_ms: int, argument: int | None) -> int:
    """A new consumer's timeout (rule 1): its argument, else the queue's or the server's."""
    return queue_timeout_ms(queue, server_ms) if argument is None else argument


def timeout_ms(entry: "Unacked", server_ms: int) -> int:
    consumer = entry.consumer
    return consumer.timeout if consumer is not None else queue_timeout_ms(entry.queue, server_ms)


def first_deadline(at: float, timeout: int) -> float:
    """When a delivery sent at ``at`` times out (seconds, as ``now``), or NEVER."""
    return at + timeout / 1000 if timeout else NEVER


def check(channel: "Channel", now: float, server_ms: int) -> tuple[float, "Unacked | None"]:
    """Look at ``channel``'s unacked deliveries when its timer fires (rule 3): one that
    has timed out, else None and the channel's next deadline (NEVER: none)."""
    earliest = NEVER
    for entry in channel.unacked.values():
        due = first_deadline(entry.at, timeout_ms(entry, server_ms))
        if due <= now:
            return now, entry
        if due < earliest:
            earliest = due
    return earliest, None


def timed_out(channel: "Channel", entry: "Unacked", server_ms: int) -> tuple[str, ChannelError]:
    """RabbitMQ's log line and 406 for a delivery that timed out (rule 2)."""
    timeout = timeout_ms(entry, server_ms)
    consumer_tag = entry.consumer.tag if entry.consumer is not None else "none"
    queue = entry.queue
    line = (f"Consumer '{consumer_tag}' on channel {channel.number} and queue '{queue.name}' in vhost "
            f"'{queue.topology.vhost}' has timed out waiting for a consumer acknowledgement of a delivery "
            f"with delivery tag = {entry.tag}. Timeout used: {timeout} ms. This timeout value can be "
            "configured, see consumers doc guide to learn more")
    return line, ChannelError(
        errors.PRECONDITION_FAILED,
        f"delivery acknowledgement on channel {channel.number} timed out. Timeout value used: {timeout} ms. "
        "This timeout value can be configured, see consumers doc guide to learn more")
