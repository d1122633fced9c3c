"""What queued messages share (``zbroker/core/messaging/message.py``): one empty
properties dict for every message published without properties, and one copy of each
exchange name and routing key. Nothing the broker does to a message changes them."""
from __future__ import annotations

from tests.unit.wire import FakeClock, FakePeer, deliveries
from zbroker.core import Broker
from zbroker.protocol import Op
from zbroker.core.messaging import message
from zbroker.core.messaging.message import NO_PROPERTIES, SHARED_PROPERTIES_MAX, published, shared


def test_a_publish_interns_its_names_and_shares_the_empty_properties() -> None:
    key_a, key_b = "".join(["orders.", "eu"]), "".join(["orders", ".eu"])  # equal, two objects
    assert key_a is not key_b
    first = published(1, "ex", key_a, {}, b"1", 0.0, None)
    second = published(2, "ex", key_b, {}, b"22", 0.0, None)
    assert first.routing_key is second.routing_key and first.exchange is second.exchange
    assert first.properties is NO_PROPERTIES and second.properties is NO_PROPERTIES
    assert (first.size, second.size) == (1, 2)
    own = {"content_type": "text/plain", "x-own": object()}  # (not shared: not all str or int)
    assert published(3, "ex", key_a, own, b"", 0.0, None).properties is own


def test_equal_properties_are_shared_only_where_their_values_have_the_same_types() -> None:
    first = {"content_type": "text/plain", "delivery_mode": 2}
    again = {"content_type": "text/plain", "delivery_mode": 2}
    assert shared(first) is first and shared(again) is first
    assert published(1, "", "q", again, b"", 0.0, None).properties is first
    for value in (True, 2.0):  # equal to 1 and 2 in Python, but another type on the wire
        other = {"content_type": "text/plain", "delivery_mode": value}
        assert shared(other) is other and type(shared(other)["delivery_mode"]) is type(value)
    headers = {"headers": {"a": 1}}
    assert shared(headers) is headers and shared({"headers": {"a": 1}}) is not headers
    for i in range(SHARED_PROPERTIES_MAX + 10):  # ever-new properties: the table stays bounded
        shared({"message_id": str(i)})
    assert 0 < len(message._shared_properties) <= SHARED_PROPERTIES_MAX


def test_dead_lettering_expiring_and_redelivering_leave_the_shared_properties_empty() -> None:
    clock = FakeClock()
    broker = Broker(now=clock.now)
    peer = FakePeer(broker, b"p", clock).open()
    peer.exchange("dlx", "fanout")
    peer.declare("dead")
    peer.bind("dead", "dlx")
    peer.declare("work", arguments={"x-dead-letter-exchange": "dlx", "x-message-ttl": 1000})
    peer.declare("quorum", durable=True, arguments={"x-queue-type": "quorum"})
    for queue in ("work", "work", "quorum"):
        peer.publish("", queue, b"no properties")
    [tag] = [fields[1] for op, fields, _ in peer.get("work", auto_ack=False) if op == Op.BASIC_GET_OK]
    peer.reject(tag, requeue=False)  # dead-lettered: x-death added to its copy
    clock.advance(2, broker)  # the other one expires into "dead" too
    [(_, _, tag, *_)] = deliveries(peer.consume("quorum", "c2"))[:1]
    [redelivered] = deliveries(peer.nack(tag))  # a quorum redelivery carries x-delivery-count
    assert redelivered[-1]["headers"]["x-delivery-count"] == 1
    assert peer.count("dead") == 2
    assert NO_PROPERTIES == {}
