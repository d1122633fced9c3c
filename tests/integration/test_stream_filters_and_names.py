"""Stream filtering and named stream consumers, with real ``zbroker serve`` processes (a
data directory each) on both wires: real pika over AMQP 0-9-1 and ``zbroker.client`` on
the zbroker wire.

- Filtering (RabbitMQ 3.13's arguments, done exactly per message by zbroker): a message
  published with the header ``x-stream-filter-value`` reaches only the consumers whose
  ``x-stream-filter`` (a string or a list) holds its value; one without a value reaches
  only those with ``x-stream-match-unfiltered: true``. Offsets stay the log's own: a
  filtered consumer sees gaps.
- Named consumers (``x-zbroker-consumer-name``, zbroker's extension): the broker tracks
  the highest offset acked under a name; a consumer coming back with that name starts
  right after it, its ``x-stream-offset`` ignored (the first time, it is the start). The
  tracked offsets survive a SIGKILL of the consumer's process and of the broker.
- A classic (or quorum) queue refuses these arguments with RabbitMQ's 406.

No test waits for time: a consumer process prints what it acked (after a round trip, so
the broker has the ack) and is killed once it has printed it; a reader stops at a last
message it knows must come. Every wait has a deadline.
"""
from __future__ import annotations

import re
import sys
from types import ModuleType
from typing import Any, Callable, Iterator

import pytest

from tests.support import CHANNEL_CLOSED, Broker, Process, child_env, pump_until

pytestmark = pytest.mark.timeout(120)

#: How long a wait for a delivery may take before the test fails (not how long it takes).
DEADLINE_S = 20.0
NAME = "x-zbroker-consumer-name"
FILTER = "x-stream-filter"
UNFILTERED = "x-stream-match-unfiltered"
VALUE = "x-stream-filter-value"

Connect = Callable[..., Any]


# -- helpers -------------------------------------------------------------------------------

def declare_stream(channel: Any, name: str) -> None:
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "stream"})


def publish(channel: Any, pika: ModuleType, stream: str, values: list[str | None], tag: str = "m") -> None:
    """One persistent message per value (its ``x-stream-filter-value``, none for None),
    body ``<tag><index>-<value>``. The channel's mode decides: in confirm mode each is
    confirmed (a chunk each); otherwise they go in a burst (chunks of several messages)."""
    for i, value in enumerate(values):
        headers = None if value is None else {VALUE: value}
        channel.basic_publish("", stream, b"%s%d-%s" % (tag.encode(), i, str(value).encode()),
                              pika.BasicProperties(delivery_mode=2, headers=headers))


def message_count(channel: Any, stream: str) -> int:
    """A round trip: every message published before on this channel is in the log."""
    return channel.queue_declare(stream, passive=True).method.message_count


def read_until(channel: Any, stream: str, last: int, arguments: dict[str, Any],
               prefetch: int = 100) -> list[tuple[int, bytes]]:
    """(x-stream-offset, body) of every delivery up to the one at offset ``last``, which
    must come (messages come in offset order: whatever the consumer was sent before it is
    all it gets before it). Each is acked as it comes; then the consumer is cancelled."""
    channel.basic_qos(prefetch_count=prefetch)
    got: list[tuple[int, bytes]] = []
    for method, properties, body in channel.consume(stream, arguments=arguments, inactivity_timeout=DEADLINE_S):
        assert method is not None, f"no delivery for {DEADLINE_S}s after {got[-5:]}"
        assert method.redelivered is False
        got.append((properties.headers["x-stream-offset"], body))
        channel.basic_ack(method.delivery_tag)
        assert got[-1][0] <= last, f"past offset {last}: {got[-5:]}"
        if got[-1][0] == last:
            break
    # Nothing is pending (the log ends at ``last``), so pika's cancel nacks nothing: a
    # stream refuses a nack with 540.
    assert channel.cancel() == 0
    return got


