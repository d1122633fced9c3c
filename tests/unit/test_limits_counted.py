"""Counted limits through the pure core: channel_max, connections, queues — RabbitMQ's
codes and texts, logged once per episode, and never applied to recovered queues."""
from __future__ import annotations

import pytest

from tests.unit.wire import FakePeer, closes
from zbroker.core import Broker
from zbroker.core.access.limits import Limits
from zbroker.protocol import Op


def test_one_channel_beyond_channel_max_closes_the_connection() -> None:
    peer = FakePeer(Broker(limits=Limits(channel_max=2)), b"p").open()
    assert [op for op, _, _ in peer.send(Op.CHANNEL_OPEN, 2)] == [Op.CHANNEL_OPEN_OK]
    assert closes(peer.send(Op.CHANNEL_OPEN, 3)) == [
        (530, "NOT_ALLOWED - number of channels opened (2) has reached the negotiated channel_max (2)")]


def test_the_broker_offers_its_channel_max_at_the_handshake() -> None:
    peer = FakePeer(Broker(limits=Limits(channel_max=7)), b"p")
    [(op, fields, _)] = peer.send(Op.HELLO, None, "/", "guest", "guest", {})
    assert op == Op.HELLO_OK and fields[2]["channel_max"] == 7


def test_a_connection_beyond_the_limit_is_refused_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    broker = Broker(limits=Limits(max_connections=2))
    FakePeer(broker, b"a").open()
    FakePeer(broker, b"b").open()
    for name in (b"c", b"d"):
        refused = FakePeer(broker, name)
        assert closes(refused.send(Op.HELLO, None, "/", "guest", "guest", {})) == [
            (530, "NOT_ALLOWED - connection refused: node connection limit (2) is reached")]
    assert set(broker.connections) == {b"a", b"b"}
    assert caplog.text.count("node connection limit (2) is reached") == 1
    broker.connection_lost(b"a", 0.0)
    assert [op for op, _, _ in FakePeer(broker, b"e").send(Op.HELLO, None, "/", "guest", "guest", {})] == [
        Op.HELLO_OK]


def test_a_queue_beyond_the_limit_is_406_and_redeclares_still_work() -> None:
    peer = FakePeer(Broker(limits=Limits(max_queues=2)), b"p").open()
    peer.declare("a")
    peer.declare("b")
    assert closes(peer.declare("c")) == [
        (406, "PRECONDITION_FAILED - cannot declare queue 'c': queue limit in cluster (2) is reached")]
    peer.send(Op.CHANNEL_OPEN, 2)
    assert [op for op, _, _ in peer.declare("a", ch=2)] == [Op.QUEUE_DECLARE_OK]  # an existing one
    peer.send(Op.QUEUE_DELETE, 2, "b", False, False)
    assert [op for op, _, _ in peer.declare("c", ch=2)] == [Op.QUEUE_DECLARE_OK]


def test_zero_means_no_limit() -> None:
    peer = FakePeer(Broker(limits=Limits(channel_max=0, max_connections=0, max_queues=0)), b"p").open()
    for i in range(2, 50):
        peer.send(Op.CHANNEL_OPEN, i)
    for i in range(100):
        peer.declare(f"q{i}")
    assert len(peer.broker.topology.queues) == 100 and len(peer.broker.connections[b"p"].channels) == 49
