"""Stream retention and dying stream consumers, with real ``zbroker serve`` processes (a
data directory each) on both wires: real pika over AMQP 0-9-1 and ``zbroker.client`` on
the zbroker wire.

Retention is RabbitMQ's (osiris's): whole segment files are deleted from the front of the
log, never the newest one, when an append starts a new segment (and when a policy changes
the limits): by size (``x-max-length-bytes``) and by age (``x-max-age``: a positive
integer and one of the units Y M D h m s). A policy's ``max-length-bytes`` wins over the
argument. What is left is read from ``first``: the oldest offset kept, then every offset
up to the last one published; a consumer left behind goes on from there; a broker
SIGKILLed after retention comes back without what it deleted. A consumer process
SIGKILLed mid-stream costs nobody else a message.

What the tests look at: the segment files in ``<data dir>/streams/<store id>/`` (named by
their first offset), the ``x-stream-offset`` of each delivery, the queue's messages in
``zbroker ctl list_queues`` and the broker's own answers. Every wait is for an event (a
file gone, a line printed, a delivery), polled with a deadline; none sleeps for time.
"""
from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import pytest

from tests.support import CHANNEL_CLOSED, ROOT, Broker, child_env, python_snippet

pytestmark = pytest.mark.timeout(120)

#: Small segments, so that a few hundred 100-byte messages make many of them (a message
#: takes ~200 bytes of a segment with its metadata and chunk header, ~50 per segment).
SEGMENT_BYTES = 10_000
MAX_LENGTH_BYTES = 30_000
BODY = b"x" * 100
#: How long a wait for an event may take before the test fails (not how long it takes).
DEADLINE_S = 20.0
#: How often a wait polls what it waits for (the poll, not the synchronisation).
POLL_S = 0.05

Connect = Callable[..., Any]


# -- the stream on disk ------------------------------------------------------------------

def stream_dirs(broker: Broker) -> set[Path]:
    streams = broker.data_dir / "streams"
    return set(streams.iterdir()) if streams.exists() else set()


def declare_stream(broker: Broker, channel: Any, name: str, **arguments: Any) -> Path:
    """Declare the stream ``name``; its log's directory (the one the declare made)."""
    before = stream_dirs(broker)
    channel.queue_declare(name, durable=True, arguments={"x-queue-type": "stream", **arguments})
    made = stream_dirs(broker) - before
    assert len(made) == 1, f"declaring {name} made {made}"
    return made.pop()


def segments(directory: Path) -> list[int]:
    """The first offsets of the stream's segment files, oldest first."""
    return sorted(int(p.name[:-len(".segment")]) for p in directory.iterdir() if p.name.endswith(".segment"))


def file_bytes(directory: Path, first: int) -> int:
    """Disk bytes of one segment: its segment file and its index (as retention counts)."""
    return sum((directory / f"{first:020d}{suffix}").stat().st_size for suffix in (".segment", ".index"))


def stream_bytes(directory: Path) -> int:
    """Disk bytes of the stream's files now (one being deleted counts as gone)."""
    total = 0
    for path in directory.iterdir():
        try:
            total += path.stat().st_size
        except FileNotFoundError:
            pass
    return total


def wait_for(what: str, done: Callable[[], bool], connection: Any = None) -> None:
    """Poll ``done()`` until it holds (pumping ``connection`` meanwhile), or fail."""
    deadline = time.monotonic() + DEADLINE_S
    while not done():
        assert time.monotonic() < deadline, f"not within {DEADLINE_S}s: {what}"
        if connection is not None:
            connection.process_data_events(time_limit=POLL_S)
        else:
            time.sleep(POLL_S)


# -- clients -----------------------------------------------------------------------------

def publish(channel: Any, pika: ModuleType, stream: str, count: int, body: bytes = BODY) -> None:
    """``count`` persistent messages, each confirmed (one chunk each) before the next goes.
    The channel must be in confirm mode."""
    properties = pika.BasicProperties(delivery_mode=2)
    for _ in range(count):
        channel.basic_publish("", stream, body, properties)