def first_offset(channel: Any, stream: str, arguments: dict[str, Any]) -> int:
    """The offset of the first delivery a consumer with ``arguments`` is sent. Nothing is
    acked (a name it uses does not move); the prefetch is 1, so nothing is pending at the
    cancel (pika's would nack it, which a stream refuses with 540)."""
    channel.basic_qos(prefetch_count=1)
    for method, properties, _ in channel.consume(stream, arguments=arguments, inactivity_timeout=DEADLINE_S):
        assert method is not None, f"no delivery for {DEADLINE_S}s"
        offset = properties.headers["x-stream-offset"]
        break
    assert channel.cancel() == 0
    return offset


def expected(values: list[str | None], wanted: Callable[[str | None], bool], tag: str = "m",
             base: int = 0) -> list[tuple[int, bytes]]:
    return [(base + i, b"%s%d-%s" % (tag.encode(), i, str(v).encode())) for i, v in enumerate(values) if wanted(v)]


# -- filtering -----------------------------------------------------------------------------

#: Filter values of the published messages, in offset order (None: no value). The last is
#: "a": every consumer below takes it, so it is where each read stops.
VALUES = ["a", "b", None, "a", "c", None, "b", "b", "a", None, "c", "a"]


def test_each_consumer_gets_exactly_the_messages_its_filter_takes(connect: Connect, pika: ModuleType) -> None:
    connection = connect()
    channel = connection.channel()
    declare_stream(channel, "filtered")
    confirmed = connection.channel()
    confirmed.confirm_delivery()
    publish(confirmed, pika, "filtered", VALUES)  # a chunk each...
    publish(channel, pika, "filtered", VALUES, tag="burst")  # ...and several in a chunk
    count = 2 * len(VALUES)
    assert message_count(channel, "filtered") == count
    last = count - 1
    published = expected(VALUES, lambda v: True) + expected(VALUES, lambda v: True, "burst", len(VALUES))

    def reads(arguments: dict[str, Any], wanted: Callable[[str | None], bool]) -> None:
        want = [(offset, body) for offset, body in published if wanted(VALUES[offset % len(VALUES)])]
        got = read_until(connection.channel(), "filtered", last, {"x-stream-offset": "first", **arguments})
        assert got == want, arguments

    reads({FILTER: "a"}, lambda v: v == "a")
    reads({FILTER: ["a", "b"]}, lambda v: v in ("a", "b"))
    reads({FILTER: "a", UNFILTERED: True}, lambda v: v in ("a", None))
    reads({FILTER: ["a", "c"], UNFILTERED: False}, lambda v: v in ("a", "c"))
    reads({FILTER: ["a", "zzz"]}, lambda v: v == "a")  # a value nothing has takes nothing
    reads({}, lambda v: True)  # no filter: everything, the valued and the unvalued
    assert read_until(connection.channel(), "filtered", last, {FILTER: "a", "x-stream-offset": 9}) == [
        (offset, body) for offset, body in published if offset >= 9 and VALUES[offset % len(VALUES)] == "a"]
    connection.close()


def test_a_filtered_consumer_waiting_at_the_end_gets_only_its_new_messages(
        connect: Connect, pika: ModuleType) -> None:
    connection = connect()
    channel = connection.channel()
    declare_stream(channel, "live")
    channel.confirm_delivery()
    publish(channel, pika, "live", ["b", None])  # before the consumers: not theirs ("next")
    got: dict[str, list[tuple[int, bytes]]] = {"b": [], "unfiltered": []}

    def collector(key: str) -> Callable[..., None]:
        def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
            got[key].append((properties.headers["x-stream-offset"], body))
            ch.basic_ack(method.delivery_tag)
        return on_message

    consumers = connection.channel()
    consumers.basic_qos(prefetch_count=10)
    consumers.basic_consume("live", collector("b"), arguments={FILTER: "b"})
    consumers.basic_consume("live", collector("unfiltered"), arguments={FILTER: "b", UNFILTERED: True})
    new = ["a", None, "b", "c", None, "a", "b"]  # offsets 2..8; the last is a "b": both take it
    publish(channel, pika, "live", new, tag="new")
    pump_until(connection, lambda: len(got["b"]) == 2 and len(got["unfiltered"]) == 4, DEADLINE_S)
    assert got["b"] == expected(new, lambda v: v == "b", "new", 2)
    assert got["unfiltered"] == expected(new, lambda v: v in ("b", None), "new", 2)
    connection.close()


