"""Stream filtering (RabbitMQ 3.13's arguments, exact in zbroker) and named consumers'
server-side offset tracking (zbroker's extension), driven through the core with a fake
clock; tracking's durability on a data directory, across a clean restart and a crash."""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pamqp import commands as C

from tests.unit.test_stream_durability import Node, declare
from tests.unit.test_stream_log import read_all
from tests.unit.test_stream_queue import Q, amqp, declare_stream, delivered, reason  # noqa: F401 (fixture)
from tests.unit.amqp_peer import AmqpPeer
from zbroker.errors import ChannelError
from zbroker.core.messaging.arguments import consumer_arguments
from zbroker.storage.stream_log import StreamLog
from zbroker.storage.stream_offsets import FILE_NAME, TrackedOffsets

NAME = "x-zbroker-consumer-name"


def publish(peer: AmqpPeer, body: bytes, value: Any = None, name: str = "s") -> None:
    headers = None if value is None else {"x-stream-filter-value": value}
    peer.publish(1, "", name, body, properties=C.Basic.Properties(headers=headers))


def consume(peer: AmqpPeer, tag: str, prefetch: int = 100, **arguments: Any) -> None:
    peer.send(1, C.Basic.Qos(prefetch_count=prefetch))
    peer.send(1, C.Basic.Consume(queue="s", consumer_tag=tag, arguments=arguments))
    assert any(isinstance(v, C.Basic.ConsumeOk) for _, v in peer.received)


# -- filtering ---------------------------------------------------------------------------

@pytest.mark.parametrize("arguments, expected", [
    ({"x-stream-filter": "eu"}, [b"eu1", b"eu2"]),
    ({"x-stream-filter": ["eu", "us"]}, [b"eu1", b"us1", b"eu2"]),
    ({"x-stream-filter": "eu", "x-stream-match-unfiltered": True}, [b"none1", b"eu1", b"eu2", b"odd"]),
    ({"x-stream-filter": "asia"}, []),
    ({}, [b"none1", b"eu1", b"us1", b"eu2", b"odd"]),
    ({"x-stream-match-unfiltered": True}, [b"none1", b"eu1", b"us1", b"eu2", b"odd"]),  # (no filter: all)
])
def test_a_filtered_consumer_gets_exactly_the_values_it_asked_for(amqp: tuple[Any, AmqpPeer], arguments: dict,
                                                                   expected: list[bytes]) -> None:
    _, peer = amqp
    declare_stream(peer)
    for body, value in ((b"none1", None), (b"eu1", "eu"), (b"us1", "us"), (b"eu2", "eu"), (b"odd", 42)):
        publish(peer, body, value)  # (a non-string value leaves the message unfiltered, as RabbitMQ's)
    consume(peer, "c", **{"x-stream-offset": "first", **arguments})
    got = delivered(peer)
    assert [body for _, _, body in got] == expected
    bodies = [b"none1", b"eu1", b"us1", b"eu2", b"odd"]
    assert [offset for _, offset, _ in got] == [bodies.index(b) for b in expected]  # (the log's own offsets)


