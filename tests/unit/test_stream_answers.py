"""What RabbitMQ 3.10 answers about a stream where its ``rabbit_stream_queue`` differs from
the other types (``QueueType`` rule 4's facts), end to end over the AMQP wire: the
``x-stream-offset`` header's wire type, exclusive consumers, queue.delete, declare-ok,
basic.recover and the management consumer rows. Classic queues keep their answers."""
from __future__ import annotations

import struct
from typing import Any

import pytest
from pamqp import commands as C

from tests.unit.amqp_peer import AmqpPeer
from tests.unit.test_stream_queue import amqp, declare_stream, delivered  # noqa: F401 (amqp: a fixture)
from zbroker.core.management import views
from zbroker.methods import SignedLong
from zbroker.protocol import amqp_codec


def second_peer(broker: Any, first: AmqpPeer) -> AmqpPeer:
    peer = AmqpPeer(first.wire, first.clock, port=40001)
    peer.handshake()
    peer.open_channel()
    return peer


def consume(peer: AmqpPeer, queue: str = "s", tag: str = "c", exclusive: bool = False) -> list[Any]:
    peer.send(1, C.Basic.Qos(prefetch_count=10))
    peer.send(1, C.Basic.Consume(queue=queue, consumer_tag=tag, exclusive=exclusive,
                                 arguments={"x-stream-offset": "first"}))
    return peer.methods()


def test_a_signed_long_is_encoded_as_type_l_whatever_its_size() -> None:
    assert amqp_codec._value(SignedLong(8)) == b"l" + struct.pack(">q", 8)
    assert amqp_codec._value(SignedLong(-2**40)) == b"l" + struct.pack(">q", -2**40)
    assert amqp_codec._value(8) == b"I" + struct.pack(">i", 8)  # a plain int: the smallest type, as before