# -- named consumers: the consumer's process SIGKILLed --------------------------------------

#: Acks come in batches (``multiple``); the prefetch is larger than a batch, so deliveries
#: beyond the acked ones are always out when the process dies.
BATCH = 4
PREFETCH = 10

#: A consumer process on the stream ``argv[1]`` under the name ``argv[2]`` (from first the
#: first time): it acks every ``BATCH`` deliveries and prints ``acking N`` before the ack
#: of up to offset N and ``acked N`` once a round trip after it came back (the broker has
#: the ack then). With ``argv[3]`` >= 0 it acks nothing past that offset: it prints
#: ``held N`` for each later delivery and keeps it unacked.
CONSUMER = """
import sys
import {module} as pika
stream, name, stop = sys.argv[1], sys.argv[2], int(sys.argv[3])
connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", {port}))
channel = connection.channel()
channel.basic_qos(prefetch_count={prefetch})
def on_message(channel, method, properties, body):
    offset = properties.headers["x-stream-offset"]
    if 0 <= stop < offset:
        print("held", offset, flush=True)
        return
    if (offset + 1) % {batch} and offset != stop:
        return
    print("acking", offset, flush=True)
    channel.basic_ack(method.delivery_tag, multiple=True)
    channel.queue_declare(stream, passive=True)
    print("acked", offset, flush=True)
channel.basic_consume(stream, on_message, arguments={{"x-stream-offset": "first", "{name}": name}})
print("consuming", flush=True)
channel.start_consuming()
"""


def spawn(broker: Broker, wire: str, stream: str, name: str, stop: int) -> Process:
    port = broker.amqp_port if wire == "amqp" else broker.port
    code = CONSUMER.format(module="pika" if wire == "amqp" else "zbroker.client", port=port, prefetch=PREFETCH,
                           batch=BATCH, name=NAME)
    return Process([sys.executable, "-c", code, stream, name, str(stop)], child_env(port))


def offsets_printed(process: Process, word: str) -> list[int]:
    rx = re.compile(rf"^{word} (\d+)$")
    return [int(m.group(1)) for m in map(rx.match, process.output.lines) if m]


@pytest.fixture
def killed() -> Iterator[list[Process]]:
    """Consumer processes of the test: whatever is left of them is killed afterwards."""
    processes: list[Process] = []
    yield processes
    for process in processes:
        process.kill()


def filled_stream(connect: Connect, pika: ModuleType, name: str, count: int) -> tuple[Any, Any]:
    """A new connection and channel, with stream ``name`` declared and ``count`` unfiltered
    messages in it."""
    connection = connect()
    channel = connection.channel()
    declare_stream(channel, name)
    publish(channel, pika, name, [None] * count)
    assert message_count(channel, name) == count
    return connection, channel


