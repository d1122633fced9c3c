"""Credit (prefetch), round-robin dispatch, acks and requeue, through the pure core."""
from zbroker.core import Broker
from zbroker.protocol import Op

from tests.unit.wire import FakePeer, bodies, deliveries


def setup(prefetch: int = 0, consumers: int = 1) -> tuple[Broker, FakePeer]:
    broker = Broker()
    peer = FakePeer(broker, b"peer-1").open()
    peer.declare("q")
    if prefetch:
        peer.qos(prefetch)
    for i in range(consumers):
        peer.consume("q", f"c{i}")
    return broker, peer


def test_prefetch_caps_unacked_deliveries() -> None:
    broker, peer = setup(prefetch=3)
    got = []
    for i in range(10):
        got += peer.publish("", "q", b"m%d" % i)
    assert bodies(got) == [b"m0", b"m1", b"m2"]
    assert broker.topology.queues["q"].resident_count == 7


def test_ack_returns_credit_one_for_one() -> None:
    _, peer = setup(prefetch=2)
    for i in range(5):
        peer.publish("", "q", b"m%d" % i)
    got = peer.ack(1)
    assert bodies(got) == [b"m2"]
    got = peer.ack(3, multiple=True)
    assert bodies(got) == [b"m3", b"m4"]


def test_prefetch_zero_is_unlimited() -> None:
    _, peer = setup(prefetch=0)
    got = []
    for _ in range(100):
        got += peer.publish("", "q", b"x")
    assert len(bodies(got)) == 100


def test_auto_ack_consumers_ignore_prefetch() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    peer.declare("q")
    peer.qos(1)
    peer.consume("q", "c", auto_ack=True)
    got = []
    for _ in range(5):
        got += peer.publish("", "q", b"x")
    assert len(bodies(got)) == 5
    assert peer.broker.connections[b"p"].channels[1].unacked == {}


def test_competing_consumers_round_robin() -> None:
    broker = Broker()
    a = FakePeer(broker, b"a").open()
    b = FakePeer(broker, b"b").open()
    a.declare("q")
    a.consume("q", "ca")
    b.consume("q", "cb")
    for i in range(6):
        a.publish("", "q", b"%d" % i)
    assert [d[1] for d in deliveries(a.received)] == ["ca"] * 3
    assert [d[1] for d in deliveries(b.collect())] == ["cb"] * 3


def test_consumer_without_credit_is_skipped() -> None:
    broker = Broker()
    a = FakePeer(broker, b"a").open()
    b = FakePeer(broker, b"b").open()
    a.declare("q")
    a.qos(1)
    a.consume("q", "ca")
    b.consume("q", "cb")  # unlimited
    for i in range(5):
        a.publish("", "q", b"%d" % i)
    a_got = [d for d in deliveries(a.received) if d[1] == "ca"]
    b_got = deliveries(b.collect())
    assert len(a_got) == 1 and len(b_got) == 4


def test_global_qos_limits_the_channel() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    peer.declare("q1")
    peer.declare("q2")
    peer.qos(2, global_qos=True)
    peer.consume("q1", "c1")
    peer.consume("q2", "c2")
    for _ in range(3):
        peer.publish("", "q1", b"1")
        peer.publish("", "q2", b"2")
    assert len(deliveries(peer.received)) == 2
    peer.ack(0, multiple=True)
    assert len(deliveries(peer.received)) == 4


def test_nack_requeues_at_head_marked_redelivered() -> None:
    broker, peer = setup(prefetch=1)
    peer.publish("", "q", b"first")
    peer.publish("", "q", b"second")
    got = peer.send(Op.BASIC_NACK, 1, 1, False, True)
    [redelivery] = deliveries(got)
    assert redelivery[3] is True  # redelivered
    assert bodies(got) == [b"first"]


def test_reject_without_requeue_drops() -> None:
    broker, peer = setup(prefetch=1)
    peer.publish("", "q", b"first")
    peer.publish("", "q", b"second")
    got = peer.send(Op.BASIC_REJECT, 1, 1, False)
    assert bodies(got) == [b"second"]
    assert deliveries(got)[0][3] is False


def test_closing_channel_requeues_unacked_in_order_to_others() -> None:
    broker = Broker()
    a = FakePeer(broker, b"a").open()
    b = FakePeer(broker, b"b").open()
    a.declare("q")
    b.qos(1)
    b.consume("q", "cb")
    a.qos(10)
    a.consume("q", "ca")
    for i in range(4):
        a.publish("", "q", b"%d" % i)
    b_first = bodies(b.collect())
    a.collect()
    # b took one, a three; a's connection dies: its three go back, b gets them as credit allows.
    broker.connection_lost(b"a", 0.0)
    assert broker.topology.queues["q"].consumers[0].tag == "cb"
    got = b.ack(1)
    assert len(b_first) == 1
    assert bodies(got) == [b"1"]  # a's first message, back at the head of the queue
    assert deliveries(got)[0][3] is True


def test_peer_gone_deletes_exclusive_queues_and_requeues() -> None:
    broker = Broker()
    a = FakePeer(broker, b"a").open()
    a.declare("excl", exclusive=True)
    a.declare("shared")
    a.consume("shared", "c")
    a.publish("", "shared", b"x")
    broker.connection_lost(b"a", 0.0)
    assert "excl" not in broker.topology.queues
    shared = broker.topology.queues["shared"]
    assert [m.body for m in shared.resident()] == [b"x"]
    assert list(shared.resident())[0].redelivered is True
    assert broker.connections == {}


