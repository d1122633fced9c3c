"""Dead-lettering through the pure core: reasons, the x-death history as RabbitMQ writes
it, routing keys, cycles, and the retry-with-delay pattern."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.unit.wire import FakeClock, FakePeer, deliveries, props_of
from zbroker.core import Broker
from zbroker.protocol import Op


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def broker(clock: FakeClock) -> Broker:
    return Broker(now=clock.now)


@pytest.fixture
def peer(broker: Broker, clock: FakeClock) -> FakePeer:
    p = FakePeer(broker, b"p", clock).open()
    p.exchange("dlx", "fanout")
    p.declare("dead")
    p.bind("dead", "dlx")
    return p


def get_one(peer: FakePeer, queue: str) -> tuple[dict, bytes, list]:
    frames = peer.get(queue)
    [(fields, body)] = [(f, b) for op, f, b in frames if op == Op.BASIC_GET_OK]
    return fields[-1], body, fields


def deliver_tag(frames: list) -> int:
    return deliveries(frames)[0][2]


def test_a_rejected_message_is_dead_lettered_with_its_history(peer: FakePeer, clock: FakeClock) -> None:
    peer.declare("work", arguments={"x-dead-letter-exchange": "dlx"})
    peer.consume("work", "c")
    frames = peer.publish("", "work", b"job", properties={
        "expiration": "60000", "headers": {"app": "kept"}, "delivery_mode": 2, "message_id": "m1"})
    peer.reject(deliver_tag(frames), requeue=False)
    props, body, fields = get_one(peer, "dead")
    assert body == b"job"
    assert fields[3:5] == ["dlx", "work"]  # exchange, routing key as dead-lettered
    assert "expiration" not in props and props["delivery_mode"] == 2 and props["message_id"] == "m1"
    headers = props["headers"]
    assert headers["app"] == "kept"
    assert headers["x-death"] == [{
        "count": 1, "reason": "rejected", "queue": "work",
        "time": datetime.fromtimestamp(int(clock.now), tz=timezone.utc),
        "exchange": "", "routing-keys": ["work"], "original-expiration": "60000"}]
    assert (headers["x-first-death-reason"], headers["x-first-death-queue"], headers["x-first-death-exchange"]) \
        == ("rejected", "work", "")
    assert headers["x-last-death-reason"] == "rejected"


def test_nack_multiple_without_requeue_dead_letters_every_one(peer: FakePeer) -> None:
    peer.declare("work", arguments={"x-dead-letter-exchange": "dlx"})
    peer.consume("work", "c")
    tags = [deliver_tag(peer.publish("", "work", b"%d" % i)) for i in range(3)]
    peer.nack(tags[-1], multiple=True, requeue=False)
    assert [get_one(peer, "dead")[1] for _ in range(3)] == [b"0", b"1", b"2"]


def test_the_dead_letter_routing_key_replaces_the_original(peer: FakePeer) -> None:
    peer.exchange("dlx-direct", "direct")
    peer.declare("by-key")
    peer.bind("by-key", "dlx-direct", "failed")
    peer.declare("work", arguments={"x-dead-letter-exchange": "dlx-direct",
                                    "x-dead-letter-routing-key": "failed"})
    peer.consume("work", "c")
    peer.reject(deliver_tag(peer.publish("", "work", b"x")), requeue=False)
    props, _, fields = get_one(peer, "by-key")
    assert fields[4] == "failed"
    assert props["headers"]["x-death"][0]["routing-keys"] == ["work"]


def test_expired_and_maxlen_are_reasons_too(peer: FakePeer, broker: Broker, clock: FakeClock) -> None:
    peer.declare("ttl", arguments={"x-dead-letter-exchange": "dlx", "x-message-ttl": 100})
    peer.declare("short", arguments={"x-dead-letter-exchange": "dlx", "x-max-length": 1})
    peer.publish("", "ttl", b"late")
    clock.advance(0.1, broker)
    peer.publish("", "short", b"oldest")
    peer.publish("", "short", b"newest")
    reasons = [(get_one(peer, "dead")[0]["headers"]["x-death"][0]["reason"]) for _ in range(2)]
    assert reasons == ["expired", "maxlen"]
    assert peer.count("short") == 1


def test_a_missing_dead_letter_exchange_drops_the_message(peer: FakePeer, broker: Broker) -> None:
    peer.declare("work", arguments={"x-dead-letter-exchange": "nowhere"})
    peer.consume("work", "c")
    peer.reject(deliver_tag(peer.publish("", "work", b"x")), requeue=False)
    assert broker.topology.queues["work"].ready == 0 and broker.topology.queues["dead"].ready == 0


def test_the_same_death_twice_counts_up_and_moves_to_the_front(peer: FakePeer, broker: Broker,
                                                               clock: FakeClock) -> None:
    """The retry-with-delay pattern: work rejects to a delay queue whose TTL sends it back."""
    peer.exchange("retry", "fanout")
    peer.declare("delay", arguments={"x-message-ttl": 1000, "x-dead-letter-exchange": "",
                                     "x-dead-letter-routing-key": "work"})
    peer.bind("delay", "retry")
    peer.declare("work", arguments={"x-dead-letter-exchange": "retry"})
    peer.consume("work", "c")
    first = peer.publish("", "work", b"job")
    start = clock.now
    peer.reject(deliver_tag(first), requeue=False)
    assert peer.collect() == []  # waiting in the delay queue
    second = clock.advance(1.0, broker)
    again = peer.collect()
    assert [body for op, _, body in again if op == Op.BASIC_DELIVER] == [b"job"]
    deaths = props_of(again)[0]["headers"]["x-death"]
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [("delay", "expired", 1),
                                                                        ("work", "rejected", 1)]
    peer.reject(deliver_tag(again), requeue=False)
    clock.advance(1.0, broker)
    third = peer.collect()
    deaths = props_of(third)[0]["headers"]["x-death"]
    assert [(d["queue"], d["reason"], d["count"]) for d in deaths] == [("delay", "expired", 2),
                                                                        ("work", "rejected", 2)]
    # The time of an entry is its first death; the exchange/keys are those before it.
    assert deaths[1]["time"] == datetime.fromtimestamp(int(start), tz=timezone.utc)
    assert deaths[0]["time"] == datetime.fromtimestamp(int(second), tz=timezone.utc)
    assert deaths[0]["exchange"] == "retry"
    assert props_of(third)[0]["headers"]["x-first-death-queue"] == "work"


def test_an_automatic_cycle_is_dropped(peer: FakePeer, broker: Broker, clock: FakeClock) -> None:
    """A TTL queue dead-lettering to itself through the default exchange: RabbitMQ drops it."""
    peer.declare("loop", arguments={"x-message-ttl": 100, "x-dead-letter-exchange": ""})
    peer.declare("other", arguments={"x-message-ttl": 100, "x-dead-letter-exchange": "",
                                     "x-dead-letter-routing-key": "loop"})
    peer.publish("", "loop", b"x")
    clock.advance(0.1, broker)  # it died in 'loop': going back there closes the cycle
    assert broker.topology.queues["loop"].ready == 0
    peer.publish("", "other", b"y")
    clock.advance(0.1, broker)  # other -> loop: a first visit, kept
    assert broker.topology.queues["loop"].ready == 1
    clock.advance(0.1, broker)  # loop -> loop: dropped
    assert broker.topology.queues["loop"].ready == 0
    assert broker.timers.next_deadline() is None  # (statistics still sample)


def test_a_cycle_with_a_rejection_goes_on(peer: FakePeer) -> None:
    peer.declare("again", arguments={"x-dead-letter-exchange": ""})
    peer.consume("again", "c")
    frames = peer.publish("", "again", b"x")
    for _ in range(3):  # each rejection sends it round again
        frames = peer.reject(deliver_tag(frames), requeue=False)
    assert props_of(frames)[0]["headers"]["x-death"][0]["count"] == 3


def test_reject_of_a_message_from_a_deleted_queue_is_not_dead_lettered(peer: FakePeer, broker: Broker) -> None:
    peer.declare("work", arguments={"x-dead-letter-exchange": "dlx"})
    peer.consume("work", "c")
    tag = deliver_tag(peer.publish("", "work", b"x"))
    peer.send(Op.QUEUE_DELETE, 1, "work", False, False)
    peer.reject(tag, requeue=False)
    assert broker.topology.queues["dead"].ready == 0  # the queue is gone: so is its DLX rule
