"""The zbroker wire's packed form (version 2) and its version 1 peers, through the wire
adapter and the core, with real frames and no sockets."""
from __future__ import annotations

import msgpack
import pytest

from tests.unit.wire import FakePeer
from zbroker.core import Broker
from zbroker.protocol import HEADER, Op, ProtocolError, encode
from zbroker.protocol.native_codec import MAX_COMMAND_BYTES, V1_HEADER, decode_message
from zbroker.protocol.native_packed import decode_frames, pack_command, pack_events
from zbroker.wires.native import NativeWire


def commands(messages: list[list]) -> list[tuple]:
    return [command for message in messages for command in decode_frames(message, 0, 1 << 30)]


def deliver(tag: int, body: object) -> list:
    return [(Op.BASIC_DELIVER, 1, "c", tag, False, "", "q", {"content_type": "text/plain"}), body]


def test_events_round_trip_with_small_bodies_inside_and_large_ones_as_frames() -> None:
    large, odd = b"L" * 70_000, bytearray(b"not bytes")
    parts = [(Op.CHANNEL_OPEN_OK, 1), *deliver(1, b"small"), *deliver(2, large), *deliver(3, b""),
             *deliver(4, odd), (Op.BASIC_CANCEL_OK, 1, "c")]
    [message] = pack_events(parts, 1 << 20)
    assert message[1:] == [large, odd]  # by reference, in order
    got = commands([message])
    assert [op for op, _, _ in got] == [Op.CHANNEL_OPEN_OK] + [Op.BASIC_DELIVER] * 4 + [Op.BASIC_CANCEL_OK]
    assert [body for _, _, body in got[1:5]] == [b"small", large, b"", odd]
    assert got[1][1] == [1, "c", 1, False, "", "q", {"content_type": "text/plain"}]


def test_a_long_run_of_events_is_split_at_the_receivers_limit_in_order() -> None:
    parts = [part for tag in range(1, 501) for part in deliver(tag, b"%04d" % tag * 50)]
    messages = pack_events(parts, 16_384)
    assert len(messages) > 5
    assert all(len(message[0]) <= 16_384 for message in messages)
    got = commands(messages)
    assert [fields[2] for _, fields, _ in got] == list(range(1, 501))
    assert all(body == b"%04d" % fields[2] * 50 for _, fields, body in got)


def test_a_body_that_would_pass_the_limit_goes_as_a_frame_of_its_own() -> None:
    [message] = pack_events(deliver(1, b"b" * 60_000), 50_000)
    assert len(message) == 2 and len(message[0]) < 100
    assert commands([message])[0][2] == b"b" * 60_000


@pytest.mark.parametrize("body", [None, b"", b"x" * 100, b"x" * 65_536, b"x" * 65_537, memoryview(b"view")])
def test_a_clients_command_round_trips(body: object) -> None:
    command = encode(Op.BASIC_PUBLISH, 1, "ex", "rk", False, {}) if body is not None else encode(Op.BASIC_ACK, 1, 7, False)
    frames = pack_command(command, body)
    assert len(frames[0]) <= MAX_COMMAND_BYTES
    [(op, fields, got)] = list(decode_frames(frames))
    assert op == (Op.BASIC_PUBLISH if body is not None else Op.BASIC_ACK)
    assert got == body


def test_a_command_at_frame_max_still_fits_with_its_body_as_a_frame() -> None:
    properties = {"headers": {"h": ""}}
    base = len(encode(Op.BASIC_PUBLISH, 1, "", "q", False, properties))
    pad = MAX_COMMAND_BYTES - base - 4  # (msgpack: a str of 64 KiB and more has a 5-byte header)
    command = encode(Op.BASIC_PUBLISH, 1, "", "q", False, {"headers": {"h": "h" * pad}})
    assert len(command) == MAX_COMMAND_BYTES
    frames = pack_command(command, b"body")
    assert len(frames) == 2 and len(frames[0]) > MAX_COMMAND_BYTES  # read item by item
    [(_, fields, body)] = list(decode_frames(frames))
    assert body == b"body" and len(fields[4]["headers"]["h"]) == pad


def packed(*items: bytes) -> bytes:
    assert len(items) < 16
    return HEADER + bytes([0x90 | len(items)]) + b"".join(items)


PUBLISH = encode(Op.BASIC_PUBLISH, 1, "", "q", False, {})


@pytest.mark.parametrize("parts,code", [
    ([HEADER + b"\xc1"], 502),                                           # not msgpack
    ([HEADER + msgpack.packb({"a": 1})], 502),                           # not an array
    ([packed(msgpack.packb([999, 1]))], 540),                            # unknown opcode
    ([packed(msgpack.packb([Op.QUEUE_DECLARE, 1, "q"]))], 502),          # wrong arity
    ([packed(PUBLISH)], 501),                                            # body missing
    ([packed(PUBLISH, msgpack.packb("text"))], 501),                     # a body that is not bytes
    ([packed(PUBLISH, msgpack.packb(2)), b"body"], 501),                 # names a frame that is not there
    ([packed(PUBLISH, msgpack.packb(b"x")), b"stray"], 501),             # a frame nobody names
    ([packed(PUBLISH, msgpack.packb(1), PUBLISH, msgpack.packb(1)), b"b"], 501),  # one frame named twice
    ([packed(PUBLISH + b"\x00")], 502),                                  # the count says less than is there
    ([HEADER + b"\x92" + encode(Op.BASIC_PUBLISH, 1, "", "q", False, {"headers": {"h": "x" * 200_000}})
      + msgpack.packb(b"x")], 501),                                      # a command over frame_max
    ([HEADER + b"\x92" + PUBLISH + msgpack.packb(b"x" * 200_000) + b"\xc0"], 502),  # data after the array
])
def test_bad_packed_frames_close_only_that_connection(parts: list, code: int) -> None:
    broker = Broker()
    bad = FakePeer(broker, b"bad").open()
    good = FakePeer(broker, b"good").open()
    good.declare("q")
    got = bad.send_parts(parts)
    assert got[-1][0] == Op.CONNECTION_CLOSE and got[-1][1][0] == code, got
    assert b"bad" not in broker.connections
    assert good.publish("", "q", b"still here") == []
    assert [m.body for m in broker.topology.queues["q"].resident()][-1] == b"still here"


