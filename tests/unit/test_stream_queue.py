"""The stream queue type (``core/messaging/stream.py``) and its in-memory log, driven
directly with a fake clock, then end to end through the AMQP wire (and the zbroker
wire): RabbitMQ 3.10's behaviour and texts (``rabbit_stream_queue``, ``rabbit_amqqueue``,
``rabbit_channel``)."""
from __future__ import annotations

import pickle
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from pamqp import commands as C

from tests.unit.amqp_peer import AmqpPeer, make
from tests.unit.channels import delivered_on, new_channel
from tests.unit.wire import FakePeer, bodies, closes, props_of
from zbroker.core import Broker
from zbroker.protocol import Op
from zbroker.core.messaging.arguments import QueueSettings, consumer_arguments, queue_settings
from zbroker.core.messaging.consumers import Consumer
from zbroker.core.messaging.message import Message
from zbroker.core.messaging.session import Channel
from zbroker.core.messaging.queue_types import queue_type
from zbroker.core.messaging.stream import StreamQueue
from zbroker.core.messaging.stream_logs import MemoryStreamLog
from zbroker.errors import BrokerError, ChannelError, ConnectionError_
from zbroker.storage.stream_log import StreamLog

NOW = 1_000_000.0
Q = "queue 's' in vhost '/'"


def reason(error: BrokerError) -> str:
    """The error's text without its reply code's name (``PRECONDITION_FAILED - ``)."""
    return error.text.split(" - ", 1)[1]


def make_stream(**arguments: Any) -> StreamQueue:
    args = {"x-queue-type": "stream", **arguments}
    return StreamQueue("s", True, None, False, args, queue_settings("s", args))


def message(n: int, at: float = NOW, body: bytes | None = None, **headers: Any) -> Message:
    body = body if body is not None else b"m%d" % n
    return Message(n, "", "s", {"headers": headers} if headers else {}, body, at, None, len(body))


def consume(q: StreamQueue, prefetch: int = 10, offset: Any = None, now: float = NOW, auto_ack: bool = False,
            global_prefetch: int = 0) -> Channel:
    channel = new_channel(now, global_prefetch)
    arguments = {} if offset is None else {"x-stream-offset": offset}
    consumer = Consumer("c%d" % len(q.consumers), q, channel, auto_ack, False, prefetch, arguments)
    q.add_consumer(consumer, now)
    q.dispatch(1000)
    return channel


def offsets(channel: Channel) -> list[int]:
    return [m.properties["headers"]["x-stream-offset"] for m in delivered_on(channel)]


def fill(q: StreamQueue, count: int, at: float = NOW) -> None:
    for n in range(count):
        q.enqueue(message(n, at))


# -- the in-memory log ------------------------------------------------------------------

def test_the_log_keeps_offsets_chunks_and_timestamps() -> None:
    log = MemoryStreamLog()
    assert (log.first_offset, log.next_offset) == (0, 0)
    assert log.append([(b"a", None), (b"b", None)], 1000) == 0
    assert log.append([(b"c", None)], 2000) == 2
    assert (log.next_offset, log.last_chunk_offset) == (3, 2)
    assert [log.offset_for_timestamp(t) for t in (0, 1000, 1500, 2000, 2500)] == [0, 0, 2, 2, 3]
    reader = log.reader(1)
    assert reader.read(10) == [(1, b"b", None), (2, b"c", None)] and reader.read(10) == []


def test_retention_drops_whole_segments_never_the_last() -> None:
    log = MemoryStreamLog(max_segment_bytes=10, max_length_bytes=25)
    for n in range(6):  # 10-byte entries: one per segment
        log.append([(b"x" * 10, None)], 1000 + n)
        log.apply_retention(1000 + n)
    assert (log.first_offset, log.next_offset, log.bytes) == (4, 6, 20)
    reader = log.reader(0)  # left behind: goes on from the first offset
    assert [o for o, _, _ in reader.read(10)] == [4, 5]
    log.set_retention(None, 0.5)
    log.append([(b"y", None)], 3000)  # (a new segment: the last one is full)
    log.apply_retention(3000)
    assert log.first_offset == 6  # every segment older than 500 ms went; the one written stays


