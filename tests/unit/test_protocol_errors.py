"""Malformed input from a peer: that peer gets an error, nobody else notices."""
import msgpack
import pytest

from zbroker.core import Broker
from zbroker.protocol import HEADER, Op, ProtocolError, decode_command, encode

from tests.unit.wire import FakePeer


@pytest.mark.parametrize("parts,code", [
    ([HEADER, b"\xc1"], 502),                                    # not msgpack
    ([HEADER, msgpack.packb({"a": 1})], 502),                    # not an array
    ([HEADER, msgpack.packb([999, 1])], 540),                    # unknown opcode
    ([HEADER, msgpack.packb([Op.QUEUE_DECLARE, 1, "q"])], 502),  # wrong arity
    ([HEADER, encode(Op.QUEUE_DECLARE, 1, 5, False, False, False, False, {})], 502),  # wrong type
    ([HEADER, encode(Op.BASIC_QOS, 1, 0, True, False)], 502),   # bool where an int belongs
    ([HEADER, encode(Op.BASIC_PUBLISH, 1, "", "q", False, {})], 501),  # body frame missing
    ([b"ZB\x63", encode(Op.CHANNEL_OPEN, 2)], 540),              # another protocol version
    ([b"GET / HTTP/1.1", b""], 501),                             # not ours at all
])
def test_bad_frames_close_only_that_connection(parts: list, code: int) -> None:
    broker = Broker()
    bad = FakePeer(broker, b"bad").open()
    good = FakePeer(broker, b"good").open()
    good.declare("q")
    [(op, fields, _)] = bad.send_parts(parts)
    assert op == Op.CONNECTION_CLOSE and fields[0] == code
    assert b"bad" not in broker.connections
    # The other client is untouched.
    assert good.publish("", "q", b"still here") == []
    assert [m.body for m in broker.topology.queues["q"].resident()] == [b"still here"]


def test_frames_before_hello_get_a_close() -> None:
    broker = Broker()
    stranger = FakePeer(broker, b"s")
    [(op, fields, _)] = stranger.send(Op.CHANNEL_OPEN, 1)
    assert op == Op.CONNECTION_CLOSE and fields[0] == 320


def test_using_an_unopened_channel_is_504() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    [(op, fields, _)] = peer.declare("q", ch=7)
    assert (op, fields[0]) == (Op.CONNECTION_CLOSE, 504)


def test_server_only_command_from_client_is_refused() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    [(op, fields, _)] = peer.send(Op.BASIC_DELIVER, 1, "t", 1, False, "", "q", {}, body=b"x")
    assert (op, fields[0]) == (Op.CONNECTION_CLOSE, 503)


def test_overlong_names_are_a_syntax_error() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    [(op, fields, _)] = peer.declare("q" * 256)
    assert (op, fields[0]) == (Op.CONNECTION_CLOSE, 502)


def test_decode_command_names_the_field() -> None:
    with pytest.raises(ProtocolError, match=r"QUEUE_PURGE.queue must be str, got int"):
        decode_command(msgpack.packb([Op.QUEUE_PURGE, 1, 7]))


def test_second_hello_is_503() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    [(op, fields, _)] = peer.send(Op.HELLO, None, "/", "guest", "guest", {})
    assert (op, fields[0]) == (Op.CONNECTION_CLOSE, 503)
    assert b"p" not in broker.connections


def test_hello_ok_from_a_client_is_refused() -> None:
    broker = Broker()
    peer = FakePeer(broker, b"p").open()
    [(op, fields, _)] = peer.send(Op.HELLO_OK, 60, 100, {})
    assert (op, fields[0]) == (Op.CONNECTION_CLOSE, 503)