def read(channel: Any, stream: str, count: int, offset: Any = "first") -> list[int]:
    """The x-stream-offsets of the next ``count`` deliveries from ``offset``; then the
    consumer is cancelled and they are acked (after the cancel: nothing is pending then,
    and pika's cancel would nack what is, which a stream refuses)."""
    channel.basic_qos(prefetch_count=count)
    got: list[int] = []
    last_tag = None
    for method, properties, _ in channel.consume(stream, arguments={"x-stream-offset": offset},
                                                 inactivity_timeout=DEADLINE_S):
        assert method is not None, f"no delivery for {DEADLINE_S}s after offsets {got[-3:]}"
        got.append(properties.headers["x-stream-offset"])
        last_tag = method.delivery_tag
        if len(got) == count:
            break
    assert channel.cancel() == 0
    channel.basic_ack(last_tag, multiple=True)
    return got


def message_count(channel: Any, stream: str) -> int:
    return channel.queue_declare(stream, passive=True).method.message_count


def ctl_queues(broker: Broker, *columns: str) -> dict[str, list[str]]:
    """``zbroker ctl list_queues name COLUMNS...``: each queue's row by name."""
    done = subprocess.run([sys.executable, "-m", "zbroker", "ctl", "--broker", broker.endpoint, "list_queues",
                           "name", *columns], capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=30)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[1].split("\t") == ["name", *columns]
    return {row[0]: row[1:] for row in (line.split("\t") for line in lines[2:])}


def ctl(broker: Broker, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "zbroker", "ctl", "--broker", broker.endpoint, *args],
                          capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout


# -- retention by size -------------------------------------------------------------------

def test_retention_by_size_deletes_the_oldest_segment_files(broker: Broker, connect: Connect,
                                                            pika: ModuleType) -> None:
    connection = connect()
    channel = connection.channel()
    directory = declare_stream(broker, channel, "sized", **{"x-stream-max-segment-size-bytes": SEGMENT_BYTES,
                                                            "x-max-length-bytes": MAX_LENGTH_BYTES})
    channel.confirm_delivery()
    seen: set[int] = set()  # every segment file there was while publishing
    published = 600
    for _ in range(published // 10):
        publish(channel, pika, "sized", 10)
        seen.update(segments(directory))
    kept = segments(directory)

    # Whole files went, oldest first; the newest ones, the one written last among them, stayed.
    assert len(seen) >= 10, seen
    assert 0 not in kept and len(kept) < len(seen) - 5, (kept, sorted(seen))
    assert kept == sorted(seen)[-len(kept):]
    assert not [p.name for p in directory.iterdir() if p.name.endswith(".index")
                and int(p.name[:-len(".index")]) not in kept], "an index outlived its segment"
    # Under the limit (the sealed segments: the newest grew after the last retention),
    # and not more deleted than needed: one more of the same size would exceed it.
    sealed = sum(file_bytes(directory, first) for first in kept[:-1])
    assert sealed <= MAX_LENGTH_BYTES < sealed + max(file_bytes(directory, first) for first in kept[:-1])

    first = kept[0]
    assert read(channel, "sized", published - first) == list(range(first, published))
    assert message_count(channel, "sized") == published - first
    assert ctl_queues(broker, "messages", "segments", "type")["sized"] == [
        str(published - first), str(len(kept)), "stream"]

    # A message larger than the limit: its segment is the newest and is kept, alone.
    publish(channel, pika, "sized", 1, b"y" * (MAX_LENGTH_BYTES + 1))
    assert segments(directory) == [published]
    assert read(channel, "sized", 1) == [published]
    publish(channel, pika, "sized", 1)  # the next one starts a segment: the big one goes
    assert segments(directory) == [published + 1]
    assert read(channel, "sized", 1) == [published + 1]
    assert message_count(channel, "sized") == 1


def test_retention_by_size_without_a_data_directory(pika: ModuleType, wire: str) -> None:
    """The in-memory log keeps the same rules (its bytes are the messages' bodies)."""
    broker = Broker(in_memory=True)
    try:
        connection = pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.amqp_port if wire == "amqp" else broker.port))
        channel = connection.channel()
        channel.queue_declare("sized", durable=True, arguments={
            "x-queue-type": "stream", "x-stream-max-segment-size-bytes": 1_000, "x-max-length-bytes": 3_000})
        channel.confirm_delivery()
        published = 200  # 10 a segment, 30 kept at most
        publish(channel, pika, "sized", published)
        kept = message_count(channel, "sized")
        assert 20 <= kept <= 30, kept
        first = published - kept
        assert read(channel, "sized", kept) == list(range(first, published))
        assert ctl_queues(broker, "messages")["sized"] == [str(kept)]
        connection.close()
    finally:
        code = broker.stop()
        broker.remove_data()
    assert code == 0, broker.log()
    assert "Traceback" not in broker.log(), broker.log()