# -- declaring --------------------------------------------------------------------------

@pytest.mark.parametrize("durable, exclusive, auto_delete, bad", [
    (False, False, False, "non-durable"), (True, True, False, "exclusive-owner"), (True, False, True, "auto-delete"),
    (False, True, True, "auto-delete"), (False, True, False, "exclusive-owner")])
def test_a_stream_is_durable_shared_and_kept_in_rabbitmqs_order(durable: bool, exclusive: bool, auto_delete: bool,
                                                                 bad: str) -> None:
    with pytest.raises(ChannelError) as err:
        StreamQueue.check_declare("s", "/", durable, exclusive, auto_delete, QueueSettings(queue_type="stream"))
    assert (err.value.code, reason(err.value)) == (406, f"invalid property '{bad}' for {Q}")


def test_a_segment_size_above_rabbitmqs_ceiling_is_refused() -> None:
    settings = queue_settings("s", {"x-queue-type": "stream", "x-stream-max-segment-size-bytes": 3_000_000_001})
    with pytest.raises(ChannelError) as err:
        StreamQueue.check_declare("s", "/", True, False, False, settings)
    assert reason(err.value) == "Exceeded max value for x-stream-max-segment-size-bytes"


@pytest.mark.parametrize("arguments, detail", [
    ({"x-max-age": "0D"}, "invalid arg 'x-max-age' for queue 's' in vhost '/': invalid_max_age"),
    ({"x-max-age": "1 h"}, "invalid arg 'x-max-age' for queue 's' in vhost '/': invalid_max_age"),
    ({"x-max-age": "h"}, "invalid arg 'x-max-age' for queue 's' in vhost '/': invalid_max_age"),
    ({"x-max-age": 3600}, "invalid arg 'x-max-age' for queue 's' in vhost '/': {unacceptable_type,signedint}"),
    ({"x-stream-max-segment-size-bytes": -1},
     "invalid arg 'x-stream-max-segment-size-bytes' for queue 's' in vhost '/': {value_negative,-1}"),
    ({"x-max-length-bytes": "1"},
     "invalid arg 'x-max-length-bytes' for queue 's' in vhost '/': \"expected integer, got longstr\""),
    ({"x-initial-cluster-size": 0}, "invalid arg 'x-initial-cluster-size' for queue 's' in vhost '/': {value_zero,0}"),
    *[({key: value}, f"invalid arg '{key}' for queue 's' in vhost '/' of queue type rabbit_stream_queue")
      for key, value in (("x-message-ttl", 1), ("x-expires", 1), ("x-max-length", 1), ("x-overflow", "drop-head"),
                         ("x-dead-letter-exchange", "dlx"), ("x-max-priority", 2), ("x-single-active-consumer", True),
                         ("x-delivery-limit", 1), ("x-queue-mode", "lazy"), ("x-consumer-timeout", 1))],
])
def test_stream_arguments_are_validated_with_rabbitmqs_texts(arguments: dict, detail: str) -> None:
    with pytest.raises(ChannelError) as err:
        queue_settings("s", {"x-queue-type": "stream", **arguments})
    assert (err.value.code, reason(err.value)) == (406, detail)


def test_ages_read_as_rabbitmq_reads_them() -> None:
    ages = {"7D": 7 * 86_400_000, "1h": 3_600_000, "30s": 30_000, "2m": 120_000, "1M": 30 * 86_400_000,
            "1Y": 365 * 86_400_000}
    for text, ms in ages.items():
        assert queue_settings("s", {"x-queue-type": "stream", "x-max-age": text}).max_age == ms
    settings = queue_settings("s", {"x-queue-type": "stream", "x-max-length-bytes": 100, "x-initial-cluster-size": 3,
                                    "x-queue-leader-locator": "balanced", "x-stream-max-segment-size-bytes": 50})
    assert (settings.max_length_bytes, settings.max_segment_size_bytes) == (100, 50)