def test_a_named_consumer_killed_holding_deliveries_resumes_right_after_its_last_ack(
        broker: Broker, connect: Connect, pika: ModuleType, wire: str, killed: list[Process]) -> None:
    published = 60
    connection, channel = filled_stream(connect, pika, "resumed", published)

    stop = 23  # the end of a batch: its ack is the last one
    victim = spawn(broker, wire, "resumed", "reader", stop)
    killed.append(victim)
    victim.wait_for("^consuming$")
    victim.wait_for(f"^acked {stop}$")
    victim.wait_for(f"^held {stop + PREFETCH}$")  # the deliveries after it are out, unacked
    victim.kill()
    assert offsets_printed(victim, "acked") == list(range(BATCH - 1, stop + 1, BATCH))
    assert offsets_printed(victim, "held") == list(range(stop + 1, stop + PREFETCH + 1))

    # The same name, from "first" again: its x-stream-offset is ignored, it goes on after 23.
    # (A connection of the killed process may still be closing: its deliveries out unacked
    # move nothing.)
    back = read_until(connection.channel(), "resumed", published - 1, {"x-stream-offset": "first", NAME: "reader"})
    assert back == [(i, b"m%d-None" % i) for i in range(stop + 1, published)]
    # Another name, and no name, start where their x-stream-offset says.
    assert first_offset(connection.channel(), "resumed", {"x-stream-offset": "first", NAME: "other"}) == 0
    assert first_offset(connection.channel(), "resumed", {"x-stream-offset": 5}) == 5
    # read_until acked through the end under "reader": it now waits for what comes next.
    publish(channel, pika, "resumed", ["x"], tag="after")
    assert read_until(connection.channel(), "resumed", published, {"x-stream-offset": "first", NAME: "reader"}) == [
        (published, b"after0-x")]
    connection.close()


def test_a_named_consumer_killed_mid_stream_resumes_at_least_once(
        broker: Broker, connect: Connect, pika: ModuleType, wire: str, killed: list[Process]) -> None:
    published = 3_000
    connection, channel = filled_stream(connect, pika, "running", published)

    victim = spawn(broker, wire, "running", "worker", -1)
    killed.append(victim)
    victim.wait_for("^consuming$")
    victim.wait_for("^acked 39$")
    victim.kill()  # somewhere after its ack of 39 came back: maybe between an ack and its print
    acked, acking = offsets_printed(victim, "acked"), offsets_printed(victim, "acking")
    assert acked == list(range(BATCH - 1, acked[-1] + 1, BATCH)), acked
    assert acking[-1] in (acked[-1], acked[-1] + BATCH), (acking[-5:], acked[-5:])
    assert acking[-1] < published - 1, "the consumer was not killed mid-stream"

    # It goes on after the last ack the broker had: after the last one it printed as acked
    # (nothing it finished is sent again), at most after the one it was sending.
    back = read_until(connection.channel(), "running", published - 1, {"x-stream-offset": "first", NAME: "worker"})
    start = back[0][0]
    assert acked[-1] + 1 <= start <= acking[-1] + 1, (start, acked[-1], acking[-1])
    assert [offset for offset, _ in back] == list(range(start, published))
    connection.close()


# -- named consumers: the broker SIGKILLed --------------------------------------------------

def test_tracked_offsets_survive_a_sigkill_of_the_broker(pika: ModuleType, wire: str) -> None:
    broker = Broker()
    data_dir = broker.data_dir
    brokers = [broker]

    def connect() -> Any:
        return pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.amqp_port if wire == "amqp" else broker.port))

    def ack_through(channel: Any, name: str, last: int, **arguments: Any) -> None:
        """Consume under ``name`` until offset ``last``, ack through it, and make a round
        trip: the broker has the ack (and a pass commits before it answers)."""
        channel.basic_qos(prefetch_count=100)
        tag = None
        for method, properties, _ in channel.consume("kept", arguments={NAME: name, **arguments},
                                                     inactivity_timeout=DEADLINE_S):
            assert method is not None, f"no delivery for {DEADLINE_S}s"
            tag = method.delivery_tag
            if properties.headers["x-stream-offset"] == last:
                break
        channel.basic_ack(tag, multiple=True)
        assert message_count(channel, "kept") > last

    try:
        connection = connect()
        channel = connection.channel()
        declare_stream(channel, "kept")
        channel.confirm_delivery()
        publish(channel, pika, "kept", [None] * 30)
        ack_through(connection.channel(), "one", 11, **{"x-stream-offset": "first"})
        ack_through(connection.channel(), "two", 4, **{"x-stream-offset": 2})
        broker.kill()  # SIGKILL, with the consumers' channels still open

        broker = Broker(data_dir=data_dir)
        brokers.append(broker)
        connection = connect()
        channel = connection.channel()
        assert message_count(channel, "kept") == 30
        assert first_offset(connection.channel(), "kept", {NAME: "one", "x-stream-offset": "first"}) == 12
        assert first_offset(connection.channel(), "kept", {NAME: "two", "x-stream-offset": "first"}) == 5
        assert first_offset(connection.channel(), "kept", {NAME: "three", "x-stream-offset": 20}) == 20
        # Acks after the restart are tracked too, and survive the next SIGKILL.
        ack_through(connection.channel(), "one", 17)
        broker.kill()

        broker = Broker(data_dir=data_dir)
        brokers.append(broker)
        connection = connect()
        assert first_offset(connection.channel(), "kept", {NAME: "one"}) == 18
        assert first_offset(connection.channel(), "kept", {NAME: "two"}) == 5
        connection.close()
        assert broker.stop() == 0, broker.log()
    finally:
        for b in brokers:
            b.kill()
        brokers[0].remove_data()
    for b in brokers:
        assert "Traceback" not in b.log(), b.log()


