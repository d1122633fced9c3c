"""The in-memory store pages as the disk store does: a backlog past a queue's window is kept
as journal records packed in byte arrays (``storage/arena.py``), delivered whole and in
order, and its memory goes back a segment at a time, whichever segment empties first."""
from __future__ import annotations

from typing import Iterator

import pytest
import zmq

from tests.unit.test_durability import PERSISTENT, message_count, settle
from tests.unit.wire import FakePeer, bodies
from zbroker.core import Broker
from zbroker.core.messaging import classic as queues_module
from zbroker.protocol import Op
from zbroker.storage import MemoryState, MemoryStore
from zbroker.storage.arena import INLINE_BODY_BYTES, Arena
from zbroker.storage.compaction import STABLE_CHECKS


class MemoryNode:
    """A broker on the in-memory store, restarted by handing its state to a new one."""

    def __init__(self, segment_bytes: int = 4096) -> None:
        self.state = MemoryState(arena=Arena(segment_bytes))
        self.broker = Broker(store=MemoryStore(self.state))

    def peer(self, name: bytes = b"p1") -> FakePeer:
        return FakePeer(self.broker, name).open()

    def restart(self) -> FakePeer:
        self.broker.close()
        self.broker = Broker(store=MemoryStore(self.state))
        return self.peer()

    def released(self) -> bool:
        """Every segment but the active one is gone, and the active one holds nothing live."""
        self.broker.commit()
        arena = self.state.arena
        return list(arena._segments) == [arena._active] and not arena._live.get(arena._active)


@pytest.fixture
def node(monkeypatch: pytest.MonkeyPatch) -> Iterator[MemoryNode]:
    monkeypatch.setattr(queues_module, "PAGE_AFTER", 5)
    monkeypatch.setattr(queues_module, "TRANSIENT_PAGE_AFTER", 5)
    node = MemoryNode()
    yield node
    node.broker.close()


def test_a_transient_backlog_is_paged_in_memory_and_delivered_whole_in_order(node: MemoryNode) -> None:
    p = node.peer()
    p.declare("t")
    for i in range(300):
        p.publish("", "t", b"m%03d" % i * 10)
    queue = node.broker.topology.queues["t"]
    assert (queue.resident_count, queue.paged_count) == (5, 295)
    assert len(node.state.arena._segments) >= 5  # 295 records of ~70 bytes in 4 KiB segments
    p.consume("t", "c")
    assert bodies(p.received) == [b"m%03d" % i * 10 for i in range(300)]
    p.send(Op.BASIC_NACK, 1, 0, True, True)  # requeue all, then take them again
    assert bodies(p.received)[300:] == [b"m%03d" % i * 10 for i in range(300)]
    p.send(Op.BASIC_ACK, 1, 0, True)
    assert message_count(p, "t") == 0 and node.released()


def test_persistent_paged_messages_survive_a_restart_of_the_state(node: MemoryNode) -> None:
    p = node.peer()
    p.declare("d", durable=True)
    for i in range(100):
        p.publish("", "d", b"%03d" % i, properties=PERSISTENT)
    assert node.broker.topology.queues["d"].paged_count == 95
    p.consume("d", "c")  # ten delivered, not acked: they come back redelivered
    p.send(Op.BASIC_QOS, 1, 0, 10, False)
    p = node.restart()
    p.consume("d", "c", auto_ack=True)
    assert bodies(p.received) == [b"%03d" % i for i in range(100)]
    assert node.released()


def test_purge_and_delete_release_the_records(node: MemoryNode) -> None:
    p = node.peer()
    p.declare("purged")
    p.declare("deleted", durable=True)
    for i in range(200):
        p.publish("", "purged", b"%d" % i)
        p.publish("", "deleted", b"%d" % i, properties=PERSISTENT)
    assert p.send(Op.QUEUE_PURGE, 1, "purged")[0][1][1] == 200
    assert p.send(Op.QUEUE_DELETE, 1, "deleted", False, False)[0][1][1] == 200
    assert node.released()


