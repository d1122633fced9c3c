"""Dead-lettering: what a message looks like when a queue gives it up, and where it may go.

Rules (RabbitMQ's, from its dead-letter and message-container modules):
1. A queue with ``x-dead-letter-exchange`` republishes a message it gives up to that
   exchange, for one of four reasons: ``rejected`` (basic.reject / basic.nack with
   requeue=False, ``multiple`` included), ``expired`` (TTL), ``maxlen`` (a length
   limit) and ``delivery_limit`` (a quorum queue's ``x-delivery-limit``). A queue that
   itself expires (``x-expires``) dead-letters nothing. A missing exchange drops it.
2. The routing keys are ``x-dead-letter-routing-key`` if set, else the message's own.
3. The ``x-death`` header is a list of tables, newest first, one per (queue, reason):
   ``count``, ``reason``, ``queue``, ``time`` (of the first such death), ``exchange`` and
   ``routing-keys`` (where the message was published before that death), and
   ``original-expiration`` if it had a per-message TTL. A repeat of the same (queue,
   reason) counts up and moves that table to the front. ``x-first-death-reason`` /
   ``-queue`` / ``-exchange`` are set once; ``x-last-death-*`` at every death.
4. The dead-lettered copy has no ``expiration`` (its TTL would kill it again at once);
   it keeps every other property, persistence included.
5. Cycles: a target queue the message already died in is skipped -- the message is
   dropped there -- unless some death since (and including) the last one in that
   queue was a rejection, i.e. a client took part in the cycle.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from zbroker.core.message import Message

REJECTED, EXPIRED, MAXLEN, DELIVERY_LIMIT = "rejected", "expired", "maxlen", "delivery_limit"
X_DEATH = "x-death"


def dead_letter_properties(message: Message, queue: str, reason: str, now: float) -> dict:
    """The properties of ``message`` (loaded) as dead-lettered from ``queue`` (rules 3-4)."""
    properties = dict(message.properties)
    expiration = properties.pop("expiration", None)
    headers = dict(properties.get("headers") or {})
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
        death: dict[str, Any] = {}
        if expiration is not None:
            death["original-expiration"] = expiration
        death.update({
            "count": 1, "reason": reason, "queue": queue,
            "time": datetime.fromtimestamp(int(now), tz=timezone.utc),
            "exchange": message.exchange, "routing-keys": [message.routing_key],
        })
        deaths = [death] + deaths
    headers[X_DEATH] = deaths
    for what, value in (("reason", reason), ("queue", queue), ("exchange", message.exchange)):
        headers.setdefault(f"x-first-death-{what}", value)
        headers[f"x-last-death-{what}"] = value
    properties["headers"] = headers
    return properties


def is_cycle(target_queue: str, properties: dict) -> bool:
    """Rule 5, for a dead-lettered message's properties and one queue it was routed to."""
    deaths = (properties.get("headers") or {}).get(X_DEATH) or ()
    for death in deaths:  # newest first
        if death.get("reason") == REJECTED:
            return False
        if death.get("queue") == target_queue:
            return True
    return False