def test_the_policy_wins_for_a_streams_retention() -> None:
    args = {"x-queue-type": "stream", "x-max-age": "1D", "x-max-length-bytes": 1000}
    policy = {"max-age": "1h", "max-length-bytes": 5000, "stream-max-segment-size-bytes": 64}
    settings = queue_settings("s", args, policy=policy, precedence=StreamQueue.POLICY_PRECEDENCE)
    assert (settings.max_age, settings.max_length_bytes, settings.max_segment_size_bytes) == (3_600_000, 5000, 64)
    assert "message-ttl" in StreamQueue.UNSUPPORTED_POLICIES and "max-age" not in StreamQueue.UNSUPPORTED_POLICIES


# -- appending and reading --------------------------------------------------------------

def test_consuming_never_removes_and_every_consumer_reads_everything() -> None:
    q = make_stream()
    fill(q, 3)
    first, again = consume(q, offset="first"), consume(q, offset="first")
    assert offsets(first) == offsets(again) == [0, 1, 2]
    assert (q.message_count, q.unacked) == (3, 6)
    assert [m.body for m in delivered_on(first)] == [b"m0", b"m1", b"m2"]
    assert not any(m.redelivered for m in delivered_on(first))


@pytest.mark.parametrize("offset, expected", [
    (None, [5]), ("next", [5]), ("first", [0, 1, 2, 3, 4, 5]), ("last", [3, 4, 5]), (3, [3, 4, 5]),
    (-7, [0, 1, 2, 3, 4, 5]), (99, []),
    (datetime.fromtimestamp(NOW + 20, timezone.utc), [2, 3, 4, 5]),
    (datetime.fromtimestamp(NOW + 20, timezone.utc).replace(tzinfo=None), [2, 3, 4, 5]),
    ("50s", [3, 4, 5]), ("1h", [0, 1, 2, 3, 4, 5]),
])
def test_a_consumer_starts_at_its_x_stream_offset(offset: Any, expected: list[int]) -> None:
    """Chunks at NOW, +10 s, +20 s, +30 s, then one chunk of two (offsets 3-4) at +40 s;
    the consumer comes at +90 s and offset 5 is published after it."""
    q = make_stream()
    for n, at in enumerate((NOW, NOW + 10, NOW + 20)):
        q.enqueue(message(n, at))
    q.log.append([(message(3, NOW + 40), None), (message(4, NOW + 40), None)], int((NOW + 40) * 1000))
    channel = consume(q, offset=offset, now=NOW + 90)
    q.enqueue(message(5, NOW + 95))
    q.dispatch(1000)
    assert offsets(channel) == expected


@pytest.mark.parametrize("disk", [False, True], ids=["memory", "disk"])
def test_an_offset_past_the_end_waits_for_it(tmp_path: Path, disk: bool) -> None:
    q = on_disk(tmp_path) if disk else make_stream()
    fill(q, 2)
    channel = consume(q, offset=4)
    fill(q, 4)  # offsets 2..5
    q.dispatch(1000)
    assert offsets(channel) == [4, 5]


def test_every_delivery_carries_its_offset_beside_the_publishers_headers() -> None:
    q = make_stream()
    q.enqueue(message(0, app="x"))
    channel = consume(q, offset="first")
    assert delivered_on(channel)[0].properties == {"headers": {"app": "x", "x-stream-offset": 0}}


def test_a_consumer_gets_what_its_prefetch_allows_and_an_ack_gives_credit_back() -> None:
    q = make_stream()
    fill(q, 5)
    channel = consume(q, prefetch=2, offset="first")
    consumer = q.consumers[0]
    assert offsets(channel) == [0, 1] and q.has_messages
    consumer.unacked -= 2  # acked (``Delivery.forget``)
    q.settled(2)
    q.dispatch(1000)
    assert offsets(channel) == [0, 1, 2, 3]
    assert q.message_count == 5  # acks remove nothing