def test_a_filter_applies_to_what_comes_later_too(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    declare_stream(peer)
    consume(peer, "c", **{"x-stream-filter": "b"})
    for n, value in enumerate("abab"):
        publish(peer, b"%s%d" % (value.encode(), n), value)
    assert [(offset, body) for _, offset, body in delivered(peer)] == [(1, b"b1"), (3, b"b3")]


@pytest.mark.parametrize("size, ok", [(15, False), (16, True), (255, True), (256, False)])
def test_the_filter_size_is_validated_as_rabbitmq_validates_it(amqp: tuple[Any, AmqpPeer], size: int,
                                                                ok: bool) -> None:
    _, peer = amqp
    got = declare_stream(peer, **{"x-stream-filter-size-bytes": size})
    if ok:
        assert isinstance(got[0], C.Queue.DeclareOk)
        peer.send(1, C.Queue.Declare(queue="s", durable=True,
                                     arguments={"x-queue-type": "stream", "x-stream-filter-size-bytes": 32 + size}))
        assert "inequivalent arg 'x-stream-filter-size-bytes'" in peer.methods()[0].reply_text
    else:
        assert got[0].reply_code == 406
        assert got[0].reply_text == "PRECONDITION_FAILED - Invalid value for  x-stream-filter-size-bytes"


def test_filter_arguments_belong_to_streams() -> None:
    for key, value in (("x-stream-filter", "a"), ("x-stream-match-unfiltered", True), (NAME, "n")):
        with pytest.raises(ChannelError) as err:
            consumer_arguments("s", "classic", {key: value})
        assert reason(err.value) == f"invalid arg '{key}' for {Q} of queue type rabbit_classic_queue"


# -- named consumers ---------------------------------------------------------------------

def test_a_named_consumer_resumes_after_its_last_ack(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    declare_stream(peer)
    for n in range(6):
        publish(peer, b"m%d" % n)
    consume(peer, "c1", prefetch=10, **{NAME: "billing", "x-stream-offset": "first"})
    assert [offset for _, offset, _ in delivered(peer)] == [0, 1, 2, 3, 4, 5]
    peer.send(1, C.Basic.Ack(delivery_tag=3, multiple=True))  # offsets 0..2 done, 3..5 not
    peer.send(1, C.Basic.Cancel(consumer_tag="c1"))
    peer.methods()
    consume(peer, "c2", **{NAME: "billing", "x-stream-offset": "first"})  # (the name wins over the offset)  # (the name wins over the offset)
    assert [offset for _, offset, _ in delivered(peer)] == [3, 4, 5]
    consume(peer, "c3", **{NAME: "audit", "x-stream-offset": 4})  # a new name starts at its offset
    assert [offset for _, offset, _ in delivered(peer)] == [4, 5]
    consume(peer, "c4", **{"x-stream-offset": "first"})  # no name: nothing tracked
    assert len(delivered(peer)) == 6


def test_an_ack_after_the_cancel_still_counts_and_the_highest_ack_wins(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    declare_stream(peer)
    for n in range(4):
        publish(peer, b"m%d" % n)
    consume(peer, "c1", **{NAME: "n", "x-stream-offset": "first"})
    delivered(peer)
    peer.send(1, C.Basic.Ack(delivery_tag=3))  # offset 2, before 0 and 1
    peer.send(1, C.Basic.Cancel(consumer_tag="c1"))
    peer.send(1, C.Basic.Ack(delivery_tag=1))  # offset 0: lower, changes nothing
    peer.methods()
    consume(peer, "c2", **{NAME: "n"})
    assert [offset for _, offset, _ in delivered(peer)] == [3]


def test_a_named_consumer_whose_channel_closed_is_forgotten(amqp: tuple[Any, AmqpPeer]) -> None:
    broker, peer = amqp
    declare_stream(peer)
    for n in range(3):
        publish(peer, b"m%d" % n)
    for channel in range(2, 7):  # each goes with its deliveries unacked
        peer.send(channel, C.Channel.Open())
        peer.send(channel, C.Basic.Qos(prefetch_count=10))
        peer.send(channel, C.Basic.Consume(queue="s", consumer_tag="c", arguments={NAME: "n",
                                                                                   "x-stream-offset": "first"}))
        peer.send(channel, C.Channel.Close(reply_code=200, reply_text="bye", class_id=0, method_id=0))
        peer.methods()
    queue = broker.topology.queues["s"]
    assert queue._names == {} and queue._readers == {} and queue.unacked == 0
    assert queue.log.tracked("n") is None  # (nothing was acked)


def test_tracked_offsets_survive_a_restart_and_a_crash(tmp_path: Path) -> None:
    node = Node(tmp_path)
    try:
        declare(node.peer)
        for n in range(5):
            publish(node.peer, b"m%d" % n)
        node.broker.commit()
        consume(node.peer, "c", **{NAME: "n", "x-stream-offset": "first"})
        delivered(node.peer)
        node.peer.send(1, C.Basic.Ack(delivery_tag=2, multiple=True))
        node.broker.commit()  # (the loop's pass: the tracked offset is written with the log's sync)
        peer = node.restart(crash=True)
        consume(peer, "c", **{NAME: "n"})
        assert [offset for _, offset, _ in delivered(peer)] == [2, 3, 4]
        peer.send(1, C.Basic.Ack(delivery_tag=2, multiple=True))
        peer = node.restart()
        consume(peer, "c", **{NAME: "n"})
        assert [offset for _, offset, _ in delivered(peer)] == [4]
    finally:
        node.broker.close()


def test_a_tracked_offset_retention_passed_starts_at_the_first_kept(amqp: tuple[Any, AmqpPeer]) -> None:
    broker, peer = amqp
    declare_stream(peer, **{"x-max-length-bytes": 1, "x-stream-max-segment-size-bytes": 1})
    publish(peer, b"m0")
    consume(peer, "c1", **{NAME: "n", "x-stream-offset": "first"})
    peer.send(1, C.Basic.Ack(delivery_tag=1))
    peer.send(1, C.Basic.Cancel(consumer_tag="c1"))
    peer.methods()
    for n in range(1, 4):
        publish(peer, b"m%d" % n)  # each its own segment: retention keeps the newest alone
    assert broker.topology.queues["s"].log.first_offset == 3
    consume(peer, "c2", **{NAME: "n"})
    assert [offset for _, offset, _ in delivered(peer)] == [3]


# -- the log on disk: tracked offsets and the pending chunk --------------------------------

def test_the_offsets_file_keeps_the_highest_and_cuts_a_torn_tail(tmp_path: Path) -> None:
    tracked = TrackedOffsets(tmp_path)
    tracked.track("a", 5)
    tracked.track("b", 7)
    tracked.track("a", 3)  # lower: ignored
    assert tracked.dirty
    tracked.flush()
    assert not tracked.dirty
    tracked.track("a", 9)
    tracked.flush()
    whole = (tmp_path / FILE_NAME).stat().st_size
    with open(tmp_path / FILE_NAME, "ab") as f:
        f.write(b"\x01\x02\x03")  # a record torn by a crash
    again = TrackedOffsets(tmp_path)
    assert again.offsets == {"a": 9, "b": 7}
    assert (tmp_path / FILE_NAME).stat().st_size == whole and not again.dirty
    again.track("c", 1)
    again.flush()
    assert TrackedOffsets(tmp_path).offsets == {"a": 9, "b": 7, "c": 1}


def test_the_offsets_file_is_compacted_when_it_outgrows_its_names(tmp_path: Path) -> None:
    tracked = TrackedOffsets(tmp_path)
    for offset in range(10_000):
        tracked.track("one", offset)
        tracked.flush()
    assert (tmp_path / FILE_NAME).stat().st_size < 70 * 1024
    assert TrackedOffsets(tmp_path).offsets == {"one": 9_999}


def test_adds_of_one_pass_make_one_chunk_readable_at_once(tmp_path: Path) -> None:
    log = StreamLog.open(tmp_path / "s")
    assert [log.add([(b"e%d" % n, None)], 1000 + n) for n in range(3)] == [0, 1, 2]
    assert log.next_offset == 3 and log.last_chunk_offset == 0 and log.needs_sync
    assert [entry for _, entry, _ in log.reader(0).read(10)] == [b"e0", b"e1", b"e2"]  # (a read writes it)
    log.add([(b"e3", "f")], 999)  # an older clock: raised to the chunk before's
    log.sync()
    assert not log.needs_sync and log.last_chunk_offset == 3 and log.offset_for_timestamp(1002) == 0
    log.close()
    again = StreamLog.open(tmp_path / "s")
    assert [(o, e, f) for o, e, f in again.reader(0).read(10)][-1] == (3, b"e3", "f")
    assert again.offset_for_timestamp(1003) == 4
    again.close()


def test_an_add_that_would_overfill_the_segment_starts_the_next_at_once(tmp_path: Path) -> None:
    log = StreamLog.open(tmp_path / "s", max_segment_bytes=200)
    for n in range(6):
        log.add([(b"x" * 50, None)], 1000)
    assert log.segment_count > 1  # (seen by the caller right after its add, for retention)
    log.sync()
    assert [o for o, _, _ in log.reader(0).read(10)] == list(range(6))
    log.close()


_EXAMPLES = itertools.count()  # a fresh directory for each example (tmp_path is shared)
STEPS = st.lists(st.one_of(
    st.tuples(st.just("add"), st.integers(1, 5), st.sampled_from([None, "a", "b"]), st.integers(-5, 20)),
    st.tuples(st.just("append"), st.integers(1, 3), st.sampled_from([None, "a"]), st.integers(0, 20)),
    st.tuples(st.just("sync")), st.tuples(st.just("read"), st.integers(0, 80))), min_size=1, max_size=40)


@settings(max_examples=80, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS, segment_bytes=st.integers(60, 400))
def test_adds_appends_syncs_and_reads_in_any_order_keep_one_dense_sequence(tmp_path: Path, steps: list,
                                                                            segment_bytes: int) -> None:
    directory = tmp_path / f"p{next(_EXAMPLES)}"
    log = StreamLog.open(directory, max_segment_bytes=segment_bytes)
    model: list[tuple[int, bytes, Any]] = []
    ts = 0
    for step in steps:
        if step[0] in ("add", "append"):
            _, n, value, dt = step
            ts += dt
            entries = [(b"e%d" % (len(model) + j), value) for j in range(n)]
            first = (log.add if step[0] == "add" else log.append)(entries, ts)
            assert first == len(model) and log.next_offset == first + n
            model += [(first + j, blob, v) for j, (blob, v) in enumerate(entries)]
        elif step[0] == "sync":
            log.sync()
            assert not log.needs_sync
        else:
            assert read_all(log.reader(step[1])) == model[min(step[1], len(model)):]
    log.close()
    log = StreamLog.open(directory, max_segment_bytes=segment_bytes)
    assert read_all(log.reader(0)) == model and log.next_offset == len(model)
    wanted = [e for e in model if e[2] == "a"]  # chunk filters: a superset, never one missed
    assert [e for e in read_all(log.reader(0, ["a"])) if e[2] == "a"] == wanted
    log.delete()
