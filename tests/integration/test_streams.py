"""Streams (x-queue-type: stream) with real ``zbroker serve`` processes, on both wires:
real pika over AMQP 0-9-1 and ``zbroker.client`` on the zbroker wire. Every message stays
in the stream's log; each consumer reads from its own x-stream-offset (first, last, next,
an offset) and every delivery says its offset in the ``x-stream-offset`` header; acks only
give credit back; basic.get is refused with 540; and confirmed messages are at the same
offsets after a SIGKILL and a restart on the same data directory."""
from __future__ import annotations

import time
from typing import Any, Callable

import pika as real_pika
import pytest

import zbroker.client as zpika
from zbroker.testing import BrokerProcess

pytestmark = pytest.mark.timeout(120)

WIRES = ["amqp", "zbroker"]
INACTIVITY_S = 10.0


def connect(broker: BrokerProcess, wire: str) -> Any:
    if wire == "amqp":
        return real_pika.BlockingConnection(real_pika.URLParameters(broker.amqp_url))
    return zpika.BlockingConnection(broker.parameters())


def client(wire: str) -> Any:
    return real_pika if wire == "amqp" else zpika


def declare_stream(channel: Any, name: str) -> None:
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})


def publish(broker: BrokerProcess, wire: str, stream: str, bodies: list[bytes]) -> None:
    """Persistent messages, each confirmed before the next goes."""
    connection = connect(broker, wire)
    channel = connection.channel()
    channel.confirm_delivery()
    for body in bodies:
        channel.basic_publish("", stream, body, client(wire).BasicProperties(delivery_mode=2))
    connection.close()


def read(channel: Any, stream: str, count: int, offset: Any = None, ack: bool = True) -> list[tuple[int, bytes]]:
    """(x-stream-offset, body) of the next ``count`` deliveries from ``offset``; the consumer
    is cancelled, then they are acked (or not). Fails if the stream stays silent.

    The prefetch is ``count`` and the ack comes after the cancel, so nothing is pending at
    the cancel: pika's ``cancel()`` nacks pending deliveries, and a stream refuses a nack
    with 540 (the connection closes), as RabbitMQ's does."""
    channel.basic_qos(prefetch_count=count)
    arguments = {} if offset is None else {"x-stream-offset": offset}
    got: list[tuple[int, bytes]] = []
    last_tag = None
    for method, properties, body in channel.consume(stream, arguments=arguments,
                                                    inactivity_timeout=INACTIVITY_S):
        assert method is not None, f"no delivery for {INACTIVITY_S}s after {got}"
        assert method.redelivered is False
        got.append((properties.headers["x-stream-offset"], body))
        last_tag = method.delivery_tag
        if len(got) == count:
            break
    assert channel.cancel() == 0
    if ack:
        channel.basic_ack(last_tag, multiple=True)
    return got


class Waiting:
    """A consumer registered now (consume-ok received), whose deliveries are awaited later:
    for offsets that wait for messages not yet published."""

    def __init__(self, connection: Any, channel: Any, stream: str, offset: Any) -> None:
        self.connection, self.channel = connection, channel
        self.got: list[tuple[int, bytes]] = []
        channel.basic_qos(prefetch_count=100)
        arguments = {} if offset is None else {"x-stream-offset": offset}
        self.tag = channel.basic_consume(stream, self._on_message, arguments=arguments)

    def _on_message(self, channel: Any, method: Any, properties: Any, body: bytes) -> None:
        self.got.append((properties.headers["x-stream-offset"], body))
        channel.basic_ack(method.delivery_tag)

    def wait(self, count: int) -> list[tuple[int, bytes]]:
        deadline = time.monotonic() + INACTIVITY_S
        while len(self.got) < count and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.2)
        self.channel.basic_cancel(self.tag)
        return self.got


BODIES = [b"m%d" % i for i in range(5)]
EXPECTED = list(enumerate(BODIES))