def test_auto_delete_queue_goes_with_last_consumer() -> None:
    broker = Broker()
    a = FakePeer(broker, b"a").open()
    a.declare("ad", auto_delete=True)
    assert "ad" in broker.topology.queues  # not before its first consumer
    a.consume("ad", "c1")
    a.consume("ad", "c2")
    a.send(Op.BASIC_CANCEL, 1, "c1")
    assert "ad" in broker.topology.queues
    a.send(Op.BASIC_CANCEL, 1, "c2")
    assert "ad" not in broker.topology.queues


def test_unknown_delivery_tag_closes_channel_406() -> None:
    _, peer = setup()
    [(op, fields, _)] = peer.ack(99)
    assert op == Op.CHANNEL_CLOSE and fields[1] == 406
    assert fields[2] == "PRECONDITION_FAILED - unknown delivery tag 99"


def test_double_ack_is_unknown_tag() -> None:
    _, peer = setup()
    peer.publish("", "q", b"x")
    assert peer.ack(1) == []
    assert peer.ack(1)[0][1][1] == 406


def test_basic_get_counts_and_acks() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    peer.declare("q")
    for i in range(3):
        peer.publish("", "q", b"%d" % i)
    [(op, fields, body)] = peer.send(Op.BASIC_GET, 1, "q", False)
    assert op == Op.BASIC_GET_OK and body == b"0" and fields[5] == 2
    peer.send(Op.BASIC_GET, 1, "q", True)
    peer.send(Op.BASIC_GET, 1, "q", True)
    assert peer.send(Op.BASIC_GET, 1, "q", True)[0][0] == Op.BASIC_GET_EMPTY
    assert peer.ack(fields[1]) == []


def test_confirms_ack_each_batch_once_after_returns() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    peer.send(Op.CONFIRM_SELECT, 1)
    peer.declare("q")
    from zbroker.protocol import HEADER, encode
    parts = [HEADER]
    for _ in range(3):
        parts += [encode(Op.BASIC_PUBLISH, 1, "", "q", False, {}), b"x"]
    parts += [encode(Op.BASIC_PUBLISH, 1, "", "nowhere", True, {}), b"lost"]
    got = peer.send_parts(parts)
    assert [Op(op).name for op, _, _ in got] == ["BASIC_RETURN", "BASIC_ACK"]
    assert got[0][1][1] == 312 and got[0][2] == b"lost"
    assert got[1][1] == [1, 4, True]


def test_queue_delete_cancels_consumers() -> None:
    broker = Broker()
    a = FakePeer(broker, b"a").open()
    b = FakePeer(broker, b"b").open()
    a.declare("q")
    b.consume("q", "cb")
    a.send(Op.QUEUE_DELETE, 1, "q", False, False)
    assert [(Op(op).name, f) for op, f, _ in b.collect()] == [("BASIC_CANCEL", [1, "cb"])]


def test_single_rejects_restore_original_order() -> None:
    broker, peer = setup()
    for i in range(4):
        peer.publish("", "q", b"%d" % i)
    peer.send(Op.BASIC_CANCEL, 1, "c0")
    for tag in (1, 2, 3, 4):  # one by one: each would go to the head, reversing them
        peer.send(Op.BASIC_REJECT, 1, tag, True)
    queue = broker.topology.queues["q"]
    assert [m.body for m in queue.resident()] == [b"0", b"1", b"2", b"3"]
    assert all(m.redelivered for m in queue.resident())


def test_requeued_message_goes_back_before_newer_ones() -> None:
    broker, peer = setup(prefetch=1)
    for i in range(3):
        peer.publish("", "q", b"%d" % i)
    peer.send(Op.BASIC_CANCEL, 1, "c0")
    peer.send(Op.BASIC_REJECT, 1, 1, True)
    assert [m.body for m in broker.topology.queues["q"].resident()] == [b"0", b"1", b"2"]


def test_long_dispatch_is_cut_into_batches() -> None:
    from zbroker.core.messaging.delivery import DISPATCH_BATCH
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    peer.declare("q")
    for _ in range(DISPATCH_BATCH * 2 + 5):
        peer.publish("", "q", b"x")
    got = peer.consume("q", "c", auto_ack=True)
    assert len(deliveries(got)) == DISPATCH_BATCH
    assert broker.has_pending_work
    broker.run_pending()
    broker.run_pending()
    assert len(deliveries(peer.collect())) == DISPATCH_BATCH + 5
    assert not broker.has_pending_work


def test_blocked_connection_gets_nothing_until_it_drains() -> None:
    broker = Broker()
    slow = FakePeer(broker, b"slow").open()
    fast = FakePeer(broker, b"fast").open()
    slow.declare("q")
    slow.consume("q", "cs", auto_ack=True)
    fast.consume("q", "cf", auto_ack=True)
    broker.set_pipe_full(b"slow", True)
    for i in range(4):
        fast.publish("", "q", b"%d" % i)
    assert deliveries(slow.collect()) == []
    assert len(deliveries(fast.received)) == 4  # the other consumer takes them all
    fast.send(Op.BASIC_CANCEL, 1, "cf")
    fast.publish("", "q", b"waiting")
    assert [m.body for m in broker.topology.queues["q"].resident()] == [b"waiting"]
    broker.set_pipe_full(b"slow", False)
    assert bodies(slow.collect()) == [b"waiting"]