def test_fanout_holds_one_record_until_every_queue_lets_go(node: MemoryNode) -> None:
    p = node.peer()
    p.send(Op.EXCHANGE_DECLARE, 1, "fan", "fanout", False, False, False, False, {})
    for name in ("a", "b"):
        p.declare(name)
        p.send(Op.QUEUE_BIND, 1, name, "fan", "", {})
    for i in range(100):
        p.publish("fan", "", b"%02d" % i)
    p.consume("a", "ca", auto_ack=True)
    assert bodies(p.received) == [b"%02d" % i for i in range(100)]
    assert not node.released()  # b still holds every record
    p.consume("b", "cb", auto_ack=True)
    assert bodies(p.received)[100:] == [b"%02d" % i for i in range(100)]
    assert node.released()


def test_compaction_frees_a_segment_a_few_backlog_messages_held(node: MemoryNode) -> None:
    p = node.peer()
    p.declare("backlog")
    p.declare("flow")
    for i in range(5):
        p.publish("", "backlog", b"head %d" % i)  # the backlog's window is full: the rest is paged
    for round_ in range(40):  # one backlog message among 50 that flow away, each round
        p.publish("", "backlog", b"backlog %02d" % round_)
        for i in range(50):
            p.publish("", "flow", b"%04d" % i * 5)
        p.consume("flow", "worker%d" % round_, auto_ack=True)
        p.cancel("worker%d" % round_)
        node.broker.commit()
        p.collect()
    arena = node.state.arena
    assert len(arena._segments) > 20  # each of the backlog's records keeps its segment ...
    settle(node)  # ... until the loop has seen them stay put a while
    assert len(arena._segments) < 10, len(arena._segments)
    p2 = FakePeer(node.broker, b"p2").open()
    p2.consume("backlog", "c", auto_ack=True)
    assert bodies(p2.received) == [b"head %d" % i for i in range(5)] + [b"backlog %02d" % i for i in range(40)]
    assert node.released()


def test_the_arena_keeps_large_bodies_as_objects_and_frees_any_empty_segment() -> None:
    arena = Arena(segment_bytes=1024)
    large = zmq.Frame(b"L" * (INLINE_BODY_BYTES + 1))
    small = [arena.append([1, seq], b"s%d" % seq * 100, 1) for seq in range(20)]
    big = arena.append([1, 99], large, 2)
    assert arena.read(big) == ([1, 99], large)  # the same object, not a copy
    assert [arena.read(location)[1] for location in small] == [b"s%d" % seq * 100 for seq in range(20)]
    numbers = sorted({Arena.segment_of(location) for location in small})
    assert len(numbers) >= 5 and all(type(arena._segments[n]) is bytes for n in numbers[:-1])
    middle = numbers[2]
    for location in small:  # free a segment in the middle: it goes, older ones stay
        if Arena.segment_of(location) == middle:
            arena.release(location)
    assert not arena.held_in(middle) and arena.held_in(numbers[0])
    arena.release(big)
    assert arena.held_in(Arena.segment_of(big))  # one of its two references is left
    arena.release(big)
    assert arena.read(small[0])[1] == b"s0" * 100


def test_an_arena_segment_is_a_compaction_candidate_only_when_mostly_released_and_still() -> None:
    arena = Arena(segment_bytes=1024)
    first = [arena.append([1, seq], b"x" * 30, 1) for seq in range(20)]
    assert len({Arena.segment_of(location) for location in first}) == 1
    arena.append([1, 20], b"x" * 900, 1)  # starts the next segment
    for location in first[:17]:
        arena.release(location)
    assert all(arena.compaction_candidate() is None for _ in range(2 * STABLE_CHECKS))  # 3 of 20 live
    arena.release(first[17])  # 2 of 20: a tenth
    assert [arena.compaction_candidate() for _ in range(STABLE_CHECKS)] == [None] * (STABLE_CHECKS - 1) + [0]
    arena.gave_up(0)
    assert arena.compaction_candidate() is None


def test_a_segment_being_drained_is_never_compacted() -> None:
    arena = Arena(segment_bytes=64 * 1024)
    first = [arena.append([1, seq], b"x" * 30, 1) for seq in range(1000)]
    arena.append([1, 1000], b"x" * 64 * 1024, 1)  # starts the next segment
    for location in first[:-1]:  # a consumer taking one a pass, the store checked each pass
        arena.release(location)
        assert arena.compaction_candidate() is None
    arena.release(first[-1])
    assert not arena.held_in(0)
