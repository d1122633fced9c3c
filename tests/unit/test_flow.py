"""Flow control and alarms through the pure core and the zbroker wire: publish credit,
the delivery window, memory/disk alarms blocking publishers (never consumers)."""
from __future__ import annotations

import pytest

from tests.unit.wire import FakePeer, bodies, deliveries
from zbroker.core import Broker
from zbroker.credit import DELIVERY_COST, message_cost
from zbroker.protocol import HEADER, Op, encode
from zbroker.resources import memory_limit, parse_size
from zbroker.wires.native import NativeWire


def ops(got: list) -> list[str]:
    return [Op(op).name for op, _, _ in got]


def closed_with(got: list) -> tuple[int, str] | None:
    for op, fields, _ in got:
        if op == Op.CONNECTION_CLOSE:
            return fields[0], fields[1]
    return None


@pytest.fixture
def pair() -> tuple[Broker, FakePeer, FakePeer]:
    broker = Broker()
    pub = FakePeer(broker, b"pub").open()
    cons = FakePeer(broker, b"cons").open()
    cons.declare("q")
    cons.consume("q", "c")
    return broker, pub, cons


# -- alarms --------------------------------------------------------------------------

def test_alarm_blocks_connections_that_published_and_only_those(pair) -> None:
    broker, pub, cons = pair
    pub.publish("", "q", b"before")
    broker.set_alarm("memory", True, 0.0)
    assert [f for op, f, _ in pub.collect() if op == Op.CONNECTION_BLOCKED] == [["low on memory"]]
    assert ops(cons.collect()) == ["BASIC_DELIVER"]  # the consumer is not blocked
    # Consumers keep consuming and acknowledging during the alarm.
    assert ops(cons.ack(1)) == []
    assert broker.topology.queues["q"].unacked == 0


def test_a_connection_publishing_during_an_alarm_is_blocked_then_and_its_message_kept(pair) -> None:
    broker, pub, cons = pair
    broker.set_alarm("disk", True, 0.0)
    assert pub.collect() == []  # it never published: nothing to say yet
    got = pub.publish("", "q", b"in flight")
    assert [f for op, f, _ in got if op == Op.CONNECTION_BLOCKED] == [["low on disk"]]
    assert bodies(cons.collect()) == [b"in flight"]  # accepted: it was already sent
    assert [op for op, _, _ in pub.publish("", "q", b"again")] == []  # blocked once, not twice


def test_both_alarms_one_reason_and_unblocked_only_when_all_clear(pair) -> None:
    broker, pub, _ = pair
    pub.publish("", "q", b"x")
    broker.set_alarm("disk", True, 0.0)
    broker.set_alarm("memory", True, 0.0)
    assert ops(pub.collect()) == ["CONNECTION_BLOCKED"]
    broker.set_alarm("memory", False, 0.0)
    assert pub.collect() == []
    broker.set_alarm("disk", False, 0.0)
    assert ops(pub.collect()) == ["CONNECTION_UNBLOCKED"]
    broker.set_alarm("disk", True, 0.0)
    broker.set_alarm("memory", True, 0.0)
    pub.collect()
    fresh = FakePeer(broker, b"fresh").open()
    got = fresh.publish("", "q", b"y")
    assert [f for op, f, _ in got if op == Op.CONNECTION_BLOCKED] == [["low on memory & disk"]]


def test_unknown_resource_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown resource"):
        Broker().set_alarm("cpu", True, 0.0)


def test_publish_credit_is_held_while_blocked_and_returned_when_clear() -> None:
    broker = Broker()
    wire = NativeWire(broker, publish_credit=300)  # returned from 75 bytes taken: every publish
    pub = FakePeer(broker, b"pub", wire=wire).open()
    pub.declare("q")
    pub.publish("", "q", b"x")
    assert pub.credit_returned == message_cost([HEADER, encode(Op.BASIC_PUBLISH, 1, "", "q", False, {}), b"x"])
    returned = pub.credit_returned
    broker.set_alarm("memory", True, 0.0)
    pub.publish("", "q", b"y")
    pub.publish("", "q", b"z")
    assert pub.credit_returned == returned  # nothing back while the alarm is on
    broker.set_alarm("memory", False, 0.0)
    pub.collect()
    assert pub.credit_returned == 3 * returned


def test_a_closed_connection_is_forgotten_by_the_alarm(pair) -> None:
    broker, pub, _ = pair
    pub.publish("", "q", b"x")
    broker.set_alarm("memory", True, 0.0)
    pub.send(Op.CONNECTION_CLOSE, 200, "bye")
    assert broker.alarms.blocked == set()
    broker.set_alarm("memory", False, 0.0)
    assert b"pub" not in broker.outbox.pending


# -- publish credit --------------------------------------------------------------------

