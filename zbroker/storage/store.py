"""The one interface the broker keeps its durable state behind.

A store holds two things:

- the **durable topology** (durable exchanges, durable queues, the bindings between
  them) as one snapshot, replaced whole when it changes: declarations are rare, and a
  snapshot written atomically can never be half applied;
- a **journal of persistent messages** in durable queues: a message is appended once
  (with the ids of every durable queue it reached) and later *removed* from each queue
  (ack, reject, auto-ack delivery, purge), or its whole queue dropped. ``delivered``
  records that a queue handed its messages up to a sequence number to a consumer, so
  after a crash those come back with ``redelivered=True`` as in RabbitMQ.

Nothing the store is told is durable until ``commit()`` returns: the broker commits
once per pass of its loop, before any frame of that pass leaves, so a publisher's
confirm, a declare-ok or a delivery is only ever sent for state already on disk
(persistent publishes and topology are synced; removals and delivery marks are written
but not synced, so an OS crash may redeliver a message, never lose one).

A message's ``location`` is an opaque int from ``append``; ``read`` returns the message
from it, which lets the broker drop a queued body from memory and fetch it again when
its turn comes (``pages``).
"""
from __future__ import annotations

from abc import ABC, abstractmethod
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, overload


class StoreError(Exception):
    """The store cannot be used (directory in use, unreadable); the broker must not start."""


@dataclass
class StoredMessage:
    """A recovered message: its place in a queue's order and where its bytes are."""

    seq: int
    location: int
    redelivered: bool


#: What recovery keeps per message besides (seq, location), so that a queue can apply
#: its rules (expiry, byte limits, priority lanes) to messages it has not read back:
#: body size, publish time (NaN when the record predates this field), own TTL in ms
#: (-1: none) and priority.
FACT_COLUMNS = ("sizes", "published", "ttls", "priorities")
_FACT_TYPES = ("q", "d", "q", "q")
NO_TTL = -1


def message_facts(properties: Any, size: int, published_at: Any) -> tuple[int, float, int, int]:
    """(size, published, ttl, priority) of a stored message, read tolerantly: the record
    was checked when it was published."""
    props = properties if isinstance(properties, dict) else {}
    expiration = props.get("expiration")
    ttl = int(expiration) if isinstance(expiration, str) and expiration.isdigit() else NO_TTL
    priority = props.get("priority")
    priority = priority if isinstance(priority, int) and not isinstance(priority, bool) else 0
    published = float(published_at) if isinstance(published_at, (int, float)) else float("nan")
    return size, published, ttl, priority


def fact_arrays() -> tuple[array, ...]:
    return tuple(array(t) for t in _FACT_TYPES)


class RecoveredQueue(Sequence[StoredMessage]):
    """One queue's recovered messages in ``seq`` order, held as integer arrays (48 bytes
    a message with its facts), so recovering a long backlog costs little memory."""

    def __init__(self, seqs: array, locations: array, delivered_up_to: int,
                 facts: tuple[array, ...] | None = None) -> None:
        self.seqs = seqs
        self.locations = locations
        #: Messages up to this seq had been delivered: they come back redelivered.
        self.delivered_up_to = delivered_up_to
        if facts is None:
            facts = tuple(array(t, [0]) * len(seqs) for t in _FACT_TYPES)
        self.sizes, self.published, self.ttls, self.priorities = facts

    def __len__(self) -> int:
        return len(self.seqs)

    @overload
    def __getitem__(self, i: int) -> StoredMessage: ...
    @overload
    def __getitem__(self, i: slice) -> list[StoredMessage]: ...

    def __getitem__(self, i: int | slice) -> StoredMessage | list[StoredMessage]:
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        seq = self.seqs[i]
        return StoredMessage(seq, self.locations[i], seq <= self.delivered_up_to)

    def __repr__(self) -> str:
        return f"<RecoveredQueue {len(self)} message(s)>"


@dataclass
class Recovered:
    """What a store held when opened."""

    #: The last topology snapshot saved, or None for a new store.
    topology: dict | None = None
    #: Live messages per durable queue id, in publish (``seq``) order.
    queues: dict[int, RecoveredQueue] = field(default_factory=dict)
    #: The highest message sequence number ever appended (0 for a new store).
    max_seq: int = 0


class MessageStore(ABC):
    #: True if ``read`` can fetch a message whose body the broker dropped from memory.
    pages = False

    @abstractmethod
    def open(self) -> Recovered:
        """Recover what was committed before; call once, before anything else."""

    @abstractmethod
    def save_topology(self, snapshot: dict) -> None:
        """Replace the durable topology (takes effect at the next commit)."""

    @abstractmethod
    def append(self, seq: int, queue_ids: list[int], exchange: str, routing_key: str,
               properties: dict, body: Any, persistent: bool = True,
               published_at: float = 0.0) -> int:
        """Journal a message for ``queue_ids``; returns its location. A transient one
        (``persistent=False``: paged only to save memory) is never recovered.
        ``published_at`` (seconds) lets a recovered message expire when it would have."""

    @abstractmethod
    def read(self, location: int) -> tuple[str, str, dict, bytes, float | None]:
        """(exchange, routing_key, properties, body, published_at) of the message at
        ``location``; published_at is None for a record written before it was kept."""

    @abstractmethod
    def remove(self, queue_id: int, seq: int, location: int) -> None:
        """The message left the queue for good (acked, rejected, auto-acked)."""

    @abstractmethod
    def delivered(self, queue_id: int, seq: int) -> None:
        """The queue delivered its messages up to ``seq``: they come back as redelivered."""

    @abstractmethod
    def drop_queue(self, queue_id: int, locations: Iterable[int]) -> None:
        """The queue was deleted: every message journaled for it is dead, including ones
        delivered and not yet acked (``locations`` are the messages it still held)."""

    def compact(self, held: Callable[[Callable[[int], bool]], dict[int, list[int]]]) -> dict[int, int]:
        """Copy the few messages still held in the oldest part of the store forward so the
        space they pin can be freed; returns {old location: new location}, usually empty.

        ``held(selects)`` is the broker's answer to "which queues still hold each location
        that ``selects`` accepts" (queued, paged or delivered and unacked).
        """
        return {}

    @property
    @abstractmethod
    def needs_sync(self) -> bool:
        """True while something appended must reach the disk before a confirm is sent."""

    @abstractmethod
    def commit(self) -> None:
        """Make everything told so far durable (see the module text); OSError if it cannot."""

    @abstractmethod
    def close(self) -> None:
        """Commit and release the store (a second broker may then open it)."""