def test_dispatch_stops_at_its_limit_and_goes_on() -> None:
    q = make_stream()
    fill(q, 5)
    channel = new_channel(NOW)
    consumer = Consumer("c", q, channel, False, False, 100, {"x-stream-offset": "first"})
    q.add_consumer(consumer, NOW)
    assert q.dispatch(3) is True and offsets(channel) == [0, 1, 2]
    assert q.dispatch(3) is False and offsets(channel) == [0, 1, 2, 3, 4]
    assert not q.has_messages


def test_a_channel_that_goes_puts_nothing_back() -> None:
    q = make_stream()
    fill(q, 2)
    channel = consume(q, offset="first")
    assert q.requeue(delivered_on(channel)) == [] and q.unacked == 0 and q.message_count == 2


def test_retention_acts_on_append() -> None:
    q = make_stream(**{"x-max-length-bytes": 20, "x-stream-max-segment-size-bytes": 10})
    for n in range(5):
        q.enqueue(message(n, body=b"0123456789"))
    assert (q.log.first_offset, q.message_count) == (3, 2)
    aged = make_stream(**{"x-max-age": "10s", "x-stream-max-segment-size-bytes": 10})
    for n, at in enumerate((NOW, NOW + 5, NOW + 20)):
        aged.enqueue(message(n, at, body=b"0123456789"))
    assert aged.log.first_offset == 2  # NOW and NOW + 5 are over 10 s old at NOW + 20


def test_retention_waits_for_a_new_segment_as_osiris_does() -> None:
    q = make_stream(**{"x-max-age": "10s", "x-stream-max-segment-size-bytes": 20})
    for n, at in enumerate((NOW, NOW + 1, NOW + 2)):  # two 10-byte entries a segment
        q.enqueue(message(n, at, body=b"0123456789"))
    q.enqueue(message(3, NOW + 60, body=b"0123456789"))  # into the second segment: no roll
    assert q.log.first_offset == 0
    q.enqueue(message(4, NOW + 61, body=b"0123456789"))  # a third segment: the first goes
    assert (q.log.first_offset, q.message_count) == (2, 3)


def test_a_policy_change_applies_the_new_retention_at_once() -> None:
    q = make_stream(**{"x-stream-max-segment-size-bytes": 10})
    for n in range(3):
        q.enqueue(message(n, NOW + n, body=b"0123456789"))
    q.apply_settings(queue_settings("s", q.arguments, policy={"max-age": "1s"},
                                    precedence=StreamQueue.POLICY_PRECEDENCE))
    assert q.log.max_age_s == 1.0 and q.log.first_offset == 0  # type: ignore[attr-defined]
    assert q.log.max_segment_bytes == 10
    assert q.expire(NOW + 3) == []  # (``Delivery.settings_changed`` looks after the change)
    assert (q.log.first_offset, q.message_count) == (2, 1)


# -- refusals ---------------------------------------------------------------------------

def test_a_consumer_needs_a_prefetch_manual_acks_and_no_global_qos() -> None:
    q = make_stream()
    cases = [({"prefetch": 0}, ChannelError, 406, f"consumer prefetch count is not set for '{Q}'"),
             ({"prefetch": 0, "auto_ack": True}, ChannelError, 406, f"consumer prefetch count is not set for '{Q}'"),
             ({"auto_ack": True}, ConnectionError_, 540,
              f"automatic acknowledgement not supported by stream queues {Q}"),
             ({"global_prefetch": 5}, ConnectionError_, 540, f"{Q} does not support global qos")]
    for kwargs, kind, code, text in cases:
        with pytest.raises(kind) as err:
            consume(q, **kwargs)
        assert (err.value.code, reason(err.value)) == (code, text)
    assert not q.consumers


@pytest.mark.parametrize("offset, shown", [
    ("foo", '{longstr,<<"foo">>}'), ("0s", '{longstr,<<"0s">>}'), (True, "{bool,true}"), (1.5, "{double,1.5}")])
def test_an_invalid_offset_is_refused_with_rabbitmqs_reason(offset: Any, shown: str) -> None:
    with pytest.raises(ChannelError) as err:
        consumer_arguments("s", "stream", {"x-stream-offset": offset})
    assert reason(err.value) == f"invalid arg 'x-stream-offset' for {Q}: {{invalid_stream_offset_arg,{shown}}}"


