"""Queue arguments are validated as RabbitMQ validates them (406 with its texts, compared
with RabbitMQ 3.10.8 through pika), and the ones zbroker does not implement are refused,
never stored and ignored."""
from __future__ import annotations

import pytest

from tests.unit.wire import FakePeer, closes
from zbroker.protocol import Op

Q = "for queue 'q' in vhost '/'"


@pytest.mark.parametrize("arguments, detail", [
    ({"x-max-priority": 300}, f"invalid arg 'x-max-priority' {Q}: {{max_value_exceeded,300}}"),
    ({"x-max-priority": -1}, f"invalid arg 'x-max-priority' {Q}: {{value_negative,-1}}"),
    ({"x-message-ttl": -1}, f"invalid arg 'x-message-ttl' {Q}: {{value_negative,-1}}"),
    ({"x-message-ttl": "60000"}, f"invalid arg 'x-message-ttl' {Q}: \"expected integer, got longstr\""),
    ({"x-message-ttl": 1.5}, f"invalid arg 'x-message-ttl' {Q}: \"expected integer, got double\""),
    ({"x-expires": 0}, f"invalid arg 'x-expires' {Q}: {{value_zero,0}}"),
    ({"x-max-length": -2}, f"invalid arg 'x-max-length' {Q}: {{value_negative,-2}}"),
    ({"x-max-length-bytes": True}, f"invalid arg 'x-max-length-bytes' {Q}: \"expected integer, got bool\""),
    ({"x-overflow": "drop-tail"}, f"invalid arg 'x-overflow' {Q}: invalid_overflow"),
    ({"x-dead-letter-exchange": 7}, "invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"),
    ({"x-dead-letter-routing-key": "k"}, f"invalid arg 'x-dead-letter-routing-key' {Q}: routing_key_but_no_dlx_defined"),
    ({"x-single-active-consumer": 1}, f"invalid arg 'x-single-active-consumer' {Q}: {{unacceptable_type,signedint}}"),
    ({"x-delivery-limit": 3}, f"invalid arg 'x-delivery-limit' {Q} of queue type rabbit_classic_queue"),
    ({"x-queue-type": "foo"}, f"invalid arg 'x-queue-type' {Q}: \"unsupported queue type 'foo'\""),
    ({"x-queue-type": "stream"}, "invalid property 'non-durable' for queue 'q' in vhost '/'"),
    ({"x-consumer-timeout": -1}, f"invalid arg 'x-consumer-timeout' {Q}: {{value_negative,-1}}"),
    ({"x-consumer-timeout": "1000"}, f"invalid arg 'x-consumer-timeout' {Q}: \"expected integer, got longstr\""),
    ({"x-max-age": "1D"}, f"invalid arg 'x-max-age' {Q} of queue type rabbit_classic_queue"),
    ({"x-stream-max-segment-size-bytes": 1}, f"invalid arg 'x-stream-max-segment-size-bytes' {Q} of queue type "
                                             "rabbit_classic_queue"),
])
def test_invalid_queue_arguments_are_406(peer: FakePeer, arguments: dict, detail: str) -> None:
    assert closes(peer.declare("q", arguments=arguments)) == [(406, "PRECONDITION_FAILED - " + detail)]
    assert "q" not in peer.broker.topology.queues


def test_quorum_queues_refuse_classic_only_arguments(peer: FakePeer) -> None:
    assert closes(peer.declare("q", durable=True, arguments={"x-queue-type": "quorum", "x-max-priority": 5})) == [
        (406, f"PRECONDITION_FAILED - invalid arg 'x-max-priority' {Q} of queue type rabbit_quorum_queue")]


@pytest.mark.parametrize("arguments", [
    {"x-queue-mode": "lazy"}, {"x-queue-version": 2}, {"x-queue-leader-locator": "client-local"},
    {"x-max-priority": 0}, {"x-custom-by-an-app": "anything"},
])
def test_placement_arguments_and_unknown_names_are_accepted(peer: FakePeer, arguments: dict) -> None:
    assert [op for op, _, _ in peer.declare("q", arguments=arguments)] == [Op.QUEUE_DECLARE_OK]


def test_redeclaring_with_another_ttl_is_406(peer: FakePeer) -> None:
    peer.declare("q", arguments={"x-message-ttl": 1000})
    assert closes(peer.declare("q", arguments={"x-message-ttl": 2000})) == [
        (406, f"PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' {Q}: received '2000' but current is '1000'")]


@pytest.mark.parametrize("arguments, detail", [
    ({"x-consumer-timeout": -5}, f"invalid arg 'x-consumer-timeout' {Q}: {{value_negative,-5}}"),
    ({"x-consumer-timeout": 1.5}, f"invalid arg 'x-consumer-timeout' {Q}: \"expected integer, got double\""),
    ({"x-stream-offset": "first"}, f"invalid arg 'x-stream-offset' {Q} of queue type rabbit_classic_queue"),
])
def test_invalid_consumer_arguments_are_refused(peer: FakePeer, arguments: dict,
                                                                   detail: str) -> None:
    peer.declare("q")
    assert closes(peer.consume("q", "c", arguments=arguments)) == [(406, "PRECONDITION_FAILED - " + detail)]