@pytest.mark.parametrize("wire", WIRES)
def test_offsets_first_last_next_and_integer(zbroker_factory: Callable[..., BrokerProcess], wire: str) -> None:
    broker = zbroker_factory(True)
    connection = connect(broker, wire)
    channel = connection.channel()
    declare_stream(channel, "events")
    publish(broker, wire, "events", BODIES)

    assert read(channel, "events", 5, "first") == EXPECTED
    assert read(channel, "events", 2, 3) == EXPECTED[3:]
    assert read(channel, "events", 1, "last") == [(4, b"m4")]  # one confirmed publish, one chunk
    past_end = Waiting(connection, channel, "events", 6)  # past the end: waits for offset 6
    publish(broker, wire, "events", [b"m5", b"m6"])
    assert past_end.wait(1) == [(6, b"m6")]  # 5 came after the consume, but before its offset

    for expected, offset in ((7, "next"), (8, None)):  # next, the default: only what comes after
        waiting = Waiting(connection, connection.channel(), "events", offset)
        body = b"after %s" % str(offset).encode()
        publish(broker, wire, "events", [body])
        assert waiting.wait(1) == [(expected, body)]
    assert read(connection.channel(), "events", 9, 0)[7:] == [(7, b"after next"), (8, b"after None")]
    connection.close()


@pytest.mark.parametrize("wire", WIRES)
def test_consumers_on_two_connections_read_the_same_sequence_independently(
        zbroker_factory: Callable[..., BrokerProcess], wire: str) -> None:
    broker = zbroker_factory(True)
    first, second = connect(broker, wire), connect(broker, wire)
    declare_stream(first.channel(), "shared")
    publish(broker, wire, "shared", BODIES)
    one, other = first.channel(), second.channel()
    assert read(one, "shared", 2, "first") == EXPECTED[:2]  # one reads part of it...
    assert read(other, "shared", 5, "first") == EXPECTED  # ...the other still gets it all
    assert read(one, "shared", 5, "first") == EXPECTED  # and the first reads it again
    # Live: both consumers, from next, get the same new messages at the same offsets.
    waiting = [Waiting(first, first.channel(), "shared", "next"), Waiting(second, second.channel(), "shared", "next")]
    publish(broker, wire, "shared", [b"new 5", b"new 6"])
    assert [w.wait(2) for w in waiting] == [[(5, b"new 5"), (6, b"new 6")]] * 2
    first.close()
    second.close()


@pytest.mark.parametrize("wire", WIRES)
def test_messages_stay_after_ack_and_reconnect(zbroker_factory: Callable[..., BrokerProcess], wire: str) -> None:
    broker = zbroker_factory(True)
    connection = connect(broker, wire)
    declare_stream(connection.channel(), "kept")
    publish(broker, wire, "kept", BODIES)
    assert read(connection.channel(), "kept", 5, "first", ack=True) == EXPECTED
    connection.close()
    connection = connect(broker, wire)
    assert read(connection.channel(), "kept", 5, "first") == EXPECTED
    assert connection.channel().queue_declare("kept", passive=True).method.message_count == 5
    connection.close()


@pytest.mark.parametrize("wire", WIRES)
def test_basic_get_is_refused_with_540_closing_the_connection(
        zbroker_factory: Callable[..., BrokerProcess], wire: str) -> None:
    broker = zbroker_factory(True)
    connection = connect(broker, wire)
    channel = connection.channel()
    declare_stream(channel, "no-get")
    publish(broker, wire, "no-get", [b"x"])
    with pytest.raises(client(wire).exceptions.ConnectionClosedByBroker) as info:
        channel.basic_get("no-get", auto_ack=False)
    assert info.value.reply_code == 540, info.value
    assert not connection.is_open
    connection = connect(broker, wire)  # the stream is untouched
    assert read(connection.channel(), "no-get", 1, "first") == [(0, b"x")]
    connection.close()


@pytest.mark.parametrize("wire", WIRES)
def test_confirmed_messages_are_at_the_same_offsets_after_sigkill(
        zbroker_factory: Callable[..., BrokerProcess], wire: str) -> None:
    broker = zbroker_factory(True)
    connection = connect(broker, wire)
    declare_stream(connection.channel(), "crash")
    connection.close()
    bodies = [b"confirmed %d" % i for i in range(50)]
    publish(broker, wire, "crash", bodies)
    broker.kill()
    broker.start()
    connection = connect(broker, wire)
    channel = connection.channel()
    assert channel.queue_declare("crash", passive=True).method.message_count == 50
    assert read(channel, "crash", 50, "first") == list(enumerate(bodies))
    assert read(connection.channel(), "crash", 10, 40) == list(enumerate(bodies))[40:]
    publish(broker, wire, "crash", [b"after the crash"])  # appending goes on from offset 50
    assert read(connection.channel(), "crash", 1, "last") == [(50, b"after the crash")]
    connection.close()
