"""A stream's deliveries in batches on the zbroker wire (STREAM_DELIVER): the broker sends
its log's entries as they are to a client that asked for them at HELLO, and the
client's splitting gives back one basic.deliver per message, with the same fields as
the one-by-one path; a client that did not ask gets BASIC_DELIVERs."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from tests.unit.wire import FakePeer
from zbroker.client.stream_deliveries import stream_deliveries
from zbroker.core import Broker
from zbroker.protocol import Op, ProtocolError, stream_entries
from zbroker.storage import DiskStore

STREAM = {"x-queue-type": "stream"}
BATCHES = {"capabilities": {"stream_batches": True}}


def open_peer(broker: Broker, name: bytes, batches: bool) -> FakePeer:
    peer = FakePeer(broker, name)
    peer.send(Op.HELLO, None, "/", "guest", "guest", BATCHES if batches else {})
    peer.send(Op.CHANNEL_OPEN, 1)
    return peer


def as_deliveries(got: list[tuple[int, list[Any], Any]]) -> list[tuple[list[Any], bytes]]:
    """What the client hands its channels: each BASIC_DELIVER, and each entry of a batch."""
    out: list[tuple[list[Any], bytes]] = []
    for op, fields, body in got:
        if op == Op.BASIC_DELIVER:
            out.append((list(fields), bytes(body)))
        elif op == Op.STREAM_DELIVER:
            out.extend(stream_deliveries(fields, body))
    return out


@pytest.fixture
def broker(tmp_path: Path) -> Any:
    broker = Broker(store=DiskStore(tmp_path))
    yield broker
    broker.close()


def test_a_batch_carries_what_one_by_one_deliveries_carry(broker: Broker) -> None:
    plain, batched = open_peer(broker, b"plain", False), open_peer(broker, b"batched", True)
    plain.declare("s", durable=True, arguments=STREAM)
    stamp = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    for n in range(5):
        plain.publish("", "s", b"m%d" % n, properties={"headers": {"n": n, "at": stamp}, "timestamp": 1767323045,
                                                       "app_id": "a"})
    broker.commit()
    one_by_one, in_batches = [], []
    for peer, out in ((plain, one_by_one), (batched, in_batches)):
        peer.qos(3)
        got = peer.consume("s", "c", arguments={"x-stream-offset": "first"})
        ops = [op for op, _, _ in got if op in (Op.BASIC_DELIVER, Op.STREAM_DELIVER)]
        assert ops == ([Op.STREAM_DELIVER] if peer is batched else [Op.BASIC_DELIVER] * 3)
        out += as_deliveries(got)
        out += as_deliveries(peer.ack(3, multiple=True))  # credit back: the other two
    assert one_by_one == in_batches
    assert [body for _, body in in_batches] == [b"m0", b"m1", b"m2", b"m3", b"m4"]
    assert [fields[2] for fields, _ in in_batches] == [1, 2, 3, 4, 5]  # delivery tags
    assert in_batches[4][0][6]["headers"] == {"n": 4, "at": stamp, "x-stream-offset": 4}
    assert in_batches[0][0][6]["timestamp"] == 1767323045


def test_batched_deliveries_are_acked_tracked_and_counted_one_by_one(broker: Broker) -> None:
    peer = open_peer(broker, b"p", True)
    peer.declare("s", durable=True, arguments=STREAM)
    for n in range(10):
        peer.publish("", "s", b"m%d" % n)
    peer.qos(4)
    got = as_deliveries(peer.consume("s", "c", arguments={"x-stream-offset": "first",
                                                          "x-zbroker-consumer-name": "n"}))
    assert [fields[2] for fields, _ in got] == [1, 2, 3, 4]
    queue = broker.topology.queues["s"]
    assert queue.unacked == 4 and queue.delivered == 4
    got = as_deliveries(peer.ack(2))  # one ack, one credit: one more delivery
    assert [fields[6]["headers"]["x-stream-offset"] for fields, _ in got] == [4]
    assert queue.unacked == 4 and queue.log.tracked("n") == 1


def test_a_batch_holds_at_most_the_consumers_credit_and_the_entry_cap(broker: Broker) -> None:
    peer = open_peer(broker, b"p", True)
    peer.declare("s", durable=True, arguments=STREAM)
    for n in range(2500):
        peer.publish("", "s", b"x")
    peer.qos(2400)
    got = peer.consume("s", "c", arguments={"x-stream-offset": "first"})
    while broker.has_pending_work:  # (a dispatch pauses after DISPATCH_BATCH; the loop goes on)
        broker.run_pending()
        got += peer.collect()
    batches = [len(fields[3]) for op, fields, _ in got if op == Op.STREAM_DELIVER]
    assert batches == [1000, 1000, 400]


def test_a_memory_stream_sends_one_by_one() -> None:
    broker = Broker()
    peer = open_peer(broker, b"p", True)
    peer.declare("s", durable=True, arguments=STREAM)
    peer.publish("", "s", b"a")
    peer.qos(5)
    got = peer.consume("s", "c", arguments={"x-stream-offset": "first"})
    assert [op for op, _, _ in got if op in (Op.BASIC_DELIVER, Op.STREAM_DELIVER)] == [Op.BASIC_DELIVER]


@pytest.mark.parametrize("offsets, sizes, body", [
    ([0, 1], [3], b"abc"),  # sizes against offsets
    ([0], [10], b"abc"),  # sizes against the body
    ([0], [4], b"\xff\x00\x00\x00"),  # metadata longer than the entry
    ([0], [5], b"\x01\x00\x00\x00\xc1"),  # metadata that does not parse
])
def test_a_batch_that_does_not_add_up_is_a_protocol_error(offsets: list[int], sizes: list[int], body: bytes) -> None:
    with pytest.raises(ProtocolError):
        list(stream_deliveries([1, "c", 1, offsets, sizes], body))


def test_an_entry_decodes_back_to_its_fields() -> None:
    entry = stream_entries.encode("ex", "rk", {"headers": {"a": 1}}, 12.5, b"body")
    assert stream_entries.decode(entry) == ("ex", "rk", {"headers": {"a": 1}}, b"body", 12.5)