def test_a_lagging_consumer_goes_on_from_the_first_offset_kept(broker: Broker, connect: Connect,
                                                               pika: ModuleType) -> None:
    """Retention does not wait for consumers: one behind it (here with 5 deliveries unacked
    at offset 0) goes on after the deleted segments from the first offset kept; its
    offsets only grow, and it gets every offset from there to the last one published."""
    connection = connect()
    channel = connection.channel()
    directory = declare_stream(broker, channel, "lagged", **{"x-stream-max-segment-size-bytes": SEGMENT_BYTES,
                                                             "x-max-length-bytes": MAX_LENGTH_BYTES})
    channel.confirm_delivery()
    publish(channel, pika, "lagged", 100)
    lagging = connect()
    consumer = lagging.channel()
    consumer.basic_qos(prefetch_count=5)
    got: list[int] = []
    tags: list[int] = []

    def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        got.append(properties.headers["x-stream-offset"])
        tags.append(method.delivery_tag)
    consumer.basic_consume("lagged", on_message, arguments={"x-stream-offset": "first"})
    wait_for("the consumer's first deliveries", lambda: len(got) == 5, lagging)

    published = 700
    publish(channel, pika, "lagged", published - 100)
    first = segments(directory)[0]
    assert first > 100, segments(directory)  # what it was reading is gone from disk

    def caught_up() -> bool:
        if tags:
            consumer.basic_ack(tags[-1], multiple=True)
            tags.clear()
        return bool(got) and got[-1] == published - 1
    wait_for("the lagging consumer at the end", caught_up, lagging)
    assert got[:5] == [0, 1, 2, 3, 4]
    assert all(a < b for a, b in zip(got, got[1:])), got
    assert got[got.index(first):] == list(range(first, published))
    assert message_count(channel, "lagged") == published - first


def test_retention_is_kept_across_a_broker_sigkill(tmp_path: Path, pika: ModuleType, wire: str) -> None:
    """What retention deleted stays deleted after a crash and restart on the data
    directory: the same first offset and count, and retention goes on from there."""
    def connection_to(broker: Broker) -> Any:
        return pika.BlockingConnection(pika.ConnectionParameters(
            "127.0.0.1", broker.amqp_port if wire == "amqp" else broker.port))

    broker = Broker(data_dir=tmp_path)
    try:
        channel = connection_to(broker).channel()
        directory = declare_stream(broker, channel, "crashed", **{
            "x-stream-max-segment-size-bytes": SEGMENT_BYTES, "x-max-length-bytes": MAX_LENGTH_BYTES})
        channel.confirm_delivery()
        published = 600
        publish(channel, pika, "crashed", published)
        before = segments(directory)
        assert before[0] > 0, before
        # What the limit allows of them now (the newest grew since the last retention).
        sizes = [file_bytes(directory, first) for first in before]
        allowed = 0
        while allowed < len(before) - 1 and sum(sizes[allowed:]) > MAX_LENGTH_BYTES:
            allowed += 1
    finally:
        broker.kill()
    broker = Broker(data_dir=tmp_path)
    try:
        connection = connection_to(broker)
        channel = connection.channel()
        kept = segments(directory)  # as they were, or trimmed to the limit at start
        assert kept in (before, before[allowed:]), (before, kept)
        assert message_count(channel, "crashed") == published - kept[0]
        assert read(channel, "crashed", published - kept[0]) == list(range(kept[0], published))
        channel.confirm_delivery()
        publish(channel, pika, "crashed", 200)  # new segments: the oldest ones go
        now = segments(directory)
        assert now[0] > kept[0] and now[-1] > kept[-1], (kept, now)
        assert read(channel, "crashed", published + 200 - now[0]) == list(range(now[0], published + 200))
        connection.close()
    finally:
        code = broker.stop()
    assert code == 0, broker.log()
    assert "Traceback" not in broker.log(), broker.log()