@pytest.mark.parametrize("key, value, detail", [
    ("x-priority", 5, f"invalid arg 'x-priority' for {Q} of queue type rabbit_stream_queue"),
    ("x-stream-filter", 5, f"invalid arg 'x-stream-filter' for {Q}: {{unacceptable_type,signedint}}"),
    ("x-stream-filter", ["a", 1.5], f"invalid arg 'x-stream-filter' for {Q}: {{unacceptable_type,double}}"),
    ("x-stream-match-unfiltered", "yes", f"invalid arg 'x-stream-match-unfiltered' for {Q}: {{unacceptable_type,longstr}}"),
    ("x-zbroker-consumer-name", "", f"invalid arg 'x-zbroker-consumer-name' for {Q}: {{invalid_length,0}}"),
    ("x-zbroker-consumer-name", "n" * 256, f"invalid arg 'x-zbroker-consumer-name' for {Q}: {{invalid_length,256}}"),
    ("x-zbroker-consumer-name", 7, f"invalid arg 'x-zbroker-consumer-name' for {Q}: {{unacceptable_type,signedint}}"),
])
def test_consumer_arguments_a_stream_does_not_take(key: str, value: Any, detail: str) -> None:
    with pytest.raises(ChannelError) as err:
        consumer_arguments("s", "stream", {key: value})
    assert reason(err.value) == detail
    assert consumer_arguments("s", "stream", {"x-stream-offset": "first", "x-credit": 10}) == (0, None)
    assert consumer_arguments("s", "stream", {"x-stream-offset": b"last"}) == (0, None)  # (any string type)


def test_get_purge_and_returns_are_refused_as_rabbitmq_refuses_them() -> None:
    q = make_stream()
    for call, what in ((q.check_get, "basic.get"), (q.purge, "queue.purge"),
                       (q.check_return, "basic.nack and basic.reject")):
        with pytest.raises(ConnectionError_) as err:
            call()
        assert (err.value.code, reason(err.value)) == (540, f"{what} not supported by stream queues {Q}")


def test_deleting_a_stream_deletes_its_log() -> None:
    q = make_stream()
    fill(q, 2)
    q.clear()
    assert q.log.deleted  # type: ignore[attr-defined]


# -- end to end over the AMQP wire ------------------------------------------------------

@pytest.fixture()
def amqp() -> tuple[Any, AmqpPeer]:
    broker, wire, clock = make()
    peer = AmqpPeer(wire, clock)
    peer.handshake()
    peer.open_channel()
    return broker, peer


def declare_stream(peer: AmqpPeer, name: str = "s", **arguments: Any) -> list[Any]:
    peer.send(1, C.Queue.Declare(queue=name, durable=True, arguments={"x-queue-type": "stream", **arguments}))
    return peer.methods()


def delivered(peer: AmqpPeer) -> list[tuple[int, int | None, bytes]]:
    """(delivery tag, x-stream-offset, body) of each delivery received."""
    out: list[tuple[int, int | None, bytes]] = []
    tag, offset = 0, None
    for _, value in peer.received:
        if isinstance(value, C.Basic.Deliver):
            tag = value.delivery_tag
        elif hasattr(value, "properties") and hasattr(value, "body_size"):
            offset = (value.properties.headers or {}).get("x-stream-offset")
        elif hasattr(value, "value") and isinstance(value.value, bytes):
            out.append((tag, offset, value.value))
    peer.received.clear()
    return out


