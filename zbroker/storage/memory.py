"""The store for a broker without a data directory: state lives as long as the process.

It honours the whole ``MessageStore`` contract, so the contract tests run against it
too; ``MemoryState`` can be handed to a second ``MemoryStore`` to play a restart.
"""
from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from typing import Any, Iterable

from zbroker.storage.store import MessageStore, Recovered, RecoveredQueue, fact_arrays, message_facts


@dataclass
class MemoryState:
    topology: dict | None = None
    messages: dict[int, tuple[str, str, dict, Any, float]] = field(default_factory=dict)
    refs: dict[int, int] = field(default_factory=dict)  # location -> queues holding it
    queues: dict[int, dict[int, int]] = field(default_factory=dict)  # queue id -> seq -> location
    delivered: dict[int, int] = field(default_factory=dict)
    max_seq: int = 0
    next_location: int = 1


class MemoryStore(MessageStore):
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
                    _, _, properties, body, published_at = s.messages[location]
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
        location = s.next_location
        s.next_location += 1
        s.messages[location] = (exchange, routing_key, properties, body, published_at)
        s.refs[location] = len(queue_ids)
        if not persistent:  # readable while the process lives, never recovered
            return location
        for qid in queue_ids:
            s.queues.setdefault(qid, {})[seq] = location
        s.max_seq = max(s.max_seq, seq)
        return location

    def read(self, location: int) -> tuple[str, str, dict, Any, float | None]:
        return self.state.messages[location]

    def remove(self, queue_id: int, seq: int, location: int) -> None:
        held = self.state.queues.get(queue_id)
        if held is not None:
            held.pop(seq, None)
        self._collect(location)

    def delivered(self, queue_id: int, seq: int) -> None:
        delivered = self.state.delivered
        if seq > delivered.get(queue_id, 0):
            delivered[queue_id] = seq

    def drop_queue(self, queue_id: int, locations: Iterable[int]) -> None:
        self.state.queues.pop(queue_id, None)
        self.state.delivered.pop(queue_id, None)
        for location in locations:
            self._collect(location)

    def _collect(self, location: int) -> None:
        """One queue let go of the message; its bytes go with the last one."""
        refs = self.state.refs
        left = refs.get(location, 0) - 1
        if left > 0:
            refs[location] = left
        else:
            refs.pop(location, None)
            self.state.messages.pop(location, None)

    @property
    def needs_sync(self) -> bool:
        return False

    def commit(self) -> None:
        pass

    def close(self) -> None:
        pass