# -- retention by age --------------------------------------------------------------------

def test_max_age_units_are_Y_M_D_h_m_s(connect: Connect) -> None:
    connection = connect()
    for unit in "YMDhms":
        connection.channel().queue_declare(f"aged-{unit}", durable=True,
                                           arguments={"x-queue-type": "stream", "x-max-age": f"2{unit}"})
    for bad in ("1ms", "1d", "1H", "1W", "0s", "s", "1", "-1s", "1.5h"):
        with pytest.raises(CHANNEL_CLOSED) as info:
            connection.channel().queue_declare(f"bad-{bad}", durable=True,
                                               arguments={"x-queue-type": "stream", "x-max-age": bad})
        assert info.value.reply_code == 406, (bad, info.value)


def test_retention_by_age_deletes_segments_older_than_max_age(broker: Broker, connect: Connect,
                                                              pika: ModuleType) -> None:
    connection = connect()
    channel = connection.channel()
    small = {"x-stream-max-segment-size-bytes": 2_000}  # ~10 messages a segment
    directory = declare_stream(broker, channel, "aged", **small, **{"x-max-age": "1s"})
    control = declare_stream(broker, channel, "kept", **small, **{"x-max-age": "1h"})
    channel.confirm_delivery()
    seen: set[int] = set()  # every segment file there was
    published = 0

    def publish_one() -> list[int]:
        nonlocal published
        publish(channel, pika, "aged", 1)
        publish(channel, pika, "kept", 1)
        published += 1
        now = segments(directory)
        seen.update(now)
        return now

    while len(seen) < 3:
        publish_one()
    # Publish on, a message a poll, until the first segment is more than 1s old and an
    # append that starts a segment has deleted it.
    wait_for("the stream's first segment deleted by age", lambda: publish_one()[0] != 0, connection)
    kept = segments(directory)
    assert kept == sorted(seen)[-len(kept):]  # the oldest went, the newest stayed
    first = kept[0]
    assert 0 < first < published
    assert read(channel, "aged", published - first) == list(range(first, published))
    assert message_count(channel, "aged") == published - first
    # The same appends on a stream whose max-age is an hour deleted nothing.
    assert segments(control)[0] == 0 and len(segments(control)) >= len(seen)
    assert read(channel, "kept", published) == list(range(published))
    assert ctl_queues(broker, "messages") == {"aged": [str(published - first)], "kept": [str(published)]}


# -- policies ----------------------------------------------------------------------------

def test_policy_max_length_bytes_wins_over_the_argument_and_applies_when_set(
        broker: Broker, connect: Connect, pika: ModuleType) -> None:
    connection = connect()
    channel = connection.channel()
    directory = declare_stream(broker, channel, "policed", **{"x-stream-max-segment-size-bytes": SEGMENT_BYTES,
                                                              "x-max-length-bytes": 10 * MAX_LENGTH_BYTES})
    channel.confirm_delivery()
    published = 500
    publish(channel, pika, "policed", published)
    before = segments(directory)
    assert before[0] == 0 and len(before) >= 8, before  # under the argument's 300 kB: all kept

    assert "Setting policy" in ctl(broker, "set_policy", "--apply-to", "queues", "small", "^policed$",
                                   f'{{"max-length-bytes": {MAX_LENGTH_BYTES}}}')
    # Applied when set, with no append: the oldest segments go, down to the limit.
    wait_for("the policy's retention", lambda: stream_bytes(directory) <= MAX_LENGTH_BYTES)
    kept = segments(directory)
    assert kept == before[-len(kept):] and len(kept) <= 4, (before, kept)
    first = kept[0]
    assert read(channel, "policed", published - first) == list(range(first, published))
    assert ctl_queues(broker, "messages", "segments", "policy")["policed"] == [
        str(published - first), str(len(kept)), "small"]