def test_the_offset_header_goes_out_as_a_signed_64_bit_value(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    raw: list[bytes] = []
    read = peer.read
    peer.read = lambda data: (raw.append(bytes(data)), read(data))[1]  # type: ignore[method-assign]
    declare_stream(peer)
    peer.publish(1, "", "s", b"m0", properties=C.Basic.Properties(headers={"x-stream-offset": 99, "h": 7}))
    consume(peer)
    wire = b"".join(raw)
    assert b"\x0fx-stream-offsetl" + struct.pack(">q", 0) in wire  # the publisher's 99 replaced
    assert b"\x01hI" + struct.pack(">i", 7) in wire  # other headers keep the smallest type


def test_an_exclusive_stream_consumer_is_accepted_and_ignored(amqp: tuple[Any, AmqpPeer]) -> None:
    broker, peer = amqp
    declare_stream(peer)
    peer.publish(1, "", "s", b"m0")
    got = consume(peer, exclusive=True)
    assert any(isinstance(m, C.Basic.ConsumeOk) for m in got)
    other = second_peer(broker, peer)
    other.send(1, C.Basic.Qos(prefetch_count=10))
    other.send(1, C.Basic.Consume(queue="s", consumer_tag="d", exclusive=True, arguments={"x-stream-offset": "first"}))
    assert any(isinstance(m, C.Basic.ConsumeOk) for _, m in other.received)
    assert [b for _, _, b in delivered(other)] == [b"m0"]
    assert len(broker.topology.queues["s"].consumers) == 2


def test_an_exclusive_classic_consumer_still_excludes(amqp: tuple[Any, AmqpPeer]) -> None:
    broker, peer = amqp
    peer.send(1, C.Queue.Declare(queue="c"))
    peer.methods()
    peer.send(1, C.Basic.Consume(queue="c", consumer_tag="c", exclusive=True))
    peer.methods()
    other = second_peer(broker, peer)
    other.send(1, C.Basic.Consume(queue="c", consumer_tag="d"))
    assert [m.reply_code for m in other.methods() if isinstance(m, C.Channel.Close)] == [403]


def test_declare_ok_reports_no_consumers_of_a_stream(amqp: tuple[Any, AmqpPeer]) -> None:
    broker, peer = amqp
    declare_stream(peer)
    peer.publish(1, "", "s", b"m0")
    consume(peer)
    ok = [m for m in declare_stream(peer) if isinstance(m, C.Queue.DeclareOk)]
    assert [(m.message_count, m.consumer_count) for m in ok] == [(1, 0)]
    peer.send(1, C.Queue.Declare(queue="c"))
    peer.send(1, C.Basic.Consume(queue="c", consumer_tag="cc"))
    peer.methods()
    peer.send(1, C.Queue.Declare(queue="c"))
    assert [m.consumer_count for m in peer.methods() if isinstance(m, C.Queue.DeclareOk)] == [1]


def test_deleting_a_stream_ignores_if_unused_and_if_empty_and_reports_zero(amqp: tuple[Any, AmqpPeer]) -> None:
    broker, peer = amqp
    declare_stream(peer)
    peer.publish(1, "", "s", b"m0")
    peer.publish(1, "", "s", b"m1")
    consume(peer)
    peer.send(1, C.Queue.Delete(queue="s", if_unused=True, if_empty=True))
    got = peer.methods()
    assert [m.message_count for m in got if isinstance(m, C.Queue.DeleteOk)] == [0]
    assert not any(isinstance(m, C.Channel.Close) for m in got) and "s" not in broker.topology.queues


def test_deleting_a_classic_queue_still_checks_and_counts(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    peer.send(1, C.Queue.Declare(queue="c"))
    peer.publish(1, "", "c", b"m0")
    peer.methods()
    peer.send(1, C.Queue.Delete(queue="c", if_empty=True))
    assert [m.reply_code for m in peer.methods() if isinstance(m, C.Channel.Close)] == [406]
    peer.open_channel(2)
    peer.send(2, C.Queue.Delete(queue="c"))
    assert [m.message_count for m in peer.methods() if isinstance(m, C.Queue.DeleteOk)] == [1]


def test_recover_without_stream_deliveries_is_ok(amqp: tuple[Any, AmqpPeer]) -> None:
    _, peer = amqp
    declare_stream(peer)
    consume(peer)
    peer.send(1, C.Basic.Recover(requeue=True))
    assert [type(m) for m in peer.methods()] == [C.Basic.RecoverOk]


def test_a_streams_management_consumer_rows_are_not_active(amqp: tuple[Any, AmqpPeer]) -> None:
    broker, peer = amqp
    declare_stream(peer)
    consume(peer)
    peer.send(1, C.Queue.Declare(queue="c"))
    peer.send(1, C.Basic.Consume(queue="c", consumer_tag="cc"))
    peer.methods()
    rows = {c.tag: views.consumer(broker, c) for q in broker.topology.queues.values() for c in q.consumers}
    assert (rows["c"]["active"], rows["c"]["activity_status"]) == (False, "up")
    assert (rows["cc"]["active"], rows["cc"]["activity_status"]) == (True, "up")


def test_a_non_string_dead_letter_exchange_is_refused_by_its_type_first() -> None:
    from zbroker.core.messaging.arguments import queue_settings
    from zbroker.errors import ChannelError
    with pytest.raises(ChannelError) as caught:
        queue_settings("s", {"x-queue-type": "stream", "x-dead-letter-exchange": 5})
    assert caught.value.text == ("PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' "
                                 "in queue 's' in vhost '/'")
    with pytest.raises(ChannelError) as caught:
        queue_settings("s", {"x-queue-type": "stream", "x-dead-letter-exchange": "dlx"})
    assert caught.value.text.endswith("of queue type rabbit_stream_queue")


def test_x_cancel_on_ha_failover_is_another_types_consumer_argument() -> None:
    from zbroker.core.messaging.arguments import consumer_arguments
    from zbroker.errors import ChannelError
    with pytest.raises(ChannelError) as caught:
        consumer_arguments("s", "stream", {"x-cancel-on-ha-failover": True})
    assert caught.value.text == ("PRECONDITION_FAILED - invalid arg 'x-cancel-on-ha-failover' for queue 's' in "
                                 "vhost '/' of queue type rabbit_stream_queue")
    assert consumer_arguments("c", "classic", {"x-cancel-on-ha-failover": True, "x-consumer-timeout": 5}) == (0, 5)
    assert consumer_arguments("q", "quorum", {"x-cancel-on-ha-failover": "x"}) == (0, None)