def test_declare_publish_with_confirms_and_consume_over_amqp(amqp: tuple[Any, AmqpPeer]) -> None:
    broker, peer = amqp
    ok = declare_stream(peer, **{"x-max-age": "7D"})
    assert isinstance(ok[0], C.Queue.DeclareOk) and ok[0].message_count == 0
    peer.send(1, C.Confirm.Select())
    peer.methods()
    for n in range(3):
        peer.publish(1, "", "s", b"m%d" % n)
    broker.after_input()
    peer.pump()
    acks = peer.methods()
    assert {type(m) for m in acks} == {C.Basic.Ack} and acks[-1].delivery_tag == 3
    peer.send(1, C.Basic.Qos(prefetch_count=2))
    peer.send(1, C.Basic.Consume(queue="s", consumer_tag="c", arguments={"x-stream-offset": "first"}))
    assert delivered(peer) == [(1, 0, b"m0"), (2, 1, b"m1")]
    peer.send(1, C.Basic.Ack(delivery_tag=2, multiple=True))
    assert delivered(peer) == [(3, 2, b"m2")]
    peer.send(1, C.Queue.Declare(queue="s", durable=True, passive=True))
    assert [m.message_count for m in peer.methods() if isinstance(m, C.Queue.DeclareOk)] == [3]
    peer.publish(1, "", "s", b"m3")
    assert [(o, b) for _, o, b in delivered(peer)] == [(3, b"m3")]


