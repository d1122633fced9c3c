"""A transient queue's backlog is bounded by disk, not memory: past its in-memory window
its tail is paged to the store as transient records (never recovered), and every record
it wrote or shares is released when the message leaves it, however it leaves."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import pytest

from tests.unit.test_durability import PERSISTENT, Restartable, message_count, settle
from tests.unit.wire import FakeClock, FakePeer, bodies, deliveries
from zbroker.core import Broker
from zbroker.core.messaging import classic as queues_module
from zbroker.protocol import Op
from zbroker.storage import DiskStore


@pytest.fixture
def node(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Restartable]:
    monkeypatch.setattr(queues_module, "PAGE_AFTER", 5)
    monkeypatch.setattr(queues_module, "TRANSIENT_PAGE_AFTER", 5)
    node = Restartable(tmp_path)
    yield node
    node.broker.store.close()


def released(node: Restartable) -> bool:
    """Nothing in the store is held any more (every segment's count of references is 0)."""
    node.broker.commit()
    return all(n == 0 for n in node.broker.store._live.values())


def test_a_transient_backlog_is_paged_and_delivered_whole_in_order(node: Restartable) -> None:
    p = node.peer()
    p.declare("t")
    for i in range(40):
        p.publish("", "t", b"m%02d" % i)
    queue = node.broker.topology.queues["t"]
    assert (queue.resident_count, queue.paged_count) == (5, 35)
    assert queue.journal is not None and queue.journal.queue_id < 0  # never a durable queue's id
    p.consume("t", "c")
    assert bodies(p.received) == [b"m%02d" % i for i in range(40)]
    p.send(Op.BASIC_NACK, 1, 0, True, True)  # requeue all 40, then take them again
    assert bodies(p.received)[40:] == [b"m%02d" % i for i in range(40)]
    p.send(Op.BASIC_ACK, 1, 0, True)
    assert message_count(p, "t") == 0 and released(node)


def test_a_restart_recovers_no_transient_queue_and_no_transient_message(node: Restartable) -> None:
    p = node.peer()
    p.declare("t")
    p.declare("d", durable=True)
    for i in range(20):
        p.publish("", "t", b"%d" % i)
        p.publish("", "d", b"%d" % i)  # transient messages in a durable queue: gone too
    node.broker.commit()
    p = node.restart(crash=True)
    assert "t" not in node.broker.topology.queues
    assert message_count(p, "d") == 0


def test_persistent_fanout_to_durable_and_transient_queues_shares_one_record(node: Restartable) -> None:
    p = node.peer()
    p.send(Op.EXCHANGE_DECLARE, 1, "fan", "fanout", False, True, False, False, {})
    p.declare("d", durable=True)
    p.declare("t")
    p.send(Op.QUEUE_BIND, 1, "d", "fan", "", {})
    p.send(Op.QUEUE_BIND, 1, "t", "fan", "", {})
    for i in range(20):
        p.publish("fan", "", b"%02d" % i, properties=PERSISTENT)
    node.broker.commit()
    p.consume("t", "c")  # the transient queue's copies: taken and acked
    assert bodies(p.received) == [b"%02d" % i for i in range(20)]
    p.send(Op.BASIC_ACK, 1, 0, True)
    p.cancel("c")
    node.broker.commit()
    # The durable queue still holds one reference to each record: the transient queue's
    # acks released only its own.
    assert sum(node.broker.store._live.values()) == 20
    p = node.restart(crash=True)
    p.consume("d", "c2", auto_ack=True)  # the durable queue's are all still there
    assert bodies(p.received) == [b"%02d" % i for i in range(20)]
    assert released(node)


def test_purge_and_delete_release_a_transient_paged_tail(node: Restartable) -> None:
    p = node.peer()
    p.declare("purged")
    p.declare("deleted")
    for i in range(30):
        p.publish("", "purged", b"%d" % i)
        p.publish("", "deleted", b"%d" % i)
    assert p.send(Op.QUEUE_PURGE, 1, "purged")[0][1][1] == 30
    assert p.send(Op.QUEUE_DELETE, 1, "deleted", False, False)[0][1][1] == 30
    assert released(node)


def test_paged_transient_messages_expire_dead_letter_and_are_released(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queues_module, "PAGE_AFTER", 5)
    monkeypatch.setattr(queues_module, "TRANSIENT_PAGE_AFTER", 5)
    clock = FakeClock()
    broker = Broker(store=DiskStore(tmp_path, segment_bytes=64 * 1024), now=clock.now)
    try:
        p = FakePeer(broker, b"p", clock).open()
        p.declare("dlq")
        p.declare("t", arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": "",
                                  "x-dead-letter-routing-key": "dlq"})
        for i in range(30):
            p.publish("", "t", b"%02d" % i)
        assert broker.topology.queues["t"].paged_count == 25
        clock.advance(1.5, broker)
        assert message_count(p, "t") == 0
        p.consume("dlq", "c", auto_ack=True)
        assert bodies(p.received) == [b"%02d" % i for i in range(30)]
        assert all(f[6]["headers"]["x-death"][0]["reason"] == "expired" for f in deliveries(p.received))
        broker.commit()
        assert all(n == 0 for n in broker.store._live.values())
    finally:
        broker.close()


def test_compaction_moves_a_transient_paged_tail(node: Restartable) -> None:
    p = node.peer()
    p.declare("backlog")
    p.declare("flow", durable=True)
    p.consume("flow", "worker", auto_ack=True)
    for round_ in range(40):  # one backlog message per round among 50 that flow away
        p.publish("", "backlog", b"backlog %02d" % round_)
        for i in range(50):
            p.publish("", "flow", b"%04d" % i * 25, properties=PERSISTENT)
        node.broker.commit()
        p.collect()
    settle(node)
    assert node.broker.topology.queues["backlog"].paged_count == 35
    assert not (node.directory / "journal" / "00000001.seg").exists()  # compacted away
    p2 = FakePeer(node.broker, b"p2").open()
    p2.consume("backlog", "c", auto_ack=True)
    assert bodies(p2.received) == [b"backlog %02d" % i for i in range(40)]
    assert released(node)
