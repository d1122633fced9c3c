"""The broker's counted limits: channels per connection, connections, queues.

Rules (RabbitMQ's codes and texts, so a pika program sees what it would see there):
1. ``channel_max`` (RabbitMQ's default 2047) is offered to every client; opening one
   channel more than that closes the connection: 530 NOT_ALLOWED "number of channels
   opened (2047) has reached the negotiated channel_max (2047)".
2. ``max_connections``: a connection beyond it is refused at its handshake: 530
   "connection refused: node connection limit (N) is reached".
3. ``max_queues``: declaring a queue beyond it is a 406 "cannot declare queue 'q': queue
   limit in cluster (N) is reached" (RabbitMQ's node-wide limit; this is one node).
4. 0 means no limit. Each limit is logged once when it is first hit, and again only after
   it has been clear in between, so a flood of refusals is not a flood of log lines.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

#: RabbitMQ's default channel_max.
DEFAULT_CHANNEL_MAX = 2047
#: Connections one broker accepts. RabbitMQ has no default limit; each zbroker
#: connection costs a few KiB in the broker and a pipe in libzmq, so thousands are fine,
#: but a runaway client loop opening connections must not exhaust the process.
DEFAULT_MAX_CONNECTIONS = 4096
#: Queues one broker holds (RabbitMQ: no default). An empty queue costs ~4 KiB (50,000
#: took a broker from 25 to 216 MiB); the limit keeps a program declaring queues in a
#: loop from taking the broker's memory.
DEFAULT_MAX_QUEUES = 50_000


@dataclass
class Limits:
    channel_max: int = DEFAULT_CHANNEL_MAX
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    max_queues: int = DEFAULT_MAX_QUEUES
    _hit: set[str] = field(default_factory=set, repr=False)

    @staticmethod
    def reached(limit: int, count: int) -> bool:
        return bool(limit) and count >= limit

    def report(self, name: str, text: str) -> None:
        """Log a refusal the first time ``name`` is hit (rule 4)."""
        if name not in self._hit:
            self._hit.add(name)
            log.warning("limit reached: %s (logged once until it clears)", text)

    def clear(self, name: str) -> None:
        self._hit.discard(name)
