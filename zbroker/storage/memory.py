"""The store for a broker without a data directory: state lives as long as the process.

It honours the whole ``MessageStore`` contract, so the contract tests run against it
too; ``MemoryState`` can be handed to a second ``MemoryStore`` to play a restart.

Messages are journal records in an ``Arena`` (``arena.py``): packed into large byte
arrays at about their encoded size. So this store pages as the disk store does: a queue
past its in-memory window keeps a message as its paged tail's 12 bytes plus its record
(about 140 bytes for a 100-byte body) instead of a message object and a body object
(about 280), and reads it back when its turn comes.
"""
from __future__ import annotations

import logging
from array import array
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import zbroker.storage.records as records
from zbroker.storage.arena import Arena
from zbroker.storage.store import MessageStore, Recovered, RecoveredQueue, fact_arrays, message_facts

log = logging.getLogger(__name__)


@dataclass
class MemoryState:
    topology: dict | None = None
    arena: Arena = field(default_factory=Arena)
    queues: dict[int, dict[int, int]] = field(default_factory=dict)  # queue id -> seq -> location
    delivered: dict[int, int] = field(default_factory=dict)
    max_seq: int = 0


class MemoryStore(MessageStore):
    pages = True

    def __init__(self, state: MemoryState | None = None) -> None:
        self.state = state or MemoryState()

    def open(self) -> Recovered:
        s = self.state
        queues = {}
        for qid, held in s.queues.items():
            if held:
                order = sorted(held)
                locations = array("q", (held[q] for q in order))
                facts = fact_arrays()
                for location in locations:
                    _, _, properties, body, published_at = self.read(location)
                    for column, value in zip(facts, message_facts(properties, len(body), published_at)):
                        column.append(value)
                queues[qid] = RecoveredQueue(array("q", order), locations, s.delivered.get(qid, 0), facts)
        return Recovered(s.topology, queues, s.max_seq)

    def save_topology(self, snapshot: dict) -> None:
        self.state.topology = snapshot

    def append(self, seq: int, queue_ids: list[int], exchange: str, routing_key: str,
               properties: dict, body: Any, persistent: bool = True,
               published_at: float = 0.0) -> int:
        s = self.state
        location = s.arena.append([records.PUBLISH, seq, queue_ids, exchange, routing_key, properties,
                                   persistent, published_at], body, len(queue_ids))
        if not persistent:  # readable while the process lives, never recovered
            return location
        for qid in queue_ids:
            s.queues.setdefault(qid, {})[seq] = location
        s.max_seq = max(s.max_seq, seq)
        return location

    def read(self, location: int) -> tuple[str, str, dict, Any, float | None]:
        meta, body = self.state.arena.read(location)
        return meta[3], meta[4], meta[5], body, meta[7]

    def remove(self, queue_id: int, seq: int, location: int) -> None:
        held = self.state.queues.get(queue_id)
        if held is not None:
            held.pop(seq, None)
        self.state.arena.release(location)

    def delivered(self, queue_id: int, seq: int) -> None:
        delivered = self.state.delivered
        if seq > delivered.get(queue_id, 0):
            delivered[queue_id] = seq

    def drop_queue(self, queue_id: int, locations: Iterable[int]) -> None:
        self.state.queues.pop(queue_id, None)
        self.state.delivered.pop(queue_id, None)
        for location in locations:
            self.state.arena.release(location)

    def compact(self, held: Callable[[Callable[[int], bool]], dict[int, list[int]]]) -> dict[int, int]:
        """The arena's rule 4: copy a sparse segment's live records forward."""
        arena = self.state.arena
        number = arena.compaction_candidate()
        if number is None:
            return {}
        moved: dict[int, int] = {}
        for old, qids in held(lambda location: arena.segment_of(location) == number).items():
            meta, body = arena.read(old)
            new = moved[old] = arena.append(meta, body, len(qids))
            for qid in qids:
                recovered = self.state.queues.get(qid)
                if recovered is not None and recovered.get(meta[1]) == old:
                    recovered[meta[1]] = new
            arena.release(old, len(qids))
        if arena.held_in(number):
            log.warning("in-memory store: compacting segment %d left references; not retrying it", number)
            arena.gave_up(number)
        return moved

    @property
    def needs_sync(self) -> bool:
        return False

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass
