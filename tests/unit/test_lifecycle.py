"""Message and queue lifetimes through the pure core, on a fake clock: per-queue and
per-message TTL, TTL 0, expiry away from the head, requeue keeping the expiry, x-expires."""
from __future__ import annotations

import pytest

from tests.unit.wire import FakeClock, FakePeer, bodies, closes
from zbroker.core import Broker
from zbroker.protocol import Op


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def broker(clock: FakeClock) -> Broker:
    return Broker(now=clock.now)


@pytest.fixture
def peer(broker: Broker, clock: FakeClock) -> FakePeer:
    return FakePeer(broker, b"p", clock).open()


def got(frames: list) -> list:
    return [body for op, _, body in frames if op == Op.BASIC_GET_OK]


def test_queue_ttl_expires_messages_nobody_consumes(peer: FakePeer, broker: Broker, clock: FakeClock) -> None:
    peer.declare("q", arguments={"x-message-ttl": 1000})
    peer.publish("", "q", b"a")
    clock.advance(0.5)
    peer.publish("", "q", b"b")
    assert broker.next_deadline() == pytest.approx(clock.now + 0.5)
    clock.advance(0.5, broker)
    assert peer.count("q") == 1  # 'a' left the count when its time came, unconsumed
    clock.advance(0.5, broker)
    assert peer.count("q") == 0
    assert broker.timers.next_deadline() is None  # (statistics still sample)


def test_the_lower_of_message_and_queue_ttl_wins(peer: FakePeer, broker: Broker, clock: FakeClock) -> None:
    peer.declare("q", arguments={"x-message-ttl": 1000})
    peer.publish("", "q", b"short", properties={"expiration": "200"})
    peer.publish("", "q", b"long", properties={"expiration": "5000"})
    clock.advance(0.2, broker)
    assert got(peer.get("q")) == [b"long"]
    peer.publish("", "q", b"capped", properties={"expiration": "5000"})
    clock.advance(1.0, broker)
    assert peer.count("q") == 0


def test_a_message_behind_a_longer_lived_one_still_expires_on_time(peer: FakePeer, broker: Broker,
                                                                  clock: FakeClock) -> None:
    """RabbitMQ expires only at the head; zbroker takes a due message out wherever it is."""
    peer.declare("q")
    peer.publish("", "q", b"hour", properties={"expiration": "3600000"})
    peer.publish("", "q", b"second", properties={"expiration": "1000"})
    peer.publish("", "q", b"forever")
    clock.advance(1.0, broker)
    assert peer.count("q") == 2
    assert got(peer.get("q")) + got(peer.get("q")) == [b"hour", b"forever"]


def test_ttl_zero_delivers_to_a_waiting_consumer_or_expires(peer: FakePeer, broker: Broker) -> None:
    peer.declare("q", arguments={"x-message-ttl": 0})
    peer.publish("", "q", b"nobody there")
    assert peer.count("q") == 0
    peer.consume("q", "c", auto_ack=True)
    assert bodies(peer.publish("", "q", b"taken at once")) == [b"taken at once"]


def test_a_requeued_message_keeps_its_original_expiry(peer: FakePeer, broker: Broker, clock: FakeClock) -> None:
    peer.declare("q", arguments={"x-message-ttl": 1000})
    peer.consume("q", "c")
    [delivery] = [f for op, f, _ in peer.publish("", "q", b"m") if op == Op.BASIC_DELIVER]
    clock.advance(0.8)
    peer.cancel("c")
    peer.nack(delivery[2])  # back in the queue, 0.2 s to live
    assert peer.count("q") == 1
    clock.advance(0.2, broker)
    assert peer.count("q") == 0


def test_an_unacked_message_does_not_expire_until_it_is_back(peer: FakePeer, broker: Broker,
                                                             clock: FakeClock) -> None:
    peer.declare("q", arguments={"x-message-ttl": 100})
    peer.consume("q", "c")
    [delivery] = [f for op, f, _ in peer.publish("", "q", b"m") if op == Op.BASIC_DELIVER]
    clock.advance(10, broker)
    peer.cancel("c")
    peer.nack(delivery[2])  # requeued long after its time: expired at once
    assert peer.count("q") == 0


def test_expired_messages_are_not_delivered_between_ticks(peer: FakePeer, clock: FakeClock) -> None:
    peer.declare("q", arguments={"x-message-ttl": 100})
    peer.publish("", "q", b"stale")
    clock.advance(1)  # no tick ran: the consumer arriving must still not see it
    assert bodies(peer.consume("q", "c", auto_ack=True)) == []
    assert got(peer.get("q")) == []


@pytest.mark.parametrize("expiration, text", [
    ("abc", "invalid expiration 'abc': no_integer"),
    ("-5", "invalid expiration '-5': {value_negative,-5}"),
    ("10s", "invalid expiration '10s': {leftover_string,\"s\"}"),
    ("315360000001", "invalid expiration '315360000001': {value_too_large,315360000001}"),
])
def test_an_invalid_expiration_is_406(peer: FakePeer, expiration: str, text: str) -> None:
    peer.declare("q")
    assert closes(peer.publish("", "q", b"x", properties={"expiration": expiration})) == [
        (406, "PRECONDITION_FAILED - " + text)]


def test_x_expires_deletes_an_unused_queue(peer: FakePeer, broker: Broker, clock: FakeClock) -> None:
    peer.declare("q", arguments={"x-expires": 1000})
    peer.publish("", "q", b"lost with the queue")
    clock.advance(0.6, broker)
    peer.get("q")  # a use: the clock starts again
    clock.advance(0.6, broker)
    assert "q" in broker.topology.queues
    clock.advance(0.4, broker)
    assert "q" not in broker.topology.queues
    assert closes(peer.declare("q", passive=True)) == [(404, "NOT_FOUND - no queue 'q' in vhost '/'")]


def test_x_expires_waits_while_a_consumer_is_there(peer: FakePeer, broker: Broker, clock: FakeClock) -> None:
    peer.declare("q", arguments={"x-expires": 1000})
    peer.consume("q", "c")
    clock.advance(5, broker)
    assert "q" in broker.topology.queues
    peer.cancel("c")
    clock.advance(0.9, broker)
    assert "q" in broker.topology.queues
    clock.advance(0.1, broker)
    assert "q" not in broker.topology.queues


def test_a_redeclare_counts_as_use(peer: FakePeer, broker: Broker, clock: FakeClock) -> None:
    peer.declare("q", arguments={"x-expires": 1000})
    clock.advance(0.9, broker)
    peer.declare("q", arguments={"x-expires": 1000})
    clock.advance(0.9, broker)
    assert "q" in broker.topology.queues


def test_thousands_of_expiring_messages_leave_no_heap_behind(peer: FakePeer, broker: Broker,
                                                             clock: FakeClock) -> None:
    peer.declare("q", arguments={"x-message-ttl": 50})
    for i in range(5000):
        peer.publish("", "q", b"%d" % i)
    clock.advance(1, broker)
    queue = broker.topology.queues["q"]
    assert (queue.ready, queue.resident_count, len(queue._heap), len(queue._dead)) == (0, 0, 0, 0)
    assert len(broker.timers._heap) <= 2