def test_policy_max_length_bytes_larger_than_the_argument_keeps_more(
        broker: Broker, connect: Connect, pika: ModuleType) -> None:
    assert "Setting policy" in ctl(broker, "set_policy", "--apply-to", "queues", "large", "^roomy$",
                                   f'{{"max-length-bytes": {10 * MAX_LENGTH_BYTES}}}')
    connection = connect()
    channel = connection.channel()
    directory = declare_stream(broker, channel, "roomy", **{"x-stream-max-segment-size-bytes": SEGMENT_BYTES,
                                                            "x-max-length-bytes": MAX_LENGTH_BYTES})
    channel.confirm_delivery()
    published = 500
    publish(channel, pika, "roomy", published)
    many = segments(directory)
    assert many[0] == 0 and len(many) >= 8, many  # the argument's 30 kB would have kept 3
    assert read(channel, "roomy", published) == list(range(published))

    # Without the policy the argument is the limit again, applied at once.
    assert "Clearing policy" in ctl(broker, "clear_policy", "large")
    wait_for("the argument's retention once the policy is cleared",
             lambda: stream_bytes(directory) <= MAX_LENGTH_BYTES)
    first = segments(directory)[0]
    assert len(segments(directory)) <= 4
    assert read(channel, "roomy", published - first) == list(range(first, published))
    assert message_count(channel, "roomy") == published - first


# -- a consumer SIGKILLed mid-stream ------------------------------------------------------

#: A consumer process: reads the stream from first with a prefetch of 10, prints each
#: delivery's offset and acks it up to ``ACKED_TO``; after that it holds its deliveries,
#: so it stops with a full prefetch unacked, ``ACKED_TO + 10`` the last offset it prints.
CONSUMER = """
import {module} as pika
connection = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", {port}))
channel = connection.channel()
channel.basic_qos(prefetch_count=10)
def on_message(channel, method, properties, body):
    offset = properties.headers["x-stream-offset"]
    print("got", offset, flush=True)
    if offset <= {acked_to}:
        channel.basic_ack(method.delivery_tag)
channel.basic_consume("doomed", on_message, arguments={{"x-stream-offset": "first"}})
print("consuming", flush=True)
channel.start_consuming()
"""
ACKED_TO = 100


def queue_row(broker: Broker, name: str) -> dict[str, Any]:
    """The management view of queue ``name`` (what ``zbroker ctl`` asks)."""
    from zbroker.management.client import ManagementClient
    with ManagementClient(broker.endpoint) as client:
        return client.request("queue", name=name)


def test_sigkilled_stream_consumer_costs_no_one_a_message(broker: Broker, connect: Connect, pika: ModuleType,
                                                          wire: str) -> None:
    connection = connect()
    channel = connection.channel()
    declare_stream(broker, channel, "doomed")
    channel.confirm_delivery()
    published = 500
    publish(channel, pika, "doomed", published)

    # A survivor on another connection, part way through the stream when the other dies.
    survivor_connection = connect()
    survivor = survivor_connection.channel()
    survivor.basic_qos(prefetch_count=10)
    got: list[int] = []

    def on_message(ch: Any, method: Any, properties: Any, body: bytes) -> None:
        got.append(properties.headers["x-stream-offset"])
        ch.basic_ack(method.delivery_tag)
    survivor.basic_consume("doomed", on_message, arguments={"x-stream-offset": "first"})
    wait_for("the survivor's first deliveries", lambda: len(got) >= 20, survivor_connection)

    port = broker.amqp_port if wire == "amqp" else broker.port
    module = "pika" if wire == "amqp" else "zbroker.client"
    victim = python_snippet(CONSUMER.format(module=module, port=port, acked_to=ACKED_TO), port)
    try:
        victim.wait_for(f"^got {ACKED_TO + 10}$")  # mid-stream, 10 deliveries unacked
        assert queue_row(broker, "doomed")["consumers"] == 2
    finally:
        victim.kill()
    assert victim.output.lines == ["consuming"] + [f"got {i}" for i in range(ACKED_TO + 11)]

    wait_for("the dead consumer gone", lambda: queue_row(broker, "doomed")["consumers"] == 1)
    wait_for("the survivor's last delivery", lambda: len(got) == published, survivor_connection)
    assert got == list(range(published))
    survivor_connection.close()

    assert message_count(channel, "doomed") == published
    assert ctl_queues(broker, "messages", "consumers")["doomed"] == [str(published), "0"]
    # A new consumer attaches and reads it all again, then what comes next.
    assert read(connection.channel(), "doomed", published) == list(range(published))
    publish(channel, pika, "doomed", 1)
    assert read(connection.channel(), "doomed", 1, "last") == [published]
