"""The consumer timeout (RabbitMQ's delivery acknowledgement timeout) in the pure core,
with a fake clock: which timeout applies, when it fires, what happens to the messages."""
from __future__ import annotations

from tests.unit.wire import FakeClock, FakePeer, bodies, closes, deliveries
from zbroker.core import Broker
from zbroker.protocol import Op


def timed_out_text(channel: int, ms: int) -> str:
    return (f"PRECONDITION_FAILED - delivery acknowledgement on channel {channel} timed out. Timeout value "
            f"used: {ms} ms. This timeout value can be configured, see consumers doc guide to learn more")


def setup(server_ms: int = 1000, queue_ms: int | None = None, prefetch: int = 10,
          consumer_ms: int | None = None) -> tuple[Broker, FakeClock, FakePeer]:
    clock = FakeClock()
    broker = Broker(now=clock.now, consumer_timeout_ms=server_ms)
    peer = FakePeer(broker, b"worker", clock).open()
    peer.declare("tasks", arguments={} if queue_ms is None else {"x-consumer-timeout": queue_ms})
    peer.qos(prefetch)
    peer.consume("tasks", "w", arguments={} if consumer_ms is None else {"x-consumer-timeout": consumer_ms})
    return broker, clock, peer


def test_an_unacked_delivery_past_the_timeout_closes_its_channel_and_is_requeued() -> None:
    broker, clock, peer = setup(server_ms=1000)
    peer.publish("", "tasks", b"job")
    assert bodies(peer.received) == [b"job"]
    clock.advance(0.999, broker)
    assert closes(peer.collect()) == []
    clock.advance(0.002, broker)
    assert closes(peer.collect()) == [(406, timed_out_text(1, 1000))]
    other = FakePeer(broker, b"other", clock).open()
    [delivery] = deliveries(other.consume("tasks", "o"))
    assert delivery[3] is True  # redelivered, as after any channel close


def test_an_ack_in_time_keeps_the_channel_and_the_next_delivery_is_timed_from_its_own_send() -> None:
    broker, clock, peer = setup(server_ms=1000)
    peer.publish("", "tasks", b"first")
    clock.advance(0.5, broker)
    peer.publish("", "tasks", b"second")
    first, second = [d[2] for d in deliveries(peer.received)]
    clock.advance(0.4, broker)
    peer.ack(first)
    clock.advance(0.5, broker)  # 1.4 s after "first", 0.9 s after "second"
    assert closes(peer.collect()) == []
    clock.advance(0.2, broker)
    assert closes(peer.collect()) == [(406, timed_out_text(1, 1000))]
    assert broker.topology.queues["tasks"].message_count == 1  # "second" is back


def test_the_consumer_argument_beats_the_queue_argument_which_beats_the_server() -> None:
    for server_ms, queue_ms, consumer_ms, fires_after in ((1000, 5000, None, 5.0), (60_000, 2000, None, 2.0),
                                                          (1000, 5000, 3000, 3.0), (1000, None, 0, None),
                                                          (1000, 0, None, None), (0, None, None, None)):
        broker, clock, peer = setup(server_ms, queue_ms, consumer_ms=consumer_ms)
        peer.publish("", "tasks", b"job")
        peer.collect()
        if fires_after is None:  # 0 turns it off
            clock.advance(3600, broker)
            assert closes(peer.collect()) == [] and broker.next_deadline() == broker.stats.next_sample
            continue
        clock.advance(fires_after - 0.01, broker)
        assert closes(peer.collect()) == [], (server_ms, queue_ms, consumer_ms)
        clock.advance(0.02, broker)
        assert closes(peer.collect()) == [(406, timed_out_text(1, int(fires_after * 1000)))]


def test_a_basic_get_without_ack_is_timed_by_its_queue() -> None:
    broker, clock, peer = setup(server_ms=60_000, queue_ms=500)
    peer.cancel("w")
    peer.publish("", "tasks", b"got")
    assert peer.get("tasks", auto_ack=False)[0][0] == Op.BASIC_GET_OK
    clock.advance(0.6, broker)
    assert closes(peer.collect()) == [(406, timed_out_text(1, 500))]
    assert broker.topology.queues["tasks"].message_count == 1


def test_auto_ack_consumers_are_never_timed_and_cost_no_timer() -> None:
    broker, clock, peer = setup(server_ms=1000)
    peer.cancel("w")
    peer.consume("tasks", "auto", auto_ack=True)
    for i in range(100):
        peer.publish("", "tasks", b"%d" % i)
    assert len(bodies(peer.received)) == 100
    assert broker.ack_timers.next_deadline() is None


def test_a_channel_holds_one_timer_entry_however_many_deliveries() -> None:
    broker, clock, peer = setup(server_ms=1000, prefetch=0)
    for i in range(1000):
        peer.publish("", "tasks", b"%d" % i)
        if i % 100 == 0:
            clock.advance(0.001)
    tags = [d[2] for d in deliveries(peer.received)]
    assert len(tags) == 1000 and len(broker.ack_timers._heap) == 1
    peer.ack(tags[-1], multiple=True)
    clock.advance(5, broker)  # the stale entry fires, finds nothing, schedules nothing
    assert closes(peer.collect()) == [] and broker.ack_timers.next_deadline() is None


def test_a_closed_channel_s_timer_is_dropped() -> None:
    broker, clock, peer = setup(server_ms=1000)
    peer.publish("", "tasks", b"job")
    peer.collect()
    peer.send(Op.CHANNEL_CLOSE, 1, 200, "bye")
    assert broker.ack_timers.next_deadline() is None
    clock.advance(2, broker)
    assert broker.topology.queues["tasks"].message_count == 1
