"""Dead-lettering: what a message looks like when a queue gives it up, and where it may go.

Rules (RabbitMQ's, from its dead-letter and message-container modules):
1. A queue with ``x-dead-letter-exchange`` republishes a message it gives up to that
   exchange, for one of four reasons: ``rejected`` (basic.reject / basic.nack with
   requeue=False, ``multiple`` included), ``expired`` (TTL), ``maxlen`` (a length
   limit) and ``delivery_limit`` (a quorum queue's ``x-delivery-limit``). A queue that
   itself expires (``x-expires``) dead-letters nothing. A missing exchange drops it.
2. The routing keys are ``x-dead-letter-routing-key`` if set, else the message's own
   (its routing key and those of its ``CC`` header).
3. The ``x-death`` header is a list of tables, newest first, one per (queue, reason):
   ``count``, ``reason``, ``queue``, ``time`` (of the first such death), ``exchange`` and
   ``routing-keys`` (where the message was published before that death), and
   ``original-expiration`` if it had a per-message TTL. A repeat of the same (queue,
   reason) counts up and moves that table to the front. ``x-first-death-reason`` /
   ``-queue`` / ``-exchange`` are set once; ``x-last-death-*`` at every death.
4. The dead-lettered copy has no ``expiration`` (its TTL would kill it again at once)
   and no ``CC`` header (its keys are in ``routing-keys``); it keeps every other
   property, persistence included. (``x-last-death-*`` are RabbitMQ 3.13's.)
5. Cycles: a target queue the message already died in is skipped -- the message is
   dropped there -- unless some death since (and including) the last one in that
   queue was a rejection, i.e. a client took part in the cycle.
"""
from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Callable

from zbroker.core.messaging.message import Message

if TYPE_CHECKING:
    from zbroker.core.messaging.exchanges import Exchange
    from zbroker.core.messaging.queue_type import QueueType

log = logging.getLogger(__name__)

REJECTED, EXPIRED, MAXLEN, DELIVERY_LIMIT = "rejected", "expired", "maxlen", "delivery_limit"
X_DEATH = "x-death"
#: Distinct dead-letter cycles logged (each once, as RabbitMQ does), at most.
MAX_CYCLES_LOGGED = 1000


class DeadLetters:
    """Republishes what queues give up (rules 1, 2 and 5), through the broker's own
    enqueue path, so limits, confirms and persistence apply to a dead letter as to any
    publish."""

    def __init__(self, next_seq: Callable[[], int],
                 enqueue: Callable[[list["QueueType"], Message], None]) -> None:
        self._next_seq = next_seq
        self._enqueue = enqueue
        self._cycles_logged: set[tuple[str, ...]] = set()

    def give_up(self, queue: "QueueType", messages: list[Message], reason: str, now: float) -> None:
        """Dead-letter ``messages`` if ``queue`` (still there) has a dead-letter exchange
        that exists; otherwise they are simply gone."""
        dlx = queue.settings.dead_letter_exchange
        if dlx is None or queue.deleted:
            return
        exchange = queue.topology.exchanges.get(dlx)  # (in the queue's own vhost)
        if exchange is None:
            return
        for message in messages:
            self._dead_letter(queue, exchange, message, reason, now)

    def _dead_letter(self, queue: "QueueType", exchange: "Exchange", message: Message, reason: str,
                     now: float) -> None:
        if not message.is_loaded:
            assert queue.journal is not None  # only a queue with a journal holds paged messages
            message = queue.journal.load(message)
        properties = dead_letter_properties(message, queue.name, reason, now)
        key = queue.settings.dead_letter_routing_key
        keys = routing_keys(message) if key is None else [key]
        routing_key = keys[0]
        targets = []
        for target in queue.topology.route_keys(exchange, keys, properties):
            if is_cycle(target.name, properties):
                self._log_cycle(target.name, properties)
            else:
                targets.append(target)
        if targets:
            self._enqueue(targets, Message(self._next_seq(), exchange.name, routing_key, properties,
                                           message.body, now, None, message.size))

    def _log_cycle(self, queue: str, properties: dict) -> None:
        names = (queue, *(str(d.get("queue")) for d in properties["headers"][X_DEATH]))
        if names not in self._cycles_logged and len(self._cycles_logged) < MAX_CYCLES_LOGGED:
            self._cycles_logged.add(names)
            log.warning("message dropped: dead-lettering it to queue '%s' closes a cycle without a "
                        "rejection (queues by death recency: %s)", queue, ", ".join(names[1:]))


def dead_letter_properties(message: Message, queue: str, reason: str, now: float) -> dict:
    """The properties of ``message`` (loaded) as dead-lettered from ``queue`` (rules 3-4)."""
    properties = dict(message.properties)
    expiration = properties.pop("expiration", None)
    headers = dict(properties.get("headers") or {})
    headers.pop("CC", None)  # its keys are in routing-keys; RabbitMQ removes the header
    deaths = [d for d in headers.get(X_DEATH) or () if isinstance(d, dict)] \
        if isinstance(headers.get(X_DEATH), list) else []
    for i, death in enumerate(deaths):
        if death.get("queue") == queue and death.get("reason") == reason:
            updated = dict(death)
            count = updated.get("count")
            updated["count"] = (count if isinstance(count, int) else 0) + 1
            deaths = [updated] + deaths[:i] + deaths[i + 1:]
            break
    else:
        death: dict[str, Any] = {
            "count": 1, "reason": reason, "queue": queue,
            "time": datetime.fromtimestamp(int(now), tz=timezone.utc),
            "exchange": message.exchange, "routing-keys": routing_keys(message),
        }
        if expiration is not None:
            death["original-expiration"] = expiration
        deaths = [death] + deaths
    headers[X_DEATH] = deaths
    for what, value in (("reason", reason), ("queue", queue), ("exchange", message.exchange)):
        headers.setdefault(f"x-first-death-{what}", value)
        headers[f"x-last-death-{what}"] = value
    properties["headers"] = headers
    return properties


def routing_keys(message: Message) -> list[str]:
    """The keys the message was routed by: its own and its CC header's (BCC never
    travels with the message), as RabbitMQ records and reuses them."""
    cc = (message.properties.get("headers") or {}).get("CC")
    return [message.routing_key, *(k for k in cc if isinstance(k, str))] if isinstance(cc, list) \
        else [message.routing_key]


def is_cycle(target_queue: str, properties: dict) -> bool:
    """Rule 5, for a dead-lettered message's properties and one queue it was routed to."""
    deaths = (properties.get("headers") or {}).get(X_DEATH) or ()
    for death in deaths:  # newest first
        if death.get("reason") == REJECTED:
            return False
        if death.get("queue") == target_queue:
            return True
    return False
