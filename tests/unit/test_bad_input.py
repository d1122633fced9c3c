"""Bad input from one peer hurts that peer alone: nested values are checked at the codec,
and a failure inside the core (a store read, a bug in a timer) loses nothing."""
from __future__ import annotations

from typing import Any

import msgpack
import pytest
import zmq

from tests.support import patches_internals
from tests.unit.wire import FakeClock, FakePeer, bodies, closes
from zbroker.core import Broker
from zbroker.protocol import HEADER, Op
from zbroker.storage import MemoryStore
from zbroker.wires import native


def raw(op: int, *fields: Any) -> bytes:
    return msgpack.packb([op, *fields], use_bin_type=True)


def test_a_headers_binding_with_a_bytes_key_is_refused_and_others_publish_on() -> None:
    broker = Broker()
    bad, good = FakePeer(broker, b"bad").open(), FakePeer(broker, b"good").open()
    good.exchange("hx", "headers")
    good.declare("q")
    frames = bad.send_parts([HEADER, raw(Op.QUEUE_BIND, 1, "q", "hx", "", {b"k": "v"})])
    assert [code for code, _ in closes(frames)] == [502]
    assert "bytes" in closes(frames)[0][1]
    good.bind("q", "hx", arguments={"k": "v"})
    good.publish("hx", "", b"routed", properties={"headers": {"k": "v"}})
    assert good.count("q") == 1



def test_frames_over_64_kib_where_a_header_or_command_goes_close_that_peer_alone() -> None:
    """The server hands on a frame over 64 KiB as a ``zmq.Frame``, not bytes: as a header
    it is no zbroker message (501); as a command it is decoded and checked as any (here a
    queue name over 255 bytes: 502)."""
    broker = Broker()
    good = FakePeer(broker, b"good").open()
    good.declare("q")
    big_header = FakePeer(broker, b"big-header").open()
    frames = big_header.send_parts([zmq.Frame(b"x" * 70_000), raw(Op.QUEUE_DECLARE, 1, "x", False, False, False,
                                                                    False, {})])
    assert closes(frames) == [(501, "FRAME_ERROR - not a zbroker message (bad header frame)")]
    big_command = FakePeer(broker, b"big-command").open()
    frames = big_command.send_parts([HEADER, zmq.Frame(raw(Op.QUEUE_DECLARE, 1, "y" * 70_000, False, False,
                                                               False, False, {}))])
    assert [code for code, _ in closes(frames)] == [502]
    good.publish("", "q", b"still served")
    assert good.count("q") == 1


@patches_internals
def test_a_bug_while_reading_a_peers_message_closes_that_connection_541(monkeypatch: pytest.MonkeyPatch) -> None:
    broker = Broker()
    good, bad = FakePeer(broker, b"good").open(), FakePeer(broker, b"bad").open()
    good.declare("q")
    monkeypatch.setattr(native, "decode_message", lambda parts, start: 1 / 0)
    frames = bad.send(Op.QUEUE_DECLARE, 1, "x", False, False, False, False, {})
    assert closes(frames) == [(541, "INTERNAL_ERROR - internal error")]
    monkeypatch.undo()
    good.publish("", "q", b"still served")
    assert good.count("q") == 1


@pytest.mark.parametrize("value", [
    {1: "int key"}, {"nested": {b"deep": 1}}, {"list": [{"x": {2: "y"}}]},
    {"ext": msgpack.ExtType(5, b"?")},
])
def test_nested_argument_values_are_checked_in_depth(value: dict) -> None:
    peer = FakePeer(Broker(), b"p").open()
    frames = peer.send_parts([HEADER, raw(Op.QUEUE_DECLARE, 1, "q", False, False, False, False, value)])
    assert [code for code, _ in closes(frames)] == [502]
    assert "q" not in peer.broker.topology.queues


