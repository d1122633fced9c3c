"""Priority lanes, consumer priorities and single active consumer, through the pure core."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.unit.wire import FakePeer, bodies, closes, deliveries
from zbroker.core import Broker
from zbroker.protocol import Op
from zbroker.core.messaging import classic as queue_module
from zbroker.storage import DiskStore


def publish_priorities(peer: FakePeer, queue: str, priorities: list[int | None], persistent: bool = False) -> None:
    for i, priority in enumerate(priorities):
        props: dict = {} if priority is None else {"priority": priority}
        if persistent:
            props["delivery_mode"] = 2
        peer.publish("", queue, b"%d:%s" % (i, str(priority).encode()), properties=props)




def test_higher_priority_first_fifo_within_none_is_zero_above_max_is_max(peer: FakePeer) -> None:
    peer.declare("q", arguments={"x-max-priority": 5})
    publish_priorities(peer, "q", [None, 1, 9, 5, 0, 1])
    assert peer.drain("q") == [b"2:9", b"3:5", b"1:1", b"5:1", b"0:None", b"4:0"]


def test_a_queue_without_max_priority_ignores_message_priority(peer: FakePeer) -> None:
    peer.declare("q")
    publish_priorities(peer, "q", [1, 9, 5])
    assert peer.drain("q") == [b"0:1", b"1:9", b"2:5"]


def test_a_requeued_message_goes_back_to_its_place_in_its_lane(peer: FakePeer) -> None:
    peer.declare("q", arguments={"x-max-priority": 2})
    publish_priorities(peer, "q", [2, 2, 1])
    peer.qos(1)
    got = peer.consume("q", "c")
    first = deliveries(got)[0]
    peer.cancel("c")
    peer.nack(first[2])
    assert peer.drain("q") == [b"0:2", b"1:2", b"2:1"]


def test_priorities_hold_for_the_paged_tail_and_across_restart(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(queue_module, "PAGE_AFTER", 3)
    broker = Broker(store=DiskStore(tmp_path))
    peer = FakePeer(broker, b"p").open()
    peer.declare("q", durable=True, arguments={"x-max-priority": 3})
    order = [0, 3, 1, 0, 2, 3, 1, 0, 2, 3]
    publish_priorities(peer, "q", order, persistent=True)
    broker.commit()
    assert broker.topology.queues["q"].paged_count == 7
    expected = sorted((f"{i}:{p}".encode() for i, p in enumerate(order)),
                      key=lambda b: (-int(b.split(b":")[1]), int(b.split(b":")[0])))
    broker.store._lock.release()  # crash, then recover into lanes again
    broker = Broker(store=DiskStore(tmp_path))
    peer = FakePeer(broker, b"p").open()
    assert broker.topology.queues["q"].paged_count > 0
    assert peer.drain("q") == expected
    broker.store.close()


def test_higher_priority_consumers_get_messages_first(peer: FakePeer) -> None:
    peer.declare("q")
    peer.qos(1)
    peer.consume("q", "low", arguments={"x-priority": 1})
    peer.consume("q", "high", arguments={"x-priority": 10})
    got = []
    for i in range(3):
        got += peer.publish("", "q", b"%d" % i)
    # high holds one, then only low has credit; the third waits for either.
    assert [d[1] for d in deliveries(got)] == ["high", "low"]
    high_tag = deliveries(got)[0][2]
    assert [d[1] for d in deliveries(peer.ack(high_tag))] == ["high"]


def test_equal_priorities_take_turns(peer: FakePeer) -> None:
    peer.declare("q")
    for tag in ("a", "b", "c"):
        peer.consume("q", tag, arguments={"x-priority": 5})
    peer.consume("q", "low", arguments={"x-priority": 1})
    got = []
    for i in range(6):
        got += peer.publish("", "q", b"%d" % i)
    assert [d[1] for d in deliveries(got)] == ["a", "b", "c", "a", "b", "c"]


def test_a_non_integer_consumer_priority_is_406(peer: FakePeer) -> None:
    peer.declare("q")
    assert closes(peer.consume("q", "c", arguments={"x-priority": "high"})) == [
        (406, "PRECONDITION_FAILED - invalid arg 'x-priority' for queue 'q' in vhost '/': "
              "\"expected integer, got longstr\"")]


def test_single_active_consumer_fails_over_in_registration_order() -> None:
    broker = Broker()
    a = FakePeer(broker, b"a").open()
    b = FakePeer(broker, b"b").open()
    a.declare("q", arguments={"x-single-active-consumer": True})
    a.consume("q", "first")
    b.consume("q", "second")
    b.consume("q", "third", ch=1)
    for i in range(3):
        a.publish("", "q", b"%d" % i)
    assert bodies(a.received) == [b"0", b"1", b"2"] and bodies(b.collect()) == []
    tags = [d[2] for d in deliveries(a.received)]
    a.ack(tags[0])
    broker.connection_lost(b"a", 0.0)  # two unacked come back, to the next consumer
    taken = deliveries(b.collect())
    assert [(d[1], d[3]) for d in taken] == [("second", True), ("second", True)]
    b.cancel("second")
    assert [d[1] for d in deliveries(b.publish("", "q", b"3"))] == ["third"]


def test_a_cancelled_single_active_consumer_s_unacked_come_first_to_the_next_one() -> None:
    """pika cancels its consumers before it closes a channel: the next active consumer
    gets nothing until the cancelled one's deliveries are back, then those first, in
    order, then the newer ones (as RabbitMQ's classic queue)."""
    broker = Broker()
    a = FakePeer(broker, b"a").open()
    b = FakePeer(broker, b"b").open()
    a.declare("q", arguments={"x-single-active-consumer": True})
    a.qos(2)
    a.consume("q", "first")
    b.consume("q", "second")
    for i in range(4):
        a.publish("", "q", b"%d" % i)
    assert bodies(a.received) == [b"0", b"1"]
    a.cancel("first")
    assert deliveries(b.collect()) == []  # "first" still holds 0 and 1
    a.send(Op.CHANNEL_CLOSE, 1, 200, "bye")
    taken = deliveries(b.collect())
    assert bodies(b.received) == [b"0", b"1", b"2", b"3"]
    assert [d[3] for d in taken] == [True, True, False, False]


def test_a_cancelled_single_active_consumer_that_acks_hands_over_on_the_ack() -> None:
    broker = Broker()
    a = FakePeer(broker, b"a").open()
    b = FakePeer(broker, b"b").open()
    a.declare("q", arguments={"x-single-active-consumer": True})
    a.qos(1)
    a.consume("q", "first")
    b.consume("q", "second")
    a.publish("", "q", b"0")
    a.publish("", "q", b"1")
    [tag] = [d[2] for d in deliveries(a.received)]
    a.cancel("first")
    assert deliveries(b.collect()) == []
    a.ack(tag)
    assert bodies(b.collect()) == [b"1"]
