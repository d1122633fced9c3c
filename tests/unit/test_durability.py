"""The broker's durability rules, driven without sockets over a disk store: a restart is
a new ``Broker`` on the same directory."""
from __future__ import annotations

from pathlib import Path
import logging
from typing import Any, Iterator

import pytest

from tests.unit.wire import FakePeer, bodies, deliveries
from zbroker.storage.compaction import STABLE_CHECKS
from zbroker.core import Broker
from zbroker.core.messaging import classic as broker_module
from zbroker.protocol import Op
from zbroker.storage import DiskStore, MemoryStore

PERSISTENT = {"delivery_mode": 2}


class Restartable:
    """A broker on a data directory that can be stopped (closed or crashed) and started."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.broker = self._start()

    def _start(self) -> Broker:
        return Broker(store=DiskStore(self.directory, segment_bytes=64 * 1024))

    def peer(self, name: bytes = b"p1") -> FakePeer:
        return FakePeer(self.broker, name).open()

    def restart(self, crash: bool = False) -> FakePeer:
        """``crash``: nothing more is committed, as after SIGKILL (the kernel keeps what was written)."""
        if crash:
            self.broker.store._lock.release()  # what the kernel does for a killed process
        else:
            self.broker.close()
        self.broker = self._start()
        return self.peer()


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Restartable]:
    node = Restartable(tmp_path)
    yield node
    node.broker.store.close()


def declare_durable(peer: FakePeer, queue: str = "tasks", **kw: Any) -> None:
    assert peer.declare(queue, durable=True, **kw)[0][0] == Op.QUEUE_DECLARE_OK


def publish_committed(node: Restartable, peer: FakePeer, queue: str, *messages: bytes,
                      properties: dict | None = PERSISTENT) -> None:
    for body in messages:
        peer.publish("", queue, body, properties=properties)
    node.broker.commit()


def settle(node: Any) -> None:
    """Loop passes with nothing happening: a sparse segment that stays put is compacted
    (``storage/compaction.py``), one at a time, oldest first on disk."""
    for _ in range(4 * STABLE_CHECKS):
        node.broker.commit()


def message_count(peer: FakePeer, queue: str) -> int:
    frames = peer.declare(queue, passive=True)
    assert frames[0][0] == Op.QUEUE_DECLARE_OK, frames
    return frames[0][1][2]


def test_durable_topology_survives_and_transient_does_not(node: Restartable) -> None:
    p = node.peer()
    declare_durable(p, "dq", arguments={"x-queue-type": "quorum"})
    p.declare("tq")
    p.send(Op.EXCHANGE_DECLARE, 1, "dx", "topic", False, True, False, False, {})
    p.send(Op.EXCHANGE_DECLARE, 1, "tx", "fanout", False, False, False, False, {})
    p.send(Op.QUEUE_BIND, 1, "dq", "dx", "a.*", {})
    p.send(Op.QUEUE_BIND, 1, "dq", "amq.direct", "k", {})
    node.broker.commit()
    p = node.restart()
    assert set(node.broker.topology.queues) == {"dq"}
    assert "dx" in node.broker.topology.exchanges and "tx" not in node.broker.topology.exchanges
    assert node.broker.topology.queues["dq"].arguments == {"x-queue-type": "quorum"}
    # The bindings route again.
    p.publish("dx", "a.b", b"via-topic")
    p.publish("amq.direct", "k", b"via-amq")
    assert message_count(p, "dq") == 2


def test_persistent_messages_survive_a_graceful_restart(node: Restartable) -> None:
    p = node.peer()
    declare_durable(p)
    publish_committed(node, p, "tasks", b"one", b"two")
    publish_committed(node, p, "tasks", b"transient", properties={})
    p = node.restart()
    p.consume("tasks", "c", auto_ack=True)
    assert bodies(p.received) == [b"one", b"two"]


def test_crash_keeps_committed_messages_and_marks_delivered_ones(node: Restartable) -> None:
    p = node.peer()
    declare_durable(p)
    publish_committed(node, p, "tasks", b"a", b"b", b"c", b"d")
    p.qos(2)
    p.consume("tasks", "c")
    got = deliveries(p.received)
    assert [d[2] for d in got] == [1, 2]
    p.ack(1)  # "a" is done and its credit lets "c" go: "b" and "c" are unacked at the crash
    assert bodies(p.received) == [b"a", b"b", b"c"]
    node.broker.commit()
    p = node.restart(crash=True)
    p.consume("tasks", "c", auto_ack=True)
    redelivered = [f[3] for f in deliveries(p.received)]
    assert list(zip(redelivered, bodies(p.received))) == [(True, b"b"), (True, b"c"), (False, b"d")]


def test_nothing_acked_comes_back_after_auto_ack_get_reject_purge(node: Restartable) -> None:
    p = node.peer()
    declare_durable(p, "q1")
    declare_durable(p, "q2")
    publish_committed(node, p, "q1", b"got", b"rejected", b"kept")
    publish_committed(node, p, "q2", b"purged1", b"purged2")
    assert p.send(Op.BASIC_GET, 1, "q1", True)[0][0] == Op.BASIC_GET_OK
    frames = p.send(Op.BASIC_GET, 1, "q1", False)
    p.send(Op.BASIC_REJECT, 1, frames[0][1][1], False)
    assert p.send(Op.QUEUE_PURGE, 1, "q2")[0][1][1] == 2
    node.broker.commit()
    p = node.restart(crash=True)
    assert message_count(p, "q1") == 1 and message_count(p, "q2") == 0


def test_deleted_queue_stays_deleted_with_its_messages(node: Restartable) -> None:
    p = node.peer()
    declare_durable(p, "gone")
    publish_committed(node, p, "gone", b"x", b"y")
    p.send(Op.QUEUE_DELETE, 1, "gone", False, False)
    node.broker.commit()
    p = node.restart(crash=True)
    declare_durable(p, "gone")  # a new queue of the same name starts empty
    assert message_count(p, "gone") == 0


def test_confirms_wait_for_the_commit(node: Restartable) -> None:
    p = node.peer()
    declare_durable(p)
    p.send(Op.CONFIRM_SELECT, 1)
    assert p.publish("", "tasks", b"m", properties=PERSISTENT) == []  # held: not on disk yet
    node.broker.commit()
    assert [(op, f[1]) for op, f, _ in p.collect()] == [(Op.BASIC_ACK, 1)]
    # A transient message needs no sync: confirmed at once, as before.
    assert [op for op, _, _ in p.publish("", "tasks", b"t")] == [Op.BASIC_ACK]


class FailingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.dirty = False

    def append(self, *args: Any, **kwargs: Any) -> int:
        self.dirty = True
        return super().append(*args, **kwargs)

    @property
    def needs_sync(self) -> bool:
        return self.dirty

    def commit(self) -> None:
        self.dirty = False
        raise OSError(28, "No space left on device")


def test_a_failed_commit_nacks_instead_of_acking() -> None:
    broker = Broker(store=FailingStore())
    p = FakePeer(broker, b"p").open()
    declare_durable(p)
    p.send(Op.CONFIRM_SELECT, 1)
    other = FakePeer(broker, b"other").open()  # only transient messages: not the disk's fault
    other.send(Op.CONFIRM_SELECT, 1)
    p.publish("", "tasks", b"m", properties=PERSISTENT)
    other.publish("", "tasks", b"t")  # held: a sync is pending when it arrives
    broker.commit()
    assert [(op, f[1], f[2]) for op, f, _ in p.collect()] == [(Op.BASIC_NACK, 1, True)]
    assert [(op, f[1]) for op, f, _ in other.collect()] == [(Op.BASIC_ACK, 1)]


def test_long_queue_is_paged_and_delivered_whole_in_order(node: Restartable,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "PAGE_AFTER", 10)
    p = node.peer()
    declare_durable(p)
    publish_committed(node, p, "tasks", *[b"m%03d" % i for i in range(50)])
    queue = node.broker.topology.queues["tasks"]
    assert (queue.resident_count, queue.paged_count) == (10, 40)
    p.publish("", "tasks", b"transient")  # behind the tail: paged too, to keep its place
    assert queue.paged_count == 41 and message_count(p, "tasks") == 51
    p.consume("tasks", "c", auto_ack=True)
    assert bodies(p.received) == [b"m%03d" % i for i in range(50)] + [b"transient"]
    assert all(f[5] == "tasks" for f in deliveries(p.received))  # routing key read back too
    assert deliveries(p.received)[-1][6] == {}  # and properties: the transient one has none


def test_recovery_pages_a_long_backlog(node: Restartable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "PAGE_AFTER", 5)
    p = node.peer()
    declare_durable(p)
    publish_committed(node, p, "tasks", *[b"%d" % i for i in range(30)])
    p.publish("", "tasks", b"transient, paged")
    node.broker.commit()
    p = node.restart(crash=True)
    queue = node.broker.topology.queues["tasks"]
    assert (queue.resident_count, queue.paged_count) == (5, 25)
    p.consume("tasks", "c", auto_ack=True)
    assert bodies(p.received) == [b"%d" % i for i in range(30)]  # the transient one is gone


def test_sequence_continues_after_restart_so_requeue_order_holds(node: Restartable) -> None:
    p = node.peer()
    declare_durable(p)
    publish_committed(node, p, "tasks", b"old")
    p = node.restart()
    publish_committed(node, p, "tasks", b"new")
    p.consume("tasks", "c")
    p.send(Op.BASIC_NACK, 1, 0, True, True)  # requeue both: order must stay old, new
    assert bodies(p.received)[-2:] == [b"old", b"new"]


def test_purge_and_delete_reach_the_paged_tail(node: Restartable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "PAGE_AFTER", 3)
    p = node.peer()
    declare_durable(p, "purged")
    declare_durable(p, "deleted")
    publish_committed(node, p, "purged", *[b"%d" % i for i in range(10)])
    publish_committed(node, p, "deleted", *[b"%d" % i for i in range(10)])
    assert p.send(Op.QUEUE_PURGE, 1, "purged")[0][1][1] == 10
    assert p.send(Op.QUEUE_DELETE, 1, "deleted", False, False)[0][1][1] == 10
    node.broker.commit()
    p = node.restart(crash=True)
    assert message_count(p, "purged") == 0
    assert "deleted" not in node.broker.topology.queues
    # Every segment but the active one is gone: nothing is left holding them.
    assert all(n == 0 for n in node.broker.store._live.values())


def test_paged_tail_is_compact_and_ordered() -> None:
    from zbroker.core.durability.paging import PagedTail
    tail = PagedTail()
    for seq in range(1, 100_001):
        tail.append(seq, seq * 10, 1)
    assert len(tail) == 100_000
    taken = tail.take(70_000)
    assert taken[0][:2] == (1, 10) and taken[-1][:2] == (70_000, 700_000) and len(tail) == 30_000
    assert next(iter(tail)) == (70_001, 700_010)
    assert [entry[0] for entry in tail.take(10)] == list(range(70_001, 70_011))
    assert len(tail.take(10**6)) == 29_990 and len(tail) == 0


def test_paged_tail_costs_12_bytes_an_entry_and_widens_a_column_only_when_it_must() -> None:
    from zbroker.core.durability.paging import PagedTail
    tail = PagedTail()
    first = 5_000_000_000  # (a broker's seqs go past 32 bits; distances in a tail rarely do)
    for i in range(200_000):
        tail.append(first + 3 * i, (7 << 40) | (i * 100), 100)
    assert tail.bytes_per_entry == 11  # (one disk segment so far)
    for i in range(200_000, 300_000):  # the next segments, as a disk store numbers them
        tail.append(first + 3 * i, ((8 + i // 50_000) << 40) | (i * 100), 100)
    assert tail.bytes_per_entry == 12
    assert tail.find(first + 3 * 150_000) == ((7 << 40) | 15_000_000, 100)
    assert tail.find(first + 3 * 260_000) == ((13 << 40) | 26_000_000, 100)
    assert tail.find(first + 1) is None
    assert tail.take(100_000)[-1] == (first + 3 * 99_999, (7 << 40) | 9_999_900, 100)  # (front reclaimed)
    assert tail.find(first + 3 * 150_000) == ((7 << 40) | 15_000_000, 100)
    far, huge = first + (1 << 33), 5 << 30  # four billion publishes later; a 5 GiB body
    tail.append(far, 20 << 40, huge)
    assert tail.bytes_per_entry == 22  # (seqs and sizes wide, locations as they were)
    assert tail.find(far) == (20 << 40, huge) and tail.find(first + 3 * 299_999) == ((13 << 40) | 29_999_900, 100)
    assert list(tail)[-2:] == [(first + 3 * 299_999, (13 << 40) | 29_999_900), (far, 20 << 40)]
    assert len(tail.take(10**6)) == 200_001 and len(tail) == 0
    tail.append(7, 8, 9)  # emptied: compact again
    assert tail.bytes_per_entry == 11 and list(tail) == [(7, 8)]


def test_paged_tail_relocates_entries_anywhere_a_compaction_moves_them() -> None:
    from zbroker.core.durability.paging import PagedTail
    tail = PagedTail()
    for i in range(10):
        tail.append(100 + i, (5 << 40) | (i * 1000), 10 + i)
    moved = {(5 << 40) | 2000: (9 << 40) | 64,      # a later segment
             (5 << 40) | 3000: (2 << 40) | 128,     # below the tail's first (its high part's distance < 0)
             (5 << 40) | 4000: (5 << 40) | 4096}    # the same segment
    tail.relocate(moved)
    expected = [(100 + i, moved.get((5 << 40) | (i * 1000), (5 << 40) | (i * 1000))) for i in range(10)]
    assert list(tail) == expected
    assert tail.find(103) == ((2 << 40) | 128, 13)
    assert tail.take(10) == [(seq, location, 10 + i) for i, (seq, location) in enumerate(expected)]


def test_an_old_unacked_message_does_not_pin_the_journal(node: Restartable) -> None:
    """One delivery never acked while thousands flow past: compaction copies it forward,
    the old segments go, and after a crash it is still there, redelivered, with nothing else."""
    p = node.peer()
    declare_durable(p, "stuck")
    declare_durable(p, "flow")
    publish_committed(node, p, "stuck", b"the old one")
    p.consume("stuck", "holder")  # delivered, never acked
    p.consume("flow", "worker", ch=1, auto_ack=True)
    for _ in range(40):
        publish_committed(node, p, "flow", *[b"%04d" % i * 25 for i in range(50)])
        p.collect()
    settle(node)
    journal = node.directory / "journal"
    segments = sorted(journal.glob("*.seg"))
    assert len(segments) <= 3, [s.name for s in segments]  # 40 x 50 x ~150 B would be ~5 segments of 64 KiB
    assert not (journal / "00000001.seg").exists()
    p = node.restart(crash=True)
    p.consume("stuck", "again", auto_ack=True)
    p.consume("flow", "w2", auto_ack=True)
    assert [(f[3], b) for f, b in zip(deliveries(p.received), bodies(p.received))] == [(True, b"the old one")]


def test_a_segment_being_drained_is_not_compacted(node: Restartable, caplog: pytest.LogCaptureFixture) -> None:
    """A consumer taking a long queue in order passes each segment through "a tenth live":
    copying that tenth forward would only hand the consumer copies (``compaction.py``)."""
    p = node.peer()
    declare_durable(p, "long")
    publish_committed(node, p, "long", *[b"%05d" % i * 20 for i in range(2000)])
    assert len(list((node.directory / "journal").glob("*.seg"))) >= 4
    with caplog.at_level(logging.INFO, logger="zbroker.storage.disk"):
        for i in range(2000):  # one a loop pass
            [(op, _, body)] = p.send(Op.BASIC_GET, 1, "long", True)
            assert op == Op.BASIC_GET_OK and body == b"%05d" % i * 20
            node.broker.commit()
    assert "compacted" not in caplog.text
    assert len(list((node.directory / "journal").glob("*.seg"))) == 1


def test_compaction_moves_paged_and_queued_messages(node: Restartable, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(broker_module, "PAGE_AFTER", 2)
    p = node.peer()
    declare_durable(p, "backlog")
    declare_durable(p, "flow")
    p.consume("flow", "worker", auto_ack=True)
    for round_ in range(40):  # one backlog message per round among 50 that flow away
        publish_committed(node, p, "backlog", b"backlog %02d" % round_)
        publish_committed(node, p, "flow", *[b"%04d" % i * 25 for i in range(50)])
        p.collect()
    settle(node)
    queue = node.broker.topology.queues["backlog"]
    assert queue.paged_count == 38
    assert not (node.directory / "journal" / "00000001.seg").exists()  # compacted away
    p2 = FakePeer(node.broker, b"p2").open()
    frames = [f for _ in range(3) for f in p2.send(Op.BASIC_GET, 1, "backlog", True)]
    assert [body for _, _, body in frames] == [b"backlog 00", b"backlog 01", b"backlog 02"]  # 02 was paged
    node.broker.commit()  # as the server does before the get-oks leave
    p = node.restart(crash=True)
    p.consume("backlog", "c", auto_ack=True)
    assert bodies(p.received) == [b"backlog %02d" % i for i in range(3, 40)]


# -- the message lifecycle across restarts -------------------------------------------------

def test_a_recovered_message_expires_at_its_original_time(tmp_path: Path) -> None:
    from tests.unit.wire import FakeClock
    clock = FakeClock()
    broker = Broker(store=DiskStore(tmp_path), now=clock.now)
    p = FakePeer(broker, b"p", clock).open()
    declare_durable(p, "q", arguments={"x-message-ttl": 10_000})
    p.publish("", "q", b"per-queue", properties=PERSISTENT)
    p.publish("", "q", b"per-message", properties={"delivery_mode": 2, "expiration": "4000"})
    broker.commit()
    broker.store._lock.release()  # crash 3 s later, restart
    clock.advance(3)
    broker = Broker(store=DiskStore(tmp_path), now=clock.now)
    p = FakePeer(broker, b"p", clock).open()
    assert p.count("q") == 2
    assert broker.next_deadline() == pytest.approx(clock.now + 1)
    clock.advance(1, broker)
    assert p.count("q") == 1
    clock.advance(6, broker)
    assert p.count("q") == 0
    broker.store.close()


@pytest.mark.parametrize("committed", [True, False])
def test_a_persistent_dead_letter_survives_a_crash_between_the_queues(node: Restartable, committed: bool) -> None:
    """Rejected from one durable queue into another, then a crash: with the pass
    committed it is in the second queue only; a crash before the commit may keep it in
    the first too (at least once), never in neither."""
    p = node.peer()
    declare_durable(p, "dead")
    declare_durable(p, "work", arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "dead"})
    p.consume("work", "c")
    frames = p.publish("", "work", b"poison", properties=PERSISTENT)
    node.broker.commit()
    p.reject(deliveries(frames)[0][2], requeue=False)
    if committed:
        node.broker.commit()
    p = node.restart(crash=True)
    work, dead = message_count(p, "work"), message_count(p, "dead")
    if not committed:
        assert work + dead >= 1
        return
    assert (work, dead) == (0, 1)
    got = [(f, b) for op, f, b in p.get("dead") if op == Op.BASIC_GET_OK]
    assert got[0][1] == b"poison" and got[0][0][-1]["headers"]["x-death"][0]["reason"] == "rejected"


def test_arguments_an_older_zbroker_stored_are_applied_after_restart(tmp_path: Path) -> None:
    """An older zbroker stored x-max-length without applying it: now it holds (and an
    argument it must refuse is logged and left out, the queue and messages kept)."""
    store = DiskStore(tmp_path)
    store.open()
    store.save_topology({"format": 1, "next_queue_id": 2, "exchanges": [], "bindings": [],
                         "queues": [["old", 1, False, {"x-max-length": 2, "x-max-priority": 300}]]})
    for seq in range(1, 6):
        store.append(seq, [1], "", "old", {"delivery_mode": 2}, b"%d" % seq)
    store.close()
    broker = Broker(store=DiskStore(tmp_path))
    p = FakePeer(broker, b"p").open()
    assert broker.topology.queues["old"].settings.max_length == 2
    assert broker.topology.queues["old"].settings.max_priority is None
    assert message_count(p, "old") == 2  # applied on recovery: the oldest three dropped
    assert [b for op, _, b in p.get("old") if op == Op.BASIC_GET_OK] == [b"4"]
    broker.store.close()


def test_a_quorum_queue_keeps_transient_messages_too(node: Restartable) -> None:
    """RabbitMQ's quorum queues store every message durably, whatever its delivery mode."""
    p = node.peer()
    declare_durable(p, "quorum", arguments={"x-queue-type": "quorum"})
    declare_durable(p, "classic")
    p.send(Op.EXCHANGE_DECLARE, 1, "both", "fanout", False, True, False, False, {})
    p.send(Op.QUEUE_BIND, 1, "quorum", "both", "", {})
    p.send(Op.QUEUE_BIND, 1, "classic", "both", "", {})
    p.publish("both", "", b"transient")
    node.broker.commit()
    p = node.restart(crash=True)
    assert (message_count(p, "quorum"), message_count(p, "classic")) == (1, 0)


@pytest.mark.parametrize("crash", [False, True])
def test_a_transient_message_a_quorum_queue_shares_frees_nothing_the_quorum_queue_needs(
        node: Restartable, crash: bool) -> None:
    """A transient message reaches a quorum queue (which stores it) and a classic queue
    (which does not): taking it from the classic queue must not free the quorum queue's
    place in the store, or the segment holding a persistent message still queued there
    is deleted with it."""
    p = node.peer()
    declare_durable(p, "quorum", arguments={"x-queue-type": "quorum"})
    declare_durable(p, "classic")
    declare_durable(p, "filler")
    p.exchange("both", "fanout", durable=True)
    p.bind("quorum", "both")
    p.bind("classic", "both")
    p.publish("both", "", b"transient to both")
    publish_committed(node, p, "quorum", b"persistent")
    assert p.drain("classic") == [b"transient to both"]
    assert [b for op, _, b in p.get("quorum") if op == Op.BASIC_GET_OK] == [b"transient to both"]
    publish_committed(node, p, "filler", b"x" * 70_000)  # the next segment: the first may go
    p = node.restart(crash=crash)
    assert [b for op, _, b in p.get("quorum") if op == Op.BASIC_GET_OK] == [b"persistent"]