def test_a_large_packed_frame_of_small_commands_and_a_large_body_is_taken() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    peer.declare("q")
    frame = packed(PUBLISH, msgpack.packb(b"a" * 65_536), PUBLISH, msgpack.packb(b"b" * 65_536),
                   PUBLISH, msgpack.packb(b"c"))
    assert len(frame) > MAX_COMMAND_BYTES
    assert peer.send_parts([frame]) == []
    assert [m.body[:1] for m in broker.topology.queues["q"].resident()] == [b"a", b"b", b"c"]


def test_a_batch_is_applied_up_to_a_bad_command_as_in_the_split_form() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    peer.declare("q")
    got = peer.send_parts([packed(PUBLISH, msgpack.packb(b"1"), PUBLISH, msgpack.packb(b"2"),
                                  msgpack.packb([Op.BASIC_ACK, 1, "not an int", False]))])
    assert got[-1][0] == Op.CONNECTION_CLOSE and got[-1][1][0] == 502
    assert [m.body for m in broker.topology.queues["q"].resident()] == [b"1", b"2"]


def test_the_decoders_raise_only_protocol_errors_for_truncated_frames() -> None:
    frame = pack_events([*deliver(1, b"x" * 300), *deliver(2, b"y")], 1 << 20)[0]
    for end in range(len(HEADER) + 1, len(frame)):
        with pytest.raises(ProtocolError):
            list(decode_frames([frame[:end]], 0, 1 << 30))
        with pytest.raises(ProtocolError):
            list(decode_frames([frame[:end]], 0, 64))  # (item by item)


# -- version 1 peers -------------------------------------------------------------------

def v1_messages(wire: NativeWire, peer: bytes) -> list:
    return wire.take_outgoing().get(peer, [])


def test_a_version_1_peer_is_served_in_the_split_form_and_forgotten_when_it_closes() -> None:
    broker = Broker()
    wire = NativeWire(broker)
    old = b"old"
    wire.handle(old, [V1_HEADER, encode(Op.HELLO, None, "/", "guest", "guest", {})], 0, broker.now)
    wire.handle(old, [V1_HEADER, encode(Op.CHANNEL_OPEN, 1)], 0, broker.now)
    wire.handle(old, [V1_HEADER, encode(Op.QUEUE_DECLARE, 1, "q", False, False, False, False, {})], 0, broker.now)
    wire.handle(old, [V1_HEADER, encode(Op.BASIC_CONSUME, 1, "q", "c", True, False, {})], 0, broker.now)
    wire.handle(old, [V1_HEADER, PUBLISH, b"body"], 0, broker.now)
    [message] = v1_messages(wire, old)
    assert message[0] == V1_HEADER
    got = [command for command in decode_message(message, 1) if command[0] != Op.PUBLISH_CREDIT]
    assert [op for op, _, _ in got] == [Op.HELLO_OK, Op.CHANNEL_OPEN_OK, Op.QUEUE_DECLARE_OK,
                                        Op.BASIC_CONSUME_OK, Op.BASIC_DELIVER]
    assert got[4][2] == b"body"
    assert wire.empty_message(old) == [V1_HEADER]
    new = FakePeer(broker, b"new", wire=wire).open()  # a version 2 peer beside it: packed
    new.publish("", "q", b"from new")
    [message] = v1_messages(wire, old)
    assert [body for op, _, body in decode_message(message, 1) if op == Op.BASIC_DELIVER] == [b"from new"]
    wire.handle(old, [V1_HEADER, encode(Op.CONNECTION_CLOSE, 200, "bye")], 0, broker.now)
    [message] = v1_messages(wire, old)
    assert message[0] == V1_HEADER and [op for op, _, _ in decode_message(message, 1)] == [Op.CONNECTION_CLOSE_OK]
    assert old not in wire.v1_peers and wire.empty_message(old) == [HEADER]


def test_a_version_1_peers_refusal_comes_in_its_form() -> None:
    broker = Broker()
    wire = NativeWire(broker)
    wire.handle(b"old", [V1_HEADER, encode(Op.HELLO, None, "/", "guest", "wrong", {})], 0, broker.now)
    [message] = v1_messages(wire, b"old")
    [(op, fields, _)] = list(decode_message(message, 1))
    assert message[0] == V1_HEADER and op == Op.CONNECTION_CLOSE and fields[0] == 403
    assert not wire.v1_peers


def test_version_1_peers_that_vanish_are_forgotten_past_a_bound() -> None:
    broker = Broker()
    wire = NativeWire(broker)
    for i in range(200):
        peer = b"old-%d" % i
        wire.handle(peer, [V1_HEADER, encode(Op.HELLO, None, "/", "guest", "guest", {})], 0, broker.now)
        wire.take_outgoing()
        broker.connection_lost(peer, broker.now, "peer disconnected")  # (no goodbye)
    wire.take_outgoing()
    assert len(wire.v1_peers) <= 65