def test_publishing_beyond_the_credit_window_closes_the_connection() -> None:
    broker = Broker()
    wire = NativeWire(broker, publish_credit=1000)
    peer = FakePeer(broker, b"greedy", wire=wire).open()
    bystander = FakePeer(broker, b"ok", wire=wire).open()
    bystander.declare("q")
    frame = [HEADER, encode(Op.BASIC_PUBLISH, 1, "", "q", False, {}), b"x" * 400]
    for _ in range(3):  # 3 x ~480 bytes: the third starts with 960 < 1000 outstanding
        wire.handle(b"greedy", frame, 0, 0.0)
    assert b"greedy" in broker.connections
    wire.handle(b"greedy", frame, 0, 0.0)  # now 1440 >= 1000 are outstanding
    code, text = closed_with(peer.collect())
    assert code == 503 and "publish credit window (1000 bytes)" in text
    assert broker.topology.queues["q"].ready == 3  # what it had credit for was kept
    assert ops(bystander.publish("", "q", b"fine")) == []


def test_credit_is_returned_a_quarter_window_at_a_time() -> None:
    broker = Broker()
    wire = NativeWire(broker, publish_credit=4000)
    peer = FakePeer(broker, b"p", wire=wire).open()
    peer.declare("q")
    peer.publish("", "q", b"x" * 400)
    assert peer.credit_returned == 0  # ~480 of 4000 taken: three quarters left, nothing sent
    peer.publish("", "q", b"x" * 400)
    peer.publish("", "q", b"x" * 400)
    assert peer.credit_returned > 1000  # past a quarter: all of it comes back


def test_credit_returned_each_pass_lets_a_well_behaved_peer_publish_forever() -> None:
    broker = Broker()
    wire = NativeWire(broker, publish_credit=1000)
    peer = FakePeer(broker, b"p", wire=wire).open()
    peer.declare("q")
    for _ in range(100):
        peer.publish("", "q", b"x" * 400)  # FakePeer collects (and gets its credit) each time
    assert broker.topology.queues["q"].ready == 100


# -- the delivery window ---------------------------------------------------------------

def test_delivery_window_pauses_a_reader_that_does_not_report() -> None:
    broker = Broker()
    wire = NativeWire(broker, delivery_window=10_000)
    slow = FakePeer(broker, b"slow", wire=wire, reads=False).open()
    slow.declare("q")
    slow.consume("q", "c", auto_ack=True)
    for i in range(50):
        slow.publish("", "q", b"%04d" % i + b"." * 996)
    got = deliveries(slow.received)
    per = 1000 + DELIVERY_COST
    assert len(got) == -(-10_000 // per)  # up to and including the one that filled it
    queue = broker.topology.queues["q"]
    assert queue.ready == 50 - len(got)  # the rest waits in the queue, not in buffers
    slow.send(Op.DELIVERY_READ, 5 * per)
    assert len(deliveries(slow.received)) == len(got) + 5


def test_delivery_read_beyond_what_was_sent_closes_the_connection() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"liar", reads=False).open()
    code, text = closed_with(peer.send(Op.DELIVERY_READ, 1))
    assert code == 503 and "DELIVERY_READ of 1 bytes; 0 are unread" in text


@pytest.mark.parametrize("op,fields", [(Op.HELLO_OK, (60, 1, {})), (Op.CONNECTION_BLOCKED, ("x",)),
                                       (Op.CONNECTION_UNBLOCKED, ()), (Op.PUBLISH_CREDIT, (5,))])
def test_broker_only_events_from_a_client_close_its_connection(op, fields) -> None:
    broker = Broker()
    peer = FakePeer(broker, b"odd").open()
    code, text = closed_with(peer.send(op, *fields))
    assert code == 503 and f"{op.name} is not a client command" in text


# -- limits as the server parses them ----------------------------------------------------

def test_sizes_parse_as_rabbitmq_writes_them() -> None:
    assert parse_size("50MB") == 50_000_000
    assert parse_size("1GiB") == 1 << 30
    assert parse_size("512 kib") == 512 * 1024
    assert parse_size("123") == 123
    with pytest.raises(ValueError, match="not a size"):
        parse_size("5XB")


def test_memory_limit_is_a_fraction_of_memory_or_a_size() -> None:
    assert 0 < memory_limit("0.4") < memory_limit("0.8")
    assert memory_limit("1GiB") == 1 << 30
    assert memory_limit("2000000000") == 2_000_000_000
    assert memory_limit("0") == 0  # RabbitMQ: 0 blocks every publisher
    with pytest.raises(ValueError, match="fraction"):
        memory_limit("1.5")


def test_client_and_broker_count_a_publish_alike() -> None:
    """The client charges its credit what it sends; the broker, what it receives."""
    from zbroker.protocol.native_packed import pack_command
    broker = Broker()
    peer = FakePeer(broker, b"pub").open()
    peer.declare("q")
    command = encode(Op.BASIC_PUBLISH, 1, "", "q", False, {"headers": {"a": 1}})
    for body in (b"body", b"x" * 70_000):  # inside the packed frame, and a frame of its own
        frames = pack_command(command, body)
        assert len(frames) == (1 if len(body) < 65536 else 2)
        used = peer.wire.credit.used.get(b"pub", 0)
        peer.wire.handle(b"pub", frames, 0, peer.clock.now)
        assert peer.wire.credit.used[b"pub"] - used == message_cost(frames) > len(body)
    assert broker.topology.queues["q"].ready == 2