def test_a_next_consumer_gets_only_what_comes_after_it(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    declare_stream(peer)
    peer.publish(1, "", "s", b"old")
    peer.send(1, C.Basic.Qos(prefetch_count=10))
    peer.send(1, C.Basic.Consume(queue="s", consumer_tag="c"))
    peer.methods()
    peer.publish(1, "", "s", b"new")
    assert [(o, b) for _, o, b in delivered(peer)] == [(1, b"new")]


@pytest.mark.parametrize("method, text", [
    (C.Basic.Get(queue="s"), f"NOT_IMPLEMENTED - basic.get not supported by stream queues {Q}"),
    (C.Queue.Purge(queue="s"), f"NOT_IMPLEMENTED - queue.purge not supported by stream queues {Q}"),
])
def test_get_and_purge_close_the_connection(amqp: tuple[Any, AmqpPeer], method: Any, text: str) -> None:
    _, peer = amqp
    declare_stream(peer)
    peer.send(1, method)
    closed = [(m.reply_code, m.reply_text) for m in peer.methods() if isinstance(m, C.Connection.Close)]
    assert closed == [(540, text)]


@pytest.mark.parametrize("method, closed", [
    (C.Basic.Nack(delivery_tag=1), (540, f"NOT_IMPLEMENTED - basic.nack and basic.reject not supported by "
                                         f"stream queues {Q}")),
    (C.Basic.Reject(delivery_tag=1), (540, f"NOT_IMPLEMENTED - basic.nack and basic.reject not supported by "
                                           f"stream queues {Q}")),
    (C.Basic.Nack(delivery_tag=1, requeue=False), (540, f"NOT_IMPLEMENTED - basic.nack and basic.reject not "
                                                        f"supported by stream queues {Q}")),
    (C.Basic.Recover(requeue=True), (541, "INTERNAL_ERROR")),  # (RabbitMQ's requeue crashes: the name alone)
])
def test_nack_reject_and_recover_close_the_connection(amqp: tuple[Any, AmqpPeer], method: Any,
                                                      closed: tuple[int, str]) -> None:
    broker, peer = amqp
    declare_stream(peer)
    peer.publish(1, "", "s", b"m")
    peer.send(1, C.Basic.Qos(prefetch_count=10))
    peer.send(1, C.Basic.Consume(queue="s", consumer_tag="c", arguments={"x-stream-offset": "first"}))
    peer.received.clear()
    peer.send(1, method)
    assert [(m.reply_code, m.reply_text) for m in peer.methods() if isinstance(m, C.Connection.Close)] == [closed]
    queue = broker.topology.queues["s"]
    assert (queue.unacked, queue.message_count, queue.consumers) == (0, 1, [])  # the connection went


def test_a_consumer_without_prefetch_closes_the_channel(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    declare_stream(peer)
    peer.send(1, C.Basic.Consume(queue="s", consumer_tag="c"))
    closed = [(m.reply_code, m.reply_text) for m in peer.methods() if isinstance(m, C.Channel.Close)]
    assert closed == [(406, f"PRECONDITION_FAILED - consumer prefetch count is not set for '{Q}'")]


def test_a_redeclare_compares_the_streams_own_arguments_only(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    declare_stream(peer, **{"x-max-age": "7D"})
    assert [type(m) for m in declare_stream(peer, **{"x-max-age": "7D", "x-message-ttl": 5})] == [C.Queue.DeclareOk]
    got = declare_stream(peer, **{"x-max-age": "1D"})
    assert [(m.reply_code, m.reply_text) for m in got if isinstance(m, C.Channel.Close)] == [
        (406, f"PRECONDITION_FAILED - inequivalent arg 'x-max-age' for {Q}: received '1D' but current is '7D'")]


def test_a_stream_is_declared_by_name(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    got = declare_stream(peer, "")
    assert [(m.reply_code, m.reply_text) for m in got if isinstance(m, C.Channel.Close)] == [
        (406, "PRECONDITION_FAILED - Cannot declare a server-named queue for type rabbit_stream_queue")]


def test_a_classic_only_argument_is_refused_at_declare(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    got = declare_stream(peer, **{"x-message-ttl": 1000})
    closed = [(m.reply_code, m.reply_text) for m in got if isinstance(m, C.Channel.Close)]
    assert closed == [(406, f"PRECONDITION_FAILED - invalid arg 'x-message-ttl' for {Q} of queue type "
                            "rabbit_stream_queue")]


def test_deleting_the_stream_cancels_its_consumers(amqp: tuple[Any, AmqpPeer]) -> None:
    broker, peer = amqp
    declare_stream(peer)
    peer.send(1, C.Basic.Qos(prefetch_count=10))
    peer.send(1, C.Basic.Consume(queue="s", consumer_tag="c"))
    log = broker.topology.queues["s"].log
    peer.methods()
    peer.send(1, C.Queue.Delete(queue="s"))
    got = peer.methods()
    assert any(isinstance(m, C.Basic.Cancel) for m in got) and log.deleted


def test_a_non_durable_declare_is_refused_through_the_broker(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    peer.send(1, C.Queue.Declare(queue="s", exclusive=True, arguments={"x-queue-type": "stream"}))
    assert [(m.reply_code, m.reply_text) for m in peer.methods() if isinstance(m, C.Channel.Close)] == [
        (406, f"PRECONDITION_FAILED - invalid property 'exclusive-owner' for {Q}")]
    assert queue_type("stream") is StreamQueue


def test_a_refused_nack_loses_no_other_queues_delivery(amqp: tuple[Any, AmqpPeer]) -> None:
    """A nack covering a classic queue's delivery and a stream's: refused (540); the classic
    one goes back to its queue with the connection, as on any close."""
    broker, peer = amqp
    declare_stream(peer)
    peer.send(1, C.Queue.Declare(queue="c"))
    peer.publish(1, "", "c", b"classic")
    peer.publish(1, "", "s", b"stream")
    peer.send(1, C.Basic.Qos(prefetch_count=10))
    peer.send(1, C.Basic.Consume(queue="c", consumer_tag="cc"))
    peer.send(1, C.Basic.Consume(queue="s", consumer_tag="sc", arguments={"x-stream-offset": "first"}))
    assert [b for _, _, b in delivered(peer)] == [b"classic", b"stream"]
    peer.send(1, C.Basic.Nack(delivery_tag=0, multiple=True))
    assert [m.reply_code for m in peer.methods() if isinstance(m, C.Connection.Close)] == [540]
    classic = broker.topology.queues["c"]
    assert (classic.message_count, classic.unacked) == (1, 0)


# -- the seam: the storage's log on disk, handed to a stream with attach_log ------------

class PickleCodec:
    """A test codec (the storage's own is msgpack): a message to bytes and back to fields."""

    decodes_new = True

    @staticmethod
    def encode(message: Message) -> bytes:
        return pickle.dumps((message.exchange, message.routing_key, message.properties, bytes(message.body),
                             message.published_at))

    @staticmethod
    def decode(entry: bytes) -> tuple:
        return pickle.loads(entry)


def on_disk(tmp_path: Path, **arguments: Any) -> StreamQueue:
    q = make_stream(**arguments)
    s = q.settings
    log = StreamLog.open(tmp_path / "s", max_segment_bytes=s.max_segment_size_bytes or 500_000_000)
    q.attach_log(log, PickleCodec())
    return q


@pytest.mark.parametrize("offset, expected", [("first", [0, 1, 2, 3]), ("last", [2, 3]), ("next", [3]), (1, [1, 2, 3]),
                                              ("15s", [2, 3])])
def test_the_disk_log_serves_every_offset_kind(tmp_path: Path, offset: Any, expected: list[int]) -> None:
    q = on_disk(tmp_path)
    for n, at in enumerate((NOW, NOW + 10, NOW + 20)):
        q.enqueue(message(n, at, app=n))
        q.log.sync()  # (each its own loop pass, so its own chunk)
    channel = consume(q, prefetch=2, offset=offset, now=NOW + 30)
    q.enqueue(message(3, NOW + 31))
    for _ in range(3):
        q.consumers[0].unacked = 0
        q.dispatch(1000)
    assert offsets(channel) == expected
    assert delivered_on(channel)[0].properties["headers"]["x-stream-offset"] == expected[0]
    assert delivered_on(channel)[-1].body == b"m3" and q.message_count == 4


def test_the_disk_log_keeps_the_retention_and_deletes_with_the_queue(tmp_path: Path) -> None:
    q = on_disk(tmp_path, **{"x-max-length-bytes": 1, "x-stream-max-segment-size-bytes": 100})
    for n in range(6):
        q.enqueue(message(n, NOW + n, body=b"x" * 60))  # each chunk past 100 bytes: its own segment
    assert q.log.first_offset == 5 and q.message_count == 1
    q.clear()
    assert not (tmp_path / "s").exists()


def test_the_zbroker_wire_too() -> None:
    peer = FakePeer(Broker(), b"p").open()
    assert peer.declare("s", durable=True, arguments={"x-queue-type": "stream"})[0][0] == Op.QUEUE_DECLARE_OK
    peer.publish("", "s", b"a", properties={"headers": {"k": 1}})
    peer.qos(5)
    got = peer.consume("s", "c", arguments={"x-stream-offset": "first"})
    assert bodies(got) == [b"a"] and props_of(got)[0]["headers"] == {"k": 1, "x-stream-offset": 0}
    assert [p["headers"]["x-stream-offset"] for p in props_of(peer.publish("", "s", b"b"))] == [1]
    assert closes(peer.get("s", auto_ack=False)) == [(540, f"NOT_IMPLEMENTED - basic.get not supported by "
                                                          f"stream queues {Q}")]


def test_a_nack_in_a_transaction_is_refused_too(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    declare_stream(peer)
    peer.publish(1, "", "s", b"m")
    peer.send(1, C.Basic.Qos(prefetch_count=10))
    peer.send(1, C.Basic.Consume(queue="s", consumer_tag="c", arguments={"x-stream-offset": "first"}))
    peer.send(1, C.Tx.Select())
    peer.received.clear()
    peer.send(1, C.Basic.Nack(delivery_tag=1))
    assert [m.reply_code for m in peer.methods() if isinstance(m, C.Connection.Close)] == [540]


def test_a_policy_sets_a_streams_retention_and_wins_over_its_arguments(amqp: tuple[Any, AmqpPeer]) -> None:
    broker, peer = amqp
    declare_stream(peer, **{"x-max-age": "7D", "x-max-length-bytes": 10})
    set_policy = broker.set_policy
    set_policy(broker.topology, "keep", "^s$", {"max-age": "1h", "max-length-bytes": 5000}, 0, "streams", False)
    broker.run_pending()
    queue = broker.topology.queues["s"]
    assert (queue.settings.max_age, queue.settings.max_length_bytes) == (3_600_000, 5000)
    assert (queue.log.max_age_s, queue.log.max_length_bytes) == (3600.0, 5000)
    set_policy(broker.topology, "ttl", "^s$", {"message-ttl": 5, "max-age": "1s"}, 9, "all", False)
    broker.run_pending()
    assert queue.settings.max_age == 3_600_000  # a policy with a key a stream does not take is not its