def test_a_consumer_name_given_as_bytes_is_the_same_name(pika: ModuleType, wire: str) -> None:
    """pika sends a bytes argument as a byte array ('x'), zbroker.client as bytes: the
    broker accepts it as the name it decodes to."""
    broker = Broker()
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.amqp_port if wire == "amqp" else broker.port))
        channel = connection.channel()
        declare_stream(channel, "bytes")
        publish(channel, pika, "bytes", [None] * 10)
        assert message_count(channel, "bytes") == 10
        channel.basic_qos(prefetch_count=4)  # offsets 0..3, and nothing pending at the cancel
        for method, properties, _ in channel.consume("bytes", arguments={NAME: b"reader", "x-stream-offset": "first"},
                                                     inactivity_timeout=DEADLINE_S):
            assert method is not None, f"no delivery for {DEADLINE_S}s"
            if properties.headers["x-stream-offset"] == 3:
                break
        assert channel.cancel() == 0
        channel.basic_ack(method.delivery_tag, multiple=True)  # (after the cancel: still tracked)
        assert message_count(channel, "bytes") == 10  # a round trip: the broker has the ack
        assert first_offset(connection.channel(), "bytes", {NAME: "reader", "x-stream-offset": "first"}) == 4
        confirmed = connection.channel()
        confirmed.confirm_delivery()
        publish(confirmed, pika, "bytes", [None])  # a pass's commit went through: confirmed
        connection.close()
        assert broker.stop() == 0, broker.log()
        assert "Traceback" not in broker.log(), broker.log()
    finally:
        broker.kill()
        broker.remove_data()


# -- other queue types refuse them -----------------------------------------------------------

#: The arguments of this file, as other queue types must refuse them.
REFUSED = [(NAME, "reader"), (FILTER, "a"), (FILTER, ["a", "b"]), (UNFILTERED, True)]


def test_other_queue_types_refuse_the_arguments_with_406(connect: Connect) -> None:
    connection = connect()
    for queue_type, module in (("classic", "rabbit_classic_queue"), ("quorum", "rabbit_quorum_queue")):
        queue = f"plain-{queue_type}"
        connection.channel().queue_declare(queue, durable=True, arguments={"x-queue-type": queue_type})
        for argument, value in REFUSED:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=1)
            with pytest.raises(CHANNEL_CLOSED) as info:
                channel.basic_consume(queue, lambda *_: None, arguments={argument: value})
            assert info.value.reply_code == 406, (queue_type, argument, info.value)
            assert info.value.reply_text == (f"PRECONDITION_FAILED - invalid arg '{argument}' for queue "
                                             f"'{queue}' in vhost '/' of queue type {module}")
            assert not channel.is_open
            assert connection.is_open  # only the channel closed: the connection goes on
            assert message_count(connection.channel(), queue) == 0
    connection.close()