def test_deeply_nested_headers_are_refused_without_recursion() -> None:
    peer = FakePeer(Broker(), b"p").open()
    deep: Any = "bottom"
    for _ in range(100):
        deep = [deep]
    frames = peer.send_parts([HEADER, raw(Op.BASIC_PUBLISH, 1, "", "q", False, {"headers": {"d": deep}}), b"x"])
    assert closes(frames) == [(502, "SYNTAX_ERROR - headers nests deeper than 32 levels")]


@pytest.mark.parametrize("properties, reason", [
    ({"priority": 256}, "property 'priority' must be an integer from 0 to 255, got 256"),
    ({"delivery_mode": "2"}, "property 'delivery_mode' must be an integer from 0 to 255, got '2'"),
    ({"expiration": 1000}, "property 'expiration' must be a string, got int"),
    ({"headers": [1]}, "property 'headers' must be a table, got list"),
    ({"no_such_property": 1}, "unknown message property 'no_such_property'"),
])
def test_message_properties_are_checked(properties: dict, reason: str) -> None:
    peer = FakePeer(Broker(), b"p").open()
    frames = peer.send_parts([HEADER, raw(Op.BASIC_PUBLISH, 1, "", "q", False, properties), b"x"])
    assert closes(frames) == [(502, "SYNTAX_ERROR - " + reason)]


class FlakyStore(MemoryStore):
    """A memory store whose reads fail while ``failing`` is set."""

    pages = True
    failing = False

    def read(self, location: int) -> Any:
        if self.failing:
            raise OSError(5, "Input/output error")
        return super().read(location)


def test_a_failed_store_read_leaves_the_message_in_its_queue(monkeypatch: pytest.MonkeyPatch) -> None:
    from zbroker.core.messaging import classic
    monkeypatch.setattr(classic, "PAGE_AFTER", 1)
    store = FlakyStore()
    broker = Broker(store=store)
    peer = FakePeer(broker, b"p").open()
    peer.declare("q", durable=True)
    for body in (b"head", b"paged"):
        peer.publish("", "q", body, properties={"delivery_mode": 2})
    assert broker.topology.queues["q"].paged_count == 1
    peer.get("q")
    store.failing = True
    frames = peer.get("q")  # the read fails: that connection gets a 541, the message stays
    assert [code for code, _ in closes(frames)] == [541]
    assert broker.topology.queues["q"].ready == 1
    store.failing = False
    other = FakePeer(broker, b"o").open()
    assert [b for op, _, b in other.get("q") if op == Op.BASIC_GET_OK] == [b"paged"]


@patches_internals
def test_a_bug_in_a_timer_is_logged_and_the_broker_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    broker = Broker(now=clock.now)
    peer = FakePeer(broker, b"p", clock).open()
    peer.declare("q", arguments={"x-message-ttl": 10})
    peer.publish("", "q", b"x")
    queue = broker.topology.queues["q"]

    def broken(now: float) -> list:
        raise RuntimeError("bug")
    queue.expire = broken  # type: ignore[method-assign]
    clock.advance(1, broker)
    assert "internal error in timer" in caplog.text
    peer.declare("other")
    peer.consume("other", "c", auto_ack=True)
    assert bodies(peer.publish("", "other", b"still serving")) == [b"still serving"]


def test_a_command_frame_over_frame_max_is_refused_before_decoding() -> None:
    broker = Broker()
    bad, good = FakePeer(broker, b"bad").open(), FakePeer(broker, b"good").open()
    good.declare("q")
    huge = raw(Op.BASIC_PUBLISH, 1, "", "q", False, {"headers": {"h": "x" * 200_000}})
    assert closes(bad.send_parts([HEADER, huge, b"body"])) == [
        (501, f"FRAME_ERROR - command frame of {len(huge)} bytes is larger than frame_max (131072 bytes)")]
    good.publish("", "q", b"fine", properties={"headers": {"h": "x" * 100_000}})  # under the limit
    assert good.count("q") == 1